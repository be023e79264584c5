//! Communication: the few operations the distributed solvers need, behind
//! the [`Comm`] trait.
//!
//! - [`SingleRank`]: one process, no messages (always built);
//! - [`ThreadComm`]: `P` ranks as threads of one process, messages over
//!   channels (always built; the unit tests run the distributed algorithms
//!   on 2, 3, ... "ranks" with it, no MPI needed);
//! - `MpiComm` (feature `mpi`): rsmpi over the system's MPI;
//! - [`Timed`]: any of them, with the time spent in each kind of
//!   operation measured.
//!
//! Every operation is collective over the communicator except
//! [`Comm::exchange`], which involves the neighbours named in it (and
//! must be called by every rank at the same point of the program, each
//! naming its own neighbours). Reductions give the same bits on every
//! rank.

#[cfg(feature = "mpi")]
pub mod mpi;
mod timed;

pub use timed::{CommTimes, Timed};

use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};

/// Whether the MPI library in this process is CUDA-aware (can take device
/// pointers), as OpenMPI's `MPIX_Query_cuda_support()` answers at run
/// time; `None` where the process has no such function (no MPI library
/// loaded, or one without OpenMPI's CUDA extension). Looked up with
/// `dlsym`, so that a build against any MPI links.
pub fn mpi_cuda_aware() -> Option<bool> {
    #[cfg(target_os = "linux")]
    {
        use std::ffi::{c_char, c_int, c_void};
        unsafe extern "C" {
            fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
        }
        // RTLD_DEFAULT: every object loaded into the process
        // SAFETY: dlsym with a NUL-terminated name; the symbol, when
        // found, is OpenMPI's `int MPIX_Query_cuda_support(void)`, callable
        // at any time after MPI_Init (and before, where it reads a
        // build-time constant).
        let f = unsafe { dlsym(std::ptr::null_mut(), c"MPIX_Query_cuda_support".as_ptr()) };
        if f.is_null() {
            return None;
        }
        let query = unsafe { std::mem::transmute::<*mut c_void, extern "C" fn() -> c_int>(f) };
        Some(query() != 0)
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// [`mpi_cuda_aware`] in words, for the run summary of a GPU rank's halo.
pub fn halo_path_note() -> &'static str {
    match mpi_cuda_aware() {
        Some(true) => {
            "the MPI library is CUDA-aware, but the halo still goes through host buffers (device pointers are not handed to MPI yet)"
        }
        Some(false) => "the MPI library is not CUDA-aware",
        None => "no CUDA-aware MPI found",
    }
}

/// What the distributed solvers need from a communicator.
pub trait Comm {
    /// This process's rank, `0..size`.
    fn rank(&self) -> usize;
    /// Number of ranks.
    fn size(&self) -> usize;
    /// Element-wise sum over all ranks, in place (a few values: the fused
    /// dot products of one CG step).
    fn allreduce_sum(&self, v: &mut [f64]);
    /// Element-wise maximum over all ranks, in place.
    fn allreduce_max(&self, v: &mut [f64]);
    /// Personalised all-to-all of byte buffers: `send[q]` goes to rank
    /// `q`; returns what each rank sent to this one (setup-time traffic:
    /// parts, matrix rows, coarse contributions).
    fn alltoallv(&self, send: Vec<Vec<u8>>) -> Vec<Vec<u8>>;
    /// Broadcast of `buf` from `root` (resized on the receivers).
    fn broadcast(&self, root: usize, buf: &mut Vec<u8>);
    /// Neighbour exchange of `f64` values with non-blocking messages: posts
    /// a receive for every `(rank, buffer)` of `recv` and a send of every
    /// `(rank, values)` of `send`, runs `overlap` while they are in
    /// flight, then waits for all of them. The receive buffers must have
    /// the sizes the neighbours send. `overlap` may run collectives (an
    /// all-reduce hides the exchange's latency).
    fn exchange(
        &self,
        send: &[(usize, &[f64])],
        recv: &mut [(usize, &mut [f64])],
        overlap: &mut dyn FnMut(),
    );
}

impl<C: Comm + ?Sized> Comm for Box<C> {
    fn rank(&self) -> usize {
        (**self).rank()
    }
    fn size(&self) -> usize {
        (**self).size()
    }
    fn allreduce_sum(&self, v: &mut [f64]) {
        (**self).allreduce_sum(v)
    }
    fn allreduce_max(&self, v: &mut [f64]) {
        (**self).allreduce_max(v)
    }
    fn alltoallv(&self, send: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
        (**self).alltoallv(send)
    }
    fn broadcast(&self, root: usize, buf: &mut Vec<u8>) {
        (**self).broadcast(root, buf)
    }
    fn exchange(
        &self,
        send: &[(usize, &[f64])],
        recv: &mut [(usize, &mut [f64])],
        overlap: &mut dyn FnMut(),
    ) {
        (**self).exchange(send, recv, overlap)
    }
}

/// Gathers one byte buffer per rank onto `root` (rank order); `None` on
/// the other ranks.
pub fn gather(comm: &dyn Comm, root: usize, data: Vec<u8>) -> Option<Vec<Vec<u8>>> {
    let mut send = vec![Vec::new(); comm.size()];
    send[root] = data;
    let got = comm.alltoallv(send);
    (comm.rank() == root).then_some(got)
}

/// Scatters `parts[q]` (given on `root` only) to rank `q`; every rank gets
/// its own.
pub fn scatter(comm: &dyn Comm, root: usize, parts: Option<Vec<Vec<u8>>>) -> Vec<u8> {
    let send = match parts {
        Some(p) => {
            assert_eq!(p.len(), comm.size(), "one part per rank");
            p
        }
        None => vec![Vec::new(); comm.size()],
    };
    let mut got = comm.alltoallv(send);
    std::mem::take(&mut got[root])
}

/// Sum of one `usize` over all ranks (exact below 2^53).
pub fn sum_usize(comm: &dyn Comm, v: usize) -> usize {
    let mut x = [v as f64];
    comm.allreduce_sum(&mut x);
    x[0] as usize
}

/// Maximum of one `f64` over all ranks.
pub fn max_f64(comm: &dyn Comm, v: f64) -> f64 {
    let mut x = [v];
    comm.allreduce_max(&mut x);
    x[0]
}

/// Agrees on an error: every rank passes its own (or `None`); if any rank
/// has one, every rank returns the message of the lowest such rank, so
/// that all ranks stop together with the same message (no rank left
/// waiting in a later collective).
pub fn agree(comm: &dyn Comm, mine: Option<String>) -> Result<(), String> {
    let flag = if mine.is_some() {
        -(comm.rank() as f64)
    } else {
        -(comm.size() as f64)
    };
    let first = -max_f64(comm, flag);
    if first as usize >= comm.size() {
        return Ok(());
    }
    let root = first as usize;
    let mut buf = if comm.rank() == root {
        mine.unwrap_or_default().into_bytes()
    } else {
        Vec::new()
    };
    comm.broadcast(root, &mut buf);
    Err(String::from_utf8_lossy(&buf).into_owned())
}

/// One process: rank 0 of 1. Reductions are the identity, an exchange
/// has no neighbours.
#[derive(Debug, Default, Clone, Copy)]
pub struct SingleRank;

impl Comm for SingleRank {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn allreduce_sum(&self, _v: &mut [f64]) {}
    fn allreduce_max(&self, _v: &mut [f64]) {}
    fn alltoallv(&self, send: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
        assert_eq!(send.len(), 1);
        send
    }
    fn broadcast(&self, root: usize, _buf: &mut Vec<u8>) {
        assert_eq!(root, 0);
    }
    fn exchange(
        &self,
        send: &[(usize, &[f64])],
        recv: &mut [(usize, &mut [f64])],
        overlap: &mut dyn FnMut(),
    ) {
        assert!(
            send.is_empty() && recv.is_empty(),
            "one rank has no neighbours"
        );
        overlap();
    }
}

/// A message between thread ranks.
enum Msg {
    F64(Vec<f64>),
    Bytes(Vec<u8>),
}

/// `P` ranks as threads of one process (for tests and for trying the
/// distributed algorithms without MPI): every pair of ranks has a FIFO
/// channel; collectives send to every rank and combine in rank order, so
/// every rank gets the same bits. Build the ranks with [`ThreadComm::run`].
pub struct ThreadComm {
    rank: usize,
    size: usize,
    /// Channels to every rank: `[collectives, neighbour exchanges]` (two
    /// sets, so that a collective may run while an exchange is in flight,
    /// as MPI allows).
    to: [Vec<Sender<Msg>>; 2],
    /// (behind locks only so that a rank can be shared: every rank's
    /// messages are received by its own thread)
    from: [Vec<Mutex<Receiver<Msg>>>; 2],
}

/// The channel set of collectives and byte transfers.
const COLLECTIVE: usize = 0;
/// The channel set of neighbour exchanges.
const EXCHANGE: usize = 1;

/// One channel from every rank to every rank: `senders[src][dst]`,
/// `receivers[dst][src]`.
#[allow(clippy::type_complexity)]
fn channels(p: usize) -> (Vec<Vec<Sender<Msg>>>, Vec<Vec<Mutex<Receiver<Msg>>>>) {
    let mut senders: Vec<Vec<Sender<Msg>>> = (0..p).map(|_| Vec::new()).collect();
    let mut receivers: Vec<Vec<Option<Receiver<Msg>>>> =
        (0..p).map(|_| (0..p).map(|_| None).collect()).collect();
    for (src, s) in senders.iter_mut().enumerate() {
        for r in receivers.iter_mut() {
            let (tx, rx) = channel();
            s.push(tx);
            r[src] = Some(rx);
        }
    }
    let receivers = receivers
        .into_iter()
        .map(|r| {
            r.into_iter()
                .map(|x| Mutex::new(x.expect("channel")))
                .collect()
        })
        .collect();
    (senders, receivers)
}

impl ThreadComm {
    /// `p` connected ranks, to be moved into threads of their own (or run
    /// with [`ThreadComm::run`]).
    pub fn ranks(p: usize) -> Vec<ThreadComm> {
        assert!(p >= 1);
        let (cs, cr) = channels(p);
        let (xs, xr) = channels(p);
        cs.into_iter()
            .zip(cr)
            .zip(xs.into_iter().zip(xr))
            .enumerate()
            .map(|(rank, ((ct, cf), (xt, xf)))| ThreadComm {
                rank,
                size: p,
                to: [ct, xt],
                from: [cf, xf],
            })
            .collect()
    }

    /// Runs `f` on `p` ranks, one thread each; returns their results in
    /// rank order. A panic on any rank is re-raised.
    pub fn run<R: Send + 'static>(
        p: usize,
        f: impl Fn(&ThreadComm) -> R + Send + Sync + 'static,
    ) -> Vec<R> {
        let comms = Self::ranks(p);
        let f = Arc::new(f);
        let results = Arc::new(Mutex::new((0..p).map(|_| None).collect::<Vec<Option<R>>>()));
        let handles: Vec<_> = comms
            .into_iter()
            .map(|c| {
                let f = f.clone();
                let results = results.clone();
                std::thread::Builder::new()
                    .name(format!("rank {}", c.rank))
                    .stack_size(64 << 20)
                    .spawn(move || {
                        let r = f(&c);
                        results.lock().expect("results")[c.rank] = Some(r);
                    })
                    .expect("spawn rank thread")
            })
            .collect();
        let mut panic = None;
        for h in handles {
            if let Err(e) = h.join() {
                panic.get_or_insert(e);
            }
        }
        if let Some(e) = panic {
            std::panic::resume_unwind(e);
        }
        Arc::try_unwrap(results)
            .ok()
            .expect("threads joined")
            .into_inner()
            .expect("results")
            .into_iter()
            .map(|r| r.expect("every rank returned"))
            .collect()
    }

    fn send(&self, dst: usize, m: Msg) {
        self.send_on(COLLECTIVE, dst, m)
    }

    fn send_on(&self, set: usize, dst: usize, m: Msg) {
        self.to[set][dst].send(m).expect("rank thread alive");
    }

    fn recv_f64(&self, src: usize) -> Vec<f64> {
        self.recv_f64_on(COLLECTIVE, src)
    }

    fn recv_f64_on(&self, set: usize, src: usize) -> Vec<f64> {
        match self.from[set][src]
            .lock()
            .expect("receiver")
            .recv()
            .expect("rank thread alive")
        {
            Msg::F64(v) => v,
            Msg::Bytes(_) => panic!("rank {}: expected numbers from {src}", self.rank),
        }
    }

    fn recv_bytes(&self, src: usize) -> Vec<u8> {
        match self.from[COLLECTIVE][src]
            .lock()
            .expect("receiver")
            .recv()
            .expect("rank thread alive")
        {
            Msg::Bytes(v) => v,
            Msg::F64(_) => panic!("rank {}: expected bytes from {src}", self.rank),
        }
    }

    fn allreduce(&self, v: &mut [f64], op: fn(f64, f64) -> f64) {
        for q in 0..self.size {
            if q != self.rank {
                self.send(q, Msg::F64(v.to_vec()));
            }
        }
        let mine = v.to_vec();
        for q in 0..self.size {
            let part = if q == self.rank {
                mine.clone()
            } else {
                self.recv_f64(q)
            };
            for (k, x) in v.iter_mut().enumerate() {
                *x = if q == 0 { part[k] } else { op(*x, part[k]) };
            }
        }
    }
}

impl Comm for ThreadComm {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn allreduce_sum(&self, v: &mut [f64]) {
        self.allreduce(v, |a, b| a + b);
    }
    fn allreduce_max(&self, v: &mut [f64]) {
        self.allreduce(v, f64::max);
    }
    fn alltoallv(&self, send: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
        assert_eq!(send.len(), self.size);
        let mut own = Vec::new();
        for (q, b) in send.into_iter().enumerate() {
            if q == self.rank {
                own = b;
            } else {
                self.send(q, Msg::Bytes(b));
            }
        }
        (0..self.size)
            .map(|q| {
                if q == self.rank {
                    std::mem::take(&mut own)
                } else {
                    self.recv_bytes(q)
                }
            })
            .collect()
    }
    fn broadcast(&self, root: usize, buf: &mut Vec<u8>) {
        if self.rank == root {
            for q in 0..self.size {
                if q != root {
                    self.send(q, Msg::Bytes(buf.clone()));
                }
            }
        } else {
            *buf = self.recv_bytes(root);
        }
    }
    fn exchange(
        &self,
        send: &[(usize, &[f64])],
        recv: &mut [(usize, &mut [f64])],
        overlap: &mut dyn FnMut(),
    ) {
        for (q, v) in send {
            self.send_on(EXCHANGE, *q, Msg::F64(v.to_vec()));
        }
        overlap();
        for (q, buf) in recv.iter_mut() {
            let v = self.recv_f64_on(EXCHANGE, *q);
            assert_eq!(v.len(), buf.len(), "halo message size from rank {q}");
            buf.copy_from_slice(&v);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cuda_awareness_is_asked_of_the_library_not_guessed() {
        // without the mpi feature no MPI library is linked into the unit
        // tests: the probe finds nothing; with it, OpenMPI answers
        let a = super::mpi_cuda_aware();
        if !cfg!(feature = "mpi") {
            assert_eq!(a, None);
        }
        assert!(!super::halo_path_note().is_empty());
    }

    use super::*;

    #[test]
    fn thread_ranks_reduce_exchange_and_agree() {
        let out = ThreadComm::run(3, |c| {
            let r = c.rank();
            let mut v = [r as f64, 1.0];
            c.allreduce_sum(&mut v);
            let mut m = [r as f64 * 2.0];
            c.allreduce_max(&mut m);
            // ring exchange: send my rank to the next, receive from the previous
            let next = (r + 1) % 3;
            let prev = (r + 2) % 3;
            let mine = [r as f64 + 0.5];
            let mut got = [0.0];
            let mut overlapped = false;
            c.exchange(&[(next, &mine)], &mut [(prev, &mut got)], &mut || {
                overlapped = true
            });
            let g = gather(c, 0, vec![r as u8; r + 1]);
            let s = scatter(
                c,
                1,
                (r == 1).then(|| vec![vec![10], vec![11, 11], vec![12, 12, 12]]),
            );
            let e1 = agree(c, None);
            let e2 = agree(c, (r >= 1).then(|| format!("rank {r} failed")));
            (v, m[0], got[0], overlapped, g, s, e1, e2)
        });
        for (r, (v, m, got, ov, g, s, e1, e2)) in out.into_iter().enumerate() {
            assert_eq!(v, [3.0, 3.0]);
            assert_eq!(m, 4.0);
            assert_eq!(got, ((r + 2) % 3) as f64 + 0.5);
            assert!(ov);
            if r == 0 {
                assert_eq!(g.unwrap(), vec![vec![0], vec![1, 1], vec![2, 2, 2]]);
            } else {
                assert!(g.is_none());
            }
            assert_eq!(s, vec![10 + r as u8; r + 1]);
            assert!(e1.is_ok());
            assert_eq!(e2.unwrap_err(), "rank 1 failed");
        }
    }

    #[test]
    fn single_rank_is_trivial() {
        let c = SingleRank;
        let mut v = [2.0];
        c.allreduce_sum(&mut v);
        assert_eq!(v, [2.0]);
        assert_eq!(scatter(&c, 0, Some(vec![vec![1, 2]])), vec![1, 2]);
        assert!(agree(&c, None).is_ok());
        assert_eq!(agree(&c, Some("x".into())).unwrap_err(), "x");
    }
}
