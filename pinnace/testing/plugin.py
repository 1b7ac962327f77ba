"""The pytest plugin that installing pinnace brings (entry point ``pytest11``).

Fixtures:
- ``pinnace_cluster``: the cluster for this test. By default the session's
  (one per pytest-xdist worker, made from the ``pinnace_*`` ini options);
  a test marked ``@pytest.mark.pinnace(nodes=3, controllers=[...])`` gets
  a cluster of its own, made with those ``pinnace.testing.Cluster``
  arguments and stopped after it.
- ``pinnace_namespace``: a fresh namespace in ``pinnace_cluster``, deleted
  after the test (its contents go with it, removed by the namespace
  controller as in Kubernetes).
- ``pinnace_kubeconfig``: the admin kubeconfig's path.
- ``pinnace_client``: the official client's ``ApiClient`` for the cluster.

Nothing here imports the cluster until a test asks for one, so the plugin
costs nothing in test runs that do not use it (``-p no:pinnace`` turns it off).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .cluster import Cluster

INI = {
    "pinnace_controllers": ("controllers of the session cluster: comma-separated names, "
                            "* for all, none for none", "*"),
    "pinnace_nodes": ("simulated nodes in the session cluster", "0"),
    "pinnace_scheduler": ("run the scheduler in the session cluster: auto (when there are "
                          "nodes), true or false", "auto"),
    "pinnace_datastore": ("datastore of the session cluster: memory or sqlite", "memory"),
    "pinnace_stages": ("stage file for the simulated nodes' pods (docs/simulated-nodes.md)", ""),
    "pinnace_subprocess": ("run the session cluster in a child process: true or false", "false"),
}
CRDS_INI = ("pinnace_crds", "CRD files (globs, relative to the rootdir) installed into the session "
                            "cluster before the first test")


def pytest_addoption(parser: pytest.Parser) -> None:
    for name, (help_, default) in INI.items():
        parser.addini(name, help_, default=default)
    parser.addini(CRDS_INI[0], CRDS_INI[1], type="linelist", default=[])


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "pinnace(**options): give this test a pinnace cluster of its own, made with "
                   "pinnace.testing.Cluster(**options)")


def session_options(config: pytest.Config) -> dict[str, Any]:
    """The session cluster's Cluster arguments, from the ini options."""
    def ini(name: str) -> str:
        return str(config.getini(name)).strip()

    controllers = ini("pinnace_controllers")
    scheduler = ini("pinnace_scheduler").lower()
    nodes = ini("pinnace_nodes")
    if not nodes.isdigit():
        raise pytest.UsageError(f"pinnace_nodes must be a number, got {nodes!r}")
    if scheduler not in ("auto", "true", "false"):
        raise pytest.UsageError(f"pinnace_scheduler must be auto, true or false, got {scheduler!r}")
    stages = ini("pinnace_stages")
    return {"controllers": None if controllers.lower() == "none" else controllers,
            "nodes": int(nodes),
            "scheduler": None if scheduler == "auto" else scheduler == "true",
            "datastore": ini("pinnace_datastore") or "memory",
            "stages": Path(config.rootpath, stages) if stages else None,
            "subprocess": ini("pinnace_subprocess").lower() == "true"}


def crd_files(config: pytest.Config) -> list[Path]:
    """The files the pinnace_crds ini option names (each line a path or a glob)."""
    files: list[Path] = []
    for pattern in config.getini(CRDS_INI[0]):
        pattern = pattern.split("#")[0].strip()
        if not pattern:
            continue
        found = sorted(Path(config.rootpath).glob(pattern))
        if not found:
            raise pytest.UsageError(f"pinnace_crds: no file matches {pattern!r}")
        files.extend(found)
    return files


@pytest.fixture(scope="session")
def pinnace_session_cluster(request: pytest.FixtureRequest,
                            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The cluster tests share (one per xdist worker)."""
    from .cluster import Cluster

    with Cluster(data_dir=tmp_path_factory.mktemp("pinnace"),
                 **session_options(request.config)) as cluster:
        crds = crd_files(request.config)
        if crds:
            cluster.install_crds(*crds)
        yield cluster


@pytest.fixture
def pinnace_cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    marker = request.node.get_closest_marker("pinnace")
    if marker is None:
        yield request.getfixturevalue("pinnace_session_cluster")
        return
    if marker.args:
        raise pytest.UsageError("@pytest.mark.pinnace takes keyword arguments only "
                                "(those of pinnace.testing.Cluster)")
    from .cluster import Cluster

    with Cluster(**marker.kwargs) as cluster:
        yield cluster


@pytest.fixture
def pinnace_namespace(pinnace_cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    name = pinnace_cluster.create_namespace(re.sub(r"\[.*", "", request.node.name))
    yield name
    pinnace_cluster.delete_namespace(name)


@pytest.fixture
def pinnace_kubeconfig(pinnace_cluster: Cluster) -> Path:
    return pinnace_cluster.kubeconfig


@pytest.fixture
def pinnace_client(pinnace_cluster: Cluster) -> Iterator[Any]:
    client = pinnace_cluster.api_client()
    try:
        yield client
    finally:
        client.close()
