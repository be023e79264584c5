//! Boundary selection and the boundary contributions (`docs/numerics.md`, "Boundary
//! conditions"): Robin edges, penalty Dirichlet nodes, penalised unused
//! nodes. The selection is computed once per run and is backend-neutral;
//! backends differ only in how they add the contributions.

use crate::element::{self, EDGES};
use crate::mesh::Mesh;
use crate::topology::{self, FloatingComponent};
use std::sync::Arc;

/// A side of the mesh's bounding box.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// `x = min x`
    XMin,
    /// `x = max x`
    XMax,
    /// `y = min y`
    YMin,
    /// `y = max y`
    YMax,
}

impl Side {
    /// Scene name of the side.
    pub fn name(self) -> &'static str {
        match self {
            Side::XMin => "xmin",
            Side::XMax => "xmax",
            Side::YMin => "ymin",
            Side::YMax => "ymax",
        }
    }

    /// Parses a scene name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "xmin" => Side::XMin,
            "xmax" => Side::XMax,
            "ymin" => Side::YMin,
            "ymax" => Side::YMax,
            _ => return None,
        })
    }
}

/// Which nodes a boundary part covers.
#[derive(Debug, Clone, PartialEq)]
pub enum Selector {
    /// Nodes within the tolerance of a bounding-box side.
    Side(Side),
    /// A named node set of the mesh (e.g. a gmsh physical group).
    Named(String),
    /// Nodes inside an axis-aligned box (inclusive, with the tolerance).
    Box {
        /// lower x
        x0: f64,
        /// upper x
        x1: f64,
        /// lower y
        y0: f64,
        /// upper y
        y1: f64,
    },
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Selector::Side(s) => write!(f, "side {}", s.name()),
            Selector::Named(n) => write!(f, "node set \"{n}\""),
            Selector::Box { x0, x1, y0, y1 } => write!(f, "box [{x0}, {x1}] x [{y0}, {y1}]"),
        }
    }
}

/// A value prescribed on a Dirichlet part.
#[derive(Clone)]
pub enum Value {
    /// The same value everywhere.
    Constant(f64),
    /// A value depending on position.
    Function(Arc<dyn Fn(f64, f64) -> f64 + Send + Sync>),
}

impl std::fmt::Debug for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Constant(v) => write!(f, "Constant({v})"),
            Value::Function(_) => write!(f, "Function(..)"),
        }
    }
}

/// A Robin part: `du/dn + p u = gamma` on the selected edges.
#[derive(Debug, Clone)]
pub struct RobinPart {
    /// Name used in messages ("inlet").
    pub name: String,
    /// Selected nodes; an edge counts when its three nodes are selected.
    pub select: Selector,
    /// `p`.
    pub p: f64,
    /// `gamma`.
    pub gamma: f64,
}

/// A Dirichlet part, imposed by penalty.
#[derive(Debug, Clone)]
pub struct DirichletPart {
    /// Name used in messages ("outlet").
    pub name: String,
    /// Selected nodes.
    pub select: Selector,
    /// Prescribed value.
    pub value: Value,
}

/// What to do with a mesh component that nothing anchors (no Dirichlet
/// node, no Robin part with `p > 0`): its potential is defined only up to
/// a constant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ComponentPolicy {
    /// Solve, with a warning naming each such component (the default).
    #[default]
    Warn,
    /// Refuse the problem ([`BoundaryError::Floating`]).
    Refuse,
}

impl ComponentPolicy {
    /// Scene name (`[mesh] components`).
    pub fn name(self) -> &'static str {
        match self {
            ComponentPolicy::Warn => "warn",
            ComponentPolicy::Refuse => "refuse",
        }
    }

    /// Parses a scene name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "warn" => Some(ComponentPolicy::Warn),
            "refuse" => Some(ComponentPolicy::Refuse),
            _ => None,
        }
    }
}

/// The warning about a floating component (what [`BoundaryError::Floating`]
/// says too): what it is, what it means, how to fix it.
pub fn floating_message(c: &FloatingComponent) -> String {
    format!(
        "{c} touches no Dirichlet boundary (nor a Robin part with p > 0): its potential is defined only up to a constant, and the value returned there is one arbitrary choice (0 where nothing drives it); connect it to the rest of the mesh or select it with a [[boundary.dirichlet]] part"
    )
}

/// All boundary settings.
#[derive(Debug, Clone)]
pub struct BoundaryConfig {
    /// Robin parts.
    pub robin: Vec<RobinPart>,
    /// Dirichlet parts.
    pub dirichlet: Vec<DirichletPart>,
    /// Coordinate tolerance of the side selectors.
    pub tol: f64,
    /// Penalty factor.
    pub penalty: f64,
    /// What to do with mesh components nothing anchors.
    pub components: ComponentPolicy,
}

impl Default for BoundaryConfig {
    /// The reference defaults (`docs/numerics.md`): Robin inlet at `x = min x` with `p = 0`,
    /// `gamma = 2.5`; Dirichlet outlet `u = 0` at `x = max x`.
    fn default() -> Self {
        Self {
            robin: vec![RobinPart {
                name: "inlet".into(),
                select: Selector::Side(Side::XMin),
                p: 0.0,
                gamma: 2.5,
            }],
            dirichlet: vec![DirichletPart {
                name: "outlet".into(),
                select: Selector::Side(Side::XMax),
                value: Value::Constant(0.0),
            }],
            tol: 1e-9,
            penalty: 1e12,
            components: ComponentPolicy::Warn,
        }
    }
}

/// A boundary selection problem.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BoundaryError {
    /// A Robin part found no edge.
    #[error(
        "boundary \"{name}\" ({select}): no element edge has all three of its nodes selected; check the selector (and the tolerance {tol:e}), or that the mesh has that boundary"
    )]
    NoEdges {
        /// part name
        name: String,
        /// its selector, rendered
        select: String,
        /// tolerance
        tol: f64,
    },
    /// A Dirichlet part selected no node.
    #[error(
        "boundary \"{name}\" ({select}): selects no node; check the selector (and the tolerance {tol:e})"
    )]
    NoNodes {
        /// part name
        name: String,
        /// its selector, rendered
        select: String,
        /// tolerance
        tol: f64,
    },
    /// A named node set that the mesh does not have.
    #[error("boundary \"{name}\": the mesh has no node set \"{set}\" (it has: {available})")]
    UnknownSet {
        /// part name
        name: String,
        /// requested set
        set: String,
        /// what exists
        available: String,
    },
    /// Nothing fixes the constant: the matrix would be singular.
    #[error(
        "no Dirichlet boundary and no Robin part with p > 0: the potential is defined only up to a constant and the matrix is singular; add an outlet ([[boundary.dirichlet]])"
    )]
    Singular,
    /// A mesh component nothing anchors, refused by
    /// [`ComponentPolicy::Refuse`].
    #[error(
        "{}{}; [mesh] components = \"refuse\" makes this an error (\"warn\" solves anyway)",
        floating_message(.first),
        if *.count > 1 { format!(" ({} such components in all)", .count) } else { String::new() }
    )]
    Floating {
        /// the first such component
        first: FloatingComponent,
        /// how many there are
        count: usize,
    },
}

/// A resolved Robin edge: global nodes (start, mid, end) and its part.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RobinEdge {
    /// Global node indices.
    pub nodes: [u32; 3],
    /// Index into `BoundaryConfig::robin`.
    pub part: u32,
}

/// The boundary selection of a mesh, resolved once.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resolved {
    /// Robin edges.
    pub robin_edges: Vec<RobinEdge>,
    /// Dirichlet nodes and their values (each node once: the first part
    /// that selects it wins).
    pub dirichlet: Vec<(u32, f64)>,
    /// Nodes no element references.
    pub unused: Vec<u32>,
    /// Mesh components nothing anchors (see [`crate::topology`]).
    pub floating: Vec<FloatingComponent>,
}

/// Node mask of a selector.
pub fn select(
    mesh: &Mesh,
    sel: &Selector,
    tol: f64,
    name: &str,
) -> Result<Vec<bool>, BoundaryError> {
    select_with(mesh, sel, tol, name, false)
}

/// [`select`], with the side selectors' scans (extreme coordinate, mask)
/// on the current rayon pool when `parallel`: the same mask (the minimum
/// and maximum of finite values do not depend on the order).
fn select_with(
    mesh: &Mesh,
    sel: &Selector,
    tol: f64,
    name: &str,
    parallel: bool,
) -> Result<Vec<bool>, BoundaryError> {
    use rayon::prelude::*;
    let n = mesh.nodes();
    let fold = |v: &[f64]| {
        v.iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
                (a.min(x), b.max(x))
            })
    };
    Ok(match sel {
        Selector::Side(side) => {
            let (coord, pick_min) = match side {
                Side::XMin => (&mesh.x, true),
                Side::XMax => (&mesh.x, false),
                Side::YMin => (&mesh.y, true),
                Side::YMax => (&mesh.y, false),
            };
            // a part of a larger mesh: the side of the whole mesh
            if let Some(frame) = &mesh.part_of {
                let target = match side {
                    Side::XMin => frame.bbox[0],
                    Side::XMax => frame.bbox[1],
                    Side::YMin => frame.bbox[2],
                    Side::YMax => frame.bbox[3],
                };
                return Ok(coord.iter().map(|&c| (c - target).abs() < tol).collect());
            }
            if parallel {
                let target = if pick_min {
                    coord.par_iter().copied().reduce(|| f64::INFINITY, f64::min)
                } else {
                    coord
                        .par_iter()
                        .copied()
                        .reduce(|| f64::NEG_INFINITY, f64::max)
                };
                return Ok(coord
                    .par_iter()
                    .with_min_len(4096)
                    .map(|&c| (c - target).abs() < tol)
                    .collect());
            }
            let (lo, hi) = fold(coord);
            let target = if pick_min { lo } else { hi };
            coord.iter().map(|&c| (c - target).abs() < tol).collect()
        }
        Selector::Box { x0, x1, y0, y1 } => (0..n)
            .map(|i| {
                let (x, y) = (mesh.x[i], mesh.y[i]);
                x >= x0 - tol && x <= x1 + tol && y >= y0 - tol && y <= y1 + tol
            })
            .collect(),
        Selector::Named(set) => {
            let nodes = mesh
                .node_sets
                .get(set)
                .ok_or_else(|| BoundaryError::UnknownSet {
                    name: name.to_string(),
                    set: set.clone(),
                    available: if mesh.node_sets.is_empty() {
                        "none".into()
                    } else {
                        mesh.node_sets
                            .keys()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    },
                })?;
            let mut m = vec![false; n];
            for &v in nodes {
                m[v as usize] = true;
            }
            m
        }
    })
}

/// Resolves every part of `cfg` on `mesh`.
pub fn resolve(mesh: &Mesh, cfg: &BoundaryConfig) -> Result<Resolved, BoundaryError> {
    resolve_with(mesh, cfg, false)
}

/// [`resolve`] with the element scans run on the current rayon pool.
pub fn resolve_parallel(mesh: &Mesh, cfg: &BoundaryConfig) -> Result<Resolved, BoundaryError> {
    resolve_with(mesh, cfg, true)
}

/// The edges of `mesh` whose three nodes are all in `mask`, in element
/// order, tagged with `part`.
fn edges_in(mesh: &Mesh, mask: &[bool], part: u32, parallel: bool) -> Vec<RobinEdge> {
    let scan = |el: &[u32; crate::element::NODES]| {
        EDGES
            .iter()
            .map(|edge| edge.map(|k| el[k]))
            .filter(|nodes| nodes.iter().all(|&v| mask[v as usize]))
            .map(|nodes| RobinEdge { nodes, part })
            .collect::<Vec<_>>()
    };
    if parallel {
        use rayon::prelude::*;
        mesh.elements
            .par_iter()
            .with_min_len(1024)
            .flat_map_iter(scan)
            .collect()
    } else {
        mesh.elements.iter().flat_map(scan).collect()
    }
}

fn resolve_with(
    mesh: &Mesh,
    cfg: &BoundaryConfig,
    parallel: bool,
) -> Result<Resolved, BoundaryError> {
    if cfg.dirichlet.is_empty() && !cfg.robin.iter().any(|r| r.p > 0.0) {
        return Err(BoundaryError::Singular);
    }
    let mut out = Resolved::default();
    for (pi, part) in cfg.robin.iter().enumerate() {
        let mask = select_with(mesh, &part.select, cfg.tol, &part.name, parallel)?;
        let edges = edges_in(mesh, &mask, pi as u32, parallel);
        // (a part of a larger mesh may well have none)
        if edges.is_empty() && mesh.part_of.is_none() {
            return Err(BoundaryError::NoEdges {
                name: part.name.clone(),
                select: part.select.to_string(),
                tol: cfg.tol,
            });
        }
        out.robin_edges.extend(edges);
    }
    let mut taken = vec![false; mesh.nodes()];
    for part in &cfg.dirichlet {
        let mask = select_with(mesh, &part.select, cfg.tol, &part.name, parallel)?;
        // the selected nodes, in node order
        let picked: Vec<usize> = if parallel {
            use rayon::prelude::*;
            mask.par_iter()
                .with_min_len(4096)
                .enumerate()
                .filter(|(_, m)| **m)
                .map(|(i, _)| i)
                .collect()
        } else {
            (0..mask.len()).filter(|&i| mask[i]).collect()
        };
        let any = !picked.is_empty();
        for i in picked {
            if !taken[i] {
                taken[i] = true;
                let v = match &part.value {
                    Value::Constant(c) => *c,
                    Value::Function(f) => f(mesh.x[i], mesh.y[i]),
                };
                out.dirichlet.push((i as u32, v));
            }
        }
        if !any && mesh.part_of.is_none() {
            return Err(BoundaryError::NoNodes {
                name: part.name.clone(),
                select: part.select.to_string(),
                tol: cfg.tol,
            });
        }
    }
    out.unused = if parallel {
        use rayon::prelude::*;
        use std::sync::atomic::{AtomicBool, Ordering};
        let used: Vec<AtomicBool> = (0..mesh.nodes()).map(|_| AtomicBool::new(false)).collect();
        mesh.elements.par_iter().with_min_len(4096).for_each(|el| {
            for &v in el {
                used[v as usize].store(true, Ordering::Relaxed);
            }
        });
        used.par_iter()
            .with_min_len(4096)
            .enumerate()
            .filter(|(_, u)| !u.load(Ordering::Relaxed))
            .map(|(i, _)| i as u32)
            .collect()
    } else {
        mesh.used_nodes()
            .iter()
            .enumerate()
            .filter(|(_, u)| !**u)
            .map(|(i, _)| i as u32)
            .collect()
    };
    // Components nothing anchors: no Dirichlet node, no Robin edge whose
    // part has p > 0. (Not for a part of a larger mesh: its components
    // may well be anchored elsewhere; whoever holds the whole mesh
    // checks.)
    if mesh.part_of.is_none() {
        let _s = tracing::info_span!("floating_components").entered();
        let anchors = out.dirichlet.iter().map(|d| d.0).chain(
            out.robin_edges
                .iter()
                .filter(|e| cfg.robin[e.part as usize].p > 0.0)
                .map(|e| e.nodes[0]),
        );
        out.floating = topology::floating(mesh, anchors, parallel);
    }
    if cfg.components == ComponentPolicy::Refuse
        && let Some(first) = out.floating.first()
    {
        return Err(BoundaryError::Floating {
            first: first.clone(),
            count: out.floating.len(),
        });
    }
    Ok(out)
}

/// Robin contribution of one resolved edge: `(He, Pe)`.
pub fn robin_contribution(
    mesh: &Mesh,
    cfg: &BoundaryConfig,
    e: &RobinEdge,
) -> ([[f64; 3]; 3], [f64; 3]) {
    let part = &cfg.robin[e.part as usize];
    let x = e.nodes.map(|v| mesh.x[v as usize]);
    let y = e.nodes.map(|v| mesh.y[v as usize]);
    element::robin_edge(&x, &y, part.p, part.gamma)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `nx x ny` unit Quad-8 elements on the lattice ([`Mesh::lattice`]).
    fn lattice(nx: usize, ny: usize) -> Mesh {
        Mesh::lattice(nx, ny, nx as f64, ny as f64, |x, y| (x, y))
    }

    #[test]
    fn a_part_resolves_sides_against_the_whole_mesh() {
        use crate::mesh::GlobalFrame;
        let cfg = BoundaryConfig::default();
        let frame = GlobalFrame {
            bbox: lattice(6, 2).bbox(),
        };
        // the left half of a 6 x 2 lattice: the inlet, not the outlet
        let mut left = lattice(3, 2);
        let own = resolve(&left, &cfg).unwrap();
        assert_eq!(own.dirichlet.len(), 5); // its own xmax, as a whole mesh
        left.part_of = Some(frame);
        let r = resolve(&left, &cfg).unwrap();
        assert_eq!(r.robin_edges.len(), 2);
        assert!(r.dirichlet.is_empty());
        assert_eq!(r, resolve_parallel(&left, &cfg).unwrap());
        // (nor a warning that the part floats: the rest of the mesh
        // anchors it)
        assert!(r.floating.is_empty());
        // the right half: the outlet, no inlet edge, and no error for it
        let mut right = lattice(3, 2);
        right.x.iter_mut().for_each(|x| *x += 3.0);
        right.part_of = Some(frame);
        let r = resolve(&right, &cfg).unwrap();
        assert!(r.robin_edges.is_empty());
        assert_eq!(r.dirichlet.len(), 5);
        assert!(r.dirichlet.iter().all(|&(i, _)| right.x[i as usize] == 6.0));
        // a whole mesh still reports a boundary that selects nothing
        let mut nowhere = cfg.clone();
        nowhere.robin[0].select = Selector::Box {
            x0: 50.0,
            x1: 60.0,
            y0: 0.0,
            y1: 1.0,
        };
        assert!(resolve(&right, &nowhere).unwrap().robin_edges.is_empty());
        right.part_of = None;
        assert!(matches!(
            resolve(&right, &nowhere),
            Err(BoundaryError::NoEdges { .. })
        ));
    }

    #[test]
    fn parallel_resolution_equals_serial() {
        let mesh = lattice(300, 40); // more nodes than one parallel chunk
        let mut cfg = BoundaryConfig::default();
        cfg.dirichlet.push(DirichletPart {
            name: "box".into(),
            select: Selector::Box {
                x0: 100.0,
                x1: 150.0,
                y0: 0.0,
                y1: 5.0,
            },
            value: Value::Function(Arc::new(|x, y| x + 2.0 * y)),
        });
        let s = resolve(&mesh, &cfg).unwrap();
        let p = resolve_parallel(&mesh, &cfg).unwrap();
        assert_eq!(s, p);
        assert_eq!(s.unused.len(), 300 * 40);
        assert_eq!(s.robin_edges.len(), 40);
        assert!(s.dirichlet.len() > 81);
        for side in [Side::XMin, Side::XMax, Side::YMin, Side::YMax] {
            let sel = Selector::Side(side);
            assert_eq!(
                select(&mesh, &sel, 1e-9, "s").unwrap(),
                select_with(&mesh, &sel, 1e-9, "s", true).unwrap()
            );
        }
    }
}
