// pattern.cu: the full-CSR sparsity pattern built on the device from the
// connectivity, and the exclusive scan it needs. Mirrors
// `gpu::pattern::FullPattern::build` (the host reference): row i holds
// every node sharing an element with i, sorted, and an unused node holds
// only its diagonal. Steps (driven by `gpu::pattern::build_on_device`):
//
//   1. qf_node_degree: elements per node (atomic counts into cnt[0..n)).
//   2. scan cnt[0..n] (cnt[n] = 0) -> ne_ptr, the node-to-element offsets.
//   3. qf_node_fill: node-to-element lists (atomic cursors; the order in a
//      list does not matter, the rows are sorted next).
//   4. qf_row_count: distinct neighbours per row -> rowlen[0..n), and the
//      number of decoupled rows (length <= 1).
//   5. scan rowlen[0..n] (rowlen[n] = 0) -> rowptr; the total is nnz.
//   6. qf_row_fill: the sorted distinct columns of each row.
//
// Rows are enumerated by selection: repeatedly take the smallest node of
// the row's elements greater than the last one taken. No scratch array
// and no bound on the node degree; a row of d distinct columns over k
// candidates costs d * k comparisons (Quad-8: d <= 21, k <= 32 on
// structured meshes), all on L1-resident connectivity.
//
// The scan (qf_scan_tiles, qf_scan_tops, qf_scan_add) is exclusive over
// u32, in tiles of QF_SCAN_TILE = 4 * blockDim.x items (the host launches
// 256 threads: 1024-item tiles); the running total of the tile sums is
// kept in 64 bits and written to total[0], so the host can refuse a
// pattern of 2^32 or more entries.

#define QF_SCAN_PER_THREAD 4

// Elements per node: cnt must be zeroed, n + 1 long.
extern "C" __global__ void qf_node_degree(int ne, const u32* __restrict__ conn,
                                          u32* __restrict__ cnt) {
  QF_FOR(e, ne) {
#pragma unroll
    for (int a = 0; a < QF_NODES; ++a) atomicAdd(&cnt[__ldg(&conn[(size_t)e * QF_NODES + a])], 1u);
  }
}

// Node-to-element lists: adj[ptr[v] .. ptr[v + 1]) gets the elements of
// node v. cursor must be zeroed, n long.
extern "C" __global__ void qf_node_fill(int ne, const u32* __restrict__ conn,
                                        const u32* __restrict__ ptr,
                                        u32* __restrict__ cursor,
                                        u32* __restrict__ adj) {
  QF_FOR(e, ne) {
#pragma unroll
    for (int a = 0; a < QF_NODES; ++a) {
      const u32 v = __ldg(&conn[(size_t)e * QF_NODES + a]);
      const u32 k = atomicAdd(&cursor[v], 1u);
      adj[ptr[v] + k] = (u32)e;
    }
  }
}

// Walks row i in increasing column order; writes the columns to out when
// out is not null. Returns the row length.
__device__ __forceinline__ u32 qf_row_walk(u32 i, const u32* __restrict__ ptr,
                                           const u32* __restrict__ adj,
                                           const u32* __restrict__ conn,
                                           u32* __restrict__ out) {
  const u32 s = __ldg(&ptr[i]), e = __ldg(&ptr[i + 1]);
  if (s == e) {  // unused node: its diagonal only
    if (out) out[0] = i;
    return 1;
  }
  u32 len = 0;
  u32 prev = 0;
  bool first = true;
  for (;;) {
    u32 best = 0xffffffffu;
    for (u32 p = s; p < e; ++p) {
      const u32* el = conn + (size_t)__ldg(&adj[p]) * QF_NODES;
#pragma unroll
      for (int a = 0; a < QF_NODES; ++a) {
        const u32 c = __ldg(&el[a]);
        if ((first || c > prev) && c < best) best = c;
      }
    }
    if (best == 0xffffffffu) break;
    if (out) out[len] = best;
    ++len;
    prev = best;
    first = false;
  }
  return len;
}

// Row lengths into rowlen[0..n); meta[1] counts rows of length <= 1
// (decoupled rows).
extern "C" __global__ void qf_row_count(int n, const u32* __restrict__ ptr,
                                        const u32* __restrict__ adj,
                                        const u32* __restrict__ conn,
                                        u32* __restrict__ rowlen,
                                        unsigned long long* __restrict__ meta) {
  QF_FOR(i, n) {
    const u32 len = qf_row_walk((u32)i, ptr, adj, conn, nullptr);
    rowlen[i] = len;
    if (len <= 1) atomicAdd(&meta[1], 1ull);
  }
}

// The sorted columns of every row at col[rowptr[i] ..).
extern "C" __global__ void qf_row_fill(int n, const u32* __restrict__ ptr,
                                       const u32* __restrict__ adj,
                                       const u32* __restrict__ conn,
                                       const u32* __restrict__ rowptr,
                                       u32* __restrict__ col) {
  QF_FOR(i, n) { qf_row_walk((u32)i, ptr, adj, conn, col + rowptr[i]); }
}

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
