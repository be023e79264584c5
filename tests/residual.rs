//! "Converged" means what it says (`systems/src/solver/converge.rs`): the
//! residual a run reports as its own (`equilibrated_relative_residual`,
//! the summary's "relative residual", recomputed from `u`) is at most
//! `rtol` (up to the rounding of recomputing it from the unscaled `u`) for
//! every converged solve, on meshes small and large, for every solver and
//! host backend; the raw `true_relative_residual` (SPEC's) is kept beside
//! it. (`tests/reference.rs` checks the reference meshes; the GPU test and
//! the MPI tests check their backends.)

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
    // the rule checks ||b - A x|| on the scaled system; this is recomputed
    // from the unscaled u: the two differ by rounding, far below 1e-3
    assert!(
        s.equilibrated_residual > 0.0 && s.equilibrated_residual <= rtol * (1.0 + 1e-3),
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
    // a tolerance far below where the recurrence is reliable
    residuals("venturi", 500, "[solver]\nrtol = 1e-12\n");
    // serial and parallel report the same bits
    let s = residuals("s_bend", 3_000, "");
    let p = residuals("s_bend", 3_000, "[backend]\ndefault = \"parallel\"\n");
    assert_eq!(s, p);
}

#[test]
fn amg_cg_and_cholesky() {
    for rtol in ["1e-6", "1e-10"] {
        for n in [500, 20_000] {
            for backend in ["serial", "parallel"] {
                residuals(
                    "venturi",
                    n,
                    &format!(
                        "[solver]\nmethod = \"amg-cg\"\nrtol = {rtol}\n[backend]\ndefault = \"{backend}\"\n"
                    ),
                );
            }
        }
    }
    let (eq, _) = residuals("elbow_90", 20_000, "[solver]\nmethod = \"cholesky\"\n");
    assert!(eq < 1e-10, "cholesky: {eq:e}");
}

/// Below the rounding floor of `||b - A x||` in double precision (about
/// `eps ||A|| ||x|| / ||b||`: 2.5e-12 on a 20k-node venturi, growing with
/// the square root of the node count times the inlet's), no solution
/// stored in `f64` meets `rtol`: the run says so (not converged, the true
/// residual stalled, with the value), for both iterative solvers, instead
/// of reporting a "converged" residual above the tolerance.
#[test]
fn below_the_rounding_floor_is_not_converged_and_says_why() {
    for (n, method) in [(5_000, "cg-jacobi"), (20_000, "amg-cg")] {
        let text = format!(
            "[mesh]\ngenerate = \"venturi\"\nnodes = {n}\n[solver]\nmethod = \"{method}\"\nrtol = 1e-14\n"
        );
        let plan = Scene::parse(&text, "<test>").unwrap().plan().unwrap();
        let err = run::run(&plan, None).unwrap_err().to_string();
        assert!(
            err.contains("stopped decreasing") && err.contains("1e-14"),
            "{method}: {err}"
        );
        // kept with allow_unconverged: converged = 0, the stalled residual
        let text = format!("{text}allow_unconverged = true\n");
        let plan = Scene::parse(&text, "<test>").unwrap().plan().unwrap();
        let r = run::run(&plan, None).unwrap();
        let st = &r.solution.stats;
        assert!(!st.converged && st.replacements >= 1, "{method}: {st:?}");
        assert!(r.solution.equilibrated_residual > 1e-14);
        assert!(st.recurrence_residual > 1e-14 && st.recurrence_residual < 1e-9);
    }
}

/// The floor the rule stops at is the solution's own: the residual of the
/// `u` a stalled solve returns is within a small factor of the residual
/// of the exact solution rounded to `f64` (modelled by perturbing `u` by
/// a random half unit in the last place), so no `f64` solution does
/// much better and "not converged" below it is the honest answer.
#[test]
fn the_stall_is_at_the_floor_of_f64_solutions() {
    let text = "[mesh]\ngenerate = \"venturi\"\nnodes = 20000\n[solver]\nmethod = \"amg-cg\"\nrtol = 1e-14\nallow_unconverged = true\n";
    let plan = Scene::parse(text, "<test>").unwrap().plan().unwrap();
    let r = run::run(&plan, None).unwrap();
    assert!(!r.solution.stats.converged);
    let loaded = run::load_mesh(&plan).unwrap();
    let sys = run::assemble_on(&plan, &loaded, true).unwrap().system;
    let u = &r.solution.u;
    let got = quadflow_systems::solver::residuals(&sys.k, &sys.f, u).equilibrated;
    // u perturbed by a uniform half-ulp relative error (splitmix64 draws)
    let mut z = 0x2545_f491_4f6c_dd1du64;
    let perturbed: Vec<f64> = u
        .iter()
        .map(|&v| {
            z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut h = z;
            h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            h ^= h >> 31;
            let unit = (h >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
            v * (1.0 + unit * f64::EPSILON)
        })
        .collect();
    let floor = quadflow_systems::solver::residuals(&sys.k, &sys.f, &perturbed).equilibrated;
    eprintln!("stalled at {got:.3e}; u rounded at random: {floor:.3e}");
    assert!(
        got < 3.0 * floor && floor < 3.0 * got,
        "stalled {got:e}, the rounding of u alone {floor:e}"
    );
}
