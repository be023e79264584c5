//! Distributed Jacobi-CG on the equilibrated system: the reference
//! configuration of SPEC, as the engine's `solver.rs` runs it on one
//! process, over the ranks' owned rows.
//!
//! **Setup** ([`EquilibratedDist::new`]): `d = 1 / sqrt|K_ii|` on the
//! owned rows (exact: owned rows are complete), `d` of the ghosts from
//! their owners (one halo exchange), `A = D K D` on the owned rows that
//! have an off-diagonal entry, `b = D f`, `||D f||` over every row (one
//! all-reduce). Rows without couplings (unused nodes) are solved directly
//! (`u = f / K_ii`) and left out of CG, as the engine does.
//!
//! **Iteration** ([`pcg`]): SciPy's PCG with the Jacobi preconditioner,
//! stop when `||r|| < rtol ||b||` at the top of an iteration, `x0 = 0`.
//! Per iteration: the direction update and `q = A p`, with the halo
//! exchange of `p` (non-blocking messages) in flight while the rows that
//! need no ghost value are computed; one all-reduce of `p.q`; `r -= alpha
//! q` and one all-reduce of `(r.r, r.z)` fused (`x += alpha p` is folded
//! into the next iteration's first pass, as in the engine). That is two
//! all-reduces and one neighbour exchange per iteration, as few as CG
//! allows without reformulating it (a pipelined CG would fuse the two at
//! the cost of a different rounding). The sums differ from the engine's
//! only in their order, so iterations agree to a few and `u` to the
//! solve's tolerance.
//!
//! The local work is behind [`LocalKernels`]: the host's
//! [`FusedKernels`] (two passes over the upper triangle, the engine's
//! bytes per row) or the device's ([`crate::gpu`]), with the halo values
//! staged through host buffers in [`LocalKernels::pack`] and
//! [`LocalKernels::unpack`].

use crate::assemble::LocalSystem;
use crate::comm::{self, Comm};
use crate::dist::{DistMatrix, GlobalRow, IdMap, row_dot};
use crate::kernels::{FusedKernels, LocalKernels};
use crate::part::{Halo, Part};
use quadflow_systems::solver::{CgSettings, SolveError, SolveStats};
use std::time::Instant;

/// Result of [`pcg`].
#[derive(Debug, Clone)]
pub struct DistCgOutcome {
    /// `x` on the owned rows of the matrix.
    pub x: Vec<f64>,
    /// Iterations, convergence, final recurrence residual, time.
    pub stats: SolveStats,
}

/// The new `r` of the rows the neighbours need into their ghosts, with
/// `overlap` (the all-reduce of `(r.r, r.z)` and the work that needs no
/// ghost) in flight: the exchange adds no round of communication of its
/// own.
fn exchange_r(
    comm: &dyn Comm,
    halo: &Halo,
    k: &mut dyn LocalKernels,
    bufs: &mut (Vec<Vec<f64>>, Vec<Vec<f64>>),
    overlap: &mut dyn FnMut(&mut dyn LocalKernels),
) {
    let (sends, recvs) = bufs;
    k.pack(halo, sends);
    halo.post(comm, sends, recvs, &mut || overlap(&mut *k));
    k.unpack(halo, recvs);
}

/// Distributed Jacobi-PCG on `A x = b` (`A` the rank's rows of an
/// equilibrated matrix), SciPy's stopping rule against `b_norm` (the norm
/// over every row of the system, decoupled ones included). Every rank
/// calls it; all return the same iteration count, or the same error.
///
/// Per iteration, two rounds of communication, as few as CG allows without
/// reformulating it (a pipelined CG would fuse them at the cost of a
/// different rounding):
/// 1. the neighbour exchange of the new `r` (the ghosts each rank keeps)
///    with, in flight, the all-reduce of `(r.r, r.z)` and, once it has
///    given the stopping test and `beta`, the part of the product that
///    needs no ghost ([`LocalKernels::product_interior`]);
/// 2. [`LocalKernels::product_rest`], then one all-reduce of `p.q` (with
///    flags for a local failure of the kernels and for a stop asked by
///    `progress`); [`LocalKernels::update`].
///
/// `progress(iteration, relative residual)` is called every 50 iterations
/// on every rank; a `false` from any rank stops every rank with
/// [`SolveError::Interrupted`].
pub fn pcg(
    comm: &dyn Comm,
    m: &DistMatrix,
    b: &[f64],
    b_norm: f64,
    kernels: &mut dyn LocalKernels,
    settings: &CgSettings,
    progress: &mut dyn FnMut(usize, f64) -> bool,
) -> Result<DistCgOutcome, SolveError> {
    let t0 = Instant::now();
    let mut stats = SolveStats {
        cg_rows: m.global_rows,
        ..Default::default()
    };
    stats.bytes_per_iteration = comm::sum_usize(comm, kernels.bytes_per_iteration());
    if b_norm == 0.0 {
        stats.converged = true;
        return Ok(DistCgOutcome {
            x: vec![0.0; m.n_owned()],
            stats,
        });
    }
    let atol = settings.rtol * b_norm;
    let mut bufs = (
        m.halo
            .neighbours
            .iter()
            .map(|n| vec![0.0; n.send.len()])
            .collect::<Vec<_>>(),
        m.halo
            .neighbours
            .iter()
            .map(|n| vec![0.0; n.recv.len()])
            .collect::<Vec<_>>(),
    );
    let mut s = kernels.start(b);
    let (mut rr, mut rz, mut rho_prev, mut alpha, mut beta) = (0.0, 0.0, 0.0, 0.0, 0.0);
    let (mut it, mut stop) = (0usize, false);
    loop {
        // round 1: r's ghosts, (r.r, r.z), the interior product
        let mut go = false;
        exchange_r(comm, &m.halo, kernels, &mut bufs, &mut |k| {
            comm.allreduce_sum(&mut s);
            [rr, rz] = s;
            if it > 0 && it % 50 == 0 {
                // travels with the next all-reduce
                stop = !progress(it, rr.sqrt() / b_norm);
            }
            go = rr.sqrt() >= atol && it < settings.max_iter;
            if go {
                beta = if it == 0 { 0.0 } else { rz / rho_prev };
                k.product_interior(beta, alpha);
            }
        });
        if !go {
            stats.converged = rr.sqrt() < atol;
            break;
        }
        // round 2: the rest of the product, p.q
        let pq = kernels.product_rest(beta, alpha);
        let failure = kernels.take_failure();
        let mut pq = [pq, failure.is_some() as u8 as f64, stop as u8 as f64];
        comm.allreduce_sum(&mut pq);
        if pq[2] > 0.0 {
            return Err(SolveError::Interrupted { iteration: it });
        }
        if pq[1] > 0.0 {
            let msg = match comm::agree(comm, failure) {
                Err(m) => m,
                Ok(()) => "a rank's kernels failed".into(),
            };
            return Err(SolveError::Factorization {
                method: "distributed CG",
                message: msg,
            });
        }
        let pq = pq[0];
        if pq.is_nan() || pq <= 0.0 {
            return Err(SolveError::Breakdown {
                iteration: it,
                pap: pq,
            });
        }
        alpha = rz / pq;
        rho_prev = rz;
        s = kernels.update(alpha);
        it += 1;
    }
    stats.iterations = it;
    stats.recurrence_residual = rr.sqrt() / b_norm;
    let x = kernels.solution(alpha);
    stats.solve_seconds = t0.elapsed().as_secs_f64();
    Ok(DistCgOutcome { x, stats })
}

/// The equilibrated, decoupled system of a rank.
#[derive(Debug, Clone)]
pub struct EquilibratedDist {
    /// `D K D` on the coupled owned rows (interior first).
    pub a: DistMatrix,
    /// `D f` on those rows.
    pub b: Vec<f64>,
    /// `1 / diag(D K D)` on those rows.
    pub inv_diag: Vec<f64>,
    /// `inv_diag` on those rows, then on the ghost columns of `a` (from
    /// their owners).
    pub inv_diag_cols: Vec<f64>,
    /// For each row of `a`, its local node id.
    pub node_of_row: Vec<u32>,
    /// `d` on the local nodes (owned and ghosts).
    pub d: Vec<f64>,
    /// `u` of the decoupled owned rows (zero elsewhere), owned nodes.
    pub direct: Vec<f64>,
    /// `||D f||` over every row of the whole system.
    pub b_norm: f64,
    /// `||f||` over every row of the whole system.
    pub f_norm: f64,
    /// Decoupled rows of the whole system.
    pub decoupled: usize,
}

impl EquilibratedDist {
    /// Equilibrates the rank's owned rows (collective).
    pub fn new(comm: &dyn Comm, part: &Part, sys: &LocalSystem) -> Result<Self, SolveError> {
        let o = part.owned;
        let nl = part.node_gid.len();
        let k = &sys.k;
        let mut d = vec![0.0; nl];
        let mut kdiag = vec![0.0; o];
        let mut err: Option<SolveError> = None;
        for i in 0..o {
            let (c, v) = k.row(i);
            let a = c
                .iter()
                .zip(v)
                .find(|(j, _)| **j as usize == i)
                .map_or(0.0, |(_, x)| *x);
            kdiag[i] = a;
            if a == 0.0 {
                err.get_or_insert(SolveError::ZeroDiagonal(part.node_gid[i] as usize));
            } else if !a.is_finite() || !sys.f[i].is_finite() {
                err.get_or_insert(SolveError::NonFinite);
            }
            d[i] = 1.0 / a.abs().sqrt();
        }
        // every rank fails together, with the first rank's error
        if let Err(msg) = comm::agree(comm, err.as_ref().map(|e| e.to_string())) {
            return Err(match err {
                Some(e) => e,
                None => SolveError::Factorization {
                    method: "distributed equilibration",
                    message: msg,
                },
            });
        }
        part.halo.exchange(comm, &mut d, &mut |_| {});
        let mut sums = [0.0, 0.0, 0.0];
        let mut direct = vec![0.0; o];
        let mut rows: Vec<GlobalRow> = Vec::with_capacity(o);
        let mut node_of: Vec<u32> = Vec::with_capacity(o);
        let mut bvals: Vec<f64> = Vec::with_capacity(o);
        let mut dvals: Vec<f64> = Vec::with_capacity(o);
        for i in 0..o {
            let fi = d[i] * sys.f[i];
            sums[0] += fi * fi;
            sums[1] += sys.f[i] * sys.f[i];
            let (c, v) = k.row(i);
            if c.len() <= 1 {
                direct[i] = sys.f[i] / kdiag[i];
                sums[2] += 1.0;
                continue;
            }
            let row: Vec<(u64, f64)> = c
                .iter()
                .zip(v)
                .map(|(&j, &x)| (part.node_gid[j as usize] as u64, d[i] * x * d[j as usize]))
                .collect();
            rows.push((part.node_gid[i] as u64, row));
            node_of.push(i as u32);
            bvals.push(fi);
            dvals.push(1.0 / (d[i] * kdiag[i] * d[i]));
        }
        comm.allreduce_sum(&mut sums);
        // Reverse Cuthill-McKee over the couplings among the rank's own
        // rows (the engine's ordering): mesh files number nodes with no
        // locality, and the product's reads of `p` then miss the cache.
        // Rows keep this order inside the interior and boundary groups.
        let perm = {
            let row_of: IdMap<u64, u32> = rows
                .iter()
                .enumerate()
                .map(|(r, (g, _))| (*g, r as u32))
                .collect();
            let mut ptr = vec![0u32];
            let mut adj = Vec::new();
            for (g, row) in &rows {
                adj.extend(
                    row.iter()
                        .filter(|(j, _)| j != g)
                        .filter_map(|(j, _)| row_of.get(j).copied()),
                );
                ptr.push(adj.len() as u32);
            }
            quadflow_systems::ordering::rcm(rows.len(), &ptr, &adj)
        };
        let mut slots: Vec<Option<GlobalRow>> = rows.into_iter().map(Some).collect();
        let rows: Vec<GlobalRow> = perm
            .iter()
            .map(|&o| slots[o as usize].take().expect("a permutation"))
            .collect();
        let node_of: Vec<u32> = perm.iter().map(|&o| node_of[o as usize]).collect();
        let bvals: Vec<f64> = perm.iter().map(|&o| bvals[o as usize]).collect();
        let dvals: Vec<f64> = perm.iter().map(|&o| dvals[o as usize]).collect();
        let global_rows = comm::sum_usize(comm, rows.len());
        let owner: IdMap<u64, usize> = part.node_gid[o..]
            .iter()
            .zip(&part.ghost_owner)
            .map(|(&g, &q)| (g as u64, q as usize))
            .collect();
        let (a, order) = DistMatrix::from_rows(comm, rows, global_rows, |g| owner[&g]);
        let pick = |v: &[f64]| order.iter().map(|&r| v[r as usize]).collect::<Vec<f64>>();
        let inv_diag = pick(&dvals);
        let mut inv_diag_cols = inv_diag.clone();
        inv_diag_cols.resize(a.n_cols(), 0.0);
        a.halo.exchange(comm, &mut inv_diag_cols, &mut |_| {});
        Ok(Self {
            b: pick(&bvals),
            inv_diag,
            inv_diag_cols,
            node_of_row: order.iter().map(|&r| node_of[r as usize]).collect(),
            a,
            d,
            direct,
            b_norm: sums[0].sqrt(),
            f_norm: sums[1].sqrt(),
            decoupled: sums[2] as usize,
        })
    }

    /// `u = D x` on the owned nodes, with the decoupled rows.
    pub fn unscale(&self, x: &[f64]) -> Vec<f64> {
        let mut u = self.direct.clone();
        for (k, &i) in self.node_of_row.iter().enumerate() {
            u[i as usize] = self.d[i as usize] * x[k];
        }
        u
    }
}

/// `||f - K u|| / ||f||` of the whole system from the ranks' owned rows
/// (`u` on the owned nodes; the ghosts are fetched).
pub fn true_relative_residual(
    comm: &dyn Comm,
    part: &Part,
    sys: &LocalSystem,
    u_owned: &[f64],
) -> f64 {
    residuals(comm, part, sys, u_owned).raw
}

/// The raw and the equilibrated relative residual of the whole system
/// (the engine's [`quadflow_systems::solver::Residuals`], summed over the
/// ranks; collective).
pub fn residuals(
    comm: &dyn Comm,
    part: &Part,
    sys: &LocalSystem,
    u_owned: &[f64],
) -> quadflow_systems::solver::Residuals {
    let mut u = vec![0.0; part.node_gid.len()];
    u[..part.owned].copy_from_slice(u_owned);
    part.halo.exchange(comm, &mut u, &mut |_| {});
    let mut s = [0.0; 4];
    for i in 0..part.owned {
        let r = sys.f[i] - row_dot(&sys.k, i, &u);
        let (c, v) = sys.k.row(i);
        let d = c
            .iter()
            .zip(v)
            .find(|(j, _)| **j as usize == i)
            .map_or(0.0, |(_, v)| v.abs());
        let w = if d > 0.0 { 1.0 / d } else { 1.0 };
        s[0] += r * r;
        s[1] += sys.f[i] * sys.f[i];
        s[2] += r * r * w;
        s[3] += sys.f[i] * sys.f[i] * w;
    }
    comm.allreduce_sum(&mut s);
    let ratio = |num: f64, den: f64| {
        if den == 0.0 {
            num.sqrt()
        } else {
            (num / den).sqrt()
        }
    };
    quadflow_systems::solver::Residuals {
        raw: ratio(s[0], s[1]),
        equilibrated: ratio(s[2], s[3]),
    }
}

/// A distributed solution: `u` on this rank's owned nodes and how it was
/// obtained (the same stats on every rank).
#[derive(Debug, Clone)]
pub struct DistSolution {
    /// `u` on the owned nodes (local ids `0..owned`).
    pub u: Vec<f64>,
    /// Iterations, convergence, residuals, times (global figures).
    pub stats: SolveStats,
    /// `||f - K u|| / ||f||` of the whole system.
    pub true_residual: f64,
    /// The residual of the equilibrated system, which `rtol` bounds
    /// ([`residuals`]).
    pub equilibrated_residual: f64,
}

/// The reference solve over the ranks: equilibrate, distributed
/// Jacobi-PCG with [`FusedKernels`], unscale, true residual.
pub fn solve_cg_jacobi(
    comm: &dyn Comm,
    part: &Part,
    sys: &LocalSystem,
    settings: &CgSettings,
    progress: &mut dyn FnMut(usize, f64) -> bool,
) -> Result<DistSolution, SolveError> {
    solve_cg_jacobi_with(comm, part, sys, settings, progress, &mut |eq| {
        Ok(Box::new(FusedKernels::new(&eq.a, &eq.inv_diag_cols)))
    })
}

/// Makes the local kernels of a rank's equilibrated system (or says why
/// it cannot: the message is agreed with the other ranks).
pub type KernelFactory<'f> =
    dyn for<'e> FnMut(&'e EquilibratedDist) -> Result<Box<dyn LocalKernels + 'e>, String> + 'f;

/// [`solve_cg_jacobi`] with the local kernels `make` builds (the host's
/// [`FusedKernels`], the device's, [`SplitKernels`]).
pub fn solve_cg_jacobi_with(
    comm: &dyn Comm,
    part: &Part,
    sys: &LocalSystem,
    settings: &CgSettings,
    progress: &mut dyn FnMut(usize, f64) -> bool,
    make: &mut KernelFactory<'_>,
) -> Result<DistSolution, SolveError> {
    let t0 = Instant::now();
    let eq = EquilibratedDist::new(comm, part, sys)?;
    let made = make(&eq);
    let mine = made.as_ref().err().cloned();
    if let Err(message) = comm::agree(comm, mine) {
        return Err(SolveError::Factorization {
            method: "distributed CG",
            message,
        });
    }
    let mut k = made.expect("agreed");
    let setup = t0.elapsed().as_secs_f64();
    let out = pcg(
        comm,
        &eq.a,
        &eq.b,
        eq.b_norm,
        k.as_mut(),
        settings,
        progress,
    )?;
    drop(k);
    let u = eq.unscale(&out.x);
    let mut stats = out.stats;
    stats.setup_seconds = setup;
    stats.decoupled_rows = eq.decoupled;
    // the upper triangle's entries, as the engine counts them
    stats.cg_stored = (comm::sum_usize(comm, eq.a.a.nnz()) + eq.a.global_rows) / 2;
    let r = residuals(comm, part, sys, &u);
    Ok(DistSolution {
        u,
        stats,
        true_residual: r.raw,
        equilibrated_residual: r.equilibrated,
    })
}

/// `u` on every local node (owned and ghosts) from `u` on the owned nodes:
/// what a local post-processing phase needs for the part's elements.
pub fn with_ghosts(comm: &dyn Comm, part: &Part, u_owned: &[f64]) -> Vec<f64> {
    let mut u = vec![0.0; part.node_gid.len()];
    u[..part.owned].copy_from_slice(u_owned);
    part.halo.exchange(comm, &mut u, &mut |_| {});
    u
}

/// Gathers `u` of every rank's owned nodes onto `root` in global
/// numbering (`None` on the other ranks).
pub fn gather_u(comm: &dyn Comm, root: usize, part: &Part, u_owned: &[f64]) -> Option<Vec<f64>> {
    let mut w = crate::wire::Writer::new();
    w.u32s(&part.node_gid[..part.owned]).f64s(u_owned);
    let got = comm::gather(comm, root, w.finish())?;
    let mut u = vec![0.0; part.global_nodes];
    for b in got {
        let mut r = crate::wire::Reader::new(&b);
        let ids = r.u32s();
        let vals = r.f64s();
        for (g, v) in ids.into_iter().zip(vals) {
            u[g as usize] = v;
        }
    }
    Some(u)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::assemble::tests::global_system;
    use crate::comm::ThreadComm;
    use crate::part::build_parts;
    use crate::partition::{Method, partition, tests::lattice};
    use quadflow_systems::pipeline::RunConfig;
    use quadflow_systems::solver::{self, SerialKernels};
    use std::sync::Arc;

    pub(crate) fn rel_max(a: &[f64], b: &[f64]) -> f64 {
        let s = b.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        a.iter()
            .zip(b)
            .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()))
            / s
    }

    #[test]
    fn distributed_cg_matches_serial() {
        let m = lattice(24, 6, true);
        let cfg = RunConfig::default();
        let (k, f) = global_system(&m, cfg.clone());
        let (us, ss) = solver::solve_cg_jacobi(
            &k,
            &f,
            &cfg.solver.cg,
            &mut SerialKernels::default(),
            &mut |_, _| true,
        )
        .unwrap();
        for p in 1..=4 {
            // the fused kernels, and on 3 ranks the device's host twin too
            let kinds: &[bool] = if p == 3 { &[false, true] } else { &[false] };
            for (method, &split) in [Method::Rcb, Method::Metis]
                .into_iter()
                .flat_map(|m| kinds.iter().map(move |k| (m, k)))
            {
                let parts = Arc::new(build_parts(&m, &partition(&m, p, method).unwrap()));
                let parts2 = parts.clone();
                let cfg2 = cfg.clone();
                let out = ThreadComm::run(p, move |c| {
                    let part = &parts[c.rank()];
                    let sys = LocalSystem::assemble_serial(part, cfg2.clone()).unwrap();
                    let cg = &cfg2.solver.cg;
                    let sol = if split {
                        solve_cg_jacobi_with(c, part, &sys, cg, &mut |_, _| true, &mut |eq| {
                            Ok(Box::new(crate::kernels::SplitKernels::new(
                                &eq.a,
                                &eq.inv_diag_cols,
                            )))
                        })
                    } else {
                        solve_cg_jacobi(c, part, &sys, cg, &mut |_, _| true)
                    }
                    .unwrap();
                    let local = with_ghosts(c, part, &sol.u);
                    (
                        gather_u(c, 0, part, &sol.u),
                        sol.stats,
                        sol.true_residual,
                        local,
                    )
                });
                let (u, stats, tr, _) = &out[0];
                let u = u.as_ref().unwrap();
                // every local node's value is the global one
                for (part, o) in parts2.iter().zip(&out) {
                    for (l, &g) in part.node_gid.iter().enumerate() {
                        assert_eq!(o.3[l], u[g as usize]);
                    }
                }
                assert!(out.iter().all(|o| o.1.iterations == stats.iterations));
                let di = (stats.iterations as f64 - ss.iterations as f64).abs();
                assert!(
                    di <= (0.01 * ss.iterations as f64).max(1.0),
                    "p {p}: {} vs {}",
                    stats.iterations,
                    ss.iterations
                );
                assert!(stats.converged);
                assert_eq!(stats.decoupled_rows, ss.decoupled_rows);
                let e = rel_max(u, &us);
                assert!(
                    e < 1e-10,
                    "p {p} {method:?} split {split}: u differs by {e:e}"
                );
                assert!(*tr < 1e-7, "{tr}");
            }
        }
    }
}
