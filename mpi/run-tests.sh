#!/usr/bin/env bash
# The MPI tests of quadflow-mpi: builds the test driver with the "mpi"
# feature and runs it under mpirun with 1, 2 and 3 ranks (each run under a
# timeout, so a hang fails instead of blocking): every mesh of
# ../shared/meshes with both partitioners (Jacobi-CG and AMG-CG against
# serial), a generated 100k-node venturi on 3 ranks, and the bad inputs,
# which must fail on every rank with rank 0's message.
#
#   mpi/run-tests.sh            everything
#   QUICK=1 mpi/run-tests.sh    the small meshes only (no y_tube_195k, no venturi)
#
# Installs OpenMPI and libclang first if they are missing (install-deps.sh).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
cd "$root"
bash "$here/install-deps.sh"
cargo build --release -p quadflow-mpi --features mpi --example mpi_driver
bin="$root/target/release/examples/mpi_driver"
shared="${QUADFLOW_SHARED:-$root/../shared}"
mpirun_p() {
  local p=$1; shift
  timeout --kill-after=10 "${TIMEOUT:-900}" \
    mpirun --oversubscribe --allow-run-as-root -n "$p" "$bin" "$@"
}
passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok: $*"; }
ko() { failed=$((failed + 1)); echo "FAILED: $*"; }

if [ -d "$shared/meshes" ]; then
  for p in 1 2 3; do
    if [ -n "${QUICK:-}" ]; then
      for m in "$shared"/meshes/*.h5; do
        n="$(basename "$m" .h5)"
        case "$n" in y_tube_195k) continue ;; esac
        if mpirun_p "$p" meshes "$shared" --only "$n"; then ok "meshes $n P=$p"; else ko "meshes $n P=$p"; fi
      done
    else
      if mpirun_p "$p" meshes "$shared"; then ok "meshes P=$p"; else ko "meshes P=$p"; fi
    fi
  done
else
  echo "SKIPPED: $shared/meshes is absent; the reference-mesh MPI tests did not run"
  if [ -n "${QUADFLOW_SKIP_LOG:-}" ]; then
    echo "mpi/run-tests.sh: the reference-mesh MPI tests ($shared/meshes is absent)" >> "$QUADFLOW_SKIP_LOG"
  fi
fi
if [ -z "${QUICK:-}" ]; then
  if mpirun_p 3 venturi 100000; then ok "venturi 100k P=3"; else ko "venturi 100k P=3"; fi
fi

# Bad input: every rank must exit non-zero, each printing rank 0's message.
bad() {
  local p=$1 case=$2 want=$3 out rc
  set +e
  out="$(TIMEOUT=120 mpirun_p "$p" bad "$case" 2>&1)"
  rc=$?
  set -e
  local n
  n="$(grep -c "error: .*$want" <<<"$out" || true)"
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && [ "$rc" -ne 137 ] && [ "$n" -eq "$p" ]; then
    ok "bad input $case P=$p (exit $rc, the message on all $p ranks)"
  else
    ko "bad input $case P=$p: exit $rc, $n of $p ranks printed \"$want\""
    echo "$out"
  fi
}
bad 3 more-ranks "2 elements into 3 parts"
bad 2 empty-part "part 1 of 2 is empty"
bad 3 empty-part "part 1 of 3 is empty"

echo "mpi: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
