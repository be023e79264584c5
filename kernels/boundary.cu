// boundary.cu: Robin edges and penalties added to the device system.
// Mirrors `element::robin_edge` and `common::apply_boundary`.
//
// Robin edges, two ways (`[gpu] deterministic`), as the element assembly:
// qf_robin_rows (the default) gives each boundary node a thread that adds
// its edges in edge order (the serial order; the CPU twin is
// `gpu::assemble::robin_rows`); qf_robin gives each edge a thread and adds
// with atomicAdd. Products and sums are explicit round-to-nearest
// intrinsics: the entry (a, c) equals the entry (c, a) bit for bit and the
// twin reproduces both.

// Row a of edge e's He = p int b b^T ds (he[0..3]) and Pe[a] = gamma int
// b_a ds, three Gauss points.
__device__ __forceinline__ void qf_robin_row(int a, const double (&ex)[3],
                                             const double (&ey)[3], double p,
                                             double gamma, double (&he)[3],
                                             double* pe) {
  he[0] = he[1] = he[2] = 0.0;
  double pa = 0.0;
#pragma unroll
  for (int q = 0; q < 3; ++q) {
    const double s = QF_G3P[q];
    const double b[3] = {__dmul_rn(__dmul_rn(s, __dsub_rn(s, 1.0)), 0.5),
                         __dsub_rn(1.0, __dmul_rn(s, s)),
                         __dmul_rn(__dmul_rn(s, __dadd_rn(s, 1.0)), 0.5)};
    const double db[3] = {__dsub_rn(s, 0.5), __dmul_rn(-2.0, s), __dadd_rn(s, 0.5)};
    const double dx = __fma_rn(db[2], ex[2], __fma_rn(db[1], ex[1], __dmul_rn(db[0], ex[0])));
    const double dy = __fma_rn(db[2], ey[2], __fma_rn(db[1], ey[1], __dmul_rn(db[0], ey[0])));
    const double ds = __dmul_rn(sqrt(__fma_rn(dx, dx, __dmul_rn(dy, dy))), QF_G3W[q]);
    pa = __dadd_rn(pa, __dmul_rn(__dmul_rn(gamma, b[a]), ds));
#pragma unroll
    for (int c = 0; c < 3; ++c)
      he[c] = __dadd_rn(he[c], __dmul_rn(__dmul_rn(p, __dmul_rn(b[a], b[c])), ds));
  }
  *pe = pa;
}

__device__ __forceinline__ void qf_robin_edge_load(int e, const u32* __restrict__ nodes,
                                                   const double* __restrict__ x,
                                                   const double* __restrict__ y,
                                                   u32 (&nd)[3], double (&ex)[3],
                                                   double (&ey)[3]) {
#pragma unroll
  for (int k = 0; k < 3; ++k) {
    nd[k] = nodes[3 * e + k];
    ex[k] = x[nd[k]];
    ey[k] = y[nd[k]];
  }
}

// One thread per Robin node rnode[t]: its edges redge[rptr[t] ..
// rptr[t + 1]) (ascending; an edge twice when the node is twice in it),
// each adding its row of He to K (both triangles of the full CSR get their
// entry, from the two nodes' threads) and its Pe entry to f.
// nodes[3 e + k]: the edge's nodes (start, mid, end); pg[2 e]: p,
// pg[2 e + 1]: gamma.
extern "C" __global__ void qf_robin_rows(int m, const u32* __restrict__ rnode,
                                         const u32* __restrict__ rptr,
                                         const u32* __restrict__ redge,
                                         const u32* __restrict__ nodes,
                                         const double* __restrict__ pg,
                                         const double* __restrict__ x,
                                         const double* __restrict__ y,
                                         const u32* __restrict__ rowptr,
                                         const u32* __restrict__ col,
                                         double* __restrict__ val,
                                         double* __restrict__ f,
                                         int* __restrict__ flags) {
  QF_FOR(t, m) {
    const u32 i = rnode[t];
    const u32 rs = rowptr[i], re = rowptr[i + 1];
    double fi = f[i];
    for (u32 k = rptr[t]; k < rptr[t + 1]; ++k) {
      const u32 e = redge[k];
      if (k > rptr[t] && redge[k - 1] == e) continue;
      u32 nd[3];
      double ex[3], ey[3];
      qf_robin_edge_load((int)e, nodes, x, y, nd, ex, ey);
      const double p = pg[2 * e], gamma = pg[2 * e + 1];
      for (int a = 0; a < 3; ++a) {
        if (nd[a] != i) continue;
        double he[3], pe;
        qf_robin_row(a, ex, ey, p, gamma, he, &pe);
        fi = __dadd_rn(fi, pe);
        if (p != 0.0) {
#pragma unroll
          for (int c = 0; c < 3; ++c) {
            const u32 slot = qf_find(col, rs, re, nd[c]);
            if (slot == 0xffffffffu) atomicOr(&flags[QF_FLAG_MISSING], 1);
            else val[slot] = __dadd_rn(val[slot], he[c]);
          }
        }
      }
    }
    f[i] = fi;
  }
}

// One thread per Robin edge, adding with atomicAdd (the non-deterministic
// option): the same entries as qf_robin_rows.
extern "C" __global__ void qf_robin(int nedges, const u32* __restrict__ nodes,
                                    const double* __restrict__ pg,
                                    const double* __restrict__ x,
                                    const double* __restrict__ y,
                                    const u32* __restrict__ rowptr,
                                    const u32* __restrict__ col,
                                    double* __restrict__ val,
                                    double* __restrict__ f,
                                    int* __restrict__ flags) {
  QF_FOR(e, nedges) {
    u32 nd[3];
    double ex[3], ey[3];
    qf_robin_edge_load(e, nodes, x, y, nd, ex, ey);
    const double p = pg[2 * e], gamma = pg[2 * e + 1];
#pragma unroll
    for (int a = 0; a < 3; ++a) {
      double he[3], pe;
      qf_robin_row(a, ex, ey, p, gamma, he, &pe);
      atomicAdd(&f[nd[a]], pe);
      if (p != 0.0) {
        const u32 s0 = rowptr[nd[a]], s1 = rowptr[nd[a] + 1];
#pragma unroll
        for (int c = 0; c < 3; ++c) {
          const u32 slot = qf_find(col, s0, s1, nd[c]);
          if (slot == 0xffffffffu) atomicOr(&flags[QF_FLAG_MISSING], 1);
          else atomicAdd(&val[slot], he[c]);
        }
      }
    }
  }
}

// One thread per penalised node: K[i][i] += penalty, and with with_values
// f[i] += penalty * values[t] (Dirichlet); without, the diagonal only
// (unused nodes). Each node is in a list once (`boundary::Resolved`), so
// no two threads of a launch touch the same entry: plain additions, the
// same result every run.
extern "C" __global__ void qf_penalty(int m, const u32* __restrict__ nodes,
                                      const double* __restrict__ values,
                                      int with_values, double penalty,
                                      const u32* __restrict__ rowptr,
                                      const u32* __restrict__ col,
                                      double* __restrict__ val,
                                      double* __restrict__ f,
                                      int* __restrict__ flags) {
  QF_FOR(t, m) {
    const u32 i = nodes[t];
    const u32 slot = qf_find(col, rowptr[i], rowptr[i + 1], i);
    if (slot == 0xffffffffu) {
      atomicOr(&flags[QF_FLAG_MISSING], 1);
      continue;
    }
    val[slot] = __dadd_rn(val[slot], penalty);
    if (with_values) f[i] = __dadd_rn(f[i], __dmul_rn(penalty, values[t]));
  }
}
