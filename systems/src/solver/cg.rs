//! Jacobi-preconditioned CG as two fused passes over memory per
//! iteration, with kernels a backend supplies ([`CgKernels`]).

use super::equilibrate::{CgMatrix, EquilibratedSystem};
use super::{CgSettings, Convergence, SolveError, SolveStats, Verdict};
use std::time::Instant;

/// Bytes one fused CG iteration must move for a matrix of `rows` rows and
/// `stored` upper-triangle entries: the matrix once (8-byte value, 4-byte
/// column per entry, 4-byte row pointer per row), then pass A reads `r`,
/// `1/diag`, old `p`, `x` and writes `x`, new `p`, `q` (7 vectors) and
/// pass B reads `r`, `q`, `1/diag` and writes `r` (4 vectors).
pub fn fused_bytes_per_iteration(rows: usize, stored: usize) -> usize {
    12 * stored + 4 * (rows + 1) + 11 * 8 * rows
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
/// look when `||r|| < rtol ||b||` is found at the top of an iteration, then
/// stop only if `check(x)`, the true equilibrated residual of the solution
/// `u` that `x` unscales to (what the run reports), is at most `rtol` too
/// ([`Convergence`]: otherwise the residual is replaced by the recomputed
/// `b - A x` and the iteration goes on, restarted).
/// `progress(iteration, relative_residual)` is called every 50 iterations.
pub fn pcg(
    sys: &EquilibratedSystem,
    settings: &CgSettings,
    kernels: &mut dyn CgKernels,
    check: &dyn Fn(&[f64]) -> f64,
    progress: &mut dyn FnMut(usize, f64) -> bool,
) -> Result<CgOutcome, SolveError> {
    let m = sys.a.n();
    let mut x = vec![0.0; m];
    let mut r = sys.b.clone();
    let mut p = vec![0.0; m];
    let mut q = vec![0.0; m];
    let t0 = Instant::now();
    let mut stats = SolveStats {
        cg_rows: m,
        cg_stored: sys.a.get().stored(),
        bytes_per_iteration: fused_bytes_per_iteration(m, sys.a.get().stored()),
        decoupled_rows: sys.decoupled(),
        ..Default::default()
    };
    if sys.b_norm == 0.0 {
        stats.converged = true;
        return Ok(CgOutcome { x, stats });
    }
    let mut rule = Convergence::new(settings.rtol);
    let dots = |r: &[f64]| -> (f64, f64) {
        (
            r.iter().map(|v| v * v).sum(),
            r.iter().zip(&sys.inv_diag).map(|(v, d)| v * v * d).sum(),
        )
    };
    let (mut rr, mut rz) = dots(&r);
    let mut rho_prev = 0.0;
    let mut alpha = 0.0;
    let mut it = 0;
    // the iteration of the last (re)start: its direction is z alone
    let mut restart = 0;
    // The iterate is `base + x`: the loop updates `x`, and each check folds
    // it into `base` with one rounding and restarts `x` from zero, so that
    // corrections after a replacement are not rounded at `base`'s scale.
    let mut base = vec![0.0; m];
    let verdict = loop {
        if rr.sqrt() < rule.target() * sys.b_norm {
            // the pending `x += alpha p`, the fold, then the true residual
            if it > restart {
                kernels.axpy(alpha, &p, &mut x);
            }
            alpha = 0.0;
            restart = it;
            for (bi, xi) in base.iter_mut().zip(x.iter_mut()) {
                *bi += *xi;
                *xi = 0.0;
            }
            r = {
                let _s = tracing::trace_span!("cg_true_residual").entered();
                sys.a.get().residual_exact(&sys.b, &base)
            };
            (rr, rz) = dots(&r);
            match rule.judge(it, check(&base)) {
                Verdict::Replace => continue,
                v => break Some(v),
            }
        }
        if it >= settings.max_iter {
            break None;
        }
        let beta = if it == restart { 0.0 } else { rz / rho_prev };
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
        if it % 50 == 0 && !progress(it, rr.sqrt() / sys.b_norm) {
            return Err(SolveError::Interrupted { iteration: it });
        }
    };
    if it > restart {
        kernels.axpy(alpha, &p, &mut x);
    }
    for (bi, xi) in base.iter_mut().zip(&x) {
        *bi += *xi;
    }
    stats.iterations = it;
    rule.finish(&mut stats, verdict, rr.sqrt() / sys.b_norm);
    stats.solve_seconds = t0.elapsed().as_secs_f64();
    Ok(CgOutcome { x: base, stats })
}
