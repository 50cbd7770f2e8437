"""Key material for the local e-sign server: a private CA, its HTTPS certificate and the
JWT-grant key pair (the "integration key"'s registered RSA key). Generated once per var dir,
so the adapter and every restart of the server agree on them."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class ServerMaterials:
    ca_cert: Path
    server_cert: Path
    server_key: Path
    jwt_private: Path
    jwt_public: Path


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,  # PKCS#1, what DocuSign hands out
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes, private: bool = False) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    if private:
        os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mdco local e-sign"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def ensure_materials(esign_dir: Path) -> ServerMaterials:
    """Create whatever key material is missing under ``esign_dir`` and return the paths."""
    esign_dir.mkdir(parents=True, exist_ok=True)
    m = ServerMaterials(
        ca_cert=esign_dir / "ca.pem",
        server_cert=esign_dir / "server.pem",
        server_key=esign_dir / "server-key.pem",
        jwt_private=esign_dir / "jwt_private.pem",
        jwt_public=esign_dir / "jwt_public.pem",
    )
    ca_key_path = esign_dir / "ca-key.pem"
    now = dt.datetime.now(dt.timezone.utc)
    if not (m.ca_cert.exists() and ca_key_path.exists()):
        ca_key = _new_key()
        ca = (
            x509.CertificateBuilder()
            .subject_name(_name("mdco local e-sign CA"))
            .issuer_name(_name("mdco local e-sign CA"))
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        _write(ca_key_path, _key_pem(ca_key), private=True)
        _write(m.ca_cert, ca.public_bytes(serialization.Encoding.PEM))
        m.server_cert.unlink(missing_ok=True)  # a new CA invalidates the old server cert
    if not (m.server_cert.exists() and m.server_key.exists()):
        ca_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), password=None)
        ca = x509.load_pem_x509_certificate(m.ca_cert.read_bytes())
        key = _new_key()
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name("localhost"))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=825))
            .add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                        x509.IPAddress(ipaddress.ip_address("::1")),
                    ]
                ),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.public_key()), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )
        _write(m.server_key, _key_pem(key), private=True)
        _write(m.server_cert, cert.public_bytes(serialization.Encoding.PEM))
    if not (m.jwt_private.exists() and m.jwt_public.exists()):
        key = _new_key()
        _write(m.jwt_private, _key_pem(key), private=True)
        _write(
            m.jwt_public,
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
        )
    return m
