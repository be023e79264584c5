#!/usr/bin/env bash
# Issue 21's CPU figures on this (2-core) machine, in one session:
#   1. y_tube_195k, Jacobi-CG to 1e-8: serial, 2 threads, 2 MPI ranks, PETSc
#      CG + Jacobi on 1 and 2 ranks (the same equilibrated matrix in RCM
#      order, quadflow's stopping rule), interleaved;
#   2. y_tube_195k, AMG-CG to 1e-10: 2 threads (end to end), serial, 2 MPI
#      ranks, PETSc CG + GAMG and CG + BoomerAMG on 2 ranks;
#   3. the CG kernels alone in one process (examples/cg_threads.rs): serial,
#      the team kernels, rayon kernels as they were, and two independent
#      halves on two threads ("ranks as threads").
# BASE=/path/to/older/quadflow adds that binary's 2-thread runs to 1 and 2
# (a before/after in the same session). REPEATS (default 5).
#
#   cargo build --release --features mpi
#   cargo build --release --examples
#   bash profiles/threads/run.sh
#
# Writes profiles/threads/amd-epyc-2c/{jacobi,amg,kernels}.md (OUT=...). Run
# it on a quiet machine: every table records the load average before and
# after; a load above ~0.5 makes the ratios meaningless on 2 cores.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
reps="${REPEATS:-5}"
out="${OUT:-$here/amd-epyc-2c}"
mesh="${QUADFLOW_SHARED:-$root/../shared}/meshes/y_tube_195k.h5"
base="${BASE:-}"
mkdir -p "$out"
[ -f "$mesh" ] || { echo "no $mesh"; exit 1; }
export="$(mktemp -d)"
trap 'rm -rf "$export"' EXIT

extra=""
[ -n "$base" ] && extra=",quadflow:parallel:2@$base"
python3 benches/petsc/compare.py "$mesh" --repeats "$reps" \
  --export-bin target/release/examples/export_system --export-dir "$export/y" \
  --cases "quadflow:parallel:2,quadflow:mpi:2,petsc:jacobi:2,quadflow:serial,petsc:jacobi:1$extra" \
  --out "$out/jacobi.md"
python3 benches/petsc/compare.py "$mesh" --solver amg-cg --repeats "$reps" \
  --export-bin target/release/examples/export_system --export-dir "$export/y" \
  --cases "quadflow:parallel:2,quadflow:mpi:2,petsc:gamg:2,petsc:hypre:2,quadflow:serial$extra" \
  --out "$out/amg.md"
{
  echo "# CG kernels alone, y_tube_195k (examples/cg_threads.rs)"
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), load before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- command: \`target/release/examples/cg_threads $mesh 400 $reps\`"
  echo
  echo '```'
  target/release/examples/cg_threads "$mesh" 400 "$reps"
  echo '```'
  echo
  echo "- load after: $(cut -d' ' -f1-3 /proc/loadavg)"
} > "$out/kernels.md"
cat "$out/kernels.md"
