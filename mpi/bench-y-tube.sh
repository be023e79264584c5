#!/usr/bin/env bash
# The MPI executor against shared memory on this machine (issue 15's
# performance target): y_tube_195k, the reference solver (Jacobi-CG to
# 1e-8), end to end (load to results), run alternately REPEATS times each
#   A: mpirun -n 2 quadflow run --backend mpi            (local serial)
#   B: quadflow run --backend parallel --threads 2
# Writes profiles/mpi/y_tube_2ranks.md: machine, date, load, commands,
# every run, medians, and the ratio of the medians; and the MPI run's time
# in halo exchanges and all-reduces (slowest rank).
#
#   mpi/bench-y-tube.sh [REPEATS]        (default 5; needs the mpi build:
#                                         cargo build --release --features mpi)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
cd "$root"
reps="${1:-5}"
q="$root/target/release/quadflow"
mesh="${QUADFLOW_SHARED:-$root/../shared}/meshes/y_tube_195k.h5"
out="$root/profiles/mpi/y_tube_2ranks.md"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
[ -f "$mesh" ] || { echo "no $mesh"; exit 1; }
export OMPI_MCA_mpi_yield_when_idle=1
a_cmd=(mpirun --oversubscribe --allow-run-as-root -n 2 "$q" run --mesh "$mesh" --backend mpi -o "$work/a.h5")
b_cmd=("$q" run --mesh "$mesh" --backend parallel --threads 2 -o "$work/b.h5")
load0="$(cut -d' ' -f1-3 /proc/loadavg)"
start="$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
for i in $(seq "$reps"); do
  "${a_cmd[@]}" > "$work/a.$i.txt" 2>&1
  "${b_cmd[@]}" > "$work/b.$i.txt" 2>&1
  echo "repeat $i of $reps done"
done
load1="$(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$work" "$reps" "$out" "$start" "$load0" "$load1" "${a_cmd[*]}" "${b_cmd[*]}" <<'EOF'
import re, statistics, sys, platform, os
work, reps, out, start, load0, load1, acmd, bcmd = sys.argv[1:]
reps = int(reps)
def parse(path):
    t = open(path).read()
    g = lambda pat: float(re.search(pat, t, re.M).group(1))
    r = {
        "total": g(r"^  total\s+([\d.]+)"),
        "solve": g(r"^  solve\s+\S+\s+([\d.]+)"),
        "setup": g(r"setup ([\d.]+) s, [\d.]+ ms/iteration"),
        "ms_it": g(r"([\d.]+) ms/iteration"),
        "iterations": g(r"cg-jacobi: (\d+) iterations"),
    }
    m = re.search(r"communication \(slowest rank\): ([\d.]+) s in all; halo exchanges ([\d.]+) s \((\d+) exchanges\), all-reduces ([\d.]+) s \((\d+)\), set-up traffic ([\d.]+) s", t)
    if m:
        r.update(comm=float(m.group(1)), halo=float(m.group(2)), allreduce=float(m.group(4)), setup_comm=float(m.group(6)))
        r["split"] = g(r"partitioner \S+ \(([\d.]+) s to split")
    return r
A = [parse(f"{work}/a.{i}.txt") for i in range(1, reps + 1)]
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
w(f"- date: {start}; load average (1, 5, 15 min) {load0} at the start, {load1} at the end")
w(f"- command: `mpi/bench-y-tube.sh {reps}`: {reps} alternating repeats of")
w(f"  - A: `{acmd}` (OMPI_MCA_mpi_yield_when_idle=1)")
w(f"  - B: `{bcmd}`")
w("")
w("| run | A total s | A solve s | A setup s | A ms/it | A comm s (halo / all-reduce) | B total s | B solve s | B setup s | B ms/it |")
w("| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |")
for i, (a, b) in enumerate(zip(A, B), 1):
    w(f"| {i} | {a['total']:.2f} | {a['solve']:.2f} | {a['setup']:.3f} | {a['ms_it']:.3f} | {a['comm']:.2f} ({a['halo']:.2f} / {a['allreduce']:.2f}) | {b['total']:.2f} | {b['solve']:.2f} | {b['setup']:.3f} | {b['ms_it']:.3f} |")
w(f"| median | {med(A,'total'):.2f} | {med(A,'solve'):.2f} | {med(A,'setup'):.3f} | {med(A,'ms_it'):.3f} | {med(A,'comm'):.2f} ({med(A,'halo'):.2f} / {med(A,'allreduce'):.2f}) | {med(B,'total'):.2f} | {med(B,'solve'):.2f} | {med(B,'setup'):.3f} | {med(B,'ms_it'):.3f} |")
w("")
ratio = med(A, "total") / med(B, "total")
w(f"**End to end, median A / median B = {ratio:.2f}** (target: at most 1.2). Per CG iteration "
  f"{med(A,'ms_it') / med(B,'ms_it'):.2f}x; iterations {int(A[0]['iterations'])} (A) and {int(B[0]['iterations'])} (B).")
w(f"A's slowest rank spent, in the median run, {med(A,'halo'):.2f} s in halo exchanges (time not hidden behind the all-reduce) "
  f"and {med(A,'allreduce'):.2f} s in all-reduces ({med(A,'comm'):.2f} s of communication in all, set-up traffic "
  f"{med(A,'setup_comm'):.2f} s); splitting and sending the mesh took {med(A,'split'):.2f} s on rank 0.")
open(out, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
