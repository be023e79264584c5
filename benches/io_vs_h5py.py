#!/usr/bin/env python3
"""quadflow's mesh file I/O next to h5py's, on the same files, in one run.

For each size and layout (gzip: chunks of 512 KiB, shuffle + deflate level 4;
contiguous) it times:

- write: quadflow's `h5io::write_mesh_with_sets` (which fsyncs the file before
  renaming it into place) against h5py writing the same arrays (x, y, quad8
  int32, node sets) with the same chunks and filters, with and without an
  `os.fsync` before closing;
- read: h5py reading every dataset of quadflow's file in full, against
  quadflow's read alone (`h5io::read_mesh_with_sets`) and quadflow's load
  (`quadflow run`'s load phase on the parallel backend: the read, then
  `Mesh::new_with` validation on all cores).

Both sides run as child processes doing the same thing three times: the first
time is "cold" (what one `quadflow run` or one Python script meets: fresh
memory to fault in), the other two "warm" (memory reused, as in a process
that reads many files). The rounds alternate the sides and are repeated
`--repeat` times; the tables give medians and quadflow / h5py ratios. Issue 14's
targets: load within 2x of h5py's read, write within 1.5x of h5py's write.

    python3 benches/io_vs_h5py.py [--nodes 1300000 ...] [--repeat 5]
                                  [--out profiles/io/io_vs_h5py.md]

Needs h5py and numpy; builds the `h5_io` bench with `cargo bench --no-run`.
"""

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHUNK_BYTES = 512 * 1024
TIMES = 3  # per child process: one cold, two warm


# --------------------------------------------------------------------------
# The h5py side (run as a child process)
# --------------------------------------------------------------------------

def h5py_read(path):
    import h5py
    t = time.perf_counter()
    with h5py.File(path, "r") as f:
        arrays = [f["x"][...], f["y"][...], f["quad8"][...]]
        if "node_sets" in f:
            arrays += [d[...] for d in f["node_sets"].values()]
    return time.perf_counter() - t, arrays


def storage(layout, a):
    if layout == "contiguous" or a.shape[0] == 0:
        return {}
    row = a.dtype.itemsize * (a.shape[1] if a.ndim == 2 else 1)
    band = max(1, min(a.shape[0], CHUNK_BYTES // row))
    return dict(chunks=(band,) + a.shape[1:], compression="gzip", compression_opts=4,
                shuffle=True)


def h5py_write(path, layout, arrays, sets, sync):
    import h5py
    t = time.perf_counter()
    with h5py.File(path, "w") as f:
        for name, a in arrays.items():
            f.create_dataset(name, data=a, **storage(layout, a))
        g = f.create_group("node_sets")
        for name, a in sets.items():
            g.create_dataset(name, data=a, **storage(layout, a))
        if sync:
            f.flush()
            os.fsync(f.id.get_vfd_handle())
    return time.perf_counter() - t


def child(argv):
    """`read FILE` or `write SRC OUT LAYOUT sync|nosync`, TIMES times."""
    import h5py
    if argv[0] == "read":
        times = [h5py_read(argv[1])[0] for _ in range(TIMES)]
    else:
        src, out, layout, sync = argv[1:]
        with h5py.File(src, "r") as f:
            arrays = {k: f[k][...] for k in ("x", "y", "quad8")}
            sets = {k: v[...] for k, v in f["node_sets"].items()}
        times = [h5py_write(out, layout, arrays, sets, sync == "sync") for _ in range(TIMES)]
    print(json.dumps(times))


# --------------------------------------------------------------------------
# The driver
# --------------------------------------------------------------------------

def bench_binary():
    """Builds the h5_io bench (release profile) and returns its path."""
    out = subprocess.run(
        ["cargo", "bench", "--bench", "h5_io", "--no-run", "--message-format=json"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout
    for line in out.splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg["target"]["name"] == "h5_io" \
                and msg.get("executable"):
            return msg["executable"]
    sys.exit("could not find the h5_io bench executable")


def last_json(cmd):
    out = subprocess.run(list(map(str, cmd)), check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def py(*args):
    return last_json([sys.executable, os.path.abspath(__file__), "--child", *args])


class Timing:
    """Cold (first of a process) and warm (the others) times of one quantity."""

    def __init__(self):
        self.cold, self.warm = [], []

    def add(self, times):
        self.cold.append(times[0])
        self.warm += times[1:]

    def get(self, which):
        return statistics.median(getattr(self, which))


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        return child(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, nargs="+", default=[1_300_000])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--out", help="also write the tables (Markdown) here")
    ap.add_argument("--dir", help="where to put the mesh files (default: a temporary dir)")
    a = ap.parse_args()

    exe = bench_binary()
    load_before = open("/proc/loadavg").read().split()[:3] if os.path.exists("/proc/loadavg") else []
    tmp = tempfile.TemporaryDirectory(dir=a.dir)
    d = tmp.name
    write_rows, read_rows = [], []
    for nodes in a.nodes:
        for layout in ("gzip", "contiguous"):
            ours = os.path.join(d, f"q_{nodes}_{layout}.h5")
            theirs = os.path.join(d, f"h_{nodes}_{layout}.h5")
            gen = last_json([exe, "generate", "venturi", nodes, ours, layout])
            hw, hws, qw, hr, qr, ql = (Timing() for _ in range(6))
            for _ in range(a.repeat):
                hw.add(py("write", ours, theirs, layout, "nosync"))
                hws.add(py("write", ours, theirs, layout, "sync"))
                qw.add(last_json([exe, "write", ours, ours, layout, TIMES])["write"])
                hr.add(py("read", ours))
                load = last_json([exe, "load", ours, TIMES])
                qr.add(load["read"])
                ql.add(load["load"])
            size = os.path.getsize(ours) / 1e6
            for which in ("cold", "warm"):
                w = [t.get(which) for t in (hw, hws, qw)]
                write_rows.append(
                    f"| {gen['nodes']:,} | {layout} | {size:.1f} | {which} | {w[0]:.3f} "
                    f"| {w[1]:.3f} | {w[2]:.3f} | {w[2] / w[0]:.2f} | {w[2] / w[1]:.2f} |")
                r = [t.get(which) for t in (hr, qr, ql)]
                read_rows.append(
                    f"| {gen['nodes']:,} | {layout} | {size:.1f} | {which} | {r[0]:.3f} "
                    f"| {r[1]:.3f} | {r[2]:.3f} | {r[1] / r[0]:.2f} | {r[2] / r[0]:.2f} |")
                print(write_rows[-1], read_rows[-1], sep="\n", flush=True)
            for p in (ours, theirs):
                os.remove(p)

    tables = (
        "## Write\n\n"
        "| nodes | layout | file MB | process | h5py | h5py + fsync | quadflow (fsyncs) "
        "| quadflow / h5py | quadflow / (h5py + fsync) |\n"
        "|---|---|---|---|---|---|---|---|---|\n" + "\n".join(write_rows) + "\n\n"
        "## Read and load\n\n"
        "| nodes | layout | file MB | process | h5py read | quadflow read | quadflow load "
        "| read / h5py | load / h5py |\n"
        "|---|---|---|---|---|---|---|---|---|\n" + "\n".join(read_rows) + "\n")
    print(tables)
    if a.out:
        import h5py
        import numpy as np
        cpu = platform.processor() or platform.machine()
        try:
            with open("/proc/cpuinfo") as f:
                cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
        except (OSError, StopIteration):
            pass
        stamp = subprocess.run(["date"], capture_output=True, text=True).stdout.strip()
        commit = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT,
                                capture_output=True, text=True).stdout.strip()
        cmd = "python3 " + " ".join(shlex.quote(x) for x in sys.argv)
        with open(a.out, "w") as f:
            f.write(f"# Mesh file I/O: quadflow against h5py\n\n"
                    f"- date: {stamp}\n- commit: {commit}\n"
                    f"- machine: {cpu}, {os.cpu_count()} cores, "
                    f"h5py {h5py.__version__}, HDF5 {h5py.version.hdf5_version}, "
                    f"numpy {np.__version__}\n"
                    f"- command: `{cmd}`\n"
                    f"- load average (1, 5, 15 min) before: {' '.join(load_before)}, after: "
                    f"{' '.join(open('/proc/loadavg').read().split()[:3])} "
                    f"(other jobs share the machine)\n"
                    f"- seconds, medians over {a.repeat} rounds; \"cold\": the first of "
                    f"{TIMES} in a fresh process, \"warm\": the others; files in the page "
                    f"cache\n\n")
            f.write(tables)
        print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
