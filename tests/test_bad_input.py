"""Bad input: every broken config or rule gives one clear `file:line: dotted.path: message` and exit 1.

Each case is one fault in an otherwise valid site. Most run `flowd check` in-process (fast); a handful
run `python -m flowd check` as a subprocess to prove the exit status and the absence of a traceback end
to end. Line numbers are exact: a message pointing one line off sends a person to the wrong place.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import TWO_TENANT_SITE
from loguru import logger

from flowd.cli import main as cli_main

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable

# The valid site every rule case starts from (two tenants). Line numbers of YAML cases refer to the rule file only.
SITE_TOML = TWO_TENANT_SITE

GOOD_RULES = """\
rules:
  - name: photos
    on: [{hotfolder: inbox}]
    if: [{extension: jpg}]
    do:
      - store: {to: "lake:photos/{name}"}
"""


@dataclass(frozen=True)
class Case:
    id: str
    files: dict[str, str]  # relative path -> text (dedented); flowd.toml defaults to SITE_TOML
    file: str  # the file the error must name
    line: int | None  # the exact line it must name (None: an environment variable, no line)
    says: tuple[str, ...]  # substrings the message must contain: the bad key/value and what is allowed
    env: dict[str, str] = field(default_factory=dict)


def toml(id: str, text: str, line: int | None, *says: str, env: dict[str, str] | None = None) -> Case:
    return Case(id, {"flowd.toml": text}, "flowd.toml", line, says, env or {})


def rules(id: str, text: str, line: int, *says: str, file: str = "rules/bad.yaml",
          more: dict[str, str] | None = None) -> Case:
    return Case(id, {"flowd.toml": SITE_TOML, "rules/bad.yaml": text, **(more or {})}, file, line, says)


def rule(id: str, body: str, line: int, *says: str) -> Case:
    """A single rule under `rules:`; `body` starts at line 2 of the file."""
    return rules(id, "rules:\n" + textwrap.indent(textwrap.dedent(body), "  "), line, *says)


CONFIG_CASES = [
    toml("toml-syntax-error", """\
        [flowd]
        workers = 4
        data_dir = "var
        """, 3, "not valid TOML"),
    toml("toml-duplicate-key", """\
        [flowd]
        workers = 4
        workers = 8
        """, 3, "not valid TOML"),
    toml("database-url-not-a-url", """\
        [flowd]
        data_dir = "var"
        database_url = "flowd.db"
        """, 3, "flowd.database_url", "not a database URL", "got 'flowd.db'"),
    toml("database-url-unsupported-backend", """\
        [flowd]
        database_url = "mysql://flowd@db/flowd"
        """, 2, "flowd.database_url", "SQLite or PostgreSQL, not mysql"),
    toml("flowd-unknown-key", """\
        [flowd]
        data_dir = "var"
        wrokers = 4
        """, 3, "flowd.wrokers", "unknown key 'wrokers'", "allowed: batch_size, data_dir, database_url"),
    toml("flowd-workers-wrong-type", """\
        [flowd]
        data_dir = "var"
        workers = "four"
        """, 3, "flowd.workers", "valid integer", "got 'four'"),
    toml("flowd-workers-zero", """\
        [flowd]
        workers = 0
        """, 2, "flowd.workers", "greater than or equal to 1", "got 0"),
    toml("flowd-log-level-unknown", """\
        [flowd]
        log_level = "LOUD"
        """, 2, "flowd.log_level", "got 'LOUD'", "allowed:", "'DEBUG'"),
    toml("flowd-rules-not-a-list", """\
        [flowd]
        rules = "rules/*.yaml"
        """, 2, "flowd.rules", "valid list", "got 'rules/*.yaml'"),
    toml("flowd-not-a-table", """\
        flowd = 4
        """, 1, "flowd: expected a [flowd] table", "got 4"),
    toml("unknown-top-level-table", """\
        [flowd]
        workers = 2

        [storages.lake]
        kind = "local"
        root = "lake"
        """, 4, "storages", "unknown key 'storages'", "allowed:", "hotfolders", "storage"),
    toml("storage-unknown-kind", """\
        [storage.lake]
        kind = "s3"
        root = "lake"
        """, 2, "storage.lake.kind", "got 's3'", "allowed:", "'local'"),
    toml("storage-unknown-key", """\
        [storage.lake]
        kind = "local"
        rooot = "lake"
        """, 3, "storage.lake.rooot", "unknown key 'rooot'; did you mean 'root' (required)?",
        "allowed: fsync, kind"),
    toml("storage-missing-root", """\
        [storage.lake]
        kind = "local"

        [[hotfolders]]
        name = "inbox"
        path = "hot/inbox"
        """, 1, "storage.lake.root: this key is required"),
    toml("storage-bad-tenant-name", """\
        [storage.lake]
        kind = "local"
        root = "lake"
        tenants = ["ac me"]
        """, 4, "storage.lake.tenants.0", "a name is 1-64 letters", "got 'ac me'"),
    toml("storage-bad-name", """\
        [flowd]
        workers = 2

        [storage."la ke"]
        kind = "local"
        root = "lake"
        """, 4, "storage.la ke", "a name is 1-64 letters", "got 'la ke'"),
    toml("storage-root-overlaps-hotfolder", """\
        [storage.lake]
        kind = "local"
        root = "data"

        [[hotfolders]]
        name = "inbox"
        path = "data/inbox"
        """, 7, "hotfolders.0.path", "overlaps the root of storage 'lake'", "got 'data/inbox'"),
    toml("storage-root-is-a-hotfolder", """\
        [storage.lake]
        kind = "local"
        root = "hot/inbox"

        [[hotfolders]]
        name = "inbox"
        path = "hot/inbox/"
        """, 7, "hotfolders.0.path", "overlaps the root of storage 'lake'", "got 'hot/inbox/'"),
    toml("hotfolder-unknown-key", """\
        [[hotfolders]]
        name = "inbox"
        path = "hot/inbox"
        stabel_seconds = 5
        """, 4, "hotfolders.0.stabel_seconds", "unknown key 'stabel_seconds'", "allowed:", "stable_seconds"),
    toml("hotfolder-missing-path", """\
        [[hotfolders]]
        name = "inbox"
        output = "lake:assets"
        """, 1, "hotfolders.0.path: this key is required"),
    toml("hotfolder-bad-name", """\
        [[hotfolders]]
        name = "in box"
        path = "hot/inbox"
        """, 2, "hotfolders.0.name", "a name is 1-64 letters", "got 'in box'"),
    toml("hotfolder-duplicate-name", """\
        [[hotfolders]]
        name = "inbox"
        path = "hot/a"

        [[hotfolders]]
        name = "inbox"
        path = "hot/b"
        """, 6, "hotfolders.1.name", "'inbox' is already used by hotfolders.0 (line 2)", "got 'inbox'"),
    toml("hotfolder-output-missing-storage", """\
        [storage.lake]
        kind = "local"
        root = "lake"

        [[hotfolders]]
        name = "inbox"
        path = "hot/inbox"
        output = "lak:assets"
        """, 8, "hotfolders.0.output", "no storage named 'lak'", "got 'lak:assets'", "allowed: lake"),
    toml("hotfolder-output-escapes", """\
        [storage.lake]
        kind = "local"
        root = "lake"

        [[hotfolders]]
        name = "inbox"
        path = "hot/inbox"
        output = "lake:assets/../../etc"
        """, 8, "hotfolders.0.output", "would leave its container", "got 'lake:assets/../../etc'"),
    toml("path-map-same-prefix-twice", """\
        [path_map]
        '\\\\cfserver\\images' = "srv/images"
        '\\\\CFSERVER\\images' = "srv/other"
        """, 1, "path_map", "name the same prefix"),
    toml("path-map-not-a-windows-path", """\
        [path_map]
        '/mnt/images' = "srv/images"
        """, 1, "path_map", "is not a Windows path prefix"),
    toml("hotfolder-output-storage-of-other-tenant", """\
        [storage.vault]
        kind = "local"
        root = "vault"
        tenants = ["acme"]

        [[hotfolders]]
        name = "inbox"
        path = "hot/inbox"
        output = "vault:assets"
        """, 9, "hotfolders.0.output", "not open to tenant 'default'", "allowed: acme"),
    toml("hotfolder-after-trash", """\
        [[hotfolders]]
        name = "inbox"
        path = "hot/inbox"
        after = "trash"
        """, 4, "hotfolders.0.after", "delete, keep or move:<folder>", "got 'trash'"),
    toml("hotfolder-after-move-inside-itself", """\
        [[hotfolders]]
        name = "inbox"
        path = "hot/inbox"
        after = "move:hot/inbox/done"
        """, 4, "hotfolders.0.after", "inside the hot folder", "got 'move:hot/inbox/done'"),
    toml("hotfolder-errors-inside-itself", """\
        [[hotfolders]]
        name = "inbox"
        path = "hot/inbox"
        errors = "hot/inbox/errors"
        """, 4, "hotfolders.0.errors", "inside the hot folder", "got 'hot/inbox/errors'"),
    toml("hotfolder-errors-inside-another-hotfolder", """\
        [[hotfolders]]
        name = "a"
        path = "hot/a"
        errors = "hot/b/errors"

        [[hotfolders]]
        name = "b"
        path = "hot/b"
        errors = "errors/b"
        """, 4, "hotfolders.0.errors", "inside hot folder 'b'", "got 'hot/b/errors'"),
    toml("hotfolder-unmatched-is-itself", """\
        [[hotfolders]]
        name = "inbox"
        path = "hot/inbox"
        unmatched = "hot/inbox"
        """, 4, "hotfolders.0.unmatched", "inside the hot folder", "got 'hot/inbox'"),
    toml("hotfolders-overlap", """\
        [[hotfolders]]
        name = "all"
        path = "hot"
        errors = "errors/all"

        [[hotfolders]]
        name = "photos"
        path = "hot/photos"
        errors = "errors/photos"
        """, 3, "hotfolders.0.path", "'all' and 'photos' overlap"),
    toml("hotfolder-stable-seconds-negative", """\
        [[hotfolders]]
        name = "inbox"
        path = "hot/inbox"
        stable_seconds = -1
        """, 4, "hotfolders.0.stable_seconds", "greater than or equal to 0", "got -1"),
    toml("hotfolder-recursive-not-bool", """\
        [[hotfolders]]
        name = "inbox"
        path = "hot/inbox"
        recursive = "sometimes"
        """, 4, "hotfolders.0.recursive", "valid boolean", "got 'sometimes'"),
    toml("hotfolder-ignore-with-slash", """\
        [[hotfolders]]
        name = "inbox"
        path = "hot/inbox"
        ignore = ["tmp/*"]
        """, 4, "hotfolders.0.ignore", "'tmp/*'", "without '/'"),
    toml("hotfolders-is-a-table", """\
        [hotfolders]
        name = "inbox"
        path = "hot/inbox"
        """, 1, "hotfolders: hot folders are a list: start each one with [[hotfolders]]"),
    toml("hotfolder-copied-block", """\
        [[hotfolders]]
        name = "inbox"
        path = "hot/inbox"

        [[hotfolders]]
        name = "inbox"
        path = "hot/inbox"
        """, 6, "hotfolders.1.name", "'inbox' is already used by hotfolders.0 (line 2)"),
    toml("env-workers-not-a-number", "[flowd]\nworkers = 4\n", None,
         "environment FLOWD_WORKERS", "valid integer", "got 'abc'", env={"FLOWD_WORKERS": "abc"}),
    toml("env-workers-out-of-range", "[flowd]\nworkers = 4\n", None,
         "environment FLOWD_WORKERS", "less than or equal to 64", "got '100'", env={"FLOWD_WORKERS": "100"}),
    toml("env-log-level-unknown", "[flowd]\nworkers = 4\n", None,
         "environment FLOWD_LOG_LEVEL", "got 'LOUD'", "allowed: 'TRACE'", env={"FLOWD_LOG_LEVEL": "LOUD"}),
    toml("metadata-configuration-missing", """\
        [metadata]
        configuration = "nowhere.xml"
        """, 2, "metadata.configuration", "no such file", "got 'nowhere.xml'"),
    Case("metadata-configuration-broken", {"flowd.toml": SITE_TOML + '\n[metadata]\nconfiguration = "fields.xml"\n',
                                           "fields.xml": '<MetadataConfiguration>\n  <Namespace prefix="x" uri="u">\n'
                                                         '    <Field id="abc" xmpName="Desk"/>\n'
                                                         '  </Namespace>\n</MetadataConfiguration>\n'},
         "fields.xml", 3, ("abc",)),
    toml("env-rules-not-json", "[flowd]\nworkers = 4\n", None,
         "environment FLOWD_RULES", "not valid JSON", "got 'rules/*.yaml'", env={"FLOWD_RULES": "rules/*.yaml"}),
]

RULE_CASES = [
    rules("yaml-syntax-error", """\
        rules:
          - name: photos
            do: [{delete: {}}
          - name: other
        """, 4, "not valid YAML"),
    rules("yaml-duplicate-key", """\
        rules:
          - name: photos
            do: [{delete: {}}]
            name: photos2
        """, 4, "'name' appears twice"),
    rules("file-is-a-list", """\
        - name: photos
          do: [{delete: {}}]
        """, 1, "a rule file is a mapping with a 'rules:' list"),
    rules("unknown-top-level-key", """\
        rules:
          - name: photos
            do: [{delete: {}}]
        rulez: []
        """, 4, "unknown top-level key 'rulez'", "allowed: rules, tenant"),
    rules("rules-not-a-list", """\
        rules:
          name: photos
          do: [{delete: {}}]
        """, 1, "rules:", "expected a list of rules"),
    rules("tenant-not-a-name", """\
        tenant: [acme]
        rules: []
        """, 1, "tenant", "expected a tenant name", "got ['acme']"),
    rules("rule-not-a-mapping", """\
        rules:
          - photos
        """, 2, "rules.0", "a rule is a mapping", "got 'photos'"),
    rule("rule-missing-name", """\
        - on: [{hotfolder: inbox}]
          do: [{delete: {}}]
        """, 2, "rules.0: every rule needs a name"),
    rules("rule-duplicate-name", """\
        rules:
          - name: photos
            do: [{delete: {}}]
          - name: photos
            do: [{delete: {}}]
        """, 4, "rules.1.name", "rule name 'photos' is already used by rules/bad.yaml:2", "got 'photos'"),
    rules("rule-duplicate-name-across-files", """\
        rules:
          - name: photos
            do: [{delete: {}}]
        """, 2, "rules.0.name", "rule name 'photos' is already used by rules/a.yaml:2",
        more={"rules/a.yaml": GOOD_RULES}),
    rule("rule-unknown-key-stpo", """\
        - name: photos
          do: [{delete: {}}]
          stpo: true
        """, 4, "rules.0.stpo", "unknown key 'stpo'", "allowed:", "stop"),
    rule("rule-missing-do", """\
        - name: photos
          if: [{extension: jpg}]
        """, 2, "rules.0: every rule needs a non-empty 'do:' list"),
    rule("rule-do-empty", """\
        - name: photos
          if: [{extension: jpg}]
          do: []
        """, 4, "rules.0.do", "non-empty 'do:' list", "got []"),
    rule("rule-if-bare-string", """\
        - name: photos
          if: extension jpg
          do: [{delete: {}}]
        """, 3, "rules.0.if", "a condition is a mapping", "got 'extension jpg'", "allowed:", "extension"),
    rule("rule-stop-maybe", """\
        - name: photos
          do: [{delete: {}}]
          stop: maybe
        """, 4, "rules.0.stop", "expected true or false", "got 'maybe'"),
    rule("rule-once-always", """\
        - name: photos
          do: [{delete: {}}]
          once: always
        """, 4, "rules.0.once", "got 'always'", "allowed: content"),
    rule("rule-enabled-not-bool", """\
        - name: photos
          do: [{delete: {}}]
          enabled: "no"
        """, 4, "rules.0.enabled", "expected true or false", "got 'no'"),
    rule("trigger-unknown-hotfolder", """\
        - name: photos
          on: [{hotfolder: inbx}]
          do: [{delete: {}}]
        """, 3, "rules.0.on.0.hotfolder", "got 'inbx'", "allowed: inbox"),
    rule("trigger-hotfolder-is-a-list", """\
        - name: photos
          on: [{hotfolder: [inbox]}]
          do: [{delete: {}}]
        """, 3, "rules.0.on.0.hotfolder", "got ['inbox']", "allowed: inbox"),
    rule("trigger-unknown-kind", """\
        - name: photos
          on: [{nightly: daily}]
          do: [{delete: {}}]
        """, 3, "rules.0.on.0.nightly", "unknown trigger 'nightly'", "allowed: hotfolder"),
    rule("schedule-without-over", """\
        - name: photos
          on: [{schedule: {every: 1h}}]
          do: [{delete: {}}]
        """, 3, "rules.0.on.0.schedule", "a scheduled rule sweeps what over: names", "got {'every': '1h'}"),
    rules("trigger-other-tenants-hotfolder", """\
        tenant: acme
        rules:
          - name: photos
            on: [{hotfolder: inbox}]
            do: [{delete: {}}]
        """, 4, "rules.0.on.0.hotfolder", "no hot folder of tenant 'acme'", "got 'inbox'", "allowed: acme-in"),
    rule("condition-unknown", """\
        - name: photos
          if:
            - extension: jpg
            - colour: red
          do: [{delete: {}}]
        """, 5, "rules.0.if.1.colour", "unknown condition 'colour'", "allowed:", "extension, path, size"),
    rule("condition-bad-glob", """\
        - name: photos
          if: [{name: "IMG_[0-9.jpg"}]
          do: [{delete: {}}]
        """, 3, "rules.0.if.0.name", "unclosed '['", "got 'IMG_[0-9.jpg'"),
    rule("condition-bad-regex", """\
        - name: photos
          if:
            - regex: "^IMG_(\\\\d+"
          do: [{delete: {}}]
        """, 4, "rules.0.if.0.regex", "bad regular expression", "missing ), unterminated subpattern"),
    rule("condition-regex-unknown-key", """\
        - name: photos
          if:
            - regex: {pattern: "^IMG", ignorecase: true}
          do: [{delete: {}}]
        """, 4, "rules.0.if.0.regex.ignorecase", "unknown key 'ignorecase' (got 'ignorecase'; "
        "allowed: pattern, on, ignore_case)"),
    rule("condition-bad-size-unit", """\
        - name: photos
          if:
            - size: {gt: 10 parsecs}
          do: [{delete: {}}]
        """, 4, "rules.0.if.0.size.gt", "size like 500, 1KB", "(got '10 parsecs')"),
    rule("condition-bad-size-in-block", """\
        - name: photos
          if:
            - size:
                gt: 1KB
                lt: 20 MBs
          do: [{delete: {}}]
        """, 6, "rules.0.if.0.size.lt", "size like 500, 1KB", "(got '20 MBs')"),
    rule("condition-bad-size-operator", """\
        - name: photos
          if:
            - size: {bigger: 1KB}
          do: [{delete: {}}]
        """, 4, "rules.0.if.0.size.bigger", "unknown comparison 'bigger' (got 'bigger'; "
        "allowed: gt, ge, lt, le, eq, ne)"),
    rule("condition-bad-age", """\
        - name: photos
          if:
            - age: {gt: 3 fortnights}
          do: [{delete: {}}]
        """, 4, "rules.0.if.0.age.gt", "duration like 30s, 10m, 2h, 7d", "(got '3 fortnights')"),
    rule("condition-age-not-a-comparison", """\
        - name: photos
          if:
            - age: 3d
          do: [{delete: {}}]
        """, 4, "rules.0.if.0.age", "expected a comparison like {gt: ..., lt: ...}", "got '3d'",
        "allowed: gt, ge"),
    rule("condition-bad-format", """\
        - name: photos
          if:
            - format: [jpeg, jpgg]
          do: [{delete: {}}]
        """, 4, "rules.0.if.0.format", "unknown format", "got 'jpgg'", "allowed:", "jpeg"),
    rule("condition-unknown-hotfolder", """\
        - name: photos
          if:
            - hotfolder: acme-in
          do: [{delete: {}}]
        """, 4, "rules.0.if.0.hotfolder", "got 'acme-in'", "allowed: inbox"),
    rule("condition-hotfolder-nested-list", """\
        - name: photos
          if:
            - hotfolder: [[inbox]]
          do: [{delete: {}}]
        """, 4, "rules.0.if.0.hotfolder", "got ['inbox']", "allowed: inbox"),
    rule("action-unknown-mvoe", """\
        - name: photos
          do:
            - mvoe: {to: "lake:photos/{name}"}
        """, 4, "rules.0.do.0.mvoe", "unknown action 'mvoe'", "allowed:", "store, move, rename"),
    rule("action-not-a-mapping", """\
        - name: photos
          do:
            - delete
        """, 4, "rules.0.do.0", "an action is a mapping", "got 'delete'"),
    rule("action-unknown-key-conflit", """\
        - name: photos
          do:
            - store: {to: "lake:photos/{name}", conflit: increment}
        """, 4, "rules.0.do.0.store.conflit", "unknown key 'conflit' (got 'conflit'; allowed: conflict, digits, keep_mtime, to)"),
    rule("action-misspelt-required-key", """\
        - name: photos
          do:
            - move: {too: "lake:photos/{name}"}
        """, 4, "rules.0.do.0.move.too", "unknown key 'too'; did you mean 'to' (required)?"),
    rule("action-missing-to", """\
        - name: photos
          do:
            - store: {conflict: increment}
        """, 4, "rules.0.do.0.store.to: this key is required"),
    rule("action-bad-conflict", """\
        - name: photos
          do:
            - store: {to: "lake:photos/{name}", conflict: replace}
        """, 4, "rules.0.do.0.store.conflict", "not one of the allowed values (got 'replace'; allowed: 'fail', "
        "'overwrite', 'increment' or 'skip_identical')"),
    rule("template-unknown-placeholder", """\
        - name: photos
          do:
            - store: {to: "lake:photos/{filename}"}
        """, 4, "rules.0.do.0.store.to", "unknown placeholder {filename}", "known placeholders:", "name"),
    rule("template-bad-date-format", """\
        - name: photos
          do:
            - store: {to: "lake:photos/{now:%Y/%Q}/{name}"}
        """, 4, "rules.0.do.0.store.to", "unknown date directive %Q"),
    rule("template-unbalanced-brace", """\
        - name: photos
          do:
            - store: {to: "lake:photos/{name"}
        """, 4, "rules.0.do.0.store.to", "unbalanced '{'"),
    rule("target-missing-storage", """\
        - name: photos
          do:
            - store: {to: "lak:photos/{name}"}
        """, 4, "rules.0.do.0.store.to", "no storage named 'lak'", "allowed: lake, vault"),
    rule("target-escapes-container", """\
        - name: photos
          do:
            - move: {to: "lake:assets/../../etc/{name}"}
        """, 4, "rules.0.do.0.move.to", "path 'assets/../../etc/{name}' would leave its container",
        "got 'lake:assets/../../etc/{name}'"),
    rule("target-absolute-path", """\
        - name: photos
          do:
            - store: {to: "/srv/photos/{name}"}
        """, 4, "rules.0.do.0.store.to", "starts with a storage name", "got '/srv/photos/{name}'"),
    rule("target-absolute-after-storage", """\
        - name: photos
          do:
            - store: {to: "lake:/photos/{name}"}
        """, 4, "rules.0.do.0.store.to", "must be relative", "got 'lake:/photos/{name}'"),
    rule("target-storage-of-other-tenant", """\
        - name: photos
          do:
            - store: {to: "vault:photos/{name}"}
        """, 4, "rules.0.do.0.store.to", "storage 'vault' is not open to tenant 'default'", "allowed: acme"),
    rules("target-storage-of-other-tenant-acme", """\
        tenant: acme
        rules:
          - name: archive
            do:
              - store: {to: "lake:acme/{name}"}
        """, 5, "rules.0.do.0.store.to", "storage 'lake' is not open to tenant 'acme'",
        "got 'lake:acme/{name}'", "allowed: default"),
    rule("rename-with-slash", """\
        - name: photos
          do:
            - rename: {to: "2024/{name}"}
        """, 4, "rules.0.do.0.rename.to", "rename sets a file name", "got '2024/{name}'"),
    rule("webhook-not-http", """\
        - name: photos
          do:
            - webhook: {url: "ftp://example.com/hook"}
        """, 4, "rules.0.do.0.webhook.url", "http:// or https://", "got 'ftp://example.com/hook'"),
    rule("webhook-timeout-not-a-number", """\
        - name: photos
          do:
            - webhook:
                url: https://example.com/hook
                timeout: soon
        """, 6, "rules.0.do.0.webhook.timeout", "valid number", "got 'soon'"),
    rule("quarantine-empty-reason", """\
        - name: photos
          do:
            - quarantine: {reason: ""}
        """, 4, "rules.0.do.0.quarantine.reason", "at least 1 character"),
    # -- metadata and pixels --
    rule("field-unknown-name", """\
        - name: photos
          if: {field: {captoin: {is_empty: true}}}
          do: [{delete: {}}]
        """, 3, "rules.0.if.field.captoin", "caption", "got 'captoin'"),
    rule("field-unknown-test", """\
        - name: photos
          if:
            - field:
                116:
                  emtpy: true
          do: [{delete: {}}]
        """, 6, "rules.0.if.0.field.116.emtpy", "unknown field test 'emtpy'", "allowed: is_empty"),
    rule("field-bad-regex", """\
        - name: photos
          if: {field: {headline: {matches: "(unclosed"}}}
          do: [{delete: {}}]
        """, 3, "rules.0.if.field.headline.matches", "not a valid regular expression"),
    rule("required-fields-unknown", """\
        - name: photos
          if: {required_fields: [120, 99999]}
          do: [{delete: {}}]
        """, 3, "rules.0.if.required_fields.1", "got 99999"),
    rule("image-unknown-color", """\
        - name: photos
          if: {image: {color: cmy}}
          do: [{delete: {}}]
        """, 3, "rules.0.if.image.color", "unknown colour mode", "allowed: rgb, cmyk, gray"),
    rule("macro-unknown-action", """\
        - name: photos
          do:
            - set_metadata:
                - {field: 116, action: replase, value: x}
        """, 5, "rules.0.do.0.set_metadata.0.action", "got 'replase'", "replace"),
    rule("macro-unknown-code", """\
        - name: photos
          do:
            - set_metadata:
                - field: 116
                  value: "(c) %%INSDAET"
        """, 6, "rules.0.do.0.set_metadata.0.value", "unknown dynamic code", "%%INSDATE"),
    rule("macro-unknown-field", """\
        - name: photos
          do:
            - set_metadata:
                - {field: photoshp:Credit, value: AP}
        """, 5, "rules.0.do.0.set_metadata.0.field", "got 'photoshp:Credit'"),
    rule("meta-placeholder-unknown-field", """\
        - name: photos
          do:
            - store: {to: "lake:default/{meta.captoin}/{name}"}
        """, 4, "rules.0.do.0.store.to", "{meta.captoin}"),
    rules("map-filter-unknown-map", """\
        maps:
          desks: {SPO: Sport}
        rules:
          - name: photos
            do:
              - store: {to: "lake:default/{meta.15|map:desk}/{name}"}
        """, 6, "rules.0.do.0.store.to", "no map named 'desk'", "desks"),
    rules("map-not-a-table", """\
        maps:
          desks: [SPO, Sport]
        rules: []
        """, 2, "maps.desks", "expected a non-empty mapping"),
    rule("convert-fit-not-a-pair", """\
        - name: photos
          do:
            - convert:
                resize: {fit: 2048}
        """, 5, "rules.0.do.0.convert.resize"),
    rule("convert-unknown-format", """\
        - name: photos
          do:
            - convert:
                format: {type: jpg}
        """, 5, "rules.0.do.0.convert.format.type", "got 'jpg'", "jpeg"),
    rule("convert-unknown-profile", """\
        - name: photos
          do:
            - convert:
                color: {to: adobergb}
        """, 5, "rules.0.do.0.convert.color.to", "got 'adobergb'", "srgb"),
    rule("macro-fixed-value-not-a-date", """\
        - name: photos
          do:
            - set_metadata:
                - {field: date_created, value: "soon"}
        """, 5, "rules.0.do.0.set_metadata.0.value", "needs a date", "got 'soon'"),
    rule("map-category-entry-not-text", """\
        - name: photos
          do:
            - map_category:
                map: {SPO: [S]}
        """, 5, "rules.0.do.0.map_category.map.SPO", "expected code: replacement", "got ['S']"),
    rule("date-placeholder-bad-source", """\
        - name: photos
          do:
            - store: {to: "lake:default/{date:exif:%Y}/{name}"}
        """, 4, "rules.0.do.0.store.to", "unknown date source 'exif'"),
]

CASES = CONFIG_CASES + RULE_CASES


def main(argv: list[str]) -> int:
    """flowd's CLI in-process. It points loguru at capsys's stderr; hand loguru back to the real one after."""
    try:
        return cli_main(argv)
    finally:
        logger.remove()
        logger.add(sys.__stderr__, level="WARNING")


def write_site(root: Path, case: Case) -> None:
    for rel, text in {"flowd.toml": SITE_TOML, **case.files}.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def check_output(case: Case, code: int, out: str, err: str) -> None:
    assert "Traceback" not in out + err, err
    assert code == 1, f"exit {code}\nstdout: {out}\nstderr: {err}"
    lines = [line for line in err.splitlines() if line.strip()]
    # One fault, one error line, then the count.
    assert lines[-1] == "1 error", err
    assert len(lines) == 2, err
    message = lines[0]
    if case.line is None:
        assert message.startswith(f"{case.file}: environment "), message
    else:
        assert message.startswith(f"{case.file}:{case.line}: "), message
    for text in case.says:
        assert text in message, f"{text!r} not in {message!r}"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_in_process(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    write_site(tmp_path, case)
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("FLOWD_")]:
        monkeypatch.delenv(name)
    for name, value in case.env.items():
        monkeypatch.setenv(name, value)
    code = main(["check", "-c", "flowd.toml"])
    out, err = capsys.readouterr()
    check_output(case, code, out, err)


# End to end: the real entry point, a fresh interpreter, nothing but stderr and the exit status.
E2E = ["toml-syntax-error", "flowd-workers-wrong-type", "hotfolders-overlap", "env-workers-not-a-number",
       "yaml-syntax-error", "action-unknown-mvoe", "rule-duplicate-name-across-files", "target-escapes-container"]


@pytest.mark.parametrize("case", [c for c in CASES if c.id in E2E], ids=lambda c: c.id)
def test_bad_input_subprocess(case: Case, tmp_path: Path) -> None:
    write_site(tmp_path, case)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWD_")}
    result = subprocess.run([PY, "-m", "flowd", "check", "-c", "flowd.toml"], cwd=tmp_path, capture_output=True,
                            text=True, env={**env, **case.env}, timeout=60)
    check_output(case, result.returncode, result.stdout, result.stderr)


def test_cases_are_many_and_unique() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    assert set(E2E) <= set(ids)
    assert len(CONFIG_CASES) >= 20 and len(RULE_CASES) >= 20


def test_example_config_and_default_rules_pass(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWD_")}
    result = subprocess.run([PY, "-m", "flowd", "check", "-c", str(REPO / "config.example.toml")], cwd=tmp_path,
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout and "Traceback" not in result.stderr


@pytest.mark.parametrize("path", sorted((REPO / "rules").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_rule_files_pass(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    # Each shipped rule file alone against the example config (its hot folders and storages).
    example = (REPO / "config.example.toml").read_text()
    assert 'rules = ["rules/*.yaml"]' in example
    (tmp_path / "flowd.toml").write_text(example.replace('rules = ["rules/*.yaml"]', f'rules = ["{path}"]'))
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("FLOWD_")]:
        monkeypatch.delenv(name)
    code = main(["check", "-c", "flowd.toml"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "1 rule file" in out or "in 1 file" in out, out
