"""pyroute2, imported lean: IPRoute, Conntrack, NetlinkError and the route
netlink message classes from their own modules, without the package's
``__init__``.

That ``__init__`` imports all ~160 of pyroute2's modules (IPDB, NDB and its
SQLite schema, wireless, devlink, plan9, ...): ~6 MB in the node agent,
which needs a few names. The package is put in place unexecuted; should
anything ask it for another name (``from pyroute2 import IPDB``), its
``__init__`` runs then, so it behaves as the whole package from there on.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from importlib.machinery import ModuleSpec
from typing import Any


class _LazyPackage(types.ModuleType):
    """A package whose ``__init__`` runs at the first missing attribute."""

    def __init__(self, spec: ModuleSpec):
        super().__init__(spec.name)
        self.__spec__ = spec
        self.__loader__ = spec.loader
        self.__file__ = spec.origin
        self.__package__ = spec.name
        self.__path__ = list(spec.submodule_search_locations or [])

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or self.__dict__.get("_pinnace_loaded"):
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        # `from pyroute2 import config`, as its own modules do: that module alone.
        if importlib.util.find_spec(f"{self.__name__}.{name}") is not None:
            return importlib.import_module(f"{self.__name__}.{name}")
        self.__dict__["_pinnace_loaded"] = True
        assert self.__spec__ is not None and self.__spec__.loader is not None
        self.__spec__.loader.exec_module(self)
        return getattr(self, name)


def _install() -> None:
    if "pyroute2" in sys.modules:
        return
    spec = importlib.util.find_spec("pyroute2")
    if spec is None:
        raise ImportError("No module named 'pyroute2'", name="pyroute2")
    sys.modules["pyroute2"] = _LazyPackage(spec)


_install()

from pyroute2.conntrack import Conntrack  # noqa: E402
from pyroute2.iproute import IPRoute  # noqa: E402
from pyroute2.netlink.exceptions import NetlinkError  # noqa: E402
from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple  # noqa: E402
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg  # noqa: E402
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg  # noqa: E402
from pyroute2.netlink.rtnl.rtmsg import rtmsg  # noqa: E402

__all__ = ["Conntrack", "IPRoute", "NFCTAttrTuple", "NetlinkError", "ifaddrmsg", "ifinfmsg",
           "rtmsg"]
