"""Results equal to the command line's (bit for bit: the same engine with
the same settings) and to the published reference within its tolerances."""

import subprocess

import numpy as np
import pytest

import quadflow
from conftest import REFERENCE_MESHES

FIELDS = ("u", "vel", "abs_vel", "pressure")

# (backend, threads): the CLI flags and the solve keywords
EXECUTORS = [("serial", None), ("parallel", 2)]


def cli_results(cli, h5py, mesh, out, backend, threads):
    cmd = [str(cli), "run", "--mesh", str(mesh), "--backend", backend, "--quiet", "--out", str(out)]
    if threads is not None:
        cmd += ["--threads", str(threads)]
    subprocess.run(cmd, check=True)
    with h5py.File(out, "r") as f:
        return {k: f[k][()] for k in FIELDS}, dict(f.attrs)


def assert_same(r, fields, attrs):
    for k in FIELDS:
        a = getattr(r, k)
        assert a.dtype == np.float64 and a.shape == fields[k].shape, k
        # bit for bit
        assert np.array_equal(a, fields[k]), f"{k} differs from the CLI's"
    assert r.iterations == attrs["iterations"]
    assert r.converged == bool(attrs["converged"])
    assert r.true_relative_residual == attrs["true_relative_residual"]
    assert r.equilibrated_relative_residual == attrs["equilibrated_relative_residual"]
    assert r.matrix_nnz == attrs["matrix_nnz"]


@pytest.mark.parametrize("backend,threads", EXECUTORS)
@pytest.mark.parametrize("name", REFERENCE_MESHES)
def test_equal_to_cli_and_reference(mesh_file, reference_file, cli, h5py, tmp_path, name, backend, threads):
    mesh = mesh_file(name)
    fields, attrs = cli_results(cli, h5py, mesh, tmp_path / "cli.h5", backend, threads)
    r = quadflow.solve(mesh, backend=backend, threads=threads)
    assert r.backend == backend and r.solver == "cg-jacobi"
    assert_same(r, fields, attrs)

    with h5py.File(reference_file(name), "r") as f:
        ref = {k: f[k][()] for k in FIELDS}
        ref_iterations = int(f.attrs["iterations"])
        ref_nnz = int(f.attrs["matrix_nnz"])
    assert r.matrix_nnz == ref_nnz
    # CG stops on the equilibrated residual: fields agree to ~1e-8 relative
    for k in FIELDS:
        scale = np.abs(ref[k]).max()
        err = np.abs(getattr(r, k) - ref[k]).max()
        assert err <= 1e-6 * scale, f"{name} {k}: max error {err:.3e} vs scale {scale:.3e}"
    assert abs(r.iterations - ref_iterations) <= 2, (r.iterations, ref_iterations)
    assert r.converged and r.true_relative_residual < 1e-7


@pytest.mark.parametrize("name", ["y_tube_201", "elbow_90_411"])
def test_arrays_equal_path(mesh_file, name):
    """A mesh given as arrays solves exactly as the same mesh given as a
    file; int32 and int64 connectivity alike."""
    path = mesh_file(name)
    by_path = quadflow.solve(path)
    x, y, quad8 = quadflow.read_mesh(path)
    for q in (quad8, quad8.astype(np.int32), np.asfortranarray(quad8)):
        r = quadflow.solve((x, y, q))
        for k in FIELDS:
            assert np.array_equal(getattr(r, k), getattr(by_path, k)), k
        assert r.iterations == by_path.iterations


def test_written_results_equal_cli_file(mesh_file, cli, h5py, tmp_path):
    """``SolveResult.write`` writes the CLI's results file: same datasets,
    same attributes but the timings and the scene text."""
    mesh = mesh_file("venturi_341")
    fields, attrs = cli_results(cli, h5py, mesh, tmp_path / "cli.h5", "serial", None)
    r = quadflow.solve(mesh)
    r.write(tmp_path / "py.h5")
    with h5py.File(tmp_path / "py.h5", "r") as f:
        for k in FIELDS:
            assert np.array_equal(f[k][()], fields[k]), k
        mine = dict(f.attrs)
    assert set(mine) == set(attrs)
    for k, v in attrs.items():
        if k.startswith("time_") or k.startswith("solver_s") or k == "scene":
            continue
        assert mine[k] == v, k
    assert r.attributes["iterations"] == attrs["iterations"]
