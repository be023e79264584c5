//! Phases, backends and the pipeline that runs them.
//!
//! The five phases are system sets of one [`Schedule`], chained in order.
//! A [`Backend`] is a plugin: it says which phases it implements and adds
//! its systems into those sets. A [`PhasePlan`] names a backend per phase;
//! a phase whose backend does not implement it falls back to the backend's
//! own fallback or the [`Registry`]'s (libCEED's delegation), and the
//! fallback is noted.
//!
//! **Hand-over.** Each backend says where its phases leave their results
//! ([`Backend::memory`]). Where two consecutive phases run in different
//! memories, the pipeline inserts the transfer: the producing backend's
//! [`Backend::download`] systems at the end of the producing phase, the
//! consuming backend's [`Backend::upload`] systems at the start of the
//! consuming phase (both inside the phases' timers). Systems never ask
//! which backend their neighbours run.
//!
//! Within a phase the order is: timer start, uploads, the backend's
//! systems, downloads, timer end; every system but the timer's end runs
//! only while no phase has failed ([`no_failure`]).

use crate::components::*;
pub use crate::components::{PipelineError, fail};
use crate::mesh::Mesh;
use bevy_ecs::prelude::*;
use bevy_ecs::schedule::ScheduleLabel;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

/// The phases of a run, in execution order.
#[derive(SystemSet, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    /// Per-element geometric factors at the quadrature points.
    Quadrature,
    /// Sparsity pattern, element matrices, scatter into CSR.
    Assembly,
    /// Robin edges and penalties.
    Boundary,
    /// The linear solve.
    Solve,
    /// Velocity, speed and pressure per element.
    Post,
}

impl Phase {
    /// All phases in order.
    pub const ALL: [Phase; 5] = [
        Phase::Quadrature,
        Phase::Assembly,
        Phase::Boundary,
        Phase::Solve,
        Phase::Post,
    ];

    /// Lower-case name (scene keys, output attributes).
    pub fn name(self) -> &'static str {
        match self {
            Phase::Quadrature => "quadrature",
            Phase::Assembly => "assembly",
            Phase::Boundary => "boundary",
            Phase::Solve => "solve",
            Phase::Post => "post",
        }
    }

    /// Position in [`Phase::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// The label of the pipeline's schedule.
#[derive(ScheduleLabel, Debug, Clone, PartialEq, Eq, Hash)]
pub struct RunPipeline;

/// The systems a backend contributes to one phase.
pub type PhaseSystems = bevy_ecs::schedule::ScheduleConfigs<bevy_ecs::system::ScheduleSystem>;

/// Where a backend's phases leave their results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Memory {
    /// In the world's resources and components.
    Host,
    /// In a device memory of the backend's own (named).
    Device(&'static str),
}

/// A pluggable executor: contributes systems to the phases it implements.
/// The pipeline places them in the phase's set, behind the phase timer,
/// each guarded by [`no_failure`].
pub trait Backend: Send + Sync + 'static {
    /// Name used in scenes and on the command line.
    fn name(&self) -> &'static str;
    /// Its systems for `phase`, in order (`(a, b).chain().into_configs()`),
    /// or `None` where it does not implement the phase.
    fn systems(&self, phase: Phase) -> Option<PhaseSystems>;
    /// Whether it implements `phase`.
    fn implements(&self, phase: Phase) -> bool {
        self.systems(phase).is_some()
    }
    /// The backend that runs the phases this one does not implement;
    /// `None` takes the registry's fallback.
    fn fallback(&self) -> Option<&'static str> {
        None
    }
    /// Whether its systems read or write the per-element entities
    /// (`Nodes`, `ElementCoords`, `Quadrature`, `Slots`). The pipeline
    /// spawns them only when a backend that runs a phase does; one that
    /// works from the mesh alone (the GPU backend) says `false` and so
    /// saves the spawn (about 600 bytes per element).
    fn uses_element_entities(&self) -> bool {
        true
    }
    /// Where its phases leave their results ([`Memory::Host`]: in the
    /// world's resources and components).
    fn memory(&self) -> Memory {
        Memory::Host
    }
    /// Systems that copy what `phase` (run by this backend) produced from
    /// the backend's memory into the host's resources or components, for a
    /// host backend running the next phase. Only for device backends.
    fn download(&self, _phase: Phase) -> Option<PhaseSystems> {
        None
    }
    /// Systems that copy what `phase` (run by a backend of another
    /// memory) left in the host's resources or components into this
    /// backend's memory, before this backend runs the next phase. Only for
    /// device backends.
    fn upload(&self, _phase: Phase) -> Option<PhaseSystems> {
        None
    }
    /// Whether all its work runs on the calling thread (host work around
    /// the run, such as mesh validation, then stays on one thread too).
    fn single_threaded(&self) -> bool {
        false
    }
    /// Starts slow initialisation (a device context) in the background,
    /// before the mesh is loaded. Called once per run for backends of the
    /// plan.
    fn prewarm(&self) {}
    /// Prepares the world before the schedule runs (resources, thread
    /// pools, device contexts). Called once if the backend runs any phase.
    fn prepare(&self, _world: &mut World) -> Result<(), PipelineError> {
        Ok(())
    }
    /// What it reports after a run (attributes of the results file, lines
    /// of the run summary).
    fn report(&self, _world: &World) -> BackendReport {
        BackendReport::default()
    }
    /// The group of processes a run on this backend spans, for backends
    /// whose run is one pipeline per process, each on its part of the
    /// mesh (MPI); `None` (the default) for a run in one process. Called
    /// once per run, before the mesh is loaded, on the backends of the
    /// plan; the first call may start the group (initialise MPI).
    fn process_group(&self) -> Result<Option<Arc<dyn ProcessGroup>>, PipelineError> {
        Ok(None)
    }
}

/// Processes that run one pipeline together, each on its part of the mesh
/// (an MPI job), as an application drives them:
///
/// 1. the lead process (rank 0) alone loads the mesh; every process
///    [`agree`](ProcessGroup::agree)s on whether that worked;
/// 2. [`split`](ProcessGroup::split) gives every process its part, a
///    [`Mesh`] of its own, which its pipeline is built on and runs
///    (each failure of a step agreed before the next);
/// 3. [`join`](ProcessGroup::join) gathers the results into the lead's
///    world, which then reads as a run on the whole mesh; the lead alone
///    writes and prints.
///
/// Every method but `rank` and `size` is collective: every process calls
/// it at the same point. A failure is never left to one process: once an
/// agreement (in [`agree`](ProcessGroup::agree), `split`, `join` or a
/// backend's own systems) has delivered a failure, every later agreement
/// returns it without communicating, so that no process waits for
/// another that has stopped.
pub trait ProcessGroup: Send + Sync {
    /// This process's rank, `0..size`.
    fn rank(&self) -> usize;
    /// Number of processes.
    fn size(&self) -> usize;
    /// Whether this is the lead process (rank 0), which loads the mesh,
    /// writes the results and prints.
    fn is_lead(&self) -> bool {
        self.rank() == 0
    }
    /// Agrees on a step: every process passes its own failure (or
    /// `None`); if any has one, every process returns the same message
    /// (the lowest failing rank's).
    fn agree(&self, mine: Option<String>) -> Result<(), String>;
    /// Splits the whole mesh (given on the lead only) into parts and
    /// returns this process's part, with everything the group's backend
    /// needs to run on it; failures are agreed.
    fn split(&self, mesh: Option<&Arc<Mesh>>, config: &RunConfig) -> Result<Arc<Mesh>, String>;
    /// After this process's pipeline ran on its part: gathers `u`, the
    /// per-element outputs, the matrix size, the boundary report and the
    /// phase times (the slowest process's) into the lead's `world`, so
    /// that it reads as the world of a run on the whole mesh. Returns
    /// whether this process is the lead; failures are agreed.
    fn join(&self, world: &mut World) -> Result<bool, String>;
    /// Whether this group reads meshes in blocks, every process its own
    /// ([`split_blocks`](ProcessGroup::split_blocks) and
    /// [`join_blocks`](ProcessGroup::join_blocks) instead of the lead's
    /// load, [`split`](ProcessGroup::split) and [`join`](ProcessGroup::join)).
    /// `false` by default.
    fn reads_blocks(&self) -> bool {
        false
    }
    /// The block way of steps 1 and 2: every process reads (or generates)
    /// its block of the mesh from `source`, validates it as `check` says
    /// (a failure names the element or node by its index in the whole
    /// mesh, as [`Mesh::new`] does), and the group partitions the mesh
    /// and moves elements and nodes to their parts without any process
    /// holding the whole mesh. Returns this process's part and its blocks;
    /// failures are agreed.
    fn split_blocks(
        &self,
        _source: &dyn MeshBlocks,
        _config: &RunConfig,
        _check: MeshCheck,
    ) -> Result<BlockSplit, String> {
        Err("this process group does not read meshes in blocks".into())
    }
    /// The block way of step 3: after this process's pipeline ran on its
    /// part, this process's blocks of the results (`u` on its block of
    /// nodes, the element fields on its block of elements, as
    /// [`split_blocks`](ProcessGroup::split_blocks) numbered them), and
    /// the figures of the whole run in every process's `world` (matrix
    /// size, boundary report, phase times of the slowest process, the
    /// backend's report on the lead). Failures are agreed.
    fn join_blocks(&self, _world: &mut World) -> Result<ResultBlocks, String> {
        Err("this process group does not read meshes in blocks".into())
    }
    /// `bytes` of process `root`, on every process (collective, like
    /// every method but `rank` and `size`; the others' `bytes` are
    /// ignored). Call it only after an agreement that succeeded.
    fn share(&self, _root: usize, bytes: Vec<u8>) -> Vec<u8> {
        bytes
    }
}

/// A mesh read or generated a block at a time, by index in the whole mesh
/// (the source of [`ProcessGroup::split_blocks`]): every process opens
/// its own and reads only its blocks. Indices are returned as stored
/// (unchecked); the group validates them.
pub trait MeshBlocks {
    /// Nodes and elements of the whole mesh.
    fn size(&self) -> (usize, usize);
    /// Where the mesh comes from, as messages name it.
    fn origin(&self) -> String;
    /// Node indices of elements `first..first + count`.
    fn elements(&self, first: usize, count: usize) -> Result<Vec<[i64; 8]>, String>;
    /// Coordinates of nodes `first..first + count`.
    fn coordinates(&self, first: usize, count: usize) -> Result<(Vec<f64>, Vec<f64>), String>;
    /// Coordinates of the nodes `ids` (increasing, no repeats; few and
    /// scattered: the nodes of a block's elements outside its node range).
    fn scattered(&self, ids: &[u32]) -> Result<(Vec<f64>, Vec<f64>), String>;
    /// The mesh's named node sets, whole (each a boundary's size),
    /// sorted, checked against the node count.
    fn node_sets(&self) -> Result<BTreeMap<String, Vec<u32>>, String>;
    /// Bytes this source has read from files so far (0 for a generator).
    fn bytes_read(&self) -> u64 {
        0
    }
}

/// How [`ProcessGroup::split_blocks`] validates the blocks: what
/// [`Mesh::new_with`] is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MeshCheck {
    /// What to do with clockwise elements.
    pub orientation: crate::mesh::OrientationPolicy,
    /// Whether the per-element checks may run on the current rayon pool.
    pub parallel: bool,
}

/// What [`ProcessGroup::split_blocks`] gives a process: its part, and its
/// blocks of the whole mesh (the rows it writes of the results file).
#[derive(Debug, Clone)]
pub struct BlockSplit {
    /// The process's part (as [`ProcessGroup::split`] returns it).
    pub part: Arc<Mesh>,
    /// Nodes of the whole mesh.
    pub nodes: usize,
    /// Elements of the whole mesh.
    pub elements: usize,
    /// Elements renumbered counter-clockwise, in the whole mesh.
    pub flipped: usize,
    /// The first node of this process's node block.
    pub first_node: usize,
    /// Coordinates of the node block (its length is the block's).
    pub x: Vec<f64>,
    /// Coordinates of the node block.
    pub y: Vec<f64>,
    /// The first element of this process's element block.
    pub first_element: usize,
    /// The element block, validated (node indices of the whole mesh).
    pub quad8: Vec<[u32; 8]>,
    /// Seconds to read and validate the blocks (the slowest process's).
    pub read_seconds: f64,
}

/// What [`ProcessGroup::join_blocks`] gives a process: its blocks of the
/// results, and their range over the whole mesh.
#[derive(Debug, Clone, Default)]
pub struct ResultBlocks {
    /// The first node of the block.
    pub first_node: usize,
    /// `u` on the node block.
    pub u: Vec<f64>,
    /// The first element of the block.
    pub first_element: usize,
    /// Velocity on the element block.
    pub vel: Vec<[f64; 2]>,
    /// Speed on the element block.
    pub abs_vel: Vec<f64>,
    /// Pressure on the element block.
    pub pressure: Vec<f64>,
    /// The least and the largest `u` of the whole mesh.
    pub u_range: [f64; 2],
}

/// The configured backends of a run, by name, and the fallback of phases
/// a backend does not implement.
#[derive(Clone)]
pub struct Registry {
    backends: BTreeMap<&'static str, Arc<dyn Backend>>,
    fallback: &'static str,
}

impl Registry {
    /// An empty registry whose phases fall back to the backend `fallback`
    /// (which must be registered and implement every phase).
    pub fn new(fallback: &'static str) -> Self {
        Self {
            backends: BTreeMap::new(),
            fallback,
        }
    }

    /// Adds (or replaces) a backend.
    pub fn register(&mut self, b: impl Backend) -> &mut Self {
        self.insert(Arc::new(b))
    }

    /// Adds (or replaces) a shared backend.
    pub fn insert(&mut self, b: Arc<dyn Backend>) -> &mut Self {
        self.backends.insert(b.name(), b);
        self
    }

    /// Looks a backend up.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Backend>> {
        self.backends.get(name)
    }

    /// The fallback backend's name.
    pub fn fallback(&self) -> &'static str {
        self.fallback
    }

    /// Registered names, comma-separated (for messages).
    pub fn names(&self) -> String {
        self.backends.keys().copied().collect::<Vec<_>>().join(", ")
    }

    /// The backend that runs `phase` when `wanted` is asked for: `wanted`
    /// itself, or the first of its fallbacks (its own, then the
    /// registry's) that implements the phase.
    pub fn resolve(&self, wanted: &str, phase: Phase) -> Result<&Arc<dyn Backend>, PipelineError> {
        let mut name = wanted;
        for _ in 0..=self.backends.len() {
            let b = self
                .get(name)
                .ok_or_else(|| PipelineError::UnknownBackend(name.to_string(), self.names()))?;
            if b.implements(phase) {
                return Ok(b);
            }
            name = b.fallback().unwrap_or(self.fallback);
        }
        Err(PipelineError::Backend {
            backend: wanted.to_string(),
            message: format!(
                "no backend among its fallbacks implements the {} phase",
                phase.name()
            ),
        })
    }
}

/// Backend chosen for each phase.
#[derive(Resource, Debug, Clone, PartialEq, Eq)]
pub struct PhasePlan(pub [String; 5]);

impl PhasePlan {
    /// The same backend for every phase.
    pub fn uniform(name: &str) -> Self {
        Self(std::array::from_fn(|_| name.to_string()))
    }

    /// The backend named for `phase`.
    pub fn get(&self, phase: Phase) -> &str {
        &self.0[phase.index()]
    }

    /// Sets the backend of one phase.
    pub fn set(&mut self, phase: Phase, name: &str) {
        self.0[phase.index()] = name.to_string();
    }
}

/// Backend that actually runs each phase (after fallback).
#[derive(Resource, Debug, Clone, PartialEq, Eq)]
pub struct Resolved(pub [&'static str; 5]);

/// The last phase a run goes through ([`Pipeline::run_through`]); the
/// phases after it do not run.
#[derive(Resource, Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastPhase(pub Phase);

/// The first phase a run goes through ([`Pipeline::run_phases`]); the
/// phases before it (already run) do not run again.
#[derive(Resource, Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirstPhase(pub Phase);

fn in_range(phase: Phase) -> impl FnMut(Res<FirstPhase>, Res<LastPhase>) -> bool + Clone {
    move |first, last| first.0 <= phase && phase <= last.0
}

/// Turns what the boundary phase found into warnings: one per mesh
/// component nothing anchors.
fn boundary_warnings(report: Res<BoundaryReport>, mut warnings: ResMut<Warnings>) {
    for c in &report.floating {
        warnings.0.push(format!(
            "{} ([mesh] components = \"refuse\" makes this an error)",
            crate::boundary::floating_message(c)
        ));
    }
}

/// Wall time of each phase, in seconds.
#[derive(Resource, Debug, Clone, Default, PartialEq)]
pub struct PhaseTimes {
    /// Seconds per phase, in [`Phase::ALL`] order.
    pub seconds: [f64; 5],
    started: Option<Instant>,
}

/// The open tracing span of the running phase (main thread only).
#[derive(Default)]
struct PhaseSpan(Option<tracing::span::EnteredSpan>);

fn phase_begin(phase: Phase) -> impl FnMut(ResMut<PhaseTimes>, NonSendMut<PhaseSpan>) {
    move |mut t, mut span| {
        // a distinct span name per phase, so flamegraphs keep them apart
        let s = match phase {
            Phase::Quadrature => tracing::info_span!("phase_quadrature"),
            Phase::Assembly => tracing::info_span!("phase_assembly"),
            Phase::Boundary => tracing::info_span!("phase_boundary"),
            Phase::Solve => tracing::info_span!("phase_solve"),
            Phase::Post => tracing::info_span!("phase_post"),
        };
        span.0 = Some(s.entered());
        t.started = Some(Instant::now());
    }
}

fn phase_end(phase: Phase) -> impl FnMut(ResMut<PhaseTimes>, NonSendMut<PhaseSpan>) {
    move |mut t, mut span| {
        if let Some(s) = t.started.take() {
            t.seconds[phase.index()] = s.elapsed().as_secs_f64();
        }
        span.0 = None;
    }
}

/// Sets that order each phase: timer start, uploads, the phase's systems,
/// downloads, timer end.
#[derive(SystemSet, Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Stage {
    Begin(Phase),
    Upload(Phase),
    Report(Phase),
    Download(Phase),
    End(Phase),
    Outer(Phase),
}

/// A ready-to-run pipeline: the world (mesh entities, resources) and the
/// schedule.
pub struct Pipeline {
    /// The ECS world.
    pub world: World,
    /// The schedule holding the five phase sets.
    pub schedule: Schedule,
    /// The backends that run a phase, in order of first use.
    pub backends: Vec<Arc<dyn Backend>>,
}

/// Everything a run needs besides the mesh.
#[derive(Debug, Clone, Default)]
pub struct RunConfig {
    /// Physics.
    pub physics: Physics,
    /// Boundaries.
    pub boundaries: crate::boundary::BoundaryConfig,
    /// Solver.
    pub solver: SolverSettings,
}

impl Pipeline {
    /// Builds the world and the schedule for `mesh` with the backends of
    /// `plan` (looked up in `registry`).
    pub fn new(
        mesh: Arc<Mesh>,
        config: RunConfig,
        registry: &Registry,
        plan: &PhasePlan,
    ) -> Result<Self, PipelineError> {
        let mut world = World::new();
        let mut notes = Vec::new();
        let mut warnings = Vec::new();
        if mesh.flipped > 0 {
            warnings.push(format!(
                "{} of {} elements were numbered clockwise and have been renumbered counter-clockwise (set [mesh] orientation = \"refuse\" to refuse such meshes)",
                mesh.flipped,
                mesh.elements.len()
            ));
        }
        world.insert_resource(MeshRes(mesh));
        world.insert_resource(config.physics);
        world.insert_resource(Boundaries(config.boundaries));
        world.insert_resource(config.solver);
        world.insert_resource(LinearSystem::default());
        world.insert_resource(BoundaryReport::default());
        world.insert_resource(Solution::default());
        world.insert_resource(ElementOutputs::default());
        world.insert_resource(PhaseTimes::default());
        world.insert_resource(Failure::default());
        world.insert_resource(ProgressHook::default());
        world.insert_resource(plan.clone());
        world.insert_resource(FirstPhase(Phase::Quadrature));
        world.insert_resource(LastPhase(Phase::Post));
        world.insert_non_send(PhaseSpan::default());

        // which backend runs each phase
        let mut runs: Vec<Arc<dyn Backend>> = Vec::with_capacity(5);
        for phase in Phase::ALL {
            let wanted = plan.get(phase);
            let b = registry.resolve(wanted, phase)?.clone();
            if b.name() != wanted {
                notes.push(format!(
                    "backend {wanted} does not implement the {} phase; using {}",
                    phase.name(),
                    b.name()
                ));
            }
            runs.push(b);
        }

        let mut schedule = Schedule::new(RunPipeline);
        schedule.configure_sets(
            (
                Stage::Outer(Phase::Quadrature),
                Stage::Outer(Phase::Assembly),
                Stage::Outer(Phase::Boundary),
                Stage::Outer(Phase::Solve),
                Stage::Outer(Phase::Post),
            )
                .chain(),
        );
        let mut used: Vec<Arc<dyn Backend>> = Vec::new();
        for (i, phase) in Phase::ALL.into_iter().enumerate() {
            let b = &runs[i];
            if !used.iter().any(|u| u.name() == b.name()) {
                b.prepare(&mut world)?;
                used.push(b.clone());
            }
            schedule.configure_sets(
                (
                    Stage::Begin(phase),
                    Stage::Upload(phase),
                    phase,
                    Stage::Report(phase),
                    Stage::Download(phase),
                    Stage::End(phase),
                )
                    .chain()
                    .in_set(Stage::Outer(phase)),
            );
            schedule.configure_sets(Stage::Outer(phase).run_if(in_range(phase)));
            schedule.add_systems(
                phase_begin(phase)
                    .in_set(Stage::Begin(phase))
                    .run_if(no_failure),
            );
            schedule.add_systems(phase_end(phase).in_set(Stage::End(phase)));
            let systems = b
                .systems(phase)
                .expect("resolved backends implement the phase");
            schedule.add_systems(systems.in_set(phase).distributive_run_if(no_failure));
            if phase == Phase::Boundary {
                schedule.add_systems(
                    boundary_warnings
                        .in_set(Stage::Report(phase))
                        .run_if(no_failure),
                );
            }
            // hand-over to the next phase where the memories differ
            if let Some(next) = runs.get(i + 1)
                && next.memory() != b.memory()
            {
                if let Some(s) = b.download(phase) {
                    let s = s.in_set(Stage::Download(phase));
                    schedule.add_systems(s.distributive_run_if(no_failure));
                }
                if let Some(s) = next.upload(phase) {
                    let s = s.in_set(Stage::Upload(Phase::ALL[i + 1]));
                    schedule.add_systems(s.distributive_run_if(no_failure));
                }
            }
        }
        if used.iter().any(|b| b.uses_element_entities()) {
            let _s = tracing::info_span!("spawn_elements").entered();
            let mesh = world.resource::<MeshRes>().0.clone();
            // Elements are entities; all components exist from the start so
            // the archetype never changes and iteration is in element order.
            world.spawn_batch((0..mesh.elements.len()).map(|e| {
                (
                    ElementIndex(e as u32),
                    Nodes(mesh.elements[e]),
                    ElementCoords(mesh.coords(e)),
                    Quadrature::default(),
                    Slots::default(),
                )
            }));
        }
        world.insert_resource(Resolved(std::array::from_fn(|i| runs[i].name())));
        world.insert_resource(Notes(notes));
        // the mesh's warnings first, then any a backend gave in `prepare`
        if let Some(w) = world.remove_resource::<Warnings>() {
            warnings.extend(w.0);
        }
        world.insert_resource(Warnings(warnings));
        Ok(Self {
            world,
            schedule,
            backends: used,
        })
    }

    /// Per-element outputs in element order: `(vel, abs_vel, pressure)`.
    pub fn element_fields(&self) -> (Vec<[f64; 2]>, Vec<f64>, Vec<f64>) {
        let out = self.world.resource::<ElementOutputs>();
        (out.vel.clone(), out.abs_vel.clone(), out.pressure.clone())
    }

    /// [`Pipeline::element_fields`], moving the arrays out instead of
    /// copying them (after a run, once).
    pub fn take_element_fields(&mut self) -> (Vec<[f64; 2]>, Vec<f64>, Vec<f64>) {
        let o = std::mem::take(&mut *self.world.resource_mut::<ElementOutputs>());
        (o.vel, o.abs_vel, o.pressure)
    }

    /// What each backend that ran reports, by name, in order of first use.
    pub fn reports(&self) -> Vec<(&'static str, BackendReport)> {
        self.backends
            .iter()
            .map(|b| (b.name(), b.report(&self.world)))
            .collect()
    }

    /// Runs the schedule once. Returns the first failure raised by a phase.
    pub fn run(&mut self) -> Result<(), PipelineError> {
        self.run_through(Phase::Post)
    }

    /// Runs the phases up to `last` (the assembled and bounded system
    /// without a solve: `run_through(Phase::Boundary)`; its hand-over to
    /// the next phase included). Returns the first failure raised.
    pub fn run_through(&mut self, last: Phase) -> Result<(), PipelineError> {
        self.run_phases(Phase::Quadrature, last)
    }

    /// Runs the phases `first..=last` (with their hand-overs): a run in
    /// steps, e.g. `run_through(Phase::Boundary)`, a look at the bounded
    /// system (its size, the warnings), then `run_phases(Phase::Solve,
    /// Phase::Post)`. The phases before `first` must have run. Returns the
    /// first failure raised.
    pub fn run_phases(&mut self, first: Phase, last: Phase) -> Result<(), PipelineError> {
        self.world.insert_resource(FirstPhase(first));
        self.world.insert_resource(LastPhase(last));
        self.schedule.run(&mut self.world);
        match self.world.resource_mut::<Failure>().0.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
