// assemble.cu: element stiffness (and load) scattered into the full CSR,
// one thread per element. Mirrors `element::stiffness_sym` and
// `element::load`, then the serial scatter, except that the matrix is the
// full (both triangles) CSR and the slot of each pair (a, b) is found by
// binary search of node el[b] among the sorted columns of row el[a] (no
// slot map is stored or uploaded; see README.md).
//
// load_mode: 0 no source; 1 constant source `src`; 2 source values at the
// nine Gauss points of each element in fq[e * 9 + q].
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
      const double g00 = qd[(size_t)(0 * QF_QP + q) * ne + e];
      const double g01 = qd[(size_t)(1 * QF_QP + q) * ne + e];
      const double g11 = qd[(size_t)(2 * QF_QP + q) * ne + e];
      double t[QF_NODES][2];
#pragma unroll
      for (int a = 0; a < QF_NODES; ++a) {
        t[a][0] = g00 * QF_DN9[q][a][0] + g01 * QF_DN9[q][a][1];
        t[a][1] = g01 * QF_DN9[q][a][0] + g11 * QF_DN9[q][a][1];
      }
      int k = 0;
#pragma unroll
      for (int a = 0; a < QF_NODES; ++a)
#pragma unroll
        for (int b = a; b < QF_NODES; ++b) {
          ke[k] += t[a][0] * QF_DN9[q][b][0] + t[a][1] * QF_DN9[q][b][1];
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
      double fe[QF_NODES];
#pragma unroll
      for (int a = 0; a < QF_NODES; ++a) fe[a] = 0.0;
#pragma unroll
      for (int q = 0; q < QF_QP; ++q) {
        const double fv = load_mode == 1 ? src : fq[(size_t)e * QF_QP + q];
        const double s = fv * qd[(size_t)(3 * QF_QP + q) * ne + e];
#pragma unroll
        for (int a = 0; a < QF_NODES; ++a) fe[a] += s * QF_N9[q][a];
      }
#pragma unroll
      for (int a = 0; a < QF_NODES; ++a) atomicAdd(&f[el[a]], fe[a]);
    }
  }
}
