//! Checks the results file of an `mpi` run (`mpi/run-tests.sh`): re-runs
//! the scene stored in it on the serial backend, in this process, and
//! compares.
//!
//! ```text
//! check_results RESULTS.h5 RANKS [SERIAL.h5]
//! ```
//! With `SERIAL.h5` (the serial backend's results of the same scene), that
//! file is the reference and serial runs again only where the iteration
//! counts differ.
//! - `cg-jacobi`: iterations within 1% (or one) of serial's; `u` within
//!   1e-10 (relative, max-norm) of serial's (of its iterate after as many
//!   iterations where the counts differ); speed and pressure; matrix size;
//!   converged.
//! - `amg-cg`: converged, true residual at most 1.5 x the tolerance, `u`
//!   within 1e-7 of the serial AMG-CG's, iterations at most 1.2 x
//!   serial's.
//! - both: `mpi_ranks` = RANKS, the partition and timing attributes there;
//!   every rank's peak memory; read in blocks, no rank read more than its
//!   share of the mesh file and a halo; a mesh the results carry is the
//!   run's mesh. A run capped on purpose (`allow_unconverged`) need not
//!   converge.
//!
//! `CHECK_U_TOL=X` bounds `u`'s difference by `X` instead (the GPU tests:
//! `1e-9` for both solvers).
//!
//! Prints one `PASS` or `FAIL` line; exits non-zero on `FAIL` or error.

use quadflow::io::h5::{self, Attr};
use quadflow::run::{self, RunResult};
use quadflow::scene::Scene;
use std::path::Path;
use toml::Table;

fn rel_max(a: &[f64], b: &[f64]) -> f64 {
    if a.len() != b.len() {
        return f64::INFINITY;
    }
    let s = b.iter().fold(f64::MIN_POSITIVE, |m, v| m.max(v.abs()));
    a.iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()))
        / s
}

fn attr<'a>(attrs: &'a [(String, Attr)], name: &str) -> Result<&'a Attr, String> {
    attrs
        .iter()
        .find_map(|(k, v)| (k == name).then_some(v))
        .ok_or_else(|| format!("attribute {name} missing"))
}

fn int(attrs: &[(String, Attr)], name: &str) -> Result<i64, String> {
    match attr(attrs, name)? {
        Attr::Int(v) => Ok(*v),
        other => Err(format!("attribute {name}: {other:?}")),
    }
}

fn float(attrs: &[(String, Attr)], name: &str) -> Result<f64, String> {
    match attr(attrs, name)? {
        Attr::Float(v) => Ok(*v),
        other => Err(format!("attribute {name}: {other:?}")),
    }
}

/// Runs the stored scene on the serial backend, with `solver` keys
/// replaced.
fn serial(scene: &Table, solver: &[(&str, toml::Value)]) -> Result<RunResult, String> {
    let mut t = scene.clone();
    t.remove("mpi");
    t.remove("output");
    let mut b = Table::new();
    b.insert("default".into(), "serial".into());
    t.insert("backend".into(), toml::Value::Table(b));
    if let Some(s) = t.get_mut("solver").and_then(|s| s.as_table_mut()) {
        for (k, v) in solver {
            s.insert((*k).into(), v.clone());
        }
    }
    let plan = Scene::parse(&t.to_string(), "<stored scene, serial>")
        .and_then(|s| s.plan())
        .map_err(|e| e.to_string())?;
    run::run(&plan, None).map_err(|e| e.to_string())
}

/// The mesh of the stored scene, loaded (validated) as a run loads it.
fn mesh_of(scene: &Table) -> Result<quadflow_systems::mesh::Mesh, String> {
    let mut t = scene.clone();
    t.remove("mpi");
    t.remove("output");
    t.remove("backend");
    let plan = Scene::parse(&t.to_string(), "<stored scene>")
        .and_then(|s| s.plan())
        .map_err(|e| e.to_string())?;
    let loaded = run::load_mesh(&plan).map_err(|e| e.to_string())?;
    Ok(std::sync::Arc::unwrap_or_clone(loaded.mesh))
}

/// The serial reference: `u`, speed, pressure, iterations, matrix size.
struct Reference {
    u: Vec<f64>,
    abs_vel: Vec<f64>,
    pressure: Vec<f64>,
    iterations: usize,
    nnz: usize,
    nodes: usize,
}

fn reference(scene: &Table, file: Option<&Path>) -> Result<Reference, String> {
    if let Some(f) = file {
        let r = h5::read_results(f).map_err(|e| e.to_string())?;
        return Ok(Reference {
            iterations: int(&r.attrs, "iterations")? as usize,
            nnz: int(&r.attrs, "matrix_nnz")? as usize,
            nodes: r.u.len(),
            u: r.u,
            abs_vel: r.abs_vel,
            pressure: r.pressure,
        });
    }
    let s = serial(scene, &[]).map_err(|e| format!("serial run: {e}"))?;
    Ok(Reference {
        iterations: s.solution.stats.iterations,
        nnz: s.nnz,
        nodes: s.mesh.nodes(),
        u: s.solution.u,
        abs_vel: s.abs_vel,
        pressure: s.pressure,
    })
}

fn check(path: &Path, ranks: i64, serial_file: Option<&Path>) -> Result<String, String> {
    let r = h5::read_results(path).map_err(|e| e.to_string())?;
    let a = &r.attrs;
    let scene_text = match attr(a, "scene")? {
        Attr::Str(s) => s.clone(),
        other => return Err(format!("attribute scene: {other:?}")),
    };
    let scene: Table = scene_text
        .parse()
        .map_err(|e| format!("stored scene: {e}"))?;
    let p = int(a, "mpi_ranks")?;
    if p != ranks {
        return Err(format!("mpi_ranks = {p}, expected {ranks}"));
    }
    for k in [
        "mpi_time_solve_max",
        "mpi_time_solve_min",
        "mpi_comm_seconds_max",
        "mpi_halo_seconds_max",
        "mpi_allreduce_seconds_max",
        "mpi_imbalance_nodes",
    ] {
        float(a, k)?;
    }
    let cut = int(a, "mpi_edge_cut")?;
    let solver = match attr(a, "solver")? {
        Attr::Str(s) => s.clone(),
        _ => String::new(),
    };
    let it = int(a, "iterations")? as usize;
    // CHECK_U_TOL: a bound on u's difference other than the defaults
    let u_tol: Option<f64> = match std::env::var("CHECK_U_TOL") {
        Ok(v) => Some(
            v.parse()
                .map_err(|_| format!("CHECK_U_TOL={v}: not a number"))?,
        ),
        Err(_) => None,
    };
    let converged = int(a, "converged")? == 1;
    let tr = float(a, "true_relative_residual")?;
    let rtol = float(a, "rtol")?;
    let s = reference(&scene, serial_file)?;
    let mut fails = Vec::new();
    let what = if solver == "amg-cg" {
        let e = rel_max(&r.u, &s.u);
        if !(converged && tr <= 1.5 * rtol && e <= u_tol.unwrap_or(1e-7)) {
            fails.push(format!(
                "converged {converged}, true residual {tr:.2e} (tolerance {rtol:e}), u differs from serial AMG-CG's by {e:.2e}"
            ));
        }
        // the distributed hierarchy: within +20% of one process's count
        if it as f64 > (1.2 * s.iterations as f64).ceil() {
            fails.push(format!(
                "{it} iterations, more than 1.2 x serial's {}",
                s.iterations
            ));
        }
        format!(
            "amg-cg: {it} iterations (serial {}), true residual {tr:.2e}, u rel diff to serial {e:.2e}",
            s.iterations
        )
    } else {
        let its = s.iterations;
        let (e, against) = if it == its {
            (rel_max(&r.u, &s.u), String::new())
        } else {
            let same = serial(
                &scene,
                &[
                    ("rtol", toml::Value::Float(1e-300)),
                    ("max_iterations", toml::Value::Integer(it as i64)),
                    ("allow_unconverged", toml::Value::Boolean(true)),
                ],
            )
            .map_err(|e| format!("serial run of {it} iterations: {e}"))?;
            (
                rel_max(&r.u, &same.solution.u),
                format!(
                    " (to serial's iterate {it}; to its converged u {:.2e})",
                    rel_max(&r.u, &s.u)
                ),
            )
        };
        let es = rel_max(&r.abs_vel, &s.abs_vel);
        let ep = rel_max(&r.pressure, &s.pressure);
        let nnz = int(a, "matrix_nnz")? as usize;
        if (it as f64 - its as f64).abs() > (0.01 * its as f64).max(1.0) {
            fails.push(format!("{it} iterations against serial's {its}"));
        }
        if e > u_tol.unwrap_or(1e-10) {
            fails.push(format!("u differs by {e:.2e}"));
        }
        if es > 1e-7 || ep > 1e-9 {
            fails.push(format!("speed differs by {es:.2e}, pressure by {ep:.2e}"));
        }
        // a run capped on purpose (the large meshes' data-path checks)
        let capped = scene
            .get("solver")
            .and_then(|t| t.get("allow_unconverged"))
            .and_then(|v| v.as_bool())
            == Some(true);
        if nnz != s.nnz || !(converged || capped) {
            fails.push(format!(
                "matrix nnz {nnz} (serial {}), converged {converged}",
                s.nnz
            ));
        }
        format!(
            "cg-jacobi: {it} iterations (serial {its}), u rel diff {e:.2e}{against}, speed {es:.2e}, pressure {ep:.2e}, true residual {tr:.2e}"
        )
    };
    if ranks > 1 && cut == 0 {
        fails.push("no edge cut between several parts".into());
    }
    // how it was read, and every rank's memory
    let read = match attr(a, "mpi_read")? {
        Attr::Str(s) => s.clone(),
        other => return Err(format!("attribute mpi_read: {other:?}")),
    };
    let rss = [
        int(a, "mpi_peak_rss_max")?,
        int(a, "mpi_peak_rss_min")?,
        int(a, "mpi_peak_rss_mean")?,
    ];
    if rss.iter().any(|&v| v <= 0) || rss[1] > rss[2] || rss[2] > rss[0] {
        fails.push(format!("peak memory max/min/mean {rss:?}"));
    }
    let mut io = format!(
        "read {read}, peak memory max {:.0} MB, mean {:.0} MB",
        rss[0] as f64 / 1e6,
        rss[2] as f64 / 1e6
    );
    if read == "blocks" {
        let b = int(a, "mpi_read_bytes_max")?;
        io.push_str(&format!(
            ", {:.1} MB read by a rank at most",
            b as f64 / 1e6
        ));
        // a rank reads its share of the mesh file's data and the
        // coordinates its elements need outside its node range
        if let Some(f) = scene
            .get("mesh")
            .and_then(|m| m.get("file"))
            .and_then(|f| f.as_str())
        {
            let (n, e) = (s.nodes as f64, s.abs_vel.len() as f64);
            let share = (16.0 * n + 64.0 * e) / ranks as f64;
            if b as f64 > 1.25 * share + 4e6 {
                fails.push(format!(
                    "a rank read {b} bytes of {f}, more than its share ({share:.0}) and a halo"
                ));
            }
        }
    }
    // the mesh the results carry is the mesh
    if let Some((x, y, q)) = h5::read_results_mesh(path).map_err(|e| e.to_string())? {
        let m = mesh_of(&scene)?;
        if x != m.x
            || y != m.y
            || q.iter()
                .zip(&m.elements)
                .any(|(a, b)| *a != b.map(i64::from))
        {
            fails.push("the mesh in the results is not the run's mesh".into());
        }
        io.push_str(", carries the mesh");
    }
    let what = format!("{what}; {io}");
    if fails.is_empty() {
        Ok(format!("{what}; {} nodes, edge cut {cut}", s.nodes))
    } else {
        Err(format!("{what}: {}", fails.join("; ")))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(path), Some(ranks)) = (args.first(), args.get(1).and_then(|r| r.parse().ok())) else {
        eprintln!("usage: check_results RESULTS.h5 RANKS [SERIAL.h5]");
        std::process::exit(2);
    };
    match check(Path::new(path), ranks, args.get(2).map(Path::new)) {
        Ok(s) => println!("PASS {path}: {s}"),
        Err(e) => {
            println!("FAIL {path}: {e}");
            std::process::exit(1);
        }
    }
}
