//! Smoothed-aggregation algebraic multigrid (SA-AMG) as a preconditioner
//! of CG ("AMG-CG").
//!
//! The hierarchy is built on the equilibrated system ([`AmgSystem`]: `D K
//! D`, `d = 1 / sqrt(|diag K|)`, unit diagonal, rows without couplings
//! solved directly, rows renumbered by reverse Cuthill-McKee) as a full
//! CSR ([`Csr`]):
//!
//! 1. Strength of connection: `j` is a strong neighbour of `i` when
//!    `-a_ij >= theta sqrt(a_ii a_jj)` ([`Strength::Negative`], the
//!    default) or `|a_ij| >= theta sqrt(|a_ii a_jj|)`
//!    ([`Strength::Magnitude`], PyAMG's "symmetric").
//! 2. Standard aggregation (PyAMG's three passes): pass 1 makes an
//!    aggregate of every node whose strong neighbours are all free, with
//!    its whole strong neighbourhood; pass 2 attaches each leftover node to
//!    a pass-1 aggregate of a strong neighbour; pass 3 makes new aggregates
//!    of what is left. A node with no strong neighbour at all is left out
//!    (a zero row of the prolongator).
//! 3. Tentative prolongator `T` from the near-null-space vector `B`,
//!    normalised per aggregate; the coarse `B` is the per-aggregate norm.
//!    On the finest level `B = D^-1 1 = sqrt(diag K)`: `K 1 = 0` away from
//!    the boundary, so `(D K D)(D^-1 1) = 0` is the equilibrated matrix's
//!    near-null-space. The constant vector is not (the diagonal of `K`
//!    differs between corner and mid-side nodes and with element shape):
//!    with `B = 1`, `y_tube_195k` takes 84 iterations instead of 38, a
//!    100k-node venturi 134 instead of 55.
//! 4. Smoothed prolongator `P = (I - omega D^-1 A) T`,
//!    `omega = 4/3 / rho(D^-1 A)`, `rho` estimated by 10 Lanczos steps
//!    (within 3% of the converged value on the Quad-8 matrices; the
//!    Chebyshev bound adds 10%).
//! 5. Galerkin coarse operator `A_c = P^T (A P)`: two row-by-row sparse
//!    products (Gustavson, a marker array per block of rows, parallel).
//! 6. Until at most `max_coarse` rows or `max_levels` levels; the coarsest
//!    level is solved by a dense Cholesky factorisation (nalgebra).
//!
//! **Penalised Dirichlet rows.** After equilibration a penalised row
//! (`K_ii ~ 1e12`) has a unit diagonal and couplings of about `1e-6`, far
//! below any useful `theta`: the row has no strong neighbour, is in no
//! aggregate (its row of `T` is zero) and is left to the smoother, for
//! which it is an (almost exactly) decoupled unit row: Jacobi-type
//! smoothing solves it to `1e-6` relative per sweep. Its huge `B` entry
//! never enters an aggregate's normalisation. (`theta` must be positive
//! for this; the scene check enforces it.)
//!
//! **V-cycle.** Pre-smoothing from a zero guess, restriction of the
//! residual, the coarse correction, post-smoothing. The smoother is a
//! polynomial in `D^-1 A` (Chebyshev of a given degree on
//! `[rho_hat / cheb_ratio, rho_hat]`, `rho_hat = 1.1 rho`, or damped
//! Jacobi with weight `4/3 / rho`): the error propagator is self-adjoint in
//! the `A` inner product, so with as many pre- as post-sweeps the V-cycle
//! is a symmetric positive definite preconditioner, as CG needs. Every
//! smoothing step is one fused pass over the rows (`q = A d`, `r -= q`,
//! `x += d`, next `d`). The cycle reads the level matrices and transfers
//! in single precision (vectors and sums in double): a third less memory
//! traffic for the same iteration counts; CG's own product is in double.
//!
//! **Parallelism.** Every row loop (SpMV, smoothing step, restriction,
//! prolongation, strength, the sparse products, the reductions) goes over
//! blocks of [`BLOCK`] rows; [`Exec::Parallel`] runs the blocks on the
//! current rayon pool, [`Exec::Serial`] one after another. Reductions add
//! per-block partial sums in block order, so both give the same bits.
//! Aggregation, transposes and the renumbering are sequential.
//!
//! **Defaults** ([`AmgSettings::default`]) were chosen with the
//! `amg_sweep` test of `tests/solvers.rs` (application crate) on
//! `y_tube_195k` (147,246 CG rows) and generated venturi meshes of 10k,
//! 100k and 1.3M nodes, rtol `1e-10`, release build, the 2-core
//! development machine (shared with other builds, so times are noisy;
//! iteration counts are exact). Quad-8 matrices are harder for SA than
//! bilinear ones (a 5-point Laplacian takes 15 iterations): a third of
//! the couplings are positive, and Jacobi-type smoothing is weaker.
//!
//! | variant (one change from the default) | y_tube_195k | venturi 100k |
//! | --- | ---: | ---: |
//! | default: negative strength, theta 0.08, Chebyshev 2, 1+1 sweeps | 34 | 46 |
//! | magnitude strength (theta 0.08) | 38 | 55 |
//! | negative, theta 0.02 / 0.05 / 0.12 | | 58 / 50 / 53 (complexity 1.70) |
//! | magnitude, theta 0.2 / 0.3 | 104 / 372 | |
//! | Chebyshev degree 1 / 3 | 61 / 32 (magnitude) | 71 / 41 |
//! | damped Jacobi, 1 / 2 steps | 70 / 51 (magnitude) | 95 / 69 (magnitude) |
//! | 2+2 sweeps | 30 (magnitude) | 38 |
//! | Chebyshev ratio 10 / 60 | 39 / 39 (magnitude) | 54 / 58 (magnitude) |
//! | prolongator weight 1.0 / 1.6 (x 1/rho) | 43 / 37 (magnitude) | 60 / 52 |
//! | max_coarse 100 / 2000 | 38 / 37 (magnitude) | 55 / 54 (magnitude) |
//! | prolongator entries below 5% / 10% of the row's largest dropped | 41 / 57 | 52 / 65 |
//!
//! Time per iteration grows with the smoothing work (Chebyshev degree `k`
//! costs `2k` products on each level, plus CG's one), so degree 2 with
//! one sweep each way gave the shortest solves; 2+2 sweeps or degree 3
//! save iterations but not time. Smaller aggregates (theta 0.12, or a
//! twice-smoothed prolongator: 29 iterations on `y_tube_195k`) raise the
//! operator complexity and the setup time (x3) more than they save.
//! Iterations stay flat under refinement: 41, 46 and 55 on venturi meshes
//! of 10k, 100k and 1.3M nodes.

use crate::solver::{CgSettings, Exec, SolveError, SolveStats, true_relative_residual};
use crate::sparse::SymCsr;
use rayon::prelude::*;
use std::ops::Range;
use std::time::Instant;

/// Rows per block of every row loop (and per partial sum of reductions).
pub const BLOCK: usize = 2048;

/// Rows per block of the sparse matrix-matrix products.
const SPGEMM_BLOCK: usize = 512;

/// No aggregate / no mark.
const NONE: u32 = u32::MAX;

/// The relaxation used as pre- and post-smoother.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Smoother {
    /// Chebyshev polynomial in `D^-1 A` of degree [`AmgSettings::degree`].
    Chebyshev,
    /// Damped Jacobi, weight `4/3 / rho(D^-1 A)`, [`AmgSettings::degree`]
    /// steps per sweep.
    Jacobi,
}

impl Smoother {
    /// Scene names.
    pub const NAMES: &'static [&'static str] = &["chebyshev", "jacobi"];

    /// The scene name.
    pub fn name(self) -> &'static str {
        match self {
            Smoother::Chebyshev => "chebyshev",
            Smoother::Jacobi => "jacobi",
        }
    }

    /// Parses a scene name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "chebyshev" => Some(Smoother::Chebyshev),
            "jacobi" => Some(Smoother::Jacobi),
            _ => None,
        }
    }
}

/// Which couplings count as strong (`theta` is the threshold).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strength {
    /// Negative couplings only: `-a_ij >= theta sqrt(a_ii a_jj)` (the
    /// classical sign convention). About a third of the Quad-8 stiffness
    /// couplings are positive (corner to corner and across an element);
    /// aggregating along the negative ones only gives smaller, better
    /// aggregates: 34 instead of 38 iterations on `y_tube_195k`, 46
    /// instead of 55 on a 100k-node venturi.
    Negative,
    /// Magnitude: `|a_ij| >= theta sqrt(|a_ii a_jj|)` (PyAMG's
    /// "symmetric" strength).
    Magnitude,
}

impl Strength {
    /// Scene names.
    pub const NAMES: &'static [&'static str] = &["negative", "magnitude"];

    /// The scene name.
    pub fn name(self) -> &'static str {
        match self {
            Strength::Negative => "negative",
            Strength::Magnitude => "magnitude",
        }
    }

    /// Parses a scene name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "negative" => Some(Strength::Negative),
            "magnitude" => Some(Strength::Magnitude),
            _ => None,
        }
    }
}

/// Parameters of the AMG hierarchy and V-cycle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AmgSettings {
    /// Strength threshold `theta` (must be in `(0, 1)`; 0.08).
    pub theta: f64,
    /// Which couplings are strong ([`Strength::Negative`]).
    pub strength: Strength,
    /// Smoother ([`Smoother::Chebyshev`]).
    pub smoother: Smoother,
    /// Chebyshev degree, or Jacobi steps per sweep (products per sweep;
    /// 2).
    pub degree: usize,
    /// Smoothing sweeps before the coarse correction (1).
    pub pre_sweeps: usize,
    /// Smoothing sweeps after the coarse correction (1; keep equal to
    /// `pre_sweeps` for a symmetric preconditioner).
    pub post_sweeps: usize,
    /// Stop coarsening at this many rows (dense Cholesky below; 500).
    pub max_coarse: usize,
    /// At most this many levels, the coarsest included (12).
    pub max_levels: usize,
    /// Chebyshev interval `[rho_hat / cheb_ratio, rho_hat]` (30).
    pub cheb_ratio: f64,
    /// Lanczos steps for the spectral radius estimates (10).
    pub lanczos_steps: usize,
    /// Prolongator smoothing weight times `rho(D^-1 A)` (4/3).
    pub omega_scale: f64,
}

impl Default for AmgSettings {
    fn default() -> Self {
        Self {
            theta: 0.08,
            strength: Strength::Negative,
            smoother: Smoother::Chebyshev,
            degree: 2,
            pre_sweeps: 1,
            post_sweeps: 1,
            max_coarse: 500,
            max_levels: 12,
            cheb_ratio: 30.0,
            lanczos_steps: 10,
            omega_scale: 4.0 / 3.0,
        }
    }
}

// ---------------------------------------------------------------------
// Block execution helpers.

fn block_range(b: usize, n: usize, size: usize) -> Range<usize> {
    b * size..((b + 1) * size).min(n)
}

/// `f(rows)` for each block of `0..n`, results in block order.
fn map_blocks<R: Send>(
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
fn map_blocks_with<S, R: Send>(
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
fn sum_blocks(exec: Exec, n: usize, f: impl Fn(Range<usize>) -> f64 + Sync + Send) -> f64 {
    map_blocks(exec, n, BLOCK, f).iter().sum()
}

/// `f(start, block)` for the [`BLOCK`]-row blocks of `y`; returns the
/// sum of the results in block order.
fn blocks1(exec: Exec, y: &mut [f64], f: impl Fn(usize, &mut [f64]) -> f64 + Sync + Send) -> f64 {
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
fn map_blocks_mut<R: Send>(
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

/// Fills the entries of a CSR with known `rowptr` by blocks of
/// [`BLOCK`] rows: `f(rows, col_block, val_block)` gets the rows' slices
/// of `col` and `val`; returns whether every `f` returned true.
fn fill_row_blocks(
    exec: Exec,
    rowptr: &[usize],
    col: &mut [u32],
    val: &mut [f64],
    f: impl Fn(Range<usize>, &mut [u32], &mut [f64]) -> bool + Sync + Send,
) -> bool {
    let n = rowptr.len() - 1;
    let mut pieces = Vec::with_capacity(n.div_ceil(BLOCK));
    let (mut col, mut val) = (col, val);
    for b in 0..n.div_ceil(BLOCK) {
        let rows = block_range(b, n, BLOCK);
        let len = rowptr[rows.end] - rowptr[rows.start];
        let (c, crest) = col.split_at_mut(len);
        let (v, vrest) = val.split_at_mut(len);
        col = crest;
        val = vrest;
        pieces.push((rows, c, v));
    }
    match exec {
        Exec::Serial => pieces.into_iter().all(|(r, c, v)| f(r, c, v)),
        Exec::Parallel => pieces
            .into_par_iter()
            .map(|(r, c, v)| f(r, c, v))
            .reduce(|| true, |a, b| a && b),
    }
}

/// `f(start, y_block, z_block)` for the [`BLOCK`]-row blocks of two
/// row-aligned vectors; the results in block order.
fn blocks2<R: Send>(
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
fn blocks3(
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

// ---------------------------------------------------------------------
// CSR matrices.

/// A general sparse matrix in CSR (columns of a row in any order).
///
/// Invariants (checked by [`Csr::new`]): `rowptr` has `nrows + 1`
/// non-decreasing entries ending at `col.len() == val.len()`, and every
/// column is below `ncols`. The row kernels index without bounds checks
/// on the strength of this.
#[derive(Debug, Clone, Default)]
pub struct Csr {
    nrows: usize,
    ncols: usize,
    rowptr: Vec<usize>,
    col: Vec<u32>,
    val: Vec<f64>,
}

impl Csr {
    /// Checks the invariants (panics on a malformed matrix: a bug in the
    /// caller, never user input).
    pub fn new(
        nrows: usize,
        ncols: usize,
        rowptr: Vec<usize>,
        col: Vec<u32>,
        val: Vec<f64>,
    ) -> Self {
        assert_eq!(rowptr.len(), nrows + 1);
        assert_eq!(rowptr[0], 0);
        assert!(rowptr.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(rowptr[nrows], col.len());
        assert_eq!(col.len(), val.len());
        assert!(ncols <= u32::MAX as usize);
        assert!(col.iter().all(|&j| (j as usize) < ncols));
        Self {
            nrows,
            ncols,
            rowptr,
            col,
            val,
        }
    }

    /// The full (both triangles) matrix of a symmetric one.
    pub fn from_sym(a: &SymCsr) -> Self {
        let (rp, col, val) = a.to_full();
        Self::new(
            a.n,
            a.n,
            rp.into_iter().map(|v| v as usize).collect(),
            col,
            val,
        )
    }

    /// Rows.
    pub fn nrows(&self) -> usize {
        self.nrows
    }

    /// Columns.
    pub fn ncols(&self) -> usize {
        self.ncols
    }

    /// Stored entries.
    pub fn nnz(&self) -> usize {
        self.col.len()
    }

    /// Row starts (`nrows + 1`).
    pub fn rowptr(&self) -> &[usize] {
        &self.rowptr
    }

    /// Column of every entry.
    pub fn cols(&self) -> &[u32] {
        &self.col
    }

    /// Value of every entry.
    pub fn vals(&self) -> &[f64] {
        &self.val
    }

    /// Columns and values of row `i`.
    #[inline]
    pub fn row(&self, i: usize) -> (&[u32], &[f64]) {
        let r = self.rowptr[i]..self.rowptr[i + 1];
        (&self.col[r.clone()], &self.val[r])
    }

    /// `(A x)_i`.
    #[inline(always)]
    fn row_dot(&self, i: usize, x: &[f64]) -> f64 {
        self.row_dot_with(&self.val, i, x)
    }

    /// `(A x)_i` with the values `vals` (the matrix's own, or an `f32`
    /// copy) on this matrix's pattern.
    #[inline(always)]
    fn row_dot_with<T: Copy + Into<f64>>(&self, vals: &[T], i: usize, x: &[f64]) -> f64 {
        assert!(i < self.nrows && x.len() >= self.ncols && vals.len() == self.col.len());
        // SAFETY: `Csr::new` checked that `rowptr` is non-decreasing and
        // ends at `col.len()` (`== vals.len()`, asserted) and that every
        // column is below `ncols <= x.len()` (asserted); `i < nrows`.
        unsafe {
            let s = *self.rowptr.get_unchecked(i);
            let e = *self.rowptr.get_unchecked(i + 1);
            let mut acc = 0.0;
            for k in s..e {
                let v: f64 = (*vals.get_unchecked(k)).into();
                acc += v * *x.get_unchecked(*self.col.get_unchecked(k) as usize);
            }
            acc
        }
    }

    /// The diagonal (zero where not stored).
    pub fn diagonal(&self) -> Vec<f64> {
        self.diagonal_with(Exec::Serial)
    }

    /// [`Csr::diagonal`], over the rows in parallel under
    /// [`Exec::Parallel`].
    pub fn diagonal_with(&self, exec: Exec) -> Vec<f64> {
        let d = |i: usize| -> f64 {
            let (c, v) = self.row(i);
            c.iter()
                .zip(v)
                .filter(|(j, _)| **j as usize == i)
                .map(|(_, v)| *v)
                .sum()
        };
        match exec {
            Exec::Serial => (0..self.nrows).map(d).collect(),
            Exec::Parallel => (0..self.nrows).into_par_iter().map(d).collect(),
        }
    }

    /// `y = A x`.
    pub fn spmv(&self, exec: Exec, x: &[f64], y: &mut [f64]) {
        self.spmv_with(exec, &self.val, x, y);
    }

    /// `y = A x` with the values `vals` on this pattern.
    pub fn spmv_with<T: Copy + Into<f64> + Sync>(
        &self,
        exec: Exec,
        vals: &[T],
        x: &[f64],
        y: &mut [f64],
    ) {
        assert_eq!(y.len(), self.nrows);
        blocks1(exec, y, |s, yb| {
            for (l, yi) in yb.iter_mut().enumerate() {
                *yi = self.row_dot_with(vals, s + l, x);
            }
            0.0
        });
    }

    /// `y += A x` with the values `vals` on this pattern.
    pub fn spmv_add_with<T: Copy + Into<f64> + Sync>(
        &self,
        exec: Exec,
        vals: &[T],
        x: &[f64],
        y: &mut [f64],
    ) {
        assert_eq!(y.len(), self.nrows);
        blocks1(exec, y, |s, yb| {
            for (l, yi) in yb.iter_mut().enumerate() {
                *yi += self.row_dot_with(vals, s + l, x);
            }
            0.0
        });
    }

    /// The transpose (a counting sort; rows of the result in increasing
    /// column order of the source).
    pub fn transpose(&self) -> Csr {
        let mut ptr = vec![0usize; self.ncols + 1];
        for &j in &self.col {
            ptr[j as usize + 1] += 1;
        }
        for j in 0..self.ncols {
            ptr[j + 1] += ptr[j];
        }
        let mut fill = ptr.clone();
        let mut col = vec![0u32; self.nnz()];
        let mut val = vec![0.0; self.nnz()];
        for i in 0..self.nrows {
            let (c, v) = self.row(i);
            for (&j, &a) in c.iter().zip(v) {
                let f = &mut fill[j as usize];
                col[*f] = i as u32;
                val[*f] = a;
                *f += 1;
            }
        }
        Csr::new(self.ncols, self.nrows, ptr, col, val)
    }

    /// Concatenates row blocks `(row lengths, columns, values)`.
    fn from_blocks(
        exec: Exec,
        nrows: usize,
        ncols: usize,
        parts: Vec<(Vec<usize>, Vec<u32>, Vec<f64>)>,
    ) -> Csr {
        let nnz: usize = parts.iter().map(|p| p.1.len()).sum();
        let mut rowptr = Vec::with_capacity(nrows + 1);
        rowptr.push(0);
        for (len, _, _) in &parts {
            for &l in len {
                let last = *rowptr.last().expect("non-empty");
                rowptr.push(last + l);
            }
        }
        let mut col = vec![0u32; nnz];
        let mut val = vec![0.0; nnz];
        // each block's slice of the output, then the copies in parallel
        let mut jobs = Vec::with_capacity(parts.len());
        let (mut cr, mut vr) = (&mut col[..], &mut val[..]);
        for (_, c, v) in &parts {
            let (ch, ct) = std::mem::take(&mut cr).split_at_mut(c.len());
            let (vh, vt) = std::mem::take(&mut vr).split_at_mut(v.len());
            jobs.push((ch, vh, c, v));
            (cr, vr) = (ct, vt);
        }
        let copy = |(ch, vh, c, v): (&mut [u32], &mut [f64], &Vec<u32>, &Vec<f64>)| {
            ch.copy_from_slice(c);
            vh.copy_from_slice(v);
        };
        match exec {
            Exec::Serial => jobs.into_iter().for_each(copy),
            Exec::Parallel => jobs.into_par_iter().for_each(copy),
        }
        Csr::new(nrows, ncols, rowptr, col, val)
    }

    /// `A B`, row by row with a marker array (Gustavson), blocks of rows
    /// in parallel under [`Exec::Parallel`]. Columns of a row in order of
    /// first appearance.
    pub fn matmul(&self, exec: Exec, b: &Csr) -> Csr {
        assert_eq!(self.ncols, b.nrows);
        let init = || vec![u32::MAX; b.ncols];
        let parts = map_blocks_with(exec, self.nrows, SPGEMM_BLOCK, init, |mark, rows| {
            // mark[j]: position of column j in the block's output, valid
            // when at or after the current row's start
            let mut len = Vec::with_capacity(rows.len());
            let mut col: Vec<u32> = Vec::with_capacity(rows.len() * 32);
            let mut val: Vec<f64> = Vec::with_capacity(rows.len() * 32);
            for i in rows {
                let start = col.len();
                assert!(start < u32::MAX as usize);
                let (ac, av) = self.row(i);
                for (&k, &a) in ac.iter().zip(av) {
                    let (bc, bv) = b.row(k as usize);
                    for (&j, &bb) in bc.iter().zip(bv) {
                        // SAFETY: `Csr::new` checked `j < b.ncols ==
                        // mark.len()`; a mark at or after `start` was set
                        // in this row and indexes `val`.
                        unsafe {
                            let m = mark.get_unchecked_mut(j as usize);
                            if *m != u32::MAX && *m as usize >= start {
                                *val.get_unchecked_mut(*m as usize) += a * bb;
                            } else {
                                *m = col.len() as u32;
                                col.push(j);
                                val.push(a * bb);
                            }
                        }
                    }
                }
                len.push(col.len() - start);
            }
            for &j in &col {
                mark[j as usize] = u32::MAX;
            }
            (len, col, val)
        });
        Csr::from_blocks(exec, self.nrows, b.ncols, parts)
    }
}

/// `v` in single precision (rounded to nearest).
fn to_f32(exec: Exec, v: &[f64]) -> Vec<f32> {
    match exec {
        Exec::Serial => v.iter().map(|&x| x as f32).collect(),
        Exec::Parallel => v.par_iter().map(|&x| x as f32).collect(),
    }
}

// ---------------------------------------------------------------------
// Setup pieces.

/// Strong neighbours of every row (diagonal excluded):
/// `|a_ij| >= theta sqrt(|a_ii a_jj|)`.
pub fn strength(
    exec: Exec,
    a: &Csr,
    diag: &[f64],
    theta: f64,
    kind: Strength,
) -> (Vec<usize>, Vec<u32>) {
    let negative_only = kind == Strength::Negative;
    let t2 = theta * theta;
    let parts = map_blocks(exec, a.nrows, SPGEMM_BLOCK * 4, |rows| {
        let mut len = Vec::with_capacity(rows.len());
        let mut col = Vec::new();
        for i in rows {
            let start = col.len();
            let (c, v) = a.row(i);
            for (&j, &x) in c.iter().zip(v) {
                if j as usize != i
                    && (!negative_only || x < 0.0)
                    && x * x >= t2 * (diag[i] * diag[j as usize]).abs()
                {
                    col.push(j);
                }
            }
            len.push(col.len() - start);
        }
        (len, col)
    });
    let mut ptr = Vec::with_capacity(a.nrows + 1);
    ptr.push(0);
    let mut adj = Vec::new();
    for (len, c) in parts {
        for l in len {
            ptr.push(ptr.last().expect("non-empty") + l);
        }
        adj.extend_from_slice(&c);
    }
    (ptr, adj)
}

/// Standard aggregation (PyAMG's three passes) of the strength graph.
/// Returns the aggregate of every node ([`u32::MAX`] for nodes without a
/// strong neighbour, left out) and the number of aggregates.
pub fn aggregate(ptr: &[usize], adj: &[u32]) -> (Vec<u32>, usize) {
    let n = ptr.len() - 1;
    const ISOLATED: u32 = NONE - 1;
    let nb = |i: usize| &adj[ptr[i]..ptr[i + 1]];
    let mut agg = vec![NONE; n];
    let mut next = 0u32;
    // Pass 1: roots whose strong neighbourhood is entirely free.
    for i in 0..n {
        if agg[i] != NONE {
            continue;
        }
        let ns = nb(i);
        if ns.is_empty() {
            agg[i] = ISOLATED;
            continue;
        }
        if ns.iter().any(|&j| agg[j as usize] != NONE) {
            continue;
        }
        agg[i] = next;
        for &j in ns {
            agg[j as usize] = next;
        }
        next += 1;
    }
    let pass1 = next;
    // Pass 2: attach leftovers to a pass-1 aggregate of a strong
    // neighbour (decided on the pass-1 state, so no chains).
    let attach: Vec<(usize, u32)> = (0..n)
        .filter(|&i| agg[i] == NONE)
        .filter_map(|i| {
            nb(i)
                .iter()
                .map(|&j| agg[j as usize])
                .find(|&a| a < pass1)
                .map(|a| (i, a))
        })
        .collect();
    for (i, a) in attach {
        agg[i] = a;
    }
    // Pass 3: new aggregates of what is left.
    for i in 0..n {
        if agg[i] != NONE {
            continue;
        }
        agg[i] = next;
        for &j in nb(i) {
            if agg[j as usize] == NONE {
                agg[j as usize] = next;
            }
        }
        next += 1;
    }
    for a in agg.iter_mut() {
        if *a == ISOLATED {
            *a = NONE;
        }
    }
    (agg, next as usize)
}

/// splitmix64, for a reproducible Lanczos start vector.
fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn dot(exec: Exec, a: &[f64], b: &[f64]) -> f64 {
    sum_blocks(exec, a.len(), |r| {
        a[r.clone()].iter().zip(&b[r]).map(|(x, y)| x * y).sum()
    })
}

/// Largest eigenvalue of `D^-1 A` (`inv_diag = D^-1`, positive), by
/// `steps` Lanczos steps on `D^-1/2 A D^-1/2`: the largest Ritz value.
pub fn spectral_radius(exec: Exec, a: &Csr, inv_diag: &[f64], steps: usize) -> f64 {
    spectral_radius_with(exec, a, &a.val, inv_diag, steps)
}

/// [`spectral_radius`] with the values `vals` on `a`'s pattern (the
/// single-precision copy: an estimate needs no more).
fn spectral_radius_with<T: Copy + Into<f64> + Sync>(
    exec: Exec,
    a: &Csr,
    vals: &[T],
    inv_diag: &[f64],
    steps: usize,
) -> f64 {
    let n = a.nrows;
    if n == 0 {
        return 1.0;
    }
    let s: Vec<f64> = inv_diag.iter().map(|d| d.sqrt()).collect();
    let mut v: Vec<f64> = (0..n)
        .map(|i| (splitmix(i as u64) >> 11) as f64 / (1u64 << 53) as f64 - 0.5)
        .collect();
    let nv = dot(exec, &v, &v).sqrt();
    v.iter_mut().for_each(|x| *x /= nv);
    let mut v_prev = vec![0.0; n];
    let mut u = vec![0.0; n];
    let mut w = vec![0.0; n];
    let (mut alphas, mut betas) = (Vec::new(), Vec::new());
    let mut beta_prev = 0.0;
    for _ in 0..steps.max(1) {
        blocks1(exec, &mut u, |st, ub| {
            for (l, ui) in ub.iter_mut().enumerate() {
                *ui = s[st + l] * v[st + l];
            }
            0.0
        });
        a.spmv_with(exec, vals, &u, &mut w);
        blocks1(exec, &mut w, |st, wb| {
            for (l, wi) in wb.iter_mut().enumerate() {
                *wi *= s[st + l];
            }
            0.0
        });
        let alpha = dot(exec, &w, &v);
        blocks1(exec, &mut w, |st, wb| {
            for (l, wi) in wb.iter_mut().enumerate() {
                *wi -= alpha * v[st + l] + beta_prev * v_prev[st + l];
            }
            0.0
        });
        let beta = dot(exec, &w, &w).sqrt();
        alphas.push(alpha);
        if beta.is_nan() || beta <= 1e-12 * alpha.abs() {
            break;
        }
        betas.push(beta);
        std::mem::swap(&mut v_prev, &mut v);
        blocks1(exec, &mut v, |st, vb| {
            for (l, vi) in vb.iter_mut().enumerate() {
                *vi = w[st + l] / beta;
            }
            0.0
        });
        beta_prev = beta;
    }
    let k = alphas.len();
    let mut t = nalgebra::DMatrix::<f64>::zeros(k, k);
    for i in 0..k {
        t[(i, i)] = alphas[i];
        if i + 1 < k {
            t[(i, i + 1)] = betas[i];
            t[(i + 1, i)] = betas[i];
        }
    }
    let ev = nalgebra::SymmetricEigen::new(t).eigenvalues;
    ev.iter().fold(0.0f64, |m, &x| m.max(x))
}

/// The smoothed prolongator `P = (I - omega D^-1 A) T` of the tentative
/// `T` (one entry `t[i]` per aggregated row `i`, in column `agg[i]`).
fn smoothed_prolongator(
    exec: Exec,
    a: &Csr,
    inv_diag: &[f64],
    agg: &[u32],
    t: &[f64],
    nagg: usize,
    omega: f64,
) -> Csr {
    let init = || vec![usize::MAX; nagg];
    let parts = map_blocks_with(exec, a.nrows, SPGEMM_BLOCK, init, |mark, rows| {
        let mut len = Vec::with_capacity(rows.len());
        let mut col: Vec<u32> = Vec::new();
        let mut val: Vec<f64> = Vec::new();
        for i in rows {
            let start = col.len();
            if agg[i] != NONE {
                mark[agg[i] as usize] = col.len();
                col.push(agg[i]);
                val.push(t[i]);
            }
            let w = omega * inv_diag[i];
            let (c, v) = a.row(i);
            for (&j, &x) in c.iter().zip(v) {
                let g = agg[j as usize];
                if g == NONE {
                    continue;
                }
                let add = -w * x * t[j as usize];
                let m = &mut mark[g as usize];
                if *m == usize::MAX || *m < start {
                    *m = col.len();
                    col.push(g);
                    val.push(add);
                } else {
                    val[*m] += add;
                }
            }
            len.push(col.len() - start);
        }
        for &g in &col {
            mark[g as usize] = usize::MAX;
        }
        (len, col, val)
    });
    Csr::from_blocks(exec, a.nrows, nagg, parts)
}

// ---------------------------------------------------------------------
// Hierarchy.

/// One level above the coarsest: its operator, smoother data and the
/// transfer to the next level.
#[derive(Debug, Clone)]
struct Level {
    a: Csr,
    /// `a`'s values in single precision, for the smoother and residuals:
    /// the V-cycle is a preconditioner, a third less memory traffic
    /// matters more than the last digits. (Still a fixed symmetric
    /// operator, so CG keeps its guarantees.)
    v32: Vec<f32>,
    inv_diag: Vec<f64>,
    /// Prolongator to this level from the next.
    p: Csr,
    /// `P^T`.
    r: Csr,
    /// `P`'s and `P^T`'s values in single precision (for the cycle).
    p32: Vec<f32>,
    r32: Vec<f32>,
    /// Smoother: first scale `s0` (`d = s0 D^-1 r`), then per step the
    /// coefficients `(c1, c2)` of `d = c1 d + c2 D^-1 r`.
    s0: f64,
    steps: Vec<(f64, f64)>,
}

/// The coarsest level's solver.
#[derive(Debug, Clone)]
enum Coarse {
    /// Dense Cholesky factor.
    Cholesky(nalgebra::Cholesky<f64, nalgebra::Dyn>),
    /// Nothing to solve.
    Empty,
}

/// A smoothed-aggregation hierarchy, usable as a preconditioner.
#[derive(Debug, Clone)]
pub struct Hierarchy {
    levels: Vec<Level>,
    coarse: Coarse,
    /// The coarsest operator.
    coarse_a: Csr,
    settings: AmgSettings,
}

/// One level of a [`Hierarchy`] above the coarsest, borrowed (what the
/// GPU backend uploads).
#[derive(Debug, Clone, Copy)]
pub struct LevelData<'a> {
    /// The level's operator (double precision; only the finest is used
    /// in double, by CG's product).
    pub a: &'a Csr,
    /// `a`'s values in single precision (smoother, residuals).
    pub a32: &'a [f32],
    /// `1 / a_ii`.
    pub inv_diag: &'a [f64],
    /// Prolongator from the next level.
    pub p: &'a Csr,
    /// `p`'s values in single precision.
    pub p32: &'a [f32],
    /// Restriction `P^T`.
    pub r: &'a Csr,
    /// `r`'s values in single precision.
    pub r32: &'a [f32],
    /// Smoother: `d = s0 D^-1 r` first.
    pub s0: f64,
    /// Smoother steps `d = c1 d + c2 D^-1 r`.
    pub steps: &'a [(f64, f64)],
}

/// Work vectors of one level.
#[derive(Debug, Clone, Default)]
struct Work {
    /// Right-hand side of this level (filled by restriction; unused on
    /// the finest level, whose right-hand side is the caller's).
    b: Vec<f64>,
    /// Correction of this level (the caller's on the finest level).
    x: Vec<f64>,
    r: Vec<f64>,
    d: Vec<f64>,
    d2: Vec<f64>,
}

impl Hierarchy {
    /// Builds the hierarchy of `a` (symmetric positive definite) with
    /// near-null-space vector `b`.
    pub fn new(
        exec: Exec,
        a: Csr,
        b: Vec<f64>,
        settings: &AmgSettings,
    ) -> Result<Self, SolveError> {
        let mut levels = Vec::new();
        let mut a = a;
        let mut bvec = b;
        loop {
            let n = a.nrows;
            if n <= settings.max_coarse || levels.len() + 1 >= settings.max_levels {
                break;
            }
            let diag = a.diagonal_with(exec);
            if let Some(i) = diag.iter().position(|d| d.is_nan() || *d <= 0.0) {
                return Err(SolveError::NotPositiveDefinite {
                    method: "AMG setup",
                    step: i,
                    n,
                });
            }
            let (sp, sj) = {
                let _s = tracing::info_span!("amg_strength", n).entered();
                strength(exec, &a, &diag, settings.theta, settings.strength)
            };
            let (agg, nagg) = {
                let _s = tracing::info_span!("amg_aggregate", n).entered();
                aggregate(&sp, &sj)
            };
            if nagg == 0 || nagg >= n {
                break;
            }
            let inv_diag: Vec<f64> = diag.iter().map(|d| 1.0 / d).collect();
            let v32 = to_f32(exec, &a.val);
            let rho = {
                let _s = tracing::info_span!("amg_lanczos", n).entered();
                spectral_radius_with(exec, &a, &v32, &inv_diag, settings.lanczos_steps)
            };
            // Tentative prolongator from `bvec`.
            let mut norm2 = vec![0.0; nagg];
            for (i, &g) in agg.iter().enumerate() {
                if g != NONE {
                    norm2[g as usize] += bvec[i] * bvec[i];
                }
            }
            let norms: Vec<f64> = norm2.iter().map(|v| v.sqrt()).collect();
            let t: Vec<f64> = agg
                .iter()
                .enumerate()
                .map(|(i, &g)| {
                    if g == NONE || norms[g as usize] == 0.0 {
                        0.0
                    } else {
                        bvec[i] / norms[g as usize]
                    }
                })
                .collect();
            let omega = settings.omega_scale / rho;
            let p = {
                let _s = tracing::info_span!("amg_prolongator", n).entered();
                smoothed_prolongator(exec, &a, &inv_diag, &agg, &t, nagg, omega)
            };
            let r = p.transpose();
            let ac = {
                let _s = tracing::info_span!("amg_galerkin", n, nc = nagg).entered();
                let ap = a.matmul(exec, &p);
                r.matmul(exec, &ap)
            };
            let (s0, steps) = smoother_coefficients(settings, rho);
            let p32 = to_f32(exec, &p.val);
            let r32 = to_f32(exec, &r.val);
            levels.push(Level {
                a,
                v32,
                p32,
                r32,
                inv_diag,
                p,
                r,
                s0,
                steps,
            });
            a = ac;
            bvec = norms;
        }
        let n = a.nrows;
        let coarse = if n == 0 {
            Coarse::Empty
        } else {
            let _s = tracing::info_span!("amg_coarse_cholesky", n).entered();
            let mut m = nalgebra::DMatrix::<f64>::zeros(n, n);
            for i in 0..n {
                let (c, v) = a.row(i);
                for (&j, &x) in c.iter().zip(v) {
                    m[(i, j as usize)] += x;
                }
            }
            // symmetrise the rounding of the Galerkin products
            let m = (&m + m.transpose()) * 0.5;
            match nalgebra::Cholesky::new(m) {
                Some(c) => Coarse::Cholesky(c),
                None => {
                    return Err(SolveError::NotPositiveDefinite {
                        method: "AMG coarsest-level Cholesky",
                        step: 0,
                        n,
                    });
                }
            }
        };
        Ok(Self {
            levels,
            coarse,
            coarse_a: a,
            settings: *settings,
        })
    }

    /// The finest operator (the matrix the hierarchy was built for).
    pub fn fine(&self) -> &Csr {
        self.levels.first().map_or(&self.coarse_a, |l| &l.a)
    }

    /// Number of levels, the coarsest included.
    pub fn levels(&self) -> usize {
        self.levels.len() + 1
    }

    /// Rows of every level, finest first.
    pub fn sizes(&self) -> Vec<usize> {
        let mut v: Vec<usize> = self.levels.iter().map(|l| l.a.nrows).collect();
        v.push(self.coarse_a.nrows);
        v
    }

    /// Stored entries of all levels over those of the finest.
    pub fn operator_complexity(&self) -> f64 {
        let total: usize =
            self.levels.iter().map(|l| l.a.nnz()).sum::<usize>() + self.coarse_a.nnz();
        let fine = self.fine().nnz();
        if fine == 0 {
            1.0
        } else {
            total as f64 / fine as f64
        }
    }

    /// The levels above the coarsest, finest first, as the GPU backend
    /// uploads them.
    pub fn level_data(&self) -> Vec<LevelData<'_>> {
        self.levels
            .iter()
            .map(|l| LevelData {
                a: &l.a,
                a32: &l.v32,
                inv_diag: &l.inv_diag,
                p: &l.p,
                p32: &l.p32,
                r: &l.r,
                r32: &l.r32,
                s0: l.s0,
                steps: &l.steps,
            })
            .collect()
    }

    /// The settings the hierarchy was built with.
    pub fn settings(&self) -> &AmgSettings {
        &self.settings
    }

    /// The coarsest operator's inverse, dense and row-major (`n x n`, `n`
    /// its rows; empty when there is nothing to solve), from the Cholesky
    /// factor the host's cycle uses.
    pub fn coarse_inverse(&self) -> Vec<f64> {
        match &self.coarse {
            Coarse::Cholesky(c) => {
                let inv = c.inverse();
                let n = inv.nrows();
                let mut out = Vec::with_capacity(n * n);
                for i in 0..n {
                    for j in 0..n {
                        out.push(inv[(i, j)]);
                    }
                }
                out
            }
            Coarse::Empty => Vec::new(),
        }
    }

    /// `z = M^-1 r`, one V-cycle with a zero initial guess (the
    /// preconditioner as CG applies it).
    pub fn precondition(&self, exec: Exec, r: &[f64]) -> Vec<f64> {
        let mut w = self.work();
        let mut z = vec![0.0; r.len()];
        self.apply(exec, r, &mut z, &mut w);
        z
    }

    fn work(&self) -> Vec<Work> {
        let mut w: Vec<Work> = self
            .levels
            .iter()
            .enumerate()
            .map(|(k, l)| {
                let n = l.a.nrows;
                // the finest level's b and x are the caller's
                let nbx = if k == 0 { 0 } else { n };
                Work {
                    b: vec![0.0; nbx],
                    x: vec![0.0; nbx],
                    r: vec![0.0; n],
                    d: vec![0.0; n],
                    d2: vec![0.0; n],
                }
            })
            .collect();
        let nc = if self.levels.is_empty() {
            0
        } else {
            self.coarse_a.nrows
        };
        w.push(Work {
            b: vec![0.0; nc],
            x: vec![0.0; nc],
            ..Default::default()
        });
        w
    }

    fn coarse_solve(&self, b: &[f64], x: &mut [f64]) {
        match &self.coarse {
            Coarse::Cholesky(c) => {
                let sol = c.solve(&nalgebra::DVector::from_column_slice(b));
                x.copy_from_slice(sol.as_slice());
            }
            Coarse::Empty => {}
        }
    }

    /// One V-cycle from level `l` with a zero initial guess: `x = M_l^-1 b`
    /// (`w[k]` is the work of level `l + k`).
    fn vcycle(&self, exec: Exec, l: usize, b: &[f64], x: &mut [f64], w: &mut [Work]) {
        if l == self.levels.len() {
            self.coarse_solve(b, x);
            return;
        }
        let lev = &self.levels[l];
        let (here, below) = w.split_at_mut(1);
        let wk = &mut here[0];
        let (pre, post) = (self.settings.pre_sweeps, self.settings.post_sweeps);
        // Pre-smoothing from x = 0, leaving r = b - A x.
        for k in 0..pre {
            let start = if k == 0 { Start::Zero } else { Start::Residual };
            sweep(exec, lev, b, x, wk, start, true);
        }
        if pre == 0 {
            x.iter_mut().for_each(|v| *v = 0.0);
            wk.r.copy_from_slice(b);
        }
        // Coarse correction.
        let (bc, xc) = {
            let c = &mut below[0];
            (std::mem::take(&mut c.b), std::mem::take(&mut c.x))
        };
        let (mut bc, mut xc) = (bc, xc);
        lev.r.spmv_with(exec, &lev.r32, &wk.r, &mut bc);
        self.vcycle(exec, l + 1, &bc, &mut xc, below);
        lev.p.spmv_add_with(exec, &lev.p32, &xc, x);
        below[0].b = bc;
        below[0].x = xc;
        // Post-smoothing.
        for k in 0..post {
            let start = if k == 0 {
                Start::Compute
            } else {
                Start::Residual
            };
            sweep(exec, lev, b, x, wk, start, k + 1 < post);
        }
    }

    /// `z = M^-1 r`: one V-cycle with a zero initial guess.
    fn apply(&self, exec: Exec, r: &[f64], z: &mut [f64], w: &mut [Work]) {
        self.vcycle(exec, 0, r, z, w);
    }
}

/// How a smoothing sweep starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// From `x = 0` (so `r = b`).
    Zero,
    /// From the residual `r = b - A x` in the work vector.
    Residual,
    /// Compute `r = b - A x` first.
    Compute,
}

/// Chebyshev (or Jacobi) coefficients for [`smooth`].
fn smoother_coefficients(s: &AmgSettings, rho: f64) -> (f64, Vec<(f64, f64)>) {
    let deg = s.degree.max(1);
    match s.smoother {
        Smoother::Jacobi => {
            let w = 4.0 / 3.0 / rho;
            (w, vec![(0.0, w); deg - 1])
        }
        Smoother::Chebyshev => {
            let hi = 1.1 * rho;
            let lo = hi / s.cheb_ratio;
            let theta = 0.5 * (hi + lo);
            let delta = 0.5 * (hi - lo);
            let sigma = theta / delta;
            let mut rho_old = 1.0 / sigma;
            let mut steps = Vec::with_capacity(deg - 1);
            for _ in 1..deg {
                let rho_new = 1.0 / (2.0 * sigma - rho_old);
                steps.push((rho_new * rho_old, 2.0 * rho_new / delta));
                rho_old = rho_new;
            }
            (1.0 / theta, steps)
        }
    }
}

/// One sweep of the polynomial smoother on `A x = b` (`A` in single
/// precision): `d = s0 D^-1 r`, then per step `x += d`, `r -= A d`,
/// `d = c1 d + c2 D^-1 r` (one fused pass each), last `x += d` and, with
/// `keep_r`, `r -= A d` (otherwise `r` is left stale).
fn sweep(
    exec: Exec,
    lev: &Level,
    b: &[f64],
    x: &mut [f64],
    wk: &mut Work,
    start: Start,
    keep_r: bool,
) {
    let (a, v) = (&lev.a, &lev.v32);
    let dinv = &lev.inv_diag;
    let s0 = lev.s0;
    assert!(b.len() == a.nrows && x.len() == a.nrows && dinv.len() == a.nrows);
    match start {
        Start::Zero => blocks3(exec, x, &mut wk.r, &mut wk.d, |s, xb, rb, db| {
            for l in 0..xb.len() {
                let i = s + l;
                xb[l] = 0.0;
                rb[l] = b[i];
                db[l] = s0 * dinv[i] * b[i];
            }
        }),
        Start::Residual => {
            let r = &wk.r;
            blocks1(exec, &mut wk.d, |s, db| {
                for (l, di) in db.iter_mut().enumerate() {
                    *di = s0 * dinv[s + l] * r[s + l];
                }
                0.0
            });
        }
        Start::Compute => {
            let xr = &*x;
            blocks2(exec, &mut wk.r, &mut wk.d, |s, rb, db| {
                for l in 0..rb.len() {
                    let i = s + l;
                    let ri = b[i] - a.row_dot_with(v, i, xr);
                    rb[l] = ri;
                    db[l] = s0 * dinv[i] * ri;
                }
            });
        }
    }
    for &(c1, c2) in &lev.steps {
        let d = &wk.d;
        blocks3(exec, x, &mut wk.r, &mut wk.d2, |s, xb, rb, db| {
            for l in 0..xb.len() {
                let i = s + l;
                let q = a.row_dot_with(v, i, d);
                xb[l] += d[i];
                let ri = rb[l] - q;
                rb[l] = ri;
                db[l] = c1 * d[i] + c2 * dinv[i] * ri;
            }
        });
        std::mem::swap(&mut wk.d, &mut wk.d2);
    }
    let d = &wk.d;
    if keep_r {
        blocks2(exec, x, &mut wk.r, |s, xb, rb| {
            for l in 0..xb.len() {
                let i = s + l;
                xb[l] += d[i];
                rb[l] -= a.row_dot_with(v, i, d);
            }
        });
    } else {
        blocks1(exec, x, |s, xb| {
            for (l, xi) in xb.iter_mut().enumerate() {
                *xi += d[s + l];
            }
            0.0
        });
    }
}

// ---------------------------------------------------------------------
// AMG-CG.

/// What [`amg_pcg`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct AmgCgOutcome {
    /// `u~` on the coupled rows.
    pub x: Vec<f64>,
    /// CG iterations (V-cycles after the first).
    pub iterations: usize,
    /// Whether the stopping rule was met within the cap.
    pub converged: bool,
    /// Final `max(||r~|| / ||f~||, ||D^-1 r~|| / ||f||)` (recurrence).
    pub residual: f64,
}

/// The unscaled residual of [`amg_pcg`]: `||r|| = ||W^1/2 r~||` with
/// `W = D^-2` on the CG rows, relative to `||f||`, and the true relative
/// residual of the original system for a CG solution.
pub struct Unscaled<'a> {
    /// `1 / d_i^2` of every CG row.
    pub weights: &'a [f64],
    /// `||f||` over all rows.
    pub f_norm: f64,
    /// `||f - K u|| / ||f||` for the CG solution `x` (`u = D x`).
    pub true_residual: &'a dyn Fn(&[f64]) -> f64,
}

/// Corrections of [`amg_pcg`]'s stopping (restarts from the true
/// residual, lowered targets) before it gives up.
pub const MAX_RESTARTS: usize = 3;

/// What [`ResidualCheck::judge`] decides about a checked residual.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckOutcome {
    /// Converged (or at the rounding floor): stop.
    Accept,
    /// Still above `rtol` after [`MAX_RESTARTS`] corrections: stop, not
    /// converged.
    GiveUp,
    /// Restart from the recomputed residual with the lowered
    /// [`ResidualCheck::target`].
    Restart,
}

/// The stopping checks of AMG-CG, shared by the host loop ([`amg_pcg`])
/// and the device loop (`gpu::amg`): once the recurrence residual meets
/// [`ResidualCheck::target`], the recomputed residual `t` is judged.
#[derive(Debug, Clone)]
pub struct ResidualCheck {
    rtol: f64,
    target: f64,
    restarts: usize,
    last: Option<f64>,
}

impl ResidualCheck {
    /// Checks against `rtol`; the first target is `rtol` itself.
    pub fn new(rtol: f64) -> Self {
        Self {
            rtol,
            target: rtol,
            restarts: 0,
            last: None,
        }
    }

    /// The recurrence residual's current target.
    pub fn target(&self) -> f64 {
        self.target
    }

    /// The last checked residual, if any.
    pub fn last(&self) -> Option<f64> {
        self.last
    }

    /// Judges the checked residual `t`: below `rtol`, accept; not halved
    /// since the last check, accept (the rounding floor of the residual
    /// in double precision is reached); after [`MAX_RESTARTS`]
    /// corrections, give up; else lower the target by the observed ratio
    /// (and a half) and restart.
    pub fn judge(&mut self, t: f64) -> CheckOutcome {
        let prev = self.last.replace(t);
        if t < self.rtol || prev.is_some_and(|p| t > 0.5 * p) {
            return CheckOutcome::Accept;
        }
        if self.restarts == MAX_RESTARTS {
            return CheckOutcome::GiveUp;
        }
        self.restarts += 1;
        self.target *= 0.5 * self.rtol / t;
        CheckOutcome::Restart
    }
}

/// CG preconditioned by one V-cycle of `h` on the equilibrated system
/// `A x = b` (`A = h.fine()`), `x0 = 0`. Stops when the recurrence
/// residual satisfies `||r~|| < rtol ||f~||` (`b_norm = ||f~||` over all
/// rows, the rule of [`crate::solver::pcg`]) and, with `unscaled`, also
/// `||D^-1 r~|| < rtol ||f||`: the same residual measured on the original
/// system `K u = f`, so that the true relative residual lands at `rtol`
/// (not `rtol` times the spread of the scaling). The residual is then
/// checked: recomputed as `b - A x` (rounding lets the recurrence drift
/// below it) and, with `unscaled`, as the true residual of the original
/// system. Above `rtol`, the recurrence target is lowered by the observed
/// ratio (and a half) and CG restarts from the recomputed residual, at
/// most [`MAX_RESTARTS`] times. A correction that does not halve the
/// checked residual means its rounding floor in double precision is
/// reached (about `1e-10` relative for `f - K u` on a 1.3M-node venturi):
/// the result is accepted there and that residual reported.
/// `progress(iteration, relative_residual)` is called every iteration.
pub fn amg_pcg(
    exec: Exec,
    h: &Hierarchy,
    b: &[f64],
    b_norm: f64,
    unscaled: Option<Unscaled<'_>>,
    settings: &CgSettings,
    progress: &mut dyn FnMut(usize, f64),
) -> Result<AmgCgOutcome, SolveError> {
    let a = h.fine();
    let m = a.nrows;
    let mut x = vec![0.0; m];
    if b_norm == 0.0 || m == 0 {
        return Ok(AmgCgOutcome {
            x,
            iterations: 0,
            converged: true,
            residual: 0.0,
        });
    }
    let ones;
    let (wts, f_norm, check) = match unscaled {
        Some(u) if u.f_norm > 0.0 => (u.weights, u.f_norm, Some(u.true_residual)),
        _ => {
            ones = vec![1.0; m];
            (&ones[..], b_norm, None)
        }
    };
    let mut checker = ResidualCheck::new(settings.rtol);
    assert_eq!(wts.len(), m);
    let mut w = h.work();
    let mut r = b.to_vec();
    let mut z = vec![0.0; m];
    let mut q = vec![0.0; m];
    let rel = |rr: f64, rw: f64| (rr.sqrt() / b_norm).max(rw.sqrt() / f_norm);
    let mut rr = dot(exec, &r, &r);
    let mut rw = sum_blocks(exec, m, |rg| rg.map(|i| r[i] * r[i] * wts[i]).sum());
    h.apply(exec, &r, &mut z, &mut w);
    let mut p = z.clone();
    let mut rz = dot(exec, &r, &z);
    let mut it = 0;
    // The true residual `b - A x` with its two norms.
    let true_residual = |x: &[f64], r: &mut [f64]| -> (f64, f64) {
        let parts = map_blocks_mut(exec, r, |s, rb| {
            let (mut a2, mut w2) = (0.0, 0.0);
            for (l, ri) in rb.iter_mut().enumerate() {
                let i = s + l;
                let v = b[i] - a.row_dot(i, x);
                *ri = v;
                a2 += v * v;
                w2 += v * v * wts[i];
            }
            (a2, w2)
        });
        parts
            .iter()
            .fold((0.0, 0.0), |acc, p| (acc.0 + p.0, acc.1 + p.1))
    };
    let converged = loop {
        if rel(rr, rw) < checker.target() {
            if it == 0 {
                break true;
            }
            // Check: the recomputed residual `b - A x` (rounding lets the
            // recurrence drift below it), and the true residual of the
            // original system.
            let mut rt = vec![0.0; m];
            let (tr, tw) = true_residual(&x, &mut rt);
            let mut t = rel(tr, tw);
            if let Some(c) = check
                && t < settings.rtol
            {
                t = t.max(c(&x));
            }
            match checker.judge(t) {
                CheckOutcome::Accept => break true,
                CheckOutcome::GiveUp => break false,
                CheckOutcome::Restart => {}
            }
            // Correct: restart from the recomputed residual.
            r = rt;
            (rr, rw) = (tr, tw);
            h.apply(exec, &r, &mut z, &mut w);
            rz = dot(exec, &r, &z);
            p.copy_from_slice(&z);
            continue;
        }
        if it >= settings.max_iter {
            break false;
        }
        // q = A p, p.q
        let pq = {
            let pr = &p;
            blocks1(exec, &mut q, |s, qb| {
                let mut acc = 0.0;
                for (l, qi) in qb.iter_mut().enumerate() {
                    let v = a.row_dot(s + l, pr);
                    *qi = v;
                    acc += v * pr[s + l];
                }
                acc
            })
        };
        if pq.is_nan() || pq <= 0.0 {
            return Err(SolveError::Breakdown {
                iteration: it,
                pap: pq,
            });
        }
        let alpha = rz / pq;
        // x += alpha p; r -= alpha q; r.r and r.W.r
        {
            let (pr, qr) = (&p, &q);
            let parts = blocks2(exec, &mut x, &mut r, |s, xb, rb| {
                let (mut a2, mut w2) = (0.0, 0.0);
                for l in 0..xb.len() {
                    xb[l] += alpha * pr[s + l];
                    let v = rb[l] - alpha * qr[s + l];
                    rb[l] = v;
                    a2 += v * v;
                    w2 += v * v * wts[s + l];
                }
                (a2, w2)
            });
            (rr, rw) = parts
                .iter()
                .fold((0.0, 0.0), |acc, p| (acc.0 + p.0, acc.1 + p.1));
        }
        it += 1;
        progress(it, rel(rr, rw));
        if rel(rr, rw) < checker.target() {
            continue;
        }
        h.apply(exec, &r, &mut z, &mut w);
        let rz_new = dot(exec, &r, &z);
        let beta = rz_new / rz;
        rz = rz_new;
        {
            let zr = &z;
            blocks1(exec, &mut p, |s, pb| {
                for (l, pi) in pb.iter_mut().enumerate() {
                    *pi = zr[s + l] + beta * *pi;
                }
                0.0
            });
        }
    };
    Ok(AmgCgOutcome {
        x,
        iterations: it,
        converged,
        residual: checker.last().unwrap_or(rel(rr, rw)),
    })
}

/// The equilibrated, decoupled, renumbered system AMG-CG runs on, as a
/// full CSR: the rows and scaling of
/// [`crate::solver::EquilibratedSystem`] (`d = 1 /
/// sqrt(|diag K|)`, rows without off-diagonal entries solved directly),
/// numbered by reverse Cuthill-McKee from a pseudo-peripheral node (one
/// breadth-first search each way per component, neighbours in index
/// order), built in one gather (parallel under [`Exec::Parallel`]).
#[derive(Debug, Clone)]
pub struct AmgSystem {
    /// `D K D` on the coupled rows, renumbered, both triangles.
    pub a: Csr,
    /// `D f` on the coupled rows.
    pub b: Vec<f64>,
    /// `d` of every row of the original system.
    pub d: Vec<f64>,
    /// Original index of each coupled row.
    pub rows: Vec<u32>,
    /// The decoupled rows' solution (zero on coupled rows).
    pub direct: Vec<f64>,
    /// `||D f||` over all rows.
    pub b_norm: f64,
    /// `||f||`.
    pub f_norm: f64,
}

/// Breadth-first search from `start` over the unseen nodes of the graph
/// `(ptr, adj)` (neighbours in stored order); marks them seen, appends
/// them to `order`, returns the last node visited.
fn bfs(start: usize, ptr: &[u32], adj: &[u32], seen: &mut [bool], order: &mut Vec<u32>) -> usize {
    let begin = order.len();
    seen[start] = true;
    order.push(start as u32);
    let mut head = begin;
    while head < order.len() {
        let v = order[head] as usize;
        head += 1;
        for &j in &adj[ptr[v] as usize..ptr[v + 1] as usize] {
            if !seen[j as usize] {
                seen[j as usize] = true;
                order.push(j);
            }
        }
    }
    *order.last().expect("non-empty") as usize
}

impl AmgSystem {
    /// Equilibrates `K u = f`, splits off decoupled rows, renumbers.
    pub fn new(exec: Exec, k: &SymCsr, f: &[f64]) -> Result<Self, SolveError> {
        let (fp, fc, fv) = k.to_full();
        Self::from_full(exec, k.n, &fp, &fc, &fv, f)
    }

    /// [`AmgSystem::new`] from the full (both triangles) CSR `(fp, fc,
    /// fv)` of `K` (sorted columns, every diagonal stored), as the GPU
    /// backend downloads it.
    pub fn from_full(
        exec: Exec,
        n: usize,
        fp: &[u32],
        fc: &[u32],
        fv: &[f64],
        f: &[f64],
    ) -> Result<Self, SolveError> {
        assert!(fp.len() == n + 1 && f.len() == n);
        let diag_of = |i: usize| {
            let r = fp[i] as usize..fp[i + 1] as usize;
            fc[r.clone()]
                .binary_search(&(i as u32))
                .map_or(0.0, |k| fv[r.start + k])
        };
        let kdiag: Vec<f64> = match exec {
            Exec::Serial => (0..n).map(diag_of).collect(),
            Exec::Parallel => (0..n).into_par_iter().map(diag_of).collect(),
        };
        let mut d = vec![0.0; n];
        for (i, di) in d.iter_mut().enumerate() {
            let a = kdiag[i].abs();
            if a == 0.0 {
                return Err(SolveError::ZeroDiagonal(i));
            }
            if !a.is_finite() {
                return Err(SolveError::NonFinite);
            }
            *di = 1.0 / a.sqrt();
        }
        // coupled = has an off-diagonal entry
        let coupled: Vec<bool> = (0..n).map(|i| fp[i + 1] - fp[i] > 1).collect();
        // Reverse Cuthill-McKee over the coupled rows: per component, a
        // BFS from its first node finds a far node, a BFS from there is
        // the order.
        let mut seen: Vec<bool> = coupled.iter().map(|c| !c).collect();
        let mut scratch_seen = seen.clone();
        let mut order: Vec<u32> = Vec::with_capacity(n);
        let mut scratch = Vec::new();
        for s in 0..n {
            if seen[s] {
                continue;
            }
            scratch.clear();
            let far = bfs(s, fp, fc, &mut scratch_seen, &mut scratch);
            bfs(far, fp, fc, &mut seen, &mut order);
        }
        order.reverse();
        let m = order.len();
        let mut inv = vec![u32::MAX; n];
        for (new, &old) in order.iter().enumerate() {
            inv[old as usize] = new as u32;
        }
        // Gather the renumbered, scaled rows.
        let mut rowptr = Vec::with_capacity(m + 1);
        rowptr.push(0usize);
        for &o in &order {
            let o = o as usize;
            rowptr.push(rowptr.last().expect("non-empty") + (fp[o + 1] - fp[o]) as usize);
        }
        let nnz = rowptr[m];
        let mut col = vec![0u32; nnz];
        let mut val = vec![0.0; nnz];
        let finite = fill_row_blocks(exec, &rowptr, &mut col, &mut val, |rows, cb, vb| {
            let mut k = 0;
            let mut finite = true;
            for r in rows {
                let o = order[r] as usize;
                for kk in fp[o] as usize..fp[o + 1] as usize {
                    let j = fc[kk] as usize;
                    cb[k] = inv[j];
                    let v = d[o] * fv[kk] * d[j];
                    finite &= v.is_finite();
                    vb[k] = v;
                    k += 1;
                }
            }
            finite
        });
        let a = Csr::new(m, m, rowptr, col, val);
        if !finite || f.iter().any(|v| !v.is_finite()) {
            return Err(SolveError::NonFinite);
        }
        let b: Vec<f64> = order
            .iter()
            .map(|&o| d[o as usize] * f[o as usize])
            .collect();
        let mut direct = vec![0.0; n];
        for i in 0..n {
            if !coupled[i] {
                direct[i] = f[i] / kdiag[i];
            }
        }
        let b_norm = (0..n).map(|i| (d[i] * f[i]).powi(2)).sum::<f64>().sqrt();
        let f_norm = f.iter().map(|v| v * v).sum::<f64>().sqrt();
        Ok(Self {
            a,
            b,
            d,
            rows: order,
            direct,
            b_norm,
            f_norm,
        })
    }

    /// Rows solved directly.
    pub fn decoupled(&self) -> usize {
        self.d.len() - self.rows.len()
    }

    /// The near-null-space vector of the coupled rows: `1 / d_i`
    /// (`= sqrt(|K_ii|)`).
    pub fn near_null_space(&self) -> Vec<f64> {
        self.rows
            .iter()
            .map(|&i| 1.0 / self.d[i as usize])
            .collect()
    }

    /// `1 / d_i^2` of the coupled rows (weights of the unscaled residual).
    pub fn weights(&self) -> Vec<f64> {
        self.rows
            .iter()
            .map(|&i| {
                let d = self.d[i as usize];
                1.0 / (d * d)
            })
            .collect()
    }

    /// `u = D u~` in the original numbering, with the decoupled rows.
    pub fn unscale(&self, xt: &[f64]) -> Vec<f64> {
        let mut u = self.direct.clone();
        for (k, &i) in self.rows.iter().enumerate() {
            u[i as usize] = self.d[i as usize] * xt[k];
        }
        u
    }
}

/// Full AMG-CG solve of `K u = f`: equilibrate (and decouple, renumber),
/// build the hierarchy, CG with the V-cycle ([`amg_pcg`], with the
/// unscaled residual check), unscale. `setup_seconds` covers the
/// equilibration and the hierarchy, `solve_seconds` the CG iteration.
pub fn solve_amg_cg(
    k: &SymCsr,
    f: &[f64],
    cg: &CgSettings,
    amg: &AmgSettings,
    exec: Exec,
    progress: &mut dyn FnMut(usize, f64),
) -> Result<(Vec<f64>, SolveStats), SolveError> {
    let t0 = Instant::now();
    let (sys, h) = {
        let _s = tracing::info_span!("amg_setup", n = k.n).entered();
        let mut sys = {
            let _s = tracing::info_span!("amg_equilibrate").entered();
            AmgSystem::new(exec, k, f)?
        };
        let a = std::mem::take(&mut sys.a);
        let h = Hierarchy::new(exec, a, sys.near_null_space(), amg)?;
        (sys, h)
    };
    let setup = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let weights = sys.weights();
    let check = |x: &[f64]| true_relative_residual(k, f, &sys.unscale(x));
    let out = {
        let _s = tracing::info_span!("amg_cg").entered();
        amg_pcg(
            exec,
            &h,
            &sys.b,
            sys.b_norm,
            Some(Unscaled {
                weights: &weights,
                f_norm: sys.f_norm,
                true_residual: &check,
            }),
            cg,
            progress,
        )?
    };
    let a = h.fine();
    let stats = SolveStats {
        iterations: out.iterations,
        converged: out.converged,
        recurrence_residual: out.residual,
        setup_seconds: setup,
        solve_seconds: t1.elapsed().as_secs_f64(),
        decoupled_rows: sys.decoupled(),
        cg_rows: a.nrows(),
        cg_stored: (a.nnz() + a.nrows()) / 2,
        levels: h.levels(),
        operator_complexity: h.operator_complexity(),
        ..Default::default()
    };
    Ok((sys.unscale(&out.x), stats))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// 2D 5-point Laplacian on an `m x m` grid with the first row of nodes
    /// penalised (Dirichlet), plus a decoupled row.
    /// 5-point graph Laplacian on an `m x m` grid, first row of nodes
    /// held by a penalty, plus one decoupled row (also used by the GPU
    /// AMG tests).
    pub(crate) fn lap2d(m: usize) -> SymCsr {
        let n = m * m;
        let mut rowptr = vec![0u32];
        let mut col = vec![];
        let mut val = vec![];
        for i in 0..n {
            let (x, y) = (i % m, i / m);
            col.push(i as u32);
            let deg = [x > 0, x + 1 < m, y > 0, y + 1 < m]
                .iter()
                .filter(|b| **b)
                .count() as f64;
            val.push(deg + if y == 0 { 1e12 } else { 0.0 });
            if x + 1 < m {
                col.push(i as u32 + 1);
                val.push(-1.0);
            }
            if y + 1 < m {
                col.push((i + m) as u32);
                val.push(-1.0);
            }
            rowptr.push(col.len() as u32);
        }
        col.push(n as u32);
        val.push(3.0);
        rowptr.push(col.len() as u32);
        SymCsr {
            n: n + 1,
            rowptr,
            col,
            val,
        }
    }

    fn rhs(n: usize) -> Vec<f64> {
        (0..n).map(|i| ((i * 7) % 11) as f64 - 5.0).collect()
    }

    #[test]
    fn aggregation_covers_connected_nodes_and_skips_isolated() {
        // path 0-1-2-3-4-5, isolated 6
        let ptr = vec![0, 1, 3, 5, 7, 9, 10, 10];
        let adj = vec![1, 0, 2, 1, 3, 2, 4, 3, 5, 4];
        let (agg, n) = aggregate(&ptr, &adj);
        assert_eq!(agg[6], NONE);
        assert!(agg[..6].iter().all(|&a| (a as usize) < n));
        assert_eq!(agg[0], agg[1]);
        assert!((2..=3).contains(&n), "{agg:?}");
    }

    #[test]
    fn matmul_and_transpose_match_dense() {
        let a = Csr::new(2, 3, vec![0, 2, 3], vec![2, 0, 1], vec![1.0, 2.0, 3.0]);
        let b = a.transpose();
        assert_eq!((b.nrows(), b.ncols()), (3, 2));
        let c = a.matmul(Exec::Serial, &b); // A A^T = [[5, 0], [0, 9]]
        let mut dense = [[0.0; 2]; 2];
        for i in 0..2 {
            let (cc, vv) = c.row(i);
            for (&j, &v) in cc.iter().zip(vv) {
                dense[i][j as usize] += v;
            }
        }
        assert_eq!(dense, [[5.0, 0.0], [0.0, 9.0]]);
    }

    #[test]
    fn spectral_radius_estimates() {
        let k = lap2d(1); // trivial, just exercise n = 2
        let a = Csr::from_sym(&k);
        let inv = a.diagonal().iter().map(|d| 1.0 / d).collect::<Vec<_>>();
        let r = spectral_radius(Exec::Serial, &a, &inv, 10);
        assert!((r - 1.0).abs() < 1e-9, "{r}");
        let k = lap2d(30);
        let a = Csr::from_sym(&k);
        let inv = a.diagonal().iter().map(|d| 1.0 / d).collect::<Vec<_>>();
        let r = spectral_radius(Exec::Serial, &a, &inv, 15);
        assert!(r > 1.7 && r < 2.0, "{r}");
    }

    #[test]
    fn amg_cg_solves_serial_and_parallel_identically() {
        let k = lap2d(60);
        let f = rhs(k.n);
        let amg = AmgSettings {
            max_coarse: 50,
            ..Default::default()
        };
        let cg = CgSettings {
            rtol: 1e-10,
            max_iter: 200,
        };
        let (us, ss) = solve_amg_cg(&k, &f, &cg, &amg, Exec::Serial, &mut |_, _| {}).unwrap();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let (up, sp) = pool
            .install(|| solve_amg_cg(&k, &f, &cg, &amg, Exec::Parallel, &mut |_, _| {}))
            .unwrap();
        assert!(ss.converged && ss.levels >= 3, "{ss:?}");
        assert!(ss.iterations < 30, "{ss:?}");
        assert_eq!(ss.iterations, sp.iterations);
        assert_eq!(us, up);
        assert!(true_relative_residual(&k, &f, &us) < 1e-9);
        assert_eq!(ss.decoupled_rows, 1);
    }

    #[test]
    fn smoothers_and_sweeps_all_converge() {
        let k = lap2d(40);
        let f = rhs(k.n);
        let cg = CgSettings {
            rtol: 1e-10,
            max_iter: 300,
        };
        for (smoother, degree, sweeps) in [
            (Smoother::Chebyshev, 1, 1),
            (Smoother::Chebyshev, 3, 2),
            (Smoother::Jacobi, 1, 1),
            (Smoother::Jacobi, 2, 2),
        ] {
            let amg = AmgSettings {
                smoother,
                degree,
                pre_sweeps: sweeps,
                post_sweeps: sweeps,
                max_coarse: 30,
                ..Default::default()
            };
            let (u, st) = solve_amg_cg(&k, &f, &cg, &amg, Exec::Serial, &mut |_, _| {}).unwrap();
            assert!(st.converged, "{smoother:?} {degree} {sweeps}: {st:?}");
            assert!(true_relative_residual(&k, &f, &u) < 1e-9);
        }
    }

    #[test]
    fn decoupled_only_and_zero_rhs_systems() {
        // diagonal matrix: every row decoupled, solved directly
        let k = SymCsr {
            n: 3,
            rowptr: vec![0, 1, 2, 3],
            col: vec![0, 1, 2],
            val: vec![2.0, 4.0, 8.0],
        };
        let cg = CgSettings::default();
        let amg = AmgSettings::default();
        let (u, st) = solve_amg_cg(
            &k,
            &[2.0, 2.0, 2.0],
            &cg,
            &amg,
            Exec::Serial,
            &mut |_, _| {},
        )
        .unwrap();
        assert_eq!(u, vec![1.0, 0.5, 0.25]);
        assert!(st.converged && st.iterations == 0 && st.decoupled_rows == 3);
        // zero right-hand side: zero solution at once
        let k = lap2d(10);
        let (u, st) =
            solve_amg_cg(&k, &vec![0.0; k.n], &cg, &amg, Exec::Serial, &mut |_, _| {}).unwrap();
        assert!(st.converged && st.iterations == 0);
        assert!(u.iter().all(|v| *v == 0.0));
    }

    #[test]
    fn residual_check_accepts_restarts_and_gives_up() {
        // below rtol at once
        let mut c = ResidualCheck::new(1e-10);
        assert_eq!(c.judge(5e-11), CheckOutcome::Accept);
        assert_eq!(c.last(), Some(5e-11));
        // above: the target drops by the ratio and a half
        let mut c = ResidualCheck::new(1e-10);
        assert_eq!(c.judge(4e-10), CheckOutcome::Restart);
        assert!((c.target() - 1e-10 * 0.5 * 0.25).abs() < 1e-25);
        // halved: another restart; not halved: the floor, accepted
        assert_eq!(c.judge(1.5e-10), CheckOutcome::Restart);
        assert_eq!(c.judge(1.4e-10), CheckOutcome::Accept);
        // always halving but never below rtol: gives up after the restarts
        let mut c = ResidualCheck::new(1e-10);
        let mut t = 1e-6;
        let mut outcomes = vec![];
        for _ in 0..=MAX_RESTARTS {
            outcomes.push(c.judge(t));
            t *= 0.1;
        }
        assert_eq!(outcomes.last(), Some(&CheckOutcome::GiveUp));
        assert_eq!(
            outcomes
                .iter()
                .filter(|o| **o == CheckOutcome::Restart)
                .count(),
            MAX_RESTARTS
        );
    }

    #[test]
    fn iteration_cap_is_reported_as_not_converged() {
        let k = lap2d(40);
        let f = rhs(k.n);
        let cg = CgSettings {
            rtol: 1e-14,
            max_iter: 2,
        };
        let amg = AmgSettings {
            max_coarse: 30,
            ..Default::default()
        };
        let (_, st) = solve_amg_cg(&k, &f, &cg, &amg, Exec::Serial, &mut |_, _| {}).unwrap();
        assert!(!st.converged);
        assert_eq!(st.iterations, 2);
    }

    #[test]
    fn indefinite_matrix_is_reported() {
        let mut k = lap2d(30);
        for i in 0..k.n - 1 {
            let s = k.diag_slot(i);
            if k.val[s] < 1e6 {
                k.val[s] = 0.3;
            }
        }
        let f = rhs(k.n);
        let err = solve_amg_cg(
            &k,
            &f,
            &CgSettings::default(),
            &AmgSettings {
                max_coarse: 30,
                ..Default::default()
            },
            Exec::Serial,
            &mut |_, _| {},
        )
        .unwrap_err();
        assert!(err.to_string().contains("not positive definite"), "{err}");
    }
}
