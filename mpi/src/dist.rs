//! Distributed sparse matrices: a rank's owned rows with columns in local
//! numbering (owned rows first, then ghost columns), and the halo plan
//! that fills the ghost entries of a vector from their owners.
//!
//! Rows are ordered **interior first**: rows `0..n_interior` have no ghost
//! column, so a product can compute them while the halo messages are in
//! flight and the remaining (boundary) rows after.

use crate::comm::Comm;
use crate::part::{Halo, Neighbour};
use crate::wire::{Reader, Writer};
use quadflow_systems::amg::Csr;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

/// A hasher for integer ids (one multiply per word, as FxHash): the
/// set-ups look ids up millions of times, where the default SipHash costs
/// most of their time; ids are not chosen by an adversary.
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(b as u64);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(SEED);
    }
    fn write_u32(&mut self, v: u32) {
        self.write_u64(v as u64);
    }
    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }
}

/// A map keyed by ids, with [`IdHasher`].
pub type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// One row given by global ids: `(row, [(column, value)])`.
pub type GlobalRow = (u64, Vec<(u64, f64)>);

/// A rank's rows of a distributed square matrix.
#[derive(Debug, Clone)]
pub struct DistMatrix {
    /// Owned rows: `n_owned x (n_owned + ghosts)`, local columns.
    pub a: Csr,
    /// Global id of every owned row (in row order).
    pub gid: Vec<u64>,
    /// Global id of every ghost column (`n_owned + g`).
    pub ghost_gid: Vec<u64>,
    /// Owner of every ghost column.
    pub ghost_owner: Vec<u32>,
    /// Rows `0..n_interior` have no ghost column.
    pub n_interior: usize,
    /// Fills the ghost entries of column-space vectors.
    pub halo: Halo,
    /// Rows of the whole matrix.
    pub global_rows: usize,
}

/// Builds the halo plan of a rank that needs the ghost ids `ghost_gid`
/// (owned by `ghost_owner`, ghost `g` at local index `base + g`) and owns
/// the ids `owned_gid` (at local index `i`): every rank tells each owner
/// which ids it needs (one all-to-all); the owner's send list follows the
/// order asked.
pub fn build_halo(
    comm: &dyn Comm,
    owned_gid: &[u64],
    base: usize,
    ghost_gid: &[u64],
    ghost_owner: &[u32],
) -> Halo {
    let p = comm.size();
    let mut asks: Vec<Vec<u64>> = vec![Vec::new(); p];
    let mut recv: BTreeMap<usize, Vec<u32>> = BTreeMap::new();
    for (g, (&id, &o)) in ghost_gid.iter().zip(ghost_owner).enumerate() {
        asks[o as usize].push(id);
        recv.entry(o as usize).or_default().push((base + g) as u32);
    }
    let send = asks
        .iter()
        .map(|a| {
            let mut w = Writer::new();
            w.u64s(a);
            w.finish()
        })
        .collect();
    let got = comm.alltoallv(send);
    let local: IdMap<u64, u32> = owned_gid
        .iter()
        .enumerate()
        .map(|(i, &g)| (g, i as u32))
        .collect();
    let mut nbrs: BTreeMap<usize, Neighbour> = BTreeMap::new();
    for (q, buf) in got.iter().enumerate() {
        let ids = Reader::new(buf).u64s();
        if ids.is_empty() {
            continue;
        }
        assert_ne!(q, comm.rank(), "a rank never asks itself");
        let send: Vec<u32> = ids
            .iter()
            .map(|g| *local.get(g).expect("asked for an id this rank owns"))
            .collect();
        nbrs.insert(
            q,
            Neighbour {
                rank: q,
                send,
                recv: Vec::new(),
            },
        );
    }
    for (q, r) in recv {
        nbrs.entry(q)
            .or_insert_with(|| Neighbour {
                rank: q,
                send: Vec::new(),
                recv: Vec::new(),
            })
            .recv = r;
    }
    Halo {
        neighbours: nbrs.into_values().collect(),
    }
}

impl DistMatrix {
    /// Builds a rank's part from its rows given by global ids (every rank
    /// calls it: it builds the halo collectively). `owner_of` names the
    /// owner of any global id that is not one of these rows. Rows are
    /// reordered interior first (each group keeping the given order);
    /// ghosts are numbered by owner, then global id. Returns the matrix
    /// and, for each of its rows, the position of that row in `rows`.
    pub fn from_rows(
        comm: &dyn Comm,
        rows: Vec<GlobalRow>,
        global_rows: usize,
        owner_of: impl Fn(u64) -> usize,
    ) -> (Self, Vec<u32>) {
        let mut own: IdMap<u64, u32> =
            IdMap::with_capacity_and_hasher(rows.len(), Default::default());
        for (i, (g, _)) in rows.iter().enumerate() {
            own.insert(*g, i as u32);
        }
        let interior: Vec<bool> = rows
            .iter()
            .map(|r| r.1.iter().all(|(j, _)| own.contains_key(j)))
            .collect();
        let mut order: Vec<u32> = (0..rows.len() as u32)
            .filter(|&i| interior[i as usize])
            .collect();
        let n_interior = order.len();
        order.extend((0..rows.len() as u32).filter(|&i| !interior[i as usize]));
        let n = rows.len();
        let mut local_row = vec![0u32; n];
        for (new, &old) in order.iter().enumerate() {
            local_row[old as usize] = new as u32;
        }
        // ghosts by (owner, id)
        let mut ghosts: Vec<(u32, u64)> = rows
            .iter()
            .flat_map(|r| r.1.iter().map(|(j, _)| *j))
            .filter(|j| !own.contains_key(j))
            .map(|j| (owner_of(j) as u32, j))
            .collect();
        ghosts.sort_unstable();
        ghosts.dedup();
        let ghost_index: IdMap<u64, u32> = ghosts
            .iter()
            .enumerate()
            .map(|(g, &(_, j))| (j, (n + g) as u32))
            .collect();
        let col_of = |j: u64| match own.get(&j) {
            Some(&i) => local_row[i as usize],
            None => ghost_index[&j],
        };
        let mut rowptr = Vec::with_capacity(n + 1);
        rowptr.push(0usize);
        let mut col = Vec::new();
        let mut val = Vec::new();
        for &old in &order {
            for &(j, v) in &rows[old as usize].1 {
                col.push(col_of(j));
                val.push(v);
            }
            rowptr.push(col.len());
        }
        let gid: Vec<u64> = order.iter().map(|&o| rows[o as usize].0).collect();
        let ghost_gid: Vec<u64> = ghosts.iter().map(|g| g.1).collect();
        let ghost_owner: Vec<u32> = ghosts.iter().map(|g| g.0).collect();
        let halo = build_halo(comm, &gid, n, &ghost_gid, &ghost_owner);
        let a = Csr::new(n, n + ghosts.len(), rowptr, col, val);
        (
            Self {
                a,
                gid,
                ghost_gid,
                ghost_owner,
                n_interior,
                halo,
                global_rows,
            },
            order,
        )
    }

    /// Owned rows.
    pub fn n_owned(&self) -> usize {
        self.a.nrows()
    }

    /// Owned rows plus ghost columns (the length of column-space vectors).
    pub fn n_cols(&self) -> usize {
        self.a.ncols()
    }

    /// `y = A x` on the owned rows; `x` has `n_cols` entries, its ghost
    /// entries are filled here (overlapped with the interior rows).
    pub fn spmv(&self, comm: &dyn Comm, x: &mut [f64], y: &mut [f64]) {
        let ni = self.n_interior;
        let (yi, yb) = y.split_at_mut(ni);
        self.halo.exchange(comm, x, &mut |xr| {
            for (i, yv) in yi.iter_mut().enumerate() {
                *yv = row_dot(&self.a, i, xr);
            }
        });
        for (k, yv) in yb.iter_mut().enumerate() {
            *yv = row_dot(&self.a, ni + k, x);
        }
    }
}

/// `(A x)_i`.
#[inline]
pub fn row_dot(a: &Csr, i: usize, x: &[f64]) -> f64 {
    let (c, v) = a.row(i);
    let mut acc = 0.0;
    for (&j, &x_j) in c.iter().zip(v) {
        acc += x_j * x[j as usize];
    }
    acc
}

/// Offsets of a distributed numbering: rank `q` owns ids
/// `offsets[q]..offsets[q + 1]` (from every rank's count).
pub fn offsets(comm: &dyn Comm, count: usize) -> Vec<u64> {
    let p = comm.size();
    let mut v = vec![0.0; p];
    v[comm.rank()] = count as f64;
    comm.allreduce_sum(&mut v);
    let mut o = Vec::with_capacity(p + 1);
    o.push(0u64);
    for c in v {
        o.push(o.last().expect("non-empty") + c as u64);
    }
    o
}

/// The owner of id `g` under `offsets`.
pub fn owner_in(offsets: &[u64], g: u64) -> usize {
    offsets.partition_point(|&o| o <= g) - 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::comm::ThreadComm;

    /// 1D Laplacian of `n` rows split in contiguous blocks.
    fn lap_rows(rank: usize, p: usize, n: usize) -> Vec<GlobalRow> {
        let (s, e) = (rank * n / p, (rank + 1) * n / p);
        (s..e)
            .map(|i| {
                let mut r = vec![(i as u64, 2.0)];
                if i > 0 {
                    r.push((i as u64 - 1, -1.0));
                }
                if i + 1 < n {
                    r.push((i as u64 + 1, -1.0));
                }
                (i as u64, r)
            })
            .collect()
    }

    #[test]
    fn distributed_product_equals_global_product() {
        let n = 50;
        for p in [1, 2, 3, 4] {
            let out = ThreadComm::run(p, move |c| {
                let rows = lap_rows(c.rank(), c.size(), n);
                let counts = rows.len();
                let off = offsets(c, counts);
                let (m, _) = DistMatrix::from_rows(c, rows, n, |g| owner_in(&off, g));
                let mut x: Vec<f64> = (0..m.n_cols())
                    .map(|l| {
                        if l < m.n_owned() {
                            (m.gid[l] as f64).powi(2)
                        } else {
                            f64::NAN
                        }
                    })
                    .collect();
                let mut y = vec![0.0; m.n_owned()];
                m.spmv(c, &mut x, &mut y);
                m.gid.iter().copied().zip(y).collect::<Vec<_>>()
            });
            let mut all: Vec<(u64, f64)> = out.into_iter().flatten().collect();
            all.sort_by_key(|a| a.0);
            assert_eq!(all.len(), n);
            for (i, (g, v)) in all.into_iter().enumerate() {
                assert_eq!(g as usize, i);
                let x = |k: i64| {
                    if k < 0 || k >= n as i64 {
                        0.0
                    } else {
                        (k * k) as f64
                    }
                };
                let k = i as i64;
                assert_eq!(v, 2.0 * x(k) - x(k - 1) - x(k + 1), "p {p} row {i}");
            }
        }
    }
}
