"""Template placeholders in targets and renames, rendered by the real daemon.

Every placeholder is written into a store target, so the lake's file names are the rendered values.
"""

from __future__ import annotations

import json
import os
import re
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime
from hashlib import sha256
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest
from conftest import JPEG, Site, tree

TIFF = b"II*\x00\x08\x00\x00\x00" + b"\x00" * 100

FILES = {  # relpath -> (bytes, mtime as local time)
    "Photo.Final.JPG": (JPEG, datetime(2021, 3, 4, 5, 6, 7)),
    "sub/dir/scan.tiff": (TIFF, datetime(2019, 12, 31, 23, 59, 58)),
    "README": (b"read me\n", datetime(2000, 1, 2, 3, 4, 5)),
}

SCANS = """
[[hotfolders]]
name = "scans"
tenant = "acme"
path = "hot/scans"
output = "lake:acme/scans"
stable_seconds = 0
after = "keep"
errors = "errors/scans"
"""

RULES = """
tenant: acme
rules:
  # First, so the rule after it proves that a rename does not leak into other rules.
  - name: renamed
    do:
      - rename: {to: "{stem}-v2{ext}"}
      - store: {to: "{output}/renamed/{relpath}"}
      - store: {to: "{output}/renamed-parts/{stem}[{ext}][{extension}]/{name}"}
      - store: {to: "{output}/renamed-facts/{reldir}/{size}-{mtime:%Y}-{hotfolder}-{name}"}
      - rename: {to: "final-{name}"}
      - store: {to: "{output}/renamed-twice/{relpath}"}

  - name: fields
    do:
      - store: {to: "{output}/name/{name}"}
      - store: {to: "{output}/stem-ext/{stem}[{ext}][{extension}]"}
      - store: {to: "{output}/relpath/{relpath}"}
      - store: {to: "{output}/reldir/{reldir}/{name}"}
      - store: {to: "{output}/who/{tenant}/{hotfolder}/{name}"}
      - store: {to: "{output}/size/{size}/{name}"}
      - store: {to: "{output}/sha256/{sha256}"}
      - store: {to: "{output}/uuid/{name}/{uuid}/{uuid}"}
      - store: {to: "{output}/now/{now:%Y-%m-%d}/{now}/{name}"}
      - store: {to: "{output}/mtime/{mtime:%Y/%m/%d %H.%M.%S}/{mtime}/{name}"}
      - store: {to: "{output}/braces/{{{stem}}}-{{literal}}{ext}"}
"""


def local_ts(when: datetime) -> float:
    return when.timestamp()  # a naive datetime is local time, as {mtime} renders it


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    site = Site(tmp_path_factory.mktemp("templates"))
    site.configure(hotfolders=[], extra=SCANS)
    site.rules(RULES)
    try:
        site.start()
        before = datetime.now()
        for relpath, (data, mtime) in FILES.items():
            path = site.hot("scans") / relpath
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.parent / f".{path.name}.part"
            tmp.write_bytes(data)
            os.utime(tmp, (local_ts(mtime), local_ts(mtime)))
            os.rename(tmp, path)
        site.settled(len(FILES))
        after = datetime.now()
        yield {"site": site, "lake": tree(site.lake / "acme/scans"), "hot": tree(site.hot("scans")),
               "before": before, "after": after}
        assert site.stop() == 0
    finally:
        site.kill()
        if site.notify is not None:
            site.notify.close()


def section(run: dict[str, Any], name: str) -> dict[str, bytes]:
    prefix = name + "/"
    return {k.removeprefix(prefix): v for k, v in run["lake"].items() if k.startswith(prefix)}


def test_output_is_the_hot_folders_container_and_prefix(run: dict[str, Any]) -> None:
    # output = "lake:acme/scans": every `{output}/...` target lands below lake/acme/scans/
    assert run["lake"], "nothing was stored"
    assert set(tree(run["site"].lake)) == {f"acme/scans/{k}" for k in run["lake"]}


def test_name_stem_ext_extension(run: dict[str, Any]) -> None:
    assert section(run, "name") == {name.rsplit("/", 1)[-1]: data for name, (data, _) in FILES.items()}
    # {ext} keeps the dot and the case; {extension} is lower case without the dot; the stem keeps
    # every earlier dot. A name without a dot has an empty ext.
    assert set(section(run, "stem-ext")) == {"Photo.Final[.JPG][jpg]", "scan[.tiff][tiff]", "README[][]"}


def test_relpath_and_reldir(run: dict[str, Any]) -> None:
    assert section(run, "relpath") == {relpath: data for relpath, (data, _) in FILES.items()}
    # A file at the top of the hot folder has an empty reldir; the empty segment disappears.
    assert set(section(run, "reldir")) == {"Photo.Final.JPG", "sub/dir/scan.tiff", "README"}


def test_tenant_hotfolder_size_sha256(run: dict[str, Any]) -> None:
    assert set(section(run, "who")) == {"acme/scans/Photo.Final.JPG", "acme/scans/scan.tiff", "acme/scans/README"}
    assert set(section(run, "size")) == {f"{len(data)}/{relpath.rsplit('/', 1)[-1]}"
                                         for relpath, (data, _) in FILES.items()}
    assert section(run, "sha256") == {sha256(data).hexdigest(): data for data, _ in FILES.values()}


def test_uuid_is_a_uuid_per_file_and_the_same_within_a_step(run: dict[str, Any]) -> None:
    keys = section(run, "uuid")
    assert len(keys) == len(FILES)
    seen = set()
    for key in keys:
        _name, first, second = key.split("/")
        assert first == second, "one step renders one uuid, however often the template uses it"
        assert str(uuid.UUID(first)) == first
        seen.add(first)
    assert {k.split("/")[0] for k in keys} == {"Photo.Final.JPG", "scan.tiff", "README"}
    assert len(seen) == len(FILES), "each file gets its own uuid"


def test_now_is_the_detection_time(run: dict[str, Any]) -> None:
    keys = section(run, "now")
    assert len(keys) == len(FILES)
    for key in keys:
        day, stamp, _name = key.split("/")
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d{6}", stamp), "{now} without a format is %Y-%m-%dT%H%M%S"
        when = datetime.strptime(stamp, "%Y-%m-%dT%H%M%S")
        assert run["before"].replace(microsecond=0) <= when <= run["after"], stamp
        assert day == when.strftime("%Y-%m-%d")


def test_mtime_is_the_files_modification_time(run: dict[str, Any]) -> None:
    assert set(section(run, "mtime")) == {
        "2021/03/04 05.06.07/2021-03-04T050607/Photo.Final.JPG",
        "2019/12/31 23.59.58/2019-12-31T235958/scan.tiff",
        "2000/01/02 03.04.05/2000-01-02T030405/README",
    }


def test_double_braces_are_literal_braces(run: dict[str, Any]) -> None:
    assert set(section(run, "braces")) == {"{Photo.Final}-{literal}.JPG", "{scan}-{literal}.tiff",
                                           "{README}-{literal}"}


def test_rename_changes_name_stem_ext_relpath_for_later_actions(run: dict[str, Any]) -> None:
    assert section(run, "renamed") == {"Photo.Final-v2.JPG": JPEG, "sub/dir/scan-v2.tiff": TIFF,
                                       "README-v2": b"read me\n"}
    assert set(section(run, "renamed-parts")) == {"Photo.Final-v2[.JPG][jpg]/Photo.Final-v2.JPG",
                                                  "scan-v2[.tiff][tiff]/scan-v2.tiff", "README-v2[][]/README-v2"}
    # A second rename starts from the first one's result.
    assert set(section(run, "renamed-twice")) == {"final-Photo.Final-v2.JPG", "sub/dir/final-scan-v2.tiff",
                                                  "final-README-v2"}
    # ...and nothing that is not about the name changes.
    assert set(section(run, "renamed-facts")) == {
        f"{len(JPEG)}-2021-scans-Photo.Final-v2.JPG", f"sub/dir/{len(TIFF)}-2019-scans-scan-v2.tiff",
        "8-2000-scans-README-v2"}


def test_rename_leaves_the_source_and_other_rules_alone(run: dict[str, Any]) -> None:
    # after = "keep": the sources are still there under their own names
    assert run["hot"] == {relpath: data for relpath, (data, _) in FILES.items()}
    # the rule after `renamed` saw the original names (see test_name_stem_ext_extension), and the
    # trace records what each rename produced
    [trace] = run["site"].traces("Photo.Final.JPG")
    renamed = trace["rules"][0]
    assert renamed["rule"] == "renamed"
    assert [(a["action"], a.get("name")) for a in renamed["actions"] if a["action"] == "rename"] == [
        ("rename", "Photo.Final-v2.JPG"), ("rename", "final-Photo.Final-v2.JPG")]
    assert trace["rules"][1]["actions"][0]["target"] == "lake:acme/scans/name/Photo.Final.JPG"


class _Hook(BaseHTTPRequestHandler):
    calls: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).calls.append(body)
        self.send_response(503 if len(type(self).calls) == 1 else 200)  # fail once, then accept
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_uuid_and_now_are_the_same_when_a_step_is_retried(site: Site) -> None:
    _Hook.calls = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        site.rules(f"""
            rules:
              - name: tagged
                do:
                  - rename: {{to: "{{now:%Y%m%d-%H%M%S.%f}}_{{uuid}}{{ext}}"}}
                  - store: {{to: "{{output}}/tagged/{{name}}"}}
                  - webhook: {{url: "http://127.0.0.1:{server.server_port}/hook"}}
        """)
        site.start(env={"no_proxy": "*", "NO_PROXY": "*"})
        site.drop("photo.jpg")
        site.settled(1, timeout=20)
    finally:
        server.shutdown()
        server.server_close()
    # The first attempt stored the copy, then the webhook failed (503) and the job was retried.
    assert len(_Hook.calls) == 2
    first, second = (call["name"] for call in _Hook.calls)
    assert first == second, "the retried rename rendered a different {now} or {uuid}"
    stamp, _, tail = first.partition("_")
    assert str(uuid.UUID(tail.removesuffix(".jpg"))) + ".jpg" == tail
    assert stamp == datetime.fromisoformat(_Hook.calls[0]["detected"]).strftime("%Y%m%d-%H%M%S.%f")
    assert tree(site.lake) == {f"assets/tagged/{first}": JPEG}
    attempts = [json.loads(line) for line in site.cli("trace", "photo.jpg", "--all", "--json").stdout.splitlines()]
    assert [t["attempt"] for t in attempts] == [1, 2]
    assert [t["rules"][0]["actions"][0]["name"] for t in attempts] == [first, first]
    assert site.stop() == 0
