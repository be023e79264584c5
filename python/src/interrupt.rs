//! Running the engine without the GIL and stopping it on Ctrl-C.
//!
//! The work runs on a scoped worker thread while the calling thread waits
//! without the GIL, waking every 50 ms to let Python handle its signals
//! (`check_signals`, which only does something on the main thread, where
//! Python runs its signal handlers). When a handler raises (Ctrl-C:
//! `KeyboardInterrupt`), the stop flag is set; the solver's progress hook
//! reads it every 50 iterations and stops the solve with an "interrupted"
//! error; the thread is joined and the handler's exception raised.
//! Whatever backend runs the solve (the calling thread, a rayon pool, a
//! GPU stream), the hook is called on the solve's thread, so this works for
//! all of them.

use pyo3::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// How often the waiting thread looks for signals.
const POLL: Duration = Duration::from_millis(50);

/// A stop flag the work polls (the solver's progress hook).
#[derive(Clone, Default)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    /// Whether a stop was asked for.
    pub fn requested(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    fn request(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Runs `work` on a worker thread with the GIL released; the exception of
/// a signal handler (Ctrl-C) that ran meanwhile is raised after the work
/// ends (it was asked to stop through its [`Stop`]).
pub fn run_detached<T, F>(py: Python<'_>, work: F) -> PyResult<T>
where
    T: Send,
    F: FnOnce(Stop) -> T + Send,
{
    let stop = Stop::default();
    let done = (Mutex::new(false), Condvar::new());
    let mut raised: Option<PyErr> = None;
    let out = std::thread::scope(|s| {
        let worker_stop = stop.clone();
        let done_ref = &done;
        let h = s.spawn(move || {
            // tell the waiting thread even if the work panics
            struct Finish<'a>(&'a (Mutex<bool>, Condvar));
            impl Drop for Finish<'_> {
                fn drop(&mut self) {
                    let (m, c) = self.0;
                    *m.lock().unwrap_or_else(|e| e.into_inner()) = true;
                    c.notify_all();
                }
            }
            let _f = Finish(done_ref);
            work(worker_stop)
        });
        loop {
            let finished = py.detach(|| {
                let (m, c) = done_ref;
                let g = m.lock().unwrap_or_else(|e| e.into_inner());
                let (g, _) = c
                    .wait_timeout_while(g, POLL, |d| !*d)
                    .unwrap_or_else(|e| e.into_inner());
                *g
            });
            if finished {
                break;
            }
            if raised.is_none()
                && let Err(e) = py.check_signals()
            {
                stop.request();
                raised = Some(e);
            }
        }
        h.join()
    });
    match (out, raised) {
        (_, Some(e)) => Err(e),
        (Ok(v), None) => Ok(v),
        (Err(p), None) => std::panic::resume_unwind(p),
    }
}
