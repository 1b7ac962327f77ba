"""Validation messages as kubectl shows them from a real kube-apiserver."""

import copy

import pytest

from pinnace.api.defaults import apply_defaults
from pinnace.api.field import aggregate
from pinnace.api.validation import validate, validate_status

SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "
    r"for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")


def mysql_rc():
    return {"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "mysql"},
            "spec": {"replicas": 1, "selector": {"app": "mysql"}, "template": {
                "metadata": {"labels": {"app": "mysql"}},
                "spec": {"containers": [{"name": "mysql", "image": "mysql",
                                         "ports": [{"containerPort": 3306}],
                                         "env": [{"name": "MYSQL_ROOT_PASSWORD",
                                                  "value": "123456"}]}]}}}}


def myweb_rc():
    return {"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "myweb"},
            "spec": {"replicas": 2, "selector": {"app": "myweb"}, "template": {
                "metadata": {"labels": {"app": "myweb"}},
                "spec": {"containers": [{"name": "myweb", "image": "kubeguide/tomcat-app:v1",
                                         "ports": [{"containerPort": 8080}],
                                         "env": [{"name": "MYSQL_SERVICE_HOST",
                                                  "value": "mysql"}]}]}}}}


def mysql_svc():
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "mysql"},
            "spec": {"ports": [{"port": 3306}], "selector": {"app": "mysql"}}}


def myweb_svc():
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "myweb"},
            "spec": {"type": "NodePort", "ports": [{"port": 8080, "nodePort": 30001}],
                     "selector": {"app": "myweb"}}}


def check(group, kind, obj, old=None):
    apply_defaults(group, kind, obj)
    return [str(e) for e in validate(group, kind, obj, old)]


@pytest.mark.parametrize("make", [mysql_rc, myweb_rc])
def test_classic_rcs_are_valid(make):
    assert check("", "ReplicationController", make()) == []


@pytest.mark.parametrize("make", [mysql_svc, myweb_svc])
def test_classic_services_are_valid(make):
    assert check("", "Service", make()) == []


def test_rc_bad_name():
    rc = mysql_rc()
    rc["metadata"]["name"] = "mysql#RC"
    assert check("", "ReplicationController", rc) == [
        'metadata.name: Invalid value: "mysql#RC": ' + SUBDOMAIN_MSG]


def test_rc_selector_mismatch():
    rc = mysql_rc()
    rc["spec"]["selector"] = {"app": "mysql-db"}
    assert check("", "ReplicationController", rc) == [
        ('spec.template.metadata.labels: Invalid value: map[string]string{"app":"mysql"}: '
        "selector does not match template labels")]


def test_rc_missing_image_duplicate_names_and_bad_port():
    rc = myweb_rc()
    containers = rc["spec"]["template"]["spec"]["containers"]
    del containers[0]["image"]
    containers[0]["ports"][0]["containerPort"] = 70000
    containers.append({"name": "myweb", "image": "busybox"})
    errs = check("", "ReplicationController", rc)
    assert errs == [
        "spec.template.spec.containers[0].image: Required value",
        ("spec.template.spec.containers[0].ports[0].containerPort: Invalid value: 70000: "
        "must be between 1 and 65535, inclusive"),
        'spec.template.spec.containers[1].name: Duplicate value: "myweb"',
    ]


def test_rc_negative_replicas_and_restart_policy():
    rc = mysql_rc()
    rc["spec"]["replicas"] = -1
    rc["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    assert check("", "ReplicationController", rc) == [
        "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
        'spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always"',
    ]


def test_service_node_port_on_cluster_ip():
    svc = mysql_svc()
    svc["spec"]["ports"][0]["nodePort"] = 30002
    assert check("", "Service", svc) == [
        "spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"]


def test_service_port_out_of_range_and_names():
    svc = myweb_svc()
    svc["spec"]["ports"] = [{"port": 70000}, {"port": 80, "name": "http"}]
    assert check("", "Service", svc) == [
        "spec.ports[0].name: Required value",
        "spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive",
        # targetPort defaulted from port, so it is out of range too, as upstream reports
        "spec.ports[0].targetPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
    ]


def test_service_name_is_dns1035():
    svc = mysql_svc()
    svc["metadata"]["name"] = "1mysql"
    assert check("", "Service", svc) == [
        ('metadata.name: Invalid value: "1mysql": a DNS-1035 label must consist of lower case '
        "alphanumeric characters or '-', start with an alphabetic character, and end with an "
        "alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is "
        "'[a-z]([-a-z0-9]*[a-z0-9])?')")]


def test_service_type_and_ports_required():
    svc = {"metadata": {"name": "x"}, "spec": {"type": "Bogus"}}
    assert check("", "Service", svc) == [
        "spec.ports: Required value",
        ('spec.type: Unsupported value: "Bogus": supported values: "ClusterIP", "ExternalName", '
        '"LoadBalancer", "NodePort"')]


def test_service_cluster_ip_immutable():
    old = mysql_svc()
    apply_defaults("", "Service", old)
    old["spec"]["clusterIP"] = "10.0.0.5"
    old["spec"]["clusterIPs"] = ["10.0.0.5"]
    new = copy.deepcopy(old)
    new["spec"]["clusterIP"] = "10.0.0.6"
    new["spec"]["clusterIPs"] = ["10.0.0.6"]
    assert [str(e) for e in validate("", "Service", new, old)] == [
        'spec.clusterIPs[0]: Invalid value: []string{"10.0.0.6"}: may not change once set']


def test_aggregate_message_as_kubectl_prints():
    rc = mysql_rc()
    rc["metadata"]["name"] = "mysql#RC"
    rc["spec"]["selector"] = {"app": "x"}
    apply_defaults("", "ReplicationController", rc)
    msg = aggregate(validate("", "ReplicationController", rc))
    assert msg.startswith('[metadata.name: Invalid value: "mysql#RC": a lowercase RFC 1123')
    assert "selector does not match template labels]" in msg


def pod():
    return {"metadata": {"name": "web", "namespace": "default"},
            "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]}}


def test_pod_requires_containers():
    p = pod()
    p["spec"]["containers"] = []
    assert check("", "Pod", p) == ["spec.containers: Required value"]


def test_pod_requests_over_limits():
    p = pod()
    p["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "1"}, "requests": {"cpu": "2"}}
    assert check("", "Pod", p) == [
        ('spec.containers[0].resources.requests: Invalid value: "2": '
        "must be less than or equal to cpu limit of 1")]


def test_pod_volume_mount_must_name_a_volume():
    p = pod()
    p["spec"]["containers"][0]["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
    assert check("", "Pod", p) == ['spec.containers[0].volumeMounts[0].name: Not found: "data"']


def test_pod_bad_policies_and_protocol():
    p = pod()
    p["spec"]["restartPolicy"] = "Sometimes"
    p["spec"]["dnsPolicy"] = "Weird"
    p["spec"]["containers"][0]["ports"] = [{"containerPort": 80, "protocol": "ICMP"}]
    assert check("", "Pod", p) == [
        ('spec.containers[0].ports[0].protocol: Unsupported value: "ICMP": supported values: '
        '"SCTP", "TCP", "UDP"'),
        ('spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", '
        '"OnFailure", "Never"'),
        ('spec.dnsPolicy: Unsupported value: "Weird": supported values: "ClusterFirstWithHostNet", '
        '"ClusterFirst", "Default", "None"'),
    ]


def test_pod_update_only_image_may_change():
    old = pod()
    apply_defaults("", "Pod", old)
    new = copy.deepcopy(old)
    new["spec"]["containers"][0]["image"] = "nginx:1.26"
    assert validate("", "Pod", new, old) == []
    new["spec"]["containers"][0]["ports"] = [{"containerPort": 80, "protocol": "TCP"}]
    errs = [str(e) for e in validate("", "Pod", new, old)]
    assert len(errs) == 1
    assert errs[0].startswith(
        "spec: Forbidden: pod updates may not change fields other than "
        "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,"
        "`spec.tolerations` (only additions to existing tolerations),"
        "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously "
        "negative)")


def test_pod_update_may_add_tolerations_but_not_containers():
    old = pod()
    apply_defaults("", "Pod", old)
    new = copy.deepcopy(old)
    new["spec"]["tolerations"] = [{"key": "k", "operator": "Exists"}]
    assert validate("", "Pod", new, old) == []
    new["spec"]["containers"].append({"name": "b", "image": "busybox"})
    assert [str(e) for e in validate("", "Pod", new, old)] == [
        "spec.containers: Forbidden: pod updates may not add or remove containers"]


def test_pod_scheduling_gates():
    p = pod()
    p["spec"]["schedulingGates"] = [{"name": "example.com/quota"}, {"name": "bad name"},
                                    {"name": "example.com/quota"}]
    assert check("", "Pod", p) == [
        ('spec.schedulingGates[1]: Invalid value: "bad name": name part must consist of '
         "alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric "
         "character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
         "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"),
        'spec.schedulingGates[2]: Duplicate value: "example.com/quota"']
    p = pod()
    p["spec"].update(schedulingGates=[{"name": "example.com/quota"}], nodeName="n1")
    assert check("", "Pod", p) == [
        "spec.nodeName: Forbidden: cannot be set until all schedulingGates have been cleared"]


def test_pod_update_may_only_remove_scheduling_gates():
    old = pod()
    old["spec"]["schedulingGates"] = [{"name": "a"}, {"name": "b"}]
    apply_defaults("", "Pod", old)
    new = copy.deepcopy(old)
    new["spec"]["schedulingGates"] = [{"name": "b"}]
    assert validate("", "Pod", new, old) == []
    del new["spec"]["schedulingGates"]
    assert validate("", "Pod", new, old) == []
    # A gated pod may still be narrowed down.
    new["spec"]["nodeSelector"] = {"zone": "a"}
    assert validate("", "Pod", new, old) == []
    new["spec"]["schedulingGates"] = [{"name": "x"}, {"name": "a"}, {"name": "y"}]
    assert [str(e) for e in validate("", "Pod", new, old)] == [
        "spec.schedulingGates[0].name: Forbidden: only deletion is allowed, but found new "
        "scheduling gate 'x'",
        "spec.schedulingGates[2].name: Forbidden: only deletion is allowed, but found new "
        "scheduling gate 'y'"]


def test_metadata_immutable_on_update():
    old = pod()
    old["metadata"]["uid"] = "u1"
    apply_defaults("", "Pod", old)
    new = copy.deepcopy(old)
    new["metadata"]["uid"] = "u2"
    assert [str(e) for e in validate("", "Pod", new, old)] == [
        'metadata.uid: Invalid value: "u2": field is immutable']


def test_labels_and_annotations():
    p = pod()
    p["metadata"]["labels"] = {"bad key": "v", "ok": "bad value!"}
    p["metadata"]["annotations"] = {"big": "x" * (256 * 1024)}
    errs = check("", "Pod", p)
    assert errs[0].startswith('metadata.labels: Invalid value: "bad key": name part must consist')
    assert errs[1].startswith('metadata.labels: Invalid value: "bad value!": a valid label must')
    assert errs[2] == "metadata.annotations: Too long: may not be more than 262144 bytes"


def test_name_required_and_generate_name_checked():
    p = pod()
    del p["metadata"]["name"]
    assert check("", "Pod", p) == [
        "metadata.name: Required value: name or generateName is required"]
    # The server fills the name in from generateName before validating.
    p["metadata"].update(generateName="web-", name="web-x7k2p")
    assert check("", "Pod", p) == []
    p["metadata"]["generateName"] = "Web-"
    assert check("", "Pod", p)[0].startswith('metadata.generateName: Invalid value: "Web-"')


def deployment():
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "nginx"},
            "spec": {"selector": {"matchLabels": {"app": "nginx"}}, "template": {
                "metadata": {"labels": {"app": "nginx"}},
                "spec": {"containers": [{"name": "nginx", "image": "nginx"}]}}}}


def test_deployment_valid_and_mismatch():
    assert check("apps", "Deployment", deployment()) == []
    dep = deployment()
    dep["spec"]["selector"]["matchLabels"]["app"] = "web"
    assert check("apps", "Deployment", dep) == [
        ('spec.template.metadata.labels: Invalid value: map[string]string{"app":"nginx"}: '
        "`selector` does not match template `labels`")]


def test_deployment_selector_required_and_immutable():
    dep = deployment()
    del dep["spec"]["selector"]
    assert check("apps", "Deployment", dep) == ["spec.selector: Required value"]
    old = deployment()
    apply_defaults("apps", "Deployment", old)
    new = copy.deepcopy(old)
    new["spec"]["selector"] = {"matchLabels": {"app": "nginx2"}}
    new["spec"]["template"]["metadata"]["labels"] = {"app": "nginx2"}
    assert [str(e) for e in validate("apps", "Deployment", new, old)] == [
        ('spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string'
        '{"app":"nginx2"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: '
        "field is immutable")]


def test_deployment_strategy_rules():
    dep = deployment()
    dep["spec"]["strategy"] = {"type": "RollingUpdate",
                               "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}}
    assert check("apps", "Deployment", dep) == [
        ("spec.strategy.rollingUpdate.maxUnavailable: Invalid value: "
        'intstr.IntOrString{Type:0, IntVal:0, StrVal:""}: may not be 0 when `maxSurge` is 0')]
    dep = deployment()
    dep["spec"]["strategy"] = {"type": "Recreate", "rollingUpdate": {}}
    assert check("apps", "Deployment", dep) == [
        ("spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is "
        "'Recreate'")]


def test_statefulset_and_daemonset():
    sts = deployment()
    sts["spec"]["template"]["spec"]["restartPolicy"] = "OnFailure"
    assert check("apps", "StatefulSet", sts) == [
        ('spec.template.spec.restartPolicy: Unsupported value: "OnFailure": supported values: '
        '"Always"')]
    ds = deployment()
    ds["spec"]["selector"] = {}
    errs = check("apps", "DaemonSet", ds)
    assert errs[0].endswith("empty selector is invalid for daemonset")


def job():
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "pi"},
            "spec": {"selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u"}},
                     "template": {"metadata": {"labels": {
                         "batch.kubernetes.io/controller-uid": "u"}},
                         "spec": {"restartPolicy": "Never",
                                  "containers": [{"name": "pi", "image": "perl"}]}}}}


def test_job_rules():
    assert check("batch", "Job", job()) == []
    j = job()
    j["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    j["spec"]["backoffLimit"] = -1
    assert check("batch", "Job", j) == [
        "spec.backoffLimit: Invalid value: -1: must be greater than or equal to 0",
        'spec.template.spec.restartPolicy: Required value: valid values: "OnFailure", "Never"']
    j["spec"]["template"]["spec"]["restartPolicy"] = "Sometimes"
    # An unknown policy is refused by the pod template's check and the Job's.
    assert check("batch", "Job", j)[1:] == [
        ('spec.template.spec.restartPolicy: Unsupported value: "Sometimes": supported values: '
         '"Always", "OnFailure", "Never"'),
        ('spec.template.spec.restartPolicy: Unsupported value: "Sometimes": supported values: '
         '"OnFailure", "Never"')]


def cron(schedule):
    return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "hello"},
            "spec": {"schedule": schedule, "jobTemplate": {"spec": {"template": {"spec": {
                "restartPolicy": "OnFailure",
                "containers": [{"name": "hello", "image": "busybox"}]}}}}}}


@pytest.mark.parametrize("schedule", ["*/1 * * * *", "@hourly", "0 0 * * MON-FRI", "@every 5m",
                                      "0 12 1 jan,jul ?"])
def test_cronjob_good_schedules(schedule):
    assert check("batch", "CronJob", cron(schedule)) == []


@pytest.mark.parametrize(("schedule", "msg"), [
    ("* * *", "expected exactly 5 fields, found 3: [* * *]"),
    ("@sometimes", "unrecognized descriptor: @sometimes"),
    ("70 * * * *", "end of range (70) above maximum (59): 70"),
    ("x * * * *", 'failed to parse int from x: strconv.Atoi: parsing "x": invalid syntax'),
])
def test_cronjob_bad_schedules(schedule, msg):
    assert check("batch", "CronJob", cron(schedule)) == [
        f'spec.schedule: Invalid value: "{schedule}": {msg}']


def test_cronjob_concurrency_policy():
    c = cron("@daily")
    c["spec"]["concurrencyPolicy"] = "Sometimes"
    assert check("batch", "CronJob", c) == [
        ('spec.concurrencyPolicy: Unsupported value: "Sometimes": supported values: "Allow", '
        '"Forbid", "Replace"')]


def test_configmap_and_secret_keys():
    cm = {"metadata": {"name": "c"}, "data": {"bad key": "v", "good.key": "v"}}
    assert check("", "ConfigMap", cm) == [
        ('data[bad key]: Invalid value: "bad key": a valid config key must consist of '
        "alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or "
        "'key-name', regex used for validation is '[-._a-zA-Z0-9]+')")]
    secret = {"metadata": {"name": "s"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "eA=="}}
    assert check("", "Secret", secret) == ["data[tls.key]: Required value"]


def test_namespace_name_is_label():
    assert check("", "Namespace", {"metadata": {"name": "a.b"}}) == [
        'metadata.name: Invalid value: "a.b": must not contain dots']


def test_rbac_rules_and_role_ref():
    role = {"metadata": {"name": "r", "namespace": "d"}, "rules": [{"apiGroups": [""],
                                                                    "resources": ["pods"]}]}
    assert check("rbac.authorization.k8s.io", "Role", role) == [
        "rules[0].verbs: Required value: verbs must contain at least one value"]
    rb = {"metadata": {"name": "b", "namespace": "d"},
          "roleRef": {"kind": "Role", "name": "r"},
          "subjects": [{"kind": "User", "name": "alice"}]}
    assert check("rbac.authorization.k8s.io", "RoleBinding", rb) == []
    new = copy.deepcopy(rb)
    new["roleRef"]["name"] = "other"
    assert [str(e) for e in validate("rbac.authorization.k8s.io", "RoleBinding", new, rb)] == [
        ('roleRef: Invalid value: rbac.RoleRef{APIGroup:"rbac.authorization.k8s.io", '
        'Kind:"Role", Name:"other"}: cannot change roleRef')]


def test_priority_class_value_range():
    pc = {"metadata": {"name": "high"}, "value": 2_000_000_000}
    assert check("scheduling.k8s.io", "PriorityClass", pc) == [
        "value: Forbidden: maximum allowed value of a user defined priority is 1000000000"]


def test_kinds_without_rules_get_metadata_checks():
    obj = {"metadata": {"name": "Bad_Name"}}
    errs = check("storage.k8s.io", "CSIStorageCapacity", obj)
    assert errs and errs[0].startswith('metadata.name: Invalid value: "Bad_Name"')
    assert check("example.com", "Widget", {"metadata": {"name": "Bad_Name"}}) == []


def test_hpa_and_pdb():
    hpa = {"metadata": {"name": "h"}, "spec": {"scaleTargetRef": {"kind": "Deployment",
                                                                   "name": "web"},
                                                "minReplicas": 3, "maxReplicas": 2}}
    assert check("autoscaling", "HorizontalPodAutoscaler", hpa) == [
        "spec.maxReplicas: Invalid value: 2: must be greater than or equal to `minReplicas`"]
    pdb = {"metadata": {"name": "p"}, "spec": {"minAvailable": 1, "maxUnavailable": 1}}
    assert check("policy", "PodDisruptionBudget", pdb)[0].endswith(
        "minAvailable and maxUnavailable cannot be both set")


def test_status_update_checks():
    old = {"metadata": {"name": "r", "uid": "1"}, "status": {"replicas": 1}}
    new = copy.deepcopy(old)
    new["status"] = {"replicas": 1, "readyReplicas": 2}
    assert [str(e) for e in validate_status("apps", "ReplicaSet", new, old)] == [
        "status.readyReplicas: Invalid value: 2: cannot be greater than status.replicas"]


def statefulset(mount: str) -> dict:
    return {"metadata": {"name": "db", "namespace": "default"},
            "spec": {"serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                     "template": {"metadata": {"labels": {"app": "db"}}, "spec": {
                         "containers": [{"name": "db", "image": "postgres:16", "volumeMounts": [
                             {"name": mount, "mountPath": "/data"}]}]}},
                     "volumeClaimTemplates": [{"metadata": {"name": "data"}}]}}


def test_statefulset_claim_templates_count_as_volumes():
    assert check("apps", "StatefulSet", statefulset("data")) == []
    assert check("apps", "StatefulSet", statefulset("other")) == [
        'spec.template.spec.containers[0].volumeMounts[0].name: Not found: "other"']
    # Only a StatefulSet's pods get them: a Deployment's template has no such volume.
    dep = statefulset("data")
    dep["spec"].pop("serviceName")
    dep["spec"]["template"]["spec"]["volumes"] = [{"name": "x", "emptyDir": {}}]
    assert check("apps", "Deployment", dep) == [
        'spec.template.spec.containers[0].volumeMounts[0].name: Not found: "data"']


def test_secret_keys_are_checked_as_data():
    secret = {"metadata": {"name": "s", "namespace": "default"}, "data": {"a/b": "eA=="}}
    assert check("", "Secret", secret)[0].startswith('data[a/b]: Invalid value: "a/b"')
    tls = {"metadata": {"name": "t", "namespace": "default"}, "type": "kubernetes.io/tls",
           "data": {"tls.crt": "eA=="}}
    assert check("", "Secret", tls) == ["data[tls.key]: Required value"]
