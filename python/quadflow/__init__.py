"""quadflow: finite-element potential flow on Quad-8 meshes.

Arrays in, arrays out, on the same engine as the ``quadflow`` command line
(serial, multi-threaded or GPU executors; Jacobi-CG, AMG-CG or sparse
Cholesky)::

    import quadflow
    x, y, quad8 = quadflow.generate("venturi", 20000)
    r = quadflow.solve((x, y, quad8), backend="parallel")
    r.u, r.vel, r.abs_vel, r.pressure, r.iterations, r.times

    K, f = quadflow.assemble(x, y, quad8)      # scipy.sparse.csr_matrix, ndarray

Every failure raises :class:`QuadflowError` (a ``ValueError``) with the
command line's message. The GIL is released while the engine runs, and
Ctrl-C stops a solve (``KeyboardInterrupt``).
"""

from ._native import (
    GEOMETRIES,
    QuadflowError,
    SolveResult,
    __version__,
    assemble,
    backends,
    generate,
    read_mesh,
    solve,
    write_mesh,
)

__all__ = [
    "GEOMETRIES",
    "QuadflowError",
    "SolveResult",
    "__version__",
    "assemble",
    "backends",
    "generate",
    "read_mesh",
    "solve",
    "write_mesh",
]
