"""The daemon's configuration: TOML validated by pydantic, FLOWD_* environment overrides for [flowd].

Relative paths are resolved against the config file's folder, so `flowd run -c /etc/flowd/flowd.toml`
behaves the same from any working directory.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, SettingsError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from flowd.errors import ConfigError, ConfigErrors
from flowd.locate import toml_index, toml_line
from flowd.target import TargetError, parse_target
from flowd.validation import LineOf, config_errors, problems

if TYPE_CHECKING:
    from flowd.schedule import Schedule

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


def _name(value: str) -> str:
    # A sentence instead of pydantic's "String should match pattern '^[A-Za-z0-9]...'".
    if not re.fullmatch(NAME_PATTERN, value):
        raise ValueError("a name is 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit")
    return value


Name = Annotated[str, AfterValidator(_name)]


def _target(value: str | None) -> str | None:
    """An `output` names a storage and a container (lake:assets), checked like a rule's target."""
    if value is not None:
        try:
            parse_target(value)
        except TargetError as exc:
            raise ValueError(str(exc)) from None
    return value


Output = Annotated[str | None, AfterValidator(_target)]


def _file_globs(value: list[str]) -> list[str]:
    for pattern in value:
        if not pattern or "/" in pattern:
            raise ValueError(f"pattern {pattern!r} must be a non-empty file-name glob without '/'")
    return value


FileGlobs = Annotated[list[str], AfterValidator(_file_globs)]


def _size(value: object) -> int:
    from flowd.units import parse_size

    return parse_size(value)
DEFAULT_IGNORE = ["*.part", "*.tmp", "*.crdownload", "~$*", ".*"]


class Core(BaseSettings):
    """[flowd]: FLOWD_DATA_DIR, FLOWD_DATABASE_URL, FLOWD_WORKERS ... override the file."""

    model_config = SettingsConfigDict(env_prefix="FLOWD_", extra="forbid", frozen=True)

    data_dir: str = "var"
    database_url: str = "sqlite:///var/flowd.db"
    workers: int = Field(4, ge=1, le=64)
    rules: list[str] = Field(default_factory=lambda: ["rules/*.yaml"])
    batch_size: int = Field(64, ge=1, le=1000)
    lease_seconds: float = Field(60, ge=5)
    rescan_seconds: float = Field(300, ge=0)  # reconciliation rescan; 0 = only at start
    retry_base_seconds: float = Field(2, gt=0)
    retry_max_seconds: float = Field(300, gt=0)
    node_name: str = Field(default_factory=socket.gethostname)
    log_level: Literal["TRACE", "DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        try:
            url = make_url(value)
        except ArgumentError:
            raise ValueError("not a database URL; use sqlite:///path/flowd.db or "
                             "postgresql+psycopg://user@host/db") from None
        if url.get_backend_name() not in ("sqlite", "postgresql"):
            raise ValueError(f"flowd runs on SQLite or PostgreSQL, not {url.get_backend_name()}")
        return value

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment wins over the file: that is how containers and systemd drop-ins override.
        return (env_settings, init_settings)


class LocalStorageSpec(BaseModel):
    """kind = "local": one folder per container under root."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["local"]
    root: str
    tenants: list[Name] | None = None  # None: open to every tenant
    fsync: bool = True  # make outputs durable before a source is removed
    # Hard-link a source that is about to be removed instead of copying it, when on the same file system.
    link: bool = True


class AdlsStorageSpec(BaseModel):
    """kind = "adls": an Azure storage account (ADLS Gen2 or plain Blob), written through the Blob API.

    Secrets never sit in this file: each credential option names the environment variable holding it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["adls"]
    account_url: str | None = None  # https://ACCOUNT.blob.core.windows.net
    connection_string_env: str | None = None
    account_key_env: str | None = None
    sas_token_env: str | None = None
    credential: Literal["default"] | None = None  # azure-identity's DefaultAzureCredential
    container: str | None = None  # pin one container; else a key's first segment names it
    create_containers: bool = True
    tenants: list[Name] | None = None  # None: open to every tenant
    max_concurrency: int = Field(4, ge=1, le=64)
    block_size: int = Field(8 * 1024 * 1024, ge=64 * 1024, le=4000 * 1024 * 1024)

    @field_validator("container")
    @classmethod
    def _container(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"(?=.{3,63}$)[a-z0-9]+(-[a-z0-9]+)*", value):
            raise ValueError("a container name is 3-63 lowercase letters, digits and single hyphens, "
                             "starting and ending with a letter or digit")
        return value

    @model_validator(mode="after")
    def _credentials(self) -> AdlsStorageSpec:
        given = [k for k in ADLS_CREDENTIALS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"set exactly one of {', '.join(ADLS_CREDENTIALS)}"
                             + (f" (got {', '.join(given)})" if given else ""))
        if given[0] != "connection_string_env" and not self.account_url:
            raise ValueError(f"{given[0]} needs account_url (https://ACCOUNT.blob.core.windows.net)")
        return self


ADLS_CREDENTIALS = ("connection_string_env", "account_key_env", "sas_token_env", "credential")
STORAGE_KINDS: dict[str, type[BaseModel]] = {"local": LocalStorageSpec, "adls": AdlsStorageSpec}
StorageSpec = Annotated[LocalStorageSpec | AdlsStorageSpec, Field(discriminator="kind")]


class AzureQueueEventsSpec(BaseModel):
    """[events.NAME] kind = "azure_queue": Event Grid blob events (BlobCreated, BlobDeleted) delivered to an
    Azure Storage Queue, announcing assets in `storage` that rules with `on: [{storage_events: NAME}]` process.

    The queue's account is the storage's unless a credential option is given here."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["azure_queue"]
    storage: Name
    queue: str
    tenant: Name = "default"
    account_url: str | None = None  # https://ACCOUNT.queue.core.windows.net
    connection_string_env: str | None = None
    account_key_env: str | None = None
    sas_token_env: str | None = None
    credential: Literal["default"] | None = None
    # A message being handled is invisible to other readers this long; longer than any intake step.
    visibility_seconds: int = Field(300, ge=5, le=7 * 24 * 3600)
    # A message that failed this many deliveries is moved to the poison queue with the reason.
    max_attempts: int = Field(5, ge=1, le=1000)
    poison_queue: str | None = None  # default: QUEUE-poison
    poll_seconds: float = Field(2, ge=0.1, le=300)  # the longest wait between polls of an empty queue
    # Blobs flowd itself wrote (its outputs, in-place edits) announce themselves too: skipping them is what
    # keeps a rule that writes into the watched container from feeding itself.
    own_writes: Literal["skip", "process"] = "skip"

    @field_validator("queue", "poison_queue")
    @classmethod
    def _queue(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"(?=.{3,63}$)[a-z0-9]+(-[a-z0-9]+)*", value):
            raise ValueError("a queue name is 3-63 lowercase letters, digits and single hyphens, "
                             "starting and ending with a letter or digit")
        return value

    @model_validator(mode="after")
    def _credentials(self) -> AzureQueueEventsSpec:
        given = [k for k in ADLS_CREDENTIALS if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"set at most one of {', '.join(ADLS_CREDENTIALS)} (got {', '.join(given)}); "
                             "with none, the storage's own account and credential are used")
        if given and given[0] != "connection_string_env" and not self.account_url:
            raise ValueError(f"{given[0]} needs account_url (https://ACCOUNT.queue.core.windows.net)")
        return self

    @property
    def poison(self) -> str:
        return self.poison_queue or f"{self.queue[:56]}-poison"


class HotFolder(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Name
    tenant: Name = "default"
    path: str
    output: Output = None
    recursive: bool = True
    stable_seconds: float = Field(2, ge=0, le=86400)
    ignore: FileGlobs = Field(default_factory=lambda: list(DEFAULT_IGNORE))
    after: str = "delete"
    unmatched: str = "leave"
    errors: str = "hotfolders/error"
    poll_seconds: float = Field(0, ge=0, le=3600)
    enabled: bool = True
    # A JPEG without its end marker, a PNG without IEND ...: still being written. It waits this long for
    # the rest (re-checked each stability window), then it is quarantined as truncated. 0: never checked.
    incomplete_seconds: float = Field(300, ge=0, le=86400)
    # When its files are processed: "always" (on arrival), "once" (what is there at the next start, then the
    # folder is disabled, persisted), or a schedule ({every = "30s"}, {cron = "15 * * * *", timezone = ...})
    # at which the files waiting in it are processed as one sweep.
    run: str | dict[str, object] = "always"
    extract_zip: bool | Literal["subfolder"] = False  # ZIP entries become assets (beside it, or in NAME/)
    zip_max_bytes: Annotated[int, BeforeValidator(_size)] = 4 * 1024**3  # all entries, uncompressed
    zip_max_entries: int = Field(10_000, ge=1, le=1_000_000)
    zip_max_ratio: float = Field(200, ge=2, le=100_000)  # uncompressed / compressed, per entry
    jrf: bool = False  # files starting with [JRF] are job requests naming the file to process
    prf: bool = False  # write a .prf result beside each job request
    # A request naming M_OUTPUT_FILE: "both" keeps the output where the rule stored it too; "requested" leaves
    # it at the requested path only, as Color Factory does.
    jrf_output: Literal["both", "requested"] = "both"
    remove_empty_folders: bool = False  # subfolders left empty once their files are processed are removed

    @field_validator("run")
    @classmethod
    def _run(cls, value: str | dict[str, object]) -> str | dict[str, object]:
        if isinstance(value, str):
            if value in ("always", "once"):
                return value
            raise ValueError('expected "always", "once", {every = "30s"} or {cron = "15 * * * *"}')
        from flowd.schedule import parse_schedule

        parse_schedule(value)  # ValueError says what is wrong and what is allowed
        return value

    @property
    def schedule(self) -> Schedule | None:
        """The folder's run schedule; None for "always" and "once"."""
        if isinstance(self.run, str):
            return None
        from flowd.schedule import parse_schedule

        return parse_schedule(self.run)

    @model_validator(mode="after")
    def _prf(self) -> HotFolder:
        if self.prf and not self.jrf:
            raise ValueError("prf = true writes results of job requests: it needs jrf = true")
        if "jrf_output" in self.model_fields_set and not self.jrf:
            raise ValueError("jrf_output says where job requests' outputs stay: it needs jrf = true")
        return self

    @field_validator("after")
    @classmethod
    def _after(cls, value: str) -> str:
        if value in ("delete", "keep") or (value.startswith("move:") and len(value) > 5):
            return value
        raise ValueError("must be delete, keep or move:<folder>")



FTP_TEMP_NAMES = ["*.part", "*.filepart", ".in.*", "*.tmp"]


class FtpGroup(BaseModel):
    """[[ftp.groups]]: users of one group share one root, where their uploads land: a hot folder by name
    (its rules run, plus rules `on: [{ftp: GROUP}]`), or, without one, a staging folder of the group's own
    whose uploads only `{ftp: GROUP}` rules see (the source is deleted once they are done)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Name
    tenant: Name = "default"
    hotfolder: Name | None = None
    path: str | None = None  # the staging folder; default: DATA_DIR/ftp/NAME
    output: Output = None  # a staging group's default target ({output} in its rules)
    errors: str = "hotfolders/error"  # where a staging group's quarantined uploads go

    @model_validator(mode="after")
    def _landing(self) -> FtpGroup:
        if self.hotfolder is not None and self.path is not None:
            raise ValueError("set hotfolder (uploads land in that hot folder) or path (a staging folder), not both")
        return self


def _port_range(value: str | None) -> str | None:
    if value is None:
        return value
    match = re.fullmatch(r"\s*(\d{1,5})\s*-\s*(\d{1,5})\s*", value)
    if not match or not (1024 <= int(match.group(1)) <= int(match.group(2)) <= 65535):
        raise ValueError("a passive port range is FIRST-LAST with 1024 <= FIRST <= LAST <= 65535, "
                         "e.g. \"60000-60100\"")
    return value


class FtpSettings(BaseModel):
    """[ftp]: the embedded FTP/FTPS server. Absent: no server."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    listen: str = "0.0.0.0:2121"
    passive_ports: Annotated[str | None, AfterValidator(_port_range)] = None  # "60000-60100"
    masquerade_address: str | None = None  # the public address PASV replies name, behind NAT
    banner: str = "flowd FTP server ready."
    tls_cert: str | None = None  # PEM certificate (chain); tls_key defaults to the same file
    tls_key: str | None = None
    # None: required whenever a certificate is configured (passwords never cross the network in clear).
    require_tls: bool | None = None
    idle_timeout: float = Field(300, ge=5, le=86400)  # seconds between commands
    data_timeout: float = Field(120, ge=5, le=86400)  # seconds a transfer may stall
    max_connections: int = Field(256, ge=1, le=10000)
    max_connections_per_ip: int = Field(16, ge=1, le=10000)
    partial: Literal["delete", "keep"] = "delete"  # an aborted or cut-short upload: removed, or kept for REST/APPE
    keep_partial_hours: float = Field(24, gt=0, le=24 * 365)  # kept partial uploads older than this are removed
    temp_names: FileGlobs = Field(default_factory=lambda: list(FTP_TEMP_NAMES))  # processed when renamed away
    login_failure_delay: float = Field(2, ge=0, le=60)  # seconds before a wrong password is answered
    ban_after: int = Field(5, ge=1, le=1000)  # failed logins from one address within ban_seconds ...
    ban_seconds: float = Field(600, ge=1, le=7 * 86400)  # ... ban it this long
    groups: list[FtpGroup] = Field(default_factory=list)

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535 or not host.strip("[]"):
            raise ValueError("listen is HOST:PORT, e.g. \"0.0.0.0:2121\" or \"[::]:2121\"")
        return value


    @model_validator(mode="after")
    def _tls(self) -> FtpSettings:
        if self.tls_key and not self.tls_cert:
            raise ValueError("tls_key needs tls_cert")
        if self.require_tls and not self.tls_cert:
            raise ValueError("require_tls = true needs tls_cert (and tls_key unless the certificate file holds it)")
        return self

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])

    @property
    def tls_required(self) -> bool:
        return bool(self.tls_cert) if self.require_tls is None else self.require_tls

    def ports(self) -> list[int] | None:
        if self.passive_ports is None:
            return None
        first, _, last = self.passive_ports.partition("-")
        return list(range(int(first), int(last) + 1))


class MetadataSettings(BaseModel):
    """[metadata]: the site's field numbers and names."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    # A Fotoware MetadataConfiguration.xml: adds fields and overrides the default numbers/XMP names.
    configuration: str | None = None


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    flowd: Core = Field(default_factory=lambda: Core())
    metadata: MetadataSettings = Field(default_factory=MetadataSettings)
    storage: dict[Name, StorageSpec] = Field(default_factory=dict)
    hotfolders: list[HotFolder] = Field(default_factory=list)
    events: dict[Name, AzureQueueEventsSpec] = Field(default_factory=dict)
    ftp: FtpSettings | None = None
    # Windows and UNC path prefixes (in job request files) -> local folders: '\\\\cfserver\\images' = "/srv/images"
    path_map: dict[str, str] = Field(default_factory=dict)
    # Unique hot folder names are checked in cross_check, which knows the line of the second one.

    @field_validator("path_map")
    @classmethod
    def _path_map(cls, value: dict[str, str]) -> dict[str, str]:
        for prefix, local in value.items():
            if not re.match(r"^(\\\\|//)[^\\/]+[\\/][^\\/]+|^[A-Za-z]:([\\/]|$)", prefix):
                raise ValueError(f"{prefix!r} is not a Windows path prefix: write a UNC share "
                                 "('\\\\server\\share\\folder') or a drive path ('D:\\CF'), in single quotes")
            if not local.strip():
                raise ValueError(f"{prefix!r} maps to an empty path")
        return value


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

    table = data.pop("flowd", {})
    if not isinstance(table, dict):  # `flowd = 1`: Core(**table) would be a TypeError
        raise ConfigErrors([ConfigError(shown, line_of(("flowd",)), "flowd",
                                        "expected a [flowd] table of key = value lines", table)])
    try:
        core = Core(**table)
    except ValidationError as exc:
        raise ConfigErrors(_core_errors(exc, shown, line_of)) from None
    except SettingsError as exc:  # FLOWD_RULES=rules/*.yaml: a list from the environment must be JSON
        raise ConfigErrors([_env_parse_error(exc, shown)]) from None
    if isinstance(data.get("hotfolders"), dict):  # pydantic would only say "Input should be a valid list"
        raise ConfigErrors([ConfigError(shown, line_of(("hotfolders",)), "hotfolders",
                                        "hot folders are a list: start each one with [[hotfolders]] (two brackets)",
                                        data["hotfolders"])])
    try:
        settings = Settings(flowd=core, **data)
    except ValidationError as exc:
        raise ConfigErrors(_settings_errors(exc, shown, line_of)) from None
    config = Config(settings, path.resolve(), path.resolve().parent, hashlib.sha256(raw).hexdigest())
    errors = cross_check(config, shown, line_of)
    if errors:
        raise ConfigErrors(errors)
    return config


def cross_check(config: Config, shown: str, line_of: LineOf) -> list[ConfigError]:
    """What one field cannot know alone: storages named by outputs, folders that would feed each other."""
    find = line_of
    errors: list[ConfigError] = []
    s = config.settings
    roots = {name: config.path(spec.root).resolve() for name, spec in s.storage.items()
             if isinstance(spec, LocalStorageSpec)}  # only local storages have a root on this machine
    # By position, not name: with a duplicate name, a dict would lose a folder and report odd overlaps.
    folders = [config.path(hf.path).resolve() for hf in s.hotfolders]
    first: dict[str, int] = {}
    for i, hf in enumerate(s.hotfolders):
        loc = ("hotfolders", i)
        if hf.name in first:
            j = first[hf.name]
            errors.append(ConfigError(shown, find((*loc, "name")), f"hotfolders.{i}.name",
                                      f"hot folder name '{hf.name}' is already used by hotfolders.{j} "
                                      f"(line {find(('hotfolders', j, 'name'))}); names must be unique", hf.name))
        first.setdefault(hf.name, i)
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
        own = folders[i]
        for key in ("errors", "unmatched", "after"):
            value = getattr(hf, key)
            if value in ("leave", "delete", "keep"):
                continue
            target = config.path(value.removeprefix("move:")).resolve()
            if hf.recursive and _inside(target, own) or target == own:
                errors.append(ConfigError(shown, find((*loc, key)), f"hotfolders.{i}.{key}",
                                          "must not be inside the hot folder it serves (files would loop)", value))
                continue
            # Another folder's drop zone would take our errors/unknowns as new work.
            for j, peer in enumerate(s.hotfolders):
                if j != i and (target == folders[j] or peer.recursive and _inside(target, folders[j])):
                    errors.append(ConfigError(shown, find((*loc, key)), f"hotfolders.{i}.{key}",
                                              f"must not be inside hot folder '{peer.name}' (its files would be "
                                              "processed again)", value))
                    break
        for other, root in roots.items():
            if own == root or _inside(own, root) or _inside(root, own):
                errors.append(ConfigError(shown, find((*loc, "path")), f"hotfolders.{i}.path",
                                          f"overlaps the root of storage '{other}'", hf.path))
    for name, ev in s.events.items():
        where = ("events", name)
        if len(name) > 48:  # a job names its source "@NAME", within the 64 characters a source name has
            errors.append(ConfigError(shown, find(where), f"events.{name}", "an events name is at most 48 characters",
                                      name))
        spec = s.storage.get(ev.storage)
        if spec is None:
            errors.append(ConfigError(shown, find((*where, "storage")), f"events.{name}.storage",
                                      f"no storage named '{ev.storage}'", ev.storage,
                                      ", ".join(sorted(s.storage)) or "(no [storage.NAME] tables defined)"))
        elif not isinstance(spec, AdlsStorageSpec):
            errors.append(ConfigError(shown, find((*where, "storage")), f"events.{name}.storage",
                                      f"storage '{ev.storage}' is kind '{spec.kind}'; Azure queue events "
                                      "announce blobs of an adls storage", ev.storage,
                                      ", ".join(n for n, st in s.storage.items() if isinstance(st, AdlsStorageSpec))
                                      or "(no adls storage defined)"))
        elif spec.tenants is not None and ev.tenant not in spec.tenants:
            errors.append(ConfigError(shown, find((*where, "tenant")), f"events.{name}.tenant",
                                      f"storage '{ev.storage}' is not open to tenant '{ev.tenant}'", ev.tenant,
                                      ", ".join(spec.tenants)))
        elif (ev.connection_string_env is None and ev.account_url is None and spec.connection_string_env is None
              and spec.account_url is not None and ".blob." not in spec.account_url):
            errors.append(ConfigError(shown, find((*where, "queue")), f"events.{name}",
                                      f"cannot tell the queue service of storage '{ev.storage}' from its account_url "
                                      f"{spec.account_url}; set account_url here "
                                      "(https://ACCOUNT.queue.core.windows.net) with a credential option"))
    xml = s.metadata.configuration
    if xml and not config.path(xml).is_file():
        errors.append(ConfigError(shown, find(("metadata", "configuration")), "metadata.configuration",
                                  f"no such file: {config.path(xml)}", xml,
                                  "the path of a MetadataConfiguration.xml, relative to this file"))
    if s.path_map:
        from flowd.jrf import PathMap

        try:  # the same construction the job requests use: what passes here cannot fail there
            PathMap({k: str(config.path(v)) for k, v in s.path_map.items()})
        except ValueError as exc:
            errors.append(ConfigError(shown, find(("path_map",)), "path_map", str(exc)))
    if s.ftp is not None:
        errors += _check_ftp(config, shown, find, folders, roots)
    for i, a in enumerate(s.hotfolders):
        for j in range(i + 1, len(s.hotfolders)):
            b, pa, pb = s.hotfolders[j], folders[i], folders[j]
            if a.name == b.name:
                continue  # a copied [[hotfolders]] block: the duplicate name already points at it
            if pa == pb or (a.recursive and _inside(pb, pa)) or (b.recursive and _inside(pa, pb)):
                errors.append(ConfigError(shown, find(("hotfolders", i, "path")), f"hotfolders.{i}.path",
                                          f"hot folders '{a.name}' and '{b.name}' overlap; one file would be two jobs",
                                          a.path))
    return errors


def ftp_staging(config: Config, group: FtpGroup) -> Path | None:
    """A staging group's folder (absolute); None for a group that lands in a hot folder."""
    if group.hotfolder is not None:
        return None
    return config.path(group.path).resolve() if group.path else (config.data_dir / "ftp" / group.name).resolve()


def _check_ftp(config: Config, shown: str, find: LineOf, folders: list[Path], roots: dict[str, Path]) -> list[ConfigError]:
    """Groups name real hot folders of their own tenant; staging folders overlap nothing; TLS files load."""
    s = config.settings
    assert s.ftp is not None
    errors: list[ConfigError] = []
    by_name = {hf.name: hf for hf in s.hotfolders}
    seen: dict[str, int] = {}
    for i, group in enumerate(s.ftp.groups):
        loc = ("ftp", "groups", i)
        if group.name in seen:
            errors.append(ConfigError(shown, find((*loc, "name")), f"ftp.groups.{i}.name",
                                      f"FTP group name '{group.name}' is already used by ftp.groups.{seen[group.name]}; "
                                      "names must be unique", group.name))
        seen.setdefault(group.name, i)
        if len(group.name) > 60:  # its uploads' source is "ftp:NAME", within a source name's 64 characters
            errors.append(ConfigError(shown, find((*loc, "name")), f"ftp.groups.{i}.name",
                                      "an FTP group name is at most 60 characters", group.name))
        if group.hotfolder is not None:
            hf = by_name.get(group.hotfolder)
            if hf is None:
                errors.append(ConfigError(shown, find((*loc, "hotfolder")), f"ftp.groups.{i}.hotfolder",
                                          "no hot folder has this name", group.hotfolder,
                                          ", ".join(sorted(by_name)) or "(no [[hotfolders]] defined)"))
            elif hf.tenant != group.tenant:
                errors.append(ConfigError(shown, find((*loc, "tenant")), f"ftp.groups.{i}.tenant",
                                          f"hot folder '{hf.name}' belongs to tenant '{hf.tenant}'; a group's uploads "
                                          "stay within its own tenant", group.tenant, hf.tenant))
            for key in ("output", "path"):
                if getattr(group, key) is not None:
                    errors.append(ConfigError(shown, find((*loc, key)), f"ftp.groups.{i}.{key}",
                                              f"{key} is for a staging group; uploads into hot folder "
                                              f"'{group.hotfolder}' follow that folder's settings", getattr(group, key)))
            continue
        staging = ftp_staging(config, group)
        assert staging is not None
        for j, folder in enumerate(folders):
            if staging == folder or _inside(staging, folder) or _inside(folder, staging):
                errors.append(ConfigError(shown, find((*loc, "path")) or find(loc), f"ftp.groups.{i}.path",
                                          f"the staging folder {staging} overlaps hot folder "
                                          f"'{s.hotfolders[j].name}'; to serve that folder, set hotfolder = "
                                          f"\"{s.hotfolders[j].name}\" instead", group.path))
        for other, root in roots.items():
            if staging == root or _inside(staging, root) or _inside(root, staging):
                errors.append(ConfigError(shown, find((*loc, "path")) or find(loc), f"ftp.groups.{i}.path",
                                          f"the staging folder {staging} overlaps the root of storage '{other}'",
                                          group.path))
        if _inside(config.path(group.errors).resolve(), staging) or config.path(group.errors).resolve() == staging:
            errors.append(ConfigError(shown, find((*loc, "errors")), f"ftp.groups.{i}.errors",
                                      "must not be inside the staging folder it serves (files would loop)", group.errors))
        if group.output:
            storage = parse_target(group.output).storage
            if storage not in s.storage:
                errors.append(ConfigError(shown, find((*loc, "output")), f"ftp.groups.{i}.output",
                                          f"no storage named '{storage}'", group.output,
                                          ", ".join(sorted(s.storage)) or "(no [storage.NAME] tables defined)"))
    ftp = s.ftp
    if ftp.tls_cert:
        where = find(("ftp", "tls_cert"))
        cert, key_file = config.path(ftp.tls_cert), config.path(ftp.tls_key or ftp.tls_cert)
        import ssl

        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key_file)
        except FileNotFoundError as exc:
            errors.append(ConfigError(shown, where, "ftp.tls_cert", f"no such file: {exc.filename}", ftp.tls_cert))
        except (OSError, ssl.SSLError) as exc:
            errors.append(ConfigError(shown, where, "ftp.tls_cert",
                                      f"cannot load the certificate and key ({cert}, {key_file}): {exc}", ftp.tls_cert,
                                      "a PEM certificate (chain) and its unencrypted private key"))
    return errors


def _settings_errors(exc: ValidationError, shown: str, line_of: LineOf) -> list[ConfigError]:
    """pydantic puts a storage's kind into the location (storage.lake.adls.account_url) and reports an unknown
    kind against the whole table; say it as written (storage.lake.account_url, storage.lake.kind)."""
    rest: list[InitErrorDetails] = []
    kinds: dict[tuple[str, str], list[InitErrorDetails]] = {}
    errors: list[ConfigError] = []
    for err in exc.errors(include_url=False):
        loc = err["loc"]
        detail: InitErrorDetails = {"type": err["type"], "loc": loc, "input": err["input"]}
        if "ctx" in err:
            detail["ctx"] = err["ctx"]
        allowed = ", ".join(f"'{k}'" for k in STORAGE_KINDS)
        if len(loc) == 2 and loc[0] == "storage" and err["type"] == "union_tag_invalid":
            errors.append(ConfigError(shown, line_of([*loc, "kind"]), f"storage.{loc[1]}.kind",
                                      "not one of the allowed values", err.get("ctx", {}).get("tag"), allowed))
        elif len(loc) == 2 and loc[0] == "storage" and err["type"] == "union_tag_not_found":
            errors.append(ConfigError(shown, line_of(loc), f"storage.{loc[1]}.kind", "this key is required",
                                      allowed=allowed))
        elif len(loc) >= 3 and loc[0] == "storage" and str(loc[2]) in STORAGE_KINDS:
            kinds.setdefault((str(loc[1]), str(loc[2])), []).append({**detail, "loc": loc[3:]})
        else:
            rest.append(detail)
    for (name, kind), details in kinds.items():
        sub = ValidationError.from_exception_data(STORAGE_KINDS[kind].__name__, details)
        errors += config_errors(sub, shown, line_of, STORAGE_KINDS[kind], prefix=("storage", name))
    if not errors:
        return config_errors(exc, shown, line_of, Settings)  # nothing about storages: exactly as pydantic said
    if rest:
        errors += config_errors(ValidationError.from_exception_data("Settings", rest), shown, line_of, Settings)
    return errors


def _core_errors(exc: ValidationError, shown: str, line_of: LineOf) -> list[ConfigError]:
    """[flowd] errors. A value from a FLOWD_* variable names the variable: the file's line is not the culprit."""
    out = []
    for problem in problems(exc, Core):
        field = str(problem.loc[0]) if problem.loc else ""
        var = _env_name(field) if field in Core.model_fields else None
        if var is not None:
            out.append(ConfigError(shown, None, f"environment {var}", problem.message, problem.got, problem.allowed,
                                   has_got=problem.has_got))
        else:
            loc = ["flowd", *problem.loc]
            out.append(ConfigError(shown, line_of(loc), ".".join(map(str, loc)), problem.message, problem.got,
                                   problem.allowed, has_got=problem.has_got))
    return out


def _env_parse_error(exc: SettingsError, shown: str) -> ConfigError:
    match = re.search(r'field "([^"]+)"', str(exc))
    var = _env_name(match.group(1)) if match else None
    if var is None:
        return ConfigError(shown, None, "environment", str(exc))
    return ConfigError(shown, None, f"environment {var}", 'not valid JSON; a list is written like ["rules/*.yaml"]',
                       os.environ[var])


def _env_name(field: str) -> str | None:
    # pydantic-settings matches FLOWD_* case-insensitively; show the variable as it is spelt.
    wanted = f"{Core.model_config.get('env_prefix', '')}{field}".upper()
    return next((name for name in os.environ if name.upper() == wanted), None)


def _inside(child: Path, parent: Path) -> bool:
    # Compared by parts (cached on each Path): is_relative_to builds a new path per call, and an imported
    # 64-folder, 320-storage site made 53,000 of these calls, most of its `flowd check` time.
    c, p = child.parts, parent.parts
    return len(c) > len(p) and c[:len(p)] == p


def _toml_error_line(message: str) -> int | None:
    match = re.search(r"line (\d+)", message)
    return int(match.group(1)) if match else None
