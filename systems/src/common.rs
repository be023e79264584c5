//! Pieces every host-side backend shares: the element load, applying a
//! resolved boundary to the system, the solve step (every solver method),
//! and the element outputs of post-processing.

use crate::boundary::{self, BoundaryConfig, Resolved};
use crate::components::failure::check_converged;
use crate::components::*;
use crate::element::{self, Coords, NODES, QP, QuadData};
use crate::exec::Disjoint;
use crate::mesh::Mesh;
use crate::solver::{self, CgKernels, Exec};
use crate::sparse::SymCsr;
use crate::{amg, cholesky};

/// Element load vector for the configured source; `None` when the source
/// is identically zero (the reference case), so assembly can skip it.
#[inline]
pub fn element_load(source: &Source, c: &Coords, qd: &QuadData) -> Option<[f64; NODES]> {
    match source {
        Source::Constant(v) if *v == 0.0 => None,
        Source::Constant(v) => Some(element::load(qd, &[*v; QP])),
        Source::Function(f) => {
            let pts = element::gauss_points_xy(c);
            let vals: [f64; QP] = std::array::from_fn(|q| f(pts[q].0, pts[q].1));
            Some(element::load(qd, &vals))
        }
    }
}

/// Adds the resolved boundary contributions to `k` and `f`: Robin edge
/// matrices and loads, then penalties on Dirichlet and unused nodes.
/// Returns the report.
pub fn apply_boundary(
    mesh: &Mesh,
    cfg: &BoundaryConfig,
    res: &Resolved,
    k: &mut SymCsr,
    f: &mut [f64],
) -> BoundaryReport {
    for e in &res.robin_edges {
        let (he, pe) = boundary::robin_contribution(mesh, cfg, e);
        for a in 0..3 {
            let na = e.nodes[a];
            f[na as usize] += pe[a];
            if cfg.robin[e.part as usize].p != 0.0 {
                for b in 0..3 {
                    let nb = e.nodes[b];
                    if na <= nb {
                        let s = k.slot(na, nb).expect("edge pair in pattern");
                        // off-diagonal pairs of the full matrix appear twice
                        // (a,b) and (b,a); the upper triangle stores one.
                        k.val[s as usize] += he[a][b];
                    }
                }
            }
        }
    }
    for &(i, v) in &res.dirichlet {
        let s = k.diag_slot(i as usize);
        k.val[s] += cfg.penalty;
        f[i as usize] += cfg.penalty * v;
    }
    for &i in &res.unused {
        let s = k.diag_slot(i as usize);
        k.val[s] += cfg.penalty;
    }
    BoundaryReport::of(res)
}

/// The solve step shared by host backends: runs the configured method
/// (the CG-Jacobi reference with the given CG kernels; AMG-CG and
/// Cholesky with `exec`, i.e. on the current rayon pool for
/// [`Exec::Parallel`]), stores the solution and the true residual.
pub fn solve_into(
    sys: &LinearSystem,
    settings: &SolverSettings,
    kernels: &mut dyn CgKernels,
    exec: Exec,
    hook: &mut ProgressHook,
    solution: &mut Solution,
    failure: &mut Failure,
) {
    let _span = tracing::info_span!(
        "linear_solve",
        method = settings.method.name(),
        rows = sys.k.n
    )
    .entered();
    let progress = &mut |it: usize, res: f64| hook.report(it, res);
    let result = match settings.method {
        SolverMethod::CgJacobi => {
            solver::solve_cg_jacobi(&sys.k, &sys.f, &settings.cg, kernels, progress)
        }
        SolverMethod::AmgCg => {
            amg::solve_amg_cg(&sys.k, &sys.f, &settings.cg, &settings.amg, exec, progress)
        }
        SolverMethod::Cholesky => cholesky::solve_cholesky(&sys.k, &sys.f, exec),
    };
    match result {
        Ok((u, stats)) => {
            let r = {
                let _s = tracing::info_span!("true_residual").entered();
                solver::residuals(&sys.k, &sys.f, &u)
            };
            if let Some(e) = check_converged(&stats, settings) {
                fail(failure, e);
            }
            *solution = Solution {
                u,
                stats,
                true_residual: r.raw,
                equilibrated_residual: r.equilibrated,
            };
        }
        Err(e) => fail(failure, e),
    }
}

/// Sizes `out` for `n` elements and returns writers of its three arrays,
/// for post-processing systems that fill them by element index.
pub fn output_places(
    out: &mut ElementOutputs,
    n: usize,
) -> (Disjoint<'_, [f64; 2]>, Disjoint<'_, f64>, Disjoint<'_, f64>) {
    out.vel.resize(n, [0.0; 2]);
    out.abs_vel.resize(n, 0.0);
    out.pressure.resize(n, 0.0);
    (
        Disjoint::slice(&mut out.vel),
        Disjoint::slice(&mut out.abs_vel),
        Disjoint::slice(&mut out.pressure),
    )
}

/// Writes element `e`'s derived fields into the output places.
///
/// # Safety
/// No other thread writes element `e`'s places meanwhile.
#[inline]
pub unsafe fn put_fields(
    places: &(Disjoint<'_, [f64; 2]>, Disjoint<'_, f64>, Disjoint<'_, f64>),
    e: usize,
    f: &element::ElementFields,
) {
    // SAFETY: exclusive per the caller.
    unsafe {
        *places.0.get_mut(e) = f.vel;
        *places.1.get_mut(e) = f.abs_vel;
        *places.2.get_mut(e) = f.pressure;
    }
}
