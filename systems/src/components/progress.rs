//! The solver's progress callback.

use bevy_ecs::prelude::*;

/// A callback told of the solver's progress: `(iteration, relative
/// residual)`; it returns whether the solve should go on (`false` stops it
/// with [`SolveError::Interrupted`](crate::solver::SolveError)). The CLI
/// installs one that drives a progress bar; the Python package one that
/// stops on Ctrl-C.
#[derive(Resource, Default)]
pub struct ProgressHook(pub Option<Box<dyn FnMut(usize, f64) -> bool + Send + Sync>>);

impl ProgressHook {
    /// Tells the installed callback, if any; whether to go on.
    pub fn report(&mut self, iteration: usize, residual: f64) -> bool {
        match self.0.as_mut() {
            Some(h) => h(iteration, residual),
            None => true,
        }
    }
}
