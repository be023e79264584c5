// quadrature.cu: geometric factors at the 3 x 3 Gauss points, one thread
// per element. Mirrors `element::quad_data`.
//
// qd is structure-of-arrays: qd[(c * 9 + q) * ne + e] with c = 0: g00,
// 1: g01, 2: g11 of G = w det(J) J^-T J^-1, and c = 3: w det(J).
// A degenerate element (det J NaN or <= 1e-12 * size^2 at some point)
// writes nothing and lowers flags[QF_FLAG_BAD_ELEMENT] to its index; the
// host reports the smallest one.
extern "C" __global__ void qf_quadrature(int ne, const u32* __restrict__ conn,
                                         const double* __restrict__ x,
                                         const double* __restrict__ y,
                                         double* __restrict__ qd,
                                         int* __restrict__ flags) {
  QF_FOR(e, ne) {
    double cx[QF_NODES], cy[QF_NODES];
#pragma unroll
    for (int i = 0; i < QF_NODES; ++i) {
      const u32 v = __ldg(&conn[(size_t)e * QF_NODES + i]);
      cx[i] = __ldg(&x[v]);
      cy[i] = __ldg(&y[v]);
    }
    double x0 = cx[0], x1 = cx[0], y0 = cy[0], y1 = cy[0];
#pragma unroll
    for (int i = 1; i < QF_NODES; ++i) {
      x0 = fmin(x0, cx[i]); x1 = fmax(x1, cx[i]);
      y0 = fmin(y0, cy[i]); y1 = fmax(y1, cy[i]);
    }
    const double tiny = 1e-12 * ((x1 - x0) * (x1 - x0) + (y1 - y0) * (y1 - y0));
    double out[4][QF_QP];
    bool bad = false;
#pragma unroll
    for (int q = 0; q < QF_QP; ++q) {
      double j00 = 0.0, j01 = 0.0, j10 = 0.0, j11 = 0.0;
#pragma unroll
      for (int i = 0; i < QF_NODES; ++i) {
        j00 += QF_DN9[q][i][0] * cx[i];
        j01 += QF_DN9[q][i][0] * cy[i];
        j10 += QF_DN9[q][i][1] * cx[i];
        j11 += QF_DN9[q][i][1] * cy[i];
      }
      const double det = j00 * j11 - j01 * j10;
      if (isnan(det) || det <= tiny) bad = true;
      // inv = [[j11, -j01], [-j10, j00]] / det; G = inv^T inv * w det
      const double i00 = j11 / det, i01 = -j01 / det;
      const double i10 = -j10 / det, i11 = j00 / det;
      const double wd = QF_W9[q] * det;
      out[0][q] = (i00 * i00 + i10 * i10) * wd;
      out[1][q] = (i00 * i01 + i10 * i11) * wd;
      out[2][q] = (i01 * i01 + i11 * i11) * wd;
      out[3][q] = wd;
    }
    if (bad) {
      atomicMin(&flags[QF_FLAG_BAD_ELEMENT], e);
      continue;
    }
#pragma unroll
    for (int c = 0; c < 4; ++c)
#pragma unroll
      for (int q = 0; q < QF_QP; ++q) qd[(size_t)(c * QF_QP + q) * ne + e] = out[c][q];
  }
}
