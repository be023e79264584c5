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
