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
// (rows with a zero diagonal unweighted), G threads per row. The diagonal
// is found in the row (full CSR) by the lane that holds it.
template <int G>
__device__ __forceinline__ void qf_residual(int n, const u32* __restrict__ rowptr,
                                            const u32* __restrict__ col,
                                            const double* __restrict__ val,
                                            const double* __restrict__ u,
                                            const double* __restrict__ f,
                                            double* partials, u32* counter,
                                            double* out) {
  constexpr int PER_WARP = 32 / G;
  const int lane = threadIdx.x % G;
  const int gw = (threadIdx.x & 31) / G;
  const int warp = (blockIdx.x * blockDim.x + threadIdx.x) >> 5;
  const int nwarps = (gridDim.x * blockDim.x) >> 5;
  double acc[4] = {0.0, 0.0, 0.0, 0.0};
  for (int base = warp * PER_WARP; base < n; base += nwarps * PER_WARP) {
    const int row = base + gw;
    double sum = 0.0, dg = 0.0;
    if (row < n) {
      const u32 s = rowptr[row], e = rowptr[row + 1];
      for (u32 k = s + lane; k < e; k += G) {
        const u32 c = col[k];
        const double v = val[k];
        sum += v * u[c];
        dg += c == (u32)row ? v : 0.0;
      }
    }
#pragma unroll
    for (int off = G / 2; off > 0; off >>= 1) {
      sum += __shfl_down_sync(0xffffffffu, sum, off, G);
      dg += __shfl_down_sync(0xffffffffu, dg, off, G);
    }
    if (lane == 0 && row < n) {
      const double res = f[row] - sum;
      const double w = dg != 0.0 ? 1.0 / fabs(dg) : 1.0;
      acc[0] += res * res;
      acc[1] += f[row] * f[row];
      acc[2] += res * res * w;
      acc[3] += f[row] * f[row] * w;
    }
  }
  if (qf_grid_sum<4>(acc, partials, counter) && threadIdx.x == 0) {
    out[0] = acc[0];
    out[1] = acc[1];
    out[2] = acc[2];
    out[3] = acc[3];
  }
}

#define QF_RESIDUAL(G)                                                         \
  extern "C" __global__ void qf_residual_g##G(                                 \
      int n, const u32* __restrict__ rowptr, const u32* __restrict__ col,      \
      const double* __restrict__ val, const double* __restrict__ u,            \
      const double* __restrict__ f, double* partials, u32* counter,            \
      double* out) {                                                           \
    qf_residual<G>(n, rowptr, col, val, u, f, partials, counter, out);         \
  }
QF_RESIDUAL(2)
QF_RESIDUAL(4)
QF_RESIDUAL(8)
QF_RESIDUAL(16)
QF_RESIDUAL(32)

// The residual replacement of the convergence rule (`solver::Convergence`)
// in the equilibrated system of the Jacobi-CG loops: r = b - A x on the
// coupled rows (b = d f, A = vs, the values qf_eq_scale_init wrote), r = 0
// on decoupled rows (as qf_eq_scale_init started them), G threads per row;
// slot `it` of the history ring and out[0..2] get r.r and r.(inv_diag r),
// the norms the next iteration starts from.
template <int G>
__device__ __forceinline__ void qf_eq_residual(
    int n, int it, int ring, const u32* __restrict__ rowptr,
    const u32* __restrict__ col, const double* __restrict__ vs,
    const double* __restrict__ d, const double* __restrict__ f,
    const double* __restrict__ inv_diag, const double* __restrict__ x,
    double* __restrict__ r, double* partials, u32* counter, double* hist,
    double* out) {
  constexpr int PER_WARP = 32 / G;
  const int lane = threadIdx.x % G;
  const int gw = (threadIdx.x & 31) / G;
  const int warp = (blockIdx.x * blockDim.x + threadIdx.x) >> 5;
  const int nwarps = (gridDim.x * blockDim.x) >> 5;
  double acc[2] = {0.0, 0.0};
  for (int base = warp * PER_WARP; base < n; base += nwarps * PER_WARP) {
    const int row = base + gw;
    double sum = 0.0;
    u32 s = 0, e = 0;
    if (row < n) {
      s = rowptr[row];
      e = rowptr[row + 1];
      for (u32 k = s + lane; k < e; k += G) sum += vs[k] * x[col[k]];
    }
#pragma unroll
    for (int off = G / 2; off > 0; off >>= 1) sum += __shfl_down_sync(0xffffffffu, sum, off, G);
    if (lane == 0 && row < n) {
      const double v = e > s + 1 ? d[row] * f[row] - sum : 0.0;
      r[row] = v;
      acc[0] += v * v;
      acc[1] += v * v * inv_diag[row];
    }
  }
  if (qf_grid_sum<2>(acc, partials, counter) && threadIdx.x == 0) {
    double* h = hist + QF_HIST * (it % ring);
    h[0] = acc[0];
    h[1] = acc[1];
    out[0] = acc[0];
    out[1] = acc[1];
  }
}

#define QF_EQ_RESIDUAL(G)                                                      \
  extern "C" __global__ void qf_eq_residual_g##G(                              \
      int n, int it, int ring, const u32* __restrict__ rowptr,                 \
      const u32* __restrict__ col, const double* __restrict__ vs,              \
      const double* __restrict__ d, const double* __restrict__ f,              \
      const double* __restrict__ inv_diag, const double* __restrict__ x,       \
      double* __restrict__ r, double* partials, u32* counter, double* hist,    \
      double* out) {                                                           \
    qf_eq_residual<G>(n, it, ring, rowptr, col, vs, d, f, inv_diag, x, r,      \
                      partials, counter, hist, out);                           \
  }
QF_EQ_RESIDUAL(2)
QF_EQ_RESIDUAL(4)
QF_EQ_RESIDUAL(8)
QF_EQ_RESIDUAL(16)
QF_EQ_RESIDUAL(32)

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
