"""Everything compiled from one config + rule set, swapped as a single reference on SIGHUP."""

from __future__ import annotations

from dataclasses import dataclass

from flowd.config import Config, load_config
from flowd.engine import Engine
from flowd.errors import ConfigErrors
from flowd.hotfolder import Folder, build_folders
from flowd.rules import RuleSet, load_rules
from flowd.storage import Storage, build_storages
from flowd.stored import BlobSource, build_sources


@dataclass(frozen=True, slots=True)
class Runtime:
    config: Config
    rules: RuleSet
    folders: dict[str, Folder]
    storages: dict[str, Storage]
    engine: Engine
    sources: dict[str, BlobSource]  # events streams by job source ("@NAME", "@NAME#deleted")

    @property
    def digest(self) -> str:
        return f"{self.config.digest[:12]}-{self.rules.digest[:12]}"


def load_runtime(config_file: str, install_id: str = "check") -> Runtime:
    """Config and rules, checked together. Raises ConfigErrors with every problem found."""
    config = load_config(config_file)
    rules = load_rules(config)
    if rules.errors:
        raise ConfigErrors(list(rules.errors))
    return Runtime(config, rules, build_folders(config), build_storages(config), Engine(rules, install_id),
                   build_sources(config))
