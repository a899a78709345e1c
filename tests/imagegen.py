"""Deterministic test images, written with libvips (and ImageMagick where libvips cannot write the format).

Every generator takes the path to write and returns it; the same arguments always give the same pixels.
Shared by the imaging tests and by rule tests that need real images:

    from imagegen import rgb_jpeg, exiftool   # tests/ is on sys.path, as for actions_support
    src = rgb_jpeg(tmp_path / "a.jpg", 640, 480, icc=True)
    exiftool(src, "-IPTC:Keywords=news")
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pyvips

IMAGEMAGICK = "/usr/bin/convert-im6.q16"  # Debian's ImageMagick 6 (not the sandbox's `convert` wrapper)
EXIFTOOL = "/usr/bin/exiftool"
VIPS_PROFILES = {"srgb": "srgb", "cmyk": "cmyk", "gray": "sgrey", "p3": "p3"}


def have_imagemagick() -> bool:
    return Path(IMAGEMAGICK).exists()


def have_exiftool() -> bool:
    return Path(EXIFTOOL).exists() or shutil.which("exiftool") is not None


# -- profiles -------------------------------------------------------------------------------------------
def profile_bytes(name: str) -> bytes:
    """One of libvips' built-in ICC profiles: srgb, cmyk (a 'Chemical proof' press profile), gray, p3."""
    return bytes(pyvips.Operation.call("profile_load", VIPS_PROFILES[name]))


def profile_file(name: str, directory: Path) -> Path:
    """A built-in profile written to `directory/<name>.icc`, for tools that need a file (ImageMagick)."""
    path = directory / f"{name}.icc"
    if not path.exists():
        path.write_bytes(profile_bytes(name))
    return path


def with_profile(im: Any, name: str | None) -> Any:
    out = im.copy()
    if name is not None:
        out.set_type(pyvips.GValue.blob_type, "icc-profile-data", profile_bytes(name))
    return out


# -- pixels ---------------------------------------------------------------------------------------------
def picture(width: int, height: int, bands: int = 3, noise: float = 12.0, seed: int = 7) -> Any:
    """A photo-like uchar image: smooth gradients, a few hard-edged shapes and seeded Gaussian noise."""
    xy = pyvips.Image.xyz(width, height)
    x, y = xy[0], xy[1]
    grain = pyvips.Image.gaussnoise(width, height, sigma=noise, mean=0, seed=seed) if noise else 0
    disc = (((x - width * 0.3) ** 2 + (y - height * 0.4) ** 2) < (min(width, height) * 0.2) ** 2) * 0.35
    square = ((x > width * 0.6) & (x < width * 0.85) & (y > height * 0.5) & (y < height * 0.8)) * 0.25
    channels = []
    for i in range(bands):
        ramp = (x * (255 / width), y * (255 / height), (x + y) * (255 / (width + height)))[i % 3]
        channels.append(ramp * 0.6 + disc * (1 + i % 2) * 0.5 + square * (2 - i % 2) * 0.5 + grain + 20 * (i % 2))
    image = channels[0].bandjoin(channels[1:]) if bands > 1 else channels[0]
    return image.cast("uchar")


def rgb(width: int, height: int, noise: float = 12.0) -> Any:
    return picture(width, height, 3, noise).copy(interpretation="srgb")


def cmyk(width: int, height: int) -> Any:
    return picture(width, height, 4).copy(interpretation="cmyk")


def gray(width: int, height: int) -> Any:
    return picture(width, height, 1).copy(interpretation="b-w")


# -- files ----------------------------------------------------------------------------------------------
def rgb_jpeg(path: Path, width: int = 640, height: int = 480, icc: bool = True, quality: int = 90,
             profile: str = "srgb", orientation: int | None = None, noise: float = 12.0) -> Path:
    im = with_profile(rgb(width, height, noise), profile if icc else None)
    if orientation is not None:
        im.set_type(pyvips.GValue.gint_type, "orientation", orientation)
    im.jpegsave(str(path), Q=quality)
    return path


def cmyk_jpeg(path: Path, width: int = 640, height: int = 480, icc: bool = True, quality: int = 90) -> Path:
    with_profile(cmyk(width, height), "cmyk" if icc else None).jpegsave(str(path), Q=quality)
    return path


def cmyk_tiff(path: Path, width: int = 640, height: int = 480, icc: bool = True) -> Path:
    with_profile(cmyk(width, height), "cmyk" if icc else None).tiffsave(str(path), compression="lzw")
    return path


def gray_jpeg(path: Path, width: int = 640, height: int = 480, icc: bool = False, quality: int = 90) -> Path:
    with_profile(gray(width, height), "gray" if icc else None).jpegsave(str(path), Q=quality)
    return path


def tiff16(path: Path, width: int = 320, height: int = 240, color: str = "rgb", icc: bool = True,
           compression: str = "none") -> Path:
    """16 bits per channel, the 8-bit picture scaled x257; color rgb, cmyk or gray."""
    bands = {"rgb": 3, "cmyk": 4, "gray": 1}[color]
    interpretation = {"rgb": "rgb16", "cmyk": "cmyk", "gray": "grey16"}[color]
    wide = picture(width, height, bands).cast("ushort")
    im = ((wide << 8) | wide).copy(interpretation=interpretation)
    with_profile(im, {"rgb": "srgb", "cmyk": "cmyk", "gray": "gray"}[color] if icc else None).tiffsave(
        str(path), compression=compression)
    return path


def rgb_tiff(path: Path, width: int = 320, height: int = 240, icc: bool = True, compression: str = "lzw") -> Path:
    with_profile(rgb(width, height), "srgb" if icc else None).tiffsave(str(path), compression=compression)
    return path


def ifd_first_tiff(path: Path, width: int = 64, height: int = 48, order: str = "<", big: bool = False,
                   rows_per_strip: int = 8) -> Path:
    """A hand-written 8-bit gray TIFF whose directory comes first and whose strips follow it (libtiff
    writers put the directory last), so cutting the file leaves strip offsets pointing past its end.
    `order` "<" (II) or ">" (MM); `big` writes a BigTIFF."""
    import struct

    strips = -(-height // rows_per_strip)
    counts = [width * min(rows_per_strip, height - i * rows_per_strip) for i in range(strips)]
    word, entry_size, count_fmt = ("Q", 20, "Q") if big else ("I", 12, "H")
    offset_type = 16 if big else 4
    entries = [(256, 4, [width]), (257, 4, [height]), (258, 3, [8]), (259, 3, [1]), (262, 3, [1]),
               (273, offset_type, [0] * strips), (277, 3, [1]), (278, 4, [rows_per_strip]), (279, offset_type, counts)]
    header = struct.pack(order + "2sHHHQ", b"II" if order == "<" else b"MM", 43, 8, 0, 16) if big else \
        struct.pack(order + "2sHI", b"II" if order == "<" else b"MM", 42, 8)
    inline = 8 if big else 4
    ifd_size = struct.calcsize(count_fmt) + entry_size * len(entries) + inline
    arrays_at = len(header) + ifd_size
    value_size = {3: 2, 4: 4, 16: 8}
    arrays_size = sum(len(v) * value_size[t] for _, t, v in entries if len(v) * value_size[t] > inline)
    data_at = arrays_at + arrays_size
    offsets = [data_at + sum(counts[:i]) for i in range(strips)]
    entries[5] = (273, offset_type, offsets)
    fmt_of = {3: "H", 4: "I", 16: "Q"}
    ifd = bytearray(struct.pack(order + count_fmt, len(entries)))
    extra = bytearray()
    for tag, kind, values in entries:
        packed = struct.pack(f"{order}{len(values)}{fmt_of[kind]}", *values)
        ifd += struct.pack(order + "HH" + word, tag, kind, len(values))
        if len(packed) <= inline:
            ifd += packed.ljust(inline, b"\x00")
        else:
            ifd += struct.pack(order + word, arrays_at + len(extra))
            extra += packed
    ifd += b"\x00" * inline
    ramp = bytes((x * 255 // max(1, width - 1)) for x in range(width)) * height
    path.write_bytes(header + bytes(ifd) + bytes(extra) + ramp)
    return path


def multipage_tiff(path: Path, width: int = 200, height: int = 150, pages: int = 3) -> Path:
    """`pages` pages of the same size; page i is flat grey 40 * (i + 1), so a test can tell them apart."""
    frames = [(pyvips.Image.black(width, height, bands=3) + 40 * (i + 1)).cast("uchar") for i in range(pages)]
    stack = pyvips.Image.arrayjoin(frames, across=1).copy(interpretation="srgb")
    stack.set_type(pyvips.GValue.gint_type, "page-height", height)
    stack.tiffsave(str(path))
    return path


def png(path: Path, width: int = 320, height: int = 240, alpha: bool = True, bits: int = 8) -> Path:
    im = rgb(width, height)
    if alpha:
        xy = pyvips.Image.xyz(width, height)
        im = im.bandjoin((xy[0] * (255 / width)).cast("uchar"))  # transparent on the left, opaque on the right
    if bits == 16:
        wide = im.cast("ushort")
        im = ((wide << 8) | wide).copy(interpretation="rgb16")
    im.pngsave(str(path))
    return path


def webp(path: Path, width: int = 320, height: int = 240, quality: int = 80) -> Path:
    rgb(width, height).webpsave(str(path), Q=quality)
    return path


def gif(path: Path, width: int = 120, height: int = 90, frames: int = 1) -> Path:
    pages = [(pyvips.Image.black(width, height, bands=3) + 60 * (i + 1)).cast("uchar") for i in range(frames)]
    stack = pyvips.Image.arrayjoin(pages, across=1).copy(interpretation="srgb")
    stack.set_type(pyvips.GValue.gint_type, "page-height", height)
    if frames > 1:
        stack.set_type(pyvips.GValue.array_int_type, "delay", [100] * frames)
    stack.gifsave(str(path))
    return path


def psd(path: Path, width: int = 200, height: int = 100, layers: bool = True, color: str = "rgb",
        compress: str = "RLE", bits: int = 8, icc: bool = False) -> Path:
    """A Photoshop file written by ImageMagick. Its composite is a red-to-blue gradient (top to bottom);
    with `layers`, two layers follow (flat green and yellow), so a flattened read is told from a layer."""
    args = [IMAGEMAGICK, "-size", f"{width}x{height}", "gradient:red-blue", "-depth", str(bits)]
    if color == "cmyk":
        args += ["-colorspace", "cmyk"]
    elif color == "gray":
        args += ["-colorspace", "gray"]
    if icc:
        args += ["-profile", str(profile_file({"rgb": "srgb", "cmyk": "cmyk", "gray": "gray"}[color], path.parent))]
    if layers:
        args += ["(", "-size", f"{width // 2}x{height // 2}", "xc:green", ")",
                 "(", "-size", f"{width // 3}x{height // 3}", "xc:yellow", "-page", "+20+10", ")"]
    args += ["-density", "300", "-units", "PixelsPerInch", "-compress", compress, str(path)]
    subprocess.run(args, check=True, capture_output=True)
    return path


def pdf(path: Path) -> Path:
    """A tiny valid one-page PDF (a filled rectangle), written by hand with a correct xref table."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 144 72] /Contents 4 0 R >>",
    ]
    stream = b"0.2 0.4 0.8 rg 10 10 124 52 re f"
    objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream))
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    path.write_bytes(bytes(out))
    return path


def patch(path: Path, color: tuple[int, ...], space: str = "cmyk", size: int = 16, icc: bool = False) -> Path:
    """A flat colour patch as an uncompressed TIFF: `color` is (C, M, Y, K) in percent for cmyk, or
    (R, G, B) 0-255 for rgb."""
    if space == "cmyk":
        values = [round(v * 255 / 100) for v in color]
        interpretation = "cmyk"
    else:
        values = list(color)
        interpretation = "srgb"
    im = (pyvips.Image.black(size, size, bands=len(values)) + values).cast("uchar").copy(interpretation=interpretation)
    with_profile(im, ("cmyk" if space == "cmyk" else "srgb") if icc else None).tiffsave(str(path))
    return path


def patches(path: Path, colors: list[tuple[int, ...]], space: str = "cmyk", size: int = 16) -> Path:
    """Several flat patches side by side in one TIFF (one conversion for many colours)."""
    tiles = []
    for color in colors:
        values = [round(v * 255 / 100) for v in color] if space == "cmyk" else list(color)
        tiles.append((pyvips.Image.black(size, size, bands=len(values)) + values).cast("uchar"))
    strip = pyvips.Image.arrayjoin(tiles, across=len(tiles)).copy(interpretation="cmyk" if space == "cmyk" else "srgb")
    strip.tiffsave(str(path))
    return path


# -- damage ---------------------------------------------------------------------------------------------
def truncate(path: Path, keep_bytes: int, out: Path | None = None) -> Path:
    """The first `keep_bytes` bytes of `path` (negative: all but the last -keep_bytes), written to `out`
    (default: in place)."""
    data = path.read_bytes()
    target = out or path
    target.write_bytes(data[:keep_bytes])
    return target


def corrupt(path: Path, out: Path | None = None, keep: int | None = None, seed: int = 1) -> Path:
    """A valid header followed by garbage of the same length as the original body. By default the header is
    what a decoder needs to recognise the format: a JPEG's SOI and APPn segments, a PNG's signature and
    IHDR chunk, a TIFF's 8-byte header; the rest is seeded random bytes, so decoding fails."""
    data = bytearray(path.read_bytes())
    if keep is None:
        keep = _header_length(bytes(data))
    rng = random.Random(seed)
    data[keep:] = bytes(rng.randrange(256) for _ in range(len(data) - keep))
    target = out or path
    target.write_bytes(bytes(data))
    return target


def scramble_scan(path: Path, out: Path | None = None, seed: int = 1) -> Path:
    """A JPEG whose header reads but whose scan cannot be decoded: the entropy-coded data is seeded random
    bytes and the scan header names a Huffman table that was never defined. libjpeg fails with an error
    ("Huffman table 0x03 was not defined"), so libvips refuses it whatever its fail_on level."""
    data = bytearray(path.read_bytes())
    scan = data.rfind(b"\xff\xda")
    data[scan + 6] = 0x33  # first component: DC/AC tables 3, which no DHT defines
    start = scan + 2 + int.from_bytes(data[scan + 2:scan + 4], "big")
    rng = random.Random(seed)
    data[start:-2] = bytes(rng.randrange(255) for _ in range(len(data) - 2 - start)).replace(b"\xff", b"\xfe")
    target = out or path
    target.write_bytes(bytes(data))
    return target


def stray_marker(path: Path, out: Path | None = None) -> Path:
    """A JPEG with damaged but decodable data: a stray marker (FFD3) in the middle of the entropy-coded scan.
    libjpeg only warns ("Corrupt JPEG data: premature end of data segment") and fills the rest with grey."""
    data = path.read_bytes()
    scan = data.rfind(b"\xff\xda")
    middle = scan + (len(data) - scan) // 2
    target = out or path
    target.write_bytes(data[:middle] + b"\xff\xd3" + data[middle:])
    return target


def _header_length(data: bytes) -> int:
    if data.startswith(b"\xff\xd8"):
        pos = 2
        while pos + 4 <= len(data) and data[pos] == 0xFF and 0xE0 <= data[pos + 1] <= 0xEF:
            pos += 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
        return pos
    if data.startswith(b"\x89PNG"):
        return 8 + 25
    return 8


# -- metadata -------------------------------------------------------------------------------------------
def exiftool(path: Path, *args: str) -> str:
    """Run exiftool on `path` in place (-overwrite_original), e.g. exiftool(p, "-IPTC:Keywords=news")."""
    done = subprocess.run([EXIFTOOL, "-overwrite_original", *args, str(path)], check=True, capture_output=True,
                          text=True)
    return done.stdout


def read_tags(path: Path, *args: str) -> dict[str, Any]:
    """exiftool's view of a file as {"Group:Tag": value} (-G1, all groups and duplicates)."""
    done = subprocess.run([EXIFTOOL, "-j", "-a", "-G1", *args, str(path)], check=True, capture_output=True, text=True)
    result: dict[str, Any] = json.loads(done.stdout)[0]
    return result
