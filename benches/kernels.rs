//! Criterion benchmarks of the hot kernels, so regressions show up:
//! the element matrix, the scatter into CSR, one symmetric SpMV pass, one
//! whole CG iteration (serial and 2-thread parallel), on a generated venturi
//! of about 100,000 nodes.
//!
//! `cargo bench --bench kernels`

use criterion::{Criterion, criterion_group, criterion_main};
use quadflow::generate::{Geometry, generate};
use quadflow::systems::boundary::{self, BoundaryConfig};
use quadflow::systems::common::apply_boundary;
use quadflow::systems::element;
use quadflow::systems::exec::Team;
use quadflow::systems::mesh::{Mesh, OrientationPolicy};
use quadflow::systems::parallel::ParallelKernels;
use quadflow::systems::solver::{CgKernels, EquilibratedSystem, SerialKernels};
use quadflow::systems::sparse::{self, SymCsr};
use std::hint::black_box;
use std::sync::Arc;

fn setup() -> (Mesh, SymCsr, Vec<f64>) {
    let raw = generate(Geometry::Venturi, 100_000).unwrap();
    let mesh = Mesh::new(raw.x, raw.y, &raw.quad8, OrientationPolicy::Refuse).unwrap();
    let mut k = SymCsr::pattern(mesh.nodes(), &mesh.elements).unwrap();
    for e in 0..mesh.elements.len() {
        let qd = element::quad_data(&mesh.coords(e)).unwrap();
        let ke = element::stiffness_sym(&qd);
        for (s, v) in sparse::slot_map(&k, &mesh.elements[e]).iter().zip(ke) {
            k.val[*s as usize] += v;
        }
    }
    let mut f = vec![0.0; k.n];
    let cfg = BoundaryConfig::default();
    let res = boundary::resolve(&mesh, &cfg).unwrap();
    apply_boundary(&mesh, &cfg, &res, &mut k, &mut f);
    (mesh, k, f)
}

fn kernels(c: &mut Criterion) {
    let (mesh, k, f) = setup();
    let coords: Vec<_> = (0..mesh.elements.len()).map(|e| mesh.coords(e)).collect();
    let qds: Vec<_> = coords
        .iter()
        .map(|c| element::quad_data(c).unwrap())
        .collect();
    let slots: Vec<_> = mesh
        .elements
        .iter()
        .map(|el| sparse::slot_map(&k, el))
        .collect();

    c.bench_function("quadrature (all elements)", |b| {
        b.iter(|| {
            coords
                .iter()
                .map(|c| element::quad_data(black_box(c)).unwrap().wdet[0])
                .sum::<f64>()
        })
    });
    c.bench_function("element stiffness (all elements)", |b| {
        b.iter(|| {
            qds.iter()
                .map(|q| element::stiffness_sym(black_box(q))[0])
                .sum::<f64>()
        })
    });
    let mut val = vec![0.0; k.stored()];
    c.bench_function("element stiffness + scatter (all elements)", |b| {
        b.iter(|| {
            for (q, s) in qds.iter().zip(&slots) {
                let ke = element::stiffness_sym(q);
                for (slot, v) in s.iter().zip(ke) {
                    val[*slot as usize] += v;
                }
            }
        })
    });
    c.bench_function("sparsity pattern", |b| {
        b.iter(|| {
            SymCsr::pattern(mesh.nodes(), black_box(&mesh.elements))
                .unwrap()
                .stored()
        })
    });

    let sys = EquilibratedSystem::new(&k, &f).unwrap();
    let n = sys.a.n();
    let x0: Vec<f64> = (0..n).map(|i| (i as f64 * 1e-3).sin()).collect();
    let team1 = Arc::new(Team::new(1, "bench").unwrap());
    let team2 = Arc::new(Team::new(2, "bench").unwrap());
    let mut kernels: Vec<(&str, Box<dyn CgKernels>)> = vec![
        ("serial", Box::new(SerialKernels::default())),
        ("parallel 1 thread", Box::new(ParallelKernels::new(team1))),
        ("parallel 2 threads", Box::new(ParallelKernels::new(team2))),
    ];
    for (name, kern) in kernels.iter_mut() {
        let (mut x, mut p, mut q, mut r) = (vec![0.0; n], x0.clone(), vec![0.0; n], sys.b.clone());
        c.bench_function(&format!("CG pass A (SpMV + updates), {name}"), |b| {
            b.iter(|| kern.pass_a(&sys.a, &sys.inv_diag, &r, 0.5, 1e-9, &mut x, &mut p, &mut q))
        });
        c.bench_function(&format!("CG iteration (pass A + pass B), {name}"), |b| {
            b.iter(|| {
                let pap = kern.pass_a(&sys.a, &sys.inv_diag, &r, 0.5, 1e-9, &mut x, &mut p, &mut q);
                kern.pass_b(&sys.inv_diag, 1e-9 / pap.abs().max(1.0), &q, &mut r)
            })
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = kernels
}
criterion_main!(benches);
