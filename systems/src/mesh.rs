//! The Quad-8 mesh as the engine sees it, and its validation.
//!
//! A [`Mesh`] is only ever built through [`Mesh::new`], which checks
//! everything `docs/numerics.md` asks for: coordinates finite, indices in range, no node
//! repeated inside an element, every element oriented counter-clockwise
//! (clockwise ones are renumbered and counted) and non-degenerate at every
//! Gauss point.

use crate::element::{self, Coords, NODES};
use std::collections::BTreeMap;
use thiserror::Error;

/// What is wrong with a mesh. Messages name the offending item and, where
/// it helps, how to fix it.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum MeshError {
    /// `x` and `y` have different lengths.
    #[error(
        "mesh: x has {x} values but y has {y}; the node coordinate arrays must have equal length"
    )]
    LengthMismatch {
        /// length of x
        x: usize,
        /// length of y
        y: usize,
    },
    /// No nodes or no elements.
    #[error(
        "mesh: it has {nodes} nodes and {elements} elements; a mesh needs at least one element"
    )]
    Empty {
        /// node count
        nodes: usize,
        /// element count
        elements: usize,
    },
    /// A coordinate is NaN or infinite.
    #[error("mesh: node {node} has a non-finite coordinate ({x}, {y})")]
    NonFinite {
        /// node index
        node: usize,
        /// x
        x: f64,
        /// y
        y: f64,
    },
    /// Connectivity refers to a node that does not exist.
    #[error(
        "mesh: element {element} refers to node {index}, but node indices must lie in 0..{nodes} (0-based; is the file 1-based?)"
    )]
    IndexOutOfRange {
        /// element index
        element: usize,
        /// the bad index
        index: i64,
        /// node count
        nodes: usize,
    },
    /// An element lists the same node twice.
    #[error("mesh: element {element} lists node {node} twice (local positions {a} and {b})")]
    RepeatedNode {
        /// element index
        element: usize,
        /// the node
        node: u32,
        /// first local position (1-based)
        a: usize,
        /// second local position (1-based)
        b: usize,
    },
    /// Jacobian not positive somewhere inside an element.
    #[error(
        "mesh: element {element} (nodes {nodes:?}) is degenerate or self-intersecting: det(J) = {det:.3e} at Gauss point {point}"
    )]
    Degenerate {
        /// element index
        element: usize,
        /// its nodes
        nodes: [u32; NODES],
        /// Gauss point index (0..9)
        point: usize,
        /// the determinant found there
        det: f64,
    },
    /// Clockwise elements found while the policy is to refuse them.
    #[error(
        "mesh: {count} elements are numbered clockwise (first: element {first}); renumber them counter-clockwise or set mesh.orientation = \"fix\""
    )]
    Clockwise {
        /// how many
        count: usize,
        /// first one
        first: usize,
    },
    /// Too many nodes for 32-bit indices.
    #[error("mesh: {0} nodes is more than this build supports (2^32 - 1)")]
    TooLarge(usize),
}

/// Element `e`'s connectivity checked against `n` nodes (indices in range,
/// no node twice) and narrowed to 32 bits (the check every reader of a
/// mesh runs, whole or a slice of it).
///
/// # Errors
/// [`MeshError::IndexOutOfRange`] or [`MeshError::RepeatedNode`], naming
/// element `e`.
pub fn check_element(e: usize, raw: &[i64; NODES], n: usize) -> Result<[u32; NODES], MeshError> {
    let mut el = [0u32; NODES];
    for (k, &v) in raw.iter().enumerate() {
        if v < 0 || v as u64 >= n as u64 {
            return Err(MeshError::IndexOutOfRange {
                element: e,
                index: v,
                nodes: n,
            });
        }
        el[k] = v as u32;
    }
    for a in 0..NODES {
        for b in a + 1..NODES {
            if el[a] == el[b] {
                return Err(MeshError::RepeatedNode {
                    element: e,
                    node: el[a],
                    a: a + 1,
                    b: b + 1,
                });
            }
        }
    }
    Ok(el)
}

/// What to do with clockwise elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OrientationPolicy {
    /// Renumber them counter-clockwise and report how many (the default).
    #[default]
    Fix,
    /// Refuse the mesh.
    Refuse,
}

/// A validated Quad-8 mesh: node coordinates and counter-clockwise elements.
#[derive(Debug, Clone, PartialEq)]
pub struct Mesh {
    /// Node x coordinates (m).
    pub x: Vec<f64>,
    /// Node y coordinates (m).
    pub y: Vec<f64>,
    /// Elements, 8 node indices each, counter-clockwise.
    pub elements: Vec<[u32; NODES]>,
    /// How many elements were clockwise and renumbered.
    pub flipped: usize,
    /// Named node sets (e.g. gmsh physical groups) that boundary
    /// selectors can refer to.
    pub node_sets: BTreeMap<String, Vec<u32>>,
    /// Set when this mesh is one part of a larger mesh (a rank's part in
    /// a distributed run): what the boundary selection needs from the
    /// whole mesh. `None` for a whole mesh.
    pub part_of: Option<GlobalFrame>,
}

/// What a part of a mesh knows of the whole (see [`Mesh::part_of`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GlobalFrame {
    /// Bounding box of the whole mesh, `[xmin, xmax, ymin, ymax]`: the
    /// side selectors (`xmin`, ...) resolve against it, not against the
    /// part's own nodes. The boundary selection of a part does not fail
    /// when a part finds no node or edge of a boundary (most parts touch
    /// no inlet); checking that a boundary selects something is the
    /// business of whoever holds the whole mesh.
    pub bbox: [f64; 4],
}

/// Renumbers a clockwise element counter-clockwise: corners `1,4,3,2`,
/// mid-sides `8,7,6,5`.
pub fn reverse(e: [u32; NODES]) -> [u32; NODES] {
    [e[0], e[3], e[2], e[1], e[7], e[6], e[5], e[4]]
}

/// A structured `nx x ny` grid of Quad-8 elements over the unit square,
/// numbered on its `(2 nx + 1) x (2 ny + 1)` lattice of half-cells (row by
/// row from the origin), every lattice point sent through `map`. The
/// lattice points at cell centres are nodes no element uses. Elements are
/// counter-clockwise when `map` preserves orientation. For tests and
/// examples (the mesh generators of the application build the real
/// geometries).
pub fn lattice_grid(
    nx: usize,
    ny: usize,
    map: impl Fn(f64, f64) -> (f64, f64),
) -> (Vec<f64>, Vec<f64>, Vec<[u32; NODES]>) {
    let (cx, cy) = (2 * nx + 1, 2 * ny + 1);
    let mut x = Vec::with_capacity(cx * cy);
    let mut y = Vec::with_capacity(cx * cy);
    for j in 0..cy {
        for i in 0..cx {
            let (px, py) = map(i as f64 / (cx - 1) as f64, j as f64 / (cy - 1) as f64);
            x.push(px);
            y.push(py);
        }
    }
    let id = |i: usize, j: usize| (j * cx + i) as u32;
    let mut els = Vec::with_capacity(nx * ny);
    for ey in 0..ny {
        for ex in 0..nx {
            let (i, j) = (2 * ex, 2 * ey);
            els.push([
                id(i, j),
                id(i + 2, j),
                id(i + 2, j + 2),
                id(i, j + 2),
                id(i + 1, j),
                id(i + 2, j + 1),
                id(i + 1, j + 2),
                id(i, j + 1),
            ]);
        }
    }
    (x, y, els)
}

impl Mesh {
    /// The [`lattice_grid`] of `[0, lx] x [0, ly]` mapped by `map`, as a
    /// validated mesh (panics if `map` makes an element degenerate or
    /// clockwise: meant for tests and examples).
    pub fn lattice(
        nx: usize,
        ny: usize,
        lx: f64,
        ly: f64,
        map: impl Fn(f64, f64) -> (f64, f64),
    ) -> Mesh {
        let (x, y, els) = lattice_grid(nx, ny, |u, v| map(lx * u, ly * v));
        let els: Vec<[i64; NODES]> = els.iter().map(|e| e.map(i64::from)).collect();
        Mesh::new(x, y, &els, OrientationPolicy::Refuse).expect("a valid lattice grid")
    }

    /// Validates and builds a mesh from raw arrays. `quad8` may hold any
    /// integer type's values (0-based).
    pub fn new(
        x: Vec<f64>,
        y: Vec<f64>,
        quad8: &[[i64; NODES]],
        policy: OrientationPolicy,
    ) -> Result<Self, MeshError> {
        Self::new_with(x, y, quad8, policy, false)
    }

    /// [`Mesh::new`] with the per-element Jacobian check (the costly part)
    /// run on the current rayon pool when `parallel`; the same mesh, the
    /// same errors.
    pub fn new_with(
        x: Vec<f64>,
        y: Vec<f64>,
        quad8: &[[i64; NODES]],
        policy: OrientationPolicy,
        parallel: bool,
    ) -> Result<Self, MeshError> {
        if x.len() != y.len() {
            return Err(MeshError::LengthMismatch {
                x: x.len(),
                y: y.len(),
            });
        }
        let n = x.len();
        if n == 0 || quad8.is_empty() {
            return Err(MeshError::Empty {
                nodes: n,
                elements: quad8.len(),
            });
        }
        if n >= u32::MAX as usize {
            return Err(MeshError::TooLarge(n));
        }
        if let Some(i) = (0..n).find(|&i| !x[i].is_finite() || !y[i].is_finite()) {
            return Err(MeshError::NonFinite {
                node: i,
                x: x[i],
                y: y[i],
            });
        }
        let elements = if parallel {
            use rayon::prelude::*;
            let mut elements = vec![[0u32; NODES]; quad8.len()];
            // The first bad element in element order, as the serial loop.
            let bad = elements
                .par_iter_mut()
                .zip(quad8.par_iter())
                .enumerate()
                .with_min_len(4096)
                .filter_map(|(e, (el, raw))| check_element(e, raw, n).map(|v| *el = v).err())
                .min_by_key(|err| match err {
                    MeshError::IndexOutOfRange { element, .. }
                    | MeshError::RepeatedNode { element, .. } => *element,
                    _ => usize::MAX,
                });
            if let Some(err) = bad {
                return Err(err);
            }
            elements
        } else {
            let mut elements = Vec::with_capacity(quad8.len());
            for (e, raw) in quad8.iter().enumerate() {
                elements.push(check_element(e, raw, n)?);
            }
            elements
        };
        let mut mesh = Mesh {
            x,
            y,
            elements,
            flipped: 0,
            node_sets: BTreeMap::new(),
            part_of: None,
        };
        mesh.orient(policy, parallel)?;
        Ok(mesh)
    }

    /// Number of nodes.
    pub fn nodes(&self) -> usize {
        self.x.len()
    }

    /// Coordinates of element `e`'s nodes.
    #[inline]
    pub fn coords(&self, e: usize) -> Coords {
        let el = &self.elements[e];
        (
            std::array::from_fn(|i| self.x[el[i] as usize]),
            std::array::from_fn(|i| self.y[el[i] as usize]),
        )
    }

    /// Orientation and degeneracy check over every element.
    fn orient(&mut self, policy: OrientationPolicy, parallel: bool) -> Result<(), MeshError> {
        let mut flipped = 0usize;
        let mut first = usize::MAX;
        let bad = |e: &usize| element::check_jacobian(&self.coords(*e)).is_err();
        // elements not positive everywhere, in element order
        let suspects: Vec<usize> = if parallel {
            use rayon::prelude::*;
            (0..self.elements.len())
                .into_par_iter()
                .with_min_len(1024)
                .filter(bad)
                .collect()
        } else {
            (0..self.elements.len()).filter(bad).collect()
        };
        for e in suspects {
            // Not positive everywhere: clockwise if the reversed numbering is.
            let rev = reverse(self.elements[e]);
            let orig = std::mem::replace(&mut self.elements[e], rev);
            match element::check_jacobian(&self.coords(e)) {
                Ok(_) => {
                    flipped += 1;
                    first = first.min(e);
                    if policy == OrientationPolicy::Refuse {
                        self.elements[e] = orig;
                    }
                }
                Err(_) => {
                    self.elements[e] = orig;
                    let (point, det) = element::check_jacobian(&self.coords(e)).unwrap_err();
                    return Err(MeshError::Degenerate {
                        element: e,
                        nodes: orig,
                        point,
                        det,
                    });
                }
            }
        }
        if flipped > 0 && policy == OrientationPolicy::Refuse {
            return Err(MeshError::Clockwise {
                count: flipped,
                first,
            });
        }
        self.flipped = flipped;
        Ok(())
    }

    /// Bounding box of the nodes, `[xmin, xmax, ymin, ymax]`.
    pub fn bbox(&self) -> [f64; 4] {
        let fold = |v: &[f64]| {
            v.iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
                    (a.min(x), b.max(x))
                })
        };
        let (x0, x1) = fold(&self.x);
        let (y0, y1) = fold(&self.y);
        [x0, x1, y0, y1]
    }

    /// For each node, whether any element references it.
    pub fn used_nodes(&self) -> Vec<bool> {
        let mut used = vec![false; self.nodes()];
        for el in &self.elements {
            for &v in el {
                used[v as usize] = true;
            }
        }
        used
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two unit squares side by side, 13 nodes, counter-clockwise.
    pub(crate) fn two_squares() -> (Vec<f64>, Vec<f64>, Vec<[i64; 8]>) {
        // corners 0..6: (0,0) (1,0) (2,0) (0,1) (1,1) (2,1); mids after
        let x = vec![0., 1., 2., 0., 1., 2., 0.5, 1.5, 0.5, 1.5, 0., 1., 2.];
        let y = vec![0., 0., 0., 1., 1., 1., 0., 0., 1., 1., 0.5, 0.5, 0.5];
        let e = vec![[0, 1, 4, 3, 6, 11, 8, 10], [1, 2, 5, 4, 7, 12, 9, 11]];
        (x, y, e)
    }

    #[test]
    fn valid_mesh_loads() {
        let (x, y, e) = two_squares();
        let m = Mesh::new(x, y, &e, OrientationPolicy::Fix).unwrap();
        assert_eq!(m.flipped, 0);
        assert_eq!(m.nodes(), 13);
    }

    #[test]
    fn clockwise_is_fixed_or_refused() {
        let (x, y, mut e) = two_squares();
        e[1] = reverse([1, 2, 5, 4, 7, 12, 9, 11]).map(|v| v as i64);
        let e2: Vec<[i64; 8]> = e.clone();
        let m = Mesh::new(x.clone(), y.clone(), &e2, OrientationPolicy::Fix).unwrap();
        assert_eq!(m.flipped, 1);
        assert_eq!(m.elements[1], [1, 2, 5, 4, 7, 12, 9, 11]);
        // the parallel check gives the same mesh
        let mp = Mesh::new_with(x.clone(), y.clone(), &e2, OrientationPolicy::Fix, true).unwrap();
        assert_eq!(mp, m);
        let err =
            Mesh::new_with(x.clone(), y.clone(), &e2, OrientationPolicy::Refuse, true).unwrap_err();
        assert!(matches!(err, MeshError::Clockwise { count: 1, first: 1 }));
        let err = Mesh::new(x, y, &e2, OrientationPolicy::Refuse).unwrap_err();
        assert!(matches!(err, MeshError::Clockwise { count: 1, first: 1 }));
    }

    #[test]
    fn bad_inputs_are_named() {
        let (x, y, e) = two_squares();
        let mut bad = e.clone();
        bad[1][3] = 99;
        let msg = Mesh::new(x.clone(), y.clone(), &bad, OrientationPolicy::Fix)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("element 1") && msg.contains("99"), "{msg}");
        let mut rep = e.clone();
        rep[0][7] = 0;
        let err = Mesh::new(x.clone(), y.clone(), &rep, OrientationPolicy::Fix).unwrap_err();
        assert!(matches!(
            err,
            MeshError::RepeatedNode {
                element: 0,
                node: 0,
                ..
            }
        ));
        let mut xn = x.clone();
        xn[4] = f64::NAN;
        let err = Mesh::new(xn, y.clone(), &e, OrientationPolicy::Fix).unwrap_err();
        assert!(matches!(err, MeshError::NonFinite { node: 4, .. }));
        let err = Mesh::new(x[..3].to_vec(), y.clone(), &e, OrientationPolicy::Fix).unwrap_err();
        assert!(matches!(err, MeshError::LengthMismatch { .. }));
        // a collapsed element: node 4 moved onto node 0
        let mut xd = x.clone();
        let mut yd = y.clone();
        xd[4] = 0.0;
        yd[4] = 0.0;
        let err = Mesh::new(xd, yd, &e, OrientationPolicy::Fix).unwrap_err();
        assert!(matches!(err, MeshError::Degenerate { .. }), "{err}");
    }

    #[test]
    fn parallel_index_check_names_the_first_bad_element() {
        // A lattice large enough for several parallel chunks, broken in two
        // far-apart places: both checks name the earlier element.
        let m = Mesh::lattice(120, 100, 1.0, 1.0, |x, y| (x, y));
        let raw: Vec<[i64; NODES]> = m.elements.iter().map(|e| e.map(i64::from)).collect();
        for (first, second) in [(9_000, 200), (11_999, 5)] {
            let mut bad = raw.clone();
            bad[first][2] = -1;
            bad[second][5] = bad[second][6];
            let s = Mesh::new_with(
                m.x.clone(),
                m.y.clone(),
                &bad,
                OrientationPolicy::Fix,
                false,
            )
            .unwrap_err();
            let p = Mesh::new_with(m.x.clone(), m.y.clone(), &bad, OrientationPolicy::Fix, true)
                .unwrap_err();
            assert_eq!(s.to_string(), p.to_string());
            assert!(s.to_string().contains(&format!("element {second} ")), "{s}");
        }
        let p = Mesh::new_with(m.x.clone(), m.y.clone(), &raw, OrientationPolicy::Fix, true);
        assert_eq!(p.unwrap(), m);
    }

    #[test]
    fn jacobian_check_decides_as_quadrature_does() {
        // Distorted and collapsing elements: the cheap check accepts and
        // refuses exactly what the full quadrature data does, at the same
        // point with the same determinant.
        let (x, y, e) = two_squares();
        for shift in [-1.5, -1.0, -0.75, -0.5, 0.0, 0.3, 0.6, 0.9, 1.2] {
            let mut xs = x.clone();
            xs[4] += shift;
            let m = Mesh {
                x: xs,
                y: y.clone(),
                elements: e.iter().map(|r| r.map(|v| v as u32)).collect(),
                flipped: 0,
                node_sets: BTreeMap::new(),
                part_of: None,
            };
            for el in 0..2 {
                let c = m.coords(el);
                let full = element::quad_data(&c).map(|_| ());
                let cheap = element::check_jacobian(&c);
                assert_eq!(format!("{full:?}"), format!("{cheap:?}"), "shift {shift}");
            }
        }
    }
}
