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
