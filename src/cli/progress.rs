//! The progress bar of long solves.

use quadflow_systems::components::ProgressHook;
use std::io::IsTerminal;
use std::time::Instant;

/// A progress bar for solves longer than a second, on a terminal only.
pub fn progress_hook(rtol: f64) -> ProgressHook {
    if !std::io::stderr().is_terminal() {
        return ProgressHook(None);
    }
    let start = Instant::now();
    let mut bar: Option<indicatif::ProgressBar> = None;
    let target = -rtol.log10();
    ProgressHook(Some(Box::new(move |it, res| {
        if bar.is_none() && start.elapsed().as_secs_f64() > 1.0 {
            let b = indicatif::ProgressBar::new(1000);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "solve [{elapsed_precise}] {bar:30} {percent:>3}% ETA {eta} {msg}",
                )
                .expect("valid template"),
            );
            bar = Some(b);
        }
        if let Some(b) = &bar {
            // progress in digits of residual reduction
            let done = (-(res.max(1e-300)).log10() / target).clamp(0.0, 1.0);
            b.set_position((done * 1000.0) as u64);
            b.set_message(format!("it {it}, residual {res:.2e}"));
        }
        true
    })))
}
