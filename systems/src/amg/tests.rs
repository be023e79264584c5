//! Tests of the AMG setup, cycle and solve.

use super::*;
use crate::exec::Exec;
use crate::solver::{CgSettings, true_relative_residual};
use crate::sparse::SymCsr;

/// 2D 5-point Laplacian on an `m x m` grid with the first row of nodes
/// penalised (Dirichlet), plus a decoupled row.
/// 5-point graph Laplacian on an `m x m` grid, first row of nodes
/// held by a penalty, plus one decoupled row (also used by the GPU
/// AMG tests).
pub(crate) fn lap2d(m: usize) -> SymCsr {
    let n = m * m;
    let mut rowptr = vec![0u32];
    let mut col = vec![];
    let mut val = vec![];
    for i in 0..n {
        let (x, y) = (i % m, i / m);
        col.push(i as u32);
        let deg = [x > 0, x + 1 < m, y > 0, y + 1 < m]
            .iter()
            .filter(|b| **b)
            .count() as f64;
        val.push(deg + if y == 0 { 1e12 } else { 0.0 });
        if x + 1 < m {
            col.push(i as u32 + 1);
            val.push(-1.0);
        }
        if y + 1 < m {
            col.push((i + m) as u32);
            val.push(-1.0);
        }
        rowptr.push(col.len() as u32);
    }
    col.push(n as u32);
    val.push(3.0);
    rowptr.push(col.len() as u32);
    SymCsr {
        n: n + 1,
        rowptr,
        col,
        val,
    }
}

fn rhs(n: usize) -> Vec<f64> {
    (0..n).map(|i| ((i * 7) % 11) as f64 - 5.0).collect()
}

#[test]
fn aggregation_covers_connected_nodes_and_skips_isolated() {
    // path 0-1-2-3-4-5, isolated 6
    let ptr = vec![0, 1, 3, 5, 7, 9, 10, 10];
    let adj = vec![1, 0, 2, 1, 3, 2, 4, 3, 5, 4];
    let (agg, n) = aggregate(&ptr, &adj);
    assert_eq!(agg[6], NONE);
    assert!(agg[..6].iter().all(|&a| (a as usize) < n));
    assert_eq!(agg[0], agg[1]);
    assert!((2..=3).contains(&n), "{agg:?}");
}

#[test]
fn matmul_and_transpose_match_dense() {
    let a = Csr::new(2, 3, vec![0, 2, 3], vec![2, 0, 1], vec![1.0, 2.0, 3.0]);
    let b = a.transpose();
    assert_eq!((b.nrows(), b.ncols()), (3, 2));
    let c = a.matmul(Exec::Serial, &b); // A A^T = [[5, 0], [0, 9]]
    let mut dense = [[0.0; 2]; 2];
    for i in 0..2 {
        let (cc, vv) = c.row(i);
        for (&j, &v) in cc.iter().zip(vv) {
            dense[i][j as usize] += v;
        }
    }
    assert_eq!(dense, [[5.0, 0.0], [0.0, 9.0]]);
}

#[test]
fn spectral_radius_estimates() {
    let k = lap2d(1); // trivial, just exercise n = 2
    let a = Csr::from_sym(&k);
    let inv = a.diagonal().iter().map(|d| 1.0 / d).collect::<Vec<_>>();
    let r = spectral_radius(Exec::Serial, &a, &inv, 10);
    assert!((r - 1.0).abs() < 1e-9, "{r}");
    let k = lap2d(30);
    let a = Csr::from_sym(&k);
    let inv = a.diagonal().iter().map(|d| 1.0 / d).collect::<Vec<_>>();
    let r = spectral_radius(Exec::Serial, &a, &inv, 15);
    assert!(r > 1.7 && r < 2.0, "{r}");
}

#[test]
fn amg_cg_solves_serial_and_parallel_identically() {
    let k = lap2d(60);
    let f = rhs(k.n);
    let amg = AmgSettings {
        max_coarse: 50,
        ..Default::default()
    };
    let cg = CgSettings {
        rtol: 1e-10,
        max_iter: 200,
    };
    let (us, ss) = solve_amg_cg(&k, &f, &cg, &amg, Exec::Serial, &mut |_, _| true).unwrap();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let (up, sp) = pool
        .install(|| solve_amg_cg(&k, &f, &cg, &amg, Exec::Parallel, &mut |_, _| true))
        .unwrap();
    assert!(ss.converged && ss.levels >= 3, "{ss:?}");
    assert!(ss.iterations < 30, "{ss:?}");
    assert_eq!(ss.iterations, sp.iterations);
    assert_eq!(us, up);
    // on a team (the parallel backend's executor), any size
    for t in [2, 3] {
        let team = crate::exec::Team::new(t, "test").unwrap();
        let (ut, st) = team
            .install(|| solve_amg_cg(&k, &f, &cg, &amg, Exec::Parallel, &mut |_, _| true))
            .unwrap();
        assert_eq!(ss.iterations, st.iterations, "team of {t}");
        assert!(
            us.iter().zip(&ut).all(|(a, b)| a.to_bits() == b.to_bits()),
            "team of {t}: u not bitwise equal to serial"
        );
    }
    assert!(true_relative_residual(&k, &f, &us) < 1e-9);
    assert_eq!(ss.decoupled_rows, 1);
}

#[test]
fn smoothers_and_sweeps_all_converge() {
    let k = lap2d(40);
    let f = rhs(k.n);
    let cg = CgSettings {
        rtol: 1e-10,
        max_iter: 300,
    };
    for (smoother, degree, sweeps) in [
        (Smoother::Chebyshev, 1, 1),
        (Smoother::Chebyshev, 3, 2),
        (Smoother::Jacobi, 1, 1),
        (Smoother::Jacobi, 2, 2),
    ] {
        let amg = AmgSettings {
            smoother,
            degree,
            pre_sweeps: sweeps,
            post_sweeps: sweeps,
            max_coarse: 30,
            ..Default::default()
        };
        let (u, st) = solve_amg_cg(&k, &f, &cg, &amg, Exec::Serial, &mut |_, _| true).unwrap();
        assert!(st.converged, "{smoother:?} {degree} {sweeps}: {st:?}");
        assert!(true_relative_residual(&k, &f, &u) < 1e-9);
    }
}

#[test]
fn decoupled_only_and_zero_rhs_systems() {
    // diagonal matrix: every row decoupled, solved directly
    let k = SymCsr {
        n: 3,
        rowptr: vec![0, 1, 2, 3],
        col: vec![0, 1, 2],
        val: vec![2.0, 4.0, 8.0],
    };
    let cg = CgSettings::default();
    let amg = AmgSettings::default();
    let (u, st) = solve_amg_cg(
        &k,
        &[2.0, 2.0, 2.0],
        &cg,
        &amg,
        Exec::Serial,
        &mut |_, _| true,
    )
    .unwrap();
    assert_eq!(u, vec![1.0, 0.5, 0.25]);
    assert!(st.converged && st.iterations == 0 && st.decoupled_rows == 3);
    // zero right-hand side: zero solution at once
    let k = lap2d(10);
    let (u, st) = solve_amg_cg(&k, &vec![0.0; k.n], &cg, &amg, Exec::Serial, &mut |_, _| {
        true
    })
    .unwrap();
    assert!(st.converged && st.iterations == 0);
    assert!(u.iter().all(|v| *v == 0.0));
}

#[test]
fn iteration_cap_is_reported_as_not_converged() {
    let k = lap2d(40);
    let f = rhs(k.n);
    let cg = CgSettings {
        rtol: 1e-14,
        max_iter: 2,
    };
    let amg = AmgSettings {
        max_coarse: 30,
        ..Default::default()
    };
    let (_, st) = solve_amg_cg(&k, &f, &cg, &amg, Exec::Serial, &mut |_, _| true).unwrap();
    assert!(!st.converged);
    assert_eq!(st.iterations, 2);
}

#[test]
fn indefinite_matrix_is_reported() {
    let mut k = lap2d(30);
    for i in 0..k.n - 1 {
        let s = k.diag_slot(i);
        if k.val[s] < 1e6 {
            k.val[s] = 0.3;
        }
    }
    let f = rhs(k.n);
    let err = solve_amg_cg(
        &k,
        &f,
        &CgSettings::default(),
        &AmgSettings {
            max_coarse: 30,
            ..Default::default()
        },
        Exec::Serial,
        &mut |_, _| true,
    )
    .unwrap_err();
    assert!(err.to_string().contains("not positive definite"), "{err}");
}

#[test]
fn parallel_transpose_and_products_equal_serial() {
    // a tall rectangular matrix with scattered columns, as P is
    let (nr, nc) = (20_000, 1_500);
    let mut rowptr = vec![0usize];
    let (mut col, mut val) = (vec![], vec![]);
    for i in 0..nr {
        for k in 0..(i % 5) {
            col.push(((i * 31 + k * 977) % nc) as u32);
            val.push((i + k) as f64 * 0.25 - 7.0);
        }
        rowptr.push(col.len());
    }
    let p = Csr::new(nr, nc, rowptr, col, val);
    let want = p.transpose();
    let team = crate::exec::Team::new(3, "test").unwrap();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    for got in [
        team.install(|| p.transpose_with(Exec::Parallel)),
        pool.install(|| p.transpose_with(Exec::Parallel)),
    ] {
        assert_eq!(got.rowptr(), want.rowptr());
        assert_eq!(got.cols(), want.cols());
        assert_eq!(got.vals(), want.vals());
    }
    let rp = team.install(|| want.matmul(Exec::Parallel, &p));
    let rs = want.matmul(Exec::Serial, &p);
    assert_eq!(rp.rowptr(), rs.rowptr());
    assert_eq!(rp.cols(), rs.cols());
    assert!(
        rp.vals()
            .iter()
            .zip(rs.vals())
            .all(|(a, b)| a.to_bits() == b.to_bits())
    );
    let d = team.install(|| rs.diagonal_with(Exec::Parallel));
    assert_eq!(d, rs.diagonal());
}

#[test]
fn narrow_index_gives_the_same_products_and_refuses_wide_rows() {
    use super::cycle::Op;
    let k = lap2d(90);
    let a = Csr::from_sym(&k);
    let nw = a.narrow(Exec::Serial).expect("a grid Laplacian is narrow");
    let team = crate::exec::Team::new(2, "test").unwrap();
    assert!(team.install(|| a.narrow(Exec::Parallel)).is_some());
    let x: Vec<f64> = (0..a.ncols()).map(|i| (i as f64 * 0.71).cos()).collect();
    let v32: Vec<f32> = a.vals().iter().map(|&v| v as f32).collect();
    let (mut y1, mut y2) = (vec![0.0; a.nrows()], vec![0.0; a.nrows()]);
    let plain = Op {
        a: &a,
        v: &v32[..],
        nw: None,
    };
    let narrow = Op {
        a: &a,
        v: &v32[..],
        nw: Some(&nw),
    };
    plain.spmv(Exec::Serial, &x, &mut y1);
    team.install(|| narrow.spmv(Exec::Parallel, &x, &mut y2));
    assert!(y1.iter().zip(&y2).all(|(p, q)| p.to_bits() == q.to_bits()));
    // a row spanning more than 2^16 columns
    let w = Csr::new(
        2,
        70_000,
        vec![0, 2, 3],
        vec![0, 69_999, 5],
        vec![1.0, 2.0, 3.0],
    );
    assert!(w.narrow(Exec::Serial).is_none());
}

#[test]
fn bytes_of_an_iteration_cover_every_product() {
    let k = lap2d(80);
    let sys = AmgSystem::new(&k, &rhs(k.n)).unwrap();
    let h = Hierarchy::new(
        Exec::Serial,
        sys.a.clone(),
        sys.near_null_space(),
        &AmgSettings::default(),
    )
    .unwrap();
    let a = h.fine();
    // at least CG's product in double and four single-precision products
    // of the finest operator (degree 2, one sweep each way), each with
    // 2-byte columns (the grid's rows span less than 2^16 columns)
    let floor = a.nnz() * 10 + 4 * a.nnz() * 6;
    assert!(h.bytes_per_iteration() > floor + h.bytes_per_cycle() - 4 * a.nnz() * 6);
    assert!(h.bytes_per_cycle() > 4 * a.nnz() * 6);
    let (_, stats) = solve_amg_cg(
        &k,
        &rhs(k.n),
        &CgSettings {
            rtol: 1e-8,
            max_iter: 100,
        },
        &AmgSettings::default(),
        Exec::Serial,
        &mut |_, _| true,
    )
    .unwrap();
    assert_eq!(stats.bytes_per_iteration, h.bytes_per_iteration());
}
