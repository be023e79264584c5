//! The `mpi` backend: one pipeline per MPI rank, each on its part of the
//! mesh, the solve distributed.
//!
//! [`MpiKind`] reads the scene section `[mpi]` (`local`: the executor of
//! each rank's own phases, `partitioner`) and wraps the configured local
//! backend in an [`Mpi`] backend, which
//! - runs the local backend's quadrature, assembly, boundary and post
//!   systems on the rank's part (the same ECS phases and systems as a run
//!   on one process);
//! - runs its own solve: agree with the other ranks that every part was
//!   assembled, keep the owned rows, the distributed Jacobi-CG (with the
//!   local backend's kind of kernels: the host's fused two-pass kernels,
//!   or the device's with the halo staged through host buffers) or AMG-CG,
//!   and `u` with its ghost values for the local post-processing; a device
//!   local backend's own hand-over systems bring the system to the host
//!   and `u` back to the device;
//! - provides the run's [`ProcessGroup`] ([`crate::group::Group`]): the
//!   lead reads the mesh, the group splits it and joins the results.
//!
//! MPI itself (feature `mpi`) starts at the first
//! [`Backend::process_group`] call (so configuring the backend, as every
//! run does for every kind, costs nothing) and is finalised when the run
//! ends and the group is dropped.

use crate::amg_solve::AmgReport;
use crate::group::{Group, Started, Summary};
use crate::partition::Method;
use crate::threads::Threads;
use bevy_ecs::prelude::*;
use quadflow_systems::components::failure::check_converged;
use quadflow_systems::components::*;
use quadflow_systems::config::{self, BackendKind, Flag, FlagValue, SettingError, Table};
use quadflow_systems::parallel::ParallelRuntime;
use quadflow_systems::pipeline::{
    Backend, Memory, Phase, PhasePlan, PhaseSystems, ProcessGroup, Registry,
};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};

/// The backend's name (scenes, command line, reports).
pub const NAME: &str = "mpi";

/// The local executors a rank may run its phases on.
pub const LOCALS: &[&str] = &["serial", "parallel", "gpu"];

/// `[mpi]`: the scene section of the MPI backend.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MpiSection {
    /// The executor each rank runs its part on: `serial`, `parallel` or
    /// `gpu` (one GPU per rank: device = local rank modulo the devices).
    pub local: String,
    /// How the mesh is split: `metis` (k-way on the element dual graph,
    /// on rank 0), `rcb` (recursive coordinate bisection, distributed
    /// when the ranks read in blocks) or `auto` (METIS for small meshes,
    /// RCB above).
    pub partitioner: String,
    /// How the mesh is read: `blocks` (every rank its own blocks; no rank
    /// holds the whole mesh; the results written by every rank) or `lead`
    /// (rank 0 reads it whole, splits it, gathers the results and writes).
    pub read: String,
    /// AMG-CG: while a level has fewer rows than this per active rank,
    /// half the active ranks hand their rows to the other half; one rank
    /// left runs the engine's hierarchy (5,000).
    pub agglomerate_below: usize,
}

impl Default for MpiSection {
    fn default() -> Self {
        Self {
            local: "serial".into(),
            partitioner: "auto".into(),
            read: "blocks".into(),
            agglomerate_below: crate::amg::DistAmgSettings::default().agglomerate_below,
        }
    }
}

/// The flags of `quadflow run` that set keys of `[mpi]`.
const FLAGS: &[Flag] = &[
    Flag {
        long: "mpi-local",
        key: "local",
        value_name: "BACKEND",
        help: "Executor of each MPI rank's part (serial, parallel, gpu)",
        value: FlagValue::Text,
    },
    Flag {
        long: "partitioner",
        key: "partitioner",
        value_name: "NAME",
        help: "How the mpi backend splits the mesh (auto, metis, rcb)",
        value: FlagValue::Text,
    },
    Flag {
        long: "mpi-read",
        key: "read",
        value_name: "HOW",
        help: "How the mpi backend reads the mesh (blocks: every rank its own; lead: rank 0)",
        value: FlagValue::Text,
    },
];

/// Starts the communicator of a group (MPI, or threads in tests).
pub type Starter = Arc<dyn Fn() -> Result<Started, String> + Send + Sync>;

/// The kind of the `mpi` backend: its section, flags and configuration.
#[derive(Clone)]
pub struct MpiKind {
    starter: Starter,
}

impl MpiKind {
    /// The kind whose groups run over `MPI_COMM_WORLD` (MPI started on
    /// first use).
    #[cfg(feature = "mpi")]
    pub fn world() -> Self {
        Self::with_starter(Arc::new(|| {
            let (comm, universe) = crate::comm::mpi::MpiComm::init()?;
            Ok(Started {
                comm: Box::new(comm),
                keep: Some(Box::new(UniverseHolder(universe))),
            })
        }))
    }

    /// The kind whose groups run over the communicator `starter` gives
    /// (in-process ranks for tests).
    pub fn with_starter(starter: Starter) -> Self {
        Self { starter }
    }
}

/// Keeps MPI's universe (finalised on drop) alive with the group.
#[cfg(feature = "mpi")]
struct UniverseHolder(#[allow(dead_code)] mpi::environment::Universe);

// SAFETY: the universe holds no MPI handle (only an optional attached
// buffer); it is dropped, finalising MPI, with the group on the thread
// that ran the run.
#[cfg(feature = "mpi")]
unsafe impl Send for UniverseHolder {}
// SAFETY: as above; it is never used, only dropped.
#[cfg(feature = "mpi")]
unsafe impl Sync for UniverseHolder {}

impl BackendKind for MpiKind {
    fn name(&self) -> &'static str {
        NAME
    }

    fn about(&self) -> &'static str {
        "one process per MPI rank, each running a local executor on its part of the mesh; distributed CG / AMG-CG"
    }

    fn defaults(&self) -> Table {
        config::section_of(&MpiSection::default())
    }

    fn flags(&self) -> &'static [Flag] {
        FLAGS
    }

    fn configure(
        &self,
        section: &Table,
        configured: &Registry,
    ) -> Result<Arc<dyn Backend>, SettingError> {
        let s: MpiSection = config::read_section(section)?;
        let local_name = LOCALS
            .iter()
            .find(|l| **l == s.local)
            .copied()
            .ok_or_else(|| {
                SettingError::key(
                    "local",
                    format!(
                        "unknown local executor \"{}\" (available: {})",
                        s.local,
                        LOCALS.join(", ")
                    ),
                )
            })?;
        let local = configured.get(local_name).cloned().ok_or_else(|| {
            SettingError::key(
                "local",
                format!("the {local_name} backend is not in this build"),
            )
        })?;
        let method = Method::parse(&s.partitioner).ok_or_else(|| {
            SettingError::key(
                "partitioner",
                format!(
                    "unknown partitioner \"{}\" (available: {})",
                    s.partitioner,
                    Method::NAMES.join(", ")
                ),
            )
        })?;
        let read = crate::group::Read::parse(&s.read).ok_or_else(|| {
            SettingError::key(
                "read",
                format!(
                    "unknown way to read the mesh \"{}\" (available: {})",
                    s.read,
                    crate::group::Read::NAMES.join(", ")
                ),
            )
        })?;
        if method == Method::Metis && !cfg!(feature = "metis") {
            return Err(SettingError::key(
                "partitioner",
                "this build has no METIS (feature metis of quadflow-mpi); use \"rcb\"",
            ));
        }
        if s.agglomerate_below == 0 {
            return Err(SettingError::key(
                "agglomerate_below",
                "must be at least 1 (rows a rank)",
            ));
        }
        Ok(Arc::new(Mpi {
            local,
            local_name,
            method,
            read,
            dist: crate::amg::DistAmgSettings {
                agglomerate_below: s.agglomerate_below,
            },
            starter: self.starter.clone(),
            group: Mutex::new(None),
        }))
    }
}

/// The `mpi` backend: a local backend's phases on each rank's part, the
/// distributed solve, the process group.
pub struct Mpi {
    local: Arc<dyn Backend>,
    local_name: &'static str,
    method: Method,
    read: crate::group::Read,
    dist: crate::amg::DistAmgSettings,
    starter: Starter,
    group: Mutex<Option<Arc<Group>>>,
}

/// The group of the run, for the backend's systems.
#[derive(Resource, Clone)]
pub struct MpiRun {
    /// The group (communicator, this rank's part).
    pub group: Arc<Group>,
    /// The distributed AMG's settings.
    pub dist: crate::amg::DistAmgSettings,
    /// Whether the local backend keeps its system on a device (the
    /// distributed CG then runs the device kernels).
    pub device: bool,
}

impl Mpi {
    fn started(&self) -> Option<Arc<Group>> {
        self.group.lock().expect("group").clone()
    }

    /// Whether the run's group has one rank (the solve is then the local
    /// backend's own).
    fn one_rank(&self) -> bool {
        self.started().is_some_and(|g| g.size() == 1)
    }
}

impl Backend for Mpi {
    fn name(&self) -> &'static str {
        NAME
    }

    fn systems(&self, phase: Phase) -> Option<PhaseSystems> {
        match phase {
            // one rank: the local backend's own solve, unchanged (its
            // device-resident path on a gpu), as a run without MPI
            Phase::Solve if self.one_rank() => self
                .local
                .systems(Phase::Solve)
                .map(|s| (s, note_nnz.into_configs()).chain().into_configs()),
            Phase::Solve => {
                // a device local backend's own hand-over: the system to the
                // host before, u to the device after
                let down = self.local.download(Phase::Boundary);
                let up = self.local.upload(Phase::Solve);
                Some(match (down, up) {
                    (Some(d), Some(u)) => (d, solve.into_configs(), u).chain().into_configs(),
                    (Some(d), None) => (d, solve.into_configs()).chain().into_configs(),
                    (None, Some(u)) => (solve.into_configs(), u).chain().into_configs(),
                    (None, None) => solve.into_configs(),
                })
            }
            _ => self.local.systems(phase),
        }
    }

    fn fallback(&self) -> Option<&'static str> {
        self.local.fallback()
    }

    fn uses_element_entities(&self) -> bool {
        self.local.uses_element_entities()
    }

    fn memory(&self) -> Memory {
        self.local.memory()
    }

    fn download(&self, phase: Phase) -> Option<PhaseSystems> {
        match phase {
            // the solve leaves u on the host (and on the device)
            Phase::Solve => None,
            _ => self.local.download(phase),
        }
    }

    fn upload(&self, phase: Phase) -> Option<PhaseSystems> {
        self.local.upload(phase)
    }

    fn single_threaded(&self) -> bool {
        self.local.single_threaded()
    }

    fn prewarm(&self) {
        self.local.prewarm();
    }

    fn prepare(&self, world: &mut World) -> Result<(), PipelineError> {
        let err = |m: String| PipelineError::Backend {
            backend: NAME.into(),
            message: m,
        };
        let group = self.started().ok_or_else(|| {
            err(
                "the mpi backend runs through its process group (quadflow run); this run has none"
                    .into(),
            )
        })?;
        let plan = world.resource::<PhasePlan>();
        if plan.get(Phase::Solve) != NAME {
            return Err(err(format!(
                "the solve phase must run on the mpi backend when another phase does (it is the phase that couples the parts); [backend] solve = \"{}\"",
                plan.get(Phase::Solve)
            )));
        }
        let method = world.resource::<SolverSettings>().method;
        if method == SolverMethod::Cholesky {
            return Err(err(
                "the distributed solve runs cg-jacobi or amg-cg, not cholesky; use --solver amg-cg (to 1e-10 for a direct solve's accuracy)".into(),
            ));
        }
        // the local backend prepares for the phases it runs for us (a gpu
        // backend compiles the kernel modules of the phases its plan names)
        let plan = world.resource::<PhasePlan>().clone();
        let mut lp = local_plan(&plan, self.local.name());
        if group.size() == 1 {
            // one rank solves with the local backend's own solve
            lp.set(Phase::Solve, self.local.name());
        }
        world.insert_resource(lp);
        let prepared = self.local.prepare(world);
        world.insert_resource(plan);
        prepared?;
        let one = group.size() == 1;
        world.insert_resource(MpiRun {
            group,
            dist: self.dist,
            device: self.local.memory() != Memory::Host,
        });
        world.insert_resource(SolveReport {
            path: if one {
                format!(
                    "one rank: the {} backend's own solve (no halo, no agglomeration)",
                    self.local_name
                )
            } else {
                String::new()
            },
            ..Default::default()
        });
        Ok(())
    }

    fn report(&self, world: &World) -> BackendReport {
        let mut r = self.local.report(world);
        if let Some(s) = world.get_resource::<Summary>() {
            let mine = s.report();
            r.attributes.extend(mine.attributes);
            r.summary.extend(mine.summary);
        }
        if let Some(s) = world.get_resource::<SolveReport>() {
            let mine = s.report();
            r.attributes.extend(mine.attributes);
            r.summary.extend(mine.summary);
        }
        r
    }

    fn process_group(&self) -> Result<Option<Arc<dyn ProcessGroup>>, PipelineError> {
        let mut slot = self.group.lock().expect("group");
        if let Some(g) = slot.as_ref() {
            return Ok(Some(g.clone()));
        }
        // one device per rank, chosen before MPI and CUDA start
        let device = if self.local.memory() != Memory::Host {
            crate::device::choose_device()
        } else {
            None
        };
        let started = (self.starter)().map_err(|m| PipelineError::Backend {
            backend: NAME.into(),
            message: m,
        })?;
        let g =
            Arc::new(Group::new(started, self.method, self.local_name, device).reading(self.read));
        *slot = Some(g.clone());
        Ok(Some(g))
    }
}

/// The solve phase of a rank (collective): agree that every rank got
/// here, then the distributed solve of the owned rows; `u` (owned and
/// ghost nodes) into [`Solution`].
fn solve(world: &mut World) {
    let run = world.resource::<MpiRun>().clone();
    let g = &run.group;
    // A rank whose earlier phase failed is not here: it is agreeing on
    // its failure already, and this agreement meets it.
    if let Err(m) = g.agree(None) {
        return record(
            world,
            PipelineError::Backend {
                backend: NAME.into(),
                message: m,
            },
        );
    }
    let part = g.part().expect("split before the pipeline");
    let sys = {
        let s = world.resource::<LinearSystem>();
        crate::assemble::LocalSystem::from_assembled(&part, &s.k, &s.f)
    };
    g.set_owned_nnz(sys.k.nnz());
    let settings = world.resource::<SolverSettings>().clone();
    let mut hook = std::mem::take(&mut *world.resource_mut::<ProgressHook>());
    let progress = &mut |it: usize, res: f64| hook.report(it, res);
    let comm = g.comm();
    // a rank with local = "parallel" computes on the parallel backend's
    // pool, the others on their own thread
    let threads = match world.get_resource::<ParallelRuntime>() {
        Some(rt) => Threads::with_team(rt.pool.clone(), rt.team.clone()),
        // a GPU rank's host work (the AMG hierarchy) on its share of the
        // node's cores
        None if run.device && settings.method == SolverMethod::AmgCg => Threads::node_share(),
        None => Threads::serial(),
    };
    let _span = tracing::info_span!("mpi::solve", method = settings.method.name()).entered();
    let mut report = SolveReport {
        threads: threads.count(),
        ..Default::default()
    };
    let result = match settings.method {
        SolverMethod::CgJacobi if run.device => {
            report.path = format!(
                "Jacobi-CG: the rank's rows and vectors on its device, the halo staged through pinned host buffers ({})",
                crate::comm::halo_path_note()
            );
            crate::device::solve_cg_jacobi(world, comm, &part, &sys, &settings.cg, progress)
        }
        SolverMethod::CgJacobi => {
            report.path = format!(
                "Jacobi-CG: the engine's fused kernels on {} thread(s) a rank, plus the ghost block",
                threads.count()
            );
            crate::cg::solve_cg_jacobi_on(comm, &part, &sys, &settings.cg, &threads, progress)
        }
        SolverMethod::AmgCg => {
            report.path = format!(
                "AMG-CG: the engine's setup and smoother on each rank's block ({} thread(s) a rank{}), fewer ranks below {} rows a rank, the engine's hierarchy on the last",
                threads.count(),
                if run.device {
                    ", on the host: the system comes from the device"
                } else {
                    ""
                },
                run.dist.agglomerate_below
            );
            crate::amg::solve_amg_cg_on(
                comm,
                &part,
                &sys,
                &settings.cg,
                &settings.amg,
                &run.dist,
                &threads,
                progress,
            )
            .map(|(sol, amg)| {
                report.amg = Some(amg);
                sol
            })
        }
        SolverMethod::Cholesky => unreachable!("refused in prepare"),
    };
    world.insert_resource(report);
    *world.resource_mut::<ProgressHook>() = hook;
    match result {
        Ok(sol) => {
            // ghost values for the local post-processing (collective, so
            // before any error is recorded)
            let u = crate::cg::with_ghosts(comm, &part, &sol.u);
            let err = check_converged(&sol.stats, &settings);
            *world.resource_mut::<Solution>() = Solution {
                u,
                stats: sol.stats,
                true_residual: sol.true_residual,
                equilibrated_residual: sol.equilibrated_residual,
            };
            if let Some(e) = err {
                record(world, e);
            }
        }
        // the distributed solvers fail on every rank alike
        Err(e) => record(world, e.into()),
    }
}

/// What the distributed solve of a rank reports: which path ran, the
/// threads of a rank, and, for AMG-CG, the per-level figures (rows per
/// rank, halo bytes per V-cycle, time in exchanges).
#[derive(Resource, Debug, Clone, Default)]
pub struct SolveReport {
    /// The solve's path, in words.
    pub path: String,
    /// Threads a rank computed on.
    pub threads: usize,
    /// AMG-CG's levels.
    pub amg: Option<AmgReport>,
}

impl SolveReport {
    /// Attributes of the results file and lines of the run summary.
    pub fn report(&self) -> BackendReport {
        let mut attributes: Vec<(String, Attr)> = Vec::new();
        let mut summary = Vec::new();
        if !self.path.is_empty() {
            attributes.push(("mpi_solve_path".into(), Attr::Str(self.path.clone())));
            summary.push(format!("solve: {}", self.path));
        }
        if self.threads > 0 {
            attributes.push((
                "mpi_threads_per_rank".into(),
                Attr::Int(self.threads as i64),
            ));
        }
        if let Some(a) = &self.amg {
            let bytes = a.halo_bytes_per_cycle();
            let ints = |f: &dyn Fn(&crate::amg::LevelInfo) -> usize| {
                Attr::Str(
                    a.levels
                        .iter()
                        .map(|l| f(l).to_string())
                        .collect::<Vec<_>>()
                        .join(","),
                )
            };
            attributes.extend([
                (
                    "mpi_amg_distributed_levels".into(),
                    Attr::Int(a.distributed as i64),
                ),
                ("mpi_amg_level_rows".into(), ints(&|l| l.rows)),
                ("mpi_amg_level_ranks".into(), ints(&|l| l.ranks)),
                (
                    "mpi_amg_level_max_rows_per_rank".into(),
                    ints(&|l| l.max_rows),
                ),
                ("mpi_amg_level_handed_rows".into(), ints(&|l| l.handed_rows)),
                (
                    "mpi_amg_level_halo_bytes_per_cycle".into(),
                    Attr::Str(
                        bytes
                            .iter()
                            .map(|b| b.to_string())
                            .collect::<Vec<_>>()
                            .join(","),
                    ),
                ),
                (
                    "mpi_amg_level_exchange_seconds".into(),
                    Attr::Str(
                        a.exchange_seconds
                            .iter()
                            .map(|s| format!("{s:.6}"))
                            .collect::<Vec<_>>()
                            .join(","),
                    ),
                ),
                ("mpi_amg_cycles".into(), Attr::Int(a.cycles as i64)),
            ]);
            for (k, l) in a.levels.iter().enumerate() {
                summary.push(format!(
                    "AMG level {k}: {} rows on {} rank(s) (at most {} a rank){}; halo {} bytes a V-cycle, {:.4} s in exchanges",
                    l.rows,
                    l.ranks,
                    l.max_rows,
                    if l.handed_rows > 0 {
                        format!(", {} rows handed over above it", l.handed_rows)
                    } else {
                        String::new()
                    },
                    bytes[k],
                    a.exchange_seconds.get(k).copied().unwrap_or(0.0)
                ));
            }
        }
        BackendReport {
            attributes,
            summary,
        }
    }
}

/// One rank: its matrix is the whole one (the figure the group reports).
fn note_nnz(run: Res<MpiRun>, sys: Res<LinearSystem>) {
    run.group.set_owned_nnz(sys.nnz);
}

fn record(world: &mut World, e: PipelineError) {
    fail(&mut world.resource_mut::<Failure>(), e);
}

/// `plan` as the local backend `local` sees it: the phases it runs for
/// the mpi backend (all but the solve, which is the mpi backend's own)
/// named as its.
pub fn local_plan(plan: &PhasePlan, local: &str) -> PhasePlan {
    let mut p = plan.clone();
    for ph in [
        Phase::Quadrature,
        Phase::Assembly,
        Phase::Boundary,
        Phase::Post,
    ] {
        if p.get(ph) == NAME {
            p.set(ph, local);
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use quadflow_systems::gpu::GpuCgOptions;
    use quadflow_systems::gpu::state::modules_for;

    fn modules(plan: PhasePlan) -> Vec<&'static str> {
        let mut w = World::new();
        w.insert_resource(plan);
        modules_for(&w, "gpu", &GpuCgOptions::default())
            .iter()
            .map(|m| m.name)
            .collect()
    }

    /// A gpu backend under the mpi backend compiles the kernels of the
    /// phases it runs for it, and no solver kernels (the distributed
    /// solve has its own).
    #[test]
    fn the_local_backend_sees_the_phases_it_runs() {
        let plan = PhasePlan::uniform(NAME);
        assert!(modules(plan.clone()).is_empty());
        let local = local_plan(&plan, "gpu");
        assert_eq!(local.get(Phase::Solve), NAME);
        assert_eq!(modules(local), ["elements", "mesh", "scan"]);
        // a phase given to another backend stays its
        let mut mixed = PhasePlan::uniform(NAME);
        mixed.set(Phase::Post, "serial");
        let local = local_plan(&mixed, "gpu");
        assert_eq!(local.get(Phase::Post), "serial");
        assert_eq!(local.get(Phase::Quadrature), "gpu");
    }
}
