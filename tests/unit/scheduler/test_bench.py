"""The throughput benchmark's quick mode, for correctness only."""

from __future__ import annotations

import importlib.util
from pathlib import Path


def test_quick_benchmark_places_every_pod(capsys) -> None:  # type: ignore[no-untyped-def]
    path = Path(__file__).resolve().parents[3] / "bench" / "scheduler_throughput.py"
    spec = importlib.util.spec_from_file_location("scheduler_throughput", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = mod.main(["--quick"])
    assert out["placed"] == 500 and out["naive_placed"] == 50
    assert "pods/s" in capsys.readouterr().out
