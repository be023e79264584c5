#!/usr/bin/env bash
# Device session of the lead after the merges: GPU tests, single GPU runs,
# the mpi backend with local = "gpu" (one GPU per rank), the assembly suite
# on two pinned host cores. Logs under $OUT.
set -u
cd "$(dirname "$0")"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export QUADFLOW_CACHE=/tmp/qfcache
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
Q=./quadflow; C=./check_results; M=../tests/data/meshes
MR="mpirun --oversubscribe --allow-run-as-root --bind-to none"
step() { echo "=== $* ($(date -u +%H:%M:%S))"; }
t() { local s=$EPOCHREALTIME; timeout "$1" "${@:2}"; local rc=$?; echo "[rc $rc, $(python3 -c "print(round($EPOCHREALTIME-$s,3))") s] ${*:2}"; }
for s in "$@"; do case $s in
info) step info; nvidia-smi -L; nproc; date -u ;;
tests) step "GPU tests"; timeout 300 ./gpu-tests --test-threads 1 2>&1 | tee "$OUT/tests.log" | grep -E "^test |panicked|test result|SKIPPED" ;;
single) step "single GPU runs (cold first: empty kernel cache)"
  printf '[mesh]\ngenerate = "venturi"\nnodes = 1300000\n' > /tmp/v.toml
  for a in "--mesh y_tube_195k.h5 --solver cg-jacobi" "--mesh y_tube_195k.h5 --solver cg-jacobi" "--mesh y_tube_195k.h5 --solver cg-jacobi" "--mesh y_tube_195k.h5 --solver cg-jacobi" "/tmp/v.toml --solver cg-jacobi" "/tmp/v.toml --solver cg-jacobi" "/tmp/v.toml --solver amg-cg --rtol 1e-10" "/tmp/v.toml --solver amg-cg --rtol 1e-10" "/tmp/v.toml --solver amg-cg --rtol 1e-10"; do
    echo "--- $a"; t 120 $Q run $a --backend gpu -o /tmp/r.h5 2>&1 | grep -E "total|solver|written|results|gpu  |NVRTC|peak|error" ; done ;;
mpi) step "mpi backend, local gpu"
  t 60 $Q run --mesh $M/venturi_341.h5 --backend mpi --mpi-local gpu -q -o /tmp/w.h5
  t 60 $MR -n 2 $Q run --mesh $PWD/y_tube_195k.h5 --backend mpi --mpi-local gpu -o /tmp/y2.h5 2>&1 | grep -E "solver|mpi  |total|error"
  t 60 $C /tmp/y2.h5 2 y195_serial.h5
  for p in 2 3; do for m in venturi_341 s_duct_16k; do
    t 40 $MR -n $p $Q run --mesh $PWD/$M/$m.h5 --backend mpi --mpi-local gpu -q -o /tmp/$m.$p.h5; t 40 $C /tmp/$m.$p.h5 $p ${m}_serial.h5
    t 40 $MR -n $p $Q run --mesh $PWD/$M/$m.h5 --backend mpi --mpi-local gpu --solver amg-cg --rtol 1e-10 -q -o /tmp/$m.$p.amg.h5; t 40 $C /tmp/$m.$p.amg.h5 $p ${m}_serial_amg.h5
  done; done
  printf '[mesh]\ngenerate = "venturi"\nnodes = 1300000\n' > /tmp/v.toml
  for n in 1 2; do t 60 $MR -n $n $Q run /tmp/v.toml --backend mpi --mpi-local gpu --partitioner rcb -o /tmp/v$n.h5 2>&1 | grep -E "solver|total|mpi  "; done ;;
ref) step "every reference mesh: gpu (Jacobi-CG, AMG-CG) against parallel (bit for bit serial)"
  for m in ../tests/data/meshes/*.h5 y_tube_195k.h5; do
    n=$(basename $m .h5)
    $Q run --mesh $m --backend parallel -q -o /tmp/p_$n.h5 && $Q run --mesh $m --backend gpu -q -o /tmp/g_$n.h5 \
      && $Q run --mesh $m --backend parallel --solver amg-cg --rtol 1e-10 -q -o /tmp/pa_$n.h5 && $Q run --mesh $m --backend gpu --solver amg-cg --rtol 1e-10 -q -o /tmp/ga_$n.h5
    python3 -c "
import h5py,numpy as np,sys
for a,b,w in [('/tmp/g_$n.h5','/tmp/p_$n.h5','cg-jacobi'),('/tmp/ga_$n.h5','/tmp/pa_$n.h5','amg-cg')]:
  A=h5py.File(a);B=h5py.File(b);d=max(abs(A[k][...]-B[k][...]).max()/max(abs(B[k][...]).max(),1e-300) for k in ['u','abs_vel','pressure'])
  print('$n',w,'max rel diff %.2e'%d,'iterations',A.attrs['iterations'],B.attrs['iterations'],'eq res %.2e'%A.attrs.get('equilibrated_relative_residual',-1),'OK' if d<1e-8 else 'FAIL')"
  done ;;
asm) step "assembly suite on cores 0,1"
  t 400 taskset -c 0,1 $Q bench asm.toml --out /tmp/prof 2>&1 | tail -3; cp -r /tmp/prof "$OUT/asm"; cat /tmp/prof/assembly/*/results.md ;;
esac; done
date -u
