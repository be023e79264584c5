//! The `quadflow` command line.

use clap::{Parser, Subcommand};
use quadflow::mesh_cli;
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
    /// Run a benchmark suite (backends x variants x meshes) and record it
    /// under profiles/.
    Bench(BenchArgs),
    /// One run of a bench case (used by `bench`; prints JSON).
    #[command(hide = true)]
    BenchCase {
        /// scene file
        scene: PathBuf,
        /// results file
        out: PathBuf,
    },
    /// Generate a mesh (`mesh GEOMETRY --nodes N -o FILE`) or convert one
    /// (`mesh convert IN OUT`) between HDF5 (.h5) and gmsh (.msh).
    Mesh(mesh_cli::MeshArgs),
    /// Draw a field of a results file as a PNG picture.
    Plot(mesh_cli::PlotArgs),
}

#[derive(clap::Args)]
struct BenchArgs {
    /// Suite file (TOML); default benches/y_tube.toml.
    suite: Option<PathBuf>,
    /// Folder the results go under (<folder>/<suite>/<machine>/).
    #[arg(long, default_value = "profiles")]
    out: PathBuf,
}

#[derive(clap::Args, Default)]
struct RunArgs {
    /// Scene file (TOML). Without one, the built-in default scene runs.
    scene: Option<PathBuf>,
    /// Run the scene's settings on this mesh file (HDF5 .h5, gmsh .msh) instead.
    #[arg(long)]
    mesh: Option<PathBuf>,
    /// Backend for every phase (serial, parallel, gpu).
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
    /// Solve strategy of the gpu backend (custom, vendor).
    #[arg(long)]
    gpu_strategy: Option<String>,
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
    /// Flamegraph (SVG) of the run's phases, systems and kernels.
    #[arg(long)]
    flamegraph: Option<PathBuf>,
    /// ParaView file of the mesh and fields (VTK XML, .vtu).
    #[arg(long)]
    vtu: Option<PathBuf>,
    /// PNG picture of the potential u.
    #[arg(long)]
    png: Option<PathBuf>,
    /// Print only errors.
    #[arg(long, short)]
    quiet: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Run(a)) => cmd_run(a),
        Some(Command::Bench(b)) => cmd_bench(b),
        Some(Command::BenchCase { scene, out }) => quadflow::bench::bench_case(&scene, &out),
        Some(Command::Mesh(a)) => mesh_cli::mesh_command(&a).map(|s| print!("{s}")),
        Some(Command::Plot(a)) => mesh_cli::plot_command(&a).map(|s| print!("{s}")),
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
    let trace = match (&scene.output.trace, &scene.output.flamegraph) {
        (None, None) => None,
        (c, f) => Some(quadflow::trace::install(c.as_deref(), f.as_deref())?),
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
    let written = mesh_cli::write_run_outputs(&result, &scene)?;
    if let Some(t) = trace {
        t.finish()?;
    }
    if !a.quiet {
        print!("{}{written}", result.report(scene.output.results.as_ref()));
    }
    Ok(())
}

fn cmd_bench(b: BenchArgs) -> Result<(), AppError> {
    let path = b.suite.unwrap_or_else(|| {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/benches/y_tube.toml"))
    });
    let suite = quadflow::bench::Suite::load(&path)?;
    let base = path.parent().map(|p| p.to_path_buf()).unwrap_or_default();
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let report = quadflow::bench::run_suite(&suite, &base, &b.out, &command)?;
    print!("{}", quadflow::bench::markdown(&report));
    Ok(())
}
