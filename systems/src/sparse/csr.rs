//! A general sparse matrix in CSR, with the products the AMG setup and
//! cycle use.

use super::SymCsr;
use crate::exec::{Disjoint, Exec, blocks1, for_each_index, map_blocks, map_blocks_with};

/// Rows per block of the sparse matrix-matrix products.
pub(crate) const SPGEMM_BLOCK: usize = 512;

/// A general sparse matrix in CSR (columns of a row in any order).
///
/// Invariants (checked by [`Csr::new`]): `rowptr` has `nrows + 1`
/// non-decreasing entries ending at `col.len() == val.len()`, and every
/// column is below `ncols`. The row kernels index without bounds checks
/// on the strength of this.
#[derive(Debug, Clone, Default)]
pub struct Csr {
    nrows: usize,
    ncols: usize,
    rowptr: Vec<usize>,
    col: Vec<u32>,
    val: Vec<f64>,
}

impl Csr {
    /// Checks the invariants (panics on a malformed matrix: a bug in the
    /// caller, never user input).
    pub fn new(
        nrows: usize,
        ncols: usize,
        rowptr: Vec<usize>,
        col: Vec<u32>,
        val: Vec<f64>,
    ) -> Self {
        assert_eq!(rowptr.len(), nrows + 1);
        assert_eq!(rowptr[0], 0);
        assert!(rowptr.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(rowptr[nrows], col.len());
        assert_eq!(col.len(), val.len());
        assert!(ncols <= u32::MAX as usize);
        assert!(col.iter().all(|&j| (j as usize) < ncols));
        Self {
            nrows,
            ncols,
            rowptr,
            col,
            val,
        }
    }

    /// The full (both triangles) matrix of a symmetric one.
    pub fn from_sym(a: &SymCsr) -> Self {
        let (rp, col, val) = a.to_full();
        Self::new(
            a.n,
            a.n,
            rp.into_iter().map(|v| v as usize).collect(),
            col,
            val,
        )
    }

    /// Rows.
    pub fn nrows(&self) -> usize {
        self.nrows
    }

    /// Columns.
    pub fn ncols(&self) -> usize {
        self.ncols
    }

    /// Stored entries.
    pub fn nnz(&self) -> usize {
        self.col.len()
    }

    /// Row starts (`nrows + 1`).
    pub fn rowptr(&self) -> &[usize] {
        &self.rowptr
    }

    /// Column of every entry.
    pub fn cols(&self) -> &[u32] {
        &self.col
    }

    /// Value of every entry.
    pub fn vals(&self) -> &[f64] {
        &self.val
    }

    /// Columns and values of row `i`.
    #[inline]
    pub fn row(&self, i: usize) -> (&[u32], &[f64]) {
        let r = self.rowptr[i]..self.rowptr[i + 1];
        (&self.col[r.clone()], &self.val[r])
    }

    /// `(A x)_i`.
    #[inline(always)]
    pub(crate) fn row_dot(&self, i: usize, x: &[f64]) -> f64 {
        self.row_dot_with(&self.val, i, x)
    }

    /// `(A x)_i` with the values `vals` (the matrix's own, or an `f32`
    /// copy) on this matrix's pattern.
    #[inline(always)]
    pub(crate) fn row_dot_with<T: Copy + Into<f64>>(&self, vals: &[T], i: usize, x: &[f64]) -> f64 {
        assert!(i < self.nrows && x.len() >= self.ncols && vals.len() == self.col.len());
        // SAFETY: `Csr::new` checked that `rowptr` is non-decreasing and
        // ends at `col.len()` (`== vals.len()`, asserted) and that every
        // column is below `ncols <= x.len()` (asserted); `i < nrows`.
        unsafe {
            let s = *self.rowptr.get_unchecked(i);
            let e = *self.rowptr.get_unchecked(i + 1);
            let mut acc = 0.0;
            for k in s..e {
                let v: f64 = (*vals.get_unchecked(k)).into();
                acc += v * *x.get_unchecked(*self.col.get_unchecked(k) as usize);
            }
            acc
        }
    }

    /// The diagonal (zero where not stored).
    pub fn diagonal(&self) -> Vec<f64> {
        self.diagonal_with(Exec::Serial)
    }

    /// [`Csr::diagonal`], over the rows in parallel under
    /// [`Exec::Parallel`].
    pub fn diagonal_with(&self, exec: Exec) -> Vec<f64> {
        let mut out = vec![0.0; self.nrows];
        blocks1(exec, &mut out, |s, db| {
            for (l, di) in db.iter_mut().enumerate() {
                let i = s + l;
                let (c, v) = self.row(i);
                *di = c
                    .iter()
                    .zip(v)
                    .filter(|(j, _)| **j as usize == i)
                    .map(|(_, v)| *v)
                    .sum();
            }
            0.0
        });
        out
    }

    /// `y = A x`.
    pub fn spmv(&self, exec: Exec, x: &[f64], y: &mut [f64]) {
        self.spmv_with(exec, &self.val, x, y);
    }

    /// `y = A x` with the values `vals` on this pattern.
    pub fn spmv_with<T: Copy + Into<f64> + Sync>(
        &self,
        exec: Exec,
        vals: &[T],
        x: &[f64],
        y: &mut [f64],
    ) {
        assert_eq!(y.len(), self.nrows);
        blocks1(exec, y, |s, yb| {
            for (l, yi) in yb.iter_mut().enumerate() {
                *yi = self.row_dot_with(vals, s + l, x);
            }
            0.0
        });
    }

    /// `y += A x` with the values `vals` on this pattern.
    pub fn spmv_add_with<T: Copy + Into<f64> + Sync>(
        &self,
        exec: Exec,
        vals: &[T],
        x: &[f64],
        y: &mut [f64],
    ) {
        assert_eq!(y.len(), self.nrows);
        blocks1(exec, y, |s, yb| {
            for (l, yi) in yb.iter_mut().enumerate() {
                *yi += self.row_dot_with(vals, s + l, x);
            }
            0.0
        });
    }

    /// The transpose (a counting sort; rows of the result in increasing
    /// column order of the source).
    pub fn transpose(&self) -> Csr {
        self.transpose_with(Exec::Serial)
    }

    /// [`Csr::transpose`], under [`Exec::Parallel`] by parts of the source
    /// rows (counts per part and column, then each part fills its places):
    /// the same matrix.
    pub fn transpose_with(&self, exec: Exec) -> Csr {
        let (nr, nc) = (self.nrows, self.ncols);
        // a few parts of at least 4096 rows; counters per part and column
        let parts = match exec {
            Exec::Serial => 1,
            Exec::Parallel => (nr / 4096).clamp(1, 8),
        };
        let size = nr.div_ceil(parts).max(1);
        let counts: Vec<Vec<usize>> = map_blocks(exec, nr, size, |rows| {
            let mut c = vec![0usize; nc];
            for &j in &self.col[self.rowptr[rows.start]..self.rowptr[rows.end]] {
                c[j as usize] += 1;
            }
            c
        });
        // column j's places: part 0's entries first, then part 1's...
        let mut ptr = vec![0usize; nc + 1];
        let mut starts: Vec<Vec<usize>> = vec![vec![0; nc]; counts.len()];
        let mut at = 0;
        for j in 0..nc {
            ptr[j] = at;
            for (p, c) in counts.iter().enumerate() {
                starts[p][j] = at;
                at += c[j];
            }
        }
        ptr[nc] = at;
        let mut col = vec![0u32; self.nnz()];
        let mut val = vec![0.0; self.nnz()];
        {
            let (cs, vs) = (Disjoint::slice(&mut col), Disjoint::slice(&mut val));
            let starts = &starts;
            for_each_index(exec, counts.len(), |p| {
                let mut fill = starts[p].clone();
                for i in p * size..((p + 1) * size).min(nr) {
                    let (c, v) = self.row(i);
                    for (&j, &a) in c.iter().zip(v) {
                        let f = &mut fill[j as usize];
                        // SAFETY: the places of part p in column j are
                        // its own (the prefix above), each written once.
                        unsafe {
                            *cs.get_mut(*f) = i as u32;
                            *vs.get_mut(*f) = a;
                        }
                        *f += 1;
                    }
                }
            });
        }
        Csr::new(nc, nr, ptr, col, val)
    }

    /// Concatenates row blocks `(row lengths, columns, values)`.
    pub(crate) fn from_blocks(
        exec: Exec,
        nrows: usize,
        ncols: usize,
        parts: Vec<(Vec<usize>, Vec<u32>, Vec<f64>)>,
    ) -> Csr {
        let nnz: usize = parts.iter().map(|p| p.1.len()).sum();
        let mut rowptr = Vec::with_capacity(nrows + 1);
        rowptr.push(0);
        for (len, _, _) in &parts {
            for &l in len {
                let last = *rowptr.last().expect("non-empty");
                rowptr.push(last + l);
            }
        }
        let mut col = vec![0u32; nnz];
        let mut val = vec![0.0; nnz];
        // each block's slice of the output, then the copies in parallel
        let mut offsets = Vec::with_capacity(parts.len() + 1);
        offsets.push(0);
        for (_, c, _) in &parts {
            offsets.push(offsets.last().expect("non-empty") + c.len());
        }
        {
            let (cs, vs) = (Disjoint::slice(&mut col), Disjoint::slice(&mut val));
            for_each_index(exec, parts.len(), |b| {
                let r = offsets[b]..offsets[b + 1];
                // SAFETY: the blocks' ranges are disjoint, each copied once.
                unsafe {
                    cs.range_mut(r.clone()).copy_from_slice(&parts[b].1);
                    vs.range_mut(r).copy_from_slice(&parts[b].2);
                }
            });
        }
        Csr::new(nrows, ncols, rowptr, col, val)
    }

    /// `A B`, row by row with a marker array (Gustavson), blocks of rows
    /// in parallel under [`Exec::Parallel`]. Columns of a row in order of
    /// first appearance.
    pub fn matmul(&self, exec: Exec, b: &Csr) -> Csr {
        assert_eq!(self.ncols, b.nrows);
        let init = || vec![u32::MAX; b.ncols];
        let parts = map_blocks_with(exec, self.nrows, SPGEMM_BLOCK, init, |mark, rows| {
            // mark[j]: position of column j in the block's output, valid
            // when at or after the current row's start
            let mut len = Vec::with_capacity(rows.len());
            let mut col: Vec<u32> = Vec::with_capacity(rows.len() * 32);
            let mut val: Vec<f64> = Vec::with_capacity(rows.len() * 32);
            for i in rows {
                let start = col.len();
                assert!(start < u32::MAX as usize);
                let (ac, av) = self.row(i);
                for (&k, &a) in ac.iter().zip(av) {
                    let (bc, bv) = b.row(k as usize);
                    for (&j, &bb) in bc.iter().zip(bv) {
                        // SAFETY: `Csr::new` checked `j < b.ncols ==
                        // mark.len()`; a mark at or after `start` was set
                        // in this row and indexes `val`.
                        unsafe {
                            let m = mark.get_unchecked_mut(j as usize);
                            if *m != u32::MAX && *m as usize >= start {
                                *val.get_unchecked_mut(*m as usize) += a * bb;
                            } else {
                                *m = col.len() as u32;
                                col.push(j);
                                val.push(a * bb);
                            }
                        }
                    }
                }
                len.push(col.len() - start);
            }
            for &j in &col {
                mark[j as usize] = u32::MAX;
            }
            (len, col, val)
        });
        Csr::from_blocks(exec, self.nrows, b.ncols, parts)
    }
}
