"""Leader election on a coordination.k8s.io Lease, as client-go does it.

Candidates try to take the Lease when it is free or its holder has not
renewed it for leaseDurationSeconds (measured on the candidate's own clock
from when it last saw the Lease change, so clocks need not agree). The
leader renews every retry period; if it cannot renew within the renew
deadline it steps down and ``on_stopped`` runs (components then exit, so a
restart rejoins cleanly).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from .rest import ApiError, Client

log = logging.getLogger("pinnace.client.leaderelection")


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(self, client: Client, name: str, identity: str, *,
                 namespace: str = "kube-system", lease_duration: float = 15,
                 renew_deadline: float = 10, retry_period: float = 2):
        self.leases = client.resource("coordination.k8s.io/v1", "leases")
        self.name = name
        self.identity = identity
        self.namespace = namespace
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.is_leader = False
        self._observed_rv = ""
        self._observed_at = 0.0

    async def _try(self) -> bool:
        """One attempt to acquire or renew; True while we hold the Lease."""
        try:
            lease = await self.leases.get(self.name, self.namespace)
        except ApiError as e:
            if not e.not_found:
                raise
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": self._spec(0, _now())}
            try:
                await self.leases.create(body)
                return True
            except ApiError as e2:
                if e2.conflict:
                    return False
                raise
        spec = lease.get("spec") or {}
        rv = lease["metadata"]["resourceVersion"]
        if rv != self._observed_rv:
            self._observed_rv, self._observed_at = rv, time.monotonic()
        holder = spec.get("holderIdentity") or ""
        duration = spec.get("leaseDurationSeconds") or self.lease_duration
        if holder and holder != self.identity and \
                time.monotonic() < self._observed_at + duration:
            return False
        transitions = spec.get("leaseTransitions", 0) + (0 if holder == self.identity else 1)
        acquire = spec.get("acquireTime") if holder == self.identity else _now()
        lease["spec"] = self._spec(transitions, acquire or _now())
        try:
            updated = await self.leases.replace(lease)
        except ApiError as e:
            if e.conflict:
                return False
            raise
        self._observed_rv, self._observed_at = updated["metadata"]["resourceVersion"], \
            time.monotonic()
        return True

    def _spec(self, transitions: int, acquire: str) -> dict[str, object]:
        return {"holderIdentity": self.identity,
                "leaseDurationSeconds": int(self.lease_duration),
                "acquireTime": acquire, "renewTime": _now(),
                "leaseTransitions": transitions}

    async def run(self, on_started: Callable[[], Coroutine[Any, Any, None]],
                  on_stopped: Callable[[], None] | None = None) -> None:
        """Wait to lead, run ``on_started`` while leading, return when leadership is lost."""
        while not self.is_leader:
            try:
                self.is_leader = await self._try()
            except (ApiError, OSError, asyncio.TimeoutError) as e:
                log.info("leader election %s: %s", self.name, e)
            if not self.is_leader:
                await asyncio.sleep(self.retry_period)
        log.info("%s became leader of %s", self.identity, self.name)
        work: asyncio.Task[None] = asyncio.create_task(on_started())
        last_renew = time.monotonic()
        try:
            while not work.done():
                await asyncio.sleep(self.retry_period)
                try:
                    if await self._try():
                        last_renew = time.monotonic()
                except (ApiError, OSError, asyncio.TimeoutError) as e:
                    log.warning("renewing lease %s failed: %s", self.name, e)
                if time.monotonic() - last_renew > self.renew_deadline:
                    log.error("%s lost the lease %s", self.identity, self.name)
                    break
        finally:
            self.is_leader = False
            work.cancel()
            if on_stopped is not None:
                on_stopped()
