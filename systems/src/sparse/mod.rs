//! Sparse matrices: the symmetric (upper-triangle) CSR the engine assembles
//! into, its sparsity pattern built once from the connectivity, the
//! element-to-slot maps, and conversions.
//!
//! Storage: for each row `i` the columns `j >= i` in increasing order, so
//! the diagonal is the first entry of every row. Every node has a diagonal
//! entry (unused nodes receive the penalty there). Indices are `u32`.

mod csr;
mod exact;

pub use csr::Csr;
pub(crate) use csr::SPGEMM_BLOCK;
pub use exact::Dd;

use crate::element::{NODES, SYM_ENTRIES, SYM_PAIRS};
use crate::exec::Disjoint;

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

/// One element's slot map: the position in the value array of each of its
/// `SYM_ENTRIES` upper-triangle local pairs, in `SYM_PAIRS` order.
pub type SlotMap = [u32; SYM_ENTRIES];

/// `PAIR_INDEX[a][b]`: the index in `SYM_PAIRS` of the local pair
/// `(min(a, b), max(a, b))`.
pub const PAIR_INDEX: [[u8; NODES]; NODES] = {
    let mut out = [[0u8; NODES]; NODES];
    let mut k = 0;
    while k < SYM_ENTRIES {
        let (a, b) = SYM_PAIRS[k];
        out[a as usize][b as usize] = k as u8;
        out[b as usize][a as usize] = k as u8;
        k += 1;
    }
    out
};

/// Where [`pattern_rows`] writes slot maps: one [`SlotMap`] per element
/// (in a slice, or scattered, e.g. in ECS components), which several
/// threads may fill at once as long as they build disjoint row ranges (the
/// pair `(i, j)`, `i <= j`, of an element is written only by the builder of
/// row `i`).
pub type SlotWriter<'a> = Disjoint<'a, SlotMap>;

/// How many rows ahead [`pattern_rows`] prefetches.
const PREFETCH_ROWS: usize = 4;

/// Asks the CPU to bring the cache line of `p` closer (a hint: never
/// faults, whatever `p` is).
#[inline(always)]
fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch does not access memory architecturally; SSE is
    // part of the x86_64 baseline.
    #[allow(unused_unsafe)]
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(p as *const i8)
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Upper-triangle columns of rows `rows` (a contiguous range), appended to
/// `col`, with each row's end, counted from the range's first entry, pushed
/// to `ends`. Each row is gathered from the elements around its node (the
/// adjacency `(ptr, adj)` from [`node_elements`]), sorted and deduplicated
/// in a small buffer (no `n`-sized marker array to clear). With `slots`,
/// every element pair `(i, j)`, `i <= j`, of a row `i` in the range gets
/// its slot written, counted from the range's first entry (add the range's
/// offset in the whole matrix): the position of `j` in the row just built,
/// looked up in `rank`, no search. `rank` is scratch (any content; grown to
/// `n + 1` entries when slots are written), reusable from call to call. The
/// elements and slot maps of a few rows ahead are prefetched: with
/// scattered node numbering they are cache misses.
///
/// # Safety
/// Calls running at the same time with the same `slots` must have disjoint
/// `rows`, and nothing else may access those slot maps meanwhile.
pub unsafe fn pattern_rows(
    rows: std::ops::Range<usize>,
    elements: &[[u32; NODES]],
    (ne_ptr, ne_adj): (&[u32], &[u32]),
    col: &mut Vec<u32>,
    ends: &mut Vec<u32>,
    slots: Option<&SlotWriter>,
    rank: &mut Vec<u32>,
) {
    let first = col.len();
    let mut buf: Vec<u32> = Vec::with_capacity(64);
    if slots.is_some() && rank.len() < ne_ptr.len() {
        // read only for columns of the row being built, so never cleared
        // (and its pages are touched only where used)
        *rank = vec![0; ne_ptr.len()];
    }
    let n = ne_ptr.len().saturating_sub(1);
    for i in rows {
        // the elements (and slot maps) of a row a few rows on, fetched now:
        // with scattered node numbering they are cache misses, and waiting
        // for them one by one is most of the time
        if i + PREFETCH_ROWS < n {
            let ahead = i + PREFETCH_ROWS;
            for &e in &ne_adj[ne_ptr[ahead] as usize..ne_ptr[ahead + 1] as usize] {
                prefetch(elements.as_ptr().wrapping_add(e as usize));
                if let Some(slots) = slots {
                    let m = slots.ptr(e as usize) as *const u8;
                    for line in 0..3 {
                        prefetch(m.wrapping_add(64 * line));
                    }
                    prefetch(m.wrapping_add(SYM_ENTRIES * 4 - 1));
                }
            }
        }
        let around = &ne_adj[ne_ptr[i] as usize..ne_ptr[i + 1] as usize];
        buf.clear();
        for &e in around {
            for &j in &elements[e as usize] {
                if j as usize > i {
                    buf.push(j);
                }
            }
        }
        buf.sort_unstable();
        buf.dedup();
        let start = (col.len() - first) as u32;
        col.push(i as u32);
        col.extend_from_slice(&buf);
        ends.push((col.len() - first) as u32);
        let Some(slots) = slots else { continue };
        rank[i] = start;
        for (p, &j) in buf.iter().enumerate() {
            rank[j as usize] = start + 1 + p as u32;
        }
        for &e in around {
            let el = &elements[e as usize];
            let Some(a) = el.iter().position(|&v| v as usize == i) else {
                continue;
            };
            let pairs = &PAIR_INDEX[a];
            for (b, &j) in el.iter().enumerate() {
                if j as usize >= i {
                    // SAFETY: pair (a, b) of element e has row i, which
                    // only this call builds (the caller's contract).
                    unsafe { slots.get_mut(e as usize)[pairs[b] as usize] = rank[j as usize] };
                }
            }
        }
    }
}

/// Index of entry `(i, j)` of a CSR with sorted columns `(rowptr, col)`,
/// if stored (a binary search in row `i`).
#[inline]
pub fn slot_in_row(rowptr: &[u32], col: &[u32], i: u32, j: u32) -> Option<u32> {
    let (s, e) = (rowptr[i as usize] as usize, rowptr[i as usize + 1] as usize);
    col[s..e].binary_search(&j).ok().map(|k| (s + k) as u32)
}

impl SymCsr {
    /// Builds the pattern (values zero) from the connectivity.
    pub fn pattern(n: usize, elements: &[[u32; NODES]]) -> Result<Self, PatternTooLarge> {
        Self::build(n, elements, None)
    }

    /// Builds the pattern (values zero) and every element's slot map, in
    /// one pass over the rows: each slot is the position of the pair's
    /// column in the row just built, no search of the finished matrix.
    pub fn pattern_with_slots(
        n: usize,
        elements: &[[u32; NODES]],
    ) -> Result<(Self, Vec<SlotMap>), PatternTooLarge> {
        let mut maps = vec![[0u32; SYM_ENTRIES]; elements.len()];
        let k = Self::pattern_into_slots(n, elements, &SlotWriter::slice(&mut maps))?;
        Ok((k, maps))
    }

    /// As [`SymCsr::pattern_with_slots`], writing the slot maps through
    /// `slots` (one per element).
    pub fn pattern_into_slots(
        n: usize,
        elements: &[[u32; NODES]],
        slots: &SlotWriter,
    ) -> Result<Self, PatternTooLarge> {
        assert_eq!(slots.len(), elements.len());
        Self::build(n, elements, Some(slots))
    }

    fn build(
        n: usize,
        elements: &[[u32; NODES]],
        slots: Option<&SlotWriter>,
    ) -> Result<Self, PatternTooLarge> {
        let (ne_ptr, ne_adj) = node_elements(n, elements);
        let mut col = Vec::with_capacity(n * 12);
        let mut ends = Vec::with_capacity(n + 1);
        ends.push(0);
        // SAFETY: one call builds every row.
        unsafe {
            pattern_rows(
                0..n,
                elements,
                (&ne_ptr, &ne_adj),
                &mut col,
                &mut ends,
                slots,
                &mut Vec::new(),
            )
        };
        if col.len() >= u32::MAX as usize {
            return Err(PatternTooLarge(col.len()));
        }
        let nnz = col.len();
        Ok(Self {
            n,
            rowptr: ends,
            col,
            val: vec![0.0; nnz],
        })
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
        slot_in_row(&self.rowptr, &self.col, i, j)
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

    /// The upper triangle of a full symmetric CSR `(fp, fc, fv)` (sorted
    /// columns, every diagonal stored; the lower triangle is ignored).
    pub fn upper_of_full(fp: &[u32], fc: &[u32], fv: &[f64]) -> Self {
        let n = fp.len() - 1;
        let mut rowptr = Vec::with_capacity(n + 1);
        rowptr.push(0u32);
        let mut col = Vec::with_capacity(fc.len() / 2 + n);
        let mut val = Vec::with_capacity(fc.len() / 2 + n);
        for i in 0..n {
            for k in fp[i] as usize..fp[i + 1] as usize {
                if fc[k] as usize >= i {
                    col.push(fc[k]);
                    val.push(fv[k]);
                }
            }
            rowptr.push(col.len() as u32);
        }
        Self {
            n,
            rowptr,
            col,
            val,
        }
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
    fn slot_maps_built_with_the_rows_equal_the_searched_ones() {
        // the two elements, and their nodes renumbered out of order
        let perm = [9u32, 3, 12, 0, 7, 1, 11, 5, 2, 10, 6, 4, 8, 13];
        for els in [
            elems(),
            elems()
                .iter()
                .map(|el| el.map(|v| perm[v as usize]))
                .collect(),
        ] {
            let (a, maps) = SymCsr::pattern_with_slots(14, &els).unwrap();
            assert_eq!(a, SymCsr::pattern(14, &els).unwrap());
            for (el, m) in els.iter().zip(&maps) {
                assert_eq!(*m, slot_map(&a, el));
            }
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
