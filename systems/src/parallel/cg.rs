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
//! rows. Partial sums are combined in block order, so a given thread count
//! always gives the same bits.

use crate::solver::{CgKernels, CgMatrix};
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
                a.rowptr.partition_point(|&v| v < target).clamp(start, n)
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
        let m = a.get();
        let n = m.n;
        assert!(
            r.len() == n && inv_diag.len() == n && x.len() == n && p.len() == n && q.len() == n
        );
        let (rowptr, col, val) = (&m.rowptr[..], &m.col[..], &m.val[..]);
        let pold: &[f64] = p;
        let blocks = &self.blocks;
        let halo = &self.halo;
        let work: Vec<_> = split(x, blocks)
            .into_iter()
            .zip(split(&mut self.spare, blocks))
            .zip(split(q, blocks))
            .enumerate()
            .collect();
        let parts: Vec<(f64, Vec<f64>)> = self.pool.install(|| {
            work.into_par_iter()
                .map(|(b, ((xb, pb), qb))| {
                    let (start, end) = blocks[b];
                    let h = halo[b];
                    let hp: Vec<f64> = (end..end + h)
                        .map(|j| r[j] * inv_diag[j] + beta * pold[j])
                        .collect();
                    let mut hq = vec![0.0; h];
                    let mut pap = 0.0;
                    for i in (start..end).rev() {
                        let s = rowptr[i] as usize;
                        let e = rowptr[i + 1] as usize;
                        let li = i - start;
                        let po = pold[i];
                        xb[li] += alpha_prev * po;
                        let pi = r[i] * inv_diag[i] + beta * po;
                        pb[li] = pi;
                        let mut acc = 0.0;
                        if (col[e - 1] as usize) < end {
                            for k in s + 1..e {
                                // SAFETY: CgMatrix columns are < n; this row's
                                // columns are in start..end (checked above),
                                // and pb, qb cover start..end.
                                unsafe {
                                    let j = *col.get_unchecked(k) as usize - start;
                                    let v = *val.get_unchecked(k);
                                    acc += v * *pb.get_unchecked(j);
                                    *qb.get_unchecked_mut(j) += v * pi;
                                }
                            }
                        } else {
                            for k in s + 1..e {
                                let j = col[k] as usize;
                                let v = val[k];
                                if j < end {
                                    acc += v * pb[j - start];
                                    qb[j - start] += v * pi;
                                } else {
                                    acc += v * hp[j - end];
                                    hq[j - end] += v * pi;
                                }
                            }
                        }
                        let diag = val[s] * pi;
                        qb[li] = diag + acc;
                        pap += pi * (diag + 2.0 * acc);
                    }
                    (pap, hq)
                })
                .collect()
        });
        let mut pap = 0.0;
        for (b, (part, hq)) in parts.into_iter().enumerate() {
            pap += part;
            let end = blocks[b].1;
            for (k, v) in hq.into_iter().enumerate() {
                q[end + k] += v;
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
        let parts: Vec<(f64, f64)> = self.pool.install(|| {
            work.into_par_iter()
                .map(|(b, rb)| {
                    let (s, e) = blocks[b];
                    let (mut rr, mut rz) = (0.0, 0.0);
                    for ((ri, &qi), &di) in rb.iter_mut().zip(&q[s..e]).zip(&inv_diag[s..e]) {
                        let v = *ri - alpha * qi;
                        *ri = v;
                        rr += v * v;
                        rz += v * v * di;
                    }
                    (rr, rz)
                })
                .collect()
        });
        parts
            .iter()
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
