//! Meshes read a block at a time and results written by several
//! processes, without MPI (the processes here are threads, agreeing
//! through a barrier):
//!
//! - `H5Blocks` reads any block of a mesh file, contiguous or gzip, as
//!   the whole-file reader reads it, and no more than its share: the
//!   block's bytes for a contiguous file, the chunks holding it for a
//!   chunked one;
//! - the parallel results writer writes the file the one-process writer
//!   writes, byte for byte, from any number of processes; a failure on
//!   one process leaves no file;
//! - the XDMF index of a results file opens in meshio with the right cell
//!   type and shapes (skips without meshio, saying so);
//! - `--vtu` on a mesh above `VTU_MAX_NODES` nodes is refused, pointing
//!   to `--xdmf`.

mod common;

use quadflow::generate::{self, Geometry};
use quadflow::io::h5::{
    self, Attr, H5Blocks, MeshLayout, NodeSets, ResultsData, ResultsMesh, par::BlockRows,
};
use quadflow::run;
use quadflow::scene::Scene;
use quadflow_systems::pipeline::{MeshBlocks, ProcessGroup, RunConfig};
use std::path::Path;
use std::sync::{Arc, Barrier, Mutex};

/// `total r / parts .. total (r + 1) / parts`.
fn block(total: usize, parts: usize, r: usize) -> std::ops::Range<usize> {
    total * r / parts..total * (r + 1) / parts
}

/// Every block of `path` (for 1 to 4 readers) as the whole read; the
/// bytes each reads at most `share` times its share of the whole data
/// (node indices `index_bytes` wide).
fn blocks_match(path: &Path, share: f64, index_bytes: usize) {
    let (raw, sets) = h5::read_mesh_with_sets(path).unwrap();
    let (n, ne) = (raw.x.len(), raw.quad8.len());
    let data_bytes = (16 * n + 8 * index_bytes * ne) as f64;
    for p in 1..=4 {
        for r in 0..p {
            let b = H5Blocks::open(path, "m").unwrap();
            assert_eq!(b.size(), (n, ne));
            let (nb, eb) = (block(n, p, r), block(ne, p, r));
            assert_eq!(
                b.elements(eb.start, eb.len()).unwrap(),
                raw.quad8[eb.clone()]
            );
            let (x, y) = b.coordinates(nb.start, nb.len()).unwrap();
            assert_eq!((&x[..], &y[..]), (&raw.x[nb.clone()], &raw.y[nb.clone()]));
            let read = b.bytes_read() as f64;
            assert!(
                read <= share * data_bytes / p as f64 + 2e6,
                "{} P={p} rank {r}: read {read} bytes of {data_bytes}",
                path.display()
            );
            // scattered nodes: every 97th, and a run
            let ids: Vec<u32> = (0..n as u32).step_by(97).chain([n as u32 - 1]).collect();
            let mut ids = ids;
            ids.dedup();
            let (sx, sy) = b.scattered(&ids).unwrap();
            for (k, &v) in ids.iter().enumerate() {
                assert_eq!((sx[k], sy[k]), (raw.x[v as usize], raw.y[v as usize]));
            }
            assert_eq!(b.node_sets().unwrap(), sets);
        }
    }
}

#[test]
fn blocks_of_mesh_files_in_both_layouts() {
    let dir = tempfile::tempdir().unwrap();
    // the reference meshes (contiguous), and gzip copies with node sets
    for e in std::fs::read_dir(common::data().join("meshes")).unwrap() {
        let p = e.unwrap().path();
        blocks_match(&p, 1.01, 4);
        let (raw, _) = h5::read_mesh_with_sets(&p).unwrap();
        let mut sets = NodeSets::new();
        sets.insert("some".into(), (0..raw.x.len() as u32).step_by(3).collect());
        let g = dir.path().join("g.h5");
        h5::write_mesh_with_sets(&g, &raw, &sets, false, MeshLayout::Gzip).unwrap();
        blocks_match(&g, 1.0, 4);
    }
    // a mesh of many chunks, int64, both layouts: a chunked block reads
    // the chunks that hold it (compressed: well under its share)
    let raw = generate::generate(Geometry::Venturi, 300_000).unwrap();
    for (layout, share) in [(MeshLayout::Contiguous, 1.01), (MeshLayout::Gzip, 0.5)] {
        let f = dir.path().join(format!("v-{}.h5", layout.name()));
        h5::write_mesh_with_sets(&f, &raw, &NodeSets::new(), true, layout).unwrap();
        blocks_match(&f, share, 8);
    }
}

#[test]
fn block_reads_name_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let e = H5Blocks::open(&dir.path().join("none.h5"), "x")
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("none.h5") && e.contains("not found"), "{e}");
    let p = dir.path().join("r.h5");
    let raw = generate::generate(Geometry::StraightChannel, 300).unwrap();
    h5::write_results(
        &p,
        &ResultsData {
            u: &raw.x,
            vel: &[[0.0; 2]],
            abs_vel: &[0.0],
            pressure: &[0.0],
            attrs: vec![],
        },
    )
    .unwrap();
    let e = H5Blocks::open(&p, "x").err().unwrap().to_string();
    assert!(e.contains("missing dataset \"x\""), "{e}");
}

/// Processes of a group as threads: agreement and sharing through a
/// barrier.
struct Threads {
    rank: usize,
    size: usize,
    shared: Arc<Shared>,
}

/// What the in-process ranks share: a barrier, each rank's failure, the
/// bytes written.
type Shared = (Barrier, Mutex<Vec<Option<String>>>, Mutex<Vec<u8>>);

impl Threads {
    fn group(p: usize) -> Vec<Threads> {
        let shared = Arc::new((
            Barrier::new(p),
            Mutex::new(vec![None; p]),
            Mutex::new(Vec::new()),
        ));
        (0..p)
            .map(|rank| Threads {
                rank,
                size: p,
                shared: shared.clone(),
            })
            .collect()
    }
}

impl ProcessGroup for Threads {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn agree(&self, mine: Option<String>) -> Result<(), String> {
        let (b, msgs, _) = &*self.shared;
        msgs.lock().unwrap()[self.rank] = mine;
        b.wait();
        let first = msgs.lock().unwrap().iter().find_map(|m| m.clone());
        b.wait();
        first.map_or(Ok(()), Err)
    }
    fn share(&self, root: usize, bytes: Vec<u8>) -> Vec<u8> {
        let (b, _, shared) = &*self.shared;
        if self.rank == root {
            *shared.lock().unwrap() = bytes;
        }
        b.wait();
        let got = shared.lock().unwrap().clone();
        b.wait();
        got
    }
    fn split(
        &self,
        _: Option<&Arc<quadflow_systems::mesh::Mesh>>,
        _: &RunConfig,
    ) -> Result<Arc<quadflow_systems::mesh::Mesh>, String> {
        unreachable!("not in these tests")
    }
    fn join(&self, _: &mut bevy_ecs::world::World) -> Result<bool, String> {
        unreachable!("not in these tests")
    }
}

/// Writes `raw`'s fields (made up) and mesh from `p` threads; the file.
fn write_on(
    p: usize,
    path: &Path,
    raw: &Arc<quadflow::io::RawMesh>,
    spoil: Option<usize>,
) -> Vec<Result<(), String>> {
    let handles: Vec<_> = Threads::group(p)
        .into_iter()
        .map(|g| {
            let raw = raw.clone();
            let path = path.to_path_buf();
            std::thread::spawn(move || {
                let (n, ne) = (raw.x.len(), raw.quad8.len());
                let (nb, eb) = (block(n, g.size, g.rank), block(ne, g.size, g.rank));
                let u: Vec<f64> = nb.clone().map(|i| i as f64 * 0.5).collect();
                let vel: Vec<[f64; 2]> = eb.clone().map(|e| [e as f64, -(e as f64)]).collect();
                let s: Vec<f64> = eb.clone().map(|e| e as f64 + 0.25).collect();
                let pr: Vec<f64> = eb.clone().map(|e| 1e5 - e as f64).collect();
                let mut q: Vec<[u32; 8]> = raw.quad8[eb.clone()]
                    .iter()
                    .map(|e| e.map(|v| v as u32))
                    .collect();
                if spoil == Some(g.rank) {
                    q[0][0] = 3_000_000_000;
                }
                let rows = BlockRows {
                    first_node: nb.start,
                    u: &u,
                    first_element: eb.start,
                    vel: &vel,
                    abs_vel: &s,
                    pressure: &pr,
                    mesh: Some((&raw.x[nb.clone()], &raw.y[nb.clone()], &q)),
                };
                let attrs = vec![
                    ("iterations".to_string(), Attr::Int(7)),
                    ("backend".to_string(), Attr::Str("test".into())),
                ];
                h5::par::write_results_blocks(&path, &g, n, ne, &rows, &attrs)
                    .map_err(|e| e.to_string())
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

#[test]
fn every_process_writes_its_rows_of_the_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let raw = Arc::new(generate::generate(Geometry::Venturi, 20_000).unwrap());
    let (n, ne) = (raw.x.len(), raw.quad8.len());
    // the one-process file of the same data
    let whole = dir.path().join("whole.h5");
    let u: Vec<f64> = (0..n).map(|i| i as f64 * 0.5).collect();
    let vel: Vec<[f64; 2]> = (0..ne).map(|e| [e as f64, -(e as f64)]).collect();
    let s: Vec<f64> = (0..ne).map(|e| e as f64 + 0.25).collect();
    let pr: Vec<f64> = (0..ne).map(|e| 1e5 - e as f64).collect();
    let q: Vec<[u32; 8]> = raw.quad8.iter().map(|e| e.map(|v| v as u32)).collect();
    h5::write_results_with(
        &whole,
        &ResultsData {
            u: &u,
            vel: &vel,
            abs_vel: &s,
            pressure: &pr,
            attrs: vec![
                ("iterations".to_string(), Attr::Int(7)),
                ("backend".to_string(), Attr::Str("test".into())),
            ],
        },
        Some(&ResultsMesh {
            x: &raw.x,
            y: &raw.y,
            quad8: &q,
        }),
    )
    .unwrap();
    let want = std::fs::read(&whole).unwrap();
    for p in [1, 2, 3, 4] {
        let f = dir.path().join(format!("p{p}.h5"));
        for r in write_on(p, &f, &raw, None) {
            r.unwrap();
        }
        assert!(
            std::fs::read(&f).unwrap() == want,
            "P={p}: not the one-process file"
        );
        let back = h5::read_results(&f).unwrap();
        assert_eq!(back.u, u);
        // the file is sparse where nobody wrote: nothing was left out
        std::fs::remove_file(&f).unwrap();
    }
    // one process fails: every one says so, no file, no temporary
    let f = dir.path().join("bad.h5");
    let out = write_on(3, &f, &raw, Some(2));
    for r in &out {
        let e = r.as_ref().unwrap_err();
        assert!(e.contains("bad.h5") && e.contains("2^31"), "{e}");
    }
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["whole.h5"], "{left:?}");
}

#[test]
fn xdmf_index_opens_in_meshio() {
    let dir = tempfile::tempdir().unwrap();
    let (r, x) = (dir.path().join("r.h5"), dir.path().join("r.xmf"));
    let text = format!(
        "[mesh]\nfile = {:?}\n[output]\nresults = {:?}\nxdmf = {:?}\n",
        common::mesh_path("venturi_341").display().to_string(),
        r.display().to_string(),
        x.display().to_string()
    );
    let plan = Scene::parse(&text, "<test>").unwrap().plan().unwrap();
    let result = run::run(&plan, None).unwrap();
    result.write_results(&r, &plan.outputs, None).unwrap();
    let printed = result.write_outputs(&plan.outputs).unwrap();
    assert!(printed.contains("r.xmf"), "{printed}");
    // the results carry the mesh the index points at
    let xdmf = std::fs::read_to_string(&x).unwrap();
    assert!(
        xdmf.contains(">r.h5:/xy<") && xdmf.contains("Quadrilateral_8"),
        "{xdmf}"
    );
    // quadflow plot draws from the mesh the results carry
    let (mx, my, mq) = h5::read_results_mesh(&r).unwrap().expect("the mesh");
    assert_eq!((mx, my), (result.mesh.x.clone(), result.mesh.y.clone()));
    assert!(
        mq.iter()
            .zip(&result.mesh.elements)
            .all(|(a, b)| *a == b.map(i64::from))
    );
    let png = dir.path().join("u.png");
    quadflow::cli::plot::plot_command(&quadflow::cli::plot::PlotArgs {
        results: r.clone(),
        field: "pressure".into(),
        out: png.clone(),
        mesh: None,
        width: 320,
        height: 200,
    })
    .unwrap();
    assert!(std::fs::metadata(&png).unwrap().len() > 1000);
    if !common::need_python("xdmf_index_opens_in_meshio", "meshio") {
        return;
    }
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import meshio, sys\n\
             m = meshio.read(sys.argv[1])\n\
             c = m.cells[0]\n\
             print(c.type, c.data.shape[0], c.data.shape[1], m.points.shape[0], m.points.shape[1],\n\
                   m.point_data['u'].shape[0], m.cell_data['abs_vel'][0].shape[0],\n\
                   m.cell_data['pressure'][0].shape[0], float(m.point_data['u'].max()))",
        )
        .arg(&x)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = String::from_utf8_lossy(&out.stdout);
    let (n, e) = (result.nodes(), result.elements());
    let umax = result.u_range().1;
    assert_eq!(
        got.trim(),
        format!("quad8 {e} 8 {n} 2 {n} {e} {e} {umax}"),
        "meshio read {got}"
    );
}

/// ParaView's own XDMF reader (`pvbatch`, Xdmf3ReaderS) opens the index:
/// quadratic quads (VTK cell type 23), `u` per point, speed and pressure
/// per cell. Skips, saying so, without ParaView (`apt-get install
/// paraview python3-paraview` on Debian).
#[test]
fn xdmf_index_opens_in_paraview() {
    let have = std::process::Command::new("pvbatch")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        common::skip(
            "xdmf_index_opens_in_paraview",
            "ParaView's pvbatch is not installed (apt-get install paraview python3-paraview)",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (r, x) = (dir.path().join("r.h5"), dir.path().join("r.xmf"));
    let text = format!(
        "[mesh]\ngenerate = \"elbow_90\"\nnodes = 3000\n[output]\nresults = {:?}\nxdmf = {:?}\n",
        r.display().to_string(),
        x.display().to_string()
    );
    let plan = Scene::parse(&text, "<test>").unwrap().plan().unwrap();
    let result = run::run(&plan, None).unwrap();
    result.write_results(&r, &plan.outputs, None).unwrap();
    result.write_outputs(&plan.outputs).unwrap();
    let script = dir.path().join("pv.py");
    std::fs::write(
        &script,
        "import sys\n\
         from paraview.simple import Xdmf3ReaderS, servermanager\n\
         r = Xdmf3ReaderS(FileName=[sys.argv[1]])\n\
         r.UpdatePipeline()\n\
         d = servermanager.Fetch(r)\n\
         b = d.GetBlock(0) if d.IsA('vtkMultiBlockDataSet') else d\n\
         pd, cd = b.GetPointData(), b.GetCellData()\n\
         types = sorted({b.GetCellType(i) for i in range(b.GetNumberOfCells())})\n\
         print('cells', b.GetNumberOfCells(), 'points', b.GetNumberOfPoints(), 'types', types,\n\
               'u', pd.GetArray('u').GetNumberOfTuples(),\n\
               'abs_vel', cd.GetArray('abs_vel').GetNumberOfTuples(),\n\
               'pressure', cd.GetArray('pressure').GetNumberOfTuples(),\n\
               'umax', round(pd.GetArray('u').GetRange()[1], 9))\n",
    )
    .unwrap();
    let out = std::process::Command::new("pvbatch")
        .arg(&script)
        .arg(&x)
        .env_remove("PYTHONPATH")
        .output()
        .unwrap();
    let got = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{got}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (n, e) = (result.nodes(), result.elements());
    let want = format!(
        "cells {e} points {n} types [23] u {n} abs_vel {e} pressure {e} umax {}",
        (result.u_range().1 * 1e9).round() / 1e9
    );
    assert!(
        got.lines().any(|l| l.trim() == want),
        "pvbatch printed\n{got}\nwanted {want}"
    );
}

#[test]
fn vtu_above_the_limit_says_to_use_xdmf() {
    let plan = Scene::parse(
        "[mesh]\ngenerate = \"venturi\"\n[output]\nvtu = \"big.vtu\"\n",
        "<test>",
    )
    .unwrap()
    .plan()
    .unwrap();
    run::check_outputs(&plan, run::VTU_MAX_NODES).unwrap();
    let e = run::check_outputs(&plan, run::VTU_MAX_NODES + 1)
        .unwrap_err()
        .to_string();
    assert!(e.contains("big.vtu") && e.contains("--xdmf"), "{e}");
}
