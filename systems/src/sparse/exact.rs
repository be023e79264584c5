//! Residuals `b - A x` computed in double-double arithmetic (error-free
//! products and sums), rounded to `f64` once per row.
//!
//! Why: computing `b_i - sum_j a_ij x_j` in `f64` loses about
//! `eps * sum_j |a_ij x_j|` to rounding, and on a large mesh that is far
//! above the residual of the best `f64` solution: on a 10M-node venturi the
//! `f64` residual of the equilibrated system cannot be computed below
//! ~3e-10 relative, where the representable floor (`A` times the rounding
//! of `x` to `f64`) is ~10 times lower. The convergence rule
//! ([`crate::solver::Convergence`]) and the reported residual therefore
//! compute the residual exactly enough that what is left is the solution's
//! own error: iterative refinement with an extra-precise residual, the
//! classical way to make an `f64` solution as accurate as `f64` allows.
//! It costs a few times one product, once per check.

use super::{Csr, SymCsr};

/// `a + b` as an unevaluated pair `(s, e)`, `s + e = a + b` exactly
/// (Knuth's TwoSum).
#[inline(always)]
fn two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    let bb = s - a;
    (s, (a - (s - bb)) + (b - bb))
}

/// Veltkamp's split of `a` into two halves of 26 bits.
#[inline(always)]
fn split(a: f64) -> (f64, f64) {
    let c = 134_217_729.0 * a; // 2^27 + 1
    let hi = c - (c - a);
    (hi, a - hi)
}

/// `a * b` as `(p, e)`, `p + e = a * b` exactly (Dekker's TwoProduct;
/// no FMA needed, so it is the same everywhere).
#[inline(always)]
fn two_prod(a: f64, b: f64) -> (f64, f64) {
    let p = a * b;
    let (ah, al) = split(a);
    let (bh, bl) = split(b);
    (p, ((ah * bh - p) + ah * bl + al * bh) + al * bl)
}

/// A double-double accumulator.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Dd {
    hi: f64,
    lo: f64,
}

impl Dd {
    /// The accumulator holding `v`.
    #[inline(always)]
    pub fn new(v: f64) -> Self {
        Self { hi: v, lo: 0.0 }
    }

    /// `self -= a * x`, products and sums error-free up to the
    /// double-double's own rounding.
    #[inline(always)]
    pub fn sub_prod(&mut self, a: f64, x: f64) {
        let (p, pe) = two_prod(a, x);
        let (s, se) = two_sum(self.hi, -p);
        self.hi = s;
        self.lo += se - pe;
    }

    /// The value, rounded to `f64`.
    #[inline(always)]
    pub fn value(self) -> f64 {
        self.hi + self.lo
    }
}

impl Csr {
    /// `r_i = b_i - (A x)_i` in double-double for the rows `rows` (`r[0]`
    /// is row `rows.start`).
    pub fn residual_exact_rows(
        &self,
        rows: std::ops::Range<usize>,
        b: &[f64],
        x: &[f64],
        r: &mut [f64],
    ) {
        for (ri, i) in r.iter_mut().zip(rows) {
            let (c, v) = self.row(i);
            let mut acc = Dd::new(b[i]);
            for (&j, &a) in c.iter().zip(v) {
                acc.sub_prod(a, x[j as usize]);
            }
            *ri = acc.value();
        }
    }
}

impl SymCsr {
    /// `b - A x` in double-double (both triangles of the symmetric matrix).
    pub fn residual_exact(&self, b: &[f64], x: &[f64]) -> Vec<f64> {
        assert!(b.len() == self.n && x.len() == self.n);
        let mut acc: Vec<Dd> = b.iter().map(|&v| Dd::new(v)).collect();
        for i in 0..self.n {
            let (s, e) = (self.rowptr[i] as usize, self.rowptr[i + 1] as usize);
            let xi = x[i];
            acc[i].sub_prod(self.val[s], xi);
            for k in s + 1..e {
                let j = self.col[k] as usize;
                let a = self.val[k];
                acc[i].sub_prod(a, x[j]);
                acc[j].sub_prod(a, xi);
            }
        }
        acc.into_iter().map(Dd::value).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_and_sums_are_error_free() {
        let (a, b) = (1.0 + f64::EPSILON, 1.0 - f64::EPSILON);
        let (p, e) = two_prod(a, b);
        // (1 + eps)(1 - eps) = 1 - eps^2: p rounds to 1, e keeps -eps^2
        assert_eq!(p, 1.0);
        assert_eq!(e, -f64::EPSILON * f64::EPSILON);
        let (s, e) = two_sum(1e16, 1.0);
        assert_eq!((s, e), (1e16, 1.0));
    }

    #[test]
    fn the_exact_residual_sees_what_f64_loses() {
        // 1 - 1e16 * 1 + 1e16 * 1 = 1: f64 loses the 1 in the first sum
        let a = Csr::new(1, 2, vec![0, 2], vec![0, 1], vec![1e16, -1e16]);
        let (b, x) = ([1.0], [1.0, 1.0]);
        let mut r = [f64::NAN];
        a.residual_exact_rows(0..1, &b, &x, &mut r);
        assert_eq!(r[0], 1.0);
        assert_eq!(b[0] - 1e16 * x[0] - -1e16 * x[1], 0.0);
        // the symmetric form agrees with the full form, both triangles
        let s = SymCsr {
            n: 2,
            rowptr: vec![0, 2, 3],
            col: vec![0, 1, 1],
            val: vec![1e16, -1e16, 1e16],
        };
        let r = s.residual_exact(&[1.0, 3.0], &[1.0, 1.0]);
        assert_eq!(r, vec![1.0, 3.0]);
        let (fp, fc, fv) = s.to_full();
        let full = Csr::new(2, 2, fp.iter().map(|&v| v as usize).collect(), fc, fv);
        let mut rf = [0.0; 2];
        full.residual_exact_rows(0..2, &[1.0, 3.0], &[1.0, 1.0], &mut rf);
        assert_eq!(rf.to_vec(), r);
    }
}
