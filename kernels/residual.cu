// residual.cu: back to the unknowns of K u = f, and the true residual.
// Mirrors `EquilibratedSystem::unscale` and `solver::residuals`.

// u = D x~ on coupled rows; u = f / K_ii on decoupled rows (solved
// directly, as the serial solver does). One thread per row.
extern "C" __global__ void qf_unscale(int n, const u32* __restrict__ rowptr,
                                      const u32* __restrict__ diag,
                                      const double* __restrict__ val,
                                      const double* __restrict__ d,
                                      const double* __restrict__ x,
                                      const double* __restrict__ f,
                                      double* __restrict__ u) {
  QF_FOR(i, n) {
    u[i] = rowptr[i + 1] > rowptr[i] + 1 ? d[i] * x[i] : f[i] / val[diag[i]];
  }
}

// out[0] = ||f - K u||^2, out[1] = ||f||^2 with the unequilibrated K, and
// out[2] = ||D (f - K u)||^2, out[3] = ||D f||^2 with D = |diag K|^-1/2
// (rows with a zero diagonal unweighted): the residuals a run reports and
// the convergence rule judges (`solver::residuals`), f - K u in
// double-double (qf_dd) row by row, one thread per row (a grid-stride
// loop with a grid sum).
extern "C" __global__ void qf_residual(int n, const u32* __restrict__ rowptr,
                                       const u32* __restrict__ col,
                                       const double* __restrict__ val,
                                       const double* __restrict__ u,
                                       const double* __restrict__ f,
                                       double* partials, u32* counter, double* out) {
  double acc[4] = {0.0, 0.0, 0.0, 0.0};
  QF_FOR(row, n) {
    qf_dd res = {f[row], 0.0};
    double dg = 0.0;
    for (u32 k = rowptr[row]; k < rowptr[row + 1]; ++k) {
      const u32 c = col[k];
      const double v = val[k];
      qf_dd_sub_prod(res, v, u[c]);
      if (c == (u32)row) dg = v;
    }
    const double r = qf_dd_value(res);
    const double w = dg != 0.0 ? 1.0 / fabs(dg) : 1.0;
    acc[0] += r * r;
    acc[1] += f[row] * f[row];
    acc[2] += r * r * w;
    acc[3] += f[row] * f[row] * w;
  }
  if (qf_grid_sum<4>(acc, partials, counter) && threadIdx.x == 0) {
    out[0] = acc[0];
    out[1] = acc[1];
    out[2] = acc[2];
    out[3] = acc[3];
  }
}

// The residual replacement of the convergence rule (`solver::Convergence`)
// in the equilibrated system of the Jacobi-CG loops: r = b - A x on the
// coupled rows (b = d f, A = vs, the values qf_eq_scale_init wrote) in
// double-double (qf_dd, the host's `residual_exact`), r = 0 on decoupled
// rows (as qf_eq_scale_init started them), one thread per row; slot `it`
// of the history ring and out[0..2] get r.r and r.(inv_diag r), the norms
// the next iteration starts from. x is the iterate (the fold of qf_cg_fold).
extern "C" __global__ void qf_eq_residual(
    int n, int it, int ring, const u32* __restrict__ rowptr,
    const u32* __restrict__ col, const double* __restrict__ vs,
    const double* __restrict__ d, const double* __restrict__ f,
    const double* __restrict__ inv_diag, const double* __restrict__ x,
    double* __restrict__ r, double* partials, u32* counter, double* hist,
    double* out) {
  double acc[2] = {0.0, 0.0};
  QF_FOR(row, n) {
    const u32 s = rowptr[row], e = rowptr[row + 1];
    double v = 0.0;
    if (e > s + 1) {
      qf_dd res = {d[row] * f[row], 0.0};
      for (u32 k = s; k < e; ++k) qf_dd_sub_prod(res, vs[k], x[col[k]]);
      v = qf_dd_value(res);
    }
    r[row] = v;
    acc[0] += v * v;
    acc[1] += v * v * inv_diag[row];
  }
  if (qf_grid_sum<2>(acc, partials, counter) && threadIdx.x == 0) {
    double* h = hist + QF_HIST * (it % ring);
    h[0] = acc[0];
    h[1] = acc[1];
    out[0] = acc[0];
    out[1] = acc[1];
  }
}

// The iterate is base + x (`solver::pcg`): CG updates the correction x
// from zero after every check, and a check folds it into base with one
// rounding (base += x, x = 0), so that the corrections after a residual
// replacement are not added to the large base step by step.
extern "C" __global__ void qf_cg_fold(int n, double* __restrict__ x, double* __restrict__ base) {
  QF_FOR(i, n) {
    base[i] += x[i];
    x[i] = 0.0;
  }
}

// The CG loop's device state for a (re)start at iteration it with the
// threshold atol: the loop goes on (stop and breakdown cleared), the
// iteration is it, the direction restarts there, ctl holds atol. One
// thread.
extern "C" __global__ void qf_cg_restart(int it, double atol, int* flags, double* ctl) {
  if (blockIdx.x == 0 && threadIdx.x == 0) {
    flags[QF_FLAG_STOP] = 0;
    flags[QF_FLAG_BREAKDOWN] = 0;
    flags[QF_FLAG_ITER] = it;
    flags[QF_FLAG_RESTART] = it;
    ctl[QF_CTL_ATOL] = atol;
  }
}
