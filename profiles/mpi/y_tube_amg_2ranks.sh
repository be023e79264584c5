#!/usr/bin/env bash
# Issue 19's 2-core comparison: y_tube_195k, AMG-CG to 1e-10, end to end
# (load to results file), alternating repeats:
#   A: mpirun -n 2 quadflow run --backend mpi            (one thread a rank)
#   B: quadflow run --backend parallel --threads 2
#   C: PETSc 3.18 (Debian's petsc4py) on 2 ranks, GAMG and BoomerAMG, on the
#      same equilibrated matrix (petsc_compare.py; setup plus solve)
# and each run's setup / solve seconds, iterations, the MPI run's per-level
# figures. Writes profiles/mpi/y_tube_amg_2ranks.md (OUT= elsewhere).
#
#   profiles/mpi/y_tube_amg_2ranks.sh [REPEATS]    (default 5; needs
#       cargo build --release --features mpi and the example petsc_matrix)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
reps="${1:-5}"
q="${QUADFLOW:-$root/target/release/quadflow}"
mesh="${QUADFLOW_SHARED:-$root/../shared}/meshes/y_tube_195k.h5"
out="${OUT:-$here/y_tube_amg_2ranks.md}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
[ -f "$mesh" ] || { echo "no $mesh"; exit 1; }
export OMPI_MCA_mpi_yield_when_idle=1
export PETSC_DIR="${PETSC_DIR:-/usr/lib/petscdir/petsc3.18/x86_64-linux-gnu-real}"
"$root/target/release/examples/petsc_matrix" "$mesh" "$work/y_tube.petsc" > "$work/petsc_matrix.txt"
a_cmd=(mpirun --oversubscribe --allow-run-as-root -n 2 "$q" run --mesh "$mesh" --backend mpi --solver amg-cg --rtol 1e-10 -o "$work/a.h5")
b_cmd=("$q" run --mesh "$mesh" --backend parallel --threads 2 --solver amg-cg --rtol 1e-10 -o "$work/b.h5")
c_cmd=(mpirun --oversubscribe --allow-run-as-root -n 2 /usr/bin/python3 "$here/petsc_compare.py" "$work/y_tube.petsc" 1)
load0="$(cut -d' ' -f1-3 /proc/loadavg)"
start="$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
rev="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- mpi src systems kernels || echo '+changes')"
for i in $(seq "$reps"); do
  /usr/bin/time -f "wall %e" "${a_cmd[@]}" > "$work/a.$i.txt" 2>&1
  /usr/bin/time -f "wall %e" "${b_cmd[@]}" > "$work/b.$i.txt" 2>&1
  "${c_cmd[@]}" > "$work/c.$i.txt" 2>&1 || true
  echo "repeat $i of $reps done ($(cut -d' ' -f1 /proc/loadavg))"
done
load1="$(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$work" "$reps" "$out" "$start" "$load0" "$load1" "${a_cmd[*]}" "${b_cmd[*]}" "${c_cmd[*]}" "$rev" <<'PY'
import os, platform, re, statistics, sys
work, reps, out, start, load0, load1, acmd, bcmd, ccmd, rev = sys.argv[1:]
reps = int(reps)
def parse(path):
    t = open(path).read()
    g = lambda pat: float(re.search(pat, t, re.M).group(1))
    r = {"wall": g(r"^wall ([\d.]+)"), "total": g(r"^  total\s+([\d.]+)"),
         "solve": g(r"^  solve\s+\S+\s+([\d.]+)"),
         "iterations": int(g(r"amg-cg: (\d+) iterations"))}
    m = re.search(r"setup ([\d.]+) s", t)
    r["setup"] = float(m.group(1)) if m else float("nan")
    r["levels"] = re.findall(r"^.*AMG level \d+:.*$", t, re.M)
    return r
def petsc(path):
    rs = {}
    for l in open(path):
        m = re.match(r"petsc (\w+) ranks \d+ setup ([\d.]+) solve ([\d.]+) total ([\d.]+) iterations (\d+)", l)
        if m:
            rs[m.group(1)] = dict(setup=float(m.group(2)), solve=float(m.group(3)), total=float(m.group(4)), iterations=int(m.group(5)))
    return rs
A = [parse(f"{work}/a.{i}.txt") for i in range(1, reps + 1)]
B = [parse(f"{work}/b.{i}.txt") for i in range(1, reps + 1)]
C = [petsc(f"{work}/c.{i}.txt") for i in range(1, reps + 1)]
med = lambda xs: statistics.median(xs)
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
w = []
w.append("# y_tube_195k AMG-CG to 1e-10: 2 MPI ranks against 2 threads and PETSc (issue 19)\n")
w.append(f"- machine: {cpu}, {os.cpu_count()} cores, {platform.node()} (shared with other agents' builds)")
w.append(f"- date: {start}; revision {rev}; load average (1, 5, 15 min) {load0} at the start, {load1} at the end")
w.append(f"- command: `profiles/mpi/y_tube_amg_2ranks.sh {reps}`: {reps} alternating repeats of")
w.append(f"  - A: `{acmd}` (OMPI_MCA_mpi_yield_when_idle=1)")
w.append(f"  - B: `{bcmd}`")
w.append(f"  - C: `{ccmd}` (PETSc 3.18, petsc4py; matrix: {open(work + '/petsc_matrix.txt').read().strip()})")
w.append("")
w.append("Seconds. A, B: wall (`/usr/bin/time`), the run's own total, its solve phase (setup + CG). C: setup + solve of the better of GAMG and BoomerAMG (slowest rank).\n")
w.append("| run | A wall | A total | A solve (setup) | A it | B wall | B total | B solve (setup) | B it | C GAMG | C BoomerAMG |")
w.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for i in range(reps):
    a, b, c = A[i], B[i], C[i]
    cg = c.get("gamg", {}); ch = c.get("boomeramg", {})
    w.append(f"| {i+1} | {a['wall']:.2f} | {a['total']:.3f} | {a['solve']:.3f} ({a['setup']:.3f}) | {a['iterations']} | {b['wall']:.2f} | {b['total']:.3f} | {b['solve']:.3f} ({b['setup']:.3f}) | {b['iterations']} | "
             f"{cg.get('total', float('nan')):.3f} ({cg.get('iterations', '-')} it) | {ch.get('total', float('nan')):.3f} ({ch.get('iterations', '-')} it) |")
ma = {k: med([r[k] for r in A]) for k in ("wall", "total", "solve", "setup")}
mb = {k: med([r[k] for r in B]) for k in ("wall", "total", "solve", "setup")}
mc = {m: med([c[m]["total"] for c in C if m in c]) for m in ("gamg", "boomeramg") if any(m in c for c in C)}
w.append(f"| median | {ma['wall']:.2f} | {ma['total']:.3f} | {ma['solve']:.3f} ({ma['setup']:.3f}) | | {mb['wall']:.2f} | {mb['total']:.3f} | {mb['solve']:.3f} ({mb['setup']:.3f}) | | "
         f"{mc.get('gamg', float('nan')):.3f} | {mc.get('boomeramg', float('nan')):.3f} |")
w.append("")
w.append(f"**A / B, end to end (the run's total): {ma['total'] / mb['total']:.3f}** (wall: {ma['wall'] / mb['wall']:.3f}; solve phase: {ma['solve'] / mb['solve']:.3f}).")
if mc:
    best = min(mc.values())
    w.append(f"PETSc's better (setup + solve, 2 ranks): {best:.3f} s; A's solve phase {ma['solve']:.3f} s ({ma['solve'] / best:.2f}x), B's {mb['solve']:.3f} s ({mb['solve'] / best:.2f}x); A's whole run {ma['total']:.3f} s.")
w.append("")
w.append("The MPI run's levels (last repeat):\n")
w.extend(f"    {l.strip()}" for l in A[-1]["levels"])
open(out, "w").write("\n".join(w) + "\n")
print("\n".join(w))
PY
