//! The generators a block at a time ([`GeneratedBlocks`], the engine's
//! [`MeshBlocks`]): any range of elements and any nodes of the mesh
//! [`super::generate`] builds, with the same numbers and the same
//! coordinates bit for bit, computed from the block layout alone, so that
//! each rank of a distributed run generates its own blocks and none
//! builds the whole mesh.
//!
//! [`super::build`] numbers the fine positions of each block line by line
//! (the slower fine direction outer), skipping the cell centres and the
//! positions a block copies from an earlier one (its interface sides).
//! Copied positions lie on a block's sides: its first and last lines, and
//! the two ends of every line. So a block's numbering is known from, per
//! line, its first new number and the numbers at its two ends, and, for
//! the first and last lines, the number at every position: memory of the
//! order of the block's side, not its area. An interior position's number
//! is then its line's first, plus the new positions before it on the line
//! (one end, and all but the centres of the interior); the node of a
//! number is found back by a binary search over the lines.

use super::{
    BlockMap, BlockSpec, GenerateError, Geometry, MAX_TARGET_NODES, MIN_TARGET_NODES, NONE,
};
use quadflow_systems::pipeline::MeshBlocks;
use std::collections::BTreeMap;

/// The numbering of one block (see the module documentation).
struct Layout {
    /// Whether the fine `j` direction runs fastest (`pos(a, b) = (a, b)`).
    j_fast: bool,
    /// Fine lines, positions per line.
    outer: usize,
    inner: usize,
    /// Elements: lines, per line.
    el_outer: usize,
    el_inner: usize,
    /// The first element of the block.
    first_element: usize,
    /// First new number of every line, and the block's end (`outer + 1`).
    line_first: Vec<u64>,
    /// The numbers at positions `0` and `inner - 1` of every line.
    ends: Vec<[u32; 2]>,
    /// The numbers of every position of the first and last lines.
    edges: [Vec<u32>; 2],
    /// The positions of the new numbers of the first and last lines.
    edge_new: [Vec<u32>; 2],
}

impl Layout {
    /// Fine position `(i, j)` of line `a`, position `b`.
    fn pos(&self, a: usize, b: usize) -> (usize, usize) {
        if self.j_fast { (a, b) } else { (b, a) }
    }

    /// Line and position of fine position `(i, j)`.
    fn line(&self, i: usize, j: usize) -> (usize, usize) {
        if self.j_fast { (i, j) } else { (j, i) }
    }

    /// Interior positions (not an end) of line `a` that are nodes.
    fn interior(&self, a: usize) -> usize {
        if a.is_multiple_of(2) {
            self.inner - 2
        } else {
            (self.inner - 3) / 2
        }
    }

    /// The number of line `a`'s position `b` (a node, not a centre).
    fn id(&self, a: usize, b: usize) -> u32 {
        if a == 0 {
            return self.edges[0][b];
        }
        if a == self.outer - 1 {
            return self.edges[1][b];
        }
        if b == 0 {
            return self.ends[a][0];
        }
        if b == self.inner - 1 {
            return self.ends[a][1];
        }
        let new_end = (self.line_first[a] as u32 == self.ends[a][0]) as u64;
        let before = if a.is_multiple_of(2) {
            b - 1
        } else {
            (b - 1) / 2
        };
        (self.line_first[a] + new_end + before as u64) as u32
    }

    /// Line and position of the new number `v` of this block.
    fn locate(&self, v: u64) -> (usize, usize) {
        let a = self.line_first.partition_point(|&f| f <= v) - 1;
        let k = (v - self.line_first[a]) as usize;
        if a == 0 || a == self.outer - 1 {
            let e = (a != 0) as usize;
            return (a, self.edge_new[e][k] as usize);
        }
        let mut k = k;
        if self.line_first[a] as u32 == self.ends[a][0] {
            if k == 0 {
                return (a, 0);
            }
            k -= 1;
        }
        if k < self.interior(a) {
            (a, if a % 2 == 0 { 1 + k } else { 2 + 2 * k })
        } else {
            (a, self.inner - 1)
        }
    }
}

/// A generated mesh, produced a block at a time (see the module
/// documentation).
pub struct GeneratedBlocks {
    origin: String,
    maps: Vec<BlockMap<'static>>,
    layouts: Vec<Layout>,
    nodes: usize,
    elements: usize,
}

impl GeneratedBlocks {
    /// The mesh [`super::generate`] builds for `geom` and `target_nodes`
    /// (the same checks of the target, but not of the host's memory: each
    /// rank holds only its blocks).
    ///
    /// # Errors
    ///
    /// [`GenerateError::TooSmall`], [`GenerateError::TooLarge`].
    pub fn new(geom: Geometry, target_nodes: usize) -> Result<Self, GenerateError> {
        let too_large = GenerateError::TooLarge {
            geometry: geom.name(),
            target: target_nodes,
            maximum: MAX_TARGET_NODES,
        };
        if target_nodes < MIN_TARGET_NODES {
            return Err(GenerateError::TooSmall {
                geometry: geom.name(),
                target: target_nodes,
                minimum: MIN_TARGET_NODES,
            });
        }
        if target_nodes > MAX_TARGET_NODES {
            return Err(too_large);
        }
        let topo = super::choose(geom, target_nodes);
        if super::node_count(&topo) >= NONE as usize {
            return Err(too_large);
        }
        let maps = super::maps(geom, &topo);
        let layouts = layouts(&topo);
        let last = layouts.last().expect("a block");
        Ok(Self {
            origin: format!("generated {} (~{target_nodes} nodes)", geom.name()),
            maps,
            nodes: *last.line_first.last().expect("lines") as usize,
            elements: last.first_element + last.el_outer * last.el_inner,
            layouts,
        })
    }

    /// The block holding the new number `v`, and `v`'s line and position.
    fn node(&self, v: u32) -> (usize, usize, usize) {
        let k = self
            .layouts
            .partition_point(|l| l.line_first[0] <= v as u64)
            - 1;
        let (a, b) = self.layouts[k].locate(v as u64);
        (k, a, b)
    }

    /// The coordinates of node `v`.
    fn coords(&self, v: u32) -> (f64, f64) {
        let (k, a, b) = self.node(v);
        let (i, j) = self.layouts[k].pos(a, b);
        (self.maps[k])(i, j)
    }

    /// Element `e`'s node numbers.
    fn element(&self, e: usize) -> [i64; 8] {
        let k = self.layouts.partition_point(|l| l.first_element <= e) - 1;
        let l = &self.layouts[k];
        let r = e - l.first_element;
        let (a, b) = (r / l.el_inner, r % l.el_inner);
        let (ei, ej) = if l.j_fast { (a, b) } else { (b, a) };
        let (i, j) = (2 * ei, 2 * ej);
        let id = |di: usize, dj: usize| {
            let (la, lb) = l.line(i + di, j + dj);
            l.id(la, lb) as i64
        };
        [
            id(0, 0),
            id(2, 0),
            id(2, 2),
            id(0, 2),
            id(1, 0),
            id(2, 1),
            id(1, 2),
            id(0, 1),
        ]
    }
}

/// The numbering of every block of a layout, in [`super::build`]'s order.
fn layouts(topo: &[BlockSpec]) -> Vec<Layout> {
    let mut out: Vec<Layout> = Vec::with_capacity(topo.len());
    let (mut next, mut first_element) = (0u64, 0usize);
    for spec in topo {
        let (fw, fh) = spec.fine();
        let j_fast = fw >= fh;
        let (outer, inner) = if j_fast { (fw, fh) } else { (fh, fw) };
        let (el_outer, el_inner) = if j_fast {
            (spec.nx, spec.ny)
        } else {
            (spec.ny, spec.nx)
        };
        let mut l = Layout {
            j_fast,
            outer,
            inner,
            el_outer,
            el_inner,
            first_element,
            line_first: Vec::with_capacity(outer + 1),
            ends: vec![[NONE; 2]; outer],
            edges: [vec![NONE; inner], vec![NONE; inner]],
            edge_new: [Vec::new(), Vec::new()],
        };
        // the copied positions (all on the block's sides)
        for link in &spec.links {
            let other = &topo[link.block];
            let ol = &out[link.block];
            for t in 0..link.len {
                let (i, j) = spec.side_pos(link.side, link.from + t);
                let (oi, oj) = other.side_pos(link.other_side, link.other_from + t);
                let (oa, ob) = ol.line(oi, oj);
                let v = ol.id(oa, ob);
                let (a, b) = l.line(i, j);
                if a == 0 {
                    l.edges[0][b] = v;
                }
                if a == outer - 1 {
                    l.edges[1][b] = v;
                }
                if b == 0 {
                    l.ends[a][0] = v;
                }
                if b == inner - 1 {
                    l.ends[a][1] = v;
                }
            }
        }
        // new numbers, line by line
        for a in 0..outer {
            l.line_first.push(next);
            if a == 0 || a == outer - 1 {
                let e = (a != 0) as usize;
                for b in 0..inner {
                    if l.edges[e][b] == NONE {
                        l.edges[e][b] = next as u32;
                        l.edge_new[e].push(b as u32);
                        next += 1;
                    }
                }
                l.ends[a] = [l.edges[e][0], l.edges[e][inner - 1]];
            } else {
                if l.ends[a][0] == NONE {
                    l.ends[a][0] = next as u32;
                    next += 1;
                }
                next += l.interior(a) as u64;
                if l.ends[a][1] == NONE {
                    l.ends[a][1] = next as u32;
                    next += 1;
                }
            }
        }
        l.line_first.push(next);
        first_element += el_outer * el_inner;
        out.push(l);
    }
    out
}

impl MeshBlocks for GeneratedBlocks {
    fn size(&self) -> (usize, usize) {
        (self.nodes, self.elements)
    }

    fn origin(&self) -> String {
        self.origin.clone()
    }

    fn elements(&self, first: usize, count: usize) -> Result<Vec<[i64; 8]>, String> {
        use rayon::prelude::*;
        Ok((first..first + count)
            .into_par_iter()
            .with_min_len(4096)
            .map(|e| self.element(e))
            .collect())
    }

    fn coordinates(&self, first: usize, count: usize) -> Result<(Vec<f64>, Vec<f64>), String> {
        use rayon::prelude::*;
        Ok((first..first + count)
            .into_par_iter()
            .with_min_len(4096)
            .map(|v| self.coords(v as u32))
            .unzip())
    }

    fn scattered(&self, ids: &[u32]) -> Result<(Vec<f64>, Vec<f64>), String> {
        Ok(ids.iter().map(|&v| self.coords(v)).unzip())
    }

    fn node_sets(&self) -> Result<BTreeMap<String, Vec<u32>>, String> {
        Ok(BTreeMap::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every geometry, coarse and finer: the blocks give the whole
    /// generator's numbers and coordinates bit for bit.
    #[test]
    fn blocks_are_the_whole_mesh() {
        for g in Geometry::ALL {
            for target in [60, 1_000, 23_456] {
                let whole = super::super::generate(g, target).unwrap();
                let b = GeneratedBlocks::new(g, target).unwrap();
                assert_eq!(b.size(), (whole.x.len(), whole.quad8.len()), "{g} {target}");
                assert_eq!(
                    b.elements(0, whole.quad8.len()).unwrap(),
                    whole.quad8,
                    "{g} {target}"
                );
                let (x, y) = b.coordinates(0, whole.x.len()).unwrap();
                assert!(
                    x.iter()
                        .zip(&whole.x)
                        .all(|(a, c)| a.to_bits() == c.to_bits()),
                    "{g} {target} x"
                );
                assert!(
                    y.iter()
                        .zip(&whole.y)
                        .all(|(a, c)| a.to_bits() == c.to_bits()),
                    "{g} {target} y"
                );
                let ids: Vec<u32> = (0..whole.x.len() as u32).step_by(7).collect();
                let (sx, _) = b.scattered(&ids).unwrap();
                assert!(ids.iter().zip(&sx).all(|(&v, a)| *a == whole.x[v as usize]));
                let mid = whole.quad8.len() / 3;
                assert_eq!(b.elements(mid, 5).unwrap(), whole.quad8[mid..mid + 5]);
            }
        }
    }
}
