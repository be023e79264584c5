#!/bin/bash
# One device call: correctness and timings of the GPU backend on the H200.
# Usage (on the device machine, from the repository root, .gpu/ carried):
#   bash profiles/gpu_h200/device_run.sh STEPS...   (logs under $OUT)
# Steps: info cold tests crossover single suites big
set -u
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}:/usr/local/cuda/lib64
Q=.gpu/quadflow
M=.gpu/meshes
export QUADFLOW_CACHE=/tmp/qf-cache
step() { echo "=== $* ($(date -u +%H:%M:%S))"; }
for s in "$@"; do
case $s in
info)
  step info
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv
  nproc; date -u; git log --oneline -1 2>/dev/null || true
  ;;
cold)
  # a first run on a fresh machine: no PTX cache, no driver JIT cache
  step "cold vs warm, y_tube_195k Jacobi-CG"
  for k in cold warm warm warm; do
    if [ $k = cold ]; then rm -rf /tmp/qf-cold; c=/tmp/qf-cold; d=1; else c=/tmp/qf-cold; d=0; fi
    timeout 120 /usr/bin/time -f "$k wall %e s" env QUADFLOW_CACHE=$c CUDA_CACHE_DISABLE=$d $Q run --mesh $M/y_tube_195k.h5 --backend gpu --out /tmp/r.h5 2>&1 | grep -E "total|NVRTC|wall|solver"
  done
  step "cold vs warm, venturi 1.3M AMG-CG"
  for k in cold warm warm; do
    if [ $k = cold ]; then rm -rf /tmp/qf-cold2; d=1; else d=0; fi
    timeout 120 /usr/bin/time -f "$k wall %e s" env QUADFLOW_CACHE=/tmp/qf-cold2 CUDA_CACHE_DISABLE=$d $Q run scenes/venturi_1m3_parallel.toml --backend gpu --solver amg-cg --rtol 1e-10 --out /tmp/r.h5 2>&1 | grep -E "total|NVRTC|wall|solver"
  done
  ;;
tests)
  step "GPU tests"
  timeout 400 .gpu/gpu-tests --test-threads 1 2>&1 | tee "$OUT/tests.log" | grep -E "^test |panicked|test result|SKIPPED|amg |level|: \[|curved|it,|LevelCheck" | head -150
  ;;
crossover)
  step "CG loop crossover"
  timeout 240 .gpu/gpu-tests --ignored cg_loop_crossover --nocapture 2>&1 | tee "$OUT/crossover.log" | grep -E "rows|result"
  ;;
single)
  step "single runs"
  for a in "--mesh $M/y_tube_195k.h5" "scenes/venturi_1m3_parallel.toml"; do
    for sv in "cg-jacobi" "amg-cg --rtol 1e-10"; do
      echo "--- $a $sv"
      timeout 120 $Q run $a --backend gpu --solver $sv --out /tmp/r.h5 2>&1 | grep -vE "^\s*$" | tail -22
    done
  done
  ;;
big)
  step "10M and 100M AMG-CG"
  for n in 10000000 100000000; do
    printf '[mesh]\ngenerate = "venturi"\nnodes = %d\n[solver]\nmethod = "amg-cg"\nrtol = 1e-10\n' $n > /tmp/big.toml
    echo "--- $n"
    /usr/bin/time -f "wall %e s, max rss %M KB" timeout 200 $Q run /tmp/big.toml --backend gpu --out /tmp/big.h5 2>&1 | tail -24
  done
  ;;
copy)
  step "device-to-device copy bandwidth (PyTorch, 4 GiB, median of 20)"
  python3 - <<'PY'
import torch, statistics
n = 1 << 29  # 4 GiB of float64
a = torch.rand(n, dtype=torch.float64, device="cuda"); b = torch.empty_like(a)
for _ in range(3): b.copy_(a)
ts = []
for _ in range(20):
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record(); b.copy_(a); e.record(); torch.cuda.synchronize(); ts.append(s.elapsed_time(e) / 1e3)
t = statistics.median(ts)
print(f"copy {2 * 8 * n / t / 1e12:.3f} TB/s (read + write), {t * 1e3:.3f} ms for {8 * n / 2**30:.0f} GiB")
PY
  ;;
keys)
  step "scene keys [gpu] cg_loop, amg_setup"
  printf '[gpu]\ncg_loop = "persistent"\n' > /tmp/k1.toml
  timeout 60 $Q run /tmp/k1.toml --mesh $M/y_tube_195k.h5 --backend gpu --out /tmp/r.h5 2>&1 | grep -E "solver|gpu  "
  printf '[gpu]\namg_setup = "host"\n[solver]\nmethod = "amg-cg"\nrtol = 1e-10\n' > /tmp/k2.toml
  timeout 60 $Q run /tmp/k2.toml --mesh $M/y_tube_195k.h5 --backend gpu --out /tmp/r.h5 2>&1 | grep -E "solver|AMG|gpu  "
  ;;
amgsuite)
  step "gpu_amg suite"
  timeout 200 $Q bench benches/gpu_amg.toml --out /tmp/prof 2>&1 | tail -3
  tar czf "$OUT/amg.tgz" -C /tmp prof
  cat /tmp/prof/gpu_amg/*/results.md
  ;;
suites)
  step "suites"
  for s in gpu_reference gpu_venturi gpu_amg gpu_scale gpu_100m; do
    echo "--- $s"
    timeout 300 $Q bench benches/$s.toml --out /tmp/prof 2>&1 | tail -4
  done
  tar czf "$OUT/profiles.tgz" -C /tmp prof
  for f in /tmp/prof/*/*/results.md; do echo "## $f"; cat "$f"; done
  ;;
esac
done
step done
