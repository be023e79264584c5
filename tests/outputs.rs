//! Tests of the visual outputs and the commands around them: VTU files
//! parse back (with a small XML and appended-data check of our own, and
//! with meshio when it is installed), PNG plots decode at the requested
//! size and are not uniform, and the command line generates, converts,
//! runs, writes VTU and PNG, and plots end to end.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::process::Command;

use quadflow::io::vtu;
use quadflow::run::{RunResult, load_mesh, run_on};
use quadflow::scene::Scene;
use quadflow::systems::mesh::Mesh;
use quadflow::viz::plot::{self, Field, PlotOptions};

fn run_generated(geometry: &str, nodes: usize) -> RunResult {
    let s = Scene::parse(
        &format!("[mesh]\ngenerate = \"{geometry}\"\nnodes = {nodes}\n[backend]\ndefault = \"parallel\"\n"),
        "<test>",
    )
    .unwrap();
    let r = run_on(
        &s.plan().unwrap(),
        &load_mesh(&s.plan().unwrap()).unwrap(),
        None,
    )
    .unwrap();
    assert!(r.solution.stats.converged);
    r
}

// ---------------------------------------------------------------------------
// A tiny VTU reader: enough XML to check what write_vtu writes.
// ---------------------------------------------------------------------------

/// One `<DataArray>` with the section it sits in.
#[derive(Debug)]
struct DataArray {
    section: String,
    attrs: BTreeMap<String, String>,
}

/// Attributes `key="value"` of one tag's text.
fn attributes(tag: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = tag;
    while let Some(eq) = rest.find("=\"") {
        let key = rest[..eq].split_whitespace().last().unwrap().to_string();
        let after = &rest[eq + 2..];
        let end = after.find('"').expect("closing quote");
        out.insert(key, after[..end].to_string());
        rest = &after[end + 1..];
    }
    out
}

/// Parses the XML part (checking that tags nest), and returns the piece's
/// attributes, the data arrays, and the appended raw bytes.
fn parse_vtu(bytes: &[u8]) -> (BTreeMap<String, String>, Vec<DataArray>, &[u8]) {
    let marker = b"<AppendedData encoding=\"raw\">";
    let at = bytes
        .windows(marker.len())
        .position(|w| w == marker)
        .expect("appended raw data");
    let xml = std::str::from_utf8(&bytes[..at]).expect("the XML part is text");
    let rest = &bytes[at + marker.len()..];
    let underscore = rest.iter().position(|&b| b == b'_').unwrap();
    assert!(rest[..underscore].iter().all(u8::is_ascii_whitespace));
    let tail = b"\n  </AppendedData>\n</VTKFile>\n";
    assert!(rest.ends_with(tail), "file ends with the closing tags");
    let data = &rest[underscore + 1..rest.len() - tail.len()];

    let mut stack: Vec<String> = Vec::new();
    let mut piece = BTreeMap::new();
    let mut arrays = Vec::new();
    let mut s = xml;
    assert!(s.starts_with("<?xml"));
    s = &s[s.find("?>").unwrap() + 2..];
    while let Some(open) = s.find('<') {
        assert!(s[..open].trim().is_empty(), "stray text {:?}", &s[..open]);
        let close = s[open..].find('>').unwrap() + open;
        let tag = &s[open + 1..close];
        s = &s[close + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(stack.pop().as_deref(), Some(name), "tags nest");
            continue;
        }
        let name = tag.split_whitespace().next().unwrap().trim_end_matches('/');
        match name {
            "Piece" => piece = attributes(tag),
            "DataArray" => arrays.push(DataArray {
                section: stack.last().unwrap().clone(),
                attrs: attributes(tag),
            }),
            "VTKFile" => {
                let a = attributes(tag);
                assert_eq!(a["type"], "UnstructuredGrid");
                assert_eq!(a["byte_order"], "LittleEndian");
                assert_eq!(a["header_type"], "UInt64");
            }
            _ => {}
        }
        if !tag.ends_with('/') {
            stack.push(name.to_string());
        }
    }
    assert_eq!(stack, ["VTKFile"], "only VTKFile is open before the data");
    (piece, arrays, data)
}

/// The bytes of the array at `offset` (after its 8-byte length).
fn block(data: &[u8], offset: usize) -> &[u8] {
    let len = u64::from_le_bytes(data[offset..offset + 8].try_into().unwrap()) as usize;
    &data[offset + 8..offset + 8 + len]
}

fn f64s(b: &[u8]) -> Vec<f64> {
    b.chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn ints(b: &[u8], ty: &str) -> Vec<i64> {
    match ty {
        "Int32" => b
            .chunks_exact(4)
            .map(|c| i64::from(i32::from_le_bytes(c.try_into().unwrap())))
            .collect(),
        "Int64" => b
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
            .collect(),
        "UInt8" => b.iter().map(|&v| i64::from(v)).collect(),
        _ => panic!("type {ty}"),
    }
}

fn write_result_vtu(r: &RunResult, p: &Path) {
    vtu::write_vtu(p, &r.mesh, &r.solution.u, &r.vel, &r.abs_vel, &r.pressure).unwrap();
}

#[test]
fn vtu_parses_back() {
    let r = run_generated("venturi", 300);
    let (n, e) = (r.mesh.nodes(), r.mesh.elements.len());
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("r.vtu");
    write_result_vtu(&r, &p);
    let bytes = std::fs::read(&p).unwrap();
    let (piece, arrays, data) = parse_vtu(&bytes);
    assert_eq!(piece["NumberOfPoints"], n.to_string());
    assert_eq!(piece["NumberOfCells"], e.to_string());

    // offsets are contiguous and cover the data exactly
    let mut next = 0;
    let mut by_name = BTreeMap::new();
    for a in &arrays {
        assert_eq!(a.attrs["format"], "appended");
        let off: usize = a.attrs["offset"].parse().unwrap();
        assert_eq!(off, next, "{a:?}");
        next = off + 8 + block(data, off).len();
        by_name.insert(a.attrs["Name"].clone(), a);
    }
    assert_eq!(next, data.len());
    let sections: Vec<(&str, &str)> = arrays
        .iter()
        .map(|a| (a.section.as_str(), a.attrs["Name"].as_str()))
        .collect();
    assert_eq!(
        sections,
        [
            ("PointData", "u"),
            ("CellData", "vel"),
            ("CellData", "abs_vel"),
            ("CellData", "pressure"),
            ("Points", "Points"),
            ("Cells", "connectivity"),
            ("Cells", "offsets"),
            ("Cells", "types"),
        ]
    );
    let get = |name: &str| {
        let a = by_name[name];
        block(data, a.attrs["offset"].parse().unwrap())
    };
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&f64s(get("u"))), bits(&r.solution.u));
    assert_eq!(bits(&f64s(get("abs_vel"))), bits(&r.abs_vel));
    assert_eq!(bits(&f64s(get("pressure"))), bits(&r.pressure));
    let vel = f64s(get("vel"));
    assert_eq!(by_name["vel"].attrs["NumberOfComponents"], "3");
    for (k, v) in r.vel.iter().enumerate() {
        assert_eq!(vel[3 * k..3 * k + 3], [v[0], v[1], 0.0]);
    }
    let pts = f64s(get("Points"));
    assert_eq!(pts.len(), 3 * n);
    for i in 0..n {
        assert_eq!(pts[3 * i..3 * i + 3], [r.mesh.x[i], r.mesh.y[i], 0.0]);
    }
    let conn = ints(get("connectivity"), &by_name["connectivity"].attrs["type"]);
    let expected: Vec<i64> = r
        .mesh
        .elements
        .iter()
        .flatten()
        .map(|&v| i64::from(v))
        .collect();
    assert_eq!(conn, expected);
    let offsets = ints(get("offsets"), &by_name["offsets"].attrs["type"]);
    assert_eq!(offsets, (1..=e as i64).map(|i| 8 * i).collect::<Vec<_>>());
    let types = ints(get("types"), "UInt8");
    assert!(types.len() == e && types.iter().all(|&t| t == 23));

    // meshio, when installed, reads it as quad8 cells with the same data
    if !common::need_python("vtu_parses_back", "meshio") {
        return;
    }
    let expect = dir.path().join("expect.txt");
    let mut text = format!("{n} {e}\n");
    for v in &r.solution.u {
        text.push_str(&format!("{v:e}\n"));
    }
    for v in &r.pressure {
        text.push_str(&format!("{v:e}\n"));
    }
    std::fs::write(&expect, text).unwrap();
    let script = r#"
import sys, meshio, numpy as np
m = meshio.read(sys.argv[1])
lines = open(sys.argv[2]).read().split()
n, e = int(lines[0]), int(lines[1])
vals = np.array([float(v) for v in lines[2:]])
assert m.points.shape == (n, 3), m.points.shape
assert len(m.cells) == 1 and m.cells[0].type == "quad8", m.cells
assert m.cells[0].data.shape == (e, 8)
assert np.array_equal(m.point_data["u"], vals[:n])
assert np.array_equal(m.cell_data["pressure"][0], vals[n:])
assert m.cell_data["vel"][0].shape == (e, 3)
assert np.all(m.cell_data["vel"][0][:, 2] == 0)
assert m.cell_data["abs_vel"][0].shape == (e,)
print("meshio ok")
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(&p)
        .arg(&expect)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "meshio check failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Decodes a PNG: size and RGB bytes.
fn decode_png(p: &Path) -> (u32, u32, Vec<u8>) {
    let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(p).unwrap()));
    let mut reader = dec.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb);
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

fn distinct_colours(rgb: &[u8]) -> usize {
    rgb.chunks_exact(3)
        .map(|c| (c[0], c[1], c[2]))
        .collect::<HashSet<_>>()
        .len()
}

fn check_plots(r: &RunResult, dir: &Path, tag: &str) {
    for (field, values, w, h) in [
        (Field::U, &r.solution.u, 1600, 700),
        (Field::AbsVel, &r.abs_vel, 900, 500),
        (Field::Pressure, &r.pressure, 640, 480),
    ] {
        let p = dir.join(format!("{tag}_{field}.png"));
        let opts = PlotOptions {
            width: w,
            height: h,
            title: plot::title(&plot::mesh_name(&r.origin), field, &r.backend_label()),
            mesh_lines: None,
        };
        plot::plot_png(&p, &r.mesh, values, field, &opts).unwrap();
        let (pw, ph, rgb) = decode_png(&p);
        assert_eq!((pw, ph), (w, h), "{tag} {field}");
        let colours = distinct_colours(&rgb);
        assert!(colours > 50, "{tag} {field}: only {colours} colours");
        // the field's extremes appear: the colour map's two ends
        let has = |c: [u8; 3]| rgb.chunks_exact(3).any(|p| p == c);
        assert!(
            has(quadflow::viz::raster::colormap(0.0)) || has(quadflow::viz::raster::colormap(1.0)),
            "{tag} {field}"
        );
    }
}

#[test]
fn png_plots_small_and_large() {
    let dir = tempfile::tempdir().unwrap();
    let small = run_generated("venturi", 300);
    check_plots(&small, dir.path(), "small");
    let large = run_generated("venturi", 200_000);
    assert!(large.mesh.nodes() > 150_000);
    check_plots(&large, dir.path(), "large");
    if let Some(keep) = std::env::var_os("QUADFLOW_KEEP_PLOTS") {
        for f in std::fs::read_dir(dir.path()).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, Path::new(&keep).join(f.file_name().unwrap())).unwrap();
        }
    }

    // wrong lengths and sizes are errors
    let m: &Mesh = &small.mesh;
    let e = plot::render(m, &small.abs_vel, Field::U, &PlotOptions::default()).unwrap_err();
    assert!(e.message.contains("nodes"), "{e}");
    let opts = PlotOptions {
        width: 10,
        ..PlotOptions::default()
    };
    assert!(plot::render(m, &small.solution.u, Field::U, &opts).is_err());
    // a constant field still draws
    let flat = vec![1.0; m.nodes()];
    plot::render(m, &flat, Field::U, &PlotOptions::default()).unwrap();
}

fn quadflow(args: &[&str], cwd: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_quadflow"))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "quadflow {args:?} failed:\n{text}");
    text
}

fn quadflow_fails(args: &[&str], cwd: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_quadflow"))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap();
    assert!(!out.status.success(), "quadflow {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn command_line_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = quadflow(&["mesh", "venturi", "--nodes", "2000", "-o", "x.h5"], d);
    assert!(
        out.contains("nodes") && out.contains("Jacobian ratio min"),
        "{out}"
    );
    let out = quadflow(
        &[
            "run", "--mesh", "x.h5", "--out", "r.h5", "--vtu", "r.vtu", "--png", "r.png",
        ],
        d,
    );
    assert!(out.contains("r.vtu") && out.contains("r.png"), "{out}");
    let (w, h, rgb) = decode_png(&d.join("r.png"));
    assert_eq!((w, h), (1600, 700));
    assert!(distinct_colours(&rgb) > 50);
    let (piece, _, _) = parse_vtu(&std::fs::read(d.join("r.vtu")).unwrap());
    assert!(piece["NumberOfPoints"].parse::<usize>().unwrap() > 1500);

    // plot from the results alone (the mesh file named in the results) ...
    quadflow(&["plot", "r.h5", "--field", "pressure", "-o", "p.png"], d);
    let (w, h, rgb) = decode_png(&d.join("p.png"));
    assert_eq!((w, h), (1600, 700));
    assert!(distinct_colours(&rgb) > 50);
    // ... with --mesh and another size
    quadflow(
        &[
            "plot", "r.h5", "--field", "abs_vel", "--mesh", "x.h5", "-o", "a.png", "--width",
            "800", "--height", "400",
        ],
        d,
    );
    assert_eq!(decode_png(&d.join("a.png")).0, 800);

    // a generated scene's results re-create their mesh
    std::fs::write(
        d.join("s.toml"),
        "[mesh]\ngenerate = \"t_junction\"\nnodes = 800\n[output]\nresults = \"t.h5\"\n\
         png = \"t.png\"\nvtu = \"t.vtu\"\n",
    )
    .unwrap();
    quadflow(&["run", "s.toml", "--quiet"], d);
    assert!(d.join("t.png").is_file() && d.join("t.vtu").is_file());
    quadflow(&["plot", "t.h5", "-o", "tu.png"], d);
    assert_eq!(decode_png(&d.join("tu.png")).0, 1600);

    // convert to gmsh and back; run on the .msh with the named sets
    let out = quadflow(&["mesh", "convert", "x.h5", "x.msh"], d);
    assert!(out.contains("MSH 4.1 ASCII"), "{out}");
    let out = quadflow(
        &[
            "mesh",
            "convert",
            "x.msh",
            "x22.msh",
            "--msh-version",
            "2.2",
            "--binary",
        ],
        d,
    );
    assert!(out.contains("MSH 2.2 binary"), "{out}");
    quadflow(&["mesh", "convert", "x22.msh", "y.h5"], d);
    let out = quadflow(&["mesh", "venturi", "--nodes", "2000", "-o", "g.msh"], d);
    assert!(out.contains("inlet") && out.contains("outlet"), "{out}");
    std::fs::write(
        d.join("sets.toml"),
        "[mesh]\nfile = \"g.msh\"\n[[boundary.robin]]\nselect = \"set:inlet\"\ngamma = 2.5\n\
         [[boundary.dirichlet]]\nselect = \"set:outlet\"\n[output]\nresults = \"g.h5\"\n",
    )
    .unwrap();
    let by_sets = quadflow(&["run", "sets.toml"], d);
    let by_side = quadflow(&["run", "--mesh", "y.h5"], d);
    let umax = |s: &str| s.lines().find(|l| l.starts_with("u ")).unwrap().to_string();
    assert_eq!(umax(&by_sets), umax(&by_side));
    quadflow(&["plot", "g.h5", "-o", "g.png"], d);

    // errors
    let e = quadflow_fails(&["mesh", "blob", "-o", "b.h5"], d);
    assert!(e.contains("unknown geometry \"blob\""), "{e}");
    let e = quadflow_fails(&["mesh", "convert", "x.h5", "x.obj"], d);
    assert!(e.contains(".msh") && e.contains(".h5"), "{e}");
    let e = quadflow_fails(
        &["mesh", "convert", "x.h5", "z.msh", "--msh-version", "3"],
        d,
    );
    assert!(e.contains("2.2 or 4.1"), "{e}");
    let e = quadflow_fails(&["plot", "r.h5", "--field", "speed", "-o", "q.png"], d);
    assert!(e.contains("u, abs_vel or pressure"), "{e}");
    quadflow(&["mesh", "elbow_90", "--nodes", "500", "-o", "e.h5"], d);
    let e = quadflow_fails(&["plot", "r.h5", "--mesh", "e.h5", "-o", "q.png"], d);
    assert!(e.contains("--mesh"), "{e}");
}

/// Plots a synthetic field on a 1.3-million-node venturi and writes its
/// VTU, printing the times (`--nocapture`; set QUADFLOW_KEEP_PLOTS=DIR to
/// keep the picture).
#[test]
fn png_of_a_1_3_million_node_mesh() {
    let raw =
        quadflow::generate::generate(quadflow::generate::Geometry::Venturi, 1_300_000).unwrap();
    let mesh = Mesh::new(
        raw.x,
        raw.y,
        &raw.quad8,
        quadflow::systems::mesh::OrientationPolicy::Fix,
    )
    .unwrap();
    let u: Vec<f64> = mesh
        .x
        .iter()
        .zip(&mesh.y)
        .map(|(x, y)| (3.0 - x) * 4.0 + (6.0 * y).sin())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let keep = std::env::var_os("QUADFLOW_KEEP_PLOTS");
    let p = match &keep {
        Some(k) => Path::new(k).join("big_u.png"),
        None => dir.path().join("big_u.png"),
    };
    let t = std::time::Instant::now();
    let opts = PlotOptions {
        title: plot::title("venturi (1.3M nodes, synthetic)", Field::U, "none"),
        ..PlotOptions::default()
    };
    plot::plot_png(&p, &mesh, &u, Field::U, &opts).unwrap();
    println!(
        "{} nodes plotted in {:.2} s",
        mesh.nodes(),
        t.elapsed().as_secs_f64()
    );
    let (w, h, rgb) = decode_png(&p);
    assert_eq!((w, h), (1600, 700));
    assert!(distinct_colours(&rgb) > 50);
    let t = std::time::Instant::now();
    let e = mesh.elements.len();
    vtu::write_vtu(
        &dir.path().join("big.vtu"),
        &mesh,
        &u,
        &vec![[1.0, 0.0]; e],
        &vec![1.0; e],
        &vec![0.0; e],
    )
    .unwrap();
    println!("VTU written in {:.2} s", t.elapsed().as_secs_f64());
}
