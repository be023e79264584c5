//! [`Comm`] over MPI (rsmpi), feature `mpi`.

use super::Comm;
use mpi::Count;
use mpi::collective::SystemOperation;
use mpi::datatype::{Partition, PartitionMut};
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;

/// A communicator over MPI: `MPI_COMM_WORLD`, or any communicator given.
///
/// MPI runs at the thread level "funneled": only the thread that
/// started it calls it (the pipeline's systems run on the thread that runs
/// the schedule; rayon pools and device threads compute but never
/// communicate). The communicator may be shared with other threads (it is
/// `Send` and `Sync`, so that a backend can hold it), but every operation
/// checks that it is called from the thread that created it.
pub struct MpiComm {
    world: SimpleCommunicator,
    thread: std::thread::ThreadId,
    wait: Wait,
}

/// How a rank waits for a message or a collective.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// MPI's own blocking wait (OpenMPI polls shared memory; with
    /// `mpi_yield_when_idle` it yields the processor between polls, but
    /// stays runnable).
    Mpi,
    /// Polls (`MPI_Test`) for [`SPIN`], then sleeps between polls, from
    /// 10 us doubling up to 200 us: on a machine with more runnable
    /// processes than cores a waiting rank then leaves the runqueue, and
    /// is woken promptly when its turn comes, instead of spending its
    /// share of the processor polling while its partner waits for one.
    Poll,
}

/// How long [`Wait::Poll`] polls before it sleeps.
pub const SPIN: std::time::Duration = std::time::Duration::from_micros(50);

impl Wait {
    /// From `QUADFLOW_MPI_WAIT` (`mpi` or `poll`; default `mpi`: on this
    /// project's loaded 2-core machine `poll` measured within the noise of
    /// `mpi`, see `profiles/mpi/y_tube_2ranks.md`).
    pub fn from_env() -> Result<Self, String> {
        Self::parse(std::env::var("QUADFLOW_MPI_WAIT").ok().as_deref())
    }

    /// The mode a value of `QUADFLOW_MPI_WAIT` names (`None`: unset).
    pub fn parse(v: Option<&str>) -> Result<Self, String> {
        match v {
            None | Some("mpi") => Ok(Wait::Mpi),
            Some("poll") => Ok(Wait::Poll),
            Some(o) => Err(format!("QUADFLOW_MPI_WAIT={o}: expected mpi or poll")),
        }
    }

    /// Completes `req` in this way.
    fn complete<'a, D: ?Sized, S: mpi::request::Scope<'a>>(
        self,
        mut req: mpi::request::Request<'a, D, S>,
    ) {
        if self == Wait::Mpi {
            req.wait();
            return;
        }
        let t0 = std::time::Instant::now();
        let mut nap = std::time::Duration::from_micros(10);
        loop {
            match req.test() {
                Ok(_) => return,
                Err(r) => req = r,
            }
            if t0.elapsed() < SPIN {
                std::hint::spin_loop();
            } else {
                std::thread::sleep(nap);
                nap = (nap * 2).min(std::time::Duration::from_micros(200));
            }
        }
    }
}

// SAFETY: the raw MPI handles inside `SimpleCommunicator` are only used
// from the thread that created the communicator (`MpiComm::at` asserts
// it on every operation), which is what MPI_THREAD_FUNNELED allows.
unsafe impl Send for MpiComm {}
// SAFETY: as above: every use goes through `MpiComm::at`.
unsafe impl Sync for MpiComm {}

impl MpiComm {
    /// Wraps a communicator (e.g. `universe.world()`), to be used from
    /// the calling thread.
    pub fn new(world: SimpleCommunicator) -> Self {
        Self {
            world,
            thread: std::thread::current().id(),
            wait: Wait::Mpi,
        }
    }

    /// This communicator, waiting in the way `wait`.
    pub fn with_wait(mut self, wait: Wait) -> Self {
        self.wait = wait;
        self
    }

    /// Starts MPI for this process ("funneled": MPI is called from this
    /// thread only) and returns `MPI_COMM_WORLD` with the universe, which
    /// finalises MPI when dropped (drop it after the communicator, and
    /// only once every rank is done communicating). Started outside
    /// `mpirun`, the process is a world of one rank. Waits as `QUADFLOW_MPI_WAIT` says ([`Wait::from_env`]).
    pub fn init() -> Result<(Self, mpi::environment::Universe), String> {
        let wait = Wait::from_env()?;
        let (universe, _level) =
            mpi::initialize_with_threading(mpi::Threading::Funneled).ok_or_else(|| {
                "MPI was already started (and perhaps finalised) in this process: one MPI run per process"
                    .to_string()
            })?;
        Ok((Self::new(universe.world()).with_wait(wait), universe))
    }

    fn at(&self) -> &SimpleCommunicator {
        assert_eq!(
            std::thread::current().id(),
            self.thread,
            "MPI is called from the thread that started it only (funneled)"
        );
        &self.world
    }
}

fn counts_displs(lens: impl Iterator<Item = usize>) -> (Vec<Count>, Vec<Count>) {
    let counts: Vec<Count> = lens
        .map(|l| Count::try_from(l).expect("a message under 2 GiB"))
        .collect();
    let mut displs = Vec::with_capacity(counts.len());
    let mut acc: i64 = 0;
    for &c in &counts {
        displs.push(Count::try_from(acc).expect("messages under 2 GiB in all"));
        acc += c as i64;
    }
    (counts, displs)
}

impl Comm for MpiComm {
    fn rank(&self) -> usize {
        self.at().rank() as usize
    }

    fn size(&self) -> usize {
        self.at().size() as usize
    }

    fn allreduce_sum(&self, v: &mut [f64]) {
        let send = v.to_vec();
        if self.wait == Wait::Mpi {
            self.at()
                .all_reduce_into(&send[..], v, SystemOperation::sum());
            return;
        }
        mpi::request::scope(|scope| {
            let r =
                self.at()
                    .immediate_all_reduce_into(scope, &send[..], v, SystemOperation::sum());
            self.wait.complete(r);
        });
    }

    fn allreduce_max(&self, v: &mut [f64]) {
        let send = v.to_vec();
        self.at()
            .all_reduce_into(&send[..], v, SystemOperation::max());
    }

    fn alltoallv(&self, send: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
        let p = self.size();
        assert_eq!(send.len(), p);
        // sizes first, then the data
        let send_lens: Vec<u64> = send.iter().map(|b| b.len() as u64).collect();
        let mut recv_lens = vec![0u64; p];
        self.at()
            .all_to_all_into(&send_lens[..], &mut recv_lens[..]);
        let (sc, sd) = counts_displs(send_lens.iter().map(|&l| l as usize));
        let (rc, rd) = counts_displs(recv_lens.iter().map(|&l| l as usize));
        // one byte more than sent / received on each side: two empty
        // vectors share one dangling address, and MPI refuses a send
        // buffer that is the receive buffer (MPI_ERR_ARG)
        let mut flat: Vec<u8> = send.concat();
        let sent = flat.len();
        flat.push(0);
        let total: usize = recv_lens.iter().map(|&l| l as usize).sum();
        let mut recv = vec![0u8; total + 1];
        {
            let s = Partition::new(&flat[..sent], sc, &sd[..]);
            let mut r = PartitionMut::new(&mut recv[..total], rc, &rd[..]);
            self.at().all_to_all_varcount_into(&s, &mut r);
        }
        let mut out = Vec::with_capacity(p);
        for q in 0..p {
            let a = rd[q] as usize;
            out.push(recv[a..a + recv_lens[q] as usize].to_vec());
        }
        out
    }

    fn broadcast(&self, root: usize, buf: &mut Vec<u8>) {
        let r = self.at().process_at_rank(root as i32);
        let mut len = buf.len() as u64;
        r.broadcast_into(&mut len);
        buf.resize(len as usize, 0);
        r.broadcast_into(&mut buf[..]);
    }

    fn exchange(
        &self,
        send: &[(usize, &[f64])],
        recv: &mut [(usize, &mut [f64])],
        overlap: &mut dyn FnMut(),
    ) {
        const TAG: i32 = 77;
        mpi::request::scope(|scope| {
            let mut reqs = Vec::with_capacity(send.len() + recv.len());
            for (q, buf) in recv.iter_mut() {
                let p = self.at().process_at_rank(*q as i32);
                reqs.push(p.immediate_receive_into_with_tag(scope, &mut buf[..], TAG));
            }
            let mut sreqs = Vec::with_capacity(send.len());
            for (q, v) in send {
                let p = self.at().process_at_rank(*q as i32);
                sreqs.push(p.immediate_send_with_tag(scope, *v, TAG));
            }
            overlap();
            for r in reqs {
                self.wait.complete(r);
            }
            for r in sreqs {
                self.wait.complete(r);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::Wait;

    #[test]
    fn wait_modes_parse_and_a_bad_one_is_named() {
        assert_eq!(Wait::parse(None), Ok(Wait::Mpi));
        assert_eq!(Wait::parse(Some("mpi")), Ok(Wait::Mpi));
        assert_eq!(Wait::parse(Some("poll")), Ok(Wait::Poll));
        let e = Wait::parse(Some("spin")).unwrap_err();
        assert!(
            e.contains("QUADFLOW_MPI_WAIT=spin") && e.contains("mpi or poll"),
            "{e}"
        );
    }
}
