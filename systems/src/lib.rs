//! # quadflow-systems
//!
//! The simulation engine of quadflow: a Quad-8 finite-element solver for 2D
//! potential flow laid out as an ECS pipeline on `bevy_ecs`.
//!
//! - [`element`]: the Quad-8 serendipity element and its kernels.
//! - [`mesh`]: the validated mesh.
//! - [`sparse`]: symmetric CSR, sparsity pattern, slot maps.
//! - [`boundary`]: boundary selection and contributions.
//! - [`solver`]: equilibrated Jacobi-PCG.
//! - [`amg`]: smoothed-aggregation AMG, the AMG-CG solver.
//! - [`cholesky`]: sparse Cholesky direct solve (faer).
//! - [`components`]: ECS components and resources.
//! - [`pipeline`]: phases, the [`pipeline::Backend`] plug-in trait, the
//!   [`pipeline::Pipeline`] runner.
//! - [`serial`]: the single-threaded backend.

// Element kernels index small fixed arrays by node and quadrature point;
// explicit index loops mirror the formulas (and the CUDA C kernels).
#![allow(clippy::needless_range_loop)]

pub mod amg;
pub mod boundary;
pub mod cholesky;
pub mod common;
pub mod components;
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

pub use pipeline::{Backend, Phase, PhasePlan, Pipeline, PipelineError, Registry, RunConfig};
