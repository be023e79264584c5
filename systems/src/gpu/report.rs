//! What the GPU backend did ([`GpuReport`]): device, compilation, every
//! counted transfer, the solve's shape. The bottom of the module stack:
//! it depends on nothing else of the backend but its settings.

use super::options::GpuSolveStrategy;
use bevy_ecs::prelude::*;
use std::path::PathBuf;

/// One counted copy between host and device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    /// What was copied.
    pub what: &'static str,
    /// Host to device (`true`) or back.
    pub to_device: bool,
    /// Bytes.
    pub bytes: u64,
}

/// What the GPU backend did: device, compilation, data movement, solve.
#[derive(Resource, Debug, Clone, Default)]
pub struct GpuReport {
    /// Device name.
    pub device_name: String,
    /// Compute capability.
    pub compute_capability: (i32, i32),
    /// Architecture compiled for (`sm_90`).
    pub arch: String,
    /// Multiprocessors.
    pub multiprocessors: u32,
    /// Seconds to initialise the driver and create the context.
    pub init_seconds: f64,
    /// Seconds spent in NVRTC (0 on a cache hit).
    pub nvrtc_seconds: f64,
    /// Seconds to load the module and its kernels.
    pub module_load_seconds: f64,
    /// Whether the PTX came from the cache.
    pub cache_hit: bool,
    /// The cache file read or written, if any.
    pub cache_file: Option<PathBuf>,
    /// Bytes copied host to device.
    pub bytes_to_device: u64,
    /// Bytes copied device to host.
    pub bytes_to_host: u64,
    /// Every copy, in order, merged by name and direction.
    pub transfers: Vec<Transfer>,
    /// Strategy of the solve, once it ran.
    pub strategy: Option<GpuSolveStrategy>,
    /// Threads per row of the custom SpMV.
    pub spmv_group: u32,
    /// Host round trips of the solve loop (convergence checks or, for the
    /// vendor strategy, dot products).
    pub host_syncs: usize,
    /// Stored entries of the device matrix (full CSR).
    pub device_nnz: usize,
    /// Largest `|column - row|` of the matrix (custom CG).
    pub bandwidth: usize,
    /// Whether the custom CG read 16-bit column offsets.
    pub short_columns: bool,
    /// Largest device memory in use seen at the sampling points (after the
    /// solver's buffers are allocated, and after post-processing), bytes.
    /// Measured as total minus free memory of the device, so it includes
    /// the context and anything else on the card.
    pub device_memory_peak: u64,
    /// Kernel modules loaded (`gpu::compile`), in load order.
    pub modules: Vec<String>,
    /// Modules compiled by NVRTC in this run (the rest came from the
    /// cache); `nvrtc_seconds` is the wall time of compiling them in
    /// parallel.
    pub modules_compiled: usize,
    /// Modules already loaded on the device by an earlier run of this
    /// process (a server, a Python session): neither read nor loaded again.
    pub modules_reused: usize,
    /// How the Jacobi-CG iterations were driven (`launches`, `graph`,
    /// `persistent`), once the custom solve ran.
    pub cg_loop: Option<&'static str>,
    /// Kernels per Jacobi-CG iteration (2: the SpMV forms the direction;
    /// 3: a direction kernel first; 1: the persistent kernel).
    pub cg_kernels: u32,
    /// Graph launches of the Jacobi-CG loop (one per chunk).
    pub cg_graph_launches: usize,
    /// Why capturing the CG iterations as a graph failed, where it did
    /// (the loop then launched them one by one).
    pub cg_graph_error: Option<String>,
    /// Whether the assembly summed every entry in a fixed order
    /// (`[gpu] deterministic`), once it ran.
    pub deterministic_assembly: Option<bool>,
    /// Where the AMG hierarchy was built (`device` or `host`), once an
    /// AMG-CG solve ran.
    pub amg_setup: Option<&'static str>,
    /// Rows of every AMG level, finest first (AMG-CG).
    pub amg_sizes: Vec<usize>,
}

impl GpuReport {
    /// Samples the device's memory in use into `device_memory_peak`.
    pub fn sample_memory(&mut self, ctx: &cudarc::driver::CudaContext) {
        if let Ok((free, total)) = ctx.mem_get_info() {
            self.device_memory_peak = self.device_memory_peak.max((total - free) as u64);
        }
    }

    /// Counts a copy.
    pub fn count(&mut self, what: &'static str, to_device: bool, bytes: usize) {
        let bytes = bytes as u64;
        if to_device {
            self.bytes_to_device += bytes;
        } else {
            self.bytes_to_host += bytes;
        }
        match self
            .transfers
            .iter_mut()
            .find(|t| t.what == what && t.to_device == to_device)
        {
            Some(t) => t.bytes += bytes,
            None => self.transfers.push(Transfer {
                what,
                to_device,
                bytes,
            }),
        }
    }
}
