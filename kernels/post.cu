// post.cu: velocity, speed and pressure per element at the 2 x 2 Gauss
// points, one thread per element. Mirrors `element::post`.
// out is structure-of-arrays: out[0 ne + e] = vel_x, out[1 ne + e] = vel_y,
// out[2 ne + e] = abs_vel, out[3 ne + e] = pressure.
extern "C" __global__ void qf_post(int ne, const u32* __restrict__ conn,
                                   const double* __restrict__ x,
                                   const double* __restrict__ y,
                                   const double* __restrict__ u, double p0,
                                   double half_rho, double* __restrict__ out) {
  QF_FOR(e, ne) {
    double cx[QF_NODES], cy[QF_NODES], ue[QF_NODES];
#pragma unroll
    for (int i = 0; i < QF_NODES; ++i) {
      const u32 v = __ldg(&conn[(size_t)e * QF_NODES + i]);
      cx[i] = __ldg(&x[v]);
      cy[i] = __ldg(&y[v]);
      ue[i] = __ldg(&u[v]);
    }
    double vx = 0.0, vy = 0.0, abs_sum = 0.0;
#pragma unroll
    for (int q = 0; q < QF_QP_POST; ++q) {
      double j00 = 0.0, j01 = 0.0, j10 = 0.0, j11 = 0.0, gx = 0.0, ge = 0.0;
#pragma unroll
      for (int i = 0; i < QF_NODES; ++i) {
        j00 += QF_DN4[q][i][0] * cx[i];
        j01 += QF_DN4[q][i][0] * cy[i];
        j10 += QF_DN4[q][i][1] * cx[i];
        j11 += QF_DN4[q][i][1] * cy[i];
      }
#pragma unroll
      for (int i = 0; i < QF_NODES; ++i) {
        gx += QF_DN4[q][i][0] * ue[i];
        ge += QF_DN4[q][i][1] * ue[i];
      }
      const double det = j00 * j11 - j01 * j10;
      const double g0 = (j11 * gx - j01 * ge) / det;
      const double g1 = (-j10 * gx + j00 * ge) / det;
      vx += g0;
      vy += g1;
      abs_sum += sqrt(g0 * g0 + g1 * g1);
    }
    const double abs_vel = abs_sum / QF_QP_POST;
    out[e] = -vx / QF_QP_POST;
    out[(size_t)ne + e] = -vy / QF_QP_POST;
    out[2 * (size_t)ne + e] = abs_vel;
    out[3 * (size_t)ne + e] = p0 - half_rho * abs_vel * abs_vel;
  }
}
