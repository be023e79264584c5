//! The HTTP handlers: the page and its assets, the JSON API, the event
//! stream, the binary arrays and the files of a job. Every request passes
//! [`guard`] first (token, host).

use super::jobs::{self, Job, Status};
use super::meshes;
use super::request::{ApiError, FILES, admit, bad, bounds, not_found, scene_of, summary};
use super::{App, arrays, compare};
use crate::scene::{MeshSource, Scene};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

type St = State<Arc<App>>;

/// The router of a server.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/assets/{file}", get(asset))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route("/api/info", get(info))
        .route("/api/meshes", get(list_meshes).post(upload))
        .route("/api/meshes/info", get(mesh_info))
        .route("/api/meshes/thumbnail", get(mesh_thumbnail))
        .route("/api/jobs", get(list_jobs).post(submit))
        .route("/api/jobs/{id}", get(job_status).delete(delete_job))
        .route("/api/jobs/{id}/events", get(job_events))
        .route("/api/jobs/{id}/cancel", post(cancel_job))
        .route("/api/jobs/{id}/arrays/{name}", get(job_array))
        .route("/api/jobs/{id}/files/{kind}", get(job_file))
        .route("/api/compare", post(compare::start))
        .route("/api/compare/{id}", get(compare::status))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn_with_state(app.clone(), guard))
        .with_state(app)
}

/// Constant-time comparison of two strings.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The token a request carries: bearer header, cookie or `token=` query.
fn token_of(req: &Request) -> Option<String> {
    let h = req.headers();
    if let Some(v) = h.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())
        && let Some(t) = v.strip_prefix("Bearer ")
    {
        return Some(t.trim().to_string());
    }
    for c in h.get_all(header::COOKIE) {
        for part in c.to_str().unwrap_or("").split(';') {
            if let Some(t) = part.trim().strip_prefix("quadflow_token=") {
                return Some(t.to_string());
            }
        }
    }
    req.uri().query().and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("token="))
            .map(|t| t.to_string())
    })
}

/// Whether a Host header names this machine's loopback.
fn loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Checks every request: the token where one is set (a page opened with
/// `?token=` gets it as a cookie for its assets and calls), else a
/// loopback Host header.
async fn guard(State(app): St, req: Request, next: Next) -> Response {
    if let Some(t) = &app.token {
        let given = token_of(&req);
        if !given.as_deref().is_some_and(|g| same(g, t)) {
            return ApiError(
                StatusCode::UNAUTHORIZED,
                "this server needs its token: header \"Authorization: Bearer TOKEN\", or ?token=TOKEN".into(),
            )
            .into_response();
        }
        let mut resp = next.run(req).await;
        if let Ok(v) = HeaderValue::from_str(&format!(
            "quadflow_token={t}; HttpOnly; SameSite=Strict; Path=/"
        )) {
            resp.headers_mut().insert(header::SET_COOKIE, v);
        }
        return resp;
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if app.loopback && !loopback_host(host) {
        return ApiError(
            StatusCode::FORBIDDEN,
            format!("Host \"{host}\" refused: this server answers to loopback names only (start it with --token to serve other hosts)"),
        )
        .into_response();
    }
    next.run(req).await
}

const INDEX: &str = include_str!("assets/index.html");

/// The embedded assets: name, content type, bytes.
const ASSETS: &[(&str, &str, &str)] = &[
    ("app.js", "text/javascript", include_str!("assets/app.js")),
    ("view.js", "text/javascript", include_str!("assets/view.js")),
    (
        "charts.js",
        "text/javascript",
        include_str!("assets/charts.js"),
    ),
    ("style.css", "text/css", include_str!("assets/style.css")),
];

async fn index() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        INDEX,
    )
        .into_response()
}

async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == file) {
        Some((_, ct, body)) => (
            [
                (header::CONTENT_TYPE, *ct),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *body,
        )
            .into_response(),
        None => not_found(format!("no asset {file}")).into_response(),
    }
}

async fn info(State(app): St) -> Response {
    let backends = app.backends.lock().map(|b| b.clone()).unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_default();
    axum::Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "backends": backends,
        "solvers": quadflow_systems::components::SolverMethod::NAMES,
        "geometries": crate::generate::Geometry::ALL.map(|g| g.name()),
        "cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "cpu": cpu,
        "max_upload_bytes": app.max_upload,
        "max_generated_nodes": app.max_nodes,
        "arrays": arrays::NAMES.iter().map(|(n, t, d)| json!({"name": n, "type": t, "holds": d})).collect::<Vec<_>>(),
    }))
    .into_response()
}

async fn list_meshes(State(app): St) -> Response {
    let app2 = app.clone();
    let list = tokio::task::spawn_blocking(move || app2.meshes.list())
        .await
        .unwrap_or_default();
    axum::Json(json!({
        "meshes": list,
        "roots": app.meshes.roots().iter().map(|r| &r.name).collect::<Vec<_>>(),
        "geometries": crate::generate::Geometry::ALL.map(|g| g.name()),
    }))
    .into_response()
}

/// A default plan (for loading meshes outside a job).
fn default_plan() -> crate::scene::Plan {
    Scene::default_scene()
        .plan()
        .expect("the built-in scene plans")
}

async fn load_for(
    app: &Arc<App>,
    q: &HashMap<String, String>,
) -> Result<crate::run::LoadedMesh, ApiError> {
    let id = q.get("id").ok_or_else(|| bad("give ?id=MESH_ID"))?;
    let path = app.meshes.resolve(id)?;
    let app = app.clone();
    tokio::task::spawn_blocking(move || app.meshes.load(&path, &default_plan()))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| ApiError(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))
}

async fn mesh_info(State(app): St, Query(q): Query<HashMap<String, String>>) -> Response {
    match load_for(&app, &q).await {
        Ok(l) => {
            let m = &l.mesh;
            let b = bounds(&m.x, &m.y);
            axum::Json(json!({
                "id": q.get("id"), "nodes": m.nodes(), "elements": m.elements.len(),
                "bounds": b, "renumbered_elements": m.flipped, "seconds": l.seconds,
                "node_sets": m.node_sets.keys().collect::<Vec<_>>(),
            }))
            .into_response()
        }
        Err(e) => e.into_response(),
    }
}

async fn mesh_thumbnail(State(app): St, Query(q): Query<HashMap<String, String>>) -> Response {
    let w = q
        .get("w")
        .and_then(|v| v.parse().ok())
        .unwrap_or(160u32)
        .clamp(16, 640);
    let h = q
        .get("h")
        .and_then(|v| v.parse().ok())
        .unwrap_or(80u32)
        .clamp(16, 640);
    match load_for(&app, &q).await {
        Ok(l) => {
            let png = tokio::task::spawn_blocking(move || meshes::thumbnail(&l.mesh, w, h))
                .await
                .unwrap_or_default();
            ([(header::CONTENT_TYPE, "image/png")], png).into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// `POST /api/meshes?name=FILE.h5` with the file as the body
/// (`application/octet-stream`): kept in the server's folder if it reads
/// and validates as a mesh, else refused with the CLI's message.
async fn upload(
    State(app): St,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match upload_inner(app, q, headers, body).await {
        Ok(v) => (StatusCode::CREATED, axum::Json(v)).into_response(),
        Err(e) => e.into_response(),
    }
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)
}

async fn upload_inner(
    app: Arc<App>,
    q: HashMap<String, String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Value, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.starts_with("application/octet-stream") {
        return Err(ApiError(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the mesh file as the body with Content-Type: application/octet-stream".into(),
        ));
    }
    let name = q
        .get("name")
        .and_then(|n| meshes::safe_file_name(n))
        .ok_or_else(|| bad("give ?name=FILE.h5 (or .msh)"))?;
    let ext_ok = name.to_ascii_lowercase().ends_with(".h5")
        || name.to_ascii_lowercase().ends_with(".hdf5")
        || name.to_ascii_lowercase().ends_with(".msh");
    if !ext_ok {
        return Err(bad(format!(
            "{name}: unknown mesh file extension; supported: .h5, .hdf5 (HDF5), .msh (gmsh)"
        )));
    }
    let limit = app.max_upload;
    let too_big = |n: Option<u64>| {
        let size = n.map_or_else(|| "more".to_string(), mib);
        ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{name}: the upload ({size}) exceeds this server's limit of {} (--max-upload-mb)",
                mib(limit)
            ),
        )
    };
    if let Some(n) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && n > limit
    {
        return Err(too_big(Some(n)));
    }
    let bytes: Bytes = axum::body::to_bytes(body, limit as usize)
        .await
        .map_err(|_| too_big(None))?;
    let k = app
        .uploads
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        + 1;
    let dir = app.upload_dir().join(k.to_string());
    let app2 = app.clone();
    let name2 = name.clone();
    tokio::task::spawn_blocking(move || -> Result<Value, ApiError> {
        std::fs::create_dir_all(&dir)
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        let path = dir.join(&name2);
        let part = dir.join(format!(".{name2}.part"));
        let written = std::fs::write(&part, &bytes).and_then(|_| std::fs::rename(&part, &path));
        if let Err(e) = written {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()));
        }
        match app2.meshes.load(&path, &default_plan()) {
            Ok(l) => Ok(json!({
                "id": format!("uploads/{k}/{name2}"),
                "nodes": l.mesh.nodes(),
                "elements": l.mesh.elements.len(),
                "bytes": bytes.len(),
            })),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                // the CLI's message, naming the file as it was sent
                let msg = e.to_string().replace(&path.display().to_string(), &name2);
                Err(ApiError(StatusCode::UNPROCESSABLE_ENTITY, msg))
            }
        }
    })
    .await
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
}

async fn submit(
    State(app): St,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let r = (|| -> Result<Arc<Job>, ApiError> {
        let mut scene = scene_of(&ct, &body)?;
        let label = admit(&app, &mut scene, q.get("mesh").map(|s| s.as_str()))?;
        let plan = scene.plan().map_err(|e| bad(e.to_string()))?;
        Ok(app.jobs.submit(label, plan, None))
    })();
    match r {
        Ok(job) => (StatusCode::ACCEPTED, axum::Json(summary(&app, &job))).into_response(),
        Err(e) => e.into_response(),
    }
}

fn job_of(app: &App, id: &str) -> Result<Arc<Job>, ApiError> {
    let n: u64 = id
        .parse()
        .map_err(|_| bad(format!("job \"{id}\": not a job number")))?;
    app.jobs
        .get(n)
        .ok_or_else(|| not_found(format!("no job {n}")))
}

async fn list_jobs(State(app): St) -> Response {
    let list: Vec<Value> = app
        .jobs
        .list()
        .iter()
        .map(|j| {
            let mut v = summary(&app, j);
            if let Some(o) = v.as_object_mut() {
                o.remove("summary");
                o.remove("scene");
                o.remove("timeline");
            }
            v
        })
        .collect();
    axum::Json(json!({ "jobs": list })).into_response()
}

async fn job_status(State(app): St, Path(id): Path<String>) -> Response {
    match job_of(&app, &id) {
        Ok(j) => axum::Json(summary(&app, &j)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn cancel_job(State(app): St, Path(id): Path<String>) -> Response {
    match job_of(&app, &id) {
        Ok(j) => {
            let was = app.jobs.cancel(j.id).unwrap_or(false);
            axum::Json(json!({"id": j.id, "cancelling": was, "status": j.status()})).into_response()
        }
        Err(e) => e.into_response(),
    }
}

async fn delete_job(State(app): St, Path(id): Path<String>) -> Response {
    match job_of(&app, &id) {
        Ok(j) => {
            app.jobs.remove(j.id);
            let _ = std::fs::remove_dir_all(app.job_dir(j.id));
            axum::Json(json!({"id": j.id, "deleted": true})).into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// Where a stream of a job's events has got to.
#[derive(Default)]
struct Cursor {
    residuals: usize,
    reports: u64,
    phases: usize,
    warnings: usize,
    header: bool,
    status: Option<Status>,
}

/// What is new since `c`, as one event's JSON; `(json, finished)`.
fn news(app: &App, job: &Job, c: &mut Cursor) -> Option<(String, bool)> {
    let s = job.state.lock().ok()?;
    let fresh = s.residuals.len() != c.residuals
        || s.phases.len() != c.phases
        || s.warnings.len() != c.warnings
        || (s.header.is_some() && !c.header)
        || c.status != Some(s.status)
        || s.reports != c.reports;
    if !fresh {
        return None;
    }
    // past the cap the last point changes in place: send it again
    let from = if s.reports != c.reports && c.residuals == s.residuals.len() {
        c.residuals.saturating_sub(1)
    } else {
        c.residuals.min(s.residuals.len())
    };
    let v = json!({
        "id": job.id,
        "status": s.status,
        "phase": s.phase,
        "phases": s.phases[c.phases.min(s.phases.len())..].iter().map(|(p, t)| json!([p, t])).collect::<Vec<_>>(),
        "residuals": s.residuals[from..].iter().map(|(i, r)| json!([i, r])).collect::<Vec<_>>(),
        "warnings": s.warnings[c.warnings.min(s.warnings.len())..],
        "header": if c.header { None } else { s.header.as_ref().map(|h| json!({"nodes": h.nodes, "elements": h.elements, "nnz": h.nnz})) },
        "error": s.error,
        "queued_ahead": if s.status == Status::Queued { app.jobs.queued_ahead(job.id) } else { 0 },
    });
    c.residuals = s.residuals.len();
    c.reports = s.reports;
    c.phases = s.phases.len();
    c.warnings = s.warnings.len();
    c.header = s.header.is_some();
    c.status = Some(s.status);
    Some((v.to_string(), s.status.finished()))
}

/// `GET /api/jobs/ID/events`: server-sent events, `progress` while the
/// job is queued or runs (status, phase, new residuals), then one `end`.
async fn job_events(State(app): St, Path(id): Path<String>) -> Response {
    let job = match job_of(&app, &id) {
        Ok(j) => j,
        Err(e) => return e.into_response(),
    };
    let rx = job.changes.subscribe();
    let stream = futures_util::stream::unfold(
        (app, job, rx, Cursor::default(), false),
        |(app, job, mut rx, mut cur, ended)| async move {
            if ended {
                return None;
            }
            loop {
                if let Some((data, fin)) = news(&app, &job, &mut cur) {
                    let ev = Event::default()
                        .event(if fin { "end" } else { "progress" })
                        .data(data);
                    return Some((Ok::<_, Infallible>(ev), (app, job, rx, cur, fin)));
                }
                let _ = tokio::time::timeout(Duration::from_secs(10), rx.changed()).await;
            }
        },
    );
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

async fn job_array(
    State(app): St,
    Path((id, name)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let job = match job_of(&app, &id) {
        Ok(j) => j,
        Err(e) => return e.into_response(),
    };
    let Some(out) = job.output() else {
        return ApiError(
            StatusCode::CONFLICT,
            format!("job {} has no results ({:?})", job.id, job.status()),
        )
        .into_response();
    };
    let exact = q.get("dtype").is_some_and(|d| d == "f64");
    let name2 = name.clone();
    let bytes = tokio::task::spawn_blocking(move || arrays::encode(&out.result, &name2, exact))
        .await
        .ok()
        .flatten();
    match bytes {
        Some(b) => (
            [
                (header::CONTENT_TYPE, "application/octet-stream"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            b,
        )
            .into_response(),
        None => not_found(format!(
            "no array \"{name}\" (arrays: {})",
            arrays::NAMES
                .iter()
                .map(|n| n.0)
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .into_response(),
    }
}

/// Writes file `kind` of a job into the job's folder (once).
fn make_file(
    app: &App,
    job: &Job,
    out: &jobs::Output,
    kind: &str,
) -> Result<std::path::PathBuf, ApiError> {
    let (_, ext, _) = FILES.iter().find(|f| f.0 == kind).ok_or_else(|| {
        not_found(format!(
            "no file \"{kind}\" (files: results, vtu, png, trace)"
        ))
    })?;
    if let Some(p) = out.files.lock().ok().and_then(|f| f.get(kind).cloned())
        && p.exists()
    {
        return Ok(p);
    }
    let dir = app.job_dir(job.id);
    std::fs::create_dir_all(&dir)
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let stem = match &job.plan.mesh {
        MeshSource::File(p) => p
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "mesh".into()),
        MeshSource::Generate(g, n) => format!("{}_{n}", g.name()),
    };
    let path = dir.join(format!("{stem}-job{}.{ext}", job.id));
    let r = &out.result;
    let ise = |e: String| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e);
    match kind {
        "results" => r.write(&path).map_err(|e| ise(e.to_string()))?,
        "vtu" | "png" => {
            let mut o = crate::scene::OutputSection::default();
            if kind == "vtu" {
                o.vtu = Some(path.clone());
            } else {
                o.png = Some(path.clone());
            }
            r.write_outputs(&o).map_err(|e| ise(e.to_string()))?;
        }
        _ => crate::io::atomic::write_atomic(&path, |w| {
            use std::io::Write;
            w.write_all(out.trace.chrome_json().as_bytes())
        })
        .map_err(ise)?,
    }
    if let Ok(mut f) = out.files.lock() {
        f.insert(kind.to_string(), path.clone());
    }
    Ok(path)
}

async fn job_file(State(app): St, Path((id, kind)): Path<(String, String)>) -> Response {
    let job = match job_of(&app, &id) {
        Ok(j) => j,
        Err(e) => return e.into_response(),
    };
    let Some(out) = job.output() else {
        return ApiError(
            StatusCode::CONFLICT,
            format!("job {} has no results ({:?})", job.id, job.status()),
        )
        .into_response();
    };
    let app2 = app.clone();
    let job2 = job.clone();
    let kind2 = kind.clone();
    let made = tokio::task::spawn_blocking(move || {
        let p = make_file(&app2, &job2, &out, &kind2)?;
        let bytes = std::fs::read(&p)
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        Ok::<_, ApiError>((p, bytes))
    })
    .await;
    match made {
        Ok(Ok((p, bytes))) => {
            let ct = FILES
                .iter()
                .find(|f| f.0 == kind)
                .map_or("application/octet-stream", |f| f.2);
            let name = p
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            (
                [
                    (header::CONTENT_TYPE, ct.to_string()),
                    (
                        header::CONTENT_DISPOSITION,
                        format!("attachment; filename=\"{name}\""),
                    ),
                ],
                bytes,
            )
                .into_response()
        }
        Ok(Err(e)) => e.into_response(),
        Err(e) => ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole_and_hosts_are_loopback() {
        assert!(same("abcdefgh", "abcdefgh"));
        assert!(!same("abcdefgh", "abcdefgX"));
        assert!(!same("abc", "abcd"));
        for h in [
            "127.0.0.1:8080",
            "localhost:1",
            "[::1]:80",
            "localhost",
            "127.3.4.5",
        ] {
            assert!(loopback_host(h), "{h}");
        }
        for h in ["evil.example:8080", "10.0.0.1:80", "", "[2001:db8::1]:80"] {
            assert!(!loopback_host(h), "{h}");
        }
    }

    #[test]
    fn scenes_come_as_toml_or_json() {
        let t = scene_of(
            "application/toml",
            b"[mesh]\ngenerate = \"venturi\"\nnodes = 300\n[solver]\nrtol = 1e-6\n",
        )
        .unwrap();
        assert_eq!(t.solver.rtol, 1e-6);
        let j = scene_of(
            "application/json",
            br#"{"mesh": {"generate": "venturi", "nodes": 300}, "solver": {"rtol": 1e-6}, "parallel": {"threads": 2}}"#,
        )
        .unwrap();
        assert_eq!(j.solver.rtol, 1e-6);
        assert_eq!(j.backends["parallel"]["threads"].as_integer(), Some(2));
        let e = scene_of("application/json", br#"{"solver": {"rtol": 2}}"#).unwrap_err();
        assert!(e.1.contains("solver.rtol"), "{}", e.1);
        let e = scene_of("application/json", br#"{"solver": {"nonesuch": 2}}"#).unwrap_err();
        assert!(e.1.contains("nonesuch"), "{}", e.1);
        let e = scene_of("text/plain", b"").unwrap_err();
        assert_eq!(e.0, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
}
