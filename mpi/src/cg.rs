//! Distributed Jacobi-CG on the equilibrated system: the reference
//! configuration of SPEC, as the engine's `solver` runs it on one process,
//! over the ranks' owned rows.
//!
//! **Setup** ([`EquilibratedDist::new`]): `d = 1 / sqrt|K_ii|` on the
//! owned rows (exact: owned rows are complete), `d` of the ghosts from
//! their owners (one halo exchange), `A = D K D` on the owned rows that
//! have an off-diagonal entry, `b = D f`, `||D f||` over every row (one
//! all-reduce). Rows without couplings (unused nodes) are solved directly
//! (`u = f / K_ii`) and left out of CG, as the engine does. The coupled
//! rows are renumbered by the engine's reverse Cuthill-McKee over the
//! couplings among them (on one rank: the engine's order), and a rank's
//! rows are `[A_oo | A_og]`: its own block (square, symmetric: what the
//! engine's kernels run on) and the couplings to the ghost columns, whose
//! values come from their owners through the halo plan. Rows get global
//! ids `offset(rank) + row` (what the AMG setup addresses rows by).
//!
//! **Iteration** ([`pcg`]): SciPy's PCG with the Jacobi preconditioner, `x0
//! = 0`, and the convergence rule of every solver
//! ([`quadflow_systems::solver::Convergence`]): when the recurrence
//! residual meets the rule's target, the true residual `b - A x` is
//! computed across the ranks (one exchange of `x`'s ghosts), judged, and
//! on the rule's word replaces `r`, CG restarting from it. Per iteration:
//! the new `r`'s ghosts travel while the all-reduce of `(r.r, r.z)` and
//! the engine's fused pass A over the rank's own block run
//! ([`LocalKernels::product_interior`]); then the ghost block's product
//! and one all-reduce of `p.q`; then pass B. That is two all-reduces and
//! one neighbour exchange per iteration, as few as CG allows without
//! reformulating it (a pipelined CG would fuse the two at the cost of a
//! different rounding). The sums differ from the engine's only in their
//! order, so iterations agree to a few and `u` to the solve's tolerance.
//!
//! The local work is behind [`LocalKernels`]: the host's
//! [`EngineKernels`] (the engine's serial or multi-threaded fused passes,
//! [`quadflow_systems::solver::CgKernels`], plus the ghost block), its
//! split twin [`crate::kernels::SplitKernels`], or the device's
//! ([`crate::device`]).

use crate::assemble::LocalSystem;
use crate::comm::{self, Comm};
use crate::dist::offsets;
use crate::kernels::{EngineKernels, LocalKernels};
use crate::part::{Halo, Neighbour, Part};
use crate::threads::Threads;
use quadflow_systems::amg::Csr;
use quadflow_systems::solver::{CgSettings, Convergence, SolveError, SolveStats, Verdict};
use std::time::Instant;

/// Result of [`pcg`].
#[derive(Debug, Clone)]
pub struct DistCgOutcome {
    /// `x` on the owned rows of the matrix.
    pub x: Vec<f64>,
    /// Iterations, convergence (the rule's verdict), time.
    pub stats: SolveStats,
}

/// Send and receive buffers of a halo plan, sized.
pub(crate) fn halo_buffers(halo: &Halo) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
    (
        halo.neighbours
            .iter()
            .map(|n| vec![0.0; n.send.len()])
            .collect(),
        halo.neighbours
            .iter()
            .map(|n| vec![0.0; n.recv.len()])
            .collect(),
    )
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

/// Distributed Jacobi-PCG on the rank's equilibrated rows `eq` (`A x =
/// b`), stopped by the convergence rule against `eq.b_norm` (the norm over
/// every row of the system, decoupled ones included). Every rank calls
/// it; all return the same iteration count and verdict, or the same
/// error.
///
/// Per iteration, two rounds of communication:
/// 1. the neighbour exchange of the new `r` (the ghosts each rank keeps)
///    with, in flight, the all-reduce of `(r.r, r.z)` and, once it has
///    given the stopping test and `beta`, the part of the product that
///    needs no ghost ([`LocalKernels::product_interior`]);
/// 2. [`LocalKernels::product_rest`], then one all-reduce of `p.q` (with
///    flags for a local failure of the kernels and for a stop asked by
///    `progress`); [`LocalKernels::update`].
///
/// When the recurrence residual is below the rule's target: the pending
/// `x += alpha p` folded into the iterate `base`, its ghosts exchanged,
/// `r = b - A base` in double-double ([`LocalKernels::replace_residual`]),
/// one all-reduce, and the rule's verdict on `check(base)` (collective: the
/// true equilibrated residual of the `u` that `base` unscales to, on the
/// original system: what the run reports) (converged, replace and restart,
/// or stalled).
///
/// `progress(iteration, relative residual)` is called every 50 iterations
/// on every rank; a `false` from any rank stops every rank with
/// [`SolveError::Interrupted`].
pub fn pcg(
    comm: &dyn Comm,
    eq: &EquilibratedDist,
    kernels: &mut dyn LocalKernels,
    settings: &CgSettings,
    check: &mut dyn FnMut(&[f64]) -> f64,
    progress: &mut dyn FnMut(usize, f64) -> bool,
) -> Result<DistCgOutcome, SolveError> {
    let t0 = Instant::now();
    let b_norm = eq.b_norm;
    let halo = &eq.halo;
    let mut stats = SolveStats {
        cg_rows: eq.global_rows,
        ..Default::default()
    };
    stats.bytes_per_iteration = comm::sum_usize(comm, kernels.bytes_per_iteration());
    if b_norm == 0.0 {
        stats.converged = true;
        return Ok(DistCgOutcome {
            x: vec![0.0; eq.a.nrows()],
            stats,
        });
    }
    let mut rule = Convergence::new(settings.rtol);
    let mut bufs = halo_buffers(halo);
    let mut s = kernels.start(&eq.b);
    let (mut rr, mut rz, mut rho_prev, mut alpha, mut beta) = (0.0, 0.0, 0.0, 0.0, 0.0);
    let (mut it, mut restart, mut stop) = (0usize, 0usize, false);
    let verdict = loop {
        // round 1: r's ghosts, (r.r, r.z), the interior product
        let mut look = false;
        let mut go = false;
        exchange_r(comm, halo, kernels, &mut bufs, &mut |k| {
            comm.allreduce_sum(&mut s);
            [rr, rz] = s;
            if it > 0 && it % 50 == 0 {
                // travels with the next all-reduce
                stop = !progress(it, rr.sqrt() / b_norm);
            }
            look = rr.sqrt() < rule.target() * b_norm;
            go = !look && it < settings.max_iter;
            if go {
                beta = if it == restart { 0.0 } else { rz / rho_prev };
                k.product_interior(beta, alpha);
            }
        });
        if look {
            // the true residual replaces the recurrence's
            if it > restart {
                kernels.flush(alpha);
            }
            alpha = 0.0;
            restart = it;
            kernels.fold();
            let (sends, recvs) = &mut bufs;
            kernels.pack_iterate(halo, sends);
            halo.post(comm, sends, recvs, &mut || {});
            kernels.unpack_iterate(halo, recvs);
            let mine = kernels.replace_residual();
            let base = kernels.iterate();
            let failure = kernels.take_failure();
            let mut g = [mine[0], failure.is_some() as u8 as f64];
            comm.allreduce_sum(&mut g);
            if g[1] > 0.0 {
                return Err(kernel_failure(comm, failure));
            }
            rr = g[0];
            match rule.judge(it, check(&base)) {
                Verdict::Replace => {
                    s = mine;
                    continue;
                }
                v => break Some(v),
            }
        }
        if !go {
            break None;
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
            return Err(kernel_failure(comm, failure));
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
    };
    stats.iterations = it;
    rule.finish(&mut stats, verdict, rr.sqrt() / b_norm);
    let pending = if it > restart { alpha } else { 0.0 };
    let x = kernels.solution(pending);
    if let Some(f) = kernels.take_failure() {
        // the solution's copy failed on this rank (collective below)
        let _ = comm::agree(comm, Some(f.clone()));
        return Err(SolveError::Factorization {
            method: "distributed CG",
            message: f,
        });
    }
    if let Err(message) = comm::agree(comm, None) {
        return Err(SolveError::Factorization {
            method: "distributed CG",
            message,
        });
    }
    stats.solve_seconds = t0.elapsed().as_secs_f64();
    Ok(DistCgOutcome { x, stats })
}

/// The error every rank returns when some rank's kernels failed
/// (collective).
fn kernel_failure(comm: &dyn Comm, failure: Option<String>) -> SolveError {
    let msg = match comm::agree(comm, failure) {
        Err(m) => m,
        Ok(()) => "a rank's kernels failed".into(),
    };
    SolveError::Factorization {
        method: "distributed CG",
        message: msg,
    }
}

/// The equilibrated, decoupled system of a rank (see the module
/// documentation).
#[derive(Debug, Clone)]
pub struct EquilibratedDist {
    /// `D K D` on the coupled owned rows (reverse Cuthill-McKee order):
    /// `n` rows; columns `0..n` the rank's own block, `n..n + g` the ghost
    /// columns (the part's ghost nodes, in its order); each row's columns
    /// ascending.
    pub a: Csr,
    /// Fills the ghost entries (`n..`) of a column-space vector.
    pub halo: Halo,
    /// `D f` on the rows.
    pub b: Vec<f64>,
    /// `1 / diag(D K D)` on the rows.
    pub inv_diag: Vec<f64>,
    /// `inv_diag` on the rows, then on the ghost columns (from their
    /// owners).
    pub inv_diag_cols: Vec<f64>,
    /// For each row, its local node id.
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
    /// Coupled rows of the whole system.
    pub global_rows: usize,
    /// Rank `q`'s rows have the global ids `offsets[q]..offsets[q + 1]`
    /// (row `i` of this rank: `offsets[rank] + i`).
    pub offsets: Vec<u64>,
    /// Global id of every ghost column.
    pub ghost_gid: Vec<u64>,
    /// Owner of every ghost column.
    pub ghost_owner: Vec<u32>,
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
        // the coupled rows (an off-diagonal entry: the engine's rule; a
        // rank's rows are complete, and the pattern symmetric)
        let mut sums = [0.0, 0.0, 0.0];
        let mut direct = vec![0.0; o];
        let mut coupled_of = vec![u32::MAX; o];
        let mut coupled: Vec<u32> = Vec::with_capacity(o);
        for i in 0..o {
            let fi = d[i] * sys.f[i];
            sums[0] += fi * fi;
            sums[1] += sys.f[i] * sys.f[i];
            if k.row(i).0.len() <= 1 {
                direct[i] = sys.f[i] / kdiag[i];
                sums[2] += 1.0;
            } else {
                coupled_of[i] = coupled.len() as u32;
                coupled.push(i as u32);
            }
        }
        comm.allreduce_sum(&mut sums);
        let m = coupled.len();
        // Reverse Cuthill-McKee over the couplings among the rank's own
        // rows (the engine's ordering): mesh files number nodes with no
        // locality, and the product's reads of `p` then miss the cache.
        let perm = {
            let mut ptr = vec![0u32];
            let mut adj = Vec::new();
            for &l in &coupled {
                adj.extend(
                    k.row(l as usize)
                        .0
                        .iter()
                        .filter(|&&j| (j as usize) < o && j != l)
                        .map(|&j| coupled_of[j as usize]),
                );
                ptr.push(adj.len() as u32);
            }
            quadflow_systems::ordering::rcm(m, &ptr, &adj)
        };
        let mut pos = vec![u32::MAX; o];
        for (new, &old) in perm.iter().enumerate() {
            pos[coupled[old as usize] as usize] = new as u32;
        }
        let col_of = |j: usize| -> u32 {
            if j < o {
                let c = pos[j];
                assert_ne!(c, u32::MAX, "a coupled row's column is a coupled row");
                c
            } else {
                (m + j - o) as u32
            }
        };
        let mut rowptr = Vec::with_capacity(m + 1);
        rowptr.push(0usize);
        let mut col: Vec<u32> = Vec::with_capacity(k.nnz());
        let mut val: Vec<f64> = Vec::with_capacity(k.nnz());
        let mut node_of_row = Vec::with_capacity(m);
        let mut b = Vec::with_capacity(m);
        let mut inv_diag = Vec::with_capacity(m);
        let mut row: Vec<(u32, f64)> = Vec::new();
        for &old in &perm {
            let i = coupled[old as usize] as usize;
            let (c, v) = k.row(i);
            row.clear();
            row.extend(
                c.iter()
                    .zip(v)
                    .map(|(&j, &x)| (col_of(j as usize), d[i] * x * d[j as usize])),
            );
            row.sort_unstable_by_key(|e| e.0);
            for &(j, x) in &row {
                col.push(j);
                val.push(x);
            }
            rowptr.push(col.len());
            node_of_row.push(i as u32);
            b.push(d[i] * sys.f[i]);
            inv_diag.push(1.0 / (d[i] * kdiag[i] * d[i]));
        }
        let g = nl - o;
        if val.iter().any(|v| !v.is_finite()) {
            err = Some(SolveError::NonFinite);
        }
        if let Err(msg) = comm::agree(comm, err.as_ref().map(|e| e.to_string())) {
            return Err(err.unwrap_or(SolveError::Factorization {
                method: "distributed equilibration",
                message: msg,
            }));
        }
        let a = Csr::new(m, m + g, rowptr, col, val);
        // the part's halo plan in the rows' numbering
        let halo = Halo {
            neighbours: part
                .halo
                .neighbours
                .iter()
                .map(|nb| Neighbour {
                    rank: nb.rank,
                    send: nb.send.iter().map(|&l| col_of(l as usize)).collect(),
                    recv: nb.recv.iter().map(|&l| col_of(l as usize)).collect(),
                })
                .collect(),
        };
        let mut inv_diag_cols = inv_diag.clone();
        inv_diag_cols.resize(m + g, 0.0);
        halo.exchange(comm, &mut inv_diag_cols, &mut |_| {});
        let off = offsets(comm, m);
        let base = off[comm.rank()];
        let mut ids: Vec<f64> = (0..m + g)
            .map(|i| if i < m { (base + i as u64) as f64 } else { 0.0 })
            .collect();
        halo.exchange(comm, &mut ids, &mut |_| {});
        Ok(Self {
            a,
            halo,
            b,
            inv_diag,
            inv_diag_cols,
            node_of_row,
            d,
            direct,
            b_norm: sums[0].sqrt(),
            f_norm: sums[1].sqrt(),
            decoupled: sums[2] as usize,
            global_rows: *off.last().expect("offsets") as usize,
            ghost_gid: ids[m..].iter().map(|&v| v as u64).collect(),
            ghost_owner: part.ghost_owner.clone(),
            offsets: off,
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

    /// Rows of the rank.
    pub fn n_owned(&self) -> usize {
        self.a.nrows()
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
/// (the engine's [`quadflow_systems::solver::Residuals`], `f - K u` in
/// double-double as the engine computes it, summed over the ranks;
/// collective).
pub fn residuals(
    comm: &dyn Comm,
    part: &Part,
    sys: &LocalSystem,
    u_owned: &[f64],
) -> quadflow_systems::solver::Residuals {
    let mut u = vec![0.0; part.node_gid.len()];
    u[..part.owned].copy_from_slice(u_owned);
    part.halo.exchange(comm, &mut u, &mut |_| {});
    let mut res = vec![0.0; part.owned];
    sys.k
        .residual_exact_rows(0..part.owned, &sys.f, &u, &mut res);
    let mut s = [0.0; 4];
    for i in 0..part.owned {
        let r = res[i];
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
/// Jacobi-PCG with the engine's serial fused kernels ([`EngineKernels`]),
/// unscale, true residual.
pub fn solve_cg_jacobi(
    comm: &dyn Comm,
    part: &Part,
    sys: &LocalSystem,
    settings: &CgSettings,
    progress: &mut dyn FnMut(usize, f64) -> bool,
) -> Result<DistSolution, SolveError> {
    solve_cg_jacobi_on(comm, part, sys, settings, &Threads::serial(), progress)
}

/// [`solve_cg_jacobi`] with the engine's fused kernels on the rank's
/// threads (the parallel backend's on a pool).
pub fn solve_cg_jacobi_on(
    comm: &dyn Comm,
    part: &Part,
    sys: &LocalSystem,
    settings: &CgSettings,
    threads: &Threads,
    progress: &mut dyn FnMut(usize, f64) -> bool,
) -> Result<DistSolution, SolveError> {
    solve_cg_jacobi_with(comm, part, sys, settings, progress, &mut |eq| {
        Ok(Box::new(EngineKernels::new(
            &eq.a,
            &eq.inv_diag_cols,
            threads.cg_kernels(),
        )))
    })
}

/// Makes the local kernels of a rank's equilibrated system (or says why
/// it cannot: the message is agreed with the other ranks).
pub type KernelFactory<'f> =
    dyn for<'e> FnMut(&'e EquilibratedDist) -> Result<Box<dyn LocalKernels + 'e>, String> + 'f;

/// [`solve_cg_jacobi`] with the local kernels `make` builds (the host's
/// [`EngineKernels`], the device's, [`crate::kernels::SplitKernels`]).
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
    let mut check = |x: &[f64]| residuals(comm, part, sys, &eq.unscale(x)).equilibrated;
    let out = pcg(comm, &eq, k.as_mut(), settings, &mut check, progress)?;
    drop(k);
    let u = eq.unscale(&out.x);
    let mut stats = out.stats;
    stats.setup_seconds = setup;
    stats.decoupled_rows = eq.decoupled;
    // the upper triangle's entries, as the engine counts them
    let own: usize = (0..eq.a.nrows())
        .map(|i| {
            eq.a.row(i)
                .0
                .iter()
                .filter(|&&j| (j as usize) < eq.a.nrows())
                .count()
        })
        .sum();
    stats.cg_stored = (comm::sum_usize(comm, own) + eq.global_rows) / 2;
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
