//! Multi-threaded fused CG kernels over the symmetric (upper) matrix, on a
//! persistent [`Team`]: the shape of MPI ranks in one process.
//!
//! Rows are split once into one contiguous block per team member (fewer
//! for a matrix of fewer than one reduction chunk per member),
//! balanced by the bytes a CG iteration moves for them (12 bytes per
//! stored entry, 4 per row start, 11 vectors of 8 bytes: the count of
//! [`solver::fused_bytes_per_iteration`]), each block starting on a
//! reduction-chunk boundary. Member `t` runs block `t` in every pass of
//! every iteration (a static schedule: the same rows on the same thread,
//! their slice of the vectors kept in that core's caches), and nothing is
//! allocated per pass: each member keeps its scratch (halo values, halo
//! terms, partial sums) for the life of the kernels.
//!
//! Within its block a member runs the serial pass A (rows from last to
//! first, `p` updated in place, gather and scatter of the symmetric
//! product, `p.q` fused). Two things cross a block's end:
//! - reads of `p_j` past the block, whose owner updates them meanwhile:
//!   the caller computes the new `p_j` of those rows (a band of a few
//!   hundred under the solver's RCM ordering) from the old `p`, `r` and the
//!   preconditioner before the pass starts, as MPI ranks compute their
//!   ghosts' direction;
//! - scatter writes `q_j += a_ij p_i` past the block: kept in the member's
//!   halo terms and added to `q` after the pass, in the serial order.
//!
//! Partial sums are combined chunk by chunk in the serial order, so every
//! thread count reproduces the serial kernels bit for bit.

use crate::exec::{Disjoint, Team};
use crate::solver::{self, CHUNK, CgKernels, CgMatrix};
use std::sync::Arc;

/// What a member keeps between passes (on cache lines of its own: the
/// members push to their vectors at once).
#[derive(Debug, Default)]
#[repr(align(128))]
struct Scratch {
    /// New `p` of the rows past the block that its rows reach.
    halo_p: Vec<f64>,
    /// Scatter terms `(row, a_ij p_i)` past the block, rows descending.
    terms: Vec<(u32, f64)>,
    partials_a: Vec<f64>,
    partials_b: Vec<(f64, f64)>,
}

/// Parallel fused CG kernels on a persistent team.
pub struct ParallelKernels {
    team: Arc<Team>,
    /// Row range of each member's block.
    blocks: Vec<(usize, usize)>,
    /// Rows past each block's end its rows reach.
    halo: Vec<usize>,
    scratch: Vec<Scratch>,
    /// Blocks with rows (the empty ones are last).
    active: usize,
    /// Matrix the block layout was computed for (rows, stored).
    layout_of: (usize, usize),
}

impl ParallelKernels {
    /// Kernels running on `team` (one block per member).
    pub fn new(team: Arc<Team>) -> Self {
        let t = team.size();
        Self {
            team,
            blocks: Vec::new(),
            halo: Vec::new(),
            scratch: (0..t).map(|_| Scratch::default()).collect(),
            active: 1,
            layout_of: (usize::MAX, 0),
        }
    }

    fn layout(&mut self, a: &CgMatrix) {
        let a = a.get();
        if self.layout_of == (a.n, a.stored()) {
            return;
        }
        self.blocks = split_by_bytes(a.n, &a.rowptr, self.team.size());
        self.halo = self
            .blocks
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
        self.active = count_active(&self.blocks);
        self.layout_of = (a.n, a.stored());
    }

    /// The row blocks (for reports and tests).
    pub fn blocks(&self) -> &[(usize, usize)] {
        &self.blocks
    }
}

/// Blocks up to the last with rows (blocks are contiguous in order, so
/// the empty ones are at the end); at least 1.
fn count_active(blocks: &[(usize, usize)]) -> usize {
    blocks.iter().rposition(|b| b.1 > b.0).map_or(1, |k| k + 1)
}

/// `t` contiguous row blocks of `0..n`, in order, each starting on a
/// [`CHUNK`] boundary, balanced by the bytes a fused CG iteration moves
/// for their rows (see [`solver::fused_bytes_per_iteration`]).
pub fn split_by_bytes(n: usize, rowptr: &[u32], t: usize) -> Vec<(usize, usize)> {
    let t = t.max(1);
    let bytes = |i: usize| 12 * rowptr[i] as u64 + (4 + 88) * i as u64;
    let total = bytes(n);
    let mut blocks = Vec::with_capacity(t);
    let mut start = 0usize;
    for b in 1..=t {
        let end = if b == t {
            n
        } else {
            let target = total * b as u64 / t as u64;
            // the first row whose prefix reaches the target
            let (mut lo, mut hi) = (0, n);
            while lo < hi {
                let mid = (lo + hi) / 2;
                if bytes(mid) < target {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            let row = lo;
            (row.div_ceil(CHUNK) * CHUNK).clamp(start, n)
        };
        blocks.push((start, end));
        start = end;
    }
    blocks
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
        // the new p of each block's halo, from the old p, before any
        // member overwrites it
        for (sc, (&(_, e), &h)) in self
            .scratch
            .iter_mut()
            .zip(self.blocks.iter().zip(&self.halo))
        {
            sc.halo_p.clear();
            sc.halo_p
                .extend((e..e + h).map(|j| r[j] * inv_diag[j] + beta * p[j]));
        }
        let blocks = &self.blocks;
        {
            let (xs, ps, qs) = (
                Disjoint::slice(x),
                Disjoint::slice(&mut p[..]),
                Disjoint::slice(&mut *q),
            );
            let scratch = Disjoint::slice(&mut self.scratch);
            self.team.run(self.active, |t| {
                let (start, end) = blocks[t];
                // SAFETY: part t alone touches block t's rows of x, p, q
                // and its scratch.
                let (xb, pb, qb, sc) = unsafe {
                    (
                        xs.range_mut(start..end),
                        ps.range_mut(start..end),
                        qs.range_mut(start..end),
                        scratch.get_mut(t),
                    )
                };
                sc.terms.clear();
                sc.partials_a.clear();
                solver::pass_a_rows(
                    a,
                    inv_diag,
                    r,
                    beta,
                    alpha_prev,
                    (start, end),
                    xb,
                    pb,
                    qb,
                    &sc.halo_p,
                    &mut sc.terms,
                    &mut sc.partials_a,
                );
            });
        }
        // Serial order: rows (hence chunks and halo terms) from last to first.
        let mut pap = 0.0;
        for sc in self.scratch.iter().rev() {
            for &v in &sc.partials_a {
                pap += v;
            }
            for &(j, t) in &sc.terms {
                q[j as usize] += t;
            }
        }
        pap
    }

    fn pass_b(&mut self, inv_diag: &[f64], alpha: f64, q: &[f64], r: &mut [f64]) -> (f64, f64) {
        let n = r.len();
        if self.blocks.last().map(|b| b.1) != Some(n) {
            // not laid out for this length (pass B before any pass A)
            self.blocks = crate::exec::team_blocks(n, self.team.size(), CHUNK);
            self.halo = vec![0; self.blocks.len()];
            self.active = count_active(&self.blocks);
            self.layout_of = (usize::MAX, 0);
        }
        let blocks = &self.blocks;
        {
            let rs = Disjoint::slice(r);
            let scratch = Disjoint::slice(&mut self.scratch);
            self.team.run(self.active, |t| {
                let (start, end) = blocks[t];
                // SAFETY: part t alone touches block t's rows of r and its
                // scratch.
                let (rb, sc) = unsafe { (rs.range_mut(start..end), scratch.get_mut(t)) };
                sc.partials_b.clear();
                solver::pass_b_rows(inv_diag, alpha, q, (start, end), rb, &mut sc.partials_b);
            });
        }
        self.scratch
            .iter()
            .flat_map(|sc| &sc.partials_b)
            .fold((0.0, 0.0), |acc, p| (acc.0 + p.0, acc.1 + p.1))
    }

    fn axpy(&mut self, alpha: f64, p: &[f64], x: &mut [f64]) {
        let n = x.len();
        let blocks = crate::exec::team_blocks(n, self.team.size(), CHUNK);
        let active = count_active(&blocks);
        let xs = Disjoint::slice(x);
        self.team.run(active, |t| {
            let (s, e) = blocks[t];
            // SAFETY: part t alone touches block t's rows of x.
            let xb = unsafe { xs.range_mut(s..e) };
            for (xi, pi) in xb.iter_mut().zip(&p[s..e]) {
                *xi += alpha * pi;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::solver::SerialKernels;
    use crate::sparse::SymCsr;

    /// A banded symmetric matrix (bandwidth `w`) of `n` rows, diagonally
    /// dominant.
    fn banded(n: usize, w: usize) -> CgMatrix {
        let mut rowptr = vec![0u32];
        let (mut col, mut val) = (vec![], vec![]);
        for i in 0..n {
            col.push(i as u32);
            val.push(4.0 + (i % 7) as f64 * 0.1);
            for j in i + 1..(i + w + 1).min(n) {
                if (i * 31 + j * 17) % 5 != 0 {
                    col.push(j as u32);
                    val.push(-0.3 / (1 + j - i) as f64);
                }
            }
            rowptr.push(col.len() as u32);
        }
        CgMatrix::new(SymCsr {
            n,
            rowptr,
            col,
            val,
        })
    }

    #[test]
    fn blocks_are_balanced_by_bytes_on_chunk_boundaries() {
        let a = banded(50_000, 30);
        let m = a.get();
        for t in [1, 2, 3, 4] {
            let b = split_by_bytes(m.n, &m.rowptr, t);
            assert_eq!(b.len(), t);
            assert_eq!(b[0].0, 0);
            assert_eq!(b[t - 1].1, m.n);
            assert!(b.windows(2).all(|w| w[0].1 == w[1].0));
            assert!(b.iter().all(|&(s, _)| s % CHUNK == 0));
            let bytes =
                |(s, e): (usize, usize)| 12 * (m.rowptr[e] - m.rowptr[s]) as usize + 92 * (e - s);
            let total = bytes((0, m.n));
            for &blk in &b {
                let share = bytes(blk) as f64 / total as f64;
                assert!((share - 1.0 / t as f64).abs() < 0.06, "{t}: {share}");
            }
        }
    }

    #[test]
    fn kernels_equal_serial_bit_for_bit_for_any_team_size() {
        // wide band: halos reach across whole blocks for small teams
        for (n, w) in [(20_000, 40), (9_000, 3000), (100, 5)] {
            let a = banded(n, w);
            let inv_diag: Vec<f64> = (0..n)
                .map(|i| 1.0 / a.get().val[a.get().rowptr[i] as usize])
                .collect();
            let r0: Vec<f64> = (0..n).map(|i| ((i * 13) % 17) as f64 - 8.0).collect();
            let run = |k: &mut dyn CgKernels| {
                let (mut x, mut p, mut q, mut r) =
                    (vec![0.0; n], vec![0.0; n], vec![0.0; n], r0.clone());
                let mut out = vec![];
                let (mut beta, mut alpha) = (0.0, 0.0);
                for it in 0..5 {
                    let pap = k.pass_a(&a, &inv_diag, &r, beta, alpha, &mut x, &mut p, &mut q);
                    alpha = 0.5 / pap.abs().max(1.0);
                    let (rr, rz) = k.pass_b(&inv_diag, alpha, &q, &mut r);
                    beta = if it % 2 == 0 { 0.3 } else { 0.7 };
                    out.extend([pap, rr, rz]);
                }
                k.axpy(alpha, &p, &mut x);
                (out, x, p, q, r)
            };
            let serial = run(&mut SerialKernels::default());
            for t in [1, 2, 3, 5] {
                let team = Arc::new(Team::new(t, "test").unwrap());
                let mut k = ParallelKernels::new(team);
                let par = run(&mut k);
                assert_eq!(k.blocks().len(), t);
                let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&par.0), bits(&serial.0), "{n} rows, {t} threads: sums");
                for (name, u, v) in [
                    ("x", &par.1, &serial.1),
                    ("p", &par.2, &serial.2),
                    ("q", &par.3, &serial.3),
                    ("r", &par.4, &serial.4),
                ] {
                    assert_eq!(bits(u), bits(v), "{n} rows, {t} threads: {name}");
                }
            }
        }
    }
}
