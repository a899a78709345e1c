"""A real flowd daemon with its FTP server on a free loopback port, driven by Python's ftplib.

`FtpSite.configure_ftp()` writes the [ftp] table (port 0: the server picks a free port and reports it in
var/ftp.json), `add_user()` goes through `flowd ftp-user add`, `login()` returns a logged-in ftplib client
(FTP, or FTP_TLS with the data channel protected).
"""

from __future__ import annotations

import datetime
import ftplib
import json
import ssl
import textwrap
from pathlib import Path
from typing import Any

from conftest import Site, wait_for


class FtpSite(Site):
    def configure_ftp(self, *, groups: str | None = None, tls: bool = False, require_tls: bool | None = None,
                      hotfolders: list[dict[str, Any]] | None = None, workers: int = 2, **settings: Any) -> Path:
        """The base config (hot folder "inbox", storage "lake") plus [ftp]. `groups`: TOML for
        [[ftp.groups]] (default: "photographers" landing in inbox). `settings`: more [ftp] keys."""
        values: dict[str, Any] = {"listen": "127.0.0.1:0", "login_failure_delay": 0.05, **settings}
        if tls:
            cert, key = make_cert(self.root / "tls")
            values.update(tls_cert=str(cert), tls_key=str(key))
        if require_tls is not None:
            values["require_tls"] = require_tls
        lines = ["", "[ftp]"] + [f"{k} = {_toml(v)}" for k, v in values.items()]
        lines.append(textwrap.dedent(groups) if groups is not None else
                     '\n[[ftp.groups]]\nname = "photographers"\ntenant = "default"\nhotfolder = "inbox"\n')
        return self.configure(hotfolders=hotfolders, workers=workers, extra="\n".join(lines) + "\n")

    def add_user(self, name: str, password: str = "correct-horse-1", group: str = "photographers",
                 perms: tuple[str, ...] = ("upload",)) -> None:
        args = ["ftp-user", "add", name, "--group", group, "--password-stdin"]
        for perm in perms:
            args += ["--perm", perm]
        self.cli(*args, input=(password + "\n").encode(), check=True)

    @property
    def port(self) -> int:
        state = self.root / "var" / "ftp.json"
        wait_for(state.exists, 20, message="var/ftp.json (the FTP server listening)")
        return int(json.loads(state.read_text())["port"])

    def connect(self, tls: bool = False, timeout: float = 20) -> ftplib.FTP:
        if tls:
            context = ssl.create_default_context(cafile=str(self.root / "tls" / "cert.pem"))
            client: ftplib.FTP = ftplib.FTP_TLS(context=context, timeout=timeout)
        else:
            client = ftplib.FTP(timeout=timeout)
        client.connect("127.0.0.1", self.port)
        return client

    def login(self, user: str, password: str = "correct-horse-1", tls: bool = False) -> ftplib.FTP:
        client = self.connect(tls)
        client.login(user, password)
        if tls:
            assert isinstance(client, ftplib.FTP_TLS)
            client.prot_p()
        return client


def make_cert(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, made with `cryptography` (already installed
    with pyOpenSSL): cert.pem and key.pem in `folder`."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    if cert_path.exists():
        return cert_path, key_path
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "flowd test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(str(value))
