//! Recursive coordinate bisection of element centroids held in blocks by
//! the ranks: the same partition as [`crate::partition::rcb`] on the whole
//! mesh, computed without gathering it.
//!
//! The elements stay where they are; every rank tracks which *segment*
//! (a set of elements going to parts `first..first + k`) each of its
//! elements is in, and all segments of one level of the recursion are
//! cut together, in a few rounds of small all-reductions:
//!
//! 1. every segment's bounding box (one all-reduce of four numbers per
//!    segment) gives its cutting axis, the longer extent (x on ties), as
//!    the serial bisection chooses it;
//! 2. the cut must leave exactly `c = n floor(k / 2) / k` of its `n`
//!    elements on the low side, ordered by `(coordinate, element index)`
//!    as the serial `select_nth_unstable_by` orders them. The `c`-th
//!    smallest key is found by a distributed selection: a histogram of
//!    [`BINS`] bins over the candidates' value range (one all-reduce of
//!    the counts and of the range per segment) narrows the candidates to
//!    one bin per round, until at most [`GATHER`] are left, which every
//!    rank then receives and sorts; where many candidates share one
//!    coordinate value (the elements of one column of a structured mesh)
//!    the histogram continues on their element indices;
//! 3. every element below the pivot key goes to the low half.
//!
//! A level costs one all-reduce for the boxes, about `log(n) /
//! log(BINS)` histogram rounds and one all-to-all of at most [`GATHER`]
//! keys per segment; `ceil(log2 k)` levels in all.

use crate::comm::Comm;

/// Histogram bins per selection round.
pub const BINS: usize = 512;

/// Candidates gathered to every rank to finish a selection.
pub const GATHER: u64 = 2048;

/// A set of elements bound for parts `first..first + k`.
#[derive(Debug, Clone, Copy)]
struct Segment {
    first: u32,
    k: u32,
    count: u64,
}

/// The sort key of an element in a segment: its coordinate on the
/// segment's axis, then its index in the whole mesh.
type Key = (f64, u64);

fn less(a: Key, b: Key) -> bool {
    a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).is_lt()
}

/// The part of every element of this rank's block (`cx`, `cy`: centroids
/// of elements `first..first + cx.len()` of the whole mesh), into `k`
/// parts (collective; `1 <= k <=` the whole mesh's elements).
pub fn rcb(comm: &dyn Comm, first: usize, cx: &[f64], cy: &[f64], k: usize) -> Vec<u32> {
    let n_local = cx.len();
    let total = crate::comm::sum_usize(comm, n_local) as u64;
    let gid = |i: usize| (first + i) as u64;
    let mut segs = vec![Segment {
        first: 0,
        k: k as u32,
        count: total,
    }];
    let mut seg_of = vec![0u32; n_local];
    loop {
        let active: Vec<usize> = (0..segs.len())
            .filter(|&s| segs[s].k > 1 && segs[s].count > 1)
            .collect();
        if active.is_empty() {
            break;
        }
        let slot = |s: u32| active.binary_search(&(s as usize)).ok();
        // 1. boxes and axes
        let mut bx = vec![f64::NEG_INFINITY; 4 * active.len()];
        for i in 0..n_local {
            if let Some(a) = slot(seg_of[i]) {
                let b = &mut bx[4 * a..4 * a + 4];
                b[0] = b[0].max(-cx[i]);
                b[1] = b[1].max(cx[i]);
                b[2] = b[2].max(-cy[i]);
                b[3] = b[3].max(cy[i]);
            }
        }
        comm.allreduce_max(&mut bx);
        let on_x: Vec<bool> = (0..active.len())
            .map(|a| bx[4 * a + 1] + bx[4 * a] >= bx[4 * a + 3] + bx[4 * a + 2])
            .collect();
        let key = |i: usize, a: usize| (if on_x[a] { cx[i] } else { cy[i] }, gid(i));
        // 2. the pivot of every active segment
        let cuts: Vec<u64> = active
            .iter()
            .map(|&s| segs[s].count * (segs[s].k / 2) as u64 / segs[s].k as u64)
            .collect();
        let pivots = select(comm, n_local, &active, &seg_of, &cuts, &key);
        // 3. split
        let mut next: Vec<Segment> = Vec::with_capacity(2 * segs.len());
        let mut map = vec![(0u32, 0u32); segs.len()];
        for (s, seg) in segs.iter().enumerate() {
            match active.binary_search(&s) {
                Ok(a) => {
                    let k1 = seg.k / 2;
                    map[s] = (next.len() as u32, next.len() as u32 + 1);
                    next.push(Segment {
                        first: seg.first,
                        k: k1,
                        count: cuts[a],
                    });
                    next.push(Segment {
                        first: seg.first + k1,
                        k: seg.k - k1,
                        count: seg.count - cuts[a],
                    });
                }
                Err(_) => {
                    map[s] = (next.len() as u32, next.len() as u32);
                    next.push(*seg);
                }
            }
        }
        for i in 0..n_local {
            let s = seg_of[i] as usize;
            seg_of[i] = match active.binary_search(&s) {
                Ok(a) if less(key(i, a), pivots[a]) => map[s].0,
                _ => map[s].1,
            };
        }
        segs = next;
    }
    seg_of.iter().map(|&s| segs[s as usize].first).collect()
}

/// Where a segment's selection stands: the candidates are the elements
/// of the segment whose key lies in `lo..=hi` (value stage: `lo.0 ..=
/// hi.0` on the coordinate; id stage: coordinate `lo.0` and index in
/// `lo.1..=hi.1`), `below` elements of the segment lie below them.
#[derive(Debug, Clone, Copy)]
struct Window {
    lo: Key,
    hi: Key,
    /// the id stage: every candidate has coordinate `lo.0`
    ids: bool,
    below: u64,
    candidates: u64,
    done: Option<Key>,
}

impl Window {
    fn holds(&self, k: Key) -> bool {
        if self.ids {
            k.0 == self.lo.0 && k.1 >= self.lo.1 && k.1 <= self.hi.1
        } else {
            k.0 >= self.lo.0 && k.0 <= self.hi.0
        }
    }
}

/// The `cuts[a]`-th smallest key (0-based) of every active segment `a`.
fn select(
    comm: &dyn Comm,
    n_local: usize,
    active: &[usize],
    seg_of: &[u32],
    cuts: &[u64],
    key: &dyn Fn(usize, usize) -> Key,
) -> Vec<Key> {
    let na = active.len();
    let slot = |i: usize| active.binary_search(&(seg_of[i] as usize)).ok();
    let mut win: Vec<Window> = (0..na)
        .map(|_| Window {
            lo: (f64::NEG_INFINITY, 0),
            hi: (f64::INFINITY, u64::MAX),
            ids: false,
            below: 0,
            candidates: u64::MAX,
            done: None,
        })
        .collect();
    loop {
        // the candidates' range (value or index) and count per segment
        let mut range = vec![f64::NEG_INFINITY; 3 * na];
        for i in 0..n_local {
            if let Some(a) = slot(i) {
                let k = key(i, a);
                if win[a].done.is_none() && win[a].holds(k) {
                    let v = if win[a].ids { k.1 as f64 } else { k.0 };
                    range[3 * a] = range[3 * a].max(-v);
                    range[3 * a + 1] = range[3 * a + 1].max(v);
                }
            }
        }
        comm.allreduce_max(&mut range);
        let mut count = vec![0.0; na];
        for i in 0..n_local {
            if let Some(a) = slot(i)
                && win[a].done.is_none()
                && win[a].holds(key(i, a))
            {
                count[a] += 1.0;
            }
        }
        comm.allreduce_sum(&mut count);
        for a in 0..na {
            let w = &mut win[a];
            if w.done.is_some() {
                continue;
            }
            w.candidates = count[a] as u64;
            let (lo, hi) = (-range[3 * a], range[3 * a + 1]);
            if w.ids {
                w.lo.1 = lo as u64;
                w.hi.1 = hi as u64;
            } else {
                w.lo.0 = lo;
                w.hi.0 = hi;
                if lo == hi {
                    // one coordinate value left: continue on the indices
                    w.ids = true;
                    w.lo.1 = 0;
                    w.hi.1 = u64::MAX;
                    w.candidates = u64::MAX;
                }
            }
        }
        // segments needing the index range first go round once more
        if win
            .iter()
            .any(|w| w.done.is_none() && w.candidates == u64::MAX)
        {
            continue;
        }
        // small enough: gather the candidates and sort
        let small: Vec<usize> = (0..na)
            .filter(|&a| win[a].done.is_none() && win[a].candidates <= GATHER)
            .collect();
        if !small.is_empty() {
            finish(comm, n_local, &small, &slot, key, cuts, &mut win);
        }
        let open: Vec<usize> = (0..na).filter(|&a| win[a].done.is_none()).collect();
        if open.is_empty() {
            break;
        }
        // a histogram round on the others
        let edges: Vec<Vec<f64>> = open
            .iter()
            .map(|&a| {
                let w = &win[a];
                let (lo, hi) = if w.ids {
                    (w.lo.1 as f64, w.hi.1 as f64)
                } else {
                    (w.lo.0, w.hi.0)
                };
                let mut e: Vec<f64> = (0..BINS)
                    .map(|j| lo + (hi - lo) * j as f64 / BINS as f64)
                    .collect();
                for v in e.iter_mut() {
                    // integer edges, so that bins split indices exactly
                    *v = if w.ids { v.floor() } else { *v }.min(hi);
                }
                // a range too narrow for the bins (its ends adjacent
                // numbers): the last bin still splits off its top value
                if e[BINS - 1] <= lo {
                    e[BINS - 1] = hi;
                }
                e
            })
            .collect();
        let mut hist = vec![0.0; open.len() * BINS];
        for i in 0..n_local {
            let Some(a) = slot(i) else { continue };
            let Ok(o) = open.binary_search(&a) else {
                continue;
            };
            let k = key(i, a);
            if !win[a].holds(k) {
                continue;
            }
            let v = if win[a].ids { k.1 as f64 } else { k.0 };
            let b = edges[o].partition_point(|&e| e <= v) - 1;
            hist[o * BINS + b] += 1.0;
        }
        comm.allreduce_sum(&mut hist);
        for (o, &a) in open.iter().enumerate() {
            let w = &mut win[a];
            let h = &hist[o * BINS..(o + 1) * BINS];
            let mut below = w.below;
            let target = cuts[a];
            let mut b = 0;
            while below + h[b] as u64 <= target {
                below += h[b] as u64;
                b += 1;
            }
            // bin b holds the target: [edge b, edge b+1) (the last bin up to hi)
            let (lo, hi_open) = (edges[o][b], edges[o].get(b + 1).copied());
            w.below = below;
            if w.ids {
                w.lo.1 = lo as u64;
                if let Some(h) = hi_open {
                    w.hi.1 = (h as u64).saturating_sub(1).max(w.lo.1);
                }
            } else {
                w.lo.0 = lo;
                if let Some(h) = hi_open {
                    // values below the next edge: up to its predecessor
                    w.hi.0 = h.next_down().max(lo);
                }
            }
        }
    }
    win.iter().map(|w| w.done.expect("selected")).collect()
}

/// Sends every candidate of the segments `small` to every rank; each
/// sorts them and takes the pivot.
fn finish(
    comm: &dyn Comm,
    n_local: usize,
    small: &[usize],
    slot: &dyn Fn(usize) -> Option<usize>,
    key: &dyn Fn(usize, usize) -> Key,
    cuts: &[u64],
    win: &mut [Window],
) {
    let mut mine = crate::wire::Writer::new();
    let mut keys: Vec<(u32, f64, u64)> = Vec::new();
    for i in 0..n_local {
        if let Some(a) = slot(i)
            && small.binary_search(&a).is_ok()
            && win[a].holds(key(i, a))
        {
            let k = key(i, a);
            keys.push((a as u32, k.0, k.1));
        }
    }
    mine.u32s(&keys.iter().map(|k| k.0).collect::<Vec<_>>())
        .f64s(&keys.iter().map(|k| k.1).collect::<Vec<_>>())
        .u64s(&keys.iter().map(|k| k.2).collect::<Vec<_>>());
    let buf = mine.finish();
    let got = comm.alltoallv(vec![buf; comm.size()]);
    let mut all: Vec<Vec<Key>> = vec![Vec::new(); win.len()];
    for b in got {
        let mut r = crate::wire::Reader::new(&b);
        let (s, v, g) = (r.u32s(), r.f64s(), r.u64s());
        for j in 0..s.len() {
            all[s[j] as usize].push((v[j], g[j]));
        }
    }
    for &a in small {
        let list = &mut all[a];
        list.sort_unstable_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
        let at = (cuts[a] - win[a].below) as usize;
        win[a].done = Some(list[at]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::comm::ThreadComm;
    use crate::partition::tests::lattice;
    use crate::slice::block;
    use std::sync::Arc;

    /// The distributed bisection gives the serial one's parts, on meshes
    /// with many equal centroid coordinates (columns and rows of a
    /// lattice) and with shuffled element order.
    #[test]
    fn same_parts_as_the_serial_bisection() {
        for (nx, ny, shuffle) in [(40, 7, false), (13, 29, true), (3, 2, false)] {
            let m = Arc::new(lattice(nx, ny, shuffle));
            let (cx, cy): (Vec<f64>, Vec<f64>) = m
                .elements
                .iter()
                .map(|el| {
                    (
                        (0..4).map(|k| m.x[el[k] as usize]).sum::<f64>() / 4.0,
                        (0..4).map(|k| m.y[el[k] as usize]).sum::<f64>() / 4.0,
                    )
                })
                .unzip();
            let (cx, cy) = (Arc::new(cx), Arc::new(cy));
            let ne = m.elements.len();
            for p in [1, 2, 3, 4] {
                for k in [1, 2, 3, 5, 6].into_iter().filter(|&k| k <= ne) {
                    let serial = crate::partition::rcb(&m, k);
                    let (cx, cy) = (cx.clone(), cy.clone());
                    let got = ThreadComm::run(p, move |c| {
                        let b = block(ne, c.size(), c.rank());
                        rcb(c, b.start, &cx[b.clone()], &cy[b], k)
                    });
                    assert_eq!(got.concat(), serial, "{nx}x{ny} P={p} k={k}");
                }
            }
        }
    }

    /// Few histogram rounds even when one column holds many elements
    /// (the index stage), and a small gather threshold forces them.
    #[test]
    fn ties_on_one_coordinate_are_broken_by_index() {
        // 5000 elements on two x values: a cut inside the first
        let n = 5000;
        let cx: Arc<Vec<f64>> =
            Arc::new((0..n).map(|i| if i % 3 == 0 { 1.0 } else { 0.5 }).collect());
        let cy: Arc<Vec<f64>> = Arc::new(vec![0.0; n]);
        for p in [1, 3] {
            let (x, y) = (cx.clone(), cy.clone());
            let got = ThreadComm::run(p, move |c| {
                let b = block(n, c.size(), c.rank());
                rcb(c, b.start, &x[b.clone()], &y[b], 2)
            })
            .concat();
            // the low half: the 2500 smallest (x, index)
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by(|&a, &b| cx[a].total_cmp(&cx[b]).then(a.cmp(&b)));
            for (rank, &e) in order.iter().enumerate() {
                assert_eq!(got[e], (rank >= n / 2) as u32, "element {e}");
            }
        }
    }
}
