// pattern.cu: the full-CSR sparsity pattern built on the device from the
// connectivity, and the exclusive scan it needs. Mirrors
// `gpu::pattern::FullPattern::build` (the host reference): row i holds
// every node sharing an element with i, sorted, and an unused node holds
// only its diagonal. Steps (driven by `gpu::pattern::build_on_device`):
//
//   1. qf_node_degree: elements per node (atomic counts into cnt[0..n)).
//   2. scan cnt[0..n] (cnt[n] = 0) -> ne_ptr, the node-to-element offsets.
//   3. qf_node_fill: node-to-element lists (atomic cursors), then
//      qf_node_sort: each list ascending (the row-wise assembly visits a
//      node's elements in element order; the rows below do not care).
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
// The scans of steps 2 and 5 are the kernels of scan.cu (a module of
// their own, shared with the AMG setup).

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

// Sorts each node's element list ascending (insertion sort: a node has a
// handful of elements).
extern "C" __global__ void qf_node_sort(int n, const u32* __restrict__ ptr,
                                        u32* __restrict__ adj) {
  QF_FOR(v, n) {
    const u32 s = ptr[v], e = ptr[v + 1];
    for (u32 a = s + 1; a < e; ++a) {
      const u32 c = adj[a];
      u32 b = a;
      while (b > s && adj[b - 1] > c) {
        adj[b] = adj[b - 1];
        --b;
      }
      adj[b] = c;
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
