//! h5py (the HDF5 C library) against quadflow's HDF5 files, both ways:
//!
//! - h5py opens every kind of file quadflow writes (meshes of about 2,000,
//!   300,000 and 1.3 million nodes, int32 and int64 connectivity, gzip and
//!   contiguous, with node sets; results files) and reads every dataset and
//!   every attribute in full; each is compared value by value (bit for bit)
//!   with what was written, and the file must hold nothing else.
//! - quadflow reads the files h5py writes: contiguous, chunked with gzip (with
//!   and without shuffle, h5py's own chunk shapes, chunks of more than 65,535
//!   rows), other filters and byte orders, node sets of several integer types.
//!
//! Each test skips, saying so (and in `$QUADFLOW_SKIP_LOG`), when python3
//! with h5py and numpy is missing (`tests/run` installs them).

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;

use quadflow::cli::mesh::inlet_outlet_sets;
use quadflow::generate::{self, Geometry};
use quadflow::io::h5::{
    Attr, MeshLayout, NodeSets, RawMesh, ResultsData, read_mesh, read_mesh_with_sets,
    write_mesh_with_sets, write_results,
};
use serde_json::{Value, json};

/// Whether python3 can import h5py and numpy; when not, says that `test`
/// skips.
fn have_h5py(test: &str) -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import h5py, numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        common::skip(
            test,
            "python3 with h5py and numpy is needed (pip install h5py)",
        );
    }
    ok
}

fn python(script: &str, args: &[&Path]) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "python3 failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

// ---------------------------------------------------------------------------
// h5py reads what quadflow writes
// ---------------------------------------------------------------------------

/// What a file must hold, for [`CHECK`]: its datasets (values as raw
/// little-endian bytes in files beside the manifest) and root attributes.
#[derive(Default)]
struct Expected {
    datasets: Vec<Value>,
    attrs: Vec<Value>,
    files: Vec<(String, Vec<u8>)>,
}

impl Expected {
    /// Dataset `name` of NumPy dtype `dtype` (`<f8`, `<i4`, `<i8`), shape
    /// `shape`, stored as `layout`, holding `bytes`.
    fn dataset(&mut self, name: &str, dtype: &str, shape: &[u64], layout: &str, bytes: Vec<u8>) {
        let file = format!("d{}.bin", self.files.len());
        self.datasets.push(json!({
            "name": name, "dtype": dtype, "shape": shape, "layout": layout, "file": file,
        }));
        self.files.push((file, bytes));
    }

    fn f64s(&mut self, name: &str, shape: &[u64], layout: &str, v: &[f64]) {
        let bytes = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.dataset(name, "<f8", shape, layout, bytes);
    }

    fn ints(&mut self, name: &str, shape: &[u64], layout: &str, int64: bool, v: &[i64]) {
        let bytes = if int64 {
            v.iter().flat_map(|x| x.to_le_bytes()).collect()
        } else {
            v.iter()
                .flat_map(|&x| i32::try_from(x).unwrap().to_le_bytes())
                .collect()
        };
        self.dataset(
            name,
            if int64 { "<i8" } else { "<i4" },
            shape,
            layout,
            bytes,
        );
    }

    fn attr(&mut self, name: &str, a: &Attr) {
        self.attrs.push(match a {
            Attr::Int(v) => json!({"name": name, "kind": "int", "value": v}),
            Attr::Float(v) => {
                json!({"name": name, "kind": "float", "bits": format!("{:016x}", v.to_bits())})
            }
            Attr::Str(s) => json!({"name": name, "kind": "str", "value": s}),
        });
    }

    /// Runs [`CHECK`] on `path`, returning its report.
    fn check(&self, path: &Path) -> String {
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes) in &self.files {
            fs::write(dir.path().join(name), bytes).unwrap();
        }
        let manifest = json!({"datasets": self.datasets, "attrs": self.attrs});
        fs::write(dir.path().join("manifest.json"), manifest.to_string()).unwrap();
        let out = python(CHECK, &[path, dir.path()]);
        assert!(out.ends_with("OK\n"), "{out}");
        out
    }
}

/// Opens the file with h5py, lists every object and attribute in it, reads
/// each dataset in full and compares it byte for byte (dtype and shape too)
/// with the manifest's, checks its storage (gzip: chunked, shuffle and
/// deflate; contiguous: no chunks, no filters), and compares every root
/// attribute (floats bit for bit). Anything missing or extra fails.
const CHECK: &str = r#"
import sys, json, struct, h5py, numpy as np
path, mdir = sys.argv[1], sys.argv[2]
m = json.load(open(mdir + "/manifest.json"))
with h5py.File(path, "r") as f:
    datasets, attrs = [], sorted(f.attrs)
    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            datasets.append(name)
        assert len(obj.attrs) == 0, f"unexpected attributes on {name}: {list(obj.attrs)}"
    f.visititems(visit)
    want = sorted(d["name"] for d in m["datasets"])
    assert sorted(datasets) == want, f"datasets {sorted(datasets)} != {want}"
    for d in m["datasets"]:
        ds = f[d["name"]]
        got = ds[...]
        exp = np.fromfile(mdir + "/" + d["file"], dtype=d["dtype"]).reshape(d["shape"])
        assert got.dtype == exp.dtype, f'{d["name"]}: dtype {got.dtype} != {exp.dtype}'
        assert got.shape == exp.shape, f'{d["name"]}: shape {got.shape} != {exp.shape}'
        assert got.tobytes() == exp.tobytes(), f'{d["name"]}: values differ'
        if d["layout"] == "gzip":
            assert ds.chunks is not None and ds.compression == "gzip" and ds.shuffle, d["name"]
        else:
            assert ds.chunks is None and ds.compression is None and not ds.shuffle, d["name"]
        print("dataset", d["name"], got.shape, got.dtype, ds.chunks, ds.compression)
    names = sorted(a["name"] for a in m["attrs"])
    assert attrs == names, f"attributes {attrs} != {names}"
    for a in m["attrs"]:
        v = f.attrs[a["name"]]
        if a["kind"] == "int":
            assert isinstance(v, np.integer) and int(v) == a["value"], (a, v)
        elif a["kind"] == "float":
            assert isinstance(v, np.floating), (a, v)
            assert struct.pack("<d", float(v)).hex() == bytes.fromhex(a["bits"])[::-1].hex(), (a, v)
        else:
            assert isinstance(v, str) and v == a["value"], (a, v)
        print("attr", a["name"], type(v).__name__)
print("OK")
"#;

/// A generated venturi of about `nodes` nodes with the `inlet` and `outlet`
/// sets and a large set `even` (every other node: several chunks).
fn venturi(nodes: usize) -> (RawMesh, NodeSets) {
    let raw = generate::generate(Geometry::Venturi, nodes).unwrap();
    let mut sets = inlet_outlet_sets(&raw);
    sets.insert("even".into(), (0..raw.x.len() as u32).step_by(2).collect());
    (raw, sets)
}

/// Writes `raw` and `sets` in every combination of `combos`, and has h5py
/// read each file in full.
fn h5py_reads_mesh(raw: &RawMesh, sets: &NodeSets, combos: &[(bool, MeshLayout)]) {
    let dir = tempfile::tempdir().unwrap();
    let n = raw.x.len() as u64;
    for &(int64, layout) in combos {
        let path = dir.path().join(format!("m_{int64}_{}.h5", layout.name()));
        write_mesh_with_sets(&path, raw, sets, int64, layout).unwrap();
        let mut e = Expected::default();
        let lay = layout.name();
        e.f64s("x", &[n], lay, &raw.x);
        e.f64s("y", &[n], lay, &raw.y);
        let flat = raw.quad8.as_flattened();
        e.ints("quad8", &[raw.quad8.len() as u64, 8], lay, int64, flat);
        for (name, members) in sets {
            let v: Vec<i64> = members.iter().map(|&i| i64::from(i)).collect();
            e.ints(
                &format!("node_sets/{name}"),
                &[v.len() as u64],
                lay,
                int64,
                &v,
            );
        }
        let report = e.check(&path);
        assert_eq!(
            report.contains("dataset node_sets/inlet"),
            !sets.is_empty(),
            "{report}"
        );
        // and quadflow reads back what it wrote
        let (back, back_sets) = read_mesh_with_sets(&path).unwrap();
        assert_eq!(&back, raw);
        assert_eq!(&back_sets, sets);
    }
}

const ALL: [(bool, MeshLayout); 4] = [
    (false, MeshLayout::Gzip),
    (false, MeshLayout::Contiguous),
    (true, MeshLayout::Gzip),
    (true, MeshLayout::Contiguous),
];

#[test]
fn h5py_reads_small_meshes() {
    if !have_h5py("h5py_reads_small_meshes") {
        return;
    }
    let (raw, sets) = venturi(2000);
    h5py_reads_mesh(&raw, &sets, &ALL);
    // Awkward values survive bit for bit; a mesh without sets has no group.
    let mut raw = raw;
    raw.x[0] = -0.0;
    raw.y[1] = f64::MIN_POSITIVE / 8.0;
    raw.y[2] = f64::MAX;
    h5py_reads_mesh(&raw, &NodeSets::new(), &ALL[..2]);
}

#[test]
fn h5py_reads_300k_node_meshes() {
    if !have_h5py("h5py_reads_300k_node_meshes") {
        return;
    }
    let (raw, sets) = venturi(300_000);
    assert!(raw.x.len() > 65_536 * 4, "several chunks per dataset");
    h5py_reads_mesh(&raw, &sets, &ALL);
}

#[test]
fn h5py_reads_1_3_million_node_meshes() {
    if !have_h5py("h5py_reads_1_3_million_node_meshes") {
        return;
    }
    let (raw, sets) = venturi(1_300_000);
    h5py_reads_mesh(
        &raw,
        &sets,
        &[(false, MeshLayout::Gzip), (true, MeshLayout::Contiguous)],
    );
}

#[test]
fn h5py_reads_results_files() {
    if !have_h5py("h5py_reads_results_files") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for elements in [0usize, 3, 150_000] {
        let nodes = elements * 3 + 2;
        let f = |i: usize, s: f64| ((i as f64) * s).sin() / 3.0;
        let u: Vec<f64> = (0..nodes).map(|i| f(i, 0.37)).collect();
        let vel: Vec<[f64; 2]> = (0..elements).map(|e| [f(e, 1.1), -f(e, 0.9)]).collect();
        let abs_vel: Vec<f64> = vel.iter().map(|v| v[0].hypot(v[1])).collect();
        let pressure: Vec<f64> = abs_vel.iter().map(|s| 0.5 * (1.0 - s * s)).collect();
        let attrs = vec![
            ("iterations".to_string(), Attr::Int(3741)),
            ("converged".into(), Attr::Int(1)),
            ("matrix_nnz".into(), Attr::Int(i64::MAX)),
            ("negative".into(), Attr::Int(-7)),
            ("rtol".into(), Attr::Float(1e-8)),
            ("tiny".into(), Attr::Float(f64::MIN_POSITIVE / 3.0)),
            ("minus_zero".into(), Attr::Float(-0.0)),
            ("infinite".into(), Attr::Float(f64::INFINITY)),
            ("backend".into(), Attr::Str("parallel".into())),
            (
                "scene".into(),
                Attr::Str("[mesh]\nfile = \"Δp ✓.h5\"\n".into()),
            ),
            ("empty".into(), Attr::Str(String::new())),
        ];
        let data = ResultsData {
            u: &u,
            vel: &vel,
            abs_vel: &abs_vel,
            pressure: &pressure,
            attrs: attrs.clone(),
        };
        let path = dir.path().join(format!("r{elements}.h5"));
        write_results(&path, &data).unwrap();
        let mut e = Expected::default();
        let ne = elements as u64;
        e.f64s("u", &[nodes as u64], "contiguous", &u);
        e.f64s("vel", &[ne, 2], "contiguous", vel.as_flattened());
        e.f64s("abs_vel", &[ne], "contiguous", &abs_vel);
        e.f64s("pressure", &[ne], "contiguous", &pressure);
        for (name, a) in &attrs {
            e.attr(name, a);
        }
        e.check(&path);
    }
}

// ---------------------------------------------------------------------------
// quadflow reads what h5py writes
// ---------------------------------------------------------------------------

/// The mesh [`WRITE`] writes, of `n` nodes and `e` elements: values exact in
/// binary, so Python and Rust compute the same bits.
fn formula_mesh(n: usize, e: usize) -> RawMesh {
    RawMesh {
        x: (0..n).map(|i| i as f64 / 1024.0 - 3.5).collect(),
        y: (0..n).map(|i| (i % 977) as f64 * 0.5).collect(),
        quad8: (0..e)
            .map(|j| std::array::from_fn(|k| ((j * 8 + k * 3) % n) as i64))
            .collect(),
    }
}

/// Writes the mesh of [`formula_mesh`] into one file per storage variant:
/// `N E DIR` on the command line; prints the file names.
const WRITE: &str = r#"
import sys, h5py, numpy as np
n, e, d = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
i = np.arange(n)
x = i / 1024.0 - 3.5
y = (i % 977) * 0.5
j = np.arange(e)[:, None] * 8 + np.arange(8)[None, :] * 3
q = (j % n)
sets = {"inlet": np.array([5, 3, 3, 0, n - 1]), "all": np.arange(n)[::-1]}
variants = {
    "contiguous_i4": dict(qtype="<i4"),
    "contiguous_i8": dict(qtype="<i8"),
    "gzip_auto": dict(qtype="<i4", kw=dict(compression="gzip")),
    "gzip_shuffle_big_chunks": dict(qtype="<i8", kw=dict(compression="gzip", shuffle=True),
                                    chunks1=(100_000,), chunks2=(20_000, 8)),
    "gzip_rows_of_one_column": dict(qtype="<i4", kw=dict(compression="gzip", compression_opts=9),
                                    chunks1=(4096,), chunks2=(4096, 1)),
    "lzf_fletcher32": dict(qtype="<i4", kw=dict(compression="lzf", fletcher32=True)),
    "big_endian": dict(qtype=">i4", xtype=">f8"),
    "unsigned": dict(qtype="<u8", stype="<u4"),
}
for name, v in variants.items():
    kw = v.get("kw", {})
    with h5py.File(f"{d}/{name}.h5", "w") as f:
        for k, a in (("x", x), ("y", y)):
            f.create_dataset(k, data=a.astype(v.get("xtype", "<f8")), chunks=v.get("chunks1", True if kw else None), **kw)
        f.create_dataset("quad8", data=q.astype(v["qtype"]), chunks=v.get("chunks2", True if kw else None), **kw)
        g = f.create_group("node_sets")
        for k, s in sets.items():
            g.create_dataset(k, data=s.astype(v.get("stype", v["qtype"])), **kw)
    print(name)
"#;

#[test]
fn quadflow_reads_what_h5py_writes() {
    if !have_h5py("quadflow_reads_what_h5py_writes") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // 200,001 nodes: more than one chunk of 100,000 rows, and partial chunks.
    let (n, e) = (200_001, 50_001);
    let out = Command::new("python3")
        .args(["-c", WRITE, &n.to_string(), &e.to_string()])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(names.len(), 8, "{names:?}");
    let want = formula_mesh(n, e);
    let want_sets = BTreeMap::from([
        ("all".to_string(), (0..n as u32).collect::<Vec<_>>()),
        ("inlet".to_string(), vec![0, 3, 5, n as u32 - 1]),
    ]);
    for name in &names {
        let path = dir.path().join(format!("{name}.h5"));
        let (raw, sets) = read_mesh_with_sets(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(raw == want, "{name}: the mesh differs");
        assert_eq!(sets, want_sets, "{name}");
        // the mesh reader alone agrees
        assert!(read_mesh(&path).unwrap() == want, "{name}");
    }
}
