//! # quadflow
//!
//! The application around the engine (`quadflow-systems`): mesh input and
//! output (HDF5, generators), scene files, building and running the
//! pipeline, results files, tracing.

pub mod bench;
pub mod generate;
pub mod h5io;
pub mod run;
pub mod scene;
pub mod trace;

pub use quadflow_systems as systems;
