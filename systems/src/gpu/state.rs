//! The top of the backend: the [`GpuState`] resource, the device with the
//! buffers that live across phases (geometry, quadrature data, the
//! assembled system, the solution, the vendor libraries), and the solves
//! as the plugin's systems call them.

use super::cache::PtxCache;
use super::cg::{self, GpuSolveOutcome};
use super::compile::{self, SolveKind};
use super::device::{Device, GResult};
use super::kernels::ModuleSpec;
use super::options::{GpuCgOptions, GpuSolveStrategy};
use super::pattern::DeviceSystem;
use super::report::GpuReport;
use super::vendor::VendorLibs;
use crate::amg::AmgSettings;
use crate::components::{SolverMethod, SolverSettings};
use crate::pipeline::{Phase, PhasePlan};
use crate::solver::CgSettings;
use bevy_ecs::prelude::*;
use cudarc::driver::CudaSlice;

/// Mesh geometry on the device: node coordinates and connectivity.
pub struct Geometry {
    /// Nodes.
    pub nodes: usize,
    /// Elements.
    pub elements: usize,
    /// Node x.
    pub x: CudaSlice<f64>,
    /// Node y.
    pub y: CudaSlice<f64>,
    /// Connectivity, 8 nodes per element.
    pub conn: CudaSlice<u32>,
}

/// Device state shared by the phases of the backend: the [`Device`] and
/// the buffers that stay on it between phases.
#[derive(Resource)]
pub struct GpuState {
    /// Context, stream, kernels.
    pub dev: Device,
    /// Geometry, once uploaded.
    pub geometry: Option<Geometry>,
    /// Quadrature data (structure of arrays, see `quadrature.cu`).
    pub qd: Option<CudaSlice<f64>>,
    /// The system, once assembled or uploaded.
    pub system: Option<DeviceSystem>,
    /// The solution, once solved or uploaded.
    pub u: Option<CudaSlice<f64>>,
    /// cuBLAS and cuSPARSE handles, created for the vendor strategy.
    pub vendor: Option<VendorLibs>,
}

impl std::ops::Deref for GpuState {
    type Target = Device;
    fn deref(&self) -> &Device {
        &self.dev
    }
}

impl std::ops::DerefMut for GpuState {
    fn deref_mut(&mut self) -> &mut Device {
        &mut self.dev
    }
}

/// The kernel modules the backend named `me` needs in `world`'s run: the
/// mesh phases it runs, the solve by method and strategy (and, for the
/// custom Jacobi-CG, the persistent kernel where `cg`'s loop choice picks
/// it for the mesh's size).
pub fn modules_for(world: &World, me: &str, cg: &GpuCgOptions) -> Vec<ModuleSpec> {
    let plan = world.get_resource::<PhasePlan>();
    let on = |p: Phase| plan.is_none_or(|pl| pl.get(p) == me);
    let mesh = [
        Phase::Quadrature,
        Phase::Assembly,
        Phase::Boundary,
        Phase::Post,
    ]
    .into_iter()
    .any(on);
    let method = world
        .get_resource::<SolverSettings>()
        .map(|s| s.method)
        .unwrap_or_default();
    let strategy = world
        .get_resource::<GpuSolveStrategy>()
        .copied()
        .unwrap_or_default();
    let nodes = world
        .get_resource::<crate::components::MeshRes>()
        .map_or(0, |m| m.0.nodes());
    let cg = world.get_resource::<GpuCgOptions>().unwrap_or(cg);
    let persistent = cg.cg_loop.resolve(nodes) == super::options::CgLoop::Persistent;
    let solve = if !on(Phase::Solve) {
        SolveKind::None
    } else {
        match (method, strategy) {
            (SolverMethod::CgJacobi, GpuSolveStrategy::Custom) => SolveKind::CgCustom(persistent),
            (SolverMethod::CgJacobi, GpuSolveStrategy::Vendor) => SolveKind::CgVendor,
            (SolverMethod::AmgCg, _) => SolveKind::Amg,
            _ => SolveKind::Other,
        }
    };
    compile::needed_modules(mesh, on(Phase::Assembly), solve)
}

impl GpuState {
    /// Opens device `ordinal` with the kernel modules `modules`.
    pub fn create(
        ordinal: usize,
        cache: &PtxCache,
        report: &mut GpuReport,
        modules: &[ModuleSpec],
    ) -> GResult<Self> {
        Ok(Self {
            dev: Device::create(ordinal, cache, report, modules)?,
            geometry: None,
            qd: None,
            system: None,
            u: None,
            vendor: None,
        })
    }

    /// The assembled system.
    pub fn system(&self) -> GResult<&DeviceSystem> {
        self.system
            .as_ref()
            .ok_or_else(|| super::device::backend_error("no assembled system on the device"))
    }

    /// Jacobi-PCG on the device system ([`cg::solve`]); `u` stays on the
    /// device for the post-processing.
    pub fn solve_cg(
        &mut self,
        report: &mut GpuReport,
        cg: &CgSettings,
        strategy: GpuSolveStrategy,
        options: &GpuCgOptions,
        progress: &mut dyn FnMut(usize, f64) -> bool,
    ) -> GResult<GpuSolveOutcome> {
        if strategy == GpuSolveStrategy::Vendor && self.vendor.is_none() {
            self.vendor = Some(VendorLibs::new(&self.dev.stream)?);
        }
        let sys = self.system()?;
        let (out, u) = cg::solve(
            &self.dev,
            sys,
            self.vendor.as_ref(),
            report,
            cg,
            strategy,
            options,
            progress,
        )?;
        self.u = Some(u);
        Ok(out)
    }

    /// AMG-CG on the device system ([`super::amg::solve`]).
    pub fn solve_amg(
        &mut self,
        report: &mut GpuReport,
        cg: &CgSettings,
        amg: &AmgSettings,
        options: &GpuCgOptions,
        progress: &mut dyn FnMut(usize, f64) -> bool,
    ) -> GResult<GpuSolveOutcome> {
        let sys = self.system()?;
        let (out, u) =
            super::amg::solve(&self.dev, sys, report, cg, amg, options.amg_setup, progress)?;
        self.u = Some(u);
        Ok(out)
    }
}
