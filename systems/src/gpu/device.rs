//! Near the bottom of the backend: probing for a driver, the context and
//! stream, the loaded kernel modules ([`Device`]), and counted transfers
//! and allocations. Everything else of `gpu/` builds on this; this module
//! depends only on the errors, the report, the kernel list, the compiler
//! and the launch shapes.

use super::cache::PtxCache;
use super::compile;
pub use super::error::{BACKEND, Ctx, GResult, NO_DRIVER, backend_error, guard};
use super::kernels::{self, ModuleSpec};
use super::launch;
use super::report::GpuReport;
use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtr, DeviceRepr,
    ValidAsZeroBits,
};
use cudarc::nvrtc::Ptx;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

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

/// Total memory of device `ordinal` in bytes, `None` where there is no
/// usable device (sizes a test's largest mesh to the card).
pub fn total_memory(ordinal: usize) -> Option<u64> {
    probe_driver().ok()?;
    guard(|| {
        let ctx = CudaContext::new(ordinal).ctx("creating the CUDA context")?;
        let (_, total) = ctx.mem_get_info().ctx("cuMemGetInfo")?;
        Ok(total as u64)
    })
    .ok()
}

/// A module loaded on a device, with its kernels.
struct LoadedModule {
    ordinal: usize,
    /// The kernel cache it was obtained through (a process has one; tests
    /// give each case its own, which keeps their loads apart).
    cache: Option<std::path::PathBuf>,
    name: &'static str,
    module: Arc<CudaModule>,
    functions: Vec<(String, CudaFunction)>,
}

/// Every module loaded by this process, per device: a later run of the
/// same process (the server's solves, a Python session) reuses them
/// instead of reading the kernel cache and loading them again. The
/// modules keep their (primary) context retained; the kernel sources are
/// those compiled into this binary, so a module's name identifies it.
static LOADED: std::sync::Mutex<Vec<LoadedModule>> = std::sync::Mutex::new(Vec::new());

/// The loaded kernels by name.
pub struct KernelSet(HashMap<String, CudaFunction>);

impl KernelSet {
    /// A kernel.
    pub fn get(&self, name: &str) -> GResult<&CudaFunction> {
        self.0.get(name).ok_or_else(|| {
            backend_error(format!(
                "kernel {name} not loaded (its module is not among those this run compiled)"
            ))
        })
    }
}

/// The device as every part of the backend uses it: context, stream,
/// kernels, and the small buffers of the grid reductions and status
/// flags.
pub struct Device {
    /// The context.
    pub ctx: Arc<CudaContext>,
    /// The stream every kernel and copy goes to.
    pub stream: Arc<CudaStream>,
    /// The loaded modules.
    pub modules: Vec<Arc<CudaModule>>,
    /// The kernels of the modules, by name.
    pub kernels: KernelSet,
    /// Multiprocessors of the device.
    pub sms: u32,
    /// Status flags (`kernels::flag`).
    pub flags: CudaSlice<i32>,
    /// Per-block partial sums of the grid reductions.
    pub partials: CudaSlice<f64>,
    /// Ticket counter of the grid reductions (zero between kernels).
    pub counter: CudaSlice<u32>,
}

impl Device {
    /// Opens device `ordinal`, compiles (or reads from the PTX cache) and
    /// loads the kernel modules `modules` (see
    /// [`compile::needed_modules`]). Fills the device fields of `report`.
    pub fn create(
        ordinal: usize,
        cache: &PtxCache,
        report: &mut GpuReport,
        modules: &[ModuleSpec],
    ) -> GResult<Self> {
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
        report.modules = modules.iter().map(|m| m.name.to_string()).collect();
        // modules an earlier run of this process loaded on this device
        let mut funcs = HashMap::new();
        let mut mods = Vec::new();
        let mut missing = Vec::new();
        {
            let loaded = LOADED.lock().unwrap_or_else(|e| e.into_inner());
            for spec in modules {
                match loaded.iter().find(|l| {
                    l.ordinal == ordinal && l.name == spec.name && l.cache.as_deref() == cache.dir()
                }) {
                    Some(l) => {
                        funcs.extend(l.functions.iter().cloned());
                        mods.push(l.module.clone());
                    }
                    None => missing.push(*spec),
                }
            }
        }
        report.modules_reused = modules.len() - missing.len();
        let (obtained, nvrtc) = compile::obtain(&missing, arch, cache)?;
        report.nvrtc_seconds = nvrtc;
        report.modules_compiled = obtained.iter().filter(|o| !o.origin.is_hit()).count();
        report.cache_hit = report.modules_compiled == 0;
        report.cache_file = obtained
            .iter()
            .find_map(|o| o.origin.path().map(|p| p.to_path_buf()));
        let t1 = Instant::now();
        // load the modules side by side (the driver turns PTX into machine
        // code here on a machine that has not seen it before)
        type Loaded = GResult<(Arc<CudaModule>, f64)>;
        let loaded: Vec<Loaded> = std::thread::scope(|s| {
            let hs: Vec<_> = obtained
                .iter()
                .map(|o| {
                    let ctx = &ctx;
                    s.spawn(move || -> Loaded {
                        match ctx.load_module(Ptx::from_binary(o.bin.clone())) {
                            Ok(m) => Ok((m, 0.0)),
                            Err(e) if o.origin.is_hit() => {
                                // A cached program the driver refuses (an
                                // older driver than the one that wrote it,
                                // say): compile afresh.
                                tracing::warn!(
                                    "cached PTX of {} rejected ({e:?}); recompiling",
                                    o.spec.name
                                );
                                let t = Instant::now();
                                let fresh = compile::recompile(o, arch, cache)?;
                                let m = ctx
                                    .load_module(Ptx::from_binary(fresh.bin))
                                    .ctx("loading the freshly compiled kernels")?;
                                Ok((m, t.elapsed().as_secs_f64()))
                            }
                            Err(e) => Err(backend_error(format!(
                                "loading the kernels of module {}: {e:?}",
                                o.spec.name
                            ))),
                        }
                    })
                })
                .collect();
            hs.into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(backend_error("a module load thread panicked")))
                })
                .collect()
        });
        for (o, l) in obtained.iter().zip(loaded) {
            let (module, recompile_secs) = l?;
            if recompile_secs > 0.0 {
                report.nvrtc_seconds += recompile_secs;
                report.cache_hit = false;
                report.modules_compiled += 1;
            }
            let mut functions = Vec::new();
            for name in (o.spec.kernels)() {
                let f = module.load_function(&name).ctx(&format!("kernel {name}"))?;
                functions.push((name, f));
            }
            funcs.extend(functions.iter().cloned());
            mods.push(module.clone());
            LOADED
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(LoadedModule {
                    ordinal,
                    cache: cache.dir().map(|d| d.to_path_buf()),
                    name: o.spec.name,
                    module,
                    functions,
                });
        }
        let kernels = KernelSet(funcs);
        report.module_load_seconds = t1.elapsed().as_secs_f64();

        let max_blocks = launch::max_reduction_blocks(sms) as usize;
        let flags = stream.alloc_zeros::<i32>(kernels::flag::LEN).ctx("alloc")?;
        // the widest grid sum is the residual's (4 values per block)
        let partials = stream.alloc_zeros::<f64>(4 * max_blocks).ctx("alloc")?;
        let counter = stream.alloc_zeros::<u32>(1).ctx("alloc")?;
        stream.synchronize().ctx("synchronize")?;
        Ok(Self {
            ctx,
            stream,
            modules: mods,
            kernels,
            sms,
            flags,
            partials,
            counter,
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
    pub fn reset_flags(&self, report: &mut GpuReport) -> GResult<()> {
        let mut init = [0i32; kernels::flag::LEN];
        init[kernels::flag::ZERO_DIAG] = i32::MAX;
        init[kernels::flag::BAD_ELEMENT] = i32::MAX;
        report.count("flags", true, std::mem::size_of_val(&init));
        let (dst, _sync) = self.flags.device_ptr(&self.stream);
        // SAFETY: `flags` holds `LEN` ints; a copy from pageable memory
        // has consumed `init` when the call returns.
        unsafe {
            cudarc::driver::result::memcpy_htod_async(dst, &init[..], self.stream.cu_stream())
        }
        .ctx("resetting flags")
    }

    /// Samples the memory in use into the report's peak.
    pub fn sample_memory(&self, report: &mut GpuReport) {
        report.sample_memory(&self.ctx);
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
