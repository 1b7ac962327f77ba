"""Joining a node (`pinnace agent --server URL --token K10...`): from a join
token to a kubeconfig with the node's own client certificate, as the
kubelet's TLS bootstrap does with kubeadm's discovery.

1. Read kube-public/cluster-info anonymously over TLS that trusts nothing
   yet, take the CA from the kubeconfig it holds, and check its public-key
   hash against the one in the join token. A different CA: stop, the token
   is never sent.
2. From then on talk TLS verified with that CA, authenticated by the
   bootstrap token (user system:bootstrap:<id>): create a private key and a
   CertificateSigningRequest for CN=system:node:<name>, O=system:nodes
   (signer kubernetes.io/kube-apiserver-client-kubelet), which the
   controller manager approves and signs.
3. Write the key (0600), the certificate and DATA/agent/kubeconfig, so
   later starts need no token.

A joined agent renews its certificate the same way when it starts within the
certificate's last 90 days (``renew``), authenticated by the certificate
itself: the controller manager approves a node's request for its own name.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import hmac
import logging
import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson
import yaml

from pinnace.apiserver import bootstraptoken as bt
from pinnace.apiserver.kubeconfig import write_kubeconfig
from pinnace.certfiles import RENEW_WITHIN, expires_within, write_pem
from pinnace.client import ApiError, Client, ClientConfig
from pinnace.client.config import load_kubeconfig

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

# The crypto library is imported by the functions that make keys and
# requests: the agent that only checks its certificate's expiry never maps it
# (~10 MB, pinnace/certfiles.py).

log = logging.getLogger("pinnace.kubelet.bootstrap")

SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"
CLUSTER_INFO = "/api/v1/namespaces/kube-public/configmaps/cluster-info"
REFUSED = "the join token was refused: it is wrong or has expired"


class JoinError(Exception):
    """Joining failed; the message says why, for the user."""


def kubeconfig_path(data_dir: Path) -> Path:
    """Where a joined agent keeps its kubeconfig."""
    return data_dir / "agent" / "kubeconfig"


async def join(server: str, token: str, data_dir: Path, node_name: str, *,
               timeout: float = 300.0) -> Path:
    """Join the cluster at ``server`` as ``node_name``; the kubeconfig path."""
    try:
        jt = bt.parse_join_token(token)
    except ValueError as e:
        raise JoinError(f"the join token is malformed: {e}") from None
    server = server.rstrip("/")
    if not server.startswith("https://"):
        raise JoinError(f"--server must be an https:// URL, not {server!r}")
    ca_pem = await fetch_trusted_ca(server, jt.ca_hash)
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    config = ClientConfig(server=server, ca_data=ca_pem, token=jt.bearer,
                          user_agent="pinnace-agent/bootstrap")
    async with Client(config) as client:
        csrs = client.resource("certificates.k8s.io/v1", "certificatesigningrequests")
        try:
            name = await _request(csrs, key, node_name)
            cert_pem = await asyncio.wait_for(_certificate(csrs, name), timeout)
        except ApiError as e:
            if e.code == 401:
                raise JoinError(REFUSED) from None
            raise JoinError(f"the server refused the certificate signing request: "
                            f"{e.status.get('message') or e}") from None
        except aiohttp.ClientConnectorCertificateError as e:
            raise JoinError(_tls_problem(server, e)) from None
        except aiohttp.ClientError as e:
            raise JoinError(_unreachable(server, e)) from None
        except asyncio.TimeoutError:
            raise JoinError(f"no signed certificate after {timeout:.0f}s: the request is "
                            "pending approval (`kubectl get csr`); is the controller manager "
                            "running?") from None
    return _write(data_dir, server, ca_pem, key, cert_pem)


async def fetch_trusted_ca(server: str, want_hash: str) -> bytes:
    """The cluster CA (PEM) the server publishes in cluster-info, once its
    public key hashes to ``want_hash``; JoinError otherwise."""
    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE  # nothing secret is sent on this connection
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            async with session.get(server + CLUSTER_INFO, ssl=insecure,
                                   headers={"Accept": "application/json"}) as resp:
                body = await resp.read()
                if resp.status != 200:
                    raise JoinError(f"the server at {server} does not publish "
                                    f"kube-public/cluster-info (HTTP {resp.status}): is it a "
                                    "pinnace server?")
    except aiohttp.ClientError as e:
        raise JoinError(_unreachable(server, e)) from None
    try:
        kubeconfig = yaml.safe_load(orjson.loads(body)["data"]["kubeconfig"])
        ca_pem = base64.b64decode(
            kubeconfig["clusters"][0]["cluster"]["certificate-authority-data"])
        have = bt.ca_hash(ca_pem)
    except (KeyError, IndexError, TypeError, ValueError, yaml.YAMLError) as e:
        raise JoinError(f"the server at {server} published an unreadable cluster-info: "
                        f"{e}") from None
    if not hmac.compare_digest(have, want_hash):
        raise JoinError(f"the server's CA does not match the token: the token expects CA "
                        f"hash {want_hash}, the server at {server} presents {have}; the "
                        "token was not sent")
    return ca_pem


def csr_pem(key: ec.EllipticCurvePrivateKey, node_name: str) -> bytes:
    """A PKCS#10 request for the node's client certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
                         x509.NameAttribute(NameOID.COMMON_NAME, f"system:node:{node_name}")])
    req = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    return req.public_bytes(serialization.Encoding.PEM)


async def _request(csrs: Any, key: ec.EllipticCurvePrivateKey, node_name: str) -> str:
    from cryptography.hazmat.primitives import serialization

    spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    # Named by the key, as the kubelet names its requests: one per key.
    name = f"node-csr-{hashlib.sha256(spki).hexdigest()[:20]}"
    await csrs.create({
        "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
        "metadata": {"name": name},
        "spec": {"request": base64.b64encode(csr_pem(key, node_name)).decode(),
                 "signerName": SIGNER, "usages": ["digital signature", "client auth"]}})
    log.info("certificate signing request %s created for node %s", name, node_name)
    return name


def _issued(csr: dict[str, Any]) -> bytes | None:
    """The certificate once issued; JoinError if the request was turned down."""
    status = csr.get("status") or {}
    for c in status.get("conditions") or []:
        if c.get("type") in ("Denied", "Failed") and c.get("status") == "True":
            raise JoinError(f"the certificate signing request {csr['metadata']['name']} was "
                            f"{c['type'].lower()}: {c.get('reason', '')} {c.get('message', '')}"
                            .rstrip())
    if status.get("certificate"):
        return base64.b64decode(status["certificate"])
    return None


async def _certificate(csrs: Any, name: str) -> bytes:
    """Wait (watching) until the request is signed."""
    while True:
        csr = await csrs.get(name)
        cert = _issued(csr)
        if cert is not None:
            return cert
        try:
            async for _type, obj in csrs.watch(
                    resource_version=csr["metadata"]["resourceVersion"],
                    field_selector=f"metadata.name={name}", timeout_seconds=60):
                if obj.get("kind") == "CertificateSigningRequest":
                    cert = _issued(obj)
                    if cert is not None:
                        return cert
        except ApiError as e:
            if e.code != 410:
                raise


async def renew(data_dir: Path, *, within: dt.timedelta = RENEW_WITHIN,
                timeout: float = 300.0) -> bool:
    """Renew the joined node's client certificate if it expires within
    ``within``; whether it did. The request is made as the node itself."""
    cert_path = data_dir / "agent" / "tls" / "kubelet-client.crt"
    path = kubeconfig_path(data_dir)
    if not path.exists() or not expires_within(cert_path, within):
        return False
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    node_name = str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
                    ).removeprefix("system:node:")
    config = load_kubeconfig(path)
    key = ec.generate_private_key(ec.SECP256R1())
    async with Client(config) as client:
        csrs = client.resource("certificates.k8s.io/v1", "certificatesigningrequests")
        name = await _request(csrs, key, node_name)
        cert_pem = await asyncio.wait_for(_certificate(csrs, name), timeout)
    assert config.ca_data is not None
    _write(data_dir, config.server, config.ca_data, key, cert_pem)
    log.info("renewed the client certificate of node %s (%s)", node_name, name)
    return True


def _unreachable(server: str, e: aiohttp.ClientError) -> str:
    why = e.os_error.strerror if isinstance(e, aiohttp.ClientConnectorError) and \
        e.os_error.strerror else str(e) or type(e).__name__
    return f"cannot reach the server at {server}: {why}"


def _tls_problem(server: str, e: aiohttp.ClientConnectorCertificateError) -> str:
    return (f"the server at {server} presents a certificate that is not valid for that "
            f"address ({e.certificate_error}); give the server that name or address with "
            "`pinnace server --tls-san`, or join through one its certificate has")


def _write(data_dir: Path, server: str, ca_pem: bytes, key: ec.EllipticCurvePrivateKey,
           cert_pem: bytes) -> Path:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import NameOID

    tls = data_dir / "agent" / "tls"
    tls.mkdir(parents=True, exist_ok=True, mode=0o700)
    key_path, cert_path = tls / "kubelet-client.key", tls / "kubelet-client.crt"
    write_pem(key_path, key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()), private=True)
    write_pem(cert_path, cert_pem)
    path = kubeconfig_path(data_dir)
    cert = x509.load_pem_x509_certificate(cert_pem)
    user = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    write_kubeconfig(path, {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "pinnace", "cluster": {
            "server": server, "certificate-authority-data": base64.b64encode(ca_pem).decode()}}],
        "users": [{"name": str(user), "user": {
            "client-certificate": str(cert_path.resolve()),
            "client-key": str(key_path.resolve())}}],
        "contexts": [{"name": "pinnace", "context": {"cluster": "pinnace", "user": str(user)}}],
        "current-context": "pinnace"})
    return path
