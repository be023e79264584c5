//! The convergence rule's device side for the Jacobi-CG loops of both
//! strategies ([`crate::solver::Convergence`]): the residual replacement
//! `r = b - A x` in the equilibrated system with its norms
//! ([`true_residual`], `qf_eq_residual` in `kernels/residual.cu`), and the
//! loop state of a (re)start ([`restart`], `qf_cg_restart`): the
//! iteration, the restart iteration and the threshold the device's stop
//! test reads.

use super::device::{Ctx, Device, GResult, backend_error};
use super::launch;
use super::report::GpuReport;
use cudarc::driver::{CudaSlice, PushKernelArg};

/// The buffers the replacement reads and writes.
pub struct Replacement<'a> {
    /// Rows.
    pub n: usize,
    /// Threads per row of the product.
    pub group: u32,
    /// Row starts of the system.
    pub rowptr: &'a CudaSlice<u32>,
    /// Columns.
    pub col: &'a CudaSlice<u32>,
    /// Equilibrated values `D K D`.
    pub vs: &'a CudaSlice<f64>,
    /// The scaling `D`.
    pub d: &'a CudaSlice<f64>,
    /// The unscaled right-hand side `f` (`b = D f`).
    pub f: &'a CudaSlice<f64>,
    /// Jacobi preconditioner (for `r.z`).
    pub inv_diag: &'a CudaSlice<f64>,
    /// The iterate.
    pub x: &'a CudaSlice<f64>,
    /// The residual, replaced.
    pub r: &'a mut CudaSlice<f64>,
    /// The history ring (slot `it` gets `r.r` and `r.z`).
    pub hist: &'a mut CudaSlice<f64>,
    /// Its slots.
    pub ring: usize,
    /// Two doubles read back.
    pub out: &'a mut CudaSlice<f64>,
}

/// `r = b - A x` at iteration `it` (coupled rows; decoupled rows 0);
/// returns `(r.r, r.z)` (one read-back, which the caller counts).
pub fn true_residual(
    st: &Device,
    report: &mut GpuReport,
    a: Replacement<'_>,
    it: usize,
) -> GResult<(f64, f64)> {
    let n32 = i32::try_from(a.n).map_err(|_| backend_error("too many rows"))?;
    let (it32, ring) = (
        i32::try_from(it).map_err(|_| backend_error("too many iterations"))?,
        a.ring as i32,
    );
    let name = format!("qf_eq_residual_g{}", a.group);
    let f = st.func(&name)?;
    let mut l = st.stream.launch_builder(f);
    l.arg(&n32)
        .arg(&it32)
        .arg(&ring)
        .arg(a.rowptr)
        .arg(a.col)
        .arg(a.vs)
        .arg(a.d)
        .arg(a.f)
        .arg(a.inv_diag)
        .arg(a.x)
        .arg(&mut *a.r)
        .arg(&st.partials)
        .arg(&st.counter)
        .arg(&mut *a.hist)
        .arg(&mut *a.out);
    let shape = launch::per_row_group_reduce(a.n, a.group, st.sms);
    // SAFETY: argument types and buffer sizes match the kernel; the grid
    // is within the partial-sum buffer.
    unsafe { l.launch(shape.config()) }.ctx(&name)?;
    let v = st.download(report, "true residual", a.out, 2)?;
    Ok((v[0], v[1]))
}

/// Sets the device loop state for a (re)start at iteration `it` with
/// threshold `atol` (no waiting).
pub fn restart(st: &Device, ctl: &mut CudaSlice<f64>, it: usize, atol: f64) -> GResult<()> {
    let it32 = i32::try_from(it).map_err(|_| backend_error("too many iterations"))?;
    let f = st.func("qf_cg_restart")?;
    let mut l = st.stream.launch_builder(f);
    l.arg(&it32).arg(&atol).arg(&st.flags).arg(&mut *ctl);
    let one = launch::Shape { grid: 1, block: 32 };
    // SAFETY: argument types and buffer sizes match the kernel.
    unsafe { l.launch(one.config()) }.ctx("qf_cg_restart")?;
    Ok(())
}
