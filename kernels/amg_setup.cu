// amg_setup.cu: the smoothed-aggregation hierarchy built on the device
// from the device-assembled matrix (driven by `gpu::amg_setup`, mirrored
// on the CPU operation by operation by `gpu::amg_twin`, which the tests
// compare with this file's results).
//
// Arithmetic that the twin must reproduce bit for bit is written with the
// round-to-nearest intrinsics (__dmul_rn, __dadd_rn), which the compiler
// never contracts into FMAs, in the twin's order of operations.
//
// Steps (one level; the first prepares the equilibrated system):
//   qf_as_diag, scan, qf_as_compact, qf_as_fill: D K D on the coupled rows
//     (original order kept: no renumbering), b = D f, B = 1/d;
//   qf_as_inv_diag: 1/a_ii, sqrt(1/a_ii), a_ii (not positive: flagged);
//   qf_as_strength_count/fill: strong couplings (`amg::strength`);
//   qf_as_mis_init/max/update: a maximal distance-2 independent set of
//     the strength graph by random priorities (Luby, two max-propagation
//     sweeps per round): the aggregate roots;
//   qf_as_agg_attach: every other node joins the root of highest priority
//     among its strong neighbours (pass 0), or, two steps away, the
//     aggregate of such a neighbour (pass 1);
//   qf_as_transpose_count/fill + qf_as_sort_rows: aggregate member lists
//     (sorted), then qf_as_agg_norms and qf_as_tentative: T;
//   qf_as_lanczos: the spectral radius estimate of D^-1 A;
//   qf_as_prolong_count/fill: P = (I - omega D^-1 A) T, sorted rows;
//   transpose of P: R;  qf_as_spgemm_*: A P, then R (A P);
//   qf_as_to_f32: single-precision copies for the cycle.

#define QF_NONE 0xffffffffu
#define QF_PENDING 0xfffffffeu

// 64-bit grid-stride loop, for arrays of entries (more than 2^31 of them
// on the largest meshes).
#define QF_FOR64(k, n)                                                          \
  for (unsigned long long k = (unsigned long long)blockIdx.x * blockDim.x +   \
                              threadIdx.x;                                    \
       k < (unsigned long long)(n); k += (unsigned long long)blockDim.x * gridDim.x)

// --- the equilibrated system (`amg::AmgSystem::from_full`, no RCM) -----

// kdiag = K_ii, d = 1/sqrt|K_ii|, coupled = has an off-diagonal entry,
// direct = f / K_ii on decoupled rows (0 elsewhere).
extern "C" __global__ void qf_as_diag(int n, const u32* __restrict__ rowptr,
                                      const u32* __restrict__ col,
                                      const double* __restrict__ val,
                                      const double* __restrict__ f,
                                      double* __restrict__ kdiag,
                                      double* __restrict__ d,
                                      u32* __restrict__ coupled,
                                      double* __restrict__ direct, int* flags) {
  QF_FOR(i, n) {
    const u32 s = rowptr[i], e = rowptr[i + 1];
    const u32 k = qf_find(col, s, e, (u32)i);
    const double kd = k == 0xffffffffu ? 0.0 : val[k];
    if (kd == 0.0) atomicMin(&flags[QF_FLAG_ZERO_DIAG], i);
    if (!isfinite(kd) || !isfinite(f[i])) flags[QF_FLAG_NONFINITE] = 1;
    kdiag[i] = kd;
    d[i] = 1.0 / sqrt(fabs(kd));
    const bool c = e - s > 1;
    coupled[i] = c ? 1u : 0u;
    direct[i] = c ? 0.0 : f[i] / kd;
  }
}

// For coupled row i (new index k = cidx[i]): rows[k] = i, its row start
// in A (every decoupled row before it had one entry), b = d f,
// near-null-space B = 1/d, dk = d. cidx[n] is the coupled count m.
extern "C" __global__ void qf_as_compact(int n, const u32* __restrict__ rowptr,
                                         const u32* __restrict__ cidx,
                                         const double* __restrict__ d,
                                         const double* __restrict__ f,
                                         u32* __restrict__ rows, u32* __restrict__ arow,
                                         double* __restrict__ b,
                                         double* __restrict__ bnull,
                                         double* __restrict__ dk) {
  QF_FOR(i, n) {
    const u32 k = cidx[i];
    if (cidx[i + 1] == k) continue;  // decoupled
    rows[k] = (u32)i;
    arow[k] = rowptr[i] - ((u32)i - k);
    const double di = d[i];
    b[k] = __dmul_rn(di, f[i]);
    bnull[k] = 1.0 / di;
    dk[k] = di;
  }
  if (blockIdx.x == 0 && threadIdx.x == 0) {
    const u32 m = cidx[n];
    arow[m] = rowptr[n] - ((u32)n - m);
  }
}

// A's columns (renumbered) and values d_i K_ij d_j of the coupled rows.
extern "C" __global__ void qf_as_fill(int n, const u32* __restrict__ rowptr,
                                      const u32* __restrict__ col,
                                      const double* __restrict__ val,
                                      const double* __restrict__ d,
                                      const u32* __restrict__ cidx,
                                      u32* __restrict__ acol,
                                      double* __restrict__ aval, int* flags) {
  QF_FOR(i, n) {
    const u32 k = cidx[i];
    if (cidx[i + 1] == k) continue;
    const u32 s = rowptr[i], e = rowptr[i + 1];
    const u32 dst = s - ((u32)i - k);
    const double di = d[i];
    bool finite = true;
    for (u32 kk = s; kk < e; ++kk) {
      const u32 j = col[kk];
      acol[dst + (kk - s)] = cidx[j];
      const double v = __dmul_rn(__dmul_rn(di, val[kk]), d[j]);
      finite &= isfinite(v);
      aval[dst + (kk - s)] = v;
    }
    if (!finite) flags[QF_FLAG_NONFINITE] = 1;
  }
}

// out[0] = ||D f||^2 over all rows, out[1] = ||f||^2.
extern "C" __global__ void qf_as_sys_norms(int n, const double* __restrict__ f,
                                           const double* __restrict__ d,
                                           double* partials, u32* counter,
                                           double* out) {
  double acc[2] = {0.0, 0.0};
  QF_FOR(i, n) {
    const double b = d[i] * f[i];
    acc[0] += b * b;
    acc[1] += f[i] * f[i];
  }
  if (qf_grid_sum<2>(acc, partials, counter) && threadIdx.x == 0) {
    out[0] = acc[0];
    out[1] = acc[1];
  }
}

// --- one level -----------------------------------------------------------

// diag = a_ii, inv = 1 / a_ii, sq = sqrt(inv); flags[ZERO_DIAG] gets the
// smallest row whose diagonal is not positive (or NaN).
extern "C" __global__ void qf_as_inv_diag(int m, const u32* __restrict__ ap,
                                          const u32* __restrict__ acol,
                                          const double* __restrict__ aval,
                                          double* __restrict__ diag,
                                          double* __restrict__ inv,
                                          double* __restrict__ sq, int* flags) {
  QF_FOR(i, m) {
    const u32 k = qf_find(acol, ap[i], ap[i + 1], (u32)i);
    const double a = k == 0xffffffffu ? 0.0 : aval[k];
    if (!(a > 0.0)) atomicMin(&flags[QF_FLAG_ZERO_DIAG], i);
    diag[i] = a;
    const double v = 1.0 / a;
    inv[i] = v;
    sq[i] = sqrt(v);
  }
}

__device__ __forceinline__ bool qf_strong(int i, u32 j, double x, const double* diag,
                                          double t2, int negative) {
  return j != (u32)i && (!negative || x < 0.0) &&
         __dmul_rn(x, x) >= __dmul_rn(t2, fabs(__dmul_rn(diag[i], diag[j])));
}

// Strong neighbours per row (`amg::strength`).
extern "C" __global__ void qf_as_strength_count(int m, const u32* __restrict__ ap,
                                                const u32* __restrict__ acol,
                                                const double* __restrict__ aval,
                                                const double* __restrict__ diag,
                                                double t2, int negative,
                                                u32* __restrict__ cnt) {
  QF_FOR(i, m) {
    u32 c = 0;
    for (u32 k = ap[i]; k < ap[i + 1]; ++k)
      c += qf_strong(i, acol[k], aval[k], diag, t2, negative) ? 1u : 0u;
    cnt[i] = c;
  }
}

extern "C" __global__ void qf_as_strength_fill(int m, const u32* __restrict__ ap,
                                               const u32* __restrict__ acol,
                                               const double* __restrict__ aval,
                                               const double* __restrict__ diag,
                                               double t2, int negative,
                                               const u32* __restrict__ sp,
                                               u32* __restrict__ sj) {
  QF_FOR(i, m) {
    u32 o = sp[i];
    for (u32 k = ap[i]; k < ap[i + 1]; ++k)
      if (qf_strong(i, acol[k], aval[k], diag, t2, negative)) sj[o++] = acol[k];
  }
}

// Priorities: (state << 62) | (hash << 32) | index, compared as u64.
// States: 0 out (or isolated), 1 undecided, 2 in the set (a root).
__device__ __forceinline__ unsigned long long qf_mis_tuple(u32 state, u32 i) {
  u32 h = i * 0x9E3779B1u;
  h ^= h >> 16;
  h *= 0x85EBCA6Bu;
  h ^= h >> 13;
  h *= 0xC2B2AE35u;
  h ^= h >> 16;
  return ((unsigned long long)state << 62) |
         ((unsigned long long)(h & 0x3fffffffu) << 32) | (unsigned long long)i;
}

extern "C" __global__ void qf_as_mis_init(int m, const u32* __restrict__ sp,
                                          unsigned long long* __restrict__ t) {
  QF_FOR(i, m) t[i] = qf_mis_tuple(sp[i + 1] > sp[i] ? 1u : 0u, (u32)i);
}

// out[i] = max(in[i], max over strong neighbours j of in[j]).
extern "C" __global__ void qf_as_mis_max(int m, const u32* __restrict__ sp,
                                         const u32* __restrict__ sj,
                                         const unsigned long long* __restrict__ in,
                                         unsigned long long* __restrict__ out) {
  QF_FOR(i, m) {
    unsigned long long v = in[i];
    for (u32 k = sp[i]; k < sp[i + 1]; ++k) {
      const unsigned long long w = in[sj[k]];
      v = w > v ? w : v;
    }
    out[i] = v;
  }
}

// An undecided node whose distance-2 maximum is itself joins the set; one
// that sees a member is out; the others stay (counted into *left).
extern "C" __global__ void qf_as_mis_update(int m, const unsigned long long* __restrict__ t,
                                            const unsigned long long* __restrict__ t2,
                                            unsigned long long* __restrict__ next,
                                            u32* left) {
  u32 c = 0;
  QF_FOR(i, m) {
    const unsigned long long v = t[i];
    unsigned long long o = v;
    if ((v >> 62) == 1ull) {
      const unsigned long long low = v & ((1ull << 62) - 1ull);
      if (t2[i] == v) o = (2ull << 62) | low;
      else if ((t2[i] >> 62) == 2ull) o = low;
      else ++c;
    }
    next[i] = o;
  }
  if (c) atomicAdd(left, c);
}

// 1 for the roots (state 2), else 0 (then scanned into aggregate ids).
extern "C" __global__ void qf_as_roots(int m, const unsigned long long* __restrict__ t,
                                       u32* __restrict__ flag) {
  QF_FOR(i, m) flag[i] = (t[i] >> 62) == 2ull ? 1u : 0u;
}

// pass 0: roots take their id; a node with a strong root neighbour joins
// the highest-priority one; isolated nodes none; the rest pending.
// pass 1: a pending node joins the aggregate of its highest-priority
// strong neighbour assigned in pass 0 (reads `in`, writes `out`);
// *left counts nodes still pending (none, by the maximality of the set).
extern "C" __global__ void qf_as_agg_attach(int m, int pass, const u32* __restrict__ sp,
                                            const u32* __restrict__ sj,
                                            const unsigned long long* __restrict__ t,
                                            const u32* __restrict__ rootid,
                                            const u32* __restrict__ in,
                                            u32* __restrict__ out, u32* left) {
  u32 c = 0;
  QF_FOR(i, m) {
    if (pass == 0) {
      u32 a;
      if ((t[i] >> 62) == 2ull) {
        a = rootid[i];
      } else if (sp[i + 1] == sp[i]) {
        a = QF_NONE;
      } else {
        unsigned long long best = 0;
        u32 bj = QF_NONE;
        for (u32 k = sp[i]; k < sp[i + 1]; ++k) {
          const u32 j = sj[k];
          if ((t[j] >> 62) == 2ull && t[j] > best) {
            best = t[j];
            bj = j;
          }
        }
        a = bj == QF_NONE ? QF_PENDING : rootid[bj];
      }
      out[i] = a;
    } else {
      u32 a = in[i];
      if (a == QF_PENDING) {
        unsigned long long best = 0;
        u32 bj = QF_NONE;
        for (u32 k = sp[i]; k < sp[i + 1]; ++k) {
          const u32 j = sj[k];
          if (in[j] < QF_PENDING && t[j] >= best) {
            best = t[j];
            bj = j;
          }
        }
        if (bj == QF_NONE) ++c; else a = in[bj];
      }
      out[i] = a;
    }
  }
  if (c) atomicAdd(left, c);
}

// --- transposes and sorted rows -----------------------------------------

// cnt[keys[k]] += 1 for every entry k (keys of QF_NONE skipped).
extern "C" __global__ void qf_as_transpose_count(unsigned long long len,
                                                 const u32* __restrict__ keys,
                                                 u32* __restrict__ cnt) {
  QF_FOR64(k, len) {
    const u32 key = keys[k];
    if (key != QF_NONE) atomicAdd(&cnt[key], 1u);
  }
}

// The transpose's entries: row i's entry k (k = i when ptr is null) goes
// to row keys[k] of the transpose, column i, value vals[k] (when given);
// the order within a row is then fixed by qf_as_sort_rows.
extern "C" __global__ void qf_as_transpose_fill(int rows, const u32* __restrict__ ptr,
                                                const u32* __restrict__ keys,
                                                const double* __restrict__ vals,
                                                const u32* __restrict__ tptr,
                                                u32* __restrict__ cursor,
                                                u32* __restrict__ tcol,
                                                double* __restrict__ tval) {
  QF_FOR(i, rows) {
    const u32 s = ptr ? ptr[i] : (u32)i, e = ptr ? ptr[i + 1] : (u32)i + 1u;
    for (u32 k = s; k < e; ++k) {
      const u32 key = keys[k];
      if (key == QF_NONE) continue;
      const u32 pos = tptr[key] + atomicAdd(&cursor[key], 1u);
      tcol[pos] = (u32)i;
      if (vals) tval[pos] = vals[k];
    }
  }
}

// Sorts each row's columns (distinct) ascending, values along.
extern "C" __global__ void qf_as_sort_rows(int rows, const u32* __restrict__ ptr,
                                           u32* __restrict__ col,
                                           double* __restrict__ val) {
  QF_FOR(i, rows) {
    const u32 s = ptr[i], e = ptr[i + 1];
    for (u32 a = s + 1; a < e; ++a) {
      const u32 c = col[a];
      const double v = val ? val[a] : 0.0;
      u32 b = a;
      while (b > s && col[b - 1] > c) {
        col[b] = col[b - 1];
        if (val) val[b] = val[b - 1];
        --b;
      }
      col[b] = c;
      if (val) val[b] = v;
    }
  }
}

// norms[g] = sqrt(sum of B_i^2 over the members i of aggregate g, in
// increasing i), the coarse near-null-space vector.
extern "C" __global__ void qf_as_agg_norms(int nagg, const u32* __restrict__ mptr,
                                           const u32* __restrict__ members,
                                           const double* __restrict__ bnull,
                                           double* __restrict__ norms) {
  QF_FOR(g, nagg) {
    double s = 0.0;
    for (u32 k = mptr[g]; k < mptr[g + 1]; ++k) {
      const double b = bnull[members[k]];
      s = __dadd_rn(s, __dmul_rn(b, b));
    }
    norms[g] = sqrt(s);
  }
}

// t_i = B_i / norms[agg_i] (0 for nodes in no aggregate).
extern "C" __global__ void qf_as_tentative(int m, const u32* __restrict__ agg,
                                           const double* __restrict__ bnull,
                                           const double* __restrict__ norms,
                                           double* __restrict__ t) {
  QF_FOR(i, m) {
    const u32 g = agg[i];
    t[i] = (g == QF_NONE || norms[g] == 0.0) ? 0.0 : bnull[i] / norms[g];
  }
}

// --- the smoothed prolongator -------------------------------------------

// The next aggregate above `prev` (QF_NONE: the first) among row i's own
// and its neighbours' aggregates; QF_NONE when there is none.
__device__ __forceinline__ u32 qf_next_agg(int i, u32 s, u32 e, const u32* acol,
                                           const u32* agg, u32 prev, bool first) {
  u32 best = QF_NONE;
  const u32 own = agg[i];
  if (own != QF_NONE && (first || own > prev)) best = own;
  for (u32 k = s; k < e; ++k) {
    const u32 g = agg[acol[k]];
    if (g != QF_NONE && (first || g > prev) && g < best) best = g;
  }
  return best;
}

extern "C" __global__ void qf_as_prolong_count(int m, const u32* __restrict__ ap,
                                               const u32* __restrict__ acol,
                                               const u32* __restrict__ agg,
                                               u32* __restrict__ cnt) {
  QF_FOR(i, m) {
    const u32 s = ap[i], e = ap[i + 1];
    u32 c = 0, prev = 0;
    bool first = true;
    for (;;) {
      const u32 g = qf_next_agg(i, s, e, acol, agg, prev, first);
      if (g == QF_NONE) break;
      ++c;
      prev = g;
      first = false;
    }
    cnt[i] = c;
  }
}

// Row i of P = (I - omega D^-1 A) T, columns ascending; each value summed
// in the host's order (t_i first for the own aggregate, then the row's
// entries in order).
extern "C" __global__ void qf_as_prolong_fill(int m, const u32* __restrict__ ap,
                                              const u32* __restrict__ acol,
                                              const double* __restrict__ aval,
                                              const u32* __restrict__ agg,
                                              const double* __restrict__ inv,
                                              const double* __restrict__ t,
                                              double omega, const u32* __restrict__ pp,
                                              u32* __restrict__ pcol,
                                              double* __restrict__ pval) {
  QF_FOR(i, m) {
    const u32 s = ap[i], e = ap[i + 1];
    const double mw = -__dmul_rn(omega, inv[i]);
    u32 o = pp[i], prev = 0;
    bool first = true;
    for (;;) {
      const u32 g = qf_next_agg(i, s, e, acol, agg, prev, first);
      if (g == QF_NONE) break;
      double v = agg[i] == g ? t[i] : 0.0;
      for (u32 k = s; k < e; ++k) {
        const u32 j = acol[k];
        if (agg[j] == g) v = __dadd_rn(v, __dmul_rn(__dmul_rn(mw, aval[k]), t[j]));
      }
      pcol[o] = g;
      pval[o] = v;
      ++o;
      prev = g;
      first = false;
    }
  }
}

// --- sparse products: C = X Y, row by row into a sorted local list --------

// Row `row` of X Y into the sorted list (cols, vals) of at most CAP
// entries; returns the length, or CAP + 1 when the row does not fit.
// Values accumulate in the order of the host's `Csr::matmul` (X's entries
// in order, Y's entries in order).
template <int CAP, bool VALUES>
__device__ __forceinline__ u32 qf_spgemm_row(u32 row, const u32* __restrict__ xp,
                                             const u32* __restrict__ xc,
                                             const double* __restrict__ xv,
                                             const u32* __restrict__ yp,
                                             const u32* __restrict__ yc,
                                             const double* __restrict__ yv,
                                             u32* cols, double* vals) {
  u32 d = 0;
  for (u32 k = xp[row]; k < xp[row + 1]; ++k) {
    const u32 r = xc[k];
    const double a = VALUES ? xv[k] : 0.0;
    for (u32 l = yp[r]; l < yp[r + 1]; ++l) {
      const u32 c = yc[l];
      u32 lo = 0, hi = d;
      while (lo < hi) {
        const u32 mid = (lo + hi) >> 1;
        if (cols[mid] < c) lo = mid + 1; else hi = mid;
      }
      if (lo < d && cols[lo] == c) {
        if (VALUES) vals[lo] = __dadd_rn(vals[lo], __dmul_rn(a, yv[l]));
        continue;
      }
      if (d == CAP) return CAP + 1;
      for (u32 q = d; q > lo; --q) {
        cols[q] = cols[q - 1];
        if (VALUES) vals[q] = vals[q - 1];
      }
      cols[lo] = c;
      if (VALUES) vals[lo] = __dmul_rn(a, yv[l]);
      ++d;
    }
  }
  return d;
}

// Row lengths of X Y over `rows` rows (row r is list[r] when a list is
// given); a row longer than CAP gets length 0 and is appended to
// `over` (count in over_n[0]).
template <int CAP>
__device__ __forceinline__ void qf_spgemm_count(int rows, const u32* __restrict__ list,
                                                const u32* __restrict__ xp,
                                                const u32* __restrict__ xc,
                                                const u32* __restrict__ yp,
                                                const u32* __restrict__ yc,
                                                u32* __restrict__ cnt, u32* over,
                                                u32* over_n) {
  u32 cols[CAP];
  QF_FOR(r, rows) {
    const u32 row = list ? list[r] : (u32)r;
    const u32 d = qf_spgemm_row<CAP, false>(row, xp, xc, nullptr, yp, yc, nullptr, cols,
                                            nullptr);
    if (d > CAP) {
      cnt[row] = 0;
      over[atomicAdd(over_n, 1u)] = row;
    } else {
      cnt[row] = d;
    }
  }
}

template <int CAP>
__device__ __forceinline__ void qf_spgemm_fill(int rows, const u32* __restrict__ list,
                                               const u32* __restrict__ xp,
                                               const u32* __restrict__ xc,
                                               const double* __restrict__ xv,
                                               const u32* __restrict__ yp,
                                               const u32* __restrict__ yc,
                                               const double* __restrict__ yv,
                                               const u32* __restrict__ cp,
                                               u32* __restrict__ ccol,
                                               double* __restrict__ cval) {
  u32 cols[CAP];
  double vals[CAP];
  QF_FOR(r, rows) {
    const u32 row = list ? list[r] : (u32)r;
    const u32 len = cp[row + 1] - cp[row];
    if (len == 0 || len > CAP) continue;
    const u32 d = qf_spgemm_row<CAP, true>(row, xp, xc, xv, yp, yc, yv, cols, vals);
    const u32 o = cp[row];
    for (u32 q = 0; q < d; ++q) {
      ccol[o + q] = cols[q];
      cval[o + q] = vals[q];
    }
  }
}

#define QF_SPGEMM(CAP)                                                              \
  extern "C" __global__ void qf_as_spgemm_count_c##CAP(                             \
      int rows, const u32* list, const u32* xp, const u32* xc, const u32* yp,       \
      const u32* yc, u32* cnt, u32* over, u32* over_n) {                            \
    qf_spgemm_count<CAP>(rows, list, xp, xc, yp, yc, cnt, over, over_n);            \
  }                                                                                 \
  extern "C" __global__ void qf_as_spgemm_fill_c##CAP(                              \
      int rows, const u32* list, const u32* xp, const u32* xc, const double* xv,    \
      const u32* yp, const u32* yc, const double* yv, const u32* cp, u32* ccol,     \
      double* cval) {                                                               \
    qf_spgemm_fill<CAP>(rows, list, xp, xc, xv, yp, yc, yv, cp, ccol, cval);        \
  }
QF_SPGEMM(64)
QF_SPGEMM(1024)

// --- single precision, the spectral radius ------------------------------

extern "C" __global__ void qf_as_to_f32(unsigned long long len, const double* __restrict__ in,
                                        float* __restrict__ out) {
  QF_FOR64(k, len) out[k] = __double2float_rn(in[k]);
}

// splitmix64 (`amg::splitmix`), for the Lanczos start vector.
__device__ __forceinline__ unsigned long long qf_splitmix(unsigned long long z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// One operation of `amg::spectral_radius_with` (Lanczos on
// D^-1/2 A D^-1/2 with A's single-precision values); out[0] gets the sum
// of the modes that end in a dot product.
//   mode 0: v = start vector, out = v.v
//   mode 1: v /= beta
//   mode 2: w = s .* (A (s .* v)), out = w.v
//   mode 3: w -= alpha v + beta_prev v_prev, out = w.w
//   mode 4: v_prev = v, v = w / beta
extern "C" __global__ void qf_as_lanczos(int mode, int m, const u32* __restrict__ ap,
                                         const u32* __restrict__ acol,
                                         const float* __restrict__ a32,
                                         const double* __restrict__ s,
                                         double* __restrict__ v,
                                         double* __restrict__ vprev,
                                         double* __restrict__ w, double alpha,
                                         double beta_prev, double beta,
                                         double* partials, u32* counter,
                                         double* out) {
  double acc[1] = {0.0};
  QF_FOR(i, m) {
    if (mode == 0) {
      const double x = (double)(qf_splitmix((unsigned long long)i) >> 11) /
                           9007199254740992.0 - 0.5;
      v[i] = x;
      acc[0] += x * x;
    } else if (mode == 1) {
      v[i] = v[i] / beta;
    } else if (mode == 2) {
      double sum = 0.0;
      for (u32 k = ap[i]; k < ap[i + 1]; ++k) {
        const u32 j = acol[k];
        sum = __dadd_rn(sum, __dmul_rn((double)a32[k], __dmul_rn(s[j], v[j])));
      }
      const double wi = __dmul_rn(sum, s[i]);
      w[i] = wi;
      acc[0] += wi * v[i];
    } else if (mode == 3) {
      const double wi = w[i] - (alpha * v[i] + beta_prev * vprev[i]);
      w[i] = wi;
      acc[0] += wi * wi;
    } else {
      vprev[i] = v[i];
      v[i] = w[i] / beta;
    }
  }
  if (mode == 0 || mode == 2 || mode == 3) {
    if (qf_grid_sum<1>(acc, partials, counter) && threadIdx.x == 0) out[0] = acc[0];
  }
}
