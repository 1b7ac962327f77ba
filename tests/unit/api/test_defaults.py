"""Defaults as a v1.37 kube-apiserver fills them in."""

from pinnace.api.defaults import (
    apply_defaults,
    image_pull_policy,
    job_selector_labels,
    job_template_labels,
    namespace_finalizers,
)


def rc():
    return {"metadata": {"name": "mysql"}, "spec": {"template": {
        "metadata": {"labels": {"app": "mysql"}},
        "spec": {"containers": [{"name": "mysql", "image": "mysql",
                                 "ports": [{"containerPort": 3306}],
                                 "env": [{"name": "MYSQL_ROOT_PASSWORD", "value": "123456"}]}]}}}}


def test_rc_defaults_selector_labels_and_replicas():
    obj = rc()
    apply_defaults("", "ReplicationController", obj)
    assert obj["spec"]["selector"] == {"app": "mysql"}
    assert obj["metadata"]["labels"] == {"app": "mysql"}
    assert obj["spec"]["replicas"] == 1


def test_pod_template_defaults():
    obj = rc()
    apply_defaults("", "ReplicationController", obj)
    spec = obj["spec"]["template"]["spec"]
    assert spec["restartPolicy"] == "Always"
    assert spec["dnsPolicy"] == "ClusterFirst"
    assert spec["schedulerName"] == "default-scheduler"
    assert spec["terminationGracePeriodSeconds"] == 30
    assert spec["securityContext"] == {}
    assert "enableServiceLinks" not in spec  # SetDefaults_Pod's, for Pods only
    assert "priority" not in spec and "tolerations" not in spec  # admission's job
    c = spec["containers"][0]
    assert c["imagePullPolicy"] == "Always"
    assert c["terminationMessagePath"] == "/dev/termination-log"
    assert c["terminationMessagePolicy"] == "File"
    assert c["ports"] == [{"containerPort": 3306, "protocol": "TCP"}]
    assert c["resources"] == {}


def test_image_pull_policy():
    assert image_pull_policy("nginx") == "Always"
    assert image_pull_policy("nginx:latest") == "Always"
    assert image_pull_policy("nginx:1.25") == "IfNotPresent"
    assert image_pull_policy("localhost:5000/app") == "Always"
    assert image_pull_policy("localhost:5000/app:v2") == "IfNotPresent"
    assert image_pull_policy("nginx@sha256:" + "a" * 64) == "IfNotPresent"


def test_probe_and_resource_defaults():
    pod = {"spec": {"containers": [{"name": "a", "image": "a:1",
                                    "livenessProbe": {"httpGet": {"port": 80}},
                                    "resources": {"limits": {"cpu": "0.5", "memory": "1024Mi"}}}],
                    "volumes": [{"name": "v"}, {"name": "s", "secret": {"secretName": "x"}}]}}
    apply_defaults("", "Pod", pod)
    c = pod["spec"]["containers"][0]
    assert c["livenessProbe"] == {"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"},
                                  "timeoutSeconds": 1, "periodSeconds": 10,
                                  "successThreshold": 1, "failureThreshold": 3}
    # Limits are copied to missing requests and written back canonically.
    assert c["resources"] == {"limits": {"cpu": "500m", "memory": "1Gi"},
                              "requests": {"cpu": "500m", "memory": "1Gi"}}
    assert pod["spec"]["volumes"][0] == {"name": "v", "emptyDir": {}}
    assert pod["spec"]["volumes"][1]["secret"]["defaultMode"] == 420


def test_service_defaults():
    svc = {"spec": {"type": "NodePort", "ports": [{"port": 8080, "nodePort": 30001}]}}
    apply_defaults("", "Service", svc)
    assert svc["spec"] == {"type": "NodePort", "sessionAffinity": "None",
                           "ports": [{"port": 8080, "nodePort": 30001, "protocol": "TCP",
                                      "targetPort": 8080}],
                           "externalTrafficPolicy": "Cluster", "internalTrafficPolicy": "Cluster"}
    plain = {"spec": {"ports": [{"port": 3306, "targetPort": "mysql"}]}}
    apply_defaults("", "Service", plain)
    assert plain["spec"]["type"] == "ClusterIP"
    assert plain["spec"]["ports"][0]["targetPort"] == "mysql"
    assert "externalTrafficPolicy" not in plain["spec"]


def test_deployment_defaults():
    dep = {"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "a"}]}}}}
    apply_defaults("apps", "Deployment", dep)
    spec = dep["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "RollingUpdate",
                                "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}
    assert spec["revisionHistoryLimit"] == 10
    assert spec["progressDeadlineSeconds"] == 600
    recreate = {"spec": {"strategy": {"type": "Recreate"}}}
    apply_defaults("apps", "Deployment", recreate)
    assert recreate["spec"]["strategy"] == {"type": "Recreate"}


def test_statefulset_and_daemonset_defaults():
    sts: dict = {"spec": {}}
    apply_defaults("apps", "StatefulSet", sts)
    assert sts["spec"]["podManagementPolicy"] == "OrderedReady"
    assert sts["spec"]["updateStrategy"] == {"type": "RollingUpdate",
                                             "rollingUpdate": {"partition": 0, "maxUnavailable": 1}}
    assert sts["spec"]["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain",
                                                                   "whenScaled": "Retain"}
    ds: dict = {"spec": {}}
    apply_defaults("apps", "DaemonSet", ds)
    assert ds["spec"]["updateStrategy"] == {"type": "RollingUpdate",
                                            "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
    assert ds["spec"]["revisionHistoryLimit"] == 10


def test_job_and_cronjob_defaults():
    job = {"spec": {"template": {"metadata": {"labels": {"app": "pi"}}, "spec": {
        "restartPolicy": "Never", "containers": [{"name": "pi", "image": "perl:5.34"}]}}}}
    apply_defaults("batch", "Job", job)
    spec = job["spec"]
    assert (spec["completions"], spec["parallelism"], spec["backoffLimit"]) == (1, 1, 6)
    assert spec["completionMode"] == "NonIndexed"
    assert spec["suspend"] is False
    assert spec["podReplacementPolicy"] == "TerminatingOrFailed"
    assert job["metadata"]["labels"] == {"app": "pi"}
    assert job_selector_labels("u1") == {"batch.kubernetes.io/controller-uid": "u1"}
    assert job_template_labels("u1", "pi")["job-name"] == "pi"
    cj = {"spec": {"schedule": "@hourly", "jobTemplate": {"spec": {"template": {"spec": {
        "containers": [{"name": "a", "image": "a"}]}}}}}}
    apply_defaults("batch", "CronJob", cj)
    assert (cj["spec"]["concurrencyPolicy"], cj["spec"]["suspend"]) == ("Allow", False)
    assert (cj["spec"]["successfulJobsHistoryLimit"], cj["spec"]["failedJobsHistoryLimit"]) == (3, 1)
    assert "completions" not in cj["spec"]["jobTemplate"]["spec"]
    assert cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"] == "Always"


def test_namespace_secret_pv_pvc_defaults():
    ns = {"metadata": {"name": "dev"}}
    apply_defaults("", "Namespace", ns)
    namespace_finalizers(ns)
    assert ns["metadata"]["labels"] == {"kubernetes.io/metadata.name": "dev"}
    assert ns["status"] == {"phase": "Active"}
    assert ns["spec"] == {"finalizers": ["kubernetes"]}
    secret: dict = {"metadata": {"name": "s"}}
    apply_defaults("", "Secret", secret)
    assert secret["type"] == "Opaque"
    pv = {"spec": {"capacity": {"storage": "1024Mi"}}}
    apply_defaults("", "PersistentVolume", pv)
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    assert pv["spec"]["volumeMode"] == "Filesystem"
    assert pv["spec"]["capacity"] == {"storage": "1Gi"}
    assert pv["status"] == {"phase": "Pending"}
    pvc = {"spec": {"resources": {"requests": {"storage": "1Gi"}}}}
    apply_defaults("", "PersistentVolumeClaim", pvc)
    assert pvc["spec"]["volumeMode"] == "Filesystem"
    assert pvc["status"] == {"phase": "Pending"}


def test_limit_range_defaults():
    lr = {"spec": {"limits": [{"type": "Container", "max": {"cpu": "2"}, "min": {"memory": "1Mi"}}]}}
    apply_defaults("", "LimitRange", lr)
    item = lr["spec"]["limits"][0]
    assert item["default"] == {"cpu": "2"}
    assert item["defaultRequest"] == {"cpu": "2", "memory": "1Mi"}


def test_hpa_defaults():
    hpa = {"spec": {"scaleTargetRef": {"kind": "Deployment", "name": "w"}, "maxReplicas": 3,
                    "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}}}
    apply_defaults("autoscaling", "HorizontalPodAutoscaler", hpa)
    assert hpa["spec"]["minReplicas"] == 1
    assert hpa["spec"]["metrics"][0]["resource"]["target"] == {"type": "Utilization",
                                                               "averageUtilization": 80}
    b = hpa["spec"]["behavior"]
    assert b["scaleDown"]["stabilizationWindowSeconds"] == 60
    assert b["scaleDown"]["selectPolicy"] == "Max"
    assert b["scaleUp"]["policies"][0] == {"type": "Pods", "value": 4, "periodSeconds": 15}
    v1 = {"spec": {"maxReplicas": 3}}
    apply_defaults("autoscaling", "HorizontalPodAutoscaler", v1, version="v1")
    assert v1["spec"] == {"maxReplicas": 3, "minReplicas": 1}
    by_api_version = {"apiVersion": "autoscaling/v1", "spec": {"maxReplicas": 3}}
    apply_defaults("autoscaling", "HorizontalPodAutoscaler", by_api_version)
    assert "metrics" not in by_api_version["spec"]


def test_other_group_defaults():
    rb = {"roleRef": {"kind": "Role", "name": "r"},
          "subjects": [{"kind": "User", "name": "a"}, {"kind": "ServiceAccount", "name": "s"}]}
    apply_defaults("rbac.authorization.k8s.io", "RoleBinding", rb)
    assert rb["roleRef"]["apiGroup"] == "rbac.authorization.k8s.io"
    assert rb["subjects"][0]["apiGroup"] == "rbac.authorization.k8s.io"
    assert "apiGroup" not in rb["subjects"][1]  # "" upstream, left out by omitempty
    sc = {"provisioner": "x.io/y"}
    apply_defaults("storage.k8s.io", "StorageClass", sc)
    assert (sc["reclaimPolicy"], sc["volumeBindingMode"]) == ("Delete", "Immediate")
    es = {"ports": [{"port": 80}]}
    apply_defaults("discovery.k8s.io", "EndpointSlice", es)
    assert es["ports"] == [{"port": 80, "name": "", "protocol": "TCP"}]
    pc = {"value": 10}
    apply_defaults("scheduling.k8s.io", "PriorityClass", pc)
    assert pc["preemptionPolicy"] == "PreemptLowerPriority"
    netpol = {"spec": {"egress": [{}]}}
    apply_defaults("networking.k8s.io", "NetworkPolicy", netpol)
    assert netpol["spec"]["policyTypes"] == ["Ingress", "Egress"]


WORKLOADS = [("apps", "Deployment"), ("apps", "ReplicaSet"), ("apps", "StatefulSet"),
             ("apps", "DaemonSet"), ("batch", "Job"), ("", "ReplicationController")]


def limited_spec() -> dict:
    c = {"name": "a", "image": "a:1", "ports": [{"containerPort": 80}],
         "resources": {"limits": {"cpu": "0.5", "memory": "1024Mi"}}}
    return {"hostNetwork": True, "containers": [dict(c)], "initContainers": [dict(c, name="i")],
            "resources": {"limits": {"cpu": "1"}}}


def test_only_pods_get_requests_from_limits_service_links_and_host_ports():
    templates = [{"spec": {"template": {"spec": limited_spec()}}} for _ in WORKLOADS]
    for (group, kind), obj in zip(WORKLOADS, templates):
        apply_defaults(group, kind, obj)
    cron = {"spec": {"jobTemplate": {"spec": {"template": {"spec": limited_spec()}}}}}
    apply_defaults("batch", "CronJob", cron)
    pt = {"template": {"spec": limited_spec()}}
    apply_defaults("", "PodTemplate", pt)
    specs = [t["spec"]["template"]["spec"] for t in templates] + [
        cron["spec"]["jobTemplate"]["spec"]["template"]["spec"], pt["template"]["spec"]]
    for spec in specs:
        for c in spec["containers"] + spec["initContainers"]:
            # Limits are written back canonically, and nothing more.
            assert c["resources"] == {"limits": {"cpu": "500m", "memory": "1Gi"}}
            assert c["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
        assert spec["resources"] == {"limits": {"cpu": "1"}}
        assert "enableServiceLinks" not in spec
    pod = {"spec": limited_spec()}
    apply_defaults("", "Pod", pod)
    spec = pod["spec"]
    for c in spec["containers"] + spec["initContainers"]:
        assert c["resources"]["requests"] == {"cpu": "500m", "memory": "1Gi"}
        assert c["ports"] == [{"containerPort": 80, "protocol": "TCP", "hostPort": 80}]
    assert spec["resources"] == {"limits": {"cpu": "1"}, "requests": {"cpu": "1"}}
    assert spec["enableServiceLinks"] is True
