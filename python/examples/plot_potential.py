"""A matplotlib picture of the potential u over the mesh.

    python3 examples/plot_potential.py [MESH.h5|MESH.msh] [-o u.png]

Without a mesh argument, a generated venturi of 20,000 nodes. Each Quad-8
element is drawn as six triangles through its corners and mid-side nodes,
shaded linearly (Gouraud) between its node values.
"""

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import matplotlib.tri as mtri
import numpy as np

import quadflow

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("mesh", nargs="?")
ap.add_argument("-o", "--out", default="u.png")
args = ap.parse_args()

x, y, quad8 = quadflow.read_mesh(args.mesh) if args.mesh else quadflow.generate("venturi", 20_000)
r = quadflow.solve((x, y, quad8), backend="parallel")

# local order: corners 0-3 counter-clockwise, mid-sides 4 (0-1), 5 (1-2), 6 (2-3), 7 (3-0)
split = np.array([[0, 4, 7], [4, 1, 5], [5, 2, 6], [6, 3, 7], [4, 5, 6], [4, 6, 7]])
triangles = quad8[:, split].reshape(-1, 3)
tri = mtri.Triangulation(x, y, triangles)

fig, ax = plt.subplots(figsize=(10, 4), layout="constrained")
pc = ax.tripcolor(tri, r.u, shading="gouraud", cmap="viridis")
ax.set_aspect("equal")
ax.set_xlabel("x [m]")
ax.set_ylabel("y [m]")
ax.set_title(f"potential u, {r.nodes} nodes, {r.solver} ({r.iterations} iterations, {r.backend})")
fig.colorbar(pc, ax=ax, label="u [m$^2$/s]")
fig.savefig(args.out, dpi=150)
print(f"wrote {args.out}")
