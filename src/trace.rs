//! Tracing outputs of a run: a Chrome trace (Perfetto-viewable) and a
//! flamegraph (SVG) of the run's spans: one per phase, one per system, and
//! finer ones inside the hot systems (pattern, slot maps, element kernels,
//! scatter, CG, true residual).

use crate::error::AppError;
use std::path::{Path, PathBuf};
use tracing_subscriber::prelude::*;

/// Keeps the trace outputs open; [`TraceGuard::finish`] (or drop) flushes
/// them, and renders the flamegraph.
pub struct TraceGuard {
    chrome: Option<tracing_chrome::FlushGuard>,
    flame: Option<(
        tracing_flame::FlushGuard<std::io::BufWriter<std::fs::File>>,
        PathBuf,
        PathBuf,
    )>,
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> AppError {
    AppError::Other(format!("{}: {e}", path.display()))
}

/// Installs a global subscriber writing a Chrome trace to `chrome` and/or
/// a flamegraph to `flame`. Fails if a file cannot be created or a
/// subscriber is already installed.
pub fn install(chrome: Option<&Path>, flame: Option<&Path>) -> Result<TraceGuard, AppError> {
    let (chrome_layer, chrome_guard) = match chrome {
        Some(p) => {
            std::fs::File::create(p).map_err(|e| io_err(p, e))?;
            let (l, g) = tracing_chrome::ChromeLayerBuilder::new()
                .file(p)
                .include_args(true)
                .build();
            (Some(l), Some(g))
        }
        None => (None, None),
    };
    let (flame_layer, flame_guard) = match flame {
        Some(svg) => {
            std::fs::File::create(svg).map_err(|e| io_err(svg, e))?;
            let folded = svg.with_extension("folded");
            let (layer, guard) =
                tracing_flame::FlameLayer::with_file(&folded).map_err(|e| io_err(&folded, e))?;
            let layer = layer.with_threads_collapsed(true).with_file_and_line(false);
            (Some(layer), Some((guard, folded, svg.to_path_buf())))
        }
        None => (None, None),
    };
    tracing_subscriber::registry()
        .with(chrome_layer)
        .with(flame_layer)
        .try_init()
        .map_err(|e| AppError::Other(format!("cannot install the trace subscriber: {e}")))?;
    Ok(TraceGuard {
        chrome: chrome_guard,
        flame: flame_guard,
    })
}

impl TraceGuard {
    /// Flushes the outputs and renders the flamegraph SVG from the folded
    /// stacks (which are removed afterwards).
    pub fn finish(mut self) -> Result<(), AppError> {
        self.finish_inner()
    }

    fn finish_inner(&mut self) -> Result<(), AppError> {
        drop(self.chrome.take());
        if let Some((guard, folded, svg)) = self.flame.take() {
            guard.flush().map_err(|e| io_err(&folded, e))?;
            drop(guard);
            let text = std::fs::read_to_string(&folded).map_err(|e| io_err(&folded, e))?;
            let out = std::fs::File::create(&svg).map_err(|e| io_err(&svg, e))?;
            let mut opts = inferno::flamegraph::Options::default();
            opts.title = "quadflow: time per phase, system and kernel".into();
            opts.count_name = "ns".into();
            inferno::flamegraph::from_lines(&mut opts, text.lines(), std::io::BufWriter::new(out))
                .map_err(|e| io_err(&svg, e))?;
            let _ = std::fs::remove_file(&folded);
        }
        Ok(())
    }
}

impl Drop for TraceGuard {
    fn drop(&mut self) {
        if let Err(e) = self.finish_inner() {
            eprintln!("warning: {e}");
        }
    }
}
