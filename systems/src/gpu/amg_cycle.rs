//! The V-cycle of AMG-CG on the device (`kernels/amg.cu`): the hierarchy
//! in the cycle's form (`DevHierarchy`, from the device setup or
//! uploaded from the host's) and the cycle as a *program*:
//! [`cycle_program`] lists the operations of one cycle ([`CycleOp`]) in
//! the order of the host's `Hierarchy::vcycle`, and the device executes
//! it operation by operation, one kernel each. A unit test runs the same
//! program on the CPU with the host's matrices and checks it against the
//! host's own cycle, so the program is tested where there is no GPU.

use super::amg_setup::{DevCsr, DeviceHierarchy};
use super::device::{Ctx, Device, GResult, backend_error};
use super::launch;
use super::report::GpuReport;
use crate::amg::{AmgSettings, Csr, Hierarchy};
use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};
use std::rc::Rc;

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
pub(super) struct DevPattern {
    pub(super) n: usize,
    pub(super) rowptr: Rc<CudaSlice<u32>>,
    pub(super) col: Rc<CudaSlice<u32>>,
    /// Threads per row of its products.
    pub(super) group: u32,
}

/// A matrix on the device.
pub(super) struct DevMat<T> {
    pub(super) pat: DevPattern,
    pub(super) val: CudaSlice<T>,
}

fn rowptr32(a: &Csr) -> GResult<Vec<u32>> {
    a.rowptr()
        .iter()
        .map(|&v| u32::try_from(v))
        .collect::<Result<_, _>>()
        .map_err(|_| backend_error("AMG level with more than 2^32 entries"))
}

fn upload_pattern(st: &Device, report: &mut GpuReport, a: &Csr) -> GResult<DevPattern> {
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
pub(super) fn upload_mat<T: cudarc::driver::DeviceRepr + Copy + Default>(
    st: &Device,
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
pub(super) struct DevLevel {
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
pub(super) struct DevHierarchy {
    levels: Vec<DevLevel>,
    /// Right-hand side and correction of every level (index 0 unused:
    /// the finest level's are the caller's).
    b: Vec<CudaSlice<f64>>,
    x: Vec<CudaSlice<f64>>,
    coarse_n: usize,
    coarse_inv: CudaSlice<f64>,
    program: Vec<CycleOp>,
}

pub(super) fn i32n(n: usize) -> GResult<i32> {
    i32::try_from(n).map_err(|_| backend_error("too many rows for 32-bit indices"))
}

pub(super) fn rows_cfg(st: &Device, n: usize, group: u32) -> LaunchConfig {
    launch::per_row_group_reduce(n, group, st.sms).config()
}

impl DevHierarchy {
    /// Uploads `h`; the finest operator's pattern is `fine` when given.
    pub(super) fn upload(
        st: &Device,
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

    /// The cycle's form of a hierarchy built on the device; the finest
    /// operator's pattern is shared with the returned double-precision
    /// finest operator (CG's own product).
    pub(super) fn from_device(
        st: &Device,
        h: DeviceHierarchy,
        settings: &AmgSettings,
    ) -> GResult<(Self, DevMat<f64>)> {
        let pattern_of = |m: DevCsr| -> (DevPattern, CudaSlice<f64>) {
            let mean = if m.rows == 0 {
                0.0
            } else {
                m.nnz as f64 / m.rows as f64
            };
            (
                DevPattern {
                    n: m.rows,
                    rowptr: Rc::new(m.ptr),
                    col: Rc::new(m.col),
                    group: launch::spmv_group(mean),
                },
                m.val,
            )
        };
        let mut levels = Vec::with_capacity(h.levels.len());
        let mut b = vec![st.zeros::<f64>(1)?];
        let mut x = vec![st.zeros::<f64>(1)?];
        let mut fine: Option<DevMat<f64>> = None;
        for lv in h.levels {
            let n = lv.a.rows;
            let nc = lv.nagg;
            let (apat, aval) = pattern_of(lv.a);
            if fine.is_none() {
                fine = Some(DevMat {
                    pat: apat.clone(),
                    val: aval,
                });
            }
            let (ppat, _) = pattern_of(lv.p);
            let (rpat, _) = pattern_of(lv.r);
            levels.push(DevLevel {
                a: DevMat {
                    pat: apat,
                    val: lv.a32,
                },
                p: DevMat {
                    pat: ppat,
                    val: lv.p32,
                },
                r: DevMat {
                    pat: rpat,
                    val: lv.r32,
                },
                inv_diag: lv.inv_diag,
                s0: lv.s0,
                steps: lv.steps,
                res: st.zeros(n)?,
                d: [st.zeros(n)?, st.zeros(n)?],
            });
            b.push(st.zeros(nc)?);
            x.push(st.zeros(nc)?);
        }
        let coarse_n = h.coarse.rows;
        let fine = match fine {
            Some(f) => f,
            None => {
                let (pat, val) = pattern_of(h.coarse);
                DevMat { pat, val }
            }
        };
        let steps: Vec<usize> = levels.iter().map(|l| l.steps.len()).collect();
        let inv = if h.coarse_inverse.is_empty() {
            vec![0.0]
        } else {
            h.coarse_inverse
        };
        let coarse_inv = st
            .stream
            .clone_htod(&inv)
            .ctx("copying the coarsest inverse")?;
        Ok((
            Self {
                program: cycle_program(&steps, settings.pre_sweeps, settings.post_sweeps),
                levels,
                b,
                x,
                coarse_n,
                coarse_inv,
            },
            fine,
        ))
    }

    /// `x0 = M^-1 b0`: one V-cycle from a zero guess on the finest level.
    pub(super) fn apply(
        &mut self,
        st: &Device,
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
        st: &Device,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amg::{AmgSystem, tests::lap2d};
    use crate::solver::Exec;

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
}
