//! Exact and convergent behaviour on generated meshes: the straight channel
//! reproduces `u = 2.5 (3 - x)` (straight and with curved interior
//! mid-side nodes), and a manufactured solution converges at the orders of
//! serendipity quadratics on a smoothly mapped (curved) mesh.

#![allow(clippy::needless_range_loop)]

use quadflow::generate::{self, Geometry};
use quadflow::io::RawMesh;
use quadflow::systems::boundary::{BoundaryConfig, DirichletPart, Selector, Value};
use quadflow::systems::components::{Solution, Source};
use quadflow::systems::element::{self, BASIS9, NODES, QP};
use quadflow::systems::mesh::{Mesh, OrientationPolicy};
use quadflow::systems::{PhasePlan, Pipeline, Registry, RunConfig};
use std::sync::Arc;

fn solve(mesh: Mesh, cfg: RunConfig, backend: &str) -> Vec<f64> {
    let mut reg = Registry::with_serial();
    reg.register(quadflow::systems::parallel::Parallel::default());
    let mut p = Pipeline::new(Arc::new(mesh), cfg, &reg, &PhasePlan::uniform(backend)).unwrap();
    p.run().unwrap();
    p.world.resource::<Solution>().u.clone()
}

fn mesh_of(raw: RawMesh) -> Mesh {
    Mesh::new(raw.x, raw.y, &raw.quad8, OrientationPolicy::Refuse).unwrap()
}

fn check_channel(mesh: Mesh, what: &str) {
    let x = mesh.x.clone();
    for backend in ["serial", "parallel"] {
        let u = solve(mesh.clone(), RunConfig::default(), backend);
        let worst = x
            .iter()
            .zip(&u)
            .map(|(x, u)| (u - 2.5 * (3.0 - x)).abs())
            .fold(0.0f64, f64::max);
        assert!(
            worst <= 1e-8 * 7.5,
            "{what} [{backend}]: max error {worst:.3e}"
        );
    }
}

#[test]
fn straight_channel_is_exact() {
    check_channel(
        mesh_of(generate::generate(Geometry::StraightChannel, 3000).unwrap()),
        "generated channel",
    );
}

#[test]
fn straight_channel_with_curved_interior_edges_is_exact() {
    let raw = generate::perturbed_channel(24, 8, 0.2, 7);
    // the perturbation really moved mid-side nodes off the straight lines
    let straight = generate::perturbed_channel(24, 8, 0.0, 7);
    let moved = raw
        .x
        .iter()
        .zip(&straight.x)
        .filter(|(a, b)| (*a - *b).abs() > 1e-3)
        .count();
    assert!(moved > 100, "only {moved} nodes moved");
    check_channel(mesh_of(raw), "perturbed channel");
}

/// Amplitude of the mesh map `(s, t) -> (s, t + A sin(pi s))`.
const A: f64 = 0.2;

/// The manufactured solution `u = sin(pi x) sin(phi)`, `phi = pi (y - A sin(pi x))`,
/// which vanishes on the whole boundary of the mapped square, and its
/// gradient. (Zero Dirichlet data keeps the penalty rows out of the
/// stopping rule's right-hand-side norm.)
fn exact(x: f64, y: f64) -> (f64, [f64; 2]) {
    use std::f64::consts::PI;
    let phi = PI * (y - A * (PI * x).sin());
    let phix = -A * PI * PI * (PI * x).cos();
    let u = (PI * x).sin() * phi.sin();
    let ux = PI * (PI * x).cos() * phi.sin() + (PI * x).sin() * phi.cos() * phix;
    let uy = PI * (PI * x).sin() * phi.cos();
    (u, [ux, uy])
}

/// `f = -lap u` of [`exact`].
fn source(x: f64, y: f64) -> f64 {
    use std::f64::consts::PI;
    let (sx, cx) = ((PI * x).sin(), (PI * x).cos());
    let phi = PI * (y - A * sx);
    let (sp, cp) = (phi.sin(), phi.cos());
    let phix = -A * PI * PI * cx;
    let phixx = A * PI * PI * PI * sx;
    let uxx =
        -PI * PI * sx * sp + 2.0 * PI * cx * cp * phix + sx * (-sp * phix * phix + cp * phixx);
    let uyy = -PI * PI * sx * sp;
    -(uxx + uyy)
}

/// L2 and H1-seminorm errors by the 3 x 3 rule.
fn errors(mesh: &Mesh, u: &[f64]) -> (f64, f64) {
    let b = &*BASIS9;
    let (mut l2, mut h1) = (0.0, 0.0);
    for e in 0..mesh.elements.len() {
        let c = mesh.coords(e);
        let ue: [f64; NODES] = std::array::from_fn(|i| u[mesh.elements[e][i] as usize]);
        let pts = element::gauss_points_xy(&c);
        for q in 0..QP {
            let j = element::jacobian(&b.dn[q], &c);
            let det = j.determinant();
            let inv = j.try_inverse().unwrap();
            let (mut uh, mut gr) = (0.0, [0.0, 0.0]);
            for i in 0..NODES {
                uh += b.n[q][i] * ue[i];
                gr[0] += b.dn[q][i][0] * ue[i];
                gr[1] += b.dn[q][i][1] * ue[i];
            }
            let gx = inv[(0, 0)] * gr[0] + inv[(0, 1)] * gr[1];
            let gy = inv[(1, 0)] * gr[0] + inv[(1, 1)] * gr[1];
            let (ue_, ge) = exact(pts[q].0, pts[q].1);
            let w = b.weights[q] * det;
            l2 += w * (uh - ue_).powi(2);
            h1 += w * ((gx - ge[0]).powi(2) + (gy - ge[1]).powi(2));
        }
    }
    (l2.sqrt(), h1.sqrt())
}

#[test]
fn manufactured_solution_converges_at_order_3_and_2_on_curved_meshes() {
    // a smooth map of the unit square: curved, asymptotically parallelogram
    let map = |s: f64, t: f64| (s, t + A * (std::f64::consts::PI * s).sin());
    let mut prev: Option<(f64, f64, f64)> = None;
    let mut orders = Vec::new();
    for n in [4usize, 8, 16, 32, 64] {
        let raw = generate::mapped_grid(n, n, map);
        let mut mesh = mesh_of(raw);
        // every boundary node: the nodes of element edges not shared by two elements
        let mut count = std::collections::HashMap::new();
        for el in &mesh.elements {
            for edge in element::EDGES {
                let mut key = [el[edge[0]], el[edge[2]]];
                key.sort();
                count.entry(key).or_insert_with(Vec::new).push(el[edge[1]]);
            }
        }
        let mut boundary: Vec<u32> = Vec::new();
        for (k, mids) in &count {
            if mids.len() == 1 {
                boundary.extend([k[0], k[1], mids[0]]);
            }
        }
        boundary.sort();
        boundary.dedup();
        mesh.node_sets.insert("boundary".into(), boundary);
        let mut cfg = RunConfig {
            boundaries: BoundaryConfig {
                robin: vec![],
                dirichlet: vec![DirichletPart {
                    name: "all".into(),
                    select: Selector::Named("boundary".into()),
                    value: Value::Constant(0.0),
                }],
                ..BoundaryConfig::default()
            },
            ..RunConfig::default()
        };
        cfg.physics.source = Source::Function(Arc::new(source));
        cfg.solver.cg.rtol = 1e-12;
        cfg.solver.cg.max_iter = 100_000;
        let u = solve(mesh.clone(), cfg, "serial");
        let (l2, h1) = errors(&mesh, &u);
        let h = 1.0 / n as f64;
        if let Some((hp, l2p, h1p)) = prev {
            let r = (hp / h).ln();
            orders.push(((l2p / l2).ln() / r, (h1p / h1).ln() / r));
        }
        eprintln!("n = {n:2}: L2 error {l2:.3e}, H1 error {h1:.3e}");
        prev = Some((h, l2, h1));
    }
    eprintln!("observed orders (L2, H1): {orders:?}");
    let (l2o, h1o) = *orders.last().unwrap();
    assert!(l2o >= 2.8, "L2 order {l2o:.3} < 2.8 ({orders:?})");
    assert!(h1o >= 1.8, "H1 order {h1o:.3} < 1.8 ({orders:?})");
}
