"""``assemble``: the system the solver is given, usable with SciPy."""

import sys

import numpy as np
import pytest

import quadflow


@pytest.fixture(scope="module")
def venturi():
    return quadflow.generate("venturi", 3000)


def test_spsolve_agrees_with_solve(scipy_sparse, venturi):
    from scipy.sparse.linalg import spsolve

    x, y, quad8 = venturi
    K, f = quadflow.assemble(x, y, quad8)
    n = len(x)
    assert isinstance(K, scipy_sparse.csr_matrix)
    assert K.shape == (n, n) and f.shape == (n,) and f.dtype == np.float64
    assert K.has_sorted_indices
    # full and symmetric
    assert abs(K - K.T).max() == 0.0
    r = quadflow.solve((x, y, quad8))
    assert K.nnz == r.matrix_nnz
    u = spsolve(K.tocsc(), f)
    scale = np.abs(u).max()
    assert scale > 1.0
    # CG to rtol 1e-8 against a direct solve
    assert np.abs(u - r.u).max() <= 1e-6 * scale
    # and the CG solution satisfies the assembled system to its tolerance
    res = np.linalg.norm(f - K @ r.u) / np.linalg.norm(f)
    assert res == pytest.approx(r.true_relative_residual, rel=1e-6)


def test_without_boundary(scipy_sparse, venturi):
    x, y, quad8 = venturi
    K, f = quadflow.assemble(x, y, quad8, boundary=False)
    assert not f.any()
    # constants are in the kernel of the Laplacian's stiffness matrix
    assert np.abs(K @ np.ones(len(x))).max() <= 1e-12 * np.abs(K.diagonal()).max()
    Kb, fb = quadflow.assemble(x, y, quad8)
    assert fb.any() and Kb.nnz == K.nnz


def test_backends_assemble_the_same(scipy_sparse, venturi):
    x, y, quad8 = venturi
    K, f = quadflow.assemble(x, y, quad8)
    for backend, threads in [("parallel", 2), ("parallel", 1)]:
        Kp, fp = quadflow.assemble(x, y, quad8, backend=backend, threads=threads)
        assert np.array_equal(Kp.indptr, K.indptr)
        assert np.array_equal(Kp.indices, K.indices)
        assert np.array_equal(Kp.data, K.data)
        assert np.array_equal(fp, f)


def test_scene_settings_reach_the_system(scipy_sparse, venturi):
    x, y, quad8 = venturi
    K1, f1 = quadflow.assemble(x, y, quad8)
    K2, f2 = quadflow.assemble(x, y, quad8, scene={"boundary": {"penalty": 1e10}})
    assert K2.diagonal().max() < K1.diagonal().max()
    assert np.array_equal(f1, f2)  # the outlet value is 0


def test_without_scipy(monkeypatch, venturi):
    """Without SciPy, K is the CSR triple."""
    monkeypatch.setitem(sys.modules, "scipy", None)
    monkeypatch.setitem(sys.modules, "scipy.sparse", None)
    x, y, quad8 = venturi
    (data, indices, indptr), f = quadflow.assemble(x, y, quad8)
    n = len(x)
    assert indptr.shape == (n + 1,) and indptr[0] == 0 and indptr[-1] == len(data) == len(indices)
    assert indices.dtype == np.int32 and data.dtype == np.float64
    # the diagonal is present in every row
    rows = np.repeat(np.arange(n), np.diff(indptr))
    assert np.count_nonzero(rows == indices) == n


def owner(a):
    """The object that owns an array's memory (the end of its base chain)."""
    while isinstance(a, np.ndarray) and a.base is not None:
        a = a.base
    return a


def test_no_copies(scipy_sparse, venturi):
    """The engine's vectors are handed to NumPy (and SciPy keeps views of
    them): the arrays' memory is owned by the Rust side, not copied into
    NumPy-owned buffers."""
    x, y, quad8 = venturi
    K, f = quadflow.assemble(x, y, quad8)
    r = quadflow.solve((x, y, quad8))
    for a in (K.data, K.indices, K.indptr, f, r.u, r.vel, r.abs_vel, r.pressure, x, quad8):
        assert type(owner(a)).__name__ == "PySliceContainer", type(owner(a))
