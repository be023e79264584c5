//! Parts built from blocks: every rank's [`Part`] assembled by moving
//! elements and nodes from the ranks whose blocks hold them
//! ([`crate::slice`]) to the ranks the partition gives them, without any
//! rank holding the whole mesh.
//!
//! The parts are those [`crate::part::build_parts`] builds on the whole
//! mesh (owner-computes: owned nodes first, then ghosts, each in
//! increasing global id; every element touching an owned node, in global
//! element order; the same halo plan), with the node ownership rule of
//! [`crate::partition`] for every node some element uses (the part of the
//! lowest-numbered element using it). Two rules differ, because the
//! whole-mesh rules need the whole mesh: a node no element uses belongs
//! to the rank whose block holds it (the whole-mesh rule deals such nodes
//! to the parts with the fewest owned nodes so far), and an element none
//! of whose nodes its part owns (its part would have to assemble it
//! without owning a row of it) is given to the owner of its first node.
//!
//! Five rounds of all-to-all messages:
//! 1. each rank sends, for every node its elements use, its lowest
//!    element using it (and that element's part) to the rank whose block
//!    holds the node, which keeps the lowest of all and answers every
//!    sender with the node's owner;
//! 2. each element goes to every part owning one of its nodes, and each
//!    node's coordinates to its owner;
//! 3. each part asks the holders of its ghost nodes for their owners and
//!    coordinates (request and answer);
//! 4. each part tells each owner which of its nodes it holds as ghosts:
//!    the halo plan's send lists.

use crate::comm::Comm;
use crate::part::{Halo, Neighbour, Part};
use crate::partition::{PartStats, PartitionError};
use crate::slice::{Slice, block, holder};
use crate::wire::{Reader, Writer};
use quadflow_systems::element::NODES;
use quadflow_systems::mesh::{GlobalFrame, Mesh};
use std::collections::BTreeMap;

/// The index of every id of a sorted list of distinct ids: a dense table
/// over their span when it is at most a few times their count (a mesh
/// numbered with locality: one array read a lookup), else a binary search.
struct IdMap<'a> {
    ids: &'a [u32],
    base: u32,
    table: Vec<u32>,
}

impl<'a> IdMap<'a> {
    fn new(ids: &'a [u32]) -> Self {
        let (base, span) = match (ids.first(), ids.last()) {
            (Some(&a), Some(&b)) => (a, (b - a) as usize + 1),
            _ => (0, 0),
        };
        let mut table = Vec::new();
        if span <= 4 * ids.len() {
            table = vec![u32::MAX; span];
            for (k, &v) in ids.iter().enumerate() {
                table[(v - base) as usize] = k as u32;
            }
        }
        Self { ids, base, table }
    }

    fn get(&self, v: u32) -> Option<u32> {
        if self.table.is_empty() {
            return self.ids.binary_search(&v).ok().map(|k| k as u32);
        }
        let k = *self.table.get(v.checked_sub(self.base)? as usize)?;
        (k != u32::MAX).then_some(k)
    }
}

/// The distinct values of `vals`, increasing: marked in a dense table over
/// their span when it is small against their count, else sorted.
fn distinct(vals: impl Iterator<Item = u32> + Clone) -> Vec<u32> {
    let (lo, hi, n) = vals.clone().fold((u32::MAX, 0u32, 0usize), |(a, b, n), v| {
        (a.min(v), b.max(v), n + 1)
    });
    if n == 0 {
        return Vec::new();
    }
    let span = (hi - lo) as usize + 1;
    if span <= 4 * n {
        let mut seen = vec![false; span];
        for v in vals {
            seen[(v - lo) as usize] = true;
        }
        return (0..span)
            .filter(|&k| seen[k])
            .map(|k| lo + k as u32)
            .collect();
    }
    let mut v: Vec<u32> = vals.collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// One all-to-all of encoded buffers (one per rank).
fn exchange(comm: &dyn Comm, send: Vec<Writer>) -> Vec<Vec<u8>> {
    comm.alltoallv(send.into_iter().map(Writer::finish).collect())
}

fn writers(p: usize) -> Vec<Writer> {
    (0..p).map(|_| Writer::new()).collect()
}

/// Builds this rank's part from its slice and the parts of its block's
/// elements (`epart[i]`: element `slice.first_element + i`), into `k =
/// ranks` parts (collective). Errors (a part left without an element or
/// a node) are the same on every rank.
pub fn build_part(comm: &dyn Comm, slice: &Slice, mut epart: Vec<u32>) -> Result<Part, String> {
    let (p, r) = (comm.size(), comm.rank());
    let (n, ne) = (slice.nodes, slice.elements);
    let nodes = block(n, p, r);
    // 1. node owners: the lowest element of each node, its part
    let used = distinct(slice.quad8.iter().flatten().copied());
    let used_at = IdMap::new(&used);
    let mut lowest = vec![u32::MAX; used.len()];
    for (i, el) in slice.quad8.iter().enumerate() {
        for &v in el {
            let k = used_at.get(v).expect("a used node") as usize;
            lowest[k] = lowest[k].min(i as u32);
        }
    }
    let pairs: Vec<(u32, u32)> = used.iter().copied().zip(lowest).collect();
    let mut send = writers(p);
    let mut start = 0;
    while start < pairs.len() {
        let h = holder(n, p, pairs[start].0 as usize);
        let end = start + pairs[start..].partition_point(|x| holder(n, p, x.0 as usize) == h);
        let run = &pairs[start..end];
        send[h]
            .u32s(&run.iter().map(|x| x.0).collect::<Vec<_>>())
            .u32s(
                &run.iter()
                    .map(|x| (slice.first_element + x.1 as usize) as u32)
                    .collect::<Vec<_>>(),
            )
            .u32s(&run.iter().map(|x| epart[x.1 as usize]).collect::<Vec<_>>());
        start = end;
    }
    drop(pairs);
    let got = exchange(comm, send);
    let mut best = vec![(u32::MAX, r as u32); nodes.len()];
    let mut asked: Vec<Vec<u32>> = Vec::with_capacity(p);
    for b in &got {
        let mut rd = Reader::new(b);
        if rd.done() {
            asked.push(Vec::new());
            continue;
        }
        let (vs, es, ps) = (rd.u32s(), rd.u32s(), rd.u32s());
        for j in 0..vs.len() {
            let s = &mut best[vs[j] as usize - nodes.start];
            if es[j] < s.0 {
                *s = (es[j], ps[j]);
            }
        }
        asked.push(vs);
    }
    drop(got);
    let mut send = writers(p);
    for (q, vs) in asked.iter().enumerate() {
        if !vs.is_empty() {
            send[q].u32s(
                &vs.iter()
                    .map(|&v| best[v as usize - nodes.start].1)
                    .collect::<Vec<_>>(),
            );
        }
    }
    drop(asked);
    let owner: Vec<u32> = best.iter().map(|b| b.1).collect();
    drop(best);
    let got = exchange(comm, send);
    // the owner of every node this rank's elements use (`used` order)
    let mut used_owner = Vec::with_capacity(used.len());
    for b in &got {
        if !b.is_empty() {
            used_owner.extend(Reader::new(b).u32s());
        }
    }
    drop(got);
    let owner_of = |v: u32| used_owner[used_at.get(v).expect("a used node") as usize];
    // 2. elements to every part owning one of their nodes, nodes to owners
    let mut owners: Vec<u32> = Vec::with_capacity(NODES);
    let mut els: Vec<Vec<u32>> = vec![Vec::new(); p];
    let mut flat: Vec<Vec<u32>> = vec![Vec::new(); p];
    let mut own: Vec<Vec<u32>> = vec![Vec::new(); p];
    for (i, el) in slice.quad8.iter().enumerate() {
        owners.clear();
        owners.extend(el.iter().map(|&v| owner_of(v)));
        owners.sort_unstable();
        owners.dedup();
        if !owners.contains(&epart[i]) {
            epart[i] = owner_of(el[0]);
        }
        let gid = (slice.first_element + i) as u32;
        for &q in &owners {
            let q = q as usize;
            if q == epart[i] as usize {
                own[q].push(els[q].len() as u32);
            }
            els[q].push(gid);
            flat[q].extend_from_slice(el);
        }
    }
    // every part owns an element and a node
    let mut counts = vec![0.0; 2 * p];
    for &e in &epart {
        counts[e as usize] += 1.0;
    }
    for &o in &owner {
        counts[p + o as usize] += 1.0;
    }
    comm.allreduce_sum(&mut counts);
    for (what, c) in [("element", &counts[..p]), ("node", &counts[p..])] {
        if let Some(part) = c.iter().position(|&c| c == 0.0) {
            return Err(PartitionError::EmptyPart {
                part,
                parts: p,
                what,
            }
            .to_string());
        }
    }
    let mut send = writers(p);
    let mut to_owner: Vec<Vec<u32>> = vec![Vec::new(); p];
    for (k, &o) in owner.iter().enumerate() {
        to_owner[o as usize].push(k as u32);
    }
    for q in 0..p {
        let ids = &to_owner[q];
        send[q]
            .u32s(&els[q])
            .u32s(&flat[q])
            .u32s(&own[q])
            .u32s(
                &ids.iter()
                    .map(|&k| nodes.start as u32 + k)
                    .collect::<Vec<_>>(),
            )
            .f64s(&ids.iter().map(|&k| slice.x[k as usize]).collect::<Vec<_>>())
            .f64s(&ids.iter().map(|&k| slice.y[k as usize]).collect::<Vec<_>>());
    }
    drop((els, flat, own, to_owner, used_at, used_owner));
    let got = exchange(comm, send);
    let mut element_gid: Vec<u32> = Vec::new();
    let mut elements: Vec<[u32; NODES]> = Vec::new();
    let mut owned_elements: Vec<u32> = Vec::new();
    let mut owned_gid: Vec<u32> = Vec::new();
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for b in &got {
        let mut rd = Reader::new(b);
        let (g, f, o) = (rd.u32s(), rd.u32s(), rd.u32s());
        let base = element_gid.len() as u32;
        owned_elements.extend(o.iter().map(|&l| base + l));
        element_gid.extend(g);
        elements.extend(
            f.chunks_exact(NODES)
                .map(|c| <[u32; NODES]>::try_from(c).expect("8 nodes")),
        );
        owned_gid.extend(rd.u32s());
        x.extend(rd.f64s());
        y.extend(rd.f64s());
    }
    drop(got);
    let owned = owned_gid.len();
    // 3. ghosts: their owners and coordinates, from their holders
    let owned_at = IdMap::new(&owned_gid);
    let ghosts: Vec<u32> = distinct(
        elements
            .iter()
            .flatten()
            .copied()
            .filter(|&v| owned_at.get(v).is_none()),
    );
    let mut send = writers(p);
    let mut start = 0;
    while start < ghosts.len() {
        let h = holder(n, p, ghosts[start] as usize);
        let end = start + ghosts[start..].partition_point(|&v| holder(n, p, v as usize) == h);
        send[h].u32s(&ghosts[start..end]);
        start = end;
    }
    let got = exchange(comm, send);
    let mut send = writers(p);
    for (q, b) in got.iter().enumerate() {
        if b.is_empty() {
            continue;
        }
        let vs = Reader::new(b).u32s();
        let at = |v: &u32| *v as usize - nodes.start;
        send[q]
            .u32s(&vs.iter().map(|v| owner[at(v)]).collect::<Vec<_>>())
            .f64s(&vs.iter().map(|v| slice.x[at(v)]).collect::<Vec<_>>())
            .f64s(&vs.iter().map(|v| slice.y[at(v)]).collect::<Vec<_>>());
    }
    drop(got);
    let got = exchange(comm, send);
    let mut ghost_owner = Vec::with_capacity(ghosts.len());
    for b in &got {
        if b.is_empty() {
            continue;
        }
        let mut rd = Reader::new(b);
        ghost_owner.extend(rd.u32s());
        x.extend(rd.f64s());
        y.extend(rd.f64s());
    }
    drop(got);
    // 4. the halo plan
    let mut send = writers(p);
    let mut recv_of: BTreeMap<usize, Vec<u32>> = BTreeMap::new();
    {
        let mut by_owner: Vec<Vec<u32>> = vec![Vec::new(); p];
        for (g, &v) in ghosts.iter().enumerate() {
            let o = ghost_owner[g] as usize;
            by_owner[o].push(v);
            recv_of.entry(o).or_default().push((owned + g) as u32);
        }
        for (q, list) in by_owner.iter().enumerate() {
            if !list.is_empty() {
                send[q].u32s(list);
            }
        }
    }
    let got = exchange(comm, send);
    let mut send_of: BTreeMap<usize, Vec<u32>> = BTreeMap::new();
    for (q, b) in got.iter().enumerate() {
        if b.is_empty() {
            continue;
        }
        let list = Reader::new(b).u32s();
        send_of.insert(
            q,
            list.iter()
                .map(|&v| owned_at.get(v).expect("an owned node"))
                .collect(),
        );
    }
    drop(got);
    let mut ranks: Vec<usize> = recv_of.keys().chain(send_of.keys()).copied().collect();
    ranks.sort_unstable();
    ranks.dedup();
    let halo = Halo {
        neighbours: ranks
            .into_iter()
            .map(|q| Neighbour {
                rank: q,
                send: send_of.remove(&q).unwrap_or_default(),
                recv: recv_of.remove(&q).unwrap_or_default(),
            })
            .collect(),
    };
    // the local mesh
    let ghost_at = IdMap::new(&ghosts);
    let local = |v: u32| -> Option<u32> {
        owned_at
            .get(v)
            .or_else(|| ghost_at.get(v).map(|g| owned as u32 + g))
    };
    let elements: Vec<[u32; NODES]> = elements
        .iter()
        .map(|el| el.map(|v| local(v).expect("a local node")))
        .collect();
    let node_sets: BTreeMap<String, Vec<u32>> = slice
        .node_sets
        .iter()
        .map(|(name, set)| (name.clone(), set.iter().filter_map(|&v| local(v)).collect()))
        .collect();
    drop((owned_at, ghost_at));
    let node_gid: Vec<u32> = owned_gid.into_iter().chain(ghosts).collect();
    Ok(Part {
        rank: r,
        parts: p,
        global_nodes: n,
        global_elements: ne,
        owned,
        ghost_owner,
        element_gid,
        owned_elements,
        mesh: Mesh {
            x,
            y,
            elements,
            flipped: 0,
            node_sets,
            part_of: Some(GlobalFrame { bbox: slice.bbox }),
        },
        node_gid,
        halo,
    })
}

/// What one part holds and sends ([`PartStats`]), and its share of the
/// matrix graph's couplings `(i, j)`, `i < j`, by the owner of `i`: all,
/// and those whose ends have different owners. Summed over the parts,
/// the last two are [`crate::partition::Quality`]'s `edges` and
/// `edge_cut`.
pub fn part_stats(part: &Part) -> (PartStats, usize, usize) {
    let m = &part.mesh;
    let nl = part.node_gid.len();
    let (ptr, adj) = quadflow_systems::sparse::node_elements(nl, &m.elements);
    let owner = |l: usize| {
        if l < part.owned {
            part.rank as u32
        } else {
            part.ghost_owner[l - part.owned]
        }
    };
    let (mut entries, mut edges, mut cut) = (0usize, 0usize, 0usize);
    // every distinct neighbour of row i once: marked with i
    let mut mark = vec![u32::MAX; nl];
    for i in 0..part.owned {
        mark[i] = i as u32;
        entries += 1;
        let gi = part.node_gid[i];
        for &e in &adj[ptr[i] as usize..ptr[i + 1] as usize] {
            for &j in &m.elements[e as usize] {
                if mark[j as usize] == i as u32 {
                    continue;
                }
                mark[j as usize] = i as u32;
                entries += 1;
                if part.node_gid[j as usize] > gi {
                    edges += 1;
                    if owner(j as usize) != part.rank as u32 {
                        cut += 1;
                    }
                }
            }
        }
    }
    let stats = PartStats {
        owned_nodes: part.owned,
        owned_elements: part.owned_elements.len(),
        local_elements: part.element_gid.len(),
        ghost_nodes: part.ghosts(),
        neighbours: part
            .halo
            .neighbours
            .iter()
            .filter(|nb| !nb.send.is_empty())
            .count(),
        send_values: part.halo.send_volume(),
        max_message: part
            .halo
            .neighbours
            .iter()
            .map(|nb| nb.send.len())
            .max()
            .unwrap_or(0),
        row_entries: entries,
    };
    (stats, edges, cut)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::comm::ThreadComm;
    use crate::part::build_parts;
    use crate::partition::{Partition, quality, rcb, tests::lattice};
    use crate::slice::arrays::Arrays;
    use quadflow_systems::pipeline::MeshCheck;
    use std::sync::Arc;

    /// The whole-mesh partition the block path builds: element parts as
    /// given, nodes to the part of their lowest element or, unused, to
    /// the holder of their block, elements whose part owns none of their
    /// nodes to the owner of their first node.
    fn expected(m: &Mesh, k: usize, mut epart: Vec<u32>) -> Partition {
        let n = m.nodes();
        let mut owner: Vec<u32> = (0..n).map(|v| holder(n, k, v) as u32).collect();
        let mut seen = vec![false; n];
        for (e, el) in m.elements.iter().enumerate() {
            for &v in el {
                if !seen[v as usize] {
                    seen[v as usize] = true;
                    owner[v as usize] = epart[e];
                }
            }
        }
        for (e, el) in m.elements.iter().enumerate() {
            if !el.iter().any(|&v| owner[v as usize] == epart[e]) {
                epart[e] = owner[el[0] as usize];
            }
        }
        Partition {
            parts: k,
            element_part: epart,
            node_owner: owner,
        }
    }

    /// Parts moved from blocks are the parts built on the whole mesh
    /// (numbering, elements, coordinates, node sets, halo plans), and
    /// their figures add up to the whole-mesh quality.
    #[test]
    fn parts_from_blocks_are_the_whole_mesh_parts() {
        for (nx, ny, shuffle) in [(9, 4, true), (12, 3, false), (5, 5, true)] {
            let mut m = lattice(nx, ny, shuffle);
            m.node_sets
                .insert("some".into(), (0..m.nodes() as u32).step_by(5).collect());
            let m = Arc::new(m);
            for p in [1, 2, 3, 4] {
                let a = Arc::new(Arrays::of(&m));
                let got = ThreadComm::run(p, move |c| {
                    let s = crate::slice::read(c, a.as_ref(), MeshCheck::default()).unwrap();
                    let ep = crate::rcb::rcb(c, s.first_element, &s.centroids.0, &s.centroids.1, p);
                    let part = build_part(c, &s, ep).unwrap();
                    let st = part_stats(&part);
                    (part, st)
                });
                let part_of = expected(&m, p, rcb(&m, p));
                let want = build_parts(&m, &part_of);
                let q = quality(&m, &part_of);
                let (mut edges, mut cut) = (0, 0);
                for (r, (part, (stats, e, c))) in got.into_iter().enumerate() {
                    let mut part = part;
                    part.mesh.part_of = want[r].mesh.part_of;
                    assert_eq!(part, want[r], "{nx}x{ny} P={p} rank {r}");
                    assert_eq!(stats, q.per_part[r], "{nx}x{ny} P={p} rank {r}");
                    edges += e;
                    cut += c;
                }
                assert_eq!((edges, cut), (q.edges, q.edge_cut));
            }
        }
    }
}
