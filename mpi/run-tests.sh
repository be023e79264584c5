#!/usr/bin/env bash
# The MPI tests: `quadflow run --backend mpi` (built with the feature
# "mpi") under mpirun with 1 to 4 ranks, each run under a timeout (a hang
# fails instead of blocking), its results file checked against the serial
# backend's by check_results (mpi/examples/check_results.rs):
#
# - every reference mesh (tests/data/meshes, and ../shared's y_tube_195k
#   when it is there), read in blocks by every rank (the default), both
#   partitioners: Jacobi-CG (iterations within 1%, u within 1e-10 of
#   serial) and AMG-CG to 1e-10; 4 ranks; a gzip copy; rank 0 reading
#   (--mpi-read lead);
# - a generated 2M-node venturi, generated under MPI (1 to 4 ranks) and
#   read from files in both layouts: Jacobi-CG capped at 100 iterations
#   (u within 1e-10 of serial's 100th iterate: the data path, read,
#   partition, assembly, write), AMG-CG to 1e-10 on 4 ranks;
# - a generated 100k-node venturi on 3 ranks with local = "parallel";
# - an XDMF index of a distributed run opens in meshio (skipped, and
#   logged, without meshio);
# - --backend mpi outside mpirun (one rank);
# - bad input (more ranks than elements, a part left empty, a bad mesh, a
#   bad element in the third rank's block, a missing file): every rank
#   exits non-zero printing the message, no results file;
# - waiting by polling (QUADFLOW_MPI_WAIT=poll) gives the same results;
# - AMG-CG on 4, 6 and 8 ranks with levels distributed and handed over to
#   fewer ranks (and y_tube_195k on 4 and 8): iterations within +20%;
# - a rank killed with SIGKILL during the solve: the run ends non-zero
#   within 30 s, no results file;
# - with a GPU: local = "gpu" on 1 and 2 ranks, Jacobi-CG and AMG-CG, u
#   within 1e-9 of serial's (skipped and logged without one);
# - the communicator itself and the distributed AMG with deep distributed
#   levels (mpi_driver).
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
cargo build --release --features mpi --bin quadflow
cargo build --release -p quadflow-mpi --features mpi --example mpi_driver --example check_results \
  --example spoil_mesh
q="$root/target/release/quadflow"
check="$root/target/release/examples/check_results"
driver="$root/target/release/examples/mpi_driver"
spoil="$root/target/release/examples/spoil_mesh"
shared="${QUADFLOW_SHARED:-$root/../shared}"
work="$(mktemp -d "${TMPDIR:-/tmp}/quadflow-mpi-tests.XXXXXX")"
trap 'rm -rf "$work"' EXIT
# ranks yield the processor while they wait (the test machine is shared;
# a rank spinning in a wait takes the core its partner needs)
export OMPI_MCA_mpi_yield_when_idle=1
mpirun_p() {
  local p=$1; shift
  timeout --kill-after=10 "${TIMEOUT:-900}" \
    mpirun --oversubscribe --allow-run-as-root -n "$p" "$@"
}
passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok: $*"; }
ko() { failed=$((failed + 1)); echo "FAILED: $*"; }

# check P RESULTS [SERIAL]: the results file against serial's
check() {
  local p=$1 r=$2 s=${3:-} out
  if out="$("$check" "$r" "$p" $s 2>&1)"; then ok "P=$p $out"; else ko "P=$p $out"; fi
}

# run P NAME RESULTS SERIAL ARGS...: a run of P ranks, checked
run_check() {
  local p=$1 what=$2 r=$3 s=$4
  shift 4
  if mpirun_p "$p" "$q" run --backend mpi -q -o "$r" "$@"; then
    check "$p" "$r" "$s"
  else
    ko "$what P=$p: the run failed"
  fi
}

# one mesh: serial references, then 1-3 ranks x both partitioners x both
# solvers (read in blocks); 4 ranks; a gzip copy; rank 0 reading
mesh_tests() {
  local m=$1 n s_cg s_amg p part gz
  n="$(basename "$m" .h5)"
  s_cg="$work/$n.serial.h5"
  s_amg="$work/$n.serial-amg.h5"
  "$q" run --mesh "$m" --backend serial -q -o "$s_cg"
  "$q" run --mesh "$m" --backend serial --solver amg-cg --rtol 1e-10 -q -o "$s_amg"
  for p in 1 2 3; do
    for part in metis rcb; do
      run_check "$p" "$n $part" "$work/$n.$p.$part.h5" "$s_cg" --mesh "$m" --partitioner "$part"
      run_check "$p" "$n $part amg-cg" "$work/$n.$p.$part.amg.h5" "$s_amg" --mesh "$m" \
        --partitioner "$part" --solver amg-cg --rtol 1e-10
    done
  done
  gz="$work/$n.gz.h5"
  "$q" mesh convert "$m" "$gz" --layout gzip >/dev/null
  run_check 2 "$n gzip" "$work/$n.2.gz.h5" "$s_cg" --mesh "$gz" --partitioner rcb
  if [ "${2:-}" != light ]; then
    run_check 4 "$n" "$work/$n.4.rcb.h5" "$s_cg" --mesh "$m" --partitioner rcb
    run_check 4 "$n gzip" "$work/$n.4.gz.h5" "$s_cg" --mesh "$gz"
    run_check 3 "$n lead" "$work/$n.3.lead.h5" "$s_cg" --mesh "$m" --mpi-read lead
  fi
}

for m in "$root"/tests/data/meshes/*.h5; do
  mesh_tests "$m"
done
if [ -z "${QUICK:-}" ]; then
  if [ -f "$shared/meshes/y_tube_195k.h5" ]; then
    mesh_tests "$shared/meshes/y_tube_195k.h5" light
  else
    echo "SKIPPED: $shared/meshes/y_tube_195k.h5 is absent; the MPI tests ran on the repository's meshes only"
    if [ -n "${QUADFLOW_SKIP_LOG:-}" ]; then
      echo "mpi/run-tests.sh: y_tube_195k under MPI ($shared/meshes is absent)" >> "$QUADFLOW_SKIP_LOG"
    fi
  fi
  # a generated 100k-node venturi, 3 ranks, each on the parallel executor
  cat > "$work/venturi.toml" <<EOF
[mesh]
generate = "venturi"
nodes = 100000
[backend]
default = "mpi"
[mpi]
local = "parallel"
EOF
  r="$work/venturi100k.3.h5"
  if mpirun_p 3 "$q" run "$work/venturi.toml" -q -o "$r"; then
    check 3 "$r"
  else
    ko "venturi 100k P=3 local parallel: the run failed"
  fi
  # a 2M-node venturi: generated under MPI, and read from files in both
  # layouts; Jacobi-CG capped at 100 iterations (the data path), AMG-CG
  # to 1e-10
  capped="[solver]
max_iterations = 100
allow_unconverged = true"
  printf '[mesh]\ngenerate = "venturi"\nnodes = 2000000\n%s\n' "$capped" > "$work/v2m.toml"
  printf '[mesh]\nfile = "%s"\n%s\n' "$work/v2m.c.h5" "$capped" > "$work/v2m.c.toml"
  printf '[mesh]\nfile = "%s"\n%s\n' "$work/v2m.g.h5" "$capped" > "$work/v2m.g.toml"
  "$q" mesh venturi --nodes 2000000 -o "$work/v2m.c.h5" --layout contiguous >/dev/null
  "$q" mesh venturi --nodes 2000000 -o "$work/v2m.g.h5" --layout gzip >/dev/null
  s2m="$work/v2m.serial.h5"
  "$q" run "$work/v2m.toml" --backend serial -q -o "$s2m"
  for p in 1 2 3 4; do
    run_check "$p" "venturi 2M generated" "$work/v2m.$p.h5" "$s2m" "$work/v2m.toml"
  done
  for p in 2 4; do
    run_check "$p" "venturi 2M contiguous" "$work/v2m.c.$p.h5" "$s2m" "$work/v2m.c.toml"
  done
  run_check 3 "venturi 2M gzip" "$work/v2m.g.3.h5" "$s2m" "$work/v2m.g.toml"
  printf '[mesh]\ngenerate = "venturi"\nnodes = 2000000\n' > "$work/v2m.amg.toml"
  "$q" run "$work/v2m.amg.toml" --backend serial --solver amg-cg --rtol 1e-10 -q -o "$work/v2m.amg.serial.h5"
  run_check 4 "venturi 2M amg-cg" "$work/v2m.amg.4.h5" "$work/v2m.amg.serial.h5" "$work/v2m.amg.toml" \
    --solver amg-cg --rtol 1e-10
  rm -f "$work"/v2m*.h5
fi

# an XDMF index over a distributed run's results: meshio opens it with
# the right cell type and shapes
r="$work/xdmf.h5"
x="$work/xdmf.xmf"
m="$root/tests/data/meshes/s_duct_16k.h5"
if mpirun_p 3 "$q" run --mesh "$m" --backend mpi -q -o "$r" --xdmf "$x"; then
  check 3 "$r" "$work/s_duct_16k.serial.h5"
  if python3 -c "import meshio" 2>/dev/null; then
    if out="$(python3 - "$x" "$m" <<'PY'
import sys, meshio, h5py
m = meshio.read(sys.argv[1])
n, e = h5py.File(sys.argv[2])["x"].shape[0], h5py.File(sys.argv[2])["quad8"].shape[0]
c = m.cells[0]
assert c.type == "quad8" and c.data.shape == (e, 8), (c.type, c.data.shape)
assert m.points.shape == (n, 2), m.points.shape
assert m.point_data["u"].shape == (n,)
assert m.cell_data["abs_vel"][0].shape == (e,) and m.cell_data["pressure"][0].shape == (e,)
print(f"quad8 {c.data.shape}, points {m.points.shape}, u {m.point_data['u'].shape}")
PY
)"; then ok "XDMF of a 3-rank run opens in meshio: $out"; else ko "XDMF in meshio: $out"; fi
  else
    echo "SKIPPED: meshio is not installed; the XDMF index was not opened in meshio"
    if [ -n "${QUADFLOW_SKIP_LOG:-}" ]; then
      echo "mpi/run-tests.sh: XDMF in meshio (meshio not installed)" >> "$QUADFLOW_SKIP_LOG"
    fi
  fi
  # and in ParaView's own reader, where ParaView is installed
  if command -v pvbatch >/dev/null; then
    cat > "$work/pv.py" <<'PY'
import sys
from paraview.simple import Xdmf3ReaderS, servermanager
r = Xdmf3ReaderS(FileName=[sys.argv[1]])
r.UpdatePipeline()
d = servermanager.Fetch(r)
b = d.GetBlock(0) if d.IsA("vtkMultiBlockDataSet") else d
types = sorted({b.GetCellType(i) for i in range(b.GetNumberOfCells())})
print("cells", b.GetNumberOfCells(), "points", b.GetNumberOfPoints(), "types", types,
      "arrays", b.GetPointData().GetArrayName(0), b.GetCellData().GetNumberOfArrays())
PY
    if out="$(env -u PYTHONPATH pvbatch "$work/pv.py" "$x" 2>&1)" && grep -q "cells 4063 points 16795 types \[23\] arrays u 2" <<<"$out"; then
      ok "XDMF of a 3-rank run opens in ParaView (pvbatch, Xdmf3ReaderS): $(grep cells <<<"$out")"
    else
      ko "XDMF in ParaView: $out"
    fi
  else
    echo "SKIPPED: ParaView (pvbatch) is not installed; the XDMF index was not opened in ParaView"
    if [ -n "${QUADFLOW_SKIP_LOG:-}" ]; then
      echo "mpi/run-tests.sh: XDMF in ParaView (pvbatch not installed)" >> "$QUADFLOW_SKIP_LOG"
    fi
  fi
else
  ko "s_duct_16k P=3 --xdmf: the run failed"
fi

# AMG-CG on 4 to 8 ranks (oversubscribed), levels distributed down to a
# few hundred rows a rank and handed over to fewer ranks: iterations within
# +20% of serial's (check_results), u as serial's
m="$root/tests/data/meshes/s_duct_16k.h5"
for p in 4 6 8; do
  for part in metis rcb; do
    cat > "$work/deep.toml" <<EOF
[mesh]
file = "$m"
[backend]
default = "mpi"
[mpi]
partitioner = "$part"
agglomerate_below = 300
[solver]
method = "amg-cg"
rtol = 1e-10
EOF
    r="$work/s_duct_16k.$p.$part.deep.h5"
    if mpirun_p "$p" "$q" run "$work/deep.toml" -q -o "$r"; then
      check "$p" "$r" "$work/s_duct_16k.serial-amg.h5"
    else
      ko "s_duct_16k P=$p $part amg-cg deep: the run failed"
    fi
  done
done
if [ -z "${QUICK:-}" ] && [ -f "$shared/meshes/y_tube_195k.h5" ]; then
  for p in 4 8; do
    r="$work/y_tube_195k.$p.amg.h5"
    if mpirun_p "$p" "$q" run --mesh "$shared/meshes/y_tube_195k.h5" --backend mpi \
      --solver amg-cg --rtol 1e-10 -q -o "$r"; then
      check "$p" "$r" "$work/y_tube_195k.serial-amg.h5"
    else
      ko "y_tube_195k P=$p amg-cg: the run failed"
    fi
  done
fi

# a rank killed (SIGKILL) during the solve ends the whole run: non-zero
# exit within 30 s, no results file, no rank left behind
killed() {
  local r="$work/killed.h5" log="$work/killed.log" pid ranks c victim t0 rc waited dt left
  cat > "$work/long.toml" <<EOF
[mesh]
generate = "venturi"
nodes = 200000
[backend]
default = "mpi"
[solver]
rtol = 1e-12
max_iterations = 1000000
EOF
  # how long the run takes to reach its solve: the same run with a short
  # solve, its whole wall time (start, mesh, split, assembly, 50 CG
  # iterations, results); the kill comes at twice that, well into the
  # solve to 1e-12 (thousands of iterations)
  sed 's/^max_iterations = .*/max_iterations = 50\nallow_unconverged = true/' "$work/long.toml" >"$work/short.toml"
  local s0 s1 lead
  s0=$(date +%s.%N)
  mpirun --oversubscribe --allow-run-as-root -n 3 "$q" run "$work/short.toml" -q -o "$work/short.h5" >/dev/null 2>&1 || true
  s1=$(date +%s.%N)
  lead="$(python3 -c "import sys; print(f'{2 * (float(sys.argv[1]) - float(sys.argv[2])) + 2:.1f}')" "$s1" "$s0")"
  rm -f "$r"
  mpirun --oversubscribe --allow-run-as-root -n 3 "$q" run "$work/long.toml" -q -o "$r" >"$log" 2>&1 &
  pid=$!
  # the ranks: processes of this command whose MPI rank is set
  ranks=""
  for _ in $(seq 150); do
    ranks=""
    for c in $(pgrep -f "$q run $work/long.toml" || true); do
      if tr '\0' '\n' <"/proc/$c/environ" 2>/dev/null | grep -q '^OMPI_COMM_WORLD_RANK='; then
        ranks="$ranks $c"
      fi
    done
    [ "$(wc -w <<<"$ranks")" -eq 3 ] && break
    sleep 0.2
  done
  victim=""
  for c in $ranks; do
    if tr '\0' '\n' <"/proc/$c/environ" 2>/dev/null | grep -qx 'OMPI_COMM_WORLD_RANK=1'; then victim=$c; fi
  done
  if [ -z "$victim" ]; then
    ko "killed rank: the 3 ranks were not found"
    kill "$pid" 2>/dev/null || true
    wait "$pid" || true
    return
  fi
  sleep "$lead"
  if ! kill -0 "$pid" 2>/dev/null; then
    ko "killed rank: the run ended before the kill"
    cat "$log"
    return
  fi
  t0=$(date +%s.%N)
  kill -9 "$victim"
  waited=0
  while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt 300 ]; do
    sleep 0.1
    waited=$((waited + 1))
  done
  if kill -0 "$pid" 2>/dev/null; then
    ko "killed rank: the run still runs 30 s after rank 1 was killed"
    kill -9 "$pid" $ranks 2>/dev/null || true
    wait "$pid" || true
    return
  fi
  set +e
  wait "$pid"
  rc=$?
  set -e
  dt="$(python3 -c "import sys; print(f'{float(sys.argv[1]) - float(sys.argv[2]):.2f}')" "$(date +%s.%N)" "$t0")"
  # the other ranks go with mpirun (give the system a moment to reap them)
  for _ in $(seq 50); do
    left=""
    for c in $ranks; do
      if [ -e "/proc/$c" ] && ! grep -q '^State:.*Z' "/proc/$c/status" 2>/dev/null; then left="$left $c"; fi
    done
    [ -z "$left" ] && break
    sleep 0.2
  done
  if [ "$rc" -ne 0 ] && [ ! -e "$r" ] && [ -z "$left" ]; then
    ok "rank 1 of 3 killed during the solve (at $lead s): the run ended in $dt s with exit $rc, no results file, no rank left"
  else
    ko "rank 1 of 3 killed: exit $rc after $dt s$([ -e "$r" ] && echo ', results written')$([ -n "$left" ] && echo ", ranks left:$left")"
    cat "$log"
  fi
}
killed

# GPU ranks (local = "gpu"), where this machine has a GPU: 1 and 2 ranks on
# the card, Jacobi-CG and AMG-CG, u within 1e-9 of serial's, iterations as
# above (1% and +20%); without a GPU the skip is logged
if nvidia-smi -L >/dev/null 2>&1; then
  for m in venturi_341 s_duct_16k; do
    mm="$root/tests/data/meshes/$m.h5"
    for p in 1 2; do
      r="$work/$m.$p.gpu.h5"
      if mpirun_p "$p" "$q" run --mesh "$mm" --backend mpi --mpi-local gpu -q -o "$r"; then
        CHECK_U_TOL=1e-9 check "$p" "$r" "$work/$m.serial.h5"
      else
        ko "$m P=$p local gpu: the run failed"
      fi
      r="$work/$m.$p.gpu.amg.h5"
      if mpirun_p "$p" "$q" run --mesh "$mm" --backend mpi --mpi-local gpu --solver amg-cg --rtol 1e-10 -q -o "$r"; then
        CHECK_U_TOL=1e-9 check "$p" "$r" "$work/$m.serial-amg.h5"
      else
        ko "$m P=$p local gpu amg-cg: the run failed"
      fi
    done
  done
else
  echo "SKIPPED: no GPU (nvidia-smi -L failed): the local = \"gpu\" tests did not run"
  if [ -n "${QUADFLOW_SKIP_LOG:-}" ]; then
    echo "mpi/run-tests.sh: local = \"gpu\" on 1 and 2 ranks (no GPU on this machine)" >> "$QUADFLOW_SKIP_LOG"
  fi
fi

# outside mpirun: one rank
r="$work/outside.h5"
m="$root/tests/data/meshes/venturi_341.h5"
if "$q" run --mesh "$m" --backend mpi -q -o "$r"; then
  check 1 "$r" "$work/venturi_341.serial.h5"
else
  ko "--backend mpi outside mpirun: the run failed"
fi

# waiting by polling and sleeping (QUADFLOW_MPI_WAIT=poll): the same
# results; a bad value is refused on every rank
for p in 2 3; do
  r="$work/s_duct_16k.$p.poll.h5"
  if QUADFLOW_MPI_WAIT=poll mpirun_p "$p" "$q" run --mesh "$root/tests/data/meshes/s_duct_16k.h5" \
    --backend mpi -q -o "$r"; then
    check "$p" "$r" "$work/s_duct_16k.serial.h5"
  else
    ko "s_duct_16k P=$p QUADFLOW_MPI_WAIT=poll: the run failed"
  fi
done

# bad input: every rank exits non-zero printing the message, no results
bad() {
  local p=$1 want=$2 out rc n r="$work/bad.h5"
  shift 2
  set +e
  out="$(TIMEOUT=120 mpirun_p "$p" "$q" run --backend mpi -q -o "$r" "$@" 2>&1)"
  rc=$?
  set -e
  n="$(grep -c "^error: .*$want" <<<"$out" || true)"
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && [ "$rc" -ne 137 ] && [ "$n" -eq "$p" ] && [ ! -e "$r" ]; then
    ok "bad input, $p ranks: \"$want\" on all $p ranks (exit $rc), no results file"
  else
    ko "bad input, $p ranks: exit $rc, $n of $p ranks printed \"$want\"$([ -e "$r" ] && echo ', results written')"
    echo "$out"
  fi
}
fx="$root/tests/fixtures/mpi"
bad 3 "cannot split a mesh of 2 elements into 3 parts" --mesh "$fx/strip2.msh"
bad 9 "part [0-9] of 9 is empty" --mesh "$fx/grid3x3_centre_last.msh" --partitioner rcb
bad 2 "lists node 3 twice" --mesh "$fx/inside_out.msh"
# a bad element in the third rank's block (of four), read in blocks, both
# layouts: every rank names it by its index in the whole mesh
m16="$root/tests/data/meshes/s_duct_16k.h5"
e3=$(( 4063 * 2 / 4 + 17 ))
"$spoil" "$m16" "$work/bad3.h5" "$e3" contiguous >/dev/null
"$spoil" "$m16" "$work/bad3.gz.h5" "$e3" gzip >/dev/null
bad 4 "mesh: element $e3 lists node" --mesh "$work/bad3.h5"
bad 4 "mesh: element $e3 lists node" --mesh "$work/bad3.gz.h5" --partitioner rcb
bad 3 "no_such_mesh.h5" --mesh "$work/no_such_mesh.h5"
bad 2 "the solver did not converge" --mesh "$m" --max-iter 5
QUADFLOW_MPI_WAIT=sometimes bad 2 "QUADFLOW_MPI_WAIT=sometimes: expected mpi or poll" --mesh "$m"

# the communicator, and AMG-CG with deep distributed levels
for p in 1 2 3; do
  if mpirun_p "$p" "$driver" selftest >"$work/selftest.log" 2>&1; then
    ok "communicator self-test P=$p"
  else
    ko "communicator self-test P=$p"; cat "$work/selftest.log"
  fi
done
if mpirun_p 3 "$driver" meshes "$root/tests/data" --only s_duct_16k >"$work/driver.log" 2>&1; then
  ok "distributed solvers on s_duct_16k, P=3 ($(tail -1 "$work/driver.log"))"
else
  ko "distributed solvers on s_duct_16k, P=3"; cat "$work/driver.log"
fi

echo "mpi: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
