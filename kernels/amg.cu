// amg.cu: AMG-preconditioned CG on the device. Mirrors `amg::Hierarchy`'s
// V-cycle (`vcycle`, `sweep`) and `amg::amg_pcg`; the hierarchy itself is
// built on the host and uploaded (`gpu::amg`). The level operators and
// transfers are read in single precision (`float` values, `double`
// vectors and sums), like the host cycle; CG's own product and the
// residual checks use the double-precision finest operator.
//
// The host drives the cycle as a program of operations
// (`gpu::amg::cycle_program`): every kernel below is one operation on one
// level. Row kernels with a product take `G` threads per row (a power of
// two, 2..32) and loop over the rows warp by warp so that the shuffles of
// a group always see the whole warp.

// Sum over row `row` of val[k] * x[col[k]] by the G lanes of a group;
// valid in lane 0 (zero for rows past the end).
template <int G, typename T>
__device__ __forceinline__ double qf_group_row(const u32* __restrict__ rowptr,
                                               const u32* __restrict__ col,
                                               const T* __restrict__ val,
                                               const double* __restrict__ x,
                                               int row, int n, int lane) {
  double sum = 0.0;
  if (row < n) {
    const u32 s = __ldg(&rowptr[row]), e = __ldg(&rowptr[row + 1]);
    for (u32 k = s + lane; k < e; k += G) sum += (double)__ldg(&val[k]) * x[__ldg(&col[k])];
  }
#pragma unroll
  for (int off = G / 2; off > 0; off >>= 1) sum += __shfl_down_sync(0xffffffffu, sum, off, G);
  return sum;
}

// The rows of the grid, a warp's worth of groups at a time: `row` is this
// group's row (possibly past the end), `lane` its lane in the group.
#define QF_GROUP_ROWS(G, row, lane, ...)                                       \
  {                                                                            \
    constexpr int PER_WARP = 32 / (G);                                         \
    const int lane = threadIdx.x % (G);                                        \
    const int gw = (threadIdx.x & 31) / (G);                                   \
    const int warp = (blockIdx.x * blockDim.x + threadIdx.x) >> 5;             \
    const int nwarps = (gridDim.x * blockDim.x) >> 5;                          \
    for (int base = warp * PER_WARP; base < n; base += nwarps * PER_WARP) {    \
      const int row = base + gw;                                               \
      __VA_ARGS__                                                              \
    }                                                                          \
  }

// --- smoothing (`amg::sweep`) -------------------------------------------

// Start::Zero: x = 0, r = b, d = s0 D^-1 b.
extern "C" __global__ void qf_amg_zero_start(int n, const double* __restrict__ b,
                                             const double* __restrict__ dinv,
                                             double s0, double* __restrict__ x,
                                             double* __restrict__ r,
                                             double* __restrict__ d) {
  QF_FOR(i, n) {
    const double bi = b[i];
    x[i] = 0.0;
    r[i] = bi;
    d[i] = s0 * dinv[i] * bi;
  }
}

// Start::Residual: d = s0 D^-1 r.
extern "C" __global__ void qf_amg_residual_start(int n, const double* __restrict__ r,
                                                 const double* __restrict__ dinv,
                                                 double s0, double* __restrict__ d) {
  QF_FOR(i, n) d[i] = s0 * dinv[i] * r[i];
}

// No pre-smoothing: x = 0, r = b.
extern "C" __global__ void qf_amg_zero_copy(int n, const double* __restrict__ b,
                                            double* __restrict__ x,
                                            double* __restrict__ r) {
  QF_FOR(i, n) {
    x[i] = 0.0;
    r[i] = b[i];
  }
}

// Last step without keeping r: x += d.
extern "C" __global__ void qf_amg_add(int n, const double* __restrict__ d,
                                      double* __restrict__ x) {
  QF_FOR(i, n) x[i] += d[i];
}

// Start::Compute: r = b - A x, d = s0 D^-1 r.
template <int G>
__device__ __forceinline__ void qf_amg_compute_start(
    int n, const u32* __restrict__ rowptr, const u32* __restrict__ col,
    const float* __restrict__ val, const double* __restrict__ b,
    const double* __restrict__ x, const double* __restrict__ dinv, double s0,
    double* __restrict__ r, double* __restrict__ d) {
  QF_GROUP_ROWS(G, row, lane, {
    const double ax = qf_group_row<G>(rowptr, col, val, x, row, n, lane);
    if (lane == 0 && row < n) {
      const double ri = b[row] - ax;
      r[row] = ri;
      d[row] = s0 * dinv[row] * ri;
    }
  })
}

// One Chebyshev step: q = A d, x += d, r -= q, d2 = c1 d + c2 D^-1 r.
template <int G>
__device__ __forceinline__ void qf_amg_step(
    int n, const u32* __restrict__ rowptr, const u32* __restrict__ col,
    const float* __restrict__ val, const double* __restrict__ d,
    const double* __restrict__ dinv, double c1, double c2,
    double* __restrict__ x, double* __restrict__ r, double* __restrict__ d2) {
  QF_GROUP_ROWS(G, row, lane, {
    const double q = qf_group_row<G>(rowptr, col, val, d, row, n, lane);
    if (lane == 0 && row < n) {
      const double di = d[row];
      x[row] += di;
      const double ri = r[row] - q;
      r[row] = ri;
      d2[row] = c1 * di + c2 * dinv[row] * ri;
    }
  })
}

// Last step keeping r: x += d, r -= A d.
template <int G>
__device__ __forceinline__ void qf_amg_last(int n, const u32* __restrict__ rowptr,
                                            const u32* __restrict__ col,
                                            const float* __restrict__ val,
                                            const double* __restrict__ d,
                                            double* __restrict__ x,
                                            double* __restrict__ r) {
  QF_GROUP_ROWS(G, row, lane, {
    const double q = qf_group_row<G>(rowptr, col, val, d, row, n, lane);
    if (lane == 0 && row < n) {
      x[row] += d[row];
      r[row] -= q;
    }
  })
}

// --- transfers ----------------------------------------------------------

// y = M x (add = 0) or y += M x (add = 1), M in single precision:
// restriction (M = P^T) and prolongation (M = P).
template <int G>
__device__ __forceinline__ void qf_amg_spmv(int n, const u32* __restrict__ rowptr,
                                            const u32* __restrict__ col,
                                            const float* __restrict__ val,
                                            const double* __restrict__ x,
                                            double* __restrict__ y, int add) {
  QF_GROUP_ROWS(G, row, lane, {
    const double v = qf_group_row<G>(rowptr, col, val, x, row, n, lane);
    if (lane == 0 && row < n) y[row] = add ? y[row] + v : v;
  })
}

// The coarsest level: x = A_c^-1 b with the dense inverse (row-major),
// one warp per row.
extern "C" __global__ void qf_amg_dense(int n, const double* __restrict__ inv,
                                        const double* __restrict__ b,
                                        double* __restrict__ x) {
  const int lane = threadIdx.x & 31;
  const int warp = (blockIdx.x * blockDim.x + threadIdx.x) >> 5;
  const int nwarps = (gridDim.x * blockDim.x) >> 5;
  for (int i = warp; i < n; i += nwarps) {
    double s = 0.0;
    const double* row = inv + (size_t)i * n;
    for (int j = lane; j < n; j += 32) s += row[j] * b[j];
    s = qf_warp_sum(s);
    if (lane == 0) x[i] = s;
  }
}

// --- CG (`amg::amg_pcg`) ------------------------------------------------

// q = A p (double precision), out[0] = p.q.
template <int G>
__device__ __forceinline__ void qf_amg_pq(int n, const u32* __restrict__ rowptr,
                                          const u32* __restrict__ col,
                                          const double* __restrict__ val,
                                          const double* __restrict__ p,
                                          double* __restrict__ q, double* partials,
                                          u32* counter, double* out) {
  double acc[1] = {0.0};
  QF_GROUP_ROWS(G, row, lane, {
    const double v = qf_group_row<G>(rowptr, col, val, p, row, n, lane);
    if (lane == 0 && row < n) {
      q[row] = v;
      acc[0] += v * p[row];
    }
  })
  if (qf_grid_sum<1>(acc, partials, counter) && threadIdx.x == 0) out[0] = acc[0];
}

// r = b - A x (double precision, in double-double: qf_dd, the host's
// `residual_exact_rows`), out[0] = r.r; one thread per row.
extern "C" __global__ void qf_amg_resid(int n, const u32* __restrict__ rowptr,
                                        const u32* __restrict__ col,
                                        const double* __restrict__ val,
                                        const double* __restrict__ b,
                                        const double* __restrict__ x,
                                        double* __restrict__ r, double* partials,
                                        u32* counter, double* out) {
  double acc[1] = {0.0};
  QF_FOR(row, n) {
    qf_dd res = {b[row], 0.0};
    for (u32 k = rowptr[row]; k < rowptr[row + 1]; ++k) qf_dd_sub_prod(res, val[k], x[col[k]]);
    const double v = qf_dd_value(res);
    r[row] = v;
    acc[0] += v * v;
  }
  if (qf_grid_sum<1>(acc, partials, counter) && threadIdx.x == 0) out[0] = acc[0];
}

// x += alpha p, r -= alpha q; out[0] = r.r.
extern "C" __global__ void qf_amg_update(int n, double alpha, const double* __restrict__ p,
                                         const double* __restrict__ q,
                                         double* __restrict__ x, double* __restrict__ r,
                                         double* partials, u32* counter, double* out) {
  double acc[1] = {0.0};
  QF_FOR(i, n) {
    x[i] += alpha * p[i];
    const double v = r[i] - alpha * q[i];
    r[i] = v;
    acc[0] += v * v;
  }
  if (qf_grid_sum<1>(acc, partials, counter) && threadIdx.x == 0) out[0] = acc[0];
}

// out[0] = a.b.
extern "C" __global__ void qf_amg_dot(int n, const double* __restrict__ a,
                                      const double* __restrict__ b, double* partials,
                                      u32* counter, double* out) {
  double acc[1] = {0.0};
  QF_FOR(i, n) acc[0] += a[i] * b[i];
  if (qf_grid_sum<1>(acc, partials, counter) && threadIdx.x == 0) out[0] = acc[0];
}

// p = z + beta p.
extern "C" __global__ void qf_amg_direction(int n, double beta, const double* __restrict__ z,
                                            double* __restrict__ p) {
  QF_FOR(i, n) p[i] = z[i] + beta * p[i];
}

// u[rows[k]] = dk[k] x[k] (`AmgSystem::unscale`; u holds the decoupled
// rows' values already).
extern "C" __global__ void qf_amg_unscale(int m, const u32* __restrict__ rows,
                                          const double* __restrict__ dk,
                                          const double* __restrict__ x,
                                          double* __restrict__ u) {
  QF_FOR(k, m) u[rows[k]] = dk[k] * x[k];
}

#define QF_AMG_GROUP(G)                                                          \
  extern "C" __global__ void qf_amg_compute_start_g##G(                          \
      int n, const u32* rowptr, const u32* col, const float* val,                \
      const double* b, const double* x, const double* dinv, double s0,           \
      double* r, double* d) {                                                    \
    qf_amg_compute_start<G>(n, rowptr, col, val, b, x, dinv, s0, r, d);          \
  }                                                                              \
  extern "C" __global__ void qf_amg_step_g##G(                                   \
      int n, const u32* rowptr, const u32* col, const float* val,                \
      const double* d, const double* dinv, double c1, double c2, double* x,      \
      double* r, double* d2) {                                                   \
    qf_amg_step<G>(n, rowptr, col, val, d, dinv, c1, c2, x, r, d2);              \
  }                                                                              \
  extern "C" __global__ void qf_amg_last_g##G(int n, const u32* rowptr,          \
                                              const u32* col, const float* val,  \
                                              const double* d, double* x,        \
                                              double* r) {                       \
    qf_amg_last<G>(n, rowptr, col, val, d, x, r);                                \
  }                                                                              \
  extern "C" __global__ void qf_amg_spmv_g##G(int n, const u32* rowptr,          \
                                              const u32* col, const float* val,  \
                                              const double* x, double* y,        \
                                              int add) {                         \
    qf_amg_spmv<G>(n, rowptr, col, val, x, y, add);                              \
  }                                                                              \
  extern "C" __global__ void qf_amg_pq_g##G(                                     \
      int n, const u32* rowptr, const u32* col, const double* val,               \
      const double* p, double* q, double* partials, u32* counter, double* out) { \
    qf_amg_pq<G>(n, rowptr, col, val, p, q, partials, counter, out);             \
  }
QF_AMG_GROUP(2)
QF_AMG_GROUP(4)
QF_AMG_GROUP(8)
QF_AMG_GROUP(16)
QF_AMG_GROUP(32)
