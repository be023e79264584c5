//! The command line end to end: the default scene, results files readable
//! by h5py, Chrome traces, the clockwise mesh, and every kind of bad input
//! giving its message, a non-zero exit and no results file.

mod common;
use common::*;
use quadflow::io::h5::{self as h5io, Attr, RawMesh};
use std::path::Path;
use std::process::{Command, Output};

fn quadflow(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_quadflow"))
        .args(args)
        .output()
        .expect("the quadflow binary runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs `quadflow run` expecting failure with `needle` in the message and
/// no results file left behind.
fn fails_with(args: &[&str], needle: &str) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.h5");
    let mut all = vec!["run"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--out", out.to_str().unwrap(), "--quiet"]);
    let o = quadflow(&all);
    let t = text(&o);
    assert!(!o.status.success(), "{args:?} should fail:\n{t}");
    assert!(t.contains(needle), "{args:?}: expected {needle:?} in:\n{t}");
    assert!(!t.contains("panicked"), "{args:?} panicked:\n{t}");
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "{args:?} left files behind: {left:?}");
}

#[test]
fn default_scene_runs_and_reports() {
    let o = quadflow(&["run"]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    for needle in [
        "nodes",
        "quadrature",
        "assembly",
        "boundary",
        "solve",
        "post",
        "iterations",
        "converged",
        "u ",
    ] {
        assert!(t.contains(needle), "missing {needle:?} in:\n{t}");
    }
    // a bare `quadflow` is the same as `quadflow run`
    let o = quadflow(&[]);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn results_file_has_the_spec_layout_and_h5py_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.h5");
    let trace = dir.path().join("t.json");
    let flame = dir.path().join("f.svg");
    let mesh = mesh_path("y_tube_201");
    let o = quadflow(&[
        "run",
        "--mesh",
        mesh.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--trace",
        trace.to_str().unwrap(),
        "--flamegraph",
        flame.to_str().unwrap(),
        "--backend",
        "parallel",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let r = h5io::read_results(&out).unwrap();
    assert_eq!(
        (r.u.len(), r.vel.len(), r.abs_vel.len(), r.pressure.len()),
        (201, 52, 52, 52)
    );
    let names: Vec<&str> = r.attrs.iter().map(|a| a.0.as_str()).collect();
    for key in [
        "iterations",
        "converged",
        "true_relative_residual",
        "matrix_nnz",
        "nodes",
        "elements",
        "backend",
        "solver",
        "time_load",
        "time_quadrature",
        "time_assembly",
        "time_boundary",
        "time_solve",
        "time_post",
        "time_total",
        "scene",
    ] {
        assert!(names.contains(&key), "attribute {key} missing: {names:?}");
    }
    let get = |k: &str| {
        r.attrs
            .iter()
            .find(|a| a.0 == k)
            .map(|a| a.1.clone())
            .unwrap()
    };
    assert_eq!(get("matrix_nnz"), Attr::Int(2621));
    assert_eq!(get("converged"), Attr::Int(1));
    assert_eq!(get("backend"), Attr::Str("parallel".into()));
    // the trace is Chrome JSON with phase and system spans
    let t = std::fs::read_to_string(&trace).unwrap();
    assert!(t.trim_start().starts_with('['), "not a Chrome trace");
    for span in [
        "phase_quadrature",
        "phase_solve",
        "parallel::quadrature",
        "parallel::solve",
        "linear_solve",
        "cg_pass_a_spmv_updates",
    ] {
        assert!(t.contains(span), "trace lacks {span}");
    }
    // the flamegraph is an SVG with the phases and systems
    let svg = std::fs::read_to_string(&flame).unwrap();
    assert!(svg.contains("<svg"), "not an SVG");
    for frame in [
        "phase_assembly",
        "parallel::element_scatter",
        "linear_solve",
        "cg_pass_b_updates_dots",
    ] {
        assert!(svg.contains(frame), "flamegraph lacks {frame}");
    }
    assert!(
        !dir.path().join("f.folded").exists(),
        "folded stacks left behind"
    );
    // h5py, when available (CI installs it)
    if !need_python("results_file_has_the_spec_layout_and_h5py_reads_it", "h5py") {
        return;
    }
    let script = format!(
        "import h5py\nf = h5py.File({:?}, 'r')\nprint(f['u'].shape, f['vel'].shape, f['abs_vel'].shape, f['pressure'].shape)\n\
         print(int(f.attrs['iterations']), int(f.attrs['matrix_nnz']), f.attrs['backend'], float(f.attrs['time_total']) > 0)",
        out.display().to_string()
    );
    let o = Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("(201,) (52, 2) (52,) (52,)"), "{t}");
    assert!(t.contains("2621 parallel True"), "{t}");
}

#[test]
fn clockwise_mesh_is_renumbered_with_a_warning_or_refused() {
    let mesh = mesh_path("s_duct_16k");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s.h5");
    let o = quadflow(&[
        "run",
        "--mesh",
        mesh.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("warning") && t.contains("clockwise"), "{t}");
    let r = h5io::read_results(&out).unwrap();
    let min = r.u.iter().cloned().fold(f64::INFINITY, f64::min);
    let max = r.u.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    assert!(
        min >= -1e-9 * max && max > 1.0,
        "potential must be non-negative: [{min}, {max}]"
    );
    // refusing instead
    let scene = dir.path().join("refuse.toml");
    std::fs::write(
        &scene,
        format!(
            "[mesh]\nfile = {:?}\norientation = \"refuse\"\n",
            mesh.display().to_string()
        ),
    )
    .unwrap();
    fails_with(&[scene.to_str().unwrap()], "clockwise");
}

fn write_mesh(dir: &Path, name: &str, m: &RawMesh) -> String {
    let p = dir.join(name);
    h5io::write_mesh(&p, m, false, false).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn bad_inputs_give_clear_errors_and_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let good = h5io::read_mesh(&mesh_path("y_tube_201")).unwrap();

    fails_with(&["--mesh", "/nonexistent/mesh.h5"], "not found");
    let text_file = dir.path().join("notes.h5");
    std::fs::write(&text_file, "this is not HDF5").unwrap();
    fails_with(&["--mesh", text_file.to_str().unwrap()], "not an HDF5 file");
    let bytes = std::fs::read(mesh_path("y_tube_201")).unwrap();
    let cut = dir.path().join("cut.h5");
    std::fs::write(&cut, &bytes[..bytes.len() / 3]).unwrap();
    fails_with(&["--mesh", cut.to_str().unwrap()], "cut.h5");

    // a results file has no quad8
    let res = dir.path().join("results_only.h5");
    h5io::write_results(
        &res,
        &h5io::ResultsData {
            u: &[1.0],
            vel: &[],
            abs_vel: &[],
            pressure: &[],
            attrs: vec![],
        },
    )
    .unwrap();
    fails_with(&["--mesh", res.to_str().unwrap()], "missing dataset \"x\"");

    let mut m = good.clone();
    m.quad8[3][2] = 5000;
    fails_with(
        &["--mesh", &write_mesh(dir.path(), "range.h5", &m)],
        "element 3 refers to node 5000",
    );
    let mut m = good.clone();
    m.quad8[4][5] = m.quad8[4][0];
    fails_with(
        &["--mesh", &write_mesh(dir.path(), "repeat.h5", &m)],
        "element 4 lists node",
    );
    let mut m = good.clone();
    m.x[10] = f64::NAN;
    fails_with(
        &["--mesh", &write_mesh(dir.path(), "nan.h5", &m)],
        "node 10 has a non-finite coordinate",
    );
    // (x/y length mismatches are refused by the writer itself; the reader's
    // message for such files is tested in tests/h5io.rs)
    // a degenerate element: one corner dragged onto the opposite one
    let mut m = good.clone();
    let (a, c) = (m.quad8[7][0] as usize, m.quad8[7][2] as usize);
    m.x[a] = m.x[c];
    m.y[a] = m.y[c];
    fails_with(
        &["--mesh", &write_mesh(dir.path(), "degenerate.h5", &m)],
        "degenerate",
    );

    // scenes: missing inlet, missing outlet, no Dirichlet boundary, bad keys
    let mesh = mesh_path("y_tube_201").display().to_string();
    for (body, needle) in [
        (
            "[[boundary.robin]]\nselect = 'box:100,101,0,1'\ngamma = 2.5\n",
            "boundary \"inlet\"",
        ),
        (
            "[[boundary.dirichlet]]\nselect = 'box:100,101,0,1'\n",
            "boundary \"outlet\"",
        ),
        ("[boundary]\ndirichlet = []\n", "no Dirichlet boundary"),
        ("[solver]\nrtol = 2.0\n", "solver.rtol"),
        ("[solver]\ntolerance = 1e-8\n", "tolerance"),
        ("[parallel]\nassembly = 'lil'\n", "parallel.assembly"),
    ] {
        let scene = dir.path().join("s.toml");
        std::fs::write(&scene, format!("[mesh]\nfile = {mesh:?}\n{body}")).unwrap();
        fails_with(&[scene.to_str().unwrap()], needle);
    }
    // a solve that hits its cap
    fails_with(&["--mesh", &mesh, "--max-iter", "10"], "did not converge");
    // an unknown backend
    fails_with(&["--backend", "quantum"], "unknown backend \"quantum\"");
}

#[test]
fn every_scene_in_scenes_parses_and_names_an_existing_mesh() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenes");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            let s = quadflow::scene::Scene::load(&p).unwrap_or_else(|e| panic!("{e}"));
            if let quadflow::scene::MeshSource::File(f) = s.mesh_source().unwrap() {
                // the large reference meshes live in ../shared, absent from
                // a plain clone
                let shared = f.starts_with(dir.join("../../shared"));
                if shared && !f.exists() {
                    common::skip(
                        "every_scene_in_scenes_parses_and_names_an_existing_mesh",
                        &format!("{}: its mesh is in ../shared (absent)", p.display()),
                    );
                } else {
                    assert!(
                        f.exists(),
                        "{}: mesh {} does not exist",
                        p.display(),
                        f.display()
                    );
                }
            }
            n += 1;
        }
    }
    assert!(
        n >= 9,
        "expected the default scene and one per reference mesh, found {n}"
    );
}

#[test]
fn gpu_backend_without_a_gpu_is_a_clear_error() {
    if quadflow::systems::gpu::device_available() {
        skip(
            "gpu_backend_without_a_gpu_is_a_clear_error",
            "a CUDA device is present here; this test checks the no-GPU message",
        );
        return;
    }
    fails_with(&["--backend", "gpu"], "no CUDA driver found");
    // a bad value from a flag names the flag, not the scene
    fails_with(
        &["--backend", "gpu", "--gpu-strategy", "cupy"],
        "--gpu-strategy cupy: unknown strategy",
    );
    fails_with(&["--solver", "amg"], "--solver amg: unknown method");
    fails_with(
        &["--threads", "many"],
        "--threads many: expected a whole number",
    );
    fails_with(&["--backend", "warp"], "--backend warp: unknown backend");
}

#[test]
fn mpi_backend_of_a_build_without_mpi_says_how_to_build_it() {
    if cfg!(feature = "mpi") {
        // this build has it: outside mpirun it runs as one rank (also
        // checked, with results against serial, by mpi/run-tests.sh)
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.h5");
        let o = quadflow(&[
            "run",
            "--backend",
            "mpi",
            "--out",
            out.to_str().unwrap(),
            "--quiet",
        ]);
        assert!(o.status.success(), "{}", text(&o));
        assert!(out.exists());
        return;
    }
    // the flag, the scene's [backend], and an [mpi] section
    fails_with(
        &["--backend", "mpi"],
        "cargo build --release --features mpi",
    );
    let dir = tempfile::tempdir().unwrap();
    for (name, scene) in [
        ("backend.toml", "[backend]\ndefault = \"mpi\"\n"),
        ("section.toml", "[mpi]\nlocal = \"serial\"\n"),
    ] {
        let p = dir.path().join(name);
        std::fs::write(&p, scene).unwrap();
        fails_with(&[p.to_str().unwrap()], "--features mpi");
    }
}

/// `quadflow` run in `dir`.
fn quadflow_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_quadflow"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the quadflow binary runs")
}

/// A 6 x 3 channel of unit elements and, apart from it, a 2 x 1 block at
/// `[1, 3] x [5, 6]` that touches neither the inlet nor the outlet.
fn channel_and_island() -> RawMesh {
    blocks_mesh(&[(6, 3, 0.0, 0.0), (2, 1, 1.0, 5.0)])
}

#[test]
fn a_floating_component_is_named_before_the_solve_or_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mesh = write_mesh(dir.path(), "two.h5", &channel_and_island());
    let out = dir.path().join("r.h5");
    let o = quadflow(&["run", "--mesh", &mesh, "--out", out.to_str().unwrap()]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(o.status.success(), "{stdout}{stderr}");
    // the warning names the component: number, size, place, meaning
    for needle in [
        "warning: mesh component 2 of 2 (2 elements from element 18",
        "x in [1, 3], y in [5, 6]",
        "no Dirichlet boundary",
        "only up to a constant",
    ] {
        assert!(stderr.contains(needle), "{needle:?} not in:\n{stderr}");
    }
    assert!(
        stdout.contains("1 floating mesh component"),
        "boundary line:\n{stdout}"
    );
    // the island's potential is the arbitrary 0, the channel's is exact
    let r = h5io::read_results(&out).unwrap();
    let m = channel_and_island();
    let centre = |v: usize| m.x[v].fract() == 0.5 && m.y[v].fract() == 0.5;
    for (v, &u) in r.u.iter().enumerate() {
        if centre(v) {
            assert_eq!(u, 0.0, "unused node {v}");
        } else if m.y[v] >= 5.0 {
            assert_eq!(u, 0.0, "node {v}");
        } else {
            assert!((u - 2.5 * (6.0 - m.x[v])).abs() < 1e-5, "node {v}: {u}");
        }
    }
    // --quiet: the warning still shows, nothing else
    let o = quadflow(&["run", "--mesh", &mesh, "--out", out.to_str().unwrap(), "-q"]);
    assert!(o.status.success());
    assert!(o.stdout.is_empty(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("warning: mesh component 2 of 2"),
        "{}",
        text(&o)
    );
    // refused
    let scene = dir.path().join("refuse.toml");
    std::fs::write(
        &scene,
        format!("[mesh]\nfile = {mesh:?}\ncomponents = \"refuse\"\n"),
    )
    .unwrap();
    fails_with(
        &[scene.to_str().unwrap()],
        "mesh component 2 of 2 (2 elements from element 18",
    );
    fails_with(&[scene.to_str().unwrap()], "components = \"refuse\"");
    // anchored by its own Dirichlet part: no warning
    let scene = dir.path().join("anchored.toml");
    std::fs::write(
        &scene,
        format!(
            "[mesh]\nfile = {mesh:?}\n[[boundary.dirichlet]]\nselect = \"xmax\"\n\
             [[boundary.dirichlet]]\nname = \"island\"\nselect = \"box:1,3,6,6\"\nvalue = 1.0\n"
        ),
    )
    .unwrap();
    let o = quadflow(&[
        "run",
        scene.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!text(&o).contains("warning"), "{}", text(&o));
}

#[test]
fn warnings_show_with_quiet_and_the_header_comes_before_the_solve() {
    let dir = tempfile::tempdir().unwrap();
    // every element numbered clockwise
    let mut m = blocks_mesh(&[(6, 3, 0.0, 0.0)]);
    for e in m.quad8.iter_mut() {
        let r = quadflow::systems::mesh::reverse(e.map(|v| v as u32));
        *e = r.map(i64::from);
    }
    let mesh = write_mesh(dir.path(), "cw.h5", &m);
    let out = dir.path().join("r.h5");
    let o = quadflow(&[
        "run",
        "--mesh",
        &mesh,
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(o.stdout.is_empty(), "{}", text(&o));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("warning: 18 of 18 elements were numbered clockwise"),
        "{e}"
    );
    // a solve that fails: the mesh and boundary lines were out before it
    let o = quadflow(&[
        "run",
        "--mesh",
        &mesh,
        "--out",
        out.to_str().unwrap(),
        "--max-iter",
        "2",
    ]);
    assert!(!o.status.success());
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(
        s.contains("mesh      ")
            && s.contains("18 elements")
            && s.contains("boundary  3 Robin edges"),
        "{}",
        text(&o)
    );
    assert!(text(&o).contains("did not converge"), "{}", text(&o));
    assert!(text(&o).contains("clockwise"), "{}", text(&o));
}

#[test]
fn the_residual_shown_is_the_one_rtol_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let mesh = write_mesh(dir.path(), "ch.h5", &blocks_mesh(&[(6, 3, 0.0, 0.0)]));
    let out = dir.path().join("r.h5");
    let o = quadflow(&["run", "--mesh", &mesh, "--out", out.to_str().unwrap()]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    let line = t
        .lines()
        .find(|l| l.starts_with("solver "))
        .unwrap_or_else(|| panic!("no solver line:\n{t}"));
    assert!(
        line.contains("converged (rtol 1e-8), relative residual"),
        "{line}"
    );
    assert!(t.contains("penalty rows dominate"), "{t}");
    let r = h5io::read_results(&out).unwrap();
    let get = |k: &str| match r.attrs.iter().find(|a| a.0 == k).map(|a| a.1.clone()) {
        Some(Attr::Float(v)) => v,
        other => panic!("{k}: {other:?}"),
    };
    let (eq, raw) = (
        get("equilibrated_relative_residual"),
        get("true_relative_residual"),
    );
    assert!(eq > 0.0 && eq <= 1e-8, "equilibrated {eq:e}");
    // the raw residual is SPEC's, dominated by the 1e12 penalty rows
    assert!(raw > 1e3 * eq, "raw {raw:e} vs equilibrated {eq:e}");
}

#[test]
fn the_summary_lists_every_file_written() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = quadflow_in(
        d,
        &[
            "run",
            "--out",
            "r.h5",
            "--trace",
            "t.json",
            "--flamegraph",
            "f.svg",
            "--vtu",
            "v.vtu",
            "--png",
            "u.png",
        ],
    );
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    for (label, file) in [
        ("results", "r.h5"),
        ("trace", "t.json"),
        ("flamegraph", "f.svg"),
        ("vtu", "v.vtu"),
        ("png", "u.png"),
    ] {
        assert!(d.join(file).is_file(), "{file} not written");
        assert!(
            t.lines()
                .any(|l| l.starts_with(label) && l.trim_end().ends_with(file)),
            "no {label} line for {file}:\n{t}"
        );
    }
}

#[test]
fn mesh_flag_satisfies_a_scene_without_a_mesh_and_sets_the_title() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_mesh(d, "ch.h5", &blocks_mesh(&[(6, 3, 0.0, 0.0)]));
    std::fs::write(d.join("s.toml"), "[solver]\nmethod = \"cholesky\"\n").unwrap();
    let o = quadflow_in(d, &["run", "s.toml", "--mesh", "ch.h5", "--out", "r.h5"]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("quadflow  ch.h5 with the settings of s.toml"),
        "{t}"
    );
    assert!(t.contains("solver    cholesky"), "{t}");
    // without --mesh the scene's missing mesh is named, with the fix
    let o = quadflow_in(d, &["run", "s.toml", "--out", "r2.h5"]);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(t.contains("s.toml") && t.contains("--mesh"), "{t}");
    assert!(!d.join("r2.h5").exists());
    // --mesh with the default scene: the title names the mesh, not the venturi
    let o = quadflow_in(d, &["run", "--mesh", "ch.h5", "--out", "r3.h5"]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("quadflow  ch.h5 with the settings of the built-in default"),
        "{t}"
    );
}

/// Found by the fuzzing run (profiles/fuzz/): finite scene values whose
/// product overflows gave a results file with an infinite pressure.
#[test]
fn a_field_that_overflows_is_an_error_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let scene = dir.path().join("s.toml");
    std::fs::write(
        &scene,
        "[mesh]\ngenerate = \"backward_step\"\nnodes = 200\n[physics]\np0 = 100.0\nrho = 1e308\n",
    )
    .unwrap();
    for backend in ["serial", "parallel"] {
        fails_with(
            &[scene.to_str().unwrap(), "--backend", backend],
            "the pressure is -inf at element",
        );
        fails_with(
            &[scene.to_str().unwrap(), "--backend", backend],
            "p0 = 100, rho = 1e308",
        );
    }
}

#[test]
fn bad_flag_values_name_the_flag() {
    fails_with(&["--solver", "amg"], "--solver amg: unknown method");
    fails_with(&["--rtol", "3"], "--rtol 3: must lie in (0, 1)");
    fails_with(&["--max-iter", "0"], "--max-iter 0: must be at least 1");
    fails_with(
        &["--threads", "many"],
        "--threads many: expected a whole number",
    );
}

#[test]
fn plot_finds_the_mesh_from_any_directory_or_says_to_give_it() {
    let dir = tempfile::tempdir().unwrap();
    let (run_dir, elsewhere) = (dir.path().join("run"), dir.path().join("elsewhere"));
    std::fs::create_dir_all(run_dir.join("meshes")).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    write_mesh(
        &run_dir.join("meshes"),
        "ch.h5",
        &blocks_mesh(&[(6, 3, 0.0, 0.0)]),
    );
    std::fs::write(
        run_dir.join("s.toml"),
        "[mesh]\nfile = \"meshes/ch.h5\"\n[output]\nresults = \"r.h5\"\n",
    )
    .unwrap();
    let o = quadflow_in(&run_dir, &["run", "s.toml", "--quiet"]);
    assert!(o.status.success(), "{}", text(&o));
    let results = run_dir.join("r.h5");
    let o = quadflow_in(
        &elsewhere,
        &["plot", results.to_str().unwrap(), "-o", "u.png"],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(elsewhere.join("u.png").is_file());
    // the mesh moved: the message names it and says what to do
    std::fs::rename(run_dir.join("meshes"), dir.path().join("moved")).unwrap();
    let o = quadflow_in(
        &elsewhere,
        &["plot", results.to_str().unwrap(), "-o", "v.png"],
    );
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains("ch.h5") && t.contains("is not there") && t.contains("--mesh FILE"),
        "{t}"
    );
    assert!(!t.contains("panicked"), "{t}");
    assert!(!elsewhere.join("v.png").exists());
    // and --mesh does it
    let moved = dir.path().join("moved/ch.h5");
    let o = quadflow_in(
        &elsewhere,
        &[
            "plot",
            results.to_str().unwrap(),
            "--mesh",
            moved.to_str().unwrap(),
            "-o",
            "w.png",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
}
