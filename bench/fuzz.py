"""The long fuzz run: made-up objects (tests/fuzzing.py, from the server's own
OpenAPI v3 schemas) created, read back, merge-patched and deleted, and odd
list parameters, against a fresh `pinnace apiserver` on 127.0.0.1.

    python bench/fuzz.py              # 2,000 objects per kind
    python bench/fuzz.py --quick      # 100 per kind (< 20 s)
    python bench/fuzz.py --seed 7     # another set of cases

Prints the status histogram per kind, and every 5xx or accepted object that
could not be read back (the suite's test_fuzz.py asserts there are none, on
a few hundred cases). Not a timing benchmark: there is no baseline.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import console, print_table, progress, running_server  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402

from tests.fuzzing import Schemas  # noqa: E402
from tests.integration.test_fuzz import KINDS  # noqa: E402


def admin(data_dir: Path, url: str) -> Any:
    """The suite's admin JSON client (it needs only the data dir and URL)."""
    from types import SimpleNamespace

    from tests.conftest import HTTP

    return HTTP(SimpleNamespace(data_dir=data_dir, url=url))  # type: ignore[arg-type]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("-n", type=int, default=2000, help="objects per kind")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    n = 100 if args.quick else args.n
    rows: list[list[Any]] = []
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="pinnace-fuzz-") as d, \
            running_server("memory", Path(d)) as server, progress() as bar:
        http = admin(server.data_dir, server.url)
        http.call("POST", "/api/v1/namespaces", {"metadata": {"name": "fuzz"}})
        task = bar.add_task("fuzzing", total=n * len(KINDS))
        for doc, definition, api_version, kind, plural, base in KINDS:
            seen = fuzz_kind(http, n, args.seed, problems, lambda: bar.advance(task),
                             doc, definition, api_version, kind, plural, base)
            rows.append([kind, n, *(seen.get(c, 0) for c in (200, 201, 400, 409, 413, 422)),
                         sum(v for c, v in seen.items() if c >= 500)])
    print_table("Status histogram (POST, and PATCH of accepted objects)",
                ["kind", "cases", "200", "201", "400", "409", "413", "422", "5xx"], rows)
    for p in problems[:50]:
        console.print(f"[red]{p}[/]")
    console.print(f"{len(problems)} problems")
    return 1 if problems else 0


def fuzz_kind(http: Any, n: int, seed_: int, problems: list[str], tick: Any, doc: str,
              definition: str, api_version: str, kind: str, plural: str,
              base: dict[str, Any]) -> Counter[int]:
    code, openapi = http.call("GET", f"/openapi/v3/{doc}")
    schemas = Schemas(openapi)
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    url = f"{prefix}/namespaces/fuzz/{plural}"
    seen: Counter[int] = Counter()

    @settings(max_examples=n, deadline=None, database=None, derandomize=not seed_,
              suppress_health_check=list(HealthCheck))
    @given(obj=schemas.kind(definition, api_version, kind, base),
           patch=schemas.obj(schemas.defs[definition], 1))
    def case(obj: dict[str, Any], patch: dict[str, Any]) -> None:
        tick()
        try:
            code, body = http.call("POST", url, json.dumps(obj).encode())
        except OSError as e:
            problems.append(f"POST {url}: {e!r}: {json.dumps(obj)[:300]}")
            return
        seen[code] += 1
        if code >= 500:
            problems.append(f"POST {url} -> {code}: {json.dumps(obj)[:300]}")
        if code != 201:
            return
        name = body["metadata"]["name"]
        code, _ = http.call("GET", f"{url}/{name}")
        if code != 200:
            problems.append(f"accepted but GET -> {code}: {json.dumps(obj)[:300]}")
        code, _ = http.call("PATCH", f"{url}/{name}", json.dumps(patch).encode(),
                            ctype="application/merge-patch+json")
        seen[code] += 1
        if code >= 500:
            problems.append(f"PATCH -> {code}: {json.dumps(patch)[:300]}")
        http.call("DELETE", f"{url}/{name}?gracePeriodSeconds=0")

    if seed_:
        from hypothesis import seed

        case = seed(seed_)(case)
    case()
    return seen


if __name__ == "__main__":
    sys.exit(main())
