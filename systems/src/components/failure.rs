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
    /// The solver stopped before its true residual reached `rtol`.
    #[error("the solver did not converge: {}", not_converged_message(*.iterations, *.residual, *.rtol, .reason))]
    NotConverged {
        /// iterations done
        iterations: usize,
        /// residual reached (the last true residual checked, else the
        /// recurrence's)
        residual: f64,
        /// target
        rtol: f64,
        /// why it stopped
        reason: crate::solver::NotConverged,
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

fn not_converged_message(
    iterations: usize,
    residual: f64,
    rtol: f64,
    reason: &crate::solver::NotConverged,
) -> String {
    use crate::solver::NotConverged::*;
    match reason {
        IterationCap => format!(
            "{iterations} iterations reached the cap with relative residual {residual:.3e} (target {rtol:e}); raise solver.max_iterations (--max-iter) or set solver.allow_unconverged = true to keep the result"
        ),
        Stalled(t) => format!(
            "after {iterations} iterations the true relative residual stopped decreasing at {t:.3e}, above the target {rtol:e} (the rounding floor of this system in double precision); loosen solver.rtol (--rtol) or set solver.allow_unconverged = true to keep the result"
        ),
    }
}

/// The error a solve that stopped without converging is (the iteration
/// cap, or a true residual stalled above `rtol`: see
/// [`crate::solver::Convergence`]), unless the settings accept unconverged
/// results (`None` then, and when it converged): the one place this rule
/// lives, for every backend.
pub fn check_converged(
    stats: &crate::solver::SolveStats,
    settings: &super::SolverSettings,
) -> Option<PipelineError> {
    (!stats.converged && !settings.allow_unconverged).then(|| PipelineError::NotConverged {
        iterations: stats.iterations,
        residual: stats.recurrence_residual,
        rtol: settings.cg.rtol,
        reason: stats
            .not_converged
            .unwrap_or(crate::solver::NotConverged::IterationCap),
    })
}
