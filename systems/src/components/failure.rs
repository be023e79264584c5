//! How a run fails: the error ([`PipelineError`]) and the resource a
//! failing system records it in ([`Failure`]); later phases do not run.

use bevy_ecs::prelude::*;

/// Any failure of a run, with a message for the user.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Bad mesh.
    #[error(transparent)]
    Mesh(#[from] crate::mesh::MeshError),
    /// Bad boundary selection.
    #[error(transparent)]
    Boundary(#[from] crate::boundary::BoundaryError),
    /// The solve failed.
    #[error(transparent)]
    Solve(#[from] crate::solver::SolveError),
    /// The pattern does not fit the index type.
    #[error(transparent)]
    Pattern(#[from] crate::sparse::PatternTooLarge),
    /// The solver hit its iteration cap.
    #[error(
        "the solver did not converge: {iterations} iterations reached the cap with relative residual {residual:.3e} (target {rtol:e}); raise solver.max_iterations (--max-iter) or set solver.allow_unconverged = true to keep the result"
    )]
    NotConverged {
        /// iterations done
        iterations: usize,
        /// residual reached
        residual: f64,
        /// target
        rtol: f64,
    },
    /// A backend could not run (no GPU, bad setting, ...).
    #[error("backend {backend}: {message}")]
    Backend {
        /// backend name
        backend: String,
        /// what went wrong
        message: String,
    },
    /// An unknown backend name.
    #[error("unknown backend \"{0}\" (available: {1})")]
    UnknownBackend(String, String),
}

/// A failure raised by a system; later phases do not run.
#[derive(Resource, Debug, Default)]
pub struct Failure(pub Option<PipelineError>);

/// Run condition: no phase has failed so far.
pub fn no_failure(f: Res<Failure>) -> bool {
    f.0.is_none()
}

/// Records a failure from inside a system (the first one wins).
pub fn fail(failure: &mut Failure, e: impl Into<PipelineError>) {
    if failure.0.is_none() {
        failure.0 = Some(e.into());
    }
}

/// The error a solve that stopped at its iteration cap is, unless the
/// settings accept unconverged results (`None` then, and when it
/// converged): the one place this rule lives, for every backend.
pub fn check_converged(
    stats: &crate::solver::SolveStats,
    settings: &super::SolverSettings,
) -> Option<PipelineError> {
    (!stats.converged && !settings.allow_unconverged).then_some(PipelineError::NotConverged {
        iterations: stats.iterations,
        residual: stats.recurrence_residual,
        rtol: settings.cg.rtol,
    })
}
