"""pods/NAME/proxy and services/NAME/proxy on a real node: busybox httpd in
a pod behind a Service, reached through the API server with `kubectl get
--raw` and through `kubectl proxy` from a plain HTTP client on 127.0.0.1.
The API server dials the pod on this machine's pod network (its bridge).

The pages: / links to /sub/ (a link the proxy moves under its path), /sub
is redirected by httpd to /sub/ (a Location it moves likewise), and the CGI
/cgi-bin/env shows what reached the pod.
"""

from __future__ import annotations

import json
import re
import subprocess
import urllib.error
import urllib.request

from tests.conftest import KUBECTL, wait_for
from tests.e2e.conftest import wait_pod

IMAGE = "busybox:1.36"
SERVE = ("mkdir -p /www/sub /www/cgi-bin && "
         "printf '<a href=\"/sub/\">sub</a>\\n' > /www/index.html && "
         "echo in-sub > /www/sub/index.html && "
         "printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\nenv\\n' > /www/cgi-bin/env && "
         "chmod +x /www/cgi-bin/env && exec httpd -f -p 8080 -h /www")


def _web(node, ns: str) -> str:  # type: ignore[no-untyped-def]
    """Pod "web" (httpd on its declared port 8080) and Service "web" (port
    80, named http) with the pod as its endpoint; the pod's IP."""
    node.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "labels": {"app": "web"}},
             "spec": {"terminationGracePeriodSeconds": 1, "containers": [
                 {"name": "web", "image": IMAGE, "command": ["sh", "-c", SERVE],
                  "ports": [{"containerPort": 8080}],
                  "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1}}]}},
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
             "spec": {"selector": {"app": "web"},
                      "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}]}))
    pod = wait_pod(node, ns, "web", lambda p: any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in p.get("status", {}).get("conditions", [])), what="web Ready")

    def endpoint() -> bool:
        out = node.kubectl("get", "endpoints", "web", "-n", ns, "-o", "json", check=False)
        return out.returncode == 0 and any(s.get("addresses")
                                           for s in json.loads(out.stdout).get("subsets") or [])
    wait_for(endpoint, what="the service's endpoint")
    return pod["status"]["podIP"]


def test_kubectl_get_raw_reaches_pods_and_services(node, ns):  # type: ignore[no-untyped-def]
    ip = _web(node, ns)

    def raw(path: str) -> str:
        return node.kubectl("get", "--raw", f"/api/v1/namespaces/{ns}/{path}").stdout

    # The page's link is moved under the proxy path it was asked through.
    for via in ("pods/web:8080", "pods/web", "pods/http:web:8080", "services/web:80",
                "services/web:http", "services/http:web:80"):
        assert raw(f"{via}/proxy/") == f'<a href="/api/v1/namespaces/{ns}/{via}/proxy/sub/">sub</a>\n', via
    assert raw("services/web:80/proxy/sub/") == "in-sub\n"
    # httpd redirects /sub to /sub/; the Location comes back under the proxy
    # path, so kubectl, following it, lands on the page.
    assert raw("services/web:80/proxy/sub") == "in-sub\n"
    assert raw("pods/web:8080/proxy/sub?x=1") == "in-sub\n"
    # No path at all: the API server sends kubectl on to proxy/.
    assert raw("services/web:80/proxy").startswith("<a href=")
    # What the pod saw: upstream's X-Forwarded-Uri, and the method asked.
    env = raw("services/web:80/proxy/cgi-bin/env?a=b")
    assert f"HTTP_X_FORWARDED_URI=/api/v1/namespaces/{ns}/services/web:80/proxy/cgi-bin/env\n" in env, env
    assert "QUERY_STRING=a=b\n" in env and "REQUEST_METHOD=GET\n" in env, env
    posted = node.kubectl("create", "--raw", f"/api/v1/namespaces/{ns}/pods/web/proxy/cgi-bin/env",
                          "-f", "-", input='{"a": 1}').stdout
    assert "REQUEST_METHOD=POST\n" in posted and "CONTENT_LENGTH=8\n" in posted, posted
    # Nothing listens on 9999: upstream's words for a backend it cannot reach.
    refused = node.kubectl("get", "--raw", f"/api/v1/namespaces/{ns}/pods/web:9999/proxy/",
                           check=False)
    assert refused.returncode == 1
    assert refused.stderr.strip() == ("Error from server (ServiceUnavailable): error trying to "
                                      f"reach service: dial tcp {ip}:9999: connect: connection refused")


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return None


def test_a_browser_behind_kubectl_proxy(node, ns):  # type: ignore[no-untyped-def]
    _web(node, ns)
    proc = subprocess.Popen([KUBECTL, "proxy", "--port=0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={"KUBECONFIG": str(node.kubeconfig), "PATH": "/usr/bin:/bin"})
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.search(r"Starting to serve on (127\.0\.0\.1:\d+)", line)
        assert m, f"kubectl proxy said {line!r}"
        base = f"http://{m.group(1)}"
        svc = f"/api/v1/namespaces/{ns}/services/web:80/proxy"
        with urllib.request.urlopen(f"{base}{svc}/", timeout=10) as resp:
            assert resp.status == 200 and resp.headers["Content-Type"] == "text/html"
            page = resp.read().decode()
        link = re.search(r'href="([^"]+)"', page)
        assert link and link.group(1) == f"{svc}/sub/", page
        with urllib.request.urlopen(base + link.group(1), timeout=10) as resp:
            assert resp.read() == b"in-sub\n"
        # The redirects themselves, as the browser sees them.
        opener = urllib.request.build_opener(_NoRedirects)
        for path, status, location in ((f"{svc}/sub", 302, f"{svc}/sub/"),
                                       (svc, 301, f"{svc}/")):
            try:
                opener.open(base + path, timeout=10)
                raise AssertionError(f"{path} was not redirected")
            except urllib.error.HTTPError as e:
                assert (e.code, e.headers["Location"]) == (status, location), (path, e.headers)
    finally:
        proc.terminate()
        proc.wait(10)
