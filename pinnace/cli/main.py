"""The `pinnace` command. Wiring only: each subcommand builds a config and
hands it to the component that does the work."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from pinnace.apiserver.config import Config
from pinnace.runtime import small_tls_buffers, tune_malloc

# Where `pinnace server`'s cluster DNS answers; pods reach it as kube-dns on port 53.
DNS_PORT = 10053


def default_data_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/pinnace")
    base = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return Path(base) / "pinnace"


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    try:
        return host.strip("[]") or "0.0.0.0", int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port in {value!r}") from None


def _port(value: str) -> int:
    """A port to listen on that others are told of (the kubelet's: its node
    advertises it), so 0 (any free port) will not do, as the kubelet refuses it."""
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {value!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} must be between 1 and 65535, inclusive")
    return port


def _server_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", type=Path, default=None,
                   help="state, certificates and kubeconfig (default: /var/lib/pinnace for root, "
                        "else ~/.local/share/pinnace)")
    p.add_argument("--listen", type=_listen, default=("0.0.0.0", 6443), metavar="HOST:PORT",
                   help="address to serve the API on (default 0.0.0.0:6443)")
    p.add_argument("--datastore", default="sqlite",
                   help="sqlite (default), sqlite:///path.db, memory, or etcd://h1:2379,h2:2379")
    p.add_argument("--service-cidr", default="10.96.0.0/12",
                   help="range for service cluster IPs (default 10.96.0.0/12)")
    p.add_argument("--advertise-address", default="",
                   help="address other nodes and pods reach the API server on")
    p.add_argument("--tls-san", action="append", default=[],
                   help="extra name or IP for the serving certificate (repeatable)")
    p.add_argument("--default-not-ready-toleration-seconds", type=int, default=300,
                   help="tolerationSeconds of the not-ready toleration added to every pod")
    p.add_argument("--default-unreachable-toleration-seconds", type=int, default=300,
                   help="tolerationSeconds of the unreachable toleration added to every pod")
    p.add_argument("--max-object-size", type=int, default=1572864, metavar="BYTES",
                   help="the largest object stored, in bytes (default 1572864: 1.5 MiB, as etcd's "
                        "request limit bounds Kubernetes' objects)")
    p.add_argument("--anonymous-auth", action="store_true",
                   help="treat requests without credentials as user system:anonymous (group "
                        "system:unauthenticated), authorized by RBAC; by default they get 401 "
                        "except on health checks, /version and kube-public/cluster-info")
    p.add_argument("--watch-cache-bytes", type=int, default=64 * 1024 * 1024, metavar="BYTES",
                   help="how many bytes of recent events each resource's watch cache keeps "
                        "(besides at most 10,000 events; default 67108864: 64 MiB); a watch from "
                        "an older revision reads the datastore's history instead")
    p.add_argument("--workers", type=int, default=1,
                   help="API server processes sharing the port and the datastore, to use "
                        "more cores (default 1; not with --datastore memory)")
    p.add_argument("--encryption-provider-config", default="", metavar="FILE",
                   help="an EncryptionConfiguration (apiserver.config.k8s.io/v1) saying which "
                        "resources are encrypted at rest and with which keys (default: "
                        "DATA/encryption-config.yaml, written on first start: Secrets with "
                        "aescbc; nothing with --datastore memory)")
    p.add_argument("--admission-control-config-file", default="", metavar="FILE",
                   help="an AdmissionConfiguration (apiserver.config.k8s.io/v1): PodSecurity's "
                        "levels for namespaces without pod-security labels, and the users, "
                        "namespaces and runtime classes exempt from it")
    p.add_argument("--audit-policy-file", default="", metavar="FILE",
                   help="the audit.k8s.io/v1 Policy saying which requests are logged at which "
                        "level (without it, no audit events)")
    p.add_argument("--audit-log-path", default="", metavar="PATH",
                   help="write audit events to this file as JSON lines ('-': standard out)")
    p.add_argument("--audit-log-maxsize", type=int, default=100, metavar="MB",
                   help="rotate the audit log past this size in megabytes (default 100; 0: never)")
    p.add_argument("--audit-log-maxbackup", type=int, default=100, metavar="N",
                   help="rotated audit logs to keep (default 100; 0: all)")
    p.add_argument("--audit-log-maxage", type=int, default=366, metavar="DAYS",
                   help="days to keep rotated audit logs, by the time in their names "
                        "(default 366; 0: forever)")


def _controller_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--node-monitor-grace-period", type=float, default=40,
                   help="seconds without a node heartbeat before it is NotReady (default 40)")
    p.add_argument("--node-monitor-period", type=float, default=5,
                   help="how often node health is checked, in seconds (default 5)")
    p.add_argument("--cluster-cidr", default="10.244.0.0/16",
                   help="pod network range nodes get their podCIDR from")
    p.add_argument("--local-path-root", default=None,
                   help="where the local-path provisioner puts volumes (default: /var/lib/pinnace; "
                        "pinnace server passes its data dir)")
    p.add_argument("--service-account-private-key-file", default="",
                   help="key that signs legacy service-account token Secrets (pinnace server "
                        "passes the API server's, DIR/tls/service-account.key)")
    p.add_argument("--cluster-signing-cert-file", default="",
                   help="CA certificate that signs approved CertificateSigningRequests "
                        "(pinnace server passes DIR/tls/ca.crt)")
    p.add_argument("--cluster-signing-key-file", default="",
                   help="key of that CA (pinnace server passes DIR/tls/ca.key)")


def _agent_args(p: argparse.ArgumentParser, prefix: str = "") -> None:
    p.add_argument(f"--{prefix}node-name", default="", help="the Node's name (default: hostname)")
    p.add_argument(f"--{prefix}runtime", default="", help="OCI runtime: crun or runc "
                   "(default: crun where it works, else runc)")
    p.add_argument("--cluster-dns", action="append", default=[],
                   help="DNS server address for pods (repeatable; default: kube-dns, the tenth "
                        "address of the service range, 10.96.0.10)")
    p.add_argument("--cluster-domain", default="cluster.local")
    p.add_argument("--insecure-registry", action="append", default=[], metavar="HOST:PORT",
                   help="registry to pull from over plain http (repeatable)")
    p.add_argument("--kubelet-port", type=_port, default=10250,
                   help="port of the kubelet API (logs, exec) (default 10250)")
    _proxy_mode_arg(p, "--proxy-mode")
    if not prefix:
        p.add_argument("--data-dir", type=Path, default=None,
                       help="where containers, images and logs live (default as pinnace server)")


def _proxy_mode_arg(p: argparse.ArgumentParser, flag: str) -> None:
    p.add_argument(flag, choices=["auto", "nftables", "iptables"], default="auto",
                   help="how the service proxy writes its rules (default auto: nftables where "
                        "the kernel and the nft command have it, else iptables)")


def _agent_cli_args(args: argparse.Namespace, prefix: str = "",
                    cluster_dns: list[str] | None = None) -> list[str]:
    """`pinnace agent` flags from a server's or agent's parsed args."""
    out = []
    name = getattr(args, f"{prefix}node_name".replace("-", "_"), "")
    runtime = getattr(args, f"{prefix}runtime".replace("-", "_"), "")
    if name:
        out += ["--node-name", name]
    if runtime:
        out += ["--runtime", runtime]
    for d in cluster_dns or args.cluster_dns:
        out += ["--cluster-dns", d]
    for r in args.insecure_registry:
        out += ["--insecure-registry", r]
    return out + ["--cluster-domain", args.cluster_domain, "--kubelet-port", str(args.kubelet_port),
                  "--proxy-mode", args.proxy_mode]


def _controller_options(args: argparse.Namespace) -> dict[str, Any]:
    return {"node_monitor_grace_period": args.node_monitor_grace_period,
            "node_monitor_period": args.node_monitor_period,
            "cluster_cidr": args.cluster_cidr,
            "local_path_root": args.local_path_root,
            "service_account_private_key_file": args.service_account_private_key_file,
            "cluster_signing_cert_file": args.cluster_signing_cert_file,
            "cluster_signing_key_file": args.cluster_signing_key_file,
            "control_plane_node": getattr(args, "control_plane_node", "")}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pinnace", description="A small Kubernetes.")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more logging (-v info, -vv debug)")
    sub = parser.add_subparsers(dest="command", required=True)
    server = sub.add_parser("server", help="run a whole control plane (and, as root, this machine as a node)")
    _server_args(server)
    server.add_argument("--disable-agent", action="store_true",
                        help="do not run a node agent (as root, one runs by default)")
    server.add_argument("--disable-dns", action="store_true",
                        help="do not run the cluster DNS (kube-dns at the service range's "
                             "tenth address)")
    server.add_argument("--separate-components", action="store_true",
                        help="run the controller manager, scheduler and DNS as a process each "
                             "(a core each for big clusters, ~75 MB more memory) instead of in "
                             "the server's own process")
    server.add_argument("--cluster-dns-port", type=int, default=DNS_PORT,
                        help=f"port the cluster DNS listens on, at the advertised address "
                             f"(default {DNS_PORT}; 0: any free port)")
    _agent_args(server, prefix="agent-")
    _controller_args(server)
    apiserver = sub.add_parser("apiserver", help="run only the API server")
    _server_args(apiserver)
    # Set by `--workers N` on the worker processes it starts.
    apiserver.add_argument("--worker-index", type=int, default=None, help=argparse.SUPPRESS)
    apiserver.add_argument("--socket-fd", type=int, default=-1, help=argparse.SUPPRESS)
    cm = sub.add_parser("controller-manager", help="run the controllers")
    cm.add_argument("--kubeconfig", default=None, help="how to reach the API server "
                    "(default: $KUBECONFIG, ~/.kube/config, or in-cluster)")
    cm.add_argument("--controllers", default="*",
                    help="comma-separated controllers to run (default: all)")
    cm.add_argument("--leader-elect", default="true", choices=["true", "false"])
    _controller_args(cm)
    cm.add_argument("--control-plane-node", default="",
                    help="label this node node-role.kubernetes.io/control-plane once it registers "
                         "(pinnace server passes its own agent's node)")
    sim = sub.add_parser("sim", help="simulated nodes (like kwok): heartbeats, pods Running")
    sim.add_argument("--kubeconfig", default=None, help="how to reach the API server")
    sim.add_argument("--nodes", type=int, default=1, help="how many nodes (default 1)")
    sim.add_argument("--prefix", default="sim-node-", help="node name prefix")
    sim.add_argument("--first-index", type=int, default=0, help="number of the first node")
    sim.add_argument("--cpu", default="32")
    sim.add_argument("--memory", default="256Gi")
    sim.add_argument("--pods", default="110")
    sim.add_argument("--pod-startup-delay", type=float, default=0.0,
                     help="seconds from bound to Running")
    sim.add_argument("--stages", type=Path, default=None, metavar="FILE",
                     help="what simulated pods do over time: start and readiness delays, exits, "
                          "crash loops (format: docs/simulated-nodes.md)")
    agent = sub.add_parser("agent", help="run a node agent: this machine runs pods (as root)")
    agent.add_argument("--kubeconfig", default=None, help="how to reach the API server")
    agent.add_argument("--reset", action="store_true",
                       help="stop every container this agent started, remove its pod network "
                            "and mounts (images stay), then exit")
    agent.add_argument("--server", default="", metavar="URL",
                       help="join the cluster of this API server (https://HOST:PORT), with "
                            "--token or --token-file; once joined, DATA/agent/kubeconfig is used")
    agent.add_argument("--token", default="", help="join token (K10...::ID.SECRET, from the "
                       "server's DATA/node-token or `pinnace token create`)")
    agent.add_argument("--token-file", type=Path, default=None, help="file holding the join token")
    agent.add_argument("--node-ip", default="", metavar="IP",
                       help="the node's InternalIP to report (default: the source address of "
                            "the default route)")
    # Join (write DATA/agent/kubeconfig) and exit: for tests, and to join as non-root.
    agent.add_argument("--join-only", action="store_true", help=argparse.SUPPRESS)
    _agent_args(agent)
    from .image import add_parser as add_image_parser
    from .secrets import add_parser as add_secrets_parser
    from .token import add_parser as add_token_parser

    add_image_parser(sub)
    add_token_parser(sub)
    add_secrets_parser(sub)
    dns = sub.add_parser("dns", help="run the cluster DNS (pinnace server runs one)")
    dns.add_argument("--kubeconfig", default=None, help="how to reach the API server")
    dns.add_argument("--listen", type=_listen, default=("0.0.0.0", DNS_PORT), metavar="HOST:PORT",
                     help=f"where to answer (default 0.0.0.0:{DNS_PORT}; port 0: any free port)")
    dns.add_argument("--advertise-address", default="",
                     help="the address the kube-dns service sends queries to (default: the "
                          "--listen address, or this host's when that is 0.0.0.0)")
    dns.add_argument("--service-cidr", default="10.96.0.0/12",
                     help="the service range: kube-dns gets its tenth address")
    dns.add_argument("--cluster-cidr", default="10.244.0.0/16", help="the pod range")
    dns.add_argument("--cluster-domain", default="cluster.local")
    dns.add_argument("--allow", action="append", default=[], metavar="CIDR",
                     help="more client networks to answer (pods, nodes and loopback always are)")
    proxy = sub.add_parser("proxy", help="run the service proxy alone (the agent runs one)")
    proxy.add_argument("--kubeconfig", default=None, help="how to reach the API server")
    proxy.add_argument("--node-name", default="", help="this node's name (default: hostname); "
                       "externalTrafficPolicy Local uses its endpoints")
    proxy.add_argument("--cluster-cidr", default="10.244.0.0/16",
                       help="the pod range: traffic from elsewhere is masqueraded")
    proxy.add_argument("--data-dir", type=Path, default=None,
                       help="where the proxy keeps what it changed (default as pinnace agent)")
    _proxy_mode_arg(proxy, "--mode")
    proxy.add_argument("--cleanup", action="store_true",
                       help="remove every rule and address the proxy made, restore the "
                            "settings it changed, and exit")
    sched = sub.add_parser("scheduler", help="run the scheduler")
    sched.add_argument("--kubeconfig", default=None, help="how to reach the API server")
    sched.add_argument("--leader-elect", default="true", choices=["true", "false"])
    return parser


def _config(args: argparse.Namespace) -> Config:
    if args.workers < 1:
        raise SystemExit("pinnace: --workers must be at least 1")
    if args.workers > 1 and args.datastore.lower().startswith("memory"):
        raise SystemExit("pinnace: --workers > 1 needs a datastore the workers can share "
                         "(sqlite or etcd), not memory")
    if args.audit_policy_file:  # refuse a bad policy before anything starts
        from pinnace.apiserver.audit.policy import PolicyError, load_policy

        try:
            load_policy(args.audit_policy_file)
        except PolicyError as e:
            raise SystemExit(f"pinnace: loading audit policy file: {e}") from None
    if args.admission_control_config_file:  # the same for the admission configuration
        from pinnace.apiserver.admission.config import AdmissionConfigError, load

        try:
            load(args.admission_control_config_file)
        except AdmissionConfigError as e:
            raise SystemExit(f"pinnace: loading admission config file: {e}") from None
    for flag in ("maxage", "maxbackup", "maxsize"):
        if getattr(args, f"audit_log_{flag}") < 0:
            raise SystemExit(f"pinnace: --audit-log-{flag} {getattr(args, f'audit_log_{flag}')} "
                             "can't be a negative number")
    return Config(data_dir=(args.data_dir or default_data_dir()).resolve(),
                  host=args.listen[0], port=args.listen[1], datastore=args.datastore,
                  service_cidr=args.service_cidr, advertise_address=args.advertise_address,
                  # Nodes reach the server at its advertised address: its certificate says so.
                  extra_sans=list(dict.fromkeys(
                      [*args.tls_san, *([args.advertise_address] if args.advertise_address
                                        else [])])),
                  default_not_ready_toleration_seconds=args.default_not_ready_toleration_seconds,
                  default_unreachable_toleration_seconds=args.default_unreachable_toleration_seconds,
                  workers=args.workers, worker_index=getattr(args, "worker_index", None) or 0,
                  socket_fd=getattr(args, "socket_fd", -1),
                  max_object_bytes=args.max_object_size, anonymous_auth=args.anonymous_auth,
                  encryption_provider_config=str(Path(args.encryption_provider_config).resolve())
                  if args.encryption_provider_config else "",
                  watch_cache_bytes=args.watch_cache_bytes,
                  audit_policy_file=_abspath(args.audit_policy_file),
                  admission_control_config_file=_abspath(args.admission_control_config_file),
                  audit_log_path=(args.audit_log_path if args.audit_log_path == "-"
                                  else _abspath(args.audit_log_path)),
                  audit_log_maxsize=args.audit_log_maxsize,
                  audit_log_maxbackup=args.audit_log_maxbackup,
                  audit_log_maxage=args.audit_log_maxage)


def _check_encryption(config: Config) -> str:
    """Read the encryption config now (writing the data dir's default on a
    first start, once for every worker): a problem is one line, not a
    traceback from a child process. "" when all is well."""
    from pinnace.storage.encryptionconfig import ConfigError, for_server

    try:
        for_server(config.encryption_provider_config, config.data_dir, config.datastore)
    except ConfigError as e:
        flag = " --encryption-provider-config:" if config.encryption_provider_config else ""
        return f"pinnace:{flag} {e}"
    except OSError as e:
        return f"pinnace: cannot write {config.data_dir}/encryption-config.yaml: {e}"
    return ""


def _abspath(path: str) -> str:
    return str(Path(path).absolute()) if path else ""


def apiserver_args(config: Config) -> list[str]:
    """`pinnace apiserver` flags for ``config``, but for --listen and --workers."""
    out = ["--data-dir", str(config.data_dir), "--datastore", config.datastore,
           "--service-cidr", config.service_cidr,
           "--default-not-ready-toleration-seconds",
           str(config.default_not_ready_toleration_seconds),
           "--default-unreachable-toleration-seconds",
           str(config.default_unreachable_toleration_seconds),
           "--max-object-size", str(config.max_object_bytes),
           "--watch-cache-bytes", str(config.watch_cache_bytes)]
    if config.anonymous_auth:
        out.append("--anonymous-auth")
    if config.encryption_provider_config:
        out += ["--encryption-provider-config", config.encryption_provider_config]
    if config.audit_policy_file:
        out += ["--audit-policy-file", config.audit_policy_file]
    if config.admission_control_config_file:
        out += ["--admission-control-config-file", config.admission_control_config_file]
    if config.audit_log_path:
        out += ["--audit-log-path", config.audit_log_path,
                "--audit-log-maxsize", str(config.audit_log_maxsize),
                "--audit-log-maxbackup", str(config.audit_log_maxbackup),
                "--audit-log-maxage", str(config.audit_log_maxage)]
    if config.advertise_address:
        out += ["--advertise-address", config.advertise_address]
    for san in config.extra_sans:
        out += ["--tls-san", san]
    return out


async def run_apiserver(config: Config) -> None:
    from pinnace.apiserver.app import APIServer

    server = APIServer(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    if config.owner:
        print(f"pinnace: API server on https://{config.host}:{server.port}", flush=True)
        print(f"pinnace: to join a node: {server.join_hint()}", flush=True)
        print(f"pinnace: kubeconfig written to {server.kubeconfig_path}", flush=True)
        print(f"pinnace: try  KUBECONFIG={server.kubeconfig_path} kubectl get ns", flush=True)
    else:
        print(f"pinnace: API server worker {config.worker_index} on "
              f"https://{config.host}:{server.port}", flush=True)
    if config.workers > 1:
        from .apiworkers import READY

        print(READY, flush=True)  # for the parent, which relays worker 0's lines
    try:
        await stop.wait()
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    tune_malloc()
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Not for the agent and the proxy: pyroute2 runs its netlink sockets on
    # asyncio loops of its own, which uvloop cannot open (AF_NETLINK datagram
    # endpoints).
    if args.command not in ("agent", "proxy"):
        try:
            import uvloop

            uvloop.install()
        except ImportError:  # pragma: no cover
            pass
    else:
        small_tls_buffers()
    verbosity = ["-" + "v" * args.verbose] if args.verbose else []
    if args.command == "apiserver":
        config = _config(args)
        problem = _check_encryption(config)
        if problem:
            print(problem, file=sys.stderr)
            return 2
        try:
            if config.workers > 1 and args.worker_index is None:
                from .apiworkers import run_workers

                return asyncio.run(run_workers(config, apiserver_args(config), verbosity))
            asyncio.run(run_apiserver(config))
        except OSError as e:
            print(f"pinnace: {e}", file=sys.stderr)
            return 1
        return 0
    if args.command == "server":
        from .supervisor import exec_lean

        config = _config(args)
        problem = _check_encryption(config)
        if problem:
            print(problem, file=sys.stderr)
            return 2
        host = f"[{config.host}]" if ":" in config.host else config.host
        api_args = [*apiserver_args(config), "--listen", f"{host}:{config.port}",
                    "--workers", str(config.workers)]
        cm_args = ["--node-monitor-grace-period", str(args.node_monitor_grace_period),
                   "--node-monitor-period", str(args.node_monitor_period),
                   "--cluster-cidr", args.cluster_cidr,
                   "--local-path-root", args.local_path_root or str(config.data_dir),
                   "--service-account-private-key-file",
                   args.service_account_private_key_file or
                   str(config.data_dir / "tls" / "service-account.key"),
                   "--cluster-signing-cert-file",
                   args.cluster_signing_cert_file or str(config.data_dir / "tls" / "ca.crt"),
                   "--cluster-signing-key-file",
                   args.cluster_signing_key_file or str(config.data_dir / "tls" / "ca.key")]
        components = list(SERVER_COMPONENTS)
        extra = {"controller-manager": cm_args}
        from pinnace.dns.service import cluster_dns_ip

        cluster_dns = args.cluster_dns or [cluster_dns_ip(config.service_cidr)]
        if not args.disable_dns:
            from pinnace.hostaddr import advertised_address

            address = config.advertise_address or advertised_address(config.host)
            components.append("dns")
            extra["dns"] = ["--listen", f"{address}:{args.cluster_dns_port}",
                            "--advertise-address", address,
                            "--service-cidr", config.service_cidr,
                            "--cluster-cidr", args.cluster_cidr,
                            "--cluster-domain", args.cluster_domain]
        if args.disable_agent:
            pass
        elif os.geteuid() != 0:
            print("pinnace: not root, so no node agent here: add nodes with `pinnace sim` or "
                  "run `pinnace agent` as root", flush=True)
        else:
            components.append("agent")
            extra["agent"] = ["--data-dir", str(config.data_dir),
                              *_agent_cli_args(args, prefix="agent-", cluster_dns=cluster_dns)]
            cm_args += ["--control-plane-node",
                        (args.agent_node_name or socket.gethostname()).lower()]
        shared = [] if args.separate_components else [c for c in components if c in SHAREABLE]
        exec_lean(config.data_dir, api_args, [c for c in components if c not in shared], shared,
                  verbosity, extra, level)
    if args.command in SHAREABLE:
        return _run_until_signal(_component(args))
    if args.command == "sim":
        from pinnace.kubelet.sim import run_sim
        from pinnace.kubelet.simstages import Stages, load_stages

        try:
            stages = load_stages(args.stages) if args.stages else Stages()
        except ValueError as e:
            print(f"pinnace sim: {e}", file=sys.stderr)
            return 2
        return _run_until_signal(run_sim(args.kubeconfig, args.nodes, args.prefix, args.cpu,
                                         args.memory, args.pods,
                                         pod_startup_delay=args.pod_startup_delay,
                                         first_index=args.first_index, stages=stages))
    if args.command == "image":
        from .image import run as run_image

        return run_image(args)
    if args.command == "token":
        from .token import run as run_token

        return run_token(args)
    if args.command == "secrets":
        from .secrets import run as run_secrets

        return run_secrets(args)
    if args.command == "agent":
        from pinnace.kubelet.agent import run_agent

        data_dir = (args.data_dir or default_data_dir()).resolve()
        if args.join_only:
            joined = _agent_kubeconfig(args, data_dir)
            return 0 if joined else 1
        if os.geteuid() != 0:
            print("pinnace agent: must run as root (it creates namespaces, mounts and cgroups)",
                  file=sys.stderr)
            return 1
        if args.reset:
            from pinnace.kubelet.agent import reset_node

            reset_node(data_dir)
            return 0
        from pinnace.kubelet.agent import NodeConflict, claim_network_namespace

        try:
            # Held until the process ends (taken again after the exec below,
            # which closes it).
            claim_network_namespace(data_dir)
        except NodeConflict as e:
            print(f"pinnace agent: {e}", file=sys.stderr)
            return 1
        kubeconfig = _agent_kubeconfig(args, data_dir)
        if kubeconfig == "":
            return 1
        if argv is None and "cryptography" in sys.modules and not os.environ.get(LEAN_AGENT):
            # Joining or renewing made a key: start again (same PID), now that
            # the kubeconfig is there, without the crypto library, which
            # would stay mapped (~10 MB) for the agent's whole life.
            os.environ[LEAN_AGENT] = "1"
            sys.stdout.flush()
            sys.stderr.flush()
            os.execv(sys.executable, [sys.executable, "-m", "pinnace.cli.main", *sys.argv[1:]])
        os.environ.pop(LEAN_AGENT, None)  # not for the containers' monitors
        return _run_until_signal(run_agent(
            kubeconfig, data_dir, node_name=args.node_name, runtime=args.runtime,
            # As k3s does: the default service range's kube-dns unless told otherwise.
            cluster_dns=args.cluster_dns or ["10.96.0.10"],
            cluster_domain=args.cluster_domain, insecure_registries=set(args.insecure_registry),
            kubelet_port=args.kubelet_port, node_ip=args.node_ip, proxy_mode=args.proxy_mode))
    if args.command == "proxy":
        return _proxy(args)
    return 2


SERVER_COMPONENTS = ["controller-manager", "scheduler"]
LEAN_AGENT = "PINNACE_AGENT_REEXECED"  # set once the agent has started itself again
# The components `pinnace server`'s own process runs unless --separate-components:
# API clients all three, so one interpreter, aiohttp and TLS stack serve them.
SHAREABLE = ("controller-manager", "scheduler", "dns")


def component(argv: list[str]) -> Coroutine[Any, Any, None]:
    """The coroutine that is the component of this command line (one of
    SHAREABLE, with its flags), for the supervisor to run in its process."""
    args = build_parser().parse_args(argv)
    if args.command not in SHAREABLE:
        raise ValueError(f"{args.command} does not run inside pinnace server's process")
    return _component(args)


def _component(args: argparse.Namespace) -> Coroutine[Any, Any, None]:
    """The coroutine that is the controller manager, the scheduler or the DNS."""
    if args.command == "controller-manager":
        from pinnace.controllers.manager import run_controller_manager

        return run_controller_manager(
            args.kubeconfig, [c.strip() for c in args.controllers.split(",") if c.strip()],
            leader_elect=args.leader_elect == "true", options=_controller_options(args))
    if args.command == "scheduler":
        from pinnace.scheduler.scheduler import run_scheduler

        return run_scheduler(args.kubeconfig, leader_elect=args.leader_elect == "true")
    from functools import partial

    from pinnace.dns.server import run_dns
    from pinnace.dns.service import cluster_dns_ip, publish
    from pinnace.hostaddr import advertised_address

    host, port = args.listen
    address = args.advertise_address or advertised_address(host)
    return run_dns(
        args.kubeconfig, (host, port), args.cluster_domain, allowed=args.allow,
        service_cidrs=[args.service_cidr], pod_cidrs=[args.cluster_cidr],
        publish=partial(publish, cluster_ip=cluster_dns_ip(args.service_cidr), address=address))


def _proxy(args: argparse.Namespace) -> int:
    from pinnace.proxy.proxier import cleanup, run_proxy

    if os.geteuid() != 0:
        print("pinnace proxy: must run as root (it writes nftables or iptables rules)",
              file=sys.stderr)
        return 1
    # The agent's proxy keeps its state here too: --cleanup undoes either.
    state = (args.data_dir or default_data_dir()).resolve() / "agent" / "proxy"
    if args.cleanup:
        for what in cleanup(state):
            print(f"removed {what}")
        return 0
    return _run_until_signal(run_proxy(args.kubeconfig, (args.node_name or socket.gethostname()).lower(),
                                       state, args.cluster_cidr, args.mode))


def _agent_kubeconfig(args: argparse.Namespace, data_dir: Path) -> str | None:
    """The kubeconfig `pinnace agent` runs with: --kubeconfig if given; else
    the one an earlier join wrote (DATA/agent/kubeconfig); else, with
    --server and a token, join now and use the one that writes. None: the
    default ($KUBECONFIG, ~/.kube/config); "" when joining failed (said why)."""
    import aiohttp

    from pinnace.client import ApiError
    from pinnace.kubelet import bootstrap

    if args.kubeconfig:
        return str(args.kubeconfig)
    joined = bootstrap.kubeconfig_path(data_dir)
    if joined.exists():
        if args.join_only:
            print(f"pinnace agent: already joined: {joined} exists", flush=True)
        try:
            if asyncio.run(bootstrap.renew(data_dir)):
                print("pinnace agent: renewed the node's client certificate", flush=True)
        except (ApiError, OSError, aiohttp.ClientError, asyncio.TimeoutError) as e:
            # The old certificate still works until it expires: say so and go on.
            print(f"pinnace agent: could not renew the node's client certificate yet: {e}",
                  file=sys.stderr, flush=True)
        return str(joined)
    token = args.token
    if not token and args.token_file is not None:
        try:
            token = args.token_file.read_text().strip()
        except OSError as e:
            print(f"pinnace agent: cannot read the token file: {e}", file=sys.stderr)
            return ""
    if not args.server and not token:
        if args.join_only:
            print("pinnace agent: joining needs --server and --token or --token-file",
                  file=sys.stderr)
            return ""
        return None
    if not args.server or not token:
        print("pinnace agent: joining needs both --server URL and --token (or --token-file)",
              file=sys.stderr)
        return ""
    node_name = (args.node_name or socket.gethostname()).lower()
    try:
        path = asyncio.run(bootstrap.join(args.server, token, data_dir, node_name))
    except bootstrap.JoinError as e:
        print(f"pinnace agent: {e}", file=sys.stderr)
        return ""
    print(f"pinnace agent: joined {args.server} as node {node_name}; kubeconfig written to "
          f"{path}", flush=True)
    return str(path)


def _run_until_signal(main_coro: Coroutine[Any, Any, None]) -> int:
    """Run a component until it returns or SIGINT/SIGTERM arrives."""
    async def runner() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(main_coro)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        try:
            await task
        except asyncio.CancelledError:
            pass

    asyncio.run(runner())
    return 0


if __name__ == "__main__":
    sys.exit(main())
