//! The convergence rule's device side for the GPU loops
//! ([`crate::solver::Convergence`], as `solver::pcg` applies it): at a
//! check the CG correction is folded into the iterate (`qf_cg_fold`: the
//! iterate is `base + x`, `x` restarted from zero), the residual
//! `b - A base` of the equilibrated system replaces the recurrence's
//! (`qf_eq_residual`, in double-double), and the rule judges the
//! residual the run reports: that of `u = D base` on the original system
//! (`qf_unscale`, then [`device_true_residual`], double-double too).
//! [`restart`] sets the loop state of a (re)start (`qf_cg_restart`): the
//! iteration, the restart iteration and the threshold the device's stop
//! test reads.

use super::device::{Ctx, Device, GResult, backend_error};
use super::launch;
use super::pattern::DeviceSystem;
use super::report::GpuReport;
use crate::solver::Residuals;
use cudarc::driver::{CudaSlice, PushKernelArg};

fn rows32(n: usize) -> GResult<i32> {
    i32::try_from(n).map_err(|_| backend_error("too many rows"))
}

/// The raw `||f - K u|| / ||f||` and the equilibrated `||D (f - K u)|| /
/// ||D f||` relative residuals ([`Residuals`], norms alone where `f = 0`)
/// of the device system for the device vector `u` of `n` rows, `f - K u`
/// in double-double (`qf_residual`, as `solver::residuals`); `res` (4
/// doubles) receives the four sums.
pub fn device_true_residual(
    st: &Device,
    s: &DeviceSystem,
    report: &mut GpuReport,
    u: &CudaSlice<f64>,
    n: usize,
    res: &mut CudaSlice<f64>,
) -> GResult<Residuals> {
    let n32 = rows32(n)?;
    let f = st.func("qf_residual")?;
    let mut l = st.stream.launch_builder(f);
    l.arg(&n32)
        .arg(&s.rowptr)
        .arg(&s.col)
        .arg(&s.val)
        .arg(u)
        .arg(&s.f)
        .arg(&st.partials)
        .arg(&st.counter)
        .arg(&mut *res);
    // SAFETY: argument types and buffer sizes match the kernel; the grid
    // is within the partial-sum buffer.
    unsafe { l.launch(launch::per_row_reduce(n, st.sms).config()) }.ctx("qf_residual")?;
    let r = st.download(report, "true residual", res, 4)?;
    let ratio = |num: f64, den: f64| {
        if den == 0.0 {
            num.sqrt()
        } else {
            (num / den).sqrt()
        }
    };
    Ok(Residuals {
        raw: ratio(r[0], r[1]),
        equilibrated: ratio(r[2], r[3]),
    })
}

/// `base += x`, `x = 0` over `n` rows (no waiting).
pub fn fold(
    st: &Device,
    n: usize,
    x: &mut CudaSlice<f64>,
    base: &mut CudaSlice<f64>,
) -> GResult<()> {
    let n32 = rows32(n)?;
    let f = st.func("qf_cg_fold")?;
    let mut l = st.stream.launch_builder(f);
    l.arg(&n32).arg(x).arg(base);
    // SAFETY: argument types and buffer sizes match the kernel.
    unsafe { l.launch(launch::per_item(n).config()) }.ctx("qf_cg_fold")?;
    Ok(())
}

/// `u = D x~` on the coupled rows, `f / K_ii` on the decoupled ones
/// (`qf_unscale`; `diag` holds the diagonal slots, `d` the scaling; no
/// waiting).
pub fn unscale(
    st: &Device,
    s: &DeviceSystem,
    diag: &CudaSlice<u32>,
    d: &CudaSlice<f64>,
    x: &CudaSlice<f64>,
    u: &mut CudaSlice<f64>,
) -> GResult<()> {
    let n = s.pattern.n;
    let n32 = rows32(n)?;
    let f = st.func("qf_unscale")?;
    let mut l = st.stream.launch_builder(f);
    l.arg(&n32)
        .arg(&s.rowptr)
        .arg(diag)
        .arg(&s.val)
        .arg(d)
        .arg(x)
        .arg(&s.f)
        .arg(u);
    // SAFETY: argument types and buffer sizes match the kernel.
    unsafe { l.launch(launch::per_item(n).config()) }.ctx("qf_unscale")?;
    Ok(())
}

/// The buffers a check of the Jacobi-CG loops reads and writes.
pub struct Replacement<'a> {
    /// The system (original values `K`, `f`).
    pub sys: &'a DeviceSystem,
    /// Equilibrated values `D K D`.
    pub vs: &'a CudaSlice<f64>,
    /// Diagonal slots (for the decoupled rows' direct solution).
    pub diag: &'a CudaSlice<u32>,
    /// The scaling `D`.
    pub d: &'a CudaSlice<f64>,
    /// Jacobi preconditioner (for `r.z`).
    pub inv_diag: &'a CudaSlice<f64>,
    /// The CG correction, folded and zeroed.
    pub x: &'a mut CudaSlice<f64>,
    /// The iterate without the correction (`base`).
    pub base: &'a mut CudaSlice<f64>,
    /// The residual, replaced.
    pub r: &'a mut CudaSlice<f64>,
    /// The history ring (slot `it` gets `r.r` and `r.z`).
    pub hist: &'a mut CudaSlice<f64>,
    /// Its slots.
    pub ring: usize,
    /// Two doubles read back.
    pub out: &'a mut CudaSlice<f64>,
    /// `u` of the iterate.
    pub u: &'a mut CudaSlice<f64>,
    /// The four sums of its residuals.
    pub res: &'a mut CudaSlice<f64>,
}

/// What a check found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Checked {
    /// `r.r` of the replaced residual `b - A base` (equilibrated).
    pub rr: f64,
    /// The residuals of `u = D base` on the original system: the
    /// equilibrated one is what the rule judges and the run reports.
    pub residuals: Residuals,
}

/// A check at iteration `it`: fold, replace the residual, unscale and
/// compute the residuals of `u` (two read-backs, which the caller counts).
pub fn check(
    st: &Device,
    report: &mut GpuReport,
    a: Replacement<'_>,
    it: usize,
) -> GResult<Checked> {
    let n = a.sys.pattern.n;
    fold(st, n, a.x, a.base)?;
    let n32 = rows32(n)?;
    let (it32, ring) = (
        i32::try_from(it).map_err(|_| backend_error("too many iterations"))?,
        a.ring as i32,
    );
    {
        let f = st.func("qf_eq_residual")?;
        let mut l = st.stream.launch_builder(f);
        l.arg(&n32)
            .arg(&it32)
            .arg(&ring)
            .arg(&a.sys.rowptr)
            .arg(&a.sys.col)
            .arg(a.vs)
            .arg(a.d)
            .arg(&a.sys.f)
            .arg(a.inv_diag)
            .arg(&*a.base)
            .arg(&mut *a.r)
            .arg(&st.partials)
            .arg(&st.counter)
            .arg(&mut *a.hist)
            .arg(&mut *a.out);
        // SAFETY: argument types and buffer sizes match the kernel; the
        // grid is within the partial-sum buffer.
        unsafe { l.launch(launch::per_row_reduce(n, st.sms).config()) }.ctx("qf_eq_residual")?;
    }
    let rr = st.download(report, "true residual", a.out, 1)?[0];
    unscale(st, a.sys, a.diag, a.d, a.base, a.u)?;
    let residuals = device_true_residual(st, a.sys, report, a.u, n, a.res)?;
    Ok(Checked { rr, residuals })
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

/// `qf_dd_sub_prod` of `common.cuh` on the CPU, operation for operation
/// (the product's error from one fused multiply-add), for the tests.
pub fn dd_sub_prod_twin(hi: &mut f64, lo: &mut f64, a: f64, x: f64) {
    let p = a * x;
    let pe = a.mul_add(x, -p);
    let s = *hi + -p;
    let bb = s - *hi;
    let se = (*hi - (s - bb)) + (-p - bb);
    *hi = s;
    *lo += se - pe;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sparse::Dd;

    #[test]
    fn the_device_double_double_is_the_hosts_bit_for_bit() {
        // rows of a residual: b minus products of every magnitude, with
        // heavy cancellation (b equal to the sum of the products)
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        for row in 0..2000 {
            let len = 1 + row % 21;
            let terms: Vec<(f64, f64)> = (0..len)
                .map(|k| {
                    let scale = [1.0, 1e6, 1e-6, 1e12][(row + k) % 4];
                    (next() * scale, next() * 3.0)
                })
                .collect();
            let exact: f64 = terms.iter().map(|(a, x)| a * x).sum();
            let b = if row % 2 == 0 { exact } else { next() };
            let mut host = Dd::new(b);
            let (mut hi, mut lo) = (b, 0.0);
            for &(a, x) in &terms {
                host.sub_prod(a, x);
                dd_sub_prod_twin(&mut hi, &mut lo, a, x);
            }
            assert_eq!((hi + lo).to_bits(), host.value().to_bits(), "row {row}");
        }
    }
}
