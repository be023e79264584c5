//! The bottom of the backend: its errors (a [`PipelineError::Backend`]
//! naming the operation) and the guard that turns a panic inside the CUDA
//! bindings into one.

use crate::components::PipelineError;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// The backend's name in errors.
pub const BACKEND: &str = "gpu";

/// The message when no driver library can be loaded.
pub const NO_DRIVER: &str = "no CUDA driver found (libcuda.so.1 not loadable): this backend needs an NVIDIA GPU and driver; use --backend serial or parallel";

/// Result of the backend's host-side operations.
pub type GResult<T> = Result<T, PipelineError>;

/// A [`PipelineError::Backend`] of this backend.
pub fn backend_error(message: impl Into<String>) -> PipelineError {
    PipelineError::Backend {
        backend: BACKEND.to_string(),
        message: message.into(),
    }
}

/// Turns a CUDA library error into a backend error naming the operation.
pub trait Ctx<T> {
    /// Maps the error, prefixed with `what`.
    fn ctx(self, what: &str) -> GResult<T>;
}

impl<T, E: std::fmt::Debug> Ctx<T> for Result<T, E> {
    fn ctx(self, what: &str) -> GResult<T> {
        self.map_err(|e| backend_error(format!("{what}: {e:?}")))
    }
}

/// Runs `f`, turning a panic inside the CUDA bindings (a symbol missing
/// from an old driver, say) into a backend error.
pub fn guard<T>(f: impl FnOnce() -> GResult<T>) -> GResult<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".to_string());
            Err(backend_error(format!("CUDA call failed: {msg}")))
        }
    }
}
