//! The pipeline end to end on small structured meshes: exactness on a
//! linear solution, the plug-in point (a custom backend overriding one
//! phase, fallback for the others), and failures that stop the run.

use bevy_ecs::prelude::*;
use quadflow_systems::boundary::{BoundaryConfig, DirichletPart, Selector, Side, Value};
use quadflow_systems::components::*;
use quadflow_systems::mesh::{Mesh, OrientationPolicy};
use quadflow_systems::pipeline::{Backend, Phase, PhaseSystems, PhaseTimes, Resolved};
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

fn marker_post(mut q: Query<&mut Fields>, mut ran: ResMut<MarkerRan>) {
    for mut f in &mut q {
        f.0.pressure = -1.0;
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
    let mut p = run(
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
