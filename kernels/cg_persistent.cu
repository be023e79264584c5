// cg_persistent.cu: the Jacobi-PCG iteration of cg.cu as ONE persistent
// kernel that runs a whole chunk of iterations, its blocks meeting at grid
// barriers instead of kernel boundaries. Same arithmetic (qf_cg_dir), same
// history ring, same stop flag, restart iteration and threshold
// (flags[QF_FLAG_RESTART], ctl[QF_CTL_ATOL]) as the kernels of cg.cu (the host loop
// `gpu::loop_ctl::run_chunked` drives both), so the iteration count and
// the stopping rule are unchanged; what goes is the launch gap between
// kernels, which dominates short iterations (y_tube_195k: 3 launches of a
// few microseconds of work each).
//
// Launched cooperatively (cuLaunchCooperativeKernel) with at most as many
// blocks as fit on the device at once, so the barrier cannot deadlock.
// Per iteration it:
//   stop test on rr_it (every block holds the same totals);
//   p = r * inv_diag + beta p  (thread per row)         -- barrier
//   q = A p, block partial of p.q (G lanes per row)      -- barrier + sum
//   breakdown test; x += alpha p, r -= alpha q, partials of r.r, r.z
//                                                        -- barrier + sum
// Data another block wrote inside the kernel is read through L2
// (__ldcg): L1 is not coherent across blocks.

// Grid barrier with a sum: every block stores its NV partial sums, then
// arrives (bar[0] counts arrivals, bar[1] is the generation, both zero
// before the first launch); the LAST block to arrive adds the partials in
// block order (fixed: deterministic), stores the NV totals in tot[] and
// releases the others by bumping the generation. Every thread returns
// with the totals in v. One block reads the partials instead of all of
// them (a barrier and a reduction for the price of one), and the
// arrivals are one atomic per block.
template <int NV>
__device__ __forceinline__ void qf_barrier_sum(u32* bar, double* partials,
                                               double* tot, double (&v)[NV]) {
  __shared__ bool last;
  __shared__ double bc[NV];
  qf_block_sum<NV>(v);
  if (threadIdx.x == 0) {
#pragma unroll
    for (int k = 0; k < NV; ++k) partials[k * gridDim.x + blockIdx.x] = v[k];
    volatile u32* gen = bar + 1;
    const u32 g = *gen;
    __threadfence();
    const u32 arrived = atomicAdd(&bar[0], 1u);
    last = arrived == gridDim.x - 1;
    if (!last) {
      while (*gen == g) __nanosleep(32);
      __threadfence();
    }
  }
  __syncthreads();
  if (last) {
    __threadfence();
#pragma unroll
    for (int k = 0; k < NV; ++k) {
      double s = 0.0;
      for (u32 b = threadIdx.x; b < gridDim.x; b += blockDim.x)
        s += __ldcg(&partials[k * gridDim.x + b]);
      v[k] = s;
    }
    qf_block_sum<NV>(v);
    if (threadIdx.x == 0) {
#pragma unroll
      for (int k = 0; k < NV; ++k) tot[k] = v[k];
      atomicExch(&bar[0], 0u);
      __threadfence();
      atomicAdd(&bar[1], 1u);
    }
    __syncthreads();
  }
  if (threadIdx.x < NV) bc[threadIdx.x] = __ldcg(&tot[threadIdx.x]);
  __syncthreads();
#pragma unroll
  for (int k = 0; k < NV; ++k) v[k] = bc[k];
  __syncthreads();
}

// A plain grid barrier (no sum).
__device__ __forceinline__ void qf_grid_barrier(u32* bar, double* partials, double* tot) {
  double none[1] = {0.0};
  qf_barrier_sum<1>(bar, partials, tot, none);
}

template <int G, typename C>
__device__ __forceinline__ void qf_cg_persistent(
    int n, int it0, int nit, int ring, const u32* __restrict__ rowptr,
    const C* __restrict__ col, const double* __restrict__ val,
    const double* __restrict__ inv_diag, double* x, double* r, double* p,
    double* q, double* hist, int* flags, const double* ctl, double* partials,
    u32* bar) {
  if (*(volatile int*)&flags[QF_FLAG_STOP]) return;
  const double atol = ctl[QF_CTL_ATOL];
  const int restart = flags[QF_FLAG_RESTART];
  // partials: 3 * gridDim.x doubles of block sums; the totals go to the
  // three doubles after them (the host sizes the buffer for both)
  double* tot = partials + 3 * gridDim.x;
  double rr = __ldcg(&hist[QF_HIST * (it0 % ring)]);
  double rz = __ldcg(&hist[QF_HIST * (it0 % ring) + 1]);
  double rz_prev = it0 > restart ? __ldcg(&hist[QF_HIST * ((it0 - 1) % ring) + 1]) : 1.0;
  constexpr int PER_WARP = 32 / G;
  const int lane = threadIdx.x % G;
  const int gw = (threadIdx.x & 31) / G;
  const int warp = (blockIdx.x * blockDim.x + threadIdx.x) >> 5;
  const int nwarps = (gridDim.x * blockDim.x) >> 5;
  const bool lead = blockIdx.x == 0 && threadIdx.x == 0;
  for (int it = it0; it < it0 + nit; ++it) {
    if (sqrt(rr) < atol) {
      if (lead) flags[QF_FLAG_STOP] = 1;
      return;
    }
    const double beta = it == restart ? 0.0 : rz / rz_prev;
    QF_FOR(i, n) p[i] = qf_cg_dir(r[i], inv_diag[i], beta, p[i]);
    qf_grid_barrier(bar, partials, tot);
    double acc[1] = {0.0};
    for (int base = warp * PER_WARP; base < n; base += nwarps * PER_WARP) {
      const int row = base + gw;
      double sum = 0.0;
      if (row < n) {
        const u32 s = __ldg(&rowptr[row]), e = __ldg(&rowptr[row + 1]);
        for (u32 k = s + lane; k < e; k += G) sum += __ldg(&val[k]) * __ldcg(&p[qf_col(col, k, row)]);
      }
#pragma unroll
      for (int off = G / 2; off > 0; off >>= 1) sum += __shfl_down_sync(0xffffffffu, sum, off, G);
      if (lane == 0 && row < n) {
        q[row] = sum;
        acc[0] += __ldcg(&p[row]) * sum;
      }
    }
    qf_barrier_sum<1>(bar, partials, tot, acc);
    const double pq[1] = {acc[0]};
    if (lead) hist[QF_HIST * (it % ring) + 2] = pq[0];
    if (!(pq[0] > 0.0)) {
      if (lead) {
        flags[QF_FLAG_STOP] = 1;
        flags[QF_FLAG_BREAKDOWN] = it + 1;
      }
      return;
    }
    const double alpha = rz / pq[0];
    double acc2[2] = {0.0, 0.0};
    QF_FOR(i, n) {
      x[i] += alpha * p[i];
      const double v = r[i] - alpha * __ldcg(&q[i]);
      r[i] = v;
      acc2[0] += v * v;
      acc2[1] += v * v * inv_diag[i];
    }
    qf_barrier_sum<2>(bar, partials, tot, acc2);
    rz_prev = rz;
    rr = acc2[0];
    rz = acc2[1];
    if (lead) {
      double* h1 = hist + QF_HIST * ((it + 1) % ring);
      h1[0] = rr;
      h1[1] = rz;
      flags[QF_FLAG_ITER] = it + 1;
    }
  }
}

#define QF_PERSISTENT(G)                                                          \
  extern "C" __global__ void qf_cg_persistent_g##G(       \
      int n, int it0, int nit, int ring, const u32* __restrict__ rowptr,         \
      const u32* __restrict__ col, const double* __restrict__ val,               \
      const double* __restrict__ inv_diag, double* x, double* r, double* p,      \
      double* q, double* hist, int* flags, const double* ctl, double* partials,        \
      u32* bar) {                                                                \
    qf_cg_persistent<G, u32>(n, it0, nit, ring, rowptr, col, val, inv_diag, x,   \
                             r, p, q, hist, flags, ctl, partials, bar);         \
  }                                                                              \
  extern "C" __global__ void qf_cg_persistent16_g##G(     \
      int n, int it0, int nit, int ring, const u32* __restrict__ rowptr,         \
      const short* __restrict__ col, const double* __restrict__ val,             \
      const double* __restrict__ inv_diag, double* x, double* r, double* p,      \
      double* q, double* hist, int* flags, const double* ctl, double* partials,        \
      u32* bar) {                                                                \
    qf_cg_persistent<G, short>(n, it0, nit, ring, rowptr, col, val, inv_diag, x, \
                               r, p, q, hist, flags, ctl, partials, bar);       \
  }
QF_PERSISTENT(4)
QF_PERSISTENT(8)
QF_PERSISTENT(16)
