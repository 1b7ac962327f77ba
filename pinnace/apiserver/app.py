"""The API server: TLS, the filter chain (errors -> authentication ->
metrics -> routing) and the non-resource endpoints, around the generic
resource handlers.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import platform
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from pinnace.api.resources import ResourceInfo
from pinnace.certfiles import PKI, RENEW_WITHIN, expires_within, expiry_warnings, write_pem
from pinnace.hostaddr import advertised_address
from pinnace.runtime import tune_gc
from pinnace.servertls import HTTP_LIMITS, TLSSite, server_context
from pinnace.storage import open_store
from pinnace.storage.encryption import encrypted
from pinnace.storage.encryptionconfig import for_server
from pinnace.storage.interface import CompactedError, Store, StoreError

from . import admission, apiservices, codec, flowcontrol, localsocket, metricsapi, openapi, status
from . import audit as auditing
from . import bootstraptoken as bt
from .admission.config import AdmissionConfig
from .admission.config import load as load_admission_config
from .admission.defaultstorageclass import DefaultStorageClass
from .admission.defaulttolerationseconds import DefaultTolerationSeconds
from .admission.limitranger import LimitRanger
from .admission.namespacelifecycle import NamespaceLifecycle
from .admission.noderestriction import NodeRestriction
from .admission.podsecurity import PodSecurity
from .admission.priority import Priority
from .admission.resourcequota import ResourceQuota
from .admission.runtimeclass import RuntimeClass
from .admission.serviceaccount import ServiceAccount
from .admission.validatingpolicy import ValidatingAdmissionPolicies
from .admission.webhooks import Webhooks
from .allocator import NodePortAllocator, ServiceIPAllocator
from .authn import USER_INFO, USER_NAME, Authenticator, User
from .authz import Authorizer
from .bootstrappolicy import node_rules
from .certs import ensure_pki, issue_client_cert
from .config import Config
from .discovery import AGGREGATED_CT, Discovery, wants_aggregated
from .handlers import ResourceHandlers, Target, add_deprecation_warning
from .impersonation import impersonated
from .kubeconfig import admin_kubeconfig, component_kubeconfig, write_kubeconfig
from .metrics import WATCH_PATH, Metrics
from .nodeauthz import NodeAuthorizer
from .nodegraph import NodeGraph
from .nodeproxy import NodeProxy
from .podproxy import PodProxy
from .rbac import RBAC
from .rbacbootstrap import ensure_default_policy
from .registry import ResourceTable
from .requestinfo import request_info
from .rest import Options, Registry
from .status import APIError
from .strategy import Strategies
from .tokens import ISSUER, TokenIssuer, load_or_create_key
from .watchcache import WatchCache

log = logging.getLogger("pinnace.apiserver")

def _git_commit() -> str:
    """The commit pinnace runs from, when it runs from a git checkout."""
    git = Path(__file__).resolve().parents[2] / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head
        ref = head[5:]
        if (git / ref).exists():
            return (git / ref).read_text().strip()
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split()[0]
    except OSError:
        pass
    return ""


# What kube-apiserver 1.37 answers at /version (emulation and compatibility
# versions included, as since 1.32).
KUBE_VERSION = {"major": "1", "minor": "37", "emulationMajor": "1", "emulationMinor": "37",
                "minCompatibilityMajor": "1", "minCompatibilityMinor": "36",
                "gitVersion": "v1.37.0+pinnace", "gitCommit": _git_commit(),
                "gitTreeState": "clean", "buildDate": "2026-11-01T00:00:00Z",
                "goVersion": f"python{platform.python_version()}", "compiler": "cpython",
                "platform": f"linux/{'arm64' if platform.machine() == 'aarch64' else 'amd64'}"}

BUILTIN_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
# What upstream's scheduling/bootstrap-system-priority-classes hook creates.
SYSTEM_PRIORITY_CLASSES = (
    ("system-node-critical", 2_000_001_000,
     "Used for system critical pods that must not be moved from their current node."),
    ("system-cluster-critical", 2_000_000_000,
     "Used for system critical pods that must run in the cluster, but can be moved to another "
     "node if necessary."),
)
_ANONYMOUS_PATHS = ("/healthz", "/livez", "/readyz", "/version")
ANONYMOUS = User("system:anonymous", groups=("system:unauthenticated",))
# The one object anyone may read without credentials (kubeadm grants the same
# to system:anonymous): a kubeconfig with the cluster's CA, which a joining
# node checks against the hash in its join token before it trusts the server.
CLUSTER_INFO_PATH = "/api/v1/namespaces/kube-public/configmaps/cluster-info"
NODE_TOKEN_DESCRIPTION = "the server's node join token"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class APIServer:
    def __init__(self, config: Config, store: Store | None = None):
        self.config = config
        # Secrets are encrypted right above the datastore, so that every
        # reader in this process (watch cache, authentication) sees them plain.
        self.store: Store = store if store is not None else encrypted(
            open_store(config.datastore, str(config.data_dir), shared=config.workers > 1,
                       owner=config.owner),
            for_server(config.encryption_provider_config, config.data_dir, config.datastore))
        self.table = ResourceTable()
        self.ips = ServiceIPAllocator(self.store, config.service_cidr)
        self.ports = NodePortAllocator(self.store, *config.node_port_range)
        self.rbac = RBAC()
        self.node_graph = NodeGraph()
        self.authz = Authorizer(self.rbac, NodeAuthorizer(self.node_graph, node_rules()))
        self.strategies = Strategies(self.store, self.table, self.ips, self.ports, self.authz)
        self.registry = Registry(self.store, self.strategies, config.max_object_bytes)
        self.webhooks = Webhooks(self.strategies.namespace_labels, self._service_endpoint)
        quotas = self.table.lookup("", "v1", "resourcequotas")
        assert quotas is not None
        self.quota_admission = ResourceQuota(self.registry, quotas)
        self.limit_ranger = LimitRanger()
        self.policies = ValidatingAdmissionPolicies(
            self._param_kind, self._read_objects, lambda name: self._read("namespaces", "", name),
            self._equivalents)
        admission_config = load_admission_config(config.admission_control_config_file) \
            if config.admission_control_config_file else AdmissionConfig()
        # In upstream's order (the mutating ones act first, whatever their place).
        self.registry.admission = admission.Chain([
            NamespaceLifecycle(self.strategies.namespace_active),
            self.limit_ranger, ServiceAccount(self.store), NodeRestriction(self._read),
            Priority(self.strategies.priority_classes),
            DefaultTolerationSeconds(config.default_not_ready_toleration_seconds,
                                     config.default_unreachable_toleration_seconds),
            DefaultStorageClass(self.store), RuntimeClass(self.store),
            PodSecurity(self.strategies.namespace_labels, self._namespace_pods,
                        exemptions=admission_config.pod_security_exemptions,
                        defaults=admission_config.pod_security_defaults),
            self.policies, self.webhooks, self.quota_admission])
        self.watches = WatchCache(self.store, max_bytes=config.watch_cache_bytes)
        self.authn = Authenticator(config.data_dir / "tokens.csv", self.store)
        self.handlers = ResourceHandlers(self.registry, self.table, self.watches, self.authn,
                                         self.authz)
        self.handlers.node_proxy = NodeProxy(self.registry, self.table, config.data_dir / "tls")
        self.handlers.pod_proxy = PodProxy(self.registry, self.table)
        self.discovery = Discovery(self.table, extra=[metricsapi.DISCOVERY])
        self.metrics_api = metricsapi.MetricsAPI(self.registry, self.table,
                                                 self.handlers.node_proxy)
        self.metrics = Metrics(self.store, self.watches)
        self.pki: PKI | None = None
        self.ready = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._component_tokens: dict[str, str] = {}
        self.socket_path: Path | None = None  # where the components come in, if here
        self._owns_socket = False  # made it, so removes it (not a worker)
        self.port = config.port
        self._openapi_gen = -1
        self._openapi: dict[str, bytes] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._crd_rev = 0  # the revision of the newest CRD event applied
        self.audit = auditing.Auditor.from_config(
            config.audit_policy_file, config.audit_log_path, config.audit_log_maxsize,
            config.audit_log_maxbackup, config.audit_log_maxage, rotate=config.owner)

    # -- lifecycle ---------------------------------------------------------

    @property
    def kubeconfig_path(self) -> Path:
        return self.config.data_dir / "kubeconfig.yaml"

    @property
    def node_token_path(self) -> Path:
        return self.config.data_dir / "node-token"

    @property
    def public_url(self) -> str:
        """Where other machines reach this server: the advertised address,
        else the address it listens on, else this host's own address."""
        cfg = self.config
        host = cfg.advertise_address or (
            cfg.host if cfg.host not in ("0.0.0.0", "::", "") else advertised_address(cfg.host))
        return f"https://{_url_host(host)}:{self.port}"

    def join_hint(self) -> str:
        """One line telling how to join a node to this server."""
        return (f"pinnace agent --server {self.public_url} --token-file {self.node_token_path}"
                " (on another machine: copy the file, or pass its content with --token)")

    async def start(self) -> None:
        cfg = self.config
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        self.pki = await asyncio.to_thread(ensure_pki, cfg.data_dir / "tls", cfg.host,
                                           cfg.serving_sans)
        self.authn.issuer = TokenIssuer(await asyncio.to_thread(
            load_or_create_key, cfg.data_dir / "tls" / "service-account.key"))
        self._component_tokens = await asyncio.to_thread(
            localsocket.ensure_tokens, cfg.data_dir / "tls")
        self.authn.tokens.update(localsocket.token_users(self._component_tokens))
        await self.store.start()
        for kind in ("clusterroles", "roles", "clusterrolebindings", "rolebindings"):
            rbac_info = self.table.lookup("rbac.authorization.k8s.io", "v1", kind)
            assert rbac_info is not None
            await self._follow(rbac_info.key_prefix, self.rbac.event)
        self.audit.start()
        # The audit layer only when auditing (every request pays for a layer).
        middlewares = [self._errors, *([self.audit.middleware] if self.audit.enabled else []),
                       self._authenticate]
        app = web.Application(middlewares=middlewares, client_max_size=codec.MAX_BODY + 1024)
        app.router.add_route("*", "/{tail:.*}", self._route)
        app.on_response_prepare.append(add_deprecation_warning)
        app.on_response_prepare.append(self.audit.on_prepare)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False,
                                     shutdown_timeout=1.0, **HTTP_LIMITS)
        await self._runner.setup()
        # Workers each listen on the same port; the kernel spreads connections.
        site = TLSSite(self._runner, cfg.host, cfg.port, ssl_context=self._ssl_context(),
                       reuse_port=cfg.workers > 1)
        await site.start()
        self.port = site.port  # the OS's pick when asked for port 0
        # The components `pinnace server` runs come in by the socket; with
        # several workers their parent made it, and each takes connections.
        sock = (socket.socket(fileno=cfg.socket_fd) if cfg.socket_fd >= 0
                else localsocket.listen(cfg.data_dir) if cfg.owner else None)
        if sock is not None:
            await web.SockSite(self._runner, sock).start()
            self.socket_path = localsocket.socket_path(cfg.data_dir)
            self._owns_socket = cfg.socket_fd < 0
        await self._follow_tables()
        if cfg.owner:
            await self._bootstrap()
            self._tasks.append(asyncio.create_task(self._reconcile_loop()))
            host = cfg.host if cfg.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
            url = f"https://{_url_host(host)}:{self.port}"
            write_kubeconfig(self.kubeconfig_path, admin_kubeconfig(self.pki, url))
            await asyncio.to_thread(self._component_kubeconfigs, url)
        self._tasks.append(asyncio.create_task(self.metrics.keep_gauges()))
        self._tasks.append(asyncio.create_task(self._watch_certificates()))
        tune_gc()
        self.ready.set()
        log.info("API server ready on https://%s:%d", cfg.host, self.port)

    def _component_kubeconfigs(self, url: str) -> None:
        """A kubeconfig per control-plane component: its own client
        certificate for HTTPS and its token for the local socket."""
        assert self.pki is not None
        for component, (user, groups) in localsocket.COMPONENT_USERS.items():
            path = self.config.data_dir / f"{component}.kubeconfig"
            cert_path = self.pki.dir / f"{component}.crt"
            key_path = self.pki.dir / f"{component}.key"
            if not key_path.exists() or expires_within(cert_path, RENEW_WITHIN):
                cert, key = issue_client_cert(self.pki, user, groups)
                key_path.write_bytes(key)
                os.chmod(key_path, 0o600)
                cert_path.write_bytes(cert)
            write_kubeconfig(path, component_kubeconfig(
                self.pki, url, user, cert_path, key_path,
                token=self._component_tokens[component], unix_socket=self.socket_path))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.watches.stop()
        await self.authn.close()
        if self.handlers.node_proxy is not None:
            await self.handlers.node_proxy.close()
        if self.handlers.pod_proxy is not None:
            await self.handlers.pod_proxy.close()
        await self.webhooks.close()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._owns_socket and self.socket_path is not None:
            self.socket_path.unlink(missing_ok=True)
        await self.audit.stop()
        await self.store.close()

    def _ssl_context(self) -> ssl.SSLContext:
        assert self.pki is not None
        self._tls = server_context(self.pki.server_cert, self.pki.server_key, self.pki.ca_cert)
        return self._tls

    async def _watch_certificates(self, every: float = 86400) -> None:
        """Daily: renew the serving certificate in its last RENEW_WITHIN (new
        connections get it at once) and warn about any certificate in its last
        WARN_WITHIN: the CA, and what only a restart renews."""
        assert self.pki is not None
        pki = self.pki
        while True:
            try:
                if expires_within(pki.server_cert, RENEW_WITHIN):
                    await asyncio.to_thread(ensure_pki, pki.dir, self.config.host,
                                            self.config.serving_sans)
                    self._tls.load_cert_chain(str(pki.server_cert), str(pki.server_key))
                    log.info("renewed the serving certificate %s", pki.server_cert)
                for line in expiry_warnings(sorted(pki.dir.glob("*.crt"))):
                    log.warning("%s", line)
            except (OSError, ValueError, ssl.SSLError):
                log.exception("checking the certificates in %s failed", pki.dir)
            await asyncio.sleep(every)

    async def _follow_tables(self) -> None:
        """Serve the CRDs and know the namespaces every server on the store sees."""
        crds = self.table.lookup("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        assert crds is not None
        await self._follow(crds.key_prefix, self._crd_event)
        ns_info = self.table.lookup("", "v1", "namespaces")
        assert ns_info is not None
        await self._follow(ns_info.key_prefix, self.strategies.namespace_event)
        pcs = self.table.lookup("scheduling.k8s.io", "v1", "priorityclasses")
        assert pcs is not None
        await self._follow(pcs.key_prefix, self.strategies.priority_classes.event)
        for resource in ("validatingadmissionpolicies", "validatingadmissionpolicybindings"):
            vap = self.table.lookup("admissionregistration.k8s.io", "v1", resource)
            assert vap is not None
            await self._follow(vap.key_prefix, self.policies.event)
        # What each node's pods use, for the Node authorizer. Only the graph
        # keeps what it needs of each object; the follower keeps the key.
        prefixes = {}
        for kind, resource in (("Pod", "pods"), ("PersistentVolumeClaim", "persistentvolumeclaims"),
                               ("PersistentVolume", "persistentvolumes")):
            info = self.table.lookup("", "v1", resource)
            assert info is not None
            prefixes[kind] = info.key_prefix
            # Pods not bound to a node are nothing to the graph: not decoded.
            await self._follow(info.key_prefix, self.node_graph.event, keep=_only_identity,
                               wants=_bound if kind == "Pod" else None)
        quotas = self.table.lookup("", "v1", "resourcequotas")
        assert quotas is not None
        await self._follow(quotas.key_prefix, self.quota_admission.event, keep=_only_identity)
        ranges = self.table.lookup("", "v1", "limitranges")
        assert ranges is not None
        await self._follow(ranges.key_prefix, self.limit_ranger.event)
        for resource in ("mutatingwebhookconfigurations", "validatingwebhookconfigurations"):
            info = self.table.lookup("admissionregistration.k8s.io", "v1", resource)
            assert info is not None
            await self._follow(info.key_prefix, self.webhooks.event)
        self.node_graph.horizon = lambda: {kind: self.watches.last_revision(prefix)
                                           for kind, prefix in prefixes.items()}

    async def _bootstrap(self) -> None:
        """What upstream's bootstrap controllers and post-start hooks ensure."""
        ns_info = self.table.lookup("", "v1", "namespaces")
        assert ns_info is not None
        system = Options(field_manager="pinnace-apiserver", field_validation="Ignore")
        for ns in BUILTIN_NAMESPACES:
            if await self.store.get(ns_info.key(None, ns)) is None:
                await self._create_quietly(ns_info, None, {
                    "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}, system)
        await ensure_default_policy(self.registry, self.table)
        pcs = self.table.lookup("scheduling.k8s.io", "v1", "priorityclasses")
        assert pcs is not None
        for name, value, description in SYSTEM_PRIORITY_CLASSES:
            if await self.store.get(pcs.key(None, name)) is None:
                await self._create_quietly(pcs, None, {
                    "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                    "metadata": {"name": name}, "value": value,
                    "description": description}, system)
        # The default StorageClass k3s ships (its local-storage manifest); the
        # controller manager's local-path provisioner serves it.
        scs = self.table.lookup("storage.k8s.io", "v1", "storageclasses")
        assert scs is not None
        if await self.store.get(scs.key(None, "local-path")) is None:
            await self._create_quietly(scs, None, {
                "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                "metadata": {"name": "local-path", "annotations": {
                    "storageclass.kubernetes.io/is-default-class": "true"}},
                "provisioner": "rancher.io/local-path", "reclaimPolicy": "Delete",
                "volumeBindingMode": "WaitForFirstConsumer"}, system)
        await self._ensure_kubernetes_service()
        await self._ensure_local_apiservices()
        await self._ensure_flowcontrol()
        try:  # what joining nodes need; the API server serves without them
            await self._ensure_cluster_info()
            await self._ensure_node_token()
        except (APIError, OSError, ValueError):
            log.exception("cannot set up node joining (cluster-info, %s)", self.node_token_path)
        except StoreError as e:  # its Secret cannot be decrypted with the keys configured
            log.error("cannot set up node joining: %s", e)

    async def _ensure_local_apiservices(self) -> None:
        """An Available, Local APIService for every built-in group version
        served (upstream's autoregister controller)."""
        info = self.table.lookup("apiregistration.k8s.io", "v1", "apiservices")
        assert info is not None
        served = {(i.group, i.version) for i in self.table.all() if i.crd is None}
        served.add((metricsapi.GROUP, metricsapi.VERSION))
        system = Options(field_manager="pinnace-apiserver", field_validation="Ignore")
        have = {kv.key for kv in (await self.store.list(info.list_prefix(None))).kvs}

        async def register(group: str, version: str, priorities: tuple[int, int]) -> None:
            name = apiservices.name(group, version)
            await self._create_quietly(info, None, apiservices.local(group, version, priorities),
                                       system)
            obj = await self.registry.get(info, None, name)
            obj["status"] = apiservices.available()
            await self.registry.update(info, None, name, obj, system, subresource="status")

        # Concurrently: a first start should not wait for them one by one.
        await asyncio.gather(*(
            register(group, version, priorities)
            for (group, version), priorities in apiservices.PRIORITIES.items()
            if (group, version) in served
            and info.key(None, apiservices.name(group, version)) not in have))

    async def _ensure_flowcontrol(self) -> None:
        """kube-apiserver's priority levels and flow schemas, made when missing
        (a user's changes to them are kept), each schema's status saying its
        priority level exists."""
        system = Options(field_manager="api-priority-and-fairness-config-producer-v1",
                         field_validation="Ignore")
        levels_info = self.table.lookup("flowcontrol.apiserver.k8s.io", "v1",
                                        "prioritylevelconfigurations")
        schemas_info = self.table.lookup("flowcontrol.apiserver.k8s.io", "v1", "flowschemas")
        assert levels_info is not None and schemas_info is not None
        made: list[str] = []  # the schemas made now, whose status to write
        for info, objects in ((levels_info, flowcontrol.priority_levels()),
                              (schemas_info, flowcontrol.flow_schemas())):
            have = {kv.key for kv in (await self.store.list(info.list_prefix(None))).kvs}
            missing = [o for o in objects if info.key(None, o["metadata"]["name"]) not in have]
            await asyncio.gather(*(self._create_quietly(info, None, o, system) for o in missing))
            if info is schemas_info:
                made = [o["metadata"]["name"] for o in missing]
        if not made:
            return
        levels = {kv.key.rsplit("/", 1)[1] for kv in
                  (await self.store.list(levels_info.list_prefix(None))).kvs}

        async def found(name: str) -> None:
            current = await self.registry.get(schemas_info, None, name)
            current["status"] = flowcontrol.dangling_status(current, levels)
            await self.registry.update(schemas_info, None, name, current, system,
                                       subresource="status")

        await asyncio.gather(*(found(name) for name in made))

    async def _ensure_cluster_info(self) -> None:
        """kube-public/cluster-info: a kubeconfig with the CA and this
        server's address, readable anonymously (kubeadm's bootstrap discovery)."""
        assert self.pki is not None
        import yaml

        cms = self.table.lookup("", "v1", "configmaps")
        assert cms is not None
        kubeconfig = yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "clusters": [{"name": "", "cluster": {
                "certificate-authority-data": base64.b64encode(
                    self.pki.ca_cert.read_bytes()).decode(),
                "server": self.public_url}}],
            "contexts": None, "current-context": "", "preferences": {}, "users": None},
            sort_keys=False)
        want = {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "cluster-info", "namespace": "kube-public"},
                "data": {"kubeconfig": kubeconfig}}
        system = Options(field_manager="pinnace-apiserver", field_validation="Ignore")
        kv = await self.store.get(cms.key("kube-public", "cluster-info"))
        if kv is None:
            await self._create_quietly(cms, "kube-public", want, system)
            return
        old = codec.decode_stored(kv.value, kv.mod_revision)
        if (old.get("data") or {}).get("kubeconfig") != kubeconfig:
            old["data"] = {**(old.get("data") or {}), "kubeconfig": kubeconfig}
            try:
                await self.registry.update(cms, "kube-public", "cluster-info", old, system)
            except APIError as e:
                log.warning("cannot update kube-public/cluster-info: %s", e.message)

    async def _ensure_node_token(self) -> None:
        """DIR/node-token holds a join token whose bootstrap token never
        expires: made on first start, its Secret made again if it is gone
        (delete both to retire it; the next start makes a new one)."""
        assert self.pki is not None
        path = self.node_token_path
        ca_hash = bt.ca_hash(self.pki.ca_cert.read_bytes())
        token: bt.JoinToken | None = None
        if path.exists():
            try:
                token = bt.parse_join_token(path.read_text())
            except ValueError as e:
                log.warning("%s: %s; making a new join token", path, e)
        if token is None:
            token = bt.JoinToken(ca_hash, *bt.generate())
        elif token.ca_hash != ca_hash:  # the CA was replaced: the file names the new one
            token = bt.JoinToken(ca_hash, token.token_id, token.secret)
        secrets_info = self.table.lookup("", "v1", "secrets")
        assert secrets_info is not None
        name = bt.secret_name(token.token_id)
        kv = await self.store.get(secrets_info.key(bt.NAMESPACE, name))
        want = bt.token_secret(token.token_id, token.secret,
                               description=NODE_TOKEN_DESCRIPTION)
        system = Options(field_manager="pinnace-apiserver", field_validation="Ignore")
        if kv is None:
            await self._create_quietly(secrets_info, bt.NAMESPACE, want, system)
            log.info("bootstrap token %s for %s created", token.token_id, path)
        elif bt.secret_data(codec.decode_stored(kv.value, kv.mod_revision)) != \
                bt.secret_data(want):
            await self.registry.update(secrets_info, bt.NAMESPACE, name, want, system)
            log.info("bootstrap token %s for %s restored", token.token_id, path)
        text = f"{token}\n"
        if not path.exists() or path.read_text() != text:
            write_pem(path, text.encode(), private=True)

    async def _ensure_kubernetes_service(self) -> None:
        """The `kubernetes` Service and its Endpoints point at this server;
        like upstream's bootstrap controller, bring them back if deleted."""
        system = Options(field_manager="pinnace-apiserver", field_validation="Ignore")
        svc = self.table.lookup("", "v1", "services")
        assert svc is not None
        if await self.store.get(svc.key("default", "kubernetes")) is None:
            await self._create_quietly(svc, "default", {
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "kubernetes", "namespace": "default",
                             "labels": {"component": "apiserver", "provider": "kubernetes"}},
                "spec": {"clusterIP": self.ips.first_ip, "type": "ClusterIP",
                         "ports": [{"name": "https", "port": 443, "protocol": "TCP",
                                    "targetPort": self.port}]}}, system)
        ep = self.table.lookup("", "v1", "endpoints")
        assert ep is not None
        address = self.config.advertise_address or advertised_address(self.config.host)
        await self._ensure_kubernetes_slice(address)
        want = {"apiVersion": "v1", "kind": "Endpoints",
                "metadata": {"name": "kubernetes", "namespace": "default",
                             "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
                "subsets": [{"addresses": [{"ip": address}],
                             "ports": [{"name": "https", "port": self.port,
                                        "protocol": "TCP"}]}]}
        kv = await self.store.get(ep.key("default", "kubernetes"))
        if kv is None:
            await self._create_quietly(ep, "default", want, system)
        elif codec.decode_stored(kv.value, kv.mod_revision).get("subsets") != want["subsets"]:
            try:
                await self.registry.update(ep, "default", "kubernetes", want, system)
            except APIError as e:
                log.warning("cannot update the kubernetes endpoints: %s", e.message)

    async def _ensure_kubernetes_slice(self, address: str) -> None:
        """The EndpointSlice of the `kubernetes` service, which proxies read
        (the Endpoints object is kept for older clients), as upstream's
        endpoint reconciler writes both."""
        system = Options(field_manager="pinnace-apiserver", field_validation="Ignore")
        res = self.table.lookup("discovery.k8s.io", "v1", "endpointslices")
        assert res is not None
        want = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": "kubernetes", "namespace": "default",
                             "labels": {"kubernetes.io/service-name": "kubernetes"}},
                "addressType": "IPv6" if ":" in address else "IPv4",
                "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
                "ports": [{"name": "https", "port": self.port, "protocol": "TCP"}]}
        kv = await self.store.get(res.key("default", "kubernetes"))
        if kv is None:
            await self._create_quietly(res, "default", want, system)
            return
        have = codec.decode_stored(kv.value, kv.mod_revision)
        if any(have.get(k) != want[k] for k in ("addressType", "endpoints", "ports")):
            try:
                await self.registry.update(res, "default", "kubernetes", {**have, **want}, system)
            except APIError as e:
                log.warning("cannot update the kubernetes endpoint slice: %s", e.message)

    def _crd_event(self, type_: str, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        self._crd_rev = max(self._crd_rev, int(meta.get("resourceVersion") or 0))
        if type_ == "DELETED":
            self.table.remove_crd(meta["name"])
        else:
            self.strategies.register_crd(obj)

    async def _catch_up_crd(self, parts: list[str]) -> bool:
        """A resource this server does not know may be a CRD just created
        through another server (or worker) on the store, whose watch event
        has not arrived yet: read the CRD the path names. True when that
        taught this server something new."""
        group, rest = parts[0], parts[2:]
        if not group or not rest:
            return False
        plural = rest[2] if rest[0] == "namespaces" and len(rest) >= 3 else rest[0]
        crds = self.table.lookup("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        assert crds is not None
        kv = await self.store.get(crds.key(None, f"{plural}.{group}"))
        if kv is None or kv.mod_revision <= self._crd_rev:
            return False  # none, or the watch has told us this much already
        obj = codec.decode_stored(kv.value, kv.mod_revision)
        self._crd_event("MODIFIED", obj)
        return True

    async def _follow(self, prefix: str, apply: Callable[[str, dict[str, Any]], None],
                      keep: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
                      wants: Callable[[bytes], bool] | None = None) -> None:
        """Keep ``apply`` told of every object under ``prefix``: those that
        exist now (as ADDED) and every change after, including changes made
        through other API servers on the same store. ``keep`` is what is
        remembered of each object to tell ``apply`` of its deletion after a
        relist (default: all of it). ``wants``, given the stored bytes, may
        pass over objects ``apply`` has no use for without decoding them
        (``apply`` is then told only the revision, as a SKIPPED event)."""
        known: dict[str, dict[str, Any]] = {}
        keep = keep or _whole
        after = await self._relist(prefix, apply, known, keep, wants)
        self._tasks.append(asyncio.create_task(self._follow_from(prefix, after, apply, known,
                                                                 keep, wants)))

    async def _relist(self, prefix: str, apply: Callable[[str, dict[str, Any]], None],
                      known: dict[str, dict[str, Any]],
                      keep: Callable[[dict[str, Any]], dict[str, Any]],
                      wants: Callable[[bytes], bool] | None = None) -> int:
        """Tell ``apply`` what is under ``prefix`` now, objects gone since
        ``known`` was last told included (as DELETED); the revision read."""
        listed = await self.store.list(prefix)
        now = {kv.key: codec.decode_stored(kv.value, kv.mod_revision) for kv in listed.kvs
               if wants is None or wants(kv.value)}
        for key in [k for k in known if k not in now]:
            apply("DELETED", known.pop(key))
        for key, obj in now.items():
            known[key] = keep(obj)
            apply("ADDED", obj)
        return listed.revision

    async def _follow_from(self, prefix: str, after: int,
                           apply: Callable[[str, dict[str, Any]], None],
                           known: dict[str, dict[str, Any]],
                           keep: Callable[[dict[str, Any]], dict[str, Any]],
                           wants: Callable[[bytes], bool] | None = None) -> None:
        while True:
            try:
                async for ev in self.watches.events(prefix, after):
                    after = ev.rev
                    if wants is not None and ev.key not in known and not wants(ev.raw):
                        apply("SKIPPED", {"metadata": {"resourceVersion": str(ev.rev)}})
                        continue
                    if ev.type == "DELETED":
                        known.pop(ev.key, None)
                    else:
                        known[ev.key] = keep(ev.obj)
                    apply(ev.type, ev.obj)
                # The stream ended (the watch cache started over, or this
                # follower fell behind it): go on from where it was.
            except CompactedError:
                after = await self._relist(prefix, apply, known, keep, wants)
            except asyncio.CancelledError:
                raise
            except Exception:  # keep following; a later event will set things right
                log.exception("following %s failed", prefix)
                await asyncio.sleep(1)

    async def _reconcile_loop(self) -> None:
        while True:
            await asyncio.sleep(10)
            try:
                await self._ensure_kubernetes_service()
            except Exception:  # keep trying: the next round may succeed
                log.exception("reconciling the kubernetes service failed")

    async def _read(self, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
        """A core object as stored, or None: what admission plugins look up."""
        info = self.table.lookup("", "v1", resource)
        assert info is not None
        kv = await self.store.get(info.key(namespace or None, name))
        return None if kv is None else codec.decode_stored(kv.value, kv.mod_revision)

    async def _service_endpoint(self, namespace: str, name: str, port: int) -> str | None:
        """host:port of a ready endpoint of Service port ``port`` (for webhooks)."""
        svc = await self._read("services", namespace, name)
        if svc is None:
            return None
        ports = [p for p in (svc.get("spec") or {}).get("ports") or [] if p.get("port") == port]
        if not ports:
            return None
        wanted = ports[0].get("name") or ""
        info = self.table.lookup("discovery.k8s.io", "v1", "endpointslices")
        assert info is not None
        for kv in (await self.registry.list_kvs(info, namespace))[0]:
            es = codec.decode_stored(kv.value, kv.mod_revision)
            if (es["metadata"].get("labels") or {}).get("kubernetes.io/service-name") != name:
                continue
            target = next((p.get("port") for p in es.get("ports") or []
                           if (p.get("name") or "") == wanted), None)
            for ep in es.get("endpoints") or []:
                if target and (ep.get("conditions") or {}).get("ready") is not False and \
                        ep.get("addresses"):
                    host = ep["addresses"][0]
                    return f"[{host}]:{target}" if ":" in host else f"{host}:{target}"
        return None

    def _param_kind(self, api_version: str, kind: str) -> ResourceInfo | None:
        """The resource serving a policy's paramKind."""
        group, _, version = api_version.rpartition("/")
        return self.table.by_kind(group, version, kind)

    async def _read_objects(self, info: ResourceInfo, namespace: str,
                            name: str) -> list[dict[str, Any]]:
        """A policy's params: the named object ([] when absent) or all in the namespace."""
        if name:
            kv = await self.store.get(info.key(namespace or None, name))
            return [] if kv is None else [codec.decode_stored(kv.value, kv.mod_revision)]
        kvs = (await self.registry.list_kvs(info, namespace or None))[0]
        return [codec.decode_stored(kv.value, kv.mod_revision) for kv in kvs]

    def _equivalents(self, info: ResourceInfo) -> list[ResourceInfo]:
        """The other versions (and groups) serving the same stored objects."""
        return [i for i in self.table.all() if i.key_prefix == info.key_prefix and i != info
                and not i.virtual]

    async def _namespace_pods(self, namespace: str) -> list[dict[str, Any]]:
        info = self.table.lookup("", "v1", "pods")
        assert info is not None
        kvs = (await self.registry.list_kvs(info, namespace))[0]
        return [codec.decode_stored(kv.value, kv.mod_revision) for kv in kvs]

    async def _create_quietly(self, info: ResourceInfo, ns: str | None, obj: dict[str, Any],
                              opts: Options) -> None:
        try:
            await self.registry.create(info, ns, obj, opts)
        except APIError as e:
            if e.code != 409:
                raise

    # -- middleware --------------------------------------------------------

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        start = time.perf_counter()
        code = 500
        try:
            resp = await handler(request)
            code = resp.status
            if type(resp) is web.Response:
                body = resp.body
                if type(body) is bytes and len(body) > codec.GZIP_THRESHOLD:
                    await _maybe_gzip(request, resp, body)
            return resp
        except APIError as e:
            code = e.code
            return _status_response(e)
        except web.HTTPException:
            raise
        except StoreError as e:
            # What no handler turned into a Status: a value that cannot be
            # decrypted, say. kube-apiserver answers those with a 500 too.
            log.error("serving %s %s: %s", request.method, request.path, e)
            return _status_response(status.internal(str(e)))
        except asyncio.CancelledError:
            code = 499
            raise
        except RecursionError:
            # A body nested hundreds of levels deep (a patch, a value): the
            # client's doing, and nothing was written.
            code = 400
            return _status_response(status.bad_request(
                "the request is nested too deeply to be processed"))
        except ConnectionResetError:
            # The client went away mid-response (a watch it closed): normal.
            code = 499
            log.debug("client closed %s %s", request.method, request.path)
            raise
        except Exception as e:  # pragma: no cover - a bug; answer as upstream does
            log.exception("internal error serving %s %s", request.method, request.path)
            return _status_response(status.internal(repr(e)))
        finally:
            self.metrics.observe(request, code, time.perf_counter() - start)

    @web.middleware
    async def _authenticate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        info = request_info(request.method, request.path, request.query,
                            upgrade="upgrade" in request.headers.get("Connection", "").lower())
        audit = self.audit if self.audit.enabled else None
        user = await self.authn.authenticate(request)
        if user is None:
            if request.path in _ANONYMOUS_PATHS or request.path.startswith(
                    ("/readyz/", "/livez/", "/healthz/")) or (
                    request.path == CLUSTER_INFO_PATH and request.method == "GET"
                    and "Authorization" not in request.headers
                    and "watch" not in request.query):
                request[USER_NAME] = "system:anonymous"
                if audit is not None:
                    audit.begin(request, ANONYMOUS, info)
                    audit.decided(request, True, "")
                return await handler(request)
            if not self.config.anonymous_auth or "Authorization" in request.headers:
                if audit is not None:
                    audit.authn_failed(request, info)
                raise status.unauthorized()
            # --anonymous-auth: no credentials is a user RBAC judges, as upstream's
            # anonymous authenticator makes it (a bad token is still 401).
            user = ANONYMOUS
        if audit is not None:
            audit.begin(request, user, info)
            real = user
        user = await impersonated(request, user, self.authz)
        if audit is None:
            await self.authz.check(user, info)
        else:
            if user is not real:
                audit.impersonating(request, user)
            allowed, reason = await self.authz.decide(user, info)
            audit.decided(request, allowed, reason)
            if not allowed:
                self.authz.refuse(user, info, reason)
        request[USER_NAME] = user.name
        request[USER_INFO] = user
        return await handler(request)

    # -- routing -----------------------------------------------------------

    async def _route(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        parts = [p for p in path.split("/") if p]
        if not parts:
            return _json(_root_paths(self.table))
        head = parts[0]
        if head in ("healthz", "livez", "readyz"):
            return await self._health(request, parts)
        if head == "version" and len(parts) == 1:
            return _json(KUBE_VERSION)
        if head == "metrics" and len(parts) == 1:
            return web.Response(body=self.metrics.render(),
                                headers={"Content-Type": self.metrics.content_type})
        if head == "openapi":
            return self._openapi_doc(request, parts)
        if path.rstrip("/") == "/.well-known/openid-configuration":
            return _json(self._openid_configuration())
        if path.rstrip("/") == "/openid/v1/jwks" and self.authn.issuer is not None:
            return _raw(codec.dumps(self.authn.issuer.jwks()), "application/jwk-set+json")
        accept = request.headers.get("Accept", "")
        if head == "api":
            if len(parts) == 1:
                if wants_aggregated(accept):
                    return self._aggregated(request, legacy=True)
                return _raw(self.discovery.api_versions(f"{request.host}"))
            if len(parts) == 2 and parts[1] == "v1":
                return _raw(self.discovery.resource_list("", "v1") or b"{}")
            if parts[1] == "v1":
                return await self._resource(request, ["", "v1", *_strip_watch(request,
                                                                              parts[2:])])
        if head == "apis" and len(parts) > 1 and parts[1] == metricsapi.GROUP:
            return await self.metrics_api.handle(request, parts[1:])
        if head == "apis":
            if len(parts) == 1:
                if wants_aggregated(accept):
                    return self._aggregated(request, legacy=False)
                return _raw(self.discovery.api_groups())
            if len(parts) == 2:
                doc = self.discovery.api_group(parts[1])
                if doc is not None:
                    return _raw(doc)
            elif len(parts) == 3:
                doc = self.discovery.resource_list(parts[1], parts[2])
                if doc is not None:
                    return _raw(doc)
            else:
                return await self._resource(request, [parts[1], parts[2],
                                                      *_strip_watch(request, parts[3:])])
        raise APIError(404, "NotFound", "the server could not find the requested resource", {})

    def _aggregated(self, request: web.Request, legacy: bool) -> web.Response:
        """The aggregated discovery document with upstream's cache headers:
        an ETag, and 304 Not Modified for a client whose If-None-Match names
        it (kubectl's discovery cache revalidates this way)."""
        etag = self.discovery.aggregated_etag(legacy)
        headers = {"ETag": etag, "Vary": "Accept", "Cache-Control": "public"}
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers=headers)
        resp = _raw(self.discovery.aggregated(legacy), AGGREGATED_CT)
        resp.headers.update(headers)
        return resp

    def _openid_configuration(self) -> dict[str, Any]:
        """ServiceAccount issuer discovery: where the keys of the tokens are."""
        return {"issuer": ISSUER, "jwks_uri": f"{self.public_url}/openid/v1/jwks",
                "response_types_supported": ["id_token"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["ES256"]}

    async def _resource(self, request: web.Request, parts: list[str]) -> web.StreamResponse:
        target: Target | None = self.handlers.resolve(parts)
        if target is None and await self._catch_up_crd(parts):
            target = self.handlers.resolve(parts)
        if target is None:
            raise APIError(404, "NotFound", "the server could not find the requested resource",
                           {})
        return await self.handlers.handle(request, target)

    async def _health(self, request: web.Request, parts: list[str]) -> web.Response:
        checks: dict[str, bool] = {"ping": True, "log": True}
        try:
            await asyncio.wait_for(self.store.revision(), 5)
            checks["etcd"] = True
        except Exception:
            checks["etcd"] = False
        checks["poststarthook/bootstrap-controller"] = self.ready.is_set()
        if parts[0] == "readyz":
            checks["informer-sync"] = self.ready.is_set()
        if len(parts) > 1:
            name = "/".join(parts[1:])
            if name not in checks:
                raise APIError(404, "NotFound", "the server could not find the requested "
                                                "resource", {})
            ok = checks[name]
            return web.Response(text="ok" if ok else f"internal server error: {name} failed",
                                status=200 if ok else 500, content_type="text/plain")
        ok = all(checks.values())
        if "verbose" in request.query:
            lines = [f"[{'+' if v else '-'}]{k} {'ok' if v else 'failed'}"
                     for k, v in checks.items()]
            lines.append(f"{parts[0]} check {'passed' if ok else 'failed'}")
            return web.Response(text="\n".join(lines) + "\n", status=200 if ok else 500,
                                content_type="text/plain")
        return web.Response(text="ok" if ok else f"{parts[0]} check failed",
                            status=200 if ok else 500, content_type="text/plain")

    def _openapi_doc(self, request: web.Request, parts: list[str]) -> web.Response:
        if self._openapi_gen != self.table.generation:
            self._openapi.clear()
            self._openapi_gen = self.table.generation
        key = "/".join(parts)
        doc = self._openapi.get(key)
        if doc is None:
            resources = self.table.all()
            crd_schemas = _crd_schemas(resources)
            if parts == ["openapi", "v2"]:
                doc = openapi.openapi_v2(resources, crd_schemas)
            elif parts == ["openapi", "v3"]:
                doc = openapi.openapi_v3_index(resources, crd_schemas)
            elif len(parts) >= 3 and parts[1] == "v3":
                rest = parts[2:]
                if rest[0] == "api" and len(rest) == 2:
                    group, version = "", rest[1]
                elif rest[0] == "apis" and len(rest) == 3:
                    group, version = rest[1], rest[2]
                else:
                    raise APIError(404, "NotFound", "the server could not find the requested "
                                                    "resource", {})
                found = openapi.openapi_v3_group_version(group, version, resources, crd_schemas)
                if found is None:
                    raise APIError(404, "NotFound", "the server could not find the requested "
                                                    "resource", {})
                doc = found
            else:
                raise APIError(404, "NotFound", "the server could not find the requested "
                                                "resource", {})
            self._openapi[key] = doc
        if parts == ["openapi", "v2"]:
            code, headers, body = openapi.serve_v2(doc, request.headers)
            return web.Response(status=code, headers=headers, body=body)
        asked = request.query.get("hash")
        if asked is not None and asked != openapi.doc_hash(doc):
            # A hash from an older index: send the client to the current one,
            # as kube-openapi does, instead of caching today's document under it.
            location = request.rel_url.update_query(hash=openapi.doc_hash(doc))
            return web.Response(status=301, headers={"Location": str(location)})
        resp = web.Response(body=doc, content_type="application/json")
        if asked is not None:
            resp.headers["Cache-Control"] = "public, immutable"
        else:
            resp.headers["Cache-Control"] = "no-cache, private"
        return resp


def _whole(obj: dict[str, Any]) -> dict[str, Any]:
    return obj


def _bound(raw: bytes) -> bool:
    return b'"nodeName"' in raw


def _only_identity(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    return {"kind": obj.get("kind"), "metadata": {
        "name": meta.get("name"), "namespace": meta.get("namespace"),
        "resourceVersion": meta.get("resourceVersion")}}


def _crd_schemas(resources: list[ResourceInfo]) -> dict[tuple[str, str, str], dict[str, Any]]:
    out: dict[tuple[str, str, str], dict[str, Any]] = {}
    for i in resources:
        if i.crd is None:
            continue
        for v in i.crd.get("spec", {}).get("versions", []):
            if v.get("name") == i.version:
                sch = (v.get("schema") or {}).get("openAPIV3Schema")
                if sch:
                    out[(i.group, i.version, i.kind)] = sch
    return out


def _strip_watch(request: web.Request, parts: list[str]) -> list[str]:
    """/api/v1/watch/... is the deprecated spelling of ?watch=true."""
    if parts and parts[0] == "watch":
        request[WATCH_PATH] = True
        return parts[1:]
    return parts


def _root_paths(table: ResourceTable) -> dict[str, Any]:
    paths = ["/api", "/api/v1", "/apis", "/healthz", "/livez", "/metrics", "/openapi/v2",
             "/openapi/v3", "/readyz", "/version"]
    for group, versions in table.groups():
        if group:
            paths.append(f"/apis/{group}")
            paths.extend(f"/apis/{group}/{v}" for v in versions)
    return {"paths": sorted(paths)}


def _json(obj: Any) -> web.Response:
    return _raw(codec.dumps(obj))


# What kube-apiserver writes through its negotiated serializers (objects,
# lists, tables, discovery, Status): gzipped when big and the client asks.
# Logs, proxied bodies and the OpenAPI documents are not.
_COMPRESSIBLE = ("application/json", "application/yaml", "application/vnd.kubernetes.protobuf")


async def _maybe_gzip(request: web.Request, resp: web.Response, body: bytes) -> None:
    """APIResponseCompression: a response body over 128 KiB goes out gzipped
    (level 1) when Accept-Encoding names gzip; compressed in a worker thread
    (zlib lets go of the GIL), so the loop serves others meanwhile."""
    if not codec.accepts_gzip(request.headers.get("Accept-Encoding", "")) or \
            "Content-Encoding" in resp.headers or \
            not resp.headers.get("Content-Type", "").startswith(_COMPRESSIBLE) or \
            request.path.startswith("/openapi"):
        return
    resp.body = await asyncio.get_running_loop().run_in_executor(None, codec.gzip_bytes, body)
    resp.headers["Content-Encoding"] = "gzip"
    resp.headers.add("Vary", "Accept-Encoding")


def _raw(body: bytes, content_type: str = "application/json") -> web.Response:
    resp = web.Response(body=body)
    resp.headers["Content-Type"] = content_type
    return resp


def _status_response(e: APIError) -> web.Response:
    resp = web.Response(body=codec.dumps(e.status()), status=e.code, headers=e.headers)
    resp.headers["Content-Type"] = "application/json"
    return resp


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


