"""A kopf operator: every Widget gets a ConfigMap of its size, owned by it."""

import kopf


@kopf.on.create("example.com", "v1", "widgets")
def create_configmap(spec, name, namespace, body, logger, **_):
    data = {"size": str(spec.get("size", 1))}
    cm = {"apiVersion": "v1", "kind": "ConfigMap",
          "metadata": {"name": f"{name}-config"}, "data": data}
    kopf.adopt(cm, owner=body)  # ownerReferences: the garbage collector cleans up
    kopf.label(cm, {"app.kubernetes.io/managed-by": "widget-operator"})
    from kubernetes import client, config

    config.load_kube_config()
    client.CoreV1Api().create_namespaced_config_map(namespace, cm)
    return {"configmap": cm["metadata"]["name"]}
