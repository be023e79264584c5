//! Applying the hierarchy: the polynomial smoother and the V-cycle.

use super::setup::{Coarse, Hierarchy, Level};
use crate::exec::{Exec, blocks1, blocks2, blocks3};
use crate::sparse::Csr;

/// Work vectors of one level.
#[derive(Debug, Clone, Default)]
pub(super) struct Work {
    /// Right-hand side of this level (filled by restriction; unused on
    /// the finest level, whose right-hand side is the caller's).
    b: Vec<f64>,
    /// Correction of this level (the caller's on the finest level).
    x: Vec<f64>,
    /// The smoother's vectors.
    s: SweepWork,
}

/// The work vectors of a whole V-cycle of a [`Hierarchy`], kept between
/// cycles by a caller that applies it many times
/// ([`Hierarchy::cycle_work`], [`Hierarchy::apply_with`]).
#[derive(Debug, Clone, Default)]
pub struct CycleWork(Vec<Work>);

/// The vectors of one smoothing sweep ([`sweep`]): the residual `r` on the
/// rows, the correction steps `d`, `d2` on the columns (the rows, then a
/// rank's ghost columns in the distributed solve).
#[derive(Debug, Clone, Default)]
pub struct SweepWork {
    /// Residual `b - A x` (rows).
    pub r: Vec<f64>,
    /// Current step (columns).
    pub d: Vec<f64>,
    /// Next step (columns).
    pub d2: Vec<f64>,
}

impl SweepWork {
    /// Work for a level of `rows` rows and `cols >= rows` columns.
    pub fn new(rows: usize, cols: usize) -> Self {
        Self {
            r: vec![0.0; rows],
            d: vec![0.0; cols],
            d2: vec![0.0; cols],
        }
    }
}

/// One level as the smoother sees it.
#[derive(Debug, Clone, Copy)]
pub struct SmootherLevel<'a> {
    /// The operator: `rows x cols`, `cols >= rows`; the columns past the
    /// rows are a rank's ghost columns (distributed solve).
    pub a: &'a Csr,
    /// `a`'s values in single precision (what the products read).
    pub a32: &'a [f32],
    /// `1 / a_ii` on the rows.
    pub inv_diag: &'a [f64],
    /// First scale: `d = s0 D^-1 r`.
    pub s0: f64,
    /// Per step `(c1, c2)`: `d = c1 d + c2 D^-1 r`.
    pub steps: &'a [(f64, f64)],
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

    /// The work vectors of a V-cycle, for [`Hierarchy::apply_with`].
    pub fn cycle_work(&self) -> CycleWork {
        CycleWork(self.work())
    }

    /// `z = M^-1 r` (one V-cycle from a zero guess) with work vectors kept
    /// by the caller.
    pub fn apply_with(&self, exec: Exec, r: &[f64], z: &mut [f64], w: &mut CycleWork) {
        if w.0.is_empty() {
            w.0 = self.work();
        }
        self.apply(exec, r, z, &mut w.0);
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
                    s: SweepWork::new(n, n),
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
            let start = if k == 0 {
                SweepStart::Zero
            } else {
                SweepStart::Residual
            };
            sweep(
                exec,
                &smoother_of(lev),
                b,
                x,
                &mut wk.s,
                start,
                true,
                &mut |_| {},
            );
        }
        if pre == 0 {
            x.iter_mut().for_each(|v| *v = 0.0);
            wk.s.r.copy_from_slice(b);
        }
        // Coarse correction.
        let (bc, xc) = {
            let c = &mut below[0];
            (std::mem::take(&mut c.b), std::mem::take(&mut c.x))
        };
        let (mut bc, mut xc) = (bc, xc);
        lev.r.spmv_with(exec, &lev.r32, &wk.s.r, &mut bc);
        self.vcycle(exec, l + 1, &bc, &mut xc, below);
        lev.p.spmv_add_with(exec, &lev.p32, &xc, x);
        below[0].b = bc;
        below[0].x = xc;
        // Post-smoothing.
        for k in 0..post {
            let start = if k == 0 {
                SweepStart::Compute
            } else {
                SweepStart::Residual
            };
            let keep = k + 1 < post;
            sweep(
                exec,
                &smoother_of(lev),
                b,
                x,
                &mut wk.s,
                start,
                keep,
                &mut |_| {},
            );
        }
    }

    /// `z = M^-1 r`: one V-cycle with a zero initial guess.
    pub(super) fn apply(&self, exec: Exec, r: &[f64], z: &mut [f64], w: &mut [Work]) {
        self.vcycle(exec, 0, r, z, w);
    }
}

/// A level of the hierarchy as the smoother reads it.
fn smoother_of(lev: &Level) -> SmootherLevel<'_> {
    SmootherLevel {
        a: &lev.a,
        a32: &lev.v32,
        inv_diag: &lev.inv_diag,
        s0: lev.s0,
        steps: &lev.steps,
    }
}

/// How a smoothing sweep starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SweepStart {
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
/// `keep_r`, `r -= A d` (otherwise `r` is left stale): [`sweep_start`],
/// [`sweep_step`] per step, [`sweep_finish`].
///
/// `x`, `wk.d` and `wk.d2` have an entry per column of `A`; where `A` has
/// more columns than rows (a rank's rows of a distributed level: its
/// own block, then its ghost columns) `ghosts(v)` fills the entries of
/// `v` past the rows before every pass that multiplies `v` (one halo
/// exchange a product). On one process `A` is square and `ghosts` does
/// nothing. (A caller that must run the passes elsewhere, such as on a
/// rank's thread pool with the exchanges on its own thread, calls the
/// three passes itself in this order.)
#[allow(clippy::too_many_arguments)]
pub fn sweep(
    exec: Exec,
    lev: &SmootherLevel<'_>,
    b: &[f64],
    x: &mut [f64],
    wk: &mut SweepWork,
    start: SweepStart,
    keep_r: bool,
    ghosts: &mut dyn FnMut(&mut [f64]),
) {
    if start == SweepStart::Compute {
        ghosts(x);
    }
    sweep_start(exec, lev, b, x, wk, start);
    for &(c1, c2) in lev.steps {
        ghosts(&mut wk.d);
        sweep_step(exec, lev, x, wk, c1, c2);
    }
    if keep_r {
        ghosts(&mut wk.d);
    }
    sweep_finish(exec, lev, x, wk, keep_r);
}

fn check(lev: &SmootherLevel<'_>, x: &[f64], wk: &SweepWork) -> usize {
    let (n, cols) = (lev.a.nrows(), lev.a.ncols());
    assert!(x.len() == cols && lev.inv_diag.len() == n);
    assert!(wk.r.len() == n && wk.d.len() == cols && wk.d2.len() == cols);
    n
}

/// The first pass of a [`sweep`]: `d = s0 D^-1 r` with `r = b` and `x = 0`
/// ([`SweepStart::Zero`]), `r` as it is ([`SweepStart::Residual`]) or
/// `r = b - A x` computed ([`SweepStart::Compute`]: the ghosts of `x`
/// filled).
pub fn sweep_start(
    exec: Exec,
    lev: &SmootherLevel<'_>,
    b: &[f64],
    x: &mut [f64],
    wk: &mut SweepWork,
    start: SweepStart,
) {
    let n = check(lev, x, wk);
    assert_eq!(b.len(), n);
    let (a, v, dinv, s0) = (lev.a, lev.a32, lev.inv_diag, lev.s0);
    match start {
        SweepStart::Zero => blocks3(
            exec,
            &mut x[..n],
            &mut wk.r,
            &mut wk.d[..n],
            |s, xb, rb, db| {
                for l in 0..xb.len() {
                    let i = s + l;
                    xb[l] = 0.0;
                    rb[l] = b[i];
                    db[l] = s0 * dinv[i] * b[i];
                }
            },
        ),
        SweepStart::Residual => {
            let r = &wk.r;
            blocks1(exec, &mut wk.d[..n], |s, db| {
                for (l, di) in db.iter_mut().enumerate() {
                    *di = s0 * dinv[s + l] * r[s + l];
                }
                0.0
            });
        }
        SweepStart::Compute => {
            let xr = &*x;
            blocks2(exec, &mut wk.r, &mut wk.d[..n], |s, rb, db| {
                for l in 0..rb.len() {
                    let i = s + l;
                    let ri = b[i] - a.row_dot_with(v, i, xr);
                    rb[l] = ri;
                    db[l] = s0 * dinv[i] * ri;
                }
            });
        }
    }
}

/// One step of a [`sweep`] (the ghosts of `wk.d` filled): `x += d`,
/// `r -= A d`, `d = c1 d + c2 D^-1 r`, one fused pass.
pub fn sweep_step(
    exec: Exec,
    lev: &SmootherLevel<'_>,
    x: &mut [f64],
    wk: &mut SweepWork,
    c1: f64,
    c2: f64,
) {
    let n = check(lev, x, wk);
    let (a, v, dinv) = (lev.a, lev.a32, lev.inv_diag);
    let d = &wk.d;
    blocks3(
        exec,
        &mut x[..n],
        &mut wk.r,
        &mut wk.d2[..n],
        |s, xb, rb, db| {
            for l in 0..xb.len() {
                let i = s + l;
                let q = a.row_dot_with(v, i, d);
                xb[l] += d[i];
                let ri = rb[l] - q;
                rb[l] = ri;
                db[l] = c1 * d[i] + c2 * dinv[i] * ri;
            }
        },
    );
    std::mem::swap(&mut wk.d, &mut wk.d2);
}

/// The last pass of a [`sweep`]: `x += d` and, with `keep_r` (the ghosts
/// of `wk.d` filled), `r -= A d`.
pub fn sweep_finish(
    exec: Exec,
    lev: &SmootherLevel<'_>,
    x: &mut [f64],
    wk: &mut SweepWork,
    keep_r: bool,
) {
    let n = check(lev, x, wk);
    let (a, v) = (lev.a, lev.a32);
    let d = &wk.d;
    if keep_r {
        blocks2(exec, &mut x[..n], &mut wk.r, |s, xb, rb| {
            for l in 0..xb.len() {
                let i = s + l;
                xb[l] += d[i];
                rb[l] -= a.row_dot_with(v, i, d);
            }
        });
    } else {
        blocks1(exec, &mut x[..n], |s, xb| {
            for (l, xi) in xb.iter_mut().enumerate() {
                *xi += d[s + l];
            }
            0.0
        });
    }
}
