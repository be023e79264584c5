"""Bad input raises QuadflowError (a ValueError) naming the problem."""

import numpy as np
import pytest

import quadflow
from quadflow import QuadflowError


@pytest.fixture(scope="module")
def mesh():
    return quadflow.generate("straight_channel", 300)


def raises(match, f, *a, **k):
    with pytest.raises(QuadflowError, match=match) as e:
        f(*a, **k)
    return str(e.value)


def test_is_a_value_error():
    assert issubclass(QuadflowError, ValueError)
    assert QuadflowError.__module__ == "quadflow"


def test_bad_arrays(mesh):
    x, y, q = mesh
    s = quadflow.solve
    raises(r"x must be a 1-D array .* shape \(2, 3\)", s, (np.zeros((2, 3)), y, q))
    raises(r"y must be an array of real numbers .*complex", s, (x, y.astype(complex), q))
    raises(r"quad8 must be an integer array .*float64.*astype", s, (x, y, q.astype(float)))
    raises(r"quad8 must be an \(elements, 8\) array .*\(\d+, 4\)", s, (x, y, q[:, :4]))
    raises(r"quad8 must be an \(elements, 8\) array .*shape \(\d+,\)", s, (x, y, q.ravel()))
    raises(r"x must be an array of real numbers .*object", s, (["a", object()], y, q))
    raises(r"quad8 must be a NumPy array \(or convertible to one\)", s, (x, y, [[1], [1, 2]]))
    raises("tuple \\(x, y, quad8\\), got 2 items", s, (x, y))
    raises("mesh must be a path", s, 42)
    # the mesh checks of the CLI
    raises("length", s, (x[:-1], y, q))
    bad = q.copy()
    bad[5, 2] = len(x) + 3
    raises("element 5", s, (x, y, bad))
    bad[5, 2] = -1
    raises("element 5", s, (x, y, bad))
    xn = x.copy()
    xn[7] = np.nan
    raises("node 7", s, (xn, y, q))
    raises("empty|no element|0 elements", s, (x, y, q[:0]))
    # assemble and write_mesh check their arrays the same way
    raises("quad8 must be an integer array", quadflow.assemble, x, y, q.astype(float))
    raises("x must be a 1-D array", quadflow.write_mesh, "m.h5", x[:, None], y, q)


def test_other_dtypes_are_converted(mesh):
    x, y, q = mesh
    ref = quadflow.solve((x, y, q))
    for args in [
        (x.astype(np.float32), y.astype(np.float32), q),
        (x, y, q.astype(np.uint32)),
        (x, y, q.astype(">i8")),
        (list(x), list(y), q.tolist()),
        (x[::-1][::-1], y, q[:, ::-1][:, ::-1]),
    ]:
        r = quadflow.solve(args)
        assert r.nodes == len(x)
    r = quadflow.solve((x, y, q.astype(np.uint32)))
    assert np.array_equal(r.u, ref.u)


def test_bad_settings(mesh):
    m = mesh
    s = quadflow.solve
    e = raises('backend="cuda": unknown backend "cuda"', s, m, backend="cuda")
    assert "serial" in e and "parallel" in e
    raises('solver="amg": unknown method "amg"', s, m, solver="amg")
    raises(r"rtol=2(\.0)?: must lie in \(0, 1\)", s, m, rtol=2.0)
    raises("threads=-1", s, m, threads=-1)
    raises("threads=5000: .*unreasonable", s, m, threads=5000)
    raises("max_iterations=0: must be at least 1", s, m, max_iterations=0)
    # a solver that reaches its cap
    raises("iteration", s, m, max_iterations=3)


def test_bad_scenes(mesh, tmp_path):
    s = quadflow.solve
    raises("unknown field `rtl`", s, mesh, scene={"solver": {"rtl": 1e-9}})
    raises("solver.rtol", s, mesh, scene={"solver": {"rtol": 5.0}})
    raises("invalid type|expected", s, mesh, scene={"solver": {"rtol": "small"}})
    raises("keys must be strings", s, mesh, scene={1: 2})
    raises("leave the key out", s, mesh, scene={"solver": {"rtol": None}})
    raises("scene <scene text>", s, mesh, scene="[solver\nrtol = 1")
    raises("scene .*nope.toml", s, mesh, scene=str(tmp_path / "nope.toml"))
    raises("scene must be a path, TOML text or a dict", s, mesh, scene=3.5)
    raises("physics.rho: must be positive", s, mesh, scene="[physics]\nrho = -1.0\n")
    raises("boundary.robin\\[0\\].select: bad selector", s, mesh,
           scene={"boundary": {"robin": [{"select": "left"}]}})


def test_bad_files(tmp_path):
    raises("unknown mesh file extension", quadflow.solve, tmp_path / "m.vtu")
    raises("m.h5", quadflow.solve, tmp_path / "m.h5")
    raises("m.msh", quadflow.read_mesh, tmp_path / "m.msh")
    p = tmp_path / "junk.h5"
    p.write_bytes(b"not an hdf5 file at all" * 10)
    raises("junk.h5", quadflow.read_mesh, p)
    raises("unknown geometry \"blob\"", quadflow.generate, "blob", 1000)
    raises("too small", quadflow.generate, "venturi", 10)


def test_gpu_without_gpu(mesh):
    """A GPU request on a machine without one fails naming the missing
    driver (with a GPU, it runs and agrees with serial)."""
    try:
        r = quadflow.solve(mesh, backend="gpu")
    except QuadflowError as e:
        msg = str(e)
        assert "CUDA" in msg and ("driver" in msg or "device" in msg), msg
        assert "serial or parallel" in msg
        return
    ref = quadflow.solve(mesh)
    assert r.backend == "gpu"
    assert np.abs(r.u - ref.u).max() <= 1e-9 * np.abs(ref.u).max()


def test_failed_write_leaves_nothing(mesh, tmp_path):
    r = quadflow.solve(mesh)
    target = tmp_path / "missing-dir" / "out.h5"
    raises("out.h5", r.write, target)
    assert not target.exists()
    raises("field=\"speed\": unknown field", r.write_png, tmp_path / "a.png", "speed")
    assert not (tmp_path / "a.png").exists()
