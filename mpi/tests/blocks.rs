//! The application path of the `mpi` backend reading in blocks (the
//! default: every rank reads or generates its own blocks, the mesh is
//! partitioned and moved to its parts by the ranks, every rank writes its
//! rows of the results file) on in-process ranks, against the serial
//! backend: the results file of 1 to 4 ranks equals a serial run's at the
//! same global indices, from mesh files in both layouts and generated
//! meshes; a bad element in one rank's block fails every rank with the
//! message naming it, and leaves no results file.

mod common;

use common::*;
use quadflow::io::h5::{self, Attr, MeshLayout, NodeSets};
use quadflow::run::{self, RunResult};
use quadflow::scene::Scene;
use quadflow_mpi::comm::ThreadComm;
use std::path::{Path, PathBuf};

/// Runs `scene` on `p` in-process ranks, every rank writing its rows of
/// `out`; every rank's result.
fn ranks_writing(p: usize, scene: &str, out: &Path) -> Vec<Result<RunResult, String>> {
    let handles: Vec<_> = ThreadComm::ranks(p)
        .into_iter()
        .map(|comm| {
            let text = scene.to_string();
            let out = out.to_path_buf();
            std::thread::Builder::new()
                .stack_size(64 << 20)
                .spawn(move || {
                    let cat = catalog(comm, None);
                    let scene =
                        Scene::parse_with(&text, "<test>", &cat).map_err(|e| e.to_string())?;
                    let plan = scene.plan_with(&cat).map_err(|e| e.to_string())?;
                    let g = run::process_group(&plan)
                        .map_err(|e| e.to_string())?
                        .expect("the mpi backend has a group");
                    let r = run::run_group(&plan, g.as_ref(), None)
                        .map_err(|e| e.to_string())?
                        .expect("every rank has its blocks");
                    r.write_results(&out, &plan.outputs, Some(g.as_ref()))
                        .map_err(|e| e.to_string())?;
                    Ok(r)
                })
                .unwrap()
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

fn attr<'a>(attrs: &'a [(String, Attr)], name: &str) -> &'a Attr {
    &attrs
        .iter()
        .find(|(k, _)| k == name)
        .unwrap_or_else(|| panic!("attribute {name}"))
        .1
}

/// The file `out` of a `p`-rank run against the serial run `s` of the
/// same scene (`serial_text`): iterations within 1% (or one), `u` within
/// 1e-10 of serial's (of its iterate after as many iterations where the
/// counts differ), element fields, sizes, the blocks figures.
fn check_against(
    out: &Path,
    lead: &RunResult,
    s: &RunResult,
    serial_text: &str,
    p: usize,
    what: &str,
) {
    let got = h5::read_results(out).unwrap();
    let (it, its) = (lead.solution.stats.iterations, s.solution.stats.iterations);
    assert!(
        (it as f64 - its as f64).abs() <= (0.01 * its as f64).max(1.0),
        "{what}: {it} iterations, serial {its}"
    );
    let reference = if it == its {
        s.solution.u.clone()
    } else {
        let extra = format!(
            "{serial_text}\n[solver]\nrtol = 1e-300\nmax_iterations = {it}\nallow_unconverged = true\n"
        );
        serial(&extra).solution.u
    };
    let e = rel_max(&got.u, &reference);
    assert!(e <= 1e-10, "{what}: u differs by {e:e}");
    assert!(rel_max(&got.abs_vel, &s.abs_vel) <= 1e-7, "{what}: speed");
    assert!(
        rel_max(&got.pressure, &s.pressure) <= 1e-9,
        "{what}: pressure"
    );
    assert_eq!(lead.nnz, s.nnz, "{what}");
    assert_eq!(lead.boundary, s.boundary, "{what}");
    assert_eq!(
        (lead.nodes(), lead.elements()),
        (s.mesh.nodes(), s.mesh.elements.len())
    );
    let a = &got.attrs;
    assert_eq!(*attr(a, "mpi_ranks"), Attr::Int(p as i64));
    assert_eq!(*attr(a, "mpi_read"), Attr::Str("blocks".into()));
    assert_eq!(*attr(a, "nodes"), Attr::Int(s.mesh.nodes() as i64));
    for key in ["mpi_peak_rss_max", "mpi_peak_rss_min", "mpi_peak_rss_mean"] {
        assert!(matches!(attr(a, key), Attr::Int(v) if *v > 0), "{key}");
    }
    assert!(matches!(attr(a, "mpi_peak_rss_by_rank"), Attr::Str(s) if s.split(',').count() == p));
}

/// The serial scene of a mesh file.
fn serial_text(mesh: &Path) -> String {
    serial_scene(mesh, "")
}

#[test]
fn mesh_files_in_both_layouts_agree_with_serial() {
    let dir = tempfile::tempdir().unwrap();
    let names = [
        "backward_step_287",
        "elbow_90_411",
        "s_bend_387",
        "t_junction_393",
        "venturi_341",
        "y_tube_201",
        "s_duct_16k",
    ];
    for name in names {
        let file = data(&format!("data/meshes/{name}.h5"));
        let (raw, _) = h5::read_mesh_with_sets(&file).unwrap();
        let gz = dir.path().join(format!("{name}.gz.h5"));
        h5::write_mesh_with_sets(&gz, &raw, &NodeSets::new(), false, MeshLayout::Gzip).unwrap();
        for (mesh, part) in [(file.clone(), "rcb"), (gz.clone(), "auto")] {
            let st = serial_text(&mesh);
            let s = serial(&st);
            for p in 1..=4 {
                let out = dir.path().join("r.h5");
                let text = scene_read(
                    &mesh,
                    &format!("[mpi]\npartitioner = \"{part}\"\n"),
                    "blocks",
                );
                let rs = ranks_writing(p, &text, &out);
                let what = format!("{name} {part} P={p}");
                let lead = rs.into_iter().next().unwrap().expect(&what);
                check_against(&out, &lead, &s, &st, p, &what);
                std::fs::remove_file(&out).unwrap();
            }
        }
    }
}

#[test]
fn generated_meshes_agree_with_serial_and_carry_the_mesh() {
    let dir = tempfile::tempdir().unwrap();
    for (geometry, nodes) in [
        ("venturi", 20_000),
        ("elbow_90", 5_000),
        ("t_junction", 3_000),
    ] {
        let mesh = format!("[mesh]\ngenerate = \"{geometry}\"\nnodes = {nodes}\n");
        let st = format!("{mesh}[backend]\ndefault = \"serial\"\n");
        let s = serial(&st);
        let raw = quadflow::generate::generate(
            quadflow::generate::Geometry::parse(geometry).unwrap(),
            nodes,
        )
        .unwrap();
        for p in [1, 2, 3, 4] {
            let out = dir.path().join(format!("{geometry}.{p}.h5"));
            let text = format!("{mesh}[backend]\ndefault = \"mpi\"\n[mpi]\nlocal = \"parallel\"\n");
            let rs = ranks_writing(p, &text, &out);
            let what = format!("{geometry} P={p}");
            let lead = rs.into_iter().next().unwrap().expect(&what);
            check_against(&out, &lead, &s, &st, p, &what);
            // the mesh in the results, as generated
            let back = h5::read_results_mesh(&out).unwrap().expect("the mesh");
            assert_eq!(back.0, raw.x, "{what}");
            assert_eq!(back.1, raw.y, "{what}");
            assert!(
                back.2
                    .iter()
                    .zip(&raw.quad8)
                    .all(|(a, b)| a.map(i64::from) == *b)
            );
        }
    }
}

/// A mesh file with element `e` spoiled by `spoil`.
fn spoiled(dir: &Path, e: usize, spoil: impl Fn(&mut quadflow::io::RawMesh, usize)) -> PathBuf {
    let (mut raw, _) = h5::read_mesh_with_sets(&data("data/meshes/s_duct_16k.h5")).unwrap();
    spoil(&mut raw, e);
    let f = dir.join(format!("bad{e}.h5"));
    h5::write_mesh_with_sets(&f, &raw, &NodeSets::new(), false, MeshLayout::Contiguous).unwrap();
    f
}

/// A bad element in the third rank's block: every rank fails with the
/// message a one-process run gives, naming it by its index in the whole
/// mesh; no results file.
#[test]
fn a_bad_element_in_the_third_block_fails_every_rank() {
    let dir = tempfile::tempdir().unwrap();
    let ne = h5::read_mesh(&data("data/meshes/s_duct_16k.h5"))
        .unwrap()
        .quad8
        .len();
    let p = 4;
    let e = ne * 2 / p + 17; // in rank 2's block
    let repeated = spoiled(dir.path(), e, |m, e| m.quad8[e][6] = m.quad8[e][2]);
    let degenerate = spoiled(dir.path(), e + 1, |m, e| {
        let (a, b) = (m.quad8[e][0] as usize, m.quad8[e][2] as usize);
        m.x[b] = m.x[a];
        m.y[b] = m.y[a];
    });
    for (mesh, want) in [
        (repeated, format!("element {e} lists node")),
        (degenerate, "is degenerate or self-intersecting".to_string()),
    ] {
        let one = run::run(
            &Scene::parse(&serial_text(&mesh), "<t>")
                .unwrap()
                .plan()
                .unwrap(),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(one.contains(&want), "{one}");
        let out = dir.path().join("r.h5");
        let msgs: Vec<String> = ranks_writing(p, &scene_read(&mesh, "", "blocks"), &out)
            .into_iter()
            .map(|r| r.expect_err("every rank fails"))
            .collect();
        for m in &msgs {
            assert_eq!(*m, one, "every rank says what one process says");
        }
        assert!(!out.exists());
    }
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(
        left.len(),
        2,
        "only the two meshes: no results, no temporary file"
    );
}

/// An XDMF index of a distributed run: the results carry the mesh,
/// written by every rank, and meshio opens it.
#[test]
fn a_distributed_runs_xdmf_index_opens_in_meshio() {
    let dir = tempfile::tempdir().unwrap();
    let (out, xmf) = (dir.path().join("r.h5"), dir.path().join("r.xmf"));
    let mesh = data("data/meshes/s_duct_16k.h5");
    let text = scene_read(
        &mesh,
        &format!(
            "[output]\nresults = {:?}\nxdmf = {:?}\n",
            out.display().to_string(),
            xmf.display().to_string()
        ),
        "blocks",
    );
    let rs = ranks_writing(3, &text, &out);
    let lead = rs.into_iter().next().unwrap().unwrap();
    let outputs = quadflow::scene::OutputSection {
        results: Some(out.clone()),
        xdmf: Some(xmf.clone()),
        ..Default::default()
    };
    lead.write_outputs(&outputs).unwrap();
    let (x, y, q) = h5::read_results_mesh(&out).unwrap().expect("the mesh");
    let (raw, _) = h5::read_mesh_with_sets(&mesh).unwrap();
    assert_eq!((x, y), (raw.x.clone(), raw.y.clone()));
    assert_eq!(q.len(), raw.quad8.len());
    let have = std::process::Command::new("python3")
        .args(["-c", "import meshio"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        eprintln!("SKIPPED a_distributed_runs_xdmf_index_opens_in_meshio: meshio not installed");
        return;
    }
    let o = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import meshio, sys\nm = meshio.read(sys.argv[1])\nc = m.cells[0]\n\
             print(c.type, c.data.shape, m.points.shape, m.point_data['u'].shape, m.cell_data['pressure'][0].shape)",
        )
        .arg(&xmf)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (n, e) = (raw.x.len(), raw.quad8.len());
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        format!("quad8 ({e}, 8) ({n}, 2) ({n},) ({e},)")
    );
}
