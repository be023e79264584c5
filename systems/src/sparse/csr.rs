//! A general sparse matrix in CSR, with the products the AMG setup and
//! cycle use.

use super::SymCsr;
use crate::exec::{Disjoint, Exec, blocks1, for_each_index, map_blocks, map_blocks_with};

/// `f(start, block)` over the [`crate::exec::BLOCK`]-row blocks of `y`
/// (`u32`), results in block order.
fn map_blocks_mut_u32<R: Send>(
    exec: Exec,
    y: &mut [u32],
    f: impl Fn(usize, &mut [u32]) -> R + Sync + Send,
) -> Vec<R> {
    let n = y.len();
    let d = Disjoint::slice(y);
    map_blocks(exec, n, crate::exec::BLOCK, |rows| {
        // SAFETY: the blocks are disjoint, each run once.
        f(rows.start, unsafe { d.range_mut(rows) })
    })
}

/// A [`Csr`]'s index in 6 bytes per entry instead of 8 (plus 8 per row
/// instead of 8): row starts as `u32`, and per row its smallest column
/// (`base`) with each entry's column as a 16-bit offset from it. For the
/// products that stream a matrix every iteration (the V-cycle, CG's
/// product): the entries in the same order, so the same sums, with a
/// quarter less index traffic. Exists when every row's columns span less
/// than 2^16 and there are fewer than 2^32 entries
/// ([`Csr::narrow`]); RCM-ordered meshes and their coarse levels qualify.
#[derive(Debug, Clone, Default)]
pub struct Narrow {
    rowptr: Vec<u32>,
    base: Vec<u32>,
    off: Vec<u16>,
}

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

    /// The [`Narrow`] index of this matrix, if it fits.
    pub fn narrow(&self, exec: Exec) -> Option<Narrow> {
        if self.nnz() >= u32::MAX as usize {
            return None;
        }
        let n = self.nrows;
        let mut base = vec![0u32; n];
        let fits = map_blocks_mut_u32(exec, &mut base, |s, bb| {
            for (l, b) in bb.iter_mut().enumerate() {
                let c = self.row(s + l).0;
                let lo = c.iter().copied().min().unwrap_or(0);
                let hi = c.iter().copied().max().unwrap_or(0);
                if hi - lo > u16::MAX as u32 {
                    return false;
                }
                *b = lo;
            }
            true
        });
        if !fits.into_iter().all(|f| f) {
            return None;
        }
        let mut off = vec![0u16; self.nnz()];
        {
            let o = Disjoint::slice(&mut off);
            let nb = n.div_ceil(crate::exec::BLOCK);
            for_each_index(exec, nb, |b| {
                let rows = crate::exec::block_range(b, n, crate::exec::BLOCK);
                let r = self.rowptr[rows.start]..self.rowptr[rows.end];
                // SAFETY: the blocks' entry ranges are disjoint.
                let ob = unsafe { o.range_mut(r.clone()) };
                let mut k = 0;
                for i in rows {
                    for &j in self.row(i).0 {
                        ob[k] = (j - base[i]) as u16;
                        k += 1;
                    }
                }
            });
        }
        Some(Narrow {
            rowptr: self.rowptr.iter().map(|&v| v as u32).collect(),
            base,
            off,
        })
    }

    /// `(A x)_i` through the narrow index `nw` of this matrix
    /// ([`Csr::narrow`]) with the values `vals`: the same sum as
    /// [`Csr::row_dot_with`].
    #[inline(always)]
    pub(crate) fn row_dot_narrow<T: Copy + Into<f64>>(
        &self,
        nw: &Narrow,
        vals: &[T],
        i: usize,
        x: &[f64],
    ) -> f64 {
        assert!(
            i < self.nrows
                && x.len() >= self.ncols
                && vals.len() == self.col.len()
                && nw.rowptr.len() == self.nrows + 1
                && nw.off.len() == self.col.len()
        );
        // SAFETY: `narrow` built `nw` from this matrix (lengths asserted):
        // its row starts are this matrix's (non-decreasing, ending at
        // `vals.len()`), and `base[i] + off[k]` is a column of row i, below
        // `ncols <= x.len()`.
        unsafe {
            let s = *nw.rowptr.get_unchecked(i) as usize;
            let e = *nw.rowptr.get_unchecked(i + 1) as usize;
            let xb = x.as_ptr().add(*nw.base.get_unchecked(i) as usize);
            let mut acc = 0.0;
            for k in s..e {
                let v: f64 = (*vals.get_unchecked(k)).into();
                acc += v * *xb.add(*nw.off.get_unchecked(k) as usize);
            }
            acc
        }
    }

    /// `sum_k a_ik g(j_k)` over row `i` in stored order, with the values
    /// `vals` ([`Csr::row_dot_with`] with `x_j` given by `g`; `g` is
    /// called with columns of the matrix only).
    #[inline(always)]
    pub(crate) fn row_fold_with<T: Copy + Into<f64>>(
        &self,
        vals: &[T],
        i: usize,
        g: impl Fn(usize) -> f64,
    ) -> f64 {
        assert!(i < self.nrows && vals.len() == self.col.len());
        // SAFETY: as in `row_dot_with`.
        unsafe {
            let s = *self.rowptr.get_unchecked(i);
            let e = *self.rowptr.get_unchecked(i + 1);
            let mut acc = 0.0;
            for k in s..e {
                let v: f64 = (*vals.get_unchecked(k)).into();
                acc += v * g(*self.col.get_unchecked(k) as usize);
            }
            acc
        }
    }

    /// [`Csr::row_fold_with`] through the narrow index `nw` of this matrix.
    #[inline(always)]
    pub(crate) fn row_fold_narrow<T: Copy + Into<f64>>(
        &self,
        nw: &Narrow,
        vals: &[T],
        i: usize,
        g: impl Fn(usize) -> f64,
    ) -> f64 {
        assert!(
            i < self.nrows
                && vals.len() == self.col.len()
                && nw.rowptr.len() == self.nrows + 1
                && nw.off.len() == self.col.len()
        );
        // SAFETY: as in `row_dot_narrow`.
        unsafe {
            let s = *nw.rowptr.get_unchecked(i) as usize;
            let e = *nw.rowptr.get_unchecked(i + 1) as usize;
            let b = *nw.base.get_unchecked(i) as usize;
            let mut acc = 0.0;
            for k in s..e {
                let v: f64 = (*vals.get_unchecked(k)).into();
                acc += v * g(b + *nw.off.get_unchecked(k) as usize);
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
