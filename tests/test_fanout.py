"""Which rules run: every matching rule (fan-out, each from the original asset), `stop: true`,
`on:` and tenants, `enabled: false`."""

from __future__ import annotations

from conftest import JPEG, PDF, Site, tree

TEXT = b"plain text\n"


def considered(trace: dict) -> list[str]:
    return [r["rule"] for r in trace["rules"]]


def test_every_matching_rule_runs_from_the_original_asset_until_a_stop(site: Site) -> None:
    site.rules("""
        rules:
          - name: renamer
            if: {extension: jpg}
            do:
              - rename: {to: "renamed-{name}"}
              - store: {to: "{output}/renamer/{relpath}"}

          - name: copier
            if: {extension: jpg}
            do:
              - store: {to: "{output}/copier/{relpath}"}

          - name: finals-stop-here
            if: {path: "final/**"}
            do:
              - store: {to: "{output}/finals/{relpath}"}
            stop: true

          - name: catch-all
            do:
              - store: {to: "{output}/catch-all/{relpath}"}
    """)
    site.start()
    files = {"plain/f.jpg": JPEG, "final/f.jpg": JPEG, "final/f.txt": TEXT, "plain/f.txt": TEXT}
    for relpath, data in files.items():
        site.drop(relpath, data)
    site.settled(len(files))

    assert tree(site.lake) == {
        # the rename in `renamer` is that rule's business only...
        "assets/renamer/plain/renamed-f.jpg": JPEG,
        "assets/renamer/final/renamed-f.jpg": JPEG,
        # ...`copier`, the next rule, starts again from the original name
        "assets/copier/plain/f.jpg": JPEG,
        "assets/copier/final/f.jpg": JPEG,
        "assets/finals/final/f.jpg": JPEG,
        "assets/finals/final/f.txt": TEXT,
        # `catch-all` matches everything, but a matched `stop: true` rule before it hides the finals
        "assets/catch-all/plain/f.jpg": JPEG,
        "assets/catch-all/plain/f.txt": TEXT,
    }
    assert tree(site.hot()) == {}, "every file matched a rule, so after = delete removed them all"

    traces = {t["relpath"]: t for name in ("f.jpg", "f.txt") for t in site.traces(name)}
    assert set(traces) == set(files)
    plain = traces["plain/f.jpg"]
    assert considered(plain) == ["renamer", "copier", "finals-stop-here", "catch-all"]
    assert [r["matched"] for r in plain["rules"]] == [True, True, False, True]
    assert plain["rules"][0]["actions"][0]["name"] == "renamed-f.jpg"
    assert plain["rules"][1]["actions"][0]["target"] == "lake:assets/copier/plain/f.jpg"

    # After the stop, later rules are not even considered: they are absent from the trace.
    final = traces["final/f.jpg"]
    assert considered(final) == ["renamer", "copier", "finals-stop-here"]
    assert all(r["matched"] for r in final["rules"])
    final_txt = traces["final/f.txt"]
    assert considered(final_txt) == ["renamer", "copier", "finals-stop-here"]
    assert [r["matched"] for r in final_txt["rules"]] == [False, False, True]
    # A `stop: true` rule that does not match stops nothing.
    plain_txt = traces["plain/f.txt"]
    assert considered(plain_txt) == ["renamer", "copier", "finals-stop-here", "catch-all"]
    assert [r["matched"] for r in plain_txt["rules"]] == [False, False, False, True]
    assert site.stop() == 0


def test_on_tenants_and_disabled_rules(site: Site) -> None:
    site.configure(hotfolders=[{"name": "inbox"}, {"name": "other"}, {"name": "acme-in", "tenant": "acme"}])
    site.rules("""
        rules:
          # Disabled: it would match everything and stop every other rule, but it never runs.
          - name: switched-off
            enabled: false
            do:
              - store: {to: "{output}/switched-off/{hotfolder}/{name}"}
            stop: true

          - name: everywhere
            do:
              - store: {to: "{output}/everywhere/{hotfolder}/{name}"}

          - name: inbox-only
            on: [{hotfolder: inbox}]
            do:
              - store: {to: "{output}/inbox-only/{hotfolder}/{name}"}
    """, "default.yaml")
    site.rules("""
        tenant: acme
        rules:
          - name: everywhere   # rule names are per tenant
            do:
              - store: {to: "{output}/acme-everywhere/{hotfolder}/{name}"}
    """, "acme.yaml")
    site.start()
    for folder in ("inbox", "other", "acme-in"):
        site.drop("x.pdf", PDF, folder=folder)
    site.settled(3)

    assert tree(site.lake) == {
        "assets/everywhere/inbox/x.pdf": PDF,
        "assets/everywhere/other/x.pdf": PDF,
        "assets/inbox-only/inbox/x.pdf": PDF,
        "assets/acme-everywhere/acme-in/x.pdf": PDF,
    }
    traces = {t["hotfolder"]: t for t in site.traces("x.pdf")}
    assert set(traces) == {"inbox", "other", "acme-in"}
    # A rule without `on:` runs in every hot folder of its own tenant, and only there.
    assert [(r["rule"], r["file"].split(":")[0]) for r in traces["inbox"]["rules"]] == [
        ("everywhere", "rules/default.yaml"), ("inbox-only", "rules/default.yaml")]
    assert [(r["rule"], r["file"].split(":")[0]) for r in traces["other"]["rules"]] == [
        ("everywhere", "rules/default.yaml")]
    assert [(r["rule"], r["file"].split(":")[0]) for r in traces["acme-in"]["rules"]] == [
        ("everywhere", "rules/acme.yaml")]
    for folder, trace in traces.items():
        assert trace["status"] == "finished", folder
        assert "switched-off" not in considered(trace)
    assert site.stop() == 0
