"""The Python package against the command line, and `assemble` against the
published Python baseline's assembly.

    python3 python/bench/bench.py [--mesh MESH.h5] [--repeats 5] [--out profiles/python]

1. The same solve through the CLI (`quadflow run --mesh M --backend B
   --quiet`, a fresh process: wall time of the process) and through
   Python (`quadflow.solve(M, backend=B)` in a warm interpreter: wall time
   of the call; and a fresh `python3 -c "import quadflow; ..."` process),
   interleaved (CLI, Python call, Python process, CLI, ...) so that load on a
   shared machine hits all alike; serial and parallel with 2 threads;
   medians and the ratios Python / CLI.
2. `quadflow.assemble(x, y, quad8)` (arrays already in memory, as a
   NumPy/SciPy user has them; validation, quadrature, assembly, boundary
   conditions, the full CSR and the `scipy.sparse.csr_matrix` included)
   against the published baseline's assembly, 19.8 s on this machine.

Writes `results.md` and `results.json` under `--out/<machine>/`.
"""

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import quadflow

REPO = Path(__file__).resolve().parents[2]
BASELINE_ASSEMBLY_S = 19.8


def machine():
    model = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, {platform.system()}"


def machine_dir():
    m = machine().lower()
    vendor = "amd-epyc" if "epyc" in m else ("intel" if "intel" in m else "cpu")
    return f"{vendor}-{os.cpu_count()}c"


def git_rev():
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def wall(f):
    t0 = time.perf_counter()
    out = f()
    return time.perf_counter() - t0, out


def cpu_self():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def cpu_children():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed_child(cmd):
    """Wall and CPU (user + system) seconds of a child process."""
    c0, t0 = cpu_children(), time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - t0, cpu_children() - c0


def stats(v):
    return {"median": statistics.median(v), "min": min(v), "max": max(v), "runs": v}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mesh", default=str(REPO.parent / "shared" / "meshes" / "y_tube_195k.h5"))
    ap.add_argument("--cli", default=str(REPO / "target" / "release" / "quadflow"))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(REPO / "profiles" / "python"))
    args = ap.parse_args()
    mesh, cli = Path(args.mesh), Path(args.cli)
    if not cli.is_file():
        sys.exit(f"{cli}: build the CLI first (cargo build --release)")
    started = datetime.now(timezone.utc)
    load_before = os.getloadavg()

    configs = [("serial", None), ("parallel", 2)]
    solve_rows = []
    for backend, threads in configs:
        flags = ["--threads", str(threads)] if threads else []
        kw = f", threads={threads}" if threads else ""
        cmd_cli = [str(cli), "run", "--mesh", str(mesh), "--backend", backend, "--quiet", *flags]
        cmd_py = [
            sys.executable,
            "-c",
            f"import quadflow; quadflow.solve({str(mesh)!r}, backend={backend!r}{kw})",
        ]
        # warm-up (page cache, CPU frequency)
        subprocess.run(cmd_cli, check=True)
        quadflow.solve(mesh, backend=backend, threads=threads)
        t_cli, t_call, t_proc, engine_total, iterations = [], [], [], [], None
        c_cli, c_call, c_proc = [], [], []
        for i in range(args.repeats):
            w, c = timed_child(cmd_cli)
            t_cli.append(w)
            c_cli.append(c)
            c0 = cpu_self()
            dt, r = wall(lambda: quadflow.solve(mesh, backend=backend, threads=threads))
            c_call.append(cpu_self() - c0)
            t_call.append(dt)
            engine_total.append(r.times["total"])
            iterations = r.iterations
            del r
            w, c = timed_child(cmd_py)
            t_proc.append(w)
            c_proc.append(c)
            print(f"{backend} {threads or ''} run {i + 1}: wall (CPU) seconds: CLI {t_cli[-1]:.3f} ({c_cli[-1]:.3f}), "
                  f"Python call {t_call[-1]:.3f} ({c_call[-1]:.3f}), "
                  f"Python process {t_proc[-1]:.3f} ({c_proc[-1]:.3f})", flush=True)
        solve_rows.append({
            "backend": backend,
            "threads": threads,
            "iterations": iterations,
            "cli_process": stats(t_cli),
            "python_call": stats(t_call),
            "python_process": stats(t_proc),
            "python_engine_total": stats(engine_total),
            "cli_process_cpu": stats(c_cli),
            "python_call_cpu": stats(c_call),
            "python_process_cpu": stats(c_proc),
            "ratio_call": statistics.median(t_call) / statistics.median(t_cli),
            "ratio_process": statistics.median(t_proc) / statistics.median(t_cli),
            "ratio_call_cpu": statistics.median(c_call) / statistics.median(c_cli),
            "ratio_process_cpu": statistics.median(c_proc) / statistics.median(c_cli),
            "cli_command": " ".join(cmd_cli),
        })

    x, y, quad8 = quadflow.read_mesh(mesh)
    assemble_rows = []
    for backend, threads in configs:
        quadflow.assemble(x, y, quad8, backend=backend, threads=threads)  # warm-up
        ts = []
        for _ in range(args.repeats):
            dt, (K, f) = wall(lambda: quadflow.assemble(x, y, quad8, backend=backend, threads=threads))
            ts.append(dt)
        assemble_rows.append({
            "backend": backend,
            "threads": threads,
            "nnz": int(K.nnz),
            "seconds": stats(ts),
            "speedup_vs_baseline": BASELINE_ASSEMBLY_S / statistics.median(ts),
        })
        print(f"assemble {backend} {threads or ''}: median {statistics.median(ts):.4f} s", flush=True)

    result = {
        "machine": machine(),
        "date": started.isoformat(timespec="seconds"),
        "git": git_rev(),
        "python": platform.python_version(),
        "quadflow": quadflow.__version__,
        "mesh": str(mesh),
        "repeats": args.repeats,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "command": " ".join([Path(sys.executable).name] + [str(a) for a in sys.argv]),
        "solve": solve_rows,
        "assemble": assemble_rows,
        "baseline_assembly_seconds": BASELINE_ASSEMBLY_S,
    }
    out = Path(args.out) / machine_dir()
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "results.md").write_text(markdown(result))
    print(markdown(result))
    print(f"wrote {out}/results.md and results.json")


def markdown(r):
    def s(v):
        return f"{v['median']:.3f} ({v['min']:.3f}-{v['max']:.3f})"

    lines = [
        "# quadflow from Python vs the CLI",
        "",
        f"- machine: {r['machine']}",
        f"- date: {r['date']}, git {r['git']}, Python {r['python']}",
        f"- command: `{r['command']}`",
        f"- mesh: `{r['mesh']}`, {r['repeats']} repeats, interleaved; seconds: median (min-max)",
        f"- load average before/after: {', '.join(f'{v:.1f}' for v in r['load_average_before'])}"
        f" / {', '.join(f'{v:.1f}' for v in r['load_average_after'])} (a shared machine)",
        "",
        "## The same solve",
        "",
        "| executor | iterations | CLI process | Python call | Python process | engine total (Python) | call / CLI | process / CLI |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for x in r["solve"]:
        ex = x["backend"] + (f", {x['threads']} threads" if x["threads"] else "")
        lines.append(
            f"| {ex} | {x['iterations']} | {s(x['cli_process'])} | {s(x['python_call'])} | "
            f"{s(x['python_process'])} | {s(x['python_engine_total'])} | "
            f"{x['ratio_call']:.3f} | {x['ratio_process']:.3f} |"
        )
    lines += [
        "",
        "CPU seconds (user + system, all threads) of the same runs; a shared machine's load",
        "stretches wall times, much less CPU times:",
        "",
        "| executor | CLI process | Python call | Python process | call / CLI | process / CLI |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for x in r["solve"]:
        ex = x["backend"] + (f", {x['threads']} threads" if x["threads"] else "")
        lines.append(
            f"| {ex} | {s(x['cli_process_cpu'])} | {s(x['python_call_cpu'])} | {s(x['python_process_cpu'])} | "
            f"{x['ratio_call_cpu']:.3f} | {x['ratio_process_cpu']:.3f} |"
        )
    lines += [
        "",
        "CLI process: `quadflow run --mesh MESH --backend B --quiet` (a fresh process).",
        "Python call: `quadflow.solve(MESH, backend=B)` in a warm interpreter (what a notebook does).",
        "Python process: `python3 -c \"import quadflow; quadflow.solve(...)\"` (interpreter start and the NumPy import included).",
        "",
        "## assemble",
        "",
        "| executor | nnz | seconds | vs the baseline's 19.8 s |",
        "| --- | ---: | ---: | ---: |",
    ]
    for x in r["assemble"]:
        ex = x["backend"] + (f", {x['threads']} threads" if x["threads"] else "")
        lines.append(f"| {ex} | {x['nnz']} | {s(x['seconds'])} | {x['speedup_vs_baseline']:.0f}x |")
    lines += [
        "",
        "`quadflow.assemble(x, y, quad8)` from arrays in memory: conversion and validation of the mesh,",
        "quadrature, assembly, boundary conditions, the full symmetric CSR and the `scipy.sparse.csr_matrix`.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
