//! Building the hierarchy: strength of connection, aggregation, the
//! smoothed prolongator, the Galerkin products and the coarsest factor.

use super::NONE;
use super::settings::{AmgSettings, Smoother, Strength};
use crate::exec::{Exec, blocks1, dot, map_blocks, map_blocks_with, to_f32};
use crate::solver::SolveError;
use crate::sparse::{Csr, Narrow, SPGEMM_BLOCK};

/// Strong neighbours of every row (diagonal excluded):
/// `|a_ij| >= theta sqrt(|a_ii a_jj|)`.
pub fn strength(
    exec: Exec,
    a: &Csr,
    diag: &[f64],
    theta: f64,
    kind: Strength,
) -> (Vec<usize>, Vec<u32>) {
    let negative_only = kind == Strength::Negative;
    let t2 = theta * theta;
    let parts = map_blocks(exec, a.nrows(), SPGEMM_BLOCK * 4, |rows| {
        let mut len = Vec::with_capacity(rows.len());
        let mut col = Vec::new();
        for i in rows {
            let start = col.len();
            let (c, v) = a.row(i);
            for (&j, &x) in c.iter().zip(v) {
                if j as usize != i
                    && (!negative_only || x < 0.0)
                    && x * x >= t2 * (diag[i] * diag[j as usize]).abs()
                {
                    col.push(j);
                }
            }
            len.push(col.len() - start);
        }
        (len, col)
    });
    let mut ptr = Vec::with_capacity(a.nrows() + 1);
    ptr.push(0);
    let mut adj = Vec::new();
    for (len, c) in parts {
        for l in len {
            ptr.push(ptr.last().expect("non-empty") + l);
        }
        adj.extend_from_slice(&c);
    }
    (ptr, adj)
}

/// Standard aggregation (PyAMG's three passes) of the strength graph.
/// Returns the aggregate of every node ([`u32::MAX`] for nodes without a
/// strong neighbour, left out) and the number of aggregates.
pub fn aggregate(ptr: &[usize], adj: &[u32]) -> (Vec<u32>, usize) {
    let n = ptr.len() - 1;
    const ISOLATED: u32 = NONE - 1;
    let nb = |i: usize| &adj[ptr[i]..ptr[i + 1]];
    let mut agg = vec![NONE; n];
    let mut next = 0u32;
    // Pass 1: roots whose strong neighbourhood is entirely free.
    for i in 0..n {
        if agg[i] != NONE {
            continue;
        }
        let ns = nb(i);
        if ns.is_empty() {
            agg[i] = ISOLATED;
            continue;
        }
        if ns.iter().any(|&j| agg[j as usize] != NONE) {
            continue;
        }
        agg[i] = next;
        for &j in ns {
            agg[j as usize] = next;
        }
        next += 1;
    }
    let pass1 = next;
    // Pass 2: attach leftovers to a pass-1 aggregate of a strong
    // neighbour (decided on the pass-1 state, so no chains).
    let attach: Vec<(usize, u32)> = (0..n)
        .filter(|&i| agg[i] == NONE)
        .filter_map(|i| {
            nb(i)
                .iter()
                .map(|&j| agg[j as usize])
                .find(|&a| a < pass1)
                .map(|a| (i, a))
        })
        .collect();
    for (i, a) in attach {
        agg[i] = a;
    }
    // Pass 3: new aggregates of what is left.
    for i in 0..n {
        if agg[i] != NONE {
            continue;
        }
        agg[i] = next;
        for &j in nb(i) {
            if agg[j as usize] == NONE {
                agg[j as usize] = next;
            }
        }
        next += 1;
    }
    for a in agg.iter_mut() {
        if *a == ISOLATED {
            *a = NONE;
        }
    }
    (agg, next as usize)
}

/// splitmix64, for a reproducible Lanczos start vector.
fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Largest eigenvalue of `D^-1 A` (`inv_diag = D^-1`, positive), by
/// `steps` Lanczos steps on `D^-1/2 A D^-1/2`: the largest Ritz value.
pub fn spectral_radius(exec: Exec, a: &Csr, inv_diag: &[f64], steps: usize) -> f64 {
    spectral_radius_with(exec, a, a.vals(), inv_diag, steps)
}

/// [`spectral_radius`] with the values `vals` on `a`'s pattern (the
/// single-precision copy: an estimate needs no more). `a` must be square
/// (the distributed solve runs it on a rank's own block).
pub fn spectral_radius_with<T: Copy + Into<f64> + Sync>(
    exec: Exec,
    a: &Csr,
    vals: &[T],
    inv_diag: &[f64],
    steps: usize,
) -> f64 {
    let n = a.nrows();
    if n == 0 {
        return 1.0;
    }
    let s: Vec<f64> = inv_diag.iter().map(|d| d.sqrt()).collect();
    let mut v: Vec<f64> = (0..n)
        .map(|i| (splitmix(i as u64) >> 11) as f64 / (1u64 << 53) as f64 - 0.5)
        .collect();
    let nv = dot(exec, &v, &v).sqrt();
    v.iter_mut().for_each(|x| *x /= nv);
    let mut v_prev = vec![0.0; n];
    let mut w = vec![0.0; n];
    let (mut alphas, mut betas) = (Vec::new(), Vec::new());
    let mut beta_prev = 0.0;
    for _ in 0..steps.max(1) {
        // w = S A S v and alpha = w.v, one pass (S v formed where read,
        // the block's w.v summed as `dot` sums it)
        let alpha = {
            let (sv, vv) = (&s, &v);
            blocks1(exec, &mut w, |st, wb| {
                for (l, wi) in wb.iter_mut().enumerate() {
                    let i = st + l;
                    *wi = a.row_fold_with(vals, i, |j| sv[j] * vv[j]) * sv[i];
                }
                wb.iter().zip(&vv[st..]).map(|(x, y)| x * y).sum()
            })
        };
        // w -= alpha v + beta_prev v_prev and w.w, one pass
        let beta = {
            let (vv, vp) = (&v, &v_prev);
            blocks1(exec, &mut w, |st, wb| {
                for (l, wi) in wb.iter_mut().enumerate() {
                    *wi -= alpha * vv[st + l] + beta_prev * vp[st + l];
                }
                wb.iter().map(|x| x * x).sum()
            })
            .sqrt()
        };
        alphas.push(alpha);
        if beta.is_nan() || beta <= 1e-12 * alpha.abs() {
            break;
        }
        betas.push(beta);
        std::mem::swap(&mut v_prev, &mut v);
        blocks1(exec, &mut v, |st, vb| {
            for (l, vi) in vb.iter_mut().enumerate() {
                *vi = w[st + l] / beta;
            }
            0.0
        });
        beta_prev = beta;
    }
    tridiagonal_max(&alphas, &betas)
}

/// Largest eigenvalue of the symmetric tridiagonal matrix with diagonal
/// `alphas` and off-diagonal `betas` (the Lanczos matrix; `betas` may be
/// one shorter than `alphas` or as long, its last entry then unused).
pub fn tridiagonal_max(alphas: &[f64], betas: &[f64]) -> f64 {
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

/// The tentative prolongator of the aggregation `agg` (`nagg`
/// aggregates) from the near-null-space vector `b`: the entry `t[i]` of
/// every row (in column `agg[i]`; zero for rows in no aggregate),
/// normalised per aggregate, and the coarse near-null-space vector (the
/// per-aggregate norms).
pub fn tentative(agg: &[u32], nagg: usize, b: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let mut norm2 = vec![0.0; nagg];
    for (i, &g) in agg.iter().enumerate() {
        if g != NONE {
            norm2[g as usize] += b[i] * b[i];
        }
    }
    let norms: Vec<f64> = norm2.iter().map(|v| v.sqrt()).collect();
    let t: Vec<f64> = agg
        .iter()
        .enumerate()
        .map(|(i, &g)| {
            if g == NONE || norms[g as usize] == 0.0 {
                0.0
            } else {
                b[i] / norms[g as usize]
            }
        })
        .collect();
    (t, norms)
}

/// The smoothed prolongator `P = (I - omega D^-1 A) T` of the tentative
/// `T` (one entry `t[i]` per aggregated row `i`, in column `agg[i]`).
/// Columns of `a` at or past `agg.len()` (a rank's ghost columns) must not
/// occur: `a` is square here.
pub fn smoothed_prolongator(
    exec: Exec,
    a: &Csr,
    inv_diag: &[f64],
    agg: &[u32],
    t: &[f64],
    nagg: usize,
    omega: f64,
) -> Csr {
    let init = || vec![usize::MAX; nagg];
    let parts = map_blocks_with(exec, a.nrows(), SPGEMM_BLOCK, init, |mark, rows| {
        let mut len = Vec::with_capacity(rows.len());
        let mut col: Vec<u32> = Vec::new();
        let mut val: Vec<f64> = Vec::new();
        for i in rows {
            let start = col.len();
            if agg[i] != NONE {
                mark[agg[i] as usize] = col.len();
                col.push(agg[i]);
                val.push(t[i]);
            }
            let w = omega * inv_diag[i];
            let (c, v) = a.row(i);
            for (&j, &x) in c.iter().zip(v) {
                let g = agg[j as usize];
                if g == NONE {
                    continue;
                }
                let add = -w * x * t[j as usize];
                let m = &mut mark[g as usize];
                if *m == usize::MAX || *m < start {
                    *m = col.len();
                    col.push(g);
                    val.push(add);
                } else {
                    val[*m] += add;
                }
            }
            len.push(col.len() - start);
        }
        for &g in &col {
            mark[g as usize] = usize::MAX;
        }
        (len, col, val)
    });
    Csr::from_blocks(exec, a.nrows(), nagg, parts)
}

// ---------------------------------------------------------------------
// Hierarchy.

/// One level above the coarsest: its operator, smoother data and the
/// transfer to the next level.
#[derive(Debug, Clone)]
pub(super) struct Level {
    pub(super) a: Csr,
    /// `a`'s values in single precision, for the smoother and residuals:
    /// the V-cycle is a preconditioner, a third less memory traffic
    /// matters more than the last digits. (Still a fixed symmetric
    /// operator, so CG keeps its guarantees.)
    pub(super) v32: Vec<f32>,
    pub(super) inv_diag: Vec<f64>,
    /// Prolongator to this level from the next.
    pub(super) p: Csr,
    /// `P^T`.
    pub(super) r: Csr,
    /// `P`'s and `P^T`'s values in single precision (for the cycle).
    pub(super) p32: Vec<f32>,
    pub(super) r32: Vec<f32>,
    /// Smoother: first scale `s0` (`d = s0 D^-1 r`), then per step the
    /// coefficients `(c1, c2)` of `d = c1 d + c2 D^-1 r`.
    pub(super) s0: f64,
    pub(super) steps: Vec<(f64, f64)>,
    /// The narrow indexes of `a`, `p`, `r` where they fit (the cycle's
    /// products read them instead: a quarter less index traffic).
    pub(super) na: Option<Narrow>,
    pub(super) np: Option<Narrow>,
    pub(super) nr: Option<Narrow>,
}

/// The coarsest level's solver.
#[derive(Debug, Clone)]
pub(super) enum Coarse {
    /// Dense Cholesky factor.
    Cholesky(nalgebra::Cholesky<f64, nalgebra::Dyn>),
    /// Nothing to solve.
    Empty,
}

/// A smoothed-aggregation hierarchy, usable as a preconditioner.
#[derive(Debug, Clone)]
pub struct Hierarchy {
    pub(super) levels: Vec<Level>,
    pub(super) coarse: Coarse,
    /// The coarsest operator.
    pub(super) coarse_a: Csr,
    pub(super) settings: AmgSettings,
}

/// One level of a [`Hierarchy`] above the coarsest, borrowed (what the
/// GPU backend uploads).
#[derive(Debug, Clone, Copy)]
pub struct LevelData<'a> {
    /// The level's operator (double precision; only the finest is used
    /// in double, by CG's product).
    pub a: &'a Csr,
    /// `a`'s values in single precision (smoother, residuals).
    pub a32: &'a [f32],
    /// `1 / a_ii`.
    pub inv_diag: &'a [f64],
    /// Prolongator from the next level.
    pub p: &'a Csr,
    /// `p`'s values in single precision.
    pub p32: &'a [f32],
    /// Restriction `P^T`.
    pub r: &'a Csr,
    /// `r`'s values in single precision.
    pub r32: &'a [f32],
    /// Smoother: `d = s0 D^-1 r` first.
    pub s0: f64,
    /// Smoother steps `d = c1 d + c2 D^-1 r`.
    pub steps: &'a [(f64, f64)],
}

impl Hierarchy {
    /// Builds the hierarchy of `a` (symmetric positive definite) with
    /// near-null-space vector `b`.
    pub fn new(
        exec: Exec,
        a: Csr,
        b: Vec<f64>,
        settings: &AmgSettings,
    ) -> Result<Self, SolveError> {
        let mut levels = Vec::new();
        let mut a = a;
        let mut bvec = b;
        loop {
            let n = a.nrows();
            if n <= settings.max_coarse || levels.len() + 1 >= settings.max_levels {
                break;
            }
            let diag = a.diagonal_with(exec);
            if let Some(i) = diag.iter().position(|d| d.is_nan() || *d <= 0.0) {
                return Err(SolveError::NotPositiveDefinite {
                    method: "AMG setup",
                    step: i,
                    n,
                });
            }
            let (sp, sj) = {
                let _s = tracing::info_span!("amg_strength", n).entered();
                strength(exec, &a, &diag, settings.theta, settings.strength)
            };
            let (agg, nagg) = {
                let _s = tracing::info_span!("amg_aggregate", n).entered();
                aggregate(&sp, &sj)
            };
            if nagg == 0 || nagg >= n {
                break;
            }
            let inv_diag: Vec<f64> = diag.iter().map(|d| 1.0 / d).collect();
            let v32 = to_f32(exec, a.vals());
            let rho = {
                let _s = tracing::info_span!("amg_lanczos", n).entered();
                spectral_radius_with(exec, &a, &v32, &inv_diag, settings.lanczos_steps)
            };
            // Tentative prolongator from `bvec`.
            let (t, norms) = tentative(&agg, nagg, &bvec);
            let omega = settings.omega_scale / rho;
            let p = {
                let _s = tracing::info_span!("amg_prolongator", n).entered();
                smoothed_prolongator(exec, &a, &inv_diag, &agg, &t, nagg, omega)
            };
            let r = p.transpose_with(exec);
            let ac = {
                let _s = tracing::info_span!("amg_galerkin", n, nc = nagg).entered();
                let ap = a.matmul(exec, &p);
                r.matmul(exec, &ap)
            };
            let (s0, steps) = smoother_coefficients(settings, rho);
            let p32 = to_f32(exec, p.vals());
            let r32 = to_f32(exec, r.vals());
            let (na, np, nr) = (a.narrow(exec), p.narrow(exec), r.narrow(exec));
            levels.push(Level {
                na,
                np,
                nr,
                a,
                v32,
                p32,
                r32,
                inv_diag,
                p,
                r,
                s0,
                steps,
            });
            a = ac;
            bvec = norms;
        }
        let n = a.nrows();
        let coarse = if n == 0 {
            Coarse::Empty
        } else {
            let _s = tracing::info_span!("amg_coarse_cholesky", n).entered();
            let mut m = nalgebra::DMatrix::<f64>::zeros(n, n);
            for i in 0..n {
                let (c, v) = a.row(i);
                for (&j, &x) in c.iter().zip(v) {
                    m[(i, j as usize)] += x;
                }
            }
            // symmetrise the rounding of the Galerkin products
            let m = (&m + m.transpose()) * 0.5;
            match nalgebra::Cholesky::new(m) {
                Some(c) => Coarse::Cholesky(c),
                None => {
                    return Err(SolveError::NotPositiveDefinite {
                        method: "AMG coarsest-level Cholesky",
                        step: 0,
                        n,
                    });
                }
            }
        };
        Ok(Self {
            levels,
            coarse,
            coarse_a: a,
            settings: *settings,
        })
    }

    /// The finest operator (the matrix the hierarchy was built for).
    pub fn fine(&self) -> &Csr {
        self.levels.first().map_or(&self.coarse_a, |l| &l.a)
    }

    /// Number of levels, the coarsest included.
    pub fn levels(&self) -> usize {
        self.levels.len() + 1
    }

    /// Rows of every level, finest first.
    pub fn sizes(&self) -> Vec<usize> {
        let mut v: Vec<usize> = self.levels.iter().map(|l| l.a.nrows()).collect();
        v.push(self.coarse_a.nrows());
        v
    }

    /// Stored entries of every level's operator, finest first.
    pub fn level_nnz(&self) -> Vec<usize> {
        let mut v: Vec<usize> = self.levels.iter().map(|l| l.a.nnz()).collect();
        v.push(self.coarse_a.nnz());
        v
    }

    /// Stored entries of all levels over those of the finest.
    pub fn operator_complexity(&self) -> f64 {
        let total: usize =
            self.levels.iter().map(|l| l.a.nnz()).sum::<usize>() + self.coarse_a.nnz();
        let fine = self.fine().nnz();
        if fine == 0 {
            1.0
        } else {
            total as f64 / fine as f64
        }
    }

    /// The levels above the coarsest, finest first, as the GPU backend
    /// uploads them.
    pub fn level_data(&self) -> Vec<LevelData<'_>> {
        self.levels
            .iter()
            .map(|l| LevelData {
                a: &l.a,
                a32: &l.v32,
                inv_diag: &l.inv_diag,
                p: &l.p,
                p32: &l.p32,
                r: &l.r,
                r32: &l.r32,
                s0: l.s0,
                steps: &l.steps,
            })
            .collect()
    }

    /// The settings the hierarchy was built with.
    pub fn settings(&self) -> &AmgSettings {
        &self.settings
    }

    /// The coarsest operator's inverse, dense and row-major (`n x n`, `n`
    /// its rows; empty when there is nothing to solve), from the Cholesky
    /// factor the host's cycle uses.
    pub fn coarse_inverse(&self) -> Vec<f64> {
        match &self.coarse {
            Coarse::Cholesky(c) => {
                let inv = c.inverse();
                let n = inv.nrows();
                let mut out = Vec::with_capacity(n * n);
                for i in 0..n {
                    for j in 0..n {
                        out.push(inv[(i, j)]);
                    }
                }
                out
            }
            Coarse::Empty => Vec::new(),
        }
    }
}

/// Chebyshev (or Jacobi) coefficients of the smoother for an estimated
/// spectral radius `rho` of `D^-1 A`: the first scale `s0` and per step
/// `(c1, c2)` (also used by the GPU backend's device setup).
pub fn smoother_coefficients(s: &AmgSettings, rho: f64) -> (f64, Vec<(f64, f64)>) {
    let deg = s.degree.max(1);
    match s.smoother {
        Smoother::Jacobi => {
            let w = 4.0 / 3.0 / rho;
            (w, vec![(0.0, w); deg - 1])
        }
        Smoother::Chebyshev => {
            let hi = 1.1 * rho;
            let lo = hi / s.cheb_ratio;
            let theta = 0.5 * (hi + lo);
            let delta = 0.5 * (hi - lo);
            let sigma = theta / delta;
            let mut rho_old = 1.0 / sigma;
            let mut steps = Vec::with_capacity(deg - 1);
            for _ in 1..deg {
                let rho_new = 1.0 / (2.0 * sigma - rho_old);
                steps.push((rho_new * rho_old, 2.0 * rho_new / delta));
                rho_old = rho_new;
            }
            (1.0 / theta, steps)
        }
    }
}
