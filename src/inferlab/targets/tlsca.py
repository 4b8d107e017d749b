"""The project's TLS: a CA of its own and a server certificate for the local edge, issued as
cert-manager's CA Issuer would (the CA key signs a short-lived leaf for the names asked).

The CA lives once in the secrets folder (``platform/secrets/values/edge-ca/``: directory 0700,
``ca.key`` 0600), so a person can trust ``ca.pem`` once (``curl --cacert``). Leaf certificates are
issued per edge into a private directory the caller owns and deletes. Keys are EC P-256, made
with the ``cryptography`` package; nothing is fetched or sent anywhere.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..credentials import create_private, secrets_dir

CA_DIRNAME = "edge-ca"
CA_DAYS, LEAF_DAYS = 3650, 2  # leaf: one run's lifetime with margin, as cert-manager renews short-lived certs
LOCAL_NAMES = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class IssuedCert:
    cert: Path  # PEM leaf followed by the CA (the chain nginx serves)
    key: Path  # 0600
    ca: Path  # the CA certificate clients trust (httpx verify=, k6 SSL_CERT_FILE)
    fingerprint_sha256: str  # of the CA, for the run manifest


def _pem_key(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "inferlab"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _new_ca(directory: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name("inferlab project CA")).issuer_name(_name("inferlab project CA"))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    create_private(directory / "ca.key", _pem_key(key))
    (directory / "ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "ca.pem").chmod(0o644)


def project_ca(home: Path | None = None) -> Path:
    """The directory holding ``ca.pem`` and ``ca.key``, made on first use. Concurrent first uses
    are safe: each builds a CA in its own temporary directory and renames it into place; the
    loser's is discarded and everyone uses the winner's."""
    home = home or secrets_dir()
    final = home / CA_DIRNAME
    if (final / "ca.pem").is_file() and (final / "ca.key").is_file():
        return final
    tmp = Path(tempfile.mkdtemp(prefix=f".{CA_DIRNAME}-", dir=home))  # 0700
    try:
        _new_ca(tmp)
        os.rename(tmp, final)  # atomic; fails when another process won the race
    except OSError:
        if not (final / "ca.pem").is_file():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def issue_server_cert(out_dir: Path, names: tuple[str, ...] = LOCAL_NAMES, ca_dir: Path | None = None) -> IssuedCert:
    """A leaf for ``names`` (IP addresses become IP SANs) signed by the project CA, written into
    ``out_dir`` (the caller's private directory): ``server.pem`` (leaf + CA), ``server.key`` (0600)."""
    ca_dir = ca_dir or project_ca()
    ca_key = serialization.load_pem_private_key((ca_dir / "ca.key").read_bytes(), password=None)
    ca_cert = x509.load_pem_x509_certificate((ca_dir / "ca.pem").read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for n in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            sans.append(x509.DNSName(n))
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(names[0])).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=LEAF_DAYS))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = cert.public_bytes(serialization.Encoding.PEM) + ca_cert.public_bytes(serialization.Encoding.PEM)
    (out_dir / "server.pem").write_bytes(pem)
    key_path = create_private(out_dir / "server.key", _pem_key(key))
    return IssuedCert(out_dir / "server.pem", key_path, ca_dir / "ca.pem",
                      ca_cert.fingerprint(hashes.SHA256()).hex())
