#!/usr/bin/env python3
"""Warm GPU solves through `quadflow serve` (issue 22's GPU target): starts
the server with the GPU backend available, waits for its GPU warm-up,
then times N y_tube_195k Jacobi-CG solves from the API call to the result
(POST /api/jobs, the job's event stream to its end, GET of u as Float32),
after one unmeasured solve that fills the server's mesh cache; and, for the
ratio, the same solve as fresh CLI processes. Standard library only (the GPU
machine has no Rust and may lack pip).

    python3 profiles/serve/gpu_warm.py [--bin .gpu/quadflow] [--meshes .gpu/meshes]
        [--runs 10] [--out DIR]

Writes DIR/gpu_warm.json (default: $OUT, else profiles/serve) and prints
it. Target: at most 0.20 s per solve (a fresh CLI process takes ~0.37 s).
"""
import argparse, datetime, json, os, re, statistics, subprocess, sys, time, urllib.request

ap = argparse.ArgumentParser()
ap.add_argument("--bin", default=".gpu/quadflow")
ap.add_argument("--meshes", default=".gpu/meshes")
ap.add_argument("--mesh", default="y_tube_195k.h5")
ap.add_argument("--runs", type=int, default=10)
ap.add_argument("--backend", default="gpu", help="gpu; another backend only to try the script without a GPU")
ap.add_argument("--out", default=os.environ.get("OUT", "profiles/serve"))
a = ap.parse_args()

srv = subprocess.Popen([a.bin, "serve", "--port", "0", "--meshes", a.meshes], stdout=subprocess.PIPE, text=True)
try:
    first = srv.stdout.readline()
    url = re.search(r"http://\S+?/", first).group(0).rstrip("/")
    root = re.search(r"meshes\s+(\S+) =", srv.stdout.readline()).group(1)
    mesh_id = f"{root}/{a.mesh}"
    print(first.strip(), "; mesh id", mesh_id, flush=True)

    def get(path):
        with urllib.request.urlopen(url + path, timeout=120) as r:
            return r.read()

    def post(path, body, ct="application/toml"):
        req = urllib.request.Request(url + path, data=body.encode(), method="POST", headers={"Content-Type": ct})
        with urllib.request.urlopen(req, timeout=120) as r:
            return json.loads(r.read())

    # the server warms the GPU up in the background (a tiny solve)
    t0 = time.time()
    while a.backend == "gpu":
        info = json.loads(get("/api/info"))
        gpu = next(b for b in info["backends"] if b["name"] == "gpu")
        if not gpu["available"]:
            sys.exit(f"no GPU backend on this server: {gpu['note']}")
        if "(warm)" in gpu["note"]:
            break
        if time.time() - t0 > 120:
            sys.exit("the GPU warm-up did not finish in 120 s")
        time.sleep(0.05)
    if a.backend == "gpu":
        print("gpu", gpu["note"], f"(warm after {time.time() - t0:.2f} s)", flush=True)

    scene = f'[mesh]\nfile = "{mesh_id}"\n[solver]\nmethod = "cg-jacobi"\nrtol = 1e-8\n[backend]\ndefault = "{a.backend}"\n'

    def solve():
        t = time.perf_counter()
        job = post("/api/jobs", scene)
        with urllib.request.urlopen(url + f"/api/jobs/{job['id']}/events", timeout=120) as r:
            for line in r:
                if line.startswith(b"event: end"):
                    break
        t_done = time.perf_counter() - t
        u = get(f"/api/jobs/{job['id']}/arrays/u")
        t_u = time.perf_counter() - t
        s = json.loads(get(f"/api/jobs/{job['id']}"))
        if s["status"] != "done":
            sys.exit(f"job {job['id']}: {s['status']}: {s.get('error')}")
        urllib.request.urlopen(urllib.request.Request(url + f"/api/jobs/{job['id']}", method="DELETE")).read()
        return {"api_to_done_s": t_done, "api_to_u_s": t_u, "u_bytes": len(u),
                "server_seconds_per_solve": s["seconds_per_solve"], "times": s["times"],
                "iterations": s["iterations"], "gpu_device": s.get("gpu_device"),
                "summary_gpu_lines": [l for l in s.get("summary", "").splitlines() if l.startswith("gpu")]}

    warm = solve()  # fills the mesh cache (reads the file once)
    runs = [solve() for _ in range(a.runs)]
finally:
    srv.kill()

cli = []
mesh_path = os.path.join(a.meshes, a.mesh)
for _ in range(3):
    t = time.perf_counter()
    subprocess.run([a.bin, "run", "--quiet", "--mesh", mesh_path, "--backend", a.backend], check=True)
    cli.append(time.perf_counter() - t)

def cpu_model():
    try:
        return next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        return "unknown CPU"


med = lambda k: statistics.median(r[k] for r in runs)
rec = {
    "what": f"warm GPU solves through quadflow serve: {a.mesh}, Jacobi-CG to 1e-8, from POST /api/jobs to the result",
    "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "machine": f"{cpu_model()}, {os.cpu_count()} cores, {runs[0]['gpu_device']}",
    "loadavg": open("/proc/loadavg").read().split()[:3] if os.path.exists("/proc/loadavg") else None,
    "command": "python3 profiles/serve/gpu_warm.py " + " ".join(sys.argv[1:]),
    "first_unmeasured_solve": warm,
    "runs": runs,
    "median_api_to_done_s": med("api_to_done_s"),
    "median_api_to_u_s": med("api_to_u_s"),
    "median_server_seconds_per_solve": med("server_seconds_per_solve"),
    "fresh_cli_process_s": cli,
    "median_fresh_cli_process_s": statistics.median(cli),
    "target_s": 0.20,
}
os.makedirs(a.out, exist_ok=True)
with open(os.path.join(a.out, "gpu_warm.json"), "w") as f:
    json.dump(rec, f, indent=2)
print(json.dumps({k: v for k, v in rec.items() if k not in ("runs", "first_unmeasured_solve")}, indent=2))
