//! The distributed V-cycle of a [`crate::amg::DistHierarchy`] (see [`crate::amg`]):
//! on a distributed level the engine's smoother passes with a halo
//! exchange before each product, the restriction and prolongation with
//! `P`'s halo, the hand-overs to fewer ranks, the engine's cycle on the
//! last rank.

use crate::amg_setup::{DistHierarchy, DistLevel, Step};
use crate::comm::Comm;
use crate::threads::Threads;
use quadflow_systems::amg::{self as host, CycleWork, SweepStart, SweepWork};
use std::time::Instant;

impl DistHierarchy {
    /// Work vectors of a V-cycle on this rank.
    pub fn work(&self) -> CycleState {
        let steps = self
            .steps
            .iter()
            .map(|s| match s {
                Step::Level(l) => {
                    let (n, cols, nc) = (l.a.nrows(), l.a.ncols(), l.p.ncols());
                    StepWork {
                        s: SweepWork::new(n, cols),
                        x: vec![0.0; cols],
                        bc: vec![0.0; nc],
                        xc: vec![0.0; nc],
                        ..Default::default()
                    }
                }
                _ => StepWork::default(),
            })
            .collect();
        CycleState {
            steps,
            exchange_seconds: vec![0.0; self.levels.len()],
            exchanges: vec![0; self.levels.len()],
        }
    }

    /// `x = M^-1 b`: one V-cycle with a zero initial guess (collective;
    /// `b` and `x` on the finest level's rows of this rank).
    pub fn precondition(
        &self,
        comm: &dyn Comm,
        threads: &Threads,
        b: &[f64],
        x: &mut [f64],
        w: &mut CycleState,
    ) {
        let CycleState {
            steps,
            exchange_seconds,
            exchanges,
        } = w;
        let mut t = Timing {
            seconds: exchange_seconds,
            count: exchanges,
        };
        self.vcycle(comm, threads, 0, b, x, steps, &mut t);
    }

    #[allow(clippy::too_many_arguments)]
    fn vcycle(
        &self,
        comm: &dyn Comm,
        threads: &Threads,
        i: usize,
        b: &[f64],
        x: &mut [f64],
        w: &mut [StepWork],
        t: &mut Timing<'_>,
    ) {
        let (here, below) = w.split_at_mut(1);
        let wk = &mut here[0];
        match &self.steps[i] {
            Step::Level(lev) => {
                let n = lev.a.nrows();
                let (pre, post) = (self.settings.pre_sweeps, self.settings.post_sweeps);
                for k in 0..pre {
                    let start = if k == 0 {
                        SweepStart::Zero
                    } else {
                        SweepStart::Residual
                    };
                    dist_sweep(comm, threads, lev, b, &mut wk.x, &mut wk.s, start, true, t);
                }
                if pre == 0 {
                    wk.x.fill(0.0);
                    wk.s.r.copy_from_slice(b);
                }
                let nc = lev.nc;
                let (r, bc) = (&wk.s.r, &mut wk.bc);
                threads.run(|e| lev.r.spmv_with(e, &lev.r32, r, bc));
                t.time(lev.index, || lev.p_halo.reverse_add(comm, &mut wk.bc));
                self.vcycle(
                    comm,
                    threads,
                    i + 1,
                    &wk.bc[..nc],
                    &mut wk.xc[..nc],
                    below,
                    t,
                );
                t.time(lev.index, || {
                    lev.p_halo.exchange(comm, &mut wk.xc, &mut |_| {})
                });
                let (xc, xf) = (&wk.xc, &mut wk.x[..n]);
                threads.run(|e| lev.p.spmv_add_with(e, &lev.p32, xc, xf));
                for k in 0..post {
                    let start = if k == 0 {
                        SweepStart::Compute
                    } else {
                        SweepStart::Residual
                    };
                    let keep = k + 1 < post;
                    dist_sweep(comm, threads, lev, b, &mut wk.x, &mut wk.s, start, keep, t);
                }
                x.copy_from_slice(&wk.x[..n]);
            }
            Step::Send { to, len } => {
                assert_eq!(b.len(), *len);
                if *len > 0 {
                    comm.exchange(&[(*to, b)], &mut [], &mut || {});
                    comm.exchange(&[], &mut [(*to, x)], &mut || {});
                }
            }
            Step::Recv { from, len } => {
                let n = b.len();
                wk.bc.clear();
                wk.bc.extend_from_slice(b);
                wk.bc.resize(n + len, 0.0);
                if *len > 0 {
                    comm.exchange(&[], &mut [(*from, &mut wk.bc[n..])], &mut || {});
                }
                wk.xc.resize(n + len, 0.0);
                self.vcycle(comm, threads, i + 1, &wk.bc, &mut wk.xc, below, t);
                x.copy_from_slice(&wk.xc[..n]);
                if *len > 0 {
                    comm.exchange(&[(*from, &wk.xc[n..])], &mut [], &mut || {});
                }
            }
            Step::Tail(h, perm) if perm.is_empty() => {
                let cw = &mut wk.cycle;
                threads.run(|e| h.apply_with(e, b, x, cw));
            }
            Step::Tail(h, perm) => {
                let n = b.len();
                wk.bc.resize(n, 0.0);
                wk.xc.resize(n, 0.0);
                for (r, &o) in perm.iter().enumerate() {
                    wk.bc[r] = b[o as usize];
                }
                let (bp, xp, cw) = (&wk.bc, &mut wk.xc, &mut wk.cycle);
                threads.run(|e| h.apply_with(e, bp, xp, cw));
                for (r, &o) in perm.iter().enumerate() {
                    x[o as usize] = wk.xc[r];
                }
            }
        }
    }
}

/// The time spent in each level's halo exchanges.
struct Timing<'a> {
    seconds: &'a mut [f64],
    count: &'a mut [u64],
}

impl Timing<'_> {
    /// Runs the exchange `f` of level `l`, timed.
    fn time(&mut self, l: usize, f: impl FnOnce()) {
        let t0 = Instant::now();
        f();
        self.seconds[l] += t0.elapsed().as_secs_f64();
        self.count[l] += 1;
    }
}

/// One sweep of the engine's smoother on a distributed level: its passes
/// on the rank's threads, a halo exchange before each product.
#[allow(clippy::too_many_arguments)]
fn dist_sweep(
    comm: &dyn Comm,
    threads: &Threads,
    lev: &DistLevel,
    b: &[f64],
    x: &mut [f64],
    wk: &mut SweepWork,
    start: SweepStart,
    keep_r: bool,
    t: &mut Timing<'_>,
) {
    let sm = lev.smoother();
    let mut fill = |v: &mut [f64]| t.time(lev.index, || lev.halo.exchange(comm, v, &mut |_| {}));
    if start == SweepStart::Compute {
        fill(x);
    }
    threads.run(|e| host::sweep_start(e, &sm, b, x, wk, start));
    for &(c1, c2) in &lev.steps {
        fill(&mut wk.d);
        threads.run(|e| host::sweep_step(e, &sm, x, wk, c1, c2));
    }
    if keep_r {
        fill(&mut wk.d);
    }
    threads.run(|e| host::sweep_finish(e, &sm, x, wk, keep_r));
}

/// Work vectors of one step.
#[derive(Debug, Clone, Default)]
pub(crate) struct StepWork {
    s: SweepWork,
    /// The correction on the level's columns.
    x: Vec<f64>,
    /// The coarse right-hand side (or, at a hand-over, the merged one).
    bc: Vec<f64>,
    /// The coarse correction.
    xc: Vec<f64>,
    cycle: CycleWork,
}

/// The work vectors of a rank's V-cycles, and the time its halo exchanges
/// took per level.
#[derive(Debug, Clone, Default)]
pub struct CycleState {
    steps: Vec<StepWork>,
    /// Seconds in each level's halo exchanges (this rank).
    pub exchange_seconds: Vec<f64>,
    /// Halo exchanges of each level (this rank).
    pub exchanges: Vec<u64>,
}
