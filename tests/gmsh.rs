//! Tests of `quadflow::io::gmsh` and mesh loading by extension: the `.msh`
//! fixtures (hand-made, written by quadflow, and meshed by gmsh itself) load
//! with their physical groups; boundaries chosen by node set solve exactly
//! like the default side rule on the same mesh from HDF5; generated meshes
//! round-trip through all four MSH variants; malformed files give specific
//! errors (with line numbers in ASCII files) and never panic.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use quadflow::cli::mesh::inlet_outlet_sets;
use quadflow::generate::{self, Geometry};
use quadflow::io;
use quadflow::io::RawMesh;
use quadflow::io::gmsh::{self, ImportedMesh, Location, MshVersion, NO_QUADS};
use quadflow::io::h5 as h5io;
use quadflow::run::{load_mesh, run_on};
use quadflow::scene::Scene;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/msh")
        .join(name)
}

fn read(name: &str) -> ImportedMesh {
    gmsh::read_msh(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Each element as its 8 node coordinates: compares meshes whatever their
/// node numbering.
fn element_coords(raw: &RawMesh) -> Vec<[(f64, f64); 8]> {
    raw.quad8
        .iter()
        .map(|q| q.map(|v| (raw.x[v as usize], raw.y[v as usize])))
        .collect()
}

/// Nodes with x = `x`.
fn nodes_at_x(raw: &RawMesh, x: f64) -> Vec<u32> {
    (0..raw.x.len() as u32)
        .filter(|&i| (raw.x[i as usize] - x).abs() < 1e-9)
        .collect()
}

/// The hand-made 3 x 2 channel: every variant holds the same elements and
/// its physical groups as node sets.
#[test]
fn hand_made_fixtures_load_with_their_groups() {
    let reference = read("channel_41.msh");
    for name in [
        "channel_41.msh",
        "channel_22.msh",
        "channel_quad9_41.msh",
        "channel_41_bin.msh",
        "channel_22_bin.msh",
    ] {
        let m = read(name);
        assert_eq!(m.raw.x.len(), 29, "{name}");
        assert_eq!(m.raw.quad8.len(), 6, "{name}");
        assert_eq!(
            element_coords(&m.raw),
            element_coords(&reference.raw),
            "{name}"
        );
        assert_eq!(m.node_sets["inlet"], nodes_at_x(&m.raw, 0.0), "{name}");
        assert_eq!(m.node_sets["outlet"], nodes_at_x(&m.raw, 3.0), "{name}");
        assert_eq!(m.node_sets["inlet"].len(), 5, "{name}");
        let binary = name.contains("bin");
        if binary {
            // written by quadflow with inlet and outlet only
            assert_eq!(m.node_sets.len(), 2, "{name}");
            assert_eq!(m.ignored_elements, 0, "{name}");
        } else {
            // the physical surface: every node of the quadrangles
            assert_eq!(
                m.node_sets["fluid"],
                (0..29).collect::<Vec<u32>>(),
                "{name}"
            );
            assert_eq!(m.ignored_elements, 4, "{name}: the 4 point elements");
        }
        let centres = if name.contains("quad9") { 6 } else { 0 };
        assert_eq!(m.dropped_nodes, centres, "{name}");
    }
    // The 4.1 file's node tags run 1..=20 and 101..=109; renumbered densely in
    // file order.
    assert_eq!(reference.raw.x[..4], [0.0, 3.0, 3.0, 0.0]);
    assert_eq!(reference.raw.quad8[0], [0, 5, 21, 18, 4, 25, 20, 19]);
}

/// Files that gmsh itself wrote (see make_fixtures.py): 8-node quadrangles
/// in 4.1 ASCII, 4.1 binary and 2.2 binary, and 9-node ones in 2.2 ASCII.
#[test]
fn gmsh_written_fixtures_load() {
    let a = read("gmsh_channel_41.msh");
    assert_eq!(a.raw.quad8.len(), 18);
    assert_eq!(a.raw.x.len(), 13 * 7 - 18);
    for name in ["gmsh_channel_41_bin.msh", "gmsh_channel_22_bin.msh"] {
        let b = read(name);
        // gmsh prints 16 significant digits in ASCII files
        let close =
            |p: &[f64], q: &[f64]| p.iter().zip(q).all(|(u, v)| (u - v).abs() <= 1e-15 * 3.0);
        assert!(
            close(&b.raw.x, &a.raw.x) && close(&b.raw.y, &a.raw.y),
            "{name}"
        );
        assert_eq!(b.raw.quad8, a.raw.quad8, "{name}");
        assert_eq!(b.node_sets, a.node_sets, "{name}");
    }
    let q9 = read("gmsh_channel_quad9_22.msh");
    assert_eq!(q9.dropped_nodes, 18, "the centre nodes");
    assert_eq!(element_coords(&q9.raw), element_coords(&a.raw));
    for m in [&a, &q9] {
        assert_eq!(m.node_sets["inlet"], nodes_at_x(&m.raw, 0.0));
        assert_eq!(m.node_sets["outlet"], nodes_at_x(&m.raw, 3.0));
        assert_eq!(m.node_sets["inlet"].len(), 7);
        assert_eq!(m.node_sets["fluid"].len(), m.raw.x.len());
    }
}

fn scene(file: &Path, extra: &str) -> Scene {
    Scene::parse(
        &format!("[mesh]\nfile = {:?}\n{extra}", file.display().to_string()),
        "<test>",
    )
    .unwrap()
}

const SET_BOUNDARIES: &str = "[[boundary.robin]]\nname = \"inlet\"\nselect = \"set:inlet\"\n\
    gamma = 2.5\n[[boundary.dirichlet]]\nname = \"outlet\"\nselect = \"set:outlet\"\nvalue = 0.0\n";

/// Running a scene with `set:inlet` / `set:outlet` on a `.msh` file gives the
/// same potential as the default `xmin` / `xmax` rule on the same mesh read
/// from HDF5.
#[test]
fn named_sets_solve_like_the_default_rule() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "channel_41.msh",
        "channel_22_bin.msh",
        "gmsh_channel_41_bin.msh",
        "gmsh_channel_quad9_22.msh",
    ] {
        let msh = fixture(name);
        let imported = read(name);
        let h5 = dir.path().join(format!("{name}.h5"));
        h5io::write_mesh(&h5, &imported.raw, false, false).unwrap();

        let by_set = scene(&msh, SET_BOUNDARIES);
        let loaded = load_mesh(&by_set.plan().unwrap()).unwrap();
        assert_eq!(loaded.mesh.node_sets, imported.node_sets, "{name}");
        let a = run_on(&by_set.plan().unwrap(), &loaded, None).unwrap();

        let by_side = scene(&h5, "");
        let b = run_on(
            &by_side.plan().unwrap(),
            &load_mesh(&by_side.plan().unwrap()).unwrap(),
            None,
        )
        .unwrap();
        assert!(a.solution.stats.converged && b.solution.stats.converged);
        assert_eq!(a.boundary.robin_edges, b.boundary.robin_edges, "{name}");
        assert_eq!(
            a.boundary.dirichlet_nodes, b.boundary.dirichlet_nodes,
            "{name}"
        );
        let diff = a
            .solution
            .u
            .iter()
            .zip(&b.solution.u)
            .fold(0.0f64, |m, (p, q)| m.max((p - q).abs()));
        assert!(diff <= 1e-12, "{name}: max |u_set - u_side| = {diff:e}");
        // a straight channel of length 3 with inflow 2.5: u = 2.5 (3 - x)
        let umax = a.solution.u.iter().copied().fold(f64::MIN, f64::max);
        assert!((umax - 7.5).abs() < 1e-6, "{name}: u max {umax}");
    }
    // A set the mesh lacks is named in the error.
    let s = scene(
        &fixture("channel_41.msh"),
        "[[boundary.robin]]\nselect = \"set:nozzle\"\ngamma = 1.0\n",
    );
    let e = run_on(
        &s.plan().unwrap(),
        &load_mesh(&s.plan().unwrap()).unwrap(),
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("nozzle") && e.contains("inlet"), "{e}");
}

/// A generated venturi goes through all four variants unchanged:
/// coordinates bitwise (ASCII numbers are written with the shortest digits
/// that read back exactly), connectivity and node sets equal.
#[test]
fn generated_mesh_round_trips_through_every_variant() {
    let dir = tempfile::tempdir().unwrap();
    let raw = generate::generate(Geometry::Venturi, 2000).unwrap();
    let sets = inlet_outlet_sets(&raw);
    assert!(sets["inlet"].len() > 10);
    for v in MshVersion::ALL {
        let p = dir.path().join(format!("v_{v:?}.msh"));
        let w = gmsh::write_msh(&p, &raw, &sets, v).unwrap();
        assert_eq!(w.uncovered.values().sum::<usize>(), 0, "{v}");
        let back = gmsh::read_msh(&p).unwrap();
        assert_eq!(back.raw.quad8, raw.quad8, "{v}");
        let bits = |a: &[f64]| a.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&back.raw.x), bits(&raw.x), "{v}");
        assert_eq!(bits(&back.raw.y), bits(&raw.y), "{v}");
        assert_eq!(back.node_sets, sets, "{v}");
        assert_eq!((back.ignored_elements, back.dropped_nodes), (0, 0));
        // and by extension
        let (r2, s2) = io::read_any_mesh(&p).unwrap();
        assert_eq!((r2, s2), (back.raw, back.node_sets));
    }
    // awkward coordinates survive ASCII too
    let mut odd = raw.clone();
    odd.x[0] = 1.0 / 3.0;
    odd.y[1] = -1e-300;
    odd.y[2] = 5e-324;
    odd.x[3] = -0.0;
    let p = dir.path().join("odd.msh");
    gmsh::write_msh(&p, &odd, &BTreeMap::new(), MshVersion::V41Ascii).unwrap();
    let back = gmsh::read_msh(&p).unwrap();
    for i in 0..4 {
        assert_eq!(back.raw.x[i].to_bits(), odd.x[i].to_bits());
        assert_eq!(back.raw.y[i].to_bits(), odd.y[i].to_bits());
    }
    // a set that is not made of boundary edges is reported, not written
    let interior = BTreeMap::from([("middle".to_string(), vec![raw.quad8[50][0] as u32])]);
    let w = gmsh::write_msh(&p, &raw, &interior, MshVersion::V22Ascii).unwrap();
    assert_eq!(w.uncovered["middle"], 1);
    assert!(gmsh::read_msh(&p).unwrap().node_sets.is_empty());
    // bad names and indices are refused
    let bad = BTreeMap::from([("a\"b".to_string(), vec![0])]);
    assert!(gmsh::write_msh(&p, &raw, &bad, MshVersion::V41Ascii).is_err());
    let bad = BTreeMap::from([("far".to_string(), vec![u32::MAX])]);
    let e = gmsh::write_msh(&p, &raw, &bad, MshVersion::V41Ascii).unwrap_err();
    assert!(e.message.contains("far"), "{e}");
}

/// The binary fixtures are what the writer writes from the hand-made 4.1
/// file's inlet and outlet (set QUADFLOW_BLESS=1 to rewrite them).
#[test]
fn binary_fixtures_are_the_writers_output() {
    let m = read("channel_41.msh");
    let sets: BTreeMap<String, Vec<u32>> = m
        .node_sets
        .into_iter()
        .filter(|(k, _)| k != "fluid")
        .collect();
    let dir = tempfile::tempdir().unwrap();
    for (name, v) in [
        ("channel_41_bin.msh", MshVersion::V41Binary),
        ("channel_22_bin.msh", MshVersion::V22Binary),
    ] {
        let p = dir.path().join(name);
        gmsh::write_msh(&p, &m.raw, &sets, v).unwrap();
        let fresh = std::fs::read(&p).unwrap();
        if std::env::var_os("QUADFLOW_BLESS").is_some() {
            std::fs::write(fixture(name), &fresh).unwrap();
        }
        assert_eq!(std::fs::read(fixture(name)).unwrap(), fresh, "{name}");
    }
}

fn parse_text(text: &str) -> Result<ImportedMesh, gmsh::GmshError> {
    gmsh::parse_msh(text.as_bytes(), Path::new("bad.msh"))
}

/// The line (1-based) of the first line of `text` that contains `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

#[test]
fn malformed_files_give_clear_errors() {
    let good = std::fs::read_to_string(fixture("channel_41.msh")).unwrap();

    // an element refers to a node tag that does not exist
    let text = good.replace(
        "20 104 11 3 14 105 12 13 109",
        "20 104 11 3 14 105 12 13 999",
    );
    let e = parse_text(&text).unwrap_err();
    assert!(e.message.contains("node tag 999"), "{e}");
    assert_eq!(e.location, Some(Location::Line(line_of(&text, "13 999"))));
    assert!(e.to_string().starts_with("bad.msh:"), "{e}");

    // unsupported versions
    for v in ["3.0", "4.0", "1.0"] {
        let text = good.replace("4.1 0 8", &format!("{v} 0 8"));
        let e = parse_text(&text).unwrap_err();
        assert!(
            e.message
                .contains(&format!("unsupported MSH format version {v}")),
            "{e}"
        );
        assert_eq!(e.location, Some(Location::Line(2)));
    }

    // only triangles (a file gmsh wrote)
    let e = gmsh::read_msh(&fixture("gmsh_triangles_41.msh")).unwrap_err();
    assert!(e.message.starts_with(NO_QUADS), "{e}");
    assert!(e.message.contains("3-node triangle"), "{e}");
    assert!(e.to_string().contains("Mesh.ElementOrder = 2"), "{e}");

    // 4-node quadrangles only
    let text = good
        .replace("2 1 16 6", "2 1 3 6")
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            if f.len() == 9 && f[0].parse::<u32>().is_ok_and(|t| (15..=20).contains(&t)) {
                f[..5].join(" ")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let e = parse_text(&text).unwrap_err();
    assert!(e.message.contains("6 of type 3, 4-node quadrangle"), "{e}");

    // truncated: every proper prefix fails, none panics
    for cut in 0..good.len() - "$EndElements\n".len() + 1 {
        assert!(parse_text(&good[..cut]).is_err(), "prefix of {cut} bytes");
    }
    let cut = &good[..good.find("0.5 0 0\n1 0 0").unwrap() + 3];
    let e = parse_text(cut).unwrap_err();
    assert!(e.message.contains("truncated"), "{e}");
    assert!(matches!(e.location, Some(Location::Line(_))), "{e:?}");
    for name in ["channel_41_bin.msh", "gmsh_channel_22_bin.msh"] {
        let bytes = std::fs::read(fixture(name)).unwrap();
        for cut in 0..bytes.len() - "$EndElements\n".len() + 1 {
            let r = gmsh::parse_msh(&bytes[..cut], Path::new(name));
            assert!(r.is_err(), "{name}: prefix of {cut} bytes");
        }
        let e = gmsh::parse_msh(&bytes[..bytes.len() / 2], Path::new(name)).unwrap_err();
        assert!(matches!(e.location, Some(Location::Byte(_))), "{e:?}");
    }

    // garbage
    let e = parse_text("hello, world\n").unwrap_err();
    assert!(e.message.contains("not a gmsh .msh file"), "{e}");
    assert_eq!(e.location, Some(Location::Line(1)));
    let e = gmsh::parse_msh(&[0xff, 0x00, 0x13, 0x88], Path::new("x")).unwrap_err();
    assert!(e.message.contains("not a gmsh .msh file"), "{e}");
    let e = parse_text("").unwrap_err();
    assert!(e.message.contains("empty"), "{e}");

    // unknown section structure
    let text = good.replace("$EndPhysicalNames\n", "$EndPhysicalNames\nstray words\n");
    let e = parse_text(&text).unwrap_err();
    assert!(e.message.contains("expected a section header"), "{e}");
    assert_eq!(e.location, Some(Location::Line(line_of(&text, "stray"))));
    let text = good.replace("9 29 1 109", "9 28 1 109");
    let e = parse_text(&text).unwrap_err();
    assert!(e.message.contains("more nodes than the 28"), "{e}");
    let text = good.replace("$EndNodes", "$EndNode");
    let e = parse_text(&text).unwrap_err();
    assert!(e.message.contains("expected $EndNodes"), "{e}");
    let text = good.replace("4.1 0 8", "4.1 0 4");
    let e = parse_text(&text).unwrap_err();
    assert!(e.message.contains("data size 4"), "{e}");
    let text = good.replace("2 1 16 6", "2 1 77 6");
    let e = parse_text(&text).unwrap_err();
    assert!(e.message.contains("unknown element type 77"), "{e}");
    let text = good.replace("\"inlet\"", "inlet");
    let e = parse_text(&text).unwrap_err();
    assert!(e.message.contains("quoted physical name"), "{e}");
    let text = good.replace("\n102\n", "\n101\n");
    let e = parse_text(&text).unwrap_err();
    assert!(e.message.contains("node tag 101 is defined twice"), "{e}");
    // unknown sections are skipped; an unclosed one is an error
    let text = good.replace("$Nodes", "$Comments\nmade by hand\n$EndComments\n$Nodes");
    assert!(parse_text(&text).is_ok());
    let text = good.replace("$Nodes", "$Comments\nmade by hand\n$Nodes");
    let e = parse_text(&text).unwrap_err();
    assert!(e.message.contains("$EndComments"), "{e}");

    // unknown extension
    let e = io::read_any_mesh(Path::new("mesh.vtk"))
        .unwrap_err()
        .to_string();
    assert!(e.contains(".h5") && e.contains(".msh"), "{e}");
}

/// Corrupting bytes anywhere never panics (and never asks for absurd
/// memory): the reader returns a mesh or an error.
#[test]
fn corrupted_bytes_never_panic() {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for name in [
        "channel_41.msh",
        "channel_22.msh",
        "channel_41_bin.msh",
        "channel_22_bin.msh",
        "gmsh_channel_41_bin.msh",
    ] {
        let good = std::fs::read(fixture(name)).unwrap();
        for _ in 0..1500 {
            let mut bad = good.clone();
            for _ in 0..1 + next() % 3 {
                let i = (next() % bad.len() as u64) as usize;
                bad[i] = match next() % 4 {
                    0 => b'9',
                    1 => 0xff,
                    2 => b' ',
                    _ => next() as u8,
                };
            }
            let _ = gmsh::parse_msh(&bad, Path::new(name));
        }
    }
}
