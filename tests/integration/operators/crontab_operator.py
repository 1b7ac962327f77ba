"""A tiny kopf operator used by the tests: every CronTab gets a ConfigMap
holding its schedule, and the CronTab's status says so."""

import kopf
import kubernetes


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: object) -> None:
    settings.posting.enabled = True
    settings.watching.server_timeout = 30


@kopf.on.create("ops.example.com", "v1", "crontabs")
@kopf.on.update("ops.example.com", "v1", "crontabs")
def reconcile(spec: dict, name: str, namespace: str, body: dict, **_: object) -> dict:
    kubernetes.config.load_kube_config()
    api = kubernetes.client.CoreV1Api()
    cm = {"apiVersion": "v1", "kind": "ConfigMap",
          "metadata": {"name": f"{name}-schedule"},
          "data": {"schedule": spec.get("cronSpec", "")}}
    kopf.adopt(cm, owner=body)
    try:
        api.create_namespaced_config_map(namespace, cm)
    except kubernetes.client.ApiException as e:
        if e.status != 409:
            raise
        api.replace_namespaced_config_map(f"{name}-schedule", namespace, cm)
    return {"configMap": f"{name}-schedule"}
