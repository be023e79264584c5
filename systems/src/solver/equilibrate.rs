//! Diagonal equilibration, the split into coupled rows (solved
//! iteratively) and decoupled ones (solved directly), and the reverse
//! Cuthill-McKee renumbering of the coupled rows. Every iterative method
//! (Jacobi-CG here, AMG-CG in [`crate::amg`], on the host and the device)
//! runs on this one system.

use super::SolveError;
use crate::ordering;
use crate::sparse::SymCsr;
use std::ops::Deref;

/// The scaling of `K u = f` and its split into rows: `d = 1 /
/// sqrt(|diag K|)`, the coupled rows (those with an off-diagonal entry in
/// their row or column) in solver order, the decoupled rows' direct
/// solution, and the scaled right-hand side.
#[derive(Debug, Clone, Default)]
pub struct Scaling {
    /// `d` for every row of the original system.
    pub d: Vec<f64>,
    /// Original index of each coupled row, in solver order.
    pub rows: Vec<u32>,
    /// The solution of the decoupled rows, in original numbering (zero on
    /// coupled rows).
    pub direct: Vec<f64>,
    /// `D f` on the coupled rows, in solver order.
    pub b: Vec<f64>,
    /// `||D f||` over all rows (the stopping rule's reference norm).
    pub b_norm: f64,
    /// `||f||`.
    pub f_norm: f64,
}

impl Scaling {
    /// Rows solved directly.
    pub fn decoupled(&self) -> usize {
        self.d.len() - self.rows.len()
    }

    /// Maps a solution `u~` of the coupled rows back to `u = D u~` in the
    /// original numbering, with the decoupled rows' direct solution.
    pub fn unscale(&self, xt: &[f64]) -> Vec<f64> {
        let mut u = self.direct.clone();
        for (k, &i) in self.rows.iter().enumerate() {
            u[i as usize] = self.d[i as usize] * xt[k];
        }
        u
    }

    /// The near-null-space vector of the coupled rows: `1 / d_i`
    /// (`= sqrt(|K_ii|)`): `K 1 = 0` away from the boundary, so `(D K
    /// D)(D^-1 1) = 0`.
    pub fn near_null_space(&self) -> Vec<f64> {
        self.rows
            .iter()
            .map(|&i| 1.0 / self.d[i as usize])
            .collect()
    }

    /// `1 / d_i^2` of the coupled rows: the weights that turn the
    /// equilibrated residual's squares into the unscaled residual's.
    pub fn weights(&self) -> Vec<f64> {
        self.rows
            .iter()
            .map(|&i| {
                let d = self.d[i as usize];
                1.0 / (d * d)
            })
            .collect()
    }
}

/// The equilibrated, decoupled, renumbered system: `D K D` on the
/// coupled rows as an upper triangle (what the CG kernels read), its
/// Jacobi preconditioner, and the [`Scaling`] (reached through `Deref`).
#[derive(Debug, Clone)]
pub struct EquilibratedSystem {
    /// `D K D` restricted to the coupled rows, renumbered by reverse
    /// Cuthill-McKee.
    pub a: CgMatrix,
    /// `1 / diag(D K D)` on the coupled rows (the Jacobi preconditioner).
    pub inv_diag: Vec<f64>,
    /// The scaling and the rows.
    pub scaling: Scaling,
}

impl Deref for EquilibratedSystem {
    type Target = Scaling;
    fn deref(&self) -> &Scaling {
        &self.scaling
    }
}

impl EquilibratedSystem {
    /// Equilibrates `K u = f` and splits off decoupled rows.
    pub fn new(k: &SymCsr, f: &[f64]) -> Result<Self, SolveError> {
        let n = k.n;
        let mut d = vec![0.0; n];
        for (i, di) in d.iter_mut().enumerate() {
            let a = k.val[k.diag_slot(i)].abs();
            if a == 0.0 {
                return Err(SolveError::ZeroDiagonal(i));
            }
            if !a.is_finite() {
                return Err(SolveError::NonFinite);
            }
            *di = 1.0 / a.sqrt();
        }
        // coupled = has an off-diagonal entry in its row or column
        let mut coupled = vec![false; n];
        for i in 0..n {
            let (s, e) = (k.rowptr[i] as usize, k.rowptr[i + 1] as usize);
            if e > s + 1 {
                coupled[i] = true;
                for &j in &k.col[s + 1..e] {
                    coupled[j as usize] = true;
                }
            }
        }
        let mut new_of = vec![u32::MAX; n];
        let mut rows = Vec::new();
        for i in 0..n {
            if coupled[i] {
                new_of[i] = rows.len() as u32;
                rows.push(i as u32);
            }
        }
        let m = rows.len();
        let mut rowptr = Vec::with_capacity(m + 1);
        rowptr.push(0u32);
        let mut col = Vec::with_capacity(k.stored());
        let mut val = Vec::with_capacity(k.stored());
        let mut b = Vec::with_capacity(m);
        let mut inv_diag = Vec::with_capacity(m);
        let mut direct = vec![0.0; n];
        let mut b_norm2 = 0.0;
        for i in 0..n {
            let fi = d[i] * f[i];
            b_norm2 += fi * fi;
            let (s, e) = (k.rowptr[i] as usize, k.rowptr[i + 1] as usize);
            if !coupled[i] {
                direct[i] = f[i] / k.val[s];
                continue;
            }
            for kk in s..e {
                let j = k.col[kk] as usize;
                let v = d[i] * k.val[kk] * d[j];
                col.push(new_of[j]);
                val.push(v);
            }
            inv_diag.push(1.0 / (d[i] * k.val[s] * d[i]));
            b.push(fi);
            rowptr.push(col.len() as u32);
        }
        if !b_norm2.is_finite() || val.iter().any(|v| !v.is_finite()) {
            return Err(SolveError::NonFinite);
        }
        let a = SymCsr {
            n: m,
            rowptr,
            col,
            val,
        };
        // Renumber the coupled rows by reverse Cuthill-McKee for locality.
        let (ptr, adj) = ordering::adjacency(&a);
        let perm = ordering::rcm(m, &ptr, &adj);
        let mut inv = vec![0u32; m];
        for (new, &old) in perm.iter().enumerate() {
            inv[old as usize] = new as u32;
        }
        let a = CgMatrix::new(ordering::permute(&a, &perm, &inv));
        let take = |v: &[f64]| perm.iter().map(|&o| v[o as usize]).collect::<Vec<f64>>();
        let f_norm = f.iter().map(|v| v * v).sum::<f64>().sqrt();
        Ok(Self {
            a,
            inv_diag: take(&inv_diag),
            scaling: Scaling {
                d,
                rows: perm.iter().map(|&o| rows[o as usize]).collect(),
                direct,
                b: take(&b),
                b_norm: b_norm2.sqrt(),
                f_norm,
            },
        })
    }
}

/// A symmetric matrix checked for use by the CG kernels: row pointers
/// non-decreasing and within the arrays, every row starting with its
/// diagonal, every column below `n`. The kernels index without bounds
/// checks on the strength of this.
#[derive(Debug, Clone)]
pub struct CgMatrix(SymCsr);

impl CgMatrix {
    /// Checks `a` (panics on a malformed matrix: that is a bug in the
    /// caller, never user input).
    pub fn new(a: SymCsr) -> Self {
        let n = a.n;
        assert_eq!(a.rowptr.len(), n + 1);
        assert_eq!(a.rowptr[n] as usize, a.col.len());
        assert_eq!(a.col.len(), a.val.len());
        for i in 0..n {
            let (s, e) = (a.rowptr[i] as usize, a.rowptr[i + 1] as usize);
            assert!(
                s < e && a.col[s] as usize == i,
                "row {i} must start with its diagonal"
            );
            assert!(a.col[s..e].iter().all(|&j| (j as usize) < n));
        }
        Self(a)
    }

    /// The matrix.
    pub fn get(&self) -> &SymCsr {
        &self.0
    }

    /// Number of rows.
    pub fn n(&self) -> usize {
        self.0.n
    }
}
