"""Schema changes ship as Alembic revisions: a database built by them is exactly what the code expects."""

from __future__ import annotations

import os
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine

import flowd.migrations
from flowd.db import HEAD_REVISION, Database, metadata


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", os.path.dirname(flowd.migrations.__file__))
    return config


def test_head_revision_constant_names_the_newest_migration() -> None:
    assert ScriptDirectory.from_config(_config()).get_current_head() == HEAD_REVISION


def test_the_migrations_build_exactly_the_models(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'migrated.db'}")
    config = _config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    engine.dispose()
    db = Database(f"sqlite:///{tmp_path / 'migrated.db'}")  # flowd opens a migrated database as it is
    db.close()


def test_a_new_database_is_built_current_and_stamped(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'flowd.db'}")
    with db.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == HEAD_REVISION
    db.close()
    again = Database(f"sqlite:///{tmp_path / 'flowd.db'}")  # opening a current database changes nothing
    assert again.install_id == db.install_id
    again.close()
