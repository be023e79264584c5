//! The Quad-8 serendipity element: shape functions, Gauss rules and the
//! per-element kernels every backend shares (geometric factors, stiffness,
//! load, gradient recovery).
//!
//! Local node order (`docs/numerics.md`, "Mesh"): corners 1..4 counter-clockwise, then
//! mid-side nodes 5 (edge 1-2), 6 (edge 2-3), 7 (edge 3-4), 8 (edge 4-1).
//! Here indices are 0-based.
//!
//! The kernels are written as plain functions on fixed-size arrays so that
//! the serial, parallel and GPU backends (whose CUDA C in `kernels/` mirrors
//! them line by line) compute the same numbers in the same order.

use nalgebra::{Matrix2, Vector2};
use std::sync::LazyLock;

/// Number of nodes of a Quad-8 element.
pub const NODES: usize = 8;
/// Number of distinct entries of a symmetric 8 x 8 element matrix
/// (upper triangle with diagonal).
pub const SYM_ENTRIES: usize = NODES * (NODES + 1) / 2;
/// Number of points of the 3 x 3 Gauss rule used for the element matrices.
pub const QP: usize = 9;
/// Number of points of the 2 x 2 Gauss rule used for post-processing.
pub const QP_POST: usize = 4;

/// Reference coordinates `(xi_i, eta_i)` of the eight nodes.
pub const REF_NODES: [(f64, f64); NODES] = [
    (-1.0, -1.0),
    (1.0, -1.0),
    (1.0, 1.0),
    (-1.0, 1.0),
    (0.0, -1.0),
    (1.0, 0.0),
    (0.0, 1.0),
    (-1.0, 0.0),
];

/// The three nodes (local indices) of each of the four element edges, in the
/// order start, mid-side, end: `(n1,n5,n2)`, `(n2,n6,n3)`, `(n3,n7,n4)`, `(n4,n8,n1)`.
pub const EDGES: [[usize; 3]; 4] = [[0, 4, 1], [1, 5, 2], [2, 6, 3], [3, 7, 0]];

/// Upper-triangle local pairs `(a, b)` with `a <= b`, row by row; the order
/// of the `SYM_ENTRIES` entries of every element slot map.
pub const SYM_PAIRS: [(u8, u8); SYM_ENTRIES] = {
    let mut out = [(0u8, 0u8); SYM_ENTRIES];
    let mut k = 0;
    let mut a = 0;
    while a < NODES {
        let mut b = a;
        while b < NODES {
            out[k] = (a as u8, b as u8);
            k += 1;
            b += 1;
        }
        a += 1;
    }
    out
};

/// One-dimensional 3-point Gauss-Legendre rule: points and weights.
pub fn gauss3() -> ([f64; 3], [f64; 3]) {
    let a = (3.0f64 / 5.0).sqrt();
    ([-a, 0.0, a], [5.0 / 9.0, 8.0 / 9.0, 5.0 / 9.0])
}

/// One-dimensional 2-point Gauss-Legendre rule (weights are 1).
pub fn gauss2() -> [f64; 2] {
    let a = 1.0 / 3.0f64.sqrt();
    [-a, a]
}

/// Shape function values `N_i(xi, eta)`.
pub fn shape(xi: f64, eta: f64) -> [f64; NODES] {
    let mut n = [0.0; NODES];
    for (i, &(xi_i, eta_i)) in REF_NODES.iter().enumerate() {
        n[i] = if i < 4 {
            (1.0 + xi * xi_i) * (1.0 + eta * eta_i) * (xi * xi_i + eta * eta_i - 1.0) / 4.0
        } else if xi_i == 0.0 {
            (1.0 - xi * xi) * (1.0 + eta * eta_i) / 2.0
        } else {
            (1.0 + xi * xi_i) * (1.0 - eta * eta) / 2.0
        };
    }
    n
}

/// Reference gradients `(dN_i/dxi, dN_i/deta)` of the shape functions.
pub fn shape_grad(xi: f64, eta: f64) -> [[f64; 2]; NODES] {
    let mut g = [[0.0; 2]; NODES];
    for (i, &(xi_i, eta_i)) in REF_NODES.iter().enumerate() {
        g[i] = if i < 4 {
            [
                xi_i * (1.0 + eta * eta_i) * (2.0 * xi * xi_i + eta * eta_i) / 4.0,
                eta_i * (1.0 + xi * xi_i) * (xi * xi_i + 2.0 * eta * eta_i) / 4.0,
            ]
        } else if xi_i == 0.0 {
            [-xi * (1.0 + eta * eta_i), eta_i * (1.0 - xi * xi) / 2.0]
        } else {
            [xi_i * (1.0 - eta * eta) / 2.0, -eta * (1.0 + xi * xi_i)]
        };
    }
    g
}

/// Tabulated reference basis on a tensor Gauss rule: point coordinates,
/// weights, shape values and reference gradients (libCEED's "basis").
#[derive(Debug, Clone)]
pub struct Basis<const Q: usize> {
    /// `(xi, eta)` of each point.
    pub points: [(f64, f64); Q],
    /// Weight of each point (product of the 1D weights).
    pub weights: [f64; Q],
    /// Shape function values per point.
    pub n: [[f64; NODES]; Q],
    /// Reference gradients per point.
    pub dn: [[[f64; 2]; NODES]; Q],
}

impl<const Q: usize> Basis<Q> {
    fn tabulate(pts1: &[f64], w1: &[f64]) -> Self {
        let mut points = [(0.0, 0.0); Q];
        let mut weights = [0.0; Q];
        let mut k = 0;
        // xi is the outer loop, eta the inner one (the reference's order).
        for (i, &xi) in pts1.iter().enumerate() {
            for (j, &eta) in pts1.iter().enumerate() {
                points[k] = (xi, eta);
                weights[k] = w1[i] * w1[j];
                k += 1;
            }
        }
        assert_eq!(k, Q);
        let mut n = [[0.0; NODES]; Q];
        let mut dn = [[[0.0; 2]; NODES]; Q];
        for q in 0..Q {
            n[q] = shape(points[q].0, points[q].1);
            dn[q] = shape_grad(points[q].0, points[q].1);
        }
        Self {
            points,
            weights,
            n,
            dn,
        }
    }
}

/// The 3 x 3 Gauss basis for the element matrices.
pub static BASIS9: LazyLock<Basis<QP>> = LazyLock::new(|| {
    let (p, w) = gauss3();
    Basis::tabulate(&p, &w)
});

/// The 2 x 2 Gauss basis for post-processing.
pub static BASIS4: LazyLock<Basis<QP_POST>> =
    LazyLock::new(|| Basis::tabulate(&gauss2(), &[1.0, 1.0]));

/// Element node coordinates, `x` then `y`.
pub type Coords = ([f64; NODES], [f64; NODES]);

/// Jacobian `J[a][b] = sum_i dN_i/dxi_a * X_i[b]` at one point.
#[inline(always)]
pub fn jacobian(dn: &[[f64; 2]; NODES], c: &Coords) -> Matrix2<f64> {
    let (mut j00, mut j01, mut j10, mut j11) = (0.0, 0.0, 0.0, 0.0);
    for i in 0..NODES {
        j00 += dn[i][0] * c.0[i];
        j01 += dn[i][0] * c.1[i];
        j10 += dn[i][1] * c.0[i];
        j11 += dn[i][1] * c.1[i];
    }
    Matrix2::new(j00, j01, j10, j11)
}

/// Per-element quadrature data of the 3 x 3 rule: for each point the
/// symmetric metric `G = w det(J) J^-1 J^-T` (stored as `[g00, g01, g11]`)
/// and `w det(J)`. This is all assembly needs besides the reference basis.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuadData {
    /// `w det(J) J^-1 J^-T` per point, as `[g00, g01, g11]`.
    pub g: [[f64; 3]; QP],
    /// `w det(J)` per point.
    pub wdet: [f64; QP],
}

impl Default for QuadData {
    fn default() -> Self {
        Self {
            g: [[0.0; 3]; QP],
            wdet: [0.0; QP],
        }
    }
}

/// Smallest `det(J)` allowed, relative to the square of the element's size;
/// anything at or below is a degenerate element.
pub const DEGENERATE_REL: f64 = 1e-12;

/// Squared diameter of the element's bounding box (a size scale).
pub fn size2(c: &Coords) -> f64 {
    let fold = |v: &[f64; NODES]| {
        v.iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
                (lo.min(x), hi.max(x))
            })
    };
    let (x0, x1) = fold(&c.0);
    let (y0, y1) = fold(&c.1);
    (x1 - x0).powi(2) + (y1 - y0).powi(2)
}

/// `det(J)` of a Jacobian, in the one evaluation order every check and
/// every kernel uses.
#[inline(always)]
fn det2(j: &Matrix2<f64>) -> f64 {
    j[(0, 0)] * j[(1, 1)] - j[(0, 1)] * j[(1, 0)]
}

/// The validity check alone: the index of the first Gauss point whose
/// `det(J)` is not positive (relative to the element size), as
/// `Err(q, det)`. Accepts and refuses exactly the elements [`quad_data`]
/// does (the same determinant, bit for bit) at about half its cost (no
/// inverse, no metric), which is what mesh validation needs.
#[inline]
pub fn check_jacobian(c: &Coords) -> Result<(), (usize, f64)> {
    let b = &*BASIS9;
    let tiny = DEGENERATE_REL * size2(c);
    for q in 0..QP {
        let det = det2(&jacobian(&b.dn[q], c));
        if det.is_nan() || det <= tiny {
            return Err((q, det));
        }
    }
    Ok(())
}

/// Computes the quadrature data of one element. Returns the index of the
/// first Gauss point whose `det(J)` is not positive (relative to the element
/// size), as `Err(q, det)`, like [`check_jacobian`].
#[inline]
pub fn quad_data(c: &Coords) -> Result<QuadData, (usize, f64)> {
    let b = &*BASIS9;
    let tiny = DEGENERATE_REL * size2(c);
    let mut out = QuadData::default();
    for q in 0..QP {
        let j = jacobian(&b.dn[q], c);
        let det = det2(&j);
        if det.is_nan() || det <= tiny {
            return Err((q, det));
        }
        let inv = Matrix2::new(j[(1, 1)], -j[(0, 1)], -j[(1, 0)], j[(0, 0)]) / det;
        let wd = b.weights[q] * det;
        let m = inv.transpose() * inv * wd;
        out.g[q] = [m[(0, 0)], m[(0, 1)], m[(1, 1)]];
        out.wdet[q] = wd;
    }
    Ok(out)
}

/// Element stiffness, upper triangle in `SYM_PAIRS` order:
/// `Ke_ab = sum_q dN_a^T G_q dN_b`.
#[inline]
pub fn stiffness_sym(qd: &QuadData) -> [f64; SYM_ENTRIES] {
    let b = &*BASIS9;
    let mut ke = [0.0; SYM_ENTRIES];
    for q in 0..QP {
        let [g00, g01, g11] = qd.g[q];
        let dn = &b.dn[q];
        // t_a = G dN_a
        let mut t = [[0.0; 2]; NODES];
        for a in 0..NODES {
            t[a] = [
                g00 * dn[a][0] + g01 * dn[a][1],
                g01 * dn[a][0] + g11 * dn[a][1],
            ];
        }
        let mut k = 0;
        for a in 0..NODES {
            for bb in a..NODES {
                ke[k] += t[a][0] * dn[bb][0] + t[a][1] * dn[bb][1];
                k += 1;
            }
        }
    }
    ke
}

/// Expands an upper-triangle element matrix to a full 8 x 8 one.
pub fn sym_to_full(ke: &[f64; SYM_ENTRIES]) -> [[f64; NODES]; NODES] {
    let mut full = [[0.0; NODES]; NODES];
    for (k, &(a, b)) in SYM_PAIRS.iter().enumerate() {
        full[a as usize][b as usize] = ke[k];
        full[b as usize][a as usize] = ke[k];
    }
    full
}

/// Physical coordinates of the 3 x 3 Gauss points of an element.
pub fn gauss_points_xy(c: &Coords) -> [(f64, f64); QP] {
    let b = &*BASIS9;
    let mut out = [(0.0, 0.0); QP];
    for q in 0..QP {
        let (mut x, mut y) = (0.0, 0.0);
        for i in 0..NODES {
            x += b.n[q][i] * c.0[i];
            y += b.n[q][i] * c.1[i];
        }
        out[q] = (x, y);
    }
    out
}

/// Element load `fe_a = sum_q f_q w det(J_q) N_a(q)` for source values `f_q`
/// at the nine Gauss points.
#[inline]
pub fn load(qd: &QuadData, f: &[f64; QP]) -> [f64; NODES] {
    let b = &*BASIS9;
    let mut fe = [0.0; NODES];
    for q in 0..QP {
        let s = f[q] * qd.wdet[q];
        for a in 0..NODES {
            fe[a] += s * b.n[q][a];
        }
    }
    fe
}

/// Derived fields of one element (`docs/numerics.md`, "Post-processing").
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ElementFields {
    /// `-mean_q grad u` over the 2 x 2 Gauss points.
    pub vel: [f64; 2],
    /// `mean_q |grad u|`.
    pub abs_vel: f64,
    /// `p0 - rho/2 abs_vel^2`.
    pub pressure: f64,
}

/// Gradient recovery at the 2 x 2 Gauss points and Bernoulli pressure.
/// `half_rho` is `rho / 2`.
#[inline]
pub fn post(c: &Coords, ue: &[f64; NODES], p0: f64, half_rho: f64) -> ElementFields {
    let b = &*BASIS4;
    let mut vel = Vector2::zeros();
    let mut abs = 0.0;
    for q in 0..QP_POST {
        let j = jacobian(&b.dn[q], c);
        let det = j[(0, 0)] * j[(1, 1)] - j[(0, 1)] * j[(1, 0)];
        // reference gradient of u, then physical: g = J^-1 (du/dxi, du/deta)
        let (mut gx, mut ge) = (0.0, 0.0);
        for i in 0..NODES {
            gx += b.dn[q][i][0] * ue[i];
            ge += b.dn[q][i][1] * ue[i];
        }
        let g = Vector2::new(
            j[(1, 1)] * gx - j[(0, 1)] * ge,
            -j[(1, 0)] * gx + j[(0, 0)] * ge,
        ) / det;
        vel += g;
        abs += g.norm();
    }
    let n = QP_POST as f64;
    let abs_vel = abs / n;
    ElementFields {
        vel: [-vel[0] / n, -vel[1] / n],
        abs_vel,
        pressure: p0 - half_rho * abs_vel * abs_vel,
    }
}

/// Quadratic edge functions `b(s) = (s(s-1)/2, 1-s^2, s(s+1)/2)` and their
/// derivatives, for the edge nodes (start, mid, end).
pub fn edge_shape(s: f64) -> ([f64; 3], [f64; 3]) {
    (
        [s * (s - 1.0) / 2.0, 1.0 - s * s, s * (s + 1.0) / 2.0],
        [s - 0.5, -2.0 * s, s + 0.5],
    )
}

/// Robin contributions of one curved edge with nodes `(x[k], y[k])`:
/// `He = p int b b^T ds` and `Pe = gamma int b ds` by the 3-point rule.
pub fn robin_edge(x: &[f64; 3], y: &[f64; 3], p: f64, gamma: f64) -> ([[f64; 3]; 3], [f64; 3]) {
    let (pts, w) = gauss3();
    let mut he = [[0.0; 3]; 3];
    let mut pe = [0.0; 3];
    for q in 0..3 {
        let (b, db) = edge_shape(pts[q]);
        let dx: f64 = (0..3).map(|k| db[k] * x[k]).sum();
        let dy: f64 = (0..3).map(|k| db[k] * y[k]).sum();
        let ds = (dx * dx + dy * dy).sqrt() * w[q];
        for a in 0..3 {
            pe[a] += gamma * b[a] * ds;
            for c in 0..3 {
                // b[a] * b[c] first: the matrix comes out symmetric bit
                // for bit, so either triangle may be stored (a distributed
                // part numbers the edge's nodes in another order)
                he[a][c] += p * (b[a] * b[c]) * ds;
            }
        }
    }
    (he, pe)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit_square() -> Coords {
        let mut x = [0.0; NODES];
        let mut y = [0.0; NODES];
        for (i, &(xi, eta)) in REF_NODES.iter().enumerate() {
            x[i] = (xi + 1.0) / 2.0;
            y[i] = (eta + 1.0) / 2.0;
        }
        (x, y)
    }

    #[test]
    fn partition_of_unity_and_kronecker() {
        for &(xi, eta) in &[(0.3, -0.7), (0.0, 0.0), (-0.9, 0.2)] {
            let n = shape(xi, eta);
            assert!((n.iter().sum::<f64>() - 1.0).abs() < 1e-14);
            let g = shape_grad(xi, eta);
            assert!(g.iter().map(|v| v[0]).sum::<f64>().abs() < 1e-14);
            assert!(g.iter().map(|v| v[1]).sum::<f64>().abs() < 1e-14);
        }
        for (i, &(xi, eta)) in REF_NODES.iter().enumerate() {
            let n = shape(xi, eta);
            for (j, v) in n.iter().enumerate() {
                assert!((v - if i == j { 1.0 } else { 0.0 }).abs() < 1e-15);
            }
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        let h = 1e-6;
        let (xi, eta) = (0.37, -0.41);
        let g = shape_grad(xi, eta);
        let (p, m) = (shape(xi + h, eta), shape(xi - h, eta));
        let (pe, me) = (shape(xi, eta + h), shape(xi, eta - h));
        for i in 0..NODES {
            assert!((g[i][0] - (p[i] - m[i]) / (2.0 * h)).abs() < 1e-8);
            assert!((g[i][1] - (pe[i] - me[i]) / (2.0 * h)).abs() < 1e-8);
        }
    }

    #[test]
    fn stiffness_rows_sum_to_zero_and_is_psd_on_linear_field() {
        let c = unit_square();
        let qd = quad_data(&c).unwrap();
        let ke = sym_to_full(&stiffness_sym(&qd));
        for row in &ke {
            assert!(row.iter().sum::<f64>().abs() < 1e-13);
        }
        // energy of u = x over the unit square is 1
        let e: f64 = (0..NODES)
            .flat_map(|a| (0..NODES).map(move |b| (a, b)))
            .map(|(a, b)| c.0[a] * ke[a][b] * c.0[b])
            .sum();
        assert!((e - 1.0).abs() < 1e-13, "{e}");
        // area
        assert!((qd.wdet.iter().sum::<f64>() - 1.0).abs() < 1e-14);
    }

    #[test]
    fn clockwise_element_is_rejected_by_quad_data() {
        let (mut x, y) = unit_square();
        for v in &mut x {
            *v = -*v;
        }
        assert!(quad_data(&(x, y)).is_err());
    }

    #[test]
    fn post_recovers_linear_gradient() {
        let c = unit_square();
        let ue: [f64; NODES] = std::array::from_fn(|i| 2.0 * c.0[i] - 3.0 * c.1[i]);
        let f = post(&c, &ue, 100.0, 0.5);
        assert!((f.vel[0] + 2.0).abs() < 1e-13 && (f.vel[1] - 3.0).abs() < 1e-13);
        assert!((f.abs_vel - 13f64.sqrt()).abs() < 1e-13);
        assert!((f.pressure - (100.0 - 0.5 * 13.0)).abs() < 1e-11);
    }

    #[test]
    fn robin_edge_integrates_length() {
        let (_, pe) = robin_edge(&[0.0, 0.0, 0.0], &[0.0, 0.5, 1.0], 0.0, 1.0);
        assert!((pe.iter().sum::<f64>() - 1.0).abs() < 1e-14);
        // Simpson weights for a straight edge
        assert!((pe[1] - 2.0 / 3.0).abs() < 1e-14);
    }
}
