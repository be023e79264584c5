//! AMG-CG on the device: the smoothed-aggregation hierarchy is built on
//! the host ([`crate::amg::Hierarchy`], in parallel on the host's cores)
//! from the matrix the device assembled, uploaded once, and CG with the
//! V-cycle as preconditioner runs on the device (`kernels/amg.cu`).
//!
//! The V-cycle is a *program*: [`cycle_program`] lists the operations of
//! one cycle ([`CycleOp`]) in the order of the host's `Hierarchy::vcycle`,
//! and the device executes it operation by operation, one kernel each. A
//! unit test runs the same program on the CPU with the host's matrices and
//! checks it against the host's own cycle, so the program is tested where
//! there is no GPU.
//!
//! The CG loop mirrors [`crate::amg::amg_pcg`] (same stopping rule on the
//! recurrence residual and on the residual of the original system, same
//! checks and restarts) with its scalars read back to the host: three
//! small reads per iteration (`p.q`, the residual norms, `r.z`), which at
//! 40 to 60 iterations cost far less than the cycles.

use super::GpuReport;
use super::cg::{GpuSolveOutcome, device_true_residual};
use super::device::{Ctx, GResult, GpuState, backend_error};
use super::launch;
use crate::amg::{AmgSettings, AmgSystem, CheckOutcome, Csr, Hierarchy, ResidualCheck};
use crate::solver::{CgSettings, Exec, SolveError, SolveStats};
use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};
use std::rc::Rc;
use std::time::Instant;

/// One operation of a V-cycle on level `l` (0 the finest). `d` buffers
/// are named by `from` (0 or 1): a Chebyshev step reads `d[from]` and
/// writes `d[1 - from]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CycleOp {
    /// `x = 0`, `r = b`, `d[0] = s0 D^-1 b` (first pre-sweep).
    ZeroStart(usize),
    /// `d[0] = s0 D^-1 r` (later sweeps).
    ResidualStart(usize),
    /// `r = b - A x`, `d[0] = s0 D^-1 r` (first post-sweep).
    ComputeStart(usize),
    /// Chebyshev step `k` of level `l` from `d[from]`: `x += d`,
    /// `r -= A d`, `d' = c1 d + c2 D^-1 r`.
    Step {
        /// Level.
        l: usize,
        /// Step index into the level's coefficients.
        k: usize,
        /// Buffer holding `d`.
        from: usize,
    },
    /// `x += d[from]`, `r -= A d[from]` (last step, residual kept).
    LastKeep(usize, usize),
    /// `x += d[from]` (last step of the last post-sweep).
    LastAdd(usize, usize),
    /// `x = 0`, `r = b` (no pre-smoothing).
    ZeroCopy(usize),
    /// `b_{l+1} = R_l r_l`.
    Restrict(usize),
    /// `x_L = A_L^-1 b_L` on the coarsest level `L`.
    Coarse,
    /// `x_l += P_l x_{l+1}`.
    Prolong(usize),
}

fn sweep_ops(ops: &mut Vec<CycleOp>, l: usize, start: CycleOp, steps: usize, keep_r: bool) {
    ops.push(start);
    let mut from = 0;
    for k in 0..steps {
        ops.push(CycleOp::Step { l, k, from });
        from = 1 - from;
    }
    ops.push(if keep_r {
        CycleOp::LastKeep(l, from)
    } else {
        CycleOp::LastAdd(l, from)
    });
}

/// The operations of one V-cycle with a zero initial guess over levels
/// with `steps[l]` Chebyshev steps each (`steps.len()` levels above the
/// coarsest), `pre` and `post` sweeps: the order of the host's
/// `Hierarchy::vcycle`.
pub fn cycle_program(steps: &[usize], pre: usize, post: usize) -> Vec<CycleOp> {
    let mut ops = Vec::new();
    for (l, &s) in steps.iter().enumerate() {
        for k in 0..pre {
            let start = if k == 0 {
                CycleOp::ZeroStart(l)
            } else {
                CycleOp::ResidualStart(l)
            };
            sweep_ops(&mut ops, l, start, s, true);
        }
        if pre == 0 {
            ops.push(CycleOp::ZeroCopy(l));
        }
        ops.push(CycleOp::Restrict(l));
    }
    ops.push(CycleOp::Coarse);
    for (l, &s) in steps.iter().enumerate().rev() {
        ops.push(CycleOp::Prolong(l));
        for k in 0..post {
            let start = if k == 0 {
                CycleOp::ComputeStart(l)
            } else {
                CycleOp::ResidualStart(l)
            };
            sweep_ops(&mut ops, l, start, s, k + 1 < post);
        }
    }
    ops
}

/// A sparsity pattern on the device (32-bit row starts and columns),
/// shared between matrices of the same pattern (the finest operator in
/// double precision for CG and in single precision for the cycle).
#[derive(Clone)]
struct DevPattern {
    n: usize,
    rowptr: Rc<CudaSlice<u32>>,
    col: Rc<CudaSlice<u32>>,
    /// Threads per row of its products.
    group: u32,
}

/// A matrix on the device.
struct DevMat<T> {
    pat: DevPattern,
    val: CudaSlice<T>,
}

fn rowptr32(a: &Csr) -> GResult<Vec<u32>> {
    a.rowptr()
        .iter()
        .map(|&v| u32::try_from(v))
        .collect::<Result<_, _>>()
        .map_err(|_| backend_error("AMG level with more than 2^32 entries"))
}

fn upload_pattern(st: &GpuState, report: &mut GpuReport, a: &Csr) -> GResult<DevPattern> {
    let n = a.nrows();
    let mean = if n == 0 {
        0.0
    } else {
        a.nnz() as f64 / n as f64
    };
    Ok(DevPattern {
        n,
        rowptr: Rc::new(st.upload(report, "AMG hierarchy", &rowptr32(a)?)?),
        col: Rc::new(st.upload(report, "AMG hierarchy", a.cols())?),
        group: launch::spmv_group(mean),
    })
}

/// Uploads `vals` on `a`'s pattern (`pat`, if already on the device).
fn upload_mat<T: cudarc::driver::DeviceRepr + Copy + Default>(
    st: &GpuState,
    report: &mut GpuReport,
    a: &Csr,
    vals: &[T],
    pat: Option<&DevPattern>,
) -> GResult<DevMat<T>> {
    let pat = match pat {
        Some(p) => p.clone(),
        None => upload_pattern(st, report, a)?,
    };
    Ok(DevMat {
        pat,
        val: st.upload(report, "AMG hierarchy", vals)?,
    })
}

/// One level above the coarsest on the device, with its work vectors.
struct DevLevel {
    a: DevMat<f32>,
    p: DevMat<f32>,
    r: DevMat<f32>,
    inv_diag: CudaSlice<f64>,
    s0: f64,
    steps: Vec<(f64, f64)>,
    res: CudaSlice<f64>,
    d: [CudaSlice<f64>; 2],
}

/// The hierarchy on the device.
struct DevHierarchy {
    levels: Vec<DevLevel>,
    /// Right-hand side and correction of every level (index 0 unused:
    /// the finest level's are the caller's).
    b: Vec<CudaSlice<f64>>,
    x: Vec<CudaSlice<f64>>,
    coarse_n: usize,
    coarse_inv: CudaSlice<f64>,
    program: Vec<CycleOp>,
}

fn i32n(n: usize) -> GResult<i32> {
    i32::try_from(n).map_err(|_| backend_error("too many rows for 32-bit indices"))
}

fn rows_cfg(st: &GpuState, n: usize, group: u32) -> LaunchConfig {
    launch::per_row_group_reduce(n, group, st.sms).config()
}

impl DevHierarchy {
    /// Uploads `h`; the finest operator's pattern is `fine` when given.
    fn upload(
        st: &GpuState,
        report: &mut GpuReport,
        h: &Hierarchy,
        fine: Option<&DevPattern>,
    ) -> GResult<Self> {
        let data = h.level_data();
        let mut levels = Vec::with_capacity(data.len());
        let mut b = vec![st.zeros::<f64>(1)?];
        let mut x = vec![st.zeros::<f64>(1)?];
        for (k, l) in data.iter().enumerate() {
            let n = l.a.nrows();
            levels.push(DevLevel {
                a: upload_mat(st, report, l.a, l.a32, if k == 0 { fine } else { None })?,
                p: upload_mat(st, report, l.p, l.p32, None)?,
                r: upload_mat(st, report, l.r, l.r32, None)?,
                inv_diag: st.upload(report, "AMG hierarchy", l.inv_diag)?,
                s0: l.s0,
                steps: l.steps.to_vec(),
                res: st.zeros(n)?,
                d: [st.zeros(n)?, st.zeros(n)?],
            });
            // the next level's vectors
            let nc = l.p.ncols();
            b.push(st.zeros(nc)?);
            x.push(st.zeros(nc)?);
        }
        let inv = h.coarse_inverse();
        let coarse_n = (inv.len() as f64).sqrt().round() as usize;
        let s = h.settings();
        let steps: Vec<usize> = levels.iter().map(|l| l.steps.len()).collect();
        Ok(Self {
            program: cycle_program(&steps, s.pre_sweeps, s.post_sweeps),
            levels,
            b,
            x,
            coarse_n,
            coarse_inv: st.upload(report, "AMG hierarchy", &inv)?,
        })
    }

    /// `x0 = M^-1 b0`: one V-cycle from a zero guess on the finest level.
    fn apply(
        &mut self,
        st: &GpuState,
        b0: &CudaSlice<f64>,
        x0: &mut CudaSlice<f64>,
    ) -> GResult<()> {
        for k in 0..self.program.len() {
            let op = self.program[k];
            self.run(st, op, b0, x0)?;
        }
        Ok(())
    }

    fn run(
        &mut self,
        st: &GpuState,
        op: CycleOp,
        b0: &CudaSlice<f64>,
        x0: &mut CudaSlice<f64>,
    ) -> GResult<()> {
        let nlev = self.levels.len();
        match op {
            CycleOp::ZeroStart(l) | CycleOp::ZeroCopy(l) => {
                let lev = &mut self.levels[l];
                let n = i32n(lev.a.pat.n)?;
                let b = if l == 0 { b0 } else { &self.b[l] };
                let x = if l == 0 { &mut *x0 } else { &mut self.x[l] };
                if matches!(op, CycleOp::ZeroStart(_)) {
                    let mut lb = st.stream.launch_builder(st.func("qf_amg_zero_start")?);
                    lb.arg(&n)
                        .arg(b)
                        .arg(&lev.inv_diag)
                        .arg(&lev.s0)
                        .arg(x)
                        .arg(&mut lev.res)
                        .arg(&mut lev.d[0]);
                    // SAFETY: argument types and buffer sizes match the kernel.
                    unsafe { lb.launch(launch::per_item(lev.a.pat.n).config()) }
                        .ctx("qf_amg_zero_start")?;
                } else {
                    let mut lb = st.stream.launch_builder(st.func("qf_amg_zero_copy")?);
                    lb.arg(&n).arg(b).arg(x).arg(&mut lev.res);
                    // SAFETY: as above.
                    unsafe { lb.launch(launch::per_item(lev.a.pat.n).config()) }
                        .ctx("qf_amg_zero_copy")?;
                }
            }
            CycleOp::ResidualStart(l) => {
                let lev = &mut self.levels[l];
                let n = i32n(lev.a.pat.n)?;
                let [d0, _] = &mut lev.d;
                let mut lb = st.stream.launch_builder(st.func("qf_amg_residual_start")?);
                lb.arg(&n)
                    .arg(&lev.res)
                    .arg(&lev.inv_diag)
                    .arg(&lev.s0)
                    .arg(d0);
                // SAFETY: as above.
                unsafe { lb.launch(launch::per_item(lev.a.pat.n).config()) }
                    .ctx("qf_amg_residual_start")?;
            }
            CycleOp::ComputeStart(l) => {
                let lev = &mut self.levels[l];
                let n = i32n(lev.a.pat.n)?;
                let b = if l == 0 { b0 } else { &self.b[l] };
                let x = if l == 0 { &*x0 } else { &self.x[l] };
                let name = format!("qf_amg_compute_start_g{}", lev.a.pat.group);
                let [d0, _] = &mut lev.d;
                let mut lb = st.stream.launch_builder(st.func(&name)?);
                lb.arg(&n)
                    .arg(&*lev.a.pat.rowptr)
                    .arg(&*lev.a.pat.col)
                    .arg(&lev.a.val)
                    .arg(b)
                    .arg(x)
                    .arg(&lev.inv_diag)
                    .arg(&lev.s0)
                    .arg(&mut lev.res)
                    .arg(d0);
                // SAFETY: as above.
                unsafe { lb.launch(rows_cfg(st, lev.a.pat.n, lev.a.pat.group)) }.ctx(&name)?;
            }
            CycleOp::Step { l, k, from } => {
                let lev = &mut self.levels[l];
                let n = i32n(lev.a.pat.n)?;
                let x = if l == 0 { &mut *x0 } else { &mut self.x[l] };
                let (c1, c2) = lev.steps[k];
                let name = format!("qf_amg_step_g{}", lev.a.pat.group);
                let [d0, d1] = &mut lev.d;
                let (d, d2) = if from == 0 { (d0, d1) } else { (d1, d0) };
                let mut lb = st.stream.launch_builder(st.func(&name)?);
                lb.arg(&n)
                    .arg(&*lev.a.pat.rowptr)
                    .arg(&*lev.a.pat.col)
                    .arg(&lev.a.val)
                    .arg(&*d)
                    .arg(&lev.inv_diag)
                    .arg(&c1)
                    .arg(&c2)
                    .arg(x)
                    .arg(&mut lev.res)
                    .arg(d2);
                // SAFETY: as above.
                unsafe { lb.launch(rows_cfg(st, lev.a.pat.n, lev.a.pat.group)) }.ctx(&name)?;
            }
            CycleOp::LastKeep(l, from) => {
                let lev = &mut self.levels[l];
                let n = i32n(lev.a.pat.n)?;
                let x = if l == 0 { &mut *x0 } else { &mut self.x[l] };
                let name = format!("qf_amg_last_g{}", lev.a.pat.group);
                let mut lb = st.stream.launch_builder(st.func(&name)?);
                lb.arg(&n)
                    .arg(&*lev.a.pat.rowptr)
                    .arg(&*lev.a.pat.col)
                    .arg(&lev.a.val)
                    .arg(&lev.d[from])
                    .arg(x)
                    .arg(&mut lev.res);
                // SAFETY: as above.
                unsafe { lb.launch(rows_cfg(st, lev.a.pat.n, lev.a.pat.group)) }.ctx(&name)?;
            }
            CycleOp::LastAdd(l, from) => {
                let lev = &self.levels[l];
                let n = i32n(lev.a.pat.n)?;
                let x = if l == 0 { &mut *x0 } else { &mut self.x[l] };
                let mut lb = st.stream.launch_builder(st.func("qf_amg_add")?);
                lb.arg(&n).arg(&lev.d[from]).arg(x);
                // SAFETY: as above.
                unsafe { lb.launch(launch::per_item(lev.a.pat.n).config()) }.ctx("qf_amg_add")?;
            }
            CycleOp::Restrict(l) => {
                let lev = &self.levels[l];
                let m = &lev.r;
                let n = i32n(m.pat.n)?;
                let add = 0i32;
                let name = format!("qf_amg_spmv_g{}", m.pat.group);
                let mut lb = st.stream.launch_builder(st.func(&name)?);
                lb.arg(&n)
                    .arg(&*m.pat.rowptr)
                    .arg(&*m.pat.col)
                    .arg(&m.val)
                    .arg(&lev.res)
                    .arg(&mut self.b[l + 1])
                    .arg(&add);
                // SAFETY: as above.
                unsafe { lb.launch(rows_cfg(st, m.pat.n, m.pat.group)) }.ctx(&name)?;
            }
            CycleOp::Coarse => {
                let n = self.coarse_n;
                if n > 0 {
                    let n32 = i32n(n)?;
                    let b = if nlev == 0 { b0 } else { &self.b[nlev] };
                    let x = if nlev == 0 {
                        &mut *x0
                    } else {
                        &mut self.x[nlev]
                    };
                    let mut lb = st.stream.launch_builder(st.func("qf_amg_dense")?);
                    lb.arg(&n32).arg(&self.coarse_inv).arg(b).arg(x);
                    // SAFETY: as above (one warp per row).
                    unsafe { lb.launch(launch::per_item(n * 32).config()) }.ctx("qf_amg_dense")?;
                }
            }
            CycleOp::Prolong(l) => {
                let m = &self.levels[l].p;
                let n = i32n(m.pat.n)?;
                let add = 1i32;
                let (lo, hi) = self.x.split_at_mut(l + 1);
                let xc = &hi[0];
                let x = if l == 0 { &mut *x0 } else { &mut lo[l] };
                let name = format!("qf_amg_spmv_g{}", m.pat.group);
                let mut lb = st.stream.launch_builder(st.func(&name)?);
                lb.arg(&n)
                    .arg(&*m.pat.rowptr)
                    .arg(&*m.pat.col)
                    .arg(&m.val)
                    .arg(xc)
                    .arg(x)
                    .arg(&add);
                // SAFETY: as above.
                unsafe { lb.launch(rows_cfg(st, m.pat.n, m.pat.group)) }.ctx(&name)?;
            }
        }
        Ok(())
    }
}

/// The CG vectors and the finest operator in double precision.
struct CgBuffers {
    a: DevMat<f64>,
    b: CudaSlice<f64>,
    w: CudaSlice<f64>,
    x: CudaSlice<f64>,
    r: CudaSlice<f64>,
    z: CudaSlice<f64>,
    p: CudaSlice<f64>,
    q: CudaSlice<f64>,
    rt: CudaSlice<f64>,
    out: CudaSlice<f64>,
}

fn read_out(
    st: &GpuState,
    report: &mut GpuReport,
    out: &CudaSlice<f64>,
    k: usize,
) -> GResult<Vec<f64>> {
    report.host_syncs += 1;
    st.download(report, "CG scalars", out, k)
}

impl CgBuffers {
    /// `q = A p`, returns `p.q`.
    fn pq(&mut self, st: &GpuState, report: &mut GpuReport) -> GResult<f64> {
        let a = &self.a;
        let n = i32n(a.pat.n)?;
        let name = format!("qf_amg_pq_g{}", a.pat.group);
        let mut lb = st.stream.launch_builder(st.func(&name)?);
        lb.arg(&n)
            .arg(&*a.pat.rowptr)
            .arg(&*a.pat.col)
            .arg(&a.val)
            .arg(&self.p)
            .arg(&mut self.q)
            .arg(&st.partials)
            .arg(&st.counter)
            .arg(&mut self.out);
        // SAFETY: as above; the grid is within the partial-sum buffer.
        unsafe { lb.launch(rows_cfg(st, a.pat.n, a.pat.group)) }.ctx(&name)?;
        Ok(read_out(st, report, &self.out, 1)?[0])
    }

    /// `rt = b - A x`, returns `(rt.rt, rt.W.rt)`.
    fn residual(&mut self, st: &GpuState, report: &mut GpuReport) -> GResult<(f64, f64)> {
        let a = &self.a;
        let n = i32n(a.pat.n)?;
        let name = format!("qf_amg_resid_g{}", a.pat.group);
        let mut lb = st.stream.launch_builder(st.func(&name)?);
        lb.arg(&n)
            .arg(&*a.pat.rowptr)
            .arg(&*a.pat.col)
            .arg(&a.val)
            .arg(&self.b)
            .arg(&self.x)
            .arg(&self.w)
            .arg(&mut self.rt)
            .arg(&st.partials)
            .arg(&st.counter)
            .arg(&mut self.out);
        // SAFETY: as above.
        unsafe { lb.launch(rows_cfg(st, a.pat.n, a.pat.group)) }.ctx(&name)?;
        let v = read_out(st, report, &self.out, 2)?;
        Ok((v[0], v[1]))
    }

    /// `x += alpha p`, `r -= alpha q`; returns `(r.r, r.W.r)`.
    fn update(&mut self, st: &GpuState, report: &mut GpuReport, alpha: f64) -> GResult<(f64, f64)> {
        let n = self.a.pat.n;
        let n32 = i32n(n)?;
        let mut lb = st.stream.launch_builder(st.func("qf_amg_update")?);
        lb.arg(&n32)
            .arg(&alpha)
            .arg(&self.p)
            .arg(&self.q)
            .arg(&self.w)
            .arg(&mut self.x)
            .arg(&mut self.r)
            .arg(&st.partials)
            .arg(&st.counter)
            .arg(&mut self.out);
        // SAFETY: as above.
        unsafe { lb.launch(launch::per_row_reduce(n, st.sms).config()) }.ctx("qf_amg_update")?;
        let v = read_out(st, report, &self.out, 2)?;
        Ok((v[0], v[1]))
    }

    /// `r.z`.
    fn rz(&mut self, st: &GpuState, report: &mut GpuReport) -> GResult<f64> {
        let n = self.a.pat.n;
        let n32 = i32n(n)?;
        let mut lb = st.stream.launch_builder(st.func("qf_amg_dot")?);
        lb.arg(&n32)
            .arg(&self.r)
            .arg(&self.z)
            .arg(&st.partials)
            .arg(&st.counter)
            .arg(&mut self.out);
        // SAFETY: as above.
        unsafe { lb.launch(launch::per_row_reduce(n, st.sms).config()) }.ctx("qf_amg_dot")?;
        Ok(read_out(st, report, &self.out, 1)?[0])
    }

    /// `p = z + beta p`.
    fn direction(&mut self, st: &GpuState, beta: f64) -> GResult<()> {
        let n = self.a.pat.n;
        let n32 = i32n(n)?;
        let mut lb = st.stream.launch_builder(st.func("qf_amg_direction")?);
        lb.arg(&n32).arg(&beta).arg(&self.z).arg(&mut self.p);
        // SAFETY: as above.
        unsafe { lb.launch(launch::per_item(n).config()) }.ctx("qf_amg_direction")?;
        Ok(())
    }
}

/// The original system's side: `u = D x~` in the original numbering and
/// `||f - K u|| / ||f||` with the assembled (unscaled) matrix.
struct Original {
    n: usize,
    rows: CudaSlice<u32>,
    dk: CudaSlice<f64>,
    direct: CudaSlice<f64>,
    u: CudaSlice<f64>,
    res: CudaSlice<f64>,
    group: u32,
}

impl Original {
    /// Fills `u` from `x` and returns the true relative residual.
    fn residual(
        &mut self,
        st: &GpuState,
        report: &mut GpuReport,
        x: &CudaSlice<f64>,
        m: usize,
    ) -> GResult<f64> {
        st.stream
            .memcpy_dtod(&self.direct, &mut self.u)
            .ctx("copying the decoupled rows")?;
        if m > 0 {
            let m32 = i32n(m)?;
            let mut lb = st.stream.launch_builder(st.func("qf_amg_unscale")?);
            lb.arg(&m32)
                .arg(&self.rows)
                .arg(&self.dk)
                .arg(x)
                .arg(&mut self.u);
            // SAFETY: as above; rows are a permutation of distinct rows below n.
            unsafe { lb.launch(launch::per_item(m).config()) }.ctx("qf_amg_unscale")?;
        }
        device_true_residual(st, report, &self.u, self.n, self.group, &mut self.res)
    }
}

/// AMG-CG on the device system (see the module docs): downloads `K` and
/// `f`, builds the hierarchy on the host's cores, uploads it, iterates on
/// the device; `u` is left on the device (`st.u`) and downloaded once.
pub fn solve(
    st: &mut GpuState,
    report: &mut GpuReport,
    cg: &CgSettings,
    amg: &AmgSettings,
    progress: &mut dyn FnMut(usize, f64) -> bool,
) -> GResult<GpuSolveOutcome> {
    let t0 = Instant::now();
    let (n, nnz) = {
        let s = st
            .system
            .as_ref()
            .ok_or_else(|| backend_error("no assembled system on the device"))?;
        (s.pattern.n, s.pattern.nnz())
    };
    let (sys, h) = {
        let _s = tracing::info_span!("gpu_amg_setup", n).entered();
        // the assembled matrix (built on the device) and the load vector
        // come back once
        let s = st.system.as_ref().expect("checked");
        let (fp, fc, fv, f) = {
            let _s = tracing::info_span!("download_system").entered();
            (
                st.download(report, "matrix for the AMG setup", &s.rowptr, n + 1)?,
                st.download(report, "matrix for the AMG setup", &s.col, nnz)?,
                st.download(report, "matrix for the AMG setup", &s.val, nnz)?,
                st.download(report, "matrix for the AMG setup", &s.f, n)?,
            )
        };
        let mut sys = {
            let _s = tracing::info_span!("amg_equilibrate").entered();
            AmgSystem::from_full(n, &fp, &fc, &fv, &f)?
        };
        let a = std::mem::take(&mut sys.a);
        let h = Hierarchy::new(Exec::Parallel, a, sys.near_null_space(), amg)?;
        (sys, h)
    };
    let m = h.fine().nrows();
    let mean_full = if n == 0 { 0.0 } else { nnz as f64 / n as f64 };
    let weights = sys.weights();
    let (mut dev, mut bufs, mut orig) = {
        let _s = tracing::info_span!("gpu_amg_upload").entered();
        let a = h.fine();
        let fine = upload_mat(st, report, a, a.vals(), None)?;
        let dev = DevHierarchy::upload(st, report, &h, Some(&fine.pat))?;
        let bufs = CgBuffers {
            a: fine,
            b: st.upload(report, "AMG right-hand side", &sys.b)?,
            w: st.upload(report, "AMG right-hand side", &weights)?,
            x: st.zeros(m)?,
            r: st.upload(report, "AMG right-hand side", &sys.b)?,
            z: st.zeros(m)?,
            p: st.zeros(m)?,
            q: st.zeros(m)?,
            rt: st.zeros(m)?,
            out: st.zeros(4)?,
        };
        let dk: Vec<f64> = sys.rows.iter().map(|&i| sys.d[i as usize]).collect();
        let orig = Original {
            n,
            rows: st.upload(report, "AMG row numbering", &sys.rows)?,
            dk: st.upload(report, "AMG row numbering", &dk)?,
            direct: st.upload(report, "AMG row numbering", &sys.direct)?,
            u: st.zeros(n)?,
            res: st.zeros(2)?,
            group: launch::spmv_group(mean_full),
        };
        st.sync()?;
        (dev, bufs, orig)
    };
    report.sample_memory(&st.ctx);
    let setup_seconds = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();

    let b_norm = sys.b_norm;
    let f_norm = sys.f_norm;
    let (it, converged, residual) = if b_norm == 0.0 || m == 0 {
        (0, true, 0.0)
    } else {
        let _s = tracing::info_span!("gpu_amg_cg", rows = m).entered();
        // the rule of `amg_pcg` with the unscaled check (`b = D f` is
        // non-zero here, so `f` is too)
        let rel = |rr: f64, rw: f64| (rr.sqrt() / b_norm).max(rw.sqrt() / f_norm);
        let mut rr: f64 = sys.b.iter().map(|v| v * v).sum();
        let mut rw: f64 = sys.b.iter().zip(&weights).map(|(v, w)| v * v * w).sum();
        dev.apply(st, &bufs.r, &mut bufs.z)?;
        let mut rz = bufs.rz(st, report)?;
        st.stream.memcpy_dtod(&bufs.z, &mut bufs.p).ctx("p = z")?;
        let mut checker = ResidualCheck::new(cg.rtol);
        let mut it = 0;
        let converged = loop {
            if rel(rr, rw) < checker.target() {
                if it == 0 {
                    break true;
                }
                let (tr, tw) = bufs.residual(st, report)?;
                let mut t = rel(tr, tw);
                if t < cg.rtol {
                    t = t.max(orig.residual(st, report, &bufs.x, m)?);
                }
                match checker.judge(t) {
                    CheckOutcome::Accept => break true,
                    CheckOutcome::GiveUp => break false,
                    CheckOutcome::Restart => {}
                }
                std::mem::swap(&mut bufs.r, &mut bufs.rt);
                (rr, rw) = (tr, tw);
                dev.apply(st, &bufs.r, &mut bufs.z)?;
                rz = bufs.rz(st, report)?;
                st.stream.memcpy_dtod(&bufs.z, &mut bufs.p).ctx("p = z")?;
                continue;
            }
            if it >= cg.max_iter {
                break false;
            }
            let pq = bufs.pq(st, report)?;
            if pq.is_nan() || pq <= 0.0 {
                return Err(SolveError::Breakdown {
                    iteration: it,
                    pap: pq,
                }
                .into());
            }
            let alpha = rz / pq;
            (rr, rw) = bufs.update(st, report, alpha)?;
            it += 1;
            if !progress(it, rel(rr, rw)) {
                return Err(SolveError::Interrupted { iteration: it }.into());
            }
            if rel(rr, rw) < checker.target() {
                continue;
            }
            dev.apply(st, &bufs.r, &mut bufs.z)?;
            let rz_new = bufs.rz(st, report)?;
            let beta = rz_new / rz;
            rz = rz_new;
            bufs.direction(st, beta)?;
        };
        (it, converged, checker.last().unwrap_or(rel(rr, rw)))
    };
    // u = D x~ with the decoupled rows, and the true residual
    let true_residual = orig.residual(st, report, &bufs.x, m)?;
    let u_host = st.download(report, "solution", &orig.u, n)?;
    st.sync()?;
    let solve_seconds = t1.elapsed().as_secs_f64();
    let stats = SolveStats {
        iterations: it,
        converged,
        recurrence_residual: residual,
        setup_seconds,
        solve_seconds,
        decoupled_rows: sys.decoupled(),
        cg_rows: m,
        cg_stored: (h.fine().nnz() + m) / 2,
        levels: h.levels(),
        operator_complexity: h.operator_complexity(),
        ..Default::default()
    };
    st.u = Some(orig.u);
    Ok(GpuSolveOutcome {
        u: u_host,
        stats,
        true_residual,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amg::tests::lap2d;

    #[test]
    fn program_of_the_default_cycle() {
        use CycleOp::*;
        // two levels above the coarsest, Chebyshev degree 2 (one step),
        // one sweep each way
        let p = cycle_program(&[1, 1], 1, 1);
        assert_eq!(
            p,
            vec![
                ZeroStart(0),
                Step {
                    l: 0,
                    k: 0,
                    from: 0
                },
                LastKeep(0, 1),
                Restrict(0),
                ZeroStart(1),
                Step {
                    l: 1,
                    k: 0,
                    from: 0
                },
                LastKeep(1, 1),
                Restrict(1),
                Coarse,
                Prolong(1),
                ComputeStart(1),
                Step {
                    l: 1,
                    k: 0,
                    from: 0
                },
                LastAdd(1, 1),
                Prolong(0),
                ComputeStart(0),
                Step {
                    l: 0,
                    k: 0,
                    from: 0
                },
                LastAdd(0, 1),
            ]
        );
        // only a coarsest level: the cycle is the direct solve
        assert_eq!(cycle_program(&[], 1, 1), vec![Coarse]);
        // no pre-smoothing, two post-sweeps
        let p = cycle_program(&[0], 0, 2);
        assert_eq!(
            p,
            vec![
                ZeroCopy(0),
                Restrict(0),
                Coarse,
                Prolong(0),
                ComputeStart(0),
                LastKeep(0, 0),
                ResidualStart(0),
                LastAdd(0, 0),
            ]
        );
    }

    /// Runs a cycle program on the CPU with the host hierarchy's
    /// matrices, the way the device does (one operation at a time).
    fn interpret(h: &Hierarchy, prog: &[CycleOp], b0: &[f64]) -> Vec<f64> {
        let lv = h.level_data();
        let inv = h.coarse_inverse();
        let row = |a: &Csr, v: &[f32], i: usize, x: &[f64]| -> f64 {
            let (s, e) = (a.rowptr()[i], a.rowptr()[i + 1]);
            let mut acc = 0.0;
            for k in s..e {
                acc += v[k] as f64 * x[a.cols()[k] as usize];
            }
            acc
        };
        let nl = lv.len();
        let size = |l: usize| {
            if l < nl {
                lv[l].a.nrows()
            } else if nl == 0 {
                b0.len()
            } else {
                lv[nl - 1].p.ncols()
            }
        };
        let mut b: Vec<Vec<f64>> = (0..=nl).map(|l| vec![0.0; size(l)]).collect();
        let mut x = b.clone();
        b[0] = b0.to_vec();
        let mut res: Vec<Vec<f64>> = (0..nl).map(|l| vec![0.0; size(l)]).collect();
        let mut d: Vec<[Vec<f64>; 2]> = (0..nl)
            .map(|l| [vec![0.0; size(l)], vec![0.0; size(l)]])
            .collect();
        for &op in prog {
            match op {
                CycleOp::ZeroStart(l) => {
                    for i in 0..size(l) {
                        x[l][i] = 0.0;
                        res[l][i] = b[l][i];
                        d[l][0][i] = lv[l].s0 * lv[l].inv_diag[i] * b[l][i];
                    }
                }
                CycleOp::ZeroCopy(l) => {
                    x[l].iter_mut().for_each(|v| *v = 0.0);
                    res[l] = b[l].clone();
                }
                CycleOp::ResidualStart(l) => {
                    for i in 0..size(l) {
                        d[l][0][i] = lv[l].s0 * lv[l].inv_diag[i] * res[l][i];
                    }
                }
                CycleOp::ComputeStart(l) => {
                    for i in 0..size(l) {
                        let ri = b[l][i] - row(lv[l].a, lv[l].a32, i, &x[l]);
                        res[l][i] = ri;
                        d[l][0][i] = lv[l].s0 * lv[l].inv_diag[i] * ri;
                    }
                }
                CycleOp::Step { l, k, from } => {
                    let (c1, c2) = lv[l].steps[k];
                    let dd = d[l][from].clone();
                    for i in 0..size(l) {
                        let q = row(lv[l].a, lv[l].a32, i, &dd);
                        x[l][i] += dd[i];
                        let ri = res[l][i] - q;
                        res[l][i] = ri;
                        d[l][1 - from][i] = c1 * dd[i] + c2 * lv[l].inv_diag[i] * ri;
                    }
                }
                CycleOp::LastKeep(l, from) => {
                    for i in 0..size(l) {
                        x[l][i] += d[l][from][i];
                        res[l][i] -= row(lv[l].a, lv[l].a32, i, &d[l][from]);
                    }
                }
                CycleOp::LastAdd(l, from) => {
                    for i in 0..size(l) {
                        x[l][i] += d[l][from][i];
                    }
                }
                CycleOp::Restrict(l) => {
                    for i in 0..size(l + 1) {
                        b[l + 1][i] = row(lv[l].r, lv[l].r32, i, &res[l]);
                    }
                }
                CycleOp::Coarse => {
                    let n = size(nl);
                    for i in 0..n {
                        x[nl][i] = (0..n).map(|j| inv[i * n + j] * b[nl][j]).sum();
                    }
                }
                CycleOp::Prolong(l) => {
                    for i in 0..size(l) {
                        let v = row(lv[l].p, lv[l].p32, i, &x[l + 1]);
                        x[l][i] += v;
                    }
                }
            }
        }
        x.swap_remove(0)
    }

    #[test]
    fn the_program_reproduces_the_host_cycle() {
        for (m, settings) in [
            (40, AmgSettings::default()),
            (
                30,
                AmgSettings {
                    max_coarse: 50,
                    pre_sweeps: 2,
                    post_sweeps: 2,
                    degree: 3,
                    ..AmgSettings::default()
                },
            ),
            (
                24,
                AmgSettings {
                    max_coarse: 50,
                    pre_sweeps: 0,
                    post_sweeps: 1,
                    ..AmgSettings::default()
                },
            ),
            // small enough to be the coarsest level itself
            (10, AmgSettings::default()),
        ] {
            let k = lap2d(m);
            let f: Vec<f64> = (0..k.n).map(|i| ((i * 13) % 7) as f64 - 3.0).collect();
            let mut sys = AmgSystem::new(&k, &f).unwrap();
            let a = std::mem::take(&mut sys.a);
            let h = Hierarchy::new(Exec::Serial, a, sys.near_null_space(), &settings).unwrap();
            let steps: Vec<usize> = h.level_data().iter().map(|l| l.steps.len()).collect();
            let prog = cycle_program(&steps, settings.pre_sweeps, settings.post_sweeps);
            let host = h.precondition(Exec::Serial, &sys.b);
            let dev = interpret(&h, &prog, &sys.b);
            let scale = host.iter().fold(0.0f64, |a, v| a.max(v.abs()));
            let diff = host
                .iter()
                .zip(&dev)
                .fold(0.0f64, |a, (x, y)| a.max((x - y).abs()));
            assert!(scale > 0.0);
            // the coarsest solve differs (inverse vs Cholesky) in rounding
            assert!(diff <= 1e-12 * scale, "m {m}: {diff} vs {scale}");
            assert_eq!(h.levels() > 1, m > 10, "m {m}");
            assert_eq!(prog.len() > 1, m > 10);
        }
    }

    #[test]
    fn full_and_symmetric_constructions_agree() {
        let k = lap2d(12);
        let f: Vec<f64> = (0..k.n).map(|i| (i % 5) as f64).collect();
        let a = AmgSystem::new(&k, &f).unwrap();
        let (fp, fc, fv) = k.to_full();
        let b = AmgSystem::from_full(k.n, &fp, &fc, &fv, &f).unwrap();
        assert_eq!(a.rows, b.rows);
        assert_eq!(a.b, b.b);
        assert_eq!(a.d, b.d);
        assert_eq!(a.direct, b.direct);
        assert_eq!(a.a.vals(), b.a.vals());
        assert_eq!(a.a.cols(), b.a.cols());
    }
}
