"""The real-node benchmark keeps running (its --quick mode; no timing asserted)."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_node_pod_start_quick_mode_runs(node_packages):
    proc = subprocess.run([sys.executable, str(REPO / "bench/node_pod_start.py"), "--quick"],
                          capture_output=True, text=True, timeout=240, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "bound->Running" in proc.stdout and "POST->Running" in proc.stdout


def test_node_churn_memory_quick_mode_runs(node_packages):
    proc = subprocess.run([sys.executable, str(REPO / "bench/node_churn_memory.py"), "--quick"],
                          capture_output=True, text=True, timeout=240, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "KB per pod since round 1" in proc.stdout
