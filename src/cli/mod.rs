//! The `quadflow` command line: argument parsing and dispatch to one
//! module per subcommand ([`run`], [`mesh`], [`plot`]; `bench` is
//! [`crate::bench`], `serve` [`crate::serve`]).

pub mod mesh;
pub mod plot;
pub mod progress;
pub mod run;

use crate::error::AppError;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

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
    Run(run::RunArgs),
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
    Mesh(mesh::MeshArgs),
    /// Draw a field of a results file as a PNG picture.
    Plot(plot::PlotArgs),
    /// Serve the study in a browser: meshes, solves with live progress,
    /// the field on the mesh, the executors compared (see the README).
    Serve(crate::serve::ServeArgs),
}

#[derive(clap::Args)]
struct BenchArgs {
    /// Suite file (TOML); default benches/y_tube.toml.
    suite: Option<PathBuf>,
    /// Folder the results go under (<folder>/<suite>/<machine>/).
    #[arg(long, default_value = "profiles")]
    out: PathBuf,
}

/// Parses the command line and runs it; errors are printed to stderr.
pub fn main() -> ExitCode {
    let catalog = crate::backends::catalog();
    let matches = Cli::command()
        .mut_subcommand("run", |c| run::with_backend_flags(c, &catalog))
        .get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let flags = matches
        .subcommand_matches("run")
        .map(|m| run::backend_flags(m, &catalog))
        .unwrap_or_default();
    let result = match cli.command {
        Some(Command::Run(a)) => run::cmd_run(a, &flags),
        Some(Command::Bench(b)) => cmd_bench(b),
        Some(Command::BenchCase { scene, out }) => crate::bench::bench_case(&scene, &out),
        Some(Command::Mesh(a)) => mesh::mesh_command(&a).map(|s| print!("{s}")),
        Some(Command::Plot(a)) => plot::plot_command(&a).map(|s| print!("{s}")),
        Some(Command::Serve(a)) => crate::serve::serve(&a),
        None => run::cmd_run(run::RunArgs::default(), &[]),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(AppError::Reported) => ExitCode::FAILURE,
        Err(e) => {
            report_error(&e);
            ExitCode::FAILURE
        }
    }
}

/// Prints `error: ...` to stderr in one write (the lines of processes
/// sharing a terminal, under `mpirun`, stay whole).
pub fn report_error(e: &AppError) {
    use std::io::Write;
    let line = format!("error: {e}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
}

fn cmd_bench(b: BenchArgs) -> Result<(), AppError> {
    let path = b.suite.unwrap_or_else(|| {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/benches/y_tube.toml"))
    });
    let suite = crate::bench::Suite::load(&path)?;
    let base = path.parent().map(|p| p.to_path_buf()).unwrap_or_default();
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let report = crate::bench::run_suite(&suite, &base, &b.out, &command)?;
    print!("{}", crate::bench::markdown(&report));
    Ok(())
}
