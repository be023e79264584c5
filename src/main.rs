//! The `quadflow` command line.

use clap::{Parser, Subcommand};
use quadflow::run::{self, AppError};
use quadflow::scene::Scene;
use quadflow::systems::common::ProgressHook;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

#[derive(Parser)]
#[command(
    name = "quadflow",
    version,
    about = "2D potential flow on Quad-8 meshes, under interchangeable executors"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Solve a scene (the built-in default scene if none is given).
    Run(RunArgs),
}

#[derive(clap::Args, Default)]
struct RunArgs {
    /// Scene file (TOML). Without one, the built-in default scene runs.
    scene: Option<PathBuf>,
    /// Run the scene's settings on this mesh file (HDF5) instead.
    #[arg(long)]
    mesh: Option<PathBuf>,
    /// Backend for every phase (serial, parallel).
    #[arg(long)]
    backend: Option<String>,
    /// Linear solver (cg-jacobi, amg-cg, cholesky).
    #[arg(long)]
    solver: Option<String>,
    /// Threads of the parallel backend (0 = one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Assembly strategy of the parallel backend (direct-csr, batched-coo).
    #[arg(long)]
    assembly: Option<String>,
    /// Iteration cap of the solver.
    #[arg(long)]
    max_iter: Option<usize>,
    /// Relative tolerance of the solver.
    #[arg(long)]
    rtol: Option<f64>,
    /// Results file (HDF5).
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// Chrome trace (open in Perfetto or chrome://tracing).
    #[arg(long)]
    trace: Option<PathBuf>,
    /// Print only errors.
    #[arg(long, short)]
    quiet: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Run(a)) => cmd_run(a),
        None => cmd_run(RunArgs::default()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
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
    scene.check()?;
    Ok(scene)
}

/// A progress bar for solves longer than a second, on a terminal only.
fn progress_hook(rtol: f64) -> ProgressHook {
    if !std::io::stderr().is_terminal() {
        return ProgressHook(None);
    }
    let start = Instant::now();
    let mut bar: Option<indicatif::ProgressBar> = None;
    let target = -rtol.log10();
    ProgressHook(Some(Box::new(move |it, res| {
        if bar.is_none() && start.elapsed().as_secs_f64() > 1.0 {
            let b = indicatif::ProgressBar::new(1000);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "solve [{elapsed_precise}] {bar:30} {percent:>3}% ETA {eta} {msg}",
                )
                .expect("valid template"),
            );
            bar = Some(b);
        }
        if let Some(b) = &bar {
            // progress in digits of residual reduction
            let done = (-(res.max(1e-300)).log10() / target).clamp(0.0, 1.0);
            b.set_position((done * 1000.0) as u64);
            b.set_message(format!("it {it}, residual {res:.2e}"));
        }
    })))
}

fn cmd_run(a: RunArgs) -> Result<(), AppError> {
    let scene = scene_for(&a)?;
    let _trace = match &scene.output.trace {
        Some(p) => Some(quadflow::trace::chrome(p)?),
        None => None,
    };
    let hook = if a.quiet {
        ProgressHook(None)
    } else {
        progress_hook(scene.solver.rtol)
    };
    if !a.quiet {
        if let Some(t) = &scene.title {
            eprintln!("quadflow  {t}");
        }
    }
    let result = run::run(&scene, Some(hook))?;
    if let Some(p) = &scene.output.results {
        result.write(p, &scene)?;
    }
    if !a.quiet {
        print!("{}", result.report(scene.output.results.as_ref()));
    }
    Ok(())
}
