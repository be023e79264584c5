//! `quadflow run [SCENE]`: solve a scene and write its outputs.
//!
//! The flags below are the run's own; each backend adds the flags that set
//! keys of its scene section ([`quadflow_systems::config::BackendKind::flags`]:
//! `--threads`, `--assembly`, `--gpu-strategy`, ...), added to the command
//! by [`with_backend_flags`].

use super::progress::progress_hook;
use crate::error::AppError;
use crate::run::{self, RunEvents, RunHeader};
use crate::scene::Scene;
use quadflow_systems::components::ProgressHook;
use quadflow_systems::config::{Catalog, Flag};
use std::io::Write;
use std::path::PathBuf;

/// The run's own flags.
#[derive(clap::Args, Default)]
pub struct RunArgs {
    /// Scene file (TOML). Without one, the built-in default scene runs.
    pub scene: Option<PathBuf>,
    /// Run the scene's settings on this mesh file (HDF5 .h5, gmsh .msh) instead.
    #[arg(long)]
    pub mesh: Option<PathBuf>,
    /// Backend for every phase (serial, parallel, gpu, ...).
    #[arg(long)]
    pub backend: Option<String>,
    /// Linear solver (cg-jacobi, amg-cg, cholesky).
    #[arg(long)]
    pub solver: Option<String>,
    /// Iteration cap of the solver.
    #[arg(long)]
    pub max_iter: Option<usize>,
    /// Relative tolerance of the solver.
    #[arg(long)]
    pub rtol: Option<f64>,
    /// Results file (HDF5).
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// Chrome trace (open in Perfetto or chrome://tracing).
    #[arg(long)]
    pub trace: Option<PathBuf>,
    /// Flamegraph (SVG) of the run's phases, systems and kernels.
    #[arg(long)]
    pub flamegraph: Option<PathBuf>,
    /// ParaView file of the mesh and fields (VTK XML, .vtu).
    #[arg(long)]
    pub vtu: Option<PathBuf>,
    /// PNG picture of the potential u.
    #[arg(long)]
    pub png: Option<PathBuf>,
    /// XDMF index over the results file, for ParaView at any size (needs --out).
    #[arg(long)]
    pub xdmf: Option<PathBuf>,
    /// Print only errors and warnings.
    #[arg(long, short)]
    pub quiet: bool,
}

/// A backend flag given on the command line: the backend, its flag, the
/// value as typed.
#[derive(Debug, Clone)]
pub struct BackendFlag {
    /// The backend whose section the flag sets.
    pub backend: &'static str,
    /// The flag.
    pub flag: Flag,
    /// The value as typed.
    pub value: String,
}

/// `run` with the flags of every backend of `catalog` added.
pub fn with_backend_flags(mut cmd: clap::Command, catalog: &Catalog) -> clap::Command {
    for kind in catalog.kinds() {
        for f in kind.flags() {
            cmd = cmd.arg(
                clap::Arg::new(f.long)
                    .long(f.long)
                    .value_name(f.value_name)
                    .help(f.help)
                    .num_args(1),
            );
        }
    }
    cmd
}

/// The backend flags given in `m` (the `run` subcommand's matches).
pub fn backend_flags(m: &clap::ArgMatches, catalog: &Catalog) -> Vec<BackendFlag> {
    let mut out = Vec::new();
    for kind in catalog.kinds() {
        for f in kind.flags() {
            if let Ok(Some(v)) = m.try_get_one::<String>(f.long) {
                out.push(BackendFlag {
                    backend: kind.name(),
                    flag: *f,
                    value: v.clone(),
                });
            }
        }
    }
    out
}

/// The scene of a run: the file (or the built-in default) with the
/// command-line overrides applied, each recorded so that an error about it
/// names the flag.
pub fn scene_for(a: &RunArgs, flags: &[BackendFlag]) -> Result<Scene, AppError> {
    let mut scene = match &a.scene {
        Some(p) => Scene::load(p)?,
        None => Scene::default_scene(),
    };
    if let Some(m) = &a.mesh {
        // absolute (the results record it), without `..` where the file exists
        let abs = std::fs::canonicalize(m)
            .or_else(|_| std::path::absolute(m))
            .map_err(|e| AppError::Other(format!("{}: {e}", m.display())))?;
        scene.mesh.file = Some(abs);
        scene.mesh.generate = None;
        scene.mesh.nodes = None;
        let settings = match &a.scene {
            Some(p) => p.display().to_string(),
            None => "the built-in default".to_string(),
        };
        scene.title = Some(format!("{} with the settings of {settings}", m.display()));
        scene.set_by_flag("mesh", format!("--mesh {}", m.display()));
    }
    if let Some(b) = &a.backend {
        scene.set_backend(b);
        scene.set_by_flag("backend.default", format!("--backend {b}"));
    }
    if let Some(s) = &a.solver {
        scene.solver.method = s.clone();
        scene.set_by_flag("solver.method", format!("--solver {s}"));
    }
    if let Some(n) = a.max_iter {
        scene.solver.max_iterations = n;
        scene.set_by_flag("solver.max_iterations", format!("--max-iter {n}"));
    }
    if let Some(r) = a.rtol {
        scene.solver.rtol = r;
        scene.set_by_flag("solver.rtol", format!("--rtol {r}"));
    }
    for f in flags {
        scene.set_backend_flag(f.backend, &f.flag, &f.value)?;
    }
    let out = &mut scene.output;
    for (slot, flag) in [
        (&mut out.results, &a.out),
        (&mut out.trace, &a.trace),
        (&mut out.flamegraph, &a.flamegraph),
        (&mut out.vtu, &a.vtu),
        (&mut out.png, &a.png),
        (&mut out.xdmf, &a.xdmf),
    ] {
        if flag.is_some() {
            *slot = flag.clone();
        }
    }
    scene.check()?;
    Ok(scene)
}

/// What the console shows while a run goes on: warnings on stderr always
/// (`--quiet` too), the mesh and boundary lines on stdout before the solve
/// starts (not with `--quiet`).
struct Console {
    quiet: bool,
}

impl RunEvents for Console {
    fn warning(&mut self, text: &str) {
        eprintln!("warning: {text}");
    }

    fn bounded(&mut self, header: &RunHeader) {
        if !self.quiet {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(header.text().as_bytes());
            let _ = out.flush();
        }
    }
}

/// Runs `quadflow run`.
pub fn cmd_run(a: RunArgs, flags: &[BackendFlag]) -> Result<(), AppError> {
    let plan = scene_for(&a, flags)?.plan()?;
    if let Some(g) = run::process_group(&plan)? {
        // Reported here, while the group (MPI) still runs: a process that
        // leaves first must not take the others down before they print.
        return cmd_run_group(&a, &plan, g.as_ref()).map_err(|e| {
            super::report_error(&e);
            AppError::Reported
        });
    }
    let outputs = &plan.outputs;
    let trace = match (&outputs.trace, &outputs.flamegraph) {
        (None, None) => None,
        (c, f) => Some(crate::trace::install(c.as_deref(), f.as_deref())?),
    };
    let hook = if a.quiet {
        ProgressHook(None)
    } else {
        progress_hook(plan.rtol())
    };
    if let (false, Some(t)) = (a.quiet, &plan.title) {
        eprintln!("quadflow  {t}");
    }
    let result = run::run_with(&plan, Some(hook), &mut Console { quiet: a.quiet })?;
    if let Some(p) = &outputs.results {
        result.write_results(p, outputs, None)?;
    }
    let mut written = result.write_outputs(outputs)?;
    if let Some(t) = trace {
        t.finish()?;
        for (name, path) in [
            ("trace", &outputs.trace),
            ("flamegraph", &outputs.flamegraph),
        ] {
            if let Some(p) = path {
                written.push_str(&format!("{name:<10}{}\n", p.display()));
            }
        }
    }
    if !a.quiet {
        print!("{}{written}", result.outcome(outputs.results.as_ref()));
    }
    Ok(())
}

/// `quadflow run` as one process of a group (under `mpirun`): the lead
/// alone traces, shows progress, writes and prints; every failure, the
/// lead's writing included, is agreed, so every process exits with the
/// same message.
fn cmd_run_group(
    a: &RunArgs,
    plan: &crate::scene::Plan,
    group: &dyn quadflow_systems::pipeline::ProcessGroup,
) -> Result<(), AppError> {
    let lead = group.is_lead();
    let outputs = &plan.outputs;
    let trace = match (lead, &outputs.trace, &outputs.flamegraph) {
        (false, ..) | (true, None, None) => Ok(None),
        (true, c, f) => crate::trace::install(c.as_deref(), f.as_deref()).map(Some),
    };
    let trace = run::agreed(group, trace)?;
    let hook = if a.quiet || !lead {
        ProgressHook(None)
    } else {
        progress_hook(plan.rtol())
    };
    if let (false, true, Some(t)) = (a.quiet, lead, &plan.title) {
        eprintln!("quadflow  {t}");
    }
    let result = run::run_group(plan, group, Some(hook))?;
    // a distributed result: every process writes its rows
    let t = std::time::Instant::now();
    if let (Some(r), Some(p)) = (&result, &outputs.results)
        && r.blocks.is_some()
    {
        r.write_results(p, outputs, Some(group))?;
    }
    let write_seconds = t.elapsed().as_secs_f64();
    let result = result.filter(|_| lead);
    let written = (|| -> Result<Option<(String, _)>, AppError> {
        let Some(result) = result else {
            return Ok(None);
        };
        let t = std::time::Instant::now();
        if let (Some(p), None) = (&outputs.results, &result.blocks) {
            result.write_results(p, outputs, None)?;
        }
        let mut written = String::new();
        if outputs.results.is_some() {
            let (secs, who) = match result.blocks {
                Some(_) => (write_seconds, "every rank its rows"),
                None => (t.elapsed().as_secs_f64(), "rank 0"),
            };
            written.push_str(&format!("write     {secs:.4} s ({who})\n"));
        }
        written.push_str(&result.write_outputs(outputs)?);
        if let Some(t) = trace {
            t.finish()?;
        }
        Ok(Some((written, result)))
    })();
    if let Some((written, result)) = run::agreed(group, written)?
        && !a.quiet
    {
        for w in &result.warnings {
            eprintln!("warning: {w}");
        }
        print!("{}{written}", result.report(outputs.results.as_ref()));
    }
    Ok(())
}
