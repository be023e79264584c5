//! Per-job traces in a long-lived process: a `tracing` layer that gives
//! every span to the job it belongs to, so that each job gets its own
//! Chrome trace (the CLI's `--trace` format) and hears, live, which phase
//! it is in.
//!
//! A span belongs to the job of its parent span; a span without one, to
//! the job running on the thread that opened it ([`JobScope`]); a span
//! opened on another thread (a rayon worker) with no parent, to the only
//! running job if there is exactly one (else it is dropped: with several
//! jobs at once, worker threads' own spans cannot be told apart).

use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;
use tracing::span::{Attributes, Id};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// A job's trace: Chrome "complete" events, and a callback told when a
/// phase span opens.
pub struct TraceSink {
    epoch: Instant,
    events: Mutex<Vec<SpanEvent>>,
    on_phase: Box<dyn Fn(&str) + Send + Sync>,
    threads: Mutex<Vec<std::thread::ThreadId>>,
}

/// One closed span.
#[derive(Debug, Clone)]
pub struct SpanEvent {
    /// Span name.
    pub name: String,
    /// Microseconds from the job's start to the span's opening.
    pub start_us: f64,
    /// Microseconds open.
    pub dur_us: f64,
    /// Thread number in this trace (0: the job's own thread).
    pub tid: usize,
    /// The span's fields, as `key=value` text.
    pub args: Vec<(String, String)>,
}

impl TraceSink {
    /// A sink whose clock starts now; `on_phase` hears the name of every
    /// phase span (`load`, `quadrature`, ..., `post`) as it opens.
    pub fn new(on_phase: impl Fn(&str) + Send + Sync + 'static) -> Arc<Self> {
        Arc::new(Self {
            epoch: Instant::now(),
            events: Mutex::new(Vec::new()),
            on_phase: Box::new(on_phase),
            threads: Mutex::new(vec![std::thread::current().id()]),
        })
    }

    /// When the trace's clock started.
    pub fn epoch(&self) -> Instant {
        self.epoch
    }

    /// The spans closed so far, by start time.
    pub fn events(&self) -> Vec<SpanEvent> {
        let mut v = self.events.lock().map(|e| e.clone()).unwrap_or_default();
        v.sort_by(|a, b| a.start_us.total_cmp(&b.start_us));
        v
    }

    fn tid(&self) -> usize {
        let me = std::thread::current().id();
        let Ok(mut t) = self.threads.lock() else {
            return 0;
        };
        match t.iter().position(|x| *x == me) {
            Some(i) => i,
            None => {
                t.push(me);
                t.len() - 1
            }
        }
    }

    /// The trace as Chrome trace JSON (what `quadflow run --trace` writes:
    /// Perfetto and `chrome://tracing` open it).
    pub fn chrome_json(&self) -> String {
        let events: Vec<serde_json::Value> = self
            .events()
            .into_iter()
            .map(|e| {
                let args: serde_json::Map<String, serde_json::Value> = e
                    .args
                    .into_iter()
                    .map(|(k, v)| (k, serde_json::Value::String(v)))
                    .collect();
                serde_json::json!({
                    "ph": "X", "name": e.name, "cat": "quadflow",
                    "ts": e.start_us, "dur": e.dur_us,
                    "pid": 1, "tid": e.tid, "args": args,
                })
            })
            .collect();
        serde_json::json!({ "traceEvents": events, "displayTimeUnit": "ms" }).to_string()
    }
}

/// The phase a span name stands for: the pipeline's `phase_NAME` spans and
/// the mesh's `load`.
pub fn phase_of(span: &str) -> Option<&str> {
    match span {
        "load" => Some("load"),
        s => s.strip_prefix("phase_"),
    }
}

thread_local! {
    static CURRENT: std::cell::RefCell<Option<Arc<TraceSink>>> = const { std::cell::RefCell::new(None) };
}

/// Running jobs' sinks (for spans of worker threads).
static ACTIVE: Mutex<Vec<Weak<TraceSink>>> = Mutex::new(Vec::new());

/// While alive, spans opened on this thread (without a parent) go to
/// `sink`, and so do parentless spans of other threads if no other job
/// runs.
pub struct JobScope {
    sink: Arc<TraceSink>,
}

impl JobScope {
    /// Enters `sink` on this thread.
    pub fn enter(sink: Arc<TraceSink>) -> Self {
        CURRENT.with(|c| *c.borrow_mut() = Some(sink.clone()));
        if let Ok(mut a) = ACTIVE.lock() {
            a.retain(|w| w.strong_count() > 0);
            a.push(Arc::downgrade(&sink));
        }
        Self { sink }
    }
}

impl Drop for JobScope {
    fn drop(&mut self) {
        CURRENT.with(|c| *c.borrow_mut() = None);
        if let Ok(mut a) = ACTIVE.lock() {
            a.retain(|w| w.upgrade().is_some_and(|s| !Arc::ptr_eq(&s, &self.sink)));
        }
    }
}

/// What the layer keeps in a span's extensions.
struct Open {
    sink: Arc<TraceSink>,
    start: Instant,
    tid: usize,
    args: Vec<(String, String)>,
}

struct Fields<'a>(&'a mut Vec<(String, String)>);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0
            .push((field.name().to_string(), format!("{value:?}")));
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.push((field.name().to_string(), value.to_string()));
    }
}

/// The layer (install it once, globally, with a registry).
pub struct JobTraceLayer;

impl<S> tracing_subscriber::Layer<S> for JobTraceLayer
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let from_parent = span
            .parent()
            .and_then(|p| p.extensions().get::<Open>().map(|o| o.sink.clone()));
        let sink = from_parent
            .or_else(|| CURRENT.with(|c| c.borrow().clone()))
            .or_else(|| {
                let a = ACTIVE.lock().ok()?;
                let live: Vec<_> = a.iter().filter_map(Weak::upgrade).collect();
                (live.len() == 1).then(|| live[0].clone())
            });
        let Some(sink) = sink else { return };
        if let Some(p) = phase_of(span.name()) {
            (sink.on_phase)(p);
        }
        let mut args = Vec::new();
        attrs.record(&mut Fields(&mut args));
        let tid = sink.tid();
        span.extensions_mut().insert(Open {
            sink,
            start: Instant::now(),
            tid,
            args,
        });
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(open) = span.extensions_mut().remove::<Open>() else {
            return;
        };
        let start_us = open.start.duration_since(open.sink.epoch).as_secs_f64() * 1e6;
        let ev = SpanEvent {
            name: span.name().to_string(),
            start_us,
            dur_us: open.start.elapsed().as_secs_f64() * 1e6,
            tid: open.tid,
            args: open.args,
        };
        if let Ok(mut e) = open.sink.events.lock() {
            e.push(ev);
        }
    }
}

/// Installs the layer as the process's subscriber (once; later calls and
/// a process that already has one do nothing).
pub fn install() {
    use tracing_subscriber::prelude::*;
    let _ = tracing_subscriber::registry()
        .with(JobTraceLayer)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_go_to_the_job_of_their_thread_and_parent() {
        use tracing_subscriber::prelude::*;
        let sub = tracing_subscriber::registry().with(JobTraceLayer);
        let phases = Arc::new(Mutex::new(Vec::new()));
        let p2 = phases.clone();
        let sink = TraceSink::new(move |p| p2.lock().unwrap().push(p.to_string()));
        tracing::subscriber::with_default(sub, || {
            let _scope = JobScope::enter(sink.clone());
            {
                let _a = tracing::info_span!("load").entered();
            }
            let outer = tracing::info_span!("phase_solve", rows = 7).entered();
            {
                let _inner = tracing::info_span!("linear_solve").entered();
            }
            drop(outer);
        });
        assert_eq!(*phases.lock().unwrap(), vec!["load", "solve"]);
        let ev = sink.events();
        let names: Vec<_> = ev.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, vec!["load", "phase_solve", "linear_solve"]);
        assert!(ev[1].args.iter().any(|(k, v)| k == "rows" && v == "7"));
        assert!(ev[1].dur_us >= ev[2].dur_us);
        let json: serde_json::Value = serde_json::from_str(&sink.chrome_json()).unwrap();
        assert_eq!(json["traceEvents"].as_array().unwrap().len(), 3);
        assert_eq!(json["traceEvents"][0]["ph"], "X");
        // no job on this thread any more: spans are not recorded
        assert!(phase_of("phase_post") == Some("post") && phase_of("other").is_none());
    }
}
