//! `quadflow bench`: runs a matrix of backends x variants x meshes, each
//! case with warm-up runs and repeats in fresh processes, and records per
//! phase the median, min and max wall time, iterations, true residual, peak
//! resident memory, and whether the case's fields agree with the first
//! backend's on the same mesh (the study's numerical-equivalence claim,
//! `docs/execution-models.md`).
//!
//! Each run is a child process (`quadflow bench-case`), so that peak memory
//! is per case and no state carries over between runs.

pub mod charts;
pub mod report;

use crate::error::AppError;
use crate::io::h5;
use crate::scene::Scene;
use quadflow_systems::pipeline::Phase;
pub use report::*;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// A benchmark suite (TOML).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Suite {
    /// Suite name (the folder under `profiles/`).
    pub name: String,
    /// Runs per case not counted.
    #[serde(default = "one")]
    pub warmup: usize,
    /// Counted runs per case.
    #[serde(default = "three")]
    pub repeats: usize,
    /// Relative tolerance of the field-equivalence check.
    #[serde(default = "equiv_tol")]
    pub tolerance: f64,
    /// Meshes: a path (relative to the suite file) or `generate:GEOMETRY:NODES`.
    pub meshes: Vec<String>,
    /// Cases run on every mesh; the first is the equivalence reference.
    pub cases: Vec<CaseSpec>,
    /// Scene TOML applied to every case before its own settings (solver
    /// settings, for instance).
    #[serde(default)]
    pub scene: String,
}

fn one() -> usize {
    1
}
fn three() -> usize {
    3
}
fn equiv_tol() -> f64 {
    1e-6
}

/// One case of the matrix.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CaseSpec {
    /// Label in tables.
    pub label: String,
    /// Backend of every phase.
    pub backend: String,
    /// Extra scene TOML (e.g. `[parallel]` settings).
    #[serde(default)]
    pub scene: String,
    /// Warm-up runs of this case (default: the suite's).
    pub warmup: Option<usize>,
    /// Counted runs of this case (default: the suite's).
    pub repeats: Option<usize>,
}

impl Suite {
    /// Reads a suite file.
    pub fn load(path: &Path) -> Result<Self, AppError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| AppError::Other(format!("suite {}: {e}", path.display())))?;
        let s: Suite = toml::from_str(&text).map_err(|e| {
            AppError::Other(format!(
                "suite {}: {}",
                path.display(),
                e.to_string().trim_end()
            ))
        })?;
        if s.repeats == 0 || s.meshes.is_empty() || s.cases.is_empty() {
            return Err(AppError::Other(format!(
                "suite {}: needs repeats >= 1, at least one mesh and one case",
                path.display()
            )));
        }
        Ok(s)
    }

    /// The scene text of `case` on `mesh` (mesh paths resolved against
    /// `base`, the suite's folder).
    pub fn scene_text(&self, case: &CaseSpec, mesh: &str, base: &Path) -> Result<String, AppError> {
        let mesh_toml = if let Some(rest) = mesh.strip_prefix("generate:") {
            let (g, n) = rest.split_once(':').ok_or_else(|| {
                AppError::Other(format!("suite mesh {mesh:?}: use generate:GEOMETRY:NODES"))
            })?;
            format!("[mesh]\ngenerate = {g:?}\nnodes = {n}\n")
        } else {
            // absolute: the case scene is written elsewhere
            let p = std::path::absolute(base.join(mesh))
                .map_err(|e| AppError::Other(format!("suite mesh {mesh:?}: {e}")))?;
            format!("[mesh]\nfile = {:?}\n", p.display().to_string())
        };
        let text = format!(
            "{mesh_toml}[backend]\ndefault = {:?}\n{}\n{}\n",
            case.backend, self.scene, case.scene
        );
        // validate now rather than in the child
        Scene::parse(&text, "<bench>")?;
        Ok(text)
    }
}

fn mesh_label(mesh: &str) -> String {
    match mesh.strip_prefix("generate:") {
        Some(r) => r.replace(':', "-"),
        None => Path::new(mesh)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| mesh.into()),
    }
}

/// Runs one child process: `quadflow bench-case SCENE OUT`.
fn run_child(scene: &Path, out: &Path) -> Result<RunRecord, AppError> {
    let exe = std::env::current_exe()
        .map_err(|e| AppError::Other(format!("cannot find own executable: {e}")))?;
    let o = Command::new(exe)
        .arg("bench-case")
        .arg(scene)
        .arg(out)
        .output()
        .map_err(|e| AppError::Other(format!("cannot start a bench case: {e}")))?;
    if !o.status.success() {
        return Err(AppError::Other(format!(
            "bench case {} failed: {}",
            scene.display(),
            String::from_utf8_lossy(&o.stderr).trim()
        )));
    }
    serde_json::from_slice(&o.stdout)
        .map_err(|e| AppError::Other(format!("bench case output: {e}")))
}

/// The body of `quadflow bench-case`: runs a scene once, writes results to
/// `out`, prints a [`RunRecord`] as JSON.
pub fn bench_case(scene: &Path, out: &Path) -> Result<(), AppError> {
    let plan = Scene::load(scene)?.plan()?;
    let r = crate::run::run(&plan, None)?;
    let t_write = std::time::Instant::now();
    r.write(out)?;
    let write_seconds = t_write.elapsed().as_secs_f64();
    let written_seconds = r.started.elapsed().as_secs_f64();
    let mut seconds = vec![r.load_seconds];
    seconds.extend(Phase::ALL.iter().map(|p| r.phase_seconds[p.index()]));
    seconds.push(r.total_seconds);
    let rec = RunRecord {
        seconds,
        iterations: r.solution.stats.iterations,
        converged: r.solution.stats.converged,
        true_residual: r.solution.true_residual,
        peak_rss: peak_rss(),
        nodes: r.mesh.nodes(),
        elements: r.mesh.elements.len(),
        backend: r.backend_label(),
        bytes_per_iteration: r.solution.stats.bytes_per_iteration,
        iteration_seconds: r.solution.stats.solve_seconds,
        bytes_to_device: r.int_attribute("gpu_bytes_to_device").unwrap_or(0) as u64,
        bytes_to_host: r.int_attribute("gpu_bytes_to_host").unwrap_or(0) as u64,
        nvrtc_seconds: r.float_attribute("gpu_nvrtc_seconds").unwrap_or(0.0),
        device_memory_peak: r.int_attribute("gpu_memory_peak_bytes").unwrap_or(0) as u64,
        write_seconds,
        written_seconds,
    };
    println!("{}", serde_json::to_string(&rec).expect("serialisable"));
    Ok(())
}

/// Runs a suite; writes `results.json` and `results.md` under
/// `out_root/<suite>/<machine>/` and returns the report.
pub fn run_suite(
    suite: &Suite,
    base: &Path,
    out_root: &Path,
    command: &str,
) -> Result<Report, AppError> {
    let machine = Machine::detect();
    let tmp = tempfile_dir()?;
    let total = suite.meshes.len() * suite.cases.len();
    let start = Instant::now();
    let mut cases = Vec::new();
    let mut done = 0usize;
    for mesh in &suite.meshes {
        let mut reference: Option<h5::Results> = None;
        for case in &suite.cases {
            done += 1;
            let eta = if done > 1 {
                let per = start.elapsed().as_secs_f64() / (done - 1) as f64;
                format!(", ETA {:.0} s", per * (total - done + 1) as f64)
            } else {
                String::new()
            };
            eprintln!(
                "bench: case {done} of {total}: {} on {}{eta}",
                case.label,
                mesh_label(mesh)
            );
            let scene_path = tmp.join(format!("case{done}.toml"));
            std::fs::write(&scene_path, suite.scene_text(case, mesh, base)?)
                .map_err(|e| AppError::Other(format!("{}: {e}", scene_path.display())))?;
            let out = tmp.join(format!("case{done}.h5"));
            let mut runs = Vec::new();
            let warmup = case.warmup.unwrap_or(suite.warmup);
            let repeats = case.repeats.unwrap_or(suite.repeats).max(1);
            for k in 0..warmup + repeats {
                let r = run_child(&scene_path, &out)?;
                if k >= warmup {
                    runs.push(r);
                }
            }
            let mut res = summarise(&case.label, &mesh_label(mesh), &runs);
            let fields = h5::read_results(&out)?;
            match &reference {
                None => reference = Some(fields),
                Some(rf) => {
                    res.max_rel_diff = max_rel_diff(
                        &[&fields.u, &fields.abs_vel, &fields.pressure],
                        &[&rf.u, &rf.abs_vel, &rf.pressure],
                    );
                    res.max_rel_diff_u = max_rel_diff(&[&fields.u], &[&rf.u]);
                    res.equivalent = res.max_rel_diff <= suite.tolerance;
                }
            }
            let _ = std::fs::remove_file(&out);
            cases.push(res);
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    let report = Report {
        suite: suite.name.clone(),
        machine,
        date: utc_now(),
        git_revision: git_revision(),
        command: command.to_string(),
        warmup: suite.warmup,
        repeats: suite.repeats,
        cases,
    };
    let dir = out_root.join(&suite.name).join(&report.machine.name);
    std::fs::create_dir_all(&dir)
        .map_err(|e| AppError::Other(format!("{}: {e}", dir.display())))?;
    let json = serde_json::to_string_pretty(&report).expect("serialisable");
    std::fs::write(dir.join("results.json"), json)
        .map_err(|e| AppError::Other(format!("{}: {e}", dir.display())))?;
    std::fs::write(dir.join("results.md"), markdown(&report))
        .map_err(|e| AppError::Other(format!("{}: {e}", dir.display())))?;
    charts::write_charts(&report, &dir)?;
    eprintln!(
        "bench: wrote {}/results.json, results.md, phases.png and scaling.png",
        dir.display()
    );
    Ok(report)
}

fn tempfile_dir() -> Result<PathBuf, AppError> {
    let d = std::env::temp_dir().join(format!("quadflow-bench-{}", std::process::id()));
    std::fs::create_dir_all(&d).map_err(|e| AppError::Other(format!("{}: {e}", d.display())))?;
    Ok(d)
}

fn git_revision() -> String {
    if let Ok(r) = std::env::var("QUADFLOW_GIT_REVISION") {
        return r;
    }
    Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}
