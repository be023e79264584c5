//! The solvers beyond the reference CG: AMG-CG and sparse Cholesky.

mod common;
use common::*;
use quadflow::generate::{self, Geometry};
use quadflow::run::{self, LoadedMesh, load_mesh};
use quadflow::scene::Scene;
use quadflow::systems::amg::{
    self, AmgSettings, AmgSystem, Csr, Hierarchy, Smoother, Strength, Unscaled,
};
use quadflow::systems::components::LinearSystem;
use quadflow::systems::mesh::{Mesh, OrientationPolicy};
use quadflow::systems::pipeline::Pipeline;
use quadflow::systems::solver::{self, CgSettings, EquilibratedSystem, Exec};
use quadflow::systems::sparse::SymCsr;
use std::sync::Arc;
use std::time::Instant;

/// A loaded generated venturi of about `n` nodes.
fn venturi(n: usize) -> LoadedMesh {
    let t0 = Instant::now();
    let raw = generate::generate(Geometry::Venturi, n).unwrap();
    let mesh = Mesh::new(raw.x, raw.y, &raw.quad8, OrientationPolicy::Fix).unwrap();
    LoadedMesh {
        mesh: Arc::new(mesh),
        origin: format!("generated venturi ~{n}"),
        seconds: t0.elapsed().as_secs_f64(),
    }
}

/// A scene for an already loaded mesh (the mesh source is not used by
/// `run_on`).
fn scene(extra: &str) -> Scene {
    Scene::parse(&format!("[mesh]\ngenerate = 'venturi'\n{extra}"), "<test>").unwrap()
}

/// The assembled system of a mesh (serial backend; the solve phase runs
/// one AMG-CG iteration, unconverged results kept).
fn assembled(mesh: &LoadedMesh) -> (SymCsr, Vec<f64>) {
    let sc = scene("[solver]\nmethod = 'amg-cg'\nmax_iterations = 1\nallow_unconverged = true\n");
    let mut p = Pipeline::new(
        mesh.mesh.clone(),
        sc.run_config().unwrap(),
        &run::registry(&sc).unwrap(),
        &sc.plan(),
    )
    .unwrap();
    p.run().unwrap();
    let sys = p.world.resource::<LinearSystem>();
    (sys.k.clone(), sys.f.clone())
}

fn pool2() -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap()
}

/// One AMG-CG solve from its pieces, timed: returns (iterations,
/// equilibrate s, hierarchy s, cg s, levels, complexity, true residual,
/// sizes).
#[allow(clippy::type_complexity)]
fn timed_amg(
    k: &SymCsr,
    f: &[f64],
    s: &AmgSettings,
    ones: bool,
    exec: Exec,
) -> (usize, f64, f64, f64, usize, f64, f64, Vec<usize>) {
    let t0 = Instant::now();
    let mut sys = AmgSystem::new(exec, k, f).unwrap();
    let t1 = Instant::now();
    let a = std::mem::take(&mut sys.a);
    let b = if ones {
        vec![1.0; a.nrows()]
    } else {
        sys.near_null_space()
    };
    let h = Hierarchy::new(exec, a, b, s).unwrap();
    let t2 = Instant::now();
    let weights = sys.weights();
    let out = amg::amg_pcg(
        exec,
        &h,
        &sys.b,
        sys.b_norm,
        Some(Unscaled {
            weights: &weights,
            f_norm: sys.f_norm,
            true_residual: &|x: &[f64]| solver::true_relative_residual(k, f, &sys.unscale(x)),
        }),
        &CgSettings {
            rtol: 1e-10,
            max_iter: 500,
        },
        &mut |_, _| {},
    )
    .unwrap();
    let t3 = Instant::now();
    let u = sys.unscale(&out.x);
    let res = solver::true_relative_residual(k, f, &u);
    (
        out.iterations,
        (t1 - t0).as_secs_f64(),
        (t2 - t1).as_secs_f64(),
        (t3 - t2).as_secs_f64(),
        h.levels(),
        h.operator_complexity(),
        res,
        h.sizes(),
    )
}

/// Parameter sweep for the AMG defaults (prints; run by hand):
/// `cargo test --release --test solvers amg_sweep -- --ignored --nocapture`
#[test]
#[ignore]
fn amg_sweep() {
    let which = std::env::var("SWEEP_MESH").unwrap_or_else(|_| "y_tube_195k".into());
    let mesh = if let Some(n) = which.strip_prefix("venturi") {
        venturi(n.parse().unwrap())
    } else {
        load_mesh(&scene_for_mesh(&which, "")).unwrap()
    };
    let (k, f) = assembled(&mesh);
    let grid = std::env::var("SWEEP").unwrap_or_else(|_| "default".into());
    let base = AmgSettings::default();
    let mut cases: Vec<(String, AmgSettings, bool)> = vec![("default".into(), base, false)];
    if grid != "default" {
        cases.push(("B = 1".into(), base, true));
        let neg = AmgSettings {
            strength: Strength::Magnitude,
            ..base
        };
        for (tag, b) in [("", base), ("mag ", neg)] {
            for theta in [0.02, 0.05, 0.12] {
                cases.push((
                    format!("{tag}theta {theta}"),
                    AmgSettings { theta, ..b },
                    false,
                ));
            }
            for degree in [1, 3] {
                cases.push((
                    format!("{tag}cheb {degree}"),
                    AmgSettings { degree, ..b },
                    false,
                ));
            }
            for omega_scale in [1.0, 1.6] {
                cases.push((
                    format!("{tag}omega {omega_scale}"),
                    AmgSettings { omega_scale, ..b },
                    false,
                ));
            }
            cases.push((
                format!("{tag}2+2 sweeps"),
                AmgSettings {
                    pre_sweeps: 2,
                    post_sweeps: 2,
                    ..b
                },
                false,
            ));
            cases.push((format!("{tag}default"), b, false));
        }
        for cheb_ratio in [10.0, 60.0] {
            cases.push((
                format!("cheb ratio {cheb_ratio}"),
                AmgSettings { cheb_ratio, ..base },
                false,
            ));
        }
        for degree in [1, 2] {
            cases.push((
                format!("jacobi x{degree}"),
                AmgSettings {
                    smoother: Smoother::Jacobi,
                    degree,
                    ..base
                },
                false,
            ));
        }
        for max_coarse in [100, 2000] {
            cases.push((
                format!("max_coarse {max_coarse}"),
                AmgSettings { max_coarse, ..base },
                false,
            ));
        }
    }
    let pool = pool2();
    eprintln!(
        "{which}: {} rows; case: iterations, equilibrate s, hierarchy s, CG s (serial | 2 threads), levels, complexity, true residual, sizes",
        k.n
    );
    for (name, s, ones) in cases {
        let ser = timed_amg(&k, &f, &s, ones, Exec::Serial);
        let par = pool.install(|| timed_amg(&k, &f, &s, ones, Exec::Parallel));
        eprintln!(
            "{name:>16}: {:3} it, {:.3} + {:.3} + {:.3} s | {:.3} + {:.3} + {:.3} s, {} levels, oc {:.3}, res {:.2e}, {:?}",
            ser.0, ser.1, ser.2, ser.3, par.1, par.2, par.3, ser.4, ser.5, ser.6, ser.7
        );
        assert_eq!(ser.0, par.0);
    }
}

#[test]
#[ignore]
fn probe_rho() {
    let mesh = venturi(10_000);
    let (k, f) = assembled(&mesh);
    let sys = EquilibratedSystem::new(&k, &f).unwrap();
    let a = Csr::from_sym(sys.a.get());
    let inv: Vec<f64> = a.diagonal().iter().map(|d| 1.0 / d).collect();
    for steps in [5, 10, 20, 50, 100] {
        eprintln!(
            "lanczos {steps}: {}",
            amg::spectral_radius(Exec::Serial, &a, &inv, steps)
        );
    }
    // row stats
    let mut pos = 0;
    let mut neg = 0;
    for i in 0..a.nrows() {
        let (c, v) = a.row(i);
        for (&j, &x) in c.iter().zip(v) {
            if j as usize != i {
                if x > 0.0 { pos += 1 } else { neg += 1 }
            }
        }
    }
    eprintln!("off-diagonal: {pos} positive, {neg} negative");
    let (c, v) = a.row(a.nrows() / 2);
    eprintln!("a row: {:?}", c.iter().zip(v).collect::<Vec<_>>());
}

#[test]
#[ignore]
fn probe_equilibrate() {
    use quadflow::systems::ordering;
    let mesh = load_mesh(&scene_for_mesh("y_tube_195k", "")).unwrap();
    let (k, f) = assembled(&mesh);
    for _ in 0..3 {
        let t0 = Instant::now();
        let sys = EquilibratedSystem::new(&k, &f).unwrap();
        let t1 = Instant::now();
        let a = Csr::from_sym(sys.a.get());
        let t2 = Instant::now();
        let (ptr, adj) = ordering::adjacency(sys.a.get());
        let t3 = Instant::now();
        let perm = ordering::rcm(sys.a.n(), &ptr, &adj);
        let t4 = Instant::now();
        let mut inv = vec![0u32; perm.len()];
        for (n, &o) in perm.iter().enumerate() {
            inv[o as usize] = n as u32;
        }
        let _p = ordering::permute(sys.a.get(), &perm, &inv);
        let t5 = Instant::now();
        eprintln!(
            "equilibrate {:.3}, to_full {:.3}, adjacency {:.3}, rcm {:.3}, permute {:.3} ({} nnz)",
            (t1 - t0).as_secs_f64(),
            (t2 - t1).as_secs_f64(),
            (t3 - t2).as_secs_f64(),
            (t4 - t3).as_secs_f64(),
            (t5 - t4).as_secs_f64(),
            a.nnz()
        );
    }
}

#[test]
#[ignore]
fn probe_amg_system() {
    let which = std::env::var("SWEEP_MESH").unwrap_or_else(|_| "y_tube_195k".into());
    let mesh = if let Some(n) = which.strip_prefix("venturi") {
        venturi(n.parse().unwrap())
    } else {
        load_mesh(&scene_for_mesh(&which, "")).unwrap()
    };
    let (k, f) = assembled(&mesh);
    for _ in 0..2 {
        let t0 = Instant::now();
        let full = k.to_full();
        let t1 = Instant::now();
        let sys = AmgSystem::new(Exec::Serial, &k, &f).unwrap();
        let t2 = Instant::now();
        let pool = pool2();
        let _sys2 = pool.install(|| AmgSystem::new(Exec::Parallel, &k, &f).unwrap());
        let t3 = Instant::now();
        eprintln!(
            "to_full {:.3} s, AmgSystem serial {:.3} s, parallel {:.3} s ({} rows, {})",
            (t1 - t0).as_secs_f64(),
            (t2 - t1).as_secs_f64(),
            (t3 - t2).as_secs_f64(),
            sys.rows.len(),
            full.1.len()
        );
    }
}
