"""flowd.imaging: probe, truncation and convert on real files made by tests/imagegen.py.

Colour accuracy is checked against an independent reference: ImageMagick 6 (lcms2) converting the same
flat patches with the same ICC profiles (libvips' built-in srgb and cmyk, extracted to files). Both outputs
are taken to CIELab through the output profile and compared with CIEDE2000 (libvips' dE00).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path
from typing import Any

import imagegen as g
import pytest
import pyvips
from pydantic import ValidationError

from flowd.errors import PermanentError
from flowd.imaging import UnsupportedImageError, ops
from flowd.imaging.complete import truncation
from flowd.imaging.convert import Converted, ConvertSpec, convert
from flowd.imaging.probe import probe
from flowd.imaging.spec import SharpenSpec

# On a developer machine a missing tool skips these tests; in CI (where .ci/run installs it) it fails them.
CI = bool(os.environ.get("CI"))
needs_im = pytest.mark.skipif(not g.have_imagemagick() and not CI, reason="ImageMagick 6 (convert-im6.q16) is not installed")
needs_exiftool = pytest.mark.skipif(not g.have_exiftool() and not CI, reason="exiftool is not installed")

# Stated tolerance for the colour conversions, CIEDE2000 against ImageMagick+lcms with the same profiles.
MEAN_DE00, MAX_DE00 = 1.0, 2.0


def spec(**kwargs: Any) -> ConvertSpec:
    return ConvertSpec.model_validate(kwargs)


_runs = iter(range(1_000_000))


def run(src: Path, tmp: Path, **kwargs: Any) -> Converted:
    """Convert into tmp/out/ under a fresh name, as the action does in a job's work folder."""
    return convert(src, tmp / "out" / f"{src.stem}-{next(_runs)}.work", spec(**kwargs))


def pixels(path: Path) -> Any:
    return pyvips.Image.new_from_file(str(path))


@pytest.fixture()
def out(tmp_path: Path) -> Path:
    (tmp_path / "out").mkdir()
    return tmp_path


# -- probe ----------------------------------------------------------------------------------------------
def test_probe_rgb_jpeg(tmp_path: Path) -> None:
    """Size, colour, depth, profile, orientation and resolution come from the header."""
    src = g.rgb_jpeg(tmp_path / "a.jpg", 640, 480, icc=True, orientation=6)
    facts = probe(src)
    assert (facts.format, facts.width, facts.height, facts.bands) == ("jpeg", 640, 480, 3)
    assert (facts.color, facts.bits, facts.has_icc, facts.alpha, facts.pages) == ("rgb", 8, True, False, 1)
    assert facts.orientation == 6 and facts.display_size == (480, 640)
    assert facts.megapixels == pytest.approx(0.3072)


def test_probe_reads_the_header_only(tmp_path: Path) -> None:
    """A JPEG cut in half still probes: no pixel is decoded."""
    src = g.truncate(g.rgb_jpeg(tmp_path / "a.jpg", 640, 480), 20_000)
    assert probe(src).width == 640


@pytest.mark.parametrize(("make", "expect"), [
    (lambda p: g.cmyk_jpeg(p / "c.jpg", 64, 48), ("jpeg", "cmyk", 4, 8, True, False)),
    (lambda p: g.cmyk_tiff(p / "c.tif", 64, 48, icc=False), ("tiff", "cmyk", 4, 8, False, False)),
    (lambda p: g.gray_jpeg(p / "g.jpg", 64, 48), ("jpeg", "gray", 1, 8, False, False)),
    (lambda p: g.tiff16(p / "t.tif", 64, 48), ("tiff", "rgb", 3, 16, True, False)),
    (lambda p: g.tiff16(p / "t.tif", 64, 48, color="gray", icc=False), ("tiff", "gray", 1, 16, False, False)),
    (lambda p: g.png(p / "a.png", 64, 48, alpha=True), ("png", "rgb", 4, 8, False, True)),
    (lambda p: g.png(p / "a.png", 64, 48, alpha=False, bits=16), ("png", "rgb", 3, 16, False, False)),
    (lambda p: g.webp(p / "a.webp", 64, 48), ("webp", "rgb", 3, 8, False, False)),
], ids=["cmyk-jpeg", "cmyk-tiff", "gray-jpeg", "tiff16", "gray16", "png-alpha", "png16", "webp"])
def test_probe_colour_modes(tmp_path: Path, make: Any, expect: tuple[Any, ...]) -> None:
    facts = probe(make(tmp_path))
    assert (facts.format, facts.color, facts.bands, facts.bits, facts.has_icc, facts.alpha) == expect
    assert (facts.width, facts.height) == (64, 48)


def test_probe_counts_pages(tmp_path: Path) -> None:
    assert probe(g.multipage_tiff(tmp_path / "m.tif", pages=3)).pages == 3
    assert probe(g.gif(tmp_path / "a.gif", frames=4)).pages == 4


@needs_im
def test_probe_psd(tmp_path: Path) -> None:
    """Photoshop files are read by flowd itself: mode, depth, profile and resolution resources."""
    rgb = probe(g.psd(tmp_path / "a.psd", 200, 100))
    assert (rgb.format, rgb.color, rgb.bands, rgb.bits, rgb.width, rgb.height) == ("psd", "rgb", 3, 8, 200, 100)
    assert rgb.xres_dpi == 300 and rgb.has_icc is False
    cmyk = probe(g.psd(tmp_path / "c.psd", color="cmyk", icc=True, layers=False))
    assert (cmyk.color, cmyk.bands, cmyk.has_icc) == ("cmyk", 4, True)
    assert probe(g.psd(tmp_path / "g.psd", color="gray", bits=16)).bits == 16


def test_probe_undecodable_is_permanent(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(PermanentError, match=r"^cannot read image: .*not a known file format"):
        probe(bad)


def test_probe_pdf_without_a_pdf_loader(tmp_path: Path) -> None:
    """The libvips wheel has no PDF loader: that is said plainly, not as a corrupt file."""
    with pytest.raises(UnsupportedImageError, match="no PDF loader"):
        probe(g.pdf(tmp_path / "a.pdf"))


# -- truncation -----------------------------------------------------------------------------------------
def _complete_files(tmp: Path) -> dict[str, tuple[str, Path]]:
    files = {
        "jpeg": ("jpeg", g.rgb_jpeg(tmp / "a.jpg", 320, 240)),
        "png": ("png", g.png(tmp / "a.png", 120, 90)),
        "tiff": ("tiff", g.rgb_tiff(tmp / "a.tif", 120, 90)),
        "tiff-ifd-first": ("tiff", g.ifd_first_tiff(tmp / "b.tif")),
        "gif": ("gif", g.gif(tmp / "a.gif", frames=2)),
        "webp": ("webp", g.webp(tmp / "a.webp", 120, 90)),
        "pdf": ("pdf", g.pdf(tmp / "a.pdf")),
    }
    if g.have_imagemagick():
        files["psd-rle"] = ("psd", g.psd(tmp / "a.psd", 300, 200))
        files["psd-raw"] = ("psd", g.psd(tmp / "r.psd", 100, 50, compress="None", layers=False))
    return files


@pytest.fixture(scope="module")
def complete_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, Path]]:
    return _complete_files(tmp_path_factory.mktemp("complete"))


@pytest.mark.parametrize("name", ["jpeg", "png", "tiff", "tiff-ifd-first", "gif", "webp", "pdf", "psd-rle", "psd-raw"])
def test_truncation(complete_files: dict[str, tuple[str, Path]], tmp_path: Path, name: str) -> None:
    """A complete file has no reason; the same file cut at 40 % or 95 % has one."""
    if name not in complete_files:
        pytest.skip("ImageMagick is needed to write PSD")
    fmt, path = complete_files[name]
    assert truncation(path, fmt) is None
    size = path.stat().st_size
    for keep in (int(size * 0.4), int(size * 0.95)):
        cut = g.truncate(path, keep, tmp_path / f"cut-{keep}")
        assert truncation(cut, fmt), f"{name} cut to {keep} of {size} bytes"


def test_truncation_jpeg_ignores_what_follows_the_end_marker(tmp_path: Path) -> None:
    src = g.rgb_jpeg(tmp_path / "a.jpg", 320, 240)
    data = src.read_bytes()
    padded, junk, late = tmp_path / "padded.jpg", tmp_path / "junk.jpg", tmp_path / "late.jpg"
    padded.write_bytes(data + b"\x00" * 200_000)
    junk.write_bytes(data + b"camera trailer " * 500)
    late.write_bytes(data[: len(data) // 2] + b"\x00" * 4096)  # cut, then zero-filled (a preallocated upload)
    assert truncation(padded, "jpeg") is None
    assert truncation(junk, "jpeg") is None
    assert truncation(late, "jpeg") == "JPEG has no end-of-image marker (FFD9): the file is cut short"


@needs_exiftool
def test_truncation_jpeg_thumbnail_end_marker_does_not_count(tmp_path: Path) -> None:
    """An EXIF thumbnail carries its own FFD9 before the main image's scan; it must not make a cut file
    look complete."""
    src = g.rgb_jpeg(tmp_path / "a.jpg", 320, 240)
    g.exiftool(src, f"-ThumbnailImage<={g.rgb_jpeg(tmp_path / 't.jpg', 80, 60, icc=False)}")
    data = src.read_bytes()
    scan = data.rfind(b"\xff\xda")  # the main image's scan (the thumbnail has its own, earlier)
    assert data.find(b"\xff\xd9") < scan  # the thumbnail's end marker sits in the header
    assert truncation(g.truncate(src, scan + 500, tmp_path / "cut.jpg"), "jpeg")


@pytest.mark.parametrize(("order", "big"), [("<", False), (">", False), ("<", True), (">", True)],
                         ids=["II", "MM", "II-bigtiff", "MM-bigtiff"])
def test_truncation_tiff_strip_offsets_past_the_end(tmp_path: Path, order: str, big: bool) -> None:
    src = g.ifd_first_tiff(tmp_path / "a.tif", order=order, big=big)
    assert pixels(src).avg() == pytest.approx(127.03, abs=0.01)  # a valid TIFF libvips reads
    assert truncation(src, "tiff") is None
    cut = g.truncate(src, src.stat().st_size - 100, tmp_path / "cut.tif")
    assert "image data (strips) ends at byte" in (truncation(cut, "tiff") or "")


def test_truncation_tiff_directory_past_the_end(tmp_path: Path) -> None:
    """libtiff writes the directory last: cutting the end loses it."""
    src = g.rgb_tiff(tmp_path / "a.tif", 120, 90, compression="none")
    reason = truncation(g.truncate(src, src.stat().st_size - 1000, tmp_path / "cut.tif"), "tiff") or ""
    assert reason.startswith("TIFF directory 0")


@pytest.mark.parametrize("fmt", ["jpeg", "png", "tiff", "gif", "webp", "psd", "pdf"])
def test_truncation_garbage_is_not_truncation(tmp_path: Path, fmt: str) -> None:
    """Garbage is for libvips to call corrupt; truncation() never raises on it."""
    for n, data in enumerate((b"", b"\x00" * 10, b"garbage" * 300, bytes(range(256)) * 40)):
        path = tmp_path / f"g{n}"
        path.write_bytes(data)
        assert truncation(path, fmt) is None
    assert truncation(tmp_path / "g1", "text") is None


def test_truncation_short_malformed_jpeg_is_garbage(tmp_path: Path) -> None:
    """A JPEG header claiming more bytes than the file has is a cut upload, unless the file ends with EOI."""
    short = tmp_path / "short.jpg"
    short.write_bytes(b"\xff\xd8\xff\xe0 not a picture at all \xff\xd9")
    assert truncation(short, "jpeg") is None
    short.write_bytes(b"\xff\xd8\xff\xe0 not a picture at all")
    assert truncation(short, "jpeg") == "the file ends inside a JPEG header segment (needs byte 8306, has 25)"


def test_truncation_webp_riff_size(tmp_path: Path) -> None:
    src = g.webp(tmp_path / "a.webp", 120, 90)
    cut = g.truncate(src, src.stat().st_size - 10, tmp_path / "cut.webp")
    assert truncation(cut, "webp") == f"WebP RIFF header says {src.stat().st_size} bytes but the file has " \
                                      f"{src.stat().st_size - 10}"


def test_tiff_tags_reads_the_first_directory(tmp_path: Path) -> None:
    from flowd.imaging.complete import tiff_tags

    assert {256, 257, 273, 279} <= tiff_tags(g.ifd_first_tiff(tmp_path / "a.tif", order=">", big=True))
    assert tiff_tags(g.rgb_jpeg(tmp_path / "a.jpg", 8, 8)) == set()


# -- corrupt input --------------------------------------------------------------------------------------
def test_corrupt_jpeg_is_permanent_with_the_decoders_reason(out: Path) -> None:
    src = g.corrupt(g.rgb_jpeg(out / "a.jpg", 320, 240))
    with pytest.raises(PermanentError, match=r"^cannot read image: VipsJpeg: ") as caught:
        run(src, out, format={"type": "jpeg"})
    assert str(out) not in str(caught.value)  # the reason names no work paths
    assert list((out / "out").iterdir()) == []  # nothing half-written is left behind


def test_truncated_jpeg_fails_rather_than_turning_grey(out: Path) -> None:
    """fail_on=error: libjpeg's "premature end" is an error, not grey rows at the bottom."""
    src = g.truncate(g.rgb_jpeg(out / "a.jpg", 640, 480), 30_000)
    with pytest.raises(PermanentError, match="cannot read image: VipsJpeg: premature end of JPEG"):
        run(src, out, format={"type": "jpeg"})


def test_corrupt_png_is_permanent(out: Path) -> None:
    with pytest.raises(PermanentError, match="^cannot read image: "):
        run(g.corrupt(g.png(out / "a.png", 120, 90)), out, format={"type": "png"})


def test_undecodable_scan_is_permanent(out: Path) -> None:
    src = g.scramble_scan(g.rgb_jpeg(out / "a.jpg", 320, 240))
    assert probe(src).width == 320  # the header is fine ...
    assert truncation(src, "jpeg") is None  # ... and complete
    with pytest.raises(PermanentError, match="^cannot read image: VipsJpeg: Huffman table 0x03 was not defined$"):
        run(src, out, resize={"fit": [100, 100]}, format={"type": "jpeg"})


def test_strict_refuses_what_the_decoder_only_warns_about(out: Path) -> None:
    """A stray marker in the scan decodes with a warning (and grey rows); `strict: true` refuses it."""
    src = g.stray_marker(g.rgb_jpeg(out / "a.jpg", 320, 240))
    assert run(src, out, format={"type": "jpeg"}).path is not None
    with pytest.raises(PermanentError, match="cannot read image: VipsJpeg: "):
        run(src, out, format={"type": "jpeg"}, strict=True)


# -- colour ---------------------------------------------------------------------------------------------
CMYK_PATCHES = [(0, 0, 0, 0), (100, 0, 0, 0), (0, 100, 0, 0), (0, 0, 100, 0), (0, 0, 0, 100), (100, 100, 0, 0),
                (0, 100, 100, 0), (100, 0, 100, 0), (0, 0, 0, 50), (60, 40, 40, 100), (5, 30, 40, 0), (20, 10, 0, 0),
                (50, 50, 50, 0), (30, 0, 60, 10), (0, 60, 20, 5), (80, 20, 0, 40)]
RGB_PATCHES = [(255, 255, 255), (0, 0, 0), (255, 0, 0), (0, 255, 0), (0, 0, 255), (0, 255, 255), (255, 0, 255),
               (255, 255, 0), (128, 128, 128), (200, 150, 120), (60, 90, 150), (30, 160, 70), (240, 200, 40),
               (90, 40, 20), (180, 180, 200), (10, 10, 40)]
PATCH = 16


def _de00(a: Path, b: Path, profile: str, count: int) -> list[float]:
    """CIEDE2000 per patch between two images in the colour space of `profile`, via that profile to Lab."""
    vips_profile = g.VIPS_PROFILES[profile]
    lab_a = pixels(a).icc_import(input_profile=vips_profile, embedded=False, intent="relative")
    lab_b = pixels(b).icc_import(input_profile=vips_profile, embedded=False, intent="relative")
    de = lab_a.dE00(lab_b)
    return [float(de.crop(i * PATCH + 4, 4, PATCH - 8, PATCH - 8).avg()) for i in range(count)]


def _imagemagick(src: Path, dst: Path, profiles: list[Path], intent: str, bpc: bool) -> Path:
    args = [g.IMAGEMAGICK, str(src), "-intent", intent.capitalize(), "-black-point-compensation" if bpc else
            "+black-point-compensation"]
    for profile in profiles:
        args += ["-profile", str(profile)]
    subprocess.run([*args, "+profile", "*", "-depth", "8", "-compress", "none", str(dst)], check=True)
    return dst


@needs_im
@pytest.mark.parametrize("bpc", [False, True], ids=["relative", "relative+bpc"])
@pytest.mark.parametrize(("space", "patches", "source", "target"), [
    ("cmyk", CMYK_PATCHES, "cmyk", "srgb"), ("rgb", RGB_PATCHES, "srgb", "cmyk")], ids=["cmyk-to-srgb", "srgb-to-cmyk"])
def test_colour_matches_lcms_reference(out: Path, space: str, patches: list[tuple[int, ...]], source: str,
                                       target: str, bpc: bool) -> None:
    """flowd (libvips) and ImageMagick (lcms2), same profiles: CIEDE2000 mean < 1.0, max < 2.0."""
    src = g.patches(out / f"{space}.tif", patches, space, PATCH)
    done = run(src, out, color={"to": target, "assume": source, "intent": "relative",
                                "black_point_compensation": bpc}, format={"type": "tiff", "compression": "none"})
    reference = _imagemagick(src, out / "reference.tif", [g.profile_file(source, out), g.profile_file(target, out)],
                             "relative", bpc)
    assert done.path is not None
    de = _de00(done.path, reference, target, len(patches))
    assert sum(de) / len(de) < MEAN_DE00 and max(de) < MAX_DE00, [round(d, 2) for d in de]


def test_cmyk_paper_white_and_cyan(out: Path) -> None:
    """CMYK 0/0/0/0 is paper white, 100 % cyan is a clear cyan in sRGB."""
    src = g.patches(out / "p.tif", [(0, 0, 0, 0), (100, 0, 0, 0)], "cmyk", PATCH)
    done = run(src, out, color={"to": "srgb"}, format={"type": "png"})
    assert done.path is not None and done.facts is not None and done.facts.color == "rgb"
    image = pixels(done.path)
    white, cyan = image.getpoint(8, 8), image.getpoint(PATCH + 8, 8)
    assert all(v >= 254 for v in white)
    assert cyan[0] < 40 and cyan[1] > 120 and cyan[2] > 200


def test_cmyk_colour_management_comes_before_resize(out: Path) -> None:
    """Color Factory's order: CMYK input is converted first, then resized and sharpened."""
    done = run(g.cmyk_jpeg(out / "c.jpg", 400, 300), out, color={"to": "srgb"}, resize={"fit": [100, 100]},
               sharpen={}, format={"type": "jpeg"})
    steps = [step["op"] for step in done.record["operations"]]
    assert steps == ["load", "color", "resize", "sharpen", "save"]
    assert done.record["operations"][1]["from"] == "Chemical proof (embedded)"


def test_rgb_colour_management_comes_after_sharpening(out: Path) -> None:
    src = g.rgb_jpeg(out / "a.jpg", 400, 300, icc=True, profile="p3")
    done = run(src, out, color={"to": "srgb"}, resize={"fit": [100, 100]}, sharpen={}, format={"type": "jpeg"})
    steps = [step["op"] for step in done.record["operations"]]
    assert steps == ["load", "resize", "sharpen", "color", "save"]
    assert done.record["operations"][3]["stage"] == "after sharpen"


def test_srgb_to_srgb_is_not_converted(out: Path) -> None:
    """No needless round trip: an sRGB file going to sRGB keeps its pixels; the output profile is embedded."""
    src = g.rgb_jpeg(out / "a.jpg", 200, 150, icc=False)
    done = run(src, out, color={"to": "srgb"}, format={"type": "png"})
    color_step = next(step for step in done.record["operations"] if step["op"] == "color")
    assert color_step["skipped"] == "already in the output profile"
    assert done.path is not None and pixels(done.path).get("icc-profile-data") == g.profile_bytes("srgb")


def test_ignore_embedded_uses_the_assumed_profile(out: Path) -> None:
    """A file whose embedded profile is declared wrong converts as if it had the assumed one."""
    tagged = g.rgb_jpeg(out / "p3.jpg", 64, 48, icc=True, profile="p3", quality=100)
    untagged = g.rgb_jpeg(out / "plain.jpg", 64, 48, icc=False, quality=100)
    with_p3 = run(tagged, out, color={"to": "cmyk"}, format={"type": "tiff"})
    ignoring = run(tagged, out, color={"to": "cmyk", "ignore_embedded": True, "assume": "srgb"},
                   format={"type": "tiff"})
    plain = run(untagged, out, color={"to": "cmyk"}, format={"type": "tiff"})
    assert with_p3.path and ignoring.path and plain.path
    assert pixels(ignoring.path).avg() == pytest.approx(pixels(plain.path).avg(), abs=0.01)
    assert abs(pixels(with_p3.path).avg() - pixels(plain.path).avg()) > 0.2


def test_embed_false_writes_no_profile(out: Path) -> None:
    done = run(g.cmyk_jpeg(out / "c.jpg", 64, 48), out, color={"to": "srgb", "embed": False}, format={"type": "jpeg"})
    assert done.facts is not None and done.facts.has_icc is False and done.facts.color == "rgb"


def test_rgb_to_gray(out: Path) -> None:
    done = run(g.rgb_jpeg(out / "a.jpg", 64, 48), out, color={"to": "gray"}, format={"type": "tiff"})
    assert done.facts is not None and (done.facts.color, done.facts.bands, done.facts.has_icc) == ("gray", 1, True)


def test_cmyk_into_a_format_without_cmyk_becomes_srgb(out: Path) -> None:
    done = run(g.cmyk_tiff(out / "c.tif", 64, 48), out, format={"type": "webp"})
    assert done.facts is not None and done.facts.color == "rgb"
    assert "cmyk input written as sRGB" in done.record["notes"][0]


# -- resize ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("resize", "size"), [
    ({"fit": [200, 200]}, (200, 150)),
    ({"fit": [1000, 90]}, (120, 90)),
    ({"exact": [100, 100]}, (100, 100)),
    ({"percent": 25}, (100, 75)),
    ({"max_megapixels": 0.03}, (200, 150)),
    ({"fit": [1000, 1000]}, (400, 300)),  # never enlarged ...
    ({"percent": 150}, (400, 300)),
    ({"fit": [800, 800], "upscale": True}, (800, 600)),  # ... unless asked
    ({"exact": [500, 100]}, (400, 300)),
])
def test_resize(out: Path, resize: dict[str, Any], size: tuple[int, int]) -> None:
    done = run(g.rgb_jpeg(out / "a.jpg", 400, 300), out, resize=resize, format={"type": "png"})
    assert done.facts is not None and (done.facts.width, done.facts.height) == size
    assert done.facts.width * done.facts.height <= max(400 * 300, size[0] * size[1])


def test_resize_shrinks_jpeg_on_load(out: Path) -> None:
    """libjpeg decodes at 1/4 when the target is that much smaller; Lanczos does the rest."""
    done = run(g.rgb_jpeg(out / "a.jpg", 1600, 1200), out, resize={"fit": [300, 300]}, format={"type": "jpeg"})
    load, resize = done.record["operations"][:2]
    assert load["shrink_on_load"] == 4 and resize["decoded"] == [400, 300] and resize["to"] == [300, 225]


def test_resize_shrinks_webp_on_load(out: Path) -> None:
    done = run(g.webp(out / "a.webp", 800, 600), out, resize={"fit": [300, 300]}, format={"type": "webp"})
    load, resize = done.record["operations"][:2]
    assert load["shrink_on_load"] == 2 and resize["decoded"] == [400, 300] and resize["to"] == [300, 225]


def test_resize_keeps_orientation_and_sizes_stored_pixels(out: Path) -> None:
    done = run(g.rgb_jpeg(out / "a.jpg", 400, 300, orientation=6), out, resize={"fit": [200, 100]},
               format={"type": "jpeg"})
    assert done.facts is not None and (done.facts.width, done.facts.height, done.facts.orientation) == (133, 100, 6)


def test_resize_premultiplies_alpha(out: Path) -> None:
    done = run(g.png(out / "a.png", 320, 240, alpha=True), out, resize={"fit": [160, 160]}, format={"type": "png"})
    assert done.facts is not None and done.facts.alpha and done.facts.bands == 4


# -- sharpen --------------------------------------------------------------------------------------------
def _edge(width: int = 64, low: int = 80, high: int = 170) -> Any:
    """A soft vertical edge from `low` to `high` at x = width / 2."""
    x = pyvips.Image.xyz(width, 8)[0]
    return ((x >= width // 2).ifthenelse(high, low)).cast("uchar").gaussblur(0.8).cast("uchar")


def test_sharpen_increases_edge_contrast() -> None:
    edge = _edge()
    sharp = ops.unsharp(edge, amount=100, radius=1.0, threshold=0)
    assert sharp.max() > edge.max() + 5 and sharp.min() < edge.min() - 5  # overshoot on both sides of the edge
    before = edge.getpoint(32, 4)[0] - edge.getpoint(31, 4)[0]
    after = sharp.getpoint(32, 4)[0] - sharp.getpoint(31, 4)[0]
    assert after > before * 1.3


def test_sharpen_threshold_leaves_low_contrast_noise_alone() -> None:
    flat = (pyvips.Image.gaussnoise(64, 64, mean=128, sigma=1.0, seed=3)).cast("uchar")
    assert (flat - 128).abs().max() <= 4  # noise of a few levels ...
    untouched = ops.unsharp(flat, amount=200, radius=1.0, threshold=8)
    sharpened = ops.unsharp(flat, amount=200, radius=1.0, threshold=0)
    assert (untouched - flat).abs().max() == 0  # ... stays below a threshold of 8 levels
    assert sharpened.deviate() > flat.deviate() * 1.3
    # a real edge still passes the threshold
    edge = _edge()
    steeper = ops.unsharp(edge, amount=100, radius=1.0, threshold=8)
    def step(im: Any) -> float:
        return float(im.getpoint(32, 4)[0] - im.getpoint(31, 4)[0])

    assert step(steeper) > step(edge) + 10


def test_sharpen_16_bit_scales_the_threshold() -> None:
    flat8 = pyvips.Image.gaussnoise(64, 64, mean=128, sigma=1.0, seed=3).cast("uchar")
    flat16 = ((flat8.cast("ushort") << 8) | flat8.cast("ushort")).copy(interpretation="rgb16")
    out16 = ops.unsharp(flat16, amount=200, radius=1.0, threshold=8)
    assert out16.format == "ushort" and (out16 - flat16).abs().max() == 0


def test_sharpen_spec_units() -> None:
    assert SharpenSpec() == SharpenSpec(amount=80, radius=0.8, threshold=2)


# -- output formats -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return g.rgb_jpeg(tmp_path_factory.mktemp("photo") / "photo.jpg", 480, 360, icc=True)


def test_jpeg_quality_changes_size(out: Path, photo: Path) -> None:
    small = run(photo, out, format={"type": "jpeg", "quality": 40})
    assert small.path is not None
    small_bytes = small.path.stat().st_size
    big = run(photo, out, format={"type": "jpeg", "quality": 95})
    assert big.path is not None and big.path.stat().st_size > small_bytes * 1.5
    assert big.record["output"]["bytes"] == big.path.stat().st_size


@needs_exiftool
def test_jpeg_progressive(out: Path, photo: Path) -> None:
    done = run(photo, out, format={"type": "jpeg", "progressive": True})
    assert done.path is not None
    assert b"\xff\xc2" in done.path.read_bytes()[:2000]  # SOF2: progressive DCT
    assert g.read_tags(done.path)["File:EncodingProcess"] == "Progressive DCT, Huffman coding"


@needs_exiftool
def test_tiff_16_bit_from_8_bit(out: Path, photo: Path) -> None:
    """8 -> 16 bits scales by 257, so white stays white (65535)."""
    done = run(g.rgb_jpeg(out / "w.jpg", 64, 48, icc=False, noise=0), out, format={"type": "tiff", "bits": 16})
    assert done.path is not None and done.facts is not None and done.facts.bits == 16
    tags = g.read_tags(done.path)
    assert tags["IFD0:BitsPerSample"] == "16 16 16" and tags["IFD0:Compression"] == "LZW"
    eight = pixels(out / "w.jpg")
    assert pixels(done.path).max() == eight.max() * 257


@needs_exiftool
@pytest.mark.parametrize(("compression", "tag"), [("lzw", "LZW"), ("none", "Uncompressed"),
                                                  ("jpeg", "JPEG"), ("deflate", "Adobe Deflate")])
def test_tiff_compression(out: Path, photo: Path, compression: str, tag: str) -> None:
    done = run(photo, out, format={"type": "tiff", "compression": compression})
    assert done.path is not None and done.ext == ".tif"
    assert g.read_tags(done.path)["IFD0:Compression"] == tag


def test_16_bit_tiff_stays_16_bit_by_default(out: Path) -> None:
    done = run(g.tiff16(out / "t.tif", 64, 48), out, sharpen={}, format={"type": "tiff"})
    assert done.facts is not None and done.facts.bits == 16


def test_png_and_webp(out: Path, photo: Path) -> None:
    png = run(photo, out, format={"type": "png"})
    webp = run(photo, out, format={"type": "webp", "quality": 70})
    lossless = run(photo, out, format={"type": "webp", "lossless": True})
    assert (png.ext, webp.ext) == (".png", ".webp")
    assert png.facts is not None and png.facts.format == "png"
    assert webp.path is not None and lossless.path is not None
    assert lossless.path.stat().st_size > webp.path.stat().st_size


@pytest.mark.parametrize(("make", "ext"), [
    (lambda p: g.png(p / "a.png", 64, 48), ".png"),
    (lambda p: g.rgb_tiff(p / "a.tiff", 64, 48), ".tiff"),
    (lambda p: g.rgb_jpeg(p / "a.jpeg", 64, 48), ".jpeg"),
    (lambda p: g.webp(p / "a.webp", 64, 48), ".webp"),
    (lambda p: g.gif(p / "a.gif"), ".jpg"),
], ids=["png", "tiff", "jpeg", "webp", "gif"])
def test_same_keeps_writable_formats(out: Path, make: Any, ext: str) -> None:
    done = run(make(out), out, format={"type": "same"})
    assert done.ext == ext and done.path is not None and done.path.suffix == ext


def test_output_path_replaces_the_suffix_and_leaves_the_source_alone(out: Path, photo: Path) -> None:
    before = hashlib.sha256(photo.read_bytes()).hexdigest()
    done = convert(photo, out / "out" / "token.img", spec(format={"type": "tiff"}))
    assert done.path == out / "out" / "token.tif" and done.path.exists()
    assert hashlib.sha256(photo.read_bytes()).hexdigest() == before


def test_alpha_is_flattened_onto_white_for_jpeg(out: Path) -> None:
    done = run(g.png(out / "a.png", 64, 48, alpha=True), out, format={"type": "jpeg"})
    assert done.path is not None and done.facts is not None and done.facts.bands == 3
    assert min(pixels(done.path).getpoint(0, 24)) > 240  # fully transparent column -> white


# -- metadata -------------------------------------------------------------------------------------------
@pytest.fixture()
def tagged(out: Path) -> Path:
    src = g.rgb_jpeg(out / "tagged.jpg", 480, 360, icc=True, orientation=6)
    g.exiftool(src, "-IPTC:Keywords=news", "-IPTC:Keywords=sport", "-IPTC:By-line=Ann", "-XMP-dc:Title=Hello",
               "-EXIF:Artist=Bob", f"-ThumbnailImage<={g.rgb_jpeg(out / 'thumb.jpg', 120, 90, icc=False)}")
    return src


@needs_exiftool
def test_jpeg_web_keeps_iptc_and_xmp_and_drops_the_rest(out: Path, tagged: Path) -> None:
    """Color Factory's JPEG for Web: sRGB, no EXIF, no ICC profile, no thumbnail, no Photoshop data; IPTC and
    XMP stay. EXIF goes, so the orientation is applied to the pixels."""
    done = run(tagged, out, resize={"fit": [200, 200]}, format={"type": "jpeg_web"})
    assert done.path is not None and done.ext == ".jpg"
    tags = g.read_tags(done.path)
    assert tags["IPTC:Keywords"] == ["news", "sport"] and tags["IPTC:By-line"] == "Ann"
    assert tags["XMP-dc:Title"] == "Hello"
    groups = {key.split(":")[0] for key in tags}
    assert not groups & {"IFD0", "IFD1", "ExifIFD", "ICC_Profile", "ICC-header"}, groups
    assert "Photoshop" not in groups or set(k for k in tags if k.startswith("Photoshop:")) <= {"Photoshop:IPTCDigest"}
    assert done.facts is not None and (done.facts.width, done.facts.height) == (150, 200)  # upright
    assert done.record["metadata"] == {"exif": "dropped", "iptc": "kept", "xmp": "kept"}


@needs_exiftool
@pytest.mark.parametrize("kind", ["jpeg", "tiff", "png"])
def test_metadata_is_carried(out: Path, tagged: Path, kind: str) -> None:
    """EXIF, IPTC and XMP reach JPEG, TIFF and PNG outputs (exiv2 adds what libvips cannot write)."""
    done = run(tagged, out, resize={"fit": [200, 200]}, format={"type": kind})
    assert done.path is not None
    tags = g.read_tags(done.path)
    assert tags["IPTC:Keywords"] == ["news", "sport"] and tags["XMP-dc:Title"] == "Hello"
    assert tags["IFD0:Artist"] == "Bob" and tags["IFD0:Orientation"] == "Rotate 90 CW"
    assert tags["ICC_Profile:ProfileDescription"] == "sRGB"
    assert done.record["metadata"] == {"exif": "kept", "iptc": "kept", "xmp": "kept"}
    assert pixels(done.path).width == 200  # exiv2's rewrite left a readable image


@needs_exiftool
@pytest.mark.parametrize("source", ["tiff", "psd", "png"])
def test_metadata_from_other_containers_reaches_jpeg(out: Path, source: str) -> None:
    """IPTC sits in a TIFF tag, in a PSD image resource, in a PNG text chunk: all become JPEG APP13."""
    if source == "psd" and not g.have_imagemagick():
        pytest.skip("ImageMagick is needed to write PSD")
    src = {"tiff": lambda: g.rgb_tiff(out / "a.tif", 64, 48), "psd": lambda: g.psd(out / "a.psd", layers=False),
           "png": lambda: g.png(out / "a.png", 64, 48, alpha=False)}[source]()
    g.exiftool(src, "-IPTC:Keywords=news", "-IPTC:By-line=Ann", "-XMP-dc:Title=Hello")
    done = run(src, out, format={"type": "jpeg"})
    assert done.path is not None
    tags = g.read_tags(done.path)
    assert (tags.get("IPTC:Keywords"), tags.get("IPTC:By-line"), tags.get("XMP-dc:Title")) == ("news", "Ann", "Hello")


@needs_exiftool
def test_webp_drops_only_iptc(out: Path, tagged: Path) -> None:
    done = run(tagged, out, format={"type": "webp"})
    assert done.path is not None
    tags = g.read_tags(done.path)
    assert tags["XMP-dc:Title"] == "Hello" and tags["IFD0:Artist"] == "Bob" and "IPTC:Keywords" not in tags
    assert done.record["metadata"]["iptc"] == "dropped"


@needs_exiftool
def test_metadata_strip(out: Path, tagged: Path) -> None:
    done = run(tagged, out, color={"to": "srgb"}, format={"type": "jpeg"}, metadata="strip")
    assert done.path is not None
    groups = {key.split(":")[0] for key in g.read_tags(done.path)}
    assert not groups & {"IFD0", "IPTC", "XMP-dc"} and "ICC_Profile" in groups


def test_metadata_strip_turns_rotated_pixels_upright(out: Path) -> None:
    done = run(g.rgb_jpeg(out / "r.jpg", 400, 300, orientation=6), out, format={"type": "jpeg"}, metadata="strip")
    assert done.facts is not None and (done.facts.width, done.facts.height, done.facts.orientation) == (300, 400, 1)


def test_lab_input_is_converted_to_srgb(out: Path) -> None:
    lab = out / "lab.tif"
    g.rgb(64, 48).colourspace("lab").tiffsave(str(lab))
    assert probe(lab).color == "other"
    done = run(lab, out, format={"type": "jpeg"})
    assert done.facts is not None and done.facts.color == "rgb"
    assert done.record["operations"][1] == {"op": "colourspace", "from": "lab", "to": "srgb"}


# -- modes, pages, layers -------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["metadata_only", "copy", "skip"])
def test_modes_pass_the_input_through(out: Path, mode: str) -> None:
    src = g.cmyk_jpeg(out / "c.jpg", 64, 48)
    done = run(src, out, color={"to": "srgb"}, format={"type": "jpeg"}, modes={"cmyk": mode})
    assert (done.path, done.mode) == (None, mode)
    assert (done.facts is None) == (mode == "skip")
    assert list((out / "out").iterdir()) == []


def test_modes_apply_per_colour(out: Path) -> None:
    rgb = run(g.rgb_jpeg(out / "a.jpg", 64, 48), out, format={"type": "png"}, modes={"cmyk": "skip"})
    assert rgb.mode == "process" and rgb.path is not None


def test_multi_page_uses_the_first_page(out: Path) -> None:
    done = run(g.multipage_tiff(out / "m.tif", pages=3), out, format={"type": "png"})
    assert done.path is not None and done.facts is not None and done.facts.pages == 1
    assert pixels(done.path).avg() == pytest.approx(40)  # page 1 is grey 40, page 2 grey 80
    assert done.record["operations"][0]["page"] == "first of 3"


@needs_im
def test_layered_psd_flattens_to_its_composite(out: Path) -> None:
    src = g.psd(out / "l.psd", 200, 100, layers=True)
    done = run(src, out, format={"type": "same"})
    assert done.ext == ".jpg" and done.path is not None
    assert done.record["operations"][0]["layers"] == "composite (flattened)"
    image = pixels(done.path)
    top, bottom = image.getpoint(100, 1), image.getpoint(100, 98)
    assert top[0] > 200 and top[2] < 60 and bottom[2] > 200 and bottom[0] < 60  # the gradient, not a layer


@needs_im
@pytest.mark.parametrize(("color", "bits", "compress"), [("cmyk", 8, "RLE"), ("gray", 16, "RLE"), ("rgb", 16, "None")])
def test_psd_composite_matches_imagemagick(out: Path, color: str, bits: int, compress: str) -> None:
    """The composite as flowd decodes it equals ImageMagick's reading of the same file."""
    src = g.psd(out / "a.psd", 120, 60, color=color, bits=bits, compress=compress, layers=False)
    done = run(src, out, format={"type": "tiff", "compression": "none"})
    reference = out / "ref.tif"
    subprocess.run([g.IMAGEMAGICK, f"{src}[0]", "-compress", "none", str(reference)], check=True)
    ours, theirs = pixels(done.path), pixels(reference)
    assert (ours.bands, ours.format) == (theirs.bands, theirs.format)
    assert (ours - theirs).abs().max() <= (257 if bits == 16 else 1)


# -- spec -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("value", "message"), [
    ({"resize": {"fit": [10, 10], "percent": 50}}, "give exactly one of fit, exact, percent, max_megapixels"),
    ({"format": {"type": "jpeg_web"}, "color": {"to": "cmyk"}}, "jpeg_web is sRGB"),
    ({"format": {"type": "png"}, "color": {"to": "cmyk"}}, "png cannot hold CMYK"),
    ({"color": {"to": "adobe"}}, "expected srgb, cmyk, gray, p3, or the absolute path"),
    ({"color": {"to": "/nonexistent/profile.icc"}}, "cannot read ICC profile"),
    ({"color": {"assume": {"cmyk": "srgb"}}}, "is not a cmyk profile"),
    ({"format": {"type": "tiff", "progressive": True}}, "progressive applies to format type jpeg"),
    ({"format": {"type": "jpeg", "quality": 0}}, "greater than or equal to 1"),
    ({"modes": {"rgb": "ignore"}}, "'process', 'metadata_only', 'copy' or 'skip'"),
    ({"colour": {}}, "Extra inputs are not permitted"),
])
def test_spec_errors(value: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ConvertSpec.model_validate(value)


def test_profile_file_in_spec(tmp_path: Path) -> None:
    profile = g.profile_file("cmyk", tmp_path)
    parsed = ConvertSpec.model_validate({"color": {"to": str(profile), "assume": {"cmyk": str(profile)}}})
    assert parsed.color is not None and parsed.color.assumed("cmyk") == str(profile)
    assert parsed.color.assumed("rgb") == "srgb"


def test_operation_cache_is_off(out: Path, photo: Path) -> None:
    """A daemon sees each file once: libvips' operation cache must not pile up decoded headers."""
    run(photo, out, format={"type": "jpeg"})
    assert pyvips.cache_get_max() == 0 and pyvips.cache_get_size() == 0
