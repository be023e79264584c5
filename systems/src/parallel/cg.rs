//! Multi-threaded fused CG kernels over the symmetric (upper) matrix.
//!
//! Rows are split into one contiguous block per thread, balanced by stored
//! entries. Within its block a thread runs the serial pass A (rows from
//! last to first, `p` updated on the fly, gather and scatter of the
//! symmetric product, `p.q` fused). Two things cross a block's end, and
//! both are kept private until the parallel region is over:
//! - reads of `p_j` past the block: `p` is double-buffered (new values go to
//!   a second vector), so a thread computes the new `p_j` of those rows
//!   itself from the untouched old `p`, `r` and the preconditioner;
//! - scatter writes `q_j += a_ij p_i` past the block: accumulated in a
//!   private halo buffer, added to `q` afterwards.
//!
//! With the RCM ordering of the solver the halo is a band of a few hundred
//! rows. Blocks start on reduction-chunk boundaries, partial sums are
//! combined chunk by chunk in the serial order and halo terms are added in
//! the serial order, so every thread count reproduces the serial kernels
//! bit for bit.

use crate::solver::{self, CHUNK, CgKernels, CgMatrix};
use rayon::prelude::*;
use std::sync::Arc;

/// Parallel fused CG kernels on a rayon pool.
pub struct ParallelKernels {
    pool: Arc<rayon::ThreadPool>,
    /// Row range of each block.
    blocks: Vec<(usize, usize)>,
    /// Rows past each block's end its rows reach.
    halo: Vec<usize>,
    /// The second `p` buffer.
    spare: Vec<f64>,
    /// Matrix the block layout was computed for (rows, stored).
    layout_of: (usize, usize),
}

impl ParallelKernels {
    /// Kernels running on `pool` (one block per thread).
    pub fn new(pool: Arc<rayon::ThreadPool>) -> Self {
        Self {
            pool,
            blocks: Vec::new(),
            halo: Vec::new(),
            spare: Vec::new(),
            layout_of: (usize::MAX, 0),
        }
    }

    fn layout(&mut self, a: &CgMatrix) {
        let a = a.get();
        if self.layout_of == (a.n, a.stored()) {
            return;
        }
        let t = self.pool.current_num_threads().max(1);
        let n = a.n;
        let nnz = a.stored();
        let mut blocks = Vec::with_capacity(t);
        let mut start = 0usize;
        for b in 1..=t {
            let end = if b == t {
                n
            } else {
                let target = (nnz * b / t) as u32;
                let row = a.rowptr.partition_point(|&v| v < target);
                // block ends on a reduction-chunk boundary (see CHUNK)
                (row.div_ceil(CHUNK) * CHUNK).clamp(start, n)
            };
            blocks.push((start, end));
            start = end;
        }
        self.halo = blocks
            .iter()
            .map(|&(s, e)| {
                (s..e)
                    .map(|i| {
                        let last = a.col[a.rowptr[i + 1] as usize - 1] as usize;
                        (last + 1).saturating_sub(e)
                    })
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        self.blocks = blocks;
        self.spare = vec![0.0; n];
        self.layout_of = (a.n, nnz);
    }

    /// The row blocks (for reports and tests).
    pub fn blocks(&self) -> &[(usize, usize)] {
        &self.blocks
    }
}

/// Splits `v` into the blocks' disjoint mutable slices.
fn split<'a>(mut v: &'a mut [f64], blocks: &[(usize, usize)]) -> Vec<&'a mut [f64]> {
    let mut out = Vec::with_capacity(blocks.len());
    for &(s, e) in blocks {
        let (head, tail) = v.split_at_mut(e - s);
        out.push(head);
        v = tail;
    }
    out
}

impl CgKernels for ParallelKernels {
    fn pass_a(
        &mut self,
        a: &CgMatrix,
        inv_diag: &[f64],
        r: &[f64],
        beta: f64,
        alpha_prev: f64,
        x: &mut [f64],
        p: &mut Vec<f64>,
        q: &mut [f64],
    ) -> f64 {
        self.layout(a);
        let n = a.n();
        assert!(
            r.len() == n && inv_diag.len() == n && x.len() == n && p.len() == n && q.len() == n
        );
        let pold: &[f64] = p;
        let blocks = &self.blocks;
        let halo = &self.halo;
        let work: Vec<_> = split(x, blocks)
            .into_iter()
            .zip(split(&mut self.spare, blocks))
            .zip(split(q, blocks))
            .enumerate()
            .collect();
        // per block: chunk partials of p.q, and halo scatter terms
        type Part = (Vec<f64>, Vec<(u32, f64)>);
        let parts: Vec<Part> = self.pool.install(|| {
            work.into_par_iter()
                .map(|(b, ((xb, pb), qb))| {
                    let (start, end) = blocks[b];
                    let hp: Vec<f64> = (end..end + halo[b])
                        .map(|j| r[j] * inv_diag[j] + beta * pold[j])
                        .collect();
                    let mut terms = Vec::new();
                    let mut partials = Vec::new();
                    solver::pass_a_rows(
                        a,
                        inv_diag,
                        r,
                        beta,
                        alpha_prev,
                        (start, end),
                        pold,
                        xb,
                        pb,
                        qb,
                        &hp,
                        &mut terms,
                        &mut partials,
                    );
                    (partials, terms)
                })
                .collect()
        });
        // Serial order: rows (hence chunks and halo terms) from last to first.
        let mut pap = 0.0;
        for (partials, terms) in parts.iter().rev() {
            for &v in partials {
                pap += v;
            }
            for &(j, t) in terms {
                q[j as usize] += t;
            }
        }
        std::mem::swap(p, &mut self.spare);
        pap
    }

    fn pass_b(&mut self, inv_diag: &[f64], alpha: f64, q: &[f64], r: &mut [f64]) -> (f64, f64) {
        let n = r.len();
        if self.blocks.last().map(|b| b.1) != Some(n) {
            self.blocks = vec![(0, n)];
        }
        let blocks = &self.blocks;
        let work: Vec<_> = split(r, blocks).into_iter().enumerate().collect();
        let parts: Vec<Vec<(f64, f64)>> = self.pool.install(|| {
            work.into_par_iter()
                .map(|(b, rb)| {
                    let mut partials = Vec::new();
                    solver::pass_b_rows(inv_diag, alpha, q, blocks[b], rb, &mut partials);
                    partials
                })
                .collect()
        });
        parts
            .iter()
            .flatten()
            .fold((0.0, 0.0), |acc, p| (acc.0 + p.0, acc.1 + p.1))
    }

    fn axpy(&mut self, alpha: f64, p: &[f64], x: &mut [f64]) {
        self.pool.install(|| {
            x.par_iter_mut()
                .zip(p.par_iter())
                .with_min_len(4096)
                .for_each(|(xi, pi)| *xi += alpha * pi)
        });
    }
}
