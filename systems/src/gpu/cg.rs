//! The linear solve on the device: equilibration, the Jacobi-PCG loop of
//! [`solver::pcg`](crate::solver::pcg) in two strategies, the way back to
//! `u`, and the true residual.
//!
//! The custom loop keeps every scalar on the device and lets the host look
//! only every `check_every` iterations: it launches a chunk of iterations
//! blindly, then reads the residual history of the chunk. The kernels stop
//! doing anything once the stopping rule holds (a device flag), so the
//! history up to that point is exact and [`scan_chunk`] finds the very
//! iteration the serial loop stops at. [`run_chunked`] is that host loop,
//! written against [`ChunkDevice`] so that it is tested on the CPU with an
//! emulated device.

use super::device::{Ctx, Device, GResult, backend_error};
use super::kernels::{HIST, flag};
use super::launch;
pub use super::loop_ctl::{
    ChunkDevice, ChunkOutcome, LoopEnd, LoopInput, positive, run_chunked, scan_chunk,
};
use super::pattern::DeviceSystem;
use super::persistent::{self, CgLoop, PERSISTENT_CHUNKS};
use super::report::GpuReport;
use super::vendor::{self, VendorBuffers, VendorLibs};
use super::{GpuCgOptions, GpuSolveStrategy};
use crate::solver::{CgSettings, Residuals, SolveError, SolveStats};
use cudarc::driver::{CudaSlice, PushKernelArg};
use std::time::Instant;

/// What the solve phase produces.
#[derive(Debug, Clone)]
pub struct GpuSolveOutcome {
    /// Potential per node.
    pub u: Vec<f64>,
    /// Iterations and convergence (the same fields as the serial solve).
    pub stats: SolveStats,
    /// `||f - K u|| / ||f||`.
    pub true_residual: f64,
    /// `||D (f - K u)|| / ||D f||` ([`Residuals`]).
    pub equilibrated_residual: f64,
}

/// Device buffers of one solve.
struct SolveBuffers {
    diag: CudaSlice<u32>,
    d: CudaSlice<f64>,
    vs: CudaSlice<f64>,
    inv_diag: CudaSlice<f64>,
    x: CudaSlice<f64>,
    r: CudaSlice<f64>,
    p: CudaSlice<f64>,
    /// 16-bit column offsets, when the numbering's bandwidth allows.
    dcol: Option<CudaSlice<i16>>,
    q: CudaSlice<f64>,
    hist: CudaSlice<f64>,
    scal: CudaSlice<f64>,
}

/// The custom strategy's device: three kernels per iteration.
struct CustomDevice<'a> {
    st: &'a Device,
    sys: &'a DeviceSystem,
    b: &'a mut SolveBuffers,
    report: &'a mut GpuReport,
    n: usize,
    ring: usize,
    group: u32,
    atol: f64,
    /// The persistent kernel, when it drives the loop.
    persistent: Option<persistent::PersistentCg>,
}

impl ChunkDevice for CustomDevice<'_> {
    fn chunk(&mut self, it0: usize, n: usize) -> GResult<()> {
        let Some(pc) = self.persistent.as_mut() else {
            for it in it0..it0 + n {
                self.iterate(it)?;
            }
            return Ok(());
        };
        if n == 0 {
            return Ok(());
        }
        let b = &mut *self.b;
        let args = persistent::PersistentArgs {
            n: self.n,
            rowptr: &self.sys.rowptr,
            col: &self.sys.col,
            dcol: b.dcol.as_ref(),
            vs: &b.vs,
            inv_diag: &b.inv_diag,
            x: &mut b.x,
            r: &mut b.r,
            p: &mut b.p,
            q: &mut b.q,
            hist: &mut b.hist,
            ring: self.ring,
            atol: self.atol,
        };
        pc.launch(self.st, args, it0, n)
    }

    fn iterate(&mut self, it: usize) -> GResult<()> {
        let st = self.st;
        let s = self.sys;
        let (n, it32, ring) = (self.n as i32, it as i32, self.ring as i32);
        let b = &mut *self.b;
        {
            let f = st.kernels.get("qf_cg_direction")?;
            let mut l = st.stream.launch_builder(f);
            l.arg(&n)
                .arg(&it32)
                .arg(&ring)
                .arg(&b.r)
                .arg(&b.inv_diag)
                .arg(&mut b.p)
                .arg(&b.hist)
                .arg(&st.flags)
                .arg(&self.atol);
            // one wave of blocks, several rows a thread: the stop test's
            // reads (flag, history) are per thread, so fewer threads
            // spend less on them (ncu on the 1.3M venturi: 20 us at one
            // row a thread)
            let shape = launch::per_row_reduce(self.n, st.sms);
            // SAFETY: argument types and buffer sizes match the kernel.
            unsafe { l.launch(shape.config()) }.ctx("qf_cg_direction")?;
        }
        {
            let name = match b.dcol {
                Some(_) => format!("qf_cg_spmv16_g{}", self.group),
                None => format!("qf_cg_spmv_g{}", self.group),
            };
            let f = st.kernels.get(&name)?;
            let mut l = st.stream.launch_builder(f);
            l.arg(&n).arg(&it32).arg(&ring).arg(&s.rowptr);
            match &b.dcol {
                Some(d) => l.arg(d),
                None => l.arg(&s.col),
            };
            l.arg(&b.vs)
                .arg(&b.p)
                .arg(&mut b.q)
                .arg(&st.partials)
                .arg(&st.counter)
                .arg(&mut b.hist)
                .arg(&st.flags);
            let shape = launch::per_row_group_reduce(self.n, self.group, st.sms);
            // SAFETY: argument types and buffer sizes match the kernel.
            unsafe { l.launch(shape.config()) }.ctx("qf_cg_spmv")?;
        }
        {
            let f = st.kernels.get("qf_cg_update")?;
            let mut l = st.stream.launch_builder(f);
            l.arg(&n)
                .arg(&it32)
                .arg(&ring)
                .arg(&b.p)
                .arg(&b.q)
                .arg(&b.inv_diag)
                .arg(&mut b.x)
                .arg(&mut b.r)
                .arg(&st.partials)
                .arg(&st.counter)
                .arg(&mut b.hist)
                .arg(&st.flags);
            let shape = launch::per_row_reduce(self.n, st.sms);
            // SAFETY: argument types and buffer sizes match the kernel.
            unsafe { l.launch(shape.config()) }.ctx("qf_cg_update")?;
        }
        Ok(())
    }

    fn read(&mut self) -> GResult<(Vec<f64>, Option<usize>)> {
        let hist = self
            .st
            .download(self.report, "CG history", &self.b.hist, self.ring * HIST)?;
        let flags = self.st.read_flags(self.report)?;
        let b = flags[flag::BREAKDOWN];
        Ok((hist, (b > 0).then(|| b as usize - 1)))
    }
}

/// DRAM bytes of one custom CG iteration (kernels/README.md): the matrix
/// (value and 32- or 16-bit column per entry, a row start per row) and
/// the vector traffic of the three kernels (direction 32 B, SpMV 16 B,
/// update 56 B per row), gathered vectors counted once.
pub fn custom_bytes_per_iteration(n: usize, nnz: usize, short_columns: bool) -> usize {
    let per_entry = if short_columns { 10 } else { 12 };
    per_entry * nnz + (4 + 32 + 16 + 56) * n
}

/// The raw `||f - K u|| / ||f||` and the equilibrated `||D (f - K u)|| /
/// ||D f||` relative residuals ([`Residuals`], norms alone where `f = 0`)
/// of the device system for the device vector `u` of `n` rows, `group`
/// threads per row; `res` (4 doubles) receives the four sums.
pub fn device_true_residual(
    st: &Device,
    s: &DeviceSystem,
    report: &mut GpuReport,
    u: &CudaSlice<f64>,
    n: usize,
    group: u32,
    res: &mut CudaSlice<f64>,
) -> GResult<Residuals> {
    let n32 = i32::try_from(n).map_err(|_| backend_error("too many rows"))?;
    let f = st.kernels.get(&format!("qf_residual_g{group}"))?;
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
    let shape = launch::per_row_group_reduce(n, group, st.sms);
    // SAFETY: argument types and buffer sizes match the kernel.
    unsafe { l.launch(shape.config()) }.ctx("qf_residual")?;
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

/// Equilibrated Jacobi-PCG on the device system `sys`; returns the
/// outcome (with `u` downloaded) and `u` on the device.
#[allow(clippy::too_many_arguments)]
pub fn solve(
    st: &Device,
    sys: &DeviceSystem,
    vendor_libs: Option<&VendorLibs>,
    report: &mut GpuReport,
    cg: &CgSettings,
    strategy: GpuSolveStrategy,
    options: &GpuCgOptions,
    progress: &mut dyn FnMut(usize, f64) -> bool,
) -> GResult<(GpuSolveOutcome, CudaSlice<f64>)> {
    let t0 = Instant::now();
    report.strategy = Some(strategy);
    let (n, nnz, decoupled, mean_row) = (
        sys.pattern.n,
        sys.pattern.nnz(),
        sys.pattern.decoupled_rows(),
        sys.pattern.mean_row(),
    );
    let n32 = i32::try_from(n).map_err(|_| backend_error("too many rows"))?;
    let cg_loop = options.cg_loop.resolve(n);
    let check_every = match cg_loop {
        CgLoop::Persistent => options.check_every.max(1) * PERSISTENT_CHUNKS,
        _ => options.check_every.max(1),
    };
    let ring = launch::history_ring(check_every);
    let group = match options.spmv_group {
        Some(g) if super::kernels::SPMV_GROUPS.contains(&g) => g,
        Some(g) => {
            return Err(backend_error(format!(
                "spmv_group = {g}: must be one of {:?}",
                super::kernels::SPMV_GROUPS
            )));
        }
        None => launch::spmv_group(mean_row),
    };
    report.spmv_group = group;
    let mut b = SolveBuffers {
        diag: st.zeros(n)?,
        d: st.zeros(n)?,
        vs: st.zeros(nnz)?,
        inv_diag: st.zeros(n)?,
        x: st.zeros(n)?,
        r: st.zeros(n)?,
        p: st.zeros(n)?,
        dcol: None,
        q: st.zeros(n)?,
        hist: st.zeros(ring * HIST)?,
        scal: st.zeros(4)?,
    };
    st.reset_flags(report)?;
    report.sample_memory(&st.ctx);
    {
        let s = sys;
        let f = st.kernels.get("qf_eq_diag")?;
        let mut l = st.stream.launch_builder(f);
        l.arg(&n32)
            .arg(&s.rowptr)
            .arg(&s.col)
            .arg(&s.val)
            .arg(&mut b.diag)
            .arg(&mut b.d)
            .arg(&st.flags);
        // SAFETY: argument types and buffer sizes match the kernel.
        unsafe { l.launch(launch::per_item(n).config()) }.ctx("qf_eq_diag")?;
        let f = st.kernels.get("qf_eq_scale_init")?;
        let mut l = st.stream.launch_builder(f);
        l.arg(&n32)
            .arg(&s.rowptr)
            .arg(&s.col)
            .arg(&s.val)
            .arg(&b.diag)
            .arg(&b.d)
            .arg(&s.f)
            .arg(&mut b.vs)
            .arg(&mut b.inv_diag)
            .arg(&mut b.x)
            .arg(&mut b.r)
            .arg(&mut b.p)
            .arg(&st.partials)
            .arg(&st.counter)
            .arg(&mut b.hist)
            .arg(&mut b.scal)
            .arg(&st.flags);
        // SAFETY: argument types and buffer sizes match the kernel.
        unsafe { l.launch(launch::per_row_reduce(n, st.sms).config()) }.ctx("qf_eq_scale_init")?;
    }
    if strategy == GpuSolveStrategy::Custom && nnz > 0 {
        // 16-bit column offsets where the numbering allows (largest
        // |col - row| below 2^15)
        let s = sys;
        let mut dcol = st.zeros::<i16>(nnz)?;
        let mut bw = st.zeros::<u32>(1)?;
        let f = st.kernels.get("qf_cg_delta_cols")?;
        let mut l = st.stream.launch_builder(f);
        l.arg(&n32)
            .arg(&s.rowptr)
            .arg(&s.col)
            .arg(&mut dcol)
            .arg(&mut bw);
        // SAFETY: argument types and buffer sizes match the kernel.
        unsafe { l.launch(launch::per_item(n).config()) }.ctx("qf_cg_delta_cols")?;
        let bw = st.download(report, "bandwidth", &bw, 1)?[0];
        report.bandwidth = bw as usize;
        if bw <= i16::MAX as u32 && options.short_columns {
            b.dcol = Some(dcol);
            report.short_columns = true;
        }
    }
    let flags = st.read_flags(report)?;
    if flags[flag::ZERO_DIAG] != i32::MAX {
        return Err(SolveError::ZeroDiagonal(flags[flag::ZERO_DIAG] as usize).into());
    }
    if flags[flag::NONFINITE] != 0 {
        return Err(SolveError::NonFinite.into());
    }
    let scal = st.download(report, "CG scalars", &b.scal, 1)?;
    let b_norm2 = scal[0];
    if !b_norm2.is_finite() {
        return Err(SolveError::NonFinite.into());
    }
    let b_norm = b_norm2.sqrt();
    let input = LoopInput {
        n,
        nnz,
        atol: cg.rtol * b_norm,
        b_norm,
        max_iter: cg.max_iter,
    };
    let mut stats = SolveStats {
        cg_rows: n - decoupled,
        cg_stored: (nnz - decoupled + (n - decoupled)) / 2,
        decoupled_rows: decoupled,
        setup_seconds: t0.elapsed().as_secs_f64(),
        ..Default::default()
    };
    let t_loop = Instant::now();
    let end = if b_norm == 0.0 {
        LoopEnd::converged(0, 0.0)
    } else {
        match strategy {
            GpuSolveStrategy::Custom => {
                report.cg_loop = Some(cg_loop.name());
                let persistent = match cg_loop {
                    CgLoop::Persistent => persistent::PersistentCg::new(st, group)?,
                    _ => None,
                };
                if cg_loop == CgLoop::Persistent && persistent.is_none() {
                    report.cg_loop = Some(CgLoop::Launches.name());
                }
                let mut dev = CustomDevice {
                    st,
                    sys,
                    b: &mut b,
                    report,
                    n,
                    ring,
                    group,
                    atol: input.atol,
                    persistent,
                };
                let (end, reads) = run_chunked(&mut dev, ring, check_every, &input, progress)?;
                report.host_syncs += reads;
                end
            }
            GpuSolveStrategy::Vendor => {
                let mut z = st.zeros::<f64>(n)?;
                let s = sys;
                let libs = vendor_libs.ok_or_else(|| {
                    backend_error("the vendor strategy's libraries are not loaded")
                })?;
                let bufs = VendorBuffers {
                    rowptr: &s.rowptr,
                    col: &s.col,
                    vs: &b.vs,
                    inv_diag: &b.inv_diag,
                    x: &mut b.x,
                    r: &mut b.r,
                    p: &mut b.p,
                    q: &mut b.q,
                    z: &mut z,
                };
                vendor::run(libs, &st.stream, bufs, &input, report, progress)?
            }
        }
    };
    if let Some((iteration, pap)) = end.breakdown {
        return Err(SolveError::Breakdown { iteration, pap }.into());
    }
    stats.iterations = end.iterations;
    stats.solve_seconds = t_loop.elapsed().as_secs_f64();
    if strategy == GpuSolveStrategy::Custom {
        stats.bytes_per_iteration = custom_bytes_per_iteration(n, nnz, b.dcol.is_some());
    }
    stats.converged = end.converged;
    stats.recurrence_residual = if b_norm == 0.0 {
        0.0
    } else {
        end.rr.sqrt() / b_norm
    };

    // u = D x~ (decoupled rows: f / K_ii), then ||f - K u|| / ||f||.
    let mut u = st.zeros::<f64>(n)?;
    let mut res = st.zeros::<f64>(4)?;
    {
        let s = sys;
        let f = st.kernels.get("qf_unscale")?;
        let mut l = st.stream.launch_builder(f);
        l.arg(&n32)
            .arg(&s.rowptr)
            .arg(&b.diag)
            .arg(&s.val)
            .arg(&b.d)
            .arg(&b.x)
            .arg(&s.f)
            .arg(&mut u);
        // SAFETY: argument types and buffer sizes match the kernel.
        unsafe { l.launch(launch::per_item(n).config()) }.ctx("qf_unscale")?;
    }
    let residuals = device_true_residual(st, sys, report, &u, n, group, &mut res)?;
    let u_host = st.download(report, "solution", &u, n)?;
    Ok((
        GpuSolveOutcome {
            u: u_host,
            stats,
            true_residual: residuals.raw,
            equilibrated_residual: residuals.equilibrated,
        },
        u,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_of_one_iteration() {
        // 12 B per entry and 108 B per row; 16-bit columns save 2 B per entry
        assert_eq!(custom_bytes_per_iteration(10, 100, false), 1200 + 1080);
        assert_eq!(custom_bytes_per_iteration(10, 100, true), 1000 + 1080);
    }
}
