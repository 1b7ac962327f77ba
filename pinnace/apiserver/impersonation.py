"""Impersonation: ``kubectl --as alice --as-group devs`` sends Impersonate-*
headers, and the request then runs as that user, once the real user is
authorized to ``impersonate`` each part of the identity it asks for, as
upstream's impersonation filter checks it: users, groups, service accounts
(in their namespace), uids and extras each by name.
"""

from __future__ import annotations

from aiohttp import web

from . import status
from .authn import User
from .authz import Authorizer, forbidden
from .rbac import SA_PREFIX
from .requestinfo import RequestInfo

USER = "Impersonate-User"
GROUP = "Impersonate-Group"
UID = "Impersonate-Uid"
EXTRA_PREFIX = "Impersonate-Extra-"
AUTH_GROUP = "authentication.k8s.io"


def _impersonate(resource: str, name: str, namespace: str = "", group: str = "",
                 subresource: str = "") -> RequestInfo:
    return RequestInfo("impersonate", "", True, group, "", namespace, resource, subresource,
                       name)


async def impersonated(request: web.Request, user: User, authz: Authorizer) -> User:
    """The identity the request runs as: ``user`` itself, or the one it
    impersonates, after checking it may."""
    headers = request.headers
    name = headers.get(USER)
    groups = headers.getall(GROUP, [])
    uid = headers.get(UID)
    extras = [(k[len(EXTRA_PREFIX):].lower(), v) for k, v in headers.items()
              if k.lower().startswith(EXTRA_PREFIX.lower())]
    if name is None:
        if groups or uid is not None or extras:
            raise status.bad_request("requested impersonation of groups, uid or extras "
                                     "without impersonating a user")
        return user

    checks: list[RequestInfo] = []
    sa_groups: list[str] = []
    if name.startswith(SA_PREFIX) and name.count(":") == 3:
        ns, sa = name[len(SA_PREFIX):].split(":", 1)
        checks.append(_impersonate("serviceaccounts", sa, ns))
        sa_groups = ["system:serviceaccounts", f"system:serviceaccounts:{ns}"]
    else:
        checks.append(_impersonate("users", name))
    checks.extend(_impersonate("groups", g) for g in groups)
    checks.extend(_impersonate("userextras", v, group=AUTH_GROUP, subresource=k)
                  for k, v in extras)
    if uid is not None:
        checks.append(_impersonate("uids", uid, group=AUTH_GROUP))
    for info in checks:
        ok, _ = await authz.decide(user, info)
        if not ok:
            raise forbidden(user, info)

    all_groups = list(groups) if groups else sa_groups
    if name == "system:anonymous":
        if "system:unauthenticated" not in all_groups:
            all_groups.append("system:unauthenticated")
    elif "system:authenticated" not in all_groups:
        all_groups.append("system:authenticated")
    return User(name, uid or "", tuple(all_groups))
