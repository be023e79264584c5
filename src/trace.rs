//! Tracing outputs: a Chrome trace (Perfetto-viewable) of the run's spans
//! (one per phase, one per system, finer ones inside the hot systems).

use crate::run::AppError;
use std::path::Path;
use tracing_subscriber::prelude::*;

/// Flushes and closes the trace file when dropped.
pub struct TraceGuard {
    _chrome: tracing_chrome::FlushGuard,
}

/// Installs a global subscriber writing a Chrome trace to `path`.
/// Fails if the file cannot be created or a subscriber is already set.
pub fn chrome(path: &Path) -> Result<TraceGuard, AppError> {
    // Fail early, with a clear message, if the file cannot be written.
    std::fs::File::create(path)
        .map_err(|e| AppError::Other(format!("trace file {}: {e}", path.display())))?;
    let (layer, guard) = tracing_chrome::ChromeLayerBuilder::new()
        .file(path)
        .include_args(true)
        .build();
    tracing_subscriber::registry()
        .with(layer)
        .try_init()
        .map_err(|e| AppError::Other(format!("cannot install the trace subscriber: {e}")))?;
    Ok(TraceGuard { _chrome: guard })
}
