#!/usr/bin/env bash
# The parallel backend's CG iterations on a many-core host, as a fraction of
# the host's own measured copy bandwidth (issue 21): for the GPU machine's
# 16-core host, which has no Rust. Measures, in one session:
#   1. the copy and triad bandwidth with 1, 2, 4, 8 and all cores
#      (examples/host_bandwidth.rs: a persistent team of threads, each
#      copying its own part of 1 GiB arrays, as the CG kernels split rows);
#   2. a generated 1.3M-node venturi, Jacobi-CG (1,000 iterations: the
#      time per iteration) and AMG-CG to 1e-10 (the whole solve), with the
#      parallel backend on THREADS threads, REPEATS times, interleaved;
# then prints and writes a table: per case ms/iteration, the bytes one
# iteration moves at least (the run summary's MB/iteration), the rate,
# and that rate over the copy bandwidth with the same number of threads.
#
# Here (a machine with Rust), build and strip the two binaries:
#   cargo build --release && cargo build --release --example host_bandwidth
#   mkdir -p .gpu && cp target/release/quadflow target/release/examples/host_bandwidth .gpu/
#   strip .gpu/quadflow .gpu/host_bandwidth
# There (from the checkout root, with .gpu/):
#   bash profiles/threads/host_run.sh            # THREADS="16 8" REPEATS=3 by default
# Writes $OUT (default profiles/threads/host-<cpu>/) with the raw logs and
# results.md. Takes about 5 minutes on 16 cores.
#
# What to look for: the Jacobi-CG rate over the copy bandwidth with the
# same threads (a memory-bound iteration reaches 0.8-1.0 of copy when
# nothing else limits it: copy moves 1 byte read per byte written, the CG
# iteration ~2.5 read per written, and reads are cheaper); AMG-CG's lower
# (coarse levels with little parallel work, more passes over short
# vectors, the coarse solve on one thread); whether 16 threads gain over 8
# (if not, the bandwidth is saturated at 8, or the threads are not
# spread over the sockets; the lscpu/numactl lines say which).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
q="${QUADFLOW:-$root/.gpu/quadflow}"
bw="${HOST_BANDWIDTH:-$root/.gpu/host_bandwidth}"
threads="${THREADS:-16 8}"
reps="${REPEATS:-3}"
nodes="${NODES:-1300000}"
[ -x "$q" ] || { echo "no quadflow binary at $q (QUADFLOW=...)"; exit 1; }
[ -x "$bw" ] || { echo "no host_bandwidth binary at $bw (HOST_BANDWIDTH=...)"; exit 1; }
cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//; s/[^A-Za-z0-9]\+/-/g' | tr 'A-Z' 'a-z' | cut -c1-40)"
out="${OUT:-$root/profiles/threads/host-$cpu-$(nproc)c}"
mkdir -p "$out"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
{
  echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "quadflow: $("$q" --version 2>/dev/null || echo '?')"
  lscpu 2>/dev/null | grep -E 'Model name|^CPU\(s\)|Thread|Core|Socket|NUMA|L2|L3' || true
  command -v numactl >/dev/null && numactl -H 2>/dev/null | head -4 || true
  free -g | head -2
} > "$out/machine.txt"
cat "$out/machine.txt"

maxt=1
for t in $threads; do [ "$t" -gt "$maxt" ] && maxt=$t; done
bw_threads="1"
for t in 2 4 8 16 32 64; do [ "$t" -le "$maxt" ] && bw_threads="$bw_threads,$t"; done
for t in $threads; do case ",$bw_threads," in *",$t,"*) ;; *) bw_threads="$bw_threads,$t";; esac; done
echo "== copy bandwidth, threads $bw_threads"
"$bw" --threads "$bw_threads" --mib 1024 --reps 15 | tee "$out/host_bandwidth.txt"

echo "== mesh: venturi, $nodes nodes"
"$q" mesh venturi --nodes "$nodes" -o "$work/venturi.h5" --layout contiguous | tail -2
cat > "$work/jacobi.toml" <<EOF
[mesh]
file = "$work/venturi.h5"
[solver]
method = "cg-jacobi"
rtol = 1e-30
max_iterations = 1000
allow_unconverged = true
EOF
cat > "$work/amg.toml" <<EOF
[mesh]
file = "$work/venturi.h5"
[solver]
method = "amg-cg"
rtol = 1e-10
EOF
for i in $(seq "$reps"); do
  for t in $threads; do
    for s in jacobi amg; do
      log="$out/${s}_${t}t_$i.log"
      "$q" run "$work/$s.toml" --backend parallel --threads "$t" --out "$work/r.h5" > "$log" 2>&1
      grep -E 'ms/iteration|AMG' "$log" | sed "s/^/$s ${t}t #$i: /"
    done
  done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$out/machine.txt"

python3 - "$out" "$threads" "$reps" <<'PY'
import re, statistics, sys, os
out, threads, reps = sys.argv[1], [int(t) for t in sys.argv[2].split()], int(sys.argv[3])
bw = {}
for line in open(os.path.join(out, "host_bandwidth.txt")):
    m = re.match(r"threads (\d+) copy ([\d.]+) ([\d.]+) triad ([\d.]+) ([\d.]+)", line)
    if m:
        bw[int(m.group(1))] = tuple(float(m.group(k)) for k in range(2, 6))
def parse(path):
    t = open(path).read()
    ms = float(re.search(r"([\d.]+) ms/iteration", t).group(1))
    mb = re.search(r"([\d.]+) MB/iteration", t)
    it = int(re.search(r": (\d+) iterations", t).group(1))
    setup = re.search(r"setup ([\d.]+) s, CG ([\d.]+) s", t)
    solve = float(re.search(r"^  solve\s+\S+\s+([\d.]+)", t, re.M).group(1))
    return dict(ms=ms, mb=float(mb.group(1)) if mb else None, it=it, solve=solve,
                setup=float(setup.group(1)) if setup else None, cg=float(setup.group(2)) if setup else None)
machine = open(os.path.join(out, "machine.txt")).read()
lines = ["# The parallel backend's CG iterations against the host's copy bandwidth", "",
         "```", machine.strip(), "```", "",
         "Copy and triad bandwidth (GB/s, best and median of 15; bytes read + written, STREAM's count):", "",
         "| threads | copy best | copy median | triad best | triad median |", "| ---: | ---: | ---: | ---: | ---: |"]
for t in sorted(bw):
    lines.append(f"| {t} | {bw[t][0]:.1f} | {bw[t][1]:.1f} | {bw[t][2]:.1f} | {bw[t][3]:.1f} |")
lines += ["", f"Generated venturi, parallel backend, medians of {reps} (Jacobi-CG: 1,000 iterations at rtol 1e-30; "
          "AMG-CG to 1e-10). Rate = the bytes one iteration moves at least (the run summary's MB/iteration) "
          "over the time per iteration; fraction = rate / median copy bandwidth with the same threads.", "",
          "| case | threads | iterations | ms/iteration | MB/iteration | GB/s | of copy | solve s (AMG: setup + CG) |",
          "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
for s in ["jacobi", "amg"]:
    for t in threads:
        rs = [parse(os.path.join(out, f"{s}_{t}t_{i}.log")) for i in range(1, reps + 1)]
        ms = statistics.median(r["ms"] for r in rs)
        mb = rs[0]["mb"]
        rate = mb / ms if mb else None
        frac = rate / bw[t][1] if rate and t in bw else None
        solve = statistics.median(r["solve"] for r in rs)
        extra = ""
        if rs[0]["setup"] is not None:
            extra = f" ({statistics.median(r['setup'] for r in rs):.3f} + {statistics.median(r['cg'] for r in rs):.3f})"
        lines.append(f"| {'Jacobi-CG' if s == 'jacobi' else 'AMG-CG'} | {t} | {rs[0]['it']} | {ms:.3f} | "
                     f"{mb if mb else '-'} | {rate:.1f} | {frac:.2f} | {solve:.3f}{extra} |" if rate else
                     f"| {s} | {t} | {rs[0]['it']} | {ms:.3f} | - | - | - | {solve:.3f}{extra} |")
text = "\n".join(lines) + "\n"
open(os.path.join(out, "results.md"), "w").write(text)
print(text)
PY
echo "written: $out/results.md"
