//! Partitioning a mesh into `k` parts, and what a partition costs.
//!
//! A [`Partition`] gives every element a part and every node exactly one
//! owner (the rank that computes its row). Elements are split by
//! - [`Method::Rcb`]: recursive coordinate bisection of the element
//!   centroids (pure Rust, deterministic: ties broken by element index),
//!   into any `k` (not only powers of two): a set going to `k` parts is
//!   cut across its longer extent at the element count `n floor(k/2)/k`,
//!   so every part gets `floor` or `ceil` of `E / k` elements;
//! - [`Method::Metis`]: METIS k-way on the element dual graph (elements
//!   are neighbours when they share an edge, i.e. a mid-side node), fixed
//!   seed, so the same mesh gives the same parts (feature `metis`, on by
//!   default; the `metis` crate compiles METIS's C sources itself).
//!
//! Node ownership: a node belongs to the part of the lowest-numbered
//! element that references it; nodes no element references (unused
//! nodes, which only carry a penalty) are dealt out to the parts with the
//! fewest owned nodes so far, in node order. An element none of whose
//! nodes its part owns (possible where the split runs along the lowest
//! elements of its nodes) is given to the owner of its first node, so
//! that every part owns a row of each element it owns. [`quality`] reports the edge
//! cut of the matrix graph, per-part owned nodes, owned and local
//! elements, ghost nodes, neighbours and halo sizes, and the imbalance.

use quadflow_systems::element::NODES;
use quadflow_systems::mesh::Mesh;

/// How elements are split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Recursive coordinate bisection.
    Rcb,
    /// METIS k-way on the element dual graph.
    Metis,
    /// METIS for meshes of at most [`AUTO_METIS_ELEMENTS`] elements (its
    /// cut is the smaller; one rank holds the dual graph), RCB above
    /// (no rank holds more than its share).
    Auto,
}

/// The largest mesh (elements) [`Method::Auto`] gives to METIS: about a
/// million nodes, whose dual graph METIS splits in well under a second
/// with some 100 MB on one rank (without the `metis` feature, RCB).
pub const AUTO_METIS_ELEMENTS: usize = 250_000;

impl Method {
    /// Scene / command-line names.
    pub const NAMES: &'static [&'static str] = &["auto", "metis", "rcb"];

    /// The name.
    pub fn name(self) -> &'static str {
        match self {
            Method::Rcb => "rcb",
            Method::Metis => "metis",
            Method::Auto => "auto",
        }
    }

    /// Parses a name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "rcb" => Some(Method::Rcb),
            "metis" => Some(Method::Metis),
            "auto" => Some(Method::Auto),
            _ => None,
        }
    }

    /// The method that splits a mesh of `elements` elements: this one,
    /// [`Method::Auto`] resolved.
    pub fn resolve(self, elements: usize) -> Method {
        match self {
            Method::Auto if cfg!(feature = "metis") && elements <= AUTO_METIS_ELEMENTS => {
                Method::Metis
            }
            Method::Auto => Method::Rcb,
            m => m,
        }
    }
}

/// Why a mesh could not be partitioned.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PartitionError {
    /// Fewer elements than parts.
    #[error(
        "cannot split a mesh of {elements} elements into {parts} parts: every rank needs at least one element; run with at most {elements} ranks"
    )]
    MorePartsThanElements {
        /// parts asked for
        parts: usize,
        /// elements of the mesh
        elements: usize,
    },
    /// A part received nothing.
    #[error(
        "part {part} of {parts} is empty (it owns no {what}); run with fewer ranks or another partitioner"
    )]
    EmptyPart {
        /// the part
        part: usize,
        /// how many parts
        parts: usize,
        /// "element" or "node"
        what: &'static str,
    },
    /// Zero parts.
    #[error("a partition needs at least one part")]
    NoParts,
    /// METIS failed or is not in this build.
    #[error("METIS: {0}")]
    Metis(String),
    /// An explicit element-to-part map that does not fit the mesh.
    #[error("element-to-part map: {0}")]
    BadMap(String),
}

/// Elements and nodes split into parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// Number of parts.
    pub parts: usize,
    /// Part of every element.
    pub element_part: Vec<u32>,
    /// Owner (part) of every node.
    pub node_owner: Vec<u32>,
}

/// Splits `mesh` into `k` parts with `method`.
pub fn partition(mesh: &Mesh, k: usize, method: Method) -> Result<Partition, PartitionError> {
    check_count(mesh, k)?;
    let epart = match method.resolve(mesh.elements.len()) {
        Method::Metis => metis_dual(mesh, k)?,
        _ => rcb(mesh, k),
    };
    from_element_parts(mesh, k, epart)
}

fn check_count(mesh: &Mesh, k: usize) -> Result<(), PartitionError> {
    if k == 0 {
        return Err(PartitionError::NoParts);
    }
    if k > mesh.elements.len() {
        return Err(PartitionError::MorePartsThanElements {
            parts: k,
            elements: mesh.elements.len(),
        });
    }
    Ok(())
}

/// The partition given by an element-to-part map: node ownership by the
/// rule of the module documentation, then the checks (no empty part).
pub fn from_element_parts(
    mesh: &Mesh,
    k: usize,
    element_part: Vec<u32>,
) -> Result<Partition, PartitionError> {
    check_count(mesh, k)?;
    if element_part.len() != mesh.elements.len() {
        return Err(PartitionError::BadMap(format!(
            "{} entries for {} elements",
            element_part.len(),
            mesh.elements.len()
        )));
    }
    if let Some(e) = element_part.iter().position(|&p| p as usize >= k) {
        return Err(PartitionError::BadMap(format!(
            "element {e} is put in part {} of {k}",
            element_part[e]
        )));
    }
    let n = mesh.nodes();
    let mut owner = vec![u32::MAX; n];
    for (e, el) in mesh.elements.iter().enumerate() {
        for &v in el {
            if owner[v as usize] == u32::MAX {
                owner[v as usize] = element_part[e];
            }
        }
    }
    // an element none of whose nodes its part owns goes to the owner of
    // its first node (its part would assemble it without a row of it)
    let mut element_part = element_part;
    for (e, el) in mesh.elements.iter().enumerate() {
        if !el.iter().any(|&v| owner[v as usize] == element_part[e]) {
            element_part[e] = owner[el[0] as usize];
        }
    }
    let mut elems = vec![0usize; k];
    for &p in &element_part {
        elems[p as usize] += 1;
    }
    if let Some(p) = elems.iter().position(|&c| c == 0) {
        return Err(PartitionError::EmptyPart {
            part: p,
            parts: k,
            what: "element",
        });
    }
    let mut owned = vec![0usize; k];
    for &o in &owner {
        if o != u32::MAX {
            owned[o as usize] += 1;
        }
    }
    // unused nodes: to the part with the fewest owned nodes (lowest index
    // on ties), in node order
    let mut heap: std::collections::BinaryHeap<std::cmp::Reverse<(usize, usize)>> =
        (0..k).map(|p| std::cmp::Reverse((owned[p], p))).collect();
    for o in owner.iter_mut().filter(|o| **o == u32::MAX) {
        let std::cmp::Reverse((c, p)) = heap.pop().expect("k >= 1");
        *o = p as u32;
        owned[p] = c + 1;
        heap.push(std::cmp::Reverse((c + 1, p)));
    }
    if let Some(p) = owned.iter().position(|&c| c == 0) {
        return Err(PartitionError::EmptyPart {
            part: p,
            parts: k,
            what: "node",
        });
    }
    Ok(Partition {
        parts: k,
        element_part,
        node_owner: owner,
    })
}

/// Element centroids (mean of the four corners).
fn centroids(mesh: &Mesh) -> (Vec<f64>, Vec<f64>) {
    mesh.elements
        .iter()
        .map(|el| {
            let cx = (0..4).map(|k| mesh.x[el[k] as usize]).sum::<f64>() / 4.0;
            let cy = (0..4).map(|k| mesh.y[el[k] as usize]).sum::<f64>() / 4.0;
            (cx, cy)
        })
        .unzip()
}

/// Recursive coordinate bisection of the element centroids into `k >= 1`
/// parts (`k <= E`): the part of every element.
pub fn rcb(mesh: &Mesh, k: usize) -> Vec<u32> {
    let (cx, cy) = centroids(mesh);
    let mut ids: Vec<u32> = (0..mesh.elements.len() as u32).collect();
    let mut part = vec![0u32; ids.len()];
    rcb_split(&cx, &cy, &mut ids, k, 0, &mut part);
    part
}

fn rcb_split(cx: &[f64], cy: &[f64], ids: &mut [u32], k: usize, first: u32, part: &mut [u32]) {
    if k <= 1 || ids.len() <= 1 {
        for &e in ids.iter() {
            part[e as usize] = first;
        }
        return;
    }
    let extent = |c: &[f64]| {
        ids.iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &e| {
                (a.min(c[e as usize]), b.max(c[e as usize]))
            })
    };
    let (x0, x1) = extent(cx);
    let (y0, y1) = extent(cy);
    let c = if x1 - x0 >= y1 - y0 { cx } else { cy };
    let k1 = k / 2;
    let cut = ids.len() * k1 / k;
    ids.select_nth_unstable_by(cut, |&a, &b| {
        c[a as usize].total_cmp(&c[b as usize]).then(a.cmp(&b))
    });
    let (lo, hi) = ids.split_at_mut(cut);
    rcb_split(cx, cy, lo, k1, first, part);
    rcb_split(cx, cy, hi, k - k1, first + k1 as u32, part);
}

/// The element dual graph: elements sharing a mid-side node (an edge), in
/// CSR form `(xadj, adjncy)`, neighbours in increasing order.
pub fn dual_graph(mesh: &Mesh) -> (Vec<usize>, Vec<u32>) {
    dual_graph_of(mesh.nodes(), &mesh.elements)
}

/// [`dual_graph`] of the elements `elements` of a mesh of `n` nodes.
pub fn dual_graph_of(n: usize, elements: &[[u32; NODES]]) -> (Vec<usize>, Vec<u32>) {
    let ne = elements.len();
    // mid-side node -> up to 2 elements
    let mut first = vec![u32::MAX; n];
    let mut second = vec![u32::MAX; n];
    for (e, el) in elements.iter().enumerate() {
        for &m in &el[4..NODES] {
            let m = m as usize;
            if first[m] == u32::MAX {
                first[m] = e as u32;
            } else if second[m] == u32::MAX {
                second[m] = e as u32;
            }
        }
    }
    let mut xadj = Vec::with_capacity(ne + 1);
    xadj.push(0);
    let mut adj = Vec::with_capacity(4 * ne);
    let mut nb: Vec<u32> = Vec::with_capacity(4);
    for (e, el) in elements.iter().enumerate() {
        nb.clear();
        for &m in &el[4..NODES] {
            let m = m as usize;
            for o in [first[m], second[m]] {
                if o != u32::MAX && o as usize != e {
                    nb.push(o);
                }
            }
        }
        nb.sort_unstable();
        nb.dedup();
        adj.extend_from_slice(&nb);
        xadj.push(adj.len());
    }
    (xadj, adj)
}

/// METIS k-way on the element dual graph (fixed seed): the part of every
/// element.
pub fn metis_dual(mesh: &Mesh, k: usize) -> Result<Vec<u32>, PartitionError> {
    metis_elements(mesh.nodes(), &mesh.elements, k)
}

/// [`metis_dual`] of the elements `elements` of a mesh of `n` nodes.
#[cfg(feature = "metis")]
pub fn metis_elements(
    n: usize,
    elements: &[[u32; NODES]],
    k: usize,
) -> Result<Vec<u32>, PartitionError> {
    use metis::Idx;
    let ne = elements.len();
    if k == 1 {
        return Ok(vec![0; ne]);
    }
    let (xadj, adj) = dual_graph_of(n, elements);
    let too_big = |_| PartitionError::Metis("graph too large for 32-bit METIS indices".into());
    let xadj: Vec<Idx> = xadj
        .iter()
        .map(|&v| Idx::try_from(v).map_err(too_big))
        .collect::<Result<_, _>>()?;
    let adj: Vec<Idx> = adj.iter().map(|&v| v as Idx).collect();
    let mut part: Vec<Idx> = vec![0; ne];
    // METIS's random numbers come from one state per process (GKlib's,
    // not thread-local): two calls at once in one process (thread ranks,
    // parallel tests, a server's jobs) would draw from each other's
    // sequence and the fixed seed would not fix the partition
    static METIS: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = METIS.lock().unwrap_or_else(|e| e.into_inner());
    metis::Graph::new(1, k as Idx, &xadj, &adj)
        .map_err(|e| PartitionError::Metis(format!("{e:?}")))?
        .set_option(metis::option::Seed(7))
        .part_kway(&mut part)
        .map_err(|e| PartitionError::Metis(format!("{e:?}")))?;
    Ok(part.into_iter().map(|p| p as u32).collect())
}

/// Without the `metis` feature: an error saying so.
#[cfg(not(feature = "metis"))]
pub fn metis_elements(
    _n: usize,
    _elements: &[[u32; NODES]],
    _k: usize,
) -> Result<Vec<u32>, PartitionError> {
    Err(PartitionError::Metis(
        "this build has no METIS (feature \"metis\" of quadflow-mpi is off); use the rcb partitioner"
            .into(),
    ))
}

/// What one part holds and sends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartStats {
    /// Nodes it owns (rows it computes).
    pub owned_nodes: usize,
    /// Elements assigned to it.
    pub owned_elements: usize,
    /// Elements it assembles: every element touching an owned node.
    pub local_elements: usize,
    /// Nodes of its local elements that it does not own.
    pub ghost_nodes: usize,
    /// Ranks it exchanges halo values with.
    pub neighbours: usize,
    /// Values it sends per halo exchange (its owned nodes that are ghosts
    /// elsewhere, counted once per neighbour).
    pub send_values: usize,
    /// Largest single message it sends (values).
    pub max_message: usize,
    /// Entries of its owned rows of the full (both triangles) matrix.
    pub row_entries: usize,
}

/// The cost of a partition.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Quality {
    /// Parts.
    pub parts: usize,
    /// Couplings `(i, j)`, `i < j`, of the matrix graph (nodes sharing an
    /// element) whose nodes have different owners.
    pub edge_cut: usize,
    /// All couplings `(i, j)`, `i < j`.
    pub edges: usize,
    /// Per part.
    pub per_part: Vec<PartStats>,
}

impl Quality {
    fn max_mean(&self, f: impl Fn(&PartStats) -> usize) -> (usize, f64) {
        let max = self.per_part.iter().map(&f).max().unwrap_or(0);
        let mean =
            self.per_part.iter().map(&f).sum::<usize>() as f64 / self.per_part.len().max(1) as f64;
        (max, mean)
    }

    /// Owned nodes, max over mean.
    pub fn node_imbalance(&self) -> f64 {
        let (m, a) = self.max_mean(|s| s.owned_nodes);
        m as f64 / a
    }

    /// Local (assembled) elements, max over mean.
    pub fn element_imbalance(&self) -> f64 {
        let (m, a) = self.max_mean(|s| s.local_elements);
        m as f64 / a
    }

    /// Ghost nodes summed over the parts.
    pub fn total_ghosts(&self) -> usize {
        self.per_part.iter().map(|s| s.ghost_nodes).sum()
    }

    /// Elements assembled more than once (sum of local elements minus the
    /// mesh's elements).
    pub fn duplicated_elements(&self) -> usize {
        let local: usize = self.per_part.iter().map(|s| s.local_elements).sum();
        let own: usize = self.per_part.iter().map(|s| s.owned_elements).sum();
        local - own
    }

    /// A multi-line table, one row per part (at most `max_rows`, then a
    /// summary).
    pub fn table(&self, max_rows: usize) -> String {
        let mut s = format!(
            "edge cut {} of {} couplings ({:.3}%), imbalance: nodes {:.3}, elements {:.3}, ghosts {} in all, {} elements assembled twice\n",
            self.edge_cut,
            self.edges,
            100.0 * self.edge_cut as f64 / self.edges.max(1) as f64,
            self.node_imbalance(),
            self.element_imbalance(),
            self.total_ghosts(),
            self.duplicated_elements()
        );
        s.push_str("part  owned nodes  elements (own/local)  ghosts  neighbours  sent values\n");
        for (p, st) in self.per_part.iter().enumerate().take(max_rows) {
            s.push_str(&format!(
                "{p:>4}  {:>11}  {:>9} / {:<9}  {:>6}  {:>10}  {:>11}\n",
                st.owned_nodes,
                st.owned_elements,
                st.local_elements,
                st.ghost_nodes,
                st.neighbours,
                st.send_values
            ));
        }
        if self.per_part.len() > max_rows {
            s.push_str(&format!(
                "... {} more parts\n",
                self.per_part.len() - max_rows
            ));
        }
        s
    }
}

/// Measures a partition of `mesh`.
pub fn quality(mesh: &Mesh, p: &Partition) -> Quality {
    let k = p.parts;
    let owner = &p.node_owner;
    let mut per = vec![PartStats::default(); k];
    for &o in owner {
        per[o as usize].owned_nodes += 1;
    }
    for &e in &p.element_part {
        per[e as usize].owned_elements += 1;
    }
    // ghost relations (part, node) and local elements
    let mut ghost_pairs: Vec<(u32, u32)> = Vec::new();
    let mut owners: Vec<u32> = Vec::with_capacity(NODES);
    for el in &mesh.elements {
        owners.clear();
        owners.extend(el.iter().map(|&v| owner[v as usize]));
        owners.sort_unstable();
        owners.dedup();
        for &q in &owners {
            per[q as usize].local_elements += 1;
        }
        if owners.len() > 1 {
            for &q in &owners {
                for &v in el {
                    if owner[v as usize] != q {
                        ghost_pairs.push((q, v));
                    }
                }
            }
        }
    }
    ghost_pairs.sort_unstable();
    ghost_pairs.dedup();
    // recv[q][r]: ghosts of q owned by r
    let mut msgs: std::collections::BTreeMap<(u32, u32), usize> = Default::default();
    for &(q, v) in &ghost_pairs {
        per[q as usize].ghost_nodes += 1;
        *msgs.entry((owner[v as usize], q)).or_default() += 1;
    }
    for (&(from, _to), &len) in &msgs {
        let s = &mut per[from as usize];
        s.neighbours += 1;
        s.send_values += len;
        s.max_message = s.max_message.max(len);
    }
    // edge cut of the matrix graph
    let (ptr, adj) = quadflow_systems::sparse::node_elements(mesh.nodes(), &mesh.elements);
    let (mut cut, mut edges) = (0usize, 0usize);
    let mut buf: Vec<u32> = Vec::with_capacity(64);
    for i in 0..mesh.nodes() {
        buf.clear();
        for &e in &adj[ptr[i] as usize..ptr[i + 1] as usize] {
            buf.extend(
                mesh.elements[e as usize]
                    .iter()
                    .filter(|&&j| j as usize > i),
            );
        }
        buf.sort_unstable();
        buf.dedup();
        edges += buf.len();
        cut += buf
            .iter()
            .filter(|&&j| owner[j as usize] != owner[i])
            .count();
        // the diagonal, and each coupling in both rows
        per[owner[i] as usize].row_entries += 1 + buf.len();
        for &j in &buf {
            per[owner[j as usize] as usize].row_entries += 1;
        }
    }
    Quality {
        parts: k,
        edge_cut: cut,
        edges,
        per_part: per,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use quadflow_systems::mesh::OrientationPolicy;

    /// `nx x ny` unit Quad-8 elements on the `(2nx+1) x (2ny+1)` lattice
    /// (cell centres unused), optionally with node numbers shuffled.
    pub(crate) fn lattice(nx: usize, ny: usize, shuffle: bool) -> Mesh {
        let w = 2 * nx + 1;
        let h = 2 * ny + 1;
        let n = w * h;
        let mut perm: Vec<usize> = (0..n).collect();
        if shuffle {
            let mut s = 12345u64;
            for i in (1..n).rev() {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                perm.swap(i, (s >> 33) as usize % (i + 1));
            }
        }
        // the engine's lattice grid, y stretched along x, renumbered
        let (gx, gy, els) = quadflow_systems::mesh::lattice_grid(nx, ny, |u, v| {
            let (i, j) = (u * (w - 1) as f64, v * (h - 1) as f64);
            (i / 2.0, j / 2.0 * (1.0 + 0.01 * i))
        });
        let mut x = vec![0.0; n];
        let mut y = vec![0.0; n];
        for k in 0..n {
            x[perm[k]] = gx[k];
            y[perm[k]] = gy[k];
        }
        let q: Vec<[i64; NODES]> = els
            .iter()
            .map(|e| e.map(|v| perm[v as usize] as i64))
            .collect();
        Mesh::new(x, y, &q, OrientationPolicy::Fix).unwrap()
    }

    #[test]
    fn rcb_splits_into_any_k_evenly() {
        let m = lattice(12, 5, true);
        for k in 1..=9 {
            let p = partition(&m, k, Method::Rcb).unwrap();
            let q = quality(&m, &p);
            let (mx, mn) = (
                q.per_part.iter().map(|s| s.owned_elements).max().unwrap(),
                q.per_part.iter().map(|s| s.owned_elements).min().unwrap(),
            );
            assert!(mx - mn <= 1, "k {k}: {mx} vs {mn}");
            assert_eq!(
                q.per_part.iter().map(|s| s.owned_nodes).sum::<usize>(),
                m.nodes()
            );
            // deterministic
            assert_eq!(p, partition(&m, k, Method::Rcb).unwrap());
            if k == 1 {
                assert_eq!(q.edge_cut, 0);
                assert_eq!(q.total_ghosts(), 0);
            } else {
                assert!(q.edge_cut > 0 && q.total_ghosts() > 0);
            }
        }
    }

    #[test]
    fn every_node_has_one_owner_and_unused_nodes_are_dealt_out() {
        let m = lattice(6, 4, false);
        let p = partition(&m, 3, Method::Rcb).unwrap();
        assert_eq!(p.node_owner.len(), m.nodes());
        assert!(p.node_owner.iter().all(|&o| o < 3));
        let used = m.used_nodes();
        // an owned, used node belongs to the part of its first element
        for (e, el) in m.elements.iter().enumerate() {
            for &v in el {
                let first = m.elements.iter().position(|x| x.contains(&v)).unwrap();
                if first == e {
                    assert_eq!(p.node_owner[v as usize], p.element_part[e]);
                }
            }
        }
        assert_eq!(used.iter().filter(|u| !**u).count(), 24);
    }

    #[test]
    fn bad_counts_are_named() {
        let m = lattice(2, 1, false);
        let e = partition(&m, 3, Method::Rcb).unwrap_err();
        assert!(e.to_string().contains("2 elements into 3 parts"), "{e}");
        let e = from_element_parts(&m, 2, vec![0, 0]).unwrap_err();
        assert_eq!(
            e,
            PartitionError::EmptyPart {
                part: 1,
                parts: 2,
                what: "element"
            }
        );
        assert!(e.to_string().contains("part 1 of 2 is empty"));
        assert!(from_element_parts(&m, 2, vec![0, 5]).is_err());
        assert!(from_element_parts(&m, 2, vec![0]).is_err());
        assert_eq!(
            partition(&m, 0, Method::Rcb).unwrap_err(),
            PartitionError::NoParts
        );
    }

    #[test]
    fn dual_graph_links_edge_neighbours() {
        let m = lattice(3, 2, true);
        let (xadj, adj) = dual_graph(&m);
        // element 0 (corner) has 2 edge neighbours: 1 and 3
        assert_eq!(&adj[xadj[0]..xadj[1]], &[1, 3]);
        // element 4 (middle of the second row) has 3
        assert_eq!(&adj[xadj[4]..xadj[5]], &[1, 3, 5]);
    }

    #[cfg(feature = "metis")]
    #[test]
    fn metis_is_deterministic_and_balanced() {
        let m = lattice(20, 10, true);
        for k in [2, 3, 5] {
            let a = partition(&m, k, Method::Metis).unwrap();
            let b = partition(&m, k, Method::Metis).unwrap();
            assert_eq!(a, b);
            let q = quality(&m, &a);
            assert!(q.element_imbalance() < 1.3, "k {k}: {}", q.table(10));
        }
    }

    /// METIS called from several threads at once (thread ranks, parallel
    /// tests) gives every caller the partition one call alone gives.
    #[cfg(feature = "metis")]
    #[test]
    fn metis_from_several_threads_is_still_deterministic() {
        let m = lattice(20, 10, true);
        let want = partition(&m, 5, Method::Metis).unwrap();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..25 {
                        assert_eq!(partition(&m, 5, Method::Metis).unwrap(), want);
                    }
                });
            }
        });
    }
}
