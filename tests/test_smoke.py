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
