//! Tests of the generators.

use super::*;
use quadflow_systems::element::quad_data;
use quadflow_systems::mesh::{Mesh, OrientationPolicy};

fn area(m: &RawMesh) -> f64 {
    m.quad8
        .iter()
        .map(|el| {
            let c = (
                std::array::from_fn(|k| m.x[el[k] as usize]),
                std::array::from_fn(|k| m.y[el[k] as usize]),
            );
            quad_data(&c).unwrap().wdet.iter().sum::<f64>()
        })
        .sum()
}

fn validate(m: &RawMesh) -> Mesh {
    let mesh = Mesh::new(
        m.x.clone(),
        m.y.clone(),
        &m.quad8,
        OrientationPolicy::Refuse,
    )
    .unwrap();
    assert!(mesh.used_nodes().iter().all(|&u| u));
    mesh
}

#[test]
fn names_round_trip() {
    for g in Geometry::ALL {
        assert_eq!(Geometry::parse(g.name()), Some(g));
        assert_eq!(g.to_string(), g.name());
    }
    assert_eq!(Geometry::parse(" Elbow-90 "), Some(Geometry::Elbow90));
    assert_eq!(Geometry::parse("pipe"), None);
}

#[test]
fn single_element_layout() {
    let m = mapped_grid(1, 1, |u, v| (u, v));
    assert_eq!(m.x.len(), 8);
    let el = m.quad8[0];
    let expect = [
        (0.0, 0.0),
        (1.0, 0.0),
        (1.0, 1.0),
        (0.0, 1.0),
        (0.5, 0.0),
        (1.0, 0.5),
        (0.5, 1.0),
        (0.0, 0.5),
    ];
    for (k, &(ex, ey)) in expect.iter().enumerate() {
        assert_eq!((m.x[el[k] as usize], m.y[el[k] as usize]), (ex, ey));
    }
    validate(&m);
}

#[test]
fn predicted_counts_match_built_meshes() {
    for g in Geometry::ALL {
        for target in [60, 333, 2500, 40_000] {
            let topo = choose(g, target);
            let m = build(&topo, &maps(g, &topo));
            assert_eq!(m.x.len(), node_count(&topo), "{g} {target}");
            assert_eq!(m.y.len(), m.x.len());
            validate(&m);
        }
    }
}

#[test]
fn straight_channel_is_exact() {
    let m = generate(Geometry::StraightChannel, 2000).unwrap();
    validate(&m);
    assert!((area(&m) - 3.0).abs() < 1e-12);
    let q = quality(&m);
    assert!(
        (q.min_ratio - 1.0).abs() < 1e-12 && (q.max_ratio - 1.0).abs() < 1e-12,
        "{q:?}"
    );
    assert!((m.x.len() as f64 - 2000.0).abs() < 100.0, "{}", m.x.len());
}

#[test]
fn venturi_walls_and_area() {
    let m = generate(Geometry::Venturi, 2000).unwrap();
    validate(&m);
    assert!((area(&m) - 2.1).abs() < 1e-12, "{}", area(&m));
    for (&x, &y) in m.x.iter().zip(&m.y) {
        let s = venturi_s(x);
        assert!(y >= s - 1e-15 && y <= 1.0 - s + 1e-15);
    }
}

#[test]
fn every_shape_is_valid_near_target() {
    for g in Geometry::ALL {
        for target in [300, 2000] {
            let m = generate(g, target).unwrap();
            validate(&m);
            let n = m.x.len() as f64;
            let tol = if target >= 1000 { 0.05 } else { 0.2 };
            assert!(
                (n / target as f64 - 1.0).abs() < tol,
                "{g}: {n} nodes for {target}"
            );
            let q = quality(&m);
            assert!(q.min_ratio > 0.1 && q.min_det > 0.0, "{g}: {q:?}");
        }
    }
}

#[test]
fn too_small_and_too_large_are_errors() {
    let e = generate(Geometry::Venturi, 10).unwrap_err();
    assert!(e.to_string().contains("minimum is 50"), "{e}");
    let e = generate(Geometry::Venturi, MAX_TARGET_NODES + 1).unwrap_err();
    assert!(matches!(e, GenerateError::TooLarge { .. }), "{e}");
    // above the old 20M cap, memory is the bound: a clear error when
    // the host has too little, naming what would fit
    let e = generate_within(Geometry::Venturi, 100_000_000, Some(1 << 30)).unwrap_err();
    assert!(matches!(e, GenerateError::OutOfMemory { .. }), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("8.0 GB") && text.contains("fewer nodes"),
        "{text}"
    );
    assert!(generate_within(Geometry::Venturi, 2000, Some(1 << 30)).is_ok());
    assert!(generate(Geometry::Elbow90, MIN_TARGET_NODES).is_ok());
}

#[test]
fn perturbed_channel_keeps_domain() {
    for seed in 0..20 {
        for (nx, ny) in [(6, 2), (10, 10), (3, 9)] {
            let m = perturbed_channel(nx, ny, 0.2, seed);
            validate(&m);
            assert!((area(&m) - 3.0).abs() < 1e-12);
            assert!(quality(&m).min_ratio > 0.0);
        }
    }
    let a = perturbed_channel(6, 2, 0.1, 7);
    assert_eq!(a, perturbed_channel(6, 2, 0.1, 7));
    assert_ne!(a, perturbed_channel(6, 2, 0.1, 8));
    assert_ne!(a, perturbed_channel(6, 2, 0.0, 7));
}

#[test]
fn mapped_grid_follows_the_map() {
    let m = mapped_grid(4, 3, |u, v| {
        let r = 1.0 + u;
        let t = v * PI / 2.0;
        (r * t.cos(), r * t.sin())
    });
    validate(&m);
    assert_eq!(m.x.len(), 9 * 7 - 12);
    // a quarter annulus: area 3 pi / 4 up to the arcs' interpolation error
    assert!((area(&m) - 0.75 * PI).abs() < 1e-3);
}
