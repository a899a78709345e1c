"""The tour in the README: a JPEG dropped into the inbox lands where the rules say, with a trace."""

from __future__ import annotations

from conftest import JPEG, Site, tree, wait_for


def test_dropped_jpeg_is_stored_and_traced(site: Site) -> None:
    site.rules("""
        rules:
          - name: photos
            if: [{extension: jpg}]
            do:
              - store: {to: "{output}/photos/{name}"}
    """)
    site.start()
    site.drop("a.jpg")
    wait_for(lambda: (site.lake / "assets/photos/a.jpg").exists(), message="stored output")
    site.settled(1)
    assert tree(site.lake) == {"assets/photos/a.jpg": JPEG}
    assert not (site.hot() / "a.jpg").exists()
    [trace] = site.traces("a.jpg")
    assert trace["status"] == "finished"
    assert trace["rules"][0]["actions"][0]["target"] == "lake:assets/photos/a.jpg"
    assert site.stop() == 0


def test_trace_finds_exactly_the_file_asked_for(site: Site) -> None:
    site.rules("""
        rules:
          - name: keep-all
            do:
              - store: {to: "{output}/{relpath}"}
    """)
    site.start()
    site.drop("one/a_1.jpg")
    site.drop("two/a_1.jpg")
    site.drop("two/ax1.jpg")  # '_' must not act as a LIKE wildcard
    site.settled(3)
    assert [t["relpath"] for t in site.traces("one/a_1.jpg")] == ["one/a_1.jpg"]
    assert sorted(t["relpath"] for t in site.traces("a_1.jpg")) == ["one/a_1.jpg", "two/a_1.jpg"]
    assert site.cli("trace", "missing.jpg").returncode == 1


def test_a_newline_in_a_file_name_cannot_forge_a_log_line(site: Site) -> None:
    site.rules("""
        rules:
          - name: refuse
            do:
              - quarantine: {reason: "not wanted"}
    """)
    site.start()
    site.drop("evil\n2026-01-01 00:00:00.000 INFO    forged.jpg")
    site.settled(1)
    site.stop()
    assert not any(line.startswith("2026-01-01") for line in site.log().splitlines())
    assert "forged.jpg" in site.log()


def test_an_unreachable_database_or_data_dir_is_a_message_not_a_traceback(site: Site) -> None:
    site.env = {"FLOWD_DATABASE_URL": "postgresql+psycopg://flowd@127.0.0.1:1/flowd"}
    result = site.cli("status")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "database" in result.stderr, result.stderr
    (site.root / "blocker").write_text("a file where the data dir should be")
    site.env = {"FLOWD_DATA_DIR": str(site.root / "blocker" / "var")}
    result = site.cli("status")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "blocker" in result.stderr, result.stderr
