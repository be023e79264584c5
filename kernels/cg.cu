// cg.cu: one Jacobi-PCG iteration with every scalar on the device, in
// three kernels (direction, SpMV, update) or two (the SpMV forming the
// direction on the fly, then the update). Mirrors `solver::pcg` (SciPy's
// iteration):
//   top of iteration it: stop if sqrt(rr_it) < atol
//   beta = rz_it / rz_{it-1} (0 at a (re)start);  p = r * inv_diag + beta p
//   q = A p;  pq = p.q;  breakdown if !(pq > 0)
//   alpha = rz_it / pq;  x += alpha p;  r -= alpha q
//   rr_{it+1} = r.r;  rz_{it+1} = r.(r * inv_diag)
// The scalars of iteration it live in slot (it % ring) of the history ring
// `hist` (QF_HIST doubles: rr, rz, pq). The loop's state is on the device
// too, so that the kernels take the same arguments at every iteration and
// a chunk of iterations can be captured once as a CUDA graph and replayed
// (`gpu::cg`): flags[QF_FLAG_ITER] is the iteration (the update kernel
// advances it), flags[QF_FLAG_RESTART] the iteration of the last
// (re)start, ctl[QF_CTL_ATOL] the threshold. Once the stop test holds (or
// CG breaks down) flags[QF_FLAG_STOP] is set and every later kernel returns
// at once, so the host may launch a whole chunk of iterations blindly and
// still read back the exact iteration count. The host's residual
// replacement (`qf_eq_residual`, `qf_cg_restart` in residual.cu) clears it.

__device__ __forceinline__ int qf_cg_iter(const int* flags) {
  return *(volatile const int*)&flags[QF_FLAG_ITER];
}

// The top of iteration it: true when the loop is over (stopped before, or
// the stop test holds now: then one thread sets the flag); else beta.
__device__ __forceinline__ bool qf_cg_top(int it, int ring, const double* hist,
                                          int* flags, const double* ctl,
                                          double* beta) {
  if (*(volatile int*)&flags[QF_FLAG_STOP]) return true;
  const double* h = hist + QF_HIST * (it % ring);
  if (sqrt(h[0]) < ctl[QF_CTL_ATOL]) {
    if (blockIdx.x == 0 && threadIdx.x == 0) flags[QF_FLAG_STOP] = 1;
    return true;
  }
  *beta = it == flags[QF_FLAG_RESTART] ? 0.0 : h[1] / hist[QF_HIST * ((it - 1) % ring) + 1];
  return false;
}

// Stop test and new search direction (the three-kernel iteration). One
// thread per row.
extern "C" __global__ void qf_cg_direction(int n, int ring,
                                           const double* __restrict__ r,
                                           const double* __restrict__ inv_diag,
                                           double* __restrict__ p,
                                           const double* hist, int* flags,
                                           const double* ctl) {
  double beta;
  if (qf_cg_top(qf_cg_iter(flags), ring, hist, flags, ctl, &beta)) return;
  QF_FOR(i, n) p[i] = qf_cg_dir(r[i], inv_diag[i], beta, p[i]);
}

// q = A p over the full CSR, G threads per row (G = 2..32, a power of
// two; rows of ~9-21 entries want G = 4 or 8), fused with pq = p.q.
// Columns absolute (u32) or 16-bit offsets from the row (C = short).
template <int G, typename C>
__device__ __forceinline__ void qf_cg_spmv(int n, int ring,
                                           const u32* __restrict__ rowptr,
                                           const C* __restrict__ col,
                                           const double* __restrict__ val,
                                           const double* __restrict__ p,
                                           double* __restrict__ q,
                                           double* partials, u32* counter,
                                           double* hist, const int* flags) {
  if (*(volatile const int*)&flags[QF_FLAG_STOP]) return;
  const int it = qf_cg_iter(flags);
  constexpr int PER_WARP = 32 / G;
  const int lane = threadIdx.x % G;
  const int gw = (threadIdx.x & 31) / G;
  const int warp = (blockIdx.x * blockDim.x + threadIdx.x) >> 5;
  const int nwarps = (gridDim.x * blockDim.x) >> 5;
  double acc[1] = {0.0};
  for (int base = warp * PER_WARP; base < n; base += nwarps * PER_WARP) {
    const int row = base + gw;
    double sum = 0.0;
    if (row < n) {
      const u32 s = __ldg(&rowptr[row]), e = __ldg(&rowptr[row + 1]);
      for (u32 k = s + lane; k < e; k += G) sum += __ldg(&val[k]) * p[qf_col(col, k, row)];
    }
#pragma unroll
    for (int off = G / 2; off > 0; off >>= 1) sum += __shfl_down_sync(0xffffffffu, sum, off, G);
    if (lane == 0 && row < n) {
      q[row] = sum;
      acc[0] += p[row] * sum;
    }
  }
  if (qf_grid_sum<1>(acc, partials, counter) && threadIdx.x == 0)
    hist[QF_HIST * (it % ring) + 2] = acc[0];
}

// The two-kernel iteration's first kernel: the stop test, then q = A p
// with the new direction p = z + beta p_old formed on the fly for every
// column (qf_cg_dir, the same rounding as qf_cg_direction: the same p
// bit for bit), written by each row's group into the other buffer of the
// pair (pa, pb) (p_old in pa at even iterations, pb at odd ones: nothing
// is read where it is written), fused with pq = p.q. One pass over r,
// inv_diag and p_old instead of a direction kernel's read and write of
// them, and one grid-wide step less per iteration.
template <int G, typename C>
__device__ __forceinline__ void qf_cg_spmvd(
    int n, int ring, const u32* __restrict__ rowptr, const C* __restrict__ col,
    const double* __restrict__ val, const double* __restrict__ r,
    const double* __restrict__ inv_diag, double* pa, double* pb,
    double* __restrict__ q, double* partials, u32* counter, double* hist,
    int* flags, const double* ctl) {
  const int it = qf_cg_iter(flags);
  double beta;
  if (qf_cg_top(it, ring, hist, flags, ctl, &beta)) return;
  const double* pin = (it & 1) ? pb : pa;
  double* pout = (it & 1) ? pa : pb;
  constexpr int PER_WARP = 32 / G;
  const int lane = threadIdx.x % G;
  const int gw = (threadIdx.x & 31) / G;
  const int warp = (blockIdx.x * blockDim.x + threadIdx.x) >> 5;
  const int nwarps = (gridDim.x * blockDim.x) >> 5;
  double acc[1] = {0.0};
  for (int base = warp * PER_WARP; base < n; base += nwarps * PER_WARP) {
    const int row = base + gw;
    double sum = 0.0;
    if (row < n) {
      const u32 s = __ldg(&rowptr[row]), e = __ldg(&rowptr[row + 1]);
      for (u32 k = s + lane; k < e; k += G) {
        const int c = qf_col(col, k, row);
        sum += __ldg(&val[k]) * qf_cg_dir(__ldg(&r[c]), __ldg(&inv_diag[c]), beta, __ldg(&pin[c]));
      }
    }
#pragma unroll
    for (int off = G / 2; off > 0; off >>= 1) sum += __shfl_down_sync(0xffffffffu, sum, off, G);
    if (lane == 0 && row < n) {
      const double pr = qf_cg_dir(r[row], inv_diag[row], beta, pin[row]);
      pout[row] = pr;
      q[row] = sum;
      acc[0] += pr * sum;
    }
  }
  if (qf_grid_sum<1>(acc, partials, counter) && threadIdx.x == 0)
    hist[QF_HIST * (it % ring) + 2] = acc[0];
}

#define QF_SPMV(G)                                                              \
  extern "C" __global__ void qf_cg_spmv_g##G(                                   \
      int n, int ring, const u32* __restrict__ rowptr,                          \
      const u32* __restrict__ col, const double* __restrict__ val,              \
      const double* __restrict__ p, double* __restrict__ q, double* partials,   \
      u32* counter, double* hist, const int* flags) {                           \
    qf_cg_spmv<G, u32>(n, ring, rowptr, col, val, p, q, partials, counter,      \
                       hist, flags);                                            \
  }                                                                             \
  extern "C" __global__ void qf_cg_spmv16_g##G(                                 \
      int n, int ring, const u32* __restrict__ rowptr,                          \
      const short* __restrict__ col, const double* __restrict__ val,            \
      const double* __restrict__ p, double* __restrict__ q, double* partials,   \
      u32* counter, double* hist, const int* flags) {                           \
    qf_cg_spmv<G, short>(n, ring, rowptr, col, val, p, q, partials, counter,    \
                         hist, flags);                                          \
  }                                                                             \
  extern "C" __global__ void qf_cg_spmvd_g##G(                                  \
      int n, int ring, const u32* __restrict__ rowptr,                          \
      const u32* __restrict__ col, const double* __restrict__ val,              \
      const double* __restrict__ r, const double* __restrict__ inv_diag,        \
      double* pa, double* pb, double* __restrict__ q, double* partials,          \
      u32* counter, double* hist, int* flags, const double* ctl) {              \
    qf_cg_spmvd<G, u32>(n, ring, rowptr, col, val, r, inv_diag, pa, pb, q,      \
                        partials, counter, hist, flags, ctl);                   \
  }                                                                             \
  extern "C" __global__ void qf_cg_spmvd16_g##G(                                \
      int n, int ring, const u32* __restrict__ rowptr,                          \
      const short* __restrict__ col, const double* __restrict__ val,            \
      const double* __restrict__ r, const double* __restrict__ inv_diag,        \
      double* pa, double* pb, double* __restrict__ q, double* partials,          \
      u32* counter, double* hist, int* flags, const double* ctl) {              \
    qf_cg_spmvd<G, short>(n, ring, rowptr, col, val, r, inv_diag, pa, pb, q,    \
                          partials, counter, hist, flags, ctl);                 \
  }
QF_SPMV(2)
QF_SPMV(4)
QF_SPMV(8)
QF_SPMV(16)
QF_SPMV(32)

// 16-bit column offsets col[k] - row of every entry, where they fit;
// bw[0] gets the largest |col[k] - row| (the host then picks the kernel).
extern "C" __global__ void qf_cg_delta_cols(int n, const u32* __restrict__ rowptr,
                                            const u32* __restrict__ col,
                                            short* __restrict__ dcol, u32* bw) {
  u32 m = 0;
  QF_FOR(row, n) {
    for (u32 k = rowptr[row]; k < rowptr[row + 1]; ++k) {
      const int d = (int)col[k] - row;
      const u32 a = (u32)(d < 0 ? -d : d);
      m = a > m ? a : m;
      dcol[k] = (short)(a <= 32767u ? d : 0);
    }
  }
  if (m > 0) atomicMax(bw, m);
}

// Step, residual update and the two norms of the next iteration; the
// block that finishes the sums stores them and advances the iteration.
// The direction of iteration it is in pa at odd iterations and pb at even
// ones (the two-kernel iteration's pair; the three-kernel iteration
// passes its one buffer twice). One thread per row.
extern "C" __global__ void qf_cg_update(int n, int ring, const double* pa,
                                        const double* pb,
                                        const double* __restrict__ q,
                                        const double* __restrict__ inv_diag,
                                        double* __restrict__ x,
                                        double* __restrict__ r,
                                        double* partials, u32* counter,
                                        double* hist, int* flags) {
  if (*(volatile int*)&flags[QF_FLAG_STOP]) return;
  const int it = qf_cg_iter(flags);
  const double* h = hist + QF_HIST * (it % ring);
  const double pq = h[2];
  if (!(pq > 0.0)) {
    if (blockIdx.x == 0 && threadIdx.x == 0) {
      flags[QF_FLAG_STOP] = 1;
      flags[QF_FLAG_BREAKDOWN] = it + 1;
    }
    return;
  }
  const double* p = (it & 1) ? pa : pb;
  const double alpha = h[1] / pq;
  double acc[2];
  if (qf_cg_step(n, alpha, p, q, inv_diag, x, r, partials, counter, acc) &&
      threadIdx.x == 0) {
    double* h1 = hist + QF_HIST * ((it + 1) % ring);
    h1[0] = acc[0];
    h1[1] = acc[1];
    flags[QF_FLAG_ITER] = it + 1;
  }
}
