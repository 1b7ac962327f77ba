"""DefaultTolerationSeconds: every new pod tolerates a not-ready or
unreachable node for a while (the API server's
--default-not-ready-toleration-seconds and
--default-unreachable-toleration-seconds, 300 s each) unless it says
otherwise, as upstream's plugin of the same name."""

from __future__ import annotations

from . import CREATE, Attributes

NOT_READY, UNREACHABLE = "node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"


class DefaultTolerationSeconds:
    server_writes = True
    resources = frozenset({("", "pods")})

    def __init__(self, not_ready_seconds: int = 300, unreachable_seconds: int = 300):
        self.seconds = {NOT_READY: not_ready_seconds, UNREACHABLE: unreachable_seconds}

    async def mutate(self, a: Attributes) -> None:
        if a.operation != CREATE or a.subresource or a.obj is None or \
                (a.info.group, a.info.resource) != ("", "pods"):
            return
        tolerations = a.obj.setdefault("spec", {}).setdefault("tolerations", [])
        for key in (NOT_READY, UNREACHABLE):
            if not any(t.get("key") == key and t.get("effect") in (None, "", "NoExecute")
                       for t in tolerations if isinstance(t, dict)):
                tolerations.append({"key": key, "operator": "Exists", "effect": "NoExecute",
                                    "tolerationSeconds": self.seconds[key]})
