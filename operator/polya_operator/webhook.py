"""The validating admission webhook, served and registered by kopf (POLYA_WEBHOOK=1).

kopf's ``WebhookServer`` listens on POLYA_WEBHOOK_PORT (all interfaces) and, with
``settings.admission.managed``, kopf creates and keeps up to date the cluster's
ValidatingWebhookConfiguration ``polyaruns.polya.dev`` with the CA bundle.

Its client config: kopf's server writes ``url: https://POLYA_WEBHOOK_HOST:PORT``, which the
API server resolves with the node's DNS, not the cluster's, so a ``<svc>.<ns>.svc`` URL
fails and, with ``failurePolicy: Ignore``, the webhook is silently skipped. When
POLYA_WEBHOOK_SERVICE (and POLYA_WEBHOOK_SERVICE_NAMESPACE, POLYA_WEBHOOK_SERVICE_PORT) are
set, as the chart does, the client config is a ``service:`` reference instead, which the API
server reaches through the Service's endpoints (kubernetes
staging/src/k8s.io/apiserver/pkg/util/webhook/client.go, ``ClientManager.HookClient``: host
``https://<name>.<namespace>.svc:<port>``, TLS server name ``<name>.<namespace>.svc``, the
path from ``service.path``); the certificate is made for that name (POLYA_WEBHOOK_HOST).

TLS: POLYA_WEBHOOK_CERT / POLYA_WEBHOOK_KEY name a certificate and key (e.g. from
cert-manager); without them a self-signed certificate for POLYA_WEBHOOK_HOST is made at
startup with ``cryptography`` and written under $TMPDIR (kopf's own generator needs oscrypto,
which cannot load OpenSSL 3). It is its own CA, so kopf puts it in the caBundle.
POLYA_WEBHOOK_INSECURE=1 serves plain HTTP (local tests only: the API server requires HTTPS).

The webhook is a second line of defence after the CRD's schema and CEL rules, so it fails
open (``failurePolicy: Ignore``): an operator restart never blocks creating PolyaRuns, whose
invalid specs the operator still rejects in status (InvalidSpec).
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import os
import tempfile
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import kopf

MANAGED = "polyaruns.polya.dev"  # the ValidatingWebhookConfiguration kopf manages
DEFAULT_PORT = 9443


def self_signed(host: str, directory: str | Path, days: int = 365) -> tuple[Path, Path]:
    """Write a self-signed certificate (its own CA) for ``host`` and its key; return paths."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host[:64])])
    sans: list[x509.GeneralName] = [x509.DNSName(h) for h in dict.fromkeys((host,
                                                                           "localhost"))]
    sans.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    directory = Path(directory)
    cert_path, key_path = directory / "webhook.crt", directory / "webhook.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.touch(mode=0o600)
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class ServiceWebhookServer(kopf.WebhookServer):
    """kopf's server, published as a ``service:`` client config instead of a ``url:``."""

    def __init__(self, *, service: str, namespace: str, service_port: int,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.service, self.namespace, self.service_port = service, namespace, service_port

    async def __call__(self, fn: Any) -> AsyncIterator[Any]:
        async for config in super().__call__(fn):
            out: dict[str, Any] = {"service": {"namespace": self.namespace,
                                               "name": self.service,
                                               "port": self.service_port,
                                               "path": self.path or ""}}
            if config.get("caBundle"):
                out["caBundle"] = config["caBundle"]
            yield out  # kopf appends each handler's id to service.path


def server(env: Mapping[str, str] | None = None, addr: str | None = None) -> kopf.WebhookServer:
    """kopf's webhook server as the POLYA_WEBHOOK_* environment describes it."""
    env = os.environ if env is None else env
    port = int(env.get("POLYA_WEBHOOK_PORT") or DEFAULT_PORT)
    host = env.get("POLYA_WEBHOOK_HOST") or None
    service = env.get("POLYA_WEBHOOK_SERVICE") or None
    make: Any = kopf.WebhookServer
    if service:
        make = functools.partial(
            ServiceWebhookServer, service=service,
            namespace=env.get("POLYA_WEBHOOK_SERVICE_NAMESPACE") or "default",
            service_port=int(env.get("POLYA_WEBHOOK_SERVICE_PORT") or port))
    if env.get("POLYA_WEBHOOK_INSECURE") == "1":
        return make(addr=addr, port=port, host=host, insecure=True)
    cert, key = env.get("POLYA_WEBHOOK_CERT"), env.get("POLYA_WEBHOOK_KEY")
    cafile = env.get("POLYA_WEBHOOK_CA") or None
    if not (cert and key):
        cert_path, key_path = self_signed(host or "localhost",
                                          tempfile.mkdtemp(prefix="polya-webhook-"))
        cert, key, cafile = str(cert_path), str(key_path), str(cert_path)
    return make(addr=addr, port=port, host=host, certfile=cert, pkeyfile=key, cafile=cafile)


def configure(settings: kopf.OperatorSettings, env: Mapping[str, str] | None = None,
              addr: str | None = None) -> None:
    """Serve the webhook and let kopf manage the ValidatingWebhookConfiguration."""
    settings.admission.server = server(env, addr)
    settings.admission.managed = MANAGED
