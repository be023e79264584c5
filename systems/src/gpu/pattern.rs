//! The full (both triangles) CSR pattern the device assembles into and
//! multiplies with: built on the device from the connectivity
//! ([`build_on_device`], `kernels/pattern.cu`), with the host
//! [`FullPattern::build`] as its tested reference, and the conversions to
//! and from the host [`SymCsr`].

use super::device::{Ctx, Device, GResult, backend_error};
use super::launch;
use super::report::GpuReport;
use crate::element::{NODES, SYM_PAIRS};
use crate::sparse::{self, PatternTooLarge, SymCsr};
use cudarc::driver::{CudaSlice, PushKernelArg};

/// The size of a full pattern, known on the host while the arrays live on
/// the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PatternShape {
    /// Rows.
    pub n: usize,
    /// Stored entries.
    pub entries: usize,
    /// Rows with no off-diagonal entry.
    pub decoupled: usize,
}

impl PatternShape {
    /// Stored entries.
    pub fn nnz(&self) -> usize {
        self.entries
    }

    /// Mean entries per row.
    pub fn mean_row(&self) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            self.entries as f64 / self.n as f64
        }
    }

    /// Rows with no off-diagonal entry (decoupled from the rest).
    pub fn decoupled_rows(&self) -> usize {
        self.decoupled
    }
}

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

    /// Its size.
    pub fn shape(&self) -> PatternShape {
        PatternShape {
            n: self.n,
            entries: self.nnz(),
            decoupled: self.decoupled_rows(),
        }
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
        sparse::slot_in_row(&self.rowptr, &self.col, i, j)
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

/// Items per tile of the device scan (`qf_scan_tiles`: 4 per thread,
/// [`launch::BLOCK`] threads).
pub const SCAN_TILE: usize = 4 * launch::BLOCK as usize;

/// Tiles (blocks of `qf_scan_tiles`, entries of the tile-sum buffer) of a
/// scan over `len` items.
pub fn scan_tiles(len: usize) -> usize {
    len.div_ceil(SCAN_TILE).max(1)
}

/// Host mirror of the device scan, step by step: exclusive scan within
/// tiles of [`SCAN_TILE`], exclusive scan of the tile sums with a 64-bit
/// carry, offsets added. Returns the 64-bit total. (The device result
/// must equal a plain prefix sum; the unit tests check this mirror.)
pub fn tiled_exclusive_scan(data: &mut [u32]) -> u64 {
    let mut sums = vec![0u32; scan_tiles(data.len())];
    for (t, tile) in data.chunks_mut(SCAN_TILE).enumerate() {
        let mut run = 0u32;
        for v in tile.iter_mut() {
            let x = *v;
            *v = run;
            run = run.wrapping_add(x);
        }
        sums[t] = run;
    }
    let mut carry = 0u64;
    for s in sums.iter_mut() {
        let x = *s;
        *s = carry as u32;
        carry += x as u64;
    }
    for (i, v) in data.iter_mut().enumerate() {
        *v = v.wrapping_add(sums[i / SCAN_TILE]);
    }
    carry
}

/// Host mirror of the device's row walk (`qf_row_walk`): the sorted
/// distinct nodes of the elements of row `i` (`elements_of_i`), found by
/// repeatedly taking the smallest node above the last one taken; an
/// unused node (no element) gets its diagonal alone.
pub fn row_by_selection(i: u32, elements_of_i: &[[u32; NODES]]) -> Vec<u32> {
    if elements_of_i.is_empty() {
        return vec![i];
    }
    let mut row = Vec::new();
    let mut prev: Option<u32> = None;
    loop {
        let best = elements_of_i
            .iter()
            .flatten()
            .copied()
            .filter(|&c| prev.is_none_or(|p| c > p))
            .min();
        match best {
            Some(c) => {
                row.push(c);
                prev = Some(c);
            }
            None => return row,
        }
    }
}

/// The assembled system on the device, in full CSR.
pub struct DeviceSystem {
    /// Its size (the structure itself lives on the device only).
    pub pattern: PatternShape,
    /// Row starts.
    pub rowptr: CudaSlice<u32>,
    /// Columns.
    pub col: CudaSlice<u32>,
    /// Values of `K`.
    pub val: CudaSlice<f64>,
    /// `f`.
    pub f: CudaSlice<f64>,
}

/// The full pattern on the device, with the node-to-element lists it was
/// built from (the row-wise assembly reads them, then they go).
pub struct DevicePattern {
    /// Row starts, `n + 1` entries.
    pub rowptr: CudaSlice<u32>,
    /// Sorted columns of each row.
    pub col: CudaSlice<u32>,
    /// Its size.
    pub shape: PatternShape,
    /// Starts of the node-to-element lists, `n + 1` entries.
    pub node_ptr: CudaSlice<u32>,
    /// The elements of every node, ascending (an element twice where the
    /// node is twice in it).
    pub node_el: CudaSlice<u32>,
}

fn i32_len(n: usize, what: &str) -> GResult<i32> {
    i32::try_from(n)
        .map_err(|_| backend_error(format!("{n} {what}: more than 32-bit indices allow")))
}

/// In-place exclusive scan of the first `len` entries of `buf` on the
/// device; the 64-bit total goes to `total[0]`.
pub fn scan_in_place(
    st: &Device,
    buf: &mut CudaSlice<u32>,
    len: usize,
    total: &mut CudaSlice<u64>,
) -> GResult<()> {
    let tiles = scan_tiles(len);
    let mut sums = st.zeros::<u32>(tiles)?;
    let len32 = i32_len(len, "scan items")?;
    let tiles32 = i32_len(tiles, "scan tiles")?;
    let tile32 = SCAN_TILE as i32;
    let shape = launch::Shape {
        grid: tiles as u32,
        block: launch::BLOCK,
    };
    let f = st.func("qf_scan_tiles")?;
    let mut b = st.stream.launch_builder(f);
    b.arg(&len32).arg(&mut *buf).arg(&mut sums);
    // SAFETY: argument types and buffer sizes match the kernel.
    unsafe { b.launch(shape.config()) }.ctx("qf_scan_tiles")?;
    let one = launch::Shape {
        grid: 1,
        block: launch::BLOCK,
    };
    let f = st.func("qf_scan_tops")?;
    let mut b = st.stream.launch_builder(f);
    b.arg(&tiles32).arg(&mut sums).arg(&mut *total);
    // SAFETY: as above.
    unsafe { b.launch(one.config()) }.ctx("qf_scan_tops")?;
    let f = st.func("qf_scan_add")?;
    let mut b = st.stream.launch_builder(f);
    b.arg(&len32).arg(&mut *buf).arg(&sums).arg(&tile32);
    // SAFETY: as above.
    unsafe { b.launch(launch::per_item(len).config()) }.ctx("qf_scan_add")?;
    Ok(())
}

/// Builds the full pattern of a mesh of `n` nodes on the device from its
/// connectivity `conn` (8 nodes per element, `ne` elements, already on
/// the device): node-to-element adjacency by counting, scan, filling and
/// sorting, then per row the sorted distinct neighbours, counted, scanned
/// into row starts and written (`kernels/pattern.cu`). One synchronisation (to
/// read the entry count and the decoupled rows, 16 bytes); nothing else
/// crosses the bus. Equal to [`FullPattern::build`] (`tests/gpu.rs`).
pub fn build_on_device(
    st: &Device,
    report: &mut GpuReport,
    n: usize,
    ne: usize,
    conn: &CudaSlice<u32>,
) -> GResult<DevicePattern> {
    let n32 = i32_len(n, "nodes")?;
    let ne32 = i32_len(ne, "elements")?;
    i32_len(ne * NODES, "element-node pairs")?;
    // 1-2: elements per node, scanned into the adjacency offsets
    let mut ne_ptr = st.zeros::<u32>(n + 1)?;
    {
        let f = st.func("qf_node_degree")?;
        let mut b = st.stream.launch_builder(f);
        b.arg(&ne32).arg(conn).arg(&mut ne_ptr);
        // SAFETY: argument types and buffer sizes match the kernel.
        unsafe { b.launch(launch::per_item(ne).config()) }.ctx("qf_node_degree")?;
    }
    let mut scratch_total = st.zeros::<u64>(1)?;
    scan_in_place(st, &mut ne_ptr, n + 1, &mut scratch_total)?;
    // 3: the adjacency lists
    let mut cursor = st.zeros::<u32>(n)?;
    let mut adj = st.zeros::<u32>(ne * NODES)?;
    {
        let f = st.func("qf_node_fill")?;
        let mut b = st.stream.launch_builder(f);
        b.arg(&ne32)
            .arg(conn)
            .arg(&ne_ptr)
            .arg(&mut cursor)
            .arg(&mut adj);
        // SAFETY: as above.
        unsafe { b.launch(launch::per_item(ne).config()) }.ctx("qf_node_fill")?;
    }
    drop(cursor);
    {
        let f = st.func("qf_node_sort")?;
        let mut b = st.stream.launch_builder(f);
        b.arg(&n32).arg(&ne_ptr).arg(&mut adj);
        // SAFETY: as above.
        unsafe { b.launch(launch::per_item(n).config()) }.ctx("qf_node_sort")?;
    }
    // 4-5: row lengths, scanned into row starts; meta = [nnz, decoupled]
    let mut rowptr = st.zeros::<u32>(n + 1)?;
    let mut meta = st.zeros::<u64>(2)?;
    {
        let f = st.func("qf_row_count")?;
        let mut b = st.stream.launch_builder(f);
        b.arg(&n32)
            .arg(&ne_ptr)
            .arg(&adj)
            .arg(conn)
            .arg(&mut rowptr)
            .arg(&mut meta);
        // SAFETY: as above.
        unsafe { b.launch(launch::per_item(n).config()) }.ctx("qf_row_count")?;
    }
    scan_in_place(st, &mut rowptr, n + 1, &mut meta)?;
    let m = st.download(report, "pattern size", &meta, 2)?;
    let (nnz, decoupled) = (m[0] as usize, m[1] as usize);
    if nnz >= u32::MAX as usize {
        return Err(PatternTooLarge(nnz).into());
    }
    // 6: the columns
    let mut col = st.zeros::<u32>(nnz)?;
    {
        let f = st.func("qf_row_fill")?;
        let mut b = st.stream.launch_builder(f);
        b.arg(&n32)
            .arg(&ne_ptr)
            .arg(&adj)
            .arg(conn)
            .arg(&rowptr)
            .arg(&mut col);
        // SAFETY: as above.
        unsafe { b.launch(launch::per_item(n).config()) }.ctx("qf_row_fill")?;
    }
    Ok(DevicePattern {
        rowptr,
        col,
        shape: PatternShape {
            n,
            entries: nnz,
            decoupled,
        },
        node_ptr: ne_ptr,
        node_el: adj,
    })
}

/// Copies a device pattern back (tests, and a host phase after a device
/// assembly).
pub fn download_pattern(
    st: &Device,
    report: &mut GpuReport,
    shape: PatternShape,
    rowptr: &CudaSlice<u32>,
    col: &CudaSlice<u32>,
) -> GResult<FullPattern> {
    Ok(FullPattern {
        n: shape.n,
        rowptr: st.download(report, "matrix row starts", rowptr, shape.n + 1)?,
        col: st.download(report, "matrix columns", col, shape.entries)?,
    })
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

    #[test]
    fn tiled_scan_equals_prefix_sum() {
        for len in [
            0usize,
            1,
            5,
            SCAN_TILE - 1,
            SCAN_TILE,
            SCAN_TILE + 1,
            3 * SCAN_TILE + 17,
            300 * SCAN_TILE + 3,
        ] {
            let data: Vec<u32> = (0..len).map(|i| (i as u32 * 7919) % 23).collect();
            let mut scanned = data.clone();
            let total = tiled_exclusive_scan(&mut scanned);
            let mut run = 0u64;
            for (i, &v) in data.iter().enumerate() {
                assert_eq!(scanned[i] as u64, run, "len {len}, item {i}");
                run += v as u64;
            }
            assert_eq!(total, run);
        }
        assert_eq!(scan_tiles(0), 1);
        assert_eq!(scan_tiles(SCAN_TILE), 1);
        assert_eq!(scan_tiles(SCAN_TILE + 1), 2);
        assert_eq!(scan_tiles(1_300_342), 1270);
        // the total is exact past 32 bits (each tile's sum fits in 32)
        let mut big = vec![3_000_000u32; 2 * SCAN_TILE];
        assert_eq!(
            tiled_exclusive_scan(&mut big),
            2 * SCAN_TILE as u64 * 3_000_000
        );
    }

    #[test]
    fn selection_rows_equal_the_host_pattern() {
        let els = elems();
        let n = 19;
        let p = FullPattern::build(n, &els).unwrap();
        let (ptr, adj) = sparse::node_elements(n, &els);
        for i in 0..n {
            let mine: Vec<[u32; NODES]> = adj[ptr[i] as usize..ptr[i + 1] as usize]
                .iter()
                .map(|&e| els[e as usize])
                .collect();
            let row = row_by_selection(i as u32, &mine);
            let (s, e) = (p.rowptr[i] as usize, p.rowptr[i + 1] as usize);
            assert_eq!(row, p.col[s..e], "row {i}");
        }
        let shape = p.shape();
        assert_eq!(shape.n, n);
        assert_eq!(shape.nnz(), p.nnz());
        assert_eq!(shape.decoupled_rows(), 1); // node 13
        assert_eq!(shape.mean_row(), p.mean_row());
        assert_eq!(PatternShape::default().mean_row(), 0.0);
    }
}
