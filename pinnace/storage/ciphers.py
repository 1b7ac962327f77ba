"""Value transformers for encryption at rest, in kube-apiserver's stored format.

An encrypted value is ``k8s:enc:<provider>:v1:<key name>:`` and then:

- ``aescbc``: a random 16-byte IV, then AES-CBC of the value with PKCS#7
  padding (no authentication: upstream's format);
- ``aesgcm``: a random 12-byte nonce, then AES-GCM ciphertext and 16-byte
  tag, authenticating the storage key as additional data (upstream's etcd
  key; here pinnace's) so that a value copied under another key fails;
- ``secretbox``: a random 24-byte nonce, then NaCl secretbox (XSalsa20 and
  Poly1305: tag, then ciphertext).

``identity`` stores values as they are, and refuses to read one that looks
encrypted. A ``Chain`` holds every (provider, key) of a resource in config
order: the first writes, and a read uses the first whose prefix the stored
value carries.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .interface import StoreError

ENCRYPTED = b"k8s:enc:"
AES_KEY_SIZES = (16, 24, 32)
SECRETBOX_KEY_SIZES = (32,)

_BLOCK = 16
_GCM_NONCE = 12
_SECRETBOX_NONCE = 24
_SECRETBOX_TAG = 16


class TransformError(StoreError):
    """A stored value cannot be read (or a value cannot be written) with the
    configured providers."""


# (plaintext or stored bytes, storage key) -> the other
Transform = Callable[[bytes, bytes], bytes]


@dataclass(frozen=True, slots=True)
class Entry:
    """One provider with one of its keys (identity has none)."""

    provider: str
    key_name: str
    prefix: bytes
    seal: Transform
    open: Transform

    @property
    def label(self) -> str:
        return f"{self.provider}:{self.key_name}" if self.key_name else self.provider


def prefix_of(provider: str, key_name: str) -> bytes:
    return b"k8s:enc:" + provider.encode() + b":v1:" + key_name.encode() + b":"


def aescbc(key_name: str, secret: bytes) -> Entry:
    algorithm = algorithms.AES(secret)

    def seal(data: bytes, _ad: bytes) -> bytes:
        iv = os.urandom(_BLOCK)
        pad = _BLOCK - len(data) % _BLOCK
        enc = Cipher(algorithm, modes.CBC(iv)).encryptor()
        return iv + enc.update(data + bytes([pad]) * pad) + enc.finalize()

    def open_(data: bytes, _ad: bytes) -> bytes:
        if len(data) < _BLOCK:
            raise TransformError("the stored data was shorter than the required size")
        iv, body = data[:_BLOCK], data[_BLOCK:]
        if not body or len(body) % _BLOCK:
            raise TransformError("the stored data is not a multiple of the block size")
        dec = Cipher(algorithm, modes.CBC(iv)).decryptor()
        plain = dec.update(body) + dec.finalize()
        pad = plain[-1]
        # A wrong key decrypts to noise: the padding check is what notices.
        if not 0 < pad <= _BLOCK or not hmac.compare_digest(plain[-pad:], bytes([pad]) * pad):
            raise TransformError("invalid padding on input (wrong key?)")
        return plain[:-pad]

    return Entry("aescbc", key_name, prefix_of("aescbc", key_name), seal, open_)


def aesgcm(key_name: str, secret: bytes) -> Entry:
    aead = AESGCM(secret)

    def seal(data: bytes, ad: bytes) -> bytes:
        nonce = os.urandom(_GCM_NONCE)
        return nonce + aead.encrypt(nonce, data, ad)

    def open_(data: bytes, ad: bytes) -> bytes:
        if len(data) < _GCM_NONCE + 16:
            raise TransformError("the stored data was shorter than the required size")
        try:
            return aead.decrypt(data[:_GCM_NONCE], data[_GCM_NONCE:], ad)
        except Exception:  # cryptography's InvalidTag: say what it means here
            raise TransformError("message authentication failed (wrong key, or the value "
                                 "was moved from another key)") from None

    return Entry("aesgcm", key_name, prefix_of("aesgcm", key_name), seal, open_)


def secretbox(key_name: str, secret: bytes) -> Entry:
    # PyNaCl (libsodium) is imported only by configs that name secretbox.
    from nacl.bindings import crypto_secretbox, crypto_secretbox_open
    from nacl.exceptions import CryptoError

    def seal(data: bytes, _ad: bytes) -> bytes:
        nonce = os.urandom(_SECRETBOX_NONCE)
        return nonce + crypto_secretbox(data, nonce, secret)

    def open_(data: bytes, _ad: bytes) -> bytes:
        if len(data) < _SECRETBOX_NONCE + _SECRETBOX_TAG:
            raise TransformError("the stored data was shorter than the required size")
        try:
            return crypto_secretbox_open(data[_SECRETBOX_NONCE:], data[:_SECRETBOX_NONCE],
                                         secret)
        except CryptoError:
            raise TransformError("message authentication failed (wrong key?)") from None

    return Entry("secretbox", key_name, prefix_of("secretbox", key_name), seal, open_)


def identity() -> Entry:
    def open_(data: bytes, _ad: bytes) -> bytes:
        if data.startswith(ENCRYPTED):
            raise TransformError("identity transformer tried to read encrypted data")
        return data

    return Entry("identity", "", b"", lambda data, _ad: data, open_)


class Chain:
    """The providers of one resource, in config order."""

    def __init__(self, entries: Sequence[Entry]):
        if not entries:
            raise ValueError("a provider chain needs at least one provider")
        self.entries = tuple(entries)
        self.writer = self.entries[0]

    def to_storage(self, data: bytes, key: str) -> bytes:
        w = self.writer
        return w.prefix + w.seal(data, key.encode())

    def from_storage(self, data: bytes, key: str) -> tuple[bytes, bool]:
        """The value and whether it is stale (not under the write key)."""
        for entry in self.entries:
            if not data.startswith(entry.prefix):
                continue
            try:
                plain = entry.open(data[len(entry.prefix):], key.encode())
            except TransformError as e:
                if entry.prefix:
                    # The value names this provider and key: no other may read it.
                    raise TransformError(f"cannot decrypt {key} with {entry.label}: {e}") from None
                continue  # identity met encrypted data: a later provider may know it
            return plain, entry is not self.writer
        if data.startswith(ENCRYPTED):
            head = b":".join(data[:100].split(b":")[:5]).decode(errors="replace")
            raise TransformError(f"cannot read {key}: no matching prefix found: it was "
                                 f"encrypted as {head}, which no configured provider and key "
                                 "names")
        raise TransformError(f"cannot read {key}: no matching prefix found: it is stored "
                             "unencrypted, and reading data written before encryption was "
                             "enabled needs the identity provider in the list")
