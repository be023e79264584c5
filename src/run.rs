//! Running a plan: loading the mesh, building and running the pipeline,
//! and the run's results (results file, VTU and PNG outputs, summary).

use crate::error::AppError;
use crate::generate;
use crate::io;
use crate::io::h5::Attr;
use crate::scene::{MeshSource, Plan};
use bevy_ecs::world::World;
use quadflow_systems::components::{
    BackendReport, BoundaryReport, LinearSystem, Notes, Physics, ProgressHook, Solution, Warnings,
};
use quadflow_systems::mesh::Mesh;
use quadflow_systems::pipeline::{Phase, PhaseTimes, Pipeline, Resolved};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

mod group;
mod output;

pub use group::{Blocks, agreed, process_group, run_group};
pub use output::{VTU_MAX_NODES, check_outputs};

/// A loaded, validated mesh and where it came from.
#[derive(Debug, Clone)]
pub struct LoadedMesh {
    /// The mesh.
    pub mesh: Arc<Mesh>,
    /// "file X" or "generated venturi, N nodes".
    pub origin: String,
    /// The file read, as an absolute path (`None` for a generated mesh):
    /// what results files record, so that `quadflow plot` finds the mesh
    /// from any directory.
    pub path: Option<PathBuf>,
    /// Seconds to read (or generate) and validate.
    pub seconds: f64,
    /// When loading began (the start of every end-to-end figure).
    pub started: Instant,
}

/// Loads (or generates) and validates the plan's mesh.
pub fn load_mesh(plan: &Plan) -> Result<LoadedMesh, AppError> {
    let t0 = Instant::now();
    let _s = tracing::info_span!("load").entered();
    let (raw, sets, origin, path) = match plan.mesh.clone() {
        MeshSource::File(p) => {
            let (raw, sets) = io::read_any_mesh(&p)?;
            let abs = std::fs::canonicalize(&p)
                .or_else(|_| std::path::absolute(&p))
                .unwrap_or_else(|_| p.clone());
            (raw, sets, p.display().to_string(), Some(abs))
        }
        MeshSource::Generate(g, n) => (
            generate::generate(g, n)?,
            Default::default(),
            format!("generated {} (~{n} nodes)", g.name()),
            None,
        ),
    };
    let mut loaded = LoadedMesh::from_arrays(plan, raw.x, raw.y, &raw.quad8, sets, origin, t0)?;
    loaded.path = path;
    Ok(loaded)
}

impl LoadedMesh {
    /// A mesh given as arrays (node coordinates and 0-based Quad-8
    /// connectivity, as a file holds them), validated for `plan` the way
    /// [`load_mesh`] validates a file's: clockwise elements renumbered or
    /// refused by the plan's orientation policy, the Jacobian check on all
    /// cores unless every backend of the plan is single-threaded. `origin`
    /// names the mesh in messages and results; `started` is when loading
    /// began (the load time runs from it). The Python package builds its
    /// meshes from NumPy arrays with this. Its `path` is `None` (no file;
    /// [`load_mesh`] sets it for a mesh file).
    ///
    /// # Errors
    ///
    /// [`AppError::Mesh`] naming `origin` and what is wrong (lengths,
    /// indices out of range, a repeated node, NaN coordinates, a degenerate
    /// element).
    pub fn from_arrays(
        plan: &Plan,
        x: Vec<f64>,
        y: Vec<f64>,
        quad8: &[[i64; 8]],
        node_sets: BTreeMap<String, Vec<u32>>,
        origin: String,
        started: Instant,
    ) -> Result<Self, AppError> {
        // Validation checks every element's Jacobian: on all cores unless
        // every backend of the plan is single-threaded (so that serial
        // timings stay single-threaded).
        let parallel = plan.planned_backends().iter().any(|b| !b.single_threaded());
        let mut mesh =
            Mesh::new_with(x, y, quad8, plan.orientation, parallel).map_err(|source| {
                AppError::Mesh {
                    origin: origin.clone(),
                    source,
                }
            })?;
        mesh.node_sets = node_sets;
        Ok(LoadedMesh {
            mesh: Arc::new(mesh),
            origin,
            path: None,
            seconds: started.elapsed().as_secs_f64(),
            started,
        })
    }
}

/// The assembled system of a mesh, without a solve ([`assemble_on`]).
#[derive(Debug, Clone)]
pub struct Assembled {
    /// `K` (symmetric CSR, upper triangle) and `f`, with the boundary
    /// conditions applied when asked for.
    pub system: LinearSystem,
    /// Seconds per phase, in [`Phase::ALL`] order (zero for the phases
    /// that did not run).
    pub phase_seconds: [f64; 5],
    /// Backend that ran each phase (of those that ran).
    pub backends: [&'static str; 5],
    /// Boundary statistics (zero without the boundary phase).
    pub boundary: BoundaryReport,
    /// Warnings and notes (renumbered elements, fallbacks).
    pub notes: Vec<String>,
}

/// Runs the plan's quadrature and assembly phases on a loaded mesh, and its
/// boundary phase too when `boundary`: the system `K u = f` the solve phase
/// would be given (before the solver's equilibration), brought to the host
/// whichever backend assembled it.
///
/// # Errors
///
/// The pipeline's: a backend that cannot start, a boundary that selects
/// nothing, a pattern too large for 32-bit indices.
pub fn assemble_on(
    plan: &Plan,
    loaded: &LoadedMesh,
    boundary: bool,
) -> Result<Assembled, AppError> {
    let last = if boundary {
        Phase::Boundary
    } else {
        Phase::Assembly
    };
    // The phase after the last runs on the fallback (host) backend, so that
    // a device backend hands its system over to the host's resources.
    let mut phases = plan.phases.clone();
    for p in Phase::ALL.into_iter().filter(|p| p.index() > last.index()) {
        phases.set(p, plan.registry.fallback());
    }
    let mut p = Pipeline::new(
        loaded.mesh.clone(),
        plan.config.clone(),
        &plan.registry,
        &phases,
    )?;
    p.run_through(last)?;
    let w = &mut p.world;
    let system = std::mem::take(&mut *w.resource_mut::<LinearSystem>());
    let mut backends = w.resource::<Resolved>().0;
    for p in Phase::ALL.into_iter().filter(|p| p.index() > last.index()) {
        backends[p.index()] = "-";
    }
    Ok(Assembled {
        system,
        phase_seconds: w.resource::<PhaseTimes>().seconds,
        backends,
        boundary: w.resource::<BoundaryReport>().clone(),
        notes: w.resource::<Notes>().0.clone(),
    })
}

/// What a front end hears while a run goes on; every method does nothing
/// unless overridden.
pub trait RunEvents {
    /// A warning, as soon as it is known: elements renumbered (before the
    /// first phase), mesh components nothing anchors (after the boundary
    /// phase), always before the solve starts.
    fn warning(&mut self, _text: &str) {}
    /// The system is assembled and bounded; the solve starts next.
    fn bounded(&mut self, _header: &RunHeader) {}
}

/// Hears nothing.
pub struct Silent;

impl RunEvents for Silent {}

/// What is known of a run once its system is assembled and bounded: the
/// first lines of its summary.
#[derive(Debug, Clone)]
pub struct RunHeader {
    /// Where the mesh came from.
    pub origin: String,
    /// Nodes.
    pub nodes: usize,
    /// Elements.
    pub elements: usize,
    /// Non-zeros of the assembled matrix.
    pub nnz: usize,
    /// Boundary statistics.
    pub boundary: BoundaryReport,
    /// Notes (fallbacks).
    pub notes: Vec<String>,
}

impl RunHeader {
    fn of(world: &World, loaded: &LoadedMesh) -> Self {
        Self {
            origin: loaded.origin.clone(),
            nodes: loaded.mesh.nodes(),
            elements: loaded.mesh.elements.len(),
            nnz: world.resource::<LinearSystem>().nnz,
            boundary: world.resource::<BoundaryReport>().clone(),
            notes: world.resource::<Notes>().0.clone(),
        }
    }

    /// The `mesh`, `boundary` and `note` lines of the run summary.
    pub fn text(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(s, "mesh      {}", self.origin);
        let _ = writeln!(
            s,
            "          {} nodes, {} elements, {} unused nodes, matrix nnz {}",
            self.nodes, self.elements, self.boundary.unused_nodes, self.nnz
        );
        let b = &self.boundary;
        let _ = write!(
            s,
            "boundary  {} Robin edges, {} Dirichlet nodes",
            b.robin_edges, b.dirichlet_nodes
        );
        match b.floating.len() {
            0 => {}
            1 => s.push_str(", 1 floating mesh component (see the warning)"),
            n => {
                let _ = write!(s, ", {n} floating mesh components (see the warnings)");
            }
        }
        s.push('\n');
        for n in &self.notes {
            let _ = writeln!(s, "note      {n}");
        }
        s
    }
}

/// Everything a run produced.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// The mesh that was solved.
    pub mesh: Arc<Mesh>,
    /// Where it came from.
    pub origin: String,
    /// The mesh file, absolute (`None` for a generated mesh).
    pub mesh_path: Option<PathBuf>,
    /// Seconds to load the mesh.
    pub load_seconds: f64,
    /// Seconds per phase, in [`Phase::ALL`] order.
    pub phase_seconds: [f64; 5],
    /// Load to the end of post-processing.
    pub total_seconds: f64,
    /// When loading began: `started.elapsed()` after [`RunResult::write`]
    /// is the load-to-written-results time (the bench's `total + write`).
    pub started: Instant,
    /// Backend that ran each phase.
    pub backends: [&'static str; 5],
    /// Potential, solver statistics, true residual.
    pub solution: Solution,
    /// Per-element velocity.
    pub vel: Vec<[f64; 2]>,
    /// Per-element speed.
    pub abs_vel: Vec<f64>,
    /// Per-element pressure.
    pub pressure: Vec<f64>,
    /// Non-zeros of the assembled matrix.
    pub nnz: usize,
    /// Boundary statistics.
    pub boundary: BoundaryReport,
    /// Notes (fallbacks).
    pub notes: Vec<String>,
    /// Warnings (renumbered elements, floating mesh components).
    pub warnings: Vec<String>,
    /// Solver name.
    pub solver: String,
    /// The solver's relative tolerance.
    pub rtol: f64,
    /// The scene as TOML (stored in the results file).
    pub scene_toml: String,
    /// What each backend that ran reports, in order of first use.
    pub reports: Vec<(String, BackendReport)>,
    /// This process's share of a run whose results stay distributed over
    /// a process group (the `mpi` backend reading in blocks): `mesh` is
    /// then empty and `solution.u`, `vel`, `abs_vel` and `pressure` hold
    /// this process's blocks; the whole mesh's sizes are in [`Blocks`]
    /// (and [`RunResult::nodes`], [`RunResult::elements`]). `None` for a
    /// result that holds the whole mesh and fields.
    pub blocks: Option<Blocks>,
}

/// Runs a plan on an already loaded mesh (in this process).
pub fn run_on(
    plan: &Plan,
    loaded: &LoadedMesh,
    progress: Option<ProgressHook>,
) -> Result<RunResult, AppError> {
    run_on_with(plan, loaded, progress, &mut Silent)
}

/// [`run_on`], telling `events` of the warnings as they arise and of the
/// bounded system before the solve starts.
pub fn run_on_with(
    plan: &Plan,
    loaded: &LoadedMesh,
    progress: Option<ProgressHook>,
    events: &mut dyn RunEvents,
) -> Result<RunResult, AppError> {
    let t0 = Instant::now();
    let mut p = Pipeline::new(
        loaded.mesh.clone(),
        plan.config.clone(),
        &plan.registry,
        &plan.phases,
    )?;
    if let Some(h) = progress {
        p.world.insert_resource(h);
    }
    let mut told = 0;
    let mut tell = |world: &World, events: &mut dyn RunEvents| {
        let w = &world.resource::<Warnings>().0;
        for text in &w[told..] {
            events.warning(text);
        }
        told = w.len();
    };
    tell(&p.world, events);
    let bounded = p.run_through(Phase::Boundary);
    tell(&p.world, events);
    bounded?;
    events.bounded(&RunHeader::of(&p.world, loaded));
    p.run_phases(Phase::Solve, Phase::Post)?;
    result_of(&mut p, plan, loaded, t0)
}

/// The results a pipeline left in its world (moved out); an error, and
/// nothing to write, when a field is not finite.
fn result_of(
    p: &mut Pipeline,
    plan: &Plan,
    loaded: &LoadedMesh,
    t0: Instant,
) -> Result<RunResult, AppError> {
    let (vel, abs_vel, pressure) = p.take_element_fields();
    let reports = p
        .reports()
        .into_iter()
        .map(|(n, r)| (n.to_string(), r))
        .collect();
    let w = &mut p.world;
    let solution = std::mem::take(&mut *w.resource_mut::<Solution>());
    if let Some(what) =
        non_finite_field(&solution.u, &vel, &abs_vel, &pressure, &plan.config.physics)
    {
        return Err(AppError::Other(format!(
            "{}: {what}; nothing was written",
            loaded.origin
        )));
    }
    let nnz = w.resource::<LinearSystem>().nnz;
    Ok(RunResult {
        mesh: loaded.mesh.clone(),
        origin: loaded.origin.clone(),
        mesh_path: loaded.path.clone(),
        load_seconds: loaded.seconds,
        phase_seconds: w.resource::<PhaseTimes>().seconds,
        total_seconds: loaded.seconds + t0.elapsed().as_secs_f64(),
        started: loaded.started,
        backends: w.resource::<Resolved>().0,
        solution,
        vel,
        abs_vel,
        pressure,
        nnz,
        boundary: w.resource::<BoundaryReport>().clone(),
        notes: w.resource::<Notes>().0.clone(),
        warnings: w.resource::<Warnings>().0.clone(),
        solver: plan.config.solver.method.name().to_string(),
        rtol: plan.rtol(),
        scene_toml: plan.scene_toml.clone(),
        reports,
        blocks: None,
    })
}

/// The first field value that is not a finite number, said with what
/// made it so and which scene keys to change; `None` when all are finite.
/// (The scene's values are finite, but a product of large ones, such as
/// `rho / 2 |v|^2`, can leave the range of `f64`.)
pub fn non_finite_field(
    u: &[f64],
    vel: &[[f64; 2]],
    abs_vel: &[f64],
    pressure: &[f64],
    physics: &Physics,
) -> Option<String> {
    const SCALE: &str = "the solution leaves the range of f64 numbers: scale down \
                         [physics] source, the Robin gamma or the Dirichlet values";
    if let Some((i, v)) = u.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Some(format!("the potential u is {v} at node {i}: {SCALE}"));
    }
    if let Some((e, v)) = vel
        .iter()
        .enumerate()
        .find(|(_, v)| !(v[0].is_finite() && v[1].is_finite()))
    {
        return Some(format!(
            "the velocity is ({}, {}) at element {e}: {SCALE}",
            v[0], v[1]
        ));
    }
    if let Some((e, v)) = abs_vel.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Some(format!("the speed is {v} at element {e}: {SCALE}"));
    }
    if let Some((e, v)) = pressure.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Some(format!(
            "the pressure is {v} at element {e}: p0 - rho/2 |v|^2 with p0 = {}, rho = {} \
             and |v| = {} leaves the range of f64 numbers; scale down [physics] rho or p0",
            num(physics.p0),
            num(physics.rho),
            num(abs_vel.get(e).copied().unwrap_or(f64::NAN))
        ));
    }
    None
}

/// `x` as written in a scene: plain, or with an exponent when large or
/// small.
fn num(x: f64) -> String {
    if x != 0.0 && x.is_finite() && !(1e-3..1e6).contains(&x.abs()) {
        format!("{x:e}")
    } else {
        format!("{x}")
    }
}

/// Loads the mesh and runs the plan (in this process; a plan whose
/// backend spans processes runs as its group, which must then be of one
/// process: see [`run_group`]).
pub fn run(plan: &Plan, progress: Option<ProgressHook>) -> Result<RunResult, AppError> {
    run_with(plan, progress, &mut Silent)
}

/// [`run`], telling `events` what happens ([`run_on_with`]; a group of one
/// process tells nothing before its results).
pub fn run_with(
    plan: &Plan,
    progress: Option<ProgressHook>,
    events: &mut dyn RunEvents,
) -> Result<RunResult, AppError> {
    if let Some(g) = process_group(plan)? {
        if g.size() > 1 {
            return Err(AppError::Other(format!(
                "this run spans {} processes; only its lead has the results (run::run_group)",
                g.size()
            )));
        }
        // the whole result in this process (not its blocks)
        return group::run_group_with(plan, g.as_ref(), progress, false)
            .map(|r| r.expect("a group of one process is its lead"));
    }
    // slow start-ups (a device context) overlap reading the mesh
    for b in plan.planned_backends() {
        b.prewarm();
    }
    let loaded = load_mesh(plan)?;
    check_outputs(plan, loaded.mesh.nodes())?;
    run_on_with(plan, &loaded, progress, events)
}

impl RunResult {
    /// Nodes of the whole mesh.
    pub fn nodes(&self) -> usize {
        self.blocks.as_ref().map_or(self.mesh.nodes(), |b| b.nodes)
    }

    /// Elements of the whole mesh.
    pub fn elements(&self) -> usize {
        self.blocks
            .as_ref()
            .map_or(self.mesh.elements.len(), |b| b.elements)
    }

    /// Elements renumbered counter-clockwise.
    pub fn flipped(&self) -> usize {
        self.blocks
            .as_ref()
            .map_or(self.mesh.flipped, |b| b.flipped)
    }

    /// The least and the largest `u` of the whole mesh.
    pub fn u_range(&self) -> (f64, f64) {
        if let Some(b) = &self.blocks {
            return (b.u_range[0], b.u_range[1]);
        }
        self.solution
            .u
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
                (a.min(v), b.max(v))
            })
    }

    /// The backend label: one name, or `phase=name` pairs when mixed.
    pub fn backend_label(&self) -> String {
        if self.backends.iter().all(|b| *b == self.backends[0]) {
            self.backends[0].to_string()
        } else {
            Phase::ALL
                .iter()
                .map(|p| format!("{}={}", p.name(), self.backends[p.index()]))
                .collect::<Vec<_>>()
                .join(",")
        }
    }

    /// Root attributes of the results file (the fixed names of
    /// `docs/numerics.md` "Outputs", then extras and the backends' own).
    pub fn attributes(&self) -> Vec<(String, Attr)> {
        let s = &self.solution;
        let mut a = vec![
            ("iterations".into(), Attr::Int(s.stats.iterations as i64)),
            ("converged".into(), Attr::Int(s.stats.converged as i64)),
            (
                "true_relative_residual".into(),
                Attr::Float(s.true_residual),
            ),
            (
                "equilibrated_relative_residual".into(),
                Attr::Float(s.equilibrated_residual),
            ),
            ("matrix_nnz".into(), Attr::Int(self.nnz as i64)),
            ("nodes".into(), Attr::Int(self.nodes() as i64)),
            ("elements".into(), Attr::Int(self.elements() as i64)),
            ("backend".into(), Attr::Str(self.backend_label())),
            ("solver".into(), Attr::Str(self.solver.clone())),
            ("time_load".into(), Attr::Float(self.load_seconds)),
        ];
        for p in Phase::ALL {
            a.push((
                format!("time_{}", p.name()),
                Attr::Float(self.phase_seconds[p.index()]),
            ));
        }
        a.push(("time_total".into(), Attr::Float(self.total_seconds)));
        a.push(("rtol".into(), Attr::Float(self.rtol)));
        a.push((
            "recurrence_residual".into(),
            Attr::Float(s.stats.recurrence_residual),
        ));
        a.push((
            "residual_replacements".into(),
            Attr::Int(s.stats.replacements as i64),
        ));
        if let Some(i) = s.stats.first_check_iteration {
            a.push(("first_check_iteration".into(), Attr::Int(i as i64)));
        }
        a.push((
            "solver_setup_seconds".into(),
            Attr::Float(s.stats.setup_seconds),
        ));
        a.push((
            "solver_solve_seconds".into(),
            Attr::Float(s.stats.solve_seconds),
        ));
        if s.stats.levels > 0 {
            a.push(("amg_levels".into(), Attr::Int(s.stats.levels as i64)));
            a.push((
                "amg_operator_complexity".into(),
                Attr::Float(s.stats.operator_complexity),
            ));
        }
        if s.stats.factor_nnz > 0 {
            a.push((
                "cholesky_factor_nnz".into(),
                Attr::Int(s.stats.factor_nnz as i64),
            ));
        }
        a.push((
            "renumbered_elements".into(),
            Attr::Int(self.flipped() as i64),
        ));
        // the absolute path of a mesh file, so that `quadflow plot` finds
        // it from any directory; a generated mesh's description
        let source = match &self.mesh_path {
            Some(p) => p.display().to_string(),
            None => self.origin.clone(),
        };
        a.push(("mesh_source".into(), Attr::Str(source)));
        a.push(("scene".into(), Attr::Str(self.scene_toml.clone())));
        a.push((
            "quadflow_version".into(),
            Attr::Str(env!("CARGO_PKG_VERSION").into()),
        ));
        for (_, r) in &self.reports {
            a.extend(r.attributes.iter().cloned());
        }
        a
    }

    /// The integer attribute `name` a backend reported, if any.
    pub fn int_attribute(&self, name: &str) -> Option<i64> {
        self.reports
            .iter()
            .find_map(|(_, r)| match r.attribute(name) {
                Some(Attr::Int(v)) => Some(*v),
                _ => None,
            })
    }

    /// The number attribute `name` a backend reported, if any.
    pub fn float_attribute(&self, name: &str) -> Option<f64> {
        self.reports
            .iter()
            .find_map(|(_, r)| match r.attribute(name) {
                Some(Attr::Float(v)) => Some(*v),
                _ => None,
            })
    }

    /// The first lines of the summary ([`RunHeader`]).
    pub fn header(&self) -> RunHeader {
        RunHeader {
            origin: self.origin.clone(),
            nodes: self.nodes(),
            elements: self.elements(),
            nnz: self.nnz,
            boundary: self.boundary.clone(),
            notes: self.notes.clone(),
        }
    }

    /// A human-readable report of the run: [`RunResult::header`]'s lines,
    /// then [`RunResult::outcome`]'s.
    pub fn report(&self, out: Option<&PathBuf>) -> String {
        self.header().text() + &self.outcome(out)
    }

    /// The lines of the summary after the header: phase times, solver,
    /// range of `u`, the backends' lines, the results file.
    pub fn outcome(&self, out: Option<&PathBuf>) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(s, "phase          backend      seconds");
        let _ = writeln!(s, "  load         -            {:9.4}", self.load_seconds);
        for p in Phase::ALL {
            let _ = writeln!(
                s,
                "  {:<12} {:<12} {:9.4}",
                p.name(),
                self.backends[p.index()],
                self.phase_seconds[p.index()]
            );
        }
        let _ = writeln!(s, "  total                     {:9.4}", self.total_seconds);
        let st = &self.solution.stats;
        let (eq, raw) = (
            self.solution.equilibrated_residual,
            self.solution.true_residual,
        );
        let _ = writeln!(
            s,
            "solver    {}: {} iterations, {} (rtol {:e}), relative residual {eq:.3e}",
            self.solver,
            st.iterations,
            if st.converged {
                "converged"
            } else {
                "NOT converged"
            },
            self.rtol,
        );
        let _ = writeln!(
            s,
            "          (of the equilibrated system; raw ||f - K u|| / ||f|| {raw:.3e}{})",
            if raw > 10.0 * eq {
                ", penalty rows dominate"
            } else {
                ""
            }
        );
        if st.replacements > 0 {
            let extra = st
                .first_check_iteration
                .map(|i| format!(", {} iterations after the first check", st.iterations - i))
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "          the recurrence met rtol before the true residual did: {} residual replacement{}{extra}",
                st.replacements,
                if st.replacements == 1 { "" } else { "s" },
            );
        }
        if st.iterations > 0 && st.solve_seconds > 0.0 {
            let per = st.solve_seconds / st.iterations as f64;
            let _ = write!(
                s,
                "          {} CG rows ({} decoupled), setup {:.3} s, {:.3} ms/iteration",
                st.cg_rows,
                st.decoupled_rows,
                st.setup_seconds,
                per * 1e3,
            );
            // counted only for the Jacobi-CG iteration
            if st.bytes_per_iteration > 0 {
                let _ = write!(
                    s,
                    ", {:.1} MB/iteration -> {:.1} GB/s",
                    st.bytes_per_iteration as f64 / 1e6,
                    st.bytes_per_iteration as f64 / per / 1e9
                );
            }
            s.push('\n');
        }
        if st.levels > 0 {
            let _ = writeln!(
                s,
                "          AMG {} levels, operator complexity {:.3}; setup {:.4} s, CG {:.4} s",
                st.levels, st.operator_complexity, st.setup_seconds, st.solve_seconds
            );
        }
        if st.factor_nnz > 0 {
            let _ = writeln!(
                s,
                "          factor nnz {}, {} refinement steps; ordering + factor {:.4} s, solve {:.4} s",
                st.factor_nnz, st.refinement_steps, st.setup_seconds, st.solve_seconds
            );
        }
        let (lo, hi) = self.u_range();
        let _ = writeln!(s, "u         min {lo:.9}, max {hi:.9}");
        for (name, r) in &self.reports {
            for line in &r.summary {
                let _ = writeln!(s, "{name:<10}{line}");
            }
        }
        if let Some(p) = out {
            let _ = writeln!(s, "results   {}", p.display());
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::{Geometry, generate};
    use crate::scene::Scene;

    fn plan() -> Plan {
        Scene::default_scene().plan().unwrap()
    }

    fn channel(plan: &Plan) -> LoadedMesh {
        let raw = generate(Geometry::StraightChannel, 300).unwrap();
        LoadedMesh::from_arrays(
            plan,
            raw.x,
            raw.y,
            &raw.quad8,
            BTreeMap::new(),
            "arrays".into(),
            Instant::now(),
        )
        .unwrap()
    }

    #[test]
    fn assembled_system_is_the_one_the_solve_solves() {
        let plan = plan();
        let loaded = channel(&plan);
        let a = assemble_on(&plan, &loaded, true).unwrap();
        let r = run_on(&plan, &loaded, None).unwrap();
        assert_eq!(a.system.nnz, r.nnz);
        assert_eq!(a.backends[Phase::Solve.index()], "-");
        assert!(a.boundary.dirichlet_nodes > 0 && a.boundary.robin_edges > 0);
        let ku = a.system.k.mul(&r.solution.u);
        let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
        let res: Vec<f64> = a.system.f.iter().zip(&ku).map(|(f, k)| f - k).collect();
        let rel = norm(&res) / norm(&a.system.f);
        assert!(rel < 1e-7, "||f - K u|| / ||f|| = {rel}");
        assert!((rel - r.solution.true_residual).abs() <= 1e-3 * rel);
    }

    #[test]
    fn assembly_alone_has_no_boundary_terms() {
        let plan = plan();
        let loaded = channel(&plan);
        let a = assemble_on(&plan, &loaded, false).unwrap();
        assert_eq!(a.boundary, BoundaryReport::default());
        assert_eq!(a.backends[Phase::Boundary.index()], "-");
        // no load: the right-hand side is zero
        assert!(a.system.f.iter().all(|&v| v == 0.0));
        // constants are in the kernel of the Laplacian stiffness matrix
        let k = a.system.k.mul(&vec![1.0; loaded.mesh.nodes()]);
        let scale = a
            .system
            .k
            .diagonal()
            .iter()
            .fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(k.iter().all(|v| v.abs() <= 1e-12 * scale), "K 1 != 0");
    }

    #[test]
    fn arrays_are_validated_naming_their_origin() {
        let plan = plan();
        let raw = generate(Geometry::StraightChannel, 300).unwrap();
        let mut quad8 = raw.quad8.clone();
        quad8[3][5] = raw.x.len() as i64 + 7;
        let e = LoadedMesh::from_arrays(
            &plan,
            raw.x,
            raw.y,
            &quad8,
            BTreeMap::new(),
            "my arrays".into(),
            Instant::now(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("my arrays: "), "{e}");
        assert!(e.contains("element 3"), "{e}");
    }

    #[test]
    fn non_finite_fields_are_named_with_their_cause() {
        let ph = Physics {
            rho: 1e308,
            ..Physics::default()
        };
        let ok = non_finite_field(&[1.0, 2.0], &[[3.0, 4.0]], &[5.0], &[6.0], &ph);
        assert_eq!(ok, None);
        let p = non_finite_field(&[1.0], &[[3.0, 4.0]], &[5.0], &[f64::NEG_INFINITY], &ph).unwrap();
        assert!(
            p.contains("pressure is -inf at element 0")
                && p.contains("p0 = 101328.8281, rho = 1e308")
                && p.contains("|v| = 5")
                && p.contains("[physics] rho"),
            "{p}"
        );
        let u = non_finite_field(&[1.0, f64::NAN], &[[3.0, 4.0]], &[5.0], &[6.0], &ph).unwrap();
        assert!(u.contains("potential u is NaN at node 1"), "{u}");
        let v = non_finite_field(&[1.0], &[[f64::INFINITY, 0.0]], &[5.0], &[6.0], &ph).unwrap();
        assert!(v.contains("velocity is (inf, 0) at element 0"), "{v}");
        let a = non_finite_field(&[1.0], &[[1.0, 0.0]], &[f64::INFINITY], &[6.0], &ph).unwrap();
        assert!(a.contains("speed is inf at element 0"), "{a}");
    }
}
