//! `quadflow serve` through its HTTP API: the binary started on a free
//! port, driven by a plain HTTP/1.1 client. Solves through the API give the
//! CLI's `u` bit for bit; a long solve is cancelled and leaves nothing; bad
//! and oversized uploads and path traversal are refused with clear
//! messages; the token is enforced off loopback.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running server, stopped when dropped.
struct Server {
    child: Child,
    port: u16,
    /// The token printed, if any.
    token: Option<String>,
    /// The server's temporary folder (its uploads and files).
    tmp: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(args: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_quadflow"))
        .arg("serve")
        .args(["--port", "0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting quadflow serve");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let (mut port, mut token, mut tmp) = (0, None, PathBuf::new());
    let t0 = Instant::now();
    for _ in 0..3 {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        if let Some(rest) = line.split("listening on http://").nth(1) {
            let hostport = rest.split('/').next().unwrap();
            port = hostport.rsplit(':').next().unwrap().parse().unwrap();
            // up in under a second, as the server measures it
            let up: f64 = line
                .split("up in ")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            assert!(up < 1.0, "{line}");
        }
        if let Some(t) = line.strip_prefix("token     ") {
            token = Some(t.split_whitespace().next().unwrap().to_string());
        }
        if let Some(u) = line.split("uploads = ").nth(1) {
            tmp = PathBuf::from(u.trim()).parent().unwrap().to_path_buf();
        }
        if line.starts_with("meshes") {
            break;
        }
    }
    assert!(port > 0, "no port printed");
    // and answering soon after the process started
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    // keep draining stdout so the server never blocks on it
    std::thread::spawn(move || {
        let mut sink = String::new();
        let _ = out.read_to_string(&mut sink);
    });
    Server {
        child,
        port,
        token,
        tmp,
    }
}

struct Reply {
    status: u16,
    headers: String,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
    fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(nl) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size =
            usize::from_str_radix(std::str::from_utf8(&b[..nl]).unwrap().trim(), 16).unwrap_or(0);
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[nl + 2..nl + 2 + size]);
        b = &b[nl + 2 + size + 2..];
    }
}

impl Server {
    fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.port,
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).unwrap();
        // a refused upload may close before the whole body is read
        let _ = s.write_all(body);
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw);
        let end = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("an HTTP answer");
        let head = String::from_utf8_lossy(&raw[..end]).to_string();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        let mut body = raw[end + 4..].to_vec();
        if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            body = dechunk(&body);
        }
        Reply {
            status,
            headers: head,
            body,
        }
    }

    fn get(&self, path: &str) -> Reply {
        self.request("GET", path, &[], b"")
    }

    fn post_toml(&self, path: &str, toml: &str) -> Reply {
        self.request(
            "POST",
            path,
            &[("Content-Type", "application/toml")],
            toml.as_bytes(),
        )
    }

    /// Polls a job until it is finished; its JSON.
    fn wait(&self, id: u64, limit: Duration) -> serde_json::Value {
        let t0 = Instant::now();
        loop {
            let j = self.get(&format!("/api/jobs/{id}")).json();
            let s = j["status"].as_str().unwrap().to_string();
            if s == "done" || s == "failed" || s == "cancelled" {
                return j;
            }
            assert!(t0.elapsed() < limit, "job {id} still {s} after {limit:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn data(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/meshes")).join(name)
}

/// `quadflow run --mesh FILE` as the CLI does it (the built-in default
/// scene's settings): its `u`.
fn cli_u(mesh: &Path, dir: &Path) -> Vec<f64> {
    let out = dir.join("cli.h5");
    let st = Command::new(env!("CARGO_BIN_EXE_quadflow"))
        .args(["run", "--quiet", "--mesh"])
        .arg(mesh)
        .arg("--out")
        .arg(&out)
        .status()
        .unwrap();
    assert!(st.success());
    quadflow::io::h5::read_results(&out).unwrap().u
}

fn f64s(b: &[u8]) -> Vec<f64> {
    b.chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

#[test]
fn solves_through_the_api_give_the_clis_u_bit_for_bit() {
    let srv = start(&[]);
    let dir = tempfile::tempdir().unwrap();
    for name in ["y_tube_201", "venturi_341"] {
        let want = cli_u(&data(&format!("{name}.h5")), dir.path());
        let r = srv.post_toml("/api/jobs", &format!("[mesh]\nfile = \"data/{name}.h5\"\n"));
        assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
        let id = r.json()["id"].as_u64().unwrap();
        let j = srv.wait(id, Duration::from_secs(60));
        assert_eq!(j["status"], "done", "{j}");
        assert_eq!(j["nodes"].as_u64().unwrap() as usize, want.len());
        assert!(j["seconds_per_solve"].as_f64().unwrap() > 0.0);
        // the timeline: load and the five phases, each with its backend
        let phases: Vec<_> = j["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                (
                    b["phase"].as_str().unwrap().to_string(),
                    b["backend"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(phases.len(), 6, "{phases:?}");
        assert_eq!(phases[4], ("solve".to_string(), "serial".to_string()));
        // u exactly, as Float64 and through the results file
        let u = f64s(&srv.get(&format!("/api/jobs/{id}/arrays/u?dtype=f64")).body);
        assert_eq!(u.len(), want.len());
        assert!(
            u.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()),
            "{name}: u differs from the CLI's"
        );
        let h5 = srv.get(&format!("/api/jobs/{id}/files/results"));
        assert_eq!(h5.status, 200);
        let p = dir.path().join("api.h5");
        std::fs::write(&p, &h5.body).unwrap();
        let res = quadflow::io::h5::read_results(&p).unwrap();
        assert!(
            res.u
                .iter()
                .zip(&want)
                .all(|(a, b)| a.to_bits() == b.to_bits())
        );
        // the Float32 arrays the page draws
        let f32u = srv.get(&format!("/api/jobs/{id}/arrays/u")).body;
        assert_eq!(f32u.len(), 4 * want.len());
        let coords = srv.get(&format!("/api/jobs/{id}/arrays/coords")).body;
        assert_eq!(coords.len(), 8 * want.len());
        let e = j["elements"].as_u64().unwrap() as usize;
        let tri = srv.get(&format!("/api/jobs/{id}/arrays/triangles")).body;
        assert_eq!(tri.len(), 4 * 18 * e);
        assert!(
            tri.chunks_exact(4)
                .all(|c| (u32::from_le_bytes(c.try_into().unwrap()) as usize) < want.len())
        );
        // the CLI's other files
        let png = srv.get(&format!("/api/jobs/{id}/files/png"));
        assert_eq!(&png.body[1..4], b"PNG");
        let vtu = srv.get(&format!("/api/jobs/{id}/files/vtu"));
        assert!(String::from_utf8_lossy(&vtu.body).contains("<VTKFile"));
        let trace: serde_json::Value = srv.get(&format!("/api/jobs/{id}/files/trace")).json();
        let names: Vec<_> = trace["traceEvents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap().to_string())
            .collect();
        assert!(
            names.iter().any(|n| n == "phase_solve") && names.iter().any(|n| n == "linear_solve"),
            "{names:?}"
        );
        // the event stream of a finished job: one end event with every phase
        let ev = srv.get(&format!("/api/jobs/{id}/events"));
        let text = String::from_utf8_lossy(&ev.body);
        assert!(ev.headers.contains("text/event-stream"), "{}", ev.headers);
        assert!(text.contains("event: end"), "{text}");
        for p in [
            "load",
            "quadrature",
            "assembly",
            "boundary",
            "solve",
            "post",
        ] {
            assert!(text.contains(&format!("[\"{p}\",")), "{p}: {text}");
        }
    }
    // a scene as JSON with the scene file's keys, and the same mesh by ?mesh=
    let r = srv.request(
        "POST",
        "/api/jobs?mesh=data/y_tube_201.h5",
        &[("Content-Type", "application/json")],
        br#"{"solver": {"method": "amg-cg", "rtol": 1e-10}, "backend": {"default": "parallel"}}"#,
    );
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let j = srv.wait(r.json()["id"].as_u64().unwrap(), Duration::from_secs(60));
    assert_eq!(j["status"], "done");
    assert_eq!(j["solver"], "amg-cg");
    assert_eq!(j["backends"]["solve"], "parallel");
    assert!(j["relative_residual"].as_f64().unwrap() <= 1e-10);
    // a bad scene value: 400 naming the key
    let r = srv.post_toml(
        "/api/jobs",
        "[mesh]\nfile = \"data/y_tube_201.h5\"\n[solver]\nrtol = 7\n",
    );
    assert_eq!(r.status, 400);
    assert!(r.error().contains("solver.rtol"), "{}", r.error());
}

#[test]
fn a_long_solve_is_cancelled_and_frees_its_place() {
    let srv = start(&["--jobs", "1"]);
    // about 20 s of serial Jacobi-CG on this machine
    let long = srv.post_toml(
        "/api/jobs",
        "[mesh]\ngenerate = \"venturi\"\nnodes = 150000\n[solver]\nrtol = 1e-12\n",
    );
    assert_eq!(long.status, 202);
    let a = long.json()["id"].as_u64().unwrap();
    let small = srv.post_toml("/api/jobs", "[mesh]\nfile = \"data/venturi_341.h5\"\n");
    let b = small.json()["id"].as_u64().unwrap();
    let queued = srv.post_toml("/api/jobs", "[mesh]\nfile = \"data/venturi_341.h5\"\n");
    let c = queued.json()["id"].as_u64().unwrap();
    // the first is solving, the others wait behind it
    let t0 = Instant::now();
    loop {
        let j = srv.get(&format!("/api/jobs/{a}")).json();
        if j["iterations_so_far"].as_u64().unwrap_or(0) >= 50 {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "{j}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let jb = srv.get(&format!("/api/jobs/{b}")).json();
    assert_eq!(jb["status"], "queued");
    assert_eq!(jb["queued_ahead"], 0);
    assert_eq!(srv.get(&format!("/api/jobs/{c}")).json()["queued_ahead"], 1);
    // a queued job cancelled leaves the queue at once
    let r = srv.request("POST", &format!("/api/jobs/{c}/cancel"), &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(
        srv.get(&format!("/api/jobs/{c}")).json()["status"],
        "cancelled"
    );
    // the running one stops at its solver's next report
    let t1 = Instant::now();
    srv.request("POST", &format!("/api/jobs/{a}/cancel"), &[], b"");
    let j = srv.wait(a, Duration::from_secs(20));
    assert_eq!(j["status"], "cancelled", "{j}");
    assert!(t1.elapsed() < Duration::from_secs(5), "{:?}", t1.elapsed());
    // nothing kept: no results, no arrays, no files
    assert_eq!(srv.get(&format!("/api/jobs/{a}/arrays/u")).status, 409);
    assert_eq!(srv.get(&format!("/api/jobs/{a}/files/results")).status, 409);
    assert!(!srv.tmp.join("jobs").join(a.to_string()).exists());
    // the next job runs
    assert_eq!(srv.wait(b, Duration::from_secs(30))["status"], "done");
    // a deleted job is gone
    assert_eq!(
        srv.request("DELETE", &format!("/api/jobs/{b}"), &[], b"")
            .status,
        200
    );
    assert_eq!(srv.get(&format!("/api/jobs/{b}")).status, 404);
}

#[test]
fn a_bad_mesh_upload_gets_the_clis_message() {
    let srv = start(&[]);
    let dir = tempfile::tempdir().unwrap();
    // not HDF5 at all, and an HDF5 mesh with an index out of range
    let mut bad_index = quadflow::io::raw::RawMesh {
        x: vec![0.0, 1.0, 1.0, 0.0, 0.5, 1.0, 0.5, 0.0],
        y: vec![0.0, 0.0, 1.0, 1.0, 0.0, 0.5, 1.0, 0.5],
        quad8: vec![[0, 1, 2, 3, 4, 5, 6, 7]],
    };
    bad_index.quad8[0][5] = 99;
    let oob = dir.path().join("oob.h5");
    quadflow::io::h5::write_mesh(&oob, &bad_index, false, false).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("garbage.h5", b"this is not an HDF5 file at all".to_vec()),
        (
            "garbage.msh",
            b"$MeshFormat\n9.9 0 8\n$EndMeshFormat\n".to_vec(),
        ),
        ("oob.h5", std::fs::read(&oob).unwrap()),
    ];
    for (name, bytes) in cases {
        let p = dir.path().join("cli").join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, &bytes).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_quadflow"))
            .args(["run", "--quiet", "--mesh"])
            .arg(&p)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let cli = String::from_utf8_lossy(&out.stderr)
            .trim()
            .strip_prefix("error: ")
            .unwrap()
            .replace(&p.canonicalize().unwrap().display().to_string(), name);
        let r = srv.request(
            "POST",
            &format!("/api/meshes?name={name}"),
            &[("Content-Type", "application/octet-stream")],
            &bytes,
        );
        assert!((400..500).contains(&r.status), "{name}: {}", r.status);
        assert_eq!(r.error(), cli, "{name}");
    }
    // nothing of them is kept
    let left: Vec<_> = walk(&srv.tmp.join("uploads"));
    assert!(left.is_empty(), "{left:?}");
    // a good upload is kept, listed and solvable
    let r = srv.request(
        "POST",
        "/api/meshes?name=../../mine.h5",
        &[("Content-Type", "application/octet-stream")],
        &std::fs::read(data("y_tube_201.h5")).unwrap(),
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let id = r.json()["id"].as_str().unwrap().to_string();
    assert!(
        id.starts_with("uploads/") && id.ends_with("/mine.h5"),
        "{id}"
    );
    assert_eq!(r.json()["nodes"], 201);
    let files = walk(&srv.tmp.join("uploads"));
    assert_eq!(files.len(), 1);
    assert!(files[0].starts_with(srv.tmp.join("uploads")));
    let list = srv.get("/api/meshes").json();
    assert!(
        list["meshes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == id.as_str())
    );
    let job = srv
        .post_toml("/api/jobs", &format!("[mesh]\nfile = \"{id}\"\n"))
        .json();
    let j = srv.wait(job["id"].as_u64().unwrap(), Duration::from_secs(30));
    assert_eq!(j["status"], "done");
    // a form post (no binary content type) is refused
    let r = srv.request(
        "POST",
        "/api/meshes?name=x.h5",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"a=b",
    );
    assert_eq!(r.status, 415);
}

fn walk(d: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(d) {
        for e in rd.flatten() {
            if e.path().is_dir() {
                out.extend(walk(&e.path()));
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

#[test]
fn path_traversal_and_oversized_uploads_are_refused() {
    let srv = start(&["--max-upload-mb", "1"]);
    for id in [
        "data/../../Cargo.toml",
        "data/../meshes/y_tube_201.h5",
        "/etc/passwd",
        "data//etc/passwd",
        "data/%2e%2e/Cargo.toml",
    ] {
        let r = srv.get(&format!("/api/meshes/info?id={}", id.replace('%', "%25")));
        assert!(r.status == 400 || r.status == 404, "{id}: {}", r.status);
        let r = srv.get(&format!("/api/meshes/info?id={id}"));
        assert!(r.status == 400 || r.status == 404, "{id}: {}", r.status);
    }
    let r = srv.get("/api/meshes/info?id=data/../../Cargo.toml");
    assert_eq!(r.status, 400);
    assert!(r.error().contains("'..'"), "{}", r.error());
    // a scene may not name files outside the folders either
    let abs = data("y_tube_201.h5").display().to_string();
    for f in [
        "../tests/data/meshes/y_tube_201.h5",
        abs.as_str(),
        "data/../../Cargo.toml",
    ] {
        let r = srv.post_toml("/api/jobs", &format!("[mesh]\nfile = \"{f}\"\n"));
        assert_eq!(r.status, 400, "{f}");
    }
    // the server's own files are not meshes to read
    assert_eq!(
        srv.get("/api/meshes/info?id=uploads/../../etc/passwd")
            .status,
        400
    );
    // an upload over the limit: refused, nothing written
    let big = vec![7u8; 2 << 20];
    let r = srv.request(
        "POST",
        "/api/meshes?name=big.h5",
        &[("Content-Type", "application/octet-stream")],
        &big,
    );
    assert_eq!(r.status, 413);
    assert!(
        r.error().contains("exceeds this server's limit of 1.0 MiB"),
        "{}",
        r.error()
    );
    assert!(walk(&srv.tmp.join("uploads")).is_empty());
    // a generated mesh over the node limit
    let r = srv.post_toml(
        "/api/jobs",
        "[mesh]\ngenerate = \"venturi\"\nnodes = 90000000\n",
    );
    assert_eq!(r.status, 400);
    assert!(r.error().contains("--max-nodes"), "{}", r.error());
}

#[test]
fn the_token_is_enforced_off_loopback() {
    // any address but loopback: a token is made and printed
    let srv = start(&["--host", "0.0.0.0"]);
    let t = srv.token.clone().expect("a token printed");
    assert!(t.len() >= 16);
    for path in [
        "/",
        "/api/info",
        "/api/meshes",
        "/assets/app.js",
        "/api/jobs/1",
    ] {
        assert_eq!(srv.get(path).status, 401, "{path}");
        let wrong = srv.request(
            "GET",
            path,
            &[("Authorization", "Bearer nottheright1")],
            b"",
        );
        assert_eq!(wrong.status, 401, "{path}");
    }
    let ok = srv.request(
        "GET",
        "/api/info",
        &[("Authorization", &format!("Bearer {t}"))],
        b"",
    );
    assert_eq!(ok.status, 200);
    // the page opened with ?token= gets it as a cookie for its assets
    let page = srv.get(&format!("/?token={t}"));
    assert_eq!(page.status, 200);
    assert!(
        page.headers.contains(&format!("quadflow_token={t}")),
        "{}",
        page.headers
    );
    let asset = srv.request(
        "GET",
        "/assets/app.js",
        &[("Cookie", &format!("quadflow_token={t}"))],
        b"",
    );
    assert_eq!(asset.status, 200);
    let r = srv.request(
        "POST",
        "/api/jobs",
        &[("Content-Type", "application/toml")],
        b"[mesh]\nfile = \"data/y_tube_201.h5\"\n",
    );
    assert_eq!(r.status, 401);
    drop(srv);
    // a given token, too short
    let out = Command::new(env!("CARGO_BIN_EXE_quadflow"))
        .args([
            "serve", "--port", "0", "--host", "0.0.0.0", "--token", "short",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 8"));
    // on loopback without a token, only loopback host names are answered
    let srv = start(&[]);
    assert_eq!(srv.get("/api/info").status, 200);
    // (a request of our own: the client above always names 127.0.0.1)
    let mut s = TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
    s.write_all(b"GET /api/info HTTP/1.1\r\nHost: attacker.example\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    assert!(raw.starts_with("HTTP/1.1 403"), "{raw}");
}
