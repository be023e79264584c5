//! Phases, backends and the pipeline that runs them.
//!
//! The five phases are system sets of one [`Schedule`], chained in order.
//! A [`Backend`] is a plugin: it says which phases it implements and adds
//! its systems into those sets. A [`PhasePlan`] names a backend per phase;
//! a phase whose backend does not implement it falls back to `serial`
//! (libCEED's delegation), and the fallback is noted.

use crate::components::*;
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

/// Any failure of a run, with a message for the user.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Bad mesh.
    #[error(transparent)]
    Mesh(#[from] crate::mesh::MeshError),
    /// Bad boundary selection.
    #[error(transparent)]
    Boundary(#[from] crate::boundary::BoundaryError),
    /// The solve failed.
    #[error(transparent)]
    Solve(#[from] crate::solver::SolveError),
    /// The pattern does not fit the index type.
    #[error(transparent)]
    Pattern(#[from] crate::sparse::PatternTooLarge),
    /// The solver hit its iteration cap.
    #[error(
        "the solver did not converge: {iterations} iterations reached the cap with relative residual {residual:.3e} (target {rtol:e}); raise solver.max_iterations (--max-iter) or set solver.allow_unconverged = true to keep the result"
    )]
    NotConverged {
        /// iterations done
        iterations: usize,
        /// residual reached
        residual: f64,
        /// target
        rtol: f64,
    },
    /// A backend could not run (no GPU, bad setting, ...).
    #[error("backend {backend}: {message}")]
    Backend {
        /// backend name
        backend: String,
        /// what went wrong
        message: String,
    },
    /// An unknown backend name.
    #[error("unknown backend \"{0}\" (available: {1})")]
    UnknownBackend(String, String),
}

/// The systems a backend contributes to one phase.
pub type PhaseSystems = bevy_ecs::schedule::ScheduleConfigs<bevy_ecs::system::ScheduleSystem>;

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
    /// Whether its systems read or write the per-element entities
    /// (`Nodes`, `ElementCoords`, `Quadrature`, `Slots`, `Fields`). The
    /// pipeline spawns them only when a backend that runs a phase does;
    /// one that works from the mesh alone (the GPU backend) says `false`
    /// and so saves the spawn (about 630 bytes per element).
    fn uses_element_entities(&self) -> bool {
        true
    }
    /// Prepares the world before the schedule runs (resources, device
    /// contexts). Called once if the backend runs any phase.
    fn prepare(&self, _world: &mut World) -> Result<(), PipelineError> {
        Ok(())
    }
}

/// The backends known to a pipeline, by name.
#[derive(Default, Clone)]
pub struct Registry {
    backends: BTreeMap<&'static str, Arc<dyn Backend>>,
}

impl Registry {
    /// A registry with the serial backend only.
    pub fn with_serial() -> Self {
        let mut r = Self::default();
        r.register(crate::serial::Serial);
        r
    }

    /// Adds (or replaces) a backend.
    pub fn register(&mut self, b: impl Backend) -> &mut Self {
        self.backends.insert(b.name(), Arc::new(b));
        self
    }

    /// Looks a backend up.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Backend>> {
        self.backends.get(name)
    }

    /// Registered names, comma-separated (for messages).
    pub fn names(&self) -> String {
        self.backends.keys().copied().collect::<Vec<_>>().join(", ")
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

/// Sets that wrap each phase with its timer systems.
#[derive(SystemSet, Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Stage {
    Begin(Phase),
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
        if mesh.flipped > 0 {
            notes.push(format!(
                "warning: {} of {} elements were numbered clockwise and have been renumbered counter-clockwise",
                mesh.flipped,
                mesh.elements.len()
            ));
        }
        let spawn_mesh = mesh.clone();
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
        world.insert_resource(crate::common::ProgressHook::default());
        world.insert_resource(plan.clone());
        world.insert_non_send(PhaseSpan::default());

        let serial = registry
            .get("serial")
            .cloned()
            .ok_or_else(|| PipelineError::UnknownBackend("serial".into(), registry.names()))?;
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
        let mut resolved = ["serial"; 5];
        let mut prepared: Vec<&'static str> = Vec::new();
        let mut entities = false;
        for phase in Phase::ALL {
            let wanted = plan.get(phase);
            let backend = registry.get(wanted).ok_or_else(|| {
                PipelineError::UnknownBackend(wanted.to_string(), registry.names())
            })?;
            let (backend, systems) = match backend.systems(phase) {
                Some(s) => (backend.clone(), s),
                None => {
                    notes.push(format!(
                        "backend {wanted} does not implement the {} phase; using serial",
                        phase.name()
                    ));
                    let s = serial
                        .systems(phase)
                        .expect("serial implements every phase");
                    (serial.clone(), s)
                }
            };
            resolved[phase.index()] = backend.name();
            entities |= backend.uses_element_entities();
            if !prepared.contains(&backend.name()) {
                backend.prepare(&mut world)?;
                prepared.push(backend.name());
            }
            schedule.configure_sets(
                (Stage::Begin(phase), phase, Stage::End(phase))
                    .chain()
                    .in_set(Stage::Outer(phase)),
            );
            schedule.add_systems(
                phase_begin(phase)
                    .in_set(Stage::Begin(phase))
                    .run_if(no_failure),
            );
            schedule.add_systems(phase_end(phase).in_set(Stage::End(phase)));
            schedule.add_systems(systems.in_set(phase).distributive_run_if(no_failure));
        }
        if entities {
            let _s = tracing::info_span!("spawn_elements").entered();
            let mesh = spawn_mesh;
            // Elements are entities; all components exist from the start so
            // the archetype never changes and iteration is in element order.
            world.spawn_batch((0..mesh.elements.len()).map(|e| {
                (
                    ElementIndex(e as u32),
                    Nodes(mesh.elements[e]),
                    ElementCoords(mesh.coords(e)),
                    Quadrature::default(),
                    Slots::default(),
                    Fields::default(),
                )
            }));
        }
        world.insert_resource(Resolved(resolved));
        world.insert_resource(Notes(notes));
        Ok(Self { world, schedule })
    }

    /// Per-element outputs in element order: `(vel, abs_vel, pressure)`,
    /// from [`ElementOutputs`] when the post-processing wrote them there,
    /// else from the [`Fields`] components.
    pub fn element_fields(&mut self) -> (Vec<[f64; 2]>, Vec<f64>, Vec<f64>) {
        let out = self.world.resource::<ElementOutputs>();
        if out.is_set() {
            return (out.vel.clone(), out.abs_vel.clone(), out.pressure.clone());
        }
        self.component_fields()
    }

    /// [`Pipeline::element_fields`], moving the arrays out of
    /// [`ElementOutputs`] instead of copying them (after a run, once).
    pub fn take_element_fields(&mut self) -> (Vec<[f64; 2]>, Vec<f64>, Vec<f64>) {
        let mut out = self.world.resource_mut::<ElementOutputs>();
        if out.is_set() {
            let o = std::mem::take(&mut *out);
            return (o.vel, o.abs_vel, o.pressure);
        }
        self.component_fields()
    }

    fn component_fields(&mut self) -> (Vec<[f64; 2]>, Vec<f64>, Vec<f64>) {
        let mut rows: Vec<(u32, crate::element::ElementFields)> = self
            .world
            .query::<(&ElementIndex, &Fields)>()
            .iter(&self.world)
            .map(|(i, f)| (i.0, f.0))
            .collect();
        rows.sort_unstable_by_key(|r| r.0);
        (
            rows.iter().map(|r| r.1.vel).collect(),
            rows.iter().map(|r| r.1.abs_vel).collect(),
            rows.iter().map(|r| r.1.pressure).collect(),
        )
    }

    /// Runs the schedule once. Returns the first failure raised by a phase.
    pub fn run(&mut self) -> Result<(), PipelineError> {
        self.schedule.run(&mut self.world);
        match self.world.resource_mut::<Failure>().0.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Records a failure from inside a system.
pub fn fail(world_failure: &mut Failure, e: impl Into<PipelineError>) {
    if world_failure.0.is_none() {
        world_failure.0 = Some(e.into());
    }
}
