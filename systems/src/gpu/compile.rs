//! Compiling the kernels: only the modules a run needs
//! ([`needed_modules`]), each its own NVRTC program, compiled on parallel
//! threads on a cache miss and read from the on-disk PTX cache otherwise
//! ([`obtain`]).
//!
//! A cold start used to compile the whole program (every kernel of every
//! phase and solver) in one NVRTC call, about 5-10 s; splitting it into
//! modules lets a Jacobi-CG run skip the AMG kernels (and the other way
//! round) and lets the modules it needs compile side by side on the host's
//! cores.

use super::cache::{CacheKey, Origin, PtxCache};
use super::error::{GResult, backend_error};
use super::kernels::{self, ModuleSpec, module};
use std::time::Instant;

/// What the solve phase will run, for [`needed_modules`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SolveKind {
    /// The solve runs on another backend.
    None,
    /// Jacobi-CG with the custom kernels (`true`: the persistent kernel
    /// too).
    CgCustom(bool),
    /// Jacobi-CG with cuSPARSE and cuBLAS.
    CgVendor,
    /// AMG-CG.
    Amg,
    /// A method the device does not implement (the solve will say so).
    Other,
}

/// The modules a run needs: the mesh phases' kernels when any of
/// quadrature, assembly, boundary or post-processing runs on the device
/// (with the scan when the assembly does), the solve's kernels by method.
pub fn needed_modules(mesh_phases: bool, assembly: bool, solve: SolveKind) -> Vec<ModuleSpec> {
    let mut v = Vec::new();
    let mut add = |m: ModuleSpec| {
        if !v.contains(&m) {
            v.push(m);
        }
    };
    if mesh_phases {
        add(module::ELEMENTS);
        add(module::MESH);
    }
    if assembly {
        add(module::SCAN);
    }
    match solve {
        SolveKind::None | SolveKind::Other => {}
        SolveKind::CgCustom(persistent) => {
            add(module::SOLVE);
            add(module::CG);
            if persistent {
                add(module::PERSISTENT);
            }
        }
        SolveKind::CgVendor => add(module::SOLVE),
        SolveKind::Amg => {
            add(module::SOLVE);
            add(module::AMG);
            add(module::AMG_SETUP);
            add(module::SCAN);
        }
    }
    v
}

/// One module's PTX and where it came from.
#[derive(Debug, Clone)]
pub struct Obtained {
    /// The module.
    pub spec: ModuleSpec,
    /// Its machine code (CUBIN).
    pub bin: Vec<u8>,
    /// Cache file or fresh compile.
    pub origin: Origin,
    /// Seconds in NVRTC (0 on a cache hit).
    pub nvrtc_seconds: f64,
    /// The cache key (to drop an entry the driver rejects).
    pub key: CacheKey,
}

/// Compiles `src` for the real architecture `arch` (`sm_90`) with NVRTC
/// straight to machine code (a CUBIN): the driver then loads it without a
/// JIT step (a PTX module costs a JIT compile at load on a machine that
/// has not seen it, about as long again as NVRTC).
pub fn compile(src: &str, name: &str, arch: &'static str, options: &[String]) -> GResult<Vec<u8>> {
    use cudarc::nvrtc::{result, sys};
    use std::ffi::CString;
    // SAFETY: only tries to dlopen the library.
    if !unsafe { sys::is_culib_present() } {
        return Err(backend_error(
            "NVRTC (libnvrtc.so) not found: the kernels are compiled at run time and need the CUDA toolkit's NVRTC library on the library path (LD_LIBRARY_PATH), or a kernel cache filled by an earlier run",
        ));
    }
    let csrc = CString::new(src).map_err(|_| backend_error("kernel source holds a NUL byte"))?;
    let cname = CString::new(format!("quadflow_{name}.cu")).expect("no NUL");
    let prog = result::create_program(&csrc, Some(&cname))
        .map_err(|e| backend_error(format!("NVRTC failed: {e:?}")))?;
    let mut opts: Vec<String> = vec![format!("--gpu-architecture={arch}")];
    opts.extend(options.iter().cloned());
    // SAFETY: `prog` is a live program; destroyed once below.
    unsafe {
        let r = match result::compile_program(prog, &opts) {
            Ok(()) => {
                let mut size = 0usize;
                let mut bin = Vec::new();
                let got = sys::nvrtcGetCUBINSize(prog, &mut size)
                    .result()
                    .and_then(|_| {
                        bin.resize(size, 0u8);
                        sys::nvrtcGetCUBIN(prog, bin.as_mut_ptr() as *mut std::ffi::c_char).result()
                    });
                match got {
                    Ok(()) if size > 0 => Ok(bin),
                    _ => Err(backend_error(format!(
                        "NVRTC produced no machine code for {arch} (module {name})"
                    ))),
                }
            }
            Err(_) => {
                let log = result::get_program_log(prog).unwrap_or_default();
                let log: Vec<u8> = log
                    .iter()
                    .map(|&c| c as u8)
                    .take_while(|&c| c != 0)
                    .collect();
                Err(backend_error(format!(
                    "NVRTC could not compile the kernels of module {name} for {arch}:\n{}",
                    String::from_utf8_lossy(&log)
                )))
            }
        };
        let _ = result::destroy_program(prog);
        r
    }
}

/// The machine code of every module of `specs` for `arch`: from the cache, or
/// compiled by NVRTC, the misses side by side on their own threads.
/// Returns the modules in the order of `specs` and the wall seconds of the
/// compiles (0 when everything came from the cache).
pub fn obtain(
    specs: &[ModuleSpec],
    arch: &'static str,
    cache: &PtxCache,
) -> GResult<(Vec<Obtained>, f64)> {
    let options = kernels::compile_options();
    let t0 = Instant::now();
    let results: Vec<GResult<Obtained>> = std::thread::scope(|s| {
        let handles: Vec<_> = specs
            .iter()
            .map(|&spec| {
                let options = &options;
                s.spawn(move || {
                    let src = kernels::module_program(&spec);
                    let key = CacheKey::new(&src, options, arch);
                    let mut secs = 0.0;
                    let (bin, origin) = cache.get_or_compile(&key, || {
                        let t = Instant::now();
                        let r = compile(&src, spec.name, arch, options);
                        secs = t.elapsed().as_secs_f64();
                        r
                    })?;
                    Ok(Obtained {
                        spec,
                        bin,
                        origin,
                        nvrtc_seconds: secs,
                        key,
                    })
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(backend_error("a kernel compile thread panicked")))
            })
            .collect()
    });
    let out = results.into_iter().collect::<GResult<Vec<_>>>()?;
    let wall = if out.iter().any(|o| o.nvrtc_seconds > 0.0) {
        t0.elapsed().as_secs_f64()
    } else {
        0.0
    };
    Ok((out, wall))
}

/// Recompiles one module (after the driver refused its cached PTX).
pub fn recompile(o: &Obtained, arch: &'static str, cache: &PtxCache) -> GResult<Obtained> {
    cache.remove(&o.key);
    let (mut v, _) = obtain(&[o.spec], arch, cache)?;
    Ok(v.remove(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules_by_run() {
        let names = |v: Vec<ModuleSpec>| v.iter().map(|m| m.name).collect::<Vec<_>>();
        assert_eq!(
            names(needed_modules(true, true, SolveKind::CgCustom(true))),
            ["elements", "mesh", "scan", "solve", "cg", "cg_persistent"]
        );
        assert_eq!(
            names(needed_modules(false, false, SolveKind::CgCustom(false))),
            ["solve", "cg"]
        );
        assert_eq!(
            names(needed_modules(true, true, SolveKind::Amg)),
            ["elements", "mesh", "scan", "solve", "amg", "amg_setup"]
        );
        assert_eq!(
            names(needed_modules(false, false, SolveKind::CgVendor)),
            ["solve"]
        );
        assert_eq!(
            names(needed_modules(true, false, SolveKind::None)),
            ["elements", "mesh"]
        );
        assert!(needed_modules(false, false, SolveKind::Other).is_empty());
    }

    #[test]
    fn every_kernel_is_in_exactly_its_module() {
        for m in module::ALL {
            let src = kernels::module_program(&m);
            for k in (m.kernels)() {
                // a plain kernel is declared by name; a grouped one by its
                // macro, which pastes `_g##G`
                let base = k.rsplit_once("_g").map_or(k.as_str(), |(b, _)| b);
                let cap = k.rsplit_once("_c").map_or(k.as_str(), |(b, _)| b);
                assert!(
                    src.contains(&format!("void {k}("))
                        || src.contains(&format!("void {base}_g##G("))
                        || src.contains(&format!("void {cap}_c##CAP(")),
                    "{k} not in module {}",
                    m.name
                );
            }
        }
        let all = kernels::kernel_names();
        let mut dedup = all.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(dedup.len(), all.len(), "a kernel in two modules");
    }

    /// Compiles every module with NVRTC where the library is present (it
    /// needs no GPU: `LD_LIBRARY_PATH` pointing at a CUDA 13 NVRTC is
    /// enough), printing each module's compile time; skips otherwise.
    #[test]
    fn every_module_compiles_with_nvrtc() {
        // SAFETY: only tries to dlopen the library.
        if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
            crate::record_skip(
                "quadflow_systems::gpu::compile::tests::every_module_compiles_with_nvrtc: NVRTC (libnvrtc.so) not on the library path (pip install nvidia-cuda-nvrtc gives one)",
            );
            return;
        }
        let cache = PtxCache::new(None);
        let t = Instant::now();
        let (out, wall) = obtain(&module::ALL, "sm_90", &cache).unwrap();
        for o in &out {
            eprintln!("module {:14} NVRTC {:.3} s", o.spec.name, o.nvrtc_seconds);
            assert!(o.bin.starts_with(b"\x7fELF"), "{}", o.spec.name);
            for k in (o.spec.kernels)() {
                let name = k.as_bytes();
                assert!(
                    o.bin
                        .windows(name.len() + 1)
                        .any(|w| &w[..name.len()] == name && w[name.len()] == 0),
                    "{k} missing from the CUBIN"
                );
            }
        }
        eprintln!(
            "all modules in parallel: {wall:.3} s ({:.3} s)",
            t.elapsed().as_secs_f64()
        );
    }
}
