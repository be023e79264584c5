//! The generated geometries against the reference study
//! (`docs/geometries.md`): `u_max` from the serial executor at about
//! 200,000 nodes within 2e-4 of the study's value at 160k to 196k nodes, and
//! at about 2,000 nodes within 2e-3.

use quadflow::run;
use quadflow::scene::Scene;

/// (geometry, study's u_max at ~160k-196k nodes)
const STUDY: [(&str, f64); 5] = [
    ("venturi", 12.065877),
    ("backward_step", 6.562341),
    ("s_bend", 13.359542),
    ("t_junction", 7.308531),
    ("elbow_90", 1.968106),
];

fn u_max(geometry: &str, nodes: usize) -> f64 {
    let scene = Scene::parse(
        &format!(
            "[mesh]\ngenerate = {geometry:?}\nnodes = {nodes}\n[backend]\ndefault = \"serial\"\n"
        ),
        "<test>",
    )
    .unwrap();
    let r = run::run(&scene.plan().unwrap(), None).unwrap_or_else(|e| panic!("{geometry}: {e}"));
    assert!(r.solution.stats.converged, "{geometry}: not converged");
    r.solution
        .u
        .iter()
        .cloned()
        .fold(f64::NEG_INFINITY, f64::max)
}

fn check(nodes: usize, tol: f64) {
    let mut report = Vec::new();
    for (g, study) in STUDY {
        let u = u_max(g, nodes);
        let rel = (u - study).abs() / study;
        report.push(format!("{g}: u_max {u:.6} vs study {study:.6} ({rel:.2e})"));
        eprintln!("{}", report.last().unwrap());
        assert!(
            rel <= tol,
            "{g} at ~{nodes} nodes: u_max {u} vs {study} (relative {rel:.2e} > {tol:e})"
        );
    }
    // the straight channel is exact: u = 2.5 (3 - x), u_max = 7.5
    let u = u_max("straight_channel", nodes);
    assert!((u - 7.5).abs() < 1e-7, "straight_channel u_max {u}");
}

#[test]
fn study_values_at_2000_nodes() {
    check(2_000, 2e-3);
}

#[test]
fn study_values_at_200k_nodes() {
    check(200_000, 2e-4);
}
