"""Fixtures of the quadflow package's tests: the shared reference data
(tests skip, saying so, without it) and the command-line binary (built with
cargo when needed; tests that compare with it skip without cargo)."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("QUADFLOW_SHARED", REPO.parent / "shared"))

#: The reference meshes that have a reference result.
REFERENCE_MESHES = [
    "y_tube_201",
    "backward_step_287",
    "venturi_341",
    "s_bend_387",
    "t_junction_393",
    "elbow_90_411",
    "y_tube_195k",
]


@pytest.fixture(scope="session")
def shared():
    """``../shared`` beside the checkout (meshes and reference results)."""
    if not (SHARED / "meshes").is_dir() or not (SHARED / "reference").is_dir():
        pytest.skip(f"SKIPPED: {SHARED} (meshes, reference) is absent")
    return SHARED


@pytest.fixture(scope="session")
def cli():
    """The ``quadflow`` command-line binary of this checkout, built (or
    brought up to date) with ``cargo build --release`` unless
    ``QUADFLOW_CLI`` names one."""
    given = os.environ.get("QUADFLOW_CLI")
    if given:
        return Path(given)
    if shutil.which("cargo") is None or not (REPO / "Cargo.toml").is_file():
        pytest.skip("SKIPPED: no cargo or no checkout to build the quadflow CLI from")
    subprocess.run(
        ["cargo", "build", "--release", "--quiet", "--bin", "quadflow"],
        cwd=REPO,
        check=True,
    )
    exe = REPO / "target" / "release" / "quadflow"
    assert exe.is_file(), exe
    return exe


@pytest.fixture(scope="session")
def h5py():
    return pytest.importorskip("h5py", reason="SKIPPED: h5py is not installed")


@pytest.fixture(scope="session")
def scipy_sparse():
    pytest.importorskip("scipy", reason="SKIPPED: scipy is not installed")
    import scipy.sparse
    import scipy.sparse.linalg

    return scipy.sparse
