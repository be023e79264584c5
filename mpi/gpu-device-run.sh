#!/usr/bin/env bash
# quadflow's mpi backend with local = "gpu" (one GPU per rank) on the
# device machine: correctness against serial references made on the
# development machine, then timings (see profiles/mpi/README.md).
set -u
cd "$(dirname "$0")"   # the staged folder: quadflow, check_results, y_tube_195k.h5 and serial references (see profiles/mpi/README.md)
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export QUADFLOW_CACHE=/tmp/qfcache
exec > >(tee "$OUT/run.log") 2>&1
M=../tests/data/meshes
Q=./quadflow
C=./check_results
MR="mpirun --oversubscribe --allow-run-as-root --bind-to none"
t() {
  local s=$EPOCHREALTIME
  timeout "$1" "${@:2}"
  local rc=$?
  echo "[rc $rc, $(python3 -c "print(round($EPOCHREALTIME-$s,3))") s] ${*:2}"
}
date -u; nvidia-smi -L; command -v mpirun; mpirun --version | head -1
ldd $Q | grep -E "libmpi|not found"
echo "== warm-up (NVRTC, one rank outside mpirun)"
t 60 $Q run --mesh $M/venturi_341.h5 --backend mpi --mpi-local gpu -o /tmp/w.h5
echo "== correctness, 2 ranks x 1 GPU each (3 ranks share 2 GPUs)"
t 60 $MR -n 2 $Q run --mesh $PWD/y_tube_195k.h5 --backend mpi --mpi-local gpu -o /tmp/y2.h5
t 60 $C /tmp/y2.h5 2 y195_serial.h5
for p in 2 3; do
  for m in venturi_341 s_duct_16k; do
    t 40 $MR -n $p $Q run --mesh $PWD/$M/$m.h5 --backend mpi --mpi-local gpu -q -o /tmp/$m.$p.h5
    t 40 $C /tmp/$m.$p.h5 $p ${m}_serial.h5
    t 40 $MR -n $p $Q run --mesh $PWD/$M/$m.h5 --backend mpi --mpi-local gpu --solver amg-cg --rtol 1e-10 -q -o /tmp/$m.$p.amg.h5
    t 40 $C /tmp/$m.$p.amg.h5 $p ${m}_serial_amg.h5
  done
done
cmp() { python3 -c "
import h5py,numpy as np,sys
a=h5py.File(sys.argv[1]);b=h5py.File(sys.argv[2])
u,v=a['u'][...],b['u'][...]
print('u rel diff %s vs %s: %.2e; iterations %d vs %d' % (sys.argv[1],sys.argv[2],abs(u-v).max()/abs(v).max(),a.attrs['iterations'],b.attrs['iterations']))" "$@"; }
echo "== Jacobi-CG timing, venturi 1.3M nodes: 1 rank, 2 ranks (mpi, local gpu), gpu backend"
V="--backend mpi --mpi-local gpu --partitioner rcb"
cat > /tmp/v.toml <<T
[mesh]
generate = "venturi"
nodes = 1300000
T
t 60 $MR -n 1 $Q run /tmp/v.toml $V -o /tmp/v1.h5
t 60 $MR -n 2 $Q run /tmp/v.toml $V -o /tmp/v2.h5
t 60 $Q run /tmp/v.toml --backend gpu -o /tmp/vg.h5
cmp /tmp/v2.h5 /tmp/vg.h5; cmp /tmp/v1.h5 /tmp/vg.h5
echo "== AMG-CG to 1e-10, venturi 1.3M: 2 ranks, 1 rank (mpi, local gpu; the AMG on the host), gpu backend"
A="--solver amg-cg --rtol 1e-10"
t 50 $Q run /tmp/v.toml --backend gpu $A -o /tmp/ag.h5
t 70 $MR -n 2 $Q run /tmp/v.toml $V $A -o /tmp/a2.h5
cmp /tmp/a2.h5 /tmp/ag.h5
t 60 $MR -n 1 $Q run /tmp/v.toml $V $A -o /tmp/a1.h5
date -u
