#!/usr/bin/env bash
# The gpu helper's device session for issue 21 ("every executor at its
# floor"): the GPU tests, before/after timings of the same card in the same
# call, ten identical runs, the largest venturi at rtol 1e-10.
#
# Staging (on the development machine; the device tool sends /work/main):
#   cargo build --release --bin quadflow
#   cargo test --release -p quadflow-systems --test gpu --no-run
#   cargo test --release --test gpu_floor --no-run
#   D=/work/main/.gpu/gpuhelper; mkdir -p $D
#   strip -o $D/quadflow target/release/quadflow
#   strip -o $D/gpu-tests target/release/deps/gpu-<hash>
#   strip -o $D/gpu-floor target/release/deps/gpu_floor-<hash>
#   strip -o $D/quadflow_before <main's quadflow>   # the "before"
#   cp ../shared/meshes/y_tube_195k.h5 profiles/gpu_floor/run.sh $D/
# Then, with carry [".gpu/gpuhelper"]:
#   cd .gpu/gpuhelper && bash run.sh STEPS...        (logs under $OUT)
# Steps: info mesh tests cli floor big copy
set -u
cd "$(dirname "$0")"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
export QUADFLOW_CACHE=/tmp/qf
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
B=./quadflow_before
A=./quadflow
step() { echo "=== $* ($(date -u +%H:%M:%S))"; }
keep='^  (quadrature|assembly|boundary|solve|post|total) |^solver|ms/iteration|^gpu |error|Error|panicked'
for s in "$@"; do
case $s in
info)
  step info
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem --format=csv
  nproc; date -u; cat /proc/loadavg
  ;;
mesh)
  step "the 1.3M venturi as a file"
  timeout 60 $A mesh venturi --nodes 1300000 -o /tmp/v1m3.h5 2>&1 | tail -2
  printf '[solver]\nmax_iterations = 200000\n' > /tmp/jac.toml
  printf '[solver]\nmethod = "amg-cg"\nrtol = 1e-10\n' > /tmp/amg.toml
  ;;
tests)
  step "GPU tests (systems/tests/gpu.rs)"
  timeout 110 ./gpu-tests --test-threads 1 --nocapture > "$OUT/tests.log" 2>&1
  echo "rc $?"
  grep -E "^test |panicked|test result|SKIPPED|rtol|it \(|twin|identical|graph|kernels\)" "$OUT/tests.log" | head -120
  ;;
cli)
  step "before (main) / after, one process a run (context excluded from the phases), interleaved"
  for k in 1 2; do
    for bin in $B $A; do
      echo "--- $bin y_tube_195k cg-jacobi"
      timeout 60 $bin run --mesh y_tube_195k.h5 --backend gpu -o /tmp/r.h5 2>&1 | grep -E "$keep"
    done
  done
  for k in 1; do
    for bin in $B $A; do
      echo "--- $bin venturi 1.3M cg-jacobi"
      timeout 60 $bin run /tmp/jac.toml --mesh /tmp/v1m3.h5 --backend gpu -o /tmp/r.h5 2>&1 | grep -E "$keep"
      echo "--- $bin venturi 1.3M amg-cg 1e-10"
      timeout 60 $bin run /tmp/amg.toml --mesh /tmp/v1m3.h5 --backend gpu -o /tmp/r.h5 2>&1 | grep -E "$keep"
    done
  done
  ;;
floor)
  step "ten identical runs in one process, warm timings, loop variants"
  QUADFLOW_GPU_MESHES=$PWD timeout 100 ./gpu-floor --nocapture --test-threads 1 identical_runs > "$OUT/floor.log" 2>&1
  echo "rc $?"
  grep -vE "^\s*$" "$OUT/floor.log" | tail -60
  ;;
big)
  step "the largest venturi that fits, AMG-CG at rtol 1e-10"
  /usr/bin/time -f "wall %e s, max rss %M KB" timeout 100 ./gpu-floor --ignored --nocapture largest_venturi > "$OUT/big.log" 2>&1
  echo "rc $?"
  grep -vE "^\s*$" "$OUT/big.log" | tail -20
  ;;
copy)
  # measured on the H200 before (4.254 TB/s, profiles/gpu_h200/device_run3.log)
  nvidia-smi -L | grep -q H200 && continue
  step "device-to-device copy bandwidth (PyTorch, 4 GiB, median of 20)"
  timeout 40 python3 - <<'PY'
import torch, statistics
n = 1 << 29
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
esac
done
step done
