"""The benchmarks keep running: each one's --quick mode must finish cleanly.
(No timing is asserted: these machines are shared and noisy.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.mark.parametrize("script", ["store_put.py", "api_create.py", "list_pods.py",
                                    "watch_fanout.py", "idle_rss.py", "scheduler_throughput.py",
                                    "sim_scale.py", "e2e_pod_startup.py", "scheduler_e2e.py",
                                    "scale.py", "testing.py", "fuzz.py", "memory_growth.py"])
def test_benchmark_quick_mode_runs(script: str) -> None:
    args = [sys.executable, str(BENCH / script)]
    args += ["-n", "2000"] if script == "store_put.py" else ["--quick"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=240,
                          cwd=BENCH.parent)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
