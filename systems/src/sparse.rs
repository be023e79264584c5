//! Sparse matrices: the symmetric (upper-triangle) CSR the engine assembles
//! into, its sparsity pattern built once from the connectivity, the
//! element-to-slot maps, and conversions.
//!
//! Storage: for each row `i` the columns `j >= i` in increasing order, so
//! the diagonal is the first entry of every row. Every node has a diagonal
//! entry (unused nodes receive the penalty there). Indices are `u32`.

use crate::element::{NODES, SYM_ENTRIES, SYM_PAIRS};

/// Symmetric sparse matrix, upper triangle with diagonal, row-major.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SymCsr {
    /// Number of rows (and columns).
    pub n: usize,
    /// Row starts, `n + 1` entries.
    pub rowptr: Vec<u32>,
    /// Column of each stored entry.
    pub col: Vec<u32>,
    /// Value of each stored entry.
    pub val: Vec<f64>,
}

/// Error when a pattern does not fit 32-bit indices.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("the sparsity pattern has {0} stored entries, more than 32-bit indices allow")]
pub struct PatternTooLarge(pub usize);

/// Node-to-element adjacency in CSR form.
pub fn node_elements(n: usize, elements: &[[u32; NODES]]) -> (Vec<u32>, Vec<u32>) {
    let mut ptr = vec![0u32; n + 1];
    for el in elements {
        for &v in el {
            ptr[v as usize + 1] += 1;
        }
    }
    for i in 0..n {
        ptr[i + 1] += ptr[i];
    }
    let mut fill = ptr.clone();
    let mut adj = vec![0u32; ptr[n] as usize];
    for (e, el) in elements.iter().enumerate() {
        for &v in el {
            let k = &mut fill[v as usize];
            adj[*k as usize] = e as u32;
            *k += 1;
        }
    }
    (ptr, adj)
}

/// Upper-triangle columns of rows `rows` (a contiguous range), appended to
/// `col`, with the row lengths pushed to `len`. `mark` is scratch of length
/// `n` holding `u32::MAX` where unmarked.
pub fn pattern_rows(
    rows: std::ops::Range<usize>,
    elements: &[[u32; NODES]],
    ne_ptr: &[u32],
    ne_adj: &[u32],
    mark: &mut [u32],
    col: &mut Vec<u32>,
    len: &mut Vec<u32>,
) {
    for i in rows {
        let start = col.len();
        col.push(i as u32);
        mark[i] = i as u32;
        for &e in &ne_adj[ne_ptr[i] as usize..ne_ptr[i + 1] as usize] {
            for &j in &elements[e as usize] {
                if j as usize > i && mark[j as usize] != i as u32 {
                    mark[j as usize] = i as u32;
                    col.push(j);
                }
            }
        }
        col[start + 1..].sort_unstable();
        len.push((col.len() - start) as u32);
    }
}

impl SymCsr {
    /// Builds the pattern (values zero) from the connectivity.
    pub fn pattern(n: usize, elements: &[[u32; NODES]]) -> Result<Self, PatternTooLarge> {
        let (ne_ptr, ne_adj) = node_elements(n, elements);
        let mut mark = vec![u32::MAX; n];
        let mut col = Vec::with_capacity(n * 12);
        let mut len = Vec::with_capacity(n);
        pattern_rows(
            0..n,
            elements,
            &ne_ptr,
            &ne_adj,
            &mut mark,
            &mut col,
            &mut len,
        );
        Self::from_row_lengths(n, &len, col)
    }

    /// Assembles a pattern from row lengths and concatenated columns.
    pub fn from_row_lengths(n: usize, len: &[u32], col: Vec<u32>) -> Result<Self, PatternTooLarge> {
        if col.len() >= u32::MAX as usize {
            return Err(PatternTooLarge(col.len()));
        }
        let mut rowptr = Vec::with_capacity(n + 1);
        rowptr.push(0u32);
        let mut acc = 0u32;
        for &l in len {
            acc += l;
            rowptr.push(acc);
        }
        let nnz = col.len();
        Ok(Self {
            n,
            rowptr,
            col,
            val: vec![0.0; nnz],
        })
    }

    /// Stored entries (upper triangle with diagonal).
    pub fn stored(&self) -> usize {
        self.col.len()
    }

    /// Non-zeros of the full symmetric matrix (what SciPy's `nnz` counts).
    pub fn full_nnz(&self) -> usize {
        2 * self.stored() - self.n
    }

    /// Index of entry `(i, j)`, `i <= j`, if stored.
    #[inline]
    pub fn slot(&self, i: u32, j: u32) -> Option<u32> {
        let (s, e) = (
            self.rowptr[i as usize] as usize,
            self.rowptr[i as usize + 1] as usize,
        );
        self.col[s..e]
            .binary_search(&j)
            .ok()
            .map(|k| (s + k) as u32)
    }

    /// Index of the diagonal entry of row `i`.
    #[inline]
    pub fn diag_slot(&self, i: usize) -> usize {
        self.rowptr[i] as usize
    }

    /// The diagonal.
    pub fn diagonal(&self) -> Vec<f64> {
        (0..self.n).map(|i| self.val[self.diag_slot(i)]).collect()
    }

    /// `y = A x` (plain, for residuals and tests).
    pub fn mul(&self, x: &[f64]) -> Vec<f64> {
        let mut y = vec![0.0; self.n];
        for i in 0..self.n {
            let (s, e) = (self.rowptr[i] as usize, self.rowptr[i + 1] as usize);
            let mut acc = self.val[s] * x[i];
            let xi = x[i];
            for k in s + 1..e {
                let j = self.col[k] as usize;
                acc += self.val[k] * x[j];
                y[j] += self.val[k] * xi;
            }
            y[i] += acc;
        }
        y
    }

    /// The full (both triangles) CSR: `(rowptr, col, val)`, columns sorted.
    pub fn to_full(&self) -> (Vec<u32>, Vec<u32>, Vec<f64>) {
        let rowptr = self.full_rowptr();
        let nnz = rowptr[self.n] as usize;
        let mut col = vec![0u32; nnz];
        let mut val = vec![0.0; nnz];
        self.walk_full(&rowptr, |f, j, k| {
            col[f] = j;
            val[f] = self.val[k];
        });
        (rowptr, col, val)
    }

    /// Row starts of the full (both triangles) matrix.
    pub fn full_rowptr(&self) -> Vec<u32> {
        let n = self.n;
        let mut cnt = vec![0u32; n + 1];
        for i in 0..n {
            let (s, e) = (self.rowptr[i] as usize, self.rowptr[i + 1] as usize);
            cnt[i + 1] += (e - s) as u32;
            for k in s + 1..e {
                cnt[self.col[k] as usize + 1] += 1;
            }
        }
        for i in 0..n {
            cnt[i + 1] += cnt[i];
        }
        cnt
    }

    /// Places every entry of the full matrix: calls `place(f, j, k)` for
    /// position `f` of the full arrays (rows by `rowptr` from
    /// [`SymCsr::full_rowptr`]), column `j`, stored entry `k`. Columns come
    /// out sorted: rows are walked in increasing order, so the lower entries
    /// of row `j` arrive from rows `i < j` in increasing `i`, before row
    /// `j`'s own upper entries.
    pub fn walk_full(&self, rowptr: &[u32], mut place: impl FnMut(usize, u32, usize)) {
        let mut fill = rowptr.to_vec();
        for i in 0..self.n {
            let (s, e) = (self.rowptr[i] as usize, self.rowptr[i + 1] as usize);
            for k in s..e {
                let j = self.col[k] as usize;
                place(fill[i] as usize, j as u32, k);
                fill[i] += 1;
                if j != i {
                    place(fill[j] as usize, i as u32, k);
                    fill[j] += 1;
                }
            }
        }
    }
}

/// For every element, the slot of each of its `SYM_ENTRIES` upper-triangle
/// local pairs in the matrix's value array.
pub fn slot_map(a: &SymCsr, el: &[u32; NODES]) -> [u32; SYM_ENTRIES] {
    let mut out = [0u32; SYM_ENTRIES];
    for (k, &(p, q)) in SYM_PAIRS.iter().enumerate() {
        let (i, j) = (el[p as usize], el[q as usize]);
        let (i, j) = if i <= j { (i, j) } else { (j, i) };
        out[k] = a
            .slot(i, j)
            .expect("element pair missing from its own pattern");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elems() -> Vec<[u32; 8]> {
        vec![[0, 1, 4, 3, 6, 11, 8, 10], [1, 2, 5, 4, 7, 12, 9, 11]]
    }

    #[test]
    fn pattern_counts_and_full_expansion() {
        let a = SymCsr::pattern(14, &elems()).unwrap(); // node 13 unused
        // full nnz: 2 elements of 64, sharing 3 nodes (9 pairs) + 1 unused diag
        assert_eq!(a.full_nnz(), 64 + 64 - 9 + 1);
        assert_eq!(a.col[a.rowptr[13] as usize], 13);
        let mut b = a.clone();
        for (k, v) in b.val.iter_mut().enumerate() {
            *v = k as f64 + 1.0;
        }
        let (rp, col, val) = b.to_full();
        assert_eq!(rp[14] as usize, b.full_nnz());
        // symmetric and sorted
        for i in 0..14 {
            let r = rp[i] as usize..rp[i + 1] as usize;
            assert!(col[r.clone()].windows(2).all(|w| w[0] < w[1]));
            for k in r {
                let j = col[k] as usize;
                let back = (rp[j] as usize..rp[j + 1] as usize)
                    .find(|&m| col[m] as usize == i)
                    .unwrap();
                assert_eq!(val[back], val[k]);
            }
        }
        // symmetric product equals full product
        let x: Vec<f64> = (0..14).map(|i| (i as f64).sin()).collect();
        let y = b.mul(&x);
        for i in 0..14 {
            let yi: f64 = (rp[i] as usize..rp[i + 1] as usize)
                .map(|k| val[k] * x[col[k] as usize])
                .sum();
            assert!((yi - y[i]).abs() < 1e-12);
        }
    }

    #[test]
    fn slot_maps_hit_the_right_entries() {
        let els = elems();
        let a = SymCsr::pattern(13, &els).unwrap();
        for el in &els {
            let s = slot_map(&a, el);
            for (k, &(p, q)) in SYM_PAIRS.iter().enumerate() {
                let (i, j) = (
                    el[p as usize].min(el[q as usize]),
                    el[p as usize].max(el[q as usize]),
                );
                let slot = s[k] as usize;
                assert_eq!(a.col[slot], j);
                assert!(
                    a.rowptr[i as usize] as usize <= slot
                        && slot < a.rowptr[i as usize + 1] as usize
                );
            }
        }
    }
}
