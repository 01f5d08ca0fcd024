"""Provisioning and loading of TLS material: a CA, the server's certificate, clients' certificates.

``fedsys certs`` calls :func:`provision` once; the server and each client then load
their files with :func:`server_credentials` and :func:`channel_credentials`. Keys are
EC P-256 from ``cryptography``; nothing here uses the run's seed.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fedsys.core.names import plain_name

CA_CERT = "ca.pem"
CA_KEY = "ca.key"
SERVER_CERT = "server.pem"
SERVER_KEY = "server.key"
VALIDITY = dt.timedelta(days=365)


@dataclass(frozen=True)
class Identity:
    """A PEM certificate chain and its private key, as gRPC takes them."""

    cert_pem: bytes
    key_pem: bytes


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_ca(common_name: str = "fedsys CA") -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A self-signed certificate authority."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return cert, key


def issue(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    common_name: str,
    *,
    server_hosts: tuple[str, ...] = (),
) -> Identity:
    """A certificate signed by the CA: a server's (with ``server_hosts`` as SANs) or a client's."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server_hosts else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if server_hosts:
        names: list[x509.GeneralName] = []
        for host in server_hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return Identity(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def _write_private(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    path.chmod(0o600)


def provision(
    out_dir: Path,
    client_names: list[str],
    server_hosts: tuple[str, ...] = ("localhost", "127.0.0.1", "::1"),
) -> None:
    """Write a CA, a server certificate and one certificate per client under ``out_dir``.

    Layout: ``ca.pem``, ``ca.key``, ``server.pem``, ``server.key`` and
    ``clients/<name>.pem`` / ``clients/<name>.key``. Private keys are mode 0600.

    Raises
    ------
    ValueError
        If a client name is not a plain name (it names files), before anything is written.
    """
    for name in client_names:
        plain_name(name, "client name")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "clients").mkdir(exist_ok=True)
    ca_cert, ca_key = make_ca()
    (out_dir / CA_CERT).write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    _write_private(out_dir / CA_KEY, _key_pem(ca_key))
    server = issue(ca_cert, ca_key, "fedsys server", server_hosts=server_hosts)
    (out_dir / SERVER_CERT).write_bytes(server.cert_pem)
    _write_private(out_dir / SERVER_KEY, server.key_pem)
    for name in client_names:
        client = issue(ca_cert, ca_key, name)
        (out_dir / "clients" / f"{name}.pem").write_bytes(client.cert_pem)
        _write_private(out_dir / "clients" / f"{name}.key", client.key_pem)


def _read(path: Path, what: str, remedy: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise FileNotFoundError(f"cannot read {what} {path}: {exc.strerror}; {remedy}") from None


def _server_remedy(cert_dir: Path) -> str:
    if not cert_dir.is_dir():
        return (
            f"the certificate folder {cert_dir} does not exist: make it with "
            f"'fedsys certs {cert_dir} --clients N' (or opt out of TLS with --insecure)"
        )
    return f"make the certificates with 'fedsys certs {cert_dir} --clients N'"


def _client_remedy(path: Path) -> str:
    remedy = (
        "give the files 'fedsys certs DIR' made (DIR/ca.pem; for mutual TLS "
        "DIR/clients/NAME.pem and NAME.key)"
    )
    if not path.parent.is_dir():
        remedy += f": the folder {path.parent} does not exist"
    return remedy


def server_credentials(cert_dir: Path, require_client_cert: bool = False) -> grpc.ServerCredentials:
    """TLS credentials of the server; mutual TLS when ``require_client_cert``.

    Raises
    ------
    FileNotFoundError
        Naming the missing file and the command that makes it.
    """
    remedy = _server_remedy(cert_dir)
    key = _read(cert_dir / SERVER_KEY, "server key", remedy)
    cert = _read(cert_dir / SERVER_CERT, "server certificate", remedy)
    roots = _read(cert_dir / CA_CERT, "CA certificate", remedy) if require_client_cert else None
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=roots, require_client_auth=require_client_cert
    )


def channel_credentials(
    ca_path: Path, cert_path: Path | None = None, key_path: Path | None = None
) -> grpc.ChannelCredentials:
    """TLS credentials of a client: trust ``ca_path``; present a certificate for mutual TLS.

    Raises
    ------
    FileNotFoundError
        Naming the missing file and where ``fedsys certs`` puts it.
    """
    roots = _read(ca_path, "CA certificate", _client_remedy(ca_path))
    if cert_path is None or key_path is None:
        return grpc.ssl_channel_credentials(root_certificates=roots)
    return grpc.ssl_channel_credentials(
        root_certificates=roots,
        private_key=_read(key_path, "client key", _client_remedy(key_path)),
        certificate_chain=_read(cert_path, "client certificate", _client_remedy(cert_path)),
    )
