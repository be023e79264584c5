//! AMG-CG over the ranks: CG preconditioned by the distributed V-cycle
//! ([`crate::amg::DistHierarchy`]) on the equilibrated system of
//! [`crate::cg::EquilibratedDist`] (the engine's scaling, near-null-space
//! vector `B = 1 / d` and parameters), stopped by the convergence rule of
//! every solver ([`quadflow_systems::solver::Convergence`]).
//!
//! Per iteration: `q = A p` (one halo exchange of `p`), one all-reduce of
//! `p.q`, `x += alpha p`, `r -= alpha q`, the V-cycle, then one all-reduce
//! of `(r.r, r.z)` together (and of a stop flag): two all-reduces, as
//! Jacobi-CG. When the recurrence residual meets the rule's target, the
//! V-cycle just run is not used: the iterate is folded (`base += x`, as
//! the engine's loop does), `b - A base` in double-double (one exchange of
//! `base`) replaces the residual, and the rule judges the true residual of
//! the `u` it unscales to.

use crate::amg_cycle::CycleState;
use crate::amg_setup::{DistAmgSettings, DistHierarchy, LevelInfo, LevelMatrix};
use crate::assemble::LocalSystem;
use crate::cg::{DistSolution, EquilibratedDist, residuals};
use crate::comm::{self, Comm};
use crate::part::Part;
use crate::threads::Threads;
use quadflow_systems::amg::AmgSettings;
use quadflow_systems::exec::{blocks2, dot, map_blocks_mut};
use quadflow_systems::solver::{CgSettings, Convergence, SolveError, SolveStats, Verdict};
use std::time::Instant;

/// What a distributed AMG-CG solve measured, per level (the same on
/// every rank; times are the slowest rank's).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AmgReport {
    /// Every level, finest first.
    pub levels: Vec<LevelInfo>,
    /// Levels distributed over several ranks.
    pub distributed: usize,
    /// Halo exchanges of each level in the whole solve (one rank's).
    pub exchanges: Vec<u64>,
    /// Seconds in each level's halo exchanges (the slowest rank).
    pub exchange_seconds: Vec<f64>,
    /// V-cycles applied.
    pub cycles: usize,
}

impl AmgReport {
    /// Bytes of halo values each level's exchanges move in one V-cycle
    /// (all ranks).
    pub fn halo_bytes_per_cycle(&self) -> Vec<usize> {
        self.levels
            .iter()
            .enumerate()
            .map(|(k, l)| {
                let per_cycle =
                    self.exchanges.get(k).copied().unwrap_or(0) as f64 / self.cycles.max(1) as f64;
                (8.0 * l.halo_values as f64 * per_cycle).round() as usize
            })
            .collect()
    }
}

/// CG preconditioned by the distributed V-cycle of `h` on the rank's
/// equilibrated rows `eq` (`A x = b`), stopped when `check(x)` (collective:
/// the true equilibrated residual of the `u` that `x` unscales to, on the
/// original system) is at most `rtol`. Returns `x` on the owned rows, the
/// stats the rule fills, the cycle's work (with its exchange times) and
/// the V-cycles applied.
pub fn amg_pcg(
    comm: &dyn Comm,
    threads: &Threads,
    h: &DistHierarchy,
    eq: &EquilibratedDist,
    settings: &CgSettings,
    check: &mut dyn FnMut(&[f64]) -> f64,
    progress: &mut dyn FnMut(usize, f64) -> bool,
) -> Result<(Vec<f64>, SolveStats, CycleState, usize), SolveError> {
    let a = &eq.a;
    let m = a.nrows();
    let cols = a.ncols();
    let b = &eq.b;
    let b_norm = eq.b_norm;
    let mut stats = SolveStats::default();
    let mut w = h.work();
    let mut x = vec![0.0; cols];
    if b_norm == 0.0 {
        stats.converged = true;
        x.truncate(m);
        return Ok((x, stats, w, 0));
    }
    let mut rule = Convergence::new(settings.rtol);
    let rel = |rr: f64| rr.sqrt() / b_norm;
    let mut cycles = 0usize;
    let mut r = b.to_vec();
    let mut z = vec![0.0; m];
    let mut p = vec![0.0; cols];
    let mut q = vec![0.0; m];
    // The iterate is `base + x`: CG updates `x` from zero after every
    // check, and the check folds it into `base` (column space: its ghosts
    // are fetched for the residual), as the engine's loop does.
    let mut base = vec![0.0; cols];
    let mut precondition = |r: &[f64], z: &mut [f64], w: &mut CycleState| {
        cycles += 1;
        h.precondition(comm, threads, r, z, w);
    };
    precondition(&r, &mut z, &mut w);
    let mut s = threads.run(|e| [dot(e, &r, &r), dot(e, &r, &z), 0.0]);
    comm.allreduce_sum(&mut s);
    let (mut rr, mut rz) = (s[0], s[1]);
    p[..m].copy_from_slice(&z);
    let mut it = 0;
    let mut stop = false;
    let verdict = loop {
        if rel(rr) < rule.target() {
            // fold, then the true residual b - A base (double-double)
            // replaces the recurrence's; the rule judges the residual of
            // the u it unscales to
            for (bi, xi) in base[..m].iter_mut().zip(x[..m].iter_mut()) {
                *bi += *xi;
                *xi = 0.0;
            }
            eq.halo.exchange(comm, &mut base, &mut |_| {});
            let mut g = [threads.run(|e| {
                let bs = &base;
                map_blocks_mut(e, &mut r, |st, rb| {
                    a.residual_exact_rows(st..st + rb.len(), b, bs, rb);
                    rb.iter().map(|v| v * v).sum::<f64>()
                })
                .iter()
                .sum()
            })];
            comm.allreduce_sum(&mut g);
            rr = g[0];
            match rule.judge(it, check(&base[..m])) {
                Verdict::Replace => {}
                v => break Some(v),
            }
            precondition(&r, &mut z, &mut w);
            let mut g = [threads.run(|e| dot(e, &r, &z))];
            comm.allreduce_sum(&mut g);
            rz = g[0];
            p[..m].copy_from_slice(&z);
            continue;
        }
        if it >= settings.max_iter {
            break None;
        }
        eq.halo.exchange(comm, &mut p, &mut |_| {});
        let mut pq = [threads.run(|e| {
            a.spmv(e, &p, &mut q);
            dot(e, &p[..m], &q)
        })];
        comm.allreduce_sum(&mut pq);
        let pq = pq[0];
        if pq.is_nan() || pq <= 0.0 {
            return Err(SolveError::Breakdown {
                iteration: it,
                pap: pq,
            });
        }
        let alpha = rz / pq;
        let rr_local: f64 = threads.run(|e| {
            let (pr, qr) = (&p, &q);
            blocks2(e, &mut x[..m], &mut r, |st, xb, rb| {
                let mut a2 = 0.0;
                for l in 0..xb.len() {
                    xb[l] += alpha * pr[st + l];
                    let v = rb[l] - alpha * qr[st + l];
                    rb[l] = v;
                    a2 += v * v;
                }
                a2
            })
            .iter()
            .sum()
        });
        it += 1;
        // the cycle of the new residual, then (r.r, r.z) and the stop flag
        // in one all-reduce (the cycle is wasted at the last iteration)
        precondition(&r, &mut z, &mut w);
        let mut s = [rr_local, threads.run(|e| dot(e, &r, &z)), stop as u8 as f64];
        comm.allreduce_sum(&mut s);
        if s[2] > 0.0 {
            return Err(SolveError::Interrupted { iteration: it });
        }
        rr = s[0];
        stop = !progress(it, rel(rr));
        if rel(rr) < rule.target() {
            continue;
        }
        let beta = s[1] / rz;
        rz = s[1];
        threads.run(|e| {
            let zr = &z;
            quadflow_systems::exec::blocks1(e, &mut p[..m], |st, pb| {
                for (l, pi) in pb.iter_mut().enumerate() {
                    *pi = zr[st + l] + beta * *pi;
                }
                0.0
            })
        });
    };
    for (bi, xi) in base[..m].iter_mut().zip(&x[..m]) {
        *bi += *xi;
    }
    stats.iterations = it;
    rule.finish(&mut stats, verdict, rel(rr));
    base.truncate(m);
    Ok((base, stats, w, cycles))
}

/// The distributed AMG-CG solve on the rank's own thread (see
/// [`solve_amg_cg_on`]).
pub fn solve_amg_cg(
    comm: &dyn Comm,
    part: &Part,
    sys: &LocalSystem,
    cg: &CgSettings,
    amg: &AmgSettings,
    dist: &DistAmgSettings,
) -> Result<DistSolution, SolveError> {
    solve_amg_cg_on(
        comm,
        part,
        sys,
        cg,
        amg,
        dist,
        &Threads::serial(),
        &mut |_, _| true,
    )
    .map(|s| s.0)
}

/// The distributed AMG-CG solve: equilibrate (as Jacobi-CG does), build
/// the hierarchy, CG with the V-cycle, unscale, true residual; the local
/// work on the rank's `threads`. Returns the solution and the per-level
/// report.
#[allow(clippy::too_many_arguments)]
pub fn solve_amg_cg_on(
    comm: &dyn Comm,
    part: &Part,
    sys: &LocalSystem,
    cg: &CgSettings,
    amg: &AmgSettings,
    dist: &DistAmgSettings,
    threads: &Threads,
    progress: &mut dyn FnMut(usize, f64) -> bool,
) -> Result<(DistSolution, AmgReport), SolveError> {
    let t0 = Instant::now();
    let eq = {
        let _s = tracing::info_span!("mpi::amg_equilibrate").entered();
        EquilibratedDist::new(comm, part, sys)?
    };
    let fine = LevelMatrix {
        a: eq.a.clone(),
        offsets: eq.offsets.clone(),
        ghost_gid: eq.ghost_gid.clone(),
        halo: eq.halo.clone(),
        b: eq
            .node_of_row
            .iter()
            .map(|&i| 1.0 / eq.d[i as usize])
            .collect(),
    };
    let h = {
        let _s = tracing::info_span!("mpi::amg_setup").entered();
        DistHierarchy::new(comm, threads, fine, amg, dist)?
    };
    let setup = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let (x, out, w, cycles) = {
        let _s = tracing::info_span!("mpi::amg_cg").entered();
        let mut check = |x: &[f64]| residuals(comm, part, sys, &eq.unscale(x)).equilibrated;
        amg_pcg(comm, threads, &h, &eq, cg, &mut check, progress)?
    };
    let solve = t1.elapsed().as_secs_f64();
    let u = eq.unscale(&x);
    let r = residuals(comm, part, sys, &u);
    let mut secs = w.exchange_seconds.clone();
    comm.allreduce_max(&mut secs);
    let mut counts: Vec<f64> = w.exchanges.iter().map(|&c| c as f64).collect();
    comm.allreduce_max(&mut counts);
    let own: usize = (0..eq.a.nrows())
        .map(|i| {
            eq.a.row(i)
                .0
                .iter()
                .filter(|&&j| (j as usize) < eq.a.nrows())
                .count()
        })
        .sum();
    let stats = SolveStats {
        setup_seconds: setup,
        solve_seconds: solve,
        decoupled_rows: eq.decoupled,
        cg_rows: eq.global_rows,
        cg_stored: (comm::sum_usize(comm, own) + eq.global_rows) / 2,
        levels: h.levels(),
        operator_complexity: h.operator_complexity(),
        ..out
    };
    let report = AmgReport {
        levels: h.levels.clone(),
        distributed: h.distributed,
        exchanges: counts.iter().map(|&c| c as u64).collect(),
        exchange_seconds: secs,
        cycles,
    };
    Ok((
        DistSolution {
            u,
            stats,
            true_residual: r.raw,
            equilibrated_residual: r.equilibrated,
        },
        report,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assemble::tests::global_system;
    use crate::cg::gather_u;
    use crate::comm::ThreadComm;
    use crate::part::build_parts;
    use crate::partition::{Method, partition, tests::lattice};
    use quadflow_systems::exec::Exec;
    use quadflow_systems::pipeline::RunConfig;
    use std::sync::Arc;

    /// AMG-CG on 1 to 8 thread ranks, with levels distributed down to a
    /// few dozen rows a rank and every agglomeration stage: converged,
    /// `u` as the engine's AMG-CG, iterations within +20% of one rank's
    /// (which are the engine's own).
    #[test]
    fn distributed_amg_cg_converges_like_the_engine() {
        let m = lattice(48, 14, true);
        let mut cfg = RunConfig::default();
        cfg.solver.cg.rtol = 1e-10;
        cfg.solver.amg.max_coarse = 40;
        let (k, f) = global_system(&m, cfg.clone());
        let (us, ss) = quadflow_systems::amg::solve_amg_cg(
            &k,
            &f,
            &cfg.solver.cg,
            &cfg.solver.amg,
            Exec::Serial,
            &mut |_, _| true,
        )
        .unwrap();
        for (p, below, method) in [
            (1, 20_000, Method::Rcb),
            (2, 30, Method::Rcb),
            (3, 30, Method::Metis),
            (4, 60, Method::Rcb),
            (5, 30, Method::Rcb),
            (8, 20, Method::Metis),
            (8, 20_000, Method::Rcb),
        ] {
            let dist = DistAmgSettings {
                agglomerate_below: below,
            };
            let parts = Arc::new(build_parts(&m, &partition(&m, p, method).unwrap()));
            let cfg2 = cfg.clone();
            let out = ThreadComm::run(p, move |c| {
                let part = &parts[c.rank()];
                let sys = LocalSystem::assemble_serial(part, cfg2.clone()).unwrap();
                let threads = if c.rank() % 2 == 0 {
                    Threads::serial()
                } else {
                    Threads::pool(Arc::new(
                        rayon::ThreadPoolBuilder::new()
                            .num_threads(2)
                            .build()
                            .unwrap(),
                    ))
                };
                let (sol, rep) = solve_amg_cg_on(
                    c,
                    part,
                    &sys,
                    &cfg2.solver.cg,
                    &cfg2.solver.amg,
                    &dist,
                    &threads,
                    &mut |_, _| true,
                )
                .unwrap();
                (
                    gather_u(c, 0, part, &sol.u),
                    sol.stats,
                    sol.true_residual,
                    rep,
                )
            });
            let (u, stats, tr, rep) = &out[0];
            assert!(
                out.iter()
                    .all(|o| o.1.iterations == stats.iterations && o.3 == *rep)
            );
            assert!(stats.converged, "p {p}: {stats:?}");
            assert!(
                *tr < 2e-10 || stats.recurrence_residual <= 1e-10,
                "p {p}: true residual {tr:e}"
            );
            let e = crate::cg::tests::rel_max(u.as_ref().unwrap(), &us);
            assert!(
                e < 1e-8,
                "p {p}: u differs from the engine's AMG-CG by {e:e}"
            );
            if p == 1 {
                assert_eq!(stats.iterations, ss.iterations, "one rank is the engine");
                assert_eq!(rep.distributed, 0);
            }
            assert!(
                stats.iterations as f64 <= 1.2 * ss.iterations as f64,
                "p {p} below {below}: {} iterations against the engine's {}",
                stats.iterations,
                ss.iterations
            );
            if below < 100 && p > 1 {
                assert!(rep.distributed >= 2, "p {p}: {rep:?}");
                assert!(rep.levels.iter().any(|l| l.handed_rows > 0));
                assert!(rep.exchanges[0] > 0 && rep.levels[0].halo_values > 0);
            }
            eprintln!(
                "p {p} below {below}: {} iterations (engine {}), levels {:?}",
                stats.iterations,
                ss.iterations,
                rep.levels
                    .iter()
                    .map(|l| (l.rows, l.ranks))
                    .collect::<Vec<_>>()
            );
        }
    }
}
