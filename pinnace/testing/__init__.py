"""pinnace for operator and controller authors: a real cluster in a test.

    from pinnace.testing import Cluster

    with Cluster(controllers=["deployment", "replicaset"], nodes=2) as c:
        c.apply(manifest, namespace=c.create_namespace())
        c.wait("deployment/web", condition="Available", namespace=ns)

With pytest nothing needs importing: installing pinnace brings the plugin
(pinnace.testing.plugin) and its fixtures ``pinnace_cluster`` and
``pinnace_namespace``. docs/testing.md has the recipes.
"""

from .cluster import Cluster, wait_for

__all__ = ["Cluster", "wait_for"]
