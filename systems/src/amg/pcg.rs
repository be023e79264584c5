//! CG preconditioned by the V-cycle, with the stopping checks the host
//! and the device loops share.

use super::setup::Hierarchy;
use crate::exec::{Exec, blocks1, blocks2, dot, map_blocks_mut, sum_blocks};
use crate::solver::{CgSettings, SolveError};

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
    progress: &mut dyn FnMut(usize, f64) -> bool,
) -> Result<AmgCgOutcome, SolveError> {
    let a = h.fine();
    let m = a.nrows();
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
        if !progress(it, rel(rr, rw)) {
            return Err(SolveError::Interrupted { iteration: it });
        }
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
