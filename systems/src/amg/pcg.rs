//! CG preconditioned by the V-cycle, stopped by the convergence rule every
//! solver shares ([`crate::solver::Convergence`]).

use super::setup::Hierarchy;
use crate::exec::{Exec, blocks1, blocks2, dot, map_blocks_mut};
use crate::solver::{CgSettings, Convergence, SolveError, SolveStats, Verdict};

/// What [`amg_pcg`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct AmgCgOutcome {
    /// `u~` on the coupled rows.
    pub x: Vec<f64>,
    /// Iterations, convergence, the last checked residual, replacements
    /// (the fields the convergence rule fills).
    pub stats: SolveStats,
}

/// CG preconditioned by one V-cycle of `h` on the equilibrated system
/// `A x = b` (`A = h.fine()`), `x0 = 0`, `b_norm = ||b||` over every row
/// of the system (decoupled ones included). Looks when the recurrence
/// residual satisfies `||r|| < target ||b||` and stops when `check(x)`,
/// the true equilibrated residual of the solution `u` that `x` unscales to
/// (what the run reports), is at most `rtol`; above it, CG goes on from
/// the recomputed `b - A x` ([`Convergence`], the rule of every solver).
/// `progress(iteration, relative_residual)` is called every iteration.
pub fn amg_pcg(
    exec: Exec,
    h: &Hierarchy,
    b: &[f64],
    b_norm: f64,
    settings: &CgSettings,
    check: &dyn Fn(&[f64]) -> f64,
    progress: &mut dyn FnMut(usize, f64) -> bool,
) -> Result<AmgCgOutcome, SolveError> {
    let a = h.fine();
    let m = a.nrows();
    let mut x = vec![0.0; m];
    let mut stats = SolveStats::default();
    if b_norm == 0.0 || m == 0 {
        stats.converged = true;
        return Ok(AmgCgOutcome { x, stats });
    }
    let mut rule = Convergence::new(settings.rtol);
    let mut w = h.work();
    let mut r = b.to_vec();
    let mut z = vec![0.0; m];
    let mut q = vec![0.0; m];
    let rel = |rr: f64| rr.sqrt() / b_norm;
    let mut rr = dot(exec, &r, &r);
    h.apply(exec, &r, &mut z, &mut w);
    let mut p = z.clone();
    let mut rz = dot(exec, &r, &z);
    let mut it = 0;
    // `r = b - A x` (in double-double: `sparse::Dd`) and `r.r`
    let true_residual = |x: &[f64], r: &mut [f64]| -> f64 {
        map_blocks_mut(exec, r, |s, rb| {
            a.residual_exact_rows(s..s + rb.len(), b, x, rb);
            rb.iter().map(|v| v * v).sum::<f64>()
        })
        .iter()
        .sum()
    };
    // The iterate is `base + x`: CG updates `x` from zero after every
    // check, and the check folds it into `base` with one rounding, so
    // that the corrections after a replacement are not added to the
    // large `base` step by step (each addition would round at its scale).
    let mut base = vec![0.0; m];
    let verdict = loop {
        if rel(rr) < rule.target() {
            // fold, then check the true residual (rounding lets the
            // recurrence drift below it); replace the residual by it
            for (bi, xi) in base.iter_mut().zip(x.iter_mut()) {
                *bi += *xi;
                *xi = 0.0;
            }
            rr = true_residual(&base, &mut r);
            match rule.judge(it, check(&base)) {
                Verdict::Replace => {}
                v => break Some(v),
            }
            h.apply(exec, &r, &mut z, &mut w);
            rz = dot(exec, &r, &z);
            p.copy_from_slice(&z);
            continue;
        }
        if it >= settings.max_iter {
            break None;
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
        // x += alpha p; r -= alpha q; r.r
        {
            let (pr, qr) = (&p, &q);
            rr = blocks2(exec, &mut x, &mut r, |s, xb, rb| {
                let mut a2 = 0.0;
                for l in 0..xb.len() {
                    xb[l] += alpha * pr[s + l];
                    let v = rb[l] - alpha * qr[s + l];
                    rb[l] = v;
                    a2 += v * v;
                }
                a2
            })
            .iter()
            .sum();
        }
        it += 1;
        if !progress(it, rel(rr)) {
            return Err(SolveError::Interrupted { iteration: it });
        }
        if rel(rr) < rule.target() {
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
    for (bi, xi) in base.iter_mut().zip(&x) {
        *bi += *xi;
    }
    stats.iterations = it;
    rule.finish(&mut stats, verdict, rel(rr));
    Ok(AmgCgOutcome { x: base, stats })
}
