//! The full (both triangles) CSR pattern the device assembles into and
//! multiplies with, built once on the host from the engine's symmetric
//! pattern, and the conversions to and from the host [`SymCsr`].

use crate::element::{NODES, SYM_PAIRS};
use crate::sparse::{self, PatternTooLarge, SymCsr};

/// Full CSR structure: row starts and sorted columns (no values; those
/// live on the device).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FullPattern {
    /// Rows.
    pub n: usize,
    /// Row starts, `n + 1` entries.
    pub rowptr: Vec<u32>,
    /// Columns, sorted within each row.
    pub col: Vec<u32>,
}

impl FullPattern {
    /// The structure of `a.to_full()` without touching values.
    pub fn from_sym(a: &SymCsr) -> Self {
        let rowptr = a.full_rowptr();
        let mut col = vec![0u32; rowptr[a.n] as usize];
        a.walk_full(&rowptr, |f, j, _| col[f] = j);
        Self {
            n: a.n,
            rowptr,
            col,
        }
    }

    /// Builds the pattern straight from the connectivity, rows in
    /// parallel (rayon): row `i` holds every node sharing an element with
    /// `i`, sorted. The same structure as `from_sym(&SymCsr::pattern(..))`
    /// (every node has its diagonal, unused nodes only that).
    pub fn build(n: usize, elements: &[[u32; NODES]]) -> Result<Self, PatternTooLarge> {
        use rayon::prelude::*;
        let (ne_ptr, ne_adj) = sparse::node_elements(n, elements);
        const ROWS: usize = 4096;
        let parts: Vec<(Vec<u32>, Vec<u32>)> = (0..n.div_ceil(ROWS))
            .into_par_iter()
            .map(|c| {
                let rows = c * ROWS..((c + 1) * ROWS).min(n);
                let mut len = Vec::with_capacity(rows.len());
                let mut col = Vec::with_capacity(rows.len() * 16);
                let mut row = Vec::with_capacity(64);
                for i in rows {
                    row.clear();
                    row.push(i as u32);
                    for &e in &ne_adj[ne_ptr[i] as usize..ne_ptr[i + 1] as usize] {
                        row.extend_from_slice(&elements[e as usize]);
                    }
                    row.sort_unstable();
                    row.dedup();
                    len.push(row.len() as u32);
                    col.extend_from_slice(&row);
                }
                (len, col)
            })
            .collect();
        let nnz: usize = parts.iter().map(|p| p.1.len()).sum();
        if nnz >= u32::MAX as usize {
            return Err(PatternTooLarge(nnz));
        }
        let mut rowptr = Vec::with_capacity(n + 1);
        let mut col = Vec::with_capacity(nnz);
        rowptr.push(0u32);
        for (len, c) in parts {
            for l in len {
                let last = *rowptr.last().unwrap();
                rowptr.push(last + l);
            }
            col.extend_from_slice(&c);
        }
        Ok(Self { n, rowptr, col })
    }

    /// Stored entries.
    pub fn nnz(&self) -> usize {
        self.col.len()
    }

    /// Mean entries per row.
    pub fn mean_row(&self) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            self.nnz() as f64 / self.n as f64
        }
    }

    /// Rows with no off-diagonal entry (decoupled from the rest).
    pub fn decoupled_rows(&self) -> usize {
        self.rowptr.windows(2).filter(|w| w[1] - w[0] <= 1).count()
    }

    /// Position of entry `(i, j)` (the device's `qf_find`).
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

    /// The upper triangle of the full matrix with values `val`, as the
    /// engine's [`SymCsr`] (diagonal first in each row).
    pub fn upper(&self, val: &[f64]) -> SymCsr {
        assert_eq!(val.len(), self.nnz());
        let mut rowptr = Vec::with_capacity(self.n + 1);
        let mut col = Vec::with_capacity((self.nnz() + self.n) / 2);
        let mut v = Vec::with_capacity((self.nnz() + self.n) / 2);
        rowptr.push(0u32);
        for i in 0..self.n {
            let (s, e) = (self.rowptr[i] as usize, self.rowptr[i + 1] as usize);
            for (&c, &x) in self.col[s..e].iter().zip(&val[s..e]) {
                if c as usize >= i {
                    col.push(c);
                    v.push(x);
                }
            }
            rowptr.push(col.len() as u32);
        }
        SymCsr {
            n: self.n,
            rowptr,
            col,
            val: v,
        }
    }
}

/// Host reference of the assembly kernel's addressing: for an element
/// with nodes `el`, the full-CSR position of every local pair `(a, b)`
/// (row `el[a]`, column `el[b]`), as `out[8 a + b]`. The device finds the
/// same positions by the same binary search (`qf_find`), so this function
/// is what the unit tests check the kernel's addressing against.
pub fn full_slot_map(p: &FullPattern, el: &[u32; NODES]) -> [u32; NODES * NODES] {
    let mut out = [0u32; NODES * NODES];
    for a in 0..NODES {
        for b in 0..NODES {
            out[a * NODES + b] = p
                .slot(el[a], el[b])
                .expect("element pair missing from its own pattern");
        }
    }
    out
}

/// Index of the pair `(a, b)`, `a <= b`, in [`SYM_PAIRS`] order (the
/// device's `qf_sym`).
pub fn sym_index(a: usize, b: usize) -> usize {
    debug_assert!(a <= b);
    a * (15 - a) / 2 + b
}

/// Checks [`sym_index`] against [`SYM_PAIRS`] (used by tests).
pub fn sym_index_matches_pairs() -> bool {
    SYM_PAIRS
        .iter()
        .enumerate()
        .all(|(k, &(a, b))| sym_index(a as usize, b as usize) == k)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::element::{SYM_ENTRIES, sym_to_full};

    fn elems() -> Vec<[u32; 8]> {
        vec![
            [0, 1, 4, 3, 6, 11, 8, 10],
            [1, 2, 5, 4, 7, 12, 9, 11],
            [3, 4, 15, 14, 8, 16, 17, 18],
        ]
    }

    fn numbered(n: usize) -> SymCsr {
        let mut a = SymCsr::pattern(n, &elems()).unwrap(); // node 13 unused
        for (k, v) in a.val.iter_mut().enumerate() {
            *v = k as f64 + 1.0;
        }
        a
    }

    #[test]
    fn structure_matches_to_full() {
        let a = numbered(19);
        let (rp, col, val) = a.to_full();
        let p = FullPattern::from_sym(&a);
        assert_eq!(p.rowptr, rp);
        assert_eq!(p.col, col);
        assert_eq!(p.nnz(), a.full_nnz());
        assert_eq!(p.decoupled_rows(), 1);
        // back to the upper triangle
        assert_eq!(p.upper(&val), a);
    }

    #[test]
    fn parallel_build_equals_expanded_serial_pattern() {
        let els = elems();
        let p = FullPattern::build(19, &els).unwrap();
        assert_eq!(
            p,
            FullPattern::from_sym(&SymCsr::pattern(19, &els).unwrap())
        );
        // many rows (several parallel chunks), a strip of elements
        let mut many = vec![];
        let nx = 3000;
        let id = |i: usize, j: usize| (j * (2 * nx + 1) + i) as u32;
        for ex in 0..nx {
            let i = 2 * ex;
            many.push([
                id(i, 0),
                id(i + 2, 0),
                id(i + 2, 2),
                id(i, 2),
                id(i + 1, 0),
                id(i + 2, 1),
                id(i + 1, 2),
                id(i, 1),
            ]);
        }
        let n = 3 * (2 * nx + 1);
        let p = FullPattern::build(n, &many).unwrap();
        assert_eq!(
            p,
            FullPattern::from_sym(&SymCsr::pattern(n, &many).unwrap())
        );
        assert_eq!(p.decoupled_rows(), nx); // the unused centre nodes
    }

    #[test]
    fn full_slot_maps_hit_their_entries() {
        let a = numbered(19);
        let (rp, col, val) = a.to_full();
        let p = FullPattern::from_sym(&a);
        for el in &elems() {
            let map = full_slot_map(&p, el);
            for a_ in 0..NODES {
                for b in 0..NODES {
                    let s = map[a_ * NODES + b] as usize;
                    let (i, j) = (el[a_] as usize, el[b] as usize);
                    assert!(rp[i] as usize <= s && s < rp[i + 1] as usize);
                    assert_eq!(col[s] as usize, j);
                    // the value there is the symmetric entry (min, max)
                    let up = a.slot(i.min(j) as u32, i.max(j) as u32).unwrap();
                    assert_eq!(val[s], a.val[up as usize]);
                }
            }
        }
    }

    #[test]
    fn scatter_through_full_map_equals_serial_scatter_expanded() {
        // element matrices scattered like the device does (64 adds per
        // element into the full CSR) give the full form of the serial
        // upper-triangle assembly.
        let els = elems();
        let mut sym = SymCsr::pattern(19, &els).unwrap();
        let p = FullPattern::from_sym(&sym);
        let mut full = vec![0.0; p.nnz()];
        for (e, el) in els.iter().enumerate() {
            let ke: [f64; SYM_ENTRIES] =
                std::array::from_fn(|k| (k as f64 + 1.0) * (e as f64 + 0.5));
            let slots = crate::sparse::slot_map(&sym, el);
            for (s, v) in slots.iter().zip(ke.iter()) {
                sym.val[*s as usize] += v;
            }
            let kf = sym_to_full(&ke);
            let map = full_slot_map(&p, el);
            for a in 0..NODES {
                for b in 0..NODES {
                    let v = if a <= b {
                        ke[sym_index(a, b)]
                    } else {
                        ke[sym_index(b, a)]
                    };
                    assert_eq!(v, kf[a][b]);
                    full[map[a * NODES + b] as usize] += v;
                }
            }
        }
        let (_, _, expect) = sym.to_full();
        assert_eq!(full, expect);
        assert!(sym_index_matches_pairs());
    }
}
