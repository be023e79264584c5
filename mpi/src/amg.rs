//! Distributed smoothed-aggregation AMG as the preconditioner of a
//! distributed CG (AMG-CG), on the equilibrated system of
//! [`crate::cg::EquilibratedDist`] (the same scaling, near-null-space
//! vector `B = 1 / d` and parameters as the engine's `amg.rs`).
//!
//! **Setup, per distributed level** (every rank on its owned rows):
//! 1. strength of connection among the rank's **own** rows only
//!    (couplings to ghosts are not strong: aggregates never cross ranks),
//!    then the engine's three-pass aggregation (`amg::aggregate`);
//! 2. coarse ids: rank `q`'s aggregates are numbered after those of ranks
//!    `< q` (one all-reduce of the counts);
//! 3. tentative prolongator from `B`, normalised per aggregate;
//! 4. `rho(D^-1 A)` by 10 distributed Lanczos steps (start vector drawn
//!    from the global row id, so it does not depend on the rank count);
//! 5. smoothed prolongator `P = (I - omega D^-1 A) T`: row `i` needs the
//!    aggregate and `T` entry of its ghost columns (one halo exchange);
//! 6. Galerkin product `A_c = P^T (A P)`: the `P` rows of the ghosts come
//!    from their owners (one all-to-all), each rank forms `A P` on its
//!    rows, then `P^T (A P)` contributions to coarse rows it does not own
//!    go to their owners (one all-to-all), who sum them in a fixed order;
//! 7. the coarse operator becomes the next level's distributed matrix,
//!    `P` gets its own halo over the coarse columns.
//!
//! Levels stop being distributed once the coarse operator has at most
//! [`DistAmgSettings::gather_below`] rows (or coarsening stalls, or
//! [`DistAmgSettings::max_dist_levels`] is reached): that operator is
//! **gathered onto rank 0**, where the engine's host AMG (`Hierarchy`)
//! builds the remaining levels down to its dense Cholesky. The gathered
//! levels are small: a few thousand rows.
//!
//! **V-cycle**: on a distributed level, Chebyshev smoothing (the engine's
//! polynomial, its products with halo exchanges), restriction `P^T r`
//! (each rank's contributions to coarse rows owned elsewhere sent back
//! with the reversed halo of `P`), the coarse correction, prolongation
//! `P x_c` (ghost coarse values fetched) and post-smoothing; at the
//! gathered level the residual goes to rank 0, which runs one V-cycle of
//! its host hierarchy and scatters the correction back.
//!
//! **CG**: the engine's AMG-CG loop ([`quadflow_systems::amg::amg_pcg`])
//! over the ranks: stop on the equilibrated and the unscaled residual,
//! then check the true residual of the original system and restart at
//! most a few times ([`quadflow_systems::amg::ResidualCheck`]).
//!
//! Not done (yet): the intermediate "fewer ranks" stage (gathering a
//! mid-sized coarse level onto a subset of the ranks before rank 0);
//! single precision in the cycle (the engine's cycle reads its matrices in
//! `f32`, this one in `f64`).

use crate::assemble::LocalSystem;
use crate::cg::{DistSolution, EquilibratedDist, residuals};
use crate::comm::{self, Comm};
use crate::dist::{DistMatrix, GlobalRow, IdMap, build_halo, offsets, owner_in, row_dot};
use crate::part::{Halo, Part};
use crate::wire::{Reader, Writer};
use quadflow_systems::amg::{self as host, AmgSettings, Csr, Hierarchy};
use quadflow_systems::solver::{CgSettings, Convergence, Exec, SolveError, SolveStats, Verdict};
use std::time::Instant;

const NONE: u32 = u32::MAX;

/// Parameters of the distributed part of the hierarchy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DistAmgSettings {
    /// Gather the operator onto rank 0 once it has at most this many rows
    /// (the engine's host AMG builds the rest there).
    pub gather_below: usize,
    /// At most this many distributed levels.
    pub max_dist_levels: usize,
}

impl Default for DistAmgSettings {
    fn default() -> Self {
        Self {
            gather_below: 4000,
            max_dist_levels: 12,
        }
    }
}

/// One distributed level above the gathered one.
#[derive(Debug, Clone)]
struct Level {
    a: DistMatrix,
    inv_diag: Vec<f64>,
    /// Prolongator from the next level: this level's owned rows, columns
    /// the next level's owned rows (its row order) then `p_ghosts`.
    p: Csr,
    /// Fills / returns the ghost columns of `p`.
    p_halo: Halo,
    s0: f64,
    steps: Vec<(f64, f64)>,
}

/// The gathered level: rank 0's host hierarchy.
#[derive(Debug, Clone)]
struct Gathered {
    /// Every rank's rows at the gathered level, in its row order, as
    /// indices of the host hierarchy (rank 0 only).
    ids: Vec<Vec<u64>>,
    /// The host hierarchy (rank 0 only).
    host: Option<Hierarchy>,
    /// Rows of the gathered level.
    rows: usize,
    /// The gathered level's distributed matrix (for its row count here).
    n_owned: usize,
}

/// A distributed AMG hierarchy.
#[derive(Debug, Clone)]
pub struct DistHierarchy {
    levels: Vec<Level>,
    gathered: Gathered,
    settings: AmgSettings,
    /// Rows of every level (global), finest first; the gathered host
    /// levels included.
    pub sizes: Vec<usize>,
    /// Stored entries of every distributed level (global) and the host
    /// levels' operator complexity, for the report.
    pub operator_complexity: f64,
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn dot(comm: &dyn Comm, a: &[f64], b: &[f64]) -> f64 {
    let mut s = [a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>()];
    comm.allreduce_sum(&mut s);
    s[0]
}

/// `y = A x` (owned rows; `x` in column space, ghosts filled here).
fn spmv(comm: &dyn Comm, a: &DistMatrix, x: &mut [f64], y: &mut [f64]) {
    a.spmv(comm, x, y);
}

/// Largest eigenvalue of `D^-1 A` by Lanczos on `D^-1/2 A D^-1/2`.
fn spectral_radius(comm: &dyn Comm, a: &DistMatrix, inv_diag: &[f64], steps: usize) -> f64 {
    let n = a.n_owned();
    let s: Vec<f64> = inv_diag.iter().map(|d| d.sqrt()).collect();
    let mut v: Vec<f64> = a
        .gid
        .iter()
        .map(|&g| (splitmix(g) >> 11) as f64 / (1u64 << 53) as f64 - 0.5)
        .collect();
    let nv = dot(comm, &v, &v).sqrt();
    if nv == 0.0 {
        return 1.0;
    }
    v.iter_mut().for_each(|x| *x /= nv);
    let mut v_prev = vec![0.0; n];
    let mut u = vec![0.0; a.n_cols()];
    let mut w = vec![0.0; n];
    let (mut alphas, mut betas) = (Vec::new(), Vec::new());
    let mut beta_prev = 0.0;
    for _ in 0..steps.max(1) {
        for i in 0..n {
            u[i] = s[i] * v[i];
        }
        spmv(comm, a, &mut u, &mut w);
        for i in 0..n {
            w[i] *= s[i];
        }
        let alpha = dot(comm, &w, &v);
        for i in 0..n {
            w[i] -= alpha * v[i] + beta_prev * v_prev[i];
        }
        let beta = dot(comm, &w, &w).sqrt();
        alphas.push(alpha);
        if beta.is_nan() || beta <= 1e-12 * alpha.abs() {
            break;
        }
        betas.push(beta);
        std::mem::swap(&mut v_prev, &mut v);
        for i in 0..n {
            v[i] = w[i] / beta;
        }
        beta_prev = beta;
    }
    let k = alphas.len();
    let mut t = nalgebra::DMatrix::<f64>::zeros(k, k);
    for i in 0..k {
        t[(i, i)] = alphas[i];
        if i + 1 < k {
            t[(i, i + 1)] = betas[i];
            t[(i + 1, i)] = betas[i];
        }
    }
    let ev = nalgebra::SymmetricEigen::new(t).eigenvalues;
    ev.iter().fold(0.0f64, |m, &x| m.max(x))
}

/// Sums entries with equal column, sorted by column (a stable sort, so the
/// sum runs in the order given).
fn merge(mut v: Vec<(u64, f64)>) -> Vec<(u64, f64)> {
    v.sort_by_key(|e| e.0);
    let mut out: Vec<(u64, f64)> = Vec::with_capacity(v.len());
    for (j, x) in v {
        match out.last_mut() {
            Some(l) if l.0 == j => l.1 += x,
            _ => out.push((j, x)),
        }
    }
    out
}

fn encode_rows(rows: &[(u64, Vec<(u64, f64)>)]) -> Vec<u8> {
    let mut w = Writer::new();
    w.u64(rows.len() as u64);
    for (g, r) in rows {
        let c: Vec<u64> = r.iter().map(|e| e.0).collect();
        let v: Vec<f64> = r.iter().map(|e| e.1).collect();
        w.u64(*g).u64s(&c).f64s(&v);
    }
    w.finish()
}

fn decode_rows(b: &[u8]) -> Vec<(u64, Vec<(u64, f64)>)> {
    let mut r = Reader::new(b);
    let n = r.u64() as usize;
    (0..n)
        .map(|_| {
            let g = r.u64();
            let c = r.u64s();
            let v = r.f64s();
            (g, c.into_iter().zip(v).collect())
        })
        .collect()
}

/// One level of coarsening: from `a` (with near-null-space `b` on its
/// owned rows) to the coarse operator's rows, the coarse `B`, and `P` in
/// global coarse ids. Returns `None` when this rank's part of the
/// coarsening is empty and the caller should check globally.
struct Coarsened {
    coarse_rows: Vec<GlobalRow>,
    coarse_b: Vec<f64>,
    p_rows: Vec<Vec<(u64, f64)>>,
    coarse_off: Vec<u64>,
    inv_diag: Vec<f64>,
    rho: f64,
}

fn coarsen(comm: &dyn Comm, a: &DistMatrix, b: &[f64], s: &AmgSettings) -> Coarsened {
    let n = a.n_owned();
    let diag: Vec<f64> = (0..n)
        .map(|i| {
            let (c, v) = a.a.row(i);
            c.iter()
                .zip(v)
                .filter(|(j, _)| **j as usize == i)
                .map(|(_, x)| *x)
                .sum()
        })
        .collect();
    let inv_diag: Vec<f64> = diag.iter().map(|d| 1.0 / d).collect();
    // strength and aggregation among owned rows
    let own = {
        let mut rp = vec![0usize];
        let (mut col, mut val) = (Vec::new(), Vec::new());
        for i in 0..n {
            let (c, v) = a.a.row(i);
            for (&j, &x) in c.iter().zip(v) {
                if (j as usize) < n {
                    col.push(j);
                    val.push(x);
                }
            }
            rp.push(col.len());
        }
        Csr::new(n, n, rp, col, val)
    };
    let (sp, sj) = host::strength(Exec::Serial, &own, &diag, s.theta, s.strength);
    let (agg, nagg) = host::aggregate(&sp, &sj);
    let off = offsets(comm, nagg);
    let base = off[comm.rank()];
    let mut norm2 = vec![0.0; nagg];
    for (i, &g) in agg.iter().enumerate() {
        if g != NONE {
            norm2[g as usize] += b[i] * b[i];
        }
    }
    let norms: Vec<f64> = norm2.iter().map(|v| v.sqrt()).collect();
    let t: Vec<f64> = (0..n)
        .map(|i| {
            let g = agg[i];
            if g == NONE || norms[g as usize] == 0.0 {
                0.0
            } else {
                b[i] / norms[g as usize]
            }
        })
        .collect();
    // aggregate ids (global, -1 for none) and T of the ghost columns
    let mut gagg = vec![-1.0; a.n_cols()];
    let mut gt = vec![0.0; a.n_cols()];
    for i in 0..n {
        if agg[i] != NONE {
            gagg[i] = (base + agg[i] as u64) as f64;
        }
        gt[i] = t[i];
    }
    a.halo.exchange(comm, &mut gagg, &mut |_| {});
    a.halo.exchange(comm, &mut gt, &mut |_| {});
    let rho = spectral_radius(comm, a, &inv_diag, s.lanczos_steps);
    let omega = s.omega_scale / rho;
    // smoothed prolongator rows, global coarse ids
    let p_rows: Vec<Vec<(u64, f64)>> = (0..n)
        .map(|i| {
            let mut e: Vec<(u64, f64)> = Vec::new();
            if agg[i] != NONE {
                e.push((base + agg[i] as u64, t[i]));
            }
            let w = omega * inv_diag[i];
            let (c, v) = a.a.row(i);
            for (&j, &x) in c.iter().zip(v) {
                let g = gagg[j as usize];
                if g >= 0.0 {
                    e.push((g as u64, -w * x * gt[j as usize]));
                }
            }
            merge(e)
        })
        .collect();
    // P rows of the ghosts, from their owners
    let p = comm.size();
    let mut send: Vec<Vec<GlobalRow>> = vec![Vec::new(); p];
    for nb in &a.halo.neighbours {
        for &l in &nb.send {
            send[nb.rank].push((a.gid[l as usize], p_rows[l as usize].clone()));
        }
    }
    let got = comm.alltoallv(send.iter().map(|r| encode_rows(r)).collect());
    let mut ghost_p: IdMap<u64, Vec<(u64, f64)>> = IdMap::default();
    for b in &got {
        for (g, r) in decode_rows(b) {
            ghost_p.insert(g, r);
        }
    }
    let p_of = |j: usize| -> &[(u64, f64)] {
        if j < n {
            &p_rows[j]
        } else {
            ghost_p.get(&a.ghost_gid[j - n]).map_or(&[][..], |r| &r[..])
        }
    };
    // contributions of P^T (A P), grouped by coarse row
    let mut contrib: IdMap<u64, Vec<(u64, f64)>> = IdMap::default();
    for i in 0..n {
        let (c, v) = a.a.row(i);
        let mut ap: Vec<(u64, f64)> = Vec::new();
        for (&j, &x) in c.iter().zip(v) {
            for &(cc, pv) in p_of(j as usize) {
                ap.push((cc, x * pv));
            }
        }
        let ap = merge(ap);
        for &(c1, pv) in &p_rows[i] {
            let e = contrib.entry(c1).or_default();
            for &(c2, y) in &ap {
                e.push((c2, pv * y));
            }
        }
    }
    // to the owners of the coarse rows, in increasing coarse id
    let mut keys: Vec<u64> = contrib.keys().copied().collect();
    keys.sort_unstable();
    let mut out: Vec<Vec<GlobalRow>> = vec![Vec::new(); p];
    for k in keys {
        let o = owner_in(&off, k);
        out[o].push((k, contrib.remove(&k).expect("key")));
    }
    let got = comm.alltoallv(out.iter().map(|r| encode_rows(r)).collect());
    let mut rows: Vec<Vec<(u64, f64)>> = vec![Vec::new(); nagg];
    for b in &got {
        for (g, r) in decode_rows(b) {
            rows[(g - base) as usize].extend(r);
        }
    }
    let coarse_rows: Vec<GlobalRow> = rows
        .into_iter()
        .enumerate()
        .map(|(l, r)| (base + l as u64, merge(r)))
        .collect();
    Coarsened {
        coarse_rows,
        coarse_b: norms,
        p_rows,
        coarse_off: off,
        inv_diag,
        rho,
    }
}

impl DistHierarchy {
    /// Builds the hierarchy of `a` (collective) with near-null-space `b`
    /// (owned rows, in `a`'s row order).
    pub fn new(
        comm: &dyn Comm,
        a: DistMatrix,
        b: Vec<f64>,
        settings: &AmgSettings,
        dist: &DistAmgSettings,
    ) -> Result<Self, SolveError> {
        let mut levels = Vec::new();
        let mut a = a;
        let mut bvec = b;
        let mut sizes = vec![a.global_rows];
        let mut nnz = vec![comm::sum_usize(comm, a.a.nnz())];
        loop {
            let n = a.global_rows;
            if n <= dist.gather_below.max(1) || levels.len() >= dist.max_dist_levels {
                break;
            }
            let c = coarsen(comm, &a, &bvec, settings);
            let nc = *c.coarse_off.last().expect("offsets") as usize;
            if nc == 0 || nc as f64 > 0.9 * n as f64 {
                break;
            }
            let off = c.coarse_off.clone();
            let (ac, order) = DistMatrix::from_rows(comm, c.coarse_rows, nc, |g| owner_in(&off, g));
            let base = off[comm.rank()];
            // P's columns: the coarse level's owned rows (its order), then
            // P's own ghosts
            let mut pos = vec![0u32; order.len()];
            for (new, &old) in order.iter().enumerate() {
                pos[old as usize] = new as u32;
            }
            let nco = ac.n_owned();
            let mut ghosts: Vec<(u32, u64)> = c
                .p_rows
                .iter()
                .flatten()
                .map(|e| e.0)
                .filter(|&g| g < base || g >= base + nco as u64)
                .map(|g| (owner_in(&off, g) as u32, g))
                .collect();
            ghosts.sort_unstable();
            ghosts.dedup();
            let gidx: IdMap<u64, u32> = ghosts
                .iter()
                .enumerate()
                .map(|(k, &(_, g))| (g, (nco + k) as u32))
                .collect();
            let mut rp = vec![0usize];
            let (mut col, mut val) = (Vec::new(), Vec::new());
            for r in &c.p_rows {
                for &(g, v) in r {
                    col.push(if g >= base && g < base + nco as u64 {
                        pos[(g - base) as usize]
                    } else {
                        gidx[&g]
                    });
                    val.push(v);
                }
                rp.push(col.len());
            }
            let pm = Csr::new(a.n_owned(), nco + ghosts.len(), rp, col, val);
            let gg: Vec<u64> = ghosts.iter().map(|g| g.1).collect();
            let go: Vec<u32> = ghosts.iter().map(|g| g.0).collect();
            let p_halo = build_halo(comm, &ac.gid, nco, &gg, &go);
            let (s0, steps) = host::smoother_coefficients(settings, c.rho);
            let next_b: Vec<f64> = order.iter().map(|&o| c.coarse_b[o as usize]).collect();
            levels.push(Level {
                a,
                inv_diag: c.inv_diag,
                p: pm,
                p_halo,
                s0,
                steps,
            });
            sizes.push(nc);
            nnz.push(comm::sum_usize(comm, ac.a.nnz()));
            a = ac;
            bvec = next_b;
        }
        // gather the last level onto rank 0
        let rows: Vec<GlobalRow> = (0..a.n_owned())
            .map(|i| {
                let (c, v) = a.a.row(i);
                let r = c
                    .iter()
                    .zip(v)
                    .map(|(&j, &x)| {
                        let j = j as usize;
                        let g = if j < a.n_owned() {
                            a.gid[j]
                        } else {
                            a.ghost_gid[j - a.n_owned()]
                        };
                        (g, x)
                    })
                    .collect();
                (a.gid[i], r)
            })
            .collect();
        let mut w = Writer::new();
        w.f64s(&bvec);
        let mut payload = encode_rows(&rows);
        let bbytes = w.finish();
        payload.extend_from_slice(&(bbytes.len() as u64).to_le_bytes());
        payload.extend_from_slice(&bbytes);
        let got = comm::gather(comm, 0, payload);
        let nrows = a.global_rows;
        let mut err = None;
        let mut host_h = None;
        let mut host_complexity = 1.0;
        let mut host_sizes = Vec::new();
        let mut ids: Vec<Vec<u64>> = Vec::new();
        if let Some(got) = got {
            // rows, then the B values of the same rows, of every rank
            let mut all: Vec<(Vec<GlobalRow>, Vec<f64>)> = Vec::with_capacity(got.len());
            for buf in got {
                let rows = decode_rows(&buf);
                let tail = &buf[encode_rows(&rows).len()..];
                let (len_b, rest) = tail.split_at(8);
                let len = u64::from_le_bytes(len_b.try_into().expect("8")) as usize;
                all.push((rows, Reader::new(&rest[..len]).f64s()));
            }
            // ids need not be 0..nrows (the finest level's are node ids):
            // number them compactly in increasing id
            let mut sorted: Vec<u64> = all.iter().flat_map(|a| a.0.iter().map(|r| r.0)).collect();
            sorted.sort_unstable();
            assert_eq!(sorted.len(), nrows);
            let index: IdMap<u64, u64> = sorted
                .iter()
                .enumerate()
                .map(|(k, &g)| (g, k as u64))
                .collect();
            let mut grows: Vec<Vec<(u64, f64)>> = vec![Vec::new(); nrows];
            let mut gb = vec![0.0; nrows];
            for (rows, bv) in all {
                ids.push(rows.iter().map(|r| index[&r.0]).collect());
                for ((g, r), bi) in rows.into_iter().zip(bv) {
                    let k = index[&g] as usize;
                    gb[k] = bi;
                    grows[k] = r.into_iter().map(|(j, v)| (index[&j], v)).collect();
                }
            }
            let mut rp = vec![0usize];
            let (mut col, mut val) = (Vec::new(), Vec::new());
            for r in &grows {
                for &(j, v) in r {
                    col.push(j as u32);
                    val.push(v);
                }
                rp.push(col.len());
            }
            let csr = Csr::new(nrows, nrows, rp, col, val);
            match Hierarchy::new(Exec::Serial, csr, gb, settings) {
                Ok(h) => {
                    host_complexity = h.operator_complexity();
                    host_sizes = h.sizes();
                    host_h = Some(h);
                }
                Err(e) => err = Some(e),
            }
        }
        if let Err(msg) = comm::agree(comm, err.as_ref().map(|e| e.to_string())) {
            return Err(err.unwrap_or(SolveError::Factorization {
                method: "AMG setup on rank 0",
                message: msg,
            }));
        }
        // sizes and complexity of the host levels, known on rank 0
        let mut info = Writer::new();
        info.f64(host_complexity);
        info.u64s(&host_sizes.iter().map(|&s| s as u64).collect::<Vec<_>>());
        let mut buf = if comm.rank() == 0 {
            info.finish()
        } else {
            Vec::new()
        };
        comm.broadcast(0, &mut buf);
        let mut r = Reader::new(&buf);
        let host_complexity = r.f64();
        let host_sizes = r.u64s();
        let fine = nnz[0] as f64;
        let dist_nnz: usize = nnz[..nnz.len() - 1].iter().sum();
        let last = *nnz.last().expect("a level") as f64;
        let operator_complexity = (dist_nnz as f64 + last * host_complexity) / fine;
        sizes.extend(host_sizes.iter().skip(1).map(|&s| s as usize));
        Ok(Self {
            levels,
            gathered: Gathered {
                ids,
                host: host_h,
                rows: nrows,
                n_owned: a.n_owned(),
            },
            settings: *settings,
            sizes,
            operator_complexity,
        })
    }

    /// Distributed levels (the gathered host levels not counted).
    pub fn distributed_levels(&self) -> usize {
        self.levels.len()
    }

    /// Levels in all.
    pub fn levels(&self) -> usize {
        self.sizes.len()
    }

    fn gathered_solve(&self, comm: &dyn Comm, b: &[f64], x: &mut [f64]) {
        let g = &self.gathered;
        let mut w = Writer::new();
        w.f64s(b);
        let got = comm::gather(comm, 0, w.finish());
        let parts = got.map(|got| {
            let h = g.host.as_ref().expect("rank 0 holds the host hierarchy");
            let mut full = vec![0.0; g.rows];
            for (q, buf) in got.iter().enumerate() {
                let v = Reader::new(buf).f64s();
                for (k, &gid) in g.ids[q].iter().enumerate() {
                    full[gid as usize] = v[k];
                }
            }
            let z = h.precondition(Exec::Serial, &full);
            g.ids
                .iter()
                .map(|l| {
                    let mut w = Writer::new();
                    w.f64s(&l.iter().map(|&gid| z[gid as usize]).collect::<Vec<_>>());
                    w.finish()
                })
                .collect()
        });
        let mine = comm::scatter(comm, 0, parts);
        x.copy_from_slice(&Reader::new(&mine).f64s());
    }

    /// `x = M^-1 b`: one V-cycle with a zero initial guess (collective;
    /// `b` and `x` on the finest level's owned rows).
    pub fn precondition(&self, comm: &dyn Comm, b: &[f64], x: &mut [f64]) {
        self.vcycle(comm, 0, b, x);
    }

    fn vcycle(&self, comm: &dyn Comm, l: usize, b: &[f64], x: &mut [f64]) {
        if l == self.levels.len() {
            assert_eq!(b.len(), self.gathered.n_owned);
            self.gathered_solve(comm, b, x);
            return;
        }
        let lev = &self.levels[l];
        let n = lev.a.n_owned();
        let (pre, post) = (self.settings.pre_sweeps, self.settings.post_sweeps);
        let mut xc = vec![0.0; lev.a.n_cols()];
        let mut r = b.to_vec();
        for k in 0..pre {
            let start = if k == 0 { Start::Zero } else { Start::Residual };
            sweep(comm, lev, b, &mut xc, &mut r, start, true);
        }
        // restriction: b_c = P^T r
        let ncols = lev.p.ncols();
        let mut bc = vec![0.0; ncols];
        for i in 0..n {
            let (c, v) = lev.p.row(i);
            for (&j, &pv) in c.iter().zip(v) {
                bc[j as usize] += pv * r[i];
            }
        }
        lev.p_halo.reverse_add(comm, &mut bc);
        let nco = if l + 1 < self.levels.len() {
            self.levels[l + 1].a.n_owned()
        } else {
            self.gathered.n_owned
        };
        let mut xcoarse = vec![0.0; ncols];
        self.vcycle(comm, l + 1, &bc[..nco], &mut xcoarse[..nco]);
        lev.p_halo.exchange(comm, &mut xcoarse, &mut |_| {});
        for i in 0..n {
            xc[i] += row_dot(&lev.p, i, &xcoarse);
        }
        for k in 0..post {
            let start = if k == 0 {
                Start::Compute
            } else {
                Start::Residual
            };
            sweep(comm, lev, b, &mut xc, &mut r, start, k + 1 < post);
        }
        x.copy_from_slice(&xc[..n]);
    }
}

/// How a smoothing sweep starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    Zero,
    Residual,
    Compute,
}

/// One sweep of the polynomial smoother (the engine's): `d = s0 D^-1 r`,
/// per step `x += d`, `r -= A d`, `d = c1 d + c2 D^-1 r`, last `x += d`
/// and, with `keep_r`, `r -= A d`. `x` in column space.
fn sweep(
    comm: &dyn Comm,
    lev: &Level,
    b: &[f64],
    x: &mut [f64],
    r: &mut [f64],
    start: Start,
    keep_r: bool,
) {
    let a = &lev.a;
    let n = a.n_owned();
    let dinv = &lev.inv_diag;
    let mut d = vec![0.0; a.n_cols()];
    let mut q = vec![0.0; n];
    match start {
        Start::Zero => {
            for i in 0..n {
                x[i] = 0.0;
                r[i] = b[i];
                d[i] = lev.s0 * dinv[i] * b[i];
            }
        }
        Start::Residual => {
            for i in 0..n {
                d[i] = lev.s0 * dinv[i] * r[i];
            }
        }
        Start::Compute => {
            a.spmv(comm, x, &mut q);
            for i in 0..n {
                r[i] = b[i] - q[i];
                d[i] = lev.s0 * dinv[i] * r[i];
            }
        }
    }
    for &(c1, c2) in &lev.steps {
        a.spmv(comm, &mut d, &mut q);
        for i in 0..n {
            x[i] += d[i];
            r[i] -= q[i];
            d[i] = c1 * d[i] + c2 * dinv[i] * r[i];
        }
    }
    if keep_r {
        a.spmv(comm, &mut d, &mut q);
        for i in 0..n {
            r[i] -= q[i];
        }
    }
    for i in 0..n {
        x[i] += d[i];
    }
}

/// CG preconditioned by the distributed V-cycle on the equilibrated
/// system, stopped by the convergence rule every solver shares
/// ([`quadflow_systems::solver::Convergence`]: the true residual
/// `||b - A x|| / ||b||` at most `rtol`). Returns `x` on the owned rows and
/// the stats the rule fills.
pub fn amg_pcg(
    comm: &dyn Comm,
    h: &DistHierarchy,
    a: &DistMatrix,
    b: &[f64],
    b_norm: f64,
    settings: &CgSettings,
) -> Result<(Vec<f64>, SolveStats), SolveError> {
    let m = a.n_owned();
    let mut x = vec![0.0; m];
    let mut stats = SolveStats::default();
    if b_norm == 0.0 {
        stats.converged = true;
        return Ok((x, stats));
    }
    let mut rule = Convergence::new(settings.rtol);
    let rel = |rr: f64| rr.sqrt() / b_norm;
    let norm2 = |r: &[f64]| {
        let mut s = [r.iter().map(|v| v * v).sum::<f64>()];
        comm.allreduce_sum(&mut s);
        s[0]
    };
    let mut r = b.to_vec();
    let mut z = vec![0.0; m];
    let mut p = vec![0.0; a.n_cols()];
    let mut q = vec![0.0; m];
    let mut rr = norm2(&r);
    h.precondition(comm, &r, &mut z);
    p[..m].copy_from_slice(&z);
    let mut rz = dot(comm, &r, &z);
    let mut it = 0;
    let verdict = loop {
        if rel(rr) < rule.target() {
            // the true residual b - A x replaces the recurrence's
            let mut xc = vec![0.0; a.n_cols()];
            xc[..m].copy_from_slice(&x);
            a.spmv(comm, &mut xc, &mut q);
            for i in 0..m {
                r[i] = b[i] - q[i];
            }
            rr = norm2(&r);
            match rule.judge(it, rel(rr)) {
                Verdict::Replace => {}
                v => break Some(v),
            }
            h.precondition(comm, &r, &mut z);
            rz = dot(comm, &r, &z);
            p[..m].copy_from_slice(&z);
            continue;
        }
        if it >= settings.max_iter {
            break None;
        }
        a.spmv(comm, &mut p, &mut q);
        let pq = dot(comm, &p[..m], &q);
        if pq.is_nan() || pq <= 0.0 {
            return Err(SolveError::Breakdown {
                iteration: it,
                pap: pq,
            });
        }
        let alpha = rz / pq;
        for i in 0..m {
            x[i] += alpha * p[i];
            r[i] -= alpha * q[i];
        }
        rr = norm2(&r);
        it += 1;
        if rel(rr) < rule.target() {
            continue;
        }
        h.precondition(comm, &r, &mut z);
        let rz_new = dot(comm, &r, &z);
        let beta = rz_new / rz;
        rz = rz_new;
        for i in 0..m {
            p[i] = z[i] + beta * p[i];
        }
    };
    stats.iterations = it;
    rule.finish(&mut stats, verdict, rel(rr));
    Ok((x, stats))
}

/// The distributed AMG-CG solve: equilibrate (as Jacobi-CG does), build
/// the hierarchy, CG with the V-cycle, unscale, true residual.
pub fn solve_amg_cg(
    comm: &dyn Comm,
    part: &Part,
    sys: &LocalSystem,
    cg: &CgSettings,
    amg: &AmgSettings,
    dist: &DistAmgSettings,
) -> Result<DistSolution, SolveError> {
    let t0 = Instant::now();
    let eq = EquilibratedDist::new(comm, part, sys)?;
    let nn: Vec<f64> = eq
        .node_of_row
        .iter()
        .map(|&i| 1.0 / eq.d[i as usize])
        .collect();
    let h = DistHierarchy::new(comm, eq.a.clone(), nn, amg, dist)?;
    let setup = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let (x, out) = amg_pcg(comm, &h, &eq.a, &eq.b, eq.b_norm, cg)?;
    let u = eq.unscale(&x);
    let r = residuals(comm, part, sys, &u);
    let stats = SolveStats {
        setup_seconds: setup,
        solve_seconds: t1.elapsed().as_secs_f64(),
        decoupled_rows: eq.decoupled,
        cg_rows: eq.a.global_rows,
        cg_stored: comm::sum_usize(comm, eq.a.a.nnz()),
        levels: h.levels(),
        operator_complexity: h.operator_complexity,
        ..out
    };
    Ok(DistSolution {
        u,
        stats,
        true_residual: r.raw,
        equilibrated_residual: r.equilibrated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assemble::tests::global_system;
    use crate::cg::gather_u;
    use crate::comm::ThreadComm;
    use crate::part::build_parts;
    use crate::partition::{Method, partition, tests::lattice};
    use quadflow_systems::pipeline::RunConfig;
    use std::sync::Arc;

    #[test]
    fn distributed_amg_cg_converges_like_the_host_one() {
        let m = lattice(40, 12, true);
        let mut cfg = RunConfig::default();
        cfg.solver.cg.rtol = 1e-10;
        let (k, f) = global_system(&m, cfg.clone());
        let (us, ss) = host::solve_amg_cg(
            &k,
            &f,
            &cfg.solver.cg,
            &cfg.solver.amg,
            Exec::Serial,
            &mut |_, _| true,
        )
        .unwrap();
        let mut one = 0;
        for p in [1, 2, 3, 5] {
            // gather below 100 rows: two or three distributed levels
            let dist = DistAmgSettings {
                gather_below: 100,
                max_dist_levels: 12,
            };
            let parts = Arc::new(build_parts(&m, &partition(&m, p, Method::Rcb).unwrap()));
            let cfg2 = cfg.clone();
            let out = ThreadComm::run(p, move |c| {
                let part = &parts[c.rank()];
                let sys = LocalSystem::assemble_serial(part, cfg2.clone()).unwrap();
                let sol =
                    solve_amg_cg(c, part, &sys, &cfg2.solver.cg, &cfg2.solver.amg, &dist).unwrap();
                (gather_u(c, 0, part, &sol.u), sol.stats, sol.true_residual)
            });
            let (u, stats, tr) = &out[0];
            assert!(stats.converged);
            assert!(stats.levels >= 3, "{stats:?}");
            assert!(*tr < 2e-10, "p {p}: true residual {tr:e}");
            if p == 1 {
                one = stats.iterations;
            }
            assert!(
                stats.iterations as f64 <= 1.3 * one as f64,
                "p {p}: {} iterations vs {one} on one rank",
                stats.iterations
            );
            let e = crate::cg::tests::rel_max(u.as_ref().unwrap(), &us);
            assert!(e < 1e-8, "p {p}: u differs from the host AMG-CG's by {e:e}");
            eprintln!(
                "p {p}: {} iterations (host {}), levels {}",
                stats.iterations, ss.iterations, stats.levels
            );
        }
    }
}
