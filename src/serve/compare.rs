//! The compare view's runs: one mesh on every available backend and
//! solver, queued as jobs of one group (one at a time with the default
//! `--jobs 1`, so that they do not share the cores), then each run's
//! times per phase, its speed-up against serial, and whether its fields
//! differ from serial's (the bench's test: largest difference of `u`,
//! speed and pressure relative to the field's largest value, above 1e-6).

use super::App;
use super::jobs::Status;
use super::request::{ApiError, admit, scene_of, summary};
use crate::bench::report::max_rel_diff;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

/// Tolerance of the field check (the bench's default).
pub const TOLERANCE: f64 = 1e-6;

/// Which backend and solver pairs can run: every available backend with
/// every solver, but Cholesky on a device backend (its factorisation runs
/// on the host).
fn pairs(backends: &[String], solvers: &[String]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for s in solvers {
        for b in backends {
            if b == "gpu" && s == "cholesky" {
                continue;
            }
            out.push((b.clone(), s.clone()));
        }
    }
    out
}

/// `POST /api/compare[?mesh=ID]` with a scene (as for `POST /api/jobs`;
/// its `[backend]` and `[solver] method` are replaced): queues one job per
/// backend and solver. `?backends=a,b` and `?solvers=x,y` narrow the set.
pub async fn start(
    State(app): State<Arc<App>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let r = (|| -> Result<Value, ApiError> {
        let base = scene_of(&ct, &body)?;
        let available: Vec<String> = app
            .backends
            .lock()
            .map(|b| {
                b.iter()
                    .filter(|b| b.available)
                    .map(|b| b.name.clone())
                    .collect()
            })
            .unwrap_or_default();
        let pick = |key: &str, all: Vec<String>| -> Vec<String> {
            match q.get(key) {
                Some(list) => all
                    .into_iter()
                    .filter(|x| list.split(',').any(|w| w.trim() == x))
                    .collect(),
                None => all,
            }
        };
        let backends = pick("backends", available);
        let solvers = pick(
            "solvers",
            quadflow_systems::components::SolverMethod::NAMES
                .iter()
                .map(|s| s.to_string())
                .collect(),
        );
        if !backends.iter().any(|b| b == "serial") {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                "the comparison needs the serial backend (its reference)".into(),
            ));
        }
        // every plan checked before any job is queued
        let mut plans = Vec::new();
        for (b, s) in pairs(&backends, &solvers) {
            let mut scene = base.clone();
            scene.set_backend(&b);
            scene.solver.method = s.clone();
            let label = admit(&app, &mut scene, q.get("mesh").map(|s| s.as_str()))?;
            let plan = scene
                .plan()
                .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.to_string()))?;
            plans.push((label, plan));
        }
        let gid = app
            .groups
            .lock()
            .map(|g| g.keys().last().copied().unwrap_or(0) + 1)
            .unwrap_or(1);
        let ids: Vec<u64> = plans
            .into_iter()
            .map(|(label, plan)| app.jobs.submit(label, plan, Some(gid)).id)
            .collect();
        if let Ok(mut g) = app.groups.lock() {
            g.insert(gid, ids.clone());
        }
        Ok(json!({"id": gid, "jobs": ids, "status": format!("/api/compare/{gid}")}))
    })();
    match r {
        Ok(v) => (StatusCode::ACCEPTED, axum::Json(v)).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `GET /api/compare/ID`: every run of the group with its times, its
/// speed-ups and its field check.
pub async fn status(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    let Some(ids) = id
        .parse::<u64>()
        .ok()
        .and_then(|n| app.groups.lock().ok()?.get(&n).cloned())
    else {
        return ApiError(StatusCode::NOT_FOUND, format!("no comparison {id}")).into_response();
    };
    let app2 = app.clone();
    let v = tokio::task::spawn_blocking(move || rows(&app2, &ids))
        .await
        .unwrap_or_else(|e| json!({"error": e.to_string()}));
    axum::Json(v).into_response()
}

fn rows(app: &App, ids: &[u64]) -> Value {
    let jobs: Vec<_> = ids.iter().filter_map(|i| app.jobs.get(*i)).collect();
    let solver_of = |j: &super::jobs::Job| j.plan.config.solver.method.name().to_string();
    let backend_of = |j: &super::jobs::Job| j.plan.phases.0[0].clone();
    let reference = jobs
        .iter()
        .find(|j| backend_of(j) == "serial" && solver_of(j) == "cg-jacobi")
        .or_else(|| jobs.iter().find(|j| backend_of(j) == "serial"))
        .and_then(|j| j.output());
    let serial_total = |solver: &str| {
        jobs.iter()
            .find(|j| backend_of(j) == "serial" && solver_of(j) == solver)
            .and_then(|j| j.output())
            .map(|o| o.result.total_seconds)
    };
    let mut out = Vec::new();
    for j in &jobs {
        let mut v = summary(app, j);
        if let Some(o) = v.as_object_mut() {
            o.remove("summary");
            o.remove("scene");
        }
        v["backend_name"] = json!(backend_of(j));
        if let Some(o) = j.output() {
            let r = &o.result;
            if let Some(t) = serial_total(&solver_of(j)) {
                v["speedup_vs_serial"] = json!(t / r.total_seconds.max(1e-12));
            }
            if let Some(t) = reference.as_ref().map(|x| x.result.total_seconds) {
                v["speedup_vs_reference"] = json!(t / r.total_seconds.max(1e-12));
            }
            if let Some(rf) = &reference {
                let d = max_rel_diff(
                    &[&r.solution.u, &r.abs_vel, &r.pressure],
                    &[
                        &rf.result.solution.u,
                        &rf.result.abs_vel,
                        &rf.result.pressure,
                    ],
                );
                v["max_rel_diff"] = json!(d);
                v["differs"] = json!(d > TOLERANCE);
            }
        }
        out.push(v);
    }
    let done = jobs.iter().all(|j| j.status().finished());
    json!({
        "jobs": out,
        "finished": done,
        "failed": jobs.iter().filter(|j| j.status() == Status::Failed).count(),
        "tolerance": TOLERANCE,
        "reference": "serial cg-jacobi",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_backend_with_every_solver_but_cholesky_on_the_device() {
        let b = vec!["serial".to_string(), "parallel".into(), "gpu".into()];
        let s = vec!["cg-jacobi".to_string(), "amg-cg".into(), "cholesky".into()];
        let p = pairs(&b, &s);
        assert_eq!(p.len(), 8);
        assert!(!p.contains(&("gpu".into(), "cholesky".into())));
        assert_eq!(p[0], ("serial".into(), "cg-jacobi".into()));
    }
}
