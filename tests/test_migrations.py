"""Schema changes ship as Alembic revisions: a database built by them is exactly what the code expects."""

from __future__ import annotations

import os
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

import flowd.migrations
from flowd.db import HEAD_REVISION, Database, metadata


def test_head_revision_constant_names_the_newest_migration() -> None:
    config = Config()
    config.set_main_option("script_location", os.path.dirname(flowd.migrations.__file__))
    assert ScriptDirectory.from_config(config).get_current_head() == HEAD_REVISION


def test_migrated_database_matches_the_models(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'flowd.db'}")
    with db.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == HEAD_REVISION
    db.close()
    again = Database(f"sqlite:///{tmp_path / 'flowd.db'}")  # opening a current database changes nothing
    assert again.install_id == db.install_id
    again.close()
