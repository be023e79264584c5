#!/usr/bin/env bash
# issue 15's 1.2x comparison on a quiet machine: the device host, two pinned
# physical cores; mpirun -n 2 (local serial) against parallel --threads 2,
# y_tube_195k, alternating repeats.
set -u
cd "$(dirname "$0")"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
C=$(lscpu -p=CPU,CORE | grep -v '^#' | awk -F, '!seen[$2]++{print $1}' | head -2 | paste -sd,)
echo "cores $C; $(date -u)"; lscpu | grep "Model name"
for r in 1 2 3 4; do
  /usr/bin/time -f "A mpirun -n 2 wall %e s" taskset -c $C mpirun --oversubscribe --allow-run-as-root --bind-to none -n 2 ./quadflow run --mesh $PWD/y_tube_195k.h5 --backend mpi -o /tmp/a.h5 2>&1 | grep -E "wall|solve |total|communication|solver"
  /usr/bin/time -f "B parallel 2t wall %e s" taskset -c $C ./quadflow run --mesh y_tube_195k.h5 --backend parallel --threads 2 -o /tmp/b.h5 2>&1 | grep -E "wall|solve |total|solver"
done
date -u
