//! Mesh builders shared by the engine's integration tests.
#![allow(dead_code)]

use quadflow_systems::mesh::{Mesh, OrientationPolicy};

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
    let (cx, cy) = (2 * nx + 1, 2 * ny + 1);
    let mut x = Vec::new();
    let mut y = Vec::new();
    for j in 0..cy {
        for i in 0..cx {
            let (px, py) = map(
                lx * i as f64 / (cx - 1) as f64,
                ly * j as f64 / (cy - 1) as f64,
            );
            x.push(px);
            y.push(py);
        }
    }
    let id = |i: usize, j: usize| (j * cx + i) as i64;
    let mut els = Vec::new();
    for ey in 0..ny {
        for ex in 0..nx {
            let (i, j) = (2 * ex, 2 * ey);
            els.push([
                id(i, j),
                id(i + 2, j),
                id(i + 2, j + 2),
                id(i, j + 2),
                id(i + 1, j),
                id(i + 2, j + 1),
                id(i + 1, j + 2),
                id(i, j + 1),
            ]);
        }
    }
    Mesh::new(x, y, &els, OrientationPolicy::Refuse).unwrap()
}

/// The unmapped structured grid.
pub fn grid(nx: usize, ny: usize, lx: f64, ly: f64) -> Mesh {
    mapped_grid(nx, ny, lx, ly, |x, y| (x, y))
}
