//! The reference linear solve (SPEC "Linear solve"): diagonal
//! equilibration, then Jacobi-preconditioned CG on the equilibrated system,
//! stopped on the recurrence residual, exactly SciPy's `cg` iteration.
//!
//! Two things make it fast without changing the iteration beyond rounding:
//! - Rows with no off-diagonal entry (unused nodes, isolated penalties) are
//!   decoupled: they are solved directly and left out of the CG vectors.
//!   CG would keep them at their exact values anyway (zero for the
//!   reference), so nothing but the vector length changes.
//! - One CG iteration is two passes over memory over the symmetric
//!   (upper-triangle) matrix: pass A updates `p`, forms `q = A p` and
//!   `p.q` while walking the rows from last to first (so the `p_j`, `j > i`,
//!   a row needs are already updated), and applies the previous step's
//!   `x += alpha p`; pass B updates `r` and forms `r.r` and `r.z`.

use crate::ordering;
use crate::sparse::SymCsr;
use std::time::Instant;

/// Settings of the iterative solve.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CgSettings {
    /// Relative tolerance on the equilibrated recurrence residual.
    pub rtol: f64,
    /// Iteration cap; reaching it is reported as not converged.
    pub max_iter: usize,
}

impl Default for CgSettings {
    fn default() -> Self {
        Self {
            rtol: 1e-8,
            max_iter: 15_000,
        }
    }
}

/// What a solve did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SolveStats {
    /// CG iterations (matrix-vector products; 0 for a direct solve).
    pub iterations: usize,
    /// Whether the stopping rule was met within the cap.
    pub converged: bool,
    /// Final recurrence residual relative to `||f~||` (AMG-CG: the
    /// checked residual, see [`crate::amg::amg_pcg`]; Cholesky: the true
    /// relative residual).
    pub recurrence_residual: f64,
    /// Seconds spent in setup: equilibration and decoupling (all
    /// methods), the AMG hierarchy, the Cholesky ordering and
    /// factorisation.
    pub setup_seconds: f64,
    /// Rows solved directly (decoupled).
    pub decoupled_rows: usize,
    /// Rows in the CG system.
    pub cg_rows: usize,
    /// Stored entries of the CG matrix (upper triangle).
    pub cg_stored: usize,
    /// Bytes one iteration of the fused kernels moves through memory at
    /// least (see [`fused_bytes_per_iteration`]).
    pub bytes_per_iteration: usize,
    /// Seconds spent after the setup (the iteration, or the triangular
    /// solves and refinement of a direct method).
    pub solve_seconds: f64,
    /// Levels of the multigrid hierarchy (AMG-CG; 0 for other methods).
    pub levels: usize,
    /// Operator complexity of the multigrid hierarchy: stored entries of
    /// all levels over those of the finest (AMG-CG; 0 for other methods).
    pub operator_complexity: f64,
    /// Stored entries of the Cholesky factor `L` (Cholesky; 0 otherwise).
    pub factor_nnz: usize,
    /// Steps of iterative refinement after the direct solve (Cholesky).
    pub refinement_steps: usize,
}

/// Bytes one fused CG iteration must move for a matrix of `rows` rows and
/// `stored` upper-triangle entries: the matrix once (8-byte value, 4-byte
/// column per entry, 4-byte row pointer per row), then pass A reads `r`,
/// `1/diag`, old `p`, `x` and writes `x`, new `p`, `q` (7 vectors) and
/// pass B reads `r`, `q`, `1/diag` and writes `r` (4 vectors).
pub fn fused_bytes_per_iteration(rows: usize, stored: usize) -> usize {
    12 * stored + 4 * (rows + 1) + 11 * 8 * rows
}

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

/// The equilibrated, decoupled system CG runs on.
#[derive(Debug, Clone)]
pub struct EquilibratedSystem {
    /// `D K D` restricted to the coupled rows, renumbered by reverse
    /// Cuthill-McKee.
    pub a: CgMatrix,
    /// `D f` on the coupled rows.
    pub b: Vec<f64>,
    /// `1 / diag(D K D)` on the coupled rows (the Jacobi preconditioner).
    pub inv_diag: Vec<f64>,
    /// `d = 1 / sqrt(|diag K|)` for every row of the original system.
    pub d: Vec<f64>,
    /// Original index of each CG row.
    pub rows: Vec<u32>,
    /// The solution of the decoupled rows, in original numbering (zero
    /// on coupled rows).
    pub direct: Vec<f64>,
    /// `||D f||` over all rows (the stopping rule's reference norm).
    pub b_norm: f64,
    /// Number of decoupled rows.
    pub decoupled: usize,
}

/// Error of the linear solve.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SolveError {
    /// A zero on the diagonal: some node has no stiffness at all.
    #[error(
        "the assembled matrix has a zero diagonal at node {0}; the node is in no element and has no penalty"
    )]
    ZeroDiagonal(usize),
    /// CG broke down (`p.Ap <= 0`), so the matrix is not positive definite.
    #[error(
        "CG broke down at iteration {iteration} (p.Ap = {pap:.3e}): the matrix is not positive definite. Is there a Dirichlet boundary (an outlet)? Without one the potential is only defined up to a constant"
    )]
    Breakdown {
        /// where
        iteration: usize,
        /// the offending curvature
        pap: f64,
    },
    /// Not finite values in the system.
    #[error("the linear system contains NaN or infinite values")]
    NonFinite,
    /// A factorisation met a non-positive pivot: the matrix is not
    /// (numerically) positive definite.
    #[error(
        "{method}: the matrix is not positive definite (non-positive pivot at elimination step {step} of {n}). Is there a Dirichlet boundary (an outlet)? Without one the potential is only defined up to a constant"
    )]
    NotPositiveDefinite {
        /// which factorisation (sparse Cholesky, AMG coarse solve)
        method: &'static str,
        /// elimination step (in the factorisation's own ordering)
        step: usize,
        /// matrix size
        n: usize,
    },
    /// A factorisation could not run (e.g. out of memory).
    #[error("{method}: {message}")]
    Factorization {
        /// which factorisation
        method: &'static str,
        /// what went wrong
        message: String,
    },
}

impl EquilibratedSystem {
    /// Equilibrates `K u = f` and splits off decoupled rows.
    pub fn new(k: &SymCsr, f: &[f64]) -> Result<Self, SolveError> {
        let n = k.n;
        let mut d = vec![0.0; n];
        for (i, di) in d.iter_mut().enumerate() {
            let a = k.val[k.diag_slot(i)].abs();
            if a == 0.0 {
                return Err(SolveError::ZeroDiagonal(i));
            }
            if !a.is_finite() {
                return Err(SolveError::NonFinite);
            }
            *di = 1.0 / a.sqrt();
        }
        // coupled = has an off-diagonal entry in its row or column
        let mut coupled = vec![false; n];
        for i in 0..n {
            let (s, e) = (k.rowptr[i] as usize, k.rowptr[i + 1] as usize);
            if e > s + 1 {
                coupled[i] = true;
                for &j in &k.col[s + 1..e] {
                    coupled[j as usize] = true;
                }
            }
        }
        let mut new_of = vec![u32::MAX; n];
        let mut rows = Vec::new();
        for i in 0..n {
            if coupled[i] {
                new_of[i] = rows.len() as u32;
                rows.push(i as u32);
            }
        }
        let m = rows.len();
        let mut rowptr = Vec::with_capacity(m + 1);
        rowptr.push(0u32);
        let mut col = Vec::with_capacity(k.stored());
        let mut val = Vec::with_capacity(k.stored());
        let mut b = Vec::with_capacity(m);
        let mut inv_diag = Vec::with_capacity(m);
        let mut direct = vec![0.0; n];
        let mut b_norm2 = 0.0;
        for i in 0..n {
            let fi = d[i] * f[i];
            b_norm2 += fi * fi;
            let (s, e) = (k.rowptr[i] as usize, k.rowptr[i + 1] as usize);
            if !coupled[i] {
                direct[i] = f[i] / k.val[s];
                continue;
            }
            for kk in s..e {
                let j = k.col[kk] as usize;
                let v = d[i] * k.val[kk] * d[j];
                col.push(new_of[j]);
                val.push(v);
            }
            inv_diag.push(1.0 / (d[i] * k.val[s] * d[i]));
            b.push(fi);
            rowptr.push(col.len() as u32);
        }
        if !b_norm2.is_finite() || val.iter().any(|v| !v.is_finite()) {
            return Err(SolveError::NonFinite);
        }
        let a = SymCsr {
            n: m,
            rowptr,
            col,
            val,
        };
        // Renumber the coupled rows by reverse Cuthill-McKee for locality.
        let (ptr, adj) = ordering::adjacency(&a);
        let perm = ordering::rcm(m, &ptr, &adj);
        let mut inv = vec![0u32; m];
        for (new, &old) in perm.iter().enumerate() {
            inv[old as usize] = new as u32;
        }
        let a = CgMatrix::new(ordering::permute(&a, &perm, &inv));
        let take = |v: &[f64]| perm.iter().map(|&o| v[o as usize]).collect::<Vec<f64>>();
        Ok(Self {
            a,
            b: take(&b),
            inv_diag: take(&inv_diag),
            d,
            rows: perm.iter().map(|&o| rows[o as usize]).collect(),
            direct,
            b_norm: b_norm2.sqrt(),
            decoupled: n - m,
        })
    }

    /// Maps a CG solution `u~` (coupled rows) back to `u = D u~` in the
    /// original numbering, with the decoupled rows' direct solution.
    pub fn unscale(&self, xt: &[f64]) -> Vec<f64> {
        let mut u = self.direct.clone();
        for (k, &i) in self.rows.iter().enumerate() {
            u[i as usize] = self.d[i as usize] * xt[k];
        }
        u
    }
}

/// A symmetric matrix checked for use by the CG kernels: row pointers
/// non-decreasing and within the arrays, every row starting with its
/// diagonal, every column below `n`. The kernels index without bounds
/// checks on the strength of this.
#[derive(Debug, Clone)]
pub struct CgMatrix(SymCsr);

impl CgMatrix {
    /// Checks `a` (panics on a malformed matrix: that is a bug in the
    /// caller, never user input).
    pub fn new(a: SymCsr) -> Self {
        let n = a.n;
        assert_eq!(a.rowptr.len(), n + 1);
        assert_eq!(a.rowptr[n] as usize, a.col.len());
        assert_eq!(a.col.len(), a.val.len());
        for i in 0..n {
            let (s, e) = (a.rowptr[i] as usize, a.rowptr[i + 1] as usize);
            assert!(
                s < e && a.col[s] as usize == i,
                "row {i} must start with its diagonal"
            );
            assert!(a.col[s..e].iter().all(|&j| (j as usize) < n));
        }
        Self(a)
    }

    /// The matrix.
    pub fn get(&self) -> &SymCsr {
        &self.0
    }

    /// Number of rows.
    pub fn n(&self) -> usize {
        self.0.n
    }
}

/// The two fused passes of one CG iteration; a backend supplies its own
/// (serial, multi-threaded) implementation.
pub trait CgKernels {
    /// Pass A: `x += alpha_prev p`, `p = r * inv_diag + beta p`, `q = A p`;
    /// returns `p.q`. `p` is a `Vec` so that an implementation may swap in
    /// a second buffer rather than update in place.
    #[allow(clippy::too_many_arguments)]
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
    ) -> f64;
    /// Pass B: `r -= alpha q`; returns `(r.r, r.z)` with `z = r * inv_diag`.
    fn pass_b(&mut self, inv_diag: &[f64], alpha: f64, q: &[f64], r: &mut [f64]) -> (f64, f64);
    /// `x += alpha p` (the last pending update).
    fn axpy(&mut self, alpha: f64, p: &[f64], x: &mut [f64]) {
        for (xi, pi) in x.iter_mut().zip(p) {
            *xi += alpha * pi;
        }
    }
}

/// Rows per reduction chunk. Dot products are summed chunk by chunk and the
/// chunk sums combined in order; the parallel kernels split rows on chunk
/// boundaries, so every thread count gives the serial kernels' bits.
pub const CHUNK: usize = 2048;

/// Pass A over the rows `start..end` (last to first), for one block of a
/// row partition (the whole matrix for the serial kernels).
///
/// `pold` is the previous `p` (all rows, read-only); new values of the
/// block's rows go to `pb` (`pb[0]` is row `start`), `x += alpha_prev p` to
/// `xb`, `q` of the block's rows to `qb`. Rows reaching past `end` read new
/// `p` values from `halo_p` (`halo_p[0]` is row `end`) and leave their
/// scatter terms in `halo_terms` in generation order (rows descending);
/// the caller adds them to `q` afterwards in that order, which is the
/// serial order. Per-chunk partial sums of `p.q` are pushed to `partials`
/// (chunks descending).
#[allow(clippy::too_many_arguments)]
#[inline(never)]
pub fn pass_a_rows(
    a: &CgMatrix,
    inv_diag: &[f64],
    r: &[f64],
    beta: f64,
    alpha_prev: f64,
    (start, end): (usize, usize),
    pold: &[f64],
    xb: &mut [f64],
    pb: &mut [f64],
    qb: &mut [f64],
    halo_p: &[f64],
    halo_terms: &mut Vec<(u32, f64)>,
    partials: &mut Vec<f64>,
) {
    let m = a.get();
    let n = m.n;
    let (rowptr, col, val) = (&m.rowptr[..], &m.col[..], &m.val[..]);
    assert!(start <= end && end <= n && (start % CHUNK == 0 || start == end));
    assert!(r.len() == n && inv_diag.len() == n && pold.len() == n);
    assert!(xb.len() == end - start && pb.len() == end - start && qb.len() == end - start);
    let nchunks = (end - start).div_ceil(CHUNK);
    for c in (0..nchunks).rev() {
        let mut pap = 0.0;
        let (cs, ce) = (start + c * CHUNK, (start + (c + 1) * CHUNK).min(end));
        for i in (cs..ce).rev() {
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
                    // SAFETY: `CgMatrix` guarantees columns are > the row
                    // and < n; this row's last (largest) column is < end
                    // (checked just above), so start <= j < end, and
                    // `pb`, `qb` cover start..end (asserted).
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
                        acc += v * halo_p[j - end];
                        halo_terms.push((j as u32, v * pi));
                    }
                }
            }
            let diag = val[s] * pi;
            qb[li] = diag + acc;
            pap += pi * (diag + 2.0 * acc);
        }
        partials.push(pap);
    }
}

/// Pass B over the rows `start..end` (`rb[0]` is row `start`): per-chunk
/// partial `(r.r, r.z)` pushed to `partials` (chunks ascending).
#[inline(never)]
pub fn pass_b_rows(
    inv_diag: &[f64],
    alpha: f64,
    q: &[f64],
    (start, end): (usize, usize),
    rb: &mut [f64],
    partials: &mut Vec<(f64, f64)>,
) {
    assert!((start % CHUNK == 0 || start == end) && rb.len() == end - start);
    for (c, rc) in rb.chunks_mut(CHUNK).enumerate() {
        let s = start + c * CHUNK;
        let (mut rr, mut rz) = (0.0, 0.0);
        for ((ri, &qi), &di) in rc.iter_mut().zip(&q[s..]).zip(&inv_diag[s..]) {
            let v = *ri - alpha * qi;
            *ri = v;
            rr += v * v;
            rz += v * v * di;
        }
        partials.push((rr, rz));
    }
}

/// The single-threaded fused kernels.
#[derive(Debug, Default, Clone)]
pub struct SerialKernels {
    spare: Vec<f64>,
    partials: Vec<f64>,
    partials_b: Vec<(f64, f64)>,
}

impl CgKernels for SerialKernels {
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
        let n = a.n();
        self.spare.resize(n, 0.0);
        self.partials.clear();
        let mut no_halo = Vec::new();
        pass_a_rows(
            a,
            inv_diag,
            r,
            beta,
            alpha_prev,
            (0, n),
            p,
            x,
            &mut self.spare,
            q,
            &[],
            &mut no_halo,
            &mut self.partials,
        );
        std::mem::swap(p, &mut self.spare);
        self.partials.iter().sum::<f64>()
    }

    fn pass_b(&mut self, inv_diag: &[f64], alpha: f64, q: &[f64], r: &mut [f64]) -> (f64, f64) {
        self.partials_b.clear();
        let n = r.len();
        pass_b_rows(inv_diag, alpha, q, (0, n), r, &mut self.partials_b);
        self.partials_b
            .iter()
            .fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1))
    }
}

/// Result of [`pcg`]: the equilibrated solution on the coupled rows.
#[derive(Debug, Clone)]
pub struct CgOutcome {
    /// `u~` on the coupled rows.
    pub x: Vec<f64>,
    /// Iterations and convergence.
    pub stats: SolveStats,
}

/// Jacobi-preconditioned CG on an equilibrated system, SciPy's iteration:
/// stop when `||r|| < rtol ||b||` is found at the top of an iteration.
/// `progress(iteration, relative_residual)` is called every 50 iterations.
pub fn pcg(
    sys: &EquilibratedSystem,
    settings: &CgSettings,
    kernels: &mut dyn CgKernels,
    progress: &mut dyn FnMut(usize, f64),
) -> Result<CgOutcome, SolveError> {
    let m = sys.a.n();
    let mut x = vec![0.0; m];
    let mut r = sys.b.clone();
    let mut p = vec![0.0; m];
    let mut q = vec![0.0; m];
    let atol = settings.rtol * sys.b_norm;
    let t0 = Instant::now();
    let mut stats = SolveStats {
        cg_rows: m,
        cg_stored: sys.a.get().stored(),
        bytes_per_iteration: fused_bytes_per_iteration(m, sys.a.get().stored()),
        decoupled_rows: sys.decoupled,
        ..Default::default()
    };
    if sys.b_norm == 0.0 {
        stats.converged = true;
        return Ok(CgOutcome { x, stats });
    }
    let mut rr: f64 = r.iter().map(|v| v * v).sum();
    let mut rz: f64 = r.iter().zip(&sys.inv_diag).map(|(v, d)| v * v * d).sum();
    let mut rho_prev = 0.0;
    let mut alpha = 0.0;
    let mut it = 0;
    loop {
        if rr.sqrt() < atol {
            stats.converged = true;
            break;
        }
        if it >= settings.max_iter {
            break;
        }
        let beta = if it == 0 { 0.0 } else { rz / rho_prev };
        // spans per pass: cheap next to a pass (microseconds against
        // milliseconds), and they give flamegraphs the SpMV/update split
        let span = tracing::trace_span!("cg_pass_a_spmv_updates").entered();
        let pap = kernels.pass_a(
            &sys.a,
            &sys.inv_diag,
            &r,
            beta,
            alpha,
            &mut x,
            &mut p,
            &mut q,
        );
        drop(span);
        // NaN counts as a breakdown too
        if pap.is_nan() || pap <= 0.0 {
            return Err(SolveError::Breakdown { iteration: it, pap });
        }
        alpha = rz / pap;
        rho_prev = rz;
        (rr, rz) = {
            let _s = tracing::trace_span!("cg_pass_b_updates_dots").entered();
            kernels.pass_b(&sys.inv_diag, alpha, &q, &mut r)
        };
        it += 1;
        if it % 50 == 0 {
            progress(it, rr.sqrt() / sys.b_norm);
        }
    }
    if it > 0 {
        kernels.axpy(alpha, &p, &mut x);
    }
    stats.iterations = it;
    stats.recurrence_residual = rr.sqrt() / sys.b_norm;
    stats.solve_seconds = t0.elapsed().as_secs_f64();
    Ok(CgOutcome { x, stats })
}

/// `||f - K u|| / ||f||` with the unequilibrated system.
pub fn true_relative_residual(k: &SymCsr, f: &[f64], u: &[f64]) -> f64 {
    let ku = k.mul(u);
    let num: f64 = f.iter().zip(&ku).map(|(a, b)| (a - b) * (a - b)).sum();
    let den: f64 = f.iter().map(|a| a * a).sum();
    if den == 0.0 {
        num.sqrt()
    } else {
        (num / den).sqrt()
    }
}

/// Full reference solve: equilibrate, CG, unscale. Returns `u` and stats.
pub fn solve_cg_jacobi(
    k: &SymCsr,
    f: &[f64],
    settings: &CgSettings,
    kernels: &mut dyn CgKernels,
    progress: &mut dyn FnMut(usize, f64),
) -> Result<(Vec<f64>, SolveStats), SolveError> {
    let t0 = Instant::now();
    let sys = {
        let _s = tracing::info_span!("cg_setup_equilibrate_rcm").entered();
        EquilibratedSystem::new(k, f)?
    };
    let setup = t0.elapsed().as_secs_f64();
    let out = pcg(&sys, settings, kernels, progress)?;
    let mut stats = out.stats;
    stats.setup_seconds = setup;
    Ok((sys.unscale(&out.x), stats))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 1D Laplacian (tridiagonal) with a decoupled row appended.
    fn lap(n: usize) -> SymCsr {
        let mut rowptr = vec![0u32];
        let mut col = vec![];
        let mut val = vec![];
        for i in 0..n {
            col.push(i as u32);
            val.push(2.0 + i as f64 * 0.01);
            if i + 1 < n {
                col.push(i as u32 + 1);
                val.push(-1.0);
            }
            rowptr.push(col.len() as u32);
        }
        col.push(n as u32);
        val.push(4.0);
        rowptr.push(col.len() as u32);
        SymCsr {
            n: n + 1,
            rowptr,
            col,
            val,
        }
    }

    /// Textbook PCG on the full equilibrated matrix, for comparison.
    fn textbook(k: &SymCsr, f: &[f64], rtol: f64) -> (Vec<f64>, usize) {
        let n = k.n;
        let d: Vec<f64> = k.diagonal().iter().map(|a| 1.0 / a.abs().sqrt()).collect();
        let mut ks = k.clone();
        for i in 0..n {
            for kk in k.rowptr[i] as usize..k.rowptr[i + 1] as usize {
                ks.val[kk] *= d[i] * d[k.col[kk] as usize];
            }
        }
        let b: Vec<f64> = (0..n).map(|i| d[i] * f[i]).collect();
        let dg = ks.diagonal();
        let bn = b.iter().map(|v| v * v).sum::<f64>().sqrt();
        let (mut x, mut r, mut p) = (vec![0.0; n], b.clone(), vec![0.0; n]);
        let mut rho_prev = 0.0;
        let mut it = 0;
        loop {
            if r.iter().map(|v| v * v).sum::<f64>().sqrt() < rtol * bn {
                break;
            }
            let z: Vec<f64> = (0..n).map(|i| r[i] / dg[i]).collect();
            let rho: f64 = (0..n).map(|i| r[i] * z[i]).sum();
            let beta = if it == 0 { 0.0 } else { rho / rho_prev };
            for i in 0..n {
                p[i] = z[i] + beta * p[i];
            }
            let q = ks.mul(&p);
            let alpha = rho / (0..n).map(|i| p[i] * q[i]).sum::<f64>();
            for i in 0..n {
                x[i] += alpha * p[i];
                r[i] -= alpha * q[i];
            }
            rho_prev = rho;
            it += 1;
        }
        ((0..n).map(|i| d[i] * x[i]).collect(), it)
    }

    #[test]
    fn fused_cg_matches_textbook() {
        let k = lap(200);
        let f: Vec<f64> = (0..201).map(|i| ((i * 7) % 11) as f64 - 5.0).collect();
        // A tight tolerance so that the two roundings of CG agree closely.
        let s = CgSettings {
            rtol: 1e-12,
            max_iter: 1000,
        };
        let (u, stats) =
            solve_cg_jacobi(&k, &f, &s, &mut SerialKernels::default(), &mut |_, _| {}).unwrap();
        let (ut, it) = textbook(&k, &f, 1e-12);
        assert!(stats.converged);
        assert_eq!(stats.decoupled_rows, 1);
        assert!(
            (stats.iterations as i64 - it as i64).abs() <= 1,
            "{} vs {it}",
            stats.iterations
        );
        let scale = ut.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for i in 0..201 {
            assert!((u[i] - ut[i]).abs() < 1e-9 * scale);
        }
        assert!((u[200] - f[200] / 4.0).abs() < 1e-15);
        assert!(true_relative_residual(&k, &f, &u) < 1e-10);
    }

    #[test]
    fn cap_is_reported_as_not_converged() {
        let k = lap(300);
        let f = vec![1.0; 301];
        let s = CgSettings {
            rtol: 1e-12,
            max_iter: 5,
        };
        let (_, stats) =
            solve_cg_jacobi(&k, &f, &s, &mut SerialKernels::default(), &mut |_, _| {}).unwrap();
        assert!(!stats.converged);
        assert_eq!(stats.iterations, 5);
    }

    #[test]
    fn indefinite_matrix_breaks_down_with_a_message() {
        let mut k = lap(10);
        for v in k.val.iter_mut() {
            if *v > 0.0 {
                *v = 0.5;
            }
        }
        let f = vec![1.0; 11];
        let err = solve_cg_jacobi(
            &k,
            &f,
            &CgSettings::default(),
            &mut SerialKernels::default(),
            &mut |_, _| {},
        )
        .unwrap_err();
        assert!(err.to_string().contains("not positive definite"), "{err}");
    }
}
