#!/usr/bin/env python3
"""flowd image benchmarks: setting metadata on many JPEGs, and making web derivatives of big JPEGs.

    .venv/bin/python benchmarks/images.py                       # 1,000 JPEGs + 50 x 24 MP, rewrites README.md
    .venv/bin/python benchmarks/images.py --jpegs 100 --big 5   # a quick iteration
    .venv/bin/python benchmarks/images.py --only meta           # one part (the README is then left alone)

(a) Setting 5 fields (copyright 116, credit 110, source 115, keywords 25 appended, headline 105) in both
IPTC-IIM and XMP on N deterministic 1200x800 JPEGs (q85, noise + gradient, a little existing IPTC/XMP/EXIF
written by one exiftool process). Contenders, each on a fresh copy of the corpus, outputs in a separate
folder: exiftool (one process over the folder, `-fast`, `-o OUT/`), a bare pyexiv2 loop (the floor) and
flowd (`flowd run --until-idle`, rule set_metadata + move). Checked: every output exists; in a sample of
about 20, exiftool -j shows the five fields in IPTC and in XMP (keywords appended to the existing ones),
the other existing fields are kept and the compressed image data (SOS to EOI) is byte-identical.

(b) M deterministic 6000x4000 JPEGs (q90, gradients + shapes + noise; embedded profile: half sRGB, a
quarter Display P3, a quarter none)
to sRGB, fit in 2048x2048, unsharp mask (sigma 0.8, amount 80 %, threshold 2/255), JPEG q85, one file
at a time: ImageMagick 6 `convert` (one process per file; again with a jpeg:size shrink-on-load hint),
a bare pyvips script (the floor: thumbnail + gaussblur unsharp + jpegsave, one process) and flowd (rule
convert + move). Checked: every output is a JPEG that decodes, 3-band sRGB, with its long side 2048, and
for the Display P3 sources close in colour to a plain libvips conversion (so not merely relabelled).

Timing and memory with run.py's `measure`: each process timed from spawn to exit, peak RSS the larger
of psutil samples of the process tree every 10 ms and wait4's ru_maxrss; for ImageMagick the seconds
and CPU are summed over its processes and the peak RSS is the highest of them. `measure` runs in a
small helper process (`--measure-child`): a child's ru_maxrss includes the high-water RSS of the
process that spawned it (subprocess uses vfork, and exec keeps the old mm's high-water mark), and this
script's own peak (pyvips, corpus generation) would otherwise become every contender's floor.

The corpora are generated once (pyvips + one exiftool run) and cached in benchmarks/work/corpus-meta/
and benchmarks/work/corpus-big/ (a folder per parameter set; a smaller N reuses the first N files).
Note that benchmarks/run.py empties benchmarks/work/ when it starts, so it drops these caches too.
Run folders are under benchmarks/work/images/, removed at the end unless --keep.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # run.py is a sibling module, also when this file is imported from elsewhere
    sys.path.insert(0, str(HERE))

from run import (  # noqa: E402
    MTIME_FROM,
    PY,
    README,
    ROOT,
    WORK,
    Run,
    child_env,
    flowd_config,
    flowd_digest,
    machine_info,
    measure_clean,
    median_run,
    tail,
    write_section,
)

RUNS = WORK / "images"
SEED = 20240611
MARK_START = "<!-- images:start -->"
MARK_END = "<!-- images:end -->"
NA = "not available: "
TARGETS = {"meta_x_exiftool": 2.0, "imaging_x_im": 2.5, "imaging_rss_share": 0.5}

# -- tools ----------------------------------------------------------------------------------------
# (name, how to find it, the Debian package that provides it)
EXIFTOOL = os.environ.get("EXIFTOOL", "/usr/bin/exiftool")
CONVERT = os.environ.get("IM_CONVERT", "/usr/bin/convert-im6.q16")  # not /usr/local/bin/convert
APT = {EXIFTOOL: "libimage-exiftool-perl", CONVERT: "imagemagick-6.q16"}


def need_tool(path: str) -> str:
    found = path if os.access(path, os.X_OK) else shutil.which(Path(path).name)
    if not found:
        raise SystemExit(f"images.py: {path} not found: install it with `apt-get install {APT.get(path, '?')}`")
    return found


def need_module(name: str) -> None:
    try:
        __import__(name)
    except ImportError as exc:
        raise SystemExit(f"images.py: cannot import {name} ({exc}): install it into the venv with "
                         "`.venv/bin/pip install -e '.[bench]'` (pyvips, pyvips-binary, pyexiv2, psutil)") from None


def tool_versions(parts: list[str]) -> str:
    out = []
    if "meta" in parts:
        ver = subprocess.run([EXIFTOOL, "-ver"], capture_output=True, text=True).stdout.strip()
        out.append(f"exiftool {ver or '?'}")
        try:
            import pyexiv2
            out.append(f"pyexiv2 {pyexiv2.__version__} (exiv2 {pyexiv2.__exiv2_version__})")
        except Exception:  # noqa: BLE001
            pass
    if "imaging" in parts:
        first = subprocess.run([CONVERT, "-version"], capture_output=True, text=True).stdout.split("\n", 1)[0]
        out.append(first.replace("Version: ", "").split(" https://")[0] + f" ({Path(CONVERT).name})")
    try:
        import pyvips
        out.append(f"libvips {pyvips.version(0)}.{pyvips.version(1)}.{pyvips.version(2)} "
                   f"(pyvips {pyvips.__version__})")
    except Exception:  # noqa: BLE001
        pass
    return ", ".join(out)


# -- the metadata fields --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Field:
    flowd: str  # the field as the rule names it
    value: str
    iptc: str  # exiftool tag (-G1 group:name)
    xmp: str
    iptc_key: str  # exiv2 key
    xmp_key: str
    append: bool = False


FIELDS = [
    Field("116", "(c) Example Media", "IPTC:CopyrightNotice", "XMP-dc:Rights",
          "Iptc.Application2.Copyright", "Xmp.dc.rights"),
    Field("credit", "AP", "IPTC:Credit", "XMP-photoshop:Credit", "Iptc.Application2.Credit", "Xmp.photoshop.Credit"),
    Field("source", "Associated Press", "IPTC:Source", "XMP-photoshop:Source",
          "Iptc.Application2.Source", "Xmp.photoshop.Source"),
    Field("keywords", "wire", "IPTC:Keywords", "XMP-dc:Subject", "Iptc.Application2.Keywords", "Xmp.dc.subject",
          append=True),
    Field("headline", "Benchmark", "IPTC:Headline", "XMP-photoshop:Headline",
          "Iptc.Application2.Headline", "Xmp.photoshop.Headline"),
]
EXISTING_KEYWORDS = ["archive", "sample"]
CREATOR = "Corpus Photographer"
# Written into every corpus file by one exiftool process; ObjectName/Title are the file's own name.
EXISTING_ARGS = ["-IPTC:CodedCharacterSet=UTF8", "-IPTC:ObjectName<BaseName", "-XMP-dc:Title<BaseName",
                 f"-IPTC:By-line={CREATOR}", f"-XMP-dc:Creator={CREATOR}",
                 *[f"-IPTC:Keywords={k}" for k in EXISTING_KEYWORDS],
                 *[f"-XMP-dc:Subject={k}" for k in EXISTING_KEYWORDS],
                 "-EXIF:Artist=Corpus Photographer", "-EXIF:DateTimeOriginal=2024:03:01 10:00:00"]

META_RULE = """\
# Generated by benchmarks/images.py
rules:
  - name: tag-wire
    once: content
    do:
      - set_metadata:
          - {field: 116, action: replace, value: "(c) Example Media"}
          - {field: credit, action: replace, value: AP}
          - {field: source, action: replace, value: Associated Press}
          - {field: keywords, action: append, value: wire}
          - {field: headline, action: replace, value: Benchmark}
      - move: {to: "{output}/{name}"}
"""

IMAGING_RULE = """\
# Generated by benchmarks/images.py
rules:
  - name: web
    do:
      - convert:
          color: {to: srgb}
          resize: {fit: [2048, 2048]}
          sharpen: {amount: 80, radius: 0.8, threshold: 2}
          format: {type: jpeg_web, quality: 85}
      - move: {to: "{output}/{stem}.jpg"}
"""


def exiftool_args() -> list[str]:
    """The tag assignments of the exiftool contender: both the IPTC and the XMP copy of each field."""
    out = []
    for f in FIELDS:
        op = "+=" if f.append else "="
        out += [f"-{f.iptc}{op}{f.value}", f"-{f.xmp}{op}{f.value}"]
    return out


# -- corpora ------------------------------------------------------------------------------------------
META_SIZE, META_Q = (1200, 800), 85
BIG_SIZE, BIG_Q, FIT = (6000, 4000), 90, 2048
META_GEN, BIG_GEN = 1, 2  # bump when the pictures change: a new cache folder


def meta_picture(i: int) -> bytes:
    """1200x800: a colour gradient plus grey Gaussian noise, sigma 5-11 (about 150-300 KB at q85)."""
    import pyvips

    w, h = META_SIZE
    rng = random.Random(SEED * 1000 + i)
    xy = pyvips.Image.xyz(w, h)
    x, y = xy[0], xy[1]
    base = (x * (rng.uniform(120, 220) / w) + y * (rng.uniform(20, 60) / h)).bandjoin(
        [y * (255 / h), (x + y) * (rng.uniform(150, 255) / (w + h))])
    noise = pyvips.Image.gaussnoise(w, h, sigma=rng.uniform(5, 11), mean=0, seed=SEED + i)
    return (base + noise).cast("uchar").jpegsave_buffer(Q=META_Q)


def big_picture(i: int, p3: bool = True) -> bytes:
    """6000x4000: a two-colour gradient with soft waves, a dozen flat discs and boxes, Gaussian noise
    (sigma 5-11: about 6-9 MB at q90). Embedded profile by i % 4: 0, 2 sRGB (libvips'), 1 Display P3
    (libvips' built-in p3, so converting to sRGB is real work; sRGB too without `p3`), 3 none."""
    import pyvips

    w, h = BIG_SIZE
    rng = random.Random(SEED * 1000 + 500_000 + i)
    xy = pyvips.Image.xyz(w, h)
    x, y = xy[0], xy[1]
    c0 = [rng.uniform(0, 255) for _ in range(3)]
    c1 = [rng.uniform(0, 255) for _ in range(3)]
    t = (x * (rng.uniform(0.3, 1) / w) + y * (rng.uniform(0.3, 1) / h)) / 2
    img = t.bandjoin([t, t]) * [b - a for a, b in zip(c0, c1, strict=True)] + c0
    img = img + (x * rng.uniform(0.05, 0.3) + y * rng.uniform(0.05, 0.3)).sin() * rng.uniform(8, 25)  # degrees
    for _ in range(12):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(100, 900)
        colour = [rng.uniform(0, 255) for _ in range(3)]
        if rng.random() < 0.5:
            mask = ((x - cx) ** 2 + (y - cy) ** 2) < r * r
        else:
            mask = ((x - cx).abs() < r) & ((y - cy).abs() < r * rng.uniform(0.3, 1))
        img = mask.ifthenelse(colour, img)
    noise = pyvips.Image.gaussnoise(w, h, sigma=rng.uniform(5, 11), mean=0, seed=SEED + 500_000 + i)
    img = (img + noise).cast("uchar").copy(interpretation="srgb")
    if i % 4 != 3:
        icc = bytes(pyvips.Operation.call("profile_load", "p3")) if i % 4 == 1 and p3 else srgb_profile()
        img.set_type(pyvips.GValue.blob_type, "icc-profile-data", icc)
    return img.jpegsave_buffer(Q=BIG_Q)


def srgb_profile() -> bytes:
    """libvips' built-in sRGB profile (what flowd and the pyvips floor embed), else the system's."""
    try:
        import pyvips
        return bytes(pyvips.Operation.call("profile_load", "srgb"))
    except Exception:  # noqa: BLE001
        for p in ("/usr/share/color/icc/sRGB.icc", "/usr/share/color/icc/ghostscript/srgb.icc"):
            if Path(p).is_file():
                return Path(p).read_bytes()
    raise SystemExit("images.py: no sRGB ICC profile (pyvips profile_load failed and /usr/share/color/icc has none)")


def cached_corpus(kind: str, n: int, p3: bool = True) -> list[Path]:
    """The first n files of a cached corpus, generated (and, for meta, tagged) as needed.

    A folder per parameter set; `ready` holds how many files are complete. File i depends only on i,
    so a larger N extends the folder and a smaller one uses its first N files."""
    if kind == "meta":
        key = f"{META_SIZE[0]}x{META_SIZE[1]}-q{META_Q}-s{SEED}-g{META_GEN}"
        folder, name, make = WORK / "corpus-meta" / key, "wire_{:05d}.jpg", meta_picture
    else:
        key = f"{BIG_SIZE[0]}x{BIG_SIZE[1]}-q{BIG_Q}-s{SEED}-g{BIG_GEN}" + ("" if p3 else "-nop3")
        folder, name = WORK / "corpus-big" / key, "big_{:03d}.jpg"

        def make(i: int) -> bytes:
            return big_picture(i, p3)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = folder / "ready"
    ready = int(stamp.read_text()) if stamp.exists() else 0
    paths = [folder / name.format(i) for i in range(n)]
    if ready < n:
        t = time.perf_counter()
        print(f"generating {kind} corpus: files {ready} to {n - 1} in {folder.relative_to(ROOT)} ...", flush=True)
        for i in range(ready, n):
            paths[i].write_bytes(make(i))
        if kind == "meta":
            listing = folder / "new-files.txt"
            listing.write_text("".join(f"{p}\n" for p in paths[ready:n]))
            res = subprocess.run([EXIFTOOL, "-q", "-q", "-m", "-overwrite_original", *EXISTING_ARGS,
                                  "-@", str(listing)], capture_output=True, text=True)
            listing.unlink()
            if res.returncode:
                raise SystemExit(f"images.py: exiftool failed on the corpus: {res.stderr.strip()[:500]}")
        for i in range(ready, n):  # old mtimes: flowd's stable_seconds takes them all at the startup scan
            os.utime(paths[i], (MTIME_FROM + 60 * i, MTIME_FROM + 60 * i))
        stamp.write_text(str(n))
        print(f"  done in {time.perf_counter() - t:.1f} s", flush=True)
    return paths


def stage(files: list[Path], dst: Path) -> None:
    """A real copy of these files into dst (mtimes kept), flushed so no contender pays for writing it."""
    dst.mkdir(parents=True, exist_ok=True)
    for p in files:
        shutil.copy2(p, dst / p.name)
    os.sync()


def describe(files: list[Path]) -> str:
    sizes = [p.stat().st_size for p in files]
    return (f"{len(files):,} files, {sum(sizes) / 2**20:,.0f} MB in all, "
            f"{min(sizes) / 2**10:,.0f}-{max(sizes) / 2**10:,.0f} KB each (mean {sum(sizes) / len(sizes) / 2**10:,.0f} KB)")


# -- checks -------------------------------------------------------------------------------------------
def scan_digest(path: Path) -> str:
    """sha256 of a JPEG from its first SOS marker to the end: the compressed pixels, not the metadata."""
    data = path.read_bytes()
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            raise ValueError(f"{path.name}: no JPEG marker at byte {i}")
        marker = data[i + 1]
        if marker == 0xFF:
            i += 1
        elif marker == 0xDA:
            return hashlib.sha256(data[i:]).hexdigest()
        elif 0xD0 <= marker <= 0xD8 or marker == 0x01:
            i += 2
        else:
            i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    raise ValueError(f"{path.name}: no SOS marker")


def as_list(value: object) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def check_files(names: list[str], out: Path) -> list[str]:
    problems = []
    missing = [n for n in names if not (out / n).is_file()]
    if missing:
        problems.append(f"{len(missing)} of {len(names)} outputs missing, e.g. {missing[0]}")
    produced = sum(1 for p in out.rglob("*") if p.is_file()) if out.exists() else 0
    if produced != len(names):
        problems.append(f"{produced} files in {out.name}/, expected {len(names)}")
    return problems


def check_meta(sources: list[Path], out: Path, sample: int = 20) -> list[str]:
    """Every output exists; ~20 of them carry the five fields in IPTC and XMP, keep the rest, same pixels."""
    names = [p.name for p in sources]
    problems = check_files(names, out)
    step = max(1, len(sources) // sample)
    picked = [p for p in sources[::step][:sample] if (out / p.name).is_file()]
    if not picked:
        return problems
    res = subprocess.run([EXIFTOOL, "-j", "-G1", "-IPTC:all", "-XMP:all", "-EXIF:Artist",
                          *[str(out / p.name) for p in picked]], capture_output=True, text=True)
    try:
        found = {Path(d["SourceFile"]).name: d for d in json.loads(res.stdout or "[]")}
    except ValueError:
        return problems + [f"exiftool -j gave no JSON: {res.stderr.strip()[:300]}"]
    bad: list[str] = []
    for src in picked:
        tags = found.get(src.name, {})
        errs = []
        for f in FIELDS:
            for tag in (f.iptc, f.xmp):
                got = as_list(tags.get(tag))
                want = EXISTING_KEYWORDS + [f.value] if f.append else [f.value]
                if got != want:
                    errs.append(f"{tag} = {got} (want {want})")
        for tag, want in (("IPTC:ObjectName", src.stem), ("XMP-dc:Title", src.stem), ("IPTC:By-line", CREATOR),
                          ("XMP-dc:Creator", CREATOR), ("IFD0:Artist", CREATOR)):
            if as_list(tags.get(tag)) != [want]:
                errs.append(f"existing {tag} = {tags.get(tag)!r} (want {want!r})")
        try:
            if scan_digest(out / src.name) != scan_digest(src):
                errs.append("compressed image data changed")
        except ValueError as exc:
            errs.append(str(exc))
        if errs:
            bad.append(f"{src.name}: " + "; ".join(errs))
    if bad:
        problems.append(f"{len(bad)} of {len(picked)} sampled outputs wrong, e.g. {bad[0]}")
    return problems


_REFERENCE: dict[Path, object] = {}
COLOUR_TOLERANCE = 4.0  # mean |difference| per sample; leaving Display P3 unconverted gives about 6.5 here


def colour_reference(src: Path) -> object | None:
    """For a source with a profile other than sRGB: libvips' plain conversion of it (thumbnail to sRGB, no
    sharpening), to tell a converted output from one merely relabelled; None for sRGB or untagged sources."""
    import pyvips

    if src not in _REFERENCE:
        _REFERENCE[src] = None if profile_kind(src) in ("none", "sRGB") else \
            pyvips.Image.thumbnail(str(src), FIT, height=FIT, export_profile="srgb").copy_memory()
    return _REFERENCE[src]


def profile_kind(src: Path) -> str:
    import pyvips

    head = pyvips.Image.new_from_file(str(src))
    if "icc-profile-data" not in head.get_fields():
        return "none"
    icc = bytes(head.get("icc-profile-data"))
    if icc == srgb_profile():
        return "sRGB"
    return "Display P3" if icc == bytes(pyvips.Operation.call("profile_load", "p3")) else "other"


def check_imaging(sources: list[Path], out: Path) -> list[str]:
    """Every output: a JPEG that decodes completely, sRGB, fits in 2048x2048 with its long side 2048; for
    sources tagged with another profile (Display P3), its colours close to a plain libvips conversion."""
    import pyvips

    names = [p.stem + ".jpg" for p in sources]
    problems = check_files(names, out)
    bad = []
    for src, name in zip(sources, names, strict=True):
        path = out / name
        if not path.is_file():
            continue
        try:
            with open(path, "rb") as fh:
                if fh.read(3) != b"\xff\xd8\xff":
                    raise ValueError("not a JPEG")
            img = pyvips.Image.new_from_file(str(path), access="sequential", fail=True)
            w, h = img.width, img.height
            if img.get("vips-loader") != "jpegload":
                raise ValueError(f"loaded by {img.get('vips-loader')}")
            if max(w, h) != FIT or min(w, h) > FIT:
                raise ValueError(f"{w}x{h}, want the long side {FIT}")
            if img.bands != 3 or img.interpretation != "srgb":
                raise ValueError(f"{img.bands} bands, {img.interpretation}")
            img.avg()  # decodes every pixel: fail=True turns a truncated or corrupt file into an error
            ref = colour_reference(src)
            if isinstance(ref, pyvips.Image):
                img = pyvips.Image.new_from_file(str(path))
                if (img.width, img.height) != (ref.width, ref.height):
                    img = img.resize(ref.width / img.width, vscale=ref.height / img.height)
                diff = (img.cast("float") - ref).abs().avg()
                if diff > COLOUR_TOLERANCE:
                    raise ValueError(f"colours {diff:.1f} off a plain conversion of its Display P3 to sRGB "
                                     f"(tolerance {COLOUR_TOLERANCE:g}): not colour-managed?")
        except (ValueError, pyvips.Error) as exc:
            text = str(exc).strip()
            bad.append(f"{name}: {text.splitlines()[0] if text else type(exc).__name__}")
    if bad:
        problems.append(f"{len(bad)} of {len(names)} outputs wrong, e.g. {bad[0]}")
    return problems


def check_db(db: Path, n: int, ledger: bool) -> list[str]:
    import sqlite3

    if not db.exists():
        return [f"no database at {db}"]
    con = sqlite3.connect(db)
    try:
        states = dict(con.execute("select state || '/' || coalesce(status, ''), count(*) from jobs group by 1"))
        traces = con.execute("select count(*) from traces").fetchone()[0]
        rows = con.execute("select count(*) from ledger").fetchone()[0]
    finally:
        con.close()
    problems = []
    if states != {"done/finished": n}:
        problems.append(f"jobs by state/status: {states}, expected {{'done/finished': {n}}}")
    if traces != n:
        problems.append(f"{traces} traces in the database, expected {n}")
    if ledger and rows != n:
        problems.append(f"{rows} ledger rows, expected {n}")
    return problems


# -- children (the floors) ----------------------------------------------------------------------------
def pyexiv2_child(src: str, out: str) -> int:
    """The metadata floor: read the bytes, set the five fields in IPTC and XMP with exiv2, write."""
    import pyexiv2

    os.makedirs(out, exist_ok=True)
    for name in sorted(os.listdir(src)):
        with open(os.path.join(src, name), "rb") as fh:
            data = fh.read()
        with pyexiv2.ImageData(data) as img:
            iptc, xmp = img.read_iptc(), img.read_xmp()
            new_iptc, new_xmp = {}, {}
            for f in FIELDS:
                if f.append:
                    new_iptc[f.iptc_key] = list(iptc.get(f.iptc_key, [])) + [f.value]
                    new_xmp[f.xmp_key] = list(xmp.get(f.xmp_key, [])) + [f.value]
                else:
                    new_iptc[f.iptc_key] = f.value
                    new_xmp[f.xmp_key] = f.value
            img.modify_iptc(new_iptc)
            img.modify_xmp(new_xmp)
            data = img.get_bytes()
        with open(os.path.join(out, name), "wb") as fh:
            fh.write(data)
    return 0


UNSHARP = {"sigma": 0.8, "amount": 0.8, "threshold": 2.0}  # = IM's -unsharp 0x0.8+0.8+0.008 (0.008 x 255)


def pyvips_child(src: str, out: str) -> int:
    """The imaging floor: thumbnail (shrink-on-load, to sRGB) + gaussblur unsharp mask + jpegsave q85."""
    import pyvips

    os.makedirs(out, exist_ok=True)
    sigma, amount, threshold = UNSHARP["sigma"], UNSHARP["amount"], UNSHARP["threshold"]
    for name in sorted(os.listdir(src)):
        img = pyvips.Image.thumbnail(os.path.join(src, name), FIT, height=FIT, export_profile="srgb")
        diff = img - img.gaussblur(sigma)
        img = (diff.abs() > threshold).ifthenelse(img + diff * amount, img).cast("uchar")
        img.jpegsave(os.path.join(out, Path(name).stem + ".jpg"), Q=85)
    return 0


def child(kind: str, *paths: str) -> list[str]:
    return [PY, str(Path(__file__).resolve()), f"--{kind}-child", *paths]


# -- contenders ---------------------------------------------------------------------------------------
def run_measured(name: str, cmd: list[str], site: Path, n: int, note: str) -> tuple[Run, Path]:
    log = site / f"{name.split()[0]}.log"
    m = measure_clean([(cmd, site, log)], RUNS)[0]
    problems = [] if m.status == 0 else [f"{name} exited with {m.status}:\n{tail(log)}"]
    return Run(name, n, m.wall, m.peak_rss, m.cpu, not problems, problems, note, m.others), log


def flowd_site(site: Path, rule: str, workers: int) -> Path:
    """run.py's flowd config (SQLite, local storage with fsync, hot folder inbox -> lake:assets, after =
    delete, stable_seconds 2) with this benchmark's one rule file."""
    (site / "rules").mkdir(parents=True, exist_ok=True)
    (site / "hot" / "inbox").mkdir(parents=True, exist_ok=True)
    (site / "rules" / "bench.yaml").write_text(rule)
    config = site / "flowd.toml"
    config.write_text(flowd_config(2, workers).replace("benchmarks/run.py", "benchmarks/images.py"))
    return config


def flowd_unavailable(config: Path, site: Path) -> str | None:
    """None when `flowd check` accepts the site, else the first line of its complaint."""
    res = subprocess.run([PY, "-m", "flowd", "check", "-c", str(config)], cwd=site, capture_output=True,
                         text=True, env=child_env(), timeout=300)
    if res.returncode == 0:
        return None
    lines = [ln.strip() for ln in (res.stderr + "\n" + res.stdout).splitlines() if ln.strip()]
    return lines[0] if lines else f"flowd check exited with {res.returncode}"


def run_flowd(site: Path, rule: str, files: list[Path], workers: int, ledger: bool) -> tuple[Run, Path | None]:
    config = flowd_site(site, rule, workers)
    name, note = "flowd", f"`flowd run --until-idle`, {workers} workers, SQLite, fsync on, traces" + \
        (" + ledger (once: content)" if ledger else "")
    why = flowd_unavailable(config, site)
    if why:
        return Run(name, len(files), 0.0, 0, 0.0, False, [], NA + why), None
    stage(files, site / "hot" / "inbox")
    r, _log = run_measured(name, [PY, "-m", "flowd", "run", "--until-idle", "-c", str(config)], site,
                           len(files), note)
    left = sorted(p.name for p in (site / "hot" / "inbox").rglob("*") if p.is_file())
    if left:
        r.problems.append(f"{len(left)} files left in the hot folder, e.g. {left[0]}")
    r.problems.extend(check_db(site / "var" / "flowd.db", len(files), ledger))
    return r, site / "lake" / "assets"


def bench_meta(files: list[Path], workers: int, only: list[str] | None = None, rounds: int = 3) -> list[Run]:
    """`rounds` rounds, the contenders taking turns in each, and each contender's median round: on a
    shared machine one round of a few seconds can be twice as slow as the next."""
    by_name: dict[str, list[Run]] = {}
    for n in range(rounds):
        print(f"-- metadata round {n + 1} of {rounds}", flush=True)
        for r in bench_meta_round(files, workers, only, RUNS / f"meta-{n}"):
            by_name.setdefault(r.name, []).append(r)
        shutil.rmtree(RUNS / f"meta-{n}", ignore_errors=True)
    return [finish(median_run(rs)) if len(rs) > 1 else rs[0] for rs in by_name.values()]


def bench_meta_round(files: list[Path], workers: int, only: list[str] | None, base: Path) -> list[Run]:
    runs: list[Run] = []
    n = len(files)
    want = only or ["exiftool", "pyexiv2", "flowd"]

    if "exiftool" in want:
        site = base / "exiftool"
        stage(files, site / "in")
        (site / "out").mkdir()
        argfile = site / "args.txt"
        argfile.write_text("".join(a + "\n" for a in exiftool_args()))
        cmd = [EXIFTOOL, "-fast", "-m", "-q", "-q", "-o", "out/", "-@", "args.txt", "in/"]
        shown = shlex.join([Path(EXIFTOOL).name, "-fast", "-m", "-q", "-q", "-o", "out/", *exiftool_args(), "in/"])
        print("running exiftool ...", flush=True)
        r, _ = run_measured("exiftool", cmd, site, n,
                            f"one process, the tags from an -@ argfile, new files in out/ (not in place): `{shown}`")
        r.problems += check_meta(files, site / "out")
        runs.append(finish(r))

    if "pyexiv2" in want:
        site = base / "pyexiv2"
        stage(files, site / "in")
        print("running pyexiv2 loop ...", flush=True)
        r, _ = run_measured("pyexiv2 loop (floor)", child("pyexiv2", "in", "out"), site, n,
                            "one Python process: read bytes, ImageData, read_iptc/read_xmp (for the append), "
                            "modify_iptc + modify_xmp, get_bytes, write into out/; no fsync")
        r.problems += check_meta(files, site / "out")
        runs.append(finish(r))

    if "flowd" in want:
        print("running flowd ...", flush=True)
        r, out = run_flowd(base / "flowd", META_RULE, files, workers, ledger=True)
        if out is not None:
            r.problems += check_meta(files, out)
        runs.append(finish(r))
    return runs


def run_im(name: str, files: list[Path], site: Path, profile: Path, hint: str | None) -> Run:
    """One convert process per file, in sequence: seconds and CPU summed, the highest peak RSS."""
    out = site / "out"
    out.mkdir(parents=True, exist_ok=True)
    pre = ["-define", f"jpeg:size={hint}"] if hint else []
    # Color Factory's order for RGB sources, which flowd follows: resize, sharpen, then the colour transform
    # (at output size, so ImageMagick is not made to convert 24 megapixels).
    ops = ["-resize", f"{FIT}x{FIT}", "-unsharp", "0x0.8+0.8+0.008", "-profile", str(profile), "-quality", "85"]
    wall = cpu = busy = 0.0
    peak = 0
    by_kind: dict[str, list[float]] = {}
    problems: list[str] = []
    logs = site / "logs"
    logs.mkdir(exist_ok=True)
    jobs = [([CONVERT, *pre, str(src), *ops, str(out / (src.stem + ".jpg"))], site, logs / f"{src.stem}.log")
            for src in files]
    for src, (_cmd, _cwd, log), m in zip(files, jobs, measure_clean(jobs, RUNS), strict=True):
        wall += m.wall
        by_kind.setdefault(profile_kind(src), []).append(m.wall)
        cpu += m.cpu
        busy += m.others * m.wall
        peak = max(peak, m.peak_rss)
        if m.status != 0:
            problems.append(f"convert exited with {m.status} on {src.name}: {tail(log, 5)}")
    shown = shlex.join([Path(CONVERT).name, *pre, "in.jpg", *(("srgb.icc" if op == str(profile) else op) for op in ops),
                        "out.jpg"])
    note = f"one process per file, in sequence: `{shown}`; mean seconds per file by embedded profile: " + \
        ", ".join(f"{k} {sum(v) / len(v):.2f} ({len(v)})" for k, v in sorted(by_kind.items()))
    if hint:
        probe = subprocess.run([CONVERT, *pre, str(files[0]), "-print", "%wx%h", "null:"], capture_output=True,
                               text=True).stdout.strip()
        note += f"; with this hint it decodes {BIG_SIZE[0]}x{BIG_SIZE[1]} as {probe or '?'}"
    return Run(name, len(files), wall, peak, cpu, not problems, problems, note, busy / wall if wall else 0.0)


def bench_imaging(files: list[Path], workers: int, hints: list[str], only: list[str] | None = None) -> list[Run]:
    runs: list[Run] = []
    n = len(files)
    base = RUNS / "imaging"
    base.mkdir(parents=True, exist_ok=True)
    want = only or ["im", "pyvips", "flowd"]
    profile = base / "srgb.icc"
    profile.write_bytes(srgb_profile())

    if "im" in want:
        for hint in [None, *hints]:
            label = "ImageMagick convert" + (f" + jpeg:size={hint}" if hint else "")
            print(f"running {label} ...", flush=True)
            site = base / ("im" if not hint else f"im-{hint}")
            stage(files, site / "in")
            r = run_im(label, sorted((site / "in").iterdir()), site, profile, hint)
            r.problems += check_imaging(files, site / "out")
            runs.append(finish(r))

    if "pyvips" in want:
        site = base / "pyvips"
        stage(files, site / "in")
        print("running pyvips script ...", flush=True)
        r, _ = run_measured("pyvips script (floor)", child("pyvips", "in", "out"), site, n,
                            f"one Python process: `thumbnail(path, {FIT}, height={FIT}, export_profile='srgb')`, "
                            "unsharp as `d = img - img.gaussblur(0.8)`, `(|d| > 2).ifthenelse(img + 0.8 d, img)`, "
                            "`jpegsave(Q=85)`; libvips' default threads and cache")
        r.problems += check_imaging(files, site / "out")
        runs.append(finish(r))

    if "flowd" in want:
        print("running flowd ...", flush=True)
        r, out = run_flowd(base / "flowd", IMAGING_RULE, files, workers, ledger=False)
        if out is not None:
            r.problems += check_imaging(files, out)
        runs.append(finish(r))
    return runs


def finish(r: Run) -> Run:
    r.ok = not r.problems and not r.note.startswith(NA)
    if r.note.startswith(NA):
        print(f"  {r.name}: {r.note}", flush=True)
    else:
        print(f"  {r.name}: {r.seconds:.2f} s, {r.rate:,.1f}/s, peak RSS {r.peak_rss / 2**20:.0f} MB, "
              f"CPU {r.cpu:.1f} s, others' load {r.others:.0%}"
              + ("" if r.ok else "  PROBLEMS:\n    " + "\n    ".join(r.problems)), flush=True)
    return r


# -- report -------------------------------------------------------------------------------------------
@dataclass(slots=True)
class Section:
    title: str
    corpus: str
    runs: list[Run]
    unit: str  # files | images
    baseline: str  # name prefix of the row the others are compared with
    notes: list[str] = field(default_factory=list)


def available(r: Run) -> bool:
    return not r.note.startswith(NA)


def section_table(s: Section) -> str:
    base = next((r for r in s.runs if r.name.startswith(s.baseline) and r.ok), None)
    rss = s.unit == "images"
    head = (f"| contender | {s.unit} | seconds | {s.unit}/s | x {s.baseline} | peak RSS MB |"
            + (" RSS / ImageMagick |" if rss else "") + f" CPU s | {s.unit}/CPU s | others' load | ok |")
    lines = [head, "|---|" + "---:|" * (8 + rss) + "---|"]
    for r in s.runs:
        if not available(r):
            lines.append(f"| {r.name} | {r.note.rstrip('.')} |" + " |" * (8 + rss))
            continue
        ratio = f"{r.rate / base.rate:.2f}" if base and base.rate else "-"
        cols = [r.name, f"{r.files:,}", f"{r.seconds:.2f}", f"{r.rate:,.2f}" if r.rate < 100 else f"{r.rate:,.0f}",
                ratio, f"{r.peak_rss / 2**20:.0f}"]
        if rss:
            cols.append(f"{r.peak_rss / base.peak_rss:.2f}" if base and base.peak_rss else "-")
        per_cpu = r.files / r.cpu if r.cpu else 0
        cols += [f"{r.cpu:.1f}", f"{per_cpu:,.2f}" if per_cpu < 100 else f"{per_cpu:,.0f}", f"{r.others:.0%}",
                 "yes" if r.ok else "NO"]
        lines.append("| " + " | ".join(cols) + " |")
    return "\n".join(lines)


def verdicts(meta: Section | None, imaging: Section | None) -> list[str]:
    out = []

    def pick(s: Section, prefix: str) -> Run | None:
        return next((r for r in s.runs if r.name.startswith(prefix)), None)

    if meta:
        flowd, ref = pick(meta, "flowd"), pick(meta, "exiftool")
        want = TARGETS["meta_x_exiftool"]
        if flowd and ref and available(flowd) and ref.rate:
            x = flowd.rate / ref.rate
            out.append(f"metadata: flowd {x:.2f} x exiftool's files/s (target >= {want:g} x): "
                       + ("MET" if x >= want and flowd.ok and ref.ok else "NOT MET"))
        else:
            out.append(f"metadata: flowd >= {want:g} x exiftool's files/s: not measured"
                       + (f" (flowd {flowd.note})" if flowd and not available(flowd) else ""))
    if imaging:
        flowd, ref = pick(imaging, "flowd"), next((r for r in imaging.runs if r.name == "ImageMagick convert"), None)
        x_want, share_want = TARGETS["imaging_x_im"], TARGETS["imaging_rss_share"]
        if flowd and ref and available(flowd) and ref.rate and ref.peak_rss:
            x, share = flowd.rate / ref.rate, flowd.peak_rss / ref.peak_rss
            out.append(f"imaging speed: flowd {x:.2f} x ImageMagick convert (target >= {x_want:g} x): "
                       + ("MET" if x >= x_want and flowd.ok and ref.ok else "NOT MET"))
            out.append(f"imaging memory: flowd's peak RSS {share:.2f} x ImageMagick's "
                       f"({flowd.peak_rss / 2**20:.0f} vs {ref.peak_rss / 2**20:.0f} MB; target <= {share_want:g}): "
                       + ("MET" if share <= share_want and flowd.ok and ref.ok else "NOT MET"))
        else:
            out.append(f"imaging: flowd >= {x_want:g} x ImageMagick convert's speed and <= {share_want:g} of its "
                       "peak RSS: not measured" + (f" (flowd {flowd.note})" if flowd and not available(flowd) else ""))
    return out


def results_markdown(args: argparse.Namespace, meta: Section | None, imaging: Section | None,
                     info: dict[str, str]) -> str:
    """The results as markdown: run line, machine and tools, one table per benchmark, notes, targets."""
    cmd = "benchmarks/images.py" + (f" --jpegs {args.jpegs}" if meta else "") + (f" --big {args.big}" if imaging else "")
    cmd += f" --workers {args.workers}" if args.workers != 4 else ""
    parts = [f"Run {info['date']} on flowd {info['code']} with `{cmd}`.", "",
             f"Machine: {info['cpu']}, {info['memory']} RAM, {info['os']}, {info['filesystem']} under "
             f"benchmarks/work; {info['python']}; {info.get('tools', '?')}; {info['load']} at the end. "
             f"Peak RSS is measured from a small helper process, so no reading is below its own high-water "
             f"mark ({info.get('rss_floor', '?')}: what `/bin/true` measures).", ""]
    for s in (meta, imaging):
        if s is None:
            continue
        parts += [f"**{s.title}** Corpus: {s.corpus}", "", section_table(s), ""]
        for r in s.runs:
            if r.note and available(r):
                parts.append(f"- {r.name}: {r.note}")
            for p in r.problems:
                parts.append(f"- **{r.name} problem:** " + p.replace("\n", " / ")[:600])
        parts += [f"- {n}" for n in s.notes]
        parts.append("")
    v = verdicts(meta, imaging)
    if v:
        parts += ["Targets:", ""] + [f"- {x}" for x in v] + [""]
    return "\n".join(parts).rstrip() + "\n"


def write_readme(body: str, readme: Path = README) -> None:
    write_section(body, MARK_START, MARK_END, readme)


# -- main ---------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--pyexiv2-child"]:
        return pyexiv2_child(argv[1], argv[2])
    if argv[:1] == ["--pyvips-child"]:
        return pyvips_child(argv[1], argv[2])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jpegs", type=int, default=1000, help="JPEGs for the metadata benchmark (default %(default)s)")
    p.add_argument("--big", type=int, default=50, help="24-megapixel JPEGs for the imaging one (default %(default)s)")
    p.add_argument("--only", choices=["meta", "imaging"], help="run one benchmark; the README is then left alone")
    p.add_argument("--contenders", help="comma-separated subset: exiftool,pyexiv2,im,pyvips,flowd "
                                        "(the README is then left alone)")
    p.add_argument("--workers", type=int, default=4, help="flowd workers (default %(default)s)")
    p.add_argument("--rounds", type=int, default=3, help="metadata rounds, median kept (default %(default)s)")
    p.add_argument("--im-hint", action="append", metavar="WxH",
                   help="jpeg:size hint(s) for the extra ImageMagick row(s) (repeatable; default 2048x1366, "
                        "the one that makes IM 6.9 decode 6000x4000 at 1/2 as libvips' shrink-on-load does)")
    p.add_argument("--no-p3", action="store_true",
                   help="no Display P3 sources in the imaging corpus (sRGB instead: every colour step a no-op)")
    p.add_argument("--keep", action="store_true", help="keep the run folders in benchmarks/work/images/")
    p.add_argument("--no-readme", action="store_true", help="do not rewrite the images section of README.md")
    args = p.parse_args(argv)
    hints = args.im_hint or ["2048x1366"]
    only = args.contenders.split(",") if args.contenders else None

    parts = [args.only] if args.only else ["meta", "imaging"]
    for mod in ("psutil", "pyvips", "pyexiv2"):
        need_module(mod)
    if "meta" in parts:
        need_tool(EXIFTOOL)
    if "imaging" in parts:
        need_tool(CONVERT)
    if args.jpegs < 1 or args.big < 1:
        p.error("--jpegs and --big must be at least 1")
    digest = flowd_digest()
    if RUNS.exists():
        shutil.rmtree(RUNS)
    RUNS.mkdir(parents=True)
    try:
        meta = imaging = None
        if "meta" in parts:
            files = cached_corpus("meta", args.jpegs)
            corpus = (f"{describe(files)}; {META_SIZE[0]}x{META_SIZE[1]} q{META_Q} (gradient + noise), each with "
                      f"IPTC (ObjectName, By-line, Keywords {', '.join(EXISTING_KEYWORDS)}, UTF-8), XMP (title, "
                      "creator, subject) and EXIF (Artist, DateTimeOriginal) written by exiftool.")
            print(f"meta corpus: {corpus}", flush=True)
            meta = Section(f"Setting 5 fields on {len(files):,} JPEGs.", corpus, bench_meta(files, args.workers, only, args.rounds),
                           "files", "exiftool")
            meta.notes.append("Fields: copyright (116) = \"(c) Example Media\", credit (110) = AP, source (115) = "
                              "Associated Press, keywords (25) += wire, headline (105) = Benchmark, each in IPTC-IIM "
                              "and XMP (dc:rights, photoshop:Credit/Source/Headline, dc:subject). Checked: every "
                              "output exists; in ~20 sampled outputs `exiftool -j -G1` shows the five fields in IPTC "
                              "and in XMP, the keywords appended to the existing ones, the other existing fields "
                              "kept and the compressed image data (SOS to EOI) byte-identical to the source.")
        if "imaging" in parts:
            files = cached_corpus("big", args.big, not args.no_p3)
            corpus = (f"{describe(files)}; {BIG_SIZE[0]}x{BIG_SIZE[1]} q{BIG_Q} (gradients, soft waves, discs and "
                      "boxes, noise); embedded profiles: "
                      + ("three quarters sRGB, a quarter none (--no-p3)." if args.no_p3 else
                         "half sRGB, a quarter Display P3, a quarter none."))
            print(f"big corpus: {corpus}", flush=True)
            imaging = Section(f"{len(files)} x 24-megapixel JPEGs -> sRGB, fit {FIT} px, unsharp mask, JPEG q85.",
                              corpus, bench_imaging(files, args.workers, hints, only), "images", "ImageMagick convert")
            imaging.notes.append("x ImageMagick and RSS / ImageMagick compare with the plain `convert` row. "
                                 "Checked: every output is a JPEG that decodes completely (libvips, fail=True), "
                                 f"3-band sRGB, fitting {FIT}x{FIT} with its long side {FIT}; for the Display P3 "
                                 "sources, the mean difference from a plain libvips conversion to sRGB (no "
                                 f"sharpening) is at most {COLOUR_TOLERANCE:g} levels (an unconverted P3 file is "
                                 "about 6.5 off, the contenders' sharpening and resampling about 2).")
            imaging.notes.append("ImageMagick gets the operations in Color Factory's order, as flowd runs them: "
                                 "`-resize`, `-unsharp`, then `-profile` (the colour transform at output size); "
                                 "`--no-p3` makes every source sRGB or untagged.")
            imaging.notes.append("The pyvips floor runs every file through the ICC transform (`export_profile`), "
                                 "sRGB-tagged and untagged ones included, which is about half of its CPU time here; "
                                 "a pipeline that skips no-op transforms can beat it.")
            if not args.im_hint:
                imaging.notes.append("The usual `-define jpeg:size=4096x4096` is not used: ImageMagick 6.9.11 "
                                     "then decodes 6000x4000 at 2x (12000x8000, checked with `-print %wx%h`), "
                                     "which spills to its disk cache under Debian's policy.xml (25 s for one file in a trial "
                                     "vs 1.9 s without the hint); `--im-hint 4096x4096` runs it anyway.")
        info = machine_info()
        info["tools"] = tool_versions(parts)
        floor = measure_clean([(["/bin/true"], RUNS, RUNS / "true.log")], RUNS)[0].peak_rss
        info["rss_floor"] = f"{floor / 2**20:.0f} MB"
        if flowd_digest() != digest:
            info["code"] += " (flowd/ CHANGED while this ran)"
        body = results_markdown(args, meta, imaging, info)
        print("\n" + body)
        (WORK / "images-results.md").write_text(body)
        if not args.no_readme and not args.only and not only:
            write_readme(body)
            print(f"wrote {README.relative_to(ROOT)}")
        runs = (meta.runs if meta else []) + (imaging.runs if imaging else [])
        return 1 if any(not r.ok and available(r) for r in runs) else 0
    finally:
        if not args.keep:
            shutil.rmtree(RUNS, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
