"""Type hints of the native module (re-exported by ``quadflow``)."""

import os
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np
import numpy.typing as npt

__version__: str
GEOMETRIES: List[str]

PathLike = Union[str, "os.PathLike[str]"]
#: A scene: a file path, TOML text, or a dict with the scene file's keys.
Scene = Union[PathLike, Mapping[str, Any]]
#: ``(x, y, quad8)``: node coordinates and the (elements, 8) connectivity.
MeshArrays = Tuple[npt.ArrayLike, npt.ArrayLike, npt.ArrayLike]

class QuadflowError(ValueError):
    """A quadflow failure, with the command line's message."""

class SolveResult:
    """What :func:`solve` returns."""

    #: Potential per node.
    u: npt.NDArray[np.float64]
    #: Velocity per element, shape (elements, 2).
    vel: npt.NDArray[np.float64]
    #: Speed per element.
    abs_vel: npt.NDArray[np.float64]
    #: Bernoulli pressure per element.
    pressure: npt.NDArray[np.float64]
    @property
    def iterations(self) -> int: ...
    @property
    def converged(self) -> bool: ...
    @property
    def true_relative_residual(self) -> float:
        """||f - K u|| / ||f|| (penalty rows dominate it)."""
    @property
    def equilibrated_relative_residual(self) -> float:
        """The residual of the equilibrated system: what rtol bounds."""
    @property
    def times(self) -> Dict[str, float]:
        """Seconds: load, quadrature, assembly, boundary, solve, post, total."""
    @property
    def backend(self) -> str: ...
    @property
    def solver(self) -> str: ...
    @property
    def rtol(self) -> float: ...
    @property
    def matrix_nnz(self) -> int: ...
    @property
    def nodes(self) -> int: ...
    @property
    def elements(self) -> int: ...
    @property
    def notes(self) -> List[str]: ...
    @property
    def attributes(self) -> Dict[str, Union[int, float, str]]:
        """The root attributes a results file stores."""
    def report(self) -> str:
        """The command line's report of the run."""
    def write(self, path: PathLike) -> None:
        """Writes the results file (HDF5), as ``quadflow run --out``."""
    def write_vtu(self, path: PathLike) -> None:
        """Writes a ParaView file (.vtu)."""
    def write_png(self, path: PathLike, field: str = "u") -> None:
        """Writes a PNG picture of ``u``, ``abs_vel`` or ``pressure``."""

def solve(
    mesh: Union[PathLike, MeshArrays, None] = None,
    *,
    backend: Optional[str] = None,
    solver: Optional[str] = None,
    rtol: Optional[float] = None,
    threads: Optional[int] = None,
    scene: Optional[Scene] = None,
    max_iterations: Optional[int] = None,
) -> SolveResult:
    """Solves a mesh (a .h5/.msh path, ``(x, y, quad8)`` arrays, or None for
    the scene's mesh). Keywords left at None take the scene's values (without
    a scene: serial, cg-jacobi, rtol 1e-8, one thread per core)."""

def assemble(
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    quad8: npt.ArrayLike,
    *,
    boundary: bool = True,
    scene: Optional[Scene] = None,
    backend: Optional[str] = None,
    threads: Optional[int] = None,
) -> Tuple[Any, npt.NDArray[np.float64]]:
    """``(K, f)``: ``K`` a full symmetric ``scipy.sparse.csr_matrix`` (without
    SciPy the tuple ``(data, indices, indptr)``), ``f`` the right-hand side."""

def generate(
    geometry: str, nodes: int = 20000
) -> Tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """A generated mesh ``(x, y, quad8)`` of about ``nodes`` nodes."""

def read_mesh(
    path: PathLike,
) -> Tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """``(x, y, quad8)`` from a .h5 or .msh file."""

def write_mesh(
    path: PathLike,
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    quad8: npt.ArrayLike,
    *,
    msh_version: str = "4.1",
    binary: bool = False,
    layout: str = "gzip",
) -> None:
    """Writes a .h5 (``layout`` "gzip" or "contiguous") or .msh mesh file
    (checked first; whole or not at all)."""

def backends() -> List[Tuple[str, str]]:
    """The backends of this build: (name, description)."""
