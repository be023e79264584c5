//! Named node sets in HDF5 mesh files (`node_sets/NAME`): they round-trip
//! with the mesh in every layout, bad sets are errors naming the set, names
//! HDF5 cannot hold are refused before anything is written, and through the
//! command line a `.msh` converted to `.h5` keeps its physical groups, so
//! `set:NAME` boundaries give the same solution from either file.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use quadflow::io as meshio;
use quadflow::io::h5::{
    MeshLayout, NodeSets, RawMesh, read_mesh, read_mesh_with_sets, read_results,
    write_mesh_with_sets,
};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/msh")
        .join(name)
}

/// Two unit squares side by side, 13 nodes.
fn two_squares() -> RawMesh {
    RawMesh {
        x: vec![0., 1., 2., 0., 1., 2., 0.5, 1.5, 0.5, 1.5, 0., 1., 2.],
        y: vec![0., 0., 0., 1., 1., 1., 0., 0., 1., 1., 0.5, 0.5, 0.5],
        quad8: vec![[0, 1, 4, 3, 6, 11, 8, 10], [1, 2, 5, 4, 7, 12, 9, 11]],
    }
}

fn sets(pairs: &[(&str, &[u32])]) -> NodeSets {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_vec()))
        .collect()
}

#[test]
fn sets_round_trip_in_every_layout() {
    let dir = tempfile::tempdir().unwrap();
    let raw = two_squares();
    let written = sets(&[
        ("inlet", &[10, 0, 3, 0]), // unsorted, repeated: stored sorted, once
        ("outlet", &[2, 5, 12]),
        ("left side ✓", &[0, 3, 10]),
        ("empty", &[]),
        ("all", &[12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0]),
    ]);
    let mut want = written.clone();
    for v in want.values_mut() {
        v.sort_unstable();
        v.dedup();
    }
    for int64 in [false, true] {
        for layout in [MeshLayout::Gzip, MeshLayout::Contiguous] {
            let path = dir.path().join(format!("m_{int64}_{}.h5", layout.name()));
            write_mesh_with_sets(&path, &raw, &written, int64, layout).unwrap();
            let (back, back_sets) = read_mesh_with_sets(&path).unwrap();
            assert_eq!(back, raw);
            assert_eq!(back_sets, want, "{int64} {layout:?}");
            // stored as said: the index type and the layout
            let f = hdf5_pure::File::open(&path).unwrap();
            let ds = f.dataset("node_sets/inlet").unwrap();
            let dtype = if int64 {
                hdf5_pure::DType::I64
            } else {
                hdf5_pure::DType::I32
            };
            assert_eq!(ds.dtype().unwrap(), dtype);
            assert_eq!(ds.read_i64().unwrap(), [0, 3, 10]);
            assert_eq!(ds.is_chunked(), layout == MeshLayout::Gzip);
            // through the extension-chosen reader too
            let m = meshio::read_mesh_file(&path).unwrap();
            assert_eq!(m.node_sets, want);
        }
    }
    // No sets, no group.
    let path = dir.path().join("none.h5");
    write_mesh_with_sets(&path, &raw, &NodeSets::new(), false, MeshLayout::Gzip).unwrap();
    let f = hdf5_pure::File::open(&path).unwrap();
    assert!(f.root().groups().unwrap().is_empty());
    assert!(read_mesh_with_sets(&path).unwrap().1.is_empty());
}

#[test]
fn names_hdf5_cannot_hold_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.h5");
    for bad in ["in/let", "", "."] {
        let e = write_mesh_with_sets(
            &path,
            &two_squares(),
            &sets(&[("ok", &[1]), (bad, &[0])]),
            false,
            MeshLayout::Gzip,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains(&format!("{bad:?}")) && e.contains("rename"),
            "{e}"
        );
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            0,
            "nothing written"
        );
    }
    // An index beyond int32 needs int64.
    let big = sets(&[("far", &[u32::MAX])]);
    let e = write_mesh_with_sets(&path, &two_squares(), &big, false, MeshLayout::Gzip)
        .unwrap_err()
        .to_string();
    assert!(e.contains("far") && e.contains("int64"), "{e}");
    assert!(!path.exists());
}

/// A mesh file of `two_squares` plus what `extra` adds, written through
/// hdf5-pure directly.
fn craft(path: &Path, extra: impl FnOnce(&mut hdf5_pure::FileBuilder)) {
    let raw = two_squares();
    let mut b = hdf5_pure::FileBuilder::new();
    b.create_dataset("x").with_f64_data(&raw.x);
    b.create_dataset("y").with_f64_data(&raw.y);
    b.create_dataset("quad8")
        .with_i64_data(raw.quad8.as_flattened())
        .with_shape(&[2, 8]);
    extra(&mut b);
    b.write(path).unwrap();
}

/// A file with the one set `name` built by `set`.
fn craft_set(path: &Path, name: &str, set: impl FnOnce(&mut hdf5_pure::DatasetBuilder)) {
    craft(path, |b| {
        let mut g = b.create_group("node_sets");
        g.create_dataset("fine").with_i32_data(&[0, 1]);
        set(g.create_dataset(name));
        b.add_group(g.finish());
    });
}

fn expect_err(path: &Path, needles: &[&str]) {
    let e = read_mesh_with_sets(path).unwrap_err().to_string();
    for n in needles {
        assert!(e.contains(n), "expected {n:?} in: {e}");
    }
    // read_mesh checks the sets too, and the CLI's reader
    assert_eq!(read_mesh(path).unwrap_err().to_string(), e);
    assert!(meshio::read_mesh_file(path).is_err());
}

#[test]
fn bad_sets_are_errors_naming_the_set() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(format!("{n}.h5"));

    craft_set(&p("range"), "inlet", |d| {
        d.with_i32_data(&[0, 13]);
    });
    expect_err(
        &p("range"),
        &[
            "node set \"inlet\"",
            "node_sets/inlet",
            "index 13",
            "13 nodes",
        ],
    );

    craft_set(&p("negative"), "outlet", |d| {
        d.with_i64_data(&[-1, 2]);
    });
    expect_err(&p("negative"), &["node set \"outlet\"", "index -1"]);

    craft_set(&p("huge"), "wall", |d| {
        d.with_u64_data(&[u64::MAX]);
    });
    expect_err(&p("huge"), &["node set \"wall\"", "18446744073709551615"]);

    craft_set(&p("float"), "inlet", |d| {
        d.with_f64_data(&[0.0, 1.0]);
    });
    expect_err(
        &p("float"),
        &["node set \"inlet\"", "integer node indices", "astype"],
    );

    craft_set(&p("rank2"), "inlet", |d| {
        d.with_i32_data(&[0, 1, 2, 3]).with_shape(&[2, 2]);
    });
    expect_err(&p("rank2"), &["node set \"inlet\"", "[2, 2]", "1-D"]);

    craft(&p("dataset"), |b| {
        b.create_dataset("node_sets").with_i32_data(&[0]);
    });
    expect_err(&p("dataset"), &["\"node_sets\" is a dataset", "group"]);

    craft(&p("nested"), |b| {
        let mut g = b.create_group("node_sets");
        let mut inner = g.create_group("walls");
        inner.create_dataset("top").with_i32_data(&[0]);
        g.add_group(inner.finish());
        b.add_group(g.finish());
    });
    expect_err(&p("nested"), &["\"node_sets/walls\" is a group"]);

    // Other groups at the root are not node sets and are left alone.
    craft(&p("other_group"), |b| {
        let mut g = b.create_group("provenance");
        g.create_dataset("version").with_i32_data(&[1]);
        b.add_group(g.finish());
    });
    assert!(read_mesh_with_sets(&p("other_group")).unwrap().1.is_empty());
}

// ---------------------------------------------------------------------------
// Through the command line
// ---------------------------------------------------------------------------

fn quadflow(args: &[&str], dir: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_quadflow"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "quadflow {args:?}:\n{text}");
    text
}

const SET_BOUNDARIES: &str = "[[boundary.robin]]\nname = \"inlet\"\nselect = \"set:inlet\"\n\
    gamma = 2.5\n[[boundary.dirichlet]]\nname = \"outlet\"\nselect = \"set:outlet\"\nvalue = 0.0\n";

/// Solves the scene on `mesh` with the set boundaries, returning the
/// results file.
fn solve(dir: &Path, mesh: &Path, results: &str) -> PathBuf {
    let scene = dir.join(format!("{results}.toml"));
    fs::write(
        &scene,
        format!(
            "[mesh]\nfile = {:?}\n{SET_BOUNDARIES}[output]\nresults = {results:?}\n",
            mesh.display().to_string()
        ),
    )
    .unwrap();
    quadflow(&["run", scene.to_str().unwrap(), "--quiet"], dir);
    dir.join(results)
}

#[test]
fn converted_msh_keeps_its_sets_and_solves_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for fixture_name in ["channel_41.msh", "gmsh_channel_41_bin.msh"] {
        let msh = fixture(fixture_name);
        let from_msh = meshio::read_mesh_file(&msh).unwrap();
        assert!(from_msh.node_sets.contains_key("inlet"));

        for layout in ["gzip", "contiguous"] {
            let h5 = d.join(format!("{fixture_name}.{layout}.h5"));
            let out = quadflow(
                &[
                    "mesh",
                    "convert",
                    msh.to_str().unwrap(),
                    h5.to_str().unwrap(),
                    "--layout",
                    layout,
                ],
                d,
            );
            assert!(out.contains("inlet") && out.contains("outlet"), "{out}");
            assert!(out.contains(&format!("(HDF5, {layout})")), "{out}");
            assert!(!out.contains("not stored"), "{out}");
            let from_h5 = meshio::read_mesh_file(&h5).unwrap();
            assert_eq!(from_h5.raw, from_msh.raw);
            assert_eq!(from_h5.node_sets, from_msh.node_sets);

            // set:inlet / set:outlet select the same boundary from either file
            let a = read_results(&solve(
                d,
                &msh,
                &format!("{fixture_name}.{layout}.msh.out.h5"),
            ))
            .unwrap();
            let b = read_results(&solve(
                d,
                &h5,
                &format!("{fixture_name}.{layout}.h5.out.h5"),
            ))
            .unwrap();
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&a.u), bits(&b.u), "{fixture_name}");
            assert_eq!(bits(&a.pressure), bits(&b.pressure), "{fixture_name}");
            let umax = b.u.iter().copied().fold(f64::MIN, f64::max);
            assert!((umax - 7.5).abs() < 1e-6, "u = 2.5 (3 - x): max {umax}");

            // and back to gmsh with the same groups
            let back = d.join(format!("{fixture_name}.{layout}.back.msh"));
            quadflow(
                &[
                    "mesh",
                    "convert",
                    h5.to_str().unwrap(),
                    back.to_str().unwrap(),
                ],
                d,
            );
            let again = meshio::read_mesh_file(&back).unwrap();
            assert_eq!(
                again.node_sets.keys().collect::<Vec<_>>(),
                from_msh.node_sets.keys().collect::<Vec<_>>()
            );
        }
    }
}

#[test]
fn generated_meshes_carry_inlet_and_outlet() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = quadflow(
        &[
            "mesh",
            "venturi",
            "--nodes",
            "3000",
            "-o",
            "v.h5",
            "--layout",
            "contiguous",
        ],
        d,
    );
    assert!(out.contains("(HDF5, contiguous)"), "{out}");
    let (raw, sets) = read_mesh_with_sets(&d.join("v.h5")).unwrap();
    let xmin = raw.x.iter().copied().fold(f64::MAX, f64::min);
    let inlet: Vec<u32> = (0..raw.x.len() as u32)
        .filter(|&i| (raw.x[i as usize] - xmin).abs() < 1e-9)
        .collect();
    assert_eq!(sets["inlet"], inlet);
    assert_eq!(
        sets.keys().collect::<Vec<_>>(),
        ["inlet", "outlet"].iter().collect::<Vec<_>>()
    );
    // the sets solve like the default xmin / xmax rule
    let by_sets = read_results(&solve(d, &d.join("v.h5"), "s.h5")).unwrap();
    fs::write(
        d.join("side.toml"),
        "[mesh]\nfile = \"v.h5\"\n[output]\nresults = \"side.h5\"\n",
    )
    .unwrap();
    quadflow(&["run", "side.toml", "--quiet"], d);
    let by_side = read_results(&d.join("side.h5")).unwrap();
    let diff = by_sets
        .u
        .iter()
        .zip(&by_side.u)
        .fold(0.0f64, |m, (p, q)| m.max((p - q).abs()));
    assert!(diff <= 1e-12, "max |u_set - u_side| = {diff:e}");

    // a bad layout name is refused, naming the choices
    let out = Command::new(env!("CARGO_BIN_EXE_quadflow"))
        .args(["mesh", "venturi", "-o", "w.h5", "--layout", "zip"])
        .current_dir(d)
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && e.contains("gzip or contiguous"),
        "{e}"
    );
    assert!(!d.join("w.h5").exists());
}
