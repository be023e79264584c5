//! The GPU backend's settings: the solve strategy and the custom CG's
//! tuning (a layer below the solvers that read them).

/// Largest system for which [`CgLoop::Auto`] picks the persistent kernel:
/// none (it never won on the H200; see [`super::persistent`]).
pub const PERSISTENT_MAX_ROWS: usize = 0;

/// Systems below this many rows run the custom Jacobi-CG iteration in two
/// kernels (the SpMV forms the direction: one grid-wide step less, which
/// is what short iterations pay for), larger ones in three (one gathered
/// vector per entry instead of three, which is what long iterations pay
/// for), unless [`GpuCgOptions::fuse_direction`] says.
pub const FUSED_MAX_ROWS: usize = 500_000;

/// How the custom strategy's iterations are launched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CgLoop {
    /// By the number of rows: persistent below
    /// [`PERSISTENT_MAX_ROWS`] (none: it never won), the graph otherwise.
    #[default]
    Auto,
    /// The iteration's kernels launched one by one (`cg.cu`).
    Launches,
    /// The iterations between two host checks captured once as a CUDA
    /// graph and replayed: one launch per chunk (`gpu::cg`).
    Graph,
    /// One persistent cooperative kernel per chunk (`cg_persistent.cu`).
    Persistent,
}

impl CgLoop {
    /// The choice for a system of `rows` rows.
    // the threshold is a measured constant, zero today
    #[allow(clippy::absurd_extreme_comparisons)]
    pub fn resolve(self, rows: usize) -> CgLoop {
        match self {
            CgLoop::Auto if rows < PERSISTENT_MAX_ROWS => CgLoop::Persistent,
            CgLoop::Auto => CgLoop::Graph,
            other => other,
        }
    }

    /// Name in reports.
    pub fn name(self) -> &'static str {
        match self {
            CgLoop::Auto => "auto",
            CgLoop::Launches => "launches",
            CgLoop::Graph => "graph",
            CgLoop::Persistent => "persistent",
        }
    }

    /// Parses a name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "auto" => Some(Self::Auto),
            "launches" => Some(Self::Launches),
            "graph" => Some(Self::Graph),
            "persistent" => Some(Self::Persistent),
            _ => None,
        }
    }

    /// All names.
    pub const NAMES: &'static [&'static str] = &["auto", "launches", "graph", "persistent"];
}

use bevy_ecs::prelude::*;

/// How the GPU solve phase runs the CG iteration.
#[derive(Resource, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GpuSolveStrategy {
    /// Hand-written kernels (execution model 5): fused SpMV and
    /// dot product, fused vector updates, scalars kept on the device, the
    /// host checking convergence every [`GpuCgOptions::check_every`]
    /// iterations.
    #[default]
    Custom,
    /// cuSPARSE SpMV and cuBLAS vector operations with the scalars on the
    /// host (execution model 6): a synchronisation per dot product.
    Vendor,
}

impl GpuSolveStrategy {
    /// Name used in scenes, on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            GpuSolveStrategy::Custom => "custom",
            GpuSolveStrategy::Vendor => "vendor",
        }
    }

    /// Parses a name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "custom" => Some(Self::Custom),
            "vendor" => Some(Self::Vendor),
            _ => None,
        }
    }

    /// All names.
    pub const NAMES: &'static [&'static str] = &["custom", "vendor"];
}

/// Tuning of the backend: the custom CG's loop and kernels, the AMG
/// setup's site, the assembly's order.
#[derive(Resource, Debug, Clone, Copy, PartialEq, Eq)]
pub struct GpuCgOptions {
    /// Iterations launched between two host convergence checks (each
    /// check copies the residual history, a few hundred bytes, back).
    pub check_every: usize,
    /// Threads per matrix row in the SpMV (2, 4, 8, 16 or 32); `None`
    /// picks from the mean row length (`gpu::launch::spmv_group`).
    pub spmv_group: Option<u32>,
    /// Read the matrix columns as 16-bit offsets from the row where the
    /// numbering's bandwidth allows (`true`; a sixth less matrix traffic,
    /// the same arithmetic).
    pub short_columns: bool,
    /// Launches, a graph per chunk or one persistent kernel per chunk
    /// ([`CgLoop::Auto`]: by size).
    pub cg_loop: CgLoop,
    /// The custom iteration in two kernels, the SpMV forming the search
    /// direction on the fly (`Some(true)`), or three (a direction kernel
    /// first); `None`: two below [`FUSED_MAX_ROWS`] rows. The same
    /// arithmetic bit for bit.
    pub fuse_direction: Option<bool>,
    /// Every matrix entry and right-hand side value summed in a fixed
    /// order (row-wise assembly, `true`: identical runs give identical
    /// answers) or scattered with atomic additions (`false`).
    pub deterministic: bool,
    /// Where AMG-CG's hierarchy is built ([`AmgSetupSite::Device`]).
    pub amg_setup: AmgSetupSite,
}

/// Where the GPU backend builds the AMG hierarchy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AmgSetupSite {
    /// On the device, from the device-assembled matrix (`gpu::amg_setup`).
    #[default]
    Device,
    /// On the host's cores (`amg::Hierarchy`), after downloading the
    /// matrix, then uploaded.
    Host,
}

impl AmgSetupSite {
    /// Parses a name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "device" => Some(Self::Device),
            "host" => Some(Self::Host),
            _ => None,
        }
    }

    /// Name in reports.
    pub fn name(self) -> &'static str {
        match self {
            AmgSetupSite::Device => "device",
            AmgSetupSite::Host => "host",
        }
    }
}

impl Default for GpuCgOptions {
    fn default() -> Self {
        Self {
            check_every: 32,
            spmv_group: None,
            short_columns: true,
            cg_loop: CgLoop::Auto,
            fuse_direction: None,
            deterministic: true,
            amg_setup: AmgSetupSite::Device,
        }
    }
}
