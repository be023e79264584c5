#!/usr/bin/env bash
# The MPI executor against shared memory on this machine (issue 15's
# performance target): y_tube_195k, the reference solver (Jacobi-CG to
# 1e-8), end to end (load to results), run alternately REPEATS times each
#   A (one per wait mode in WAITS, default "poll"):
#      QUADFLOW_MPI_WAIT=MODE mpirun -n 2 quadflow run --backend mpi   (local serial)
#   B: quadflow run --backend parallel --threads 2
# Writes profiles/mpi/y_tube_2ranks.md (OUT= to write elsewhere): machine,
# date, load, commands, every run, medians, the ratios of the medians, and
# each MPI run's time in halo exchanges and all-reduces (slowest rank).
#
#   [WAITS="poll mpi"] mpi/bench-y-tube.sh [REPEATS]   (default 5; needs the
#                                  mpi build: cargo build --release --features mpi)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
cd "$root"
reps="${1:-5}"
waits="${WAITS:-poll}"
q="${QUADFLOW:-$root/target/release/quadflow}"
mesh="${QUADFLOW_SHARED:-$root/../shared}/meshes/y_tube_195k.h5"
out="${OUT:-$root/profiles/mpi/y_tube_2ranks.md}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
[ -f "$mesh" ] || { echo "no $mesh"; exit 1; }
export OMPI_MCA_mpi_yield_when_idle=1
a_cmd=(mpirun --oversubscribe --allow-run-as-root -n 2 "$q" run --mesh "$mesh" --backend mpi -o "$work/a.h5")
b_cmd=("$q" run --mesh "$mesh" --backend parallel --threads 2 -o "$work/b.h5")
load0="$(cut -d' ' -f1-3 /proc/loadavg)"
start="$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
rev="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- mpi src systems kernels || echo '+changes')"
for i in $(seq "$reps"); do
  for w in $waits; do
    QUADFLOW_MPI_WAIT="$w" "${a_cmd[@]}" > "$work/a-$w.$i.txt" 2>&1
  done
  "${b_cmd[@]}" > "$work/b.$i.txt" 2>&1
  echo "repeat $i of $reps done"
done
load1="$(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$work" "$reps" "$out" "$start" "$load0" "$load1" "${a_cmd[*]}" "${b_cmd[*]}" "$waits" "$rev" <<'PY'
import re, statistics, sys, platform, os
work, reps, out, start, load0, load1, acmd, bcmd, waits, rev = sys.argv[1:]
reps, waits = int(reps), waits.split()
def parse(path):
    t = open(path).read()
    g = lambda pat: float(re.search(pat, t, re.M).group(1))
    r = {
        "total": g(r"^  total\s+([\d.]+)"),
        "solve": g(r"^  solve\s+\S+\s+([\d.]+)"),
        "ms_it": g(r"([\d.]+) ms/iteration"),
        "iterations": g(r"cg-jacobi: (\d+) iterations"),
    }
    m = re.search(r"communication \(slowest rank\): ([\d.]+) s in all; halo exchanges ([\d.]+) s \((\d+) exchanges\), all-reduces ([\d.]+) s \((\d+)\), set-up traffic ([\d.]+) s", t)
    if m:
        r.update(comm=float(m.group(1)), halo=float(m.group(2)), allreduce=float(m.group(4)))
    return r
A = {w: [parse(f"{work}/a-{w}.{i}.txt") for i in range(1, reps + 1)] for w in waits}
B = [parse(f"{work}/b.{i}.txt") for i in range(1, reps + 1)]
med = lambda rs, k: statistics.median(r[k] for r in rs)
cpu = "unknown"
for l in open("/proc/cpuinfo"):
    if l.startswith("model name"):
        cpu = l.split(":", 1)[1].strip(); break
lines = []
w = lines.append
w("# y_tube_195k: 2 MPI ranks against 2 threads (reference solver, end to end)\n")
w(f"- machine: {cpu}, {os.cpu_count()} cores, {platform.node()} (shared with other agents' builds)")
w(f"- date: {start}; revision {rev}; load average (1, 5, 15 min) {load0} at the start, {load1} at the end")
w(f"- command: `WAITS=\"{' '.join(waits)}\" mpi/bench-y-tube.sh {reps}`: {reps} alternating repeats of")
w(f"  - A (wait): `QUADFLOW_MPI_WAIT=wait {acmd}` (OMPI_MCA_mpi_yield_when_idle=1)")
w(f"  - B: `{bcmd}`")
w("")
w("Seconds: end to end (solve; ms per CG iteration). MPI communication on the slowest rank: halo exchanges not hidden / all-reduces.\n")
hdr = "| run | " + " | ".join(f"A {x}: total (solve; ms/it) | A {x}: halo / all-reduce" for x in waits) + " | B: total (solve; ms/it) |"
w(hdr)
w("| --- |" + " ---: | --- |" * len(waits) + " ---: |")
fmt = lambda r: f"{r['total']:.2f} ({r['solve']:.2f}; {r['ms_it']:.3f})"
for i in range(reps):
    w(f"| {i + 1} | " + " | ".join(f"{fmt(A[x][i])} | {A[x][i]['halo']:.2f} / {A[x][i]['allreduce']:.2f}" for x in waits) + f" | {fmt(B[i])} |")
mrow = lambda rs: f"{med(rs,'total'):.2f} ({med(rs,'solve'):.2f}; {med(rs,'ms_it'):.3f})"
w("| median | " + " | ".join(f"{mrow(A[x])} | {med(A[x],'halo'):.2f} / {med(A[x],'allreduce'):.2f}" for x in waits) + f" | {mrow(B)} |")
w("")
for x in waits:
    ratio = med(A[x], "total") / med(B, "total")
    w(f"- **A {x} / B, end to end (medians): {ratio:.2f}** (target: at most 1.2); per CG iteration "
      f"{med(A[x],'ms_it') / med(B,'ms_it'):.2f}x; iterations {int(A[x][0]['iterations'])} (A) and {int(B[0]['iterations'])} (B).")
open(out, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
