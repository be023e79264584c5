//! Built-in mesh generators for the reference geometries.
//!
//! [`generate`] builds a structured multi-block Quad-8 mesh of one of the
//! shapes of `GEOMETRIES.md` with about a requested number of nodes. Every
//! node, corners and mid-side nodes alike, is placed by the exact geometry
//! map of its block, so mid-side nodes on curved walls lie on the wall
//! formula (venturi walls, s-bend offsets, elbow arcs) and the isoparametric
//! elements follow the curves to third order.
//!
//! A block is a logical grid of `nx x ny` elements. Its nodes are addressed
//! by "fine" indices `(i, j)` with `0 <= i <= 2 nx`, `0 <= j <= 2 ny`;
//! element `(ei, ej)` has its corners at even `(2 ei, 2 ej) .. (2 ei + 2,
//! 2 ej + 2)` and its mid-side nodes at the odd positions between them (the
//! centre `(odd, odd)` is no node). Blocks that touch share their interface
//! nodes by construction: a later block copies the node numbers of an
//! earlier block's side instead of creating new nodes, so no coordinate
//! comparison or hashing is ever needed and the output is deterministic.
//!
//! [`GeneratedBlocks`] generates the same meshes a block at a time (any
//! range of elements, any nodes), for runs in which no process holds the
//! whole mesh.
//!
//! Besides the reference shapes there are two helpers for tests:
//! [`perturbed_channel`] (curved interior edges, same domain) and
//! [`mapped_grid`] (the unit square through any map), and [`quality`], a
//! Jacobian-ratio measure of a mesh.

mod blocks;

pub use blocks::GeneratedBlocks;

use crate::io::RawMesh;
use quadflow_systems::element::{BASIS9, NODES, QP, jacobian};
use std::f64::consts::PI;
use std::fmt;

/// Smallest `target_nodes` that [`generate`] accepts.
pub const MIN_TARGET_NODES: usize = 50;
/// Largest `target_nodes` that [`generate`] accepts: node numbers are
/// 32-bit (the generated count may exceed the target by a few percent).
/// Below it, the host's memory is the bound ([`GenerateError::OutOfMemory`]).
pub const MAX_TARGET_NODES: usize = 4_000_000_000;

/// Host bytes per requested node that generating a mesh and turning it
/// into the engine's mesh take at their peak: coordinates (16), the
/// generator's 64-bit connectivity (16 per node at a quarter element per
/// node), its node-number grids (about 6), the engine's 32-bit
/// connectivity and validation arrays (about 24), with a margin.
pub const BYTES_PER_NODE: u64 = 80;

/// Memory the kernel reports as available to new allocations
/// (`MemAvailable` of `/proc/meminfo`), if it can be read.
pub fn host_memory_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The reference shapes of `GEOMETRIES.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Geometry {
    /// Rectangle `[0, 3] x [0, 1]`.
    StraightChannel,
    /// `x` in `[0, 3]` between the walls `s(x)` and `1 - s(x)` (throat 0.4 at `x = 1.5`).
    Venturi,
    /// Inlet channel `[0, 1] x [0.5, 1]`, then `[1, 4] x [0, 1]`.
    BackwardStep,
    /// `x` in `[0, 4]`, centre line `y = sin(pi x / 4)`, walls `+-0.25` vertically.
    SBend,
    /// Main channel `[0, 3] x [0, 0.5]` with a branch `[1.25, 1.75] x [0.5, 1.5]`.
    TJunction,
    /// Union of `[0.5, 1] x [-1, 0]`, `[0, 1] x [0.5, 1]` and the quarter
    /// annulus `0.5 <= r <= 1` in the first quadrant.
    Elbow90,
}

impl Geometry {
    /// All shapes, in the order of `GEOMETRIES.md`'s table.
    pub const ALL: [Geometry; 6] = [
        Geometry::StraightChannel,
        Geometry::Venturi,
        Geometry::BackwardStep,
        Geometry::SBend,
        Geometry::TJunction,
        Geometry::Elbow90,
    ];

    /// The shape's name as in `GEOMETRIES.md` (`"venturi"`, `"elbow_90"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Geometry::StraightChannel => "straight_channel",
            Geometry::Venturi => "venturi",
            Geometry::BackwardStep => "backward_step",
            Geometry::SBend => "s_bend",
            Geometry::TJunction => "t_junction",
            Geometry::Elbow90 => "elbow_90",
        }
    }

    /// Parses a name as written by [`Geometry::name`]; case and `-` versus
    /// `_` do not matter, surrounding white space is ignored.
    pub fn parse(s: &str) -> Option<Self> {
        let norm = s.trim().to_ascii_lowercase().replace('-', "_");
        Geometry::ALL.into_iter().find(|g| g.name() == norm)
    }

    /// Area of the domain, used to size the first guess of the cell size.
    fn area(self) -> f64 {
        match self {
            Geometry::StraightChannel => 3.0,
            Geometry::Venturi => 2.1,
            Geometry::BackwardStep => 3.5,
            Geometry::SBend | Geometry::TJunction => 2.0,
            Geometry::Elbow90 => 1.0 + PI / 48.0 + 3f64.sqrt() / 8.0,
        }
    }
}

impl fmt::Display for Geometry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why [`generate`] could not build a mesh.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenerateError {
    /// The requested node count is below [`MIN_TARGET_NODES`].
    #[error(
        "generate {geometry}: a target of {target} nodes is too small; the minimum is {minimum} nodes"
    )]
    TooSmall {
        /// shape name
        geometry: &'static str,
        /// requested node count
        target: usize,
        /// smallest accepted node count
        minimum: usize,
    },
    /// The requested node count is above [`MAX_TARGET_NODES`].
    #[error(
        "generate {geometry}: a target of {target} nodes is too large; the maximum is {maximum} nodes (32-bit node numbers)"
    )]
    TooLarge {
        /// shape name
        geometry: &'static str,
        /// requested node count
        target: usize,
        /// largest accepted node count
        maximum: usize,
    },
    /// The mesh would not fit in the host's available memory.
    #[error(
        "generate {geometry}: a target of {target} nodes needs about {:.1} GB of host memory, but only {:.1} GB is available; ask for fewer nodes (at most about {fits} here)",
        *needed as f64 / 1e9, *available as f64 / 1e9
    )]
    OutOfMemory {
        /// shape name
        geometry: &'static str,
        /// requested node count
        target: usize,
        /// estimated need, bytes
        needed: u64,
        /// available, bytes
        available: u64,
        /// the largest target that would fit
        fits: u64,
    },
}

/// Jacobian quality of a mesh (see [`quality`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quality {
    /// Smallest over elements of `min det J / max det J` over the element's
    /// 3 x 3 Gauss points (1 for a parallelogram; not positive means invalid).
    pub min_ratio: f64,
    /// Largest over elements of the same ratio.
    pub max_ratio: f64,
    /// Smallest `det J` over all Gauss points of all elements.
    pub min_det: f64,
    /// The element with the smallest ratio (0 for an empty mesh).
    pub worst_element: usize,
}

/// Jacobian quality of `mesh`: for every element the ratio of its smallest
/// to its largest `det J` over the 3 x 3 Gauss points; the minimum and
/// maximum of that ratio over the elements, and the smallest `det J` seen.
/// An empty mesh gives `min_ratio = +inf`, `max_ratio = -inf`,
/// `min_det = +inf`.
///
/// # Panics
/// If an element refers to a node outside `0..x.len()`.
pub fn quality(mesh: &RawMesh) -> Quality {
    let b = &*BASIS9;
    let mut out = Quality {
        min_ratio: f64::INFINITY,
        max_ratio: f64::NEG_INFINITY,
        min_det: f64::INFINITY,
        worst_element: 0,
    };
    for (e, el) in mesh.quad8.iter().enumerate() {
        let c = (
            std::array::from_fn::<f64, NODES, _>(|k| mesh.x[el[k] as usize]),
            std::array::from_fn::<f64, NODES, _>(|k| mesh.y[el[k] as usize]),
        );
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for q in 0..QP {
            let j = jacobian(&b.dn[q], &c);
            let det = j[(0, 0)] * j[(1, 1)] - j[(0, 1)] * j[(1, 0)];
            lo = lo.min(det);
            hi = hi.max(det);
        }
        let ratio = lo / hi;
        if ratio < out.min_ratio {
            out.min_ratio = ratio;
            out.worst_element = e;
        }
        out.max_ratio = out.max_ratio.max(ratio);
        out.min_det = out.min_det.min(lo);
    }
    out
}

// ---------------------------------------------------------------------------
// Multi-block structured builder
// ---------------------------------------------------------------------------

/// Marks a fine position without a node number yet.
const NONE: u32 = u32::MAX;

/// A side of a block, walked in the direction of increasing `i` or `j`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    /// `j = 0`.
    Bottom,
    /// `i = 2 nx`.
    Right,
    /// `j = 2 ny`.
    Top,
    /// `i = 0`.
    Left,
}

/// A run of `len` consecutive fine positions on a side of this block whose
/// nodes are those of a run on a side of an earlier block, in the same
/// direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Link {
    side: Side,
    from: usize,
    block: usize,
    other_side: Side,
    other_from: usize,
    len: usize,
}

/// Element counts of a block and the interface runs it copies.
#[derive(Debug, Clone, PartialEq, Eq)]
struct BlockSpec {
    nx: usize,
    ny: usize,
    links: Vec<Link>,
}

impl BlockSpec {
    fn new(nx: usize, ny: usize) -> Self {
        Self {
            nx,
            ny,
            links: Vec::new(),
        }
    }

    /// Copies `len` fine positions of `side` starting at `from` from block
    /// `block`'s `other_side` starting at `other_from`.
    fn link(
        mut self,
        side: Side,
        from: usize,
        block: usize,
        other_side: Side,
        other_from: usize,
        len: usize,
    ) -> Self {
        self.links.push(Link {
            side,
            from,
            block,
            other_side,
            other_from,
            len,
        });
        self
    }

    /// Fine grid size `(2 nx + 1, 2 ny + 1)`.
    fn fine(&self) -> (usize, usize) {
        (2 * self.nx + 1, 2 * self.ny + 1)
    }

    /// Fine position `(i, j)` of the `k`-th position along `side`.
    fn side_pos(&self, side: Side, k: usize) -> (usize, usize) {
        match side {
            Side::Bottom => (k, 0),
            Side::Right => (2 * self.nx, k),
            Side::Top => (k, 2 * self.ny),
            Side::Left => (0, k),
        }
    }

    /// Nodes of the block on its own (all fine positions but the centres).
    fn own_nodes(&self) -> usize {
        let (fw, fh) = self.fine();
        fw * fh - self.nx * self.ny
    }
}

/// Node count of a multi-block layout: every block's nodes less the copied
/// ones (no fine position is copied twice in the layouts used here).
fn node_count(topo: &[BlockSpec]) -> usize {
    topo.iter()
        .map(|b| b.own_nodes() - b.links.iter().map(|l| l.len).sum::<usize>())
        .sum()
}

/// A block's geometry: fine indices `(i, j)` to coordinates.
type BlockMap<'a> = Box<dyn Fn(usize, usize) -> (f64, f64) + Sync + 'a>;

/// Builds the mesh of a layout. Nodes are numbered block by block, the
/// shorter fine direction of each block running fastest (small bandwidth);
/// elements in the same order. The lines of a block (its positions along
/// the slower direction) are filled in parallel: a count of each line's new
/// nodes and a prefix sum give every line its first number, so the result
/// is the same as numbering the positions one by one.
fn build(topo: &[BlockSpec], maps: &[BlockMap<'_>]) -> RawMesh {
    use rayon::prelude::*;
    assert_eq!(topo.len(), maps.len());
    let nn = node_count(topo);
    assert!(
        nn < NONE as usize,
        "generate: {nn} nodes do not fit 32-bit indices"
    );
    let ne: usize = topo.iter().map(|b| b.nx * b.ny).sum();
    let mut x = vec![0.0; nn];
    let mut y = vec![0.0; nn];
    let mut quad8: Vec<[i64; 8]> = Vec::with_capacity(ne);
    let mut all_ids: Vec<Vec<u32>> = Vec::with_capacity(topo.len());
    let mut next = 0usize;
    for (spec, map) in topo.iter().zip(maps) {
        let (fw, fh) = spec.fine();
        let mut ids = vec![NONE; fw * fh];
        for l in &spec.links {
            let other = &topo[l.block];
            let other_ids = &all_ids[l.block];
            let ofh = other.fine().1;
            for t in 0..l.len {
                let (i, j) = spec.side_pos(l.side, l.from + t);
                let (oi, oj) = other.side_pos(l.other_side, l.other_from + t);
                let v = other_ids[oi * ofh + oj];
                debug_assert_ne!(v, NONE);
                ids[i * fh + j] = v;
            }
        }
        let j_fast = fw >= fh;
        let (outer, inner) = if j_fast { (fw, fh) } else { (fh, fw) };
        let pos = |a: usize, b: usize| if j_fast { (a, b) } else { (b, a) };
        let is_new = |ids: &[u32], a: usize, b: usize| {
            let (i, j) = pos(a, b);
            !(i % 2 == 1 && j % 2 == 1) && ids[i * fh + j] == NONE
        };
        // new nodes per line, then each line's first number
        let counts: Vec<usize> = (0..outer)
            .into_par_iter()
            .map(|a| (0..inner).filter(|&b| is_new(&ids, a, b)).count())
            .collect();
        let mut first = Vec::with_capacity(outer);
        for c in &counts {
            first.push(next);
            next += c;
        }
        // numbers and coordinates, line by line in parallel
        let lines: Vec<Vec<(usize, u32)>> = {
            let xs = SyncSlice(x.as_mut_ptr());
            let ys = SyncSlice(y.as_mut_ptr());
            let ids_ref = &ids;
            (0..outer)
                .into_par_iter()
                .map(|a| {
                    let mut k = first[a];
                    let mut set = Vec::with_capacity(counts[a]);
                    for b in 0..inner {
                        if !is_new(ids_ref, a, b) {
                            continue;
                        }
                        let (i, j) = pos(a, b);
                        let (px, py) = map(i, j);
                        // SAFETY: `k` runs over this line's own range of
                        // numbers, below `nn`; no other line writes it.
                        unsafe {
                            xs.write(k, px);
                            ys.write(k, py);
                        }
                        set.push((i * fh + j, k as u32));
                        k += 1;
                    }
                    set
                })
                .collect()
        };
        for line in lines {
            for (slot, v) in line {
                ids[slot] = v;
            }
        }
        let (outer, inner) = if j_fast {
            (spec.nx, spec.ny)
        } else {
            (spec.ny, spec.nx)
        };
        let start = quad8.len();
        quad8.resize(start + outer * inner, [0; 8]);
        quad8[start..]
            .par_chunks_mut(inner.max(1))
            .enumerate()
            .for_each(|(a, row)| {
                for (b, q) in row.iter_mut().enumerate() {
                    let (ei, ej) = if j_fast { (a, b) } else { (b, a) };
                    let (i, j) = (2 * ei, 2 * ej);
                    let id = |di: usize, dj: usize| ids[(i + di) * fh + j + dj] as i64;
                    *q = [
                        id(0, 0),
                        id(2, 0),
                        id(2, 2),
                        id(0, 2),
                        id(1, 0),
                        id(2, 1),
                        id(1, 2),
                        id(0, 1),
                    ];
                }
            });
        all_ids.push(ids);
    }
    debug_assert_eq!(next, nn);
    RawMesh { x, y, quad8 }
}

/// A pointer that line tasks write through at disjoint positions.
#[derive(Clone, Copy)]
struct SyncSlice(*mut f64);
// SAFETY: every task writes its own disjoint range (see `build`).
unsafe impl Send for SyncSlice {}
unsafe impl Sync for SyncSlice {}

impl SyncSlice {
    /// Writes `v` at `k`.
    ///
    /// # Safety
    /// `k` is within the slice and no other thread touches it.
    unsafe fn write(&self, k: usize, v: f64) {
        // SAFETY: the caller's contract.
        unsafe { *self.0.add(k) = v };
    }
}

/// `(1 - t) a + t b`, exact at both ends.
#[inline]
fn lerp(a: f64, b: f64, t: f64) -> f64 {
    (1.0 - t) * a + t * b
}

/// `k / n` as a float.
#[inline]
fn frac(k: usize, n: usize) -> f64 {
    k as f64 / n as f64
}

/// The axis-parallel rectangle `[x0, x1] x [y0, y1]` as a block map.
fn rect<'a>(x0: f64, x1: f64, y0: f64, y1: f64, b: &BlockSpec) -> BlockMap<'a> {
    let (n2x, n2y) = (2 * b.nx, 2 * b.ny);
    Box::new(move |i, j| (lerp(x0, x1, frac(i, n2x)), lerp(y0, y1, frac(j, n2y))))
}

// ---------------------------------------------------------------------------
// The reference shapes
// ---------------------------------------------------------------------------

/// Venturi wall offset `s(x)` (GEOMETRIES.md): the lower wall is `y = s(x)`,
/// the upper one `y = 1 - s(x)`.
fn venturi_s(x: f64) -> f64 {
    if x <= 1.5 {
        0.3 * (1.0 - (PI * x / 1.5).cos()) / 2.0
    } else {
        0.3 * (1.0 + (PI * (x - 1.5) / 1.5).cos()) / 2.0
    }
}

/// `round(len / h)`, at least 1.
fn cells(len: f64, h: f64) -> usize {
    ((len / h).round() as usize).max(1)
}

/// Block layout of a shape for a cross-stream cell size `hc` and an
/// along-stream cell size `ha`.
fn topology(geom: Geometry, hc: f64, ha: f64) -> Vec<BlockSpec> {
    use Side::*;
    match geom {
        Geometry::StraightChannel | Geometry::Venturi => {
            vec![BlockSpec::new(cells(3.0, ha), cells(1.0, hc))]
        }
        Geometry::SBend => vec![BlockSpec::new(cells(4.0, ha), cells(0.5, hc))],
        Geometry::BackwardStep => {
            // 0: inlet [0,1]x[0.5,1]; 1: [1,4]x[0.5,1]; 2: [1,4]x[0,0.5]
            let (n1, n2) = (cells(1.0, ha), cells(3.0, ha));
            let (nt, nb) = (cells(0.5, hc), cells(0.5, hc));
            vec![
                BlockSpec::new(n1, nt),
                BlockSpec::new(n2, nt).link(Left, 0, 0, Right, 0, 2 * nt + 1),
                BlockSpec::new(n2, nb).link(Top, 0, 1, Bottom, 0, 2 * n2 + 1),
            ]
        }
        Geometry::TJunction => {
            // 0: [0,1.25]x[0,0.5]; 1: [1.25,1.75]x[0,0.5]; 2: [1.75,3]x[0,0.5];
            // 3: branch [1.25,1.75]x[0.5,1.5]
            let nm = cells(0.5, hc);
            let (n1, n2, n3) = (cells(1.25, ha), cells(0.5, hc), cells(1.25, ha));
            let nb = cells(1.0, ha);
            vec![
                BlockSpec::new(n1, nm),
                BlockSpec::new(n2, nm).link(Left, 0, 0, Right, 0, 2 * nm + 1),
                BlockSpec::new(n3, nm).link(Left, 0, 1, Right, 0, 2 * nm + 1),
                BlockSpec::new(n2, nb).link(Bottom, 0, 1, Top, 0, 2 * n2 + 1),
            ]
        }
        Geometry::Elbow90 => {
            // 0 (A): [0.5,1]x[-1,0], i across (x), j along (y).
            // 1 (B): sector 0 <= theta <= 30 deg, i across (r), j along (theta).
            // 2 (R): inlet leg and rest of the bend: i along (from the inlet),
            //    j across (from the inner arc); its right side is B's top
            //    (radial line at 30 deg) followed by C's left side.
            // 3 (C): [sqrt(3)/2,1]x[0.5,1], i = x, j = y.
            let nw = cells(0.5, hc);
            let k = cells(0.5, hc);
            let na = cells(1.0, ha);
            let nb = cells(0.75 * PI / 6.0, ha);
            let n1 = cells(0.5 * (PI / 6.0 + 3f64.sqrt() / 2.0), ha);
            let m = cells(1.0 - 3f64.sqrt() / 2.0, hc);
            vec![
                BlockSpec::new(nw, na),
                BlockSpec::new(nw, nb).link(Bottom, 0, 0, Top, 0, 2 * nw + 1),
                BlockSpec::new(n1, nw + k).link(Right, 0, 1, Top, 0, 2 * nw + 1),
                BlockSpec::new(m, k).link(Left, 0, 2, Right, 2 * nw, 2 * k + 1),
            ]
        }
    }
}

/// Block maps of a shape's layout (as made by [`topology`]).
fn maps<'a>(geom: Geometry, topo: &[BlockSpec]) -> Vec<BlockMap<'a>> {
    match geom {
        Geometry::StraightChannel => vec![rect(0.0, 3.0, 0.0, 1.0, &topo[0])],
        Geometry::Venturi => {
            let (n2x, n2y) = (2 * topo[0].nx, 2 * topo[0].ny);
            vec![Box::new(move |i, j| {
                let x = lerp(0.0, 3.0, frac(i, n2x));
                let s = venturi_s(x);
                (x, lerp(s, 1.0 - s, frac(j, n2y)))
            })]
        }
        Geometry::SBend => {
            let (n2x, n2y) = (2 * topo[0].nx, 2 * topo[0].ny);
            vec![Box::new(move |i, j| {
                let x = lerp(0.0, 4.0, frac(i, n2x));
                (x, (PI * x / 4.0).sin() + lerp(-0.25, 0.25, frac(j, n2y)))
            })]
        }
        Geometry::BackwardStep => vec![
            rect(0.0, 1.0, 0.5, 1.0, &topo[0]),
            rect(1.0, 4.0, 0.5, 1.0, &topo[1]),
            rect(1.0, 4.0, 0.0, 0.5, &topo[2]),
        ],
        Geometry::TJunction => vec![
            rect(0.0, 1.25, 0.0, 0.5, &topo[0]),
            rect(1.25, 1.75, 0.0, 0.5, &topo[1]),
            rect(1.75, 3.0, 0.0, 0.5, &topo[2]),
            rect(1.25, 1.75, 0.5, 1.5, &topo[3]),
        ],
        Geometry::Elbow90 => elbow_maps(topo),
    }
}

/// `(cos, sin)` of `t * 30 deg`, exact at `t = 0` and `t = 1`.
fn dir30(t: f64) -> (f64, f64) {
    if t == 0.0 {
        (1.0, 0.0)
    } else if t == 1.0 {
        (3f64.sqrt() / 2.0, 0.5)
    } else {
        let a = t * PI / 6.0;
        (a.cos(), a.sin())
    }
}

/// Block maps of the elbow (see the layout in [`topology`]).
fn elbow_maps<'a>(topo: &[BlockSpec]) -> Vec<BlockMap<'a>> {
    let c30 = 3f64.sqrt() / 2.0;
    let a = rect(0.5, 1.0, -1.0, 0.0, &topo[0]);
    let (n2r, n2t) = (2 * topo[1].nx, 2 * topo[1].ny);
    let b: BlockMap<'a> = Box::new(move |i, j| {
        let r = lerp(0.5, 1.0, frac(i, n2r));
        let (c, s) = dir30(frac(j, n2t));
        (r * c, r * s)
    });
    // R: Coons patch. u = i / (2 n1) from the inlet (u = 0) to the
    // interface with B and C (u = 1); v = j / (2 (nw + k)) from the inner
    // arc (v = 0) to the top wall (v = 1).
    let nw = topo[1].nx;
    let k = topo[3].ny;
    let (n2u, n2v) = (2 * topo[2].nx, 2 * topo[2].ny);
    debug_assert_eq!(topo[2].ny, nw + k);
    let p6 = (0.0, 0.5);
    let p1 = (0.5 * c30, 0.25);
    let q = (c30, 1.0);
    let p5 = (0.0, 1.0);
    let bottom = move |i: usize| -> (f64, f64) {
        // inner arc r = 0.5 from 90 deg (u = 0) down to 30 deg (u = 1)
        if i == 0 {
            p6
        } else if i == n2u {
            p1
        } else {
            let phi = frac(i, n2u) * PI / 3.0;
            (0.5 * phi.sin(), 0.5 * phi.cos())
        }
    };
    let top = move |i: usize| (lerp(0.0, c30, frac(i, n2u)), 1.0);
    let left = move |j: usize| (0.0, lerp(0.5, 1.0, frac(j, n2v)));
    let right = move |j: usize| -> (f64, f64) {
        if j <= 2 * nw {
            let r = lerp(0.5, 1.0, frac(j, 2 * nw));
            (r * c30, r * 0.5)
        } else {
            (c30, lerp(0.5, 1.0, frac(j - 2 * nw, 2 * k)))
        }
    };
    let r: BlockMap<'a> = Box::new(move |i, j| {
        if i == 0 {
            return left(j);
        }
        if i == n2u {
            return right(j);
        }
        if j == 0 {
            return bottom(i);
        }
        if j == n2v {
            return top(i);
        }
        let (u, v) = (frac(i, n2u), frac(j, n2v));
        let (bo, to, le, ri) = (bottom(i), top(i), left(j), right(j));
        let w = [(1.0 - u) * (1.0 - v), u * (1.0 - v), u * v, (1.0 - u) * v];
        let cx = w[0] * p6.0 + w[1] * p1.0 + w[2] * q.0 + w[3] * p5.0;
        let cy = w[0] * p6.1 + w[1] * p1.1 + w[2] * q.1 + w[3] * p5.1;
        (
            (1.0 - v) * bo.0 + v * to.0 + (1.0 - u) * le.0 + u * ri.0 - cx,
            (1.0 - v) * bo.1 + v * to.1 + (1.0 - u) * le.1 + u * ri.1 - cy,
        )
    });
    let c = rect(c30, 1.0, 0.5, 1.0, &topo[3]);
    vec![a, b, r, c]
}

/// Picks the layout whose node count is closest to `target`, trading a
/// little node-count error against cells that are far from square.
fn choose(geom: Geometry, target: usize) -> Vec<BlockSpec> {
    let t = target as f64;
    let h0 = (3.0 * geom.area() / t).sqrt();
    let mut best: Option<(f64, Vec<BlockSpec>)> = None;
    for kh in -400..=400 {
        let hc = h0 * (kh as f64 * 0.0025).exp();
        for ka in -15..=15 {
            let la = ka as f64 * 0.01;
            let topo = topology(geom, hc, hc * la.exp());
            let n = node_count(&topo) as f64;
            let score = (n - t).abs() / t + 0.02 * la.abs();
            if best.as_ref().is_none_or(|(s, _)| score < *s) {
                best = Some((score, topo));
            }
        }
    }
    best.expect("search range is not empty").1
}

/// Generates a structured multi-block Quad-8 mesh of `geom` with about
/// `target_nodes` nodes (within a few percent from 1,000 nodes up; coarse
/// meshes are as close as the block structure allows). Cells are about
/// square; elements are counter-clockwise; every node is used; blocks share
/// their interface nodes; the result depends only on the arguments.
///
/// Block layouts (all blocks are logically rectangular):
/// - `straight_channel`: one block `[0, 3] x [0, 1]`.
/// - `venturi`: one block, `(xi, eta)` in `[0, 3] x [0, 1]` mapped to
///   `(xi, s(xi) + eta (1 - 2 s(xi)))`.
/// - `backward_step`: `[0, 1] x [0.5, 1]`, `[1, 4] x [0.5, 1]`, `[1, 4] x [0, 0.5]`.
/// - `s_bend`: one block, `(xi, eta)` in `[0, 4] x [-0.25, 0.25]` mapped to
///   `(xi, sin(pi xi / 4) + eta)`.
/// - `t_junction`: the main channel split at `x = 1.25` and `x = 1.75`,
///   and the branch on top of the middle block.
/// - `elbow_90`: the lower rectangle; the annulus sector from 0 to 30
///   degrees (polar grid); a Coons patch bounded by the inlet `x = 0`, the
///   inner arc from 90 down to 30 degrees, the radial line at 30 degrees
///   followed by `x = sqrt(3)/2` up to `y = 1`, and the top wall; and the
///   rectangle `[sqrt(3)/2, 1] x [0.5, 1]` in the corner.
///
/// # Errors
/// [`GenerateError::TooSmall`] below [`MIN_TARGET_NODES`],
/// [`GenerateError::TooLarge`] above [`MAX_TARGET_NODES`] (or when the
/// layout's node count would not fit 32-bit numbers),
/// [`GenerateError::OutOfMemory`] when the host's available memory is
/// short of [`BYTES_PER_NODE`] per node.
pub fn generate(geom: Geometry, target_nodes: usize) -> Result<RawMesh, GenerateError> {
    generate_within(geom, target_nodes, host_memory_available())
}

/// [`generate`] with the available host memory given (`None`: unknown,
/// not checked).
pub fn generate_within(
    geom: Geometry,
    target_nodes: usize,
    available: Option<u64>,
) -> Result<RawMesh, GenerateError> {
    if target_nodes < MIN_TARGET_NODES {
        return Err(GenerateError::TooSmall {
            geometry: geom.name(),
            target: target_nodes,
            minimum: MIN_TARGET_NODES,
        });
    }
    if target_nodes > MAX_TARGET_NODES {
        return Err(GenerateError::TooLarge {
            geometry: geom.name(),
            target: target_nodes,
            maximum: MAX_TARGET_NODES,
        });
    }
    if let Some(avail) = available {
        let needed = target_nodes as u64 * BYTES_PER_NODE;
        if needed > avail {
            return Err(GenerateError::OutOfMemory {
                geometry: geom.name(),
                target: target_nodes,
                needed,
                available: avail,
                fits: avail / BYTES_PER_NODE,
            });
        }
    }
    let topo = choose(geom, target_nodes);
    if node_count(&topo) >= NONE as usize {
        return Err(GenerateError::TooLarge {
            geometry: geom.name(),
            target: target_nodes,
            maximum: MAX_TARGET_NODES,
        });
    }
    let maps = maps(geom, &topo);
    Ok(build(&topo, &maps))
}

// ---------------------------------------------------------------------------
// Test meshes
// ---------------------------------------------------------------------------

/// The splitmix64 generator step: a well-mixed 64-bit value of `z`.
fn splitmix64(z: u64) -> u64 {
    let mut z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The straight channel `[0, 3] x [0, 1]` with `nx x ny` elements whose
/// interior mid-side nodes (those not on the boundary) are each moved by a
/// pseudo-random vector of length `amplitude * min(3 / nx, 1 / ny)` in a
/// direction drawn from `seed` and the node's grid position (splitmix64).
/// Interior element edges are then curved while the domain, the corners
/// and the boundary nodes stay as in the plain channel. The result depends
/// only on the arguments.
///
/// # Panics
/// If `nx` or `ny` is 0, or `amplitude` is not in `[0, 0.2]` (beyond that
/// elements may fold).
pub fn perturbed_channel(nx: usize, ny: usize, amplitude: f64, seed: u64) -> RawMesh {
    assert!(
        nx > 0 && ny > 0,
        "perturbed_channel: nx = {nx} and ny = {ny} must be positive"
    );
    assert!(
        (0.0..=0.2).contains(&amplitude),
        "perturbed_channel: amplitude {amplitude} must lie in [0, 0.2] (times the element size)"
    );
    let spec = BlockSpec::new(nx, ny);
    let (n2x, n2y) = (2 * nx, 2 * ny);
    let len = amplitude * (3.0 / nx as f64).min(1.0 / ny as f64);
    let key = splitmix64(seed);
    let map: BlockMap<'_> = Box::new(move |i, j| {
        let (x, y) = (lerp(0.0, 3.0, frac(i, n2x)), lerp(0.0, 1.0, frac(j, n2y)));
        let horizontal_mid = i % 2 == 1 && j % 2 == 0 && j != 0 && j != n2y;
        let vertical_mid = j % 2 == 1 && i % 2 == 0 && i != 0 && i != n2x;
        if !(horizontal_mid || vertical_mid) || len == 0.0 {
            return (x, y);
        }
        let pos = (i as u64) * (n2y as u64 + 1) + j as u64;
        let r = splitmix64(key ^ splitmix64(pos));
        let angle = 2.0 * PI * ((r >> 11) as f64 / (1u64 << 53) as f64);
        (x + len * angle.cos(), y + len * angle.sin())
    });
    build(&[spec], &[map])
}

/// A uniform `nx x ny` Quad-8 grid of the unit square `[0, 1]^2` with every
/// node (corners and mid-side nodes) sent through `map`; for
/// manufactured-solution tests on curved meshes. Elements are
/// counter-clockwise when `map` preserves orientation.
///
/// # Panics
/// If `nx` or `ny` is 0.
pub fn mapped_grid(nx: usize, ny: usize, map: impl Fn(f64, f64) -> (f64, f64) + Sync) -> RawMesh {
    assert!(
        nx > 0 && ny > 0,
        "mapped_grid: nx = {nx} and ny = {ny} must be positive"
    );
    let spec = BlockSpec::new(nx, ny);
    let (n2x, n2y) = (2 * nx, 2 * ny);
    let m: BlockMap<'_> = Box::new(move |i, j| map(frac(i, n2x), frac(j, n2y)));
    build(&[spec], &[m])
}

#[cfg(test)]
mod tests;
