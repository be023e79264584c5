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
//! - [`FusedKernels`] (the host's): two passes over memory per iteration
//!   over the **upper triangle** of the owned block, as the engine's
//!   `solver::pass_a_rows` / `pass_b_rows` do, so that a rank moves no more
//!   bytes per row than the single-process engine. Pass A walks the rows
//!   from last to first, updating `p` in place, `q_i` from the diagonal
//!   and the columns above (whose `p` is already new), `q_j` of those
//!   columns from the transposed entries. Its rows are numbered boundary
//!   rows (those with a ghost column) first, interior rows last, so that
//!   the pass over the interior rows comes first and needs no ghost; the
//!   ghost columns of the boundary rows are a small rectangular block.
//! - [`SplitKernels`]: the full rows of both triangles, direction and
//!   product as separate passes: the host twin of the device kernels
//!   ([`crate::device`]), which cannot scatter the transposed triangle
//!   without atomics.

use crate::dist::{DistMatrix, row_dot};
use crate::part::Halo;

/// The local work of one CG iteration on a rank's rows (see the module
/// documentation for the order of the calls). Rows are those of the
/// [`DistMatrix`] the kernels were made for (interior rows `0..n_interior`
/// first), columns its column space (owned rows, then ghosts).
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
    /// `x += alpha_last p` (the pending update), then `x` on the owned
    /// rows.
    fn solution(&mut self, alpha_last: f64) -> Vec<f64>;
    /// A failure of the local work since the last call (a device error),
    /// taken; the solver agrees on it with the other ranks.
    fn take_failure(&mut self) -> Option<String> {
        None
    }
    /// Bytes one iteration moves through memory at least (matrix once,
    /// vectors as the passes read and write them), for reports.
    fn bytes_per_iteration(&self) -> usize;
}

/// The rows of a [`DistMatrix`] as [`FusedKernels`] read them, renumbered
/// boundary rows first, interior rows last (each group in its order):
/// the upper triangle of the owned block (diagonal first, then the columns
/// above it) and, for the boundary rows, the ghost columns.
#[derive(Debug, Clone)]
pub struct FusedMatrix {
    n: usize,
    /// Boundary rows: `0..nb` in this numbering.
    nb: usize,
    /// Row of the [`DistMatrix`] -> row here.
    new_of: Vec<u32>,
    /// Row here -> row of the [`DistMatrix`].
    old_of: Vec<u32>,
    rowptr: Vec<u32>,
    col: Vec<u32>,
    val: Vec<f64>,
    /// Ghost block: boundary row `k` has entries `growptr[k]..growptr[k +
    /// 1]`, columns as ghost indices (`0..`).
    growptr: Vec<u32>,
    gcol: Vec<u32>,
    gval: Vec<f64>,
    ghosts: usize,
}

impl FusedMatrix {
    /// Splits `m`. Every row must hold its diagonal (coupled rows of an
    /// assembled matrix do); `m` must be symmetric on the owned block.
    pub fn new(m: &DistMatrix) -> Self {
        let n = m.n_owned();
        let ni = m.n_interior;
        let nb = n - ni;
        let new_of: Vec<u32> = (0..n)
            .map(|i| if i >= ni { i - ni } else { nb + i } as u32)
            .collect();
        let mut old_of = vec![0u32; n];
        for (i, &k) in new_of.iter().enumerate() {
            old_of[k as usize] = i as u32;
        }
        let mut rowptr = Vec::with_capacity(n + 1);
        let mut col = Vec::new();
        let mut val = Vec::new();
        let mut growptr = vec![0u32];
        let mut gcol = Vec::new();
        let mut gval = Vec::new();
        rowptr.push(0u32);
        let mut row: Vec<(u32, f64)> = Vec::new();
        for (k, &old) in old_of.iter().enumerate() {
            let (c, v) = m.a.row(old as usize);
            let mut diag = None;
            row.clear();
            for (&j, &x) in c.iter().zip(v) {
                let j = j as usize;
                if j == old as usize {
                    diag = Some(x);
                } else if j < n {
                    let jn = new_of[j];
                    if jn as usize > k {
                        row.push((jn, x));
                    }
                } else {
                    assert!(k < nb, "an interior row has no ghost column");
                    gcol.push((j - n) as u32);
                    gval.push(x);
                }
            }
            row.sort_unstable_by_key(|e| e.0);
            col.push(k as u32);
            val.push(diag.expect("every coupled row holds its diagonal"));
            for &(j, x) in &row {
                col.push(j);
                val.push(x);
            }
            rowptr.push(u32::try_from(col.len()).expect("under 2^32 stored entries a rank"));
            if k < nb {
                growptr.push(gcol.len() as u32);
            }
        }
        Self {
            n,
            nb,
            new_of,
            old_of,
            rowptr,
            col,
            val,
            growptr,
            gcol,
            gval,
            ghosts: m.n_cols() - n,
        }
    }

    /// Stored entries of the owned block's upper triangle (diagonal
    /// included).
    pub fn stored(&self) -> usize {
        self.val.len()
    }

    /// Entries of the ghost block.
    pub fn ghost_entries(&self) -> usize {
        self.gval.len()
    }
}

/// [`LocalKernels`] on the host, single-threaded, two passes over memory
/// per iteration (see the module documentation). Vectors live in the
/// [`FusedMatrix`]'s row numbering (ghosts after the owned rows, as in
/// the [`DistMatrix`]); the halo lists and `b`, `x` are translated.
#[derive(Debug, Clone)]
pub struct FusedKernels {
    m: FusedMatrix,
    /// owned rows (this numbering), then ghosts
    inv_diag: Vec<f64>,
    x: Vec<f64>,
    /// owned rows, then ghosts
    r: Vec<f64>,
    /// owned rows, then ghosts
    p: Vec<f64>,
    q: Vec<f64>,
    pq: f64,
}

impl FusedKernels {
    /// Kernels for `m` with Jacobi weights `inv_diag` (owned rows, then
    /// the ghost columns).
    pub fn new(m: &DistMatrix, inv_diag: &[f64]) -> Self {
        let f = FusedMatrix::new(m);
        let n = f.n;
        let cols = n + f.ghosts;
        assert_eq!(inv_diag.len(), cols);
        let mut d: Vec<f64> = f.old_of.iter().map(|&o| inv_diag[o as usize]).collect();
        d.extend_from_slice(&inv_diag[n..]);
        Self {
            m: f,
            inv_diag: d,
            x: vec![0.0; n],
            r: vec![0.0; cols],
            p: vec![0.0; cols],
            q: vec![0.0; n],
            pq: 0.0,
        }
    }

    /// Pass A over the rows `lo..hi` (this numbering), last to first:
    /// `x += alpha_prev p`, `p = r inv_diag + beta p` in place, `q_i` from
    /// the diagonal and the columns above (whose `p` is already new), `q_j
    /// += a_ij p_i` for them (their `q` already set); returns the rows'
    /// share of `p.q` (the ghost block aside).
    fn pass_a(&mut self, lo: usize, hi: usize, beta: f64, alpha_prev: f64) -> f64 {
        let m = &self.m;
        let (rowptr, col, val) = (&m.rowptr[..], &m.col[..], &m.val[..]);
        let n = m.n;
        let (x, r, p, q, d) = (
            &mut self.x,
            &self.r,
            &mut self.p,
            &mut self.q,
            &self.inv_diag,
        );
        assert!(lo <= hi && hi <= n && x.len() == n && q.len() == n && rowptr.len() == n + 1);
        assert!(r.len() >= n && p.len() >= n && d.len() >= n);
        let mut pap = 0.0;
        for i in (lo..hi).rev() {
            let s = rowptr[i] as usize;
            let e = rowptr[i + 1] as usize;
            let po = p[i];
            x[i] += alpha_prev * po;
            let pi = r[i] * d[i] + beta * po;
            p[i] = pi;
            let mut acc = 0.0;
            for k in s + 1..e {
                // SAFETY: `FusedMatrix::new` stores, after each row's
                // diagonal, only columns j with i < j < n, and rowptr is
                // within col/val (built together); p and q hold n entries
                // at least (asserted above).
                unsafe {
                    let j = *col.get_unchecked(k) as usize;
                    let v = *val.get_unchecked(k);
                    acc += v * *p.get_unchecked(j);
                    *q.get_unchecked_mut(j) += v * pi;
                }
            }
            let diag = val[s] * pi;
            q[i] = diag + acc;
            pap += pi * (diag + 2.0 * acc);
        }
        pap
    }

    fn halo_index(&self, i: u32) -> usize {
        let i = i as usize;
        if i < self.m.n {
            self.m.new_of[i] as usize
        } else {
            i
        }
    }
}

impl LocalKernels for FusedKernels {
    fn start(&mut self, b: &[f64]) -> [f64; 2] {
        let n = self.m.n;
        self.r.fill(0.0);
        for (k, &o) in self.m.old_of.iter().enumerate() {
            self.r[k] = b[o as usize];
        }
        self.x.fill(0.0);
        self.p.fill(0.0);
        dots(&self.r[..n], &self.inv_diag)
    }

    fn pack(&mut self, halo: &Halo, bufs: &mut [Vec<f64>]) {
        for (nb, b) in halo.neighbours.iter().zip(bufs.iter_mut()) {
            for (o, &i) in b.iter_mut().zip(&nb.send) {
                *o = self.r[self.halo_index(i)];
            }
        }
    }

    fn unpack(&mut self, halo: &Halo, bufs: &[Vec<f64>]) {
        for (nb, b) in halo.neighbours.iter().zip(bufs) {
            for (&i, &v) in nb.recv.iter().zip(b) {
                let k = self.halo_index(i);
                self.r[k] = v;
            }
        }
    }

    fn product_interior(&mut self, beta: f64, alpha_prev: f64) {
        let (nb, n) = (self.m.nb, self.m.n);
        self.pq = self.pass_a(nb, n, beta, alpha_prev);
    }

    fn product_rest(&mut self, beta: f64, alpha_prev: f64) -> f64 {
        let (nb, n) = (self.m.nb, self.m.n);
        // the ghosts' direction, as their owners compute it
        for g in n..self.p.len() {
            self.p[g] = self.r[g] * self.inv_diag[g] + beta * self.p[g];
        }
        let mut pap = self.pq + self.pass_a(0, nb, beta, alpha_prev);
        // the ghost columns of the boundary rows
        let m = &self.m;
        for i in 0..nb {
            let (s, e) = (m.growptr[i] as usize, m.growptr[i + 1] as usize);
            let mut g = 0.0;
            for t in s..e {
                g += m.gval[t] * self.p[n + m.gcol[t] as usize];
            }
            self.q[i] += g;
            pap += self.p[i] * g;
        }
        pap
    }

    fn update(&mut self, alpha: f64) -> [f64; 2] {
        let n = self.m.n;
        let mut s = [0.0; 2];
        for ((ri, &qi), &di) in self.r[..n].iter_mut().zip(&self.q).zip(&self.inv_diag) {
            let v = *ri - alpha * qi;
            *ri = v;
            s[0] += v * v;
            s[1] += v * v * di;
        }
        s
    }

    fn solution(&mut self, alpha_last: f64) -> Vec<f64> {
        for (x, p) in self.x.iter_mut().zip(&self.p) {
            *x += alpha_last * p;
        }
        let mut x = vec![0.0; self.m.n];
        for (k, &o) in self.m.old_of.iter().enumerate() {
            x[o as usize] = self.x[k];
        }
        x
    }

    fn bytes_per_iteration(&self) -> usize {
        let m = &self.m;
        let (n, nb) = (m.n, m.nb);
        // the engine's fused count over the owned block, plus the ghost
        // block (entries, row starts), the ghosts' direction (r, p,
        // inv_diag read, p written) and the halo values packed
        quadflow_systems::solver::fused_bytes_per_iteration(n, m.stored())
            + 12 * m.ghost_entries()
            + 4 * (nb + 1)
            + 8 * 4 * m.ghosts
    }
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

fn pack(v: &[f64], halo: &Halo, bufs: &mut [Vec<f64>]) {
    for (nb, b) in halo.neighbours.iter().zip(bufs.iter_mut()) {
        for (o, &i) in b.iter_mut().zip(&nb.send) {
            *o = v[i as usize];
        }
    }
}

fn unpack(v: &mut [f64], halo: &Halo, bufs: &[Vec<f64>]) {
    for (nb, b) in halo.neighbours.iter().zip(bufs) {
        for (&i, &x) in nb.recv.iter().zip(b) {
            v[i as usize] = x;
        }
    }
}

/// [`LocalKernels`] on the host over the full rows (both triangles), the
/// direction and the product as separate passes: the host twin of the
/// device kernels ([`crate::device`]), with the same split of the work.
#[derive(Debug, Clone)]
pub struct SplitKernels<'a> {
    a: &'a quadflow_systems::amg::Csr,
    n_interior: usize,
    /// owned rows, then ghosts
    inv_diag: &'a [f64],
    x: Vec<f64>,
    /// column space: owned rows, then ghosts
    r: Vec<f64>,
    /// column space: owned rows, then ghosts
    p: Vec<f64>,
    q: Vec<f64>,
    pq: f64,
}

impl<'a> SplitKernels<'a> {
    /// Kernels for the matrix `m` with Jacobi weights `inv_diag` (owned
    /// rows, then the ghost columns).
    pub fn new(m: &'a DistMatrix, inv_diag: &'a [f64]) -> Self {
        let n = m.n_owned();
        assert_eq!(inv_diag.len(), m.n_cols());
        Self {
            a: &m.a,
            n_interior: m.n_interior,
            inv_diag,
            x: vec![0.0; n],
            r: vec![0.0; m.n_cols()],
            p: vec![0.0; m.n_cols()],
            q: vec![0.0; n],
            pq: 0.0,
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

    fn rows_pq(&mut self, rows: std::ops::Range<usize>) -> f64 {
        let mut pq = 0.0;
        for i in rows {
            let v = row_dot(self.a, i, &self.p);
            self.q[i] = v;
            pq += v * self.p[i];
        }
        pq
    }
}

impl LocalKernels for SplitKernels<'_> {
    fn start(&mut self, b: &[f64]) -> [f64; 2] {
        let n = self.q.len();
        self.r.fill(0.0);
        self.r[..n].copy_from_slice(b);
        self.x.fill(0.0);
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
        let n = self.q.len();
        self.direction(0..n, beta, alpha_prev);
        self.pq = self.rows_pq(0..self.n_interior);
    }

    fn product_rest(&mut self, beta: f64, alpha_prev: f64) -> f64 {
        let (n, cols) = (self.q.len(), self.p.len());
        self.direction(n..cols, beta, alpha_prev);
        self.pq + self.rows_pq(self.n_interior..n)
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

    fn solution(&mut self, alpha_last: f64) -> Vec<f64> {
        for (x, p) in self.x.iter_mut().zip(&self.p) {
            *x += alpha_last * p;
        }
        self.x.clone()
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
    use crate::comm::{Comm, ThreadComm};
    use crate::dist::{GlobalRow, offsets, owner_in};

    /// A symmetric 2D 5-point Laplacian on an `nx x ny` grid, rows split
    /// in contiguous blocks; `(rows, n)`.
    fn grid_rows(rank: usize, p: usize, nx: usize, ny: usize) -> (Vec<GlobalRow>, usize) {
        let n = nx * ny;
        let (s, e) = (rank * n / p, (rank + 1) * n / p);
        let rows = (s..e)
            .map(|g| {
                let (i, j) = (g % nx, g / nx);
                let mut r = vec![(g as u64, 4.0 + 0.01 * (g % 7) as f64)];
                let mut add = |ii: usize, jj: usize| {
                    let h = jj * nx + ii;
                    // symmetric weights: a function of the unordered pair
                    let w = -1.0 - 0.001 * ((g.min(h) * 31 + g.max(h)) % 13) as f64;
                    r.push((h as u64, w));
                };
                if i > 0 {
                    add(i - 1, j);
                }
                if i + 1 < nx {
                    add(i + 1, j);
                }
                if j > 0 {
                    add(i, j - 1);
                }
                if j + 1 < ny {
                    add(i, j + 1);
                }
                r.sort_by_key(|e| e.0);
                (g as u64, r)
            })
            .collect();
        (rows, n)
    }

    /// Four CG steps (with the ghosts of `r` exchanged as the solver does)
    /// with both kernels on 1, 2 and 3 ranks: the same scalars and `x`, to
    /// rounding, on both kernels, every rank count and every rank.
    /// A run's scalars and its `x` by global id.
    type Trace = (Vec<f64>, Vec<(u64, f64)>);

    #[test]
    fn fused_and_split_kernels_agree_on_any_rank_count() {
        let mut one: Option<Trace> = None;
        for p in [1, 2, 3] {
            let out = ThreadComm::run(p, move |c| {
                let (rows, n) = grid_rows(c.rank(), c.size(), 9, 7);
                let off = offsets(c, rows.len());
                let (m, _) = DistMatrix::from_rows(c, rows, n, |g| owner_in(&off, g));
                // inv_diag of the owned rows, then of the ghost columns
                let d: Vec<f64> = (0..m.n_cols())
                    .map(|l| {
                        let g = if l < m.n_owned() {
                            m.gid[l]
                        } else {
                            m.ghost_gid[l - m.n_owned()]
                        };
                        1.0 / (1.0 + (g % 5) as f64)
                    })
                    .collect();
                let b: Vec<f64> = m.gid.iter().map(|&g| ((g * 7) % 11) as f64 - 5.0).collect();
                let mut results = Vec::new();
                let run = |k: &mut dyn LocalKernels| {
                    // as crate::cg::pcg: the ghosts of r travel with the
                    // all-reduce and then the interior product in flight
                    let mut trace = Vec::new();
                    let mut s = k.start(&b);
                    let (mut alpha, mut rho_prev, mut rz, mut beta) = (0.0, 0.0, 0.0, 0.0);
                    for it in 0..5 {
                        let mut sends: Vec<Vec<f64>> = m
                            .halo
                            .neighbours
                            .iter()
                            .map(|n| vec![0.0; n.send.len()])
                            .collect();
                        let mut recvs: Vec<Vec<f64>> = m
                            .halo
                            .neighbours
                            .iter()
                            .map(|n| vec![0.0; n.recv.len()])
                            .collect();
                        k.pack(&m.halo, &mut sends);
                        m.halo.post(c, &sends, &mut recvs, &mut || {
                            c.allreduce_sum(&mut s);
                            rz = s[1];
                            if it < 4 {
                                beta = if it == 0 { 0.0 } else { rz / rho_prev };
                                k.product_interior(beta, alpha);
                            }
                        });
                        k.unpack(&m.halo, &recvs);
                        trace.extend(s);
                        if it == 4 {
                            break;
                        }
                        let mut pq = [k.product_rest(beta, alpha)];
                        c.allreduce_sum(&mut pq);
                        trace.push(pq[0]);
                        alpha = rz / pq[0];
                        rho_prev = rz;
                        s = k.update(alpha);
                    }
                    let x = k.solution(alpha);
                    (trace, m.gid.iter().copied().zip(x).collect::<Vec<_>>())
                };
                results.push(run(&mut FusedKernels::new(&m, &d)));
                results.push(run(&mut SplitKernels::new(&m, &d)));
                results
            });
            // the same scalars (to rounding) on both kernels and every rank
            for o in &out {
                let (tf, ts) = (&o[0].0, &o[1].0);
                for (a, b) in tf.iter().zip(ts) {
                    assert!(
                        (a - b).abs() <= 1e-12 * b.abs().max(1.0),
                        "p {p}: {a} vs {b}"
                    );
                }
                assert_eq!(tf, &out[0][0].0, "p {p}: ranks agree");
            }
            // x after four steps: the same on both kernels
            let mut xf: Vec<(u64, f64)> = out.iter().flat_map(|o| o[0].1.clone()).collect();
            let mut xs: Vec<(u64, f64)> = out.iter().flat_map(|o| o[1].1.clone()).collect();
            xf.sort_by_key(|e| e.0);
            xs.sort_by_key(|e| e.0);
            for (a, b) in xf.iter().zip(&xs) {
                assert_eq!(a.0, b.0);
                assert!((a.1 - b.1).abs() <= 1e-12 * b.1.abs().max(1.0));
            }
            // and the same as on one rank
            let (t1, x1) = one.get_or_insert_with(|| (out[0][0].0.clone(), xf.clone()));
            for (a, b) in out[0][0].0.iter().zip(t1.iter()) {
                assert!(
                    (a - b).abs() <= 1e-12 * b.abs().max(1.0),
                    "p {p}: {a} vs {b}"
                );
            }
            assert_eq!(xf.len(), x1.len());
            for (a, b) in xf.iter().zip(x1.iter()) {
                assert!((a.1 - b.1).abs() <= 1e-12 * b.1.abs().max(1.0), "p {p}");
            }
        }
    }
}
