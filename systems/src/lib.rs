//! # quadflow-systems
//!
//! The simulation engine of quadflow: a Quad-8 finite-element solver for 2D
//! potential flow laid out as an ECS pipeline on `bevy_ecs`. Modules from
//! the bottom layer up (each imports only from the ones above it in this
//! list):
//!
//! - [`exec`]: how row loops run (one thread or row blocks on rayon, same
//!   bits), and the one disjoint-write device of parallel loops.
//! - [`element`]: the Quad-8 serendipity element and its kernels.
//! - [`mesh`]: the validated mesh.
//! - [`sparse`]: symmetric CSR, sparsity pattern and slot maps, general CSR.
//! - [`ordering`]: reverse Cuthill-McKee renumbering.
//! - [`topology`]: connected components of the mesh, and those nothing
//!   anchors.
//! - [`boundary`]: boundary selection and contributions.
//! - [`solver`]: the equilibration every iterative method shares and
//!   Jacobi-preconditioned CG.
//! - [`amg`]: smoothed-aggregation AMG, the AMG-CG solver.
//! - [`cholesky`]: sparse Cholesky direct solve (faer).
//! - [`components`]: ECS components and resources, the run's error, the
//!   progress hook, backend reports.
//! - [`pipeline`]: phases, the [`pipeline::Backend`] plug-in trait, the
//!   [`pipeline::Registry`] of configured backends, the
//!   [`pipeline::Pipeline`] runner and its hand-over between memories.
//! - [`config`]: backend kinds, their scene sections and flags
//!   ([`config::BackendKind`], [`config::Catalog`]).
//! - [`common`]: the pieces host backends share (element load, boundary
//!   contributions, the solve step, element outputs).
//! - [`serial`], [`parallel`], [`gpu`]: the backends.
//! - [`backends`]: the catalog of the built-in backends.

// Element kernels index small fixed arrays by node and quadrature point;
// explicit index loops mirror the formulas (and the CUDA C kernels).
#![allow(clippy::needless_range_loop)]

pub mod amg;
pub mod backends;
pub mod boundary;
pub mod cholesky;
pub mod common;
pub mod components;
pub mod config;
pub mod element;
pub mod exec;
pub mod gpu;
pub mod mesh;
pub mod ordering;
pub mod parallel;
pub mod pipeline;
pub mod serial;
pub mod solver;
pub mod sparse;
pub mod topology;

pub use pipeline::{Backend, Phase, PhasePlan, Pipeline, PipelineError, Registry, RunConfig};

/// Says that a test skipped and why (`SKIPPED <line>` on stderr) and
/// records the line in the file `$QUADFLOW_SKIP_LOG` names, where
/// `tests/run` lists every skip at the end: a skip is never a silent pass.
pub fn record_skip(line: &str) {
    eprintln!("SKIPPED {line}");
    if let Some(log) = std::env::var_os("QUADFLOW_SKIP_LOG") {
        use std::io::Write;
        let _ = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()));
    }
}
