#!/usr/bin/env bash
# On the GPU machine (see the README, "GPU", for what .gpu/ holds): times
# 10 warm y_tube_195k Jacobi-CG solves through `quadflow serve` from the
# API call to the result, against fresh CLI processes; writes
# $OUT/gpu_warm.json (default profiles/serve/). Target: <= 0.20 s each.
set -euo pipefail
cd "$(dirname "$0")/../.."
python3 profiles/serve/gpu_warm.py --bin "${QUADFLOW_BIN:-.gpu/quadflow}" --meshes "${MESHES:-.gpu/meshes}" "$@"
