//! Geometry tests of the built-in mesh generators against the exact shapes
//! of `GEOMETRIES.md` (formulas restated here independently).

use quadflow::generate::{Geometry, generate, mapped_grid, perturbed_channel, quality};
use quadflow::io::RawMesh;
use quadflow::systems::element::quad_data;
use quadflow::systems::mesh::{Mesh, OrientationPolicy};
use std::collections::HashMap;
use std::f64::consts::PI;
use std::time::Instant;

/// Venturi wall offset as written in GEOMETRIES.md.
fn s(x: f64) -> f64 {
    if x <= 1.5 {
        0.3 * (1.0 - (PI * x / 1.5).cos()) / 2.0
    } else {
        0.3 * (1.0 + (PI * (x - 1.5) / 1.5).cos()) / 2.0
    }
}

fn exact_area(g: Geometry) -> f64 {
    match g {
        Geometry::StraightChannel => 3.0,
        Geometry::Venturi => 3.0 - 2.0 * 0.45,
        Geometry::BackwardStep => 0.5 + 3.0,
        Geometry::SBend => 4.0 * 0.5,
        Geometry::TJunction => 1.5 + 0.5,
        // two rectangles of 0.5 each, plus the quarter annulus 3 pi / 16
        // less its part above y = 0.5 (inside the upper rectangle),
        // int_{0.5}^{1} sqrt(1 - y^2) dy = pi / 6 - sqrt(3) / 8
        Geometry::Elbow90 => 1.0 + 3.0 * PI / 16.0 - (PI / 6.0 - 3f64.sqrt() / 8.0),
    }
}

/// `(xmin, xmax, ymin, ymax)`.
fn bbox(g: Geometry) -> (f64, f64, f64, f64) {
    match g {
        Geometry::StraightChannel | Geometry::Venturi => (0.0, 3.0, 0.0, 1.0),
        Geometry::BackwardStep => (0.0, 4.0, 0.0, 1.0),
        Geometry::SBend => (0.0, 4.0, -0.25, 1.25),
        Geometry::TJunction => (0.0, 3.0, 0.0, 1.5),
        Geometry::Elbow90 => (0.0, 1.0, -1.0, 1.0),
    }
}

fn inside(g: Geometry, x: f64, y: f64) -> bool {
    let t = 1e-12;
    let r = |x0: f64, x1: f64, y0: f64, y1: f64| {
        x >= x0 - t && x <= x1 + t && y >= y0 - t && y <= y1 + t
    };
    match g {
        Geometry::StraightChannel => r(0.0, 3.0, 0.0, 1.0),
        Geometry::Venturi => r(0.0, 3.0, 0.0, 1.0) && y >= s(x) - t && y <= 1.0 - s(x) + t,
        Geometry::BackwardStep => r(0.0, 1.0, 0.5, 1.0) || r(1.0, 4.0, 0.0, 1.0),
        Geometry::SBend => r(0.0, 4.0, -2.0, 2.0) && (y - (PI * x / 4.0).sin()).abs() <= 0.25 + t,
        Geometry::TJunction => r(0.0, 3.0, 0.0, 0.5) || r(1.25, 1.75, 0.5, 1.5),
        Geometry::Elbow90 => {
            let rad = x.hypot(y);
            r(0.5, 1.0, -1.0, 0.0)
                || r(0.0, 1.0, 0.5, 1.0)
                || (x >= -t && y >= -t && rad >= 0.5 - t && rad <= 1.0 + t)
        }
    }
}

fn seg(x: f64, y: f64, a: (f64, f64), b: (f64, f64)) -> f64 {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let t = (((x - a.0) * dx + (y - a.1) * dy) / (dx * dx + dy * dy)).clamp(0.0, 1.0);
    (x - a.0 - t * dx).hypot(y - a.1 - t * dy)
}

/// Distance to an arc of radius `r` about the origin between angles `t0 < t1`.
fn arc(x: f64, y: f64, r: f64, t0: f64, t1: f64) -> f64 {
    let th = y.atan2(x);
    if th >= t0 - 1e-12 && th <= t1 + 1e-12 {
        (x.hypot(y) - r).abs()
    } else {
        let p = |t: f64| (x - r * t.cos()).hypot(y - r * t.sin());
        p(t0).min(p(t1))
    }
}

/// Distance to the exact boundary (vertical distance on the graph walls).
fn boundary_dist(g: Geometry, x: f64, y: f64) -> f64 {
    let poly = |pts: &[(f64, f64)]| {
        pts.windows(2)
            .map(|w| seg(x, y, w[0], w[1]))
            .fold(f64::INFINITY, f64::min)
    };
    match g {
        Geometry::StraightChannel => {
            poly(&[(0.0, 0.0), (3.0, 0.0), (3.0, 1.0), (0.0, 1.0), (0.0, 0.0)])
        }
        Geometry::Venturi => {
            let ends = seg(x, y, (0.0, 0.0), (0.0, 1.0)).min(seg(x, y, (3.0, 0.0), (3.0, 1.0)));
            if (0.0..=3.0).contains(&x) {
                ends.min((y - s(x)).abs()).min((y - 1.0 + s(x)).abs())
            } else {
                ends
            }
        }
        Geometry::BackwardStep => poly(&[
            (0.0, 0.5),
            (1.0, 0.5),
            (1.0, 0.0),
            (4.0, 0.0),
            (4.0, 1.0),
            (0.0, 1.0),
            (0.0, 0.5),
        ]),
        Geometry::SBend => {
            let ends =
                seg(x, y, (0.0, -0.25), (0.0, 0.25)).min(seg(x, y, (4.0, -0.25), (4.0, 0.25)));
            if (0.0..=4.0).contains(&x) {
                let c = (PI * x / 4.0).sin();
                ends.min((y - c - 0.25).abs()).min((y - c + 0.25).abs())
            } else {
                ends
            }
        }
        Geometry::TJunction => poly(&[
            (0.0, 0.0),
            (3.0, 0.0),
            (3.0, 0.5),
            (1.75, 0.5),
            (1.75, 1.5),
            (1.25, 1.5),
            (1.25, 0.5),
            (0.0, 0.5),
            (0.0, 0.0),
        ]),
        Geometry::Elbow90 => {
            let c30 = 3f64.sqrt() / 2.0;
            poly(&[(0.5, 0.0), (0.5, -1.0), (1.0, -1.0), (1.0, 0.0)])
                .min(arc(x, y, 1.0, 0.0, PI / 6.0))
                .min(poly(&[
                    (c30, 0.5),
                    (1.0, 0.5),
                    (1.0, 1.0),
                    (0.0, 1.0),
                    (0.0, 0.5),
                ]))
                .min(arc(x, y, 0.5, 0.0, PI / 2.0))
        }
    }
}

/// Is the point on a curved wall, and if so how far from the wall formula?
fn curved_wall_dist(g: Geometry, x: f64, y: f64) -> Option<f64> {
    match g {
        Geometry::Venturi if x > 1e-9 && x < 3.0 - 1e-9 => {
            Some((y - s(x)).abs().min((y - 1.0 + s(x)).abs()))
        }
        Geometry::SBend if x > 1e-9 && x < 4.0 - 1e-9 => {
            let c = (PI * x / 4.0).sin();
            Some((y - c - 0.25).abs().min((y - c + 0.25).abs()))
        }
        Geometry::Elbow90 if y > 1e-9 && y < 0.5 - 1e-9 => {
            let r = x.hypot(y);
            Some((r - 0.5).abs().min((r - 1.0).abs()))
        }
        _ => None,
    }
}

/// Boundary edges: those of one element only, as `[start, mid, end]`.
fn boundary_edges(m: &RawMesh) -> Vec<[usize; 3]> {
    const E: [[usize; 3]; 4] = [[0, 4, 1], [1, 5, 2], [2, 6, 3], [3, 7, 0]];
    let mut seen: HashMap<(i64, i64), ([usize; 3], usize)> = HashMap::new();
    for el in &m.quad8 {
        for e in E {
            let (a, b) = (el[e[0]], el[e[2]]);
            let key = (a.min(b), a.max(b));
            let ent = seen
                .entry(key)
                .or_insert(([el[e[0]] as usize, el[e[1]] as usize, el[e[2]] as usize], 0));
            // an interior edge has the same mid node from both sides
            assert_eq!(
                ent.0[1], el[e[1]] as usize,
                "edge {key:?} has two different mid-side nodes"
            );
            ent.1 += 1;
        }
    }
    let mut out: Vec<[usize; 3]> = seen
        .into_values()
        .filter(|(_, c)| *c == 1)
        .map(|(e, _)| e)
        .collect();
    out.sort();
    out
}

fn area(m: &RawMesh) -> f64 {
    m.quad8
        .iter()
        .map(|el| {
            let c = (
                std::array::from_fn(|k| m.x[el[k] as usize]),
                std::array::from_fn(|k| m.y[el[k] as usize]),
            );
            quad_data(&c)
                .expect("valid element")
                .wdet
                .iter()
                .sum::<f64>()
        })
        .sum()
}

/// Length of a quadratic edge by the 3-point rule (as the Robin term does).
fn edge_len(m: &RawMesh, e: &[usize; 3]) -> f64 {
    let a = (3.0f64 / 5.0).sqrt();
    [(-a, 5.0 / 9.0), (0.0, 8.0 / 9.0), (a, 5.0 / 9.0)]
        .iter()
        .map(|&(s, w)| {
            let db = [s - 0.5, -2.0 * s, s + 0.5];
            let dx: f64 = (0..3).map(|k| db[k] * m.x[e[k]]).sum();
            let dy: f64 = (0..3).map(|k| db[k] * m.y[e[k]]).sum();
            w * dx.hypot(dy)
        })
        .sum()
}

/// Intended inlet `x = 0`, `y` in `[lo, hi]`.
fn inlet(g: Geometry) -> (f64, f64) {
    match g {
        Geometry::StraightChannel | Geometry::Venturi => (0.0, 1.0),
        Geometry::BackwardStep | Geometry::Elbow90 => (0.5, 1.0),
        Geometry::SBend => (-0.25, 0.25),
        Geometry::TJunction => (0.0, 0.5),
    }
}

/// Relative tolerance on the area: exact to rounding (the venturi walls are
/// one period of a cosine, integrated exactly by the quadratic edges)
/// except where quadratic edges interpolate circular arcs (elbow), where
/// the error falls as h^4 (about 1e-7 at 300 nodes, 1e-9 at 2,000).
fn area_tol(g: Geometry, nodes: usize) -> f64 {
    match g {
        Geometry::Elbow90 if nodes < 1000 => 1e-6,
        Geometry::Elbow90 if nodes < 10_000 => 1e-8,
        _ => 1e-10,
    }
}

fn check(g: Geometry, target: usize) -> RawMesh {
    let m = generate(g, target).unwrap();
    let n = m.x.len();
    assert_eq!(m.y.len(), n);
    let rel = (n as f64 / target as f64 - 1.0).abs();
    let tol = if target >= 1000 { 0.05 } else { 0.25 };
    assert!(rel < tol, "{g}: {n} nodes for a target of {target}");

    // valid, counter-clockwise, non-degenerate, every node used
    let mesh = Mesh::new(
        m.x.clone(),
        m.y.clone(),
        &m.quad8,
        OrientationPolicy::Refuse,
    )
    .unwrap_or_else(|e| panic!("{g} {target}: {e}"));
    assert_eq!(mesh.flipped, 0);
    assert!(mesh.used_nodes().iter().all(|&u| u), "{g}: unused nodes");
    let q = quality(&m);
    assert!(q.min_det > 0.0 && q.min_ratio > 0.1, "{g} {target}: {q:?}");

    // inside the bounding box and the shape
    let (x0, x1, y0, y1) = bbox(g);
    for i in 0..n {
        let (x, y) = (m.x[i], m.y[i]);
        assert!(
            x >= x0 && x <= x1 && y >= y0 && y <= y1,
            "{g}: node {i} ({x}, {y}) outside the box"
        );
        assert!(
            inside(g, x, y),
            "{g}: node {i} ({x}, {y}) outside the shape"
        );
    }
    assert_eq!(m.x.iter().cloned().fold(f64::INFINITY, f64::min), x0);
    assert_eq!(m.x.iter().cloned().fold(f64::NEG_INFINITY, f64::max), x1);

    // boundary: every node of every boundary edge on the exact boundary,
    // mid-side nodes of curved walls on the wall formula; nodes off the
    // boundary strictly inside (a duplicated interface would show up here)
    let edges = boundary_edges(&m);
    let mut on_boundary = vec![false; n];
    let mut curved_mids = 0;
    for e in &edges {
        for &v in e {
            on_boundary[v] = true;
            let d = boundary_dist(g, m.x[v], m.y[v]);
            assert!(
                d < 1e-12,
                "{g}: boundary node {v} ({}, {}) is {d:e} off the boundary",
                m.x[v],
                m.y[v]
            );
        }
        let v = e[1];
        if let Some(d) = curved_wall_dist(g, m.x[v], m.y[v]) {
            assert!(
                d < 1e-12,
                "{g}: mid-side node {v} is {d:e} off its curved wall"
            );
            curved_mids += 1;
        }
    }
    if matches!(g, Geometry::Venturi | Geometry::SBend | Geometry::Elbow90) {
        assert!(curved_mids > 0, "{g}: no mid-side node on a curved wall");
    }
    for (i, _) in on_boundary.iter().enumerate().filter(|(_, b)| !**b) {
        let d = boundary_dist(g, m.x[i], m.y[i]);
        assert!(
            d > 1e-9,
            "{g}: interior node {i} ({}, {}) on the boundary",
            m.x[i],
            m.y[i]
        );
    }

    // area
    let a = area(&m);
    let ex = exact_area(g);
    assert!(
        ((a - ex) / ex).abs() < area_tol(g, n),
        "{g} {target}: area {a} vs {ex} (rel {:e})",
        (a - ex) / ex
    );

    // default boundary rule: x = min x is the intended inlet
    let (lo, hi) = inlet(g);
    let xmin = x0;
    let inl: Vec<usize> = (0..n).filter(|&i| (m.x[i] - xmin).abs() < 1e-9).collect();
    let ys: Vec<f64> = inl.iter().map(|&i| m.y[i]).collect();
    assert!(inl.iter().all(|&i| m.x[i] == 0.0));
    assert_eq!(ys.iter().cloned().fold(f64::INFINITY, f64::min), lo, "{g}");
    assert_eq!(
        ys.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
        hi,
        "{g}"
    );
    let is_in = |v: usize| (m.x[v] - xmin).abs() < 1e-9;
    let inlet_edges: Vec<&[usize; 3]> = edges
        .iter()
        .filter(|e| e.iter().all(|&v| is_in(v)))
        .collect();
    assert_eq!(
        inl.len(),
        2 * inlet_edges.len() + 1,
        "{g}: inlet nodes do not form one chain"
    );
    let len: f64 = inlet_edges.iter().map(|e| edge_len(&m, e)).sum();
    assert!((len - (hi - lo)).abs() < 1e-12, "{g}: inlet length {len}");

    // deterministic
    assert_eq!(m, generate(g, target).unwrap(), "{g}: not deterministic");
    m
}

#[test]
fn straight_channel() {
    for t in [300, 2000, 200_000] {
        check(Geometry::StraightChannel, t);
    }
}

#[test]
fn venturi() {
    for t in [300, 2000, 200_000] {
        let m = check(Geometry::Venturi, t);
        // throat: the narrowest column is 0.4 wide at x = 1.5
        let throat: Vec<f64> = (0..m.x.len())
            .filter(|&i| m.x[i] == 1.5)
            .map(|i| m.y[i])
            .collect();
        if !throat.is_empty() {
            let lo = throat.iter().cloned().fold(f64::INFINITY, f64::min);
            let hi = throat.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            assert!((lo - 0.3).abs() < 1e-14 && (hi - 0.7).abs() < 1e-14);
        }
    }
}

#[test]
fn backward_step() {
    for t in [300, 2000, 200_000] {
        check(Geometry::BackwardStep, t);
    }
}

#[test]
fn t_junction() {
    for t in [300, 2000, 200_000] {
        let m = check(Geometry::TJunction, t);
        // the branch end y = 1.5 is a wall, not inlet or outlet
        let top = (0..m.x.len()).filter(|&i| m.y[i] == 1.5);
        assert!(top.clone().count() > 0);
        assert!(top.into_iter().all(|i| m.x[i] > 1.0 && m.x[i] < 2.0));
    }
}

#[test]
fn s_bend() {
    for t in [300, 2000, 200_000] {
        check(Geometry::SBend, t);
    }
}

#[test]
fn elbow_90() {
    for t in [300, 2000, 200_000] {
        let m = check(Geometry::Elbow90, t);
        // outlet x = max x = 1: right walls of both rectangles and (1, 0)
        let out: Vec<usize> = (0..m.x.len())
            .filter(|&i| (m.x[i] - 1.0).abs() < 1e-9)
            .collect();
        assert!(out.iter().all(|&i| m.y[i] <= 0.0 || m.y[i] >= 0.5));
        assert!(out.iter().any(|&i| m.y[i] == -1.0) && out.iter().any(|&i| m.y[i] == 1.0));
    }
}

#[test]
fn large_venturi() {
    let t0 = Instant::now();
    let m = generate(Geometry::Venturi, 1_300_000).unwrap();
    let dt = t0.elapsed();
    let n = m.x.len();
    eprintln!(
        "venturi 1.3M: {n} nodes, {} elements in {dt:?}",
        m.quad8.len()
    );
    assert!((n as f64 / 1.3e6 - 1.0).abs() < 0.01, "{n}");
    assert_eq!(m.y.len(), n);
    // every node index used exactly in range, and the counts of a structured block
    let max = m.quad8.iter().flatten().copied().max().unwrap();
    assert_eq!(max as usize, n - 1);
    let mesh = Mesh::new(m.x, m.y, &m.quad8, OrientationPolicy::Refuse).unwrap();
    assert!(mesh.used_nodes().iter().all(|&u| u));
}

#[test]
fn node_counts_of_the_study_sizes() {
    for g in Geometry::ALL {
        for t in [1000, 5000, 160_000, 700_000] {
            let n = generate(g, t).unwrap().x.len();
            assert!((n as f64 / t as f64 - 1.0).abs() < 0.05, "{g}: {n} for {t}");
        }
    }
}

#[test]
fn perturbed_channel_is_valid_and_curved() {
    for seed in [0, 1, 42, u64::MAX] {
        let m = perturbed_channel(30, 10, 0.2, seed);
        let mesh = Mesh::new(
            m.x.clone(),
            m.y.clone(),
            &m.quad8,
            OrientationPolicy::Refuse,
        )
        .unwrap();
        assert!(mesh.used_nodes().iter().all(|&u| u));
        assert!((area(&m) - 3.0).abs() < 1e-12);
        let q = quality(&m);
        assert!(q.min_ratio > 0.0 && q.min_ratio < 0.99, "{q:?}");
        // boundary nodes untouched
        for e in boundary_edges(&m) {
            for v in e {
                assert!(boundary_dist(Geometry::StraightChannel, m.x[v], m.y[v]) < 1e-15);
            }
        }
    }
}

#[test]
fn mapped_grid_is_valid() {
    // a curved map with a non-constant Jacobian
    let m = mapped_grid(8, 6, |u, v| {
        (u + 0.1 * (PI * v).sin(), v + 0.1 * (PI * u).sin())
    });
    let mesh = Mesh::new(
        m.x.clone(),
        m.y.clone(),
        &m.quad8,
        OrientationPolicy::Refuse,
    )
    .unwrap();
    assert!(mesh.used_nodes().iter().all(|&u| u));
    assert_eq!(m.x.len(), 17 * 13 - 48);
    // the map shears but preserves area: int det = 1 - 0.01 pi^2 int cos cos = 1
    assert!((area(&m) - 1.0).abs() < 1e-4, "{}", area(&m));
}
