"""`flowd migrate colorfactory EXPORT.xml --out DIR ...` and `flowd migrate verify DIR SAMPLES/`."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import time
from pathlib import Path

from flowd.errors import ConfigError, ConfigErrors, FlowdError

STAND_IN = ("DefaultEndpointsProtocol=https;AccountName=standin;AccountKey=c3RhbmQtaW4=;"
            "EndpointSuffix=core.windows.net")  # never used to connect
IMPORTED_MARK = "by `flowd migrate colorfactory`"  # in the first line of every file the importer writes


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("migrate", help="Import another tool's configuration (Color Factory), or verify one.",
                       description="Import another tool's configuration (Color Factory), or verify one.")
    kinds = p.add_subparsers(dest="kind", required=True)
    cf = kinds.add_parser(
        "colorfactory", help="Turn a Color Factory configuration export into config.toml, rules/ and MIGRATION.md.",
        description="Turn a Color Factory configuration export into DIR/config.toml, DIR/rules/*.yaml and "
                    "DIR/MIGRATION.md (every setting: what it became, or why not), then check the result.")
    cf.add_argument("export", help="the exported configuration (XML)")
    cf.add_argument("--out", required=True, help="the folder to write (created; files the importer writes are "
                                                 "replaced, nothing else is touched)")
    cf.add_argument("--map", action="append", default=[], metavar="WINDOWS_PATH=TARGET",
                    help="map a Windows or UNC path prefix to a local folder (relative to --out) or to a storage "
                         "target: --map 'D:\\CF\\AP\\In=hotfolders/ap-in' --map 'D:\\CF\\AP\\Web=lake:web' (repeat)")
    cf.add_argument("--storage", action="append", default=[], metavar="NAME=adls|local",
                    help="the kind of a storage named in a --map target (default: local, under --out/var/storage)")
    cf.add_argument("--metadata-config", help="the site's MetadataConfiguration.xml: field numbers are resolved "
                                              "through it (copied next to config.toml)")
    cf.add_argument("--timezone", help="the time zone of the Color Factory server, for scheduled channels "
                                       "(e.g. Europe/Oslo; default: this machine's)")
    cf.set_defaults(func=cmd_colorfactory)
    v = kinds.add_parser("verify", help="Run an imported configuration in simulate mode over sample files.",
                         description="Run the rules of DIR/config.toml in simulate mode over sample files and "
                                     "print, per file and channel, the outputs, formats, sizes and metadata changes.")
    from flowd.migrate.verify import add_arguments

    add_arguments(v)
    v.set_defaults(func=cmd_verify)


def cmd_verify(args: argparse.Namespace) -> int:
    from flowd.migrate.verify import verify

    return verify(Path(args.dir), Path(args.samples), as_json=args.json, hotfolder=args.hotfolder)


def cmd_colorfactory(args: argparse.Namespace) -> int:
    from flowd.migrate.colorfactory import Importer, Options
    from flowd.migrate.export import read
    from flowd.migrate.xmlsafe import read_export

    started = time.perf_counter()
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise FlowdError(f"--out {out}: exists and is not a folder")
    if args.timezone:
        _check_zone(args.timezone)
    fields = _fields(args.metadata_config)
    export = read(read_export(args.export))
    tty = sys.stderr.isatty()

    def progress(done: int, total: int) -> None:
        if tty:
            width = 30
            filled = width * done // max(total, 1)
            print(f"\r  importing [{'#' * filled}{'.' * (width - filled)}] {done}/{total} channels",
                  end="" if done < total else "\n", file=sys.stderr, flush=True)

    meta_name = Path(args.metadata_config).name if args.metadata_config else None
    options = Options(args.export, str(out), args.map, args.storage, meta_name, args.timezone, progress)
    result = Importer(export, options, fields).run()
    out.mkdir(parents=True, exist_ok=True)
    (out / "rules").mkdir(exist_ok=True)
    notes = _stale(out, result.files)
    for rel, text in result.files.items():
        _write(out / rel, text)
    if args.metadata_config:
        shutil.copyfile(args.metadata_config, out / meta_name)  # type: ignore[operator]
    checked = _check(out / "config.toml")
    report = result.report
    report.checked = checked[1]
    report.files.append("MIGRATION.md")
    _write(out / "MIGRATION.md", report.render())
    counts = report.counts()
    elapsed = time.perf_counter() - started
    print(f"{args.export}: {len(export.channels)} channel(s), {len(export.purges)} purging channel(s) -> {out} "
          f"in {elapsed:.2f} s")
    print(f"  settings: {counts.get('mapped', 0)} mapped, {counts.get('approximated', 0)} approximated, "
          f"{counts.get('not carried', 0)} not carried; {len(report.warnings)} warning(s): see {out / 'MIGRATION.md'}")
    print(f"  flowd check: {checked[1]}")
    for note in notes:
        print(f"  {note}")
    if not checked[0]:
        for line in checked[2]:
            print(f"    {line}", file=sys.stderr)
        return 1
    return 0


def _stale(out: Path, files: dict[str, str]) -> list[str]:
    """A second import into the same folder replaces the first: rule files an earlier import wrote and this
    one does not are removed (flowd would load them); rule files written by hand stay, and are named."""
    notes = []
    for path in sorted((out / "rules").glob("*.yaml")):
        rel = f"rules/{path.name}"
        if rel in files:
            continue
        try:
            head = path.read_text(encoding="utf-8", errors="replace")[:400]
        except OSError:
            continue
        if IMPORTED_MARK in head:
            path.unlink()
            notes.append(f"removed {rel} (written by an earlier import, not by this one)")
        else:
            notes.append(f"{rel} was not written by the importer: flowd loads it with the imported rules")
    return notes


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _check(config: Path) -> tuple[bool, str, list[str]]:
    """`flowd check` on the result, as the admin will run it."""
    from flowd.runtime import load_runtime

    # The secrets of generated ADLS storages are set later, on the machine that runs flowd: a stand-in lets
    # the check judge everything else (it never connects).
    missing = [name for name in re.findall(r'connection_string_env = "([A-Z0-9_]+)"', config.read_text())
               if name not in os.environ]
    for name in missing:
        os.environ[name] = STAND_IN
    try:
        rt = load_runtime(str(config))
    except ConfigErrors as exc:
        return False, (f"{len(exc.errors)} error(s) (below). Folders of the export that collide in flowd (a hot "
                       "folder inside another or inside an output) need separate local folders: --map the "
                       "colliding path on its own (the longest prefix wins)"), [e.render() for e in exc.errors]
    except FlowdError as exc:
        return False, f"failed: {exc}", [str(exc)]
    finally:
        for name in missing:
            os.environ.pop(name, None)
    note = "".join(f"; set {name} before flowd run" for name in missing)
    return True, (f"OK ({len(rt.config.settings.hotfolders)} hot folder(s), {len(rt.storages)} storage(s), "
                  f"{len(rt.rules.rules)} rule(s) in {len(rt.rules.files)} file(s)){note}"), []


def _fields(path: str | None) -> object:
    from flowd.metadata.fields import DEFAULT_FIELDS, FieldTable

    if not path:
        return DEFAULT_FIELDS
    p = Path(path)
    if not p.is_file():
        raise FlowdError(f"--metadata-config {path}: no such file")
    try:
        return FieldTable.load(p)
    except (ConfigError, ConfigErrors) as exc:
        raise FlowdError(f"--metadata-config {path}: {exc}") from None


def _check_zone(name: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise FlowdError(f"--timezone {name!r}: not a time zone name such as Europe/Oslo or America/New_York") from None
