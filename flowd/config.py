"""The daemon's configuration: TOML validated by pydantic, FLOWD_* environment overrides for [flowd].

Relative paths are resolved against the config file's folder, so `flowd run -c /etc/flowd/flowd.toml`
behaves the same from any working directory.
"""

from __future__ import annotations

import hashlib
import re
import socket
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from flowd.errors import ConfigError, ConfigErrors
from flowd.locate import toml_index, toml_line
from flowd.target import TargetError, parse_target
from flowd.validation import config_errors

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
Name = Annotated[str, Field(pattern=NAME_PATTERN)]
DEFAULT_IGNORE = ["*.part", "*.tmp", "*.crdownload", "~$*", ".*"]


class Core(BaseSettings):
    """[flowd]: FLOWD_DATA_DIR, FLOWD_DATABASE_URL, FLOWD_WORKERS ... override the file."""

    model_config = SettingsConfigDict(env_prefix="FLOWD_", extra="forbid", frozen=True)

    data_dir: str = "var"
    database_url: str = "sqlite:///var/flowd.db"
    workers: int = Field(4, ge=1, le=64)
    rules: list[str] = Field(default_factory=lambda: ["rules/*.yaml"])
    batch_size: int = Field(32, ge=1, le=1000)
    lease_seconds: float = Field(60, ge=5)
    rescan_seconds: float = Field(300, ge=0)  # reconciliation rescan; 0 = only at start
    retry_base_seconds: float = Field(2, gt=0)
    retry_max_seconds: float = Field(300, gt=0)
    node_name: str = Field(default_factory=socket.gethostname)
    log_level: Literal["TRACE", "DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment wins over the file: that is how containers and systemd drop-ins override.
        return (env_settings, init_settings)


class LocalStorage(BaseModel):
    """kind = "local": one folder per container under root."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["local"]
    root: str
    tenants: list[Name] | None = None  # None: open to every tenant
    fsync: bool = True  # make outputs durable before a source is removed


StorageSpec = LocalStorage


class HotFolder(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Name
    tenant: Name = "default"
    path: str
    output: str | None = None
    recursive: bool = True
    stable_seconds: float = Field(2, ge=0, le=86400)
    ignore: list[str] = Field(default_factory=lambda: list(DEFAULT_IGNORE))
    after: str = "delete"
    unmatched: str = "leave"
    errors: str = "hotfolders/error"
    poll_seconds: float = Field(0, ge=0, le=3600)
    enabled: bool = True

    @field_validator("after")
    @classmethod
    def _after(cls, value: str) -> str:
        if value in ("delete", "keep") or (value.startswith("move:") and len(value) > 5):
            return value
        raise ValueError("must be delete, keep or move:<folder>")

    @field_validator("output")
    @classmethod
    def _output(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_target(value)
            except TargetError as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("ignore")
    @classmethod
    def _ignore(cls, value: list[str]) -> list[str]:
        for pattern in value:
            if not pattern or "/" in pattern:
                raise ValueError(f"ignore pattern {pattern!r} must be a non-empty file-name glob without '/'")
        return value


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    flowd: Core = Field(default_factory=Core)
    storage: dict[Name, StorageSpec] = Field(default_factory=dict)
    hotfolders: list[HotFolder] = Field(default_factory=list)

    @model_validator(mode="after")
    def _names_unique(self) -> Settings:
        seen: set[str] = set()
        for hf in self.hotfolders:
            if hf.name in seen:
                raise ValueError(f"hot folder name '{hf.name}' is used twice; names must be unique")
            seen.add(hf.name)
        return self


@dataclass(frozen=True, slots=True)
class Config:
    """Validated settings plus where they came from, with every path made absolute."""

    settings: Settings
    file: Path
    base: Path
    digest: str

    def path(self, value: str) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.base / p

    @property
    def data_dir(self) -> Path:
        return self.path(self.settings.flowd.data_dir)

    @property
    def database_url(self) -> str:
        url = self.settings.flowd.database_url
        # sqlite:///relative/path is relative to the config file, like every other path here.
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////") and ":memory:" not in url:
            return "sqlite:///" + str(self.path(url.removeprefix("sqlite:///")))
        return url


def load_config(file: str | Path) -> Config:
    """Read, validate and cross-check a config file. Raises ConfigErrors listing every problem."""
    path = Path(file)
    shown = str(file)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigErrors([ConfigError(shown, None, "", f"cannot read config file: {exc.strerror}")]) from None
    try:
        text = raw.decode("utf-8")
        data = tomllib.loads(text)
    except UnicodeDecodeError:
        raise ConfigErrors([ConfigError(shown, None, "", "config file is not UTF-8 text")]) from None
    except tomllib.TOMLDecodeError as exc:
        line = _toml_error_line(str(exc))
        raise ConfigErrors([ConfigError(shown, line, "", f"not valid TOML: {exc}")]) from None
    index = toml_index(text)

    def line_of(loc: object) -> int | None:
        return toml_line(index, loc)  # type: ignore[arg-type]

    try:
        core = Core(**data.pop("flowd", {}))
        settings = Settings(flowd=core, **data)
    except ValidationError as exc:
        prefix: tuple[str, ...] = ("flowd",) if exc.title == "Core" else ()
        raise ConfigErrors(config_errors(exc, shown, line_of, Settings, prefix)) from None
    except TypeError as exc:  # a top-level key that is not a table, e.g. `flowd = 1`
        raise ConfigErrors([ConfigError(shown, None, "", f"malformed config: {exc}")]) from None
    config = Config(settings, path.resolve(), path.resolve().parent, hashlib.sha256(raw).hexdigest())
    errors = cross_check(config, shown, line_of)
    if errors:
        raise ConfigErrors(errors)
    return config


def cross_check(config: Config, shown: str, line_of: object) -> list[ConfigError]:
    """What one field cannot know alone: storages named by outputs, folders that would feed each other."""
    find = line_of  # type: ignore[assignment]
    errors: list[ConfigError] = []
    s = config.settings
    roots = {name: config.path(spec.root).resolve() for name, spec in s.storage.items()}
    folders = {hf.name: config.path(hf.path).resolve() for hf in s.hotfolders}
    for i, hf in enumerate(s.hotfolders):
        loc = ("hotfolders", i)
        if hf.output:
            storage = parse_target(hf.output).storage
            if storage not in s.storage:
                errors.append(ConfigError(shown, find((*loc, "output")), f"hotfolders.{i}.output",
                                          f"no storage named '{storage}'", hf.output,
                                          ", ".join(sorted(s.storage)) or "(no [storage.NAME] tables defined)"))
            elif s.storage[storage].tenants is not None and hf.tenant not in (s.storage[storage].tenants or []):
                errors.append(ConfigError(shown, find((*loc, "output")), f"hotfolders.{i}.output",
                                          f"storage '{storage}' is not open to tenant '{hf.tenant}'", hf.output,
                                          ", ".join(s.storage[storage].tenants or [])))
        own = folders[hf.name]
        for key in ("errors", "unmatched", "after"):
            value = getattr(hf, key)
            if value in ("leave", "delete", "keep"):
                continue
            target = config.path(value.removeprefix("move:")).resolve()
            if hf.recursive and _inside(target, own) or target == own:
                errors.append(ConfigError(shown, find((*loc, key)), f"hotfolders.{i}.{key}",
                                          "must not be inside the hot folder it serves (files would loop)", value))
        for other, root in roots.items():
            if _inside(own, root) or _inside(root, own):
                errors.append(ConfigError(shown, find((*loc, "path")), f"hotfolders.{i}.path",
                                          f"overlaps the root of storage '{other}'", hf.path))
    for i, a in enumerate(s.hotfolders):
        for b in s.hotfolders[i + 1:]:
            pa, pb = folders[a.name], folders[b.name]
            if pa == pb or (a.recursive and _inside(pb, pa)) or (b.recursive and _inside(pa, pb)):
                errors.append(ConfigError(shown, find(("hotfolders", i, "path")), f"hotfolders.{i}.path",
                                          f"hot folders '{a.name}' and '{b.name}' overlap; one file would be two jobs",
                                          a.path))
    return errors


def _inside(child: Path, parent: Path) -> bool:
    return child != parent and child.is_relative_to(parent)


def _toml_error_line(message: str) -> int | None:
    match = re.search(r"line (\d+)", message)
    return int(match.group(1)) if match else None
