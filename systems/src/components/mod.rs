//! ECS data: the components of element entities and the resources shared
//! by the phases. Elements are entities with small dense components;
//! everything global (the matrix, vectors, solver state, settings, timings)
//! is a resource.
//!
//! - [`failure`]: the error a run fails with ([`PipelineError`]) and the
//!   [`Failure`] resource a failing system records it in.
//! - [`progress`]: the solver's progress callback ([`ProgressHook`]).
//! - [`report`]: what a backend reports after a run ([`BackendReport`]).

pub mod failure;
pub mod progress;
pub mod report;

pub use failure::{Failure, PipelineError, fail, no_failure};
pub use progress::ProgressHook;
pub use report::{Attr, BackendReport};

use crate::amg::AmgSettings;
use crate::boundary::BoundaryConfig;
use crate::element::{Coords, NODES, QuadData, SYM_ENTRIES};
use crate::mesh::Mesh;
use crate::solver::{CgSettings, SolveStats};
use crate::sparse::SymCsr;
use bevy_ecs::prelude::*;
use std::sync::Arc;

/// Index of the element in the mesh (its row in every per-element output).
#[derive(Component, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ElementIndex(pub u32);

/// The element's eight global node indices (counter-clockwise).
#[derive(Component, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nodes(pub [u32; NODES]);

/// The element's node coordinates, gathered once at spawn time.
#[derive(Component, Debug, Clone, Copy, PartialEq)]
pub struct ElementCoords(pub Coords);

/// Quadrature data (geometric factors), written by the quadrature phase.
#[derive(Component, Debug, Clone, Copy, PartialEq, Default)]
pub struct Quadrature(pub QuadData);

/// Slots of the element's upper-triangle pairs in the matrix value array,
/// written by the assembly phase's pattern system.
#[derive(Component, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slots(pub [u32; SYM_ENTRIES]);

impl Default for Slots {
    fn default() -> Self {
        Self([0; SYM_ENTRIES])
    }
}

/// Per-element outputs as arrays in element order: what every
/// post-processing system writes (host backends through the element
/// entities' [`ElementIndex`], the GPU backend from its device arrays),
/// the one source of element results. Empty until the post phase ran.
#[derive(Resource, Debug, Clone, Default, PartialEq)]
pub struct ElementOutputs {
    /// Velocity per element.
    pub vel: Vec<[f64; 2]>,
    /// Speed per element.
    pub abs_vel: Vec<f64>,
    /// Pressure per element.
    pub pressure: Vec<f64>,
}

impl ElementOutputs {
    /// Whether a phase wrote them.
    pub fn is_set(&self) -> bool {
        !self.abs_vel.is_empty()
    }
}

/// The mesh (shared, read-only).
#[derive(Resource, Debug, Clone)]
pub struct MeshRes(pub Arc<Mesh>);

/// A source term `f(x, y)`.
#[derive(Clone)]
pub enum Source {
    /// `f` constant (0 in the reference configuration).
    Constant(f64),
    /// `f` given as a function of position (manufactured solutions).
    Function(Arc<dyn Fn(f64, f64) -> f64 + Send + Sync>),
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Constant(v) => write!(f, "Constant({v})"),
            Source::Function(_) => write!(f, "Function(..)"),
        }
    }
}

/// Physical constants.
#[derive(Resource, Debug, Clone)]
pub struct Physics {
    /// Stagnation pressure `p0` (Pa).
    pub p0: f64,
    /// Density `rho` (kg/m^3); pressure uses `rho / 2`.
    pub rho: f64,
    /// Source term of `-div grad u = f`.
    pub source: Source,
}

impl Default for Physics {
    fn default() -> Self {
        Self {
            p0: 101_328.828_1,
            rho: 1.225,
            source: Source::Constant(0.0),
        }
    }
}

/// Which linear solver the solve phase runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SolverMethod {
    /// The reference configuration: equilibrated Jacobi-PCG.
    #[default]
    CgJacobi,
    /// CG preconditioned by a smoothed-aggregation AMG V-cycle
    /// ([`crate::amg`]). Run it with `rtol = 1e-10` for comparisons with
    /// a direct solve.
    AmgCg,
    /// Sparse Cholesky factorisation ([`crate::cholesky`]).
    Cholesky,
}

impl SolverMethod {
    /// The name used in scenes and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            SolverMethod::CgJacobi => "cg-jacobi",
            SolverMethod::AmgCg => "amg-cg",
            SolverMethod::Cholesky => "cholesky",
        }
    }

    /// Parses a scene / CLI name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "cg-jacobi" => Some(SolverMethod::CgJacobi),
            "amg-cg" => Some(SolverMethod::AmgCg),
            "cholesky" => Some(SolverMethod::Cholesky),
            _ => None,
        }
    }

    /// All names, for error messages.
    pub const NAMES: &'static [&'static str] = &["cg-jacobi", "amg-cg", "cholesky"];
}

/// Solver settings.
#[derive(Resource, Debug, Clone, PartialEq, Default)]
pub struct SolverSettings {
    /// Method.
    pub method: SolverMethod,
    /// Tolerance and iteration cap of the iterative methods (`cg-jacobi`,
    /// `amg-cg`).
    pub cg: CgSettings,
    /// AMG hierarchy and cycle parameters (`amg-cg`).
    pub amg: AmgSettings,
    /// Accept a solve that hit the cap (results are marked `converged = 0`)
    /// instead of failing.
    pub allow_unconverged: bool,
}

/// Boundary configuration resource.
#[derive(Resource, Debug, Clone, Default)]
pub struct Boundaries(pub BoundaryConfig);

/// The assembled system `K u = f`, in symmetric CSR.
#[derive(Resource, Debug, Clone, Default)]
pub struct LinearSystem {
    /// The matrix (upper triangle).
    pub k: SymCsr,
    /// The right-hand side.
    pub f: Vec<f64>,
    /// Full non-zero count of the assembled matrix (before penalties; the
    /// pattern includes every diagonal).
    pub nnz: usize,
}

/// What the boundary phase found.
#[derive(Resource, Debug, Clone, Default, PartialEq)]
pub struct BoundaryReport {
    /// Robin edges integrated.
    pub robin_edges: usize,
    /// Dirichlet nodes penalised.
    pub dirichlet_nodes: usize,
    /// Unused nodes penalised.
    pub unused_nodes: usize,
    /// Mesh components nothing anchors (no Dirichlet node, no Robin part
    /// with `p > 0`): their potential is defined only up to a constant.
    pub floating: Vec<crate::topology::FloatingComponent>,
}

impl BoundaryReport {
    /// The report of a resolved boundary.
    pub fn of(res: &crate::boundary::Resolved) -> Self {
        Self {
            robin_edges: res.robin_edges.len(),
            dirichlet_nodes: res.dirichlet.len(),
            unused_nodes: res.unused.len(),
            floating: res.floating.clone(),
        }
    }
}

/// The solution and how it was obtained.
#[derive(Resource, Debug, Clone, Default)]
pub struct Solution {
    /// Potential per node.
    pub u: Vec<f64>,
    /// Solver statistics.
    pub stats: SolveStats,
    /// `||f - K u|| / ||f||` (penalty rows dominate it; see
    /// [`crate::solver::Residuals`]).
    pub true_residual: f64,
    /// `||D (f - K u)|| / ||D f||`, `D = diag(|K_ii|)^-1/2`: the residual
    /// of the equilibrated system, which the solver's `rtol` bounds
    /// ([`crate::solver::Residuals`]).
    pub equilibrated_residual: f64,
}

/// Something a phase reports that is neither an error nor a warning (a
/// fallback to the serial backend).
#[derive(Resource, Debug, Clone, Default)]
pub struct Notes(pub Vec<String>);

/// What may make the result differ from what the user meant, though the
/// run goes on: elements renumbered counter-clockwise (known when the
/// pipeline is built), mesh components nothing anchors (known after the
/// boundary phase). Front ends show them even when told to be quiet, and
/// before the solve starts (the CLI on stderr).
#[derive(Resource, Debug, Clone, Default)]
pub struct Warnings(pub Vec<String>);
