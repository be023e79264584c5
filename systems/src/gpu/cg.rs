//! The linear solve on the device: equilibration, the Jacobi-PCG loop of
//! [`solver::pcg`](crate::solver::pcg) in two strategies, the way back to
//! `u`, and the true residual.
//!
//! The custom loop keeps every scalar and the loop's state (iteration,
//! restart, threshold) on the device and lets the host look only every
//! `check_every` iterations: it launches a chunk of iterations blindly,
//! then reads the residual history of the chunk. The kernels stop doing
//! anything once the stopping test holds (a device flag), so the history
//! up to that point is exact and [`scan_chunk`] finds the very iteration
//! the serial loop stops at; there the true residual is recomputed on the
//! device and judged by the convergence rule every solver shares
//! ([`crate::solver::Convergence`]). [`run_chunked`] is that host loop,
//! written against [`ChunkDevice`] so that it is tested on the CPU with an
//! emulated device.
//!
//! A chunk is launched as one CUDA graph ([`CgLoop::Graph`], the default):
//! the kernels of `check_every` iterations are captured once per solve on
//! a side stream (their arguments are the same at every iteration: the
//! state they differ by lives on the device) and the graph is replayed on
//! the backend's stream, one launch per chunk instead of two or three per
//! iteration. An iteration is two kernels (the SpMV forms the direction
//! on the fly; below `FUSED_MAX_ROWS` rows by default) or three (a
//! direction kernel first); the arithmetic is the same bit for bit.

use super::device::{Ctx, Device, GResult, backend_error};
use super::kernels::{HIST, ctl, flag};
use super::launch;
pub use super::loop_ctl::{
    ChunkDevice, ChunkOutcome, LoopEnd, LoopInput, positive, run_chunked, scan_chunk,
};
use super::pattern::DeviceSystem;
use super::persistent::{self, CgLoop, PERSISTENT_CHUNKS};
pub use super::replace::device_true_residual;
use super::replace::{self, Replacement};
use super::report::GpuReport;
use super::vendor::{self, VendorBuffers, VendorLibs};
use super::{GpuCgOptions, GpuSolveStrategy};
use crate::solver::{CgSettings, Convergence, SolveError, SolveStats};
use cudarc::driver::sys::{CUgraphInstantiate_flags, CUstreamCaptureMode};
use cudarc::driver::{CudaGraph, CudaSlice, CudaStream, PushKernelArg};
use std::sync::Arc;
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
    /// The CG correction: the iterate is `base + x` (folded at checks).
    x: CudaSlice<f64>,
    base: CudaSlice<f64>,
    r: CudaSlice<f64>,
    /// The direction (the three-kernel iteration and the persistent
    /// kernel), or the first of the pair the two-kernel iteration
    /// alternates between.
    p: CudaSlice<f64>,
    /// The pair's second buffer (the two-kernel iteration only).
    p2: CudaSlice<f64>,
    /// 16-bit column offsets, when the numbering's bandwidth allows.
    dcol: Option<CudaSlice<i16>>,
    q: CudaSlice<f64>,
    hist: CudaSlice<f64>,
    scal: CudaSlice<f64>,
    /// The loop's control values (`kernels::ctl`).
    ctl: CudaSlice<f64>,
    /// The residual replacement's two sums.
    out: CudaSlice<f64>,
    /// `u` of the iterate, and the four sums of its residuals.
    u: CudaSlice<f64>,
    res: CudaSlice<f64>,
}

impl SolveBuffers {
    fn replacement<'a>(&'a mut self, sys: &'a DeviceSystem, ring: usize) -> Replacement<'a> {
        Replacement {
            sys,
            vs: &self.vs,
            diag: &self.diag,
            d: &self.d,
            inv_diag: &self.inv_diag,
            x: &mut self.x,
            base: &mut self.base,
            r: &mut self.r,
            hist: &mut self.hist,
            ring,
            out: &mut self.out,
            u: &mut self.u,
            res: &mut self.res,
        }
    }
}

/// The custom strategy's device: two or three kernels per iteration,
/// launched one by one, replayed from a graph per chunk, or the
/// persistent kernel.
struct CustomDevice<'a> {
    st: &'a Device,
    sys: &'a DeviceSystem,
    b: &'a mut SolveBuffers,
    report: &'a mut GpuReport,
    n: usize,
    ring: usize,
    group: u32,
    /// Two kernels per iteration (the SpMV forms the direction).
    fused: bool,
    /// Chunks of this many iterations are captured as a graph (0: none).
    graph_len: usize,
    /// The captured chunk, once captured.
    graph: Option<CudaGraph>,
    /// The persistent kernel, when it drives the loop.
    persistent: Option<persistent::PersistentCg>,
}

impl CustomDevice<'_> {
    /// Enqueues one iteration's kernels on `stream` (the backend's, or
    /// the side stream a graph is captured on). Every argument is the
    /// same at every iteration.
    fn enqueue(&mut self, stream: &Arc<CudaStream>) -> GResult<()> {
        let st = self.st;
        let s = self.sys;
        let (n, ring) = (self.n as i32, self.ring as i32);
        let b = &mut *self.b;
        let spmv_name = match (self.fused, b.dcol.is_some()) {
            (true, true) => format!("qf_cg_spmvd16_g{}", self.group),
            (true, false) => format!("qf_cg_spmvd_g{}", self.group),
            (false, true) => format!("qf_cg_spmv16_g{}", self.group),
            (false, false) => format!("qf_cg_spmv_g{}", self.group),
        };
        if !self.fused {
            let f = st.kernels.get("qf_cg_direction")?;
            let mut l = stream.launch_builder(f);
            l.arg(&n)
                .arg(&ring)
                .arg(&b.r)
                .arg(&b.inv_diag)
                .arg(&mut b.p)
                .arg(&b.hist)
                .arg(&st.flags)
                .arg(&b.ctl);
            // one wave of blocks, several rows a thread: the stop test's
            // reads (flag, history) are per thread, so fewer threads
            // spend less on them (ncu on the 1.3M venturi: 20 us at one
            // row a thread)
            let shape = launch::per_row_reduce(self.n, st.sms);
            // SAFETY: argument types and buffer sizes match the kernel.
            unsafe { l.launch(shape.config()) }.ctx("qf_cg_direction")?;
        }
        {
            let f = st.kernels.get(&spmv_name)?;
            let mut l = stream.launch_builder(f);
            l.arg(&n).arg(&ring).arg(&s.rowptr);
            match &b.dcol {
                Some(d) => l.arg(d),
                None => l.arg(&s.col),
            };
            l.arg(&b.vs);
            if self.fused {
                l.arg(&b.r).arg(&b.inv_diag).arg(&b.p).arg(&b.p2);
            } else {
                l.arg(&b.p);
            }
            l.arg(&mut b.q)
                .arg(&st.partials)
                .arg(&st.counter)
                .arg(&mut b.hist)
                .arg(&st.flags);
            if self.fused {
                l.arg(&b.ctl);
            }
            let shape = launch::per_row_group_reduce(self.n, self.group, st.sms);
            // SAFETY: argument types and buffer sizes match the kernel
            // (the pair p, p2 both hold n doubles).
            unsafe { l.launch(shape.config()) }.ctx(&spmv_name)?;
        }
        {
            let f = st.kernels.get("qf_cg_update")?;
            let mut l = stream.launch_builder(f);
            let pb = if self.fused { &b.p2 } else { &b.p };
            l.arg(&n)
                .arg(&ring)
                .arg(&b.p)
                .arg(pb)
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

    /// Captures `graph_len` iterations as a graph on a side stream (the
    /// backend's stream is the legacy default stream, which cannot be
    /// captured), instantiated and uploaded for the backend's stream.
    fn capture(&mut self) -> GResult<CudaGraph> {
        let side = self
            .st
            .ctx
            .new_stream()
            .ctx("creating the stream the CG graph is captured on")?;
        side.begin_capture(CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
            .ctx("cuStreamBeginCapture")?;
        let mut enqueued = Ok(());
        for _ in 0..self.graph_len {
            enqueued = self.enqueue(&side);
            if enqueued.is_err() {
                break;
            }
        }
        // the capture ends whatever happened
        let graph = side.end_capture(CUgraphInstantiate_flags(0));
        enqueued?;
        let graph = graph
            .ctx("cuStreamEndCapture / cuGraphInstantiate")?
            .ok_or_else(|| backend_error("the captured CG graph is empty"))?;
        // SAFETY: an instantiated graph of this context, uploaded on the
        // stream it will be launched on.
        unsafe {
            cudarc::driver::result::graph::upload(graph.cu_graph_exec(), self.st.stream.cu_stream())
        }
        .ctx("cuGraphUpload")?;
        Ok(graph)
    }

    /// Launches the captured chunk on the backend's stream; `Ok(false)`
    /// when there is no graph to launch (never captured, or the capture
    /// failed: the caller launches the iterations one by one).
    fn launch_graph(&mut self) -> GResult<bool> {
        if self.graph.is_none() && self.graph_len > 0 {
            match self.capture() {
                Ok(g) => self.graph = Some(g),
                Err(e) => {
                    // a driver without graph support for this (or a
                    // capture refused): the same iterations, launched
                    tracing::warn!(
                        "capturing the CG iterations as a graph failed ({e}); launching them one by one"
                    );
                    self.report.cg_graph_error = Some(e.to_string());
                    self.report.cg_loop = Some(CgLoop::Launches.name());
                    self.graph_len = 0;
                    return Ok(false);
                }
            }
        }
        let Some(g) = &self.graph else {
            return Ok(false);
        };
        // SAFETY: an instantiated graph of this context, launched on a
        // stream of the same context; the buffers it names outlive the
        // solve (the caller synchronizes before they go).
        let launched = unsafe {
            cudarc::driver::result::graph::launch(g.cu_graph_exec(), self.st.stream.cu_stream())
        };
        match launched {
            Ok(()) => {
                self.report.cg_graph_launches += 1;
                Ok(true)
            }
            // refused at the first launch (nothing was enqueued): the
            // iterations one by one from here on
            Err(e) if self.report.cg_graph_launches == 0 => {
                tracing::warn!(
                    "launching the CG graph failed ({e:?}); launching the iterations one by one"
                );
                self.report.cg_graph_error = Some(format!("cuGraphLaunch: {e:?}"));
                self.report.cg_loop = Some(CgLoop::Launches.name());
                self.graph = None;
                self.graph_len = 0;
                Ok(false)
            }
            Err(e) => Err(e).ctx("cuGraphLaunch"),
        }
    }
}

impl ChunkDevice for CustomDevice<'_> {
    fn chunk(&mut self, it0: usize, n: usize) -> GResult<()> {
        if n == 0 {
            return Ok(());
        }
        if let Some(pc) = self.persistent.as_mut() {
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
                ctl: &b.ctl,
            };
            return pc.launch(self.st, args, it0, n);
        }
        if n == self.graph_len && self.launch_graph()? {
            return Ok(());
        }
        for it in it0..it0 + n {
            self.iterate(it)?;
        }
        Ok(())
    }

    fn iterate(&mut self, _it: usize) -> GResult<()> {
        // the iteration number is the device's (flags[ITER])
        let stream = self.st.stream.clone();
        self.enqueue(&stream)
    }

    fn read(&mut self) -> GResult<(Vec<f64>, Option<usize>)> {
        let hist = self
            .st
            .download(self.report, "CG history", &self.b.hist, self.ring * HIST)?;
        let flags = self.st.read_flags(self.report)?;
        let b = flags[flag::BREAKDOWN];
        Ok((hist, (b > 0).then(|| b as usize - 1)))
    }

    fn true_residual(&mut self, it: usize) -> GResult<(f64, f64)> {
        let a = self.b.replacement(self.sys, self.ring);
        let c = replace::check(self.st, self.report, a, it)?;
        // two read-backs; run_chunked counts one
        self.report.host_syncs += 1;
        Ok((c.rr, c.residuals.equilibrated))
    }

    fn restart(&mut self, it: usize, atol: f64) -> GResult<()> {
        replace::restart(self.st, &mut self.b.ctl, it, atol)
    }
}

/// DRAM bytes of one custom CG iteration (kernels/README.md): the matrix
/// (value and 32- or 16-bit column per entry, a row start per row) and
/// the vector traffic, gathered vectors counted once: three kernels
/// (direction 32 B, SpMV 16 B, update 56 B per row) or two (the SpMV
/// reading `r`, `1/diag` and the old direction and writing the new one
/// and `q`, 40 B; update 56 B).
pub fn custom_bytes_per_iteration(n: usize, nnz: usize, short_columns: bool, fused: bool) -> usize {
    let per_entry = if short_columns { 10 } else { 12 };
    let per_row = if fused { 4 + 40 + 56 } else { 4 + 32 + 16 + 56 };
    per_entry * nnz + per_row * n
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
    // the two-kernel iteration on the launched or graph loop only (the
    // persistent kernel forms the direction in its own pass)
    let fused = strategy == GpuSolveStrategy::Custom
        && options
            .fuse_direction
            .unwrap_or(n < super::options::FUSED_MAX_ROWS)
        && cg_loop != CgLoop::Persistent;
    let mut b = SolveBuffers {
        diag: st.zeros(n)?,
        d: st.zeros(n)?,
        vs: st.zeros(nnz)?,
        inv_diag: st.zeros(n)?,
        x: st.zeros(n)?,
        base: st.zeros(n)?,
        r: st.zeros(n)?,
        p: st.zeros(n)?,
        p2: st.zeros(if fused { n } else { 1 })?,
        dcol: None,
        q: st.zeros(n)?,
        hist: st.zeros(ring * HIST)?,
        scal: st.zeros(4)?,
        ctl: st.zeros(ctl::LEN)?,
        out: st.zeros(2)?,
        u: st.zeros(n)?,
        res: st.zeros(4)?,
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
        rtol: cg.rtol,
        b_norm,
        max_iter: cg.max_iter,
    };
    let mut rule = Convergence::new(cg.rtol);
    // the loop's device state: iteration 0, a start there, the first
    // target
    replace::restart(st, &mut b.ctl, 0, rule.target() * b_norm)?;
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
                report.cg_kernels = if persistent.is_some() {
                    1
                } else if fused {
                    2
                } else {
                    3
                };
                let mut dev = CustomDevice {
                    st,
                    sys,
                    b: &mut b,
                    report,
                    n,
                    ring,
                    group,
                    fused,
                    graph_len: if cg_loop == CgLoop::Graph {
                        check_every
                    } else {
                        0
                    },
                    graph: None,
                    persistent,
                };
                let (end, reads) =
                    run_chunked(&mut dev, ring, check_every, &input, &mut rule, progress)?;
                dev.report.host_syncs += reads;
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
                let mut check = |it: usize, x: &mut CudaSlice<f64>, r: &mut CudaSlice<f64>| {
                    let a = Replacement {
                        sys: s,
                        vs: &b.vs,
                        diag: &b.diag,
                        d: &b.d,
                        inv_diag: &b.inv_diag,
                        x,
                        base: &mut b.base,
                        r,
                        hist: &mut b.hist,
                        ring,
                        out: &mut b.out,
                        u: &mut b.u,
                        res: &mut b.res,
                    };
                    let c = replace::check(st, report, a, it)?;
                    Ok((c.rr, c.residuals.equilibrated))
                };
                let (end, syncs) =
                    vendor::run(libs, st, bufs, &input, &mut rule, &mut check, progress)?;
                report.host_syncs += syncs;
                end
            }
        }
    };
    if let Some((iteration, pap)) = end.breakdown {
        return Err(SolveError::Breakdown { iteration, pap }.into());
    }
    stats.iterations = end.iterations;
    stats.solve_seconds = t_loop.elapsed().as_secs_f64();
    if strategy == GpuSolveStrategy::Custom {
        stats.bytes_per_iteration = custom_bytes_per_iteration(n, nnz, b.dcol.is_some(), fused);
    }
    let recurrence = if b_norm == 0.0 {
        0.0
    } else {
        end.rr.sqrt() / b_norm
    };
    rule.finish(&mut stats, end.verdict, recurrence);

    // the iterate base + x, u = D x~ (decoupled rows: f / K_ii), then
    // ||f - K u|| / ||f|| (after a converged check x is zero and u the
    // very u the rule judged)
    replace::fold(st, n, &mut b.x, &mut b.base)?;
    let mut u = b.u;
    replace::unscale(st, sys, &b.diag, &b.d, &b.base, &mut u)?;
    let residuals = device_true_residual(st, sys, report, &u, n, &mut b.res)?;
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
        assert_eq!(
            custom_bytes_per_iteration(10, 100, false, false),
            1200 + 1080
        );
        assert_eq!(
            custom_bytes_per_iteration(10, 100, true, false),
            1000 + 1080
        );
        // the two-kernel iteration: no direction pass (32 B), the SpMV
        // reads r, 1/diag and p_old and writes p (24 B more)
        assert_eq!(custom_bytes_per_iteration(10, 100, true, true), 1000 + 1000);
    }
}
