"""Cluster DNS: queries/s and p99 for Service names, against a minimal
dnspython responder answering one static record (the baseline, same run).

    python bench/dns_qps.py                  # 1,000 Services, 5 s per phase, 32 clients
    python bench/dns_qps.py --quick          # 100 Services, 1 s per phase (< 20 s)
    python bench/dns_qps.py -n 5000 -d 10 -c 64 --rounds 10

A `pinnace apiserver` (memory store) holds N ClusterIP Services in one
namespace. `run_dns` (what `pinnace dns` runs: its own client and informers
from the kubeconfig) serves them from a child process on 127.0.0.1, port 0;
a second one runs with its rendered-answer cache switched off, so every query
takes the whole path (parse, look up, render). The baseline is another child
process: a dnspython responder that parses each query and answers one static
A record. Every server child runs the same event loop (uvloop when present).

The load runs in this process: C clients, each with its own UDP socket,
each sending one query at a time (a prepared query with a fresh ID), names
in round robin, for D seconds per phase in R slices (the phases take turns,
so load drifting on a shared machine weighs on all alike), each slice after
a short warm-up; latency is send to reply. Every reply is checked (ID,
rcode, answer count); one missing after 1 s counts as lost. Phases: the
baseline; `bench-i.<ns>.svc.cluster.local` A with the cache warm and off;
and the search-path miss a pod of another namespace asks first
(`bench-i.<ns>.other.svc.cluster.local`, NXDOMAIN). Prints queries/s, p50,
p99, the CPU of the server process, and the ratio to the baseline.
Loopback only; no timing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import random
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from _common import (
    client_session,
    console,
    cpu_seconds,
    ensure_namespace,
    machine_note,
    own_cpu_seconds,
    percentile,
    print_table,
    running_server,
)
from _load import create_objects

NAMESPACE = "bench-dns"
NOERROR, NXDOMAIN = 0, 3
REPLY_TIMEOUT = 1.0


def service_manifest(namespace: str, name: str, index: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": namespace, "labels": {"bench": "dns"}},
            "spec": {"selector": {"app": name},
                     "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}


# ------------------------------------------------------------ server children

def _use_uvloop() -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass


def _dns_child(kubeconfig: str, cache: bool, ports: Any) -> None:
    """`run_dns` on 127.0.0.1:0; puts its port on `ports`."""
    _use_uvloop()
    import logging

    from pinnace.dns import ClusterDNS, run_dns

    logging.getLogger("pinnace.dns").setLevel(logging.ERROR)  # "no upstreams": none are needed here

    class NoCache(dict):  # type: ignore[type-arg]
        def __setitem__(self, key: Any, value: Any) -> None:
            pass

    def started(server: ClusterDNS) -> None:
        if not cache:
            server._cache = NoCache()
        ports.put(server.port)

    asyncio.run(run_dns(kubeconfig, ("127.0.0.1", 0), upstreams=[], on_started=started))


def _baseline_child(ports: Any) -> None:
    """The least a dnspython server does per query: parse it, answer one A record."""
    _use_uvloop()
    import dns.message
    import dns.rdataclass
    import dns.rdatatype
    import dns.rrset
    from dns.rdtypes.IN.A import A

    record = A(dns.rdataclass.IN, dns.rdatatype.A, "10.96.0.10")

    class Responder(asyncio.DatagramProtocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport

        def datagram_received(self, data: bytes, addr: Any) -> None:
            query = dns.message.from_wire(data)
            resp = dns.message.make_response(query)
            resp.answer.append(dns.rrset.from_rdata_list(query.question[0].name, 5, [record]))
            self.transport.sendto(resp.to_wire(), addr)

    async def main() -> None:
        transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            Responder, local_addr=("127.0.0.1", 0))
        ports.put(transport.get_extra_info("sockname")[1])
        await asyncio.Event().wait()

    asyncio.run(main())


# ------------------------------------------------------------------- the load

@dataclass
class Phase:
    name: str
    port: int
    pid: int
    names: list[str]
    rcode: int
    answers: bool  # expect at least one answer record


@dataclass
class Result:
    phase: Phase
    queries: int
    errors: int
    lost: int
    seconds: float
    latencies: list[float]  # seconds, sorted
    server_cores: float
    client_cores: float

    @property
    def qps(self) -> float:
        return self.queries / self.seconds if self.seconds else 0.0

    def p(self, q: float) -> float:
        return percentile(self.latencies, q) * 1000


def _query_wire(name: str) -> bytes:
    import dns.message

    return dns.message.make_query(name, "A").to_wire()


class _Client(asyncio.DatagramProtocol):
    """One UDP socket with at most one query in flight."""

    def __init__(self) -> None:
        self.transport: Any = None
        self.waiting: asyncio.Future[bytes] | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        w = self.waiting
        if w is not None and not w.done():
            w.set_result(data)


async def run_phase(phase: Phase, clients: int, seconds: float, warmup: float) -> Result:
    loop = asyncio.get_running_loop()
    wires = [_query_wire(n) for n in phase.names]
    latencies: list[float] = []
    counts = {"errors": 0, "lost": 0}
    measuring = False
    stop = False

    def timeout(fut: asyncio.Future[bytes]) -> None:
        if not fut.done():
            fut.set_exception(TimeoutError())

    async def client(start: int) -> None:
        transport, proto = await loop.create_datagram_endpoint(
            _Client, remote_addr=("127.0.0.1", phase.port))
        i = start
        try:
            while not stop:
                wire = wires[i % len(wires)]
                i += 1
                qid_bytes = struct.pack("!H", random.getrandbits(16))
                fut: asyncio.Future[bytes] = loop.create_future()
                proto.waiting = fut
                handle = loop.call_later(REPLY_TIMEOUT, timeout, fut)
                t0 = time.perf_counter()
                transport.sendto(qid_bytes + wire[2:])
                try:
                    data = await fut
                except TimeoutError:
                    if measuring:
                        counts["lost"] += 1
                    continue
                dt = time.perf_counter() - t0
                handle.cancel()
                if not measuring:
                    continue
                ok = (len(data) >= 12 and data[:2] == qid_bytes
                      and data[3] & 0x0F == phase.rcode
                      and (struct.unpack("!H", data[6:8])[0] > 0) == phase.answers)
                if ok:
                    latencies.append(dt)
                else:
                    counts["errors"] += 1
        finally:
            transport.close()

    tasks = [asyncio.create_task(client(k * 7919)) for k in range(clients)]
    await asyncio.sleep(warmup)
    measuring = True
    srv0, own0, t0 = cpu_seconds(phase.pid), own_cpu_seconds(), time.monotonic()
    await asyncio.sleep(seconds)
    measuring = False
    elapsed = time.monotonic() - t0
    srv1, own1 = cpu_seconds(phase.pid), own_cpu_seconds()
    stop = True
    await asyncio.gather(*tasks)
    latencies.sort()
    return Result(phase, len(latencies), counts["errors"], counts["lost"], elapsed, latencies,
                  (srv1 - srv0) / elapsed, (own1 - own0) / elapsed)


def merge(parts: list[Result]) -> Result:
    """One phase's rounds as one result."""
    seconds = sum(r.seconds for r in parts)
    return Result(parts[0].phase, sum(r.queries for r in parts), sum(r.errors for r in parts),
                  sum(r.lost for r in parts), seconds, sorted(x for r in parts for x in r.latencies),
                  sum(r.server_cores * r.seconds for r in parts) / seconds,
                  sum(r.client_cores * r.seconds for r in parts) / seconds)


# ---------------------------------------------------------------------- setup

def wait_answer(port: int, name: str, timeout: float = 60) -> None:
    """Poll until `name` resolves (the informers have caught up)."""
    import dns.message
    import dns.query

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            r = dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", timeout=1, port=port)
            if r.answer:
                return
        except Exception:  # not bound yet, or a lost datagram
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{name} never resolved on port {port}")


def start_child(ctx: Any, target: Callable[..., None], *args: Any) -> tuple[Any, int]:
    ports = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, ports), daemon=True)
    proc.start()
    return proc, int(ports.get(timeout=60))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1_000, help="Services")
    parser.add_argument("-c", type=int, default=32, help="concurrent clients")
    parser.add_argument("-d", type=float, default=5.0, help="seconds per phase")
    parser.add_argument("--rounds", type=int, default=5, help="phases take turns, d/rounds seconds each time")
    parser.add_argument("--quick", action="store_true", help="100 Services, 1 s per phase")
    args = parser.parse_args()
    if args.quick:
        args.n, args.d, args.rounds = 100, 1.0, 2
    warmup = min(0.2, args.d / args.rounds / 4)
    console.print(f"[bold]dns_qps[/]: {args.n:,} Services, {args.c} UDP clients, "
                  f"{args.d:g} s per phase ({machine_note()})")
    _use_uvloop()
    ctx = mp.get_context("spawn")
    children = []
    with running_server("memory") as server:
        try:
            async def prepare() -> None:
                async with client_session(server.data_dir) as s:
                    await ensure_namespace(s, server.url, NAMESPACE)
            asyncio.run(prepare())
            load = create_objects(server.url, server.data_dir, f"/api/v1/namespaces/{NAMESPACE}/services",
                                  NAMESPACE, service_manifest, args.n, 32, label="creating Services")
            if load.n_err:
                raise SystemExit(f"pre-load failed: {load.n_err} errors, first: {load.first_error}")
            base_proc, base_port = start_child(ctx, _baseline_child)
            dns_proc, dns_port = start_child(ctx, _dns_child, str(server.kubeconfig), True)
            nocache_proc, nocache_port = start_child(ctx, _dns_child, str(server.kubeconfig), False)
            children += [base_proc, dns_proc, nocache_proc]
            names = [f"bench-{i:07d}" for i in range(args.n)]  # as _load names them
            fqdn = [f"{n}.{NAMESPACE}.svc.cluster.local" for n in names]
            for port in (dns_port, nocache_port):
                wait_answer(port, fqdn[-1])
                wait_answer(port, fqdn[0])
            phases = [
                Phase("baseline: dnspython, one static record", base_port, base_proc.pid, fqdn,
                      NOERROR, True),
                Phase("ClusterDNS: Service A", dns_port, dns_proc.pid, fqdn, NOERROR, True),
                Phase("ClusterDNS: Service A, answer cache off", nocache_port, nocache_proc.pid, fqdn,
                      NOERROR, True),
                Phase("ClusterDNS: search-path miss (NXDOMAIN)", dns_port, dns_proc.pid,
                      [f"{n}.{NAMESPACE}.other.svc.cluster.local" for n in names], NXDOMAIN, False),
            ]
            # Phases take turns, a slice of each per round, so a machine whose
            # load drifts (other work on it) weighs on all of them alike.
            runs: list[list[Result]] = [[] for _ in phases]
            for k in range(args.rounds):
                for i, phase in enumerate(phases):
                    with console.status(f"round {k + 1}/{args.rounds}: {phase.name}"):
                        runs[i].append(asyncio.run(run_phase(phase, args.c, args.d / args.rounds, warmup)))
            results = [merge(r) for r in runs]
        finally:
            for proc in children:
                proc.terminate()
                proc.join(10)

    base = results[0]
    rows = [[r.phase.name, r.qps, r.p(0.5), r.p(0.99), r.errors, r.lost, r.server_cores,
             r.client_cores, f"{r.qps / base.qps:.2f}x" if base.qps else "-"] for r in results]
    print_table(f"UDP A queries, {args.c} clients on loopback",
                ["server", "queries/s", "p50 ms", "p99 ms", "errors", "lost", "server cores",
                 "client cores", "vs baseline"], rows)
    svc, nocache = results[1], results[2]
    console.print(f"ClusterDNS / baseline: {svc.qps / base.qps:.2f}x queries/s "
                  f"(cache off {nocache.qps / base.qps:.2f}x), p99 {svc.p(0.99):.2f} ms vs "
                  f"{base.p(0.99):.2f} ms")


if __name__ == "__main__":
    t0 = time.monotonic()
    main()
    console.print(f"[dim]total {time.monotonic() - t0:.1f} s[/]")
