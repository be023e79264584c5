//! Applying the hierarchy: the polynomial smoother and the V-cycle.

use super::setup::{Coarse, Hierarchy, Level};
use crate::exec::{Exec, blocks1, blocks2, blocks3};
use crate::sparse::{Csr, Narrow};

/// A matrix as the cycle applies it: its pattern, the values to use, and
/// its narrow index where it has one.
#[derive(Clone, Copy)]
pub(super) struct Op<'a, T> {
    pub(super) a: &'a Csr,
    pub(super) v: &'a [T],
    pub(super) nw: Option<&'a Narrow>,
}

impl<T: Copy + Into<f64> + Sync> Op<'_, T> {
    /// `(A x)_i` (the same sum either way).
    #[inline(always)]
    pub(super) fn dot(&self, i: usize, x: &[f64]) -> f64 {
        match self.nw {
            Some(nw) => self.a.row_dot_narrow(nw, self.v, i, x),
            None => self.a.row_dot_with(self.v, i, x),
        }
    }

    /// `(A d)_i` with `d_j = s0 w_j y_j` formed where read (each product
    /// rounded as `s0 * w_j * y_j`, as a vector `d` would hold it).
    #[inline(always)]
    pub(super) fn dot_scaled(&self, i: usize, w: &[f64], y: &[f64], s0: f64) -> f64 {
        let n = self.a.ncols();
        assert!(w.len() >= n && y.len() >= n);
        let g = |j: usize| {
            // SAFETY: j is a column of the matrix, below ncols <= the
            // lengths of w and y (asserted).
            unsafe { s0 * *w.get_unchecked(j) * *y.get_unchecked(j) }
        };
        match self.nw {
            Some(nw) => self.a.row_fold_narrow(nw, self.v, i, g),
            None => self.a.row_fold_with(self.v, i, g),
        }
    }

    /// `y = A x`.
    pub(super) fn spmv(&self, exec: Exec, x: &[f64], y: &mut [f64]) {
        assert_eq!(y.len(), self.a.nrows());
        blocks1(exec, y, |s, yb| {
            for (l, yi) in yb.iter_mut().enumerate() {
                *yi = self.dot(s + l, x);
            }
            0.0
        });
    }

    /// `y += A x`.
    pub(super) fn spmv_add(&self, exec: Exec, x: &[f64], y: &mut [f64]) {
        assert_eq!(y.len(), self.a.nrows());
        blocks1(exec, y, |s, yb| {
            for (l, yi) in yb.iter_mut().enumerate() {
                *yi += self.dot(s + l, x);
            }
            0.0
        });
    }
}

impl Level {
    /// The level's operator in double precision (CG's product on the
    /// finest level).
    pub(super) fn op_a64(&self) -> Op<'_, f64> {
        Op {
            a: &self.a,
            v: self.a.vals(),
            nw: self.na.as_ref(),
        }
    }
}

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
    /// `a`'s narrow index (6 bytes an entry instead of 8), where it has
    /// one: the same sums, fewer bytes.
    pub narrow: Option<&'a Narrow>,
    /// `1 / a_ii` on the rows.
    pub inv_diag: &'a [f64],
    /// First scale: `d = s0 D^-1 r`.
    pub s0: f64,
    /// Per step `(c1, c2)`: `d = c1 d + c2 D^-1 r`.
    pub steps: &'a [(f64, f64)],
}

impl<'a> SmootherLevel<'a> {
    fn op(&self) -> Op<'a, f32> {
        Op {
            a: self.a,
            v: self.a32,
            nw: self.narrow,
        }
    }
}

/// Bytes one product streams for a matrix of `rows` rows and `nnz`
/// entries with values of `value` bytes: through a narrow index 2 bytes
/// of column and 8 of row (start, base) per row, else 4 and 8.
fn stream_bytes(rows: usize, nnz: usize, value: usize, narrow: bool) -> usize {
    nnz * (value + if narrow { 2 } else { 4 }) + 8 * rows
}
impl Hierarchy {
    /// Bytes one V-cycle (as [`Hierarchy::apply`] runs it) moves through
    /// memory at least: every matrix it applies streamed once per product
    /// (single-precision values, the narrow index where there is one) and
    /// every vector a pass reads or writes counted once per pass (a
    /// gathered vector once), the coarsest level's dense factor once;
    /// without `r.z`.
    pub fn bytes_per_cycle(&self) -> usize {
        let s = &self.settings;
        let steps = s.degree.max(1) - 1;
        let mut total = 0;
        for (k, l) in self.levels.iter().enumerate() {
            let n = l.a.nrows();
            let nc = l.p.ncols();
            let ma = stream_bytes(n, l.a.nnz(), 4, l.na.is_some());
            let v = 8 * n;
            // one sweep: its start, its steps, its last pass
            let sweep = |start: usize, first_fused: bool, keep_r: bool| {
                let mut b = start;
                let mut rest = steps;
                if first_fused && steps > 0 {
                    b = ma + 5 * v; // reads b, D^-1; writes x, r, d
                    rest -= 1;
                }
                b += rest * (ma + 7 * v);
                b + if keep_r { ma + 5 * v } else { 3 * v }
            };
            for j in 0..s.pre_sweeps {
                let start = if j == 0 { 5 * v } else { 3 * v };
                total += sweep(start, j == 0, true);
            }
            if s.pre_sweeps == 0 {
                total += 3 * v;
            }
            total += stream_bytes(nc, l.r.nnz(), 4, l.nr.is_some()) + v + 8 * nc;
            total += stream_bytes(n, l.p.nnz(), 4, l.np.is_some()) + 8 * nc + 2 * v;
            for j in 0..s.post_sweeps {
                let start = if j == 0 { ma + 5 * v } else { 3 * v };
                total += sweep(start, false, j + 1 < s.post_sweeps);
            }
            // r.z fused into the finest level's last pass
            if k == 0 && s.post_sweeps > 0 {
                total += v;
            }
        }
        let nc = self.coarse_a.nrows();
        total + 8 * nc * nc + 16 * nc
    }

    /// Bytes one AMG-CG iteration moves at least: CG's product in double
    /// precision, its vector updates (`x`, `r` and `r.r`; the direction),
    /// and one V-cycle ([`Hierarchy::bytes_per_cycle`], `r.z` fused).
    pub fn bytes_per_iteration(&self) -> usize {
        let a = self.fine();
        let n = a.nrows();
        let narrow = self.levels.first().is_some_and(|l| l.na.is_some());
        stream_bytes(n, a.nnz(), 8, narrow)
            + 2 * 8 * n
            + 6 * 8 * n
            + 3 * 8 * n
            + self.bytes_per_cycle()
    }

    /// The finest operator in double precision, as CG applies it.
    pub(super) fn fine_op(&self) -> Op<'_, f64> {
        match self.levels.first() {
            Some(l) => l.op_a64(),
            None => Op {
                a: &self.coarse_a,
                v: self.coarse_a.vals(),
                nw: None,
            },
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
    ///
    /// With `want_dot`, may return `b.x` (fused with the last smoothing
    /// pass; `None` where there is none).
    fn vcycle(
        &self,
        exec: Exec,
        l: usize,
        b: &[f64],
        x: &mut [f64],
        w: &mut [Work],
        want_dot: bool,
    ) -> Option<f64> {
        if l == self.levels.len() {
            self.coarse_solve(b, x);
            return None;
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
            sweep_local(exec, &smoother_of(lev), b, x, &mut wk.s, start, true, false);
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
        let (rop, pop) = (
            Op {
                a: &lev.r,
                v: &lev.r32,
                nw: lev.nr.as_ref(),
            },
            Op {
                a: &lev.p,
                v: &lev.p32,
                nw: lev.np.as_ref(),
            },
        );
        rop.spmv(exec, &wk.s.r, &mut bc);
        self.vcycle(exec, l + 1, &bc, &mut xc, below, false);
        pop.spmv_add(exec, &xc, x);
        below[0].b = bc;
        below[0].x = xc;
        // Post-smoothing.
        let mut dot = None;
        for k in 0..post {
            let start = if k == 0 {
                SweepStart::Compute
            } else {
                SweepStart::Residual
            };
            let last = k + 1 == post;
            dot = sweep_local(
                exec,
                &smoother_of(lev),
                b,
                x,
                &mut wk.s,
                start,
                !last,
                last && want_dot,
            );
        }
        dot
    }

    /// `z = M^-1 r`: one V-cycle with a zero initial guess.
    pub(super) fn apply(&self, exec: Exec, r: &[f64], z: &mut [f64], w: &mut [Work]) {
        self.vcycle(exec, 0, r, z, w, false);
    }

    /// [`Hierarchy::apply`], returning `r.z` (`exec::dot(exec, r, z)`,
    /// the same bits), fused with the cycle's last pass where it can be.
    pub(super) fn apply_dot(&self, exec: Exec, r: &[f64], z: &mut [f64], w: &mut [Work]) -> f64 {
        match self.vcycle(exec, 0, r, z, w, true) {
            Some(d) => d,
            None => crate::exec::dot(exec, r, z),
        }
    }
}

/// A level of the hierarchy as the smoother reads it.
fn smoother_of(lev: &Level) -> SmootherLevel<'_> {
    SmootherLevel {
        a: &lev.a,
        a32: &lev.v32,
        narrow: lev.na.as_ref(),
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
/// three passes itself in this order.) The engine's own V-cycle runs the
/// same passes, with the start from zero fused into the first step and
/// `b.x` fused into the last pass where it can.
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

/// [`sweep`] on a square level (one process): the start from `x = 0`
/// fused with the first step (`d = s0 D^-1 b` formed where read; the same
/// values as the two passes, one pass less) and, with `dot_b` (and not
/// `keep_r`), `b.x` of the new `x` returned from the last pass, the same
/// bits as [`crate::exec::dot`].
#[allow(clippy::too_many_arguments)]
fn sweep_local(
    exec: Exec,
    lev: &SmootherLevel<'_>,
    b: &[f64],
    x: &mut [f64],
    wk: &mut SweepWork,
    start: SweepStart,
    keep_r: bool,
    dot_b: bool,
) -> Option<f64> {
    let n = check(lev, x, wk);
    assert!(b.len() == n && lev.a.ncols() == n);
    let mut steps = lev.steps;
    if start == SweepStart::Zero && !steps.is_empty() {
        let (a, dinv, s0) = (lev.op(), lev.inv_diag, lev.s0);
        let (c1, c2) = steps[0];
        steps = &steps[1..];
        blocks3(exec, x, &mut wk.r, &mut wk.d2, |s, xb, rb, db| {
            for l in 0..xb.len() {
                let i = s + l;
                let q = a.dot_scaled(i, dinv, b, s0);
                let di = s0 * dinv[i] * b[i];
                xb[l] = 0.0 + di;
                let ri = b[i] - q;
                rb[l] = ri;
                db[l] = c1 * di + c2 * dinv[i] * ri;
            }
        });
        std::mem::swap(&mut wk.d, &mut wk.d2);
    } else {
        sweep_start(exec, lev, b, x, wk, start);
    }
    for &(c1, c2) in steps {
        sweep_step(exec, lev, x, wk, c1, c2);
    }
    finish(exec, lev, x, wk, keep_r, dot_b.then_some(b))
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
    let (a, dinv, s0) = (lev.op(), lev.inv_diag, lev.s0);
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
                    let ri = b[i] - a.dot(i, xr);
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
    let (a, dinv) = (lev.op(), lev.inv_diag);
    let d = &wk.d;
    blocks3(
        exec,
        &mut x[..n],
        &mut wk.r,
        &mut wk.d2[..n],
        |s, xb, rb, db| {
            for l in 0..xb.len() {
                let i = s + l;
                let q = a.dot(i, d);
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
    finish(exec, lev, x, wk, keep_r, None);
}

/// [`sweep_finish`]; with `dot_b = Some(b)` (and not `keep_r`) also
/// `b.x` of the new `x`, each block's while it is in cache, summed as
/// `exec::dot` sums it.
fn finish(
    exec: Exec,
    lev: &SmootherLevel<'_>,
    x: &mut [f64],
    wk: &mut SweepWork,
    keep_r: bool,
    dot_b: Option<&[f64]>,
) -> Option<f64> {
    let n = check(lev, x, wk);
    let a = lev.op();
    let d = &wk.d;
    if keep_r {
        assert!(dot_b.is_none(), "the dot is fused with the last sweep only");
        blocks2(exec, &mut x[..n], &mut wk.r, |s, xb, rb| {
            for l in 0..xb.len() {
                let i = s + l;
                xb[l] += d[i];
                rb[l] -= a.dot(i, d);
            }
        });
        None
    } else {
        let dot = blocks1(exec, &mut x[..n], |s, xb| {
            for (l, xi) in xb.iter_mut().enumerate() {
                *xi += d[s + l];
            }
            match dot_b {
                Some(b) => b[s..s + xb.len()]
                    .iter()
                    .zip(xb.iter())
                    .map(|(p, q)| p * q)
                    .sum(),
                None => 0.0,
            }
        });
        dot_b.map(|_| dot)
    }
}
