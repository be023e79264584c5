//! What the distributed solvers share: global ids of rows (rank `q` owns
//! the ids `offsets[q]..offsets[q + 1]`), halo plans built from the ids a
//! rank needs, a hasher for ids.

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

/// The halo plan of a rank owning the global ids `lo..lo + n` (local
/// `0..n`) whose ghosts `ghost_gid` (local `n + k`) are owned by
/// `ghost_owner`: every rank tells each owner which ids it needs (one
/// all-to-all); an owner's send list follows the order asked.
pub fn range_halo(
    comm: &dyn Comm,
    lo: u64,
    n: usize,
    ghost_gid: &[u64],
    ghost_owner: &[u32],
) -> Halo {
    let p = comm.size();
    let mut asks: Vec<Vec<u64>> = vec![Vec::new(); p];
    let mut recv: BTreeMap<usize, Vec<u32>> = BTreeMap::new();
    for (k, (&id, &o)) in ghost_gid.iter().zip(ghost_owner).enumerate() {
        asks[o as usize].push(id);
        recv.entry(o as usize).or_default().push((n + k) as u32);
    }
    let got = comm.alltoallv(
        asks.iter()
            .map(|a| {
                let mut w = Writer::new();
                w.u64s(a);
                w.finish()
            })
            .collect(),
    );
    let mut nbrs: BTreeMap<usize, Neighbour> = BTreeMap::new();
    for (q, buf) in got.iter().enumerate() {
        let ids = Reader::new(buf).u64s();
        if ids.is_empty() {
            continue;
        }
        let send = ids
            .iter()
            .map(|&g| {
                assert!(
                    g >= lo && g < lo + n as u64,
                    "asked for an id this rank owns"
                );
                (g - lo) as u32
            })
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

    /// A 1D Laplacian of `n` rows split in contiguous blocks, ghosts
    /// numbered after the rank's rows: `A x` with the ghosts fetched
    /// through [`range_halo`] is the global product.
    #[test]
    fn distributed_product_equals_global_product() {
        let n = 50;
        for p in [1, 2, 3, 4] {
            let out = ThreadComm::run(p, move |c| {
                let (s, e) = (c.rank() * n / p, (c.rank() + 1) * n / p);
                let off = offsets(c, e - s);
                assert_eq!(off[c.rank()], s as u64);
                let mut ghosts: Vec<u64> = Vec::new();
                if s > 0 {
                    ghosts.push(s as u64 - 1);
                }
                if e < n {
                    ghosts.push(e as u64);
                }
                let owners: Vec<u32> = ghosts.iter().map(|&g| owner_in(&off, g) as u32).collect();
                let halo = range_halo(c, s as u64, e - s, &ghosts, &owners);
                let m = e - s;
                let col = |g: usize| -> u32 {
                    if g >= s && g < e {
                        (g - s) as u32
                    } else {
                        (m + ghosts.iter().position(|&x| x == g as u64).unwrap()) as u32
                    }
                };
                let mut rp = vec![0usize];
                let (mut cols, mut vals) = (Vec::new(), Vec::new());
                for i in s..e {
                    cols.push(col(i));
                    vals.push(2.0);
                    if i > 0 {
                        cols.push(col(i - 1));
                        vals.push(-1.0);
                    }
                    if i + 1 < n {
                        cols.push(col(i + 1));
                        vals.push(-1.0);
                    }
                    rp.push(cols.len());
                }
                let a = Csr::new(m, m + ghosts.len(), rp, cols, vals);
                let mut x: Vec<f64> = (0..a.ncols())
                    .map(|l| {
                        if l < m {
                            ((s + l) as f64).powi(2)
                        } else {
                            f64::NAN
                        }
                    })
                    .collect();
                halo.exchange(c, &mut x, &mut |_| {});
                (s..e)
                    .map(|i| (i, row_dot(&a, i - s, &x)))
                    .collect::<Vec<_>>()
            });
            let all: Vec<(usize, f64)> = out.into_iter().flatten().collect();
            assert_eq!(all.len(), n);
            for (i, v) in all {
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
