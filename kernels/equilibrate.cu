// equilibrate.cu: diagonal equilibration and CG start, one thread per row.
// Mirrors `solver::EquilibratedSystem::new` and the start of `solver::pcg`.

// d[i] = 1 / sqrt(|K_ii|); diag[i] = slot of K_ii. Flags the smallest row
// with a zero diagonal and any non-finite diagonal.
extern "C" __global__ void qf_eq_diag(int n, const u32* __restrict__ rowptr,
                                      const u32* __restrict__ col,
                                      const double* __restrict__ val,
                                      u32* __restrict__ diag,
                                      double* __restrict__ d,
                                      int* __restrict__ flags) {
  QF_FOR(i, n) {
    const u32 slot = qf_find(col, rowptr[i], rowptr[i + 1], (u32)i);
    const double a = slot == 0xffffffffu ? 0.0 : fabs(val[slot]);
    diag[i] = slot;
    if (a == 0.0) atomicMin(&flags[QF_FLAG_ZERO_DIAG], i);
    else if (!isfinite(a)) atomicOr(&flags[QF_FLAG_NONFINITE], 1);
    d[i] = 1.0 / sqrt(a);
  }
}

// K~ = D K D into vs; b = D f; Jacobi inv_diag = 1 / K~_ii; x0 = 0, r0 = b
// on coupled rows (a row with an off-diagonal entry). Decoupled rows keep
// r = 0 and x = 0 for the whole CG (their value is set by qf_unscale), so
// CG on the full vectors does exactly what the serial CG does on the
// coupled rows alone. Writes ||b||^2 to scal[0] and r.r, r.z of iteration
// 0 to the history ring slot 0.
extern "C" __global__ void qf_eq_scale_init(
    int n, const u32* __restrict__ rowptr, const u32* __restrict__ col,
    const double* __restrict__ val, const u32* __restrict__ diag,
    const double* __restrict__ d, const double* __restrict__ f,
    double* __restrict__ vs, double* __restrict__ inv_diag,
    double* __restrict__ x, double* __restrict__ r, double* __restrict__ p,
    double* partials, u32* counter, double* hist, double* scal,
    int* __restrict__ flags) {
  double acc[3] = {0.0, 0.0, 0.0};  // b.b, r.r, r.z
  bool nonfinite = false;
  QF_FOR(i, n) {
    const u32 s = rowptr[i], e = rowptr[i + 1];
    const double di = d[i];
    for (u32 k = s; k < e; ++k) {
      const double v = di * val[k] * d[col[k]];
      vs[k] = v;
      nonfinite |= !isfinite(v);
    }
    const double fi = di * f[i];
    acc[0] += fi * fi;
    const double id = 1.0 / (di * val[diag[i]] * di);
    inv_diag[i] = id;
    x[i] = 0.0;
    p[i] = 0.0;
    if (e > s + 1) {
      r[i] = fi;
      acc[1] += fi * fi;
      acc[2] += fi * fi * id;
    } else {
      r[i] = 0.0;
    }
  }
  if (nonfinite) atomicOr(&flags[QF_FLAG_NONFINITE], 1);
  if (qf_grid_sum<3>(acc, partials, counter) && threadIdx.x == 0) {
    scal[0] = acc[0];
    hist[0] = acc[1];
    hist[1] = acc[2];
  }
}
