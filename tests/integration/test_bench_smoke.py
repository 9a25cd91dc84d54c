"""Every benchmark runs end to end at a small size, so none of them rots. No timing is
asserted here: the figures are printed by `make bench` (full sizes) and kept in
docs/performance.md. A benchmark exits non-zero when its run was wrong (lost rows,
unrouted calls), and that fails this test."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"

SMOKE = {
    "ami_ingest.py": ["--events", "20000"],
    "esl_ingest.py": ["--events", "10000"],
    "crm_import.py": ["--rows", "5000"],
    "recorder.py": ["--events", "5000", "--outage", "2", "--rate", "500"],
    "routing_latency.py": ["--customers", "5000", "--rate", "20", "--seconds", "2"],
    "report_query.py": ["--calls", "5000"],
    "memory_per_call.py": ["--calls", "200", "--rate", "200"],
}


def test_every_benchmark_has_a_smoke_size() -> None:
    assert {p.name for p in BENCH.glob("*.py")} == set(SMOKE)


@pytest.mark.parametrize("script", sorted(SMOKE))
def test_benchmark_smoke(script: str) -> None:
    proc = subprocess.run([sys.executable, str(BENCH / script), *SMOKE[script]], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    assert "machine:" in proc.stdout or "Machine" in proc.stdout or "python" in proc.stdout.lower()
