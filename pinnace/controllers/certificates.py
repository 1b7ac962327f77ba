"""CertificateSigningRequests: upstream's csrapproving and csrsigning
controllers (pkg/controller/certificates/approver and signer).

- csrapproving approves a request for signer
  kubernetes.io/kube-apiserver-client-kubelet whose x509 request is a node
  client certificate (subject exactly O=system:nodes,
  CN=system:node:<name>; no DNS, IP, email or URI names; usages "digital
  signature" and "client auth", with "key encipherment" for RSA keys) when
  the requester may create certificatesigningrequests/selfnodeclient (a node
  renewing, asking for its own name) or /nodeclient (a bootstrapping node),
  as a SubjectAccessReview tells; the default policy grants these to groups
  system:nodes and system:bootstrappers, as kubeadm and k3s do. Condition Approved, reason
  AutoApproved. Anything else is left alone, neither approved nor denied,
  for a human (`kubectl certificate approve|deny`).
- csrsigning signs approved requests for kubernetes.io/kube-apiserver-client
  -kubelet and kubernetes.io/kube-apiserver-client with the cluster CA
  (options ``cluster_signing_cert_file`` / ``cluster_signing_key_file``,
  upstream's --cluster-signing-cert-file / -key-file), valid for
  ``cluster_signing_duration`` seconds (default a year) or the shorter
  spec.expirationSeconds, never past the CA's own end. A request that does
  not fit its signer gets condition Failed, reason SignerValidationFailure.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .base import Context, Controller

if TYPE_CHECKING:
    from cryptography import x509

# The crypto library is imported when the first request is looked at, not
# when the controller manager starts: most clusters sign a handful of
# certificates in their life, and the library maps ~10 MB
# (pinnace/certfiles.py).

Obj = dict[str, Any]

KUBELET_CLIENT = "kubernetes.io/kube-apiserver-client-kubelet"
APISERVER_CLIENT = "kubernetes.io/kube-apiserver-client"
SIGNERS = (KUBELET_CLIENT, APISERVER_CLIENT)
NODE_PREFIX = "system:node:"
_KUBELET_USAGES = ({"digital signature", "client auth"},
                   {"digital signature", "key encipherment", "client auth"})
DEFAULT_DURATION = 365 * 86400.0
_BACKDATE = dt.timedelta(minutes=5)  # tolerate clocks a little behind, as upstream does

_KEY_USAGES = {"digital signature": "digital_signature",
               "content commitment": "content_commitment",
               "key encipherment": "key_encipherment", "key agreement": "key_agreement",
               "data encipherment": "data_encipherment", "cert sign": "key_cert_sign",
               "crl sign": "crl_sign", "encipher only": "encipher_only",
               "decipher only": "decipher_only", "signing": "digital_signature"}


@functools.cache
def _ext_usages() -> dict[str, x509.ObjectIdentifier]:
    from cryptography.x509.oid import ExtendedKeyUsageOID

    return {"client auth": ExtendedKeyUsageOID.CLIENT_AUTH,
            "server auth": ExtendedKeyUsageOID.SERVER_AUTH,
            "code signing": ExtendedKeyUsageOID.CODE_SIGNING,
            "email protection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
            "timestamping": ExtendedKeyUsageOID.TIME_STAMPING,
            "ocsp signing": ExtendedKeyUsageOID.OCSP_SIGNING,
            "any": ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE}


def _conditions(csr: Obj) -> dict[str, Obj]:
    return {c.get("type", ""): c for c in (csr.get("status") or {}).get("conditions") or []}


def is_finished(csr: Obj) -> bool:
    """Approved, denied, failed or issued: nothing left to decide."""
    return bool(_conditions(csr).keys() & {"Approved", "Denied", "Failed"}) or \
        bool((csr.get("status") or {}).get("certificate"))


def parse_request(csr: Obj) -> x509.CertificateSigningRequest:
    """The x509 request in spec.request; ValueError when it is not one."""
    from cryptography import x509

    raw = base64.b64decode((csr.get("spec") or {}).get("request") or "")
    return x509.load_pem_x509_csr(raw)


def _names(req: x509.CertificateSigningRequest) -> list[x509.GeneralName]:
    from cryptography import x509

    try:
        ext = req.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return list(ext.value)


def kubelet_client_problem(req: x509.CertificateSigningRequest, usages: list[str]) -> str:
    """Why ``req`` is not a node client certificate request ("" when it is):
    upstream's ValidateKubeletClientCSR."""
    from cryptography.x509.oid import NameOID

    subject = req.subject
    orgs = [a.value for a in subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    if orgs != ["system:nodes"]:
        return "subject organization is not system:nodes"
    if _names(req):
        return "DNS, email, IP or URI subjectAltNames are not allowed"
    cns = [a.value for a in subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if len(cns) != 1 or not str(cns[0]).startswith(NODE_PREFIX) or \
            len(str(cns[0])) == len(NODE_PREFIX):
        return 'subject common name does not begin with "system:node:"'
    if len(list(subject)) != 2:
        return "subject has attributes other than O=system:nodes and CN"
    if set(usages) not in _KUBELET_USAGES or len(set(usages)) != len(usages):
        return (f"usages did not match {sorted(_KUBELET_USAGES[0])} or "
                f"{sorted(_KUBELET_USAGES[1])}")
    return ""


def apiserver_client_problem(usages: list[str]) -> str:
    """upstream's validAPIServerClientUsages."""
    for u in usages:
        if u not in ("digital signature", "key encipherment", "client auth"):
            return f"invalid usage for client certificate: {u}"
    if "client auth" not in usages:
        return "missing required usage for client certificate: client auth"
    return ""


SELF_MESSAGE = "Auto approving self kubelet client certificate after SubjectAccessReview."
NODE_MESSAGE = "Auto approving kubelet client certificate after SubjectAccessReview."


def approval_candidates(csr: Obj) -> list[tuple[str, str]]:
    """What would let csrapproving approve ``csr``: (subresource of
    certificatesigningrequests the requester must be allowed to create,
    the Approved condition's message), most specific first; [] when the
    request is not a node client certificate at all."""
    spec = csr.get("spec") or {}
    if spec.get("signerName") != KUBELET_CLIENT or is_finished(csr):
        return []
    try:
        req = parse_request(csr)
    except ValueError:
        return []
    if kubelet_client_problem(req, list(spec.get("usages") or [])):
        return []
    from cryptography.x509.oid import NameOID

    cn = req.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    out = []
    if spec.get("username") == cn:
        out.append(("selfnodeclient", SELF_MESSAGE))
    out.append(("nodeclient", NODE_MESSAGE))
    return out


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class CSRApprovingController(Controller):
    name = "csrapproving"
    event_source = "csrapproving"
    workers = 2

    def __init__(self, ctx: Context):
        super().__init__(ctx)
        self.csrs = ctx.informers.informer("certificates.k8s.io/v1", "certificatesigningrequests")
        self.api = self.client.resource("certificates.k8s.io/v1", "certificatesigningrequests")
        self.reviews = self.client.resource("authorization.k8s.io/v1", "subjectaccessreviews")

    def setup(self) -> None:
        self.csrs.add_handler(self.enqueue, lambda old, new: self.enqueue(new))

    async def sync(self, key: str) -> None:
        csr = self.csrs.get(key)
        if csr is None:
            return
        message = ""
        for subresource, why in approval_candidates(csr):
            if await self._requester_may(csr, subresource):
                message = why
                break
        if not message:
            return
        status = dict(csr.get("status") or {})
        status["conditions"] = [*(status.get("conditions") or []), {
            "type": "Approved", "status": "True", "reason": "AutoApproved", "message": message,
            "lastUpdateTime": _now()}]
        await self.api.replace({**csr, "status": status}, subresource="approval")
        self.log.info("approved %s for %s", key, (csr.get("spec") or {}).get("username"))

    async def _requester_may(self, csr: Obj, subresource: str) -> bool:
        """Ask the API server's authorizer whether the requester may create
        ``certificatesigningrequests/<subresource>`` (a SubjectAccessReview,
        as upstream's approver asks)."""
        spec = csr.get("spec") or {}
        review = await self.reviews.create({
            "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {"user": spec.get("username", ""), "groups": spec.get("groups") or [],
                     "uid": spec.get("uid", ""), "extra": spec.get("extra") or {},
                     "resourceAttributes": {"group": "certificates.k8s.io",
                                            "resource": "certificatesigningrequests",
                                            "subresource": subresource, "verb": "create"}}})
        return bool((review.get("status") or {}).get("allowed"))


class Signer:
    """The cluster CA, loaded once."""

    def __init__(self, cert_file: Path, key_file: Path, max_duration: float):
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec, rsa

        self.cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
        key = serialization.load_pem_private_key(key_file.read_bytes(), None)
        if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise ValueError(f"{key_file}: not an EC or RSA private key")
        self.key = key
        self.max_duration = max_duration

    def sign(self, req: x509.CertificateSigningRequest, usages: list[str],
             expiration_seconds: int | None) -> bytes:
        """A PEM certificate for ``req``."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization

        now = dt.datetime.now(dt.UTC)
        seconds = self.max_duration
        if expiration_seconds:
            seconds = min(seconds, float(expiration_seconds))
        not_after = min(now + dt.timedelta(seconds=seconds), self.cert.not_valid_after_utc)
        key_usage = dict.fromkeys(set(_KEY_USAGES.values()), False)
        for u in usages:
            if u in _KEY_USAGES:
                key_usage[_KEY_USAGES[u]] = True
        ext = [_ext_usages()[u] for u in usages if u in _ext_usages()]
        b = (x509.CertificateBuilder()
             .subject_name(req.subject)
             .issuer_name(self.cert.subject)
             .public_key(req.public_key())
             .serial_number(x509.random_serial_number())
             .not_valid_before(now - _BACKDATE)
             .not_valid_after(not_after)
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
             .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                 self.key.public_key()), critical=False))
        if any(key_usage.values()):  # none: no extension, as Go's x509 leaves it out
            b = b.add_extension(x509.KeyUsage(**key_usage), critical=True)
        if ext:
            b = b.add_extension(x509.ExtendedKeyUsage(ext), critical=False)
        names = _names(req)
        if names:
            b = b.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return b.sign(self.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


class CSRSigningController(Controller):
    name = "csrsigning"
    event_source = "csrsigning"
    workers = 2

    def __init__(self, ctx: Context):
        super().__init__(ctx)
        self._signer: Signer | None = None
        self._ca: tuple[Path, Path] | None = None
        cert_file = ctx.options.get("cluster_signing_cert_file")
        key_file = ctx.options.get("cluster_signing_key_file")
        self.duration = float(ctx.options.get("cluster_signing_duration") or DEFAULT_DURATION)
        if not (cert_file and key_file):
            self.log.info("certificate signer disabled: no cluster_signing_cert_file and "
                          "cluster_signing_key_file")
        elif missing := [f for f in (cert_file, key_file) if not Path(f).is_file()]:
            self.log.error("certificate signer disabled: %s: no such file", missing[0])
        else:
            self._ca = Path(cert_file), Path(key_file)
        self.csrs = ctx.informers.informer("certificates.k8s.io/v1", "certificatesigningrequests")
        self.api = self.client.resource("certificates.k8s.io/v1", "certificatesigningrequests")

    def setup(self) -> None:
        if self._ca is not None:
            self.csrs.add_handler(self.enqueue, lambda old, new: self.enqueue(new))

    @property
    def signer(self) -> Signer | None:
        """The CA, loaded at the first request to sign (None: it cannot be)."""
        if self._signer is None and self._ca is not None:
            try:
                self._signer = Signer(*self._ca, self.duration)
            except (OSError, ValueError) as e:
                self.log.error("certificate signer disabled: %s", e)
                self._ca = None
        return self._signer

    def _problem(self, csr: Obj) -> tuple[x509.CertificateSigningRequest | None, str]:
        """The x509 request, and why it may not be signed ("" when it may)."""
        spec = csr.get("spec") or {}
        usages = list(spec.get("usages") or [])
        try:
            req = parse_request(csr)
        except ValueError as e:
            return None, f"unable to parse csr: {e}"
        if not req.is_signature_valid:
            return req, "the request's signature is invalid"
        if spec.get("signerName") == KUBELET_CLIENT:
            return req, kubelet_client_problem(req, usages)
        return req, apiserver_client_problem(usages)

    async def sync(self, key: str) -> None:
        csr = self.csrs.get(key)
        if csr is None or self.signer is None:
            return
        spec = csr.get("spec") or {}
        status = csr.get("status") or {}
        conds = _conditions(csr)
        if spec.get("signerName") not in SIGNERS or "Approved" not in conds or \
                conds.keys() & {"Denied", "Failed"} or status.get("certificate"):
            return
        req, problem = self._problem(csr)
        if problem or req is None:
            failed = {"type": "Failed", "status": "True", "reason": "SignerValidationFailure",
                      "message": problem, "lastUpdateTime": _now()}
            await self.api.replace_status(
                {**csr, "status": {**status, "conditions": [*(status.get("conditions") or []),
                                                            failed]}})
            self.log.info("%s not signed: %s", key, problem)
            return
        pem = self.signer.sign(req, list(spec.get("usages") or []),
                               spec.get("expirationSeconds"))
        await self.api.replace_status(
            {**csr, "status": {**status, "certificate": base64.b64encode(pem).decode()}})
        self.log.info("signed %s for %s", key, req.subject.rfc4514_string())


CONTROLLERS: dict[str, type[Controller]] = {"csrapproving": CSRApprovingController,
                                            "csrsigning": CSRSigningController}
