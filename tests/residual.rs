//! The residual a run reports as its own (`equilibrated_relative_residual`,
//! the summary's "relative residual") is within 10x of `rtol` for every
//! converged solve, on meshes small and large, for every solver and host
//! backend; the raw `true_relative_residual` (SPEC's) is kept beside it.
//! (`tests/reference.rs` checks the same on the reference meshes.)

use quadflow::run;
use quadflow::scene::Scene;

/// Runs `geometry` at about `nodes` nodes with `extra` scene text; returns
/// (equilibrated, raw) residuals.
fn residuals(geometry: &str, nodes: usize, extra: &str) -> (f64, f64) {
    let scene = Scene::parse(
        &format!("[mesh]\ngenerate = {geometry:?}\nnodes = {nodes}\n{extra}"),
        "<test>",
    )
    .unwrap();
    let plan = scene.plan().unwrap();
    let r = run::run(&plan, None).unwrap_or_else(|e| panic!("{geometry} {nodes}: {e}"));
    let s = &r.solution;
    assert!(s.stats.converged, "{geometry} {nodes}: not converged");
    let rtol = plan.rtol();
    eprintln!(
        "{geometry:>16} {nodes:>7} {:<40} equilibrated {:.3e}  raw {:.3e}  (rtol {rtol:e})",
        extra.replace('\n', " "),
        s.equilibrated_residual,
        s.true_residual
    );
    assert!(
        s.equilibrated_residual > 0.0 && s.equilibrated_residual <= 10.0 * rtol,
        "{geometry} {nodes} {extra}: equilibrated residual {:e} at rtol {rtol:e}",
        s.equilibrated_residual
    );
    let attrs = r.attributes();
    let attr = attrs
        .iter()
        .find(|(k, _)| k == "equilibrated_relative_residual")
        .expect("the attribute is written");
    assert_eq!(
        attr.1,
        quadflow::io::h5::Attr::Float(s.equilibrated_residual)
    );
    (s.equilibrated_residual, s.true_residual)
}

#[test]
fn jacobi_cg_small_to_large() {
    for (g, n) in [
        ("straight_channel", 100),
        ("venturi", 500),
        ("venturi", 5_000),
        ("backward_step", 20_000),
        ("t_junction", 20_000),
        ("venturi", 100_000),
    ] {
        residuals(g, n, "[backend]\ndefault = \"parallel\"\n");
    }
    // serial and parallel report the same bits
    let s = residuals("s_bend", 3_000, "");
    let p = residuals("s_bend", 3_000, "[backend]\ndefault = \"parallel\"\n");
    assert_eq!(s, p);
}

#[test]
fn amg_cg_and_cholesky() {
    for rtol in ["1e-6", "1e-10"] {
        for n in [500, 20_000] {
            residuals(
                "venturi",
                n,
                &format!("[solver]\nmethod = \"amg-cg\"\nrtol = {rtol}\n"),
            );
        }
    }
    let (eq, _) = residuals("elbow_90", 20_000, "[solver]\nmethod = \"cholesky\"\n");
    assert!(eq < 1e-10, "cholesky: {eq:e}");
}
