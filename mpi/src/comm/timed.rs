//! [`Timed`]: a communicator that measures the time spent in it.

use super::Comm;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Seconds spent communicating, by kind, and how many operations of each
/// kind ran (see [`Timed`]).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CommTimes {
    /// All-reductions (sums and maxima): the CG's dot products, agreements.
    pub allreduce_seconds: f64,
    /// All-reductions run.
    pub allreduces: u64,
    /// Neighbour exchanges (halos), without the work overlapped with them:
    /// packing and posting the messages and waiting for them.
    pub halo_seconds: f64,
    /// Neighbour exchanges run.
    pub exchanges: u64,
    /// All-to-all and broadcasts (set-up traffic: parts, matrix rows,
    /// gathers).
    pub other_seconds: f64,
    /// All-to-all and broadcast operations run.
    pub others: u64,
}

impl CommTimes {
    /// All the time spent communicating.
    pub fn total_seconds(&self) -> f64 {
        self.allreduce_seconds + self.halo_seconds + self.other_seconds
    }
}

const ALLREDUCE: usize = 0;
const HALO: usize = 1;
const OTHER: usize = 2;

/// Wraps a communicator and accumulates the wall time spent in each kind
/// of operation. An exchange's overlapped work (its `overlap` closure) is
/// not counted: what is left is the cost the exchange adds.
pub struct Timed<C> {
    inner: C,
    nanos: [AtomicU64; 3],
    counts: [AtomicU64; 3],
}

impl<C: Comm> Timed<C> {
    /// Starts measuring `inner`.
    pub fn new(inner: C) -> Self {
        Self {
            inner,
            nanos: Default::default(),
            counts: Default::default(),
        }
    }

    /// The communicator measured.
    pub fn inner(&self) -> &C {
        &self.inner
    }

    /// What was measured so far.
    pub fn times(&self) -> CommTimes {
        let s = |k: usize| self.nanos[k].load(Ordering::Relaxed) as f64 * 1e-9;
        let c = |k: usize| self.counts[k].load(Ordering::Relaxed);
        CommTimes {
            allreduce_seconds: s(ALLREDUCE),
            allreduces: c(ALLREDUCE),
            halo_seconds: s(HALO),
            exchanges: c(HALO),
            other_seconds: s(OTHER),
            others: c(OTHER),
        }
    }

    fn add(&self, kind: usize, nanos: u128) {
        self.nanos[kind].fetch_add(nanos as u64, Ordering::Relaxed);
        self.counts[kind].fetch_add(1, Ordering::Relaxed);
    }

    fn timed<R>(&self, kind: usize, f: impl FnOnce() -> R) -> R {
        let t = Instant::now();
        let r = f();
        self.add(kind, t.elapsed().as_nanos());
        r
    }
}

impl<C: Comm> Comm for Timed<C> {
    fn rank(&self) -> usize {
        self.inner.rank()
    }
    fn size(&self) -> usize {
        self.inner.size()
    }
    fn allreduce_sum(&self, v: &mut [f64]) {
        self.timed(ALLREDUCE, || self.inner.allreduce_sum(v))
    }
    fn allreduce_max(&self, v: &mut [f64]) {
        self.timed(ALLREDUCE, || self.inner.allreduce_max(v))
    }
    fn alltoallv(&self, send: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
        self.timed(OTHER, || self.inner.alltoallv(send))
    }
    fn broadcast(&self, root: usize, buf: &mut Vec<u8>) {
        self.timed(OTHER, || self.inner.broadcast(root, buf))
    }
    fn exchange(
        &self,
        send: &[(usize, &[f64])],
        recv: &mut [(usize, &mut [f64])],
        overlap: &mut dyn FnMut(),
    ) {
        let t = Instant::now();
        let mut overlapped = 0u128;
        self.inner.exchange(send, recv, &mut || {
            let o = Instant::now();
            overlap();
            overlapped += o.elapsed().as_nanos();
        });
        self.add(HALO, t.elapsed().as_nanos().saturating_sub(overlapped));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::comm::SingleRank;

    #[test]
    fn counts_operations_and_leaves_out_the_overlapped_work() {
        let c = Timed::new(SingleRank);
        let mut v = [1.0];
        c.allreduce_sum(&mut v);
        c.allreduce_max(&mut v);
        c.exchange(&[], &mut [], &mut || {
            std::thread::sleep(std::time::Duration::from_millis(20))
        });
        let _ = c.alltoallv(vec![vec![1]]);
        let t = c.times();
        assert_eq!((t.allreduces, t.exchanges, t.others), (2, 1, 1));
        // the 20 ms of overlapped work are not the exchange's
        assert!(t.halo_seconds < 0.015, "{t:?}");
        assert!(t.total_seconds() >= t.halo_seconds);
    }
}
