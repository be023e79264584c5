//! The vendor strategy's libraries: cuBLAS for the vector operations and
//! cuSPARSE for the SpMV, with the CG scalars on the host (execution model 6,
//! the CuPy
//! version: `cupyx.scipy.sparse.linalg.cg` runs this way), stopped by the
//! convergence rule every solver shares ([`Convergence`]; the true residual
//! is recomputed by the backend's own kernel, `replace::true_residual`).
//!
//! Both libraries give the same answer every run: cuBLAS's dot products
//! reduce without atomics by default (`CUBLAS_ATOMICS_NOT_ALLOWED`) and the
//! SpMV uses `CUSPARSE_SPMV_CSR_ALG2`, the deterministic CSR algorithm
//! (`ALG1`, the default, may differ in the last bits from run to run).

use super::device::{Ctx, Device, GResult, backend_error, raw};
use super::loop_ctl::{LoopEnd, LoopInput, positive};
use crate::solver::{Convergence, Verdict};
use cudarc::cublas::{CudaBlas, sys as blas};
use cudarc::cusparse::sys as sp;
use cudarc::driver::{CudaSlice, CudaStream};
use std::ffi::c_void;
use std::sync::Arc;

/// An owned cuSPARSE handle.
pub struct SparseHandle(sp::cusparseHandle_t);

// SAFETY: the handle is used from one thread at a time (the pipeline's
// systems run one after another) and always with the context bound.
unsafe impl Send for SparseHandle {}
unsafe impl Sync for SparseHandle {}

impl Drop for SparseHandle {
    fn drop(&mut self) {
        // SAFETY: created by cusparseCreate, destroyed once.
        unsafe {
            let _ = sp::cusparseDestroy(self.0);
        }
    }
}

/// cuBLAS and cuSPARSE handles bound to the backend's stream.
pub struct VendorLibs {
    /// cuBLAS.
    pub blas: CudaBlas,
    /// cuSPARSE.
    pub sparse: SparseHandle,
}

impl VendorLibs {
    /// Loads both libraries and creates the handles on `stream`.
    pub fn new(stream: &Arc<CudaStream>) -> GResult<Self> {
        // SAFETY: only try to dlopen the libraries.
        let (has_blas, has_sparse) = unsafe {
            (
                cudarc::cublas::sys::is_culib_present(),
                cudarc::cusparse::sys::is_culib_present(),
            )
        };
        if !has_blas || !has_sparse {
            return Err(backend_error(format!(
                "the vendor solve strategy needs cuBLAS and cuSPARSE (libcublas.so, libcusparse.so{}); put the CUDA toolkit's libraries on LD_LIBRARY_PATH or use the custom strategy",
                match (has_blas, has_sparse) {
                    (false, false) => ": neither found",
                    (false, true) => ": cuBLAS not found",
                    _ => ": cuSPARSE not found",
                }
            )));
        }
        stream
            .context()
            .bind_to_thread()
            .ctx("binding the context")?;
        let blas = CudaBlas::new(stream.clone()).ctx("creating the cuBLAS handle")?;
        let handle = cudarc::cusparse::result::create().ctx("creating the cuSPARSE handle")?;
        let sparse = SparseHandle(handle);
        // SAFETY: valid handle and stream of the same context.
        unsafe { sp::cusparseSetStream(sparse.0, stream.cu_stream() as sp::cudaStream_t) }
            .result()
            .ctx("cusparseSetStream")?;
        Ok(Self { blas, sparse })
    }
}

/// Descriptors of one solve, destroyed on drop.
struct Descriptors {
    mat: sp::cusparseSpMatDescr_t,
    p: sp::cusparseDnVecDescr_t,
    q: sp::cusparseDnVecDescr_t,
}

impl Drop for Descriptors {
    fn drop(&mut self) {
        // SAFETY: each was created once (null ones are skipped).
        unsafe {
            if !self.mat.is_null() {
                let _ = sp::cusparseDestroySpMat(self.mat);
            }
            if !self.p.is_null() {
                let _ = sp::cusparseDestroyDnVec(self.p);
            }
            if !self.q.is_null() {
                let _ = sp::cusparseDestroyDnVec(self.q);
            }
        }
    }
}

fn blas_ok(s: blas::cublasStatus_t, what: &str) -> GResult<()> {
    s.result().ctx(what)
}

/// Buffers of the vendor loop.
pub struct VendorBuffers<'a> {
    /// Row starts of `K~` (full CSR).
    pub rowptr: &'a CudaSlice<u32>,
    /// Columns of `K~`.
    pub col: &'a CudaSlice<u32>,
    /// Values of `K~`.
    pub vs: &'a CudaSlice<f64>,
    /// Jacobi preconditioner.
    pub inv_diag: &'a CudaSlice<f64>,
    /// Iterate.
    pub x: &'a mut CudaSlice<f64>,
    /// Residual.
    pub r: &'a mut CudaSlice<f64>,
    /// Direction.
    pub p: &'a mut CudaSlice<f64>,
    /// `A p`.
    pub q: &'a mut CudaSlice<f64>,
    /// `z = inv_diag * r`.
    pub z: &'a mut CudaSlice<f64>,
}

/// The convergence rule's check: `check(it, x, r)` folds the correction
/// `x` into the iterate (zeroing it), replaces `r` by `b - A x` and returns
/// `r.r` and the relative residual the rule judges (that of `u`).
pub type Check<'a> =
    dyn FnMut(usize, &mut CudaSlice<f64>, &mut CudaSlice<f64>) -> GResult<(f64, f64)> + 'a;

/// The CG loop with cuSPARSE and cuBLAS; same iteration as
/// `solver::pcg`, scalars on the host, `x` the correction of an iterate
/// `base + x` that `check` folds, stopped by `rule` (judging what `check`
/// returns). Returns the end and the host round trips.
pub fn run(
    libs: &VendorLibs,
    st: &Device,
    b: VendorBuffers<'_>,
    input: &LoopInput,
    rule: &mut Convergence,
    check: &mut Check<'_>,
    progress: &mut dyn FnMut(usize, f64) -> bool,
) -> GResult<(LoopEnd, usize)> {
    let stream = &st.stream;
    let n = input.n;
    let nnz = b.col.len().min(input.nnz);
    let (n32, nnz_i64) = (
        i32::try_from(n).map_err(|_| backend_error("too many rows for cuBLAS"))?,
        nnz as i64,
    );
    if input.nnz >= i32::MAX as usize {
        return Err(backend_error(
            "the matrix has more than 2^31 entries: too many for cuSPARSE 32-bit indices",
        ));
    }
    stream
        .context()
        .bind_to_thread()
        .ctx("binding the context")?;
    let h = *libs.blas.handle();
    let hs = libs.sparse.0;
    let (rowptr, col, vs) = (raw(b.rowptr, stream), raw(b.col, stream), raw(b.vs, stream));
    let inv = raw(b.inv_diag, stream) as *const f64;
    let x = raw(b.x, stream) as *mut f64;
    let r = raw(b.r, stream) as *mut f64;
    let p = raw(b.p, stream) as *mut f64;
    let q = raw(b.q, stream) as *mut f64;
    let z = raw(b.z, stream) as *mut f64;

    let mut d = Descriptors {
        mat: std::ptr::null_mut(),
        p: std::ptr::null_mut(),
        q: std::ptr::null_mut(),
    };
    // the deterministic CSR algorithm (identical runs, identical answers)
    let alg = sp::cusparseSpMVAlg_t::CUSPARSE_SPMV_CSR_ALG2;
    let op = sp::cusparseOperation_t::CUSPARSE_OPERATION_NON_TRANSPOSE;
    let r64 = sp::cudaDataType::CUDA_R_64F;
    let one = 1.0f64;
    let zero = 0.0f64;
    let onep = &one as *const f64 as *const c_void;
    let zerop = &zero as *const f64 as *const c_void;
    // SAFETY: device pointers of live buffers of the stated sizes; the
    // descriptors are destroyed by `d` before the buffers go.
    let work = unsafe {
        sp::cusparseCreateCsr(
            &mut d.mat,
            n as i64,
            n as i64,
            nnz_i64,
            rowptr as *mut c_void,
            col as *mut c_void,
            vs as *mut c_void,
            sp::cusparseIndexType_t::CUSPARSE_INDEX_32I,
            sp::cusparseIndexType_t::CUSPARSE_INDEX_32I,
            sp::cusparseIndexBase_t::CUSPARSE_INDEX_BASE_ZERO,
            r64,
        )
        .result()
        .ctx("cusparseCreateCsr")?;
        sp::cusparseCreateDnVec(&mut d.p, n as i64, p as *mut c_void, r64)
            .result()
            .ctx("cusparseCreateDnVec")?;
        sp::cusparseCreateDnVec(&mut d.q, n as i64, q as *mut c_void, r64)
            .result()
            .ctx("cusparseCreateDnVec")?;
        let mut size = 0usize;
        sp::cusparseSpMV_bufferSize(
            hs, op, onep, d.mat as _, d.p as _, zerop, d.q, r64, alg, &mut size,
        )
        .result()
        .ctx("cusparseSpMV_bufferSize")?;
        stream
            .alloc_zeros::<u8>(size.max(1))
            .ctx("cuSPARSE work buffer")?
    };
    let workp = raw(&work, stream) as *mut c_void;
    let spmv = || -> GResult<()> {
        // SAFETY: as above.
        unsafe {
            sp::cusparseSpMV(
                hs, op, onep, d.mat as _, d.p as _, zerop, d.q, r64, alg, workp,
            )
        }
        .result()
        .ctx("cusparseSpMV")
    };
    let dot = |a: *const f64, b2: *const f64| -> GResult<f64> {
        let mut out = 0.0f64;
        // SAFETY: length-n device vectors; host pointer mode (the
        // default), so the call waits for the result.
        blas_ok(
            unsafe { blas::cublasDdot_v2(h, n32, a, 1, b2, 1, &mut out) },
            "cublasDdot",
        )?;
        Ok(out)
    };
    let axpy = |alpha: f64, a: *const f64, y: *mut f64| -> GResult<()> {
        // SAFETY: length-n device vectors, alpha on the host.
        blas_ok(
            unsafe { blas::cublasDaxpy_v2(h, n32, &alpha, a, 1, y, 1) },
            "cublasDaxpy",
        )
    };

    let mut syncs = 0usize;
    let mut rr = dot(r, r)?;
    syncs += 1;
    let mut rho_prev = 0.0;
    let mut it = 0usize;
    // the iteration of the last (re)start: its direction is z alone
    let mut restart = 0usize;
    let end = loop {
        if rr.sqrt() < rule.target() * input.b_norm {
            let judged;
            (rr, judged) = check(it, &mut *b.x, &mut *b.r)?;
            syncs += 2;
            match rule.judge(it, judged) {
                Verdict::Replace => {
                    restart = it;
                    continue;
                }
                v => break LoopEnd::judged(it, v, rr),
            }
        }
        if it >= input.max_iter {
            break LoopEnd::capped(it, rr);
        }
        // z = inv_diag .* r (a diagonal matrix times an n x 1 matrix)
        blas_ok(
            unsafe {
                blas::cublasDdgmm(
                    h,
                    blas::cublasSideMode_t::CUBLAS_SIDE_LEFT,
                    n32,
                    1,
                    r,
                    n32,
                    inv,
                    1,
                    z,
                    n32,
                )
            },
            "cublasDdgmm",
        )?;
        let rz = dot(r, z)?;
        if it == restart {
            // SAFETY: length-n device vectors.
            blas_ok(
                unsafe { blas::cublasDcopy_v2(h, n32, z, 1, p, 1) },
                "cublasDcopy",
            )?;
        } else {
            let beta = rz / rho_prev;
            // SAFETY: length-n device vector, beta on the host.
            blas_ok(
                unsafe { blas::cublasDscal_v2(h, n32, &beta, p, 1) },
                "cublasDscal",
            )?;
            axpy(1.0, z, p)?;
        }
        spmv()?;
        let pq = dot(p, q)?;
        if !positive(pq) {
            break LoopEnd::breakdown(it, pq);
        }
        let alpha = rz / pq;
        axpy(alpha, p, x)?;
        axpy(-alpha, q, r)?;
        rr = dot(r, r)?;
        syncs += 3;
        rho_prev = rz;
        it += 1;
        if it.is_multiple_of(50) && !progress(it, rr.sqrt() / input.b_norm) {
            return Err(crate::solver::SolveError::Interrupted { iteration: it }.into());
        }
    };
    stream.synchronize().ctx("synchronize")?;
    drop(d);
    drop(work);
    Ok((end, syncs))
}
