//! What the whole mesh's boundary selects, found on the parts without
//! the whole mesh: the checks and figures that
//! [`quadflow_systems::boundary::resolve`] gives on a whole mesh (a
//! boundary part that selects nothing is an error, with the same
//! message; Robin edges, Dirichlet and unused nodes counted), and the
//! mesh components nothing anchors ([`floating`], the distributed
//! [`quadflow_systems::topology::floating`]).
//!
//! Each element is counted on the part that owns it, each node on its
//! owner. Components: every part labels its local components (union-find
//! over its local elements) with their lowest element index; one halo
//! exchange gives every ghost node its owner's label, and so the links
//! between the local components of neighbouring parts (a few per part);
//! rank 0 joins the links (union-find over the labels) and sends every
//! label its component's lowest. Each component's figures are then
//! summed on the rank whose element block holds its label (its first
//! element).

use crate::comm::{self, Comm};
use crate::part::Part;
use crate::slice::{block, holder};
use crate::wire::{Reader, Writer};
use quadflow_systems::boundary::{self, BoundaryConfig, BoundaryError, ComponentPolicy};
use quadflow_systems::components::BoundaryReport;
use quadflow_systems::element::EDGES;
use quadflow_systems::topology::FloatingComponent;

/// The whole mesh's boundary report from the parts (collective): the
/// error a one-process run gives where a boundary part selects nothing
/// on the whole mesh (or the problem is singular, or a named set is
/// missing), the same on every rank.
pub fn report(
    comm: &dyn Comm,
    part: &Part,
    cfg: &BoundaryConfig,
) -> Result<BoundaryReport, String> {
    if cfg.dirichlet.is_empty() && !cfg.robin.iter().any(|r| r.p > 0.0) {
        return Err(BoundaryError::Singular.to_string());
    }
    let m = &part.mesh;
    let nparts = cfg.robin.len() + cfg.dirichlet.len();
    let mut counts = vec![0.0; nparts + 2];
    let mut unknown: Vec<Option<BoundaryError>> = Vec::with_capacity(nparts);
    let mut taken = vec![false; part.owned];
    let mut anchors = vec![false; m.nodes()];
    for (k, rp) in cfg.robin.iter().enumerate() {
        match boundary::select(m, &rp.select, cfg.tol, &rp.name) {
            Ok(mask) => {
                for &l in &part.owned_elements {
                    let el = &m.elements[l as usize];
                    for edge in EDGES {
                        if edge.iter().all(|&c| mask[el[c] as usize]) {
                            counts[k] += 1.0;
                        }
                    }
                }
                if rp.p > 0.0 {
                    for el in &m.elements {
                        for edge in EDGES {
                            if edge.iter().all(|&c| mask[el[c] as usize]) {
                                anchors[el[edge[0]] as usize] = true;
                            }
                        }
                    }
                }
                unknown.push(None);
            }
            Err(e) => unknown.push(Some(e)),
        }
    }
    for (j, dp) in cfg.dirichlet.iter().enumerate() {
        match boundary::select(m, &dp.select, cfg.tol, &dp.name) {
            Ok(mask) => {
                for (i, t) in taken.iter_mut().enumerate() {
                    if mask[i] {
                        counts[cfg.robin.len() + j] += 1.0;
                        *t = true;
                    }
                }
                for (a, &s) in anchors.iter_mut().zip(&mask) {
                    *a |= s;
                }
                unknown.push(None);
            }
            Err(e) => unknown.push(Some(e)),
        }
    }
    let mut used = vec![false; m.nodes()];
    for el in &m.elements {
        for &v in el {
            used[v as usize] = true;
        }
    }
    counts[nparts] = taken.iter().filter(|t| **t).count() as f64;
    counts[nparts + 1] = used[..part.owned].iter().filter(|u| !**u).count() as f64;
    comm.allreduce_sum(&mut counts);
    // the first failure in the order a whole-mesh resolve meets them
    for k in 0..nparts {
        if let Some(e) = unknown[k].take() {
            return Err(e.to_string());
        }
        if counts[k] == 0.0 {
            let e = if k < cfg.robin.len() {
                let rp = &cfg.robin[k];
                BoundaryError::NoEdges {
                    name: rp.name.clone(),
                    select: rp.select.to_string(),
                    tol: cfg.tol,
                }
            } else {
                let dp = &cfg.dirichlet[k - cfg.robin.len()];
                BoundaryError::NoNodes {
                    name: dp.name.clone(),
                    select: dp.select.to_string(),
                    tol: cfg.tol,
                }
            };
            return Err(e.to_string());
        }
    }
    let floating = floating(comm, part, &anchors);
    if cfg.components == ComponentPolicy::Refuse
        && let Some(first) = floating.first()
    {
        return Err(BoundaryError::Floating {
            first: first.clone(),
            count: floating.len(),
        }
        .to_string());
    }
    Ok(BoundaryReport {
        robin_edges: counts[..cfg.robin.len()].iter().sum::<f64>() as usize,
        dirichlet_nodes: counts[nparts] as usize,
        unused_nodes: counts[nparts + 1] as usize,
        floating,
    })
}

/// The root of every local node after the unions of the part's elements.
fn roots(n: usize, elements: &[[u32; 8]]) -> Vec<u32> {
    let mut parent: Vec<u32> = (0..n as u32).collect();
    fn find(parent: &mut [u32], mut i: u32) -> u32 {
        while parent[i as usize] != i {
            let g = parent[parent[i as usize] as usize];
            parent[i as usize] = g;
            i = g;
        }
        i
    }
    for el in elements {
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
    for i in 0..n {
        parent[i] = find(&mut parent, i as u32);
    }
    parent
}

/// The mesh components that no node of `anchors` (per local node of the
/// part) touches, in the order of their first element, as
/// [`quadflow_systems::topology::floating`] finds them on the whole mesh
/// (collective; the same list on every rank).
pub fn floating(comm: &dyn Comm, part: &Part, anchors: &[bool]) -> Vec<FloatingComponent> {
    let m = &part.mesh;
    let n = m.nodes();
    let root = roots(n, &m.elements);
    // local component label: its lowest element (global index)
    let mut label = vec![f64::INFINITY; n];
    for (l, el) in m.elements.iter().enumerate() {
        let r = root[el[0] as usize] as usize;
        label[r] = label[r].min(part.element_gid[l] as f64);
    }
    let mut node_label: Vec<f64> = (0..n).map(|i| label[root[i] as usize]).collect();
    // the links between local components of neighbouring parts: each
    // ghost takes its owner's label; (mine, its) for every ghost
    let theirs = {
        let mut v = node_label.clone();
        part.halo.exchange(comm, &mut v, &mut |_| {});
        v
    };
    let mut links: Vec<(u64, u64)> = (part.owned..n)
        .filter(|&g| theirs[g] != node_label[g])
        .map(|g| {
            let (a, b) = (node_label[g] as u64, theirs[g] as u64);
            (a.min(b), a.max(b))
        })
        .collect();
    links.sort_unstable();
    links.dedup();
    // joined on the lead (a few links per part), every label's lowest
    // label sent back
    let mut w = Writer::new();
    w.u64s(&links.iter().flat_map(|&(a, b)| [a, b]).collect::<Vec<_>>());
    let joined = comm::gather(comm, 0, w.finish()).map(|all| {
        let mut pairs: Vec<(u64, u64)> = all
            .iter()
            .flat_map(|b| {
                Reader::new(b)
                    .u64s()
                    .chunks_exact(2)
                    .map(|c| (c[0], c[1]))
                    .collect::<Vec<_>>()
            })
            .collect();
        pairs.sort_unstable();
        pairs.dedup();
        let mut labels: Vec<u64> = pairs.iter().flat_map(|&(a, b)| [a, b]).collect();
        labels.sort_unstable();
        labels.dedup();
        let at = |l: u64| labels.binary_search(&l).expect("a label") as u32;
        let mut parent: Vec<u32> = (0..labels.len() as u32).collect();
        fn find(parent: &mut [u32], mut i: u32) -> u32 {
            while parent[i as usize] != i {
                let g = parent[parent[i as usize] as usize];
                parent[i as usize] = g;
                i = g;
            }
            i
        }
        for &(a, b) in &pairs {
            let (x, y) = (find(&mut parent, at(a)), find(&mut parent, at(b)));
            // the root is the lowest label (labels are sorted)
            let (lo, hi) = if x < y { (x, y) } else { (y, x) };
            parent[hi as usize] = lo;
        }
        let mut w = Writer::new();
        w.u64s(&labels);
        w.u64s(
            &(0..labels.len() as u32)
                .map(|i| labels[find(&mut parent, i) as usize])
                .collect::<Vec<_>>(),
        );
        w.finish()
    });
    let mut joined = joined.unwrap_or_default();
    comm.broadcast(0, &mut joined);
    let mut r = Reader::new(&joined);
    let (labels, lowest) = (r.u64s(), r.u64s());
    for l in label.iter_mut().filter(|l| l.is_finite()) {
        if let Ok(k) = labels.binary_search(&(*l as u64)) {
            *l = lowest[k] as f64;
        }
    }
    for i in 0..n {
        node_label[i] = label[root[i] as usize];
    }
    // per component: anchored, elements (owned), nodes and box (owned, used)
    let ne = part.global_elements;
    let p = comm.size();
    let mut used = vec![false; n];
    for el in &m.elements {
        for &v in el {
            used[v as usize] = true;
        }
    }
    #[derive(Clone, Copy)]
    struct Figures {
        anchored: bool,
        elements: u64,
        nodes: u64,
        bbox: [f64; 4],
    }
    let empty = Figures {
        anchored: false,
        elements: 0,
        nodes: 0,
        bbox: [
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ],
    };
    let mut mine: std::collections::BTreeMap<u64, Figures> = Default::default();
    for (l, el) in m.elements.iter().enumerate() {
        let c = mine
            .entry(node_label[el[0] as usize] as u64)
            .or_insert(empty);
        if part.owned_elements.binary_search(&(l as u32)).is_ok() {
            c.elements += 1;
        }
    }
    for i in 0..n {
        if !used[i] {
            continue;
        }
        let c = mine.entry(node_label[i] as u64).or_insert(empty);
        c.anchored |= anchors[i];
        if i < part.owned {
            c.nodes += 1;
            let (x, y) = (m.x[i], m.y[i]);
            c.bbox = [
                c.bbox[0].min(x),
                c.bbox[1].max(x),
                c.bbox[2].min(y),
                c.bbox[3].max(y),
            ];
        }
    }
    // summed on the holder of each component's first element
    let mut send: Vec<Writer> = (0..p).map(|_| Writer::new()).collect();
    for (&lab, f) in &mine {
        let w = &mut send[holder(ne, p, lab as usize)];
        w.u64(lab)
            .u64(f.anchored as u64)
            .u64(f.elements)
            .u64(f.nodes);
        for v in f.bbox {
            w.f64(v);
        }
    }
    let got = comm.alltoallv(send.into_iter().map(Writer::finish).collect());
    let mut held: std::collections::BTreeMap<u64, Figures> = Default::default();
    for b in &got {
        let mut r = Reader::new(b);
        while !r.done() {
            let lab = r.u64();
            let (a, e, nn) = (r.u64() != 0, r.u64(), r.u64());
            let bb = [r.f64(), r.f64(), r.f64(), r.f64()];
            let c = held.entry(lab).or_insert(empty);
            c.anchored |= a;
            c.elements += e;
            c.nodes += nn;
            c.bbox = [
                c.bbox[0].min(bb[0]),
                c.bbox[1].max(bb[1]),
                c.bbox[2].min(bb[2]),
                c.bbox[3].max(bb[3]),
            ];
        }
    }
    debug_assert!(
        held.keys()
            .all(|&l| block(ne, p, comm.rank()).contains(&(l as usize)))
    );
    // numbered in the order of their first element over all ranks
    let mut before = vec![0.0; p];
    before[comm.rank()] = held.len() as f64;
    comm.allreduce_sum(&mut before);
    let of = before.iter().sum::<f64>() as usize;
    let first_number = before[..comm.rank()].iter().sum::<f64>() as usize;
    let mut w = Writer::new();
    for (k, (&lab, f)) in held.iter().enumerate() {
        if !f.anchored {
            w.u64((first_number + k + 1) as u64)
                .u64(lab)
                .u64(f.elements)
                .u64(f.nodes);
            for v in f.bbox {
                w.f64(v);
            }
        }
    }
    let all = comm.alltoallv(vec![w.finish(); p]);
    let mut out = Vec::new();
    for b in &all {
        let mut r = Reader::new(b);
        while !r.done() {
            out.push(FloatingComponent {
                number: r.u64() as usize,
                of,
                first_element: r.u64() as usize,
                elements: r.u64() as usize,
                nodes: r.u64() as usize,
                bbox: [r.f64(), r.f64(), r.f64(), r.f64()],
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::comm::ThreadComm;
    use crate::partition::tests::lattice;
    use crate::slice::arrays::Arrays;
    use quadflow_systems::mesh::{Mesh, OrientationPolicy};
    use quadflow_systems::pipeline::MeshCheck;
    use std::sync::Arc;

    /// Two meshes side by side as one: `b` shifted by `(dx, dy)`, its
    /// nodes and elements after `a`'s.
    fn beside(a: &Mesh, b: &Mesh, dx: f64, dy: f64) -> Mesh {
        let n = a.nodes() as i64;
        let x =
            a.x.iter()
                .copied()
                .chain(b.x.iter().map(|v| v + dx))
                .collect();
        let y =
            a.y.iter()
                .copied()
                .chain(b.y.iter().map(|v| v + dy))
                .collect();
        let q: Vec<[i64; 8]> = a
            .elements
            .iter()
            .map(|e| e.map(i64::from))
            .chain(b.elements.iter().map(|e| e.map(|v| v as i64 + n)))
            .collect();
        Mesh::new(x, y, &q, OrientationPolicy::Fix).unwrap()
    }

    fn on_parts(m: &Mesh, p: usize, cfg: BoundaryConfig) -> Vec<Result<BoundaryReport, String>> {
        let a = Arc::new(Arrays::of(m));
        let cfg = Arc::new(cfg);
        ThreadComm::run(p, move |c| {
            let s = crate::slice::read(c, a.as_ref(), MeshCheck::default()).unwrap();
            let ep = crate::rcb::rcb(c, s.first_element, &s.centroids.0, &s.centroids.1, p);
            let part = crate::migrate::build_part(c, &s, ep).unwrap();
            report(c, &part, &cfg)
        })
    }

    /// The whole mesh's report, floating components included (numbered,
    /// counted, boxed as on one process), from 1 to 4 parts.
    #[test]
    fn the_report_is_the_whole_meshs() {
        // a channel, and small blocks that touch no boundary (and a
        // second one, to number components past the first; and a long
        // one, which every part holds a piece of)
        let m = beside(&lattice(12, 3, true), &lattice(2, 2, false), 3.0, 5.0);
        let m = beside(&m, &lattice(1, 1, false), 5.0, 9.0);
        let m = beside(&m, &lattice(10, 1, true), 1.0, 11.0);
        let cfg = BoundaryConfig::default();
        let serial = boundary::resolve(&m, &cfg).unwrap();
        let want = BoundaryReport::of(&serial);
        assert_eq!(want.floating.len(), 3);
        for p in 1..=4 {
            for r in on_parts(&m, p, cfg.clone()) {
                assert_eq!(r.unwrap(), want, "P={p}");
            }
        }
        // refused, with the one-process message
        let refuse = BoundaryConfig {
            components: ComponentPolicy::Refuse,
            ..BoundaryConfig::default()
        };
        let e = boundary::resolve(&m, &refuse).unwrap_err().to_string();
        for r in on_parts(&m, 3, refuse) {
            assert_eq!(r.unwrap_err(), e);
        }
    }

    #[test]
    fn a_boundary_that_selects_nothing_is_refused_as_on_one_process() {
        let m = lattice(8, 3, true);
        let mut cfg = BoundaryConfig::default();
        cfg.dirichlet[0].select = quadflow_systems::boundary::Selector::Box {
            x0: 100.0,
            x1: 101.0,
            y0: 0.0,
            y1: 1.0,
        };
        let e = boundary::resolve(&m, &cfg).unwrap_err().to_string();
        for r in on_parts(&m, 3, cfg) {
            assert_eq!(r.unwrap_err(), e);
        }
    }
}
