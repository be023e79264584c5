//! What a benchmark suite records: per-phase statistics over repeats, the
//! cases, the machine, and the Markdown table of a report.

use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::process::Command;

/// Per-phase statistics over the repeats, in seconds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Stat {
    /// Median.
    pub median: f64,
    /// Minimum.
    pub min: f64,
    /// Maximum.
    pub max: f64,
}

impl Stat {
    /// Median, min and max of samples (empty: zeros).
    pub fn of(samples: &[f64]) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        let mut v = samples.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Self {
            median,
            min: v[0],
            max: v[n - 1],
        }
    }
}

/// What one child run reports (JSON on its stdout).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct RunRecord {
    /// load, quadrature, assembly, boundary, solve, post, total.
    pub seconds: Vec<f64>,
    /// CG iterations.
    pub iterations: usize,
    /// Whether converged.
    pub converged: bool,
    /// True relative residual.
    pub true_residual: f64,
    /// Peak resident memory of the process (bytes).
    pub peak_rss: u64,
    /// Nodes of the mesh.
    pub nodes: usize,
    /// Elements.
    pub elements: usize,
    /// Backend label.
    pub backend: String,
    /// Bytes per CG iteration (counted).
    pub bytes_per_iteration: usize,
    /// Seconds of the CG iteration proper.
    pub iteration_seconds: f64,
    /// Bytes copied host to device (GPU).
    #[serde(default)]
    pub bytes_to_device: u64,
    /// Bytes copied device to host (GPU).
    #[serde(default)]
    pub bytes_to_host: u64,
    /// NVRTC seconds (GPU).
    #[serde(default)]
    pub nvrtc_seconds: f64,
    /// Peak device memory in use (GPU), bytes.
    #[serde(default)]
    pub device_memory_peak: u64,
    /// Seconds to write the results file (after `total`).
    #[serde(default)]
    pub write_seconds: f64,
    /// Seconds from the start of loading to the results file written
    /// (`total`, the release of the pipeline, the write).
    #[serde(default)]
    pub written_seconds: f64,
}

/// Results of one case.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CaseResult {
    /// Case label.
    pub label: String,
    /// Mesh label.
    pub mesh: String,
    /// Nodes.
    pub nodes: usize,
    /// Elements.
    pub elements: usize,
    /// Per phase (load, quadrature, assembly, boundary, solve, post, total).
    pub phases: Vec<Stat>,
    /// Iterations (of the last run).
    pub iterations: usize,
    /// True residual (of the last run).
    pub true_residual: f64,
    /// Largest peak RSS over the runs (bytes).
    pub peak_rss: u64,
    /// Max relative difference of `u`, `abs_vel` and `pressure` to the first
    /// case on the same mesh (0 for the first case itself).
    pub max_rel_diff: f64,
    /// Max relative difference of `u` alone to the first case.
    pub max_rel_diff_u: f64,
    /// Whether that difference is within the suite's tolerance.
    pub equivalent: bool,
    /// Counted runs behind the statistics.
    pub runs: usize,
    /// Bytes copied host to device (GPU backends), last run.
    pub bytes_to_device: u64,
    /// Bytes copied device to host (GPU backends), last run.
    pub bytes_to_host: u64,
    /// NVRTC compile seconds of the last run (0 with a PTX cache hit).
    pub nvrtc_seconds: f64,
    /// Largest peak device memory over the runs (GPU), bytes.
    #[serde(default)]
    pub device_memory_peak: u64,
    /// Median CG bandwidth (counted bytes / iteration time), GB/s.
    pub cg_gbps: f64,
    /// Seconds to write the results file.
    #[serde(default)]
    pub write: Stat,
    /// Load to the results file written (`total`, releasing the pipeline,
    /// the write), per run.
    #[serde(default)]
    pub written: Stat,
}

/// Names of the seven timed quantities, in record order.
pub const COLUMNS: [&str; 7] = [
    "load",
    "quadrature",
    "assembly",
    "boundary",
    "solve",
    "post",
    "total",
];

/// Whole-suite output.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// Suite name.
    pub suite: String,
    /// Machine description.
    pub machine: Machine,
    /// UTC date and time.
    pub date: String,
    /// Git revision of the binary's checkout.
    pub git_revision: String,
    /// The command that produced this.
    pub command: String,
    /// Warm-up runs and repeats.
    pub warmup: usize,
    /// Counted repeats.
    pub repeats: usize,
    /// All cases.
    pub cases: Vec<CaseResult>,
}

/// The machine a report was measured on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Machine {
    /// Short name (folder under the suite).
    pub name: String,
    /// CPU model.
    pub cpu: String,
    /// Logical cores.
    pub cores: usize,
    /// Memory, GiB.
    pub memory_gib: f64,
    /// GPU and driver (nvidia-smi), if any.
    pub gpu: Option<String>,
}

impl Machine {
    /// Describes this machine.
    pub fn detect() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let mem_kb: f64 = std::fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("MemTotal"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        let gpu = Command::new("nvidia-smi")
            .args(["--query-gpu=name,driver_version", "--format=csv,noheader"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .filter(|s| !s.is_empty());
        let slug = |s: &str| {
            s.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_lowercase()
                    } else {
                        '-'
                    }
                })
                .collect::<String>()
                .split('-')
                .filter(|p| !p.is_empty())
                .collect::<Vec<_>>()
                .join("-")
        };
        let name = match &gpu {
            Some(g) => format!(
                "{}-{}c-{}",
                slug(&cpu),
                cores,
                slug(g.split(',').next().unwrap_or(""))
            ),
            None => format!("{}-{}c", slug(&cpu), cores),
        };
        Self {
            name,
            cpu,
            cores,
            memory_gib: mem_kb / 1024.0 / 1024.0,
            gpu,
        }
    }
}

/// Peak resident memory of this process, from `/proc/self/status`.
pub fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// Max over fields of `max |a - b| / max |b|`.
pub fn max_rel_diff(a: &[&[f64]], b: &[&[f64]]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            if x.len() != y.len() {
                return f64::INFINITY;
            }
            let scale = y
                .iter()
                .fold(0.0f64, |m, v| m.max(v.abs()))
                .max(f64::MIN_POSITIVE);
            x.iter().zip(y.iter()).fold(0.0f64, |m, (p, q)| {
                let d = (p - q).abs();
                if d.is_nan() { f64::INFINITY } else { m.max(d) }
            }) / scale
        })
        .fold(0.0, f64::max)
}

/// Summarises the repeats of one case.
pub fn summarise(label: &str, mesh: &str, runs: &[RunRecord]) -> CaseResult {
    let phases = (0..COLUMNS.len())
        .map(|k| {
            Stat::of(
                &runs
                    .iter()
                    .map(|r| r.seconds.get(k).copied().unwrap_or(0.0))
                    .collect::<Vec<_>>(),
            )
        })
        .collect();
    let last = runs.last().cloned().unwrap_or_default();
    let gbps = Stat::of(
        &runs
            .iter()
            .filter(|r| r.iterations > 0 && r.iteration_seconds > 0.0)
            .map(|r| r.bytes_per_iteration as f64 * r.iterations as f64 / r.iteration_seconds / 1e9)
            .collect::<Vec<_>>(),
    )
    .median;
    CaseResult {
        label: label.into(),
        mesh: mesh.into(),
        nodes: last.nodes,
        elements: last.elements,
        phases,
        iterations: last.iterations,
        true_residual: last.true_residual,
        peak_rss: runs.iter().map(|r| r.peak_rss).max().unwrap_or(0),
        max_rel_diff: 0.0,
        max_rel_diff_u: 0.0,
        equivalent: true,
        runs: runs.len(),
        bytes_to_device: last.bytes_to_device,
        bytes_to_host: last.bytes_to_host,
        nvrtc_seconds: last.nvrtc_seconds,
        device_memory_peak: runs.iter().map(|r| r.device_memory_peak).max().unwrap_or(0),
        cg_gbps: gbps,
        write: Stat::of(&runs.iter().map(|r| r.write_seconds).collect::<Vec<_>>()),
        written: Stat::of(&runs.iter().map(|r| r.written_seconds).collect::<Vec<_>>()),
    }
}

/// `YYYY-MM-DD HH:MM:SS UTC` from the system clock.
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // civil-from-days (Howard Hinnant's algorithm)
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// The Markdown table of a report: per case the median phase times,
/// speed-up of the total against the first case on the same mesh,
/// iterations, CG bandwidth, memory and the equivalence verdict.
pub fn markdown(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Benchmark suite `{}`\n", r.suite);
    let _ = writeln!(
        s,
        "- machine: {} ({} logical cores, {:.1} GiB){}\n- date: {}\n- git revision: {}\n- command: `{}`\n- {} warm-up run(s), {} counted repeats per case, each run a fresh process; times are medians (min-max in results.json)\n",
        r.machine.cpu,
        r.machine.cores,
        r.machine.memory_gib,
        r.machine
            .gpu
            .as_ref()
            .map(|g| format!(", GPU {g}"))
            .unwrap_or_default(),
        r.date,
        r.git_revision,
        r.command,
        r.warmup,
        r.repeats
    );
    let _ = writeln!(
        s,
        "| mesh | case | nodes | load | quadrature | assembly | boundary | solve | post | total | write | written | speed-up | iterations | CG GB/s | peak RSS MiB | GPU MiB | MB to/from device | u diff | equivalent |"
    );
    let _ = writeln!(
        s,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    );
    let mut first_total: Option<(String, f64)> = None;
    for c in &r.cases {
        if first_total.as_ref().map(|f| f.0 != c.mesh).unwrap_or(true) {
            first_total = Some((c.mesh.clone(), c.phases[6].median));
        }
        let base = first_total.as_ref().map(|f| f.1).unwrap_or(1.0);
        let _ = write!(s, "| {} | {} | {} |", c.mesh, c.label, c.nodes);
        for p in &c.phases {
            let _ = write!(s, " {:.4} |", p.median);
        }
        let _ = write!(s, " {:.4} | {:.4} |", c.write.median, c.written.median);
        let _ = writeln!(
            s,
            " {:.2}x | {} | {:.1} | {:.0} | {} | {} | {:.1e} | {} |",
            base / c.phases[6].median.max(1e-12),
            c.iterations,
            c.cg_gbps,
            c.peak_rss as f64 / 1048576.0,
            if c.device_memory_peak > 0 {
                format!("{:.0}", c.device_memory_peak as f64 / 1048576.0)
            } else {
                "-".into()
            },
            if c.bytes_to_device + c.bytes_to_host > 0 {
                format!(
                    "{:.1} / {:.1}",
                    c.bytes_to_device as f64 / 1e6,
                    c.bytes_to_host as f64 / 1e6
                )
            } else {
                "-".into()
            },
            c.max_rel_diff_u,
            if c.equivalent {
                format!("yes ({:.1e})", c.max_rel_diff)
            } else {
                format!("**NO** ({:.1e})", c.max_rel_diff)
            }
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_median_min_max() {
        assert_eq!(
            Stat::of(&[3.0, 1.0, 2.0]),
            Stat {
                median: 2.0,
                min: 1.0,
                max: 3.0
            }
        );
        assert_eq!(Stat::of(&[4.0, 1.0, 2.0, 3.0]).median, 2.5);
        assert_eq!(Stat::of(&[]), Stat::default());
    }

    #[test]
    fn equivalence_flags_a_differing_field() {
        let a = [1.0, 2.0, 4.0];
        let b = [1.0, 2.0, 4.0 + 1e-3];
        assert_eq!(max_rel_diff(&[&a], &[&a]), 0.0);
        let d = max_rel_diff(&[&a, &a], &[&a, &b]);
        assert!((d - 1e-3 / 4.001).abs() < 1e-12, "{d}");
        assert_eq!(max_rel_diff(&[&a], &[&a[..2]]), f64::INFINITY);
        assert_eq!(max_rel_diff(&[&[f64::NAN]], &[&[1.0]]), f64::INFINITY);
        // a summary flagged by the suite tolerance
        let mut c = summarise("x", "m", &[RunRecord::default()]);
        c.max_rel_diff = d;
        c.equivalent = c.max_rel_diff <= 1e-6;
        assert!(!c.equivalent);
        let report = Report {
            suite: "t".into(),
            machine: Machine::detect(),
            date: utc_now(),
            git_revision: "r".into(),
            command: "c".into(),
            warmup: 0,
            repeats: 1,
            cases: vec![c],
        };
        assert!(markdown(&report).contains("**NO**"));
    }

    #[test]
    fn dates_are_civil() {
        let d = utc_now();
        assert!(
            d.starts_with("20") && d.ends_with("UTC") && d.len() == 23,
            "{d}"
        );
    }
}
