//! Solve jobs: a queue served by a fixed number of worker threads (at most
//! that many solves at once, the rest wait), each job's live progress
//! (phase, iteration, residual) for the event stream, cancellation, and
//! the results of finished jobs (kept for the last few, dropped on
//! request).
//!
//! A job runs the plan the CLI would run for the same scene, with the same
//! engine calls ([`crate::run::run_on_with`] on the mesh
//! [`Meshes::load`] gives, or [`crate::run::load_mesh`] for a generated
//! one), so its fields are the CLI's bit for bit. The backends stay warm
//! between jobs because the process stays: a GPU's context, created once
//! by the backend's `prewarm`, is retained for the life of the process.

use super::meshes::Meshes;
use super::tracer::{JobScope, TraceSink};
use crate::error::AppError;
use crate::run::{self, RunEvents, RunHeader, RunResult};
use crate::scene::{MeshSource, Plan};
use quadflow_systems::components::ProgressHook;
use quadflow_systems::pipeline::Phase;
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::Instant;

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Waiting for a worker.
    Queued,
    /// Running.
    Running,
    /// Finished with results.
    Done,
    /// Failed (the error says why).
    Failed,
    /// Cancelled.
    Cancelled,
}

impl Status {
    /// Whether the job is over.
    pub fn finished(self) -> bool {
        matches!(self, Status::Done | Status::Failed | Status::Cancelled)
    }
}

/// What a finished job produced.
pub struct Output {
    /// The run's results (the mesh, the fields, the times).
    pub result: RunResult,
    /// The run's trace.
    pub trace: Arc<TraceSink>,
    /// Seconds from the worker taking the job to the results in memory:
    /// the time per solve.
    pub solve_wall: f64,
    /// Files produced on request (kind -> path in the server's folder).
    pub files: Mutex<BTreeMap<String, PathBuf>>,
}

/// A job's changing part.
pub struct JobState {
    /// Where it is.
    pub status: Status,
    /// The phase running (`load`, `quadrature`, ... `post`).
    pub phase: Option<String>,
    /// Phases opened so far, with the seconds since the job started.
    pub phases: Vec<(String, f64)>,
    /// `(iteration, relative residual)` as the solver reported them (past
    /// [`MAX_RESIDUALS`], the last point follows the solve).
    pub residuals: Vec<(usize, f64)>,
    /// Reports heard so far (they outnumber `residuals` past the cap).
    pub reports: u64,
    /// Warnings, as the CLI prints them.
    pub warnings: Vec<String>,
    /// The bounded system's size (nodes, elements, nnz), before the solve.
    pub header: Option<RunHeader>,
    /// Why it failed.
    pub error: Option<String>,
    /// Its results (dropped when the job is deleted or too old).
    pub output: Option<Arc<Output>>,
    /// When a worker took it.
    pub started: Option<Instant>,
    /// When it ended.
    pub finished: Option<Instant>,
    last_notice: Option<Instant>,
}

/// A solve job.
pub struct Job {
    /// Its number.
    pub id: u64,
    /// The mesh as the request named it (an id or a geometry).
    pub mesh_label: String,
    /// What it runs.
    pub plan: Plan,
    /// When it was asked for.
    pub created: Instant,
    /// The compare group it belongs to, if any.
    pub group: Option<u64>,
    cancel: AtomicBool,
    /// The changing part.
    pub state: Mutex<JobState>,
    /// Bumped on every change worth telling (throttled while solving).
    pub changes: tokio::sync::watch::Sender<u64>,
}

impl Job {
    fn new(id: u64, mesh_label: String, plan: Plan, group: Option<u64>) -> Self {
        Self {
            id,
            mesh_label,
            plan,
            created: Instant::now(),
            group,
            cancel: AtomicBool::new(false),
            state: Mutex::new(JobState {
                status: Status::Queued,
                phase: None,
                phases: Vec::new(),
                residuals: Vec::new(),
                reports: 0,
                warnings: Vec::new(),
                header: None,
                error: None,
                output: None,
                started: None,
                finished: None,
                last_notice: None,
            }),
            changes: tokio::sync::watch::channel(0).0,
        }
    }

    /// Tells the event streams that something changed.
    pub fn notify(&self) {
        self.changes.send_modify(|v| *v += 1);
    }

    /// Asks the job to stop; whether it was still unfinished.
    pub fn request_cancel(&self) -> bool {
        self.cancel.store(true, Ordering::SeqCst);
        let st = self
            .state
            .lock()
            .map(|s| s.status)
            .unwrap_or(Status::Failed);
        !st.finished()
    }

    /// Whether cancelling was asked for.
    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }

    fn with<R>(&self, f: impl FnOnce(&mut JobState) -> R) -> Option<R> {
        self.state.lock().ok().map(|mut s| f(&mut s))
    }

    fn set_phase(&self, phase: &str) {
        let t = self.created.elapsed().as_secs_f64();
        self.with(|s| {
            s.phase = Some(phase.to_string());
            s.phases.push((phase.to_string(), t));
        });
        self.notify();
    }

    /// Records a residual; tells the streams at most every 40 ms.
    fn residual(&self, it: usize, res: f64) {
        let tell = self
            .with(|s| {
                s.reports += 1;
                if s.residuals.len() < MAX_RESIDUALS {
                    s.residuals.push((it, res));
                } else if let Some(last) = s.residuals.last_mut() {
                    // past the cap, the last point follows the solve
                    *last = (it, res);
                }
                let due = s
                    .last_notice
                    .is_none_or(|t| t.elapsed().as_secs_f64() > 0.04);
                if due {
                    s.last_notice = Some(Instant::now());
                }
                due
            })
            .unwrap_or(false);
        if tell {
            self.notify();
        }
    }

    /// The status now.
    pub fn status(&self) -> Status {
        self.with(|s| s.status).unwrap_or(Status::Failed)
    }

    /// The results, if the job is done and they are still kept.
    pub fn output(&self) -> Option<Arc<Output>> {
        self.with(|s| s.output.clone()).flatten()
    }
}

/// Residuals kept per job (a solve's iteration cap is 15,000 by default).
pub const MAX_RESIDUALS: usize = 200_000;

struct Events<'a>(&'a Job);

impl RunEvents for Events<'_> {
    fn warning(&mut self, text: &str) {
        self.0.with(|s| s.warnings.push(text.to_string()));
        self.0.notify();
    }
    fn bounded(&mut self, header: &RunHeader) {
        self.0.with(|s| s.header = Some(header.clone()));
        self.0.notify();
    }
}

/// The jobs of a server and their workers.
pub struct Jobs {
    all: Mutex<BTreeMap<u64, Arc<Job>>>,
    queue: Mutex<VecDeque<Arc<Job>>>,
    wake: Condvar,
    next: AtomicU64,
    /// Finished jobs whose results are kept (older ones are dropped).
    pub keep: usize,
    meshes: Arc<Meshes>,
}

impl Jobs {
    /// Jobs run by `workers` threads (at least one), reading meshes
    /// through `meshes`.
    pub fn start(workers: usize, keep: usize, meshes: Arc<Meshes>) -> Arc<Self> {
        let jobs = Arc::new(Self {
            all: Mutex::new(BTreeMap::new()),
            queue: Mutex::new(VecDeque::new()),
            wake: Condvar::new(),
            next: AtomicU64::new(1),
            keep: keep.max(1),
            meshes,
        });
        for k in 0..workers.max(1) {
            let weak = Arc::downgrade(&jobs);
            std::thread::Builder::new()
                .name(format!("quadflow-job-{k}"))
                .spawn(move || worker(weak))
                .expect("spawning a job worker");
        }
        jobs
    }

    /// Queues a job running `plan`.
    pub fn submit(&self, mesh_label: String, plan: Plan, group: Option<u64>) -> Arc<Job> {
        let id = self.next.fetch_add(1, Ordering::SeqCst);
        let job = Arc::new(Job::new(id, mesh_label, plan, group));
        if let Ok(mut a) = self.all.lock() {
            a.insert(id, job.clone());
        }
        if let Ok(mut q) = self.queue.lock() {
            q.push_back(job.clone());
        }
        self.wake.notify_one();
        job
    }

    /// A job by number.
    pub fn get(&self, id: u64) -> Option<Arc<Job>> {
        self.all.lock().ok()?.get(&id).cloned()
    }

    /// Every job, oldest first.
    pub fn list(&self) -> Vec<Arc<Job>> {
        self.all
            .lock()
            .map(|a| a.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Jobs waiting ahead of `id`.
    pub fn queued_ahead(&self, id: u64) -> usize {
        self.queue
            .lock()
            .map(|q| q.iter().take_while(|j| j.id != id).count())
            .unwrap_or(0)
    }

    /// Cancels a job: a queued one leaves the queue at once, a running one
    /// stops at its solver's next progress report (its results are then
    /// dropped). Whether it was unfinished.
    pub fn cancel(&self, id: u64) -> Option<bool> {
        let job = self.get(id)?;
        let was = job.request_cancel();
        let removed = self
            .queue
            .lock()
            .map(|mut q| {
                let n = q.len();
                q.retain(|j| j.id != id);
                n != q.len()
            })
            .unwrap_or(false);
        if removed {
            finish(&job, Status::Cancelled, None, None);
        }
        Some(was)
    }

    /// Forgets a finished job (its results and files); cancels it first
    /// if it runs.
    pub fn remove(&self, id: u64) -> Option<()> {
        let job = self.get(id)?;
        self.cancel(id);
        drop_output(&job);
        if job.status().finished() {
            self.all.lock().ok()?.remove(&id);
        }
        Some(())
    }

    /// Drops the results of all but the newest `keep` finished jobs.
    fn trim(&self) {
        let done: Vec<Arc<Job>> = self
            .list()
            .into_iter()
            .filter(|j| j.output().is_some())
            .collect();
        if done.len() > self.keep {
            for j in &done[..done.len() - self.keep] {
                drop_output(j);
            }
        }
    }
}

fn drop_output(job: &Job) {
    let out = job.with(|s| s.output.take()).flatten();
    if let Some(o) = out
        && let Ok(f) = o.files.lock()
    {
        for p in f.values() {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn finish(job: &Job, status: Status, error: Option<String>, output: Option<Arc<Output>>) {
    job.with(|s| {
        s.status = status;
        s.error = error;
        s.output = output;
        s.phase = None;
        s.finished = Some(Instant::now());
    });
    job.notify();
}

fn worker(jobs: Weak<Jobs>) {
    loop {
        let Some(js) = jobs.upgrade() else { return };
        let job = {
            let Ok(mut q) = js.queue.lock() else { return };
            loop {
                if let Some(j) = q.pop_front() {
                    break j;
                }
                let (g, _) = match js.wake.wait_timeout(q, std::time::Duration::from_secs(1)) {
                    Ok(r) => r,
                    Err(_) => return,
                };
                q = g;
                if Arc::strong_count(&js) == 1 {
                    return;
                }
            }
        };
        if job.cancelled() {
            finish(&job, Status::Cancelled, None, None);
            continue;
        }
        let meshes = js.meshes.clone();
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| execute(&job, &meshes)));
        match outcome {
            Ok(_) if job.cancelled() => finish(&job, Status::Cancelled, None, None),
            Ok(Ok(out)) => finish(&job, Status::Done, None, Some(out)),
            Ok(Err(e)) => finish(&job, Status::Failed, Some(e.to_string()), None),
            Err(_) => finish(
                &job,
                Status::Failed,
                Some("the solve panicked (a bug: please report it)".into()),
                None,
            ),
        }
        js.trim();
    }
}

/// Runs a job on this thread: the mesh (cached) and the plan, as the CLI
/// does.
fn execute(job: &Arc<Job>, meshes: &Meshes) -> Result<Arc<Output>, AppError> {
    let t0 = Instant::now();
    job.with(|s| {
        s.status = Status::Running;
        s.started = Some(t0);
    });
    job.notify();
    let weak = Arc::downgrade(job);
    let sink = TraceSink::new(move |p| {
        if let Some(j) = weak.upgrade() {
            j.set_phase(p);
        }
    });
    let scope = JobScope::enter(sink.clone());
    let plan = &job.plan;
    for b in plan.planned_backends() {
        b.prewarm();
    }
    let loaded = match &plan.mesh {
        MeshSource::File(p) => {
            let _s = tracing::info_span!("load").entered();
            meshes.load(p, plan)?
        }
        MeshSource::Generate(..) => run::load_mesh(plan)?,
    };
    if job.cancelled() {
        return Err(AppError::Other("cancelled".into()));
    }
    let weak = Arc::downgrade(job);
    let hook = ProgressHook(Some(Box::new(move |it, res| match weak.upgrade() {
        Some(j) => {
            j.residual(it, res);
            !j.cancelled()
        }
        None => false,
    })));
    let result = run::run_on_with(plan, &loaded, Some(hook), &mut Events(job))?;
    drop(scope);
    // the solver reports every 50 iterations: the last point is the end
    let st = &result.solution.stats;
    if st.iterations > 0
        && job
            .with(|s| s.residuals.last().map(|r| r.0) != Some(st.iterations))
            .unwrap_or(false)
    {
        job.residual(st.iterations, st.recurrence_residual);
    }
    Ok(Arc::new(Output {
        result,
        trace: sink,
        solve_wall: t0.elapsed().as_secs_f64(),
        files: Mutex::new(BTreeMap::new()),
    }))
}

/// One bar of a run's timeline: a phase, its backend, when it started
/// (seconds from the job's start) and how long it took.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Bar {
    /// `load`, `quadrature`, ..., `post`.
    pub phase: String,
    /// The backend that ran it (`-` for the load).
    pub backend: String,
    /// Seconds from the start of the job's trace.
    pub start: f64,
    /// Seconds.
    pub seconds: f64,
}

/// The phases of a finished run from its trace, with each phase's backend.
pub fn timeline(out: &Output) -> Vec<Bar> {
    let mut bars = Vec::new();
    for e in out.trace.events() {
        let Some(p) = super::tracer::phase_of(&e.name) else {
            continue;
        };
        let backend = Phase::ALL
            .iter()
            .find(|x| x.name() == p)
            .map(|x| out.result.backends[x.index()].to_string())
            .unwrap_or_else(|| "-".into());
        bars.push(Bar {
            phase: p.to_string(),
            backend,
            start: e.start_us / 1e6,
            seconds: e.dur_us / 1e6,
        });
    }
    bars
}
