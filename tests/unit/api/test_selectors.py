"""Label and field selectors as kubectl users meet them (-l / --field-selector)."""

import pytest

from pinnace.api.selectors import (
    FieldSelector,
    LabelSelector,
    SelectorError,
    convert_field_selector,
    field_error_message,
    field_set,
    format_label_selector,
    format_labels,
    label_selector_from_dict,
    parse_field_selector,
    parse_label_selector,
    selected_name,
    unsupported_field,
)

WEB = {"app": "web", "tier": "frontend", "version": "3"}


@pytest.mark.parametrize("sel,expected", [
    ("app=web", True),
    ("app==web", True),
    ("app!=web", False),
    ("app!=db", True),
    ("missing!=x", True),
    ("app in (web,db)", True),
    ("app in (db)", False),
    ("app notin (db)", True),
    ("missing notin (db)", True),
    ("app", True),
    ("!app", False),
    ("!missing", True),
    ("app=web,tier=frontend", True),
    ("app=web,tier=backend", False),
    ("version>2", True),
    ("version<2", False),
    ("app>2", False),
    ("  app = web  ", True),
    ("", True),
])
def test_label_selector_matches(sel, expected):
    assert parse_label_selector(sel).matches(WEB) is expected


def test_label_selector_string_is_normalised_and_sorted():
    s = parse_label_selector("z notin (b,a), x in (foo,,baz),y,!w")
    assert str(s) == "!w,x in (,baz,foo),y,z notin (a,b)"
    assert str(parse_label_selector("env in (prod, qa)")) == "env in (prod,qa)"


@pytest.mark.parametrize("sel,message", [
    ("a=b c", "found 'c', expected: ',' or 'end of string'"),
    ("a in b", "unable to parse requirement: found 'b' expected: '('"),
    ("!a=b", "found '=', expected: ',' or 'end of string'"),
    ("a,", "found '', expected: identifier after ','"),
    (",a", "found ',', expected: !, identifier, or 'end of string'"),
    ("x in (a b)", "unable to parse requirement: found 'b', expected: ',' or ')'"),
    ("a=(b", "unable to parse requirement: found '(', expected: identifier"),
])
def test_label_selector_syntax_errors_use_upstream_wording(sel, message):
    with pytest.raises(SelectorError) as e:
        parse_label_selector(sel)
    assert str(e.value) == message


def test_invalid_label_key_and_value_messages():
    with pytest.raises(SelectorError) as e:
        parse_label_selector("-a=b")
    assert str(e.value) == (
        "unable to parse requirement: <nil>: Invalid value: \"-a\": name part must consist of "
        "alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric "
        "character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
        "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')")
    with pytest.raises(SelectorError) as e:
        parse_label_selector("a=" + "x" * 64)
    assert str(e.value).startswith('unable to parse requirement: values[0][a]: Invalid value: "xxx')
    assert str(e.value).endswith("must be no more than 63 characters")


def test_metav1_label_selector():
    sel = label_selector_from_dict({
        "matchLabels": {"app": "web"},
        "matchExpressions": [{"key": "tier", "operator": "In", "values": ["frontend", "edge"]},
                             {"key": "canary", "operator": "DoesNotExist"}]})
    assert sel.matches(WEB)
    assert not sel.matches({"app": "web", "tier": "frontend", "canary": "1"})
    assert str(sel) == "app=web,!canary,tier in (edge,frontend)"
    # nil selects nothing, empty selects everything
    assert not label_selector_from_dict(None).matches(WEB)
    assert label_selector_from_dict({}).matches(WEB)
    with pytest.raises(SelectorError, match='"Bogus" is not a valid label selector operator'):
        label_selector_from_dict({"matchExpressions": [{"key": "a", "operator": "Bogus"}]})


def test_plain_map_selector_for_rc_and_service():
    sel = label_selector_from_dict({"app": "web", "tier": "frontend"})
    assert sel.matches(WEB) and not sel.matches({"app": "web"})
    assert label_selector_from_dict(None, plain_map=True).matches(WEB)
    assert format_labels({"b": "2", "a": "1"}) == "a=1,b=2"
    assert format_labels({}) == "<none>"
    assert format_label_selector(None) == "<none>"
    assert format_label_selector({"matchLabels": {"app": "web"}}) == "app=web"


def test_requires_exact_match():
    assert parse_label_selector("app=web,x").requires_exact_match("app") == "web"
    assert parse_label_selector("app!=web").requires_exact_match("app") is None
    assert LabelSelector.nothing().matches({}) is False


def test_field_selector_parse_and_match():
    sel = parse_field_selector("status.phase=Running,spec.nodeName!=n2")
    assert sel.matches({"status.phase": "Running", "spec.nodeName": "n1"})
    assert not sel.matches({"status.phase": "Running", "spec.nodeName": "n2"})
    assert parse_field_selector("metadata.name==x").matches({"metadata.name": "x"})
    # an absent field is the empty string
    assert parse_field_selector("spec.nodeName=").matches({})
    assert parse_field_selector("").empty()


def test_field_selector_escapes():
    sel = parse_field_selector(r"metadata.name=a\,b\=c\\d")
    assert sel.matches({"metadata.name": "a,b=c\\d"})
    assert str(sel) == r"metadata.name=a\,b\=c\\d"
    with pytest.raises(SelectorError) as e:
        parse_field_selector(r"metadata.name=a\x")
    assert str(e.value) == r"invalid field selector: invalid escape sequence: \x"
    with pytest.raises(SelectorError) as e:
        parse_field_selector("metadata.name=a=b")
    assert str(e.value) == "invalid field selector: unescaped character in value: 61"


def test_field_selector_syntax_error():
    with pytest.raises(SelectorError) as e:
        parse_field_selector("metadata.name")
    assert str(e.value) == "invalid selector: 'metadata.name'; can't understand 'metadata.name'"


def test_supported_fields_and_messages():
    assert not unsupported_field("", "pods", "spec.nodeName")
    assert unsupported_field("", "pods", "spec.foo")
    assert field_error_message("", "pods", "spec.foo") == "field label not supported: spec.foo"
    assert unsupported_field("", "nodes", "metadata.namespace")
    assert not unsupported_field("apps", "deployments", "metadata.name")
    assert field_error_message("apps", "deployments", "spec.replicas") == (
        '"spec.replicas" is not a known field selector: only "metadata.name", '
        '"metadata.namespace"')
    with pytest.raises(SelectorError, match="field label not supported: foo"):
        convert_field_selector("", "pods", parse_field_selector("foo=bar"))
    # old clients' spec.host means spec.nodeName
    conv = convert_field_selector("", "pods", parse_field_selector("spec.host=n1"))
    assert conv.terms[0].field == "spec.nodeName"


def test_pod_field_set_and_selection():
    pod = {"metadata": {"name": "web-0", "namespace": "default"},
           "spec": {"nodeName": "n1", "restartPolicy": "Always", "schedulerName":
                    "default-scheduler", "serviceAccountName": "default"},
           "status": {"phase": "Running", "podIP": "10.0.0.5", "podIPs": [{"ip": "10.0.0.5"}]}}
    fs = field_set("", "pods", pod)
    assert fs["metadata.name"] == "web-0" and fs["metadata.namespace"] == "default"
    assert fs["spec.nodeName"] == "n1" and fs["spec.hostNetwork"] == "false"
    assert fs["status.podIP"] == "10.0.0.5" and fs["status.phase"] == "Running"
    assert parse_field_selector("status.phase!=Succeeded,spec.nodeName=n1").matches(fs)


def test_other_field_sets():
    node = {"metadata": {"name": "n1"}, "spec": {"unschedulable": True}}
    assert field_set("", "nodes", node) == {"metadata.name": "n1", "spec.unschedulable": "true"}
    ev = {"metadata": {"name": "e", "namespace": "ns"}, "involvedObject": {"kind": "Pod",
          "name": "web-0"}, "reason": "Started", "type": "Normal",
          "source": {"component": "kubelet"}}
    fs = field_set("", "events", ev)
    assert fs["involvedObject.name"] == "web-0" and fs["source"] == "kubelet"
    rc = {"metadata": {"name": "rc", "namespace": "ns"}, "status": {"replicas": 2}}
    assert field_set("", "replicationcontrollers", rc)["status.replicas"] == "2"
    secret = {"metadata": {"name": "s", "namespace": "ns"}, "type": "Opaque"}
    assert field_set("", "secrets", secret)["type"] == "Opaque"


def test_selected_name_for_single_object_watch():
    assert selected_name(parse_field_selector("metadata.name=web-0")) == "web-0"
    assert selected_name(parse_field_selector("metadata.name!=web-0")) is None
    assert selected_name(FieldSelector()) is None
