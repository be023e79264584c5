//! AMG-CG on the device: the smoothed-aggregation hierarchy is built on
//! the device from the matrix it assembled ([`super::amg_setup`], the
//! default) or on the host ([`crate::amg::Hierarchy`], in parallel on the
//! host's cores, then uploaded: [`AmgSetupSite::Host`]), and CG with the
//! V-cycle as preconditioner runs on the device (`kernels/amg.cu`).
//!
//! The V-cycle is a program of kernel launches ([`super::amg_cycle`]).
//!
//! The CG loop mirrors [`crate::amg::amg_pcg`] (the convergence rule every
//! solver shares, [`Convergence`]: the recurrence says when to look; there
//! the correction is folded into the iterate `base + x`, the residual
//! `b - A base` is recomputed in double-double and replaces the
//! recurrence's, and the residual of the `u` the iterate gives, on the
//! original system, decides; a replacement restarts the direction) with
//! its scalars read back to the host: three small reads per iteration
//! (`p.q`, `r.r`, `r.z`), which at 40 to 60 iterations cost far less than
//! the cycles. Every reduction sums per-block partials in block order:
//! identical runs give identical iterates.

pub use super::amg_cycle::{CycleOp, cycle_program};
use super::amg_cycle::{DevHierarchy, DevMat, i32n, rows_cfg, upload_mat};
use super::amg_setup;
use super::cg::GpuSolveOutcome;
use super::device::{Ctx, Device, GResult};
use super::launch;
use super::options::AmgSetupSite;
use super::pattern::DeviceSystem;
use super::replace::{device_true_residual, fold};
use super::report::GpuReport;
use crate::amg::{AmgSettings, AmgSystem, Hierarchy};
use crate::solver::{CgSettings, Convergence, Exec, Residuals, SolveError, SolveStats, Verdict};
use cudarc::driver::{CudaSlice, PushKernelArg};
use std::time::Instant;
/// The CG vectors and the finest operator in double precision.
struct CgBuffers {
    a: DevMat<f64>,
    b: CudaSlice<f64>,
    /// The CG correction: the iterate is `base + x` (folded at checks).
    x: CudaSlice<f64>,
    base: CudaSlice<f64>,
    r: CudaSlice<f64>,
    z: CudaSlice<f64>,
    p: CudaSlice<f64>,
    q: CudaSlice<f64>,
    rt: CudaSlice<f64>,
    out: CudaSlice<f64>,
}

fn read_out(
    st: &Device,
    report: &mut GpuReport,
    out: &CudaSlice<f64>,
    k: usize,
) -> GResult<Vec<f64>> {
    report.host_syncs += 1;
    st.download(report, "CG scalars", out, k)
}

impl CgBuffers {
    /// `q = A p`, returns `p.q`.
    fn pq(&mut self, st: &Device, report: &mut GpuReport) -> GResult<f64> {
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

    /// `rt = b - A base` (double-double), returns `rt.rt`.
    fn residual(&mut self, st: &Device, report: &mut GpuReport) -> GResult<f64> {
        let a = &self.a;
        let n = i32n(a.pat.n)?;
        let mut lb = st.stream.launch_builder(st.func("qf_amg_resid")?);
        lb.arg(&n)
            .arg(&*a.pat.rowptr)
            .arg(&*a.pat.col)
            .arg(&a.val)
            .arg(&self.b)
            .arg(&self.base)
            .arg(&mut self.rt)
            .arg(&st.partials)
            .arg(&st.counter)
            .arg(&mut self.out);
        // SAFETY: as above.
        unsafe { lb.launch(launch::per_row_reduce(a.pat.n, st.sms).config()) }
            .ctx("qf_amg_resid")?;
        Ok(read_out(st, report, &self.out, 1)?[0])
    }

    /// `x += alpha p`, `r -= alpha q`; returns `r.r`.
    fn update(&mut self, st: &Device, report: &mut GpuReport, alpha: f64) -> GResult<f64> {
        let n = self.a.pat.n;
        let n32 = i32n(n)?;
        let mut lb = st.stream.launch_builder(st.func("qf_amg_update")?);
        lb.arg(&n32)
            .arg(&alpha)
            .arg(&self.p)
            .arg(&self.q)
            .arg(&mut self.x)
            .arg(&mut self.r)
            .arg(&st.partials)
            .arg(&st.counter)
            .arg(&mut self.out);
        // SAFETY: as above.
        unsafe { lb.launch(launch::per_row_reduce(n, st.sms).config()) }.ctx("qf_amg_update")?;
        Ok(read_out(st, report, &self.out, 1)?[0])
    }

    /// `r.z`.
    fn rz(&mut self, st: &Device, report: &mut GpuReport) -> GResult<f64> {
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
    fn direction(&mut self, st: &Device, beta: f64) -> GResult<()> {
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
}

impl Original {
    /// Fills `u` from `x` and returns the true relative residuals.
    fn residual(
        &mut self,
        st: &Device,
        sys: &DeviceSystem,
        report: &mut GpuReport,
        x: &CudaSlice<f64>,
        m: usize,
    ) -> GResult<Residuals> {
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
        device_true_residual(st, sys, report, &self.u, self.n, &mut self.res)
    }
}

/// The hierarchy, the CG buffers and the original system's side, ready
/// to iterate, with `||r0||^2`.
struct Prepared {
    dev: DevHierarchy,
    bufs: CgBuffers,
    orig: Original,
    b_norm: f64,
    rr: f64,
    decoupled: usize,
    levels: usize,
    complexity: f64,
    sizes: Vec<usize>,
}

/// Downloads `K` and `f`, builds the hierarchy on the host's cores,
/// uploads it (the path before the device setup, kept for comparison).
fn prepare_host(
    st: &Device,
    sys_dev: &DeviceSystem,
    report: &mut GpuReport,
    amg: &AmgSettings,
) -> GResult<Prepared> {
    let (n, nnz) = (sys_dev.pattern.n, sys_dev.pattern.nnz());
    let (sys, h) = {
        let _s = tracing::info_span!("gpu_amg_setup_host", n).entered();
        let s = sys_dev;
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
    let _s = tracing::info_span!("gpu_amg_upload").entered();
    let a = h.fine();
    let fine = upload_mat(st, report, a, a.vals(), None)?;
    let dev = DevHierarchy::upload(st, report, &h, Some(&fine.pat))?;
    let bufs = CgBuffers {
        a: fine,
        b: st.upload(report, "AMG right-hand side", &sys.b)?,
        x: st.zeros(m)?,
        base: st.zeros(m)?,
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
        res: st.zeros(4)?,
    };
    let rr: f64 = sys.b.iter().map(|v| v * v).sum();
    Ok(Prepared {
        dev,
        bufs,
        orig,
        b_norm: sys.b_norm,
        rr,
        decoupled: sys.decoupled(),
        levels: h.levels(),
        complexity: h.operator_complexity(),
        sizes: h.sizes(),
    })
}

/// Builds everything on the device from the device system: nothing but
/// scalars and the coarsest operator crosses the bus.
fn prepare_device(
    st: &Device,
    sys_dev: &DeviceSystem,
    report: &mut GpuReport,
    amg: &AmgSettings,
) -> GResult<Prepared> {
    let n = sys_dev.pattern.n;
    let _s = tracing::info_span!("gpu_amg_setup_device", n).entered();
    let sys = amg_setup::equilibrate(st, report, sys_dev)?;
    let m = sys.a.rows;
    let h = amg_setup::build(st, report, sys.a, sys.bnull, amg)?;
    let (levels, complexity, sizes) = (h.levels(), h.operator_complexity(), h.sizes());
    let (dev, fine) = DevHierarchy::from_device(st, h, amg)?;
    let mut bufs = CgBuffers {
        a: fine,
        r: st.stream.clone_dtod(&sys.b).ctx("copy")?,
        b: sys.b,
        x: st.zeros(m)?,
        base: st.zeros(m)?,
        z: st.zeros(m)?,
        p: st.zeros(m)?,
        q: st.zeros(m)?,
        rt: st.zeros(m)?,
        out: st.zeros(4)?,
    };
    // r.r of r = b (x = 0)
    let rr = if m > 0 {
        bufs.residual(st, report)?
    } else {
        0.0
    };
    let orig = Original {
        n,
        rows: sys.rows,
        dk: sys.dk,
        direct: sys.direct,
        u: st.zeros(n)?,
        res: st.zeros(4)?,
    };
    Ok(Prepared {
        dev,
        bufs,
        orig,
        b_norm: sys.b_norm,
        rr,
        decoupled: sys.decoupled,
        levels,
        complexity,
        sizes,
    })
}

/// AMG-CG on the device system `sys_dev` (see the module docs), the
/// hierarchy built where `site` says; returns the outcome (with `u`
/// downloaded) and `u` on the device.
pub fn solve(
    st: &Device,
    sys_dev: &DeviceSystem,
    report: &mut GpuReport,
    cg: &CgSettings,
    amg: &AmgSettings,
    site: AmgSetupSite,
    progress: &mut dyn FnMut(usize, f64) -> bool,
) -> GResult<(GpuSolveOutcome, CudaSlice<f64>)> {
    let t0 = Instant::now();
    report.amg_setup = Some(site.name());
    let prep = match site {
        AmgSetupSite::Device => prepare_device(st, sys_dev, report, amg)?,
        AmgSetupSite::Host => prepare_host(st, sys_dev, report, amg)?,
    };
    st.sync()?;
    st.sample_memory(report);
    let setup_seconds = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let Prepared {
        mut dev,
        mut bufs,
        mut orig,
        b_norm,
        rr,
        decoupled,
        levels,
        complexity,
        sizes,
    } = prep;
    report.amg_sizes = sizes;
    let m = bufs.a.pat.n;
    let fine_nnz = bufs.a.val.len();
    let mut rule = Convergence::new(cg.rtol);
    let (it, verdict, rr_last) = if b_norm == 0.0 || m == 0 {
        (0, Some(Verdict::Converged), 0.0)
    } else {
        let _s = tracing::info_span!("gpu_amg_cg", rows = m).entered();
        // the loop of `amg_pcg`, stopped by the convergence rule
        let rel = |rr: f64| rr.sqrt() / b_norm;
        let mut rr = rr;
        dev.apply(st, &bufs.r, &mut bufs.z)?;
        let mut rz = bufs.rz(st, report)?;
        st.stream.memcpy_dtod(&bufs.z, &mut bufs.p).ctx("p = z")?;
        let mut it = 0;
        let verdict = loop {
            if rel(rr) < rule.target() {
                // fold, replace the residual by b - A base, judge the
                // residual of the u the iterate gives (what the run
                // reports)
                fold(st, m, &mut bufs.x, &mut bufs.base)?;
                let tr = bufs.residual(st, report)?;
                let judged = orig
                    .residual(st, sys_dev, report, &bufs.base, m)?
                    .equilibrated;
                match rule.judge(it, judged) {
                    Verdict::Replace => {}
                    v => break Some(v),
                }
                std::mem::swap(&mut bufs.r, &mut bufs.rt);
                rr = tr;
                dev.apply(st, &bufs.r, &mut bufs.z)?;
                rz = bufs.rz(st, report)?;
                st.stream.memcpy_dtod(&bufs.z, &mut bufs.p).ctx("p = z")?;
                continue;
            }
            if it >= cg.max_iter {
                break None;
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
            rr = bufs.update(st, report, alpha)?;
            it += 1;
            if !progress(it, rel(rr)) {
                return Err(SolveError::Interrupted { iteration: it }.into());
            }
            if rel(rr) < rule.target() {
                continue;
            }
            dev.apply(st, &bufs.r, &mut bufs.z)?;
            let rz_new = bufs.rz(st, report)?;
            let beta = rz_new / rz;
            rz = rz_new;
            bufs.direction(st, beta)?;
        };
        (it, verdict, rr)
    };
    // the iterate base + x, u = D x~ with the decoupled rows, and the true
    // residual (after a converged check x is zero and u the very u the
    // rule judged)
    if m > 0 {
        fold(st, m, &mut bufs.x, &mut bufs.base)?;
    }
    let residuals = orig.residual(st, sys_dev, report, &bufs.base, m)?;
    let u_host = st.download(report, "solution", &orig.u, orig.n)?;
    st.sync()?;
    let solve_seconds = t1.elapsed().as_secs_f64();
    let mut stats = SolveStats {
        iterations: it,
        setup_seconds,
        solve_seconds,
        decoupled_rows: decoupled,
        cg_rows: m,
        cg_stored: (fine_nnz + m) / 2,
        levels,
        operator_complexity: complexity,
        ..Default::default()
    };
    rule.finish(
        &mut stats,
        verdict,
        rr_last.sqrt() / b_norm.max(f64::MIN_POSITIVE),
    );
    Ok((
        GpuSolveOutcome {
            u: u_host,
            stats,
            true_residual: residuals.raw,
            equilibrated_residual: residuals.equilibrated,
        },
        orig.u,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amg::tests::lap2d;

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
