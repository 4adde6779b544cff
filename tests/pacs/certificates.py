"""A throw-away certificate authority for the DICOM TLS tests: a CA, a server certificate for
127.0.0.1, and a client certificate, as PEM files (``cryptography``; nothing leaves the test)."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _write_key(key, path: Path) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return path


def _issue(subject: str, key, issuer: x509.Name, issuer_key, *, ca: bool, usage=None, ip: str | None = None):
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usage), critical=False)
    if ip is not None:
        names = [x509.IPAddress(ipaddress.ip_address(ip)), x509.DNSName("localhost")]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def make_pki(folder: Path, authority: str = "Saliency Viewer test CA") -> Pki:
    folder.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _issue(authority, ca_key, _name(authority), ca_key, ca=True)
    pem = serialization.Encoding.PEM
    (folder / "ca.pem").write_bytes(ca.public_bytes(pem))
    paths = {}
    for role, usage, ip in (
        # Both ways for both, as DICOM nodes use one certificate: the PACS is a client of the
        # viewer's C-MOVE SCP, the viewer a client of the PACS.
        ("server", [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH], "127.0.0.1"),
        ("client", [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH], "127.0.0.1"),
    ):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _issue(f"test {role}", key, ca.subject, ca_key, ca=False, usage=usage, ip=ip)
        (folder / f"{role}.pem").write_bytes(cert.public_bytes(pem))
        paths[role] = (folder / f"{role}.pem", _write_key(key, folder / f"{role}.key"))
    return Pki(folder / "ca.pem", *paths["server"], *paths["client"])
