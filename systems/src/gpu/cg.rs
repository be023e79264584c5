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

use super::device::{Ctx, GResult, GpuState, backend_error};
use super::kernels::{HIST, flag};
use super::launch;
use super::vendor::{self, VendorBuffers, VendorLibs};
use super::{GpuCgOptions, GpuReport, GpuSolveStrategy};
use crate::solver::{CgSettings, SolveError, SolveStats};
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
}

/// The fixed inputs of a CG loop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoopInput {
    /// Rows (all of them, decoupled ones included).
    pub n: usize,
    /// Stored entries of the full matrix.
    pub nnz: usize,
    /// Absolute stopping threshold `rtol ||b||`.
    pub atol: f64,
    /// `||b||`.
    pub b_norm: f64,
    /// Iteration cap.
    pub max_iter: usize,
}

/// How a CG loop ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoopEnd {
    /// Iterations done (matrix-vector products).
    pub iterations: usize,
    /// Whether the stopping rule held.
    pub converged: bool,
    /// `r.r` at the end.
    pub rr: f64,
    /// `(iteration, p.Ap)` where `p.Ap <= 0` stopped the loop.
    pub breakdown: Option<(usize, f64)>,
}

impl LoopEnd {
    /// Stopped by the rule at the top of iteration `it`.
    pub fn converged(it: usize, rr: f64) -> Self {
        Self {
            iterations: it,
            converged: true,
            rr,
            breakdown: None,
        }
    }

    /// Hit the cap.
    pub fn capped(it: usize, rr: f64) -> Self {
        Self {
            iterations: it,
            converged: false,
            rr,
            breakdown: None,
        }
    }

    /// Broke down in iteration `it`.
    pub fn breakdown(it: usize, pq: f64) -> Self {
        Self {
            iterations: it,
            converged: false,
            rr: f64::NAN,
            breakdown: Some((it, pq)),
        }
    }
}

/// `x > 0`, false for NaN: the curvature test of CG (a NaN `p.Ap` is a
/// breakdown too, as in the serial solver).
pub fn positive(x: f64) -> bool {
    x > 0.0
}

/// What one chunk of the residual history says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkOutcome {
    /// The stopping rule holds at the top of this iteration.
    Converged(usize),
    /// CG broke down in this iteration.
    Breakdown(usize),
    /// Neither: launch the next chunk.
    Continue,
}

/// Scans iterations `from..=to` for the first whose residual meets the
/// stopping rule (`sqrt(rr(it)) < atol`, SciPy's and the serial test).
/// Entries after a breakdown at iteration `b` are never written, so the
/// scan stops at `b`.
pub fn scan_chunk(
    rr: impl Fn(usize) -> f64,
    from: usize,
    to: usize,
    atol: f64,
    breakdown: Option<usize>,
) -> ChunkOutcome {
    let last = breakdown.map_or(to, |b| b.min(to));
    if let Some(it) = (from..=last).find(|&it| rr(it).sqrt() < atol) {
        return ChunkOutcome::Converged(it);
    }
    match breakdown {
        Some(b) => ChunkOutcome::Breakdown(b),
        None => ChunkOutcome::Continue,
    }
}

/// The device side of the chunked loop.
pub trait ChunkDevice {
    /// Enqueues iteration `it` (no waiting).
    fn iterate(&mut self, it: usize) -> GResult<()>;
    /// Waits for the queued iterations; returns the history ring
    /// ([`HIST`] doubles per slot: `r.r`, `r.z`, `p.q`) and the iteration
    /// of a breakdown, if any.
    fn read(&mut self) -> GResult<(Vec<f64>, Option<usize>)>;
}

/// Host loop of the custom strategy: chunks of `check_every` iterations,
/// one read-back per chunk, exact iteration count. `progress` is called at
/// every multiple of 50 iterations, as the serial solver does. Returns the
/// end and the number of read-backs.
pub fn run_chunked(
    dev: &mut dyn ChunkDevice,
    ring: usize,
    check_every: usize,
    input: &LoopInput,
    progress: &mut dyn FnMut(usize, f64) -> bool,
) -> GResult<(LoopEnd, usize)> {
    let check_every = check_every.max(1);
    assert!(ring >= launch::history_ring(check_every));
    let mut it0 = 0usize;
    let mut reads = 0usize;
    loop {
        let n = check_every.min(input.max_iter.saturating_sub(it0));
        for it in it0..it0 + n {
            dev.iterate(it)?;
        }
        let (hist, breakdown) = dev.read()?;
        reads += 1;
        let rr = |it: usize| hist[(it % ring) * HIST];
        let outcome = scan_chunk(rr, it0, it0 + n, input.atol, breakdown);
        let upto = match outcome {
            ChunkOutcome::Converged(c) => c,
            ChunkOutcome::Breakdown(b) => b,
            ChunkOutcome::Continue => it0 + n,
        };
        for k in (it0 + 1..=upto).filter(|k| k % 50 == 0) {
            if !progress(k, rr(k).sqrt() / input.b_norm) {
                return Err(SolveError::Interrupted { iteration: k }.into());
            }
        }
        match outcome {
            ChunkOutcome::Converged(c) => return Ok((LoopEnd::converged(c, rr(c)), reads)),
            ChunkOutcome::Breakdown(b) => {
                let pq = hist[(b % ring) * HIST + 2];
                return Ok((LoopEnd::breakdown(b, pq), reads));
            }
            ChunkOutcome::Continue => {}
        }
        it0 += n;
        if it0 >= input.max_iter {
            return Ok((LoopEnd::capped(it0, rr(it0)), reads));
        }
    }
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
    st: &'a GpuState,
    b: &'a mut SolveBuffers,
    report: &'a mut GpuReport,
    n: usize,
    ring: usize,
    group: u32,
    atol: f64,
}

impl ChunkDevice for CustomDevice<'_> {
    fn iterate(&mut self, it: usize) -> GResult<()> {
        let st = self.st;
        let s = st
            .system
            .as_ref()
            .ok_or_else(|| backend_error("no system"))?;
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

/// `||f - K u|| / ||f||` (`||f - K u||` where `f = 0`) of the device
/// system for the device vector `u` of `n` rows, `group` threads per row;
/// `res` (2 doubles) receives the two sums.
pub fn device_true_residual(
    st: &GpuState,
    report: &mut GpuReport,
    u: &CudaSlice<f64>,
    n: usize,
    group: u32,
    res: &mut CudaSlice<f64>,
) -> GResult<f64> {
    let s = st
        .system
        .as_ref()
        .ok_or_else(|| backend_error("no assembled system on the device"))?;
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
    let r = st.download(report, "true residual", res, 2)?;
    Ok(if r[1] == 0.0 {
        r[0].sqrt()
    } else {
        (r[0] / r[1]).sqrt()
    })
}

/// Equilibrated Jacobi-PCG on the device system; `u` is left on the
/// device (`st.u`) and downloaded once.
pub fn solve(
    st: &mut GpuState,
    report: &mut GpuReport,
    cg: &CgSettings,
    strategy: GpuSolveStrategy,
    options: &GpuCgOptions,
    progress: &mut dyn FnMut(usize, f64) -> bool,
) -> GResult<GpuSolveOutcome> {
    let t0 = Instant::now();
    report.strategy = Some(strategy);
    if strategy == GpuSolveStrategy::Vendor && st.vendor.is_none() {
        st.vendor = Some(VendorLibs::new(&st.stream)?);
    }
    let (n, nnz, decoupled, mean_row) = {
        let s = st
            .system
            .as_ref()
            .ok_or_else(|| backend_error("no assembled system on the device"))?;
        (
            s.pattern.n,
            s.pattern.nnz(),
            s.pattern.decoupled_rows(),
            s.pattern.mean_row(),
        )
    };
    let n32 = i32::try_from(n).map_err(|_| backend_error("too many rows"))?;
    let check_every = options.check_every.max(1);
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
        let s = st.system.as_ref().unwrap();
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
        let s = st.system.as_ref().unwrap();
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
                let st_ref: &GpuState = st;
                let mut dev = CustomDevice {
                    st: st_ref,
                    b: &mut b,
                    report,
                    n,
                    ring,
                    group,
                    atol: input.atol,
                };
                let (end, reads) = run_chunked(&mut dev, ring, check_every, &input, progress)?;
                report.host_syncs += reads;
                end
            }
            GpuSolveStrategy::Vendor => {
                let mut z = st.zeros::<f64>(n)?;
                let s = st.system.as_ref().unwrap();
                let libs = st.vendor.as_ref().unwrap();
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
    let mut res = st.zeros::<f64>(2)?;
    {
        let s = st.system.as_ref().unwrap();
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
    let true_residual = device_true_residual(st, report, &u, n, group, &mut res)?;
    let u_host = st.download(report, "solution", &u, n)?;
    st.u = Some(u);
    Ok(GpuSolveOutcome {
        u: u_host,
        stats,
        true_residual,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CPU emulation of the three CG kernels with the device's stop-flag
    /// semantics, on a dense SPD matrix.
    struct Emulated {
        a: Vec<Vec<f64>>,
        inv_diag: Vec<f64>,
        x: Vec<f64>,
        r: Vec<f64>,
        p: Vec<f64>,
        q: Vec<f64>,
        hist: Vec<f64>,
        ring: usize,
        atol: f64,
        stop: bool,
        breakdown: Option<usize>,
        launched: usize,
    }

    impl Emulated {
        fn new(a: Vec<Vec<f64>>, b: &[f64], ring: usize, atol: f64) -> Self {
            let n = b.len();
            let inv_diag: Vec<f64> = (0..n).map(|i| 1.0 / a[i][i]).collect();
            let mut hist = vec![f64::NAN; ring * HIST];
            hist[0] = b.iter().map(|v| v * v).sum();
            hist[1] = b.iter().zip(&inv_diag).map(|(v, d)| v * v * d).sum();
            Self {
                a,
                inv_diag,
                x: vec![0.0; n],
                r: b.to_vec(),
                p: vec![0.0; n],
                q: vec![0.0; n],
                hist,
                ring,
                atol,
                stop: false,
                breakdown: None,
                launched: 0,
            }
        }
        fn h(&self, it: usize, k: usize) -> f64 {
            self.hist[(it % self.ring) * HIST + k]
        }
    }

    impl ChunkDevice for Emulated {
        fn iterate(&mut self, it: usize) -> GResult<()> {
            self.launched += 1;
            let n = self.r.len();
            // qf_cg_direction
            if self.stop {
                return Ok(());
            }
            if self.h(it, 0).sqrt() < self.atol {
                self.stop = true;
                return Ok(());
            }
            let beta = if it == 0 {
                0.0
            } else {
                self.h(it, 1) / self.h(it - 1, 1)
            };
            for i in 0..n {
                self.p[i] = self.r[i] * self.inv_diag[i] + beta * self.p[i];
            }
            // qf_cg_spmv
            let mut pq = 0.0;
            for i in 0..n {
                self.q[i] = (0..n).map(|j| self.a[i][j] * self.p[j]).sum();
                pq += self.p[i] * self.q[i];
            }
            self.hist[(it % self.ring) * HIST + 2] = pq;
            // qf_cg_update
            if !positive(pq) {
                self.stop = true;
                self.breakdown = Some(it);
                return Ok(());
            }
            let alpha = self.h(it, 1) / pq;
            let (mut rr, mut rz) = (0.0, 0.0);
            for i in 0..n {
                self.x[i] += alpha * self.p[i];
                self.r[i] -= alpha * self.q[i];
                rr += self.r[i] * self.r[i];
                rz += self.r[i] * self.r[i] * self.inv_diag[i];
            }
            let s = ((it + 1) % self.ring) * HIST;
            self.hist[s] = rr;
            self.hist[s + 1] = rz;
            Ok(())
        }
        fn read(&mut self) -> GResult<(Vec<f64>, Option<usize>)> {
            Ok((self.hist.clone(), self.breakdown))
        }
    }

    fn spd(n: usize, shift: f64) -> Vec<Vec<f64>> {
        (0..n)
            .map(|i| {
                (0..n)
                    .map(|j| {
                        if i == j {
                            2.0 + shift + 0.1 * (i % 7) as f64
                        } else if i.abs_diff(j) == 1 {
                            -1.0
                        } else {
                            0.0
                        }
                    })
                    .collect()
            })
            .collect()
    }

    /// The reference: one iteration at a time, checking after each.
    fn reference(a: Vec<Vec<f64>>, b: &[f64], atol: f64, max_iter: usize) -> (usize, bool) {
        let mut dev = Emulated::new(a, b, 3, atol);
        let mut it = 0;
        loop {
            if dev.h(it, 0).sqrt() < atol {
                return (it, true);
            }
            if it >= max_iter {
                return (it, false);
            }
            dev.iterate(it).unwrap();
            it += 1;
        }
    }

    #[test]
    fn chunked_loop_gives_the_exact_iteration_count() {
        let n = 60;
        let b: Vec<f64> = (0..n).map(|i| ((i * 7) % 11) as f64 - 5.0).collect();
        let bn = b.iter().map(|v| v * v).sum::<f64>().sqrt();
        for rtol in [1e-2, 1e-6, 1e-10] {
            let atol = rtol * bn;
            let (expect, conv) = reference(spd(n, 0.0), &b, atol, 10_000);
            assert!(conv);
            for k in [1, 2, 3, 7, 32, 1000] {
                let ring = launch::history_ring(k);
                let mut dev = Emulated::new(spd(n, 0.0), &b, ring, atol);
                let input = LoopInput {
                    n,
                    nnz: n * n,
                    atol,
                    b_norm: bn,
                    max_iter: 10_000,
                };
                let mut calls = vec![];
                let (end, reads) = run_chunked(&mut dev, ring, k, &input, &mut |i, r| {
                    calls.push((i, r));
                    true
                })
                .unwrap();
                assert!(end.converged);
                assert_eq!(end.iterations, expect, "rtol {rtol} check every {k}");
                assert!(end.rr.sqrt() < atol);
                assert_eq!(reads, expect.div_ceil(k).max(1));
                // iterations past convergence were launched but did nothing
                assert!(dev.launched >= expect);
                assert_eq!(calls.len(), expect / 50);
            }
        }
    }

    #[test]
    fn cap_and_zero_cap() {
        let n = 200;
        let b = vec![1.0; n];
        let bn = (n as f64).sqrt();
        // atol 0: the rule can never hold, only the cap stops the loop
        for (cap, k) in [(5, 32), (5, 2), (64, 32), (0, 32)] {
            let ring = launch::history_ring(k);
            let mut dev = Emulated::new(spd(n, 0.0), &b, ring, 0.0);
            let input = LoopInput {
                n,
                nnz: n * n,
                atol: 0.0,
                b_norm: bn,
                max_iter: cap,
            };
            let (end, _) = run_chunked(&mut dev, ring, k, &input, &mut |_, _| true).unwrap();
            assert!(!end.converged);
            assert_eq!(end.iterations, cap);
            assert_eq!(dev.launched, cap);
            let (_, conv) = reference(spd(n, 0.0), &b, 0.0, cap);
            assert!(!conv);
        }
    }

    #[test]
    fn breakdown_is_found_at_its_iteration() {
        // an indefinite matrix: CG breaks down
        let n = 12;
        let mut a = spd(n, 0.0);
        for (i, row) in a.iter_mut().enumerate() {
            row[i] = if i % 2 == 0 { 0.5 } else { -3.0 };
        }
        let b = vec![1.0; n];
        for k in [1, 4, 32] {
            let ring = launch::history_ring(k);
            let mut dev = Emulated::new(a.clone(), &b, ring, 1e-12);
            let input = LoopInput {
                n,
                nnz: n * n,
                atol: 1e-12,
                b_norm: 1.0,
                max_iter: 100,
            };
            let (end, _) = run_chunked(&mut dev, ring, k, &input, &mut |_, _| true).unwrap();
            let (it, pq) = end.breakdown.expect("breaks down");
            assert_eq!(Some(it), dev.breakdown);
            assert!(!positive(pq));
            assert!(!end.converged);
        }
    }

    #[test]
    fn bytes_of_one_iteration() {
        // 12 B per entry and 108 B per row; 16-bit columns save 2 B per entry
        assert_eq!(custom_bytes_per_iteration(10, 100, false), 1200 + 1080);
        assert_eq!(custom_bytes_per_iteration(10, 100, true), 1000 + 1080);
    }

    #[test]
    fn scan_stops_at_first_hit_and_at_breakdown() {
        let rr = |it: usize| [9.0, 4.0, 1.0, 0.25, 0.0][it];
        assert_eq!(scan_chunk(rr, 0, 4, 1.0, None), ChunkOutcome::Converged(3));
        assert_eq!(scan_chunk(rr, 0, 2, 1.0, None), ChunkOutcome::Continue);
        assert_eq!(
            scan_chunk(rr, 0, 4, 1.0, Some(2)),
            ChunkOutcome::Breakdown(2)
        );
        assert_eq!(scan_chunk(rr, 4, 4, 1.0, None), ChunkOutcome::Converged(4));
        // sqrt(rr) < atol, strictly
        assert_eq!(scan_chunk(rr, 0, 4, 0.5, None), ChunkOutcome::Converged(4));
        // NaN never converges
        assert_eq!(
            scan_chunk(|_| f64::NAN, 0, 3, 1.0, None),
            ChunkOutcome::Continue
        );
    }
}
