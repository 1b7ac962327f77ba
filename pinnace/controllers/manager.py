"""The controller manager: every controller in one process, sharing one
client and one set of informers, active only while this process holds the
kube-controller-manager Lease (so several servers can run one each)."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Callable
from typing import Any

from pinnace.client import Client, InformerFactory, LeaderElector, auto_config
from pinnace.runtime import tune_gc

from . import (
    certificates,
    clusterroleaggregation,
    controlplanenode,
    cronjob,
    daemonset,
    deployment,
    disruption,
    endpoints,
    endpointslice,
    ephemeral,
    garbagecollector,
    horizontal,
    job,
    namespace,
    nodeipam,
    nodelifecycle,
    persistentvolume,
    podgc,
    replicaset,
    resourcequota,
    serviceaccount,
    serviceaccounttoken,
    servicelb,
    statefulset,
    ttlafterfinished,
    volumeprotection,
)
from .base import Context, Controller

log = logging.getLogger("pinnace.controllers.manager")

# name -> controller class; `--controllers` picks from these ("*" = all).
CONTROLLERS: dict[str, type[Controller]] = {}
for _module in (replicaset, deployment, statefulset, daemonset, job, ttlafterfinished, cronjob,
                disruption, endpoints, endpointslice, garbagecollector, podgc, namespace,
                nodelifecycle, nodeipam, resourcequota, serviceaccount, serviceaccounttoken,
                servicelb, persistentvolume, volumeprotection, ephemeral, certificates,
                horizontal, clusterroleaggregation, controlplanenode):
    CONTROLLERS.update(_module.CONTROLLERS)


def build(ctx: Context, names: list[str]) -> list[Controller]:
    chosen = list(CONTROLLERS) if "*" in names else names
    unknown = [n for n in chosen if n not in CONTROLLERS]
    if unknown:
        raise ValueError(f"unknown controllers: {', '.join(unknown)} "
                         f"(known: {', '.join(CONTROLLERS)})")
    return [CONTROLLERS[n](ctx) for n in chosen]


async def run_controllers(ctx: Context, running: list[Controller],
                          on_synced: Callable[[], None] | None = None) -> None:
    """Start the shared informers, wait for their first lists, then run
    every controller until cancelled."""
    ctx.informers.start()
    await ctx.informers.wait_synced()
    if on_synced is not None:
        on_synced()
    log.info("controllers running: %s", ", ".join(c.name for c in running))
    await asyncio.gather(*(c.run() for c in running))


async def run_controller_manager(kubeconfig: str | None, controllers: list[str] | None = None,
                                 leader_elect: bool = True,
                                 options: dict[str, Any] | None = None) -> None:
    config = auto_config(kubeconfig)
    config.user_agent = "kube-controller-manager/pinnace"
    client = Client(config, max_connections=200)
    informers = InformerFactory(client)
    ctx = Context(client, informers, options or {})
    running = build(ctx, controllers or ["*"])
    for c in running:
        c.setup()

    async def lead() -> None:
        await run_controllers(ctx, running, on_synced=tune_gc)

    try:
        if leader_elect:
            identity = f"{socket.gethostname()}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
            elector = LeaderElector(client, "kube-controller-manager", identity)
            await elector.run(lead)
        else:
            await lead()
    finally:
        await informers.stop()
        await client.close()
