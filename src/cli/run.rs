//! `quadflow run [SCENE]`: solve a scene and write its outputs.

use super::progress::progress_hook;
use crate::error::AppError;
use crate::run;
use crate::scene::Scene;
use quadflow_systems::common::ProgressHook;
use std::path::PathBuf;

#[derive(clap::Args, Default)]
pub struct RunArgs {
    /// Scene file (TOML). Without one, the built-in default scene runs.
    pub scene: Option<PathBuf>,
    /// Run the scene's settings on this mesh file (HDF5 .h5, gmsh .msh) instead.
    #[arg(long)]
    pub mesh: Option<PathBuf>,
    /// Backend for every phase (serial, parallel, gpu).
    #[arg(long)]
    pub backend: Option<String>,
    /// Linear solver (cg-jacobi, amg-cg, cholesky).
    #[arg(long)]
    pub solver: Option<String>,
    /// Threads of the parallel backend (0 = one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Assembly strategy of the parallel backend (direct-csr, batched-coo).
    #[arg(long)]
    pub assembly: Option<String>,
    /// Solve strategy of the gpu backend (custom, vendor).
    #[arg(long)]
    pub gpu_strategy: Option<String>,
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
    /// Print only errors.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Applies the command-line overrides to a scene.
fn scene_for(a: &RunArgs) -> Result<Scene, AppError> {
    let mut scene = match &a.scene {
        Some(p) => Scene::load(p)?,
        None => Scene::default_scene(),
    };
    if let Some(m) = &a.mesh {
        let abs =
            std::path::absolute(m).map_err(|e| AppError::Other(format!("{}: {e}", m.display())))?;
        scene.mesh.file = Some(abs);
        scene.mesh.generate = None;
        scene.mesh.nodes = None;
        scene.title = Some(format!(
            "{} on {}",
            scene.title.as_deref().unwrap_or("scene"),
            m.display()
        ));
    }
    if let Some(b) = &a.backend {
        scene.set_backend(b);
    }
    if let Some(s) = &a.solver {
        scene.solver.method = s.clone();
    }
    if let Some(t) = a.threads {
        scene.parallel.threads = t;
    }
    if let Some(s) = &a.assembly {
        scene.parallel.assembly = s.clone();
    }
    if let Some(s) = &a.gpu_strategy {
        scene.gpu.strategy = s.clone();
    }
    if let Some(n) = a.max_iter {
        scene.solver.max_iterations = n;
    }
    if let Some(r) = a.rtol {
        scene.solver.rtol = r;
    }
    if a.out.is_some() {
        scene.output.results = a.out.clone();
    }
    if a.trace.is_some() {
        scene.output.trace = a.trace.clone();
    }
    if a.flamegraph.is_some() {
        scene.output.flamegraph = a.flamegraph.clone();
    }
    if a.vtu.is_some() {
        scene.output.vtu = a.vtu.clone();
    }
    if a.png.is_some() {
        scene.output.png = a.png.clone();
    }
    scene.check()?;
    Ok(scene)
}

/// Runs `quadflow run`.
pub fn cmd_run(a: RunArgs) -> Result<(), AppError> {
    let scene = scene_for(&a)?;
    let trace = match (&scene.output.trace, &scene.output.flamegraph) {
        (None, None) => None,
        (c, f) => Some(crate::trace::install(c.as_deref(), f.as_deref())?),
    };
    let hook = if a.quiet {
        ProgressHook(None)
    } else {
        progress_hook(scene.solver.rtol)
    };
    if let (false, Some(t)) = (a.quiet, &scene.title) {
        eprintln!("quadflow  {t}");
    }
    let result = run::run(&scene, Some(hook))?;
    if let Some(p) = &scene.output.results {
        result.write(p, &scene)?;
    }
    let written = result.write_outputs(&scene)?;
    if let Some(t) = trace {
        t.finish()?;
    }
    if !a.quiet {
        print!("{}{written}", result.report(scene.output.results.as_ref()));
    }
    Ok(())
}
