"""Run controllers in-process against a test API server, on an event loop in
a background thread, so a test can drive the cluster with kubectl and
``wait_for`` synchronously while the controllers work.

    with Controllers(server, [JobController], options={...}) as h:
        ...
        h.call(lambda: h.get(CronJobController).queue.add("ns/name"))
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from pinnace.client import Client, InformerFactory, load_kubeconfig
from pinnace.controllers.base import Context, Controller
from tests.conftest import Server

T = TypeVar("T")
C = TypeVar("C", bound=Controller)


class Controllers:
    def __init__(self, server: Server, classes: list[type[Controller]],
                 options: dict[str, Any] | None = None,
                 prepare: Callable[[Controller], None] | None = None):
        self.server = server
        self.classes = classes
        self.options = options or {}
        self.prepare = prepare
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.running: list[Controller] = []
        self._tasks: list[asyncio.Task[Any]] = []
        self.client: Client | None = None
        self.informers: InformerFactory | None = None

    def __enter__(self) -> "Controllers":
        self.thread.start()
        self.run(self._start())
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.run(self._stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()

    def run(self, coro: Any, timeout: float = 60) -> Any:
        """Run a coroutine on the controllers' loop and return its result."""
        fut: concurrent.futures.Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(timeout)

    def call(self, fn: Callable[[], T]) -> T:
        """Run a plain function on the controllers' loop (queues are not thread-safe)."""
        async def wrapper() -> T:
            return fn()
        return self.run(wrapper())  # type: ignore[no-any-return]

    def get(self, cls: type[C]) -> C:
        for c in self.running:
            if isinstance(c, cls):
                return c
        raise KeyError(cls)

    async def _start(self) -> None:
        self.client = Client(load_kubeconfig(self.server.kubeconfig))
        self.informers = InformerFactory(self.client)
        ctx = Context(self.client, self.informers, dict(self.options))
        self.running = [cls(ctx) for cls in self.classes]
        for c in self.running:
            if self.prepare is not None:
                self.prepare(c)
            c.setup()
        self.informers.start()
        await self.informers.wait_synced(30)
        self._tasks = [asyncio.create_task(c.run()) for c in self.running]

    async def _stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except BaseException:  # noqa: BLE001 - shutting down
                pass
        for c in self.running:
            stop = getattr(c, "stop", None)
            if stop is not None:
                await stop()
        if self.informers is not None:
            await self.informers.stop()
        if self.client is not None:
            await self.client.close()


def open_crd(group: str, plural: str, kind: str) -> dict[str, Any]:
    """A namespaced, schemaless (preserve-unknown-fields) CRD for tests."""
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.{group}"},
            "spec": {"group": group, "scope": "Namespaced",
                     "names": {"plural": plural, "singular": plural.rstrip("s"), "kind": kind},
                     "versions": [{"name": "v1", "served": True, "storage": True, "schema": {
                         "openAPIV3Schema": {"type": "object",
                                             "x-kubernetes-preserve-unknown-fields": True}}}]}}
