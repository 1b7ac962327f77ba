"""The Store contract every backend implements: etcd v3 semantics, nothing more.

- One global revision that only grows. Every write (create, update, delete)
  takes the next revision; a key remembers the revision that created it
  (``create_revision``) and the one that last changed it (``mod_revision``).
- Updates and deletes are compare-and-swap on ``mod_revision``.
- ``watch(prefix, after=R)`` delivers every event with revision > R, in
  revision order, then live events as they are committed. If R is older
  than the compacted revision the watch fails with ``CompactedError``.
- ``list(prefix, revision=R)`` reads the state as it was at revision R
  (0 means now); a revision older than the compacted one is ``CompactedError``.
- Values are opaque bytes (the API server stores JSON).

The API server is the only caller; keys look like
``/registry/<group>/<resource>/<namespace>/<name>``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal, Protocol

EventType = Literal["ADDED", "MODIFIED", "DELETED"]


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    # The value was read with a key other than the one writes use now
    # (encryption at rest, pinnace/storage/encryption.py): rewriting it
    # changes the stored bytes even when the value is the same.
    stale: bool = False


@dataclass(frozen=True, slots=True)
class Event:
    """One committed change. For DELETED, ``kv.value`` is the value that was
    deleted and ``kv.mod_revision`` is the revision of the deletion."""

    type: EventType
    kv: KeyValue
    prev: KeyValue | None = None


@dataclass(frozen=True, slots=True)
class ListResult:
    kvs: list[KeyValue]
    revision: int  # the revision the list was read at
    more: bool  # True when a limit cut the list short
    remaining: int = 0  # how many matching keys follow the last one returned (best effort)


class StoreError(Exception):
    pass


class KeyExistsError(StoreError):
    def __init__(self, key: str):
        super().__init__(f"key exists: {key}")
        self.key = key


class KeyNotFoundError(StoreError):
    def __init__(self, key: str):
        super().__init__(f"key not found: {key}")
        self.key = key


class ConflictError(StoreError):
    """A compare-and-swap failed: the key's mod_revision is not the one expected."""

    def __init__(self, key: str, current: KeyValue | None):
        super().__init__(f"revision mismatch on {key}")
        self.key = key
        self.current = current


class CompactedError(StoreError):
    def __init__(self, requested: int, compacted: int):
        super().__init__(
            f"required revision {requested} has been compacted (compacted revision {compacted})"
        )
        self.requested = requested
        self.compacted = compacted


class WatchClosedError(StoreError):
    """The watch ended on the store's side (slow consumer dropped, store closed);
    the caller re-lists or re-watches."""


class Watch(Protocol):
    def __aiter__(self) -> AsyncIterator[Event]: ...

    async def close(self) -> None: ...


class Store(Protocol):
    async def start(self) -> None:
        """Open files or connections; called once before any other method."""

    async def close(self) -> None: ...

    async def revision(self) -> int:
        """The current (latest committed) revision."""

    async def compacted_revision(self) -> int: ...

    async def get(self, key: str) -> KeyValue | None: ...

    async def list(
        self, prefix: str, *, start: str = "", limit: int = 0, revision: int = 0
    ) -> ListResult:
        """Keys with ``prefix`` that sort at or after ``start``, in key order, as
        of ``revision`` (0 = latest). ``limit`` 0 means no limit."""

    async def count(self, prefix: str) -> int: ...

    async def create(self, key: str, value: bytes) -> KeyValue:
        """Raises KeyExistsError when the key is live."""

    async def update(self, key: str, value: bytes, mod_revision: int) -> KeyValue:
        """CAS write. Raises KeyNotFoundError or ConflictError (with the current kv)."""

    async def delete(self, key: str, mod_revision: int = 0) -> KeyValue:
        """Delete (CAS when mod_revision != 0). Returns the deleted value with
        ``mod_revision`` set to the revision of the deletion."""

    def watch(self, prefix: str, after: int) -> Watch:
        """Events for keys under ``prefix`` with revision > ``after``. Iterating
        raises CompactedError if ``after`` < compacted revision."""

    async def compact(self, revision: int) -> None:
        """Forget history at and below ``revision`` (live keys are kept)."""
