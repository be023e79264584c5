//! PNG pictures of a field over the mesh, without any system library: a
//! small rasteriser of our own, a built-in 5 x 7 bitmap font, and the
//! pure-Rust `png` encoder.
//!
//! The picture ([`render`], [`plot_png`]) shows the field filled over the
//! mesh with a viridis-like colour map, the domain's boundary, element
//! edges when elements are large enough to see (at least about 14 pixels
//! across), axes with tick labels in metres, a colour bar with its own
//! ticks, and a title line. The domain keeps its aspect ratio (equal scales
//! in x and y).
//!
//! Rasterisation: every element is cut into `k x k` sub-quadrilaterals of
//! its isoparametric map (so curved edges stay curved), each drawn as two
//! triangles whose pixels (those with their centre inside) take the
//! interpolated value: the Quad-8 interpolation of the nodal values for
//! `u`, the element's value for `abs_vel` and `pressure`. `k` is the same for
//! all elements (no cracks between neighbours) and shrinks to 1 for meshes
//! whose elements are a few pixels across, so a 1.3-million-node mesh costs
//! about as much as its pixel count.

use std::collections::HashMap;
use std::path::Path;

use quadflow_systems::element::shape;
use quadflow_systems::mesh::Mesh;

pub use super::raster::PlotError;
use super::raster::{BLACK, Image, Rgb, TEXT, colormap, text_width, write_png};

/// The fields a picture can show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// The potential, per node.
    U,
    /// The speed `|v|`, per element.
    AbsVel,
    /// The pressure, per element.
    Pressure,
}

impl Field {
    /// All fields.
    pub const ALL: [Field; 3] = [Field::U, Field::AbsVel, Field::Pressure];

    /// The name as in results files: `u`, `abs_vel`, `pressure`.
    pub fn name(self) -> &'static str {
        match self {
            Field::U => "u",
            Field::AbsVel => "abs_vel",
            Field::Pressure => "pressure",
        }
    }

    /// Parses a name as written by [`Field::name`].
    pub fn parse(s: &str) -> Option<Self> {
        Field::ALL.into_iter().find(|f| f.name() == s.trim())
    }

    /// The unit, for labels.
    pub fn unit(self) -> &'static str {
        match self {
            Field::U => "m^2/s",
            Field::AbsVel => "m/s",
            Field::Pressure => "Pa",
        }
    }

    /// Whether the field has one value per node (else one per element).
    pub fn per_node(self) -> bool {
        matches!(self, Field::U)
    }

    /// A label with the unit, e.g. `u [m^2/s]`.
    pub fn label(self) -> String {
        format!("{} [{}]", self.name(), self.unit())
    }
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Size and title of a picture.
#[derive(Debug, Clone, PartialEq)]
pub struct PlotOptions {
    /// Width in pixels (200 to 20000).
    pub width: u32,
    /// Height in pixels (150 to 20000).
    pub height: u32,
    /// The title line (see [`title`]).
    pub title: String,
    /// Draw element edges: `None` decides by element size.
    pub mesh_lines: Option<bool>,
}

impl Default for PlotOptions {
    fn default() -> Self {
        Self {
            width: 1600,
            height: 700,
            title: String::new(),
            mesh_lines: None,
        }
    }
}

/// The usual title: mesh, field and backend.
pub fn title(mesh_name: &str, field: Field, backend: &str) -> String {
    format!("{mesh_name} - {} - backend {backend}", field.label())
}

/// A short mesh name from a mesh origin as results files store it
/// (`mesh_source`): the generated shape and size (`venturi (~2000 nodes)`),
/// else the file name.
pub fn mesh_name(origin: &str) -> String {
    if let Some(g) = origin.strip_prefix("generated ") {
        return g.to_string();
    }
    Path::new(origin)
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| origin.to_string())
}

/// About `target` round tick values (steps of 1, 2 or 5 times a power of
/// ten) inside `[lo, hi]`, and the decimals their labels need.
fn ticks(lo: f64, hi: f64, target: f64) -> (Vec<f64>, usize) {
    let span = hi - lo;
    if span <= 0.0 || !span.is_finite() {
        return (vec![lo], 0);
    }
    let raw = span / target.max(1.0);
    let p = 10f64.powf(raw.log10().floor());
    // the round step whose tick count comes closest to the target
    let step = [0.5, 1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .min_by(|a, b| {
            let off = |s: f64| (span / s / target).ln().abs();
            off(*a).total_cmp(&off(*b))
        })
        .unwrap_or(p);
    let decimals = (-(step.log10() + 1e-9).floor()).max(0.0) as usize;
    let first = (lo / step - 1e-9).ceil() as i64;
    let last = (hi / step + 1e-9).floor() as i64;
    let v = (first..=last).map(|i| i as f64 * step).collect();
    (v, decimals)
}

/// A tick label: `v` with `decimals` decimals, without a `-0`.
fn tick_label(v: f64, decimals: usize) -> String {
    let s = format!("{v:.decimals$}");
    if s.starts_with('-') && s[1..].chars().all(|c| c == '0' || c == '.') {
        s[1..].to_string()
    } else {
        s
    }
}

// ---------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------

/// Fills the triangle `p` (pixel coordinates) clipped to `clip` (x0, y0,
/// x1, y1, exclusive ends), each pixel whose centre lies inside taking the
/// colour of the barycentric interpolation of `v`.
fn triangle(img: &mut Image, clip: [i64; 4], p: [(f64, f64); 3], v: [f64; 3], lut: &Lut) {
    let area = (p[1].0 - p[0].0) * (p[2].1 - p[0].1) - (p[1].1 - p[0].1) * (p[2].0 - p[0].0);
    if area.abs() < 1e-12 || !area.is_finite() {
        return;
    }
    let (minx, maxx) = (
        p[0].0.min(p[1].0).min(p[2].0),
        p[0].0.max(p[1].0).max(p[2].0),
    );
    let (miny, maxy) = (
        p[0].1.min(p[1].1).min(p[2].1),
        p[0].1.max(p[1].1).max(p[2].1),
    );
    let i0 = ((minx - 0.5).ceil() as i64).max(clip[0]);
    let i1 = ((maxx - 0.5).floor() as i64).min(clip[2] - 1);
    let j0 = ((miny - 0.5).ceil() as i64).max(clip[1]);
    let j1 = ((maxy - 0.5).floor() as i64).min(clip[3] - 1);
    let inv = 1.0 / area;
    let eps = -1e-7;
    for j in j0..=j1 {
        let yc = j as f64 + 0.5;
        for i in i0..=i1 {
            let xc = i as f64 + 0.5;
            let w0 = ((p[1].0 - xc) * (p[2].1 - yc) - (p[1].1 - yc) * (p[2].0 - xc)) * inv;
            let w1 = ((p[2].0 - xc) * (p[0].1 - yc) - (p[2].1 - yc) * (p[0].0 - xc)) * inv;
            let w2 = 1.0 - w0 - w1;
            if w0 >= eps && w1 >= eps && w2 >= eps {
                let val = w0 * v[0] + w1 * v[1] + w2 * v[2];
                img.set(i, j, lut.colour(val));
            }
        }
    }
}

/// Values to colours.
struct Lut {
    lo: f64,
    scale: f64,
    table: Vec<Rgb>,
}

impl Lut {
    fn new(lo: f64, hi: f64) -> Self {
        Self {
            lo,
            scale: 1023.0 / (hi - lo),
            table: (0..1024).map(|i| colormap(i as f64 / 1023.0)).collect(),
        }
    }
    fn colour(&self, v: f64) -> Rgb {
        let t = ((v - self.lo) * self.scale).round();
        let i = if t.is_nan() {
            0
        } else {
            t.clamp(0.0, 1023.0) as usize
        };
        self.table[i]
    }
}

/// Draws `values` (per node for [`Field::U`], per element otherwise) over
/// `mesh` as described in the module documentation.
///
/// # Errors
///
/// A [`PlotError`] when the size is out of range, `values` has the wrong
/// length, or no value is finite.
pub fn render(
    mesh: &Mesh,
    values: &[f64],
    field: Field,
    opts: &PlotOptions,
) -> Result<Image, PlotError> {
    let (w, h) = (opts.width, opts.height);
    if !(200..=20_000).contains(&w) || !(150..=20_000).contains(&h) {
        return Err(PlotError::new(
            "<plot>",
            format!("size {w} x {h} pixels is out of range (200..=20000 x 150..=20000)"),
        ));
    }
    let want = if field.per_node() {
        mesh.nodes()
    } else {
        mesh.elements.len()
    };
    if values.len() != want {
        return Err(PlotError::new(
            "<plot>",
            format!(
                "{} has {} values but the mesh has {want} {}",
                field.name(),
                values.len(),
                if field.per_node() {
                    "nodes"
                } else {
                    "elements"
                }
            ),
        ));
    }
    let (vlo, vhi) = values
        .iter()
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    if vlo > vhi {
        return Err(PlotError::new(
            "<plot>",
            format!("{} has no finite value to draw", field.name()),
        ));
    }
    let (vlo, vhi) = if vhi > vlo {
        (vlo, vhi)
    } else {
        let d = 0.5 * vlo.abs().max(1.0);
        (vlo - d, vhi + d)
    };

    // Domain box.
    let (mut xmin, mut xmax, mut ymin, mut ymax) = (
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
    );
    for (&x, &y) in mesh.x.iter().zip(&mesh.y) {
        xmin = xmin.min(x);
        xmax = xmax.max(x);
        ymin = ymin.min(y);
        ymax = ymax.max(y);
    }
    let pad = 0.01 * (xmax - xmin).max(ymax - ymin).max(1e-300);
    let (xmin, xmax, ymin, ymax) = (xmin - pad, xmax + pad, ymin - pad, ymax + pad);
    let (dx, dy) = (xmax - xmin, ymax - ymin);

    // Layout.
    let (wi, hi) = (i64::from(w), i64::from(h));
    let s: i64 = if w >= 800 && h >= 400 { 2 } else { 1 };
    let ch = 7 * s; // glyph height
    let tick = 5 * s;
    let mut ts = s + 1;
    while ts > 1 && text_width(&opts.title, ts) > wi - 20 {
        ts -= 1;
    }
    let mut title = opts.title.clone();
    if text_width(&title, ts) > wi - 20 {
        let keep = ((wi - 20 + ts) / (6 * ts)).max(4) as usize - 3;
        title = title.chars().take(keep).collect::<String>() + "...";
    }
    let top = 10 + 7 * ts + 20 + ch + 10;
    let bottom = tick + 6 + ch + 10 + ch + 12;
    let (cticks, cdec) = ticks(vlo, vhi, 6.0);
    let clabels: Vec<String> = cticks.iter().map(|&v| tick_label(v, cdec)).collect();
    let clabel_w = clabels.iter().map(|l| text_width(l, s)).max().unwrap_or(0);
    let bar_w = 16 * s;
    let right = (12 * s + bar_w + tick + 4 * s + clabel_w)
        .max(text_width(&field.label(), s) + 8 * s)
        + 10 * s;
    let mut left = (10 + text_width("-0.00", s) + 4 * s + tick).max(text_width("y [m]", s) + 14);
    let mut frame = (0i64, 0i64, 0i64, 0i64, 0.0f64); // x0, y0, w, h, scale
    let mut yt = (Vec::new(), 0usize);
    for _ in 0..2 {
        let aw = (wi - left - right - 10).max(20) as f64;
        let ah = (hi - top - bottom).max(20) as f64;
        let scale = (aw / dx).min(ah / dy);
        let fw = (dx * scale).round().max(1.0) as i64;
        let fh = (dy * scale).round().max(1.0) as i64;
        let total = left + fw + right;
        let x0 = ((wi - total) / 2).max(0) + left;
        let y0 = top + ((hi - top - bottom - fh) / 2).max(0);
        frame = (x0, y0, fw, fh, scale);
        yt = ticks(ymin, ymax, (fh as f64 / (40.0 * s as f64)).clamp(2.0, 8.0));
        let yw =
            yt.0.iter()
                .map(|&v| text_width(&tick_label(v, yt.1), s))
                .max()
                .unwrap_or(0);
        left = (10 + yw + 4 * s + tick).max(text_width("y [m]", s) + 14);
    }
    let (fx0, fy0, fw, fh, scale) = frame;
    let px = |x: f64| fx0 as f64 + (x - xmin) * scale;
    let py = |y: f64| fy0 as f64 + (ymax - y) * scale;

    let mut img = Image::new(w, h);
    let clip = [fx0, fy0, fx0 + fw, fy0 + fh];

    // Element sizes in pixels decide the subdivision and the mesh lines.
    let mut sizes: Vec<f64> = mesh
        .elements
        .iter()
        .map(|el| {
            let d = |a: usize, b: usize| {
                let (ea, eb) = (el[a] as usize, el[b] as usize);
                (mesh.x[ea] - mesh.x[eb]).hypot(mesh.y[ea] - mesh.y[eb])
            };
            d(0, 2).max(d(1, 3)) * scale
        })
        .collect();
    let biggest = sizes.iter().copied().fold(0.0f64, f64::max);
    let mid = sizes.len() / 2;
    let median = if sizes.is_empty() {
        0.0
    } else {
        *sizes.select_nth_unstable_by(mid, |a, b| a.total_cmp(b)).1
    };
    let mut k = ((biggest / 6.0).ceil() as usize).clamp(1, 24);
    while k > 1 && mesh.elements.len() * k * k > 8_000_000 {
        k -= 1;
    }

    // Field.
    let lut = Lut::new(vlo, vhi);
    let grid: Vec<f64> = (0..=k).map(|i| -1.0 + 2.0 * i as f64 / k as f64).collect();
    let shapes: Vec<[f64; 8]> = grid
        .iter()
        .flat_map(|&eta| grid.iter().map(move |&xi| shape(xi, eta)))
        .collect();
    let mut pts = vec![(0.0, 0.0); (k + 1) * (k + 1)];
    let mut vals = vec![0.0; (k + 1) * (k + 1)];
    for (e, el) in mesh.elements.iter().enumerate() {
        for (q, n) in shapes.iter().enumerate() {
            let (mut x, mut y, mut v) = (0.0, 0.0, 0.0);
            for a in 0..8 {
                let node = el[a] as usize;
                x += n[a] * mesh.x[node];
                y += n[a] * mesh.y[node];
                if field.per_node() {
                    v += n[a] * values[node];
                }
            }
            pts[q] = (px(x), py(y));
            vals[q] = if field.per_node() { v } else { values[e] };
        }
        for j in 0..k {
            for i in 0..k {
                let a = j * (k + 1) + i;
                let (b, c, d) = (a + 1, a + k + 2, a + k + 1);
                triangle(
                    &mut img,
                    clip,
                    [pts[a], pts[b], pts[c]],
                    [vals[a], vals[b], vals[c]],
                    &lut,
                );
                triangle(
                    &mut img,
                    clip,
                    [pts[a], pts[c], pts[d]],
                    [vals[a], vals[c], vals[d]],
                    &lut,
                );
            }
        }
    }

    // Element edges (when large enough to see) and the boundary.
    let lines = opts.mesh_lines.unwrap_or(median >= 14.0);
    let mut edges: HashMap<(u32, u32), (usize, usize, u32)> = HashMap::new();
    for (e, el) in mesh.elements.iter().enumerate() {
        for side in 0..4 {
            let (a, b) = (el[side], el[(side + 1) % 4]);
            edges
                .entry((a.min(b), a.max(b)))
                .and_modify(|x| x.2 += 1)
                .or_insert((e, side, 1));
        }
    }
    let segs = k.max(4);
    let mut edge_list: Vec<&(usize, usize, u32)> = edges.values().collect();
    edge_list.sort_unstable();
    for &&(e, side, count) in &edge_list {
        let boundary = count == 1;
        if !boundary && !lines {
            continue;
        }
        let el = &mesh.elements[e];
        let at = |t: f64| {
            let (xi, eta) = match side {
                0 => (t, -1.0),
                1 => (1.0, t),
                2 => (-t, 1.0),
                _ => (-1.0, -t),
            };
            let n = shape(xi, eta);
            let (mut x, mut y) = (0.0, 0.0);
            for a in 0..8 {
                x += n[a] * mesh.x[el[a] as usize];
                y += n[a] * mesh.y[el[a] as usize];
            }
            (px(x), py(y))
        };
        let (colour, alpha) = if boundary {
            ([40, 40, 40], 0.9)
        } else {
            ([30, 30, 30], 0.35)
        };
        let mut prev = at(-1.0);
        for i in 1..=segs {
            let next = at(-1.0 + 2.0 * i as f64 / segs as f64);
            img.line(prev, next, colour, alpha);
            prev = next;
        }
    }

    // Frame and axes.
    let (fx1, fy1) = (fx0 + fw, fy0 + fh);
    for x in fx0 - 1..=fx1 {
        img.set(x, fy0 - 1, BLACK);
        img.set(x, fy1, BLACK);
    }
    for y in fy0 - 1..=fy1 {
        img.set(fx0 - 1, y, BLACK);
        img.set(fx1, y, BLACK);
    }
    let (xt, xdec) = ticks(xmin, xmax, (fw as f64 / (90.0 * s as f64)).clamp(2.0, 12.0));
    for &t in &xt {
        let x = px(t).floor() as i64;
        img.fill(x, fy1 + 1, 1.max(s / 2), tick, BLACK);
        let l = tick_label(t, xdec);
        img.text(x - text_width(&l, s) / 2, fy1 + tick + 6, &l, s, TEXT);
    }
    for &t in &yt.0 {
        let y = py(t).floor() as i64;
        img.fill(fx0 - 1 - tick, y, tick, 1.max(s / 2), BLACK);
        let l = tick_label(t, yt.1);
        img.text(
            fx0 - 1 - tick - 4 * s - text_width(&l, s),
            y - ch / 2,
            &l,
            s,
            TEXT,
        );
    }
    let xl = "x [m]";
    img.text(
        fx0 + fw / 2 - text_width(xl, s) / 2,
        fy1 + tick + 6 + ch + 10,
        xl,
        s,
        TEXT,
    );
    let yl = "y [m]";
    img.text(
        (fx0 - 1 - tick - text_width(yl, s)).max(6),
        fy0 - ch - 10,
        yl,
        s,
        TEXT,
    );

    // Colour bar.
    let bx = fx1 + 12 * s;
    let bh = if fh >= 120 {
        fh
    } else {
        (hi - top - bottom).clamp(20, 240)
    };
    let by = fy0 + fh / 2 - bh / 2;
    for j in 0..bh {
        let t = 1.0 - (j as f64 + 0.5) / bh as f64;
        img.fill(bx, by + j, bar_w, 1, colormap(t));
    }
    for x in bx - 1..=bx + bar_w {
        img.set(x, by - 1, BLACK);
        img.set(x, by + bh, BLACK);
    }
    for y in by - 1..=by + bh {
        img.set(bx - 1, y, BLACK);
        img.set(bx + bar_w, y, BLACK);
    }
    for (&t, l) in cticks.iter().zip(&clabels) {
        let y = by + ((1.0 - (t - vlo) / (vhi - vlo)) * bh as f64).floor() as i64;
        let y = y.clamp(by, by + bh - 1);
        img.fill(bx + bar_w + 1, y, tick, 1.max(s / 2), BLACK);
        img.text(bx + bar_w + 1 + tick + 4 * s, y - ch / 2, l, s, TEXT);
    }
    img.text(bx, by - ch - 10, &field.label(), s, TEXT);

    // Title.
    img.text(wi / 2 - text_width(&title, ts) / 2, 10, &title, ts, TEXT);
    Ok(img)
}

/// Renders `values` over `mesh` ([`render`]) and writes the PNG ([`write_png`]).
///
/// # Errors
///
/// As [`render`] (with `path` named) and [`write_png`].
pub fn plot_png(
    path: &Path,
    mesh: &Mesh,
    values: &[f64],
    field: Field,
    opts: &PlotOptions,
) -> Result<(), PlotError> {
    let _s = tracing::info_span!("plot").entered();
    let img = render(mesh, values, field, opts).map_err(|e| PlotError {
        path: path.display().to_string(),
        message: e.message,
    })?;
    write_png(path, &img)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_values() {
        let (t, d) = ticks(0.0, 3.0, 6.0);
        assert_eq!(t, vec![0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]);
        assert_eq!(d, 1);
        let (t, d) = ticks(101_250.3, 101_328.8, 6.0);
        assert_eq!(d, 0);
        assert_eq!(t.first(), Some(&101_260.0));
        assert_eq!(t.last(), Some(&101_320.0));
        assert_eq!(tick_label(-0.0001, 2), "0.00");
        assert_eq!(tick_label(-0.5, 1), "-0.5");
        let (t, _) = ticks(-0.03, 1.03, 5.0);
        assert!(t.contains(&0.0) && t.contains(&1.0), "{t:?}");
    }

    #[test]
    fn mesh_names() {
        assert_eq!(
            mesh_name("generated venturi (~2000 nodes)"),
            "venturi (~2000 nodes)"
        );
        assert_eq!(mesh_name("/a/b/m.msh"), "m.msh");
    }
}
