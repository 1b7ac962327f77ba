"""certificates.k8s.io: CertificateSigningRequest, as upstream's
pkg/apis/certificates/validation validates it on create, on update (the
object and its /approval subresource) and on a /status write."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from . import meta as m
from . import names
from ._common import (
    Errs,
    GoRepr,
    Obj,
    as_dict,
    as_list,
    d,
    duplicate,
    forbidden,
    invalid,
    is_int,
    not_supported,
    required,
)

# KeyUsage and ExtKeyUsage names a CSR may ask for (certificates/v1 KeyUsage).
USAGES = [
    "signing", "digital signature", "content commitment", "key encipherment", "key agreement",
    "data encipherment", "cert sign", "crl sign", "encipher only", "decipher only", "any",
    "server auth", "client auth", "code signing", "email protection", "s/mime",
    "ipsec end system", "ipsec tunnel", "ipsec user", "timestamping", "ocsp signing",
    "microsoft sgc", "netscape sgc",
]
_TRUE_FALSE_UNKNOWN = ["False", "True", "Unknown"]
_SIGNER_PATH = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
                          r"(/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)*")
_SIGNER_FORMAT = ("must be a fully qualified domain and path of the form "
                  "'example.com/signer-name'")
MIN_EXPIRATION_SECONDS = 600


def decode_bytes(value: Any) -> bytes | None:
    """A []byte field as JSON carries it (base64); None when it is not that."""
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def pem_blocks(data: bytes, kind: str) -> list[bytes] | None:
    """The PEM blocks in ``data`` if every one is of type ``kind`` (None otherwise)."""
    found = re.findall(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", data, re.S)
    if not found or any(t.decode() != kind for t, _ in found):
        return None
    return [f"-----BEGIN {kind}-----\n".encode() + body + f"-----END {kind}-----\n".encode()
            for _, body in found]


def _request_errors(spec: Obj) -> Errs:
    raw = spec.get("request")
    if not raw:
        return [required("spec.request")]
    data = decode_bytes(raw)
    blocks = pem_blocks(data or b"", "CERTIFICATE REQUEST")
    if not blocks or len(blocks) != 1:
        return [invalid("spec.request", GoRepr("[]byte{...}"),
                        "PEM block type must be CERTIFICATE REQUEST")]
    from cryptography import x509

    try:
        x509.load_pem_x509_csr(blocks[0])
    except ValueError as e:
        return [invalid("spec.request", GoRepr("[]byte{...}"), f"x509: {e}")]
    return []


def _signer_errors(name: Any) -> Errs:
    if not name:
        return [required("spec.signerName")]
    domain, sep, path = str(name).partition("/")
    if not sep or not path or names.is_dns1123_subdomain(domain) or \
            not _SIGNER_PATH.fullmatch(path):
        return [invalid("spec.signerName", name, _SIGNER_FORMAT)]
    if len(str(name)) > 571:  # a 253-character domain and a 317-character path
        return [invalid("spec.signerName", name, "must be no more than 571 characters")]
    return []


def _conditions_errors(status: Obj) -> Errs:
    errs: Errs = []
    seen: set[str] = set()
    approved = denied = False
    for i, c in enumerate(as_list(status.get("conditions"))):
        c = as_dict(c)
        path = f"status.conditions[{i}]"
        ctype = c.get("type") or ""
        if not ctype:
            errs.append(required(f"{path}.type"))
        if c.get("status") not in _TRUE_FALSE_UNKNOWN:
            errs.append(not_supported(f"{path}.status", c.get("status", ""), _TRUE_FALSE_UNKNOWN))
        if ctype in seen:
            errs.append(duplicate(f"{path}.type", ctype))
        seen.add(ctype)
        if ctype in ("Approved", "Denied"):
            approved, denied = approved or ctype == "Approved", denied or ctype == "Denied"
            if c.get("status") != "True":
                errs.append(not_supported(f"{path}.status", c.get("status", ""), ["True"]))
    if approved and denied:
        errs.append(invalid("status.conditions", "Approved",
                            "Approved and Denied conditions are mutually exclusive"))
    return errs


def _certificate_errors(status: Obj) -> Errs:
    raw = status.get("certificate")
    if not raw:
        return []
    blocks = pem_blocks(decode_bytes(raw) or b"", "CERTIFICATE")
    if not blocks:
        return [invalid("status.certificate", GoRepr("<certificate data>"),
                        "must contain at least one CERTIFICATE PEM block")]
    from cryptography import x509

    for i, block in enumerate(blocks):
        try:
            x509.load_pem_x509_certificate(block)
        except ValueError as e:
            return [invalid("status.certificate", GoRepr("<certificate data>"),
                            f"error parsing certificate {i + 1}: {e}")]
    return []


def _conditions_of(csr: Obj, ctype: str) -> int:
    return sum(1 for c in as_list(d(csr, "status", "conditions"))
               if as_dict(c).get("type") == ctype)


def _csr(csr: Obj) -> Errs:
    spec = as_dict(csr.get("spec"))
    errs = _request_errors(spec)
    usages = as_list(spec.get("usages"))
    if not usages:
        errs.append(required("spec.usages", "usages must be provided"))
    seen: set[str] = set()
    for i, u in enumerate(usages):
        if u not in USAGES:
            errs.append(not_supported(f"spec.usages[{i}]", u, USAGES))
        elif u in seen:
            errs.append(duplicate(f"spec.usages[{i}]", u))
        seen.add(u)
    errs += _signer_errors(spec.get("signerName"))
    exp = spec.get("expirationSeconds")
    if exp is not None and (not is_int(exp) or exp < MIN_EXPIRATION_SECONDS):
        errs.append(invalid("spec.expirationSeconds", exp, "may not specify a duration less "
                                                           "than 600 seconds (10 minutes)"))
    status = as_dict(csr.get("status"))
    return errs + _conditions_errors(status) + _certificate_errors(status)


def validate_csr(csr: Obj, old: Obj | None = None) -> Errs:
    """A create, or an update of the object or of its approval."""
    if old is None:
        return m.validate_object_meta(csr.get("metadata"), names.name_is_dns_subdomain) + \
            _csr(csr)
    errs = m.validate_object_meta_update(csr.get("metadata"), old.get("metadata")) + _csr(csr)
    for ctype in ("Approved", "Denied", "Failed"):
        if _conditions_of(csr, ctype) < _conditions_of(old, ctype):
            errs.append(forbidden("status.conditions",
                                  f'updates may not remove a condition of type "{ctype}"'))
    old_cert = d(old, "status", "certificate")
    if old_cert and d(csr, "status", "certificate") != old_cert:
        errs.append(forbidden("status.certificate",
                              "updates may not modify existing certificate content"))
    return errs


def validate_csr_status(csr: Obj, old: Obj) -> Errs:
    """A /status write: besides the above, approval is not its business."""
    errs = validate_csr(csr, old)
    for ctype in ("Approved", "Denied"):
        if _conditions_of(csr, ctype) != _conditions_of(old, ctype):
            errs.append(forbidden("status.conditions", f'a condition of type "{ctype}" may '
                                                       "only be set through /approval"))
    return errs
