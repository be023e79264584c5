//! The pipeline end to end on small structured meshes: exactness on a
//! linear solution, the plug-in point (a custom backend overriding one
//! phase, fallback for the others), and failures that stop the run.

use bevy_ecs::prelude::*;
use quadflow_systems::boundary::{BoundaryConfig, DirichletPart, Selector, Side, Value};
use quadflow_systems::components::*;
use quadflow_systems::mesh::{Mesh, OrientationPolicy};
use quadflow_systems::pipeline::{Backend, Memory, Phase, PhaseSystems, PhaseTimes, Resolved};
use quadflow_systems::{PhasePlan, Pipeline, PipelineError, Registry, RunConfig};
use std::sync::Arc;

mod common;
use common::grid;

fn run(
    mesh: Mesh,
    config: RunConfig,
    registry: &Registry,
    plan: &PhasePlan,
) -> Result<Pipeline, PipelineError> {
    let mut p = Pipeline::new(Arc::new(mesh), config, registry, plan)?;
    p.run()?;
    Ok(p)
}

#[test]
fn straight_channel_is_exact() {
    let mesh = grid(12, 4, 3.0, 1.0);
    let (x, n) = (mesh.x.clone(), mesh.nodes());
    let used = mesh.used_nodes();
    let p = run(
        mesh,
        RunConfig::default(),
        &Registry::with_serial(),
        &PhasePlan::uniform("serial"),
    )
    .unwrap();
    let sol = p.world.resource::<Solution>();
    assert!(sol.stats.converged);
    for i in 0..n {
        let exact = if used[i] { 2.5 * (3.0 - x[i]) } else { 0.0 };
        assert!(
            (sol.u[i] - exact).abs() < 1e-8 * 7.5,
            "node {i}: {} vs {exact}",
            sol.u[i]
        );
    }
    let report = p.world.resource::<BoundaryReport>();
    assert_eq!(report.robin_edges, 4);
    assert_eq!(report.dirichlet_nodes, 9);
    assert_eq!(report.unused_nodes, 48);
    assert!(
        p.world
            .resource::<PhaseTimes>()
            .seconds
            .iter()
            .all(|t| *t >= 0.0)
    );
}

/// A backend that implements only post-processing, and marks its work.
struct Marker;

#[derive(Resource, Default)]
struct MarkerRan(usize);

fn marker_post(
    q: Query<&ElementIndex>,
    mesh: Res<MeshRes>,
    mut out: ResMut<ElementOutputs>,
    mut ran: ResMut<MarkerRan>,
) {
    let n = mesh.0.elements.len();
    out.pressure.resize(n, 0.0);
    out.vel.resize(n, [0.0; 2]);
    out.abs_vel.resize(n, 0.0);
    for e in &q {
        out.pressure[e.0 as usize] = -1.0;
        ran.0 += 1;
    }
}

impl Backend for Marker {
    fn name(&self) -> &'static str {
        "marker"
    }
    fn systems(&self, phase: Phase) -> Option<PhaseSystems> {
        (phase == Phase::Post).then(|| marker_post.into_configs())
    }
    fn prepare(&self, world: &mut World) -> Result<(), PipelineError> {
        world.init_resource::<MarkerRan>();
        Ok(())
    }
}

#[test]
fn an_extra_backend_overrides_one_phase_and_falls_back_elsewhere() {
    let mut reg = Registry::with_serial();
    reg.register(Marker);
    let p = run(
        grid(6, 2, 3.0, 1.0),
        RunConfig::default(),
        &reg,
        &PhasePlan::uniform("marker"),
    )
    .unwrap();
    assert_eq!(
        p.world.resource::<Resolved>().0,
        ["serial", "serial", "serial", "serial", "marker"]
    );
    assert_eq!(p.world.resource::<MarkerRan>().0, 12);
    let notes = &p.world.resource::<Notes>().0;
    assert_eq!(
        notes
            .iter()
            .filter(|n| n.contains("does not implement"))
            .count(),
        4
    );
    let (_, _, pressure) = p.element_fields();
    assert!(pressure.iter().all(|&v| v == -1.0));
    // the solve still ran on the serial backend
    assert!(p.world.resource::<Solution>().stats.converged);
}

/// A backend of its own memory ("a device") that runs assembly and
/// boundary (with the serial systems) and logs its hand-over systems.
struct Device;

#[derive(Resource, Default)]
struct Log(Vec<&'static str>);

fn logger(what: &'static str) -> impl FnMut(ResMut<Log>) {
    move |mut log| log.0.push(what)
}

impl Backend for Device {
    fn name(&self) -> &'static str {
        "device"
    }
    fn systems(&self, phase: Phase) -> Option<PhaseSystems> {
        use quadflow_systems::serial;
        match phase {
            Phase::Assembly => Some(
                (
                    logger("device assembly"),
                    serial::build_pattern,
                    serial::assemble,
                )
                    .chain()
                    .into_configs(),
            ),
            Phase::Boundary => Some(
                (logger("device boundary"), serial::apply_boundary)
                    .chain()
                    .into_configs(),
            ),
            _ => None,
        }
    }
    fn memory(&self) -> Memory {
        Memory::Device("test")
    }
    fn upload(&self, phase: Phase) -> Option<PhaseSystems> {
        Some(match phase {
            Phase::Quadrature => logger("upload quadrature").into_configs(),
            Phase::Assembly => logger("upload assembly").into_configs(),
            Phase::Boundary => logger("upload boundary").into_configs(),
            Phase::Solve => logger("upload solve").into_configs(),
            Phase::Post => logger("upload post").into_configs(),
        })
    }
    fn download(&self, phase: Phase) -> Option<PhaseSystems> {
        Some(match phase {
            Phase::Quadrature => logger("download quadrature").into_configs(),
            Phase::Assembly => logger("download assembly").into_configs(),
            Phase::Boundary => logger("download boundary").into_configs(),
            Phase::Solve => logger("download solve").into_configs(),
            Phase::Post => logger("download post").into_configs(),
        })
    }
    fn prepare(&self, world: &mut World) -> Result<(), PipelineError> {
        world.init_resource::<Log>();
        Ok(())
    }
}

#[test]
fn the_pipeline_hands_over_where_memories_differ_and_only_there() {
    let mut reg = Registry::with_serial();
    reg.register(Device);
    let mut plan = PhasePlan::uniform("serial");
    plan.set(Phase::Assembly, "device");
    plan.set(Phase::Boundary, "device");
    let p = run(grid(6, 2, 3.0, 1.0), RunConfig::default(), &reg, &plan).unwrap();
    assert_eq!(
        p.world.resource::<Log>().0,
        [
            "upload quadrature",
            "device assembly",
            "device boundary",
            "download boundary"
        ]
    );
    assert!(p.world.resource::<Solution>().stats.converged);
    // a device phase between host phases: up before it, down after it
    let mut plan = PhasePlan::uniform("serial");
    plan.set(Phase::Boundary, "device");
    let p = run(grid(6, 2, 3.0, 1.0), RunConfig::default(), &reg, &plan).unwrap();
    assert_eq!(
        p.world.resource::<Log>().0,
        ["upload assembly", "device boundary", "download boundary"]
    );
}

/// A backend that implements nothing and falls back to `marker`.
struct Delegate;

impl Backend for Delegate {
    fn name(&self) -> &'static str {
        "delegate"
    }
    fn systems(&self, _phase: Phase) -> Option<PhaseSystems> {
        None
    }
    fn fallback(&self) -> Option<&'static str> {
        Some("marker")
    }
}

#[test]
fn a_backend_names_its_own_fallback_and_the_registry_ends_the_chain() {
    let mut reg = Registry::with_serial();
    reg.register(Marker).register(Delegate);
    let p = run(
        grid(6, 2, 3.0, 1.0),
        RunConfig::default(),
        &reg,
        &PhasePlan::uniform("delegate"),
    )
    .unwrap();
    // post falls back to marker (the delegate's choice); marker has no
    // solve, so the rest falls through to the registry's fallback
    assert_eq!(
        p.world.resource::<Resolved>().0,
        ["serial", "serial", "serial", "serial", "marker"]
    );
}

#[test]
fn run_through_stops_after_the_named_phase() {
    let mut p = Pipeline::new(
        Arc::new(grid(6, 2, 3.0, 1.0)),
        RunConfig::default(),
        &Registry::with_serial(),
        &PhasePlan::uniform("serial"),
    )
    .unwrap();
    p.run_through(Phase::Boundary).unwrap();
    // the system is assembled and bounded, nothing solved
    let sys = p.world.resource::<LinearSystem>();
    assert!(sys.k.n > 0 && sys.f.iter().any(|v| *v != 0.0));
    assert_eq!(p.world.resource::<BoundaryReport>().robin_edges, 2);
    assert!(p.world.resource::<Solution>().u.is_empty());
    assert!(p.world.resource::<ElementOutputs>().abs_vel.is_empty());
}

/// A 6 x 2 channel on `[0, 3] x [0, 1]` and, apart from it, one element on
/// `[1, 2] x [3, 4]` that touches neither the inlet nor the outlet.
fn channel_and_island() -> Mesh {
    let (a, b) = (grid(6, 2, 3.0, 1.0), grid(1, 1, 1.0, 1.0));
    let off = a.nodes() as i64;
    let x: Vec<f64> =
        a.x.iter()
            .copied()
            .chain(b.x.iter().map(|v| v + 1.0))
            .collect();
    let y: Vec<f64> =
        a.y.iter()
            .copied()
            .chain(b.y.iter().map(|v| v + 3.0))
            .collect();
    let els: Vec<[i64; 8]> = a
        .elements
        .iter()
        .map(|e| e.map(i64::from))
        .chain(b.elements.iter().map(|e| e.map(|v| i64::from(v) + off)))
        .collect();
    Mesh::new(x, y, &els, OrientationPolicy::Refuse).unwrap()
}

#[test]
fn a_run_in_steps_warns_of_a_floating_component_before_the_solve() {
    let mut reg = Registry::with_serial();
    reg.register(Device);
    let mut plan = PhasePlan::uniform("serial");
    plan.set(Phase::Boundary, "device");
    let mut p = Pipeline::new(
        Arc::new(channel_and_island()),
        RunConfig::default(),
        &reg,
        &plan,
    )
    .unwrap();
    p.run_through(Phase::Boundary).unwrap();
    let w = p.world.resource::<Warnings>().0.clone();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("mesh component 2 of 2 (1 element from element 12")
            && w[0].contains("x in [1, 2], y in [3, 4]")
            && w[0].contains("components = \"refuse\""),
        "{}",
        w[0]
    );
    assert_eq!(p.world.resource::<BoundaryReport>().floating.len(), 1);
    assert!(p.world.resource::<Solution>().u.is_empty());
    p.run_phases(Phase::Solve, Phase::Post).unwrap();
    // each phase ran once, the hand-over too
    assert_eq!(
        p.world.resource::<Log>().0,
        ["upload assembly", "device boundary", "download boundary"]
    );
    assert_eq!(p.world.resource::<Warnings>().0.len(), 1);
    let sol = p.world.resource::<Solution>();
    assert!(sol.stats.converged);
    assert!(p.world.resource::<ElementOutputs>().is_set());
    assert!(
        p.world
            .resource::<PhaseTimes>()
            .seconds
            .iter()
            .all(|t| *t > 0.0)
    );
    // the island's potential is the arbitrary 0
    assert!(sol.u[sol.u.len() - 9..].iter().all(|v| *v == 0.0));

    // refused
    let mut cfg = RunConfig::default();
    cfg.boundaries.components = quadflow_systems::boundary::ComponentPolicy::Refuse;
    let e = run(
        channel_and_island(),
        cfg,
        &Registry::with_serial(),
        &PhasePlan::uniform("serial"),
    )
    .err()
    .expect("refused");
    assert!(e.to_string().contains("mesh component 2 of 2"), "{e}");
    // a connected mesh warns of nothing
    let p = run(
        grid(6, 2, 3.0, 1.0),
        RunConfig::default(),
        &Registry::with_serial(),
        &PhasePlan::uniform("serial"),
    )
    .unwrap();
    assert!(p.world.resource::<Warnings>().0.is_empty());
}

#[test]
fn a_progress_hook_that_says_stop_interrupts_the_solve() {
    let mut p = Pipeline::new(
        Arc::new(grid(80, 30, 3.0, 1.0)),
        RunConfig::default(),
        &Registry::with_serial(),
        &PhasePlan::uniform("serial"),
    )
    .unwrap();
    p.world
        .insert_resource(ProgressHook(Some(Box::new(|it, _| it < 50))));
    let e = p.run().unwrap_err().to_string();
    assert!(e.contains("interrupted at iteration 50"), "{e}");
}

#[test]
fn unknown_backend_is_an_error() {
    let err = Pipeline::new(
        Arc::new(grid(2, 1, 3.0, 1.0)),
        RunConfig::default(),
        &Registry::with_serial(),
        &PhasePlan::uniform("warp-drive"),
    )
    .err()
    .unwrap();
    assert!(
        err.to_string().contains("warp-drive") && err.to_string().contains("serial"),
        "{err}"
    );
}

#[test]
fn missing_outlet_and_no_dirichlet_are_errors() {
    let mut cfg = RunConfig::default();
    cfg.boundaries.dirichlet = vec![DirichletPart {
        name: "outlet".into(),
        select: Selector::Box {
            x0: 10.0,
            x1: 11.0,
            y0: 0.0,
            y1: 1.0,
        },
        value: Value::Constant(0.0),
    }];
    let err = run(
        grid(3, 1, 3.0, 1.0),
        cfg,
        &Registry::with_serial(),
        &PhasePlan::uniform("serial"),
    )
    .err()
    .unwrap();
    assert!(
        err.to_string().contains("outlet") && err.to_string().contains("selects no node"),
        "{err}"
    );

    let cfg = RunConfig {
        boundaries: BoundaryConfig {
            dirichlet: vec![],
            ..BoundaryConfig::default()
        },
        ..RunConfig::default()
    };
    let err = run(
        grid(3, 1, 3.0, 1.0),
        cfg,
        &Registry::with_serial(),
        &PhasePlan::uniform("serial"),
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("singular"), "{err}");

    let mut cfg = RunConfig::default();
    cfg.boundaries.robin[0].select = Selector::Side(Side::YMin);
    cfg.boundaries.robin[0].select = Selector::Named("inlet".into());
    let err = run(
        grid(3, 1, 3.0, 1.0),
        cfg,
        &Registry::with_serial(),
        &PhasePlan::uniform("serial"),
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("no node set \"inlet\""), "{err}");
}

#[test]
fn iteration_cap_is_not_convergence() {
    let mut cfg = RunConfig::default();
    cfg.solver.cg.max_iter = 3;
    let err = run(
        grid(12, 4, 3.0, 1.0),
        cfg.clone(),
        &Registry::with_serial(),
        &PhasePlan::uniform("serial"),
    )
    .err()
    .unwrap();
    assert!(
        matches!(err, PipelineError::NotConverged { iterations: 3, .. }),
        "{err}"
    );
    cfg.solver.allow_unconverged = true;
    let p = run(
        grid(12, 4, 3.0, 1.0),
        cfg,
        &Registry::with_serial(),
        &PhasePlan::uniform("serial"),
    )
    .unwrap();
    assert!(!p.world.resource::<Solution>().stats.converged);
}

/// A grid with every interior node moved a little (curved elements).
fn wavy(nx: usize, ny: usize) -> Mesh {
    let m = grid(nx, ny, 3.0, 1.0);
    let (mut x, mut y) = (m.x.clone(), m.y.clone());
    for i in 0..x.len() {
        let (a, b) = (x[i], y[i]);
        if a > 0.0 && a < 3.0 && b > 0.0 && b < 1.0 {
            x[i] += 0.02 * (7.0 * b).sin();
            y[i] += 0.02 * (5.0 * a).cos();
        }
    }
    let els: Vec<[i64; 8]> = m.elements.iter().map(|e| e.map(|v| v as i64)).collect();
    Mesh::new(x, y, &els, OrientationPolicy::Refuse).unwrap()
}

#[test]
fn both_parallel_assembly_strategies_give_the_serial_matrix() {
    use quadflow_systems::parallel::{AssemblyStrategy, Parallel};
    let mesh = wavy(20, 7);
    let mut cfg = RunConfig::default();
    cfg.physics.source = Source::Constant(0.7); // exercise the load vector too
    let serial = run(
        mesh.clone(),
        cfg.clone(),
        &Registry::with_serial(),
        &PhasePlan::uniform("serial"),
    )
    .unwrap();
    let ks = serial.world.resource::<LinearSystem>();
    for (threads, strategy) in [
        (1, AssemblyStrategy::DirectCsr),
        (3, AssemblyStrategy::DirectCsr),
        (2, AssemblyStrategy::BatchedCoo { batch: 7 }),
        (3, AssemblyStrategy::BatchedCoo { batch: 1000 }),
    ] {
        let mut reg = Registry::with_serial();
        reg.register(Parallel { threads, strategy });
        let par = run(
            mesh.clone(),
            cfg.clone(),
            &reg,
            &PhasePlan::uniform("parallel"),
        )
        .unwrap();
        let kp = par.world.resource::<LinearSystem>();
        assert_eq!(kp.k.rowptr, ks.k.rowptr, "{strategy:?}: pattern rows");
        assert_eq!(kp.k.col, ks.k.col, "{strategy:?}: pattern columns");
        let scale = ks.k.val.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for (a, b) in kp.k.val.iter().zip(&ks.k.val) {
            assert!(
                (a - b).abs() <= 1e-12 * scale,
                "{strategy:?}: value {a} vs {b}"
            );
        }
        for (a, b) in kp.f.iter().zip(&ks.f) {
            assert!(
                (a - b).abs() <= 1e-12 * scale,
                "{strategy:?}: load {a} vs {b}"
            );
        }
        assert_eq!(kp.nnz, ks.nnz);
        let (us, up) = (
            &serial.world.resource::<Solution>().u,
            &par.world.resource::<Solution>().u,
        );
        assert_eq!(
            us, up,
            "{strategy:?}: the solution should match serial bit for bit"
        );
    }
}

#[test]
fn bad_parallel_settings_are_errors() {
    use quadflow_systems::parallel::{AssemblyStrategy, Parallel};
    let mut reg = Registry::with_serial();
    reg.register(Parallel {
        threads: 2,
        strategy: AssemblyStrategy::BatchedCoo { batch: 0 },
    });
    let err = Pipeline::new(
        Arc::new(grid(2, 1, 3.0, 1.0)),
        RunConfig::default(),
        &reg,
        &PhasePlan::uniform("parallel"),
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("batch size"), "{err}");
}
