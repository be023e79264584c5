"""Fixtures of the quadflow package's tests: the reference meshes and
results (the repository's tests/data, else ../shared beside the checkout;
tests skip, saying so, without them) and the command-line binary (built
with cargo when needed; tests that compare with it skip without cargo)."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("QUADFLOW_SHARED", REPO.parent / "shared"))
#: Where reference meshes and results are looked for, in order.
DATA_DIRS = [REPO / "tests" / "data", SHARED]

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


def find_data(kind, name):
    """``meshes/NAME.h5`` or ``reference/NAME.h5`` of the first data
    directory that has it; skips the test, saying so, where none has."""
    for d in DATA_DIRS:
        p = d / kind / f"{name}.h5"
        if p.is_file():
            return p
    pytest.skip(f"SKIPPED: {kind}/{name}.h5 is in none of {', '.join(map(str, DATA_DIRS))}")


@pytest.fixture(scope="session")
def mesh_file():
    """``mesh_file(NAME)``: the path of reference mesh NAME."""
    return lambda name: find_data("meshes", name)


@pytest.fixture(scope="session")
def reference_file():
    """``reference_file(NAME)``: the reference result of mesh NAME."""
    return lambda name: find_data("reference", name)


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


def pytest_runtest_logreport(report):
    """Each skipped test, with its reason, goes to ``$QUADFLOW_SKIP_LOG``
    too (which the repository's ``tests/run`` lists at the end)."""
    path = os.environ.get("QUADFLOW_SKIP_LOG")
    if not (path and report.skipped):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    with open(path, "a") as f:
        f.write(f"python/tests/{report.nodeid}: {reason.removeprefix('Skipped: ')}\n")
