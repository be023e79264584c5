//! # quadflow
//!
//! The application around the engine (`quadflow-systems`):
//!
//! - [`io`]: mesh and results files (HDF5, gmsh, VTU).
//! - [`generate`]: the built-in mesh generators.
//! - [`scene`]: scene files (TOML).
//! - [`run`]: building the pipeline from a scene, running it, its results.
//! - [`viz`]: pictures (the rasteriser, field plots).
//! - [`trace`]: Chrome traces and flamegraphs of a run.
//! - [`bench`]: benchmark suites.
//! - [`serve`]: `quadflow serve`, the study in a browser.
//! - [`cli`]: the command line.
//! - [`error`]: the application's error type.

pub mod backends;
pub mod bench;
pub mod cli;
pub mod error;
pub mod generate;
pub mod io;
pub mod run;
pub mod scene;
pub mod serve;
pub mod trace;
pub mod viz;

pub use quadflow_systems as systems;
