//! Mesh topology: the connected components of the element graph (two
//! elements are connected when they share a node), and which of them
//! nothing anchors.
//!
//! The stiffness matrix of a component no Dirichlet node touches (and no
//! Robin part with `p > 0`) has the constants in its null space: the
//! potential there is defined only up to a constant. [`floating`] finds
//! such components so that the boundary phase can say so before the solve.
//!
//! The components come from a union-find over the nodes, each element
//! uniting its eight nodes, always linking the larger root below the
//! smaller: every root is the smallest node index of its component. It
//! runs on one thread: on the 1.3M-node venturi it takes 3.9 ms (best of 7
//! on a loaded 2-core machine), against 23-46 ms for a lock-free parallel
//! version (compare-and-swap links) tried on the same machine and not
//! kept (`profiles/components/README.md`).

use crate::mesh::Mesh;

/// A connected component of the mesh that nothing anchors.
#[derive(Debug, Clone, PartialEq)]
pub struct FloatingComponent {
    /// 1-based number of the component, components numbered in the order
    /// of their first element.
    pub number: usize,
    /// How many components the mesh has.
    pub of: usize,
    /// Elements in the component.
    pub elements: usize,
    /// Its first element (0-based index in the mesh).
    pub first_element: usize,
    /// Nodes in the component.
    pub nodes: usize,
    /// Bounding box of its nodes: `[x_min, x_max, y_min, y_max]`.
    pub bbox: [f64; 4],
}

impl std::fmt::Display for FloatingComponent {
    /// `mesh component 2 of 2 (36 elements from element 18, x in [1, 2],
    /// y in [3, 4])`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [x0, x1, y0, y1] = self.bbox;
        write!(
            f,
            "mesh component {} of {} ({} element{} from element {}, {} nodes, x in [{}, {}], y in [{}, {}])",
            self.number,
            self.of,
            self.elements,
            if self.elements == 1 { "" } else { "s" },
            self.first_element,
            self.nodes,
            short(x0),
            short(x1),
            short(y0),
            short(y1)
        )
    }
}

/// A coordinate with at most 6 significant digits.
fn short(v: f64) -> String {
    let s = format!("{v:.6}");
    let t = s.trim_end_matches('0').trim_end_matches('.');
    if t.is_empty() || t == "-" {
        "0".into()
    } else if v != 0.0 && (v.abs() >= 1e6 || v.abs() < 1e-3) {
        format!("{v:.5e}")
    } else {
        t.to_string()
    }
}

/// The root of every node after all unions: the smallest node index of its
/// component (nodes no element uses are their own roots).
pub fn roots(mesh: &Mesh) -> Vec<u32> {
    let mut parent: Vec<u32> = (0..mesh.nodes() as u32).collect();
    fn find(parent: &mut [u32], mut i: u32) -> u32 {
        while parent[i as usize] != i {
            // path halving
            let g = parent[parent[i as usize] as usize];
            parent[i as usize] = g;
            i = g;
        }
        i
    }
    for el in &mesh.elements {
        let mut a = find(&mut parent, el[0]);
        for &v in &el[1..] {
            let b = find(&mut parent, v);
            if a != b {
                let (lo, hi) = if a < b { (a, b) } else { (b, a) };
                parent[hi as usize] = lo;
                a = lo;
            }
        }
    }
    for i in 0..parent.len() {
        let r = find(&mut parent, i as u32);
        parent[i] = r;
    }
    parent
}

/// The components of `mesh` that neither a node of `anchors` (Dirichlet
/// nodes) nor a node of `anchor_edges` (Robin edges with `p > 0`) touches,
/// in the order of their first element; empty when every component is
/// anchored (the usual case, found without numbering the components).
/// `parallel` runs the scan for unanchored elements on the current rayon
/// pool (the same result).
pub fn floating(
    mesh: &Mesh,
    anchors: impl Iterator<Item = u32>,
    parallel: bool,
) -> Vec<FloatingComponent> {
    let roots = roots(mesh);
    let mut anchored = vec![false; roots.len()];
    for a in anchors {
        anchored[roots[a as usize] as usize] = true;
    }
    let free = |el: &[u32; 8]| !anchored[roots[el[0] as usize] as usize];
    let any_free = if parallel {
        use rayon::prelude::*;
        mesh.elements.par_iter().with_min_len(4096).any(free)
    } else {
        mesh.elements.iter().any(free)
    };
    if !any_free {
        return Vec::new();
    }
    // Number every component in the order of its first element.
    const NONE: u32 = u32::MAX;
    let mut number = vec![NONE; roots.len()];
    let mut first = Vec::new();
    for (e, el) in mesh.elements.iter().enumerate() {
        let r = roots[el[0] as usize] as usize;
        if number[r] == NONE {
            number[r] = first.len() as u32;
            first.push(e);
        }
    }
    let of = first.len();
    let mut out: Vec<FloatingComponent> = Vec::new();
    let mut slot = vec![NONE; of];
    for (c, &e) in first.iter().enumerate() {
        let r = roots[mesh.elements[e][0] as usize] as usize;
        if !anchored[r] {
            slot[c] = out.len() as u32;
            out.push(FloatingComponent {
                number: c + 1,
                of,
                elements: 0,
                first_element: e,
                nodes: 0,
                bbox: [
                    f64::INFINITY,
                    f64::NEG_INFINITY,
                    f64::INFINITY,
                    f64::NEG_INFINITY,
                ],
            });
        }
    }
    for el in &mesh.elements {
        let s = slot[number[roots[el[0] as usize] as usize] as usize];
        if s != NONE {
            out[s as usize].elements += 1;
        }
    }
    let mut used = vec![false; roots.len()];
    for el in &mesh.elements {
        for &v in el {
            used[v as usize] = true;
        }
    }
    for (v, &r) in roots.iter().enumerate() {
        if !used[v] {
            continue;
        }
        let s = slot[number[r as usize] as usize];
        if s != NONE {
            let c = &mut out[s as usize];
            c.nodes += 1;
            let (x, y) = (mesh.x[v], mesh.y[v]);
            c.bbox = [
                c.bbox[0].min(x),
                c.bbox[1].max(x),
                c.bbox[2].min(y),
                c.bbox[3].max(y),
            ];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesh::OrientationPolicy;

    /// `nx x ny` unit Quad-8 elements with their lower-left corner at
    /// `(x0, y0)`, nodes numbered from `base` (the engine's lattice grid).
    fn block(
        nx: usize,
        ny: usize,
        x0: f64,
        y0: f64,
        base: i64,
    ) -> (Vec<f64>, Vec<f64>, Vec<[i64; 8]>) {
        let (x, y, els) =
            crate::mesh::lattice_grid(nx, ny, |u, v| (x0 + nx as f64 * u, y0 + ny as f64 * v));
        let q = els.iter().map(|e| e.map(|v| base + i64::from(v))).collect();
        (x, y, q)
    }

    /// Blocks side by side in one mesh (each its own component).
    fn blocks(parts: &[(usize, usize, f64, f64)]) -> Mesh {
        let (mut x, mut y, mut q) = (vec![], vec![], vec![]);
        for &(nx, ny, x0, y0) in parts {
            let (bx, by, bq) = block(nx, ny, x0, y0, x.len() as i64);
            x.extend(bx);
            y.extend(by);
            q.extend(bq);
        }
        Mesh::new(x, y, &q, OrientationPolicy::Refuse).unwrap()
    }

    #[test]
    fn a_connected_mesh_has_one_root_and_nothing_floats() {
        let m = blocks(&[(40, 7, 0.0, 0.0)]);
        for parallel in [false, true] {
            let r = roots(&m);
            // used nodes share root 0; the unused cell centres are their own
            let used = m.used_nodes();
            for (v, &root) in r.iter().enumerate() {
                assert_eq!(root, if used[v] { 0 } else { v as u32 });
            }
            assert!(floating(&m, [0u32].into_iter(), parallel).is_empty());
        }
    }

    #[test]
    fn an_unanchored_block_is_found_with_its_size_and_box() {
        // a channel [0, 6] x [0, 3], a block [1, 3] x [5, 6], a block [4, 5] x [5, 6]
        let m = blocks(&[(6, 3, 0.0, 0.0), (2, 1, 1.0, 5.0), (1, 1, 4.0, 5.0)]);
        // anchor the channel (a node at x = 6) and the last block
        let channel_node = (0..m.nodes()).find(|&v| m.x[v] == 6.0).unwrap() as u32;
        let last = (m.nodes() - 1) as u32;
        for parallel in [false, true] {
            let f = floating(&m, [channel_node, last].into_iter(), parallel);
            assert_eq!(f.len(), 1, "{f:?}");
            let c = &f[0];
            assert_eq!((c.number, c.of, c.elements, c.first_element), (2, 3, 2, 18));
            assert_eq!(c.nodes, 5 * 3 - 2); // the 5 x 3 lattice less 2 centres
            assert_eq!(c.bbox, [1.0, 3.0, 5.0, 6.0]);
            let text = c.to_string();
            assert!(
                text.contains("mesh component 2 of 3 (2 elements from element 18")
                    && text.contains("x in [1, 3], y in [5, 6]"),
                "{text}"
            );
            // nothing anchored: every component floats
            assert_eq!(floating(&m, std::iter::empty(), parallel).len(), 3);
        }
    }

    #[test]
    fn roots_are_the_smallest_node_of_each_component() {
        let parts: Vec<_> = (0..30)
            .map(|k| (3 + k % 5, 2 + k % 3, 10.0 * k as f64, 0.0))
            .collect();
        let m = blocks(&parts);
        let r = roots(&m);
        let used = m.used_nodes();
        let mut first = 0;
        for &(nx, ny, _, _) in &parts {
            let n = (2 * nx + 1) * (2 * ny + 1);
            for v in first..first + n {
                assert_eq!(r[v], if used[v] { first as u32 } else { v as u32 });
            }
            first += n;
        }
    }
}
