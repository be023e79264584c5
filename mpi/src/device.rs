//! One GPU per rank (`[mpi] local = "gpu"`): the device of each rank and
//! the distributed Jacobi-CG's local kernels on it.
//!
//! **Device choice** ([`choose_device`]): before MPI and CUDA start, a rank
//! started by a launcher that says its rank on the node
//! (`OMPI_COMM_WORLD_LOCAL_RANK`, `MPI_LOCALRANKID`, `SLURM_LOCALID`)
//! narrows `CUDA_VISIBLE_DEVICES` to device `local rank % devices` (the
//! devices already visible, or the `/dev/nvidiaN` nodes): the gpu backend
//! then opens its device 0, which is that one. Ranks beyond the device
//! count share devices.
//!
//! **Kernels** ([`DeviceKernels`], `kernels/mpi_cg.cu`, compiled by NVRTC
//! and cached like the gpu backend's): the rank's rows of the equilibrated
//! matrix in full CSR and the CG vectors (with the ghost entries of `r`
//! and `p`) stay on the device; per iteration, the new `r` of the rows the
//! neighbours need is gathered on the device and copied to a host buffer,
//! the messages travel while the all-reduce of `(r.r, r.z)` runs and,
//! after it, while the device runs the owned rows' direction update
//! (launched, not waited for); the ghosts received are copied up and
//! scattered, then the ghosts' direction, the product and the update. At
//! the convergence rule's checks the device computes the true residual
//! `b - A x` (`x`'s ghosts exchanged as `r`'s). The halo is staged through
//! host buffers. Reductions come back as one or two partial sums per block,
//! which the host adds in block order. The same split of the work as the
//! host's [`crate::kernels::SplitKernels`], its twin, which the tests run
//! where there is no GPU.

use crate::assemble::LocalSystem;
use crate::cg::{DistSolution, EquilibratedDist};
use crate::comm::Comm;
use crate::kernels::LocalKernels;
use crate::part::{Halo, Part};
use bevy_ecs::prelude::*;
use cudarc::driver::{
    CudaFunction, CudaModule, CudaSlice, CudaStream, LaunchConfig, PushKernelArg,
};
use cudarc::nvrtc::Ptx;
use quadflow_systems::gpu::cache::{CacheKey, PtxCache};
use quadflow_systems::gpu::compile;
use quadflow_systems::gpu::device::guard;
use quadflow_systems::gpu::{GpuReport, GpuState};
use quadflow_systems::solver::{CgSettings, SolveError};
use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;

/// The kernels' source.
pub const SOURCE: &str = include_str!("../../kernels/mpi_cg.cu");

/// Threads per block (`QF_MPI_BLOCK`).
const BLOCK: u32 = 256;
/// Threads per matrix row in the product (`QF_MPI_GROUP`).
const GROUP: u32 = 8;

/// The environment variables launchers give a rank's index on its node.
pub const LOCAL_RANK_VARS: &[&str] = &[
    "OMPI_COMM_WORLD_LOCAL_RANK",
    "MPI_LOCALRANKID",
    "SLURM_LOCALID",
];

/// This process's rank on its node, as the launcher says.
pub fn local_rank() -> Option<usize> {
    LOCAL_RANK_VARS
        .iter()
        .find_map(|v| std::env::var(v).ok()?.trim().parse().ok())
}

/// The device a rank of local rank `local` takes among `visible`.
pub fn pick(local: usize, visible: &[String]) -> Option<&String> {
    (!visible.is_empty()).then(|| &visible[local % visible.len()])
}

/// The devices visible to this process without starting CUDA:
/// `CUDA_VISIBLE_DEVICES` if set, else one per `/dev/nvidiaN` node.
fn visible_devices() -> Vec<String> {
    if let Ok(v) = std::env::var("CUDA_VISIBLE_DEVICES")
        && !v.trim().is_empty()
    {
        return v.split(',').map(|s| s.trim().to_string()).collect();
    }
    let mut n: Vec<usize> = std::fs::read_dir("/dev")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| {
                    e.file_name()
                        .to_str()?
                        .strip_prefix("nvidia")?
                        .parse::<usize>()
                        .ok()
                })
                .collect()
        })
        .unwrap_or_default();
    n.sort_unstable();
    n.into_iter().map(|i| i.to_string()).collect()
}

/// Narrows `CUDA_VISIBLE_DEVICES` to this rank's device (see the module
/// documentation); returns the device chosen, or `None` where no launcher
/// gives a local rank or no device is seen. Call it before MPI or CUDA
/// start (before any other thread exists).
pub fn choose_device() -> Option<String> {
    let local = local_rank()?;
    let visible = visible_devices();
    let d = pick(local, &visible)?.clone();
    // SAFETY: called before MPI and CUDA are started, from the main
    // thread, while no other thread of this process reads the
    // environment.
    unsafe { std::env::set_var("CUDA_VISIBLE_DEVICES", &d) };
    Some(d)
}

/// Kernel names of `kernels/mpi_cg.cu`.
const NAMES: [&str; 8] = [
    "qf_mpi_direction",
    "qf_mpi_gather",
    "qf_mpi_scatter",
    "qf_mpi_spmv",
    "qf_mpi_update",
    "qf_mpi_axpy",
    "qf_mpi_residual",
    "qf_mpi_fold",
];

fn err(what: &str, e: impl std::fmt::Debug) -> String {
    format!("{what}: {e:?}")
}

/// Compiles (NVRTC, straight to machine code, with the gpu backend's
/// compiler) or reads from the kernel cache, and loads the kernels into
/// the gpu backend's context; a cached program the driver refuses is
/// compiled afresh.
fn load(st: &GpuState) -> Result<Arc<CudaModule>, String> {
    let (major, minor) = st
        .ctx
        .compute_capability()
        .map_err(|e| err("compute capability", e))?;
    let arch = quadflow_systems::gpu::kernels::arch_name(major, minor);
    let options = vec!["--std=c++17".to_string()];
    let key = CacheKey::new(SOURCE, &options, arch);
    let cache = PtxCache::from_env();
    let compile = || compile::compile(SOURCE, "mpi_cg", arch, &options);
    let (bin, origin) = cache
        .get_or_compile(&key, compile)
        .map_err(|e| format!("kernels/mpi_cg.cu: {e}"))?;
    match st.ctx.load_module(Ptx::from_binary(bin)) {
        Ok(m) => Ok(m),
        Err(_) if origin.is_hit() => {
            cache.remove(&key);
            let bin = compile().map_err(|e| format!("kernels/mpi_cg.cu: {e}"))?;
            st.ctx
                .load_module(Ptx::from_binary(bin))
                .map_err(|e| err("loading kernels/mpi_cg.cu", e))
        }
        Err(e) => Err(err("loading kernels/mpi_cg.cu", e)),
    }
}

/// [`LocalKernels`] on the gpu backend's device (see the module
/// documentation).
pub struct DeviceKernels {
    stream: Arc<CudaStream>,
    f: [CudaFunction; 8],
    n: usize,
    cols: usize,
    blocks: u32,
    spmv_blocks: u32,
    rowptr: CudaSlice<u32>,
    col: CudaSlice<u32>,
    val: CudaSlice<f64>,
    inv_diag: CudaSlice<f64>,
    inv_diag_host: Vec<f64>,
    /// `b` on the owned rows (for the true residual).
    b: CudaSlice<f64>,
    /// The correction since the last fold (owned rows).
    x: CudaSlice<f64>,
    /// The folded iterate, column space: owned rows, then ghosts.
    base: CudaSlice<f64>,
    r: CudaSlice<f64>,
    p: CudaSlice<f64>,
    q: CudaSlice<f64>,
    partials: CudaSlice<f64>,
    send_idx: CudaSlice<u32>,
    send: CudaSlice<f64>,
    send_host: Vec<f64>,
    recv_idx: CudaSlice<u32>,
    recv: CudaSlice<f64>,
    recv_host: Vec<f64>,
    failure: Option<String>,
    /// Bytes copied to the device and back (halo values, partial sums).
    pub bytes_up: u64,
    /// See `bytes_up`.
    pub bytes_down: u64,
}

fn grid(items: usize, per_block: u32, max: u32) -> u32 {
    (items.div_ceil(per_block as usize) as u32).clamp(1, max)
}

fn cfg(blocks: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

impl DeviceKernels {
    /// Uploads the rank's equilibrated rows (`eq.a`, full rows) and sets
    /// up the halo staging for `eq.a.halo`.
    pub fn new(
        st: &GpuState,
        module: &Arc<CudaModule>,
        eq: &EquilibratedDist,
    ) -> Result<Self, String> {
        guard(|| Ok(Self::create(st, module, eq))).map_err(|e| e.to_string())?
    }

    fn create(
        st: &GpuState,
        module: &Arc<CudaModule>,
        eq: &EquilibratedDist,
    ) -> Result<Self, String> {
        let s = st.stream.clone();
        let a = &eq.a;
        let n = a.nrows();
        let f = NAMES.map(|name| module.load_function(name));
        let f = {
            let mut out = Vec::with_capacity(NAMES.len());
            for (r, name) in f.into_iter().zip(NAMES) {
                out.push(r.map_err(|e| err(name, e))?);
            }
            <[CudaFunction; 8]>::try_from(out).map_err(|_| "eight kernels".to_string())?
        };
        let up32 = |v: &[u32]| s.clone_htod(if v.is_empty() { &[0u32][..] } else { v });
        let up64 = |v: &[f64]| s.clone_htod(if v.is_empty() { &[0f64][..] } else { v });
        let rowptr: Vec<u32> = a
            .rowptr()
            .iter()
            .map(|&v| u32::try_from(v).map_err(|_| "over 2^32 entries on a rank".to_string()))
            .collect::<Result<_, _>>()?;
        let halo = &eq.halo;
        let send_idx: Vec<u32> = halo
            .neighbours
            .iter()
            .flat_map(|nb| nb.send.clone())
            .collect();
        let recv_idx: Vec<u32> = halo
            .neighbours
            .iter()
            .flat_map(|nb| nb.recv.clone())
            .collect();
        let max_blocks = 8 * st.sms.max(1);
        let cols = a.ncols();
        let blocks = grid(cols, BLOCK, max_blocks);
        let spmv_blocks = grid(n * GROUP as usize, BLOCK, max_blocks);
        let alloc = |len: usize| s.alloc_zeros::<f64>(len.max(1));
        let e = |x| err("device memory", x);
        let k = Self {
            f,
            n,
            cols,
            blocks,
            spmv_blocks,
            rowptr: up32(&rowptr).map_err(e)?,
            col: up32(a.cols()).map_err(e)?,
            val: up64(a.vals()).map_err(e)?,
            inv_diag: up64(&eq.inv_diag_cols).map_err(e)?,
            inv_diag_host: eq.inv_diag.clone(),
            b: alloc(n).map_err(e)?,
            x: alloc(cols).map_err(e)?,
            base: alloc(cols).map_err(e)?,
            r: alloc(cols).map_err(e)?,
            p: alloc(cols).map_err(e)?,
            q: alloc(n).map_err(e)?,
            partials: alloc(2 * max_blocks as usize).map_err(e)?,
            send: alloc(send_idx.len()).map_err(e)?,
            send_host: vec![0.0; send_idx.len()],
            send_idx: up32(&send_idx).map_err(e)?,
            recv: alloc(recv_idx.len()).map_err(e)?,
            recv_host: vec![0.0; recv_idx.len()],
            recv_idx: up32(&recv_idx).map_err(e)?,
            failure: None,
            bytes_up: (4 * (n + 1) + 12 * a.nnz() + 8 * cols) as u64,
            bytes_down: 0,
            stream: s,
        };
        k.stream.synchronize().map_err(|x| err("synchronize", x))?;
        Ok(k)
    }

    /// Runs `f`; a failure is kept for [`LocalKernels::take_failure`] (the
    /// first one), and later work is skipped.
    fn run(&mut self, what: &str, f: impl FnOnce(&mut Self) -> Result<(), String>) {
        if self.failure.is_some() {
            return;
        }
        let r = guard(|| Ok(f(self))).unwrap_or_else(|e| Err(e.to_string()));
        if let Err(e) = r {
            self.failure = Some(format!("device kernels ({what}): {e}"));
        }
    }

    /// `q = A p` on the owned rows, the blocks' shares of `p.q` into
    /// `partials`.
    fn launch_spmv(&mut self) -> Result<(), String> {
        let (lo, hi) = (0i32, self.n as i32);
        let mut l = self.stream.launch_builder(&self.f[3]);
        l.arg(&lo)
            .arg(&hi)
            .arg(&self.rowptr)
            .arg(&self.col)
            .arg(&self.val)
            .arg(&self.p)
            .arg(&mut self.q)
            .arg(&mut self.partials);
        // SAFETY: the arguments match qf_mpi_spmv's signature; rowptr has
        // n + 1 entries, columns index p (n + ghosts), the partials buffer
        // holds a value per block (at most 8 x SMs blocks).
        unsafe { l.launch(cfg(self.spmv_blocks)) }
            .map(|_| ())
            .map_err(|e| err("qf_mpi_spmv", e))
    }

    /// The direction update of the column-space entries `lo..hi`.
    fn launch_direction(
        &mut self,
        lo: usize,
        hi: usize,
        beta: f64,
        alpha_prev: f64,
    ) -> Result<(), String> {
        if hi <= lo {
            return Ok(());
        }
        let (lo32, hi32, n) = (lo as i32, hi as i32, self.n as i32);
        let blocks = grid(hi - lo, BLOCK, self.blocks);
        let mut l = self.stream.launch_builder(&self.f[0]);
        l.arg(&lo32)
            .arg(&hi32)
            .arg(&n)
            .arg(&self.r)
            .arg(&self.inv_diag)
            .arg(&beta)
            .arg(&alpha_prev)
            .arg(&mut self.p)
            .arg(&mut self.x);
        // SAFETY: qf_mpi_direction's signature; r, inv_diag, p, x hold
        // cols entries (hi <= cols; x written below n only).
        unsafe { l.launch(cfg(blocks)) }
            .map(|_| ())
            .map_err(|e| err("qf_mpi_direction", e))
    }

    /// The first `len` values of the partials buffer (synchronises).
    fn read_partials(&mut self, len: usize) -> Result<Vec<f64>, String> {
        let mut h = vec![0.0; len];
        self.stream
            .memcpy_dtoh(&self.partials.slice(..len), &mut h[..])
            .map_err(|e| err("copying partial sums", e))?;
        self.bytes_down += 8 * len as u64;
        Ok(h)
    }

    /// The values of `r` (or `base`) the neighbours need, gathered on the
    /// device and copied into `bufs`.
    fn pack_of(&mut self, of_base: bool, halo: &Halo, bufs: &mut [Vec<f64>]) {
        self.run("halo to the host", |k| {
            let m = k.send_host.len() as i32;
            if m == 0 {
                return Ok(());
            }
            let mut l = k.stream.launch_builder(&k.f[1]);
            l.arg(&m).arg(&k.send_idx);
            if of_base {
                l.arg(&k.base);
            } else {
                l.arg(&k.r);
            }
            l.arg(&mut k.send);
            // SAFETY: qf_mpi_gather's signature; send holds m values,
            // send_idx m owned rows of r and base.
            unsafe { l.launch(cfg(grid(m as usize, BLOCK, 1024))) }
                .map_err(|e| err("qf_mpi_gather", e))?;
            k.stream
                .memcpy_dtoh(&k.send, &mut k.send_host[..])
                .map_err(|e| err("copying halo values", e))?;
            k.bytes_down += 8 * m as u64;
            Ok(())
        });
        let mut at = 0;
        for (nb, b) in halo.neighbours.iter().zip(bufs.iter_mut()) {
            let m = nb.send.len();
            b.copy_from_slice(&self.send_host[at..at + m]);
            at += m;
        }
    }

    /// The received ghost values of `r` (or `base`) copied up and
    /// scattered.
    fn unpack_of(&mut self, of_base: bool, halo: &Halo, bufs: &[Vec<f64>]) {
        let mut at = 0;
        for (nb, b) in halo.neighbours.iter().zip(bufs) {
            let m = nb.recv.len();
            self.recv_host[at..at + m].copy_from_slice(b);
            at += m;
        }
        self.run("ghosts to the device", |k| {
            let m = k.recv_host.len() as i32;
            if m == 0 {
                return Ok(());
            }
            k.stream
                .memcpy_htod(&k.recv_host[..], &mut k.recv)
                .map_err(|e| err("copying ghost values", e))?;
            k.bytes_up += 8 * m as u64;
            let mut l = k.stream.launch_builder(&k.f[2]);
            l.arg(&m).arg(&k.recv_idx).arg(&k.recv);
            if of_base {
                l.arg(&mut k.base);
            } else {
                l.arg(&mut k.r);
            }
            // SAFETY: qf_mpi_scatter's signature; recv_idx indexes the
            // ghost entries of r and base.
            unsafe { l.launch(cfg(grid(m as usize, BLOCK, 1024))) }
                .map(|_| ())
                .map_err(|e| err("qf_mpi_scatter", e))
        });
    }

    /// Sums of the two-value partials of `blocks` blocks.
    fn read_pairs(&mut self, blocks: usize) -> Result<[f64; 2], String> {
        let h = self.read_partials(2 * blocks)?;
        let mut s = [0.0; 2];
        for c in h.chunks_exact(2) {
            s[0] += c[0];
            s[1] += c[1];
        }
        Ok(s)
    }
}

impl LocalKernels for DeviceKernels {
    fn start(&mut self, b: &[f64]) -> [f64; 2] {
        let mut s = [0.0; 2];
        for (ri, di) in b.iter().zip(&self.inv_diag_host) {
            s[0] += ri * ri;
            s[1] += ri * ri * di;
        }
        self.run("start", |k| {
            let e = |x| err("start", x);
            k.stream.memset_zeros(&mut k.r).map_err(e)?;
            if !b.is_empty() {
                k.stream
                    .memcpy_htod(b, &mut k.r.slice_mut(..b.len()))
                    .map_err(e)?;
                k.stream
                    .memcpy_htod(b, &mut k.b.slice_mut(..b.len()))
                    .map_err(e)?;
            }
            k.stream.memset_zeros(&mut k.x).map_err(e)?;
            k.stream.memset_zeros(&mut k.base).map_err(e)?;
            k.stream.memset_zeros(&mut k.p).map_err(e)?;
            k.bytes_up += 16 * b.len() as u64;
            Ok(())
        });
        s
    }

    fn pack(&mut self, halo: &Halo, bufs: &mut [Vec<f64>]) {
        self.pack_of(false, halo, bufs);
    }

    fn unpack(&mut self, halo: &Halo, bufs: &[Vec<f64>]) {
        self.unpack_of(false, halo, bufs);
    }

    fn product_interior(&mut self, beta: f64, alpha_prev: f64) {
        // launched only: the device updates the owned rows' direction
        // while the host waits for the ghosts
        let n = self.n;
        self.run("direction", |k| k.launch_direction(0, n, beta, alpha_prev));
    }

    fn product_rest(&mut self, beta: f64, alpha_prev: f64) -> f64 {
        let (n, cols, blocks) = (self.n, self.cols, self.spmv_blocks as usize);
        let mut pq = 0.0;
        self.run("product", |k| {
            k.launch_direction(n, cols, beta, alpha_prev)?;
            k.launch_spmv()?;
            pq = k.read_partials(blocks)?.iter().sum::<f64>();
            Ok(())
        });
        pq
    }

    fn update(&mut self, alpha: f64) -> [f64; 2] {
        let mut s = [0.0; 2];
        let blocks = grid(self.n, BLOCK, self.blocks.max(1));
        self.run("update", |k| {
            let n = k.n as i32;
            let mut l = k.stream.launch_builder(&k.f[4]);
            l.arg(&n)
                .arg(&alpha)
                .arg(&k.q)
                .arg(&k.inv_diag)
                .arg(&mut k.r)
                .arg(&mut k.partials);
            // SAFETY: qf_mpi_update's signature; partials hold two values
            // per block (at most 8 x SMs blocks).
            unsafe { l.launch(cfg(blocks)) }.map_err(|e| err("qf_mpi_update", e))?;
            s = k.read_pairs(blocks as usize)?;
            Ok(())
        });
        s
    }

    fn flush(&mut self, alpha: f64) {
        let blocks = self.blocks;
        self.run("x update", |k| {
            let n = k.n as i32;
            let mut l = k.stream.launch_builder(&k.f[5]);
            l.arg(&n).arg(&alpha).arg(&k.p).arg(&mut k.x);
            // SAFETY: qf_mpi_axpy's signature.
            unsafe { l.launch(cfg(blocks)) }
                .map(|_| ())
                .map_err(|e| err("qf_mpi_axpy", e))
        });
    }

    fn fold(&mut self) {
        let blocks = self.blocks;
        self.run("fold", |k| {
            let n = k.n as i32;
            let mut l = k.stream.launch_builder(&k.f[7]);
            l.arg(&n).arg(&mut k.x).arg(&mut k.base);
            // SAFETY: qf_mpi_fold's signature; x and base hold n entries
            // at least.
            unsafe { l.launch(cfg(blocks)) }
                .map(|_| ())
                .map_err(|e| err("qf_mpi_fold", e))
        });
    }

    fn pack_iterate(&mut self, halo: &Halo, bufs: &mut [Vec<f64>]) {
        self.pack_of(true, halo, bufs);
    }

    fn unpack_iterate(&mut self, halo: &Halo, bufs: &[Vec<f64>]) {
        self.unpack_of(true, halo, bufs);
    }

    fn replace_residual(&mut self) -> [f64; 2] {
        let mut s = [0.0; 2];
        let blocks = grid(self.n, BLOCK, self.blocks.max(1));
        self.run("true residual", |k| {
            let n = k.n as i32;
            let mut l = k.stream.launch_builder(&k.f[6]);
            l.arg(&n)
                .arg(&k.rowptr)
                .arg(&k.col)
                .arg(&k.val)
                .arg(&k.b)
                .arg(&k.base)
                .arg(&k.inv_diag)
                .arg(&mut k.r)
                .arg(&mut k.partials);
            // SAFETY: qf_mpi_residual's signature; rowptr has n + 1
            // entries, columns index base (n + ghosts), partials hold two
            // values per block.
            unsafe { l.launch(cfg(blocks)) }.map_err(|e| err("qf_mpi_residual", e))?;
            s = k.read_pairs(blocks as usize)?;
            Ok(())
        });
        s
    }

    fn iterate(&mut self) -> Vec<f64> {
        let mut x = vec![0.0; self.n];
        self.run("the iterate", |k| {
            if k.n > 0 {
                k.stream
                    .memcpy_dtoh(&k.base.slice(..k.n), &mut x[..])
                    .map_err(|e| err("copying the iterate", e))?;
            }
            k.bytes_down += 8 * k.n as u64;
            Ok(())
        });
        x
    }

    fn take_failure(&mut self) -> Option<String> {
        self.failure.take()
    }

    fn bytes_per_iteration(&self) -> usize {
        // matrix once (12 bytes an entry, 4 a row start); direction reads
        // r, inv_diag, p and writes p (owned and ghosts), x read and
        // written; the product reads p, writes q; the update reads r, q,
        // inv_diag and writes r
        let (n, g) = (self.n, self.cols - self.n);
        12 * self.val.len() + 4 * (n + 1) + 8 * (4 * (n + g) + 2 * n + 2 * n + 4 * n)
    }
}

/// The distributed Jacobi-CG with [`DeviceKernels`] on the gpu backend's
/// device (its [`GpuState`] in `world`).
pub fn solve_cg_jacobi(
    world: &mut World,
    comm: &dyn Comm,
    part: &Part,
    sys: &LocalSystem,
    settings: &CgSettings,
    progress: &mut dyn FnMut(usize, f64) -> bool,
) -> Result<DistSolution, SolveError> {
    let st = world.remove_resource::<GpuState>();
    let module = match &st {
        Some(s) => guard(|| Ok(load(s))).unwrap_or_else(|e| Err(e.to_string())),
        None => Err("the gpu backend's device state is missing".to_string()),
    };
    let bytes = Rc::new(Cell::new((0u64, 0u64)));
    let out = crate::cg::solve_cg_jacobi_with(comm, part, sys, settings, progress, &mut |eq| {
        let st = st.as_ref().ok_or("no device state")?;
        let m = module.as_ref().map_err(|e| e.clone())?;
        let k = DeviceKernels::new(st, m, eq)?;
        Ok(Box::new(Counted {
            k,
            bytes: bytes.clone(),
        }))
    });
    let bytes = bytes.get();
    if let Some(st) = st {
        world.insert_resource(st);
    }
    if let Some(mut r) = world.get_resource_mut::<GpuReport>() {
        r.count(
            "mpi CG: matrix, vectors, halo values",
            true,
            bytes.0 as usize,
        );
        r.count("mpi CG: halo values, sums, x", false, bytes.1 as usize);
    }
    out
}

/// [`DeviceKernels`] that leave their byte counts behind when dropped.
struct Counted {
    k: DeviceKernels,
    bytes: Rc<Cell<(u64, u64)>>,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.bytes.set((self.k.bytes_up, self.k.bytes_down));
    }
}

impl LocalKernels for Counted {
    fn start(&mut self, b: &[f64]) -> [f64; 2] {
        self.k.start(b)
    }
    fn pack(&mut self, halo: &Halo, bufs: &mut [Vec<f64>]) {
        self.k.pack(halo, bufs)
    }
    fn unpack(&mut self, halo: &Halo, bufs: &[Vec<f64>]) {
        self.k.unpack(halo, bufs)
    }
    fn product_interior(&mut self, beta: f64, alpha_prev: f64) {
        self.k.product_interior(beta, alpha_prev)
    }
    fn product_rest(&mut self, beta: f64, alpha_prev: f64) -> f64 {
        self.k.product_rest(beta, alpha_prev)
    }
    fn update(&mut self, alpha: f64) -> [f64; 2] {
        self.k.update(alpha)
    }
    fn flush(&mut self, alpha: f64) {
        self.k.flush(alpha)
    }
    fn fold(&mut self) {
        self.k.fold()
    }
    fn pack_iterate(&mut self, halo: &Halo, bufs: &mut [Vec<f64>]) {
        self.k.pack_iterate(halo, bufs)
    }
    fn unpack_iterate(&mut self, halo: &Halo, bufs: &[Vec<f64>]) {
        self.k.unpack_iterate(halo, bufs)
    }
    fn replace_residual(&mut self) -> [f64; 2] {
        self.k.replace_residual()
    }
    fn iterate(&mut self) -> Vec<f64> {
        self.k.iterate()
    }
    fn solution(&mut self, alpha_last: f64) -> Vec<f64> {
        self.k.solution(alpha_last)
    }
    fn take_failure(&mut self) -> Option<String> {
        self.k.take_failure()
    }
    fn bytes_per_iteration(&self) -> usize {
        self.k.bytes_per_iteration()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_take_devices_round_robin() {
        let v: Vec<String> = ["0", "1"].map(String::from).to_vec();
        assert_eq!(pick(0, &v).unwrap(), "0");
        assert_eq!(pick(1, &v).unwrap(), "1");
        assert_eq!(pick(2, &v).unwrap(), "0");
        assert!(pick(0, &[]).is_none());
        // a restricted list is honoured: ranks share its entries
        let v: Vec<String> = ["3"].map(String::from).to_vec();
        assert_eq!(pick(5, &v).unwrap(), "3");
    }

    /// `kernels/mpi_cg.cu` compiles with NVRTC (where the library is on
    /// the library path; the skip is logged otherwise) and defines every
    /// kernel the host launches.
    #[test]
    fn the_kernels_compile_with_nvrtc() {
        // SAFETY: only tries to dlopen the library.
        if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
            quadflow_systems::record_skip(
                "quadflow_mpi::device::tests::the_kernels_compile_with_nvrtc: NVRTC (libnvrtc.so) not on the library path (pip install nvidia-cuda-nvrtc gives one)",
            );
            return;
        }
        let bin = compile::compile(SOURCE, "mpi_cg", "sm_90", &["--std=c++17".to_string()])
            .expect("kernels/mpi_cg.cu compiles");
        assert!(bin.starts_with(b"\x7fELF"));
        for k in NAMES {
            let name = k.as_bytes();
            assert!(
                bin.windows(name.len() + 1)
                    .any(|w| &w[..name.len()] == name && w[name.len()] == 0),
                "{k} missing from the CUBIN"
            );
        }
    }

    #[test]
    fn the_kernel_source_defines_every_kernel() {
        for n in NAMES {
            assert!(SOURCE.contains(&format!("void {n}(")), "{n}");
        }
        assert!(SOURCE.contains(&format!("#define QF_MPI_BLOCK {BLOCK}")));
        assert!(SOURCE.contains(&format!("#define QF_MPI_GROUP {GROUP}")));
    }
}
