//! Charts of a benchmark report (PNG, drawn with the rasteriser of
//! [`crate::viz::raster`]): stacked per-phase time per case, and total time
//! against mesh size on log-log axes per case label with a fitted slope
//! (the study's scaling question, `docs/execution-models.md`).

use super::report::{COLUMNS, CaseResult, Report};
use crate::error::AppError;
use crate::viz::raster::{Image, Rgb, text_width, write_png};
use std::path::Path;

const TEXT: Rgb = [20, 20, 20];
const GRID: Rgb = [200, 200, 200];
/// Colours of load, quadrature, assembly, boundary, solve, post.
const PHASE_COLOURS: [Rgb; 6] = [
    [150, 150, 150],
    [68, 1, 84],
    [59, 82, 139],
    [33, 145, 140],
    [94, 201, 98],
    [253, 231, 37],
];
/// Colours of the series of the scaling chart.
const SERIES: [Rgb; 6] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
];

/// Least-squares slope and intercept of `log10 y` against `log10 x`.
pub fn loglog_fit(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    let pts: Vec<(f64, f64)> = points
        .iter()
        .filter(|(x, y)| *x > 0.0 && *y > 0.0)
        .map(|(x, y)| (x.log10(), y.log10()))
        .collect();
    if pts.len() < 2 {
        return None;
    }
    let n = pts.len() as f64;
    let (sx, sy) = pts.iter().fold((0.0, 0.0), |a, p| (a.0 + p.0, a.1 + p.1));
    let (mx, my) = (sx / n, sy / n);
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx == 0.0 {
        return None;
    }
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let slope = sxy / sxx;
    Some((slope, my - slope * mx))
}

/// Longest case label drawn in full; longer ones keep their start and end.
const MAX_LABEL: usize = 64;

/// `label`, shortened in the middle to at most [`MAX_LABEL`] characters.
fn fit_label(label: &str) -> String {
    let n = label.chars().count();
    if n <= MAX_LABEL {
        return label.to_string();
    }
    let keep = (MAX_LABEL - 3) / 2;
    let head: String = label.chars().take(keep).collect();
    let tail: String = label.chars().skip(n - (MAX_LABEL - 3 - keep)).collect();
    format!("{head}...{tail}")
}

/// Where a chart of one bar per case puts things: the labels end at
/// `left - 10`, bars span `left..left + bars`, the longest bar's value ends
/// before `w - PAD`.
#[derive(Debug, Clone, PartialEq)]
pub struct BarLayout {
    /// Image width.
    pub w: i64,
    /// Start of the bars.
    pub left: i64,
    /// Width of the longest bar.
    pub bars: i64,
    /// The labels, shortened to fit.
    pub labels: Vec<String>,
}

/// Margin around everything.
const PAD: i64 = 20;

/// The layout of bars labelled `labels` with value texts `values` (the
/// longest bar's value is drawn right of it), under `title` and above a
/// legend `legend` pixels wide, the bars at least 700 pixels long.
pub fn bar_layout(labels: &[String], values: &[String], title: &str, legend: i64) -> BarLayout {
    let labels: Vec<String> = labels.iter().map(|l| fit_label(l)).collect();
    let label_w = labels.iter().map(|l| text_width(l, 2)).max().unwrap_or(0);
    let value_w = values.iter().map(|v| text_width(v, 2)).max().unwrap_or(0);
    let left = PAD + label_w + 10;
    let bars = (1400 - left - 6 - value_w - PAD).max(700);
    let w = (left + bars + 6 + value_w + PAD)
        .max(2 * PAD + text_width(title, 2))
        .max(left + legend + PAD);
    BarLayout {
        w,
        left,
        bars,
        labels,
    }
}

/// Horizontal stacked bars: one per case, segments per phase (seconds),
/// the total at the end of each bar; labels and values always fit.
pub fn phases_chart(r: &Report) -> Image {
    let rows = r.cases.len().max(1) as i64;
    let (bar_h, top) = (26i64, 70i64);
    let title = format!("{}: time per phase (median s), {}", r.suite, r.machine.cpu);
    let labels: Vec<String> = r
        .cases
        .iter()
        .map(|c| format!("{} / {}", c.mesh, c.label))
        .collect();
    let totals: Vec<f64> = r
        .cases
        .iter()
        .map(|c| c.phases.get(6).map_or(0.0, |p| p.median))
        .collect();
    let values: Vec<String> = totals.iter().map(|t| format!("{t:.3} s")).collect();
    let legend: i64 = COLUMNS.iter().map(|n| 40 + text_width(n, 2)).sum();
    let l = bar_layout(&labels, &values, &title, legend);
    let h = top + rows * (bar_h + 10) + 90;
    let mut img = Image::new(l.w as u32, h as u32);
    img.text(PAD, 20, &title, 2, TEXT);
    let max_total = r
        .cases
        .iter()
        .map(|c| c.phases.iter().take(6).map(|p| p.median).sum::<f64>())
        .fold(0.0f64, f64::max)
        .max(1e-9);
    let scale = l.bars as f64 / max_total;
    for (i, c) in r.cases.iter().enumerate() {
        let y = top + i as i64 * (bar_h + 10);
        let label = &l.labels[i];
        img.text(l.left - 10 - text_width(label, 2), y + 6, label, 2, TEXT);
        let mut x = l.left as f64;
        for (k, colour) in PHASE_COLOURS.iter().enumerate() {
            let dx = c.phases.get(k).map_or(0.0, |p| p.median) * scale;
            img.fill(
                x.round() as i64,
                y,
                dx.round().max(0.0) as i64,
                bar_h,
                *colour,
            );
            x += dx;
        }
        img.text(x.round() as i64 + 6, y + 6, &values[i], 2, TEXT);
    }
    let ly = top + rows * (bar_h + 10) + 20;
    let mut lx = l.left;
    for (name, colour) in COLUMNS.iter().zip(PHASE_COLOURS) {
        img.fill(lx, ly, 18, 18, colour);
        img.text(lx + 24, ly + 2, name, 2, TEXT);
        lx += 40 + text_width(name, 2);
    }
    img
}

/// Total time per case as bars, with the speed-up over the first case of
/// the same mesh: what `scaling.png` shows for a suite of one mesh size,
/// where a plot against mesh size would be one column of dots.
pub fn totals_chart(r: &Report) -> Image {
    let rows = r.cases.len().max(1) as i64;
    let (bar_h, top) = (26i64, 100i64);
    let nodes = r.cases.first().map_or(0, |c| c.nodes);
    let title = format!("{}: total time per case (median s)", r.suite);
    let subtitle = format!(
        "one mesh size ({nodes} nodes): no scaling with size to plot; speed-up over the first case of the mesh"
    );
    let labels: Vec<String> = r
        .cases
        .iter()
        .map(|c| format!("{} / {}", c.mesh, c.label))
        .collect();
    let total = |c: &CaseResult| c.phases.get(6).map_or(0.0, |p| p.median);
    let values: Vec<String> = r
        .cases
        .iter()
        .map(|c| {
            let first = r.cases.iter().find(|f| f.mesh == c.mesh).map_or(0.0, total);
            if total(c) > 0.0 && first > 0.0 {
                format!("{:.3} s ({:.2}x)", total(c), first / total(c))
            } else {
                format!("{:.3} s", total(c))
            }
        })
        .collect();
    let l = bar_layout(&labels, &values, &subtitle, 0);
    let h = top + rows * (bar_h + 10) + 40;
    let mut img = Image::new(l.w as u32, h as u32);
    img.text(PAD, 20, &title, 2, TEXT);
    img.text(PAD, 50, &subtitle, 2, TEXT);
    let max = r.cases.iter().map(total).fold(0.0f64, f64::max).max(1e-9);
    for (i, c) in r.cases.iter().enumerate() {
        let y = top + i as i64 * (bar_h + 10);
        let label = &l.labels[i];
        img.text(l.left - 10 - text_width(label, 2), y + 6, label, 2, TEXT);
        let dx = (total(c) / max * l.bars as f64).round().max(0.0) as i64;
        img.fill(l.left, y, dx, bar_h, SERIES[i % SERIES.len()]);
        img.text(l.left + dx + 6, y + 6, &values[i], 2, TEXT);
    }
    img
}

/// Log-log total time against nodes, one series per case label, each with
/// its fitted slope; [`totals_chart`] where the suite has one mesh size.
pub fn scaling_chart(r: &Report) -> Image {
    let mut sizes: Vec<usize> = r.cases.iter().map(|c| c.nodes).filter(|&n| n > 0).collect();
    sizes.sort_unstable();
    sizes.dedup();
    if sizes.len() < 2 && !r.cases.is_empty() {
        return totals_chart(r);
    }
    let (w, h, left, right, top, bottom) = (1200i64, 800i64, 110i64, 330i64, 70i64, 90i64);
    let mut img = Image::new(w as u32, h as u32);
    img.text(
        20,
        20,
        &format!("{}: total time vs mesh size (log-log)", r.suite),
        2,
        TEXT,
    );
    let mut labels: Vec<&str> = Vec::new();
    for c in &r.cases {
        if !labels.contains(&c.label.as_str()) {
            labels.push(&c.label);
        }
    }
    let pts = |label: &str| -> Vec<(f64, f64)> {
        let mut v: Vec<(f64, f64)> = r
            .cases
            .iter()
            .filter(|c: &&CaseResult| c.label == label && c.nodes > 0)
            .map(|c| (c.nodes as f64, c.phases.get(6).map_or(0.0, |p| p.median)))
            .filter(|p| p.1 > 0.0)
            .collect();
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
        v
    };
    let all: Vec<(f64, f64)> = labels.iter().flat_map(|l| pts(l)).collect();
    if all.is_empty() {
        img.text(left, top + 20, "no data", 2, TEXT);
        return img;
    }
    let lg = |v: f64| v.log10();
    let (x0, x1) = all.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |a, p| {
        (a.0.min(lg(p.0)), a.1.max(lg(p.0)))
    });
    let (y0, y1) = all.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |a, p| {
        (a.0.min(lg(p.1)), a.1.max(lg(p.1)))
    });
    let (x0, x1) = (x0.floor(), x1.ceil().max(x0.floor() + 1.0));
    let (y0, y1) = (y0.floor(), y1.ceil().max(y0.floor() + 1.0));
    let (pw, ph) = ((w - left - right) as f64, (h - top - bottom) as f64);
    let px = |x: f64| left as f64 + (lg(x) - x0) / (x1 - x0) * pw;
    let py = |y: f64| top as f64 + (1.0 - (lg(y) - y0) / (y1 - y0)) * ph;
    for d in x0 as i64..=x1 as i64 {
        let x = left as f64 + (d as f64 - x0) / (x1 - x0) * pw;
        img.line((x, top as f64), (x, (h - bottom) as f64), GRID, 1.0);
        let t = format!("1e{d}");
        img.text(
            x as i64 - text_width(&t, 2) / 2,
            h - bottom + 10,
            &t,
            2,
            TEXT,
        );
    }
    for d in y0 as i64..=y1 as i64 {
        let y = top as f64 + (1.0 - (d as f64 - y0) / (y1 - y0)) * ph;
        img.line((left as f64, y), ((w - right) as f64, y), GRID, 1.0);
        let t = format!("1e{d} s");
        img.text(left - 10 - text_width(&t, 2), y as i64 - 7, &t, 2, TEXT);
    }
    img.text(left + pw as i64 / 2 - 40, h - bottom + 40, "nodes", 2, TEXT);
    for (k, label) in labels.iter().enumerate() {
        let colour = SERIES[k % SERIES.len()];
        let p = pts(label);
        for win in p.windows(2) {
            img.line(
                (px(win[0].0), py(win[0].1)),
                (px(win[1].0), py(win[1].1)),
                colour,
                1.0,
            );
        }
        for &(x, y) in &p {
            img.fill(px(x) as i64 - 4, py(y) as i64 - 4, 9, 9, colour);
        }
        let legend = match loglog_fit(&p) {
            Some((s, _)) => format!("{label}: slope {s:.2}"),
            None => label.to_string(),
        };
        let ly = top + 10 + k as i64 * 28;
        img.fill(w - right + 20, ly, 18, 18, colour);
        img.text(w - right + 46, ly + 2, &legend, 2, TEXT);
    }
    img
}

/// Writes `phases.png` and `scaling.png` into `dir`.
pub fn write_charts(r: &Report, dir: &Path) -> Result<(), AppError> {
    write_png(&dir.join("phases.png"), &phases_chart(r))
        .map_err(|e| AppError::Other(e.to_string()))?;
    write_png(&dir.join("scaling.png"), &scaling_chart(r))
        .map_err(|e| AppError::Other(e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn labels_and_values_always_fit() {
        let long = "a-very-long-mesh-name-from-a-generated-geometry / parallel-16t-batched-coo-with-a-long-variant-name".to_string();
        for labels in [
            vec!["m / a".to_string()],
            vec![long.clone(), "short".into()],
        ] {
            let values = vec!["12345.678 s".to_string(); labels.len()];
            let l = bar_layout(&labels, &values, "title", 500);
            for lab in &l.labels {
                // the label ends at left - 10 and starts inside the image
                assert!(l.left - 10 - text_width(lab, 2) >= PAD, "{lab}");
                assert!(lab.chars().count() <= MAX_LABEL);
            }
            // the longest bar's value ends inside the image
            assert!(l.left + l.bars + 6 + text_width(&values[0], 2) <= l.w - PAD);
            assert!(l.bars >= 700);
        }
        let short = fit_label(&long);
        assert!(
            short.starts_with("a-very-long")
                && short.ends_with("variant-name")
                && short.contains("...")
        );
    }

    use super::*;
    use crate::bench::report::{Machine, Stat};

    #[test]
    fn fit_recovers_a_power_law() {
        let pts: Vec<(f64, f64)> = [1e3f64, 1e4, 1e5, 1e6]
            .iter()
            .map(|&n| (n, 2e-6 * n.powf(1.5)))
            .collect();
        let (s, b) = loglog_fit(&pts).unwrap();
        assert!((s - 1.5).abs() < 1e-12 && (b - (2e-6f64).log10()).abs() < 1e-9);
        assert!(loglog_fit(&pts[..1]).is_none());
    }

    #[test]
    fn charts_draw_something() {
        let case = |label: &str, nodes: usize, t: f64| CaseResult {
            label: label.into(),
            mesh: format!("m{nodes}"),
            nodes,
            elements: nodes / 4,
            phases: (0..7)
                .map(|k| Stat {
                    median: t * (k as f64 + 1.0) / 28.0,
                    min: 0.0,
                    max: 0.0,
                })
                .collect(),
            iterations: 10,
            true_residual: 1e-9,
            peak_rss: 0,
            max_rel_diff: 0.0,
            max_rel_diff_u: 0.0,
            equivalent: true,
            runs: 1,
            bytes_to_device: 0,
            bytes_to_host: 0,
            nvrtc_seconds: 0.0,
            device_memory_peak: 0,
            cg_gbps: 0.0,
            write: Stat::default(),
            written: Stat::default(),
        };
        let r = Report {
            suite: "t".into(),
            machine: Machine::detect(),
            date: "d".into(),
            git_revision: "g".into(),
            command: "c".into(),
            warmup: 0,
            repeats: 1,
            cases: vec![
                case("a", 1000, 1.0),
                case("a", 10000, 10.0),
                case("b", 1000, 0.5),
                case("b", 10000, 2.0),
            ],
        };
        // every phase segment, and both series, are drawn
        for (img, wanted) in [
            (phases_chart(&r), PHASE_COLOURS.to_vec()),
            (scaling_chart(&r), SERIES[..2].to_vec()),
        ] {
            let distinct: std::collections::HashSet<[u8; 3]> =
                img.rgb.chunks(3).map(|c| [c[0], c[1], c[2]]).collect();
            for c in wanted {
                assert!(distinct.contains(&c), "colour {c:?} missing");
            }
            assert!(distinct.contains(&TEXT));
        }
        // one mesh size: bars per case, not a column of dots
        let mut one = r.clone();
        one.cases.retain(|c| c.nodes == 1000);
        let img = scaling_chart(&one);
        let count = |img: &Image, c: [u8; 3]| img.rgb.chunks(3).filter(|p| *p == c).count();
        assert!(count(&img, SERIES[0]) > 26 * 100, "no bars");
        assert!(count(&img, SERIES[1]) > 26 * 100, "no bars");
        let dir = tempfile::tempdir().unwrap();
        write_charts(&r, dir.path()).unwrap();
        assert!(dir.path().join("phases.png").exists() && dir.path().join("scaling.png").exists());
    }
}
