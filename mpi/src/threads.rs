//! A rank's threads: where its share of the distributed solve computes.
//!
//! MPI runs "funneled" (only the thread that started it communicates), so
//! a rank cannot hand its whole solve to a thread pool: the halo
//! exchanges and all-reduces between the row passes must stay on its own
//! thread. [`Threads::run`] runs one piece of local work (a pass of the
//! engine's smoother, a product, a setup step) on the rank's pool with
//! [`Exec::Parallel`] (the engine's block loops over the pool, the same
//! bits as serially) and returns to the rank's thread for the next
//! communication; without a pool the piece runs on the rank's thread with
//! [`Exec::Serial`].

use quadflow_systems::exec::Team;
use quadflow_systems::solver::Exec;
use std::sync::Arc;

/// The threads a rank computes on (see the module documentation): a rayon
/// pool (for what the engine leaves to rayon) and a persistent team of as
/// many threads (the engine's row loops, one fixed block a thread).
#[derive(Clone, Default)]
pub struct Threads {
    pool: Option<(Arc<rayon::ThreadPool>, Arc<Team>)>,
}

impl std::fmt::Debug for Threads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Threads({})", self.count())
    }
}

impl Threads {
    /// The rank's own thread only.
    pub fn serial() -> Self {
        Self { pool: None }
    }

    /// A pool (the parallel backend's, for a rank with `local =
    /// "parallel"`); a pool of one thread is the rank's thread.
    pub fn pool(pool: Arc<rayon::ThreadPool>) -> Self {
        let n = pool.current_num_threads();
        if n <= 1 {
            return Self::serial();
        }
        match Team::new(n, "quadflow-rank-team") {
            Ok(team) => Self::with_team(pool, Arc::new(team)),
            Err(_) => Self::serial(),
        }
    }

    /// A pool and its team (the parallel backend's runtime).
    pub fn with_team(pool: Arc<rayon::ThreadPool>, team: Arc<Team>) -> Self {
        if pool.current_num_threads() <= 1 {
            return Self::serial();
        }
        Self {
            pool: Some((pool, team)),
        }
    }

    /// A pool of this rank's share of its node's cores (the cores over
    /// the ranks the launcher says the node runs: `OMPI_COMM_WORLD_LOCAL_SIZE`,
    /// `MPI_LOCALNRANKS`, `SLURM_NTASKS_PER_NODE`), for the host work of a
    /// rank whose local backend keeps no pool of its own (a GPU rank's AMG
    /// setup and cycle).
    pub fn node_share() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let local = [
            "OMPI_COMM_WORLD_LOCAL_SIZE",
            "MPI_LOCALNRANKS",
            "SLURM_NTASKS_PER_NODE",
        ]
        .iter()
        .find_map(|v| std::env::var(v).ok()?.trim().parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
        let t = (cores / local).max(1);
        match rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .thread_name(|i| format!("quadflow-rank-{i}"))
            .build()
        {
            Ok(p) => Self::pool(Arc::new(p)),
            Err(_) => Self::serial(),
        }
    }

    /// The pool, if any.
    pub fn thread_pool(&self) -> Option<&Arc<rayon::ThreadPool>> {
        self.pool.as_ref().map(|p| &p.0)
    }

    /// Threads computing.
    pub fn count(&self) -> usize {
        self.pool.as_ref().map_or(1, |p| p.0.current_num_threads())
    }

    /// The engine's execution mode of these threads.
    pub fn exec(&self) -> Exec {
        if self.pool.is_some() {
            Exec::Parallel
        } else {
            Exec::Serial
        }
    }

    /// Runs `f` on these threads (see the module documentation); `f` must
    /// not communicate.
    pub fn run<R: Send>(&self, f: impl FnOnce(Exec) -> R + Send) -> R {
        match &self.pool {
            Some((p, t)) => p.install(|| t.install(|| f(Exec::Parallel))),
            None => f(Exec::Serial),
        }
    }

    /// The engine's fused CG kernels on these threads (the parallel
    /// backend's on the pool, the serial ones without).
    pub fn cg_kernels(&self) -> Box<dyn quadflow_systems::solver::CgKernels + Send> {
        match &self.pool {
            Some((_, t)) => Box::new(quadflow_systems::parallel::ParallelKernels::new(t.clone())),
            None => Box::new(quadflow_systems::solver::SerialKernels::default()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_runs_on_the_pool_and_a_one_thread_pool_is_serial() {
        let t = Threads::serial();
        assert_eq!(t.run(|e| e), Exec::Serial);
        let one = Arc::new(
            rayon::ThreadPoolBuilder::new()
                .num_threads(1)
                .build()
                .unwrap(),
        );
        assert_eq!(Threads::pool(one).count(), 1);
        let p = Arc::new(
            rayon::ThreadPoolBuilder::new()
                .num_threads(2)
                .build()
                .unwrap(),
        );
        let t = Threads::pool(p);
        assert_eq!(t.count(), 2);
        let (e, inside) = t.run(|e| (e, rayon::current_thread_index().is_some()));
        assert_eq!(e, Exec::Parallel);
        assert!(inside);
    }
}
