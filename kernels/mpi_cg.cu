// The local kernels of the distributed Jacobi-CG (quadflow-mpi,
// mpi/src/device.rs): one MPI rank's rows of the equilibrated matrix in
// full CSR (both triangles), columns in the rank's local numbering (owned
// rows first, then the ghost columns); x and q on the owned rows, r, p
// and inv_diag on the owned rows and the ghosts. The host runs the
// iteration: the owned rows' direction and the interior rows' product
// (launched before the host waits for the ghosts of r), the ghosts copied
// up and scattered, the ghosts' direction and the boundary rows' product,
// the update, then the new r of the rows the neighbours need gathered and
// copied to the host. Reductions
// leave one partial sum per block; the host adds them in block order (the
// same bits every run).
//
// A separate program from the gpu backend's (kernels/*.cu, compiled as
// one): this one is compiled on its own by the mpi backend.

#define QF_MPI_BLOCK 256
#define QF_MPI_GROUP 8

// Sum over the block of v (valid on thread 0); every thread must call it.
__device__ double qf_mpi_block_sum(double v) {
    __shared__ double s[QF_MPI_BLOCK / 32];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    if (lane == 0) s[w] = v;
    __syncthreads();
    double t = 0.0;
    if (threadIdx.x == 0) {
        for (int k = 0; k < QF_MPI_BLOCK / 32; ++k) t += s[k];
    }
    __syncthreads();  // s may be reused by the next call
    return t;
}

// For the entries lo..hi of the column space (owned rows 0..n, then the
// ghosts): x += alpha_prev p on the owned rows; p = r inv_diag + beta p
// (every rank computes its ghosts' p as their owners do).
extern "C" __global__ void qf_mpi_direction(int lo, int hi, int n, const double* __restrict__ r,
                                            const double* __restrict__ inv_diag, double beta,
                                            double alpha_prev, double* __restrict__ p,
                                            double* __restrict__ x) {
    for (int i = lo + blockIdx.x * blockDim.x + threadIdx.x; i < hi; i += gridDim.x * blockDim.x) {
        const double po = p[i];
        if (i < n) x[i] += alpha_prev * po;
        p[i] = r[i] * inv_diag[i] + beta * po;
    }
}

// out[k] = v[idx[k]] (the halo values to send).
extern "C" __global__ void qf_mpi_gather(int m, const unsigned* __restrict__ idx,
                                         const double* __restrict__ v, double* __restrict__ out) {
    for (int k = blockIdx.x * blockDim.x + threadIdx.x; k < m; k += gridDim.x * blockDim.x)
        out[k] = v[idx[k]];
}

// v[idx[k]] = vals[k] (the received ghost values).
extern "C" __global__ void qf_mpi_scatter(int m, const unsigned* __restrict__ idx,
                                          const double* __restrict__ vals, double* __restrict__ v) {
    for (int k = blockIdx.x * blockDim.x + threadIdx.x; k < m; k += gridDim.x * blockDim.x)
        v[idx[k]] = vals[k];
}

// q_i = (A p)_i for the rows lo..hi, QF_MPI_GROUP threads a row; the
// block's share of sum p_i q_i into partials[blockIdx.x]. Every thread
// runs the same number of rounds, so that whole warps meet in the
// shuffles.
extern "C" __global__ void qf_mpi_spmv(int lo, int hi, const unsigned* __restrict__ rowptr,
                                       const unsigned* __restrict__ col,
                                       const double* __restrict__ val,
                                       const double* __restrict__ p, double* __restrict__ q,
                                       double* __restrict__ partials) {
    const int lane = threadIdx.x % QF_MPI_GROUP;
    const long long g = ((long long)blockIdx.x * blockDim.x + threadIdx.x) / QF_MPI_GROUP;
    const long long groups = (long long)gridDim.x * blockDim.x / QF_MPI_GROUP;
    const long long rows = hi > lo ? hi - lo : 0;
    const long long rounds = (rows + groups - 1) / groups;
    double pq = 0.0;
    for (long long t = 0; t < rounds; ++t) {
        const long long i = lo + g + t * groups;
        double acc = 0.0;
        if (i < hi) {
            const unsigned e = rowptr[i + 1];
            for (unsigned k = rowptr[i] + lane; k < e; k += QF_MPI_GROUP) acc += val[k] * p[col[k]];
        }
        for (int o = QF_MPI_GROUP / 2; o > 0; o >>= 1)
            acc += __shfl_down_sync(0xffffffffu, acc, o, QF_MPI_GROUP);
        if (lane == 0 && i < hi) {
            q[i] = acc;
            pq += acc * p[i];
        }
    }
    const double t = qf_mpi_block_sum(pq);
    if (threadIdx.x == 0) partials[blockIdx.x] = t;
}

// r -= alpha q; the block's shares of r.r and r.(inv_diag r) into
// partials[2 blockIdx.x] and partials[2 blockIdx.x + 1].
extern "C" __global__ void qf_mpi_update(int n, double alpha, const double* __restrict__ q,
                                         const double* __restrict__ inv_diag,
                                         double* __restrict__ r, double* __restrict__ partials) {
    double rr = 0.0, rz = 0.0;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        const double v = r[i] - alpha * q[i];
        r[i] = v;
        rr += v * v;
        rz += v * v * inv_diag[i];
    }
    const double a = qf_mpi_block_sum(rr);
    const double b = qf_mpi_block_sum(rz);
    if (threadIdx.x == 0) {
        partials[2 * blockIdx.x] = a;
        partials[2 * blockIdx.x + 1] = b;
    }
}

// a + b as s + e exactly (Knuth's TwoSum); the _rn intrinsics keep the
// compiler from contracting or reordering the operations.
__device__ __forceinline__ void qf_mpi_two_sum(double a, double b, double* s, double* e) {
    const double t = __dadd_rn(a, b);
    const double bb = __dsub_rn(t, a);
    *e = __dadd_rn(__dsub_rn(a, __dsub_rn(t, bb)), __dsub_rn(b, bb));
    *s = t;
}

// r = b - A base on the owned rows in double-double (products exact by
// FMA, sums by TwoSum, rounded once per row; the true residual replaces
// the recurrence's at the convergence rule's checks, as the host's
// Csr::residual_exact_rows computes it); the block's shares of r.r and
// r.(inv_diag r) into partials[2 blockIdx.x] and partials[2 blockIdx.x + 1].
extern "C" __global__ void qf_mpi_residual(int n, const unsigned* __restrict__ rowptr,
                                           const unsigned* __restrict__ col,
                                           const double* __restrict__ val,
                                           const double* __restrict__ b,
                                           const double* __restrict__ base,
                                           const double* __restrict__ inv_diag,
                                           double* __restrict__ r, double* __restrict__ partials) {
    double rr = 0.0, rz = 0.0;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        double hi = b[i], lo = 0.0;
        const unsigned e = rowptr[i + 1];
        for (unsigned k = rowptr[i]; k < e; ++k) {
            const double a = val[k], x = base[col[k]];
            const double p = __dmul_rn(a, x);
            const double pe = fma(a, x, -p);
            double s, se;
            qf_mpi_two_sum(hi, -p, &s, &se);
            hi = s;
            lo = __dadd_rn(lo, __dsub_rn(se, pe));
        }
        const double v = __dadd_rn(hi, lo);
        r[i] = v;
        rr += v * v;
        rz += v * v * inv_diag[i];
    }
    const double a = qf_mpi_block_sum(rr);
    const double c = qf_mpi_block_sum(rz);
    if (threadIdx.x == 0) {
        partials[2 * blockIdx.x] = a;
        partials[2 * blockIdx.x + 1] = c;
    }
}

// base += x, x = 0 on the owned rows (the correction folded into the
// iterate at a check).
extern "C" __global__ void qf_mpi_fold(int n, double* __restrict__ x, double* __restrict__ base) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        base[i] += x[i];
        x[i] = 0.0;
    }
}

// x += alpha p (the pending update).
extern "C" __global__ void qf_mpi_axpy(int n, double alpha, const double* __restrict__ p,
                                       double* __restrict__ x) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        x[i] += alpha * p[i];
}
