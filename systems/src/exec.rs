//! How row loops run: on the calling thread or over the current rayon
//! pool, in blocks of rows whose results (and partial sums) are combined in
//! block order, so that both give the same bits.

use rayon::prelude::*;
use std::ops::Range;

/// How a solver runs its row loops: on the calling thread, or split into
/// row blocks over the current rayon pool. Both give the same bits: the
/// blocks and the order of every reduction are the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Exec {
    /// Single-threaded.
    #[default]
    Serial,
    /// Row blocks on the current rayon pool (call inside `pool.install`).
    Parallel,
}

/// Rows per block of every row loop (and per partial sum of reductions).
pub const BLOCK: usize = 2048;

pub(crate) fn block_range(b: usize, n: usize, size: usize) -> Range<usize> {
    b * size..((b + 1) * size).min(n)
}

/// `f(rows)` for each block of `0..n`, results in block order.
pub(crate) fn map_blocks<R: Send>(
    exec: Exec,
    n: usize,
    size: usize,
    f: impl Fn(Range<usize>) -> R + Sync + Send,
) -> Vec<R> {
    let nb = n.div_ceil(size);
    match exec {
        Exec::Serial => (0..nb).map(|b| f(block_range(b, n, size))).collect(),
        Exec::Parallel => (0..nb)
            .into_par_iter()
            .map(|b| f(block_range(b, n, size)))
            .collect(),
    }
}

/// [`map_blocks`] with a scratch value per worker (`init()` once per
/// rayon job, not per block): `f(scratch, rows)`. `f` must leave the
/// scratch as it found it (the sparse products reset their marks).
pub(crate) fn map_blocks_with<S, R: Send>(
    exec: Exec,
    n: usize,
    size: usize,
    init: impl Fn() -> S + Sync + Send,
    f: impl Fn(&mut S, Range<usize>) -> R + Sync + Send,
) -> Vec<R> {
    let nb = n.div_ceil(size);
    match exec {
        Exec::Serial => {
            let mut s = init();
            (0..nb)
                .map(|b| f(&mut s, block_range(b, n, size)))
                .collect()
        }
        Exec::Parallel => (0..nb)
            .into_par_iter()
            .map_init(init, |s, b| f(s, block_range(b, n, size)))
            .collect(),
    }
}

/// Sum of `f(rows)` over blocks, in block order.
pub(crate) fn sum_blocks(
    exec: Exec,
    n: usize,
    f: impl Fn(Range<usize>) -> f64 + Sync + Send,
) -> f64 {
    map_blocks(exec, n, BLOCK, f).iter().sum()
}

/// `f(start, block)` for the [`BLOCK`]-row blocks of `y`; returns the
/// sum of the results in block order.
pub(crate) fn blocks1(
    exec: Exec,
    y: &mut [f64],
    f: impl Fn(usize, &mut [f64]) -> f64 + Sync + Send,
) -> f64 {
    let parts: Vec<f64> = match exec {
        Exec::Serial => y
            .chunks_mut(BLOCK)
            .enumerate()
            .map(|(c, b)| f(c * BLOCK, b))
            .collect(),
        Exec::Parallel => y
            .par_chunks_mut(BLOCK)
            .enumerate()
            .map(|(c, b)| f(c * BLOCK, b))
            .collect(),
    };
    parts.iter().sum()
}

/// `f(start, block)` for the [`BLOCK`]-row blocks of `y`; the results in
/// block order.
pub(crate) fn map_blocks_mut<R: Send>(
    exec: Exec,
    y: &mut [f64],
    f: impl Fn(usize, &mut [f64]) -> R + Sync + Send,
) -> Vec<R> {
    match exec {
        Exec::Serial => y
            .chunks_mut(BLOCK)
            .enumerate()
            .map(|(c, b)| f(c * BLOCK, b))
            .collect(),
        Exec::Parallel => y
            .par_chunks_mut(BLOCK)
            .enumerate()
            .map(|(c, b)| f(c * BLOCK, b))
            .collect(),
    }
}

/// `f(start, y_block, z_block)` for the [`BLOCK`]-row blocks of two
/// row-aligned vectors; the results in block order.
pub(crate) fn blocks2<R: Send>(
    exec: Exec,
    y: &mut [f64],
    z: &mut [f64],
    f: impl Fn(usize, &mut [f64], &mut [f64]) -> R + Sync + Send,
) -> Vec<R> {
    assert_eq!(y.len(), z.len());
    match exec {
        Exec::Serial => y
            .chunks_mut(BLOCK)
            .zip(z.chunks_mut(BLOCK))
            .enumerate()
            .map(|(c, (a, b))| f(c * BLOCK, a, b))
            .collect(),
        Exec::Parallel => y
            .par_chunks_mut(BLOCK)
            .zip(z.par_chunks_mut(BLOCK))
            .enumerate()
            .map(|(c, (a, b))| f(c * BLOCK, a, b))
            .collect(),
    }
}

/// As [`blocks1`] with three row-aligned vectors.
pub(crate) fn blocks3(
    exec: Exec,
    y: &mut [f64],
    z: &mut [f64],
    w: &mut [f64],
    f: impl Fn(usize, &mut [f64], &mut [f64], &mut [f64]) + Sync + Send,
) {
    assert!(y.len() == z.len() && y.len() == w.len());
    match exec {
        Exec::Serial => y
            .chunks_mut(BLOCK)
            .zip(z.chunks_mut(BLOCK))
            .zip(w.chunks_mut(BLOCK))
            .enumerate()
            .for_each(|(c, ((a, b), d))| f(c * BLOCK, a, b, d)),
        Exec::Parallel => y
            .par_chunks_mut(BLOCK)
            .zip(z.par_chunks_mut(BLOCK))
            .zip(w.par_chunks_mut(BLOCK))
            .enumerate()
            .for_each(|(c, ((a, b), d))| f(c * BLOCK, a, b, d)),
    }
}

/// `v` in single precision (rounded to nearest).
pub(crate) fn to_f32(exec: Exec, v: &[f64]) -> Vec<f32> {
    match exec {
        Exec::Serial => v.iter().map(|&x| x as f32).collect(),
        Exec::Parallel => v.par_iter().map(|&x| x as f32).collect(),
    }
}

pub(crate) fn dot(exec: Exec, a: &[f64], b: &[f64]) -> f64 {
    sum_blocks(exec, a.len(), |r| {
        a[r.clone()].iter().zip(&b[r]).map(|(x, y)| x * y).sum()
    })
}
