"""Job Request Files without a daemon: parsing the requests editorial systems drop, mapping their Windows paths
onto local folders, and writing the PRF results they poll for. Real files in tmp_path, no mocks."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest

from flowd.errors import PermanentError
from flowd.jrf import (
    ERRORS,
    MAGIC,
    JobRequest,
    JrfError,
    PathMap,
    is_jrf,
    parse_jrf,
    prf_path,
    write_prf,
)

# A copy of the sample in ../shared/fixtures/colorfactory/jobs/ (CI has only this repository).
FIXTURE = Path(__file__).parent / "fixtures" / "nice-image.jrf"
JPEG_HEAD = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"


def jrf(*lines: str, end: str = "\r\n", encoding: str = "cp1252") -> bytes:
    return "".join(line + end for line in lines).encode(encoding)


def malformed(data: bytes) -> JrfError:
    with pytest.raises(JrfError) as caught:
        parse_jrf(data)
    return caught.value


# --- recognising and parsing --------------------------------------------------------------------------------


@pytest.mark.skipif(not FIXTURE.exists(), reason="shared fixtures not mounted")
def test_the_color_factory_fixture_parses_with_an_empty_output_as_none() -> None:
    data = FIXTURE.read_bytes()
    assert is_jrf(data[:64]) and b"\r\n" in data
    request = parse_jrf(data)
    assert request == JobRequest("2", r"\\cfserver\images\Hires\Nice Image.jpg", None, None,
                                 {"M_VERSION": "2", "M_INPUT_FILE": r"\\cfserver\images\Hires\Nice Image.jpg",
                                  "M_OUTPUT_FILE": ""})
    assert request.extra == {}


def test_is_jrf_needs_the_magic_at_the_very_start() -> None:
    assert MAGIC == b"[JRF]"
    assert is_jrf(b"[JRF]\r\nM_VERSION=2")
    assert is_jrf(b"\xef\xbb\xbf[JRF]\n")  # UTF-8 BOM
    assert is_jrf(b"[jrf]\n")  # same case-insensitivity as the parser
    assert not is_jrf(JPEG_HEAD)
    assert not is_jrf(b"")
    assert not is_jrf(b"[JR")
    assert not is_jrf(b"\r\n[JRF]\r\n")  # Color Factory: the file BEGINS with [JRF]
    assert not is_jrf(b" [JRF]")
    assert not is_jrf("[JRF]".encode("utf-16"))


@pytest.mark.parametrize("end", ["\r\n", "\n", "\r"], ids=["crlf", "lf", "cr"])
def test_every_line_ending_parses_the_same(end: str) -> None:
    data = jrf("[JRF]", "M_VERSION=2", r"M_INPUT_FILE=D:\In\a.jpg", r"M_OUTPUT_FILE=D:\Out\a.tif",
               "M_REMOVE_INPUT_FILE=1", end=end)
    request = parse_jrf(data)
    assert (request.version, request.input_file, request.output_file, request.remove_input) == (
        "2", r"D:\In\a.jpg", r"D:\Out\a.tif", True)
    # no line end at the end of the file at all
    assert parse_jrf(data.rstrip(b"\r\n")).remove_input is True


def test_windows_1252_bytes_decode_as_windows_1252() -> None:
    data = b"[JRF]\r\nM_VERSION=2\r\nM_INPUT_FILE=\\\\cf\\img\\Bj\xf8rn \x96 S\xe9.jpg\r\nM_CAPTION=\x80 5\r\n"
    request = parse_jrf(data)
    assert request.input_file == "\\\\cf\\img\\Bjørn – Sé.jpg"
    assert request.keys["M_CAPTION"] == "€ 5"
    # the five bytes windows-1252 leaves unassigned do not make decoding fail
    assert parse_jrf(b"[JRF]\nM_VERSION=2\nM_INPUT_FILE=D:\\x\x81y.jpg\n").input_file == "D:\\x\x81y.jpg"


def test_utf8_with_and_without_bom() -> None:
    lines = ("[JRF]", "M_VERSION=2", r"M_INPUT_FILE=D:\Bilder\Bjørn Ødegård.jpg")
    plain = jrf(*lines, encoding="utf-8")
    assert parse_jrf(plain).input_file == r"D:\Bilder\Bjørn Ødegård.jpg"
    assert parse_jrf(b"\xef\xbb\xbf" + plain).input_file == r"D:\Bilder\Bjørn Ødegård.jpg"


def test_comments_blank_lines_spacing_quotes_and_case() -> None:
    data = jrf("[jrf]", "; written by the editorial system", "# another comment", "",
               "  m_version = 2  ", "M_Input_File= \"D:\\In\\semi;colon #1.jpg\" ", "m_output_file=",
               "M_CROP_LEFT=10", "m_crop_left=12")
    request = parse_jrf(data)
    assert request.version == "2"
    assert request.input_file == "D:\\In\\semi;colon #1.jpg"  # no trailing comments: ; and # are legal in names
    assert request.output_file is None
    assert list(request.keys) == ["M_VERSION", "M_INPUT_FILE", "M_OUTPUT_FILE", "M_CROP_LEFT"]
    assert request.keys["M_CROP_LEFT"] == "12"  # a repeated key: the last one wins
    assert request.extra == {"M_CROP_LEFT": "12"}


def test_only_keys_of_the_jrf_section_are_kept() -> None:
    data = jrf("[JRF]", "M_VERSION=2", r"M_INPUT_FILE=D:\a.jpg", "[Editorial]", "M_INPUT_FILE=D:\\other.jpg",
               "STORY=42")
    request = parse_jrf(data)
    assert request.input_file == r"D:\a.jpg"
    assert "STORY" not in request.keys


def test_remove_input_flag_values() -> None:
    def flag(value: str | None) -> bool | None:
        extra = () if value is None else (f"M_REMOVE_INPUT_FILE={value}",)
        return parse_jrf(jrf("[JRF]", "M_VERSION=1", r"M_INPUT_FILE=D:\a.jpg", *extra)).remove_input

    assert (flag(None), flag(""), flag("0"), flag("1"), flag("yes")) == (None, None, False, True, True)
    error = malformed(jrf("[JRF]", "M_VERSION=2", r"M_INPUT_FILE=D:\a.jpg", "M_REMOVE_INPUT_FILE=maybe"))
    assert error.code == 1 and "M_REMOVE_INPUT_FILE" in error.description and "maybe" in error.description


# --- malformed requests: each has its code and says what is wrong ---------------------------------------------


@pytest.mark.parametrize(
    ("data", "code", "words"),
    [
        (b"M_VERSION=2\r\n[JRF]\r\n", 1, ["does not begin with [JRF]", "M_VERSION"]),
        (JPEG_HEAD, 1, ["does not begin with [JRF]"]),
        (b"\r\n[JRF]\r\nM_VERSION=2\r\n", 1, ["does not begin with [JRF]"]),
        (b"[JRF] trailing\r\nM_VERSION=2\r\n", 1, ["first line", "[JRF] trailing"]),
        (jrf("[JRF]", "M_VERSION=2", r"M_INPUT_FILE=D:\a.jpg", "just some words"), 1,
         ["line 4", "key=value", "just some words"]),
        (jrf("[JRF]", "M_VERSION=2", r"M_INPUT_FILE=D:\a.jpg", "=orphan"), 1, ["line 4", "key", "=orphan"]),
        (jrf("[JRF]", "M_VERSION=2", "M_OUTPUT_FILE="), 1, ["M_INPUT_FILE is missing"]),
        (jrf("[JRF]", "M_VERSION=2", "M_INPUT_FILE=  "), 1, ["M_INPUT_FILE is empty"]),
        (jrf("[JRF]", r"M_INPUT_FILE=D:\a.jpg"), 1, ["M_VERSION is missing"]),
        (jrf("[JRF]", "M_VERSION=3", r"M_INPUT_FILE=D:\a.jpg"), 6, ["M_VERSION='3'", "1, 2"]),
        (jrf("[JRF]", "M_VERSION=two", r"M_INPUT_FILE=D:\a.jpg"), 6, ["'two'", "not supported"]),
        (b"[JRF]\r\nM_VERSION=2\r\nM_INPUT_FILE=D:\\a\x00.jpg\r\n", 1, ["NUL byte"]),
    ],
    ids=["not-first", "jpeg", "blank-line-first", "junk-after-header", "bare-words", "empty-key",
         "no-input", "empty-input", "no-version", "version-3", "version-word", "nul"],
)
def test_a_malformed_request_names_its_problem(data: bytes, code: int, words: list[str]) -> None:
    error = malformed(data)
    assert error.code == code
    for word in words:
        assert word in error.description, (word, error.description)
    assert error.description in str(error) and f"PRF code {code}" in str(error)


def test_a_file_over_64_kib_is_refused_before_decoding() -> None:
    big = jrf("[JRF]", "M_VERSION=2", r"M_INPUT_FILE=D:\a.jpg") + b"; " + b"\xff" * (64 * 1024)
    error = malformed(big)
    assert error.code == 1 and "at most 65536 bytes" in error.description and str(len(big)) in error.description
    # exactly at the limit is fine
    ok = jrf("[JRF]", "M_VERSION=2", r"M_INPUT_FILE=D:\a.jpg")
    assert parse_jrf(ok + b";" * (64 * 1024 - len(ok))).input_file == r"D:\a.jpg"


def test_jrf_error_is_permanent_pickles_and_every_code_is_documented() -> None:
    error = JrfError(6, "M_VERSION='9' is not supported")
    assert isinstance(error, PermanentError) and not error.transient
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.code, copy.description, str(copy)) == (6, error.description, str(error))
    assert set(ERRORS) == {0, 1, 2, 3, 4, 5, 6} and ERRORS[0] == "success"
    assert all(text and text == text.strip() for text in ERRORS.values())


# --- Windows paths onto local folders ------------------------------------------------------------------------


@pytest.fixture
def roots(tmp_path: Path) -> dict[str, Path]:
    made = {name: tmp_path / name for name in ("images", "images2", "cf", "hires")}
    for path in made.values():
        path.mkdir()
    return made


@pytest.fixture
def paths(roots: dict[str, Path]) -> PathMap:
    return PathMap({
        "\\\\cfserver\\images": str(roots["images"]),
        "D:\\CF": str(roots["cf"]),
        "\\\\CFSERVER\\Images\\Hires\\": str(roots["hires"]),  # a longer prefix inside the first one
    })


def test_unc_and_drive_paths_map_onto_their_roots(paths: PathMap, roots: dict[str, Path]) -> None:
    assert paths.map(r"\\cfserver\images\Drop\Nice Image.jpg") == roots["images"] / "Drop" / "Nice Image.jpg"
    assert paths.map(r"D:\CF\Out\a.tif") == roots["cf"] / "Out" / "a.tif"
    assert paths.map(r"\\cfserver\images") == roots["images"]  # the root itself is inside
    assert paths.roots() == [roots["images"], roots["cf"], roots["hires"]]


def test_forward_slashes_case_and_doubled_separators(paths: PathMap, roots: dict[str, Path]) -> None:
    expected = roots["images"] / "Drop" / "Bjørn.jpg"
    for variant in ("//cfserver/images/Drop/Bjørn.jpg", r"\\CFSERVER\IMAGES\Drop\Bjørn.jpg",
                    "\\\\cfserver/Images\\\\Drop/Bjørn.jpg"):
        assert paths.map(variant) == expected, variant
    # the remainder keeps its own case: the local file system decides
    assert paths.map("d:/cf/Out/A.TIF") == roots["cf"] / "Out" / "A.TIF"


def test_the_longest_prefix_wins(paths: PathMap, roots: dict[str, Path]) -> None:
    assert paths.map(r"\\cfserver\images\hires\x.jpg") == roots["hires"] / "x.jpg"
    assert paths.map(r"\\cfserver\images\HiresOld\x.jpg") == roots["images"] / "HiresOld" / "x.jpg"


def test_a_sibling_prefix_is_not_a_match(paths: PathMap) -> None:
    assert paths.map(r"\\cfserver\images2\x.jpg") is None
    assert paths.map(r"D:\CF2\x.jpg") is None
    assert paths.map(r"E:\CF\x.jpg") is None
    assert paths.map(r"\\other\images\x.jpg") is None


@pytest.mark.parametrize("path", [
    r"\\cfserver\images\..\images2\x.jpg", r"\\cfserver\images\Drop\..\..\etc\passwd", r"D:\CF\.\x.jpg",
    "D:/CF/../CF/x.jpg", r"D:\CF\...\x.jpg", "D:\\CF\\x\x00.jpg", r"CF\x.jpg", "D:CF\\x.jpg",
    r"\\?\D:\CF\x.jpg", r"\\cfserver", "",
])
def test_escapes_and_oddities_are_refused(paths: PathMap, path: str) -> None:
    assert paths.map(path) is None
    assert paths.unmapped_reason(path)


def test_a_symlink_out_of_the_root_is_refused(paths: PathMap, roots: dict[str, Path], tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "key.pem").write_text("x")
    (roots["images"] / "link").symlink_to(secret)
    assert paths.map(r"\\cfserver\images\link\key.pem") is None
    assert "symlink" in paths.unmapped_reason(r"\\cfserver\images\link\key.pem")
    # a symlink to another mapped root stays inside what the map already exposes
    (roots["images"] / "tocf").symlink_to(roots["cf"])
    assert paths.map(r"\\cfserver\images\tocf\a.tif") == roots["images"] / "tocf" / "a.tif"


def test_posix_paths_only_inside_a_mapped_root(paths: PathMap, roots: dict[str, Path], tmp_path: Path) -> None:
    inside = roots["cf"] / "Out" / "a.tif"
    assert paths.map(str(inside)) == inside
    assert paths.map(str(roots["cf"]) + "//Out/./a.tif") == inside  # normpath; '.' is harmless here
    assert paths.map("/etc/passwd") is None
    assert paths.map(str(roots["images2"] / "x.jpg")) is None  # sibling of a root, not inside it
    assert paths.map(str(roots["cf"]) + "/../images2/x.jpg") is None
    assert paths.map(str(tmp_path / "cf2" / "x")) is None
    assert "outside every mapped root" in paths.unmapped_reason("/etc/passwd")
    assert ".." in paths.unmapped_reason(str(roots["cf"]) + "/../cf/x.jpg")


def test_unmapped_reason_names_the_path_and_the_prefixes(roots: dict[str, Path]) -> None:
    paths = PathMap({"\\\\cfserver\\images": str(roots["images"]), "D:\\CF": str(roots["cf"])})
    assert paths.unmapped_reason(r"\\other\share\x.jpg") == (
        r"no [path_map] entry maps \\other\share\x.jpg; mapped prefixes: \\cfserver\images, D:\CF")
    assert "'..'" in paths.unmapped_reason(r"D:\CF\..\x.jpg")
    assert "not an absolute path" in paths.unmapped_reason("x.jpg")
    assert paths.unmapped_reason(r"D:\CF\a.jpg") == rf"D:\CF\a.jpg maps to {roots['cf'] / 'a.jpg'}"
    assert "none ([path_map] is empty)" in PathMap({}).unmapped_reason(r"D:\x.jpg")
    assert PathMap({}).map("/anything") is None


@pytest.mark.parametrize(("mapping", "words"), [
    ({"cfserver\\images": "/srv/images"}, "not a Windows drive"),
    ({"D:\\CF": "srv/cf"}, "not an absolute local path"),
    ({"D:\\CF\\..\\X": "/srv/x"}, "'..'"),
    ({"D:\\CF": "/srv/a", "d:/cf/": "/srv/b"}, "name the same prefix"),
])
def test_a_bad_path_map_is_refused_with_its_key(mapping: dict[str, str], words: str) -> None:
    with pytest.raises(ValueError, match="path_map") as caught:
        PathMap(mapping)
    assert words in str(caught.value)


# --- PRF results ---------------------------------------------------------------------------------------------


def test_prf_names(tmp_path: Path) -> None:
    assert prf_path(tmp_path / "job.jrf") == tmp_path / "job.prf"
    assert prf_path(tmp_path / "job.JRF") == tmp_path / "job.prf"
    assert prf_path(tmp_path / "job") == tmp_path / "job.prf"
    assert prf_path(tmp_path / "story.42.jrf") == tmp_path / "story.42.prf"


def test_write_prf_is_crlf_windows_1252_and_names_input_and_output(tmp_path: Path) -> None:
    request = parse_jrf(jrf("[JRF]", "M_VERSION=2", r"M_INPUT_FILE=\\cfserver\images\Bjørn.jpg"))
    written = write_prf(tmp_path / "job.jrf", request, r"\\cfserver\images\Out\Bjørn.tif", 0, "success")
    assert written == tmp_path / "job.prf"
    data = written.read_bytes()
    assert data == (b"[PRF]\r\nM_VERSION=2\r\nM_INPUT_FILE=\\\\cfserver\\images\\Bj\xf8rn.jpg\r\n"
                    b"M_OUTPUT_FILE=\\\\cfserver\\images\\Out\\Bj\xf8rn.tif\r\nM_ERROR_CODE=0\r\n"
                    b"M_ERROR_TEXT=success\r\n")
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.prf"]  # no temp file left behind


def test_write_prf_for_an_unparseable_request_and_awkward_text(tmp_path: Path) -> None:
    error = malformed(b"garbage")
    written = write_prf(tmp_path / "bad.jrf", None, "", error.code, error.description + "\r\nsecond line 漢字")
    text = written.read_bytes().decode("cp1252")
    lines = text.split("\r\n")
    assert lines[:5] == ["[PRF]", "M_VERSION=2", "M_INPUT_FILE=", "M_OUTPUT_FILE=", "M_ERROR_CODE=1"]
    assert lines[5].startswith("M_ERROR_TEXT=the file does not begin with [JRF]")
    assert lines[5].endswith("second line ??") and lines[6] == ""  # one line; unencodable -> '?'
    # an empty description falls back to the code's table text
    assert b"M_ERROR_TEXT=input path not mapped\r\n" in write_prf(tmp_path / "x.jrf", None, "", 3, "").read_bytes()


def test_write_prf_replaces_an_older_result_atomically(tmp_path: Path) -> None:
    old = tmp_path / "job.prf"
    old.write_bytes(b"[PRF]\r\nM_ERROR_CODE=4\r\n")
    reader = old.open("rb")  # a reader holding the old result keeps reading the old, whole file
    request = parse_jrf(jrf("[JRF]", "M_VERSION=1", r"M_INPUT_FILE=D:\CF\a.jpg"))
    write_prf(tmp_path / "job.JRF", request, r"D:\CF\Out\a.jpg", 0, "success")
    assert reader.read() == b"[PRF]\r\nM_ERROR_CODE=4\r\n"
    reader.close()
    new = old.read_bytes()
    assert b"M_VERSION=1\r\n" in new and b"M_ERROR_CODE=0\r\n" in new
    assert os.listdir(tmp_path) == ["job.prf"]


def test_write_prf_into_a_missing_folder_fails_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_prf(tmp_path / "gone" / "job.jrf", None, "", 5, "output could not be written")
    assert list(tmp_path.iterdir()) == []
