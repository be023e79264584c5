"""The examples run and print or draw what they say."""

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run(*args):
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, check=True).stdout


def test_compare_executors(mesh_file):
    out = run(EXAMPLES / "compare_executors.py", mesh_file("venturi_341"))
    lines = out.splitlines()
    assert any(l.startswith("serial ") for l in lines), out
    assert any(l.startswith("parallel (2 threads)") for l in lines), out
    # every executor agrees with serial, and the iteration count is printed
    rows = [l.split() for l in lines if l.startswith(("serial", "parallel", "gpu "))]
    for r in rows:
        assert float(r[-1]) <= 1e-9 and int(r[-3]) == 133, r


def test_plot_potential(tmp_path):
    pytest.importorskip("matplotlib", reason="SKIPPED: matplotlib is not installed")
    out = tmp_path / "u.png"
    run(EXAMPLES / "plot_potential.py", "-o", out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20_000
