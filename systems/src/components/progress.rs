//! The solver's progress callback.

use bevy_ecs::prelude::*;

/// A callback told of the solver's progress: `(iteration, relative
/// residual)`. The CLI installs one that drives a progress bar.
#[derive(Resource, Default)]
pub struct ProgressHook(pub Option<Box<dyn FnMut(usize, f64) + Send + Sync>>);

impl ProgressHook {
    /// Tells the installed callback, if any.
    pub fn report(&mut self, iteration: usize, residual: f64) {
        if let Some(h) = self.0.as_mut() {
            h(iteration, residual);
        }
    }
}
