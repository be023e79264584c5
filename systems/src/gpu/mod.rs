//! The GPU executor (execution models 5, "Numba CUDA",
//! and 6, "CuPy + cuSPARSE", of `docs/execution-models.md`):
//! every phase runs as CUDA C kernels from `kernels/`, compiled at run time
//! by NVRTC for the device's architecture and cached on disk.
//!
//! Data crosses the bus where a phase boundary demands it and nowhere
//! else: the mesh goes up once (coordinates and connectivity, at the first
//! GPU phase), the solution and the per-element fields come back once.
//! When a neighbouring phase runs on a host backend (a mixed
//! [`PhasePlan`](crate::PhasePlan)), the pipeline runs this backend's
//! [`Backend::download`] systems (quadrature data into the [`Quadrature`]
//! components, the system into [`LinearSystem`]) or [`Backend::upload`]
//! systems at the hand-over. Every byte is counted in [`GpuReport`].
//!
//! The modules, in layers (each uses only those above it in this list):
//!
//! - bottom: [`error`] (the backend's errors and the panic guard),
//!   [`options`] (settings), [`report`] (what the backend did),
//!   [`kernels`] (the embedded sources grouped into modules, the basis
//!   tables, the kernel names), [`cache`] (the on-disk kernel cache),
//!   [`launch`] (grid and block sizes), [`compile`] (only the modules a run
//!   needs, compiled in parallel), [`device`] (context, stream,
//!   loaded kernels, counted transfers: [`device::Device`]);
//! - [`pattern`] (the full CSR pattern and the device system),
//!   [`assemble`] (the assembly's launches and their CPU twin),
//!   [`loop_ctl`] (host control of the CG loop and the convergence rule),
//!   [`replace`] (the rule's residual replacement on the device),
//!   [`vendor`] (cuBLAS and cuSPARSE), [`persistent`] (the persistent CG
//!   kernel);
//! - [`cg`] (the equilibrated Jacobi-PCG, [`GpuSolveStrategy::Custom`] or
//!   [`GpuSolveStrategy::Vendor`]), [`amg_setup`] (the AMG hierarchy built
//!   on the device) and its CPU twin [`amg_twin`], [`amg_cycle`] (the
//!   V-cycle as a program of launches), [`amg`] (AMG-CG);
//! - top: [`state`] (the [`GpuState`] resource: the device and the buffers
//!   that live across phases), [`phases`] (quadrature, assembly, boundary,
//!   post) and this module's plugin and systems.
//!
//! Nothing here needs CUDA at build time: the driver, NVRTC, cuBLAS and
//! cuSPARSE are loaded when the backend is prepared, and a machine without
//! a driver gets a [`PipelineError::Backend`] saying so.

pub mod amg;
pub mod amg_cycle;
pub mod amg_setup;
pub mod amg_twin;
pub mod assemble;
pub mod cache;
pub mod cg;
pub mod compile;
pub mod device;
pub mod error;
pub mod kernels;
pub mod launch;
pub mod loop_ctl;
pub mod options;
pub mod pattern;
pub mod persistent;
pub mod phases;
pub mod replace;
pub mod report;
pub mod state;
pub mod vendor;

pub use device::{device_available, prewarm, total_memory};
pub use options::{AmgSetupSite, CgLoop, GpuCgOptions, GpuSolveStrategy};
pub use report::{GpuReport, Transfer};
pub use state::GpuState;

use crate::components::failure::check_converged;
use crate::components::*;
use crate::config::{self, BackendKind, Flag, FlagValue, SettingError, Table};
use crate::pipeline::{Backend, Memory, Phase, PhaseSystems, Registry};
use bevy_ecs::prelude::*;
use device::{GResult, guard};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;

impl GpuReport {
    /// The backend's report: `gpu_*` attributes of the results file and
    /// the summary line.
    pub fn backend_report(&self) -> BackendReport {
        BackendReport {
            attributes: vec![
                ("gpu_device".into(), Attr::Str(self.device_name.clone())),
                (
                    "gpu_bytes_to_device".into(),
                    Attr::Int(self.bytes_to_device as i64),
                ),
                (
                    "gpu_bytes_to_host".into(),
                    Attr::Int(self.bytes_to_host as i64),
                ),
                ("gpu_nvrtc_seconds".into(), Attr::Float(self.nvrtc_seconds)),
                ("gpu_ptx_cache_hit".into(), Attr::Int(self.cache_hit as i64)),
                (
                    "gpu_memory_peak_bytes".into(),
                    Attr::Int(self.device_memory_peak as i64),
                ),
            ],
            summary: vec![format!(
                "{} ({}), NVRTC {:.3} s ({}), init {:.3} s, module load {:.3} s, {:.1} MB to device, {:.1} MB back, {} host syncs, peak device memory {:.2} GB{}{}{}",
                self.device_name,
                self.arch,
                self.nvrtc_seconds,
                if self.modules_reused == self.modules.len() && !self.modules.is_empty() {
                    "modules loaded by an earlier run of this process".to_string()
                } else if self.cache_hit {
                    "kernel cache hit".to_string()
                } else {
                    format!(
                        "compiled {} of {} modules",
                        self.modules_compiled,
                        self.modules.len()
                    )
                },
                self.init_seconds,
                self.module_load_seconds,
                self.bytes_to_device as f64 / 1e6,
                self.bytes_to_host as f64 / 1e6,
                self.host_syncs,
                self.device_memory_peak as f64 / 1e9,
                match self.amg_setup {
                    Some(site) => format!(", AMG setup on the {site}"),
                    None => String::new(),
                },
                match self.cg_loop {
                    Some(l) => format!(
                        ", CG loop {l} ({} kernels an iteration{})",
                        self.cg_kernels,
                        if self.cg_graph_launches > 0 {
                            format!(", {} graph launches", self.cg_graph_launches)
                        } else {
                            String::new()
                        }
                    ),
                    None => String::new(),
                },
                match self.deterministic_assembly {
                    Some(false) => ", assembly with atomic additions",
                    _ => "",
                }
            )],
        }
    }
}

/// `[gpu]`: the scene section of the GPU backend.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GpuSection {
    /// `custom` (own fused kernels, model 5) or `vendor` (cuSPARSE +
    /// cuBLAS, model 6).
    pub strategy: String,
    /// Iterations between host convergence checks of the custom CG.
    pub check_every: usize,
    /// CUDA device ordinal.
    pub device: usize,
    /// How the custom CG's iterations are launched: `auto` (the graph),
    /// `launches` (the kernels one by one), `graph` (the iterations
    /// between two checks replayed from one CUDA graph) or `persistent`
    /// (one cooperative kernel per chunk).
    pub cg_loop: String,
    /// Two kernels per custom CG iteration, the SpMV forming the
    /// direction (`true`), or three (`false`); absent: by size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fuse_direction: Option<bool>,
    /// Every matrix entry summed in a fixed order, identical runs giving
    /// identical answers (`true`), or atomic additions (`false`).
    pub deterministic: bool,
    /// Where AMG-CG's hierarchy is built: `device` or `host`.
    pub amg_setup: String,
}

impl Default for GpuSection {
    fn default() -> Self {
        Self {
            strategy: "custom".into(),
            check_every: GpuCgOptions::default().check_every,
            device: 0,
            cg_loop: CgLoop::default().name().into(),
            fuse_direction: GpuCgOptions::default().fuse_direction,
            deterministic: GpuCgOptions::default().deterministic,
            amg_setup: AmgSetupSite::default().name().into(),
        }
    }
}

impl GpuSection {
    /// The configured backend, every value checked.
    pub fn backend(&self) -> Result<Gpu, SettingError> {
        let strategy = GpuSolveStrategy::parse(&self.strategy).ok_or_else(|| {
            SettingError::key(
                "strategy",
                format!(
                    "unknown strategy \"{}\" (available: {})",
                    self.strategy,
                    GpuSolveStrategy::NAMES.join(", ")
                ),
            )
        })?;
        if self.check_every == 0 {
            return Err(SettingError::key("check_every", "must be at least 1"));
        }
        let cg_loop = CgLoop::parse(&self.cg_loop).ok_or_else(|| {
            SettingError::key(
                "cg_loop",
                format!(
                    "unknown CG loop \"{}\" (available: {})",
                    self.cg_loop,
                    CgLoop::NAMES.join(", ")
                ),
            )
        })?;
        let amg_setup = AmgSetupSite::parse(&self.amg_setup).ok_or_else(|| {
            SettingError::key(
                "amg_setup",
                format!(
                    "unknown AMG setup site \"{}\" (available: device, host)",
                    self.amg_setup
                ),
            )
        })?;
        let mut b = Gpu::with_strategy(strategy);
        b.cg.check_every = self.check_every;
        b.cg.cg_loop = cg_loop;
        b.cg.fuse_direction = self.fuse_direction;
        b.cg.deterministic = self.deterministic;
        b.cg.amg_setup = amg_setup;
        b.device = self.device;
        Ok(b)
    }
}

/// The flags of `quadflow run` that set keys of `[gpu]`.
const FLAGS: &[Flag] = &[Flag {
    long: "gpu-strategy",
    key: "strategy",
    value_name: "STRATEGY",
    help: "Solve strategy of the gpu backend (custom, vendor)",
    value: FlagValue::Text,
}];

impl BackendKind for Gpu {
    fn name(&self) -> &'static str {
        NAME
    }

    fn about(&self) -> &'static str {
        "every phase on an NVIDIA GPU (CUDA kernels compiled at run time)"
    }

    fn defaults(&self) -> Table {
        config::section_of(&GpuSection::default())
    }

    fn flags(&self) -> &'static [Flag] {
        FLAGS
    }

    fn configure(
        &self,
        section: &Table,
        _configured: &Registry,
    ) -> Result<Arc<dyn Backend>, SettingError> {
        let s: GpuSection = config::read_section(section)?;
        Ok(Arc::new(s.backend()?))
    }
}

/// The GPU backend plugin.
#[derive(Debug, Clone, Default)]
pub struct Gpu {
    /// Solve strategy inserted as a resource at prepare time (unless the
    /// world already has one).
    pub strategy: GpuSolveStrategy,
    /// CG tuning, likewise.
    pub cg: GpuCgOptions,
    /// Device ordinal.
    pub device: usize,
    /// PTX cache directory; `None` reads the environment
    /// (`QUADFLOW_CACHE`, `XDG_CACHE_HOME`, `HOME`).
    pub cache_dir: Option<PathBuf>,
}

impl Gpu {
    /// The backend with the given solve strategy.
    pub fn with_strategy(strategy: GpuSolveStrategy) -> Self {
        Self {
            strategy,
            ..Self::default()
        }
    }
}

/// Name of this backend.
const NAME: &str = device::BACKEND;

impl Backend for Gpu {
    fn name(&self) -> &'static str {
        NAME
    }

    fn systems(&self, phase: Phase) -> Option<PhaseSystems> {
        Some(match phase {
            Phase::Quadrature => quadrature.into_configs(),
            Phase::Assembly => assembly.into_configs(),
            Phase::Boundary => boundary.into_configs(),
            Phase::Solve => solve.into_configs(),
            Phase::Post => post.into_configs(),
        })
    }

    fn uses_element_entities(&self) -> bool {
        // reads the mesh and writes ElementOutputs; the Quadrature
        // components only at a hand-over to or from a host backend, which
        // asks for the entities itself
        false
    }

    fn memory(&self) -> Memory {
        Memory::Device("cuda")
    }

    fn download(&self, phase: Phase) -> Option<PhaseSystems> {
        match phase {
            Phase::Quadrature => Some(download_quadrature.into_configs()),
            Phase::Assembly | Phase::Boundary => Some(download_system.into_configs()),
            // the solve and post-processing always bring their results back
            Phase::Solve | Phase::Post => None,
        }
    }

    fn upload(&self, phase: Phase) -> Option<PhaseSystems> {
        match phase {
            Phase::Quadrature => Some(upload_quadrature.into_configs()),
            Phase::Assembly | Phase::Boundary => Some(upload_system.into_configs()),
            Phase::Solve => Some(upload_solution.into_configs()),
            Phase::Post => None,
        }
    }

    fn prewarm(&self) {
        prewarm(self.device);
    }

    fn report(&self, world: &World) -> BackendReport {
        world
            .get_resource::<GpuReport>()
            .map(GpuReport::backend_report)
            .unwrap_or_default()
    }

    fn prepare(&self, world: &mut World) -> Result<(), PipelineError> {
        let cache = match &self.cache_dir {
            Some(d) => cache::PtxCache::new(Some(d.clone())),
            None => cache::PtxCache::from_env(),
        };
        let mut report = GpuReport::default();
        if !world.contains_resource::<GpuSolveStrategy>() {
            world.insert_resource(self.strategy);
        }
        let modules = state::modules_for(world, NAME, &self.cg);
        let state = GpuState::create(self.device, &cache, &mut report, &modules)?;
        if !world.contains_resource::<GpuCgOptions>() {
            world.insert_resource(self.cg);
        }
        world.insert_resource(report);
        world.insert_resource(state);
        Ok(())
    }
}

fn report_failure(failure: &mut Failure, r: GResult<()>) {
    if let Err(e) = r {
        fail(failure, e);
    }
}

/// Quadrature: geometric factors on the device.
pub fn quadrature(
    mesh: Res<MeshRes>,
    mut st: ResMut<GpuState>,
    mut report: ResMut<GpuReport>,
    mut failure: ResMut<Failure>,
) {
    let _s = tracing::info_span!("gpu::quadrature").entered();
    let r = guard(|| {
        phases::quadrature(&mut st, &mut report, &mesh.0)?;
        st.sync()
    });
    report_failure(&mut failure, r);
}

/// Hand-over: the device's quadrature data into the [`Quadrature`]
/// components, for a host assembly.
pub fn download_quadrature(
    st: Res<GpuState>,
    mut report: ResMut<GpuReport>,
    mut q: Query<(&ElementIndex, &mut Quadrature)>,
    mut failure: ResMut<Failure>,
) {
    let r = guard(|| phases::download_quadrature(&st, &mut report, &mut q));
    report_failure(&mut failure, r);
}

/// Hand-over: a host quadrature's [`Quadrature`] components onto the
/// device.
pub fn upload_quadrature(
    mesh: Res<MeshRes>,
    mut st: ResMut<GpuState>,
    mut report: ResMut<GpuReport>,
    q: Query<(&ElementIndex, &ElementCoords, &Quadrature)>,
    mut failure: ResMut<Failure>,
) {
    let r = guard(|| phases::upload_quadrature(&mut st, &mut report, &mesh.0, &q));
    report_failure(&mut failure, r);
}

/// Assembly: full-CSR pattern, element matrices and their sums on the
/// device.
pub fn assembly(
    mesh: Res<MeshRes>,
    physics: Res<Physics>,
    options: Res<GpuCgOptions>,
    mut st: ResMut<GpuState>,
    mut report: ResMut<GpuReport>,
    mut sys: ResMut<LinearSystem>,
    mut failure: ResMut<Failure>,
) {
    let _s = tracing::info_span!("gpu::assembly").entered();
    let r = guard(|| {
        sys.nnz = phases::assemble(
            &mut st,
            &mut report,
            &mesh.0,
            &physics,
            options.deterministic,
        )?;
        st.sync()
    });
    report_failure(&mut failure, r);
}

/// Hand-over: the device's system into [`LinearSystem`].
pub fn download_system(
    st: Res<GpuState>,
    mut report: ResMut<GpuReport>,
    mut sys: ResMut<LinearSystem>,
    mut failure: ResMut<Failure>,
) {
    let r = guard(|| phases::download_system(&st, &mut report, &mut sys));
    report_failure(&mut failure, r);
}

/// Hand-over: a host phase's [`LinearSystem`] onto the device.
pub fn upload_system(
    mut st: ResMut<GpuState>,
    mut report: ResMut<GpuReport>,
    sys: Res<LinearSystem>,
    mut failure: ResMut<Failure>,
) {
    let r = guard(|| phases::upload_system(&mut st, &mut report, &sys));
    report_failure(&mut failure, r);
}

/// Boundary: the selection resolved on the host, Robin edges and
/// penalties added on the device.
pub fn boundary(
    mesh: Res<MeshRes>,
    bc: Res<Boundaries>,
    options: Res<GpuCgOptions>,
    mut st: ResMut<GpuState>,
    mut report: ResMut<GpuReport>,
    mut boundary_report: ResMut<BoundaryReport>,
    mut failure: ResMut<Failure>,
) {
    let _s = tracing::info_span!("gpu::boundary").entered();
    // the selection scans nodes and elements on the host's rayon pool
    let selection = match crate::boundary::resolve_parallel(&mesh.0, &bc.0) {
        Ok(r) => r,
        Err(e) => return fail(&mut failure, e),
    };
    let r = guard(|| {
        *boundary_report = phases::apply_boundary(
            &mut st,
            &mut report,
            &mesh.0,
            &bc.0,
            &selection,
            options.deterministic,
        )?;
        st.sync()
    });
    report_failure(&mut failure, r);
}

/// Solve: equilibrated Jacobi-PCG (or AMG-CG) on the device with the
/// configured [`GpuSolveStrategy`]; `u` comes back into [`Solution`].
#[allow(clippy::too_many_arguments)]
pub fn solve(
    settings: Res<SolverSettings>,
    strategy: Res<GpuSolveStrategy>,
    options: Res<GpuCgOptions>,
    mut st: ResMut<GpuState>,
    mut report: ResMut<GpuReport>,
    mut hook: ResMut<ProgressHook>,
    mut solution: ResMut<Solution>,
    mut failure: ResMut<Failure>,
) {
    let _s = tracing::info_span!("gpu::solve", strategy = strategy.name()).entered();
    let r = guard(|| {
        let progress = &mut |it: usize, res: f64| hook.report(it, res);
        let out = match settings.method {
            SolverMethod::CgJacobi => {
                st.solve_cg(&mut report, &settings.cg, *strategy, &options, progress)?
            }
            SolverMethod::AmgCg => {
                st.solve_amg(&mut report, &settings.cg, &settings.amg, &options, progress)?
            }
            other => {
                return Err(device::backend_error(format!(
                    "the gpu solve implements cg-jacobi and amg-cg, not {}; run the solve on the host with [backend] solve = \"parallel\" (the other phases can stay on the gpu)",
                    other.name()
                )));
            }
        };
        finish_solve(out, &settings, &mut solution, &st)
    });
    report_failure(&mut failure, r);
}

/// Stores a device solve's outcome in [`Solution`]; an unconverged solve
/// is an error unless the settings allow it ([`check_converged`]).
fn finish_solve(
    out: cg::GpuSolveOutcome,
    settings: &SolverSettings,
    solution: &mut Solution,
    st: &GpuState,
) -> GResult<()> {
    let err = check_converged(&out.stats, settings);
    *solution = Solution {
        u: out.u,
        stats: out.stats,
        true_residual: out.true_residual,
        equilibrated_residual: out.equilibrated_residual,
    };
    st.sync()?;
    err.map_or(Ok(()), Err)
}

/// Hand-over: a host solve's `u` onto the device, for the device's
/// post-processing.
pub fn upload_solution(
    mut st: ResMut<GpuState>,
    mut report: ResMut<GpuReport>,
    solution: Res<Solution>,
    mut failure: ResMut<Failure>,
) {
    let r = guard(|| phases::upload_solution(&mut st, &mut report, &solution.u));
    report_failure(&mut failure, r);
}

/// Post-processing: velocity, speed and pressure per element on the
/// device, downloaded once into the [`ElementOutputs`] arrays.
pub fn post(
    mesh: Res<MeshRes>,
    physics: Res<Physics>,
    mut st: ResMut<GpuState>,
    mut report: ResMut<GpuReport>,
    mut outputs: ResMut<ElementOutputs>,
    mut failure: ResMut<Failure>,
) {
    let _s = tracing::info_span!("gpu::post").entered();
    let r = guard(|| {
        phases::post(&mut st, &mut report, &mesh.0, &physics, &mut outputs)?;
        st.sample_memory(&mut report);
        st.sync()
    });
    report_failure(&mut failure, r);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesh::{Mesh, OrientationPolicy};
    use crate::{PhasePlan, Pipeline, Registry, RunConfig};
    use std::sync::Arc;

    fn tiny_mesh() -> Mesh {
        // two Quad-8 elements side by side on [0, 2] x [0, 1]
        let x = vec![
            0.0, 1.0, 2.0, 0.0, 1.0, 2.0, 0.5, 1.5, 0.5, 1.5, 0.0, 1.0, 2.0,
        ];
        let y = vec![
            0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.5, 0.5, 0.5,
        ];
        let els = vec![[0i64, 1, 4, 3, 6, 11, 8, 10], [1, 2, 5, 4, 7, 12, 9, 11]];
        Mesh::new(x, y, &els, OrientationPolicy::Refuse).unwrap()
    }

    #[test]
    fn strategy_names_round_trip() {
        for s in [GpuSolveStrategy::Custom, GpuSolveStrategy::Vendor] {
            assert_eq!(GpuSolveStrategy::parse(s.name()), Some(s));
        }
        assert_eq!(GpuSolveStrategy::default(), GpuSolveStrategy::Custom);
        assert_eq!(GpuSolveStrategy::parse("cupy"), None);
        assert_eq!(GpuCgOptions::default().check_every, 32);
    }

    #[test]
    fn section_sets_the_loop_and_the_setup_site_and_names_bad_values() {
        let s = GpuSection {
            cg_loop: "persistent".into(),
            amg_setup: "host".into(),
            ..GpuSection::default()
        };
        let b = s.backend().unwrap();
        assert_eq!(b.cg.cg_loop, CgLoop::Persistent);
        assert_eq!(b.cg.amg_setup, AmgSetupSite::Host);
        let d = GpuSection::default().backend().unwrap();
        assert_eq!(d.cg.cg_loop, CgLoop::Auto);
        assert!(d.cg.fuse_direction.is_none() && d.cg.deterministic);
        let g = GpuSection {
            cg_loop: "graph".into(),
            fuse_direction: Some(false),
            deterministic: false,
            ..GpuSection::default()
        }
        .backend()
        .unwrap();
        assert_eq!(g.cg.cg_loop, CgLoop::Graph);
        assert!(g.cg.fuse_direction == Some(false) && !g.cg.deterministic);
        assert_eq!(d.cg.amg_setup, AmgSetupSite::Device);
        for (section, key) in [
            (
                GpuSection {
                    cg_loop: "graphs".into(),
                    ..GpuSection::default()
                },
                "cg_loop",
            ),
            (
                GpuSection {
                    amg_setup: "cpu".into(),
                    ..GpuSection::default()
                },
                "amg_setup",
            ),
        ] {
            let e = format!("{:?}", section.backend().unwrap_err());
            assert!(e.contains(key), "{e}");
        }
    }

    #[test]
    fn report_counts_and_merges_transfers() {
        let mut r = GpuReport::default();
        r.count("x", true, 16);
        r.count("x", true, 16);
        r.count("u", false, 8);
        assert_eq!(r.bytes_to_device, 32);
        assert_eq!(r.bytes_to_host, 8);
        assert_eq!(r.transfers.len(), 2);
        assert_eq!(r.transfers[0].bytes, 32);
    }

    #[test]
    fn without_a_driver_the_backend_fails_cleanly() {
        let mut reg = Registry::with_serial();
        reg.register(Gpu::default());
        let result = Pipeline::new(
            Arc::new(tiny_mesh()),
            RunConfig::default(),
            &reg,
            &PhasePlan::uniform("gpu"),
        )
        .and_then(|mut p| p.run().map(|_| p));
        if device_available() {
            // On a GPU machine the same tiny run must succeed.
            let p = result.expect("gpu pipeline on a machine with a device");
            assert!(p.world.resource::<Solution>().stats.converged);
            return;
        }
        let err = result.err().expect("no driver here, so an error");
        match &err {
            PipelineError::Backend { backend, message } => {
                assert_eq!(backend, "gpu");
                if device::probe_driver().is_err() {
                    assert_eq!(message, device::NO_DRIVER);
                }
            }
            other => panic!("expected a backend error, got {other:?}"),
        }
        let text = err.to_string();
        assert!(
            text.starts_with("backend gpu: ") && text.contains("serial"),
            "{text}"
        );
    }
}
