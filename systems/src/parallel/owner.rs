//! The owner-computes split of the direct-CSR assembly, and the sparsity
//! pattern with the slot maps built over it.
//!
//! Every node (a row of the matrix, an entry of `f`) has one owning part,
//! one part per thread. A part builds the pattern rows of its nodes and
//! adds the matrix entries of its rows, from every element touching them:
//! its elements, in increasing order. No two threads write the same row,
//! slot or entry, so nothing is synchronised and every entry sums its
//! contributions in element order, as the serial executor does: the
//! results are the serial ones bit for bit, whatever the split. Elements
//! on the border between two parts are computed by both.

use crate::element::{NODES, SYM_ENTRIES, SYM_PAIRS};
use crate::exec::Disjoint;
use crate::sparse::{self, PAIR_INDEX, SymCsr};
use bevy_ecs::prelude::*;
use rayon::prelude::*;

/// Bit mask of an element whose eight nodes a part all owns.
pub const ALL_OWNED: u8 = u8::MAX;

/// Parts of an [`OwnerSplit`] at most (node owners are stored in 16 bits;
/// a pool of more threads leaves the rest idle in the owner-computes
/// assembly).
pub const MAX_PARTS: usize = 1 << 16;

/// Element centroids the bisection looks at, at most (a regular sample of
/// the elements: the cuts need balance, not exactness).
const SAMPLE: usize = 16_384;

/// An element of a part of an [`OwnerSplit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnedElement {
    /// Its position in element order.
    pub element: u32,
    /// Bit `a` is set where the part owns the element's node `a`
    /// ([`ALL_OWNED`]: all eight).
    pub mask: u8,
}

/// The owner-computes split: every node has one owning part, and each
/// part lists its nodes and, in increasing element order, every element
/// touching one of them, with the mask of the nodes it owns there.
///
/// Nodes are owned by region: recursive coordinate bisection of the
/// element centroids (each cut across the longer extent, at the element
/// count that gives the parts equal shares) defines `parts` regions, and a
/// node belongs to the region of its coordinates. A region holds a compact
/// patch of the mesh, whatever the numbering, so few elements are computed
/// twice (0.3% on `y_tube_195k` with two parts, whose node and element
/// numberings have no locality: contiguous blocks of rows would compute
/// 76% of the elements twice) and an element's slot map is written by one
/// thread, not passed between caches. Built once per pattern (a resource
/// between the pattern and the scatter).
#[derive(Resource, Debug, Clone, PartialEq, Eq)]
pub struct OwnerSplit {
    /// Owning part of every node (empty with one part).
    owner: Vec<u16>,
    /// Position of every node among its owner's nodes (empty with one
    /// part).
    local: Vec<u32>,
    /// Per part, its nodes in increasing order (empty with one part).
    rows: Vec<Vec<u32>>,
    /// Per part, its elements in increasing order.
    parts: Vec<Vec<OwnedElement>>,
}

/// A node of the bisection tree, in pre-order (the low side of a cut
/// follows it; `hi` is where the high side starts).
#[derive(Debug, Clone, Copy)]
enum Cut {
    Leaf(u16),
    Split { axis: usize, at: f64, hi: usize },
}

/// The cuts of `pts` into `k` parts numbered from `first`.
fn bisect(pts: &mut [[f64; 2]], k: usize, first: usize, tree: &mut Vec<Cut>) {
    if k <= 1 || pts.len() < 2 {
        tree.push(Cut::Leaf(first as u16));
        return;
    }
    let extent = |d: usize| {
        pts.iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
                (a.min(p[d]), b.max(p[d]))
            })
    };
    let ((x0, x1), (y0, y1)) = (extent(0), extent(1));
    let axis = if x1 - x0 >= y1 - y0 { 0 } else { 1 };
    let k1 = k / 2;
    let cut = pts.len() * k1 / k;
    pts.select_nth_unstable_by(cut, |a, b| a[axis].total_cmp(&b[axis]));
    let at = pts[cut][axis];
    let me = tree.len();
    tree.push(Cut::Split { axis, at, hi: 0 });
    let (lo, hi) = pts.split_at_mut(cut);
    bisect(lo, k1, first, tree);
    let h = tree.len();
    if let Cut::Split { hi, .. } = &mut tree[me] {
        *hi = h;
    }
    bisect(hi, k - k1, first + k1, tree);
}

/// The part whose region holds `p`.
fn region(tree: &[Cut], p: [f64; 2]) -> u16 {
    let mut i = 0;
    loop {
        match tree[i] {
            Cut::Leaf(o) => return o,
            Cut::Split { axis, at, hi } => i = if p[axis] < at { i + 1 } else { hi },
        }
    }
}

impl OwnerSplit {
    /// The split of the mesh given by node coordinates `x`, `y` and its
    /// `elements` into `parts` parts (at least 1, at most [`MAX_PARTS`]),
    /// built on the current rayon pool.
    pub fn new(x: &[f64], y: &[f64], elements: &[[u32; NODES]], parts: usize) -> Self {
        let parts = parts.clamp(1, MAX_PARTS);
        let ne = elements.len();
        if parts == 1 {
            let all = (0..ne as u32)
                .map(|element| OwnedElement {
                    element,
                    mask: ALL_OWNED,
                })
                .collect();
            return Self {
                owner: Vec::new(),
                local: Vec::new(),
                rows: Vec::new(),
                parts: vec![all],
            };
        }
        let n = x.len();
        let tree = {
            let step = ne.div_ceil(SAMPLE).max(1);
            let mut pts: Vec<[f64; 2]> = elements
                .iter()
                .step_by(step)
                .map(|el| {
                    let c = |z: &[f64]| el[..4].iter().map(|&v| z[v as usize]).sum::<f64>() / 4.0;
                    [c(x), c(y)]
                })
                .collect();
            let mut tree = Vec::with_capacity(2 * parts);
            bisect(&mut pts, parts, 0, &mut tree);
            tree
        };
        // nodes: owners and counts per chunk, then local positions
        let chunk = n.div_ceil(rayon::current_num_threads()).max(8192);
        let mut owner = vec![0u16; n];
        let counts: Vec<Vec<u32>> = owner
            .par_chunks_mut(chunk)
            .enumerate()
            .map(|(c, o)| {
                let mut cnt = vec![0u32; parts];
                for (k, o) in o.iter_mut().enumerate() {
                    let v = c * chunk + k;
                    *o = region(&tree, [x[v], y[v]]);
                    cnt[*o as usize] += 1;
                }
                cnt
            })
            .collect();
        let mut rows: Vec<Vec<u32>> = (0..parts)
            .map(|p| vec![0; counts.iter().map(|c| c[p] as usize).sum()])
            .collect();
        let mut local = vec![0u32; n];
        {
            let rows_w: Vec<Disjoint<u32>> = rows.iter_mut().map(|r| Disjoint::slice(r)).collect();
            let mut base = vec![0u32; parts];
            let starts: Vec<Vec<u32>> = counts
                .iter()
                .map(|cnt| {
                    let s = base.clone();
                    for (b, c) in base.iter_mut().zip(cnt) {
                        *b += c;
                    }
                    s
                })
                .collect();
            local
                .par_chunks_mut(chunk)
                .zip(starts)
                .enumerate()
                .for_each(|(c, (l, mut next))| {
                    for (k, l) in l.iter_mut().enumerate() {
                        let v = c * chunk + k;
                        let p = owner[v] as usize;
                        *l = next[p];
                        // SAFETY: the chunks' ranges of each part's rows
                        // are disjoint (prefix sums of their counts).
                        unsafe { *rows_w[p].get_mut(next[p] as usize) = v as u32 };
                        next[p] += 1;
                    }
                });
        }
        // elements: per chunk, per part, then concatenated in chunk order
        let chunk = ne.div_ceil(rayon::current_num_threads()).max(4096);
        let pieces: Vec<Vec<Vec<OwnedElement>>> = elements
            .par_chunks(chunk)
            .enumerate()
            .map(|(c, ch)| {
                let mut lists = vec![Vec::with_capacity(ch.len() / parts + 64); parts];
                for (i, el) in ch.iter().enumerate() {
                    let element = (c * chunk + i) as u32;
                    let o = el.map(|v| owner[v as usize]);
                    if o.iter().all(|&p| p == o[0]) {
                        lists[o[0] as usize].push(OwnedElement {
                            element,
                            mask: ALL_OWNED,
                        });
                        continue;
                    }
                    let mut seen = 0u8;
                    for a in 0..NODES {
                        if seen >> a & 1 != 0 {
                            continue;
                        }
                        let mut mask = 0u8;
                        for (b, &p) in o.iter().enumerate().skip(a) {
                            if p == o[a] {
                                mask |= 1 << b;
                            }
                        }
                        seen |= mask;
                        lists[o[a] as usize].push(OwnedElement { element, mask });
                    }
                }
                lists
            })
            .collect();
        let parts = (0..parts)
            .into_par_iter()
            .map(|p| {
                if pieces.len() == 1 {
                    return pieces[0][p].clone();
                }
                let mut v = Vec::with_capacity(pieces.iter().map(|l| l[p].len()).sum());
                for l in &pieces {
                    v.extend_from_slice(&l[p]);
                }
                v
            })
            .collect();
        Self {
            owner,
            local,
            rows,
            parts,
        }
    }

    /// Number of parts.
    pub fn parts(&self) -> usize {
        self.parts.len()
    }

    /// The elements of part `p`, increasing.
    pub fn elements(&self, p: usize) -> &[OwnedElement] {
        &self.parts[p]
    }

    /// The nodes part `p` owns, increasing (all nodes with one part:
    /// `None`).
    pub fn nodes(&self, p: usize) -> Option<&[u32]> {
        self.rows.get(p).map(Vec::as_slice)
    }

    /// The owning part of node `v`.
    pub fn owner(&self, v: usize) -> usize {
        self.owner.get(v).map_or(0, |&o| o as usize)
    }

    /// Elements listed in all parts (elements computed twice count twice).
    pub fn listed(&self) -> usize {
        self.parts.iter().map(Vec::len).sum()
    }
}

/// How many rows ahead [`pattern_owner`] prefetches.
const PREFETCH_ROWS: usize = 4;

/// Asks for the cache line of `p` (a hint: no access, never faults).
#[inline(always)]
pub(super) fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch does not access memory architecturally; SSE is
    // part of the x86_64 baseline.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(p as *const i8)
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// The rows a part built: their columns one after the other, and where
/// each row starts (one more entry than rows).
struct PartRows {
    col: Vec<u32>,
    start: Vec<u32>,
}

/// Builds the rows of part `p`'s nodes and writes the slots of their
/// pairs, each as the position of its column in its row (the row's start
/// in the matrix is added later).
///
/// # Safety
/// No other thread accesses, meanwhile, the slot map entries of pairs whose
/// row is a node of `p` (other parts' pairs of the same elements may be
/// written).
unsafe fn part_rows(
    p: usize,
    split: &OwnerSplit,
    elements: &[[u32; NODES]],
    slots: &sparse::SlotWriter,
) -> PartRows {
    let rows = &split.rows[p];
    let list = &split.parts[p];
    let m = rows.len();
    // the part's own node-to-element adjacency, in its local numbering
    let mut ptr = vec![0u32; m + 1];
    for oe in list {
        let el = &elements[oe.element as usize];
        for (a, &v) in el.iter().enumerate() {
            if oe.mask >> a & 1 != 0 {
                ptr[split.local[v as usize] as usize + 1] += 1;
            }
        }
    }
    for k in 0..m {
        ptr[k + 1] += ptr[k];
    }
    let mut fill = ptr.clone();
    let mut adj = vec![0u32; ptr[m] as usize];
    for oe in list {
        let el = &elements[oe.element as usize];
        for (a, &v) in el.iter().enumerate() {
            if oe.mask >> a & 1 != 0 {
                let f = &mut fill[split.local[v as usize] as usize];
                adj[*f as usize] = oe.element;
                *f += 1;
            }
        }
    }
    drop(fill);
    let mut col = Vec::with_capacity(m * 12);
    let mut start = Vec::with_capacity(m + 1);
    start.push(0u32);
    let mut buf: Vec<u32> = Vec::with_capacity(64);
    for (k, &i) in rows.iter().enumerate() {
        if let Some(ahead) = ptr.get(k + PREFETCH_ROWS + 1) {
            let from = ptr[k + PREFETCH_ROWS] as usize;
            for &e in &adj[from..*ahead as usize] {
                prefetch(elements.as_ptr().wrapping_add(e as usize));
                let m = slots.ptr(e as usize) as *const u8;
                for line in 0..3 {
                    prefetch(m.wrapping_add(64 * line));
                }
                prefetch(m.wrapping_add(SYM_ENTRIES * 4 - 1));
            }
        }
        let around = &adj[ptr[k] as usize..ptr[k + 1] as usize];
        buf.clear();
        for &e in around {
            for &j in &elements[e as usize] {
                if j > i {
                    buf.push(j);
                }
            }
        }
        buf.sort_unstable();
        buf.dedup();
        col.push(i);
        col.extend_from_slice(&buf);
        start.push(col.len() as u32);
        for &e in around {
            let el = &elements[e as usize];
            let a = el.iter().position(|&v| v == i).expect("adjacency");
            let pairs = &PAIR_INDEX[a];
            let map = slots.ptr(e as usize) as *mut u32;
            for (b, &j) in el.iter().enumerate() {
                if j >= i {
                    let r = if j == i {
                        0
                    } else {
                        1 + buf.binary_search(&j).expect("column in its row")
                    };
                    // SAFETY: pair (a, b) of element e has row i, a node of
                    // this part (the caller's contract); in bounds.
                    unsafe { *map.add(pairs[b] as usize) = r as u32 };
                }
            }
        }
    }
    PartRows { col, start }
}

/// The sparsity pattern and every element's slot map (written through
/// `slots`, final), built over the owner-computes `split` in parallel:
/// each part builds its nodes' rows (gathered from its elements, sorted,
/// deduplicated) into its own buffer and writes its pairs' slots relative
/// to their rows; the row lengths give the row starts; the rows are copied
/// into place by blocks of rows; each part adds the row starts to its
/// slots. The pattern equals [`SymCsr::pattern`] and the slot maps
/// [`SymCsr::pattern_with_slots`]'s, for any split.
pub fn pattern_owner(
    elements: &[[u32; NODES]],
    split: &OwnerSplit,
    slots: &sparse::SlotWriter,
) -> Result<SymCsr, sparse::PatternTooLarge> {
    assert!(split.parts() > 1, "pattern_owner needs a split into parts");
    assert_eq!(slots.len(), elements.len());
    let n = split.owner.len();
    let built: Vec<PartRows> = {
        let _s = tracing::info_span!("parallel::owner_rows").entered();
        (0..split.parts())
            .into_par_iter()
            .with_max_len(1)
            // SAFETY: the parts' nodes are disjoint.
            .map(|p| unsafe { part_rows(p, split, elements, slots) })
            .collect()
    };
    let total: usize = built.iter().map(|b| b.col.len()).sum();
    if total >= u32::MAX as usize {
        return Err(sparse::PatternTooLarge(total));
    }
    let _s = tracing::info_span!("parallel::owner_place").entered();
    let span = |v: usize| {
        let (o, l) = (split.owner[v] as usize, split.local[v] as usize);
        let st = &built[o].start;
        (o, st[l] as usize, st[l + 1] as usize)
    };
    // row starts: blocks of rows sum their lengths, then fill from their
    // offsets; the columns are copied by the same blocks
    let block = n.div_ceil(4 * rayon::current_num_threads()).max(4096);
    let sums: Vec<u32> = (0..n.div_ceil(block))
        .into_par_iter()
        .map(|b| {
            (b * block..((b + 1) * block).min(n))
                .map(|v| {
                    let (_, s, e) = span(v);
                    (e - s) as u32
                })
                .sum()
        })
        .collect();
    let mut rowptr = vec![0u32; n + 1];
    let mut col = vec![0u32; total];
    {
        let mut offs = Vec::with_capacity(sums.len());
        let mut acc = 0u32;
        for s in &sums {
            offs.push(acc);
            acc += s;
        }
        let cw = Disjoint::slice(&mut col);
        rowptr[1..]
            .par_chunks_mut(block)
            .zip(offs)
            .enumerate()
            .for_each(|(b, (rp, mut acc))| {
                for (k, rp) in rp.iter_mut().enumerate() {
                    let (o, s, e) = span(b * block + k);
                    let src = &built[o].col[s..e];
                    // SAFETY: every row has its diagonal (e > s), so the
                    // row's range starts inside `col`; the rows' ranges
                    // are disjoint (the blocks' rows too) and sum to its
                    // length.
                    unsafe {
                        std::ptr::copy_nonoverlapping(src.as_ptr(), cw.ptr(acc as usize), src.len())
                    };
                    acc += (e - s) as u32;
                    *rp = acc;
                }
            });
    }
    drop(built);
    {
        let _s = tracing::info_span!("parallel::owner_slots").entered();
        let rp = &rowptr;
        (0..split.parts())
            .into_par_iter()
            .with_max_len(1)
            .for_each(|p| {
                for oe in &split.parts[p] {
                    let e = oe.element as usize;
                    let el = &elements[e];
                    let map = slots.ptr(e) as *mut u32;
                    for (k, &(a, b)) in SYM_PAIRS.iter().enumerate() {
                        let (a, b) = (a as usize, b as usize);
                        let r = if el[a] <= el[b] { a } else { b };
                        if oe.mask >> r & 1 != 0 {
                            // SAFETY: the pair's row is a node of part p,
                            // whose pairs no other part touches; in bounds.
                            unsafe { *map.add(k) += rp[el[r] as usize] };
                        }
                    }
                }
            });
    }
    let mut val = vec![0.0; total];
    // first touch of the value pages here, in parallel, not in the scatter
    val.par_chunks_mut(1 << 14).for_each(|c| c.fill(0.0));
    Ok(SymCsr {
        n,
        rowptr,
        col,
        val,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesh::lattice_grid;

    /// A lattice on `[0, 3] x [0, 1]` with `unused` nodes no element
    /// references added, numbered in order or, with `shuffle`, nodes and
    /// elements at random (fixed seed; no locality, like the reference
    /// meshes).
    fn lattice(
        nx: usize,
        ny: usize,
        unused: usize,
        shuffle: bool,
    ) -> (Vec<f64>, Vec<f64>, Vec<[u32; NODES]>) {
        let (mut x, mut y, els) = lattice_grid(nx, ny, |u, v| (3.0 * u, v));
        for k in 0..unused {
            x.push(k as f64 * 0.37 % 3.0);
            y.push(0.5);
        }
        if !shuffle {
            return (x, y, els);
        }
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut perm = |n: usize| {
            let mut p: Vec<u32> = (0..n as u32).collect();
            for i in (1..n).rev() {
                seed = seed
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                p.swap(i, (seed >> 33) as usize % (i + 1));
            }
            p
        };
        let (pn, pe) = (perm(x.len()), perm(els.len()));
        let (mut x2, mut y2) = (vec![0.0; x.len()], vec![0.0; x.len()]);
        for (v, &to) in pn.iter().enumerate() {
            x2[to as usize] = x[v];
            y2[to as usize] = y[v];
        }
        let mut els2 = vec![[0u32; NODES]; els.len()];
        for (e, &to) in pe.iter().enumerate() {
            els2[to as usize] = els[e].map(|v| pn[v as usize]);
        }
        (x2, y2, els2)
    }

    /// What makes the owner-computes assembly exact: every node has one
    /// owner, which lists it among its nodes and lists every element
    /// touching it with the node's bit set; lists are increasing; no part
    /// lists an element it owns nothing of.
    fn check(n: usize, els: &[[u32; NODES]], s: &OwnerSplit) {
        let mut owner = vec![usize::MAX; n];
        let mut seen = vec![0u8; els.len()];
        for p in 0..s.parts() {
            let list = s.elements(p);
            assert!(list.windows(2).all(|w| w[0].element < w[1].element));
            for oe in list {
                assert_ne!(oe.mask, 0, "element {} listed for nothing", oe.element);
                let e = oe.element as usize;
                assert_eq!(seen[e] & oe.mask, 0, "a node of element {e} owned twice");
                seen[e] |= oe.mask;
                for (a, &v) in els[e].iter().enumerate() {
                    if oe.mask >> a & 1 != 0 {
                        let o = &mut owner[v as usize];
                        assert!(*o == usize::MAX || *o == p, "node {v}: two owners");
                        *o = p;
                        assert_eq!(s.owner(v as usize), p);
                    }
                }
            }
        }
        assert!(seen.iter().all(|&m| m == ALL_OWNED), "a node left unowned");
        if s.parts() > 1 {
            let mut all: Vec<u32> = (0..s.parts())
                .flat_map(|p| {
                    let nodes = s.nodes(p).unwrap();
                    assert!(nodes.windows(2).all(|w| w[0] < w[1]));
                    assert!(nodes.iter().all(|&v| s.owner(v as usize) == p));
                    nodes.to_vec()
                })
                .collect();
            all.sort_unstable();
            assert_eq!(all, (0..n as u32).collect::<Vec<_>>(), "nodes of the parts");
        }
    }

    fn pool(threads: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
    }

    #[test]
    fn owner_split_owns_every_node_once_and_lists_its_elements() {
        for (nx, ny, unused) in [(1, 1, 0), (3, 2, 3), (40, 13, 17)] {
            for shuffle in [false, true] {
                let (x, y, els) = lattice(nx, ny, unused, shuffle);
                for parts in 1..=9 {
                    let s = pool(parts.min(3)).install(|| OwnerSplit::new(&x, &y, &els, parts));
                    assert_eq!(s.parts(), parts);
                    check(x.len(), &els, &s);
                    // the same split on any pool
                    assert_eq!(s, OwnerSplit::new(&x, &y, &els, parts));
                }
            }
        }
    }

    #[test]
    fn owner_split_is_balanced_and_computes_few_elements_twice_whatever_the_numbering() {
        let (x, y, els) = lattice(120, 40, 0, true);
        let ne = els.len();
        for parts in [2, 3, 4, 8] {
            let s = OwnerSplit::new(&x, &y, &els, parts);
            check(x.len(), &els, &s);
            // each part's share within 10% of E / parts (its border rows
            // included: 8 parts are patches of 30 x 20 elements, with up to
            // 50 elements of their neighbours' listed too)
            for p in 0..parts {
                let share = s.elements(p).len() as f64 * parts as f64 / ne as f64;
                assert!((0.95..1.1).contains(&share), "{parts} parts: share {share}");
            }
            let twice = s.listed() - ne;
            assert!(
                twice <= 2 * 120 * (parts - 1),
                "{parts} parts: {twice} twice"
            );
        }
    }

    #[test]
    fn owner_pattern_and_slot_maps_equal_the_serial_ones() {
        for (nx, ny, unused) in [(1, 1, 2), (5, 3, 0), (40, 13, 17)] {
            for shuffle in [false, true] {
                let (x, y, els) = lattice(nx, ny, unused, shuffle);
                let n = x.len();
                let (k1, maps1) = SymCsr::pattern_with_slots(n, &els).unwrap();
                for parts in 2..=9 {
                    let pool = pool(parts.min(3));
                    let s = pool.install(|| OwnerSplit::new(&x, &y, &els, parts));
                    // maps start with garbage: every entry must be written
                    let mut maps = vec![[u32::MAX / 2; SYM_ENTRIES]; els.len()];
                    let w = sparse::SlotWriter::scattered(els.len(), maps.iter_mut().enumerate());
                    let k = pool.install(|| pattern_owner(&els, &s, &w)).unwrap();
                    drop(w);
                    let tag = format!("{nx} x {ny}, shuffled {shuffle}, {parts} parts");
                    assert_eq!(k, k1, "{tag}: pattern");
                    assert_eq!(maps, maps1, "{tag}: slot maps");
                }
            }
        }
    }
}
