//! # quadflow
//!
//! The application around the engine (`quadflow-systems`): mesh input and
//! output (HDF5, gmsh, generators), scene files, building and running the
//! pipeline, results files, VTU and PNG outputs, tracing.

pub mod bench;
pub mod charts;
pub mod generate;
pub mod gmsh;
pub mod h5io;
pub mod mesh_cli;
pub mod meshio;
pub mod plot;
pub mod run;
pub mod scene;
pub mod trace;
pub mod vtu;

pub use quadflow_systems as systems;
