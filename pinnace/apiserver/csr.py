"""CertificateSigningRequests (certificates.k8s.io/v1), as upstream's
registry serves them (pkg/registry/certificates/certificates/strategy.go):

- create: the requester's identity (username, uid, groups, extra) is
  written into the spec from the authenticated user, whatever the client
  sent, and the status starts empty: nobody creates a pre-approved request;
- the object itself: only metadata changes (spec and status stay);
- /approval: only ``status.conditions`` changes (Approved, Denied);
- /status: everything of the status but Approved and Denied conditions,
  which are kept as they were (approval is /approval's business).

Condition timestamps the client leaves out are filled in.
"""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

from pinnace.api.resources import ResourceInfo

from .strategy import Strategy

Obj = dict[str, Any]


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _conditions(csr: Obj, *types: str) -> list[Obj]:
    return [c for c in (csr.get("status") or {}).get("conditions") or []
            if isinstance(c, dict) and c.get("type") in types]


def _fill_timestamps(new: Obj, old: Obj) -> None:
    """upstream's populateConditionTimestamps: lastUpdateTime now when
    missing; lastTransitionTime kept from an old condition of the same type
    and status, else now."""
    now = _now()
    old_conds = (old.get("status") or {}).get("conditions") or []
    for c in (new.get("status") or {}).get("conditions") or []:
        if not isinstance(c, dict):
            continue
        c.setdefault("lastUpdateTime", now)
        if not c.get("lastTransitionTime"):
            c["lastTransitionTime"] = next(
                (o["lastTransitionTime"] for o in old_conds if isinstance(o, dict)
                 and o.get("type") == c.get("type") and o.get("status") == c.get("status")
                 and o.get("lastTransitionTime")), now)


class CSRStrategy(Strategy):
    def prepare_create(self, info: ResourceInfo, obj: Obj) -> None:
        obj.pop("status", None)

    def set_requester(self, info: ResourceInfo, obj: Obj, user: Any) -> None:
        spec = obj.setdefault("spec", {})
        if not isinstance(spec, dict):
            return  # validation will say what is wrong
        for key in ("username", "uid", "groups", "extra"):
            spec.pop(key, None)
        if user is None:
            return
        spec["username"] = user.name
        if user.uid:
            spec["uid"] = user.uid
        if user.groups:
            spec["groups"] = list(user.groups)

    def prepare_update(self, info: ResourceInfo, new: Obj, old: Obj, subresource: str) -> None:
        new["spec"] = copy.deepcopy(old.get("spec"))
        if subresource == "approval":
            conditions = (new.get("status") or {}).get("conditions")
            status = copy.deepcopy(old.get("status") or {})
            if conditions:
                status["conditions"] = conditions
            else:
                status.pop("conditions", None)
            new["status"] = status
        elif subresource == "status":
            # Approval stays as it was: Approved and Denied conditions are kept
            # (upstream keeps the old conditions whole when a write changed them).
            approval = ("Approved", "Denied")
            if [(c.get("type"), c.get("status")) for c in _conditions(new, *approval)] != \
                    [(c.get("type"), c.get("status")) for c in _conditions(old, *approval)]:
                status = new.setdefault("status", {})
                status["conditions"] = copy.deepcopy(
                    (old.get("status") or {}).get("conditions") or [])
                if not status["conditions"]:
                    del status["conditions"]
        else:
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            else:
                new.pop("status", None)
        for key in ("spec", "status"):
            if not new.get(key):
                new.pop(key, None)
        _fill_timestamps(new, old)
