//! The local work of one distributed CG iteration ([`LocalKernels`]) and
//! its host implementations.
//!
//! A rank keeps, besides its own rows, the **ghost** entries of `r` and
//! `p` (the rows of other ranks its rows couple to). An iteration on a
//! rank is: the direction update `p = z + beta p` and the product `q = A
//! p` with `p.q`, the previous step's `x += alpha p` folded in; then `r -=
//! alpha q` with `r.r` and `r.z`. The new `r` of the rows the neighbours
//! need then travels ([`LocalKernels::pack`], [`LocalKernels::unpack`])
//! while the all-reduce of `(r.r, r.z)` runs and, once it has given
//! `beta`, while the part of the next product that needs no ghost value
//! runs ([`LocalKernels::product_interior`]); the rest follows when the
//! ghosts are in ([`LocalKernels::product_rest`]: each rank computes its
//! ghosts' `p` from their `r` with the same operations as their owner, so
//! the values agree to the bit). See [`crate::cg::pcg`].
//!
//! - [`EngineKernels`] (the host's): the engine's own fused CG kernels
//!   ([`quadflow_systems::solver::CgKernels`]: the serial ones, or the
//!   parallel backend's on the rank's threads) over the rank's own block
//!   `A_oo` (upper triangle, two passes over memory per iteration, the
//!   engine's bytes per row), and the ghost block `A_og` (the boundary
//!   rows' couplings to ghost columns) added once the ghosts are in. Pass
//!   A needs no ghost value at all, so all of it runs while the halo
//!   travels.
//! - [`SplitKernels`]: the full rows of both triangles, direction and
//!   product as separate passes: the host twin of the device kernels
//!   ([`crate::device`]), which cannot scatter the transposed triangle
//!   without atomics.

use crate::dist::row_dot;
use crate::part::Halo;
use quadflow_systems::amg::Csr;
use quadflow_systems::solver::{CgKernels, CgMatrix};
use quadflow_systems::sparse::SymCsr;

/// The local work of one CG iteration on a rank's rows (see the module
/// documentation for the order of the calls). Rows are those of the
/// [`EquilibratedDist`] the kernels were made for, columns its column
/// space (owned rows, then ghosts).
pub trait LocalKernels {
    /// Sets `r = b` (owned rows; the ghosts of `r` follow by
    /// [`LocalKernels::unpack`]), `x = p = 0`; returns the partial `(r.r,
    /// r.z)`.
    fn start(&mut self, b: &[f64]) -> [f64; 2];
    /// Copies the values of `r` each neighbour needs into `bufs` (one per
    /// neighbour of `halo`, sized).
    fn pack(&mut self, halo: &Halo, bufs: &mut [Vec<f64>]);
    /// Writes the received ghost values of `r`.
    fn unpack(&mut self, halo: &Halo, bufs: &[Vec<f64>]);
    /// The part of `x += alpha_prev p`, `p = r inv_diag + beta p`, `q = A
    /// p` that reads no ghost value (it runs while the ghosts of `r`
    /// travel).
    fn product_interior(&mut self, beta: f64, alpha_prev: f64);
    /// The rest, with the ghosts of `r` in (their `p` included); returns
    /// the rank's partial `p.q`.
    fn product_rest(&mut self, beta: f64, alpha_prev: f64) -> f64;
    /// `r -= alpha q`; returns the partial `(r.r, r.z)`.
    fn update(&mut self, alpha: f64) -> [f64; 2];
    /// `x += alpha p` (the pending update, before the true residual).
    fn flush(&mut self, alpha: f64);
    /// Folds the correction into the iterate: `base += x`, `x = 0` (the
    /// iterate is `base + x`; CG updates `x` from zero after each check,
    /// so that its corrections are not rounded at `base`'s scale, as the
    /// engine's loop does).
    fn fold(&mut self);
    /// Copies the values of the iterate `base` each neighbour needs into
    /// `bufs`.
    fn pack_iterate(&mut self, halo: &Halo, bufs: &mut [Vec<f64>]);
    /// Writes the received ghost values of `base`.
    fn unpack_iterate(&mut self, halo: &Halo, bufs: &[Vec<f64>]);
    /// `r = b - A base` on the owned rows in double-double (the ghosts of
    /// `base` in): the true residual replaces the recurrence's; returns the
    /// partial `(r.r, r.z)`.
    fn replace_residual(&mut self) -> [f64; 2];
    /// The iterate `base` on the owned rows.
    fn iterate(&mut self) -> Vec<f64>;
    /// `x += alpha_last p` (the pending update), folded into `base`; then
    /// `base` on the owned rows.
    fn solution(&mut self, alpha_last: f64) -> Vec<f64> {
        self.flush(alpha_last);
        self.fold();
        self.iterate()
    }
    /// A failure of the local work since the last call (a device error),
    /// taken; the solver agrees on it with the other ranks.
    fn take_failure(&mut self) -> Option<String> {
        None
    }
    /// Bytes one iteration moves through memory at least (matrix once,
    /// vectors as the passes read and write them), for reports.
    fn bytes_per_iteration(&self) -> usize;
}

/// `(r.r, r.z)` with `z = r inv_diag`.
fn dots(r: &[f64], inv_diag: &[f64]) -> [f64; 2] {
    let mut s = [0.0; 2];
    for (ri, di) in r.iter().zip(inv_diag) {
        s[0] += ri * ri;
        s[1] += ri * ri * di;
    }
    s
}

/// The values of the column-space vector `v` each neighbour needs.
pub(crate) fn pack(v: &[f64], halo: &Halo, bufs: &mut [Vec<f64>]) {
    for (nb, b) in halo.neighbours.iter().zip(bufs.iter_mut()) {
        for (o, &i) in b.iter_mut().zip(&nb.send) {
            *o = v[i as usize];
        }
    }
}

/// The received ghost values into the column-space vector `v`.
pub(crate) fn unpack(v: &mut [f64], halo: &Halo, bufs: &[Vec<f64>]) {
    for (nb, b) in halo.neighbours.iter().zip(bufs) {
        for (&i, &x) in nb.recv.iter().zip(b) {
            v[i as usize] = x;
        }
    }
}

/// A rank's rows as [`EngineKernels`] read them: the own block's upper
/// triangle as the engine's [`CgMatrix`], and the ghost block.
#[derive(Debug, Clone)]
pub struct SplitBlocks {
    /// `A_oo`'s upper triangle (each row's diagonal first).
    pub own: CgMatrix,
    /// Rows with a ghost column.
    pub ghost_rows: Vec<u32>,
    /// Their ghost columns: `ghost_rows.len() x g`, columns as ghost
    /// indices (`0..g`).
    pub ghost: Csr,
}

impl SplitBlocks {
    /// Splits `a` (`n x (n + g)`, every row holding its diagonal, the own
    /// block symmetric).
    pub fn new(a: &Csr) -> Self {
        let n = a.nrows();
        let g = a.ncols() - n;
        let mut rowptr = vec![0u32];
        let mut col = Vec::new();
        let mut val = Vec::new();
        let mut ghost_rows = Vec::new();
        let mut gptr = vec![0usize];
        let (mut gcol, mut gval) = (Vec::new(), Vec::new());
        let mut upper: Vec<(u32, f64)> = Vec::new();
        for i in 0..n {
            let (c, v) = a.row(i);
            let mut diag = None;
            upper.clear();
            let g0 = gcol.len();
            for (&j, &x) in c.iter().zip(v) {
                let j = j as usize;
                if j == i {
                    diag = Some(x);
                } else if j > i && j < n {
                    upper.push((j as u32, x));
                } else if j >= n {
                    gcol.push((j - n) as u32);
                    gval.push(x);
                }
            }
            upper.sort_unstable_by_key(|e| e.0);
            col.push(i as u32);
            val.push(diag.expect("every coupled row holds its diagonal"));
            for &(j, x) in &upper {
                col.push(j);
                val.push(x);
            }
            rowptr.push(u32::try_from(col.len()).expect("under 2^32 stored entries a rank"));
            if gcol.len() > g0 {
                ghost_rows.push(i as u32);
                gptr.push(gcol.len());
            }
        }
        let nb = ghost_rows.len();
        Self {
            own: CgMatrix::new(SymCsr {
                n,
                rowptr,
                col,
                val,
            }),
            ghost_rows,
            ghost: Csr::new(nb, g, gptr, gcol, gval),
        }
    }

    /// `y_i += (A_og v_g)_i` on the ghost block's rows; returns `sum_i
    /// w_i (A_og v_g)_i`.
    fn add_ghost_product(&self, vg: &[f64], y: &mut [f64], w: &[f64]) -> f64 {
        let mut acc = 0.0;
        for (k, &i) in self.ghost_rows.iter().enumerate() {
            let t = row_dot(&self.ghost, k, vg);
            y[i as usize] += t;
            acc += w[i as usize] * t;
        }
        acc
    }
}

/// [`LocalKernels`] on the host: the engine's fused kernels on the own
/// block, the ghost block after the halo (see the module documentation).
pub struct EngineKernels<'a> {
    /// The full rows (for the true residual).
    a: &'a Csr,
    m: SplitBlocks,
    kernels: Box<dyn CgKernels + Send>,
    inv_diag: Vec<f64>,
    /// `inv_diag` of the ghost columns.
    inv_diag_g: Vec<f64>,
    b: Vec<f64>,
    x: Vec<f64>,
    r: Vec<f64>,
    p: Vec<f64>,
    q: Vec<f64>,
    /// Ghost entries of `r`, `p`.
    rg: Vec<f64>,
    pg: Vec<f64>,
    /// The iterate folded at the checks, column space.
    base: Vec<f64>,
    pq: f64,
}

impl<'a> EngineKernels<'a> {
    /// Kernels for a rank's rows `a` (`[A_oo | A_og]`, an equilibrated
    /// system's: [`crate::cg::EquilibratedDist`]) with the Jacobi weights
    /// `inv_diag_cols` (its rows, then its ghost columns), running the
    /// engine's `kernels`.
    pub fn new(a: &'a Csr, inv_diag_cols: &[f64], kernels: Box<dyn CgKernels + Send>) -> Self {
        let m = SplitBlocks::new(a);
        let n = a.nrows();
        let g = a.ncols() - n;
        assert_eq!(inv_diag_cols.len(), n + g);
        Self {
            a,
            m,
            kernels,
            inv_diag: inv_diag_cols[..n].to_vec(),
            inv_diag_g: inv_diag_cols[n..].to_vec(),
            b: vec![0.0; n],
            x: vec![0.0; n],
            r: vec![0.0; n],
            p: vec![0.0; n],
            q: vec![0.0; n],
            rg: vec![0.0; g],
            pg: vec![0.0; g],
            base: vec![0.0; n + g],
            pq: 0.0,
        }
    }

    fn n(&self) -> usize {
        self.r.len()
    }
}

/// The received ghost values into `vg`, the ghost part (from column `n`)
/// of a column-space vector.
fn unpack_split(vg: &mut [f64], n: usize, halo: &Halo, bufs: &[Vec<f64>]) {
    for (nb, b) in halo.neighbours.iter().zip(bufs) {
        for (&i, &x) in nb.recv.iter().zip(b) {
            vg[i as usize - n] = x;
        }
    }
}

impl LocalKernels for EngineKernels<'_> {
    fn start(&mut self, b: &[f64]) -> [f64; 2] {
        self.b.copy_from_slice(b);
        self.r.copy_from_slice(b);
        for v in [
            &mut self.x,
            &mut self.p,
            &mut self.rg,
            &mut self.pg,
            &mut self.base,
        ] {
            v.fill(0.0);
        }
        dots(&self.r, &self.inv_diag)
    }

    fn pack(&mut self, halo: &Halo, bufs: &mut [Vec<f64>]) {
        pack(&self.r, halo, bufs);
    }

    fn unpack(&mut self, halo: &Halo, bufs: &[Vec<f64>]) {
        let n = self.n();
        unpack_split(&mut self.rg, n, halo, bufs);
    }

    fn product_interior(&mut self, beta: f64, alpha_prev: f64) {
        self.pq = self.kernels.pass_a(
            &self.m.own,
            &self.inv_diag,
            &self.r,
            beta,
            alpha_prev,
            &mut self.x,
            &mut self.p,
            &mut self.q,
        );
    }

    fn product_rest(&mut self, beta: f64, _alpha_prev: f64) -> f64 {
        // the ghosts' direction, as their owners compute it
        for ((p, &r), &d) in self.pg.iter_mut().zip(&self.rg).zip(&self.inv_diag_g) {
            *p = r * d + beta * *p;
        }
        self.pq + self.m.add_ghost_product(&self.pg, &mut self.q, &self.p)
    }

    fn update(&mut self, alpha: f64) -> [f64; 2] {
        let (rr, rz) = self
            .kernels
            .pass_b(&self.inv_diag, alpha, &self.q, &mut self.r);
        [rr, rz]
    }

    fn flush(&mut self, alpha: f64) {
        self.kernels.axpy(alpha, &self.p, &mut self.x);
    }

    fn fold(&mut self) {
        for (b, x) in self.base.iter_mut().zip(self.x.iter_mut()) {
            *b += *x;
            *x = 0.0;
        }
    }

    fn pack_iterate(&mut self, halo: &Halo, bufs: &mut [Vec<f64>]) {
        pack(&self.base, halo, bufs);
    }

    fn unpack_iterate(&mut self, halo: &Halo, bufs: &[Vec<f64>]) {
        unpack(&mut self.base, halo, bufs);
    }

    fn replace_residual(&mut self) -> [f64; 2] {
        let n = self.n();
        self.a
            .residual_exact_rows(0..n, &self.b, &self.base, &mut self.r);
        dots(&self.r, &self.inv_diag)
    }

    fn iterate(&mut self) -> Vec<f64> {
        self.base[..self.n()].to_vec()
    }

    fn bytes_per_iteration(&self) -> usize {
        let m = &self.m;
        let n = self.n();
        let g = self.rg.len();
        // the engine's fused count over the own block, plus the ghost
        // block (entries, row starts), the ghosts' direction (r, p,
        // inv_diag read, p written) and the halo values packed
        quadflow_systems::solver::fused_bytes_per_iteration(n, m.own.get().stored())
            + 12 * m.ghost.nnz()
            + 8 * (m.ghost_rows.len() + 1)
            + 8 * 4 * g
    }
}

/// [`LocalKernels`] on the host over the full rows (both triangles), the
/// direction and the product as separate passes: the host twin of the
/// device kernels ([`crate::device`]), with the same split of the work.
#[derive(Debug, Clone)]
pub struct SplitKernels<'a> {
    a: &'a Csr,
    /// owned rows, then ghosts
    inv_diag: &'a [f64],
    b: Vec<f64>,
    /// the correction since the last fold (owned rows)
    x: Vec<f64>,
    /// the folded iterate, column space: owned rows, then ghosts
    base: Vec<f64>,
    /// column space: owned rows, then ghosts
    r: Vec<f64>,
    /// column space: owned rows, then ghosts
    p: Vec<f64>,
    q: Vec<f64>,
}

impl<'a> SplitKernels<'a> {
    /// Kernels for a rank's rows `a` with the Jacobi weights
    /// `inv_diag_cols` (as [`EngineKernels::new`]).
    pub fn new(a: &'a Csr, inv_diag_cols: &'a [f64]) -> Self {
        let n = a.nrows();
        let cols = a.ncols();
        assert_eq!(inv_diag_cols.len(), cols);
        Self {
            a,
            inv_diag: inv_diag_cols,
            b: vec![0.0; n],
            x: vec![0.0; n],
            base: vec![0.0; cols],
            r: vec![0.0; cols],
            p: vec![0.0; cols],
            q: vec![0.0; n],
        }
    }

    fn direction(&mut self, range: std::ops::Range<usize>, beta: f64, alpha_prev: f64) {
        let n = self.q.len();
        for i in range {
            let po = self.p[i];
            if i < n {
                self.x[i] += alpha_prev * po;
            }
            self.p[i] = self.r[i] * self.inv_diag[i] + beta * po;
        }
    }
}

impl LocalKernels for SplitKernels<'_> {
    fn start(&mut self, b: &[f64]) -> [f64; 2] {
        let n = self.q.len();
        self.b.copy_from_slice(b);
        self.r.fill(0.0);
        self.r[..n].copy_from_slice(b);
        self.x.fill(0.0);
        self.base.fill(0.0);
        self.p.fill(0.0);
        dots(&self.r[..n], self.inv_diag)
    }

    fn pack(&mut self, halo: &Halo, bufs: &mut [Vec<f64>]) {
        pack(&self.r, halo, bufs);
    }

    fn unpack(&mut self, halo: &Halo, bufs: &[Vec<f64>]) {
        unpack(&mut self.r, halo, bufs);
    }

    fn product_interior(&mut self, beta: f64, alpha_prev: f64) {
        // no row is free of ghosts in this order: the direction only
        let n = self.q.len();
        self.direction(0..n, beta, alpha_prev);
    }

    fn product_rest(&mut self, beta: f64, alpha_prev: f64) -> f64 {
        let (n, cols) = (self.q.len(), self.p.len());
        self.direction(n..cols, beta, alpha_prev);
        let mut pq = 0.0;
        for i in 0..n {
            let v = row_dot(self.a, i, &self.p);
            self.q[i] = v;
            pq += v * self.p[i];
        }
        pq
    }

    fn update(&mut self, alpha: f64) -> [f64; 2] {
        let n = self.q.len();
        let mut s = [0.0; 2];
        for i in 0..n {
            let v = self.r[i] - alpha * self.q[i];
            self.r[i] = v;
            s[0] += v * v;
            s[1] += v * v * self.inv_diag[i];
        }
        s
    }

    fn flush(&mut self, alpha: f64) {
        let n = self.q.len();
        for i in 0..n {
            self.x[i] += alpha * self.p[i];
        }
    }

    fn fold(&mut self) {
        for (b, x) in self.base.iter_mut().zip(self.x.iter_mut()) {
            *b += *x;
            *x = 0.0;
        }
    }

    fn pack_iterate(&mut self, halo: &Halo, bufs: &mut [Vec<f64>]) {
        pack(&self.base, halo, bufs);
    }

    fn unpack_iterate(&mut self, halo: &Halo, bufs: &[Vec<f64>]) {
        unpack(&mut self.base, halo, bufs);
    }

    fn replace_residual(&mut self) -> [f64; 2] {
        let n = self.q.len();
        self.a
            .residual_exact_rows(0..n, &self.b, &self.base, &mut self.r[..n]);
        dots(&self.r[..n], self.inv_diag)
    }

    fn iterate(&mut self) -> Vec<f64> {
        self.base[..self.q.len()].to_vec()
    }

    fn bytes_per_iteration(&self) -> usize {
        let n = self.q.len();
        let g = self.p.len() - n;
        // matrix once (8 + 4 bytes an entry, 8 a row start); direction: r,
        // inv_diag, p read, p written (owned and ghosts), x read and
        // written; product: p read, q written; update: r, q, inv_diag
        // read, r written
        12 * self.a.nnz() + 8 * (n + 1) + 8 * (4 * (n + g) + 2 * n + 2 * n + 4 * n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assemble::LocalSystem;
    use crate::cg::{gather_u, solve_cg_jacobi_with, tests::rel_max};
    use crate::comm::{Comm, ThreadComm};
    use crate::part::build_parts;
    use crate::partition::{Method, partition, tests::lattice};
    use quadflow_systems::pipeline::RunConfig;
    use quadflow_systems::solver::CgSettings;
    use std::sync::Arc;

    /// Five CG steps with the engine's kernels (serial and on a pool of
    /// two threads) and with the split kernels, on 1, 2 and 3 ranks: the
    /// same iterate to rounding on every kernel and rank count.
    #[test]
    fn engine_and_split_kernels_agree_on_any_rank_count() {
        let m = lattice(14, 5, true);
        let steps = CgSettings {
            rtol: 0.0,
            max_iter: 5,
        };
        let mut first: Option<Vec<f64>> = None;
        for p in [1, 2, 3] {
            let parts = Arc::new(build_parts(&m, &partition(&m, p, Method::Rcb).unwrap()));
            let out = ThreadComm::run(p, move |c| {
                let part = &parts[c.rank()];
                let sys = LocalSystem::assemble_serial(part, RunConfig::default()).unwrap();
                let pool = Arc::new(
                    rayon::ThreadPoolBuilder::new()
                        .num_threads(2)
                        .build()
                        .unwrap(),
                );
                let threads = crate::threads::Threads::pool(pool);
                let mut us = Vec::new();
                for kind in 0..3 {
                    let sol =
                        solve_cg_jacobi_with(c, part, &sys, &steps, &mut |_, _| true, &mut |eq| {
                            Ok(match kind {
                                0 => Box::new(EngineKernels::new(
                                    &eq.a,
                                    &eq.inv_diag_cols,
                                    crate::threads::Threads::serial().cg_kernels(),
                                )),
                                1 => Box::new(EngineKernels::new(
                                    &eq.a,
                                    &eq.inv_diag_cols,
                                    threads.cg_kernels(),
                                )),
                                _ => Box::new(SplitKernels::new(&eq.a, &eq.inv_diag_cols)),
                            })
                        })
                        .unwrap();
                    assert_eq!(sol.stats.iterations, 5);
                    us.push(gather_u(c, 0, part, &sol.u));
                }
                us
            });
            let us: Vec<Vec<f64>> = out[0].iter().map(|u| u.clone().unwrap()).collect();
            // the engine's serial and parallel kernels: the same bits
            assert_eq!(us[0], us[1], "p {p}");
            let e = rel_max(&us[2], &us[0]);
            assert!(e < 1e-12, "p {p}: split kernels differ by {e:e}");
            let one = first.get_or_insert_with(|| us[0].clone());
            let e = rel_max(&us[0], one);
            assert!(e < 1e-12, "p {p}: differs from one rank by {e:e}");
        }
    }
}
