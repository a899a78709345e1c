"""ftp: conditions on how an asset arrived: over FTP at all, by which user or group, from which network."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

from flowd.asset import Asset
from flowd.condition import Record
from flowd.context import RunContext
from flowd.glob import GlobError, compile_glob
from flowd.parse import Loc, Parser

KEYS = ("user", "group", "client", "protocol")
PROTOCOLS = ("ftp", "ftps")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Uploaded:
    """`ftp: true` (uploaded over FTP or FTPS), `ftp: false`, or `ftp: {user: ["ana", "stringer-*"],
    group: photographers, client: "10.0.0.0/8", protocol: ftps}`: every key given must match."""

    want: bool
    expect: Any
    users: tuple[re.Pattern[str], ...] | None = None
    groups: frozenset[str] | None = None
    networks: tuple[Network, ...] | None = None
    protocols: frozenset[str] | None = None

    def check(self, asset: Asset, ctx: RunContext, out: list[Record]) -> bool:
        up = asset.upload
        if up is None:
            result = not self.want
        else:
            result = self.want and (
                (self.users is None or any(p.match(up.user) for p in self.users))
                and (self.groups is None or up.group in self.groups)
                and (self.protocols is None or up.protocol in self.protocols)
                and (self.networks is None or _in(up.client, self.networks)))
        value = {"user": up.user, "group": up.group, "client": up.client, "protocol": up.protocol} if up else None
        out.append({"if": "ftp", "value": value, "expect": self.expect, "result": result})
        return result


def _in(client: str, networks: tuple[Network, ...]) -> bool:
    try:
        address = ipaddress.ip_address(client.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:10.0.0.1 on a dual-stack listener is 10.0.0.1
    return any(address.version == n.version and address in n for n in networks)


def build_ftp(value: object, loc: Loc, p: Parser) -> Uploaded | None:
    if isinstance(value, bool):
        return Uploaded(value, value)
    if not isinstance(value, dict) or not value:
        p.error(loc, "expected true, false or a mapping of user, group, client, protocol", value, ", ".join(KEYS))
        return None
    ok = True
    for key in value:
        if key not in KEYS:
            p.error([*loc, str(key)], f"unknown key '{key}' in an ftp condition", key, ", ".join(KEYS))
            ok = False
    users = groups = networks = protocols = None
    if "user" in value:
        names = _strings(value["user"], [*loc, "user"], p, "a user name or glob")
        try:
            users = tuple(compile_glob(n, ignore_case=False) for n in names) if names else None
        except GlobError as exc:
            p.error([*loc, "user"], f"bad glob: {exc}", value["user"])
        ok &= users is not None
    if "group" in value:
        names = _strings(value["group"], [*loc, "group"], p, "a group name")
        known = {n for n, tenant in p.ftp_groups.items() if tenant == p.tenant}
        bad = [n for n in names or [] if n not in known]
        if bad:
            p.error([*loc, "group"], f"no [[ftp.groups]] group of tenant '{p.tenant}' has this name", bad[0],
                    ", ".join(sorted(known)) or "(no [[ftp.groups]] in the config)")
        groups = frozenset(names) if names and not bad else None
        ok &= groups is not None
    if "client" in value:
        found: list[Network] = []
        for item in _strings(value["client"], [*loc, "client"], p, "an address or network") or []:
            try:
                found.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                p.error([*loc, "client"], "not an IP address or network", item, "e.g. 192.0.2.10, 10.0.0.0/8, 2001:db8::/32")
        networks = tuple(found) if found and len(found) == len(_as_list(value["client"])) else None
        ok &= networks is not None
    if "protocol" in value:
        names = _strings(value["protocol"], [*loc, "protocol"], p, "a protocol")
        bad = [n for n in names or [] if n not in PROTOCOLS]
        if bad:
            p.error([*loc, "protocol"], "unknown protocol", bad[0], ", ".join(PROTOCOLS))
        protocols = frozenset(names) if names and not bad else None
        ok &= protocols is not None
    if not ok:
        return None
    return Uploaded(True, value, users, groups, networks, protocols)


def _as_list(value: object) -> list[object]:
    return value if isinstance(value, list) else [value]


def _strings(value: object, loc: Loc, p: Parser, what: str) -> list[str] | None:
    items = _as_list(value)
    if not items or not all(isinstance(v, str) and v for v in items):
        p.error(loc, f"expected {what} or a list of them", value)
        return None
    return [str(v) for v in items]
