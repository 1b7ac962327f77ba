"""Storage backends behind one Store interface, chosen by URL (see open_store)."""

from __future__ import annotations

import os
from collections.abc import Callable
from urllib.parse import urlsplit

from .interface import Store

# scheme -> factory(url, data_dir, shared, owner). Backends are imported on
# use: the etcd client pulls in grpc, which a sqlite-only server never needs.
_Factory = Callable[[str, str, bool, bool], Store]


def _memory(url: str, data_dir: str, shared: bool, owner: bool) -> Store:
    if shared:
        raise ValueError("the memory datastore lives in one process: it cannot be shared")
    from .memory import MemoryStore

    return MemoryStore()


def _sqlite(url: str, data_dir: str, shared: bool, owner: bool) -> Store:
    from .sqlite import SQLiteStore

    parts = urlsplit(url) if "://" in url else None
    if parts is not None and parts.netloc:
        raise ValueError(f"datastore {url!r}: use sqlite:///abs/path.db (three slashes)")
    path = parts.path if parts is not None else ""
    if not path:
        if not data_dir:
            raise ValueError(f"datastore {url!r}: no data dir to put state.db in")
        os.makedirs(data_dir, exist_ok=True)
        path = os.path.join(data_dir, "state.db")
    elif not os.path.isabs(path):
        raise ValueError(f"datastore {url!r}: use an absolute path, as in sqlite:///abs/path.db")
    return SQLiteStore(path, shared=shared, owner=owner)


def _etcd(url: str, data_dir: str, shared: bool, owner: bool) -> Store:
    # Every etcd client shares the cluster: nothing to set up for sharing.
    from .etcd import EtcdStore

    parts = urlsplit(url)
    if parts.path not in ("", "/") or parts.query:
        raise ValueError(f"datastore {url!r}: expected etcd://host:port[,host:port...]")
    endpoints = [e.strip() for e in parts.netloc.split(",") if e.strip()]
    if not endpoints:
        raise ValueError(f"datastore {url!r}: no etcd endpoints")
    return EtcdStore([e if ":" in e else f"{e}:2379" for e in endpoints])


_REGISTRY: dict[str, _Factory] = {
    "memory": _memory,
    "sqlite": _sqlite,
    "etcd": _etcd,
    "http": _etcd,
}


def open_store(url: str, data_dir: str, *, shared: bool = False, owner: bool = True) -> Store:
    """The Store for a datastore URL; the caller awaits ``start()`` on it.

    ``shared``: several processes (the API server's workers) use this
    datastore at once; ``owner``: this one is the process that keeps it
    (holds its lock, compacts it).

    - ``memory``                      in-process, lost at exit (tests)
    - ``sqlite``                      ``<data_dir>/state.db`` (the default)
    - ``sqlite:///abs/path.db``       that file
    - ``etcd://h1:2379,h2:2379``      an etcd v3 cluster (``http://`` also accepted)
    """
    scheme = url.split("://", 1)[0].lower() if "://" in url else url.lower()
    factory = _REGISTRY.get(scheme)
    if factory is None:
        known = ", ".join(sorted(_REGISTRY))
        raise ValueError(f"unknown datastore {url!r}: the scheme must be one of {known}")
    return factory(url, data_dir, shared, owner)


__all__ = ["Store", "open_store"]
