//! The local part of a rank: owner-computes.
//!
//! A rank owns a set of nodes (its rows) and assembles them from every
//! element touching them: its **local elements**, kept in global element
//! order, so that every owned row sums its element contributions in the
//! order the serial assembly does and comes out equal to the serial row
//! bit for bit. Elements on the border between parts are computed by
//! every rank they touch (a few per cent of the elements) instead of
//! sending partial sums. The local elements also reference **ghost**
//! nodes: nodes owned by another rank. Local node numbering is owned
//! nodes first (increasing global id), then ghosts (increasing global
//! id).
//!
//! The local part is an engine [`Mesh`] in local numbering, whose
//! [`Mesh::part_of`] carries the global bounding box: the engine's
//! quadrature, assembly and boundary phases, of any local executor, run on
//! it unchanged. Its rows of the ghost nodes come out incomplete and are
//! ignored; the rows of owned nodes are exact. Boundary selectors resolve
//! against the whole mesh (the sides against the global bounding box,
//! node sets mapped to local ids); an owned node that no element
//! references is in no local element, so the local boundary phase
//! penalises it once, on its owner.
//!
//! The **halo plan** says what a rank sends to and receives from each
//! neighbour: to neighbour `q`, the owned nodes that are ghosts of `q`;
//! from `q`, the ghosts that `q` owns; both lists in increasing global id,
//! so that the two ends agree without a handshake. Neighbourhood is
//! symmetric (an element touching my owned node and `q`'s owned node is
//! local to both of us).

use crate::comm::Comm;
use crate::partition::Partition;
use crate::wire::{Reader, Writer};
use quadflow_systems::element::NODES;
use quadflow_systems::mesh::{GlobalFrame, Mesh};
use std::collections::BTreeMap;

/// One neighbour in a [`Halo`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbour {
    /// Its rank.
    pub rank: usize,
    /// Local indices of the values sent to it (owned entries).
    pub send: Vec<u32>,
    /// Local indices where the values received from it go (ghost
    /// entries), in the order it sends them.
    pub recv: Vec<u32>,
}

/// A halo plan: per neighbour, what to send and where received values go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Halo {
    /// Neighbours in increasing rank.
    pub neighbours: Vec<Neighbour>,
}

impl Halo {
    /// Values sent per exchange.
    pub fn send_volume(&self) -> usize {
        self.neighbours.iter().map(|n| n.send.len()).sum()
    }

    /// Values received per exchange.
    pub fn recv_volume(&self) -> usize {
        self.neighbours.iter().map(|n| n.recv.len()).sum()
    }

    /// Fills the ghost entries of `v` with their owners' values: packs the
    /// sends, exchanges with non-blocking messages while `overlap` runs,
    /// unpacks. `overlap` must not need the ghost entries.
    pub fn exchange(&self, comm: &dyn Comm, v: &mut [f64], overlap: &mut dyn FnMut(&[f64])) {
        let sends: Vec<Vec<f64>> = self
            .neighbours
            .iter()
            .map(|n| n.send.iter().map(|&i| v[i as usize]).collect())
            .collect();
        let mut recvs: Vec<Vec<f64>> = self
            .neighbours
            .iter()
            .map(|n| vec![0.0; n.recv.len()])
            .collect();
        let vr: &[f64] = v;
        self.post(comm, &sends, &mut recvs, &mut || overlap(vr));
        for (n, b) in self.neighbours.iter().zip(&recvs) {
            for (&i, &x) in n.recv.iter().zip(b) {
                v[i as usize] = x;
            }
        }
    }

    /// The reverse: sends the ghost entries of `v` to their owners, who add
    /// them to their own entries (neighbours in increasing rank, each
    /// message in order, so the sums are deterministic). Ghost entries are
    /// left as they were.
    pub fn reverse_add(&self, comm: &dyn Comm, v: &mut [f64]) {
        let sends: Vec<Vec<f64>> = self
            .neighbours
            .iter()
            .map(|n| n.recv.iter().map(|&i| v[i as usize]).collect())
            .collect();
        let mut recvs: Vec<Vec<f64>> = self
            .neighbours
            .iter()
            .map(|n| vec![0.0; n.send.len()])
            .collect();
        self.post(comm, &sends, &mut recvs, &mut || {});
        for (n, b) in self.neighbours.iter().zip(&recvs) {
            for (&i, &x) in n.send.iter().zip(b) {
                v[i as usize] += x;
            }
        }
    }

    /// One message to and from each neighbour (`sends[k]` to neighbour
    /// `k`, `recvs[k]` from it), non-blocking, with `overlap` running while
    /// they travel. Empty buffers are not posted (the other end posts none
    /// either).
    pub fn post(
        &self,
        comm: &dyn Comm,
        sends: &[Vec<f64>],
        recvs: &mut [Vec<f64>],
        overlap: &mut dyn FnMut(),
    ) {
        let s: Vec<(usize, &[f64])> = self
            .neighbours
            .iter()
            .zip(sends)
            .filter(|(_, b)| !b.is_empty())
            .map(|(n, b)| (n.rank, &b[..]))
            .collect();
        let mut r: Vec<(usize, &mut [f64])> = self
            .neighbours
            .iter()
            .zip(recvs.iter_mut())
            .filter(|(_, b)| !b.is_empty())
            .map(|(n, b)| (n.rank, &mut b[..]))
            .collect();
        comm.exchange(&s, &mut r, overlap);
    }

    fn encode(&self, w: &mut Writer) {
        w.u64(self.neighbours.len() as u64);
        for n in &self.neighbours {
            w.u64(n.rank as u64).u32s(&n.send).u32s(&n.recv);
        }
    }

    fn decode(r: &mut Reader) -> Self {
        let k = r.u64() as usize;
        Self {
            neighbours: (0..k)
                .map(|_| Neighbour {
                    rank: r.u64() as usize,
                    send: r.u32s(),
                    recv: r.u32s(),
                })
                .collect(),
        }
    }
}

/// The part of the mesh a rank holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    /// This part's rank.
    pub rank: usize,
    /// Number of parts.
    pub parts: usize,
    /// Nodes of the whole mesh.
    pub global_nodes: usize,
    /// Elements of the whole mesh.
    pub global_elements: usize,
    /// Owned nodes: local ids `0..owned`; ghosts follow.
    pub owned: usize,
    /// Global id of every local node.
    pub node_gid: Vec<u32>,
    /// Owner of every ghost (`node_gid[owned + g]` is owned by
    /// `ghost_owner[g]`).
    pub ghost_owner: Vec<u32>,
    /// Global id of every local element (increasing).
    pub element_gid: Vec<u32>,
    /// Local indices of the elements the partition gave this rank (each
    /// element of the mesh is in exactly one part's list: post-processing
    /// and per-element outputs take each element once, from its part).
    pub owned_elements: Vec<u32>,
    /// The local mesh: local node ids, local elements in global order,
    /// node sets restricted and renumbered, [`Mesh::part_of`] set.
    pub mesh: Mesh,
    /// What to exchange with the neighbours (node-space vectors).
    pub halo: Halo,
}

impl Part {
    /// Ghost nodes.
    pub fn ghosts(&self) -> usize {
        self.node_gid.len() - self.owned
    }

    /// Serialises the part (to send it to its rank).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u64(self.rank as u64)
            .u64(self.parts as u64)
            .u64(self.global_nodes as u64)
            .u64(self.global_elements as u64)
            .u64(self.owned as u64)
            .u32s(&self.node_gid)
            .u32s(&self.ghost_owner)
            .u32s(&self.element_gid)
            .u32s(&self.owned_elements)
            .f64s(&self.mesh.x)
            .f64s(&self.mesh.y)
            .u32s(self.mesh.elements.as_flattened())
            .u64(self.mesh.flipped as u64);
        let frame = self.mesh.part_of.expect("a part has its frame");
        for v in frame.bbox {
            w.f64(v);
        }
        w.u64(self.mesh.node_sets.len() as u64);
        for (name, nodes) in &self.mesh.node_sets {
            w.str(name).u32s(nodes);
        }
        self.halo.encode(&mut w);
        w.finish()
    }

    /// Reads what [`Part::encode`] wrote.
    pub fn decode(buf: &[u8]) -> Self {
        let mut r = Reader::new(buf);
        let rank = r.u64() as usize;
        let parts = r.u64() as usize;
        let global_nodes = r.u64() as usize;
        let global_elements = r.u64() as usize;
        let owned = r.u64() as usize;
        let node_gid = r.u32s();
        let ghost_owner = r.u32s();
        let element_gid = r.u32s();
        let owned_elements = r.u32s();
        let x = r.f64s();
        let y = r.f64s();
        let flat = r.u32s();
        let elements: Vec<[u32; NODES]> = flat
            .chunks_exact(NODES)
            .map(|c| c.try_into().expect("8 nodes"))
            .collect();
        let flipped = r.u64() as usize;
        let bbox = [r.f64(), r.f64(), r.f64(), r.f64()];
        let nsets = r.u64() as usize;
        let mut node_sets = BTreeMap::new();
        for _ in 0..nsets {
            let name = r.str();
            node_sets.insert(name, r.u32s());
        }
        let halo = Halo::decode(&mut r);
        assert!(r.done(), "trailing bytes in a part");
        Self {
            rank,
            parts,
            global_nodes,
            global_elements,
            owned,
            node_gid,
            ghost_owner,
            element_gid,
            owned_elements,
            mesh: Mesh {
                x,
                y,
                elements,
                flipped,
                node_sets,
                part_of: Some(GlobalFrame { bbox }),
            },
            halo,
        }
    }
}

/// Builds every part of `mesh` under `p` (on the rank that holds the whole
/// mesh).
pub fn build_parts(mesh: &Mesh, p: &Partition) -> Vec<Part> {
    let n = mesh.nodes();
    let k = p.parts;
    let owner = &p.node_owner;
    let bbox = mesh.bbox();
    let (ne_ptr, ne_adj) = quadflow_systems::sparse::node_elements(n, &mesh.elements);
    let mut owned: Vec<Vec<u32>> = vec![Vec::new(); k];
    for (i, &o) in owner.iter().enumerate() {
        owned[o as usize].push(i as u32);
    }
    // local elements and ghosts of every part
    let mut local_elements: Vec<Vec<u32>> = Vec::with_capacity(k);
    let mut ghosts: Vec<Vec<u32>> = Vec::with_capacity(k);
    for (r, own) in owned.iter().enumerate() {
        let mut els: Vec<u32> = own
            .iter()
            .flat_map(|&i| {
                ne_adj[ne_ptr[i as usize] as usize..ne_ptr[i as usize + 1] as usize]
                    .iter()
                    .copied()
            })
            .collect();
        els.sort_unstable();
        els.dedup();
        let mut gh: Vec<u32> = els
            .iter()
            .flat_map(|&e| mesh.elements[e as usize])
            .filter(|&v| owner[v as usize] as usize != r)
            .collect();
        gh.sort_unstable();
        gh.dedup();
        local_elements.push(els);
        ghosts.push(gh);
    }
    let mut local_of = vec![u32::MAX; n];
    let mut parts = Vec::with_capacity(k);
    for r in 0..k {
        let node_gid: Vec<u32> = owned[r].iter().chain(&ghosts[r]).copied().collect();
        for (l, &g) in node_gid.iter().enumerate() {
            local_of[g as usize] = l as u32;
        }
        let ghost_owner: Vec<u32> = ghosts[r].iter().map(|&g| owner[g as usize]).collect();
        let elements: Vec<[u32; NODES]> = local_elements[r]
            .iter()
            .map(|&e| mesh.elements[e as usize].map(|v| local_of[v as usize]))
            .collect();
        let node_sets: BTreeMap<String, Vec<u32>> = mesh
            .node_sets
            .iter()
            .map(|(name, set)| {
                (
                    name.clone(),
                    set.iter()
                        .map(|&v| local_of[v as usize])
                        .filter(|&l| l != u32::MAX)
                        .collect(),
                )
            })
            .collect();
        // halo: from q, my ghosts owned by q; to q, q's ghosts owned by me
        let mut nbrs: BTreeMap<usize, Neighbour> = BTreeMap::new();
        for &g in &ghosts[r] {
            let q = owner[g as usize] as usize;
            nbrs.entry(q)
                .or_insert_with(|| Neighbour {
                    rank: q,
                    send: Vec::new(),
                    recv: Vec::new(),
                })
                .recv
                .push(local_of[g as usize]);
        }
        let mut halo = Halo {
            neighbours: nbrs.into_values().collect(),
        };
        for nb in halo.neighbours.iter_mut() {
            nb.send = ghosts[nb.rank]
                .iter()
                .filter(|&&g| owner[g as usize] as usize == r)
                .map(|&g| local_of[g as usize])
                .collect();
        }
        parts.push(Part {
            rank: r,
            parts: k,
            global_nodes: n,
            global_elements: mesh.elements.len(),
            owned: owned[r].len(),
            ghost_owner,
            owned_elements: local_elements[r]
                .iter()
                .enumerate()
                .filter(|(_, e)| p.element_part[**e as usize] as usize == r)
                .map(|(l, _)| l as u32)
                .collect(),
            element_gid: local_elements[r].clone(),
            mesh: Mesh {
                x: node_gid.iter().map(|&g| mesh.x[g as usize]).collect(),
                y: node_gid.iter().map(|&g| mesh.y[g as usize]).collect(),
                elements,
                flipped: 0,
                node_sets,
                part_of: Some(GlobalFrame { bbox }),
            },
            node_gid,
            halo,
        });
        for &g in &parts[r].node_gid {
            local_of[g as usize] = u32::MAX;
        }
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::comm::ThreadComm;
    use crate::partition::{Method, partition, tests::lattice};

    #[test]
    fn parts_cover_the_mesh_and_halos_match() {
        let m = lattice(9, 4, true);
        for k in [1, 2, 3, 5] {
            let p = partition(&m, k, Method::Rcb).unwrap();
            let parts = build_parts(&m, &p);
            let owned: usize = parts.iter().map(|x| x.owned).sum();
            assert_eq!(owned, m.nodes());
            let mut elements: Vec<u32> = parts
                .iter()
                .flat_map(|x| x.owned_elements.iter().map(|&l| x.element_gid[l as usize]))
                .collect();
            elements.sort_unstable();
            assert_eq!(elements, (0..m.elements.len() as u32).collect::<Vec<_>>());
            for part in &parts {
                // local elements in global order, every element touching an owned node
                assert!(part.element_gid.windows(2).all(|w| w[0] < w[1]));
                for (e, el) in m.elements.iter().enumerate() {
                    let touches = el
                        .iter()
                        .any(|&v| p.node_owner[v as usize] as usize == part.rank);
                    assert_eq!(touches, part.element_gid.contains(&(e as u32)));
                }
                // halo symmetric: my send to q is q's recv from me, by global id
                for nb in &part.halo.neighbours {
                    let other = &parts[nb.rank];
                    let back = other
                        .halo
                        .neighbours
                        .iter()
                        .find(|x| x.rank == part.rank)
                        .unwrap();
                    let sent: Vec<u32> =
                        nb.send.iter().map(|&l| part.node_gid[l as usize]).collect();
                    let got: Vec<u32> = back
                        .recv
                        .iter()
                        .map(|&l| other.node_gid[l as usize])
                        .collect();
                    assert_eq!(sent, got);
                }
                assert_eq!(Part::decode(&part.encode()), *part);
            }
        }
    }

    #[test]
    fn halo_exchange_fills_ghosts_with_owner_values() {
        let m = lattice(8, 3, true);
        let p = partition(&m, 3, Method::Rcb).unwrap();
        let parts = std::sync::Arc::new(build_parts(&m, &p));
        let ok = ThreadComm::run(3, move |c| {
            let part = &parts[c.rank()];
            let mut v: Vec<f64> = (0..part.node_gid.len())
                .map(|l| {
                    if l < part.owned {
                        part.node_gid[l] as f64
                    } else {
                        -1.0
                    }
                })
                .collect();
            let mut ran = false;
            part.halo.exchange(c, &mut v, &mut |_| ran = true);
            let filled = v.iter().zip(&part.node_gid).all(|(&x, &g)| x == g as f64);
            // reverse: every ghost sends 1 to its owner
            let mut w: Vec<f64> = (0..part.node_gid.len())
                .map(|l| if l < part.owned { 0.0 } else { 1.0 })
                .collect();
            part.halo.reverse_add(c, &mut w);
            (
                ran && filled,
                w[..part.owned].iter().sum::<f64>(),
                part.ghosts(),
            )
        });
        assert!(ok.iter().all(|o| o.0));
        let sent: f64 = ok.iter().map(|o| o.1).sum();
        let ghosts: usize = ok.iter().map(|o| o.2).sum();
        assert_eq!(sent as usize, ghosts);
    }
}
