// assemble.cu: element stiffness (and load) into the full CSR. Mirrors
// `element::stiffness_sym` and `element::load` and the serial scatter,
// except that the matrix is the full (both triangles) CSR and the slot of
// each pair (a, b) is found by binary search of node el[b] among the
// sorted columns of row el[a] (no slot map is stored or uploaded; see
// README.md).
//
// Two ways (`[gpu] deterministic`):
// - qf_assemble_rows (the default): one thread per node sums its row
//   over the node's elements in element order (the node-to-element lists
//   of the pattern build, sorted), computing the element matrix's row of
//   that node: every entry is summed in the serial scatter's order, so
//   identical runs give identical matrices, equal bit for bit to the CPU
//   twin `gpu::assemble::gather`;
// - qf_assemble: one thread per element scattering its 64 entries with
//   atomicAdd (the order of the additions varies from run to run).
//
// Every product and sum of an element entry is an explicit
// round-to-nearest intrinsic (no contraction left to the compiler), so
// the entry of a pair is the same bit for bit whichever row computes it
// (the matrix stays exactly symmetric) and the CPU twin reproduces it
// with `f64::mul_add`.
//
// load_mode: 0 no source; 1 constant source `src`; 2 source values at the
// nine Gauss points of each element in fq[e * 9 + q].

// G dN_b at Gauss point q: t[b][0..2].
__device__ __forceinline__ void qf_ke_t(double g00, double g01, double g11, int q,
                                        double (&t)[QF_NODES][2]) {
#pragma unroll
  for (int b = 0; b < QF_NODES; ++b) {
    const double d0 = QF_DN9[q][b][0], d1 = QF_DN9[q][b][1];
    t[b][0] = __fma_rn(g00, d0, __dmul_rn(g01, d1));
    t[b][1] = __fma_rn(g01, d0, __dmul_rn(g11, d1));
  }
}

// The term of the pair (lo, hi), lo <= hi, at Gauss point q: t_lo . dN_hi.
__device__ __forceinline__ double qf_ke_term(const double (&t)[QF_NODES][2], int lo,
                                             int hi, int q) {
  return __fma_rn(t[lo][0], QF_DN9[q][hi][0], __dmul_rn(t[lo][1], QF_DN9[q][hi][1]));
}

// Row a of element e's stiffness matrix (the 8 entries (a, b)).
__device__ __forceinline__ void qf_ke_row(int a, int ne, int e, const double* __restrict__ qd,
                                          double (&row)[QF_NODES]) {
#pragma unroll
  for (int b = 0; b < QF_NODES; ++b) row[b] = 0.0;
  for (int q = 0; q < QF_QP; ++q) {
    double t[QF_NODES][2];
    qf_ke_t(qd[(size_t)(0 * QF_QP + q) * ne + e], qd[(size_t)(1 * QF_QP + q) * ne + e],
            qd[(size_t)(2 * QF_QP + q) * ne + e], q, t);
#pragma unroll
    for (int b = 0; b < QF_NODES; ++b)
      row[b] = __dadd_rn(row[b], a <= b ? qf_ke_term(t, a, b, q) : qf_ke_term(t, b, a, q));
  }
}

// Entry a of element e's load vector.
__device__ __forceinline__ double qf_fe(int a, int ne, int e, const double* __restrict__ qd,
                                        int load_mode, double src,
                                        const double* __restrict__ fq) {
  double fe = 0.0;
  for (int q = 0; q < QF_QP; ++q) {
    const double fv = load_mode == 1 ? src : fq[(size_t)e * QF_QP + q];
    const double s = __dmul_rn(fv, qd[(size_t)(3 * QF_QP + q) * ne + e]);
    fe = __dadd_rn(fe, __dmul_rn(s, QF_N9[q][a]));
  }
  return fe;
}

// One thread per node i: row i of K and f[i], the node's elements in
// element order (node_el[node_ptr[i] .. node_ptr[i + 1]), sorted), each
// adding its row a (el[a] = i) to the row's slots. val and f start at
// zero; only this thread writes row i.
extern "C" __global__ void qf_assemble_rows(int n, int ne, const u32* __restrict__ node_ptr,
                                            const u32* __restrict__ node_el,
                                            const u32* __restrict__ conn,
                                            const double* __restrict__ qd,
                                            const u32* __restrict__ rowptr,
                                            const u32* __restrict__ col,
                                            double* __restrict__ val,
                                            double* __restrict__ f, int load_mode,
                                            double src, const double* __restrict__ fq,
                                            int* __restrict__ flags) {
  QF_FOR(i, n) {
    const u32 rs = rowptr[i], re = rowptr[i + 1];
    const u32 s = node_ptr[i], end = node_ptr[i + 1];
    double fi = 0.0;
    for (u32 p = s; p < end; ++p) {
      const u32 e = node_el[p];
      // a node twice in one element: every position of it at the first
      if (p > s && node_el[p - 1] == e) continue;
      u32 el[QF_NODES];
#pragma unroll
      for (int k = 0; k < QF_NODES; ++k) el[k] = __ldg(&conn[(size_t)e * QF_NODES + k]);
      for (int a = 0; a < QF_NODES; ++a) {
        if (el[a] != (u32)i) continue;
        double row[QF_NODES];
        qf_ke_row(a, ne, (int)e, qd, row);
#pragma unroll
        for (int b = 0; b < QF_NODES; ++b) {
          const u32 slot = qf_find(col, rs, re, el[b]);
          if (slot == 0xffffffffu) atomicOr(&flags[QF_FLAG_MISSING], 1);
          else val[slot] = __dadd_rn(val[slot], row[b]);
        }
        if (load_mode != 0) fi = __dadd_rn(fi, qf_fe(a, ne, (int)e, qd, load_mode, src, fq));
      }
    }
    if (load_mode != 0) f[i] = fi;
  }
}

// One thread per element: the 36 entries of the upper triangle, scattered
// into both triangles with atomicAdd (64 adds), and the load. The same
// entries as qf_assemble_rows; the order of the additions into a slot is
// whatever the threads' timing gives.
extern "C" __global__ void qf_assemble(int ne, const u32* __restrict__ conn,
                                       const double* __restrict__ qd,
                                       const u32* __restrict__ rowptr,
                                       const u32* __restrict__ col,
                                       double* __restrict__ val,
                                       double* __restrict__ f, int load_mode,
                                       double src, const double* __restrict__ fq,
                                       int* __restrict__ flags) {
  QF_FOR(e, ne) {
    u32 el[QF_NODES];
#pragma unroll
    for (int i = 0; i < QF_NODES; ++i) el[i] = __ldg(&conn[(size_t)e * QF_NODES + i]);
    double ke[36];
#pragma unroll
    for (int k = 0; k < 36; ++k) ke[k] = 0.0;
#pragma unroll
    for (int q = 0; q < QF_QP; ++q) {
      double t[QF_NODES][2];
      qf_ke_t(qd[(size_t)(0 * QF_QP + q) * ne + e], qd[(size_t)(1 * QF_QP + q) * ne + e],
              qd[(size_t)(2 * QF_QP + q) * ne + e], q, t);
      int k = 0;
#pragma unroll
      for (int a = 0; a < QF_NODES; ++a)
#pragma unroll
        for (int b = a; b < QF_NODES; ++b) {
          ke[k] = __dadd_rn(ke[k], qf_ke_term(t, a, b, q));
          ++k;
        }
    }
#pragma unroll
    for (int a = 0; a < QF_NODES; ++a) {
      const u32 s = __ldg(&rowptr[el[a]]), end = __ldg(&rowptr[el[a] + 1]);
#pragma unroll
      for (int b = 0; b < QF_NODES; ++b) {
        const u32 slot = qf_find(col, s, end, el[b]);
        const double v = a <= b ? ke[qf_sym(a, b)] : ke[qf_sym(b, a)];
        if (slot == 0xffffffffu) atomicOr(&flags[QF_FLAG_MISSING], 1);
        else atomicAdd(&val[slot], v);
      }
    }
    if (load_mode != 0) {
#pragma unroll
      for (int a = 0; a < QF_NODES; ++a)
        atomicAdd(&f[el[a]], qf_fe(a, ne, e, qd, load_mode, src, fq));
    }
  }
}
