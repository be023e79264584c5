// boundary.cu: Robin edges and penalties added to the device system.
// Mirrors `element::robin_edge` and `common::apply_boundary`.

// One thread per Robin edge: He = p int b b^T ds into K (both triangles of
// the full CSR get their entry), Pe = gamma int b ds into f.
// nodes[3 e + k]: the edge's nodes (start, mid, end); pg[2 e]: p, pg[2 e + 1]: gamma.
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
#pragma unroll
    for (int k = 0; k < 3; ++k) {
      nd[k] = nodes[3 * e + k];
      ex[k] = x[nd[k]];
      ey[k] = y[nd[k]];
    }
    const double p = pg[2 * e], gamma = pg[2 * e + 1];
    double he[3][3] = {{0.0, 0.0, 0.0}, {0.0, 0.0, 0.0}, {0.0, 0.0, 0.0}};
    double pe[3] = {0.0, 0.0, 0.0};
#pragma unroll
    for (int q = 0; q < 3; ++q) {
      const double s = QF_G3P[q];
      const double b[3] = {s * (s - 1.0) / 2.0, 1.0 - s * s, s * (s + 1.0) / 2.0};
      const double db[3] = {s - 0.5, -2.0 * s, s + 0.5};
      const double dx = db[0] * ex[0] + db[1] * ex[1] + db[2] * ex[2];
      const double dy = db[0] * ey[0] + db[1] * ey[1] + db[2] * ey[2];
      const double ds = sqrt(dx * dx + dy * dy) * QF_G3W[q];
#pragma unroll
      for (int a = 0; a < 3; ++a) {
        pe[a] += gamma * b[a] * ds;
#pragma unroll
        for (int c = 0; c < 3; ++c) he[a][c] += p * (b[a] * b[c]) * ds;  // symmetric bit for bit
      }
    }
#pragma unroll
    for (int a = 0; a < 3; ++a) {
      atomicAdd(&f[nd[a]], pe[a]);
      if (p != 0.0) {
        const u32 s0 = rowptr[nd[a]], s1 = rowptr[nd[a] + 1];
#pragma unroll
        for (int c = 0; c < 3; ++c) {
          const u32 slot = qf_find(col, s0, s1, nd[c]);
          if (slot == 0xffffffffu) atomicOr(&flags[QF_FLAG_MISSING], 1);
          else atomicAdd(&val[slot], he[a][c]);
        }
      }
    }
  }
}

// One thread per penalised node: K[i][i] += penalty, and with with_values
// f[i] += penalty * values[t] (Dirichlet); without, the diagonal only
// (unused nodes).
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
    atomicAdd(&val[slot], penalty);
    if (with_values) atomicAdd(&f[i], penalty * values[t]);
  }
}
