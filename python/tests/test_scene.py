"""The scene argument (path, TOML text, dict) and the keyword overrides."""

import numpy as np
import pytest

import quadflow

REPO_SCENES = __import__("conftest").REPO / "scenes"


@pytest.fixture(scope="module")
def mesh():
    return quadflow.generate("venturi", 2000)


def test_scene_forms_agree(mesh, tmp_path):
    text = '[solver]\nmethod = "amg-cg"\nrtol = 1e-10\n[physics]\nrho = 1.0\n'
    p = tmp_path / "s.toml"
    p.write_text(text)
    d = {"solver": {"method": "amg-cg", "rtol": 1e-10}, "physics": {"rho": 1.0}}
    rs = [quadflow.solve(mesh, scene=s) for s in (text, p, str(p), d)]
    for r in rs:
        assert r.solver == "amg-cg" and r.rtol == 1e-10
        assert np.array_equal(r.u, rs[0].u) and np.array_equal(r.pressure, rs[0].pressure)
    # rho changes the pressure, not the potential
    ref = quadflow.solve(mesh, solver="amg-cg", rtol=1e-10)
    assert np.array_equal(ref.u, rs[0].u) and not np.array_equal(ref.pressure, rs[0].pressure)


def test_keywords_override_the_scene(mesh):
    s = {"solver": {"method": "amg-cg"}, "backend": {"default": "parallel"}, "parallel": {"threads": 2}}
    r = quadflow.solve(mesh, scene=s)
    assert r.solver == "amg-cg" and r.backend == "parallel"
    assert r.attributes["parallel_threads"] == 2
    r = quadflow.solve(mesh, scene=s, backend="serial", solver="cholesky")
    assert r.solver == "cholesky" and r.backend == "serial"
    r = quadflow.solve(mesh, scene=s, threads=1)
    assert r.attributes["parallel_threads"] == 1


def test_scene_mesh(tmp_path):
    """mesh=None solves the scene's own mesh (generated or a file)."""
    r = quadflow.solve(scene={"mesh": {"generate": "elbow_90", "nodes": 1000}})
    assert 700 < r.nodes < 1400 and "elbow_90" in r.attributes["mesh_source"]
    x, y, q = quadflow.generate("elbow_90", 1000)
    quadflow.write_mesh(tmp_path / "e.h5", x, y, q)
    (tmp_path / "s.toml").write_text('[mesh]\nfile = "e.h5"\n')
    r2 = quadflow.solve(scene=tmp_path / "s.toml")  # relative to the scene file
    assert np.array_equal(r2.u, r.u)


def test_repository_scenes(mesh_file):
    """A scene file of the repository, its mesh replaced by arrays."""
    x, y, q = quadflow.read_mesh(mesh_file("y_tube_201"))
    r = quadflow.solve((x, y, q), scene=REPO_SCENES / "amg.toml")
    assert r.solver == "amg-cg" and r.converged


def test_mixed_backends_and_parallel_equals_serial(mesh):
    ref = quadflow.solve(mesh)
    r = quadflow.solve(mesh, scene={"backend": {"default": "parallel", "solve": "serial"}}, threads=2)
    assert r.backend.startswith("quadrature=parallel") and "solve=serial" in r.backend
    for threads in (1, 2, 3):
        p = quadflow.solve(mesh, backend="parallel", threads=threads)
        assert np.array_equal(p.u, ref.u) and np.array_equal(p.vel, ref.vel)
        assert p.iterations == ref.iterations
    assert np.array_equal(r.u, ref.u)
