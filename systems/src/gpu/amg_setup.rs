//! The smoothed-aggregation hierarchy built on the device
//! (`kernels/amg_setup.cu`), from the matrix the device assembled, with no
//! round trip through the host: the equilibrated system, strength of
//! connection, an aggregation by a distance-2 maximal independent set
//! (the parallel counterpart of the host's standard aggregation), the
//! tentative and smoothed prolongators, the Galerkin products `A P` and
//! `R (A P)` by a sparse product of our own, and the single-precision
//! copies the cycle reads. Only scalars come back (the Lanczos sums, the
//! sizes of each step) and the coarsest operator (at most
//! `max_coarse` rows), which the host factors as it does for its own
//! hierarchy.
//!
//! Every step has a CPU twin in [`super::amg_twin`] computing the same
//! thing in the same order of operations; the GPU tests compare the two
//! level by level (aggregates equal, operators to rounding).

use super::device::{Ctx, Device, GResult, backend_error};
use super::kernels::flag;
use super::launch;
use super::pattern::{DeviceSystem, scan_in_place};
use super::report::GpuReport;
use crate::amg::{AmgSettings, Strength, tridiagonal_max};
use crate::solver::SolveError;
use cudarc::driver::{CudaSlice, DeviceRepr, PushKernelArg, ValidAsZeroBits};

/// A CSR matrix on the device (32-bit row starts and columns: up to
/// 2^32 entries, checked where a count is known).
pub struct DevCsr {
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// Stored entries.
    pub nnz: usize,
    /// Row starts (`rows + 1`).
    pub ptr: CudaSlice<u32>,
    /// Columns, ascending within each row.
    pub col: CudaSlice<u32>,
    /// Values.
    pub val: CudaSlice<f64>,
}

impl DevCsr {
    /// Copies the matrix to the host as `(ptr, col, val)`.
    pub fn download(
        &self,
        dev: &Device,
        report: &mut GpuReport,
    ) -> GResult<(Vec<u32>, Vec<u32>, Vec<f64>)> {
        Ok((
            dev.download(report, "AMG level (check)", &self.ptr, self.rows + 1)?,
            dev.download(report, "AMG level (check)", &self.col, self.nnz)?,
            dev.download(report, "AMG level (check)", &self.val, self.nnz)?,
        ))
    }
}

/// The equilibrated system of AMG-CG on the device: the rows and scaling
/// of [`crate::amg::AmgSystem`] without the renumbering.
pub struct DevAmgSystem {
    /// `D K D` on the coupled rows, both triangles.
    pub a: DevCsr,
    /// `D f` on the coupled rows.
    pub b: CudaSlice<f64>,
    /// The near-null-space vector `1 / d` of the coupled rows.
    pub bnull: CudaSlice<f64>,
    /// `d` of the coupled rows.
    pub dk: CudaSlice<f64>,
    /// Original index of every coupled row.
    pub rows: CudaSlice<u32>,
    /// The decoupled rows' solution (zero on coupled rows), all rows.
    pub direct: CudaSlice<f64>,
    /// `||D f||` over all rows.
    pub b_norm: f64,
    /// `||f||`.
    pub f_norm: f64,
    /// Rows solved directly.
    pub decoupled: usize,
}

/// One level above the coarsest.
pub struct SetupLevel {
    /// The level's operator (double precision).
    pub a: DevCsr,
    /// Its values in single precision.
    pub a32: CudaSlice<f32>,
    /// `1 / a_ii`.
    pub inv_diag: CudaSlice<f64>,
    /// Prolongator from the next level (double precision).
    pub p: DevCsr,
    /// Its values in single precision.
    pub p32: CudaSlice<f32>,
    /// `P^T`.
    pub r: DevCsr,
    /// Its values in single precision.
    pub r32: CudaSlice<f32>,
    /// Aggregate of every row (`u32::MAX`: none).
    pub agg: CudaSlice<u32>,
    /// Aggregates (rows of the next level).
    pub nagg: usize,
    /// Estimated spectral radius of `D^-1 A`.
    pub rho: f64,
    /// Smoother: first scale.
    pub s0: f64,
    /// Smoother steps.
    pub steps: Vec<(f64, f64)>,
}

/// The hierarchy on the device.
pub struct DeviceHierarchy {
    /// Levels above the coarsest, finest first.
    pub levels: Vec<SetupLevel>,
    /// The coarsest operator.
    pub coarse: DevCsr,
    /// The coarsest operator's inverse, dense and row-major (empty when
    /// it has no rows).
    pub coarse_inverse: Vec<f64>,
}

impl DeviceHierarchy {
    /// Rows of every level, finest first.
    pub fn sizes(&self) -> Vec<usize> {
        let mut v: Vec<usize> = self.levels.iter().map(|l| l.a.rows).collect();
        v.push(self.coarse.rows);
        v
    }

    /// Stored entries of all levels over the finest's.
    pub fn operator_complexity(&self) -> f64 {
        let total: usize = self.levels.iter().map(|l| l.a.nnz).sum::<usize>() + self.coarse.nnz;
        let fine = self.levels.first().map_or(self.coarse.nnz, |l| l.a.nnz);
        if fine == 0 {
            1.0
        } else {
            total as f64 / fine as f64
        }
    }

    /// Levels, the coarsest included.
    pub fn levels(&self) -> usize {
        self.levels.len() + 1
    }
}

fn i32n(n: usize, what: &str) -> GResult<i32> {
    i32::try_from(n).map_err(|_| backend_error(format!("{n} {what}: more than 2^31 rows")))
}

fn u32_count(n: u64, what: &str) -> GResult<usize> {
    if n >= u32::MAX as u64 {
        return Err(backend_error(format!(
            "{what}: {n} entries, more than the 2^32 that 32-bit offsets address"
        )));
    }
    Ok(n as usize)
}

fn zeros<T: DeviceRepr + ValidAsZeroBits>(dev: &Device, n: usize) -> GResult<CudaSlice<T>> {
    dev.zeros::<T>(n)
}

/// Exclusive scan of `buf[..len]` (with `buf[len - 1]` the slot for the
/// total's position, zeroed by the caller); returns the total.
fn scan(
    dev: &Device,
    report: &mut GpuReport,
    buf: &mut CudaSlice<u32>,
    len: usize,
) -> GResult<u64> {
    let mut total = zeros::<u64>(dev, 1)?;
    scan_in_place(dev, buf, len, &mut total)?;
    Ok(dev.download(report, "AMG setup sizes", &total, 1)?[0])
}

fn per_item(n: usize) -> cudarc::driver::LaunchConfig {
    launch::per_item(n).config()
}

/// The equilibrated, decoupled system (`AmgSystem::from_full` without
/// the renumbering) from the device system.
pub fn equilibrate(
    dev: &Device,
    report: &mut GpuReport,
    s: &DeviceSystem,
) -> GResult<DevAmgSystem> {
    let n = s.pattern.n;
    let nnz = s.pattern.nnz();
    let n32 = i32n(n, "rows")?;
    dev.reset_flags(report)?;
    let mut kdiag = zeros::<f64>(dev, n)?;
    let mut d = zeros::<f64>(dev, n)?;
    let mut cidx = zeros::<u32>(dev, n + 1)?;
    let mut direct = zeros::<f64>(dev, n)?;
    {
        let mut l = dev.stream.launch_builder(dev.func("qf_as_diag")?);
        l.arg(&n32)
            .arg(&s.rowptr)
            .arg(&s.col)
            .arg(&s.val)
            .arg(&s.f)
            .arg(&mut kdiag)
            .arg(&mut d)
            .arg(&mut cidx)
            .arg(&mut direct)
            .arg(&dev.flags);
        // SAFETY: argument types and buffer sizes match the kernel.
        unsafe { l.launch(per_item(n)) }.ctx("qf_as_diag")?;
    }
    let flags = dev.read_flags(report)?;
    if flags[flag::ZERO_DIAG] != i32::MAX {
        return Err(SolveError::ZeroDiagonal(flags[flag::ZERO_DIAG] as usize).into());
    }
    if flags[flag::NONFINITE] != 0 {
        return Err(SolveError::NonFinite.into());
    }
    let m = scan(dev, report, &mut cidx, n + 1)? as usize;
    let anz = nnz - (n - m);
    let mut rows = zeros::<u32>(dev, m)?;
    let mut arow = zeros::<u32>(dev, m + 1)?;
    let mut b = zeros::<f64>(dev, m)?;
    let mut bnull = zeros::<f64>(dev, m)?;
    let mut dk = zeros::<f64>(dev, m)?;
    {
        let mut l = dev.stream.launch_builder(dev.func("qf_as_compact")?);
        l.arg(&n32)
            .arg(&s.rowptr)
            .arg(&cidx)
            .arg(&d)
            .arg(&s.f)
            .arg(&mut rows)
            .arg(&mut arow)
            .arg(&mut b)
            .arg(&mut bnull)
            .arg(&mut dk);
        // SAFETY: as above.
        unsafe { l.launch(per_item(n)) }.ctx("qf_as_compact")?;
    }
    let mut acol = zeros::<u32>(dev, anz)?;
    let mut aval = zeros::<f64>(dev, anz)?;
    {
        let mut l = dev.stream.launch_builder(dev.func("qf_as_fill")?);
        l.arg(&n32)
            .arg(&s.rowptr)
            .arg(&s.col)
            .arg(&s.val)
            .arg(&d)
            .arg(&cidx)
            .arg(&mut acol)
            .arg(&mut aval)
            .arg(&dev.flags);
        // SAFETY: as above.
        unsafe { l.launch(per_item(n)) }.ctx("qf_as_fill")?;
    }
    let mut out = zeros::<f64>(dev, 2)?;
    {
        let mut l = dev.stream.launch_builder(dev.func("qf_as_sys_norms")?);
        l.arg(&n32)
            .arg(&s.f)
            .arg(&d)
            .arg(&dev.partials)
            .arg(&dev.counter)
            .arg(&mut out);
        // SAFETY: as above; the grid is within the partial-sum buffer.
        unsafe { l.launch(launch::per_row_reduce(n, dev.sms).config()) }.ctx("qf_as_sys_norms")?;
    }
    let norms = dev.download(report, "AMG setup sizes", &out, 2)?;
    if dev.read_flags(report)?[flag::NONFINITE] != 0 {
        return Err(SolveError::NonFinite.into());
    }
    drop((kdiag, d, cidx));
    Ok(DevAmgSystem {
        a: DevCsr {
            rows: m,
            cols: m,
            nnz: anz,
            ptr: arow,
            col: acol,
            val: aval,
        },
        b,
        bnull,
        dk,
        rows,
        direct,
        b_norm: norms[0].sqrt(),
        f_norm: norms[1].sqrt(),
        decoupled: n - m,
    })
}

/// `C = X Y` on the device (`Csr::matmul`, rows sorted). Rows of more
/// than 64 distinct columns are redone with room for 1024; a row longer
/// than that is an error (the caller falls back to the host setup).
fn spgemm(
    dev: &Device,
    report: &mut GpuReport,
    x: &DevCsr,
    y: &DevCsr,
    what: &str,
) -> GResult<DevCsr> {
    let rows = x.rows;
    let r32 = i32n(rows, "rows")?;
    let mut cnt = zeros::<u32>(dev, rows + 1)?;
    let mut over = zeros::<u32>(dev, rows.max(1))?;
    let mut over_n = zeros::<u32>(dev, 2)?;
    let none: Option<&CudaSlice<u32>> = None;
    let count = |cap: u32,
                 nrows: i32,
                 list: Option<&CudaSlice<u32>>,
                 cnt: &mut CudaSlice<u32>,
                 over: &mut CudaSlice<u32>,
                 over_n: &mut CudaSlice<u32>|
     -> GResult<()> {
        let name = format!("qf_as_spgemm_count_c{cap}");
        let mut l = dev.stream.launch_builder(dev.func(&name)?);
        let null = 0u64;
        l.arg(&nrows);
        match list {
            Some(v) => l.arg(v),
            None => l.arg(&null),
        };
        l.arg(&x.ptr)
            .arg(&x.col)
            .arg(&y.ptr)
            .arg(&y.col)
            .arg(cnt)
            .arg(over)
            .arg(over_n);
        // SAFETY: argument types and buffer sizes match the kernel (a null
        // list means every row).
        unsafe { l.launch(per_item(nrows as usize)) }.ctx(&name)?;
        Ok(())
    };
    count(64, r32, none, &mut cnt, &mut over, &mut over_n)?;
    let n_over = dev.download(report, "AMG setup sizes", &over_n, 1)?[0] as usize;
    let mut big: Option<(CudaSlice<u32>, usize)> = None;
    if n_over > 0 {
        let list = dev.stream.clone_dtod(&over.slice(..n_over)).ctx("copy")?;
        let mut over2 = zeros::<u32>(dev, n_over)?;
        let mut over2_n = zeros::<u32>(dev, 1)?;
        count(
            1024,
            i32n(n_over, "rows")?,
            Some(&list),
            &mut cnt,
            &mut over2,
            &mut over2_n,
        )?;
        if dev.download(report, "AMG setup sizes", &over2_n, 1)?[0] > 0 {
            return Err(backend_error(format!(
                "{what}: a row of more than 1024 entries (the device setup's limit)"
            )));
        }
        big = Some((list, n_over));
    }
    let total = u32_count(scan(dev, report, &mut cnt, rows + 1)?, what)?;
    let mut ccol = zeros::<u32>(dev, total)?;
    let mut cval = zeros::<f64>(dev, total)?;
    let fill = |cap: u32,
                nrows: i32,
                list: Option<&CudaSlice<u32>>,
                ccol: &mut CudaSlice<u32>,
                cval: &mut CudaSlice<f64>|
     -> GResult<()> {
        let name = format!("qf_as_spgemm_fill_c{cap}");
        let mut l = dev.stream.launch_builder(dev.func(&name)?);
        let null = 0u64;
        l.arg(&nrows);
        match list {
            Some(v) => l.arg(v),
            None => l.arg(&null),
        };
        l.arg(&x.ptr)
            .arg(&x.col)
            .arg(&x.val)
            .arg(&y.ptr)
            .arg(&y.col)
            .arg(&y.val)
            .arg(&cnt)
            .arg(ccol)
            .arg(cval);
        // SAFETY: as above.
        unsafe { l.launch(per_item(nrows as usize)) }.ctx(&name)?;
        Ok(())
    };
    fill(64, r32, None, &mut ccol, &mut cval)?;
    if let Some((list, k)) = &big {
        fill(1024, i32n(*k, "rows")?, Some(list), &mut ccol, &mut cval)?;
    }
    Ok(DevCsr {
        rows,
        cols: y.cols,
        nnz: total,
        ptr: cnt,
        col: ccol,
        val: cval,
    })
}

/// The transpose of a CSR (`rows` rows, entries keyed by column) with
/// `cols` rows, sorted.
fn transpose(dev: &Device, report: &mut GpuReport, x: &DevCsr) -> GResult<DevCsr> {
    let (ptr, col, val) = transpose_keys(
        dev,
        report,
        x.rows,
        Some(&x.ptr),
        &x.col,
        Some(&x.val),
        x.nnz,
        x.cols,
    )?;
    Ok(DevCsr {
        rows: x.cols,
        cols: x.rows,
        nnz: x.nnz,
        ptr,
        col,
        val: val.expect("values given"),
    })
}

/// Row starts, columns and (when values were given) values of a
/// transpose.
type Grouped = (CudaSlice<u32>, CudaSlice<u32>, Option<CudaSlice<f64>>);

/// Groups the entries of `rows` rows by key (`keys`, one per entry; one
/// entry per row when `ptr` is `None`) into `nkeys` sorted lists.
#[allow(clippy::too_many_arguments)]
fn transpose_keys(
    dev: &Device,
    report: &mut GpuReport,
    rows: usize,
    ptr: Option<&CudaSlice<u32>>,
    keys: &CudaSlice<u32>,
    vals: Option<&CudaSlice<f64>>,
    len: usize,
    nkeys: usize,
) -> GResult<Grouped> {
    let mut tptr = zeros::<u32>(dev, nkeys + 1)?;
    {
        let len64 = len as u64;
        let mut l = dev
            .stream
            .launch_builder(dev.func("qf_as_transpose_count")?);
        l.arg(&len64).arg(keys).arg(&mut tptr);
        // SAFETY: argument types and buffer sizes match the kernel.
        unsafe { l.launch(per_item(len.min(1 << 30))) }.ctx("qf_as_transpose_count")?;
    }
    let total = scan(dev, report, &mut tptr, nkeys + 1)? as usize;
    let mut cursor = zeros::<u32>(dev, nkeys)?;
    let mut tcol = zeros::<u32>(dev, total)?;
    let mut tval = match vals {
        Some(_) => Some(zeros::<f64>(dev, total)?),
        None => None,
    };
    let null = 0u64;
    let rows32 = i32n(rows, "rows")?;
    {
        let mut l = dev.stream.launch_builder(dev.func("qf_as_transpose_fill")?);
        l.arg(&rows32);
        match ptr {
            Some(p) => l.arg(p),
            None => l.arg(&null),
        };
        l.arg(keys);
        match vals {
            Some(v) => l.arg(v),
            None => l.arg(&null),
        };
        l.arg(&tptr).arg(&mut cursor).arg(&mut tcol);
        match tval.as_mut() {
            Some(v) => l.arg(v),
            None => l.arg(&null),
        };
        // SAFETY: as above (null pointers where the kernel accepts them).
        unsafe { l.launch(per_item(rows)) }.ctx("qf_as_transpose_fill")?;
    }
    {
        let nk32 = i32n(nkeys, "rows")?;
        let mut l = dev.stream.launch_builder(dev.func("qf_as_sort_rows")?);
        l.arg(&nk32).arg(&tptr).arg(&mut tcol);
        match tval.as_mut() {
            Some(v) => l.arg(v),
            None => l.arg(&null),
        };
        // SAFETY: as above.
        unsafe { l.launch(per_item(nkeys)) }.ctx("qf_as_sort_rows")?;
    }
    Ok((tptr, tcol, tval))
}

fn to_f32(dev: &Device, v: &CudaSlice<f64>, len: usize) -> GResult<CudaSlice<f32>> {
    let mut out = zeros::<f32>(dev, len)?;
    let len64 = len as u64;
    let mut l = dev.stream.launch_builder(dev.func("qf_as_to_f32")?);
    l.arg(&len64).arg(v).arg(&mut out);
    // SAFETY: argument types and buffer sizes match the kernel.
    unsafe { l.launch(per_item(len.min(1 << 30))) }.ctx("qf_as_to_f32")?;
    Ok(out)
}

/// Largest eigenvalue of `D^-1 A` by `steps` Lanczos steps
/// (`amg::spectral_radius` with the single-precision values): vectors on
/// the device, the tridiagonal's scalars on the host.
#[allow(clippy::too_many_arguments)]
fn spectral_radius(
    dev: &Device,
    report: &mut GpuReport,
    a: &DevCsr,
    a32: &CudaSlice<f32>,
    sq: &CudaSlice<f64>,
    steps: usize,
) -> GResult<f64> {
    let m = a.rows;
    if m == 0 {
        return Ok(1.0);
    }
    let m32 = i32n(m, "rows")?;
    let mut v = zeros::<f64>(dev, m)?;
    let mut vp = zeros::<f64>(dev, m)?;
    let mut w = zeros::<f64>(dev, m)?;
    let mut out = zeros::<f64>(dev, 1)?;
    let mut op = |mode: i32, alpha: f64, beta_prev: f64, beta: f64| -> GResult<Option<f64>> {
        let mut l = dev.stream.launch_builder(dev.func("qf_as_lanczos")?);
        l.arg(&mode)
            .arg(&m32)
            .arg(&a.ptr)
            .arg(&a.col)
            .arg(a32)
            .arg(sq)
            .arg(&mut v)
            .arg(&mut vp)
            .arg(&mut w)
            .arg(&alpha)
            .arg(&beta_prev)
            .arg(&beta)
            .arg(&dev.partials)
            .arg(&dev.counter)
            .arg(&mut out);
        // SAFETY: argument types and buffer sizes match the kernel; the grid
        // is within the partial-sum buffer.
        unsafe { l.launch(launch::per_row_reduce(m, dev.sms).config()) }.ctx("qf_as_lanczos")?;
        Ok(if matches!(mode, 0 | 2 | 3) {
            Some(dev.download(report, "AMG setup sizes", &out, 1)?[0])
        } else {
            None
        })
    };
    let nv = op(0, 0.0, 0.0, 0.0)?.unwrap_or(1.0).sqrt();
    op(1, 0.0, 0.0, nv)?;
    let (mut alphas, mut betas) = (Vec::new(), Vec::new());
    let mut beta_prev = 0.0;
    for _ in 0..steps.max(1) {
        let alpha = op(2, 0.0, 0.0, 0.0)?.unwrap_or(0.0);
        let beta = op(3, alpha, beta_prev, 0.0)?.unwrap_or(0.0).sqrt();
        alphas.push(alpha);
        if beta.is_nan() || beta <= 1e-12 * alpha.abs() {
            break;
        }
        betas.push(beta);
        op(4, 0.0, 0.0, beta)?;
        beta_prev = beta;
    }
    Ok(tridiagonal_max(&alphas, &betas))
}

/// The dense inverse of a small symmetric positive definite CSR (the
/// coarsest level): symmetrised, Cholesky, inverse, row-major.
pub fn dense_inverse(
    n: usize,
    ptr: &[u32],
    col: &[u32],
    val: &[f64],
) -> Result<Vec<f64>, SolveError> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let mut m = nalgebra::DMatrix::<f64>::zeros(n, n);
    for i in 0..n {
        for k in ptr[i] as usize..ptr[i + 1] as usize {
            m[(i, col[k] as usize)] += val[k];
        }
    }
    let m = (&m + m.transpose()) * 0.5;
    let c = nalgebra::Cholesky::new(m).ok_or(SolveError::NotPositiveDefinite {
        method: "AMG coarsest-level Cholesky",
        step: 0,
        n,
    })?;
    let inv = c.inverse();
    let mut out = Vec::with_capacity(n * n);
    for i in 0..n {
        for j in 0..n {
            out.push(inv[(i, j)]);
        }
    }
    Ok(out)
}

/// The aggregation of one level on the device: strength, the distance-2
/// maximal independent set, attachment. Returns the aggregate of every
/// row and the count.
fn aggregate(
    dev: &Device,
    report: &mut GpuReport,
    a: &DevCsr,
    diag: &CudaSlice<f64>,
    settings: &AmgSettings,
) -> GResult<(CudaSlice<u32>, usize)> {
    let m = a.rows;
    let m32 = i32n(m, "rows")?;
    let t2 = settings.theta * settings.theta;
    let negative = i32::from(settings.strength == Strength::Negative);
    let mut sp = zeros::<u32>(dev, m + 1)?;
    {
        let mut l = dev.stream.launch_builder(dev.func("qf_as_strength_count")?);
        l.arg(&m32)
            .arg(&a.ptr)
            .arg(&a.col)
            .arg(&a.val)
            .arg(diag)
            .arg(&t2)
            .arg(&negative)
            .arg(&mut sp);
        // SAFETY: argument types and buffer sizes match the kernel.
        unsafe { l.launch(per_item(m)) }.ctx("qf_as_strength_count")?;
    }
    let snz = scan(dev, report, &mut sp, m + 1)? as usize;
    let mut sj = zeros::<u32>(dev, snz)?;
    {
        let mut l = dev.stream.launch_builder(dev.func("qf_as_strength_fill")?);
        l.arg(&m32)
            .arg(&a.ptr)
            .arg(&a.col)
            .arg(&a.val)
            .arg(diag)
            .arg(&t2)
            .arg(&negative)
            .arg(&sp)
            .arg(&mut sj);
        // SAFETY: as above.
        unsafe { l.launch(per_item(m)) }.ctx("qf_as_strength_fill")?;
    }
    // the set: rounds of two max sweeps and an update
    let mut t = zeros::<u64>(dev, m)?;
    let mut t1 = zeros::<u64>(dev, m)?;
    let mut t2b = zeros::<u64>(dev, m)?;
    {
        let mut l = dev.stream.launch_builder(dev.func("qf_as_mis_init")?);
        l.arg(&m32).arg(&sp).arg(&mut t);
        // SAFETY: as above.
        unsafe { l.launch(per_item(m)) }.ctx("qf_as_mis_init")?;
    }
    let mut left = zeros::<u32>(dev, 1)?;
    for round in 0.. {
        if round > 200 {
            return Err(backend_error(
                "AMG setup: the independent set did not settle in 200 rounds",
            ));
        }
        {
            let mut l = dev.stream.launch_builder(dev.func("qf_as_mis_max")?);
            l.arg(&m32).arg(&sp).arg(&sj).arg(&t).arg(&mut t1);
            // SAFETY: as above.
            unsafe { l.launch(per_item(m)) }.ctx("qf_as_mis_max")?;
            let mut l = dev.stream.launch_builder(dev.func("qf_as_mis_max")?);
            l.arg(&m32).arg(&sp).arg(&sj).arg(&t1).arg(&mut t2b);
            // SAFETY: as above.
            unsafe { l.launch(per_item(m)) }.ctx("qf_as_mis_max")?;
        }
        dev.stream.memset_zeros(&mut left).ctx("memset")?;
        {
            // next state into t1 (free now), then swap
            let mut l = dev.stream.launch_builder(dev.func("qf_as_mis_update")?);
            l.arg(&m32).arg(&t).arg(&t2b).arg(&mut t1).arg(&mut left);
            // SAFETY: as above.
            unsafe { l.launch(per_item(m)) }.ctx("qf_as_mis_update")?;
        }
        std::mem::swap(&mut t, &mut t1);
        if dev.download(report, "AMG setup sizes", &left, 1)?[0] == 0 {
            break;
        }
    }
    drop((t1, t2b));
    // aggregate ids: the roots scanned
    let mut rootid = zeros::<u32>(dev, m + 1)?;
    {
        let mut l = dev.stream.launch_builder(dev.func("qf_as_roots")?);
        l.arg(&m32).arg(&t).arg(&mut rootid);
        // SAFETY: as above.
        unsafe { l.launch(per_item(m)) }.ctx("qf_as_roots")?;
    }
    let nagg = scan(dev, report, &mut rootid, m + 1)? as usize;
    let mut agg0 = zeros::<u32>(dev, m)?;
    let mut agg = zeros::<u32>(dev, m)?;
    dev.stream.memset_zeros(&mut left).ctx("memset")?;
    for pass in [0i32, 1] {
        let (inp, out) = if pass == 0 {
            (&agg, &mut agg0)
        } else {
            (&agg0, &mut agg)
        };
        let mut l = dev.stream.launch_builder(dev.func("qf_as_agg_attach")?);
        l.arg(&m32)
            .arg(&pass)
            .arg(&sp)
            .arg(&sj)
            .arg(&t)
            .arg(&rootid)
            .arg(inp)
            .arg(out)
            .arg(&mut left);
        // SAFETY: as above.
        unsafe { l.launch(per_item(m)) }.ctx("qf_as_agg_attach")?;
    }
    if dev.download(report, "AMG setup sizes", &left, 1)?[0] != 0 {
        return Err(backend_error(
            "AMG setup: nodes left without an aggregate (internal error)",
        ));
    }
    Ok((agg, nagg))
}

/// Builds the hierarchy of `a` (equilibrated, symmetric positive
/// definite) with near-null-space vector `bnull`, as
/// [`crate::amg::Hierarchy::new`] does on the host, every step on the
/// device. The coarsest level is factored on the host.
pub fn build(
    dev: &Device,
    report: &mut GpuReport,
    a: DevCsr,
    bnull: CudaSlice<f64>,
    settings: &AmgSettings,
) -> GResult<DeviceHierarchy> {
    let mut levels: Vec<SetupLevel> = Vec::new();
    let mut a = a;
    let mut bvec = bnull;
    loop {
        let m = a.rows;
        if m <= settings.max_coarse || levels.len() + 1 >= settings.max_levels {
            break;
        }
        let _s = tracing::info_span!("gpu_amg_level", rows = m).entered();
        let m32 = i32n(m, "rows")?;
        dev.reset_flags(report)?;
        let mut diag = zeros::<f64>(dev, m)?;
        let mut inv = zeros::<f64>(dev, m)?;
        let mut sq = zeros::<f64>(dev, m)?;
        {
            let mut l = dev.stream.launch_builder(dev.func("qf_as_inv_diag")?);
            l.arg(&m32)
                .arg(&a.ptr)
                .arg(&a.col)
                .arg(&a.val)
                .arg(&mut diag)
                .arg(&mut inv)
                .arg(&mut sq)
                .arg(&dev.flags);
            // SAFETY: argument types and buffer sizes match the kernel.
            unsafe { l.launch(per_item(m)) }.ctx("qf_as_inv_diag")?;
        }
        let bad = dev.read_flags(report)?[flag::ZERO_DIAG];
        if bad != i32::MAX {
            return Err(SolveError::NotPositiveDefinite {
                method: "AMG setup",
                step: bad as usize,
                n: m,
            }
            .into());
        }
        let (agg, nagg) = aggregate(dev, report, &a, &diag, settings)?;
        if nagg == 0 || nagg >= m {
            break;
        }
        let a32 = to_f32(dev, &a.val, a.nnz)?;
        let rho = spectral_radius(dev, report, &a, &a32, &sq, settings.lanczos_steps)?;
        // tentative prolongator: member lists, norms, t
        let (mptr, members, _) = transpose_keys(dev, report, m, None, &agg, None, m, nagg)?;
        let mut norms = zeros::<f64>(dev, nagg)?;
        {
            let ng = i32n(nagg, "aggregates")?;
            let mut l = dev.stream.launch_builder(dev.func("qf_as_agg_norms")?);
            l.arg(&ng)
                .arg(&mptr)
                .arg(&members)
                .arg(&bvec)
                .arg(&mut norms);
            // SAFETY: as above.
            unsafe { l.launch(per_item(nagg)) }.ctx("qf_as_agg_norms")?;
        }
        drop((mptr, members));
        let mut t = zeros::<f64>(dev, m)?;
        {
            let mut l = dev.stream.launch_builder(dev.func("qf_as_tentative")?);
            l.arg(&m32).arg(&agg).arg(&bvec).arg(&norms).arg(&mut t);
            // SAFETY: as above.
            unsafe { l.launch(per_item(m)) }.ctx("qf_as_tentative")?;
        }
        // smoothed prolongator
        let omega = settings.omega_scale / rho;
        let mut pp = zeros::<u32>(dev, m + 1)?;
        {
            let mut l = dev.stream.launch_builder(dev.func("qf_as_prolong_count")?);
            l.arg(&m32).arg(&a.ptr).arg(&a.col).arg(&agg).arg(&mut pp);
            // SAFETY: as above.
            unsafe { l.launch(per_item(m)) }.ctx("qf_as_prolong_count")?;
        }
        let pnz = u32_count(scan(dev, report, &mut pp, m + 1)?, "prolongator")?;
        let mut pcol = zeros::<u32>(dev, pnz)?;
        let mut pval = zeros::<f64>(dev, pnz)?;
        {
            let mut l = dev.stream.launch_builder(dev.func("qf_as_prolong_fill")?);
            l.arg(&m32)
                .arg(&a.ptr)
                .arg(&a.col)
                .arg(&a.val)
                .arg(&agg)
                .arg(&inv)
                .arg(&t)
                .arg(&omega)
                .arg(&pp)
                .arg(&mut pcol)
                .arg(&mut pval);
            // SAFETY: as above.
            unsafe { l.launch(per_item(m)) }.ctx("qf_as_prolong_fill")?;
        }
        drop(t);
        let p = DevCsr {
            rows: m,
            cols: nagg,
            nnz: pnz,
            ptr: pp,
            col: pcol,
            val: pval,
        };
        let r = transpose(dev, report, &p)?;
        let ac = {
            let ap = spgemm(dev, report, &a, &p, "A P")?;
            dev.sample_memory(report);
            spgemm(dev, report, &r, &ap, "R A P")?
        };
        let (s0, steps) = crate::amg::smoother_coefficients(settings, rho);
        let p32 = to_f32(dev, &p.val, p.nnz)?;
        let r32 = to_f32(dev, &r.val, r.nnz)?;
        dev.sample_memory(report);
        drop((diag, sq));
        levels.push(SetupLevel {
            a,
            a32,
            inv_diag: inv,
            p,
            p32,
            r,
            r32,
            agg,
            nagg,
            rho,
            s0,
            steps,
        });
        a = ac;
        bvec = norms;
    }
    let coarse_inverse = {
        let (ptr, col, val) = a.download(dev, report)?;
        dense_inverse(a.rows, &ptr, &col, &val)?
    };
    Ok(DeviceHierarchy {
        levels,
        coarse: a,
        coarse_inverse,
    })
}
