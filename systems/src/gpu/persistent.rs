//! The persistent Jacobi-CG (`kernels/cg_persistent.cu`): one cooperative
//! launch runs a whole chunk of iterations with grid barriers where the
//! three-kernel loop has kernel boundaries. [`CgLoop`] says which of the
//! two drives the custom strategy; [`CgLoop::Auto`] picks by the number of
//! rows ([`PERSISTENT_MAX_ROWS`]).
//!
//! Measured on the H200 (`systems/tests/gpu.rs::cg_loop_crossover`,
//! `profiles/gpu_h200/crossover_run*.log`, curved channels, microseconds
//! per iteration, launches / persistent): 48k rows 19.1 / 19.6, 193k
//! 29.9 / 32.4, 770k 77.6 / 108, 2.2M 190 / 304, 6.7M 524 / 861 with the
//! barrier that sums (4 blocks per SM); an earlier variant (8 blocks per
//! SM, every block summing the partials) gave 19.5 / 19.6, 30.1 / 29.1,
//! 77.6 / 87.2, 192 / 230, 529 / 651. The three launches win or tie at
//! every size (the short iterations are bound by the latency of three
//! dependent grid-wide steps, which a grid barrier does not shorten), so
//! [`CgLoop::Auto`] does not pick it (the three launches, now two kernels
//! replayed from a graph per chunk, are the default); the persistent
//! kernel stays selectable and tested (same iteration count within one and
//! the same `u` within rounding).

use super::device::{Ctx, Device, GResult};
use super::kernels::PERSISTENT_GROUPS;
use super::launch;
pub use super::options::CgLoop;
use cudarc::driver::{CudaFunction, CudaSlice, LaunchConfig, PushKernelArg};

pub use super::options::PERSISTENT_MAX_ROWS;

/// A persistent launch runs this many host check intervals
/// (`check_every`) of iterations: the host reads the history once per
/// launch.
pub const PERSISTENT_CHUNKS: usize = 8;

/// The persistent kernel chosen for one solve, with its grid and barrier.
pub struct PersistentCg {
    /// The kernel for absolute columns.
    pub f32col: CudaFunction,
    /// The kernel for 16-bit column offsets.
    pub f16col: CudaFunction,
    /// Blocks: as many as are resident at once, at most a reduction wave.
    pub grid: u32,
    /// Barrier counter and generation.
    pub bar: CudaSlice<u32>,
}

/// The group size of the persistent kernel nearest `group`.
pub fn persistent_group(group: u32) -> u32 {
    *PERSISTENT_GROUPS
        .iter()
        .min_by_key(|&&g| (g as i64 - group as i64).unsigned_abs())
        .unwrap_or(&8)
}

/// Resident blocks per multiprocessor the persistent kernel asks for at
/// most: enough threads to keep the loads in flight, few enough that a
/// barrier's arrivals stay cheap.
pub const PERSISTENT_BLOCKS_PER_SM: u32 = 4;

/// Blocks of a cooperative launch: what fits at once (`per_sm` blocks on
/// each of `sms` multiprocessors), at most [`PERSISTENT_BLOCKS_PER_SM`]
/// per multiprocessor (the partial sums and the totals after them fit
/// the reduction buffer of `3 * max_reduction_blocks` doubles).
pub fn cooperative_grid(per_sm: u32, sms: u32) -> u32 {
    (per_sm.min(PERSISTENT_BLOCKS_PER_SM) * sms).max(1)
}

impl PersistentCg {
    /// The kernel for `group` threads per row, or `None` when the device
    /// cannot run it cooperatively (the caller then launches the three
    /// kernels).
    pub fn new(dev: &Device, group: u32) -> GResult<Option<Self>> {
        let g = persistent_group(group);
        // not loaded: the run was set up for the three-kernel loop
        let (Ok(f32col), Ok(f16col)) = (
            dev.func(&format!("qf_cg_persistent_g{g}")),
            dev.func(&format!("qf_cg_persistent16_g{g}")),
        ) else {
            return Ok(None);
        };
        let (f32col, f16col) = (f32col.clone(), f16col.clone());
        let coop = dev
            .ctx
            .attribute(
                cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COOPERATIVE_LAUNCH,
            )
            .unwrap_or(0);
        if coop == 0 {
            return Ok(None);
        }
        let per_sm = [&f32col, &f16col]
            .iter()
            .map(|f| {
                f.occupancy_max_active_blocks_per_multiprocessor(launch::BLOCK, 0, None)
                    .unwrap_or(0)
            })
            .min()
            .unwrap_or(0);
        if per_sm == 0 {
            return Ok(None);
        }
        Ok(Some(Self {
            f32col,
            f16col,
            grid: cooperative_grid(per_sm, dev.sms),
            bar: dev.zeros::<u32>(2)?,
        }))
    }

    /// The launch shape.
    pub fn config(&self) -> LaunchConfig {
        LaunchConfig {
            grid_dim: (self.grid, 1, 1),
            block_dim: (launch::BLOCK, 1, 1),
            shared_mem_bytes: 0,
        }
    }
}

/// The buffers one persistent launch reads and writes.
pub struct PersistentArgs<'a> {
    /// Rows.
    pub n: usize,
    /// Row starts.
    pub rowptr: &'a CudaSlice<u32>,
    /// Absolute columns.
    pub col: &'a CudaSlice<u32>,
    /// 16-bit column offsets, when used.
    pub dcol: Option<&'a CudaSlice<i16>>,
    /// Equilibrated values.
    pub vs: &'a CudaSlice<f64>,
    /// `1 / diag`.
    pub inv_diag: &'a CudaSlice<f64>,
    /// Iterate.
    pub x: &'a mut CudaSlice<f64>,
    /// Residual.
    pub r: &'a mut CudaSlice<f64>,
    /// Direction.
    pub p: &'a mut CudaSlice<f64>,
    /// `A p`.
    pub q: &'a mut CudaSlice<f64>,
    /// History ring.
    pub hist: &'a mut CudaSlice<f64>,
    /// Ring slots.
    pub ring: usize,
    /// The loop's control values (the threshold; `kernels::ctl`).
    pub ctl: &'a CudaSlice<f64>,
}

impl PersistentCg {
    /// Enqueues iterations `it0..it0 + nit` as one cooperative launch.
    pub fn launch(
        &mut self,
        dev: &Device,
        a: PersistentArgs<'_>,
        it0: usize,
        nit: usize,
    ) -> GResult<()> {
        let (n, it0, nit, ring) = (a.n as i32, it0 as i32, nit as i32, a.ring as i32);
        let cfg = self.config();
        let f = if a.dcol.is_some() {
            &self.f16col
        } else {
            &self.f32col
        };
        let mut l = dev.stream.launch_builder(f);
        l.arg(&n).arg(&it0).arg(&nit).arg(&ring).arg(a.rowptr);
        match a.dcol {
            Some(d) => l.arg(d),
            None => l.arg(a.col),
        };
        l.arg(a.vs)
            .arg(a.inv_diag)
            .arg(a.x)
            .arg(a.r)
            .arg(a.p)
            .arg(a.q)
            .arg(a.hist)
            .arg(&dev.flags)
            .arg(a.ctl)
            .arg(&dev.partials)
            .arg(&mut self.bar);
        // SAFETY: argument types and buffer sizes match the kernel; the grid
        // fits on the device at once (occupancy) and within the partials.
        unsafe { l.launch_cooperative(cfg) }.ctx("qf_cg_persistent")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loop_choice_by_size() {
        assert_eq!(CgLoop::Auto.resolve(195_853), CgLoop::Graph);
        assert_eq!(CgLoop::Auto.resolve(0), CgLoop::Graph);
        assert_eq!(
            CgLoop::Auto.resolve(PERSISTENT_MAX_ROWS + 1_000_000),
            CgLoop::Graph
        );
        assert_eq!(CgLoop::Launches.resolve(10), CgLoop::Launches);
        assert_eq!(CgLoop::Persistent.resolve(1 << 30), CgLoop::Persistent);
        for l in [
            CgLoop::Auto,
            CgLoop::Launches,
            CgLoop::Graph,
            CgLoop::Persistent,
        ] {
            assert_eq!(CgLoop::parse(l.name()), Some(l));
            assert!(CgLoop::NAMES.contains(&l.name()));
        }
        assert_eq!(CgLoop::parse("graphs"), None);
    }

    #[test]
    fn groups_and_grids() {
        assert_eq!(persistent_group(8), 8);
        assert_eq!(persistent_group(2), 4);
        assert_eq!(persistent_group(32), 16);
        // 132 SMs: at most 4 blocks each, fewer where fewer fit
        assert_eq!(cooperative_grid(8, 132), 528);
        assert_eq!(cooperative_grid(3, 132), 396);
        assert_eq!(cooperative_grid(0, 0), 1);
        // partials and totals fit the reduction buffer
        let g = cooperative_grid(64, 132);
        assert!(3 * g + 3 <= 3 * launch::max_reduction_blocks(132));
    }
}
