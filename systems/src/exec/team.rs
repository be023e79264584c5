//! A persistent team of threads with fixed member numbers: the shape of
//! MPI ranks (or of an OpenMP parallel region with static schedules) for
//! the row loops of the solvers.
//!
//! [`Team::run`] runs `f(t)` once on every member `t` and returns when all
//! are done. Member 0 is the calling thread; the others are threads the
//! team owns, started once and kept for its life, so member `t` is always
//! the same thread. Loops that give member `t` the same rows on every call
//! (as [`Team::part`] does) keep each row block on one thread from one pass
//! to the next, as each MPI rank keeps its rows: its slice of the vectors
//! stays in that core's caches and its pages where that thread first
//! touched them. rayon's work stealing gives no such guarantee (a block may
//! run on any worker from one pass to the next), and each of its parallel
//! calls is a fork-join through the pool's queues.
//!
//! A call costs one store that the waiting members see (they spin on it
//! for [`SPIN`], then yield the core until [`YIELD`], then sleep on a
//! condition variable until woken) and one counter the caller waits on:
//! about a microsecond between passes that run milliseconds.
//!
//! A job has `parts` parts (at most the team's size), part `p` meant for
//! member `p`. Each part is claimed before it runs: its member claims it
//! when it sees the job; the caller, once its own part is done, claims and
//! runs any part whose member has not started it yet (a member still
//! waking up from sleep, or descheduled on a machine with more runnable
//! threads than cores), so a job never waits on a thread that is not
//! running. On an idle machine every member claims its own part first, and
//! the schedule stays static. Results must therefore depend on the part,
//! never on the thread that runs it. A job must not wait on another part
//! (no barrier inside a job). The team runs its jobs one at a time: a job
//! started from inside a job, or from a second thread while one runs, runs
//! its parts one after another on the calling thread instead (same
//! results, no parallelism).
//!
//! A panic in any member is carried to the caller of [`Team::run`] after
//! every member has finished (the job borrows the caller's stack, so the
//! caller cannot unwind before).

use std::any::Any;
use std::cell::Cell;
use std::ops::Range;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long an idle member spins on the next job before yielding its core.
pub const SPIN: Duration = Duration::from_micros(50);
/// How long an idle member yields its core (`sched_yield`) before sleeping.
pub const YIELD: Duration = Duration::from_millis(2);

type Job<'a> = &'a (dyn Fn(usize) + Sync);

/// A value alone on its cache lines (no false sharing with its neighbours).
#[repr(align(128))]
struct Padded<T>(T);

struct Shared {
    size: usize,
    /// The current job's number (bumped by the caller to start one) times
    /// 2^16, plus its number of parts.
    epoch: Padded<AtomicU64>,
    /// Parts of the current job finished.
    done: Padded<AtomicUsize>,
    /// Per part, the number of the last job in which it was claimed.
    claimed: Vec<Padded<AtomicU64>>,
    /// The current job (a reference on the caller's stack).
    job: AtomicPtr<Job<'static>>,
    panic: Mutex<Option<Box<dyn Any + Send>>>,
    shutdown: AtomicBool,
    sleeping: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
}

/// A persistent team of threads (see the module documentation).
pub struct Team {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    busy: AtomicBool,
}

impl std::fmt::Debug for Team {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Team").field("size", &self.size()).finish()
    }
}

thread_local! {
    /// The team [`Team::install`] made current on this thread.
    static CURRENT: Cell<*const Team> = const { Cell::new(std::ptr::null()) };
    /// Whether this thread runs a member's part of a job.
    static IN_JOB: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` marked as inside a job (restored on unwind too).
fn as_member<R>(f: impl FnOnce() -> R) -> R {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            IN_JOB.with(|c| c.set(self.0));
        }
    }
    let _reset = Reset(IN_JOB.with(|c| c.replace(true)));
    f()
}

/// Whether the calling thread runs a member's part of a team job.
pub fn in_job() -> bool {
    IN_JOB.with(|c| c.get())
}

/// The team installed on this thread ([`Team::install`]), unless the
/// thread is inside a job (loops there run on the thread alone).
pub fn with_current<R>(f: impl FnOnce(Option<&Team>) -> R) -> R {
    let p = CURRENT.with(|c| c.get());
    if p.is_null() || in_job() {
        f(None)
    } else {
        // SAFETY: `install` sets the pointer for the extent of a borrow of
        // the team and restores the previous value before it ends.
        f(Some(unsafe { &*p }))
    }
}

impl Team {
    /// A team of `size` members (at least 1): the caller of each
    /// [`Team::run`] and `size - 1` threads started now, named
    /// `{name}-{t}`. Errors if a thread cannot be started.
    pub fn new(size: usize, name: &str) -> std::io::Result<Self> {
        let size = size.max(1);
        let shared = Arc::new(Shared {
            size,
            epoch: Padded(AtomicU64::new(0)),
            done: Padded(AtomicUsize::new(0)),
            claimed: (0..size).map(|_| Padded(AtomicU64::new(0))).collect(),
            job: AtomicPtr::new(std::ptr::null_mut()),
            panic: Mutex::new(None),
            shutdown: AtomicBool::new(false),
            sleeping: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
        });
        let mut team = Self {
            shared: shared.clone(),
            workers: Vec::with_capacity(size - 1),
            busy: AtomicBool::new(false),
        };
        for t in 1..size {
            let s = shared.clone();
            let h = std::thread::Builder::new()
                .name(format!("{name}-{t}"))
                .spawn(move || worker(s, t))?;
            team.workers.push(h);
        }
        Ok(team)
    }

    /// Members (threads) of the team.
    pub fn size(&self) -> usize {
        self.shared.size
    }

    /// Part `t` of `parts` of `0..n` in a static schedule: contiguous, in
    /// order, sizes differing by at most one.
    pub fn part(t: usize, parts: usize, n: usize) -> Range<usize> {
        n * t / parts..n * (t + 1) / parts
    }

    /// Makes this team the one that [`crate::exec::Exec::Parallel`] loops
    /// use on this thread while `f` runs.
    pub fn install<R>(&self, f: impl FnOnce() -> R) -> R {
        struct Restore(*const Team);
        impl Drop for Restore {
            fn drop(&mut self) {
                CURRENT.with(|c| c.set(self.0));
            }
        }
        let _restore = Restore(CURRENT.with(|c| c.replace(self)));
        f()
    }

    /// Runs `f(p)` for every part `p` of `0..parts` (`parts` at most the
    /// team's size), part `p` on member `p` unless the caller (member 0)
    /// finds it unstarted once its own part is done (see the module
    /// documentation), and returns when all have finished; a part's panic
    /// is raised here afterwards. Inside a job, or while another thread
    /// runs a job on this team, the parts run one after another on the
    /// caller.
    pub fn run(&self, parts: usize, f: impl Fn(usize) + Sync) {
        assert!(
            parts <= self.size(),
            "{parts} parts for a team of {}",
            self.size()
        );
        if parts <= 1 || in_job() || self.busy.swap(true, Ordering::Acquire) {
            as_member(|| (0..parts).for_each(&f));
            return;
        }
        let sh = &*self.shared;
        let job: Job<'_> = &f;
        // SAFETY (lifetime): a part's runner uses the job only between
        // claiming the part (after the epoch bump below) and its `done`
        // increment, and this function waits for every part's increment
        // before it returns or unwinds.
        let ptr = (&job as *const Job<'_>).cast::<Job<'static>>().cast_mut();
        sh.job.store(ptr, Ordering::Relaxed);
        sh.done.0.store(0, Ordering::Relaxed);
        let word = sh.epoch.0.load(Ordering::Relaxed);
        let e = (word >> 16) + 1;
        sh.epoch.0.store((e << 16) | parts as u64, Ordering::SeqCst);
        if sh.sleeping.load(Ordering::SeqCst) > 0 {
            let _g = sh.lock.lock().unwrap_or_else(|e| e.into_inner());
            sh.wake.notify_all();
        }
        let mut panicked = None;
        let mut run_part = |p: usize| {
            let r = as_member(|| panic::catch_unwind(AssertUnwindSafe(|| f(p))));
            if let Err(x) = r {
                panicked.get_or_insert(x);
            }
            sh.done.0.fetch_add(1, Ordering::Release);
        };
        sh.claimed[0].0.store(e, Ordering::Relaxed);
        run_part(0);
        for p in 1..parts {
            if sh.claimed[p].0.fetch_max(e, Ordering::AcqRel) < e {
                run_part(p);
            }
        }
        let t0 = Instant::now();
        let mut k = 0u32;
        while sh.done.0.load(Ordering::Acquire) < parts {
            k = k.wrapping_add(1);
            if !k.is_multiple_of(64) || t0.elapsed() < SPIN {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        sh.job.store(std::ptr::null_mut(), Ordering::Relaxed);
        let theirs = sh.panic.lock().unwrap_or_else(|e| e.into_inner()).take();
        self.busy.store(false, Ordering::Release);
        if let Some(p) = panicked.or(theirs) {
            panic::resume_unwind(p);
        }
    }
}

impl Drop for Team {
    fn drop(&mut self) {
        let sh = &*self.shared;
        sh.shutdown.store(true, Ordering::SeqCst);
        {
            let _g = sh.lock.lock().unwrap_or_else(|e| e.into_inner());
            sh.wake.notify_all();
        }
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
    }
}

/// Waits for a job word other than `seen`; `None` on shutdown.
fn next_epoch(sh: &Shared, seen: u64) -> Option<u64> {
    let t0 = Instant::now();
    let mut k = 0u32;
    loop {
        let e = sh.epoch.0.load(Ordering::Acquire);
        if e != seen {
            return Some(e);
        }
        if sh.shutdown.load(Ordering::Acquire) {
            return None;
        }
        k = k.wrapping_add(1);
        if !k.is_multiple_of(64) {
            std::hint::spin_loop();
            continue;
        }
        let waited = t0.elapsed();
        if waited < SPIN {
            std::hint::spin_loop();
        } else if waited < YIELD {
            std::thread::yield_now();
        } else {
            let mut g = sh.lock.lock().unwrap_or_else(|e| e.into_inner());
            sh.sleeping.fetch_add(1, Ordering::SeqCst);
            while sh.epoch.0.load(Ordering::SeqCst) == seen && !sh.shutdown.load(Ordering::SeqCst) {
                g = sh.wake.wait(g).unwrap_or_else(|e| e.into_inner());
            }
            sh.sleeping.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

fn worker(sh: Arc<Shared>, t: usize) {
    let mut seen = 0;
    while let Some(word) = next_epoch(&sh, seen) {
        seen = word;
        let (e, parts) = (word >> 16, (word & 0xffff) as usize);
        // A stale word (a job the caller finished meanwhile) fails here:
        // the caller moves on only once part t of that job is done, hence
        // claimed with a number at least e.
        if t >= parts || sh.claimed[t].0.fetch_max(e, Ordering::AcqRel) >= e {
            continue;
        }
        // SAFETY: the caller stored the job before publishing the word we
        // acquired, and keeps it alive until this part's `done` increment.
        let job: Job<'_> = unsafe { *sh.job.load(Ordering::Acquire) };
        let r = as_member(|| panic::catch_unwind(AssertUnwindSafe(|| job(t))));
        if let Err(p) = r {
            sh.panic
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert(p);
        }
        sh.done.0.fetch_add(1, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// The thread's name (team members are named `test-{t}`).
    fn me() -> String {
        std::thread::current().name().unwrap_or("").to_string()
    }

    #[test]
    fn every_part_runs_once_on_its_member_or_the_caller() {
        let caller = me();
        for size in [1, 2, 3, 5] {
            let team = Team::new(size, "test").unwrap();
            for parts in 0..=size {
                for _ in 0..100 {
                    let hits: Vec<AtomicUsize> = (0..size).map(|_| AtomicUsize::new(0)).collect();
                    let who = Mutex::new(vec![String::new(); size]);
                    team.run(parts, |t| {
                        hits[t].fetch_add(1, Ordering::Relaxed);
                        who.lock().unwrap()[t] = me();
                    });
                    let who = who.into_inner().unwrap();
                    for t in 0..size {
                        assert_eq!(hits[t].load(Ordering::Relaxed), usize::from(t < parts));
                        if t < parts {
                            assert!(
                                who[t] == caller || who[t] == format!("test-{t}"),
                                "part {t} ran on {}",
                                who[t]
                            );
                        }
                    }
                    if parts > 0 {
                        assert_eq!(who[0], caller);
                    }
                }
            }
        }
    }

    #[test]
    fn members_wake_from_sleep() {
        let team = Team::new(3, "test").unwrap();
        for _ in 0..3 {
            // long enough for the members to go to sleep
            std::thread::sleep(YIELD * 3);
            let n = AtomicUsize::new(0);
            team.run(3, |_| {
                n.fetch_add(1, Ordering::Relaxed);
            });
            assert_eq!(n.load(Ordering::Relaxed), 3);
        }
    }

    #[test]
    fn parts_cover_the_range_in_order() {
        for parts in [1, 2, 3] {
            for n in [0, 1, 2, 3, 10, 1001] {
                let v: Vec<_> = (0..parts).map(|t| Team::part(t, parts, n)).collect();
                assert_eq!(v[0].start, 0);
                assert_eq!(v[parts - 1].end, n);
                assert!(v.windows(2).all(|w| w[0].end == w[1].start));
                assert!(
                    v.iter()
                        .all(|p| p.len() + 1 >= n / parts && p.len() <= n / parts + 1)
                );
            }
        }
    }

    #[test]
    fn a_job_inside_a_job_runs_on_the_calling_thread() {
        let team = Team::new(2, "test").unwrap();
        let count = AtomicUsize::new(0);
        team.run(2, |_| {
            assert!(in_job());
            let me = std::thread::current().id();
            team.run(2, |_| {
                assert_eq!(std::thread::current().id(), me);
                count.fetch_add(1, Ordering::Relaxed);
            });
        });
        assert_eq!(count.load(Ordering::Relaxed), 4);
        assert!(!in_job());
    }

    #[test]
    fn install_makes_the_team_current_on_this_thread_only() {
        let team = Team::new(2, "test").unwrap();
        assert!(with_current(|t| t.is_none()));
        team.install(|| {
            assert_eq!(with_current(|t| t.map(|t| t.size())), Some(2));
            team.run(2, |_| assert!(with_current(|t| t.is_none())));
        });
        assert!(with_current(|t| t.is_none()));
    }

    #[test]
    fn a_part_panic_reaches_the_caller_after_the_job() {
        let team = Team::new(3, "test").unwrap();
        let finished = AtomicUsize::new(0);
        let r = panic::catch_unwind(AssertUnwindSafe(|| {
            team.run(3, |t| {
                if t == 2 {
                    panic!("part two fails");
                }
                finished.fetch_add(1, Ordering::Relaxed);
            })
        }));
        let msg = r.unwrap_err();
        assert_eq!(msg.downcast_ref::<&str>(), Some(&"part two fails"));
        assert_eq!(finished.load(Ordering::Relaxed), 2);
        // the team still works
        let n = AtomicUsize::new(0);
        team.run(3, |_| {
            n.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(n.load(Ordering::Relaxed), 3);
        // and the caller's own panic too
        let r = panic::catch_unwind(AssertUnwindSafe(|| {
            team.run(3, |t| assert!(t != 0, "zero"))
        }));
        assert!(r.is_err());
        team.run(3, |_| {});
    }

    #[test]
    fn two_callers_and_more_members_than_cores() {
        // 6 members on this machine's cores: parts get claimed by the
        // caller whenever a member is not scheduled
        let team = Arc::new(Team::new(6, "test").unwrap());
        let total = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    for k in 0..500 {
                        team.run(1 + k % 6, |_| {
                            total.fetch_add(1, Ordering::Relaxed);
                        });
                    }
                });
            }
        });
        let per: usize = (0..500).map(|k| 1 + k % 6).sum();
        assert_eq!(total.load(Ordering::Relaxed), 2 * per);
    }
}
