//! Tests of scene parsing and planning.

use super::*;
use crate::generate::Geometry;
use quadflow_systems::amg::{Smoother, Strength};
use quadflow_systems::boundary::Selector;
use quadflow_systems::pipeline::{Phase, PhasePlan};

#[test]
fn default_scene_parses() {
    let s = Scene::default_scene();
    assert!(matches!(
        s.mesh_source().unwrap(),
        MeshSource::Generate(Geometry::Venturi, _)
    ));
    assert_eq!(s.phase_plan(), PhasePlan::uniform("serial"));
    let back = Scene::parse(&s.to_toml(), "<round trip>").unwrap();
    assert_eq!(back.mesh, s.mesh);
}

#[test]
fn unknown_key_is_named() {
    let e = Scene::parse(
        "[solver]\nrtoll = 1e-8\n[mesh]\ngenerate='venturi'",
        "t.toml",
    )
    .unwrap_err();
    assert!(e.to_string().contains("rtoll"), "{e}");
    let e = Scene::parse("colour = 3\n", "t.toml").unwrap_err();
    assert!(e.to_string().contains("colour"), "{e}");
    let e = Scene::parse(
        "[mesh]\ngenerate='venturi'\n[solver.amg]\ntheeta = 0.1\n",
        "t.toml",
    )
    .unwrap_err();
    assert!(e.to_string().contains("theeta"), "{e}");
}

#[test]
fn amg_example_scene_lists_the_defaults() {
    let s = Scene::parse(include_str!("../../scenes/amg.toml"), "scenes/amg.toml").unwrap();
    let c = s.run_config().unwrap();
    assert_eq!(c.solver.method, SolverMethod::AmgCg);
    assert_eq!(c.solver.amg, AmgSettings::default());
}

#[test]
fn solver_methods_and_amg_keys() {
    let s = Scene::parse(
        "[mesh]\ngenerate='venturi'\n[solver]\nmethod = 'amg-cg'\nrtol = 1e-10\n\
             [solver.amg]\ntheta = 0.1\nsmoother = 'jacobi'\ndegree = 3\nmax_coarse = 200\n\
             strength = 'magnitude'\n",
        "t.toml",
    )
    .unwrap();
    let c = s.run_config().unwrap();
    assert_eq!(c.solver.method, SolverMethod::AmgCg);
    assert_eq!(c.solver.cg.rtol, 1e-10);
    assert_eq!(c.solver.amg.theta, 0.1);
    assert_eq!(c.solver.amg.smoother, Smoother::Jacobi);
    assert_eq!(c.solver.amg.strength, Strength::Magnitude);
    assert_eq!(c.solver.amg.degree, 3);
    assert_eq!(c.solver.amg.max_coarse, 200);
    assert_eq!(c.solver.amg.pre_sweeps, AmgSettings::default().pre_sweeps);
    let back = Scene::parse(&s.to_toml(), "<round trip>").unwrap();
    assert_eq!(back.solver, s.solver);
    for m in SolverMethod::NAMES {
        let s = Scene::parse(
            &format!("[mesh]\ngenerate='venturi'\n[solver]\nmethod = '{m}'\n"),
            "t.toml",
        )
        .unwrap();
        assert_eq!(s.run_config().unwrap().solver.method.name(), *m);
    }
}

#[test]
fn bad_values_are_named() {
    let base = "[mesh]\ngenerate = 'venturi'\n";
    for (extra, key) in [
        ("[solver]\nrtol = -1.0\n", "solver.rtol"),
        ("[solver]\nmethod = 'magic'\n", "solver.method"),
        ("[solver.amg]\ntheta = 0.0\n", "solver.amg.theta"),
        ("[solver.amg]\nsmoother = 'gauss'\n", "solver.amg.smoother"),
        ("[solver.amg]\nstrength = 'big'\n", "solver.amg.strength"),
        (
            "[solver.amg]\nchebyshev_ratio = 1.0\n",
            "solver.amg.chebyshev_ratio",
        ),
        ("[solver.amg]\ndegree = 0\n", "solver.amg.degree"),
        (
            "[solver.amg]\npre_sweeps = 0\npost_sweeps = 0\n",
            "solver.amg.pre_sweeps",
        ),
        ("[solver.amg]\nmax_coarse = 0\n", "solver.amg.max_coarse"),
        ("[solver.amg]\nmax_levels = 1\n", "solver.amg.max_levels"),
        ("[physics]\nrho = 0.0\n", "physics.rho"),
        (
            "[[boundary.robin]]\nselect = 'left'\ngamma = 1.0\n",
            "boundary.robin[0].select",
        ),
        ("[boundary]\ntolerance = 0.0\n", "boundary.tolerance"),
        ("[parallel]\nassembly = 'lil'\n", "parallel.assembly"),
        ("[parallel]\nbatch_size = 0\n", "parallel.batch_size"),
        ("[gpu]\nstrategy = 'cupy'\n", "gpu.strategy"),
        ("[gpu]\ncheck_every = 0\n", "gpu.check_every"),
    ] {
        let e = Scene::parse(&format!("{base}{extra}"), "t.toml").unwrap_err();
        assert!(e.to_string().contains(key), "{key}: {e}");
    }
    let e = Scene::parse("[mesh]\ngenerate = 'blob'\n", "t.toml").unwrap_err();
    assert!(e.to_string().contains("mesh.generate"), "{e}");
    let e = Scene::parse("[mesh]\ngenerate = 'venturi'\nnodes = 3\n", "t.toml").unwrap_err();
    assert!(e.to_string().contains("mesh.nodes"), "{e}");
    let e = Scene::parse("[mesh]\nfile = 'a.h5'\ngenerate = 'venturi'\n", "t.toml").unwrap_err();
    assert!(e.to_string().contains("not both"), "{e}");
    let e = Scene::parse(
        "[mesh]\ngenerate = 'venturi'\norientation = 'flip'\n",
        "t.toml",
    )
    .unwrap_err();
    assert!(e.to_string().contains("mesh.orientation"), "{e}");
    let e = Scene::parse(
        "[mesh]\ngenerate = 'venturi'\ncomponents = 'ignore'\n",
        "t.toml",
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("mesh.components") && e.to_string().contains("\"refuse\""),
        "{e}"
    );
    let s = Scene::parse(
        "[mesh]\ngenerate = 'venturi'\ncomponents = 'refuse'\n",
        "t.toml",
    )
    .unwrap();
    assert_eq!(
        s.boundaries().unwrap().components,
        quadflow_systems::boundary::ComponentPolicy::Refuse
    );
}

#[test]
fn relative_mesh_path_is_relative_to_the_scene() {
    let s = Scene::parse("[mesh]\nfile = 'm.h5'\n", "/a/b/scene.toml").unwrap();
    assert_eq!(
        s.mesh_source().unwrap(),
        MeshSource::File(PathBuf::from("/a/b/m.h5"))
    );
}

#[test]
fn selectors_and_plan() {
    let s = Scene::parse(
        "[mesh]\ngenerate='venturi'\n[backend]\ndefault='serial'\nsolve='other'\n\
             [[boundary.dirichlet]]\nselect='box:0,1,0,0.5'\nvalue=2.0\n\
             [[boundary.robin]]\nselect='set:inlet'\ngamma=1.0\np=0.5\n",
        "t.toml",
    )
    .unwrap();
    let b = s.boundaries().unwrap();
    assert_eq!(b.robin[0].select, Selector::Named("inlet".into()));
    assert!(matches!(b.dirichlet[0].select, Selector::Box { x1, .. } if x1 == 1.0));
    assert_eq!(s.phase_plan().get(Phase::Solve), "other");
    assert_eq!(s.phase_plan().get(Phase::Post), "serial");
}

#[test]
fn backend_sections_belong_to_their_backends() {
    let s = Scene::parse(
        "[mesh]\ngenerate='venturi'\n[parallel]\nthreads = 3\n[gpu]\nstrategy = 'vendor'\n",
        "t.toml",
    )
    .unwrap();
    assert_eq!(s.backends["parallel"]["threads"].as_integer(), Some(3));
    // written back with the scene
    let back = Scene::parse(&s.to_toml(), "<round trip>").unwrap();
    assert_eq!(back.backends, s.backends);
    // a section no backend or scene part owns is named with the choices
    let e = Scene::parse("[mesh]\ngenerate='venturi'\n[gpuu]\n", "t.toml").unwrap_err();
    let m = e.to_string();
    assert!(m.contains("gpuu") && m.contains("parallel, gpu"), "{m}");
    let e = Scene::parse("parallel = 3\n[mesh]\ngenerate='venturi'\n", "t.toml").unwrap_err();
    assert!(e.to_string().contains("[parallel]"), "{e}");
}

#[test]
fn errors_about_flag_values_name_the_flag() {
    let mut s = Scene::default_scene();
    s.solver.method = "amg".into();
    s.set_by_flag("solver.method", "--solver amg");
    let e = s.check().unwrap_err().to_string();
    assert!(e.starts_with("--solver amg: unknown method"), "{e}");
    let mut s = Scene::default_scene();
    let flag = crate::backends::catalog()
        .get("gpu")
        .unwrap()
        .flags()
        .iter()
        .find(|f| f.long == "gpu-strategy")
        .copied()
        .unwrap();
    s.set_backend_flag("gpu", &flag, "cupy").unwrap();
    let e = s.plan().err().unwrap().to_string();
    assert!(
        e.starts_with("--gpu-strategy cupy: unknown strategy"),
        "{e}"
    );
    // an unknown backend named by --backend
    let mut s = Scene::default_scene();
    s.set_backend("warp");
    s.set_by_flag("backend.default", "--backend warp");
    let e = s.plan().err().unwrap().to_string();
    assert!(e.starts_with("--backend warp: unknown backend"), "{e}");
}

#[test]
fn a_scene_without_a_mesh_parses_and_needs_one_to_plan() {
    let s = Scene::parse("[solver]\nrtol = 1e-6\n", "t.toml").unwrap();
    let e = s.plan().err().unwrap().to_string();
    assert!(e.contains("mesh") && e.contains("--mesh"), "{e}");
    let mut s = s;
    s.mesh.file = Some("m.h5".into());
    assert!(matches!(s.plan().unwrap().mesh, MeshSource::File(_)));
}

#[test]
fn robin_parts_default_gamma_to_the_reference() {
    let s = Scene::parse(
        "[mesh]\ngenerate='venturi'\n[[boundary.robin]]\nselect = 'xmin'\n",
        "t.toml",
    )
    .unwrap();
    assert_eq!(s.boundaries().unwrap().robin[0].gamma, 2.5);
}
