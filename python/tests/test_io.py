"""Meshes in and out: generate, read_mesh, write_mesh; results files that
standard readers open."""

import numpy as np
import pytest

import quadflow


@pytest.fixture(scope="module")
def venturi():
    return quadflow.generate("venturi", 2000)


def test_generate(venturi):
    x, y, q = venturi
    assert x.dtype == np.float64 and y.dtype == np.float64 and q.dtype == np.int64
    assert x.shape == y.shape and q.ndim == 2 and q.shape[1] == 8
    assert 1500 < len(x) < 2600
    assert q.min() == 0 and q.max() == len(x) - 1
    assert q.flags.c_contiguous and x.flags.writeable and q.flags.writeable
    assert set(quadflow.GEOMETRIES) >= {"venturi", "straight_channel", "elbow_90"}
    for g in quadflow.GEOMETRIES:
        gx, gy, gq = quadflow.generate(g, 300)
        r = quadflow.solve((gx, gy, gq))
        assert r.converged, g


@pytest.mark.parametrize("name,kw", [
    ("m.h5", {}),
    ("mc.h5", {"layout": "contiguous"}),
    ("m.msh", {}),
    ("m22.msh", {"msh_version": "2.2"}),
    ("mb.msh", {"msh_version": "4.1", "binary": True}),
])
def test_write_read_roundtrip(venturi, tmp_path, name, kw):
    x, y, q = venturi
    p = tmp_path / name
    quadflow.write_mesh(p, x, y, q, **kw)
    x2, y2, q2 = quadflow.read_mesh(p)
    assert np.array_equal(x2, x) and np.array_equal(y2, y) and np.array_equal(q2, q)
    # and the file solves like the arrays
    assert np.array_equal(quadflow.solve(p).u, quadflow.solve((x, y, q)).u)


def test_write_mesh_refuses_bad_meshes(venturi, tmp_path):
    x, y, q = venturi
    bad = q.copy()
    bad[0, 0] = len(x)
    with pytest.raises(quadflow.QuadflowError, match="element 0"):
        quadflow.write_mesh(tmp_path / "bad.h5", x, y, bad)
    assert not (tmp_path / "bad.h5").exists()
    with pytest.raises(quadflow.QuadflowError, match='msh_version="3.0"'):
        quadflow.write_mesh(tmp_path / "m.msh", x, y, q, msh_version="3.0")
    with pytest.raises(quadflow.QuadflowError, match='layout="zip".*gzip or contiguous'):
        quadflow.write_mesh(tmp_path / "m.h5", x, y, q, layout="zip")
    assert not (tmp_path / "m.h5").exists()


@pytest.mark.parametrize("layout", ["gzip", "contiguous"])
def test_h5_mesh_opens_in_h5py(venturi, tmp_path, h5py, layout):
    x, y, q = venturi
    quadflow.write_mesh(tmp_path / "m.h5", x, y, q, layout=layout)
    with h5py.File(tmp_path / "m.h5", "r") as f:
        assert (f["x"].compression == "gzip") == (layout == "gzip")
        assert np.array_equal(f["x"][()], x)
        assert np.array_equal(f["quad8"][()], q)


def test_results_outputs(venturi, tmp_path, h5py):
    r = quadflow.solve(venturi, backend="parallel", threads=2)
    r.write(tmp_path / "r.h5")
    with h5py.File(tmp_path / "r.h5", "r") as f:
        assert np.array_equal(f["u"][()], r.u)
        assert np.array_equal(f["vel"][()], r.vel)
        assert f.attrs["backend"] == "parallel"
        assert f.attrs["iterations"] == r.iterations
        assert f.attrs["parallel_threads"] == 2
    r.write_vtu(tmp_path / "r.vtu")
    head = (tmp_path / "r.vtu").read_bytes()[:4096]
    assert b"UnstructuredGrid" in head and b'Name="u"' in head
    r.write_png(tmp_path / "u.png")
    r.write_png(tmp_path / "p.png", "pressure")
    for png in ("u.png", "p.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    meshio = pytest.importorskip("meshio", reason="SKIPPED: meshio is not installed")
    m = meshio.read(tmp_path / "r.vtu")
    assert np.allclose(m.point_data["u"], r.u)


def test_result_fields_and_report(venturi):
    x, y, q = venturi
    r = quadflow.solve((x, y, q))
    n, e = len(x), len(q)
    assert r.u.shape == (n,) and r.vel.shape == (e, 2)
    assert r.abs_vel.shape == (e,) and r.pressure.shape == (e,)
    # abs_vel is the mean speed over the element's Gauss points, vel the
    # mean velocity: |vel| <= abs_vel, nearly equal where the flow is smooth
    speed = np.hypot(r.vel[:, 0], r.vel[:, 1])
    assert np.all(speed <= r.abs_vel * (1 + 1e-12))
    assert np.allclose(speed, r.abs_vel, rtol=1e-2)
    assert r.nodes == n and r.elements == e
    assert set(r.times) == {"load", "quadrature", "assembly", "boundary", "solve", "post", "total"}
    assert r.times["total"] >= r.times["solve"] > 0
    assert r.backend == "serial" and r.solver == "cg-jacobi" and r.rtol == 1e-8
    text = r.report()
    assert "cg-jacobi" in text and f"{r.iterations} iterations" in text
    assert f"max {r.u.max():.9f}" in text
    assert "SolveResult" in repr(r)
    # the arrays are the caller's: writable, owned by NumPy
    r.u[0] = 1.0
    assert r.u[0] == 1.0
