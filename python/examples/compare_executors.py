"""The study's comparison: every executor on one mesh, one table.

    python3 examples/compare_executors.py [MESH.h5|MESH.msh] [--solver amg-cg]

Without a mesh argument: ../shared/meshes/y_tube_195k.h5 if present, else a
generated 200k-node venturi. The GPU row appears where a GPU is.
"""

import argparse
import os
from pathlib import Path

import numpy as np

import quadflow

here = Path(__file__).resolve().parents[2]
default = here.parent / "shared" / "meshes" / "y_tube_195k.h5"
ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("mesh", nargs="?", default=str(default) if default.exists() else None)
ap.add_argument("--solver", default="cg-jacobi")
args = ap.parse_args()

mesh = args.mesh or quadflow.generate("venturi", 200_000)
cores = os.cpu_count() or 1
runs = [("serial", None)] + [("parallel", t) for t in sorted({2, cores}) if t <= cores] + [("gpu", None)]

rows, ref = [], None
for backend, threads in runs:
    try:
        r = quadflow.solve(mesh, backend=backend, threads=threads, solver=args.solver)
    except quadflow.QuadflowError as e:
        print(f"{backend}: not run: {e}")
        continue
    ref = r if ref is None else ref
    diff = np.abs(r.u - ref.u).max()
    label = backend + (f" ({threads} threads)" if threads else "")
    rows.append((label, r, diff))

phases = ["load", "quadrature", "assembly", "boundary", "solve", "post", "total"]
print(f"\n{rows[0][1].nodes} nodes, solver {args.solver}; seconds")
print(f"{'executor':<22}" + "".join(f"{p:>11}" for p in phases) + f"{'iters':>8}{'speed-up':>10}{'max|du|':>10}")
for label, r, diff in rows:
    t = r.times
    print(
        f"{label:<22}" + "".join(f"{t[p]:>11.4f}" for p in phases)
        + f"{r.iterations:>8}{ref.times['total'] / t['total']:>10.2f}{diff:>10.1e}"
    )
