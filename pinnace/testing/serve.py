"""`python -m pinnace.testing.serve SPEC`: a test cluster in a process of
its own, for ``Cluster(subprocess=True)``.

SPEC is the cluster's settings as JSON. The process prints ``ready URL``
once the cluster serves, then reads commands from stdin, one per line, and
answers each with one line (``ok`` or ``error ...``): ``advance SECONDS``
moves the clock; ``stop-node NAME`` and ``start-node NAME`` fail and
revive a simulated node.
End of input stops the cluster.
"""

from __future__ import annotations

import json
import logging
import sys

from .cluster import Cluster


def main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cluster = Cluster(controllers=spec["controllers"], scheduler=spec["scheduler"],
                      nodes=spec["nodes"], datastore=spec["datastore"], data_dir=spec["data_dir"],
                      stages=spec.get("stages"), options=spec.get("options"),
                      node_prefix=spec.get("node_prefix", "node-"))
    try:
        cluster.start()
    except Exception as e:  # the parent shows our stderr
        print(f"error {e}", flush=True)
        return 1
    print(f"ready {cluster.url}", flush=True)
    try:
        for line in sys.stdin:
            cmd, _, arg = line.strip().partition(" ")
            try:
                if cmd == "advance":
                    cluster.advance(float(arg))
                    print("ok", flush=True)
                elif cmd in ("stop-node", "start-node"):
                    (cluster.stop_node if cmd == "stop-node" else cluster.start_node)(arg)
                    print("ok", flush=True)
                else:
                    print(f"error unknown command {cmd!r}", flush=True)
            except Exception as e:
                print(f"error {e}", flush=True)
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
