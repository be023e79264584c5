#!/usr/bin/env python3
"""quadflow against PETSc on the same linear system, in one interleaved run.

The system is the one quadflow's iterative solvers run on: the
equilibrated, decoupled, RCM-renumbered `A x = b` of a mesh
(`examples/export_system.rs` writes it in PETSc's binary format). PETSc
solves it with CG and a preconditioner on R MPI ranks, stopping by
quadflow's rule (`||b - A x|| < rtol ||b||_all`, the unpreconditioned
residual against the norm over every row of the system, decoupled ones
included); quadflow solves the mesh with its own executors. Cases run
interleaved (each repeat runs every case once, each in a fresh process)
and the table gives medians.

    python3 benches/petsc/compare.py MESH [options]

MESH: a mesh file (.h5, .msh) or generate:GEOMETRY:NODES.

Cases (--cases, comma-separated; default: the Jacobi-CG comparison of
issue 21):
  quadflow:serial            quadflow run --backend serial
  quadflow:parallel:T        quadflow run --backend parallel --threads T
  quadflow:mpi:R             mpirun -n R quadflow run --backend mpi
  ...@PATH                   any quadflow case with another binary (a build
                             before a change: quadflow:parallel:2@/tmp/old)
  petsc:PC:R                 mpirun -n R python3 compare.py --worker ...;
                             PC: jacobi (CG + Jacobi), gamg (CG + GAMG, with
                             quadflow's near-null-space vector unless
                             --gamg-constant), hypre (CG + BoomerAMG),
                             none (plain CG)

The quadflow solver follows --solver (cg-jacobi or amg-cg); pick the PETSc
preconditioners to match (jacobi for cg-jacobi; gamg, hypre for amg-cg).

Figures per case: setup (quadflow: equilibration, RCM and, for AMG, the
hierarchy; PETSc: KSPSetUp, the preconditioner's setup, after loading the
already equilibrated and renumbered matrix), the iteration (quadflow's CG
time, PETSc's KSPSolve), their sum, iterations, time per iteration and
the true relative residual. quadflow's "solve phase" (its whole solve,
setup included) is shown too. PETSc's matrix load is not counted.

Examples (the 2-core machine):
  # issue 21: Jacobi-CG to 1e-8, 2 threads vs 2 ranks vs PETSc on 2 ranks
  python3 benches/petsc/compare.py ../shared/meshes/y_tube_195k.h5 --repeats 5 \\
      --out profiles/threads/petsc_jacobi.md
  # AMG-CG to 1e-10 against GAMG and BoomerAMG
  python3 benches/petsc/compare.py ../shared/meshes/y_tube_195k.h5 --solver amg-cg \\
      --rtol 1e-10 --cases quadflow:parallel:2,quadflow:mpi:2,petsc:gamg:2,petsc:hypre:2

Needs: a release build with the mpi feature for quadflow:mpi cases
(cargo build --release --features mpi; --quadflow to point elsewhere), the
export example (built on first use with cargo, or --export-bin), mpirun,
and petsc4py (Debian: apt-get install python3-petsc4py; the script finds
it under /usr/lib/petscdir when the alternatives link is missing, or give
--petsc-python).
"""

import argparse
import glob
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# ---------------------------------------------------------------------------
# The PETSc worker (runs under mpirun, one process per rank).


def petsc_import():
    """petsc4py, finding Debian's install when the alternatives link is off."""
    try:
        import petsc4py  # noqa: F401
    except ImportError:
        dirs = sorted(glob.glob("/usr/lib/petscdir/petsc*/*-real"))
        if not dirs:
            raise
        os.environ.setdefault("PETSC_DIR", dirs[-1])
        sys.path.append(dirs[-1] + "/lib/python3/dist-packages")
        import petsc4py  # noqa: F401
    return petsc4py


def worker(args, petsc_args):
    petsc4py = petsc_import()
    petsc4py.init([sys.argv[0]] + petsc_args)
    from petsc4py import PETSc

    comm = PETSc.COMM_WORLD
    meta = json.loads((Path(args.worker) / "system.json").read_text())
    t0 = time.perf_counter()
    A = PETSc.Mat().create(comm)
    A.setType(args.mat_type)
    A.load(PETSc.Viewer().createBinary(str(Path(args.worker) / "A.petsc"), "r", comm=comm))
    b = A.createVecLeft()
    b.load(PETSc.Viewer().createBinary(str(Path(args.worker) / "b.petsc"), "r", comm=comm))
    if args.pc == "gamg" and not args.gamg_constant:
        B = A.createVecLeft()
        B.load(PETSc.Viewer().createBinary(str(Path(args.worker) / "B.petsc"), "r", comm=comm))
        B.normalize()
        A.setNearNullSpace(PETSc.NullSpace().create(vectors=[B], comm=comm))
    b.norm()  # a collective: every rank has loaded
    load = time.perf_counter() - t0

    ksp = PETSc.KSP().create(comm)
    ksp.setOperators(A)
    ksp.setType("cg")
    pc = ksp.getPC()
    pc.setType(args.pc)
    if args.pc == "hypre":
        pc.setHYPREType("boomeramg")
    ksp.setNormType(PETSc.KSP.NormType.UNPRECONDITIONED)
    # quadflow's rule: ||r|| < rtol * ||b|| over every row of the system
    ksp.setTolerances(rtol=1e-300, atol=args.rtol * meta["b_norm"], max_it=args.max_it)
    ksp.setFromOptions()
    x = A.createVecRight()
    x.set(0.0)

    def barrier():
        # a zero-length reduction: every rank arrives before the clock reads
        b.norm()

    barrier()
    t1 = time.perf_counter()
    ksp.setUp()
    barrier()
    t2 = time.perf_counter()
    ksp.solve(b, x)
    barrier()
    t3 = time.perf_counter()
    r = b.duplicate()
    A.mult(x, r)
    r.aypx(-1.0, b)
    true_rel = r.norm() / meta["b_norm"]
    reason = ksp.getConvergedReason()
    if comm.getRank() == 0:
        print(
            "RESULT "
            + json.dumps(
                {
                    "load": load,
                    "setup": t2 - t1,
                    "iterate": t3 - t2,
                    "iterations": ksp.getIterationNumber(),
                    "true_residual": true_rel,
                    "converged": reason > 0,
                    "reason": int(reason),
                    "ranks": comm.getSize(),
                    "petsc": ".".join(map(str, PETSc.Sys.getVersion())),
                }
            ),
            flush=True,
        )


# ---------------------------------------------------------------------------
# The driver.


def sh(cmd, env=None):
    """Runs cmd (a list), returns (seconds, stdout+stderr); raises on failure."""
    t0 = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed ({p.returncode}):\n{p.stdout[-3000:]}")
    return dt, p.stdout


def parse_quadflow(text):
    g = lambda pat, cast=float: (lambda m: cast(m.group(1)) if m else None)(re.search(pat, text, re.M))
    it = g(r"^solver\s+\S+: (\d+) iterations", int)
    r = {
        "solve_phase": g(r"^  solve\s+\S+\s+([\d.]+)"),
        "total": g(r"^  total\s+([\d.]+)"),
        "iterations": it,
        "true_residual": g(r"relative residual ([\d.e+-]+)"),
        "converged": bool(re.search(r"iterations, converged", text)),
    }
    amg = re.search(r"setup ([\d.]+) s, CG ([\d.]+) s", text)
    cg = re.search(r"setup ([\d.]+) s, ([\d.]+) ms/iteration", text)
    if amg:
        r["setup"], r["iterate"] = float(amg.group(1)), float(amg.group(2))
    elif cg:
        r["setup"] = float(cg.group(1))
        r["iterate"] = float(cg.group(2)) * 1e-3 * (it or 0)
    return r


def mpirun(n):
    return ["mpirun", "--oversubscribe", "--allow-run-as-root", "-n", str(n)]


def case_command(case, a, export_dir, out_h5):
    case, _, binary = case.partition("@")
    kind, *rest = case.split(":")
    if kind == "quadflow":
        how = rest[0]
        base = [binary or a.quadflow, "run", "--mesh", a.mesh_arg, "--solver", a.solver, "--rtol", str(a.rtol),
                "--max-iter", str(a.max_it), "--out", out_h5]
        if a.mesh_arg.startswith("generate:"):
            _, geom, nodes = a.mesh_arg.split(":")
            scene = Path(out_h5).with_suffix(".toml")
            scene.write_text(f"[mesh]\ngenerate = '{geom}'\nnodes = {nodes}\n")
            base[2:4] = [str(scene)]
        if how == "serial":
            return base + ["--backend", "serial"]
        if how == "parallel":
            return base + ["--backend", "parallel", "--threads", rest[1]]
        if how == "mpi":
            return mpirun(int(rest[1])) + base + ["--backend", "mpi"]
    if kind == "petsc":
        pc, ranks = rest[0], int(rest[1])
        cmd = mpirun(ranks) + [a.petsc_python, str(Path(__file__).resolve()), "--worker", str(export_dir),
                               "--pc", pc, "--rtol", str(a.rtol), "--max-it", str(a.max_it),
                               "--mat-type", a.mat_type]
        if a.gamg_constant:
            cmd.append("--gamg-constant")
        if a.petsc_options:
            cmd += ["--"] + shlex.split(a.petsc_options)
        return cmd
    raise SystemExit(f"unknown case {case!r} (see --help)")


def run_case(case, a, export_dir, work):
    cmd = case_command(case, a, export_dir, str(Path(work) / "out.h5"))
    env = dict(os.environ, OMPI_MCA_mpi_yield_when_idle="1")
    wall, text = sh(cmd, env)
    if case.startswith("petsc"):
        line = [l for l in text.splitlines() if l.startswith("RESULT ")]
        if not line:
            raise RuntimeError(f"no result from {shlex.join(cmd)}:\n{text[-3000:]}")
        r = json.loads(line[-1][7:])
    else:
        r = parse_quadflow(text)
    r["wall"] = wall
    return cmd, r


def export(a, work):
    if a.export_dir and (Path(a.export_dir) / "system.json").exists():
        return Path(a.export_dir)
    d = Path(a.export_dir or Path(work) / "system")
    if a.export_bin:
        cmd = [a.export_bin, a.mesh_arg, str(d)]
    else:
        cmd = ["cargo", "run", "--quiet", "--release", "--example", "export_system", "--", a.mesh_arg, str(d)]
    print("exporting:", shlex.join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)
    return d


def med(rs, k):
    v = [r[k] for r in rs if r.get(k) is not None]
    return statistics.median(v) if v else None


def fmt(v, spec=".3f"):
    return "-" if v is None else format(v, spec)


def machine():
    cpu = "unknown"
    try:
        for l in open("/proc/cpuinfo"):
            if l.startswith("model name"):
                cpu = l.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} CPUs, {platform.node()}"


def loadavg():
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "?"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mesh", nargs="?", help="mesh file or generate:GEOMETRY:NODES")
    ap.add_argument("--solver", default="cg-jacobi", choices=["cg-jacobi", "amg-cg"])
    ap.add_argument("--rtol", type=float, default=None, help="default 1e-8 (cg-jacobi), 1e-10 (amg-cg)")
    ap.add_argument("--cases", default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-it", type=int, default=20000)
    ap.add_argument("--quadflow", default=str(ROOT / "target/release/quadflow"))
    ap.add_argument("--export-bin", default=None, help="the built export_system example")
    ap.add_argument("--export-dir", default=None, help="reuse (or keep) the exported system here")
    ap.add_argument("--petsc-python", default="/usr/bin/python3", help="a Python with petsc4py")
    ap.add_argument("--mat-type", default="aij", help="PETSc matrix type (aij, sbaij, ...)")
    ap.add_argument("--gamg-constant", action="store_true", help="GAMG with its default constant near-null space")
    ap.add_argument("--petsc-options", default="", help="extra PETSc options, e.g. '-pc_gamg_threshold 0.02'")
    ap.add_argument("--out", default=None, help="write the table (markdown) here too")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--pc", default="jacobi", help=argparse.SUPPRESS)
    argv = sys.argv[1:]
    petsc_args = []
    if "--" in argv:
        k = argv.index("--")
        argv, petsc_args = argv[:k], argv[k + 1:]
    a = ap.parse_args(argv)
    if a.rtol is None:
        a.rtol = 1e-8 if a.solver == "cg-jacobi" else 1e-10
    if a.worker:
        return worker(a, petsc_args)
    if not a.mesh:
        ap.error("a mesh is needed")
    a.mesh_arg = a.mesh if a.mesh.startswith("generate:") else str(Path(a.mesh).resolve())
    if a.cases is None:
        a.cases = ("quadflow:parallel:2,quadflow:mpi:2,petsc:jacobi:1,petsc:jacobi:2"
                   if a.solver == "cg-jacobi" else
                   "quadflow:parallel:2,quadflow:mpi:2,petsc:gamg:2,petsc:hypre:2")
    cases = [c.strip() for c in a.cases.split(",") if c.strip()]
    with tempfile.TemporaryDirectory() as work:
        if any(c.startswith("petsc") for c in cases):
            exp = export(a, work)
        else:
            exp = None
        start = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        load0 = loadavg()
        res = {c: [] for c in cases}
        cmds = {}
        for rep in range(a.repeats):
            for c in cases:
                cmd, r = run_case(c, a, exp, work)
                cmds[c] = cmd
                res[c].append(r)
                print(f"repeat {rep + 1}/{a.repeats} {c}: setup {fmt(r.get('setup'))} s, "
                      f"iterate {fmt(r.get('iterate'))} s, {r.get('iterations')} iterations, "
                      f"true residual {fmt(r.get('true_residual'), '.3e')}, load {loadavg()}", flush=True)
        load1 = loadavg()
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "systems", "src", "mpi"], cwd=ROOT).returncode
    lines = [
        f"# quadflow and PETSc, {a.solver} to {a.rtol:g}: {a.mesh}",
        "",
        f"- machine: {machine()}",
        f"- date: {start}; load average (1, 5, 15 min) before {load0}, after {load1}",
        f"- revision: {rev}{'+changes' if dirty else ''}; {a.repeats} repeats, cases interleaved",
        f"- command: `python3 benches/petsc/compare.py {' '.join(shlex.quote(x) for x in sys.argv[1:])}`",
        "",
        "Medians (min-max of the iteration column in brackets). setup: quadflow's equilibration, RCM "
        "and AMG hierarchy / PETSc's KSPSetUp on the already equilibrated, renumbered matrix; iterate: "
        "quadflow's CG / PETSc's KSPSolve; quadflow's solve phase is its setup plus iterate; "
        "end to end: load to the end of post-processing (the summary's total).",
        "",
        "| case | setup s | iterate s | setup + iterate s | ms/iteration | iterations | true residual | quadflow solve phase s | quadflow end to end s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for c in cases:
        rs = res[c]
        for r in rs:
            r["sum"] = (r.get("setup") or 0.0) + (r.get("iterate") or 0.0)
            r["ms_it"] = 1e3 * r["iterate"] / r["iterations"] if r.get("iterations") else None
        its = [r["iterate"] for r in rs if r.get("iterate") is not None]
        rng = f" ({min(its):.3f}-{max(its):.3f})" if its else ""
        lines.append(
            f"| {c} | {fmt(med(rs, 'setup'))} | {fmt(med(rs, 'iterate'))}{rng} | {fmt(med(rs, 'sum'))} | "
            f"{fmt(med(rs, 'ms_it'))} | {fmt(med(rs, 'iterations'), '.0f')} | {fmt(med(rs, 'true_residual'), '.3e')} | "
            f"{fmt(med(rs, 'solve_phase'))} | {fmt(med(rs, 'total'))} |"
        )
    lines += ["", "Commands:", ""]
    for c in cases:
        lines.append(f"- {c}: `{shlex.join(cmds[c])}`")
    lines += ["", "Every run:", "", "| case | repeat | setup s | iterate s | iterations | true residual |",
              "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for c in cases:
        for i, r in enumerate(res[c]):
            lines.append(f"| {c} | {i + 1} | {fmt(r.get('setup'))} | {fmt(r.get('iterate'))} | "
                         f"{r.get('iterations')} | {fmt(r.get('true_residual'), '.3e')} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(text)


if __name__ == "__main__":
    main()
