// scan.cu: the exclusive prefix sum over u32 used by the device pattern
// (gpu::pattern) and the device AMG setup (gpu::amg_setup). Mirrored on
// the host by `gpu::pattern::tiled_exclusive_scan`.
//
// Exclusive over u32, in tiles of QF_SCAN_TILE = 4 * blockDim.x items (the
// host launches 256 threads: 1024-item tiles); the running total of the
// tile sums is kept in 64 bits and written to total[0], so the host can
// refuse a count of 2^32 or more.

#define QF_SCAN_PER_THREAD 4

// Exclusive scan within a warp of the per-thread sums (inclusive via
// shuffles, minus the own value).
__device__ __forceinline__ u32 qf_warp_scan_excl(u32 v) {
  const int lane = threadIdx.x & 31;
  u32 inc = v;
#pragma unroll
  for (int off = 1; off < 32; off <<= 1) {
    const u32 t = __shfl_up_sync(0xffffffffu, inc, off);
    if (lane >= off) inc += t;
  }
  return inc - v;
}

// Exclusive scan of the block's per-thread values; *total gets the block
// sum (valid in every thread after the call).
__device__ __forceinline__ u32 qf_block_scan_excl(u32 v, u32* total) {
  __shared__ u32 warp_sums[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int nwarps = blockDim.x >> 5;
  const u32 excl = qf_warp_scan_excl(v);
  if (lane == 31) warp_sums[warp] = excl + v;
  __syncthreads();
  if (warp == 0) {
    const u32 w = lane < nwarps ? warp_sums[lane] : 0u;
    const u32 we = qf_warp_scan_excl(w);
    if (lane < nwarps) warp_sums[lane] = we;
    if (lane == nwarps - 1) warp_sums[31] = we + w;  // nwarps <= 31 with 256 threads
  }
  __syncthreads();
  const u32 out = excl + warp_sums[warp];
  *total = warp_sums[31];
  __syncthreads();
  return out;
}

// Tile scan, in place: data[k] becomes the sum of data[tile start .. k)
// for k in a tile of 4 * blockDim.x items; tile_sums[tile] = the tile's
// sum. One block per tile (grid-stride over tiles).
extern "C" __global__ void qf_scan_tiles(int n, u32* __restrict__ data,
                                         u32* __restrict__ tile_sums) {
  const int tile = QF_SCAN_PER_THREAD * blockDim.x;
  const int tiles = (n + tile - 1) / tile;
  for (int t = blockIdx.x; t < tiles; t += gridDim.x) {
    const int base = t * tile + threadIdx.x * QF_SCAN_PER_THREAD;
    u32 v[QF_SCAN_PER_THREAD];
    u32 sum = 0;
#pragma unroll
    for (int k = 0; k < QF_SCAN_PER_THREAD; ++k) {
      v[k] = base + k < n ? data[base + k] : 0u;
      sum += v[k];
    }
    u32 total;
    u32 run = qf_block_scan_excl(sum, &total);
#pragma unroll
    for (int k = 0; k < QF_SCAN_PER_THREAD; ++k) {
      if (base + k < n) data[base + k] = run;
      run += v[k];
    }
    if (threadIdx.x == 0) tile_sums[t] = total;
  }
}

// Exclusive scan of the tile sums in place, by one block, in chunks of
// blockDim.x with a 64-bit carry; total[0] = the sum of everything.
extern "C" __global__ void qf_scan_tops(int tiles, u32* __restrict__ tile_sums,
                                        unsigned long long* __restrict__ total) {
  unsigned long long carry = 0;
  for (int c = 0; c < tiles; c += blockDim.x) {
    const int k = c + threadIdx.x;
    const u32 v = k < tiles ? tile_sums[k] : 0u;
    u32 chunk;
    const u32 excl = qf_block_scan_excl(v, &chunk);
    if (k < tiles) tile_sums[k] = (u32)(carry + excl);
    carry += chunk;
  }
  if (threadIdx.x == 0) total[0] = carry;
}

// Adds each tile's offset to its items.
extern "C" __global__ void qf_scan_add(int n, u32* __restrict__ out,
                                       const u32* __restrict__ tile_sums,
                                       int tile) {
  QF_FOR(i, n) { out[i] += tile_sums[i / tile]; }
}
