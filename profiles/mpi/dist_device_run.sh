#!/usr/bin/env bash
# Issue 19 on the device machine (one GPU, 16-core host), one batch:
#  1. correctness of local = "gpu" on 1 and 2 ranks (both on the card),
#     Jacobi-CG and AMG-CG: u within 1e-9 of serial, iterations (1%, +20%),
#     against serial references made on the development machine;
#  2. the generated 1.3M-node venturi on the GPU: --backend gpu against
#     mpirun -n 1 and -n 2 --mpi-local gpu, Jacobi-CG and AMG-CG (1e-10);
#  3. the 16-core host, the same venturi, AMG-CG to 1e-10: --backend parallel
#     (16 threads) against mpirun -n 4 --mpi-local parallel --threads 4 and
#     mpirun -n 16 (agglomerate_below 5000, the default, and 20000),
#     alternating, two rounds.
# Staged folder (git-ignored): quadflow (built with --features mpi,
# stripped), check_results, this script as run.sh, meshes/*.h5 and the
# serial references meshes/<name>.serial.h5, <name>.serial-amg.h5.
#   cd .gpu/disthelper && bash run.sh        (logs under $OUT)
set -u
cd "$(dirname "$0")"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export QUADFLOW_CACHE=/tmp/qf
OUT="${OUT:-/tmp/out}"
mkdir -p "$OUT"
exec > >(tee "$OUT/run.log") 2>&1
Q=./quadflow
C=./check_results
MR="mpirun --oversubscribe --allow-run-as-root --bind-to none"
t() {
  local s=$EPOCHREALTIME
  timeout "$1" "${@:2}"
  local rc=$?
  echo "[rc $rc, $(python3 -c "print(round($EPOCHREALTIME-$s,3))") s] ${*:2}"
}
sum() { grep -E "^(  load |  assembly |  solve |  total |solver|          AMG|          [0-9]+ CG rows|mpi       [0-9]+ ranks|mpi       solve|mpi       AMG level|mpi       communication|gpu )" "$1" | sed 's/^/    /'; }
date -u
nvidia-smi -L
lscpu | grep -E "Model name|^CPU\(s\)"
mpirun --version | head -1
echo "CUDA-aware OpenMPI: $(ompi_info --parsable --all 2>/dev/null | grep -m1 mpi_built_with_cuda_support:value || echo unknown)"
ldd $Q | grep -E "libmpi|not found"
echo "== warm-up (NVRTC into the cache)"
t 60 $Q run --mesh meshes/venturi_341.h5 --backend gpu -q -o /tmp/w.h5
t 60 $Q run --mesh meshes/venturi_341.h5 --backend gpu --solver amg-cg -q -o /tmp/w.h5

echo "== 1. correctness, local gpu, 1 and 2 ranks on the card"
for m in venturi_341 s_duct_16k y_tube_195k; do
  for p in 1 2; do
    t 60 $MR -n $p $Q run --mesh "$PWD/meshes/$m.h5" --backend mpi --mpi-local gpu -o /tmp/$m.$p.h5 > /tmp/log 2>&1
    sum /tmp/log
    CHECK_U_TOL=1e-9 t 60 $C /tmp/$m.$p.h5 $p meshes/$m.serial.h5
    t 60 $MR -n $p $Q run --mesh "$PWD/meshes/$m.h5" --backend mpi --mpi-local gpu --solver amg-cg --rtol 1e-10 -o /tmp/$m.$p.amg.h5 > /tmp/log 2>&1
    sum /tmp/log
    CHECK_U_TOL=1e-9 t 60 $C /tmp/$m.$p.amg.h5 $p meshes/$m.serial-amg.h5
  done
done

cat > /tmp/v.toml <<T
[mesh]
generate = "venturi"
nodes = 1300000
T
A="--solver amg-cg --rtol 1e-10"
echo "== 2. GPU, venturi 1.3M: gpu backend, mpirun -n 1 and -n 2 --mpi-local gpu"
for s in "" "$A"; do
  echo "-- solver: ${s:-cg-jacobi (1e-8)}"
  t 60 $Q run /tmp/v.toml --backend gpu $s -o /tmp/vg.h5 > /tmp/log 2>&1; sum /tmp/log
  t 60 $MR -n 1 $Q run /tmp/v.toml --backend mpi --partitioner rcb --mpi-local gpu $s -o /tmp/v1.h5 > /tmp/log 2>&1; sum /tmp/log
  t 90 $MR -n 2 $Q run /tmp/v.toml --backend mpi --partitioner rcb --mpi-local gpu $s -o /tmp/v2.h5 > /tmp/log 2>&1; sum /tmp/log
done

# the same venturi, fewer ranks sooner (agglomerate_below 20000, against
# the default 5000)
cat /tmp/v.toml > /tmp/v20k.toml
printf '[mpi]\nagglomerate_below = 20000\n' >> /tmp/v20k.toml
echo "== 3. 16-core host, venturi 1.3M, AMG-CG to 1e-10 (mpi: agglomerate_below 5000, then 20000)"
for r in 1 2; do
  t 60 $Q run /tmp/v.toml --backend parallel --threads 16 $A -o /tmp/p16.h5 > /tmp/log 2>&1; sum /tmp/log
  for v in v v20k; do
    t 60 $MR -n 4 $Q run /tmp/$v.toml --backend mpi --partitioner rcb --mpi-local parallel --threads 4 $A -o /tmp/m4.h5 > /tmp/log 2>&1; sum /tmp/log
    t 60 $MR -n 16 $Q run /tmp/$v.toml --backend mpi --partitioner rcb $A -o /tmp/m16.h5 > /tmp/log 2>&1; sum /tmp/log
  done
done
date -u
