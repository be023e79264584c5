"""PETSc's AMG preconditioners on quadflow's equilibrated system, for the
2-rank comparison of `y_tube_amg_2ranks.sh` (issue 19).

    PETSC_DIR=/usr/lib/petscdir/petsc3.18/x86_64-linux-gnu-real \\
      mpirun -n 2 /usr/bin/python3 petsc_compare.py SYSTEM.petsc [REPEATS]

`SYSTEM.petsc` is written by `cargo run --release -p quadflow-mpi
--example petsc_matrix MESH.h5 SYSTEM.petsc`: the matrix every quadflow
solver iterates on (`D K D` on the coupled rows, reverse Cuthill-McKee
order) and `b = D f`. PETSc distributes it by contiguous row blocks.

For each of GAMG and hypre's BoomerAMG (PETSc's defaults for both): CG,
the unpreconditioned residual to rtol 1e-10 (quadflow's stopping rule
measures the same norm), zero initial guess; the time of `KSPSetUp` (the
hierarchy) plus `KSPSolve`, after a barrier, the slowest rank's, each
repeat from a fresh KSP. Prints one line per run:

    petsc <method> ranks <P> setup <s> solve <s> total <s> iterations <k> residual <r>
"""

import sys
import time

import petsc4py

petsc4py.init(sys.argv[:1])
from petsc4py import PETSc  # noqa: E402


def run(A, b, method):
    comm = A.getComm()
    ksp = PETSc.KSP().create(comm)
    ksp.setOperators(A)
    ksp.setType("cg")
    ksp.setNormType(PETSc.KSP.NormType.UNPRECONDITIONED)
    ksp.setTolerances(rtol=1e-10, atol=0.0, max_it=10000)
    pc = ksp.getPC()
    if method == "gamg":
        pc.setType("gamg")
    else:
        pc.setType("hypre")
        pc.setHYPREType("boomeramg")
    x = b.duplicate()
    x.set(0.0)
    comm.barrier()
    t0 = time.perf_counter()
    ksp.setUp()
    t1 = time.perf_counter()
    ksp.solve(b, x)
    t2 = time.perf_counter()
    r = b.duplicate()
    A.mult(x, r)
    r.aypx(-1.0, b)
    res = r.norm() / b.norm()
    return t1 - t0, t2 - t1, ksp.getIterationNumber(), res, ksp.getConvergedReason()


def main():
    path = sys.argv[1]
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    viewer = PETSc.Viewer().createBinary(path, "r")
    A = PETSc.Mat().load(viewer)
    b = PETSc.Vec().load(viewer)
    comm = A.getComm()
    size = comm.getSize()
    rank = comm.getRank()
    for _ in range(reps):
        for method in ("gamg", "hypre"):
            setup, solve, its, res, reason = run(A, b, method)
            # the slowest rank's times
            t = PETSc.Vec().createMPI((1, size), comm=comm)
            t.setValue(rank, setup + solve)
            t.assemble()
            total = t.max()[1]
            if rank == 0:
                print(
                    f"petsc {'boomeramg' if method == 'hypre' else method} ranks {size} "
                    f"setup {setup:.4f} solve {solve:.4f} total {total:.4f} "
                    f"iterations {its} residual {res:.3e} reason {reason}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
