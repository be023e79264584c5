//! What the handlers share: the error answer, a request's scene (parsed,
//! then admitted: its mesh resolved under the server's folders, its
//! backends this machine's, no output files) and the JSON of a job.

use super::jobs::{self, Job, Status};
use super::meshes::Refused;
use super::{App, arrays};
use crate::scene::Scene;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// An error answer: a status and `{"error": message}`.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<Refused> for ApiError {
    fn from(r: Refused) -> Self {
        ApiError(
            StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_REQUEST),
            r.message,
        )
    }
}

/// A 400 with `m`.
pub fn bad(m: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, m.into())
}

/// A 404 with `m`.
pub fn not_found(m: impl Into<String>) -> ApiError {
    ApiError(StatusCode::NOT_FOUND, m.into())
}

/// The bounding box `[x0, x1, y0, y1]` of the nodes.
pub fn bounds(x: &[f64], y: &[f64]) -> [f64; 4] {
    let mut b = [
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
    ];
    for (&a, &c) in x.iter().zip(y) {
        b[0] = b[0].min(a);
        b[1] = b[1].max(a);
        b[2] = b[2].min(c);
        b[3] = b[3].max(c);
    }
    b
}

/// The scene of a request body: TOML (`application/toml`) or JSON with
/// the scene file's keys (`application/json`).
pub fn scene_of(ct: &str, body: &[u8]) -> Result<Scene, ApiError> {
    let text = std::str::from_utf8(body).map_err(|_| bad("the scene is not UTF-8 text"))?;
    let toml_text = if ct.starts_with("application/json") {
        let v: Value = serde_json::from_str(text).map_err(|e| bad(format!("scene (JSON): {e}")))?;
        if !v.is_object() {
            return Err(bad(
                "scene (JSON): give an object with the scene file's keys",
            ));
        }
        let t = toml::Value::try_from(&v).map_err(|e| bad(format!("scene (JSON): {e}")))?;
        toml::to_string(&t).map_err(|e| bad(format!("scene (JSON): {e}")))?
    } else if ct.starts_with("application/toml") || ct.starts_with("text/x-toml") {
        text.to_string()
    } else {
        return Err(ApiError(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the scene as Content-Type: application/toml (a scene file) or application/json (its keys)".into(),
        ));
    };
    Scene::parse(&toml_text, "<request>").map_err(|e| bad(e.to_string()))
}

/// Makes a request's scene safe to run here: its mesh an id resolved
/// under the server's folders (or `mesh`, a query's id, instead), a
/// generated mesh within the node limit, backends this machine has, no
/// output files. Returns the mesh label.
pub fn admit(app: &App, scene: &mut Scene, mesh: Option<&str>) -> Result<String, ApiError> {
    if let Some(id) = mesh {
        scene.mesh.file = Some(id.into());
        scene.mesh.generate = None;
        scene.mesh.nodes = None;
    }
    let label = if let Some(f) = scene.mesh.file.clone() {
        let id = f.to_string_lossy().into_owned();
        let path = app.meshes.resolve(&id)?;
        scene.mesh.file = Some(path);
        id
    } else if let Some(g) = &scene.mesh.generate {
        let n = scene.mesh.nodes.unwrap_or(20_000);
        if n > app.max_nodes {
            return Err(bad(format!(
                "[mesh] nodes = {n}: this server generates at most {} nodes (--max-nodes)",
                app.max_nodes
            )));
        }
        format!("generate:{g}:{n}")
    } else {
        return Err(bad(
            "the scene names no mesh: give [mesh] file = \"ID\" (an id of GET /api/meshes), [mesh] generate = \"GEOMETRY\", or ?mesh=ID",
        ));
    };
    scene.output = Default::default();
    let b = &scene.backend;
    let backends = app.backends.lock().map(|b| b.clone()).unwrap_or_default();
    for name in [
        Some(&b.default),
        b.quadrature.as_ref(),
        b.assembly.as_ref(),
        b.boundary.as_ref(),
        b.solve.as_ref(),
        b.post.as_ref(),
    ]
    .into_iter()
    .flatten()
    {
        if let Some(info) = backends.iter().find(|i| &i.name == name)
            && !info.available
        {
            return Err(bad(format!(
                "backend \"{name}\" is not available on this server: {}",
                info.note
            )));
        }
    }
    Ok(label)
}

/// The JSON of a job: status, progress and, once done, its figures.
pub fn summary(app: &App, job: &Job) -> Value {
    let Ok(s) = job.state.lock() else {
        return json!({"id": job.id, "status": "failed"});
    };
    let base = format!("/api/jobs/{}", job.id);
    let mut v = json!({
        "id": job.id,
        "status": s.status,
        "mesh": job.mesh_label,
        "phase": s.phase,
        "group": job.group,
        "backend": job.plan.phases.0.join(","),
        "solver": job.plan.config.solver.method.name(),
        "rtol": job.plan.rtol(),
        "scene": job.plan.scene_toml,
        "iterations_so_far": s.residuals.last().map(|r| r.0),
        "residual_so_far": s.residuals.last().map(|r| r.1),
        "warnings": s.warnings,
        "error": s.error,
        "queued_ahead": if s.status == Status::Queued { app.jobs.queued_ahead(job.id) } else { 0 },
        "seconds_queued": s.started.map(|t| t.duration_since(job.created).as_secs_f64()),
        "events": format!("{base}/events"),
    });
    if let Some(h) = &s.header {
        v["nodes"] = json!(h.nodes);
        v["elements"] = json!(h.elements);
        v["nnz"] = json!(h.nnz);
    }
    if let (Some(f), Some(st)) = (s.finished, s.started) {
        v["seconds_running"] = json!(f.duration_since(st).as_secs_f64());
        v["seconds_api_to_result"] = json!(f.duration_since(job.created).as_secs_f64());
    }
    if let Some(out) = &s.output {
        let r = &out.result;
        let st = &r.solution.stats;
        let range = |a: &[f64]| {
            let (lo, hi) = a
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &x| {
                    (l.min(x), h.max(x))
                });
            json!([lo, hi])
        };
        let mut times = serde_json::Map::new();
        let mut backends = serde_json::Map::new();
        times.insert("load".into(), json!(r.load_seconds));
        for p in quadflow_systems::pipeline::Phase::ALL {
            times.insert(p.name().into(), json!(r.phase_seconds[p.index()]));
            backends.insert(p.name().into(), json!(r.backends[p.index()]));
        }
        times.insert("total".into(), json!(r.total_seconds));
        v["nodes"] = json!(r.mesh.nodes());
        v["elements"] = json!(r.mesh.elements.len());
        v["nnz"] = json!(r.nnz);
        v["backend"] = json!(r.backend_label());
        v["iterations"] = json!(st.iterations);
        v["converged"] = json!(st.converged);
        v["relative_residual"] = json!(r.solution.equilibrated_residual);
        v["true_relative_residual"] = json!(r.solution.true_residual);
        v["times"] = Value::Object(times);
        v["backends"] = Value::Object(backends);
        v["seconds_per_solve"] = json!(out.solve_wall);
        v["timeline"] = json!(jobs::timeline(out));
        v["bounds"] = json!(bounds(&r.mesh.x, &r.mesh.y));
        v["ranges"] = json!({
            "u": range(&r.solution.u), "abs_vel": range(&r.abs_vel), "pressure": range(&r.pressure),
        });
        v["summary"] = json!(r.report(None));
        v["notes"] = json!(r.notes);
        v["gpu_device"] =
            json!(
                r.reports
                    .iter()
                    .find_map(|(_, rep)| match rep.attribute("gpu_device") {
                        Some(crate::io::h5::Attr::Str(s)) => Some(s.clone()),
                        _ => None,
                    })
            );
        v["arrays"] = json!(
            arrays::NAMES
                .iter()
                .map(|(n, _, _)| (n.to_string(), json!(format!("{base}/arrays/{n}"))))
                .collect::<serde_json::Map<_, _>>()
        );
        v["files"] = json!(
            FILES
                .iter()
                .map(|(k, _, _)| (k.to_string(), json!(format!("{base}/files/{k}"))))
                .collect::<serde_json::Map<_, _>>()
        );
    } else if s.status == Status::Done {
        v["evicted"] =
            json!("the results of this job were dropped (older than the last --keep jobs)");
    }
    v
}

/// The files a job offers: kind, extension, content type.
pub const FILES: &[(&str, &str, &str)] = &[
    ("results", "h5", "application/x-hdf5"),
    ("vtu", "vtu", "application/xml"),
    ("png", "png", "image/png"),
    ("trace", "json", "application/json"),
];
