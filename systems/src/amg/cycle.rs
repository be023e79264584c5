//! Applying the hierarchy: the polynomial smoother and the V-cycle.

use super::setup::{Coarse, Hierarchy, Level};
use crate::exec::{Exec, blocks1, blocks2, blocks3};

/// Work vectors of one level.
#[derive(Debug, Clone, Default)]
pub(super) struct Work {
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
    /// `z = M^-1 r`, one V-cycle with a zero initial guess (the
    /// preconditioner as CG applies it).
    pub fn precondition(&self, exec: Exec, r: &[f64]) -> Vec<f64> {
        let mut w = self.work();
        let mut z = vec![0.0; r.len()];
        self.apply(exec, r, &mut z, &mut w);
        z
    }

    pub(super) fn work(&self) -> Vec<Work> {
        let mut w: Vec<Work> = self
            .levels
            .iter()
            .enumerate()
            .map(|(k, l)| {
                let n = l.a.nrows();
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
            self.coarse_a.nrows()
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
    pub(super) fn apply(&self, exec: Exec, r: &[f64], z: &mut [f64], w: &mut [Work]) {
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
    assert!(b.len() == a.nrows() && x.len() == a.nrows() && dinv.len() == a.nrows());
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
