"""Everything compiled from one config + rule set, swapped as a single reference on SIGHUP."""

from __future__ import annotations

from dataclasses import dataclass

from flowd.config import Config, load_config
from flowd.engine import Engine
from flowd.errors import ConfigErrors
from flowd.hotfolder import Folder, build_folders, sweep_folder
from flowd.rules import RuleSet, load_rules
from flowd.storage import Storage, build_storages
from flowd.stored import BlobSource, SweptPrefix, build_sources


@dataclass(frozen=True, slots=True)
class Runtime:
    config: Config
    rules: RuleSet
    folders: dict[str, Folder]
    storages: dict[str, Storage]
    engine: Engine
    sources: dict[str, BlobSource | SweptPrefix]  # storage sources by job source ("@NAME", "~TENANT/RULE")
    sweeps: dict[str, Folder]  # sweep rules over local folders, by job source ("~TENANT/RULE")

    @property
    def digest(self) -> str:
        return f"{self.config.digest[:12]}-{self.rules.digest[:12]}"


def load_runtime(config_file: str, install_id: str = "check") -> Runtime:
    """Config and rules, checked together. Raises ConfigErrors with every problem found."""
    config = load_config(config_file)
    rules = load_rules(config)
    if rules.errors:
        raise ConfigErrors(list(rules.errors))
    folders = build_folders(config)
    sources: dict[str, BlobSource | SweptPrefix] = dict(build_sources(config))
    sweeps = {}
    for rule in rules.sweeps():
        over = rule.over
        assert over is not None
        if over.root is not None:
            output = folders[over.hotfolder].spec.output if over.hotfolder in folders else None
            sweeps[rule.source] = sweep_folder(rule.source, rule.tenant, over, output)
        else:
            sources[rule.source] = SweptPrefix(rule.source, rule.tenant, over.storage or "", over.prefix)
    return Runtime(config, rules, folders, build_storages(config), Engine(rules, install_id), sources, sweeps)
