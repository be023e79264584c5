//! The device side of the backend: probing for a driver, the context,
//! compiling and loading the kernels, the device buffers that live across
//! phases ([`GpuState`]), and counted transfers.

use super::GpuReport;
use super::cache::{CacheKey, PtxCache};
use super::kernels;
use super::launch;
use super::pattern::PatternShape;
use crate::pipeline::PipelineError;
use bevy_ecs::prelude::*;
use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtr, DeviceRepr,
    ValidAsZeroBits,
};
use cudarc::nvrtc::{CompileError, CompileOptions, Ptx};
use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Instant;

/// The backend's name in errors.
pub const BACKEND: &str = "gpu";

/// The message when no driver library can be loaded.
pub const NO_DRIVER: &str = "no CUDA driver found (libcuda.so.1 not loadable): this backend needs an NVIDIA GPU and driver; use --backend serial or parallel";

/// Result of the backend's host-side operations.
pub type GResult<T> = Result<T, PipelineError>;

/// A [`PipelineError::Backend`] of this backend.
pub fn backend_error(message: impl Into<String>) -> PipelineError {
    PipelineError::Backend {
        backend: BACKEND.to_string(),
        message: message.into(),
    }
}

/// Turns a CUDA library error into a backend error naming the operation.
pub trait Ctx<T> {
    /// Maps the error, prefixed with `what`.
    fn ctx(self, what: &str) -> GResult<T>;
}

impl<T, E: std::fmt::Debug> Ctx<T> for Result<T, E> {
    fn ctx(self, what: &str) -> GResult<T> {
        self.map_err(|e| backend_error(format!("{what}: {e:?}")))
    }
}

/// Runs `f`, turning a panic inside the CUDA bindings (a symbol missing
/// from an old driver, say) into a backend error.
pub fn guard<T>(f: impl FnOnce() -> GResult<T>) -> GResult<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".to_string());
            Err(backend_error(format!("CUDA call failed: {msg}")))
        }
    }
}

/// Checks that the CUDA driver library can be loaded (without loading it
/// for good, and without the panic cudarc raises when it is missing).
pub fn probe_driver() -> GResult<()> {
    // SAFETY: only tries to dlopen the library under its usual names.
    if unsafe { cudarc::driver::sys::is_culib_present() } {
        Ok(())
    } else {
        Err(backend_error(NO_DRIVER))
    }
}

/// Contexts created ahead of time by [`prewarm`], kept retained for the
/// life of the process.
static WARM: std::sync::Mutex<Vec<Arc<CudaContext>>> = std::sync::Mutex::new(Vec::new());

/// Starts creating the CUDA context of device `ordinal` on a background
/// thread, so that driver initialisation (about 0.2 s) overlaps with mesh
/// loading; the backend's own context creation then finds the primary
/// context already retained. Does nothing (silently) where no driver or
/// device exists: the backend reports that itself.
pub fn prewarm(ordinal: usize) {
    std::thread::spawn(move || {
        let _ = guard(|| {
            probe_driver()?;
            let ctx = CudaContext::new(ordinal).ctx("creating the CUDA context")?;
            if let Ok(mut w) = WARM.lock() {
                w.push(ctx);
            }
            Ok(())
        });
    });
}

/// Whether a CUDA device can be used here: the driver loads and reports at
/// least one device.
pub fn device_available() -> bool {
    probe_driver().is_ok()
        && guard(|| CudaContext::device_count().ctx("cuDeviceGetCount"))
            .map(|n| n > 0)
            .unwrap_or(false)
}

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

/// The assembled system on the device, in full CSR.
pub struct DeviceSystem {
    /// Its size (the structure itself lives on the device only).
    pub pattern: PatternShape,
    /// Row starts.
    pub rowptr: CudaSlice<u32>,
    /// Columns.
    pub col: CudaSlice<u32>,
    /// Values of `K`.
    pub val: CudaSlice<f64>,
    /// `f`.
    pub f: CudaSlice<f64>,
}

/// The loaded kernels by name.
pub struct KernelSet(HashMap<String, CudaFunction>);

impl KernelSet {
    /// A kernel.
    pub fn get(&self, name: &str) -> GResult<&CudaFunction> {
        self.0
            .get(name)
            .ok_or_else(|| backend_error(format!("kernel {name} not loaded")))
    }
}

/// Device state shared by the phases of the backend: context, stream,
/// kernels and the buffers that stay on the device between phases.
#[derive(Resource)]
pub struct GpuState {
    /// The context.
    pub ctx: Arc<CudaContext>,
    /// The stream every kernel and copy goes to.
    pub stream: Arc<CudaStream>,
    /// The module holding the kernels.
    pub module: Arc<CudaModule>,
    /// The kernels of the module, by name.
    pub kernels: KernelSet,
    /// Multiprocessors of the device.
    pub sms: u32,
    /// Status flags (`kernels::flag`).
    pub flags: CudaSlice<i32>,
    /// Per-block partial sums of the grid reductions.
    pub partials: CudaSlice<f64>,
    /// Ticket counter of the grid reductions (zero between kernels).
    pub counter: CudaSlice<u32>,
    /// Geometry, once uploaded.
    pub geometry: Option<Geometry>,
    /// Quadrature data (structure of arrays, see `quadrature.cu`).
    pub qd: Option<CudaSlice<f64>>,
    /// The system, once assembled or uploaded.
    pub system: Option<DeviceSystem>,
    /// The solution, once solved or uploaded.
    pub u: Option<CudaSlice<f64>>,
    /// cuBLAS and cuSPARSE handles, created for the vendor strategy.
    pub vendor: Option<super::vendor::VendorLibs>,
}

fn compile(src: &str, arch: &'static str, options: &[String]) -> GResult<String> {
    // SAFETY: only tries to dlopen the library.
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        return Err(backend_error(
            "NVRTC (libnvrtc.so) not found: the kernels are compiled at run time and need the CUDA toolkit's NVRTC library on the library path (LD_LIBRARY_PATH), or a PTX cache filled by an earlier run",
        ));
    }
    let opts = CompileOptions {
        arch: Some(arch),
        options: options.to_vec(),
        name: Some("quadflow_kernels.cu".into()),
        ..Default::default()
    };
    match cudarc::nvrtc::compile_ptx_with_opts(src, opts) {
        Ok(ptx) => Ok(ptx.to_src()),
        Err(CompileError::CompileError { log, .. }) => Err(backend_error(format!(
            "NVRTC could not compile the kernels for {arch}:\n{}",
            log.to_string_lossy()
        ))),
        Err(e) => Err(backend_error(format!("NVRTC failed: {e:?}"))),
    }
}

impl GpuState {
    /// Opens device `ordinal`, compiles (or reads from the PTX cache) and
    /// loads the kernels. Fills the device fields of `report`.
    pub fn create(ordinal: usize, cache: &PtxCache, report: &mut GpuReport) -> GResult<Self> {
        probe_driver()?;
        let t0 = Instant::now();
        let ctx = guard(|| {
            let n = CudaContext::device_count().map_err(|e| {
                backend_error(format!(
                    "the CUDA driver loads but finds no usable device ({e:?}): this backend needs an NVIDIA GPU; use --backend serial or parallel"
                ))
            })?;
            if n <= 0 {
                return Err(backend_error(
                    "the CUDA driver reports no device: this backend needs an NVIDIA GPU; use --backend serial or parallel",
                ));
            }
            if ordinal >= n as usize {
                return Err(backend_error(format!(
                    "device {ordinal} asked for, but the driver reports {n} device(s)"
                )));
            }
            CudaContext::new(ordinal).ctx("creating the CUDA context")
        })?;
        // One stream only: cudarc's per-buffer events are not needed.
        // SAFETY: every buffer is used on `stream` alone.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.default_stream();
        let (major, minor) = ctx.compute_capability().ctx("compute capability")?;
        report.device_name = ctx.name().unwrap_or_else(|_| "unknown".into());
        report.compute_capability = (major, minor);
        report.init_seconds = t0.elapsed().as_secs_f64();
        if major < 6 {
            return Err(backend_error(format!(
                "device {} has compute capability {major}.{minor}; the kernels need 6.0 or newer (double-precision atomicAdd)",
                report.device_name
            )));
        }
        let sms = ctx
            .attribute(
                cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT,
            )
            .ctx("multiprocessor count")? as u32;
        report.multiprocessors = sms;

        let arch = kernels::arch_name(major, minor);
        report.arch = arch.to_string();
        let src = kernels::program();
        let options = kernels::compile_options();
        let key = CacheKey::new(&src, &options, arch);
        let mut nvrtc = 0.0;
        let mut timed_compile = || {
            let t = Instant::now();
            let r = compile(&src, arch, &options);
            nvrtc += t.elapsed().as_secs_f64();
            r
        };
        let (ptx, origin) = cache.get_or_compile(&key, &mut timed_compile)?;
        let t1 = Instant::now();
        let module = match ctx.load_module(Ptx::from_src(ptx)) {
            Ok(m) => m,
            Err(e) if origin.is_hit() => {
                // A cached program the driver refuses (an older driver
                // than the one that wrote it, say): compile afresh.
                tracing::warn!("cached PTX rejected ({e:?}); recompiling");
                cache.remove(&key);
                let (ptx, _) = cache.get_or_compile(&key, &mut timed_compile)?;
                ctx.load_module(Ptx::from_src(ptx))
                    .ctx("loading the freshly compiled kernels")?
            }
            Err(e) => return Err(backend_error(format!("loading the kernels: {e:?}"))),
        };
        report.nvrtc_seconds = nvrtc;
        report.cache_hit = origin.is_hit() && nvrtc == 0.0;
        report.cache_file = origin.path().map(|p| p.to_path_buf());
        let mut funcs = HashMap::new();
        for name in kernels::kernel_names() {
            let f = module.load_function(&name).ctx(&format!("kernel {name}"))?;
            funcs.insert(name, f);
        }
        let kernels = KernelSet(funcs);
        report.module_load_seconds = t1.elapsed().as_secs_f64();

        let max_blocks = launch::max_reduction_blocks(sms) as usize;
        let flags = stream.alloc_zeros::<i32>(kernels::flag::LEN).ctx("alloc")?;
        let partials = stream.alloc_zeros::<f64>(3 * max_blocks).ctx("alloc")?;
        let counter = stream.alloc_zeros::<u32>(1).ctx("alloc")?;
        stream.synchronize().ctx("synchronize")?;
        Ok(Self {
            ctx,
            stream,
            module,
            kernels,
            sms,
            flags,
            partials,
            counter,
            geometry: None,
            qd: None,
            system: None,
            u: None,
            vendor: None,
        })
    }

    /// A loaded kernel.
    pub fn func(&self, name: &str) -> GResult<&CudaFunction> {
        self.kernels.get(name)
    }

    /// Waits for the stream (every system ends with this, so that the
    /// pipeline's host clocks time the device work).
    pub fn sync(&self) -> GResult<()> {
        self.stream.synchronize().ctx("synchronize")
    }

    /// Copies `data` to a new device buffer, counted in `report` under
    /// `what`. An empty slice gives a one-element buffer (CUDA refuses
    /// empty allocations on some paths), counted as empty.
    pub fn upload<T: DeviceRepr + Copy + Default>(
        &self,
        report: &mut GpuReport,
        what: &'static str,
        data: &[T],
    ) -> GResult<CudaSlice<T>> {
        report.count(what, true, std::mem::size_of_val(data));
        let buf = if data.is_empty() {
            self.stream.clone_htod(&[T::default()])
        } else {
            self.stream.clone_htod(data)
        };
        buf.ctx(&format!("copying {what} to the device"))
    }

    /// Copies `data` into an existing device buffer, counted.
    pub fn upload_into<T: DeviceRepr>(
        &self,
        report: &mut GpuReport,
        what: &'static str,
        data: &[T],
        dst: &mut CudaSlice<T>,
    ) -> GResult<()> {
        report.count(what, true, std::mem::size_of_val(data));
        self.stream
            .memcpy_htod(data, dst)
            .ctx(&format!("copying {what} to the device"))
    }

    /// Copies the first `len` values of a device buffer back, counted.
    /// A large destination is first written in parallel, so that its
    /// pages are mapped by many threads rather than faulted in one by one
    /// during the copy (which made a 160 MB copy take 0.13 s).
    pub fn download<T: DeviceRepr + Copy + Default + Send + Sync>(
        &self,
        report: &mut GpuReport,
        what: &'static str,
        src: &CudaSlice<T>,
        len: usize,
    ) -> GResult<Vec<T>> {
        let mut out = Vec::with_capacity(len);
        if std::mem::size_of::<T>() * len >= 1 << 22 {
            use rayon::prelude::*;
            out.par_extend(rayon::iter::repeat_n(T::default(), len));
        } else {
            out.resize(len, T::default());
        }
        if len > 0 {
            self.stream
                .memcpy_dtoh(&src.slice(..len), &mut out)
                .ctx(&format!("copying {what} to the host"))?;
        }
        report.count(what, false, std::mem::size_of_val(&out[..]));
        Ok(out)
    }

    /// A zeroed device buffer (at least one element).
    pub fn zeros<T: DeviceRepr + ValidAsZeroBits>(&self, len: usize) -> GResult<CudaSlice<T>> {
        self.stream
            .alloc_zeros::<T>(len.max(1))
            .ctx("allocating device memory")
    }

    /// Sets the flags to their initial state (`INT_MAX` for the
    /// "smallest index" slots, zero elsewhere).
    pub fn reset_flags(&mut self, report: &mut GpuReport) -> GResult<()> {
        let mut init = [0i32; kernels::flag::LEN];
        init[kernels::flag::ZERO_DIAG] = i32::MAX;
        init[kernels::flag::BAD_ELEMENT] = i32::MAX;
        report.count("flags", true, std::mem::size_of_val(&init));
        self.stream
            .memcpy_htod(&init[..], &mut self.flags)
            .ctx("resetting flags")
    }

    /// Reads the flags (synchronizes).
    pub fn read_flags(&self, report: &mut GpuReport) -> GResult<[i32; kernels::flag::LEN]> {
        let v = self.download(report, "flags", &self.flags, kernels::flag::LEN)?;
        let mut out = [0i32; kernels::flag::LEN];
        out.copy_from_slice(&v);
        Ok(out)
    }
}

/// The raw device address of a buffer (for cuBLAS and cuSPARSE).
pub fn raw<T>(buf: &CudaSlice<T>, stream: &CudaStream) -> u64 {
    let (ptr, _sync) = buf.device_ptr(stream);
    ptr
}
