#!/usr/bin/env bash
# Every rank reading its blocks against rank 0 reading the whole mesh:
# a 10M-node venturi read from a contiguous file by 8 ranks (oversubscribed
# on this 2-core machine), the two ways interleaved, REPEATS times each.
# Jacobi-CG capped at 30 iterations (allow_unconverged): the solve is the
# same in both (the same RCB partition), so the cap keeps its share of the
# wall time down; the difference between the two is the read, the split,
# the join and the write.
#
#   bash profiles/pario/bench_10m.sh [REPEATS]      (default 3)
#   WAIT=poll bash profiles/pario/bench_10m.sh 5    (waiting ranks sleep:
#                                                   QUADFLOW_MPI_WAIT=poll)
#
# Writes profiles/pario/bench_10m.$WAIT.table.md (a row per run) and the
# runs' logs beside it (bench_10m.$WAIT.log).
set -eu
cd "$(dirname "$0")/../.."
root=$PWD
reps=${1:-3}
work=${WORK:-/tmp/pario-bench}
mkdir -p "$work"
q=$root/target/release/quadflow
cargo build --release --features mpi --bin quadflow >/dev/null 2>&1
export OMPI_MCA_mpi_yield_when_idle=1
export QUADFLOW_MPI_WAIT=${WAIT:-mpi}
tag=${WAIT:-mpi}
[ -f "$work/v10m.h5" ] || "$q" mesh venturi --nodes 10000000 -o "$work/v10m.h5" --layout contiguous
cat > "$work/capped.toml" <<T
[mesh]
file = "$work/v10m.h5"
[backend]
default = "mpi"
[mpi]
partitioner = "rcb"
[solver]
max_iterations = 30
allow_unconverged = true
T
log=$root/profiles/pario/bench_10m.$tag.log
# every rank under /usr/bin/time: its CPU seconds (user + system), summed
# over the ranks below (less sensitive to the machine's other load than
# the wall time; with WAIT=poll a waiting rank sleeps, so it is the work)
cat > "$work/timed.sh" <<T
#!/bin/bash
exec /usr/bin/time -a -o "$work/cpu.txt" -f "%U %S" "$q" "\$@"
T
chmod +x "$work/timed.sh"
: > "$log"
rows=()
for i in $(seq 1 "$reps"); do
  for read in blocks lead; do
    echo "== repeat $i, read $read, load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$log"
    s=$EPOCHREALTIME
    rm -f "$work/cpu.txt"
    timeout 1800 mpirun --oversubscribe --allow-run-as-root -n 8 -x QUADFLOW_MPI_WAIT "$work/timed.sh" run "$work/capped.toml" \
      --mpi-read "$read" -o "$work/$read.h5" >>"$log" 2>&1
    wall=$(python3 -c "print(round($EPOCHREALTIME - $s, 2))")
    cpu=$(awk '{s += $1 + $2} END {printf "%.2f", s}' "$work/cpu.txt")
    echo "   wall $wall s, CPU $cpu s (all ranks), load after $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$log"
    rows+=("$(python3 - "$work/$read.h5" "$read" "$wall" "$i" "$cpu" <<'PY'
import sys, h5py
a = h5py.File(sys.argv[1]).attrs
def f(k):
    return float(a[k]) if k in a else 0.0
r = [int(v) for v in str(a["mpi_peak_rss_by_rank"]).strip("b'").split(",")]
mean = sum(r) / len(r)
print(" | ".join([sys.argv[4], sys.argv[2], sys.argv[3], sys.argv[5],
    f"{f('time_load'):.2f}", f"{f('mpi_time_split'):.2f}",
    f"{f('time_quadrature') + f('time_assembly') + f('time_boundary'):.2f}",
    f"{f('time_solve'):.2f}", f"{f('time_post'):.2f}",
    f"{r[0] / 1e9:.3f}", f"{mean / 1e9:.3f}", f"{max(r) / 1e9:.3f}", f"{r[0] / mean:.2f}"]))
PY
)")
  done
done
{
  echo "| repeat | read | end to end s | CPU s (all ranks) | load s | split s | quadrature+assembly+boundary s | solve s | post s | rank 0 peak GB | mean GB | max GB | rank 0 / mean |"
  echo "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  for r in "${rows[@]}"; do echo "| $r |"; done
} > "$root/profiles/pario/bench_10m.$tag.table.md"
cat "$root/profiles/pario/bench_10m.$tag.table.md"
