//! The reference linear solve (`docs/numerics.md`, "Linear solve"): diagonal
//! equilibration, then Jacobi-preconditioned CG on the equilibrated system,
//! stopped on the recurrence residual, exactly SciPy's `cg` iteration.
//!
//! Two things make it fast without changing the iteration beyond rounding:
//! - Rows with no off-diagonal entry (unused nodes, isolated penalties) are
//!   decoupled: they are solved directly and left out of the CG vectors.
//!   CG would keep them at their exact values anyway (zero for the
//!   reference), so nothing but the vector length changes.
//! - One CG iteration is two passes over memory over the symmetric
//!   (upper-triangle) matrix: pass A updates `p`, forms `q = A p` and
//!   `p.q` while walking the rows from last to first (so the `p_j`, `j > i`,
//!   a row needs are already updated), and applies the previous step's
//!   `x += alpha p`; pass B updates `r` and forms `r.r` and `r.z`.

mod cg;
mod converge;
mod equilibrate;

pub use crate::exec::Exec;
pub use cg::{
    CHUNK, CgKernels, CgOutcome, SerialKernels, fused_bytes_per_iteration, pass_a_rows,
    pass_b_rows, pcg,
};
pub use converge::{Convergence, NotConverged, STALLED_AFTER, Verdict};
pub use equilibrate::{CgMatrix, EquilibratedSystem, Scaling};

use crate::sparse::SymCsr;
use std::time::Instant;

/// Settings of the iterative solve.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CgSettings {
    /// Relative tolerance on the equilibrated recurrence residual.
    pub rtol: f64,
    /// Iteration cap; reaching it is reported as not converged.
    pub max_iter: usize,
}

impl Default for CgSettings {
    fn default() -> Self {
        Self {
            rtol: 1e-8,
            max_iter: 15_000,
        }
    }
}

/// What a solve did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SolveStats {
    /// CG iterations (matrix-vector products; 0 for a direct solve).
    pub iterations: usize,
    /// Whether the solve converged: the true equilibrated residual,
    /// recomputed from the solution, is at most `rtol` ([`Convergence`]).
    pub converged: bool,
    /// The last checked true relative residual of the equilibrated system
    /// (the recurrence residual where no check ran; Cholesky: the true
    /// relative residual).
    pub recurrence_residual: f64,
    /// Residual replacements ([`Verdict::Replace`]) the solve needed.
    pub replacements: usize,
    /// Iteration at which the recurrence residual first met `rtol` (the
    /// first check); iterations past it are the replacements' cost.
    pub first_check_iteration: Option<usize>,
    /// Why the solve did not converge (`None` when it did).
    pub not_converged: Option<NotConverged>,
    /// Seconds spent in setup: equilibration and decoupling (all
    /// methods), the AMG hierarchy, the Cholesky ordering and
    /// factorisation.
    pub setup_seconds: f64,
    /// Rows solved directly (decoupled).
    pub decoupled_rows: usize,
    /// Rows in the CG system.
    pub cg_rows: usize,
    /// Stored entries of the CG matrix (upper triangle).
    pub cg_stored: usize,
    /// Bytes one iteration of the fused kernels moves through memory at
    /// least (see [`fused_bytes_per_iteration`]).
    pub bytes_per_iteration: usize,
    /// Seconds spent after the setup (the iteration, or the triangular
    /// solves and refinement of a direct method).
    pub solve_seconds: f64,
    /// Levels of the multigrid hierarchy (AMG-CG; 0 for other methods).
    pub levels: usize,
    /// Operator complexity of the multigrid hierarchy: stored entries of
    /// all levels over those of the finest (AMG-CG; 0 for other methods).
    pub operator_complexity: f64,
    /// Stored entries of the Cholesky factor `L` (Cholesky; 0 otherwise).
    pub factor_nnz: usize,
    /// Steps of iterative refinement after the direct solve (Cholesky).
    pub refinement_steps: usize,
}

/// Error of the linear solve.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SolveError {
    /// A zero on the diagonal: some node has no stiffness at all.
    #[error(
        "the assembled matrix has a zero diagonal at node {0}; the node is in no element and has no penalty"
    )]
    ZeroDiagonal(usize),
    /// CG broke down (`p.Ap <= 0`), so the matrix is not positive definite.
    #[error(
        "CG broke down at iteration {iteration} (p.Ap = {pap:.3e}): the matrix is not positive definite. Is there a Dirichlet boundary (an outlet)? Without one the potential is only defined up to a constant"
    )]
    Breakdown {
        /// where
        iteration: usize,
        /// the offending curvature
        pap: f64,
    },
    /// The progress callback asked to stop (Ctrl-C in the Python package).
    #[error("the solve was interrupted at iteration {iteration}")]
    Interrupted {
        /// iterations done
        iteration: usize,
    },
    /// Not finite values in the system.
    #[error("the linear system contains NaN or infinite values")]
    NonFinite,
    /// A factorisation met a non-positive pivot: the matrix is not
    /// (numerically) positive definite.
    #[error(
        "{method}: the matrix is not positive definite (non-positive pivot at elimination step {step} of {n}). Is there a Dirichlet boundary (an outlet)? Without one the potential is only defined up to a constant"
    )]
    NotPositiveDefinite {
        /// which factorisation (sparse Cholesky, AMG coarse solve)
        method: &'static str,
        /// elimination step (in the factorisation's own ordering)
        step: usize,
        /// matrix size
        n: usize,
    },
    /// A factorisation could not run (e.g. out of memory).
    #[error("{method}: {message}")]
    Factorization {
        /// which factorisation
        method: &'static str,
        /// what went wrong
        message: String,
    },
}

/// `||f - K u|| / ||f||` with the unequilibrated system.
pub fn true_relative_residual(k: &SymCsr, f: &[f64], u: &[f64]) -> f64 {
    residuals(k, f, u).raw
}

/// The relative residuals of a solution `u` of `K u = f`, from one product
/// `K u`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Residuals {
    /// `||f - K u|| / ||f||` (SPEC's `true_relative_residual`). With
    /// penalty rows (diagonal `1e12`) it measures mostly how well their
    /// `1e12 u_i = 1e12 g_i` holds, which the solver's tolerance does not
    /// control: `1e-3` on a converged 6 x 3 channel at `rtol = 1e-8`.
    pub raw: f64,
    /// `||D (f - K u)|| / ||D f||` with `D = diag(|K_ii|)^-1/2` (rows with
    /// a zero diagonal unweighted): the true
    /// residual of the equilibrated system `D K D (D^-1 u) = D f` that
    /// every solver works on, each row weighted by the square root of its
    /// diagonal so that penalty rows count like the others. It is what
    /// `rtol` bounds: a converged iterative solve lands at or just below
    /// `rtol` on any mesh.
    pub equilibrated: f64,
}

/// `sqrt(num / den)`, or `sqrt(num)` where `den = 0` (`f = 0`).
fn ratio(num: f64, den: f64) -> f64 {
    if den == 0.0 {
        num.sqrt()
    } else {
        (num / den).sqrt()
    }
}

/// The raw and the equilibrated relative residual of `u` ([`Residuals`]),
/// `f - K u` computed in double-double (`sparse::Dd`): what is left is the
/// error of `u` itself, not of computing the residual.
pub fn residuals(k: &SymCsr, f: &[f64], u: &[f64]) -> Residuals {
    let res = k.residual_exact(f, u);
    let (mut num, mut den, mut num_eq, mut den_eq) = (0.0, 0.0, 0.0, 0.0);
    for i in 0..k.n {
        let r = res[i];
        let d = k.val[k.diag_slot(i)].abs();
        let w = if d > 0.0 { 1.0 / d } else { 1.0 };
        num += r * r;
        den += f[i] * f[i];
        num_eq += r * r * w;
        den_eq += f[i] * f[i] * w;
    }
    Residuals {
        raw: ratio(num, den),
        equilibrated: ratio(num_eq, den_eq),
    }
}

/// Full reference solve: equilibrate, CG, unscale. Returns `u` and stats.
pub fn solve_cg_jacobi(
    k: &SymCsr,
    f: &[f64],
    settings: &CgSettings,
    kernels: &mut dyn CgKernels,
    progress: &mut dyn FnMut(usize, f64) -> bool,
) -> Result<(Vec<f64>, SolveStats), SolveError> {
    let t0 = Instant::now();
    let sys = {
        let _s = tracing::info_span!("cg_setup_equilibrate_rcm").entered();
        EquilibratedSystem::new(k, f)?
    };
    let setup = t0.elapsed().as_secs_f64();
    let check = |x: &[f64]| residuals(k, f, &sys.unscale(x)).equilibrated;
    let out = pcg(&sys, settings, kernels, &check, progress)?;
    let mut stats = out.stats;
    stats.setup_seconds = setup;
    Ok((sys.unscale(&out.x), stats))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 1D Laplacian (tridiagonal) with a decoupled row appended.
    fn lap(n: usize) -> SymCsr {
        let mut rowptr = vec![0u32];
        let mut col = vec![];
        let mut val = vec![];
        for i in 0..n {
            col.push(i as u32);
            val.push(2.0 + i as f64 * 0.01);
            if i + 1 < n {
                col.push(i as u32 + 1);
                val.push(-1.0);
            }
            rowptr.push(col.len() as u32);
        }
        col.push(n as u32);
        val.push(4.0);
        rowptr.push(col.len() as u32);
        SymCsr {
            n: n + 1,
            rowptr,
            col,
            val,
        }
    }

    /// Textbook PCG on the full equilibrated matrix, for comparison.
    fn textbook(k: &SymCsr, f: &[f64], rtol: f64) -> (Vec<f64>, usize) {
        let n = k.n;
        let d: Vec<f64> = k.diagonal().iter().map(|a| 1.0 / a.abs().sqrt()).collect();
        let mut ks = k.clone();
        for i in 0..n {
            for kk in k.rowptr[i] as usize..k.rowptr[i + 1] as usize {
                ks.val[kk] *= d[i] * d[k.col[kk] as usize];
            }
        }
        let b: Vec<f64> = (0..n).map(|i| d[i] * f[i]).collect();
        let dg = ks.diagonal();
        let bn = b.iter().map(|v| v * v).sum::<f64>().sqrt();
        let (mut x, mut r, mut p) = (vec![0.0; n], b.clone(), vec![0.0; n]);
        let mut rho_prev = 0.0;
        let mut it = 0;
        loop {
            if r.iter().map(|v| v * v).sum::<f64>().sqrt() < rtol * bn {
                break;
            }
            let z: Vec<f64> = (0..n).map(|i| r[i] / dg[i]).collect();
            let rho: f64 = (0..n).map(|i| r[i] * z[i]).sum();
            let beta = if it == 0 { 0.0 } else { rho / rho_prev };
            for i in 0..n {
                p[i] = z[i] + beta * p[i];
            }
            let q = ks.mul(&p);
            let alpha = rho / (0..n).map(|i| p[i] * q[i]).sum::<f64>();
            for i in 0..n {
                x[i] += alpha * p[i];
                r[i] -= alpha * q[i];
            }
            rho_prev = rho;
            it += 1;
        }
        ((0..n).map(|i| d[i] * x[i]).collect(), it)
    }

    #[test]
    fn fused_cg_matches_textbook() {
        let k = lap(200);
        let f: Vec<f64> = (0..201).map(|i| ((i * 7) % 11) as f64 - 5.0).collect();
        // A tight tolerance so that the two roundings of CG agree closely.
        let s = CgSettings {
            rtol: 1e-12,
            max_iter: 1000,
        };
        let (u, stats) =
            solve_cg_jacobi(&k, &f, &s, &mut SerialKernels::default(), &mut |_, _| true).unwrap();
        let (ut, it) = textbook(&k, &f, 1e-12);
        assert!(stats.converged);
        assert_eq!(stats.decoupled_rows, 1);
        assert!(
            (stats.iterations as i64 - it as i64).abs() <= 1,
            "{} vs {it}",
            stats.iterations
        );
        let scale = ut.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for i in 0..201 {
            assert!((u[i] - ut[i]).abs() < 1e-9 * scale);
        }
        assert!((u[200] - f[200] / 4.0).abs() < 1e-15);
        assert!(true_relative_residual(&k, &f, &u) < 1e-10);
    }

    #[test]
    fn equilibrated_residual_is_what_the_tolerance_bounds() {
        // the Laplacian with a penalty row, as a Dirichlet node makes it
        // (that the penalty rows dominate the raw residual on a 2D
        // channel is checked by tests/cli.rs)
        let mut k = lap(300);
        let s0 = k.diag_slot(0);
        k.val[s0] += 1e12;
        let mut f = vec![0.0; 301];
        f[299] = 1.0; // a flux at the far end
        for rtol in [1e-6, 1e-8, 1e-10] {
            let s = CgSettings {
                rtol,
                max_iter: 10_000,
            };
            let (u, stats) =
                solve_cg_jacobi(&k, &f, &s, &mut SerialKernels::default(), &mut |_, _| true)
                    .unwrap();
            assert!(stats.converged);
            let r = residuals(&k, &f, &u);
            assert_eq!(r.raw, true_relative_residual(&k, &f, &u));
            // at most a rounding above rtol
            assert!(r.equilibrated < 1.01 * rtol, "rtol {rtol:e}: {r:?}");
        }
        // f = 0: the absolute residuals
        let z = vec![0.0; 301];
        let r = residuals(&k, &z, &vec![1e-3; 301]);
        assert!(r.raw > 0.0 && r.equilibrated > 0.0 && r.raw.is_finite());
    }

    #[test]
    fn cap_is_reported_as_not_converged() {
        let k = lap(300);
        let f = vec![1.0; 301];
        let s = CgSettings {
            rtol: 1e-12,
            max_iter: 5,
        };
        let (_, stats) =
            solve_cg_jacobi(&k, &f, &s, &mut SerialKernels::default(), &mut |_, _| true).unwrap();
        assert!(!stats.converged);
        assert_eq!(stats.iterations, 5);
    }

    #[test]
    fn indefinite_matrix_breaks_down_with_a_message() {
        let mut k = lap(10);
        for v in k.val.iter_mut() {
            if *v > 0.0 {
                *v = 0.5;
            }
        }
        let f = vec![1.0; 11];
        let err = solve_cg_jacobi(
            &k,
            &f,
            &CgSettings::default(),
            &mut SerialKernels::default(),
            &mut |_, _| true,
        )
        .unwrap_err();
        assert!(err.to_string().contains("not positive definite"), "{err}");
    }
}
