"""Which discovery document a request's Accept header gets, as
kube-apiserver 1.37 negotiates it."""

import pytest

from pinnace.apiserver.discovery import aggregated_content_type, negotiate

V2 = aggregated_content_type("v2")
V2BETA1 = aggregated_content_type("v2beta1")


@pytest.mark.parametrize(("accept", "want"), [
    (f"{V2},{V2BETA1},application/json", "v2"),  # kubectl 1.30+
    (f"{V2},application/json", "v2"),
    (V2, "v2"),
    (f"{V2BETA1},application/json", None),  # kubectl 1.27-1.29: the legacy documents
    (V2BETA1, None),  # nothing served is asked for: the legacy documents
    ("application/json", None),
    ("", None),
    ("*/*", None),
    (f"application/json, {V2}", None),  # the first acceptable clause decides
    (f"application/json;q=0.9, {V2}", "v2"),  # ... in the order of q
    (f"*/*, {V2}", "v2"),  # concrete types before wildcards
    (f"application/json;g=apidiscovery.k8s.io;v=v3;as=APIGroupDiscoveryList, {V2}", "v2"),
    (f"application/vnd.kubernetes.protobuf;g=apidiscovery.k8s.io;v=v2;as="
     f"APIGroupDiscoveryList, {V2}", "v2"),  # discovery is written as JSON only
    ('application/json; g="apidiscovery.k8s.io"; v=v2; as=APIGroupDiscoveryList; profile=x',
     "v2"),
])
def test_negotiate(accept: str, want: str | None) -> None:
    assert negotiate(accept) == want
