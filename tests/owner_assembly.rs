//! The parallel executor's owner-computes direct-CSR assembly against the
//! serial executor's assembly: the matrix and the load vector bit for bit
//! (compared as bit patterns, not within a tolerance), with 1 to 8 threads,
//! on the reference meshes, on lattices numbered in order and at random,
//! on the six generated geometries, with a constant and a varying source.

mod common;

use common::{data, has_mesh, mesh_path, reference_meshes, shared, skip};
use quadflow::generate::{self, Geometry};
use quadflow::systems::components::{LinearSystem, Source};
use quadflow::systems::element::NODES;
use quadflow::systems::mesh::{Mesh, OrientationPolicy};
use quadflow::systems::parallel::{AssemblyStrategy, Parallel};
use quadflow::systems::pipeline::Phase;
use quadflow::systems::{PhasePlan, Pipeline, Registry, RunConfig};
use std::sync::Arc;

/// The system assembled with `source` by the serial executor (`threads`
/// `None`) or by the parallel one with `threads` threads, direct-csr-owner.
fn assemble(mesh: &Arc<Mesh>, source: &Source, threads: Option<usize>) -> LinearSystem {
    let mut reg = Registry::with_serial();
    let plan = match threads {
        None => PhasePlan::uniform("serial"),
        Some(threads) => {
            reg.register(Parallel {
                threads,
                strategy: AssemblyStrategy::DirectCsrOwner,
            });
            PhasePlan::uniform("parallel")
        }
    };
    let mut cfg = RunConfig::default();
    cfg.physics.source = source.clone();
    let mut p = Pipeline::new(mesh.clone(), cfg, &reg, &plan).unwrap();
    p.run_through(Phase::Assembly).unwrap();
    p.world.resource::<LinearSystem>().clone()
}

fn bits(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Serial against parallel with 1 to 8 threads, bit for bit.
fn check(what: &str, mesh: Mesh, sources: &[Source]) {
    let mesh = Arc::new(mesh);
    for source in sources {
        let s = assemble(&mesh, source, None);
        assert!(s.k.val.iter().any(|v| *v != 0.0), "{what}: empty matrix");
        let loaded = !matches!(source, Source::Constant(v) if *v == 0.0);
        assert_eq!(loaded, s.f.iter().any(|v| *v != 0.0), "{what}: load");
        for threads in 1..=8 {
            let p = assemble(&mesh, source, Some(threads));
            let tag = format!("{what}, source {source:?}, {threads} threads");
            assert_eq!(p.k.rowptr, s.k.rowptr, "{tag}: rows");
            assert_eq!(p.k.col, s.k.col, "{tag}: columns");
            if let Some(i) = (0..s.k.val.len()).find(|&i| p.k.val[i] != s.k.val[i]) {
                panic!("{tag}: value {i}: {} vs {}", p.k.val[i], s.k.val[i]);
            }
            assert_eq!(bits(&p.k.val), bits(&s.k.val), "{tag}: values");
            assert_eq!(bits(&p.f), bits(&s.f), "{tag}: load vector");
            assert_eq!(p.nnz, s.nnz, "{tag}: nnz");
        }
    }
}

fn sources() -> Vec<Source> {
    vec![
        Source::Constant(0.0),
        Source::Constant(0.7),
        Source::Function(Arc::new(|x, y| (3.0 * x).sin() + x * y)),
    ]
}

/// A lattice of `nx x ny` elements on `[0, 3] x [0, 1]`, interior nodes
/// moved a little (curved elements), numbered in order or, with
/// `shuffle`, nodes and elements at random (fixed seed; no locality, like
/// the reference meshes).
fn lattice(nx: usize, ny: usize, shuffle: bool) -> Mesh {
    let m = Mesh::lattice(nx, ny, 3.0, 1.0, |x, y| {
        let bump = x * (3.0 - x) * y * (1.0 - y);
        (
            x + 0.1 * bump * (7.0 * y).sin(),
            y + 0.1 * bump * (5.0 * x).cos(),
        )
    });
    let (mut x, mut y, mut els) = (m.x, m.y, m.elements);
    if shuffle {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut perm = |n: usize| {
            let mut p: Vec<u32> = (0..n as u32).collect();
            for i in (1..n).rev() {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                p.swap(i, (seed % (i as u64 + 1)) as usize);
            }
            p
        };
        let (pn, pe) = (perm(x.len()), perm(els.len()));
        let (mut x2, mut y2) = (vec![0.0; x.len()], vec![0.0; y.len()]);
        for (v, &to) in pn.iter().enumerate() {
            x2[to as usize] = x[v];
            y2[to as usize] = y[v];
        }
        let mut els2 = vec![[0u32; NODES]; els.len()];
        for (e, &to) in pe.iter().enumerate() {
            els2[to as usize] = els[e].map(|v| pn[v as usize]);
        }
        (x, y, els) = (x2, y2, els2);
    }
    let els: Vec<[i64; NODES]> = els.iter().map(|e| e.map(i64::from)).collect();
    Mesh::new(x, y, &els, OrientationPolicy::Refuse).unwrap()
}

#[test]
fn owner_computes_assembly_is_serial_bit_for_bit_on_lattices() {
    for (nx, ny) in [(1, 1), (2, 1), (30, 10), (97, 23)] {
        for shuffle in [false, true] {
            check(
                &format!("lattice {nx} x {ny}, shuffled {shuffle}"),
                lattice(nx, ny, shuffle),
                &sources(),
            );
        }
    }
}

#[test]
fn owner_computes_assembly_is_serial_bit_for_bit_on_generated_geometries() {
    for g in Geometry::ALL {
        let raw = generate::generate(g, 6000).unwrap();
        let mesh = Mesh::new(raw.x, raw.y, &raw.quad8, OrientationPolicy::Refuse).unwrap();
        check(g.name(), mesh, &sources()[..2]);
    }
}

#[test]
fn owner_computes_assembly_is_serial_bit_for_bit_on_the_reference_meshes() {
    let names = reference_meshes();
    assert!(!names.is_empty(), "no reference meshes in {:?}", data());
    if !has_mesh("y_tube_195k") {
        skip(
            "owner_computes_assembly_is_serial_bit_for_bit_on_the_reference_meshes (y_tube_195k)",
            &format!(
                "{:?} is absent; checked the meshes of tests/data only",
                shared()
            ),
        );
    }
    for name in names {
        let (raw, _) = quadflow::io::read_any_mesh(&mesh_path(&name)).unwrap();
        // s_duct_16k is clockwise: renumbered as a run would
        let mesh = Mesh::new(raw.x, raw.y, &raw.quad8, OrientationPolicy::Fix).unwrap();
        check(&name, mesh, &sources()[..2]);
    }
}
