//! Mesh builders shared by the engine's integration tests.
#![allow(dead_code)]

use quadflow_systems::mesh::Mesh;

/// Structured Quad-8 grid of `[0, lx] x [0, ly]`, optionally mapped by
/// `map` (which must keep `x = 0` and `x = lx` where they are). The centre
/// node of every 3 x 3 cell is unused.
pub fn mapped_grid(
    nx: usize,
    ny: usize,
    lx: f64,
    ly: f64,
    map: impl Fn(f64, f64) -> (f64, f64),
) -> Mesh {
    Mesh::lattice(nx, ny, lx, ly, map)
}

/// The unmapped structured grid.
pub fn grid(nx: usize, ny: usize, lx: f64, ly: f64) -> Mesh {
    mapped_grid(nx, ny, lx, ly, |x, y| (x, y))
}

/// Says on stderr that the running test skips and why, and appends
/// `crate::test: reason` to `$QUADFLOW_SKIP_LOG` when set (`tests/run`
/// lists those lines at the end, so that a skip is never mistaken for a
/// pass). The test is named after its thread (libtest names each test's
/// thread after it).
pub fn skip(reason: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("unnamed test")
        .to_string();
    let line = format!("{}::{test}: {reason}", env!("CARGO_CRATE_NAME"));
    eprintln!("SKIPPED {line}");
    if let Some(log) = std::env::var_os("QUADFLOW_SKIP_LOG") {
        use std::io::Write;
        // one append per line: concurrent tests do not interleave
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()));
        if let Err(e) = written {
            eprintln!(
                "could not record the skip in {}: {e}",
                log.to_string_lossy()
            );
        }
    }
}
