//! The progress bar of long solves.
//!
//! Progress is measured in digits of residual reduction: a solve to
//! `rtol = 1e-8` that has brought the relative residual to `1e-4` is half
//! done. The residual of CG is not monotone, so the bar shows the best
//! reduction so far (it never goes backwards), and the time left is
//! estimated from the average rate so far, shown only once there is a rate
//! to go by (before that: `ETA --`).

use quadflow_systems::components::ProgressHook;
use std::io::IsTerminal;
use std::time::Instant;

/// The part of a solve to `rtol` done at relative residual `residual`, in
/// `[0, 1]`: digits gained over digits wanted.
pub fn fraction_done(residual: f64, rtol: f64) -> f64 {
    let target = -rtol.log10();
    if target.is_nan() || target <= 0.0 {
        return 0.0;
    }
    (-(residual.max(1e-300)).log10() / target).clamp(0.0, 1.0)
}

/// What the bar shows besides the bar: never less done than before, an
/// estimate of the time left once a rate is known.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    rtol: f64,
    best: f64,
}

impl Progress {
    /// Progress of a solve to `rtol`.
    pub fn new(rtol: f64) -> Self {
        Self { rtol, best: 0.0 }
    }

    /// Takes the residual after an iteration; returns the fraction done
    /// (the best so far).
    pub fn update(&mut self, residual: f64) -> f64 {
        self.best = self.best.max(fraction_done(residual, self.rtol));
        self.best
    }

    /// Seconds left at the average rate so far, after `elapsed` seconds;
    /// `None` until 2% is done (no honest estimate before) and once done.
    pub fn eta(&self, elapsed: f64) -> Option<f64> {
        (self.best >= 0.02 && self.best < 1.0).then(|| elapsed * (1.0 - self.best) / self.best)
    }
}

/// `1m05s`, `12s`.
fn duration(s: f64) -> String {
    let s = s.round() as u64;
    if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// The bar, cleared when the solve is over (the hook dropped).
struct Bar(indicatif::ProgressBar);

impl Drop for Bar {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

/// A progress bar for solves longer than a second, on a terminal only.
pub fn progress_hook(rtol: f64) -> ProgressHook {
    if !std::io::stderr().is_terminal() {
        return ProgressHook(None);
    }
    let start = Instant::now();
    let mut bar: Option<Bar> = None;
    let mut progress = Progress::new(rtol);
    ProgressHook(Some(Box::new(move |it, res| {
        let done = progress.update(res);
        let elapsed = start.elapsed().as_secs_f64();
        if bar.is_none() && elapsed > 1.0 {
            let b = indicatif::ProgressBar::new(1000);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "solve [{elapsed_precise}] {bar:30} {percent:>3}% {msg}",
                )
                .expect("valid template"),
            );
            bar = Some(Bar(b));
        }
        if let Some(Bar(b)) = &bar {
            b.set_position((done * 1000.0) as u64);
            let eta = match progress.eta(elapsed) {
                Some(s) => format!("ETA ~{}", duration(s)),
                None => "ETA --".to_string(),
            };
            b.set_message(format!("{eta}, it {it}, residual {res:.2e}"));
        }
        true
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_never_goes_backwards_and_estimates_only_with_a_rate() {
        let mut p = Progress::new(1e-8);
        assert_eq!(p.eta(5.0), None);
        assert!((p.update(1e-2) - 0.25).abs() < 1e-12);
        // the residual rises: the bar stays
        assert!((p.update(1e-1) - 0.25).abs() < 1e-12);
        assert!((p.update(1e-4) - 0.5).abs() < 1e-12);
        // half done in 10 s: 10 s to go
        assert!((p.eta(10.0).unwrap() - 10.0).abs() < 1e-9);
        assert_eq!(p.update(1e-9), 1.0);
        assert_eq!(p.eta(20.0), None);
        // a residual above 1 is no progress, not negative progress
        let mut q = Progress::new(1e-8);
        assert_eq!(q.update(3.0), 0.0);
        assert_eq!(q.eta(1.0), None);
        assert_eq!(fraction_done(0.5, 1.0), 0.0);
        assert_eq!(duration(65.4), "1m05s");
        assert_eq!(duration(12.0), "12s");
    }
}
