#!/usr/bin/env bash
# A 40M-node venturi generated under MPI on the GPU machine's host (16
# cores, 128 GB): 8 ranks x 2 threads each (--mpi-local parallel
# --threads 2), no rank holding the whole mesh (generated in blocks, RCB
# in parallel, the results written by every rank), AMG-CG to 1e-10.
# Prints the end-to-end wall time, the run's summary (per phase: read,
# split, quadrature ... post, write; every rank's peak memory) and the
# same figures from the results file.
#
# Run from a checkout with a release binary built with MPI (on the
# development machine: cargo build --release --features mpi), on a host
# with OpenMPI:
#
#   bash profiles/pario/gpu_host_40m.sh            # the block run
#   LEAD=1 bash profiles/pario/gpu_host_40m.sh     # and the same run with rank 0 generating (the old path)
#
# Q (the binary, default target/release/quadflow), OUT (the folder of the
# log and files, default /tmp/pario-40m), NODES (default 40000000), NP
# (ranks, default 8) and MPIRUN (the launcher) may be set. Look for: "total" and the wall time,
# "peak memory per rank" (rank 0's ratio to the mean), "mesh read in
# blocks", "write", the AMG iterations and the true residual.
set -u
cd "$(dirname "$0")/../.."
Q=${Q:-target/release/quadflow}
OUT=${OUT:-/tmp/pario-40m}
NODES=${NODES:-40000000}
NP=${NP:-8}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_host_40m.log") 2>&1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# two cores per rank (MPIRUN replaces the whole launcher, e.g. to try the
# script on a smaller machine: MPIRUN="mpirun --oversubscribe -n 2")
MR=${MPIRUN:-"mpirun --allow-run-as-root -n $NP --map-by slot:PE=2 --bind-to core"}
date -u; uname -n; nproc; free -g | head -2; lscpu | grep -E 'Model name|Socket|NUMA node\(s\)'
mpirun --version | head -1; ldd "$Q" | grep -E 'libmpi|not found'
cat /proc/loadavg
cat > "$OUT/v40m.toml" <<T
[mesh]
generate = "venturi"
nodes = $NODES
[backend]
default = "mpi"
T
run() {
  local name=$1; shift
  echo "== $name: $NP ranks x 2 threads, venturi $NODES nodes generated, AMG-CG to 1e-10"
  local s=$EPOCHREALTIME
  $MR "$Q" run "$OUT/v40m.toml" --mpi-local parallel --threads 2 --solver amg-cg --rtol 1e-10 \
    -o "$OUT/$name.h5" --xdmf "$OUT/$name.xmf" "$@"
  local rc=$?
  echo "[$name: exit $rc, end to end $(python3 -c "print(round($EPOCHREALTIME - $s, 2))") s wall]"
  python3 - "$OUT/$name.h5" <<'PY' || true
import sys, h5py
a = h5py.File(sys.argv[1]).attrs
keys = ["nodes", "elements", "iterations", "converged", "true_relative_residual", "mpi_read",
        "time_load", "mpi_time_read", "mpi_time_split", "time_quadrature", "time_assembly",
        "time_boundary", "time_solve", "time_post", "time_total", "solver_setup_seconds",
        "solver_solve_seconds", "mpi_peak_rss_max", "mpi_peak_rss_min", "mpi_peak_rss_mean",
        "mpi_peak_rss_by_rank", "mpi_read_bytes_max", "mpi_edge_cut", "mpi_imbalance_nodes"]
for k in keys:
    if k in a:
        v = a[k]
        print(f"  {k:28s} {v.decode() if isinstance(v, bytes) else v}")
r = [int(v) for v in str(a["mpi_peak_rss_by_rank"]).strip("b'").split(",")]
print("  peak GB by rank:", " ".join(f"{v / 1e9:.2f}" for v in r),
      f"(rank 0 / mean = {r[0] / (sum(r) / len(r)):.2f})")
PY
}
run blocks
if [ -n "${LEAD:-}" ]; then
  run lead --mpi-read lead
fi
date -u
