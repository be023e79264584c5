//! Tests of `quadflow::io::h5`: the shared meshes and reference files load,
//! results and meshes round-trip (and h5py reads them; `tests/h5_py.rs` has
//! the full cross-check), mesh layouts are stored as documented and do not
//! depend on the thread count, malformed files give their specific errors
//! without panicking, and writes are all-or-nothing. Node sets:
//! `tests/h5_sets.rs`.

use std::fs;
use std::path::Path;
use std::process::Command;

use quadflow::io::h5::{
    Attr, H5Error, MeshLayout, RawMesh, ResultsData, read_mesh, read_mesh_with_sets,
    read_reference, read_results, read_results_attrs, write_mesh, write_mesh_with_sets,
    write_results,
};

mod common;
use common::{has_mesh, mesh_path, reference_meshes, reference_path};

/// A small mesh with every value distinct, including awkward floats.
fn sample_mesh(int_scale: i64) -> RawMesh {
    let n = 21;
    let x: Vec<f64> = (0..n).map(|i| f64::from(i) * 0.1 - 1.0 / 3.0).collect();
    let mut y: Vec<f64> = (0..n).map(|i| f64::from(i).sqrt() * 1e-300).collect();
    y[3] = -0.0;
    y[4] = f64::MIN_POSITIVE / 4.0; // subnormal
    let quad8 = (0..4)
        .map(|e| std::array::from_fn(|k| ((e * 5 + k as i64) % i64::from(n)) * int_scale))
        .collect();
    RawMesh { x, y, quad8 }
}

fn assert_bits_eq(a: &[f64], b: &[f64], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (i, (p, q)) in a.iter().zip(b).enumerate() {
        assert_eq!(p.to_bits(), q.to_bits(), "{what}[{i}]: {p} vs {q}");
    }
}

/// Runs `script` under python3 with h5py, or returns `None` (after saying
/// so on stderr) when h5py is not installed.
fn h5py(script: &str, file: &Path) -> Option<String> {
    let probe = Command::new("python3").args(["-c", "import h5py"]).output();
    if !probe.is_ok_and(|o| o.status.success()) {
        common::skip(
            "h5io (h5py checks)",
            "h5py not installed (pip install h5py)",
        );
        return None;
    }
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(file)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "h5py failed on {}:\n{}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8(out.stdout).unwrap())
}

fn no_temp_files(dir: &Path) {
    let left: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert!(left.is_empty(), "temporary files left behind: {left:?}");
}

// ---------------------------------------------------------------------------
// The shared files
// ---------------------------------------------------------------------------

#[test]
fn every_shared_mesh_loads() {
    let names = reference_meshes();
    assert!(!names.is_empty(), "no reference meshes in tests/data");
    for path in names.iter().map(|n| mesh_path(n)) {
        let mesh = read_mesh(&path).unwrap_or_else(|e| panic!("{e}"));
        let n = mesh.x.len();
        assert!(n > 0, "{}", path.display());
        assert_eq!(mesh.y.len(), n, "{}", path.display());
        assert!(!mesh.quad8.is_empty(), "{}", path.display());
        for (e, q) in mesh.quad8.iter().enumerate() {
            for &i in q {
                assert!(
                    (0..n as i64).contains(&i),
                    "{}: element {e} has node {i} outside 0..{n}",
                    path.display()
                );
            }
        }
        assert!(mesh.x.iter().chain(&mesh.y).all(|v| v.is_finite()));
    }
    if has_mesh("y_tube_195k") {
        let big = read_mesh(&mesh_path("y_tube_195k")).unwrap();
        assert_eq!((big.x.len(), big.quad8.len()), (195_853, 48_607));
    }
    let small = read_mesh(&mesh_path("y_tube_201")).unwrap();
    assert_eq!((small.x.len(), small.quad8.len()), (201, 52));
    let s_duct = read_mesh(&mesh_path("s_duct_16k")).unwrap();
    assert_eq!((s_duct.x.len(), s_duct.quad8.len()), (16_795, 4_063));
}

#[test]
fn every_reference_file_loads() {
    for name in reference_meshes() {
        let path = reference_path(&name);
        let r = read_reference(&path).unwrap_or_else(|e| panic!("{e}"));
        let mesh = read_mesh(&mesh_path(&name)).unwrap();
        assert_eq!(r.u.len(), mesh.x.len(), "{}", path.display());
        assert_eq!(r.vel.len(), mesh.quad8.len(), "{}", path.display());
        assert_eq!(r.abs_vel.len(), mesh.quad8.len(), "{}", path.display());
        assert_eq!(r.pressure.len(), mesh.quad8.len(), "{}", path.display());
        assert!(r.converged, "{}", path.display());
        assert!(r.iterations > 0 && r.matrix_nnz > 0);
        assert!(r.true_relative_residual > 0.0 && r.true_relative_residual < 1e-7);
        // abs_vel averages the speed over the element's Gauss points and vel
        // the velocity, so |vel| <= abs_vel (and the columns are not mixed up).
        for (v, a) in r.vel.iter().zip(&r.abs_vel) {
            assert!(v[0].hypot(v[1]) <= a * (1.0 + 1e-12), "{}", path.display());
        }
        let attrs = read_results_attrs(&path).unwrap();
        let rtol = attrs.iter().find(|(n, _)| n == "rtol").map(|(_, a)| a);
        assert_eq!(rtol, Some(&Attr::Float(1e-8)), "{}", path.display());
        assert!(attrs.contains(&("converged".into(), Attr::Int(1))));
    }
    if has_mesh("y_tube_195k") {
        let big = read_reference(&reference_path("y_tube_195k")).unwrap();
        assert_eq!(big.iterations, 3741);
        assert_eq!(big.matrix_nnz, 2_338_833);
        assert_eq!((big.u.len(), big.vel.len()), (195_853, 48_607));
    }
    let small = read_reference(&reference_path("y_tube_201")).unwrap();
    assert_eq!(small.iterations, 115);
    assert_eq!(small.matrix_nnz, 2621);
    let umax = small.u.iter().copied().fold(f64::MIN, f64::max);
    assert_eq!(umax, 11.501239431973527);
}

// ---------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------

fn sample_attrs() -> Vec<(String, Attr)> {
    vec![
        ("iterations".into(), Attr::Int(115)),
        ("converged".into(), Attr::Int(1)),
        ("most_negative".into(), Attr::Int(i64::MIN)),
        ("biggest".into(), Attr::Int(i64::MAX)),
        ("matrix_nnz".into(), Attr::Int(2621)),
        ("rtol".into(), Attr::Float(1e-8)),
        (
            "true_relative_residual".into(),
            Attr::Float(1.1981461286780864e-08),
        ),
        ("nan".into(), Attr::Float(f64::NAN)),
        ("minus_zero".into(), Attr::Float(-0.0)),
        ("backend".into(), Attr::Str("serial".into())),
        ("unicode".into(), Attr::Str("Δp = ½ρ|v|² ✓".into())),
        ("empty".into(), Attr::Str(String::new())),
    ]
}

/// Attributes compared bit for bit (NaN included).
fn attrs_key(attrs: &[(String, Attr)]) -> Vec<(String, String)> {
    let mut v: Vec<_> = attrs
        .iter()
        .map(|(n, a)| {
            let s = match a {
                Attr::Int(i) => format!("int {i}"),
                Attr::Float(f) => format!("float {:#x}", f.to_bits()),
                Attr::Str(s) => format!("str {s:?}"),
            };
            (n.clone(), s)
        })
        .collect();
    v.sort();
    v
}

#[test]
fn results_round_trip_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.h5");
    let n = 1000;
    let e = 250;
    let mut u: Vec<f64> = (0..n).map(|i| (f64::from(i) * 0.37).sin() / 3.0).collect();
    u[0] = f64::NAN;
    u[1] = f64::INFINITY;
    u[2] = -0.0;
    u[3] = 5e-324;
    let vel: Vec<[f64; 2]> = (0..e)
        .map(|i| [f64::from(i).cos(), -f64::from(i) / 7.0])
        .collect();
    let abs_vel: Vec<f64> = vel.iter().map(|v| v[0].hypot(v[1])).collect();
    let pressure: Vec<f64> = abs_vel.iter().map(|a| 0.5 * (1.0 - a * a)).collect();
    let data = ResultsData {
        u: &u,
        vel: &vel,
        abs_vel: &abs_vel,
        pressure: &pressure,
        attrs: sample_attrs(),
    };
    write_results(&path, &data).unwrap();
    no_temp_files(dir.path());

    let back = read_results(&path).unwrap();
    assert_bits_eq(&back.u, &u, "u");
    let flat = |v: &[[f64; 2]]| v.iter().flatten().copied().collect::<Vec<_>>();
    assert_bits_eq(&flat(&back.vel), &flat(&vel), "vel");
    assert_bits_eq(&back.abs_vel, &abs_vel, "abs_vel");
    assert_bits_eq(&back.pressure, &pressure, "pressure");
    assert_eq!(attrs_key(&back.attrs), attrs_key(&sample_attrs()));

    let attrs = read_results_attrs(&path).unwrap();
    assert_eq!(attrs_key(&attrs), attrs_key(&sample_attrs()));
    let names: Vec<&str> = attrs.iter().map(|(n, _)| n.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "read_results_attrs sorts by name");

    // A results file also reads as a reference once it has the attributes.
    let r = read_reference(&path).unwrap();
    assert_eq!((r.iterations, r.converged, r.matrix_nnz), (115, true, 2621));
    assert_eq!(r.true_relative_residual, 1.1981461286780864e-08);
    assert_bits_eq(&r.u, &u, "reference u");
}

#[test]
fn results_with_no_elements_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.h5");
    let data = ResultsData {
        u: &[1.0, 2.0],
        vel: &[],
        abs_vel: &[],
        pressure: &[],
        attrs: vec![],
    };
    write_results(&path, &data).unwrap();
    let back = read_results(&path).unwrap();
    assert_eq!(back.u, vec![1.0, 2.0]);
    assert!(back.vel.is_empty() && back.abs_vel.is_empty() && back.pressure.is_empty());
    assert!(back.attrs.is_empty());
}

#[test]
fn overwrite_replaces_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.h5");
    for k in 0..3 {
        let u = vec![f64::from(k); 5 + k as usize];
        let data = ResultsData {
            u: &u,
            vel: &[[1.0, 2.0]],
            abs_vel: &[5f64.sqrt()],
            pressure: &[-2.0],
            attrs: vec![("k".into(), Attr::Int(i64::from(k)))],
        };
        write_results(&path, &data).unwrap();
        let back = read_results(&path).unwrap();
        assert_eq!(back.u, u);
        assert_eq!(back.attrs, vec![("k".to_string(), Attr::Int(i64::from(k)))]);
    }
    no_temp_files(dir.path());
}

#[test]
fn mesh_round_trip_all_layouts() {
    let dir = tempfile::tempdir().unwrap();
    let mesh = sample_mesh(1);
    for int64 in [false, true] {
        for gzip in [false, true] {
            let path = dir.path().join(format!("m_{int64}_{gzip}.h5"));
            write_mesh(&path, &mesh, int64, gzip).unwrap();
            let back = read_mesh(&path).unwrap();
            assert_bits_eq(&back.x, &mesh.x, "x");
            assert_bits_eq(&back.y, &mesh.y, "y");
            assert_eq!(back.quad8, mesh.quad8);

            let file = hdf5_pure::File::open(&path).unwrap();
            let q = file.dataset("quad8").unwrap();
            let want = if int64 {
                hdf5_pure::DType::I64
            } else {
                hdf5_pure::DType::I32
            };
            assert_eq!(q.dtype().unwrap(), want);
            assert_eq!(q.shape().unwrap(), vec![4, 8]);
            assert_eq!(q.is_chunked(), gzip);
            assert_eq!(!q.filters().is_empty(), gzip);
        }
    }
    no_temp_files(dir.path());
}

/// The gzip layout: chunks of about 512 KiB along the rows (65,536 nodes,
/// 16,384 int32 or 8,192 int64 elements), shuffle then deflate, as h5py's
/// `compression="gzip", shuffle=True` writes them; contiguous: neither.
#[test]
fn mesh_layouts_are_stored_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let raw = quadflow::generate::generate(quadflow::generate::Geometry::Venturi, 300_000).unwrap();
    let sets = quadflow::cli::mesh::inlet_outlet_sets(&raw);
    for (int64, rows) in [(false, 16_384), (true, 8_192)] {
        let path = dir.path().join(format!("g{int64}.h5"));
        write_mesh_with_sets(&path, &raw, &sets, int64, MeshLayout::Gzip).unwrap();
        let f = hdf5_pure::File::open(&path).unwrap();
        for (name, chunk) in [
            ("x", vec![65_536]),
            ("y", vec![65_536]),
            ("quad8", vec![rows, 8]),
        ] {
            let ds = f.dataset(name).unwrap();
            assert_eq!(ds.chunk_shape().unwrap(), Some(chunk), "{name}");
            assert_eq!(ds.filters(), [2, 1], "{name}: shuffle, then deflate");
            assert!(ds.chunks().unwrap().len() > 1, "{name}");
        }
        let inlet = f.dataset("node_sets/inlet").unwrap();
        assert_eq!(inlet.filters(), [2, 1]);
        let path = dir.path().join(format!("c{int64}.h5"));
        write_mesh_with_sets(&path, &raw, &sets, int64, MeshLayout::Contiguous).unwrap();
        let f = hdf5_pure::File::open(&path).unwrap();
        for name in ["x", "y", "quad8", "node_sets/inlet"] {
            let ds = f.dataset(name).unwrap();
            assert!(!ds.is_chunked() && ds.filters().is_empty(), "{name}");
        }
        assert_eq!(
            read_mesh_with_sets(&path).unwrap(),
            (raw.clone(), sets.clone())
        );
    }
    assert_eq!(MeshLayout::default(), MeshLayout::Gzip);
    for l in [MeshLayout::Gzip, MeshLayout::Contiguous] {
        assert_eq!(MeshLayout::parse(l.name()), Some(l));
    }
    assert_eq!(MeshLayout::parse("lzf"), None);
}

/// Chunks compressed on many threads make the same file as on one, and the
/// file reads back the same on one thread as on many.
#[test]
fn threads_do_not_change_the_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let raw = quadflow::generate::generate(quadflow::generate::Geometry::Elbow90, 200_000).unwrap();
    let sets = quadflow::cli::mesh::inlet_outlet_sets(&raw);
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let four = rayon::ThreadPoolBuilder::new()
        .num_threads(4)
        .build()
        .unwrap();
    for layout in [MeshLayout::Gzip, MeshLayout::Contiguous] {
        let a = dir.path().join("a.h5");
        let b = dir.path().join("b.h5");
        one.install(|| write_mesh_with_sets(&a, &raw, &sets, false, layout))
            .unwrap();
        four.install(|| write_mesh_with_sets(&b, &raw, &sets, false, layout))
            .unwrap();
        assert!(fs::read(&a).unwrap() == fs::read(&b).unwrap(), "{layout:?}");
        let r1 = one.install(|| read_mesh_with_sets(&a)).unwrap();
        let r4 = four.install(|| read_mesh_with_sets(&a)).unwrap();
        assert!(r1 == r4 && r1.0 == raw && r1.1 == sets, "{layout:?}");
    }
}

/// A damaged compressed chunk is an error naming the file, never a panic
/// and never a mesh with wrong numbers (deflate streams carry a checksum).
#[test]
fn damaged_chunks_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let raw = quadflow::generate::generate(quadflow::generate::Geometry::Venturi, 100_000).unwrap();
    let path = dir.path().join("m.h5");
    write_mesh_with_sets(&path, &raw, &Default::default(), false, MeshLayout::Gzip).unwrap();
    let f = hdf5_pure::File::open(&path).unwrap();
    let chunks = f.dataset("y").unwrap().chunks().unwrap();
    drop(f);
    let original = fs::read(&path).unwrap();
    for c in &chunks {
        for frac in [0.2, 0.5, 0.9] {
            let mut bytes = original.clone();
            let at = (c.address + (c.storage_size as f64 * frac) as u64) as usize;
            bytes[at] ^= 0x5a;
            let bad = dir.path().join("bad.h5");
            fs::write(&bad, &bytes).unwrap();
            match read_mesh(&bad) {
                Err(e) => assert!(e.message.contains("corrupt"), "{e}"),
                Ok(m) => panic!(
                    "a damaged chunk at byte {at} read as a mesh (same: {})",
                    m == raw
                ),
            }
        }
    }
}

#[test]
fn big_mesh_round_trips_gzip() {
    if !common::require_shared_mesh("big_mesh_round_trips_gzip", "y_tube_195k") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mesh = read_mesh(&mesh_path("y_tube_195k")).unwrap();
    let path = dir.path().join("big.h5");
    write_mesh(&path, &mesh, false, true).unwrap();
    // Compressed: below the 195,853 * 16 + 48,607 * 32 = 4,689,872 raw bytes.
    let size = fs::metadata(&path).unwrap().len();
    assert!(size < 4_689_872, "{size} bytes");
    assert_eq!(read_mesh(&path).unwrap(), mesh);
}

#[test]
fn int64_indices_beyond_int32() {
    let dir = tempfile::tempdir().unwrap();
    let mesh = sample_mesh(1 << 33);
    let path = dir.path().join("wide.h5");
    write_mesh(&path, &mesh, true, false).unwrap();
    assert_eq!(read_mesh(&path).unwrap().quad8, mesh.quad8);
    // int32 cannot hold them: an error, and no file.
    let narrow = dir.path().join("narrow.h5");
    let err = write_mesh(&narrow, &mesh, false, false).unwrap_err();
    assert!(err.message.contains("int64"), "{err}");
    assert!(!narrow.exists());
}

// ---------------------------------------------------------------------------
// h5py reads what we write
// ---------------------------------------------------------------------------

const H5PY_RESULTS: &str = r#"
import sys, h5py
with h5py.File(sys.argv[1], "r") as f:
    for k in sorted(f):
        print("dset", k, f[k].shape, f[k].dtype)
    for k in sorted(f.attrs):
        v = f.attrs[k]
        print("attr", k, type(v).__name__, repr(v.item() if hasattr(v, "item") else v))
"#;

#[test]
fn h5py_reads_results() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.h5");
    let u = [0.0, 1.5, 3.25];
    let data = ResultsData {
        u: &u,
        vel: &[[1.0, 0.0], [0.0, -2.0]],
        abs_vel: &[1.0, 2.0],
        pressure: &[0.0, -1.5],
        attrs: vec![
            ("iterations".into(), Attr::Int(3741)),
            ("rtol".into(), Attr::Float(1e-8)),
            ("backend".into(), Attr::Str("serial".into())),
            ("note".into(), Attr::Str("Δp ✓".into())),
        ],
    };
    write_results(&path, &data).unwrap();
    let Some(out) = h5py(H5PY_RESULTS, &path) else {
        return;
    };
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "dset abs_vel (2,) float64",
            "dset pressure (2,) float64",
            "dset u (3,) float64",
            "dset vel (2, 2) float64",
            "attr backend str 'serial'",
            "attr iterations int64 3741",
            "attr note str 'Δp ✓'",
            "attr rtol float64 1e-08",
        ],
        "h5py output:\n{out}"
    );
}

const H5PY_MESH: &str = r#"
import sys, h5py
with h5py.File(sys.argv[1], "r") as f:
    for k in sorted(f):
        d = f[k]
        print(k, d.shape, d.dtype, d.compression, int(d[...].min()) if k == "quad8" else float(d[...].sum()))
"#;

#[test]
fn h5py_reads_meshes() {
    let dir = tempfile::tempdir().unwrap();
    let mesh = sample_mesh(1);
    let sx: f64 = mesh.x.iter().sum();
    let sy: f64 = mesh.y.iter().sum();
    for (int64, gzip) in [(false, false), (false, true), (true, true)] {
        let path = dir.path().join(format!("m_{int64}_{gzip}.h5"));
        write_mesh(&path, &mesh, int64, gzip).unwrap();
        let Some(out) = h5py(H5PY_MESH, &path) else {
            return;
        };
        let dtype = if int64 { "int64" } else { "int32" };
        let comp = if gzip { "gzip" } else { "None" };
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert_eq!(lines[0], format!("quad8 (4, 8) {dtype} {comp} 0"), "{out}");
        let x: Vec<&str> = lines[1].split(' ').collect();
        assert_eq!(&x[..4], ["x", "(21,)", "float64", comp], "{out}");
        assert!((x[4].parse::<f64>().unwrap() - sx).abs() < 1e-12, "{out}");
        let y: Vec<&str> = lines[2].split(' ').collect();
        assert_eq!(&y[..4], ["y", "(21,)", "float64", comp], "{out}");
        assert!((y[4].parse::<f64>().unwrap() - sy).abs() < 1e-300, "{out}");
    }
}

// ---------------------------------------------------------------------------
// Malformed input
// ---------------------------------------------------------------------------

fn expect_err(path: &Path, needles: &[&str]) -> H5Error {
    let err = read_mesh(path).expect_err("malformed file must not load");
    assert_eq!(err.path, path.display().to_string());
    let text = err.to_string();
    eprintln!("{text}");
    assert!(text.contains(&path.display().to_string()), "{text}");
    for n in needles {
        assert!(text.contains(n), "expected {n:?} in: {text}");
    }
    err
}

/// Writes a file with the given datasets through hdf5-pure directly.
fn craft(path: &Path, build: impl FnOnce(&mut hdf5_pure::FileBuilder)) {
    let mut b = hdf5_pure::FileBuilder::new();
    build(&mut b);
    b.write(path).unwrap();
}

#[test]
fn missing_file() {
    let dir = tempfile::tempdir().unwrap();
    expect_err(&dir.path().join("nope.h5"), &["file not found"]);
    let r = read_reference(&dir.path().join("nope.h5")).unwrap_err();
    assert!(r.message.contains("file not found"));
}

#[test]
fn text_file_renamed_h5() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.h5");
    fs::write(&path, "x,y\n0,0\n1,0\n").unwrap();
    expect_err(&path, &["not an HDF5 file"]);
    let empty = dir.path().join("empty.h5");
    fs::write(&empty, "").unwrap();
    expect_err(&empty, &["not an HDF5 file"]);
}

#[test]
fn truncated_files() {
    let dir = tempfile::tempdir().unwrap();
    for (name, keep) in [
        ("y_tube_201", 1000),
        ("venturi_341", 1000),
        ("y_tube_201", 200),
        ("y_tube_195k", 2_000_000),
        ("s_duct_16k", 100_000),
    ] {
        if !has_mesh(name) {
            common::skip(
                "truncated_files",
                &format!("{name} (from ../shared) absent"),
            );
            continue;
        }
        let bytes = fs::read(mesh_path(name)).unwrap();
        let path = dir.path().join(format!("{name}_{keep}.h5"));
        fs::write(&path, &bytes[..keep]).unwrap();
        expect_err(&path, &["not a readable HDF5 file (truncated or corrupt?)"]);
    }
    // A reference file cut short fails the same way.
    let bytes = fs::read(reference_path("y_tube_201")).unwrap();
    let path = dir.path().join("ref_cut.h5");
    fs::write(&path, &bytes[..1000]).unwrap();
    let err = read_reference(&path).unwrap_err();
    assert!(err.message.contains("truncated or corrupt"), "{err}");
}

#[test]
fn corrupted_bytes_never_panic() {
    // Flip bytes of a small real mesh at pseudo-random places: every outcome
    // must be a value, never a panic escaping read_mesh.
    let dir = tempfile::tempdir().unwrap();
    let original = fs::read(mesh_path("y_tube_201")).unwrap();
    let path = dir.path().join("fuzz.h5");
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut failures = 0;
    for _ in 0..300 {
        let mut bytes = original.clone();
        for _ in 0..1 + next() % 4 {
            let at = (next() % bytes.len() as u64) as usize;
            bytes[at] = next() as u8;
        }
        fs::write(&path, &bytes).unwrap();
        if read_mesh(&path).is_err() {
            failures += 1;
        }
    }
    eprintln!("{failures} of 300 corrupted meshes were refused");

    let original = fs::read(reference_path("y_tube_201")).unwrap();
    for _ in 0..100 {
        let mut bytes = original.clone();
        let at = (next() % bytes.len() as u64) as usize;
        bytes[at] = next() as u8;
        fs::write(&path, &bytes).unwrap();
        let _ = read_reference(&path);
        let _ = read_results_attrs(&path);
    }
}

#[test]
fn missing_quad8() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no_quad8.h5");
    craft(&path, |b| {
        b.create_dataset("x").with_f64_data(&[0.0, 1.0]);
        b.create_dataset("y").with_f64_data(&[0.0, 1.0]);
    });
    expect_err(
        &path,
        &["missing dataset \"quad8\"; a mesh file needs x, y and quad8 at the root"],
    );
    let path = dir.path().join("no_x.h5");
    craft(&path, |b| {
        b.create_dataset("y").with_f64_data(&[0.0, 1.0]);
        b.create_dataset("quad8")
            .with_i32_data(&[0; 8])
            .with_shape(&[1, 8]);
    });
    expect_err(&path, &["missing dataset \"x\""]);
    // A mesh file is not a results file.
    let err = read_results(&mesh_path("y_tube_201")).unwrap_err();
    assert!(err.message.contains("missing dataset \"u\""), "{err}");
}

#[test]
fn quad8_with_seven_columns() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seven.h5");
    craft(&path, |b| {
        b.create_dataset("x").with_f64_data(&[0.0; 7]);
        b.create_dataset("y").with_f64_data(&[0.0; 7]);
        b.create_dataset("quad8")
            .with_i32_data(&[0, 1, 2, 3, 4, 5, 6])
            .with_shape(&[1, 7]);
    });
    expect_err(&path, &["\"quad8\"", "[1, 7]", "[E, 8]"]);
    let path = dir.path().join("flat.h5");
    craft(&path, |b| {
        b.create_dataset("x").with_f64_data(&[0.0; 8]);
        b.create_dataset("y").with_f64_data(&[0.0; 8]);
        b.create_dataset("quad8")
            .with_i32_data(&[0, 1, 2, 3, 4, 5, 6, 7]);
    });
    expect_err(&path, &["\"quad8\"", "[8]", "[E, 8]"]);
}

#[test]
fn x_y_length_mismatch_and_rank() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("xy.h5");
    craft(&path, |b| {
        b.create_dataset("x").with_f64_data(&[0.0; 9]);
        b.create_dataset("y").with_f64_data(&[0.0; 8]);
        b.create_dataset("quad8")
            .with_i32_data(&[0; 8])
            .with_shape(&[1, 8]);
    });
    expect_err(
        &path,
        &["\"x\" (9 values)", "\"y\" (8 values)", "differ in length"],
    );
    let path = dir.path().join("x2d.h5");
    craft(&path, |b| {
        b.create_dataset("x")
            .with_f64_data(&[0.0; 8])
            .with_shape(&[4, 2]);
        b.create_dataset("y").with_f64_data(&[0.0; 8]);
        b.create_dataset("quad8")
            .with_i32_data(&[0; 8])
            .with_shape(&[1, 8]);
    });
    expect_err(&path, &["dataset \"x\"", "[4, 2]", "1-D"]);
    // write_mesh refuses the mismatch itself and writes nothing.
    let bad = RawMesh {
        x: vec![0.0; 3],
        y: vec![0.0; 2],
        quad8: vec![],
    };
    let out = dir.path().join("bad.h5");
    assert!(write_mesh(&out, &bad, false, false).is_err());
    assert!(!out.exists());
}

#[test]
fn float_quad8() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("float_quad8.h5");
    craft(&path, |b| {
        b.create_dataset("x").with_f64_data(&[0.0; 8]);
        b.create_dataset("y").with_f64_data(&[0.0; 8]);
        b.create_dataset("quad8")
            .with_f64_data(&[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])
            .with_shape(&[1, 8]);
    });
    expect_err(&path, &["\"quad8\"", "floating-point", "int32 or int64"]);
}

// ---------------------------------------------------------------------------
// All or nothing
// ---------------------------------------------------------------------------

fn tiny_results() -> ResultsData<'static> {
    ResultsData {
        u: &[1.0, 2.0, 3.0],
        vel: &[[0.5, 0.5]],
        abs_vel: &[0.7],
        pressure: &[0.1],
        attrs: vec![("iterations".into(), Attr::Int(1))],
    }
}

#[test]
fn write_into_missing_directory_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no/such/dir/out.h5");
    let err = write_results(&path, &tiny_results()).unwrap_err();
    assert!(err.message.contains("does not exist"), "{err}");
    assert!(!path.exists());
    assert!(!dir.path().join("no").exists());
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    let err = write_mesh(&path, &sample_mesh(1), false, true).unwrap_err();
    assert!(err.message.contains("does not exist"), "{err}");
}

#[test]
fn failed_rename_leaves_no_temp_file() {
    // The target is a non-empty directory: the temporary file is written in
    // full, the rename over the target fails, and the temporary goes away.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.h5");
    fs::create_dir(&path).unwrap();
    fs::write(path.join("keep"), "x").unwrap();
    let err = write_results(&path, &tiny_results()).unwrap_err();
    assert!(err.message.contains("into place"), "{err}");
    no_temp_files(dir.path());
    assert!(path.join("keep").exists());
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn invalid_results_leave_old_file_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.h5");
    write_results(&path, &tiny_results()).unwrap();
    let before = fs::read(&path).unwrap();

    let mut bad = tiny_results();
    bad.pressure = &[];
    let err = write_results(&path, &bad).unwrap_err();
    assert!(err.message.contains("pressure"), "{err}");

    let mut dup = tiny_results();
    dup.attrs.push(("iterations".into(), Attr::Int(2)));
    let err = write_results(&path, &dup).unwrap_err();
    assert!(err.message.contains("twice"), "{err}");

    assert_eq!(fs::read(&path).unwrap(), before);
    no_temp_files(dir.path());
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);

    // And nothing at all when there was no file before.
    let fresh = dir.path().join("fresh.h5");
    assert!(write_results(&fresh, &bad).is_err());
    assert!(!fresh.exists());
}

#[test]
fn huge_declared_shape_is_refused_before_allocating() {
    // A chunked dataset whose chunks were never written reads as fill values,
    // so a tiny file can declare 2^40 nodes; reading it must be refused, not
    // attempted. hdf5-pure will not write such a file, h5py will.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.h5");
    let script = r#"
import sys, h5py
with h5py.File(sys.argv[1], "w") as f:
    f.create_dataset("x", shape=(2**40,), dtype="f8", chunks=(2**20,))
    f["y"] = [0.0]
    f.create_dataset("quad8", data=[[0] * 8], dtype="i4")
"#;
    if h5py(script, &path).is_none() {
        return;
    }
    assert!(fs::metadata(&path).unwrap().len() < 100_000);
    expect_err(
        &path,
        &["dataset \"x\"", "more data than the file can hold"],
    );
}
