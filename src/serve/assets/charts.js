// Canvas charts for quadflow's page (no library): the convergence plot,
// the timeline of phases and the comparison of runs.

export const PHASES = ["load", "quadrature", "assembly", "boundary", "solve", "post"];

function css(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || "#888";
}

// a canvas sized to its CSS box at the device's pixel ratio; returns the 2D context and its size in CSS pixels
function prepare(canvas) {
  const d = window.devicePixelRatio || 1, r = canvas.getBoundingClientRect();
  const w = Math.max(50, r.width), h = Math.max(50, canvas.clientHeight || canvas.height);
  if (canvas.width !== Math.round(w * d) || canvas.height !== Math.round(h * d)) {
    canvas.width = Math.round(w * d);
    canvas.height = Math.round(h * d);
  }
  const g = canvas.getContext("2d");
  g.setTransform(d, 0, 0, d, 0, 0);
  g.clearRect(0, 0, w, h);
  g.font = "11px system-ui, sans-serif";
  return { g, w, h };
}

export function fmtSeconds(s) {
  if (!isFinite(s)) return "-";
  if (s === 0) return "0";
  if (s >= 10) return s.toFixed(1) + " s";
  if (s >= 1) return s.toFixed(2) + " s";
  if (s >= 1e-3) return (s * 1e3).toFixed(s >= 0.1 ? 0 : 1) + " ms";
  return (s * 1e6).toFixed(0) + " µs";
}

export function fmtNumber(v) {
  if (v === null || v === undefined || !isFinite(v)) return "-";
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return v.toExponential(3);
  return (+v.toPrecision(6)).toString();
}

// nice tick steps (1, 2, 5 times a power of ten) over [lo, hi]
export function ticks(lo, hi, n = 5) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / n, p = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((k) => k * p).find((s) => s >= raw) || raw;
  const out = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) out.push(+t.toPrecision(12));
  return out;
}

// log10 residual against iteration; a dashed line at rtol
export function drawConvergence(canvas, points, rtol, maxIter) {
  const { g, w, h } = prepare(canvas);
  // CG starts from u = 0: relative residual 1 at iteration 0
  if (points.length) points = [[0, 1], ...points];
  const L = 44, R = 10, T = 10, B = 26;
  const pw = w - L - R, ph = h - T - B;
  const last = points.length ? points[points.length - 1][0] : 0;
  const xmax = Math.max(10, last * 1.05, maxIter || 0);
  let ymin = Math.log10(rtol || 1e-8) - 0.5, ymax = 0.5;
  for (const [, r] of points) if (r > 0) { ymin = Math.min(ymin, Math.log10(r)); ymax = Math.max(ymax, Math.log10(r)); }
  ymin = Math.floor(ymin); ymax = Math.ceil(ymax);
  const X = (i) => L + (i / xmax) * pw, Y = (l) => T + (1 - (l - ymin) / (ymax - ymin)) * ph;
  g.strokeStyle = css("--grid"); g.fillStyle = css("--muted"); g.lineWidth = 1;
  const step = Math.max(1, Math.ceil((ymax - ymin) / 6));
  for (let l = ymin; l <= ymax; l += step) {
    g.beginPath(); g.moveTo(L, Y(l)); g.lineTo(L + pw, Y(l)); g.stroke();
    g.textAlign = "right"; g.textBaseline = "middle"; g.fillText("1e" + l, L - 4, Y(l));
  }
  g.textAlign = "center"; g.textBaseline = "top";
  for (const t of ticks(0, xmax, 5)) {
    g.beginPath(); g.moveTo(X(t), T); g.lineTo(X(t), T + ph); g.stroke();
    g.fillText(t.toString(), X(t), T + ph + 4);
  }
  g.fillText("iteration", L + pw / 2, T + ph + 14);
  if (rtol) {
    g.setLineDash([4, 3]); g.strokeStyle = css("--warn");
    g.beginPath(); g.moveTo(L, Y(Math.log10(rtol))); g.lineTo(L + pw, Y(Math.log10(rtol))); g.stroke();
    g.setLineDash([]); g.fillStyle = css("--warn"); g.textAlign = "right"; g.textBaseline = "bottom";
    g.fillText("rtol", L + pw, Y(Math.log10(rtol)) - 1);
  }
  g.strokeStyle = css("--plot"); g.lineWidth = 1.6; g.beginPath();
  let started = false;
  for (const [i, r] of points) {
    if (!(r > 0)) continue;
    const x = X(i), y = Y(Math.log10(r));
    if (started) g.lineTo(x, y); else { g.moveTo(x, y); started = true; }
  }
  g.stroke();
  if (points.length) {
    const [i, r] = points[points.length - 1];
    g.fillStyle = css("--plot");
    g.beginPath(); g.arc(X(i), Y(Math.log10(Math.max(r, 1e-300))), 3, 0, 7); g.fill();
  }
}

// one bar per phase, from its start for its duration, labelled with its backend
export function drawTimeline(canvas, bars) {
  const { g, w, h } = prepare(canvas);
  if (!bars || !bars.length) {
    g.fillStyle = css("--muted"); g.fillText("the phases of the run appear here", 8, 16);
    return;
  }
  const L = 112, R = 10, T = 4, B = 18;
  const t0 = Math.min(...bars.map((b) => b.start)), t1 = Math.max(...bars.map((b) => b.start + b.seconds));
  const span = Math.max(t1 - t0, 1e-9), rows = bars.length, rh = (h - T - B) / rows;
  const X = (t) => L + ((t - t0) / span) * (w - L - R);
  bars.forEach((b, i) => {
    const y = T + i * rh;
    g.fillStyle = css("--fg"); g.textAlign = "left"; g.textBaseline = "middle";
    g.fillText(b.phase, 4, y + rh / 2);
    g.fillStyle = css("--muted");
    g.fillText(b.backend === "-" ? "" : b.backend, 66, y + rh / 2);
    g.fillStyle = css("--phase-" + b.phase);
    const x = X(b.start), bw = Math.max(1.5, X(b.start + b.seconds) - x);
    g.fillRect(x, y + 2, bw, rh - 4);
    // the duration after the bar, else inside it, else before it
    const label = fmtSeconds(b.seconds), tw = g.measureText(label).width + 8;
    if (x + bw + tw < w) {
      g.fillStyle = css("--fg"); g.textAlign = "left"; g.fillText(label, x + bw + 4, y + rh / 2);
    } else if (bw > tw) {
      g.fillStyle = "#fff"; g.textAlign = "right"; g.fillText(label, x + bw - 4, y + rh / 2);
    } else {
      g.fillStyle = css("--fg"); g.textAlign = "right"; g.fillText(label, x - 4, y + rh / 2);
    }
  });
  g.strokeStyle = css("--grid"); g.fillStyle = css("--muted"); g.textAlign = "center"; g.textBaseline = "top";
  for (const t of ticks(0, span, 4)) g.fillText(fmtSeconds(t), X(t0 + t), h - B + 4);
}

// the comparison: per run, the stacked time of its phases, and its speed-up against serial
export function drawCompare(canvas, rows) {
  const { g, w, h } = prepare(canvas);
  const done = rows.filter((r) => r.times);
  if (!done.length) {
    g.fillStyle = css("--muted"); g.fillText("runs appear here as they finish", 10, 20);
    return;
  }
  const L = 170, R = 120, T = 30, B = 26;
  const total = (r) => PHASES.reduce((a, p) => a + (r.times[p] || 0), 0);
  const tmax = Math.max(...done.map(total));
  const rh = Math.min(28, (h - T - B) / rows.length);
  const X = (t) => L + (t / tmax) * (w - L - R);
  // legend
  let lx = L;
  g.textBaseline = "middle";
  for (const p of PHASES) {
    g.fillStyle = css("--phase-" + p); g.fillRect(lx, 8, 10, 10);
    g.fillStyle = css("--fg"); g.textAlign = "left"; g.fillText(p, lx + 14, 13);
    lx += g.measureText(p).width + 30;
  }
  g.fillStyle = css("--muted"); g.textAlign = "right"; g.fillText("speed-up vs serial", w - 4, 13);
  rows.forEach((r, i) => {
    const y = T + i * rh;
    g.textAlign = "right"; g.fillStyle = r.differs ? css("--err") : css("--fg");
    g.fillText(`${r.backend_name} · ${r.solver}${r.differs ? "  ≠" : ""}`, L - 8, y + rh / 2);
    if (!r.times) {
      g.textAlign = "left"; g.fillStyle = css("--muted");
      g.fillText(r.status === "failed" ? "failed: " + (r.error || "") : r.status + "…", L + 4, y + rh / 2);
      return;
    }
    let t = 0;
    for (const p of PHASES) {
      const d = r.times[p] || 0;
      g.fillStyle = css("--phase-" + p);
      g.fillRect(X(t), y + 3, Math.max(0.5, X(t + d) - X(t)), rh - 6);
      t += d;
    }
    g.textAlign = "left"; g.fillStyle = css("--fg");
    g.fillText(fmtSeconds(t), X(t) + 4, y + rh / 2);
    if (r.speedup_vs_serial !== undefined) {
      g.textAlign = "right";
      g.fillStyle = r.speedup_vs_serial >= 1 ? css("--ok") : css("--muted");
      g.fillText(r.speedup_vs_serial.toFixed(2) + "×", w - 4, y + rh / 2);
    }
  });
  g.strokeStyle = css("--grid"); g.fillStyle = css("--muted"); g.textAlign = "center"; g.textBaseline = "top";
  for (const t of ticks(0, tmax, 5)) g.fillText(fmtSeconds(t), X(t), T + rows.length * rh + 6);
}

// the colour bar of the field view: gradient, ticks and the field's name
export function drawColorbar(canvas, colormap, lo, hi, label) {
  const { g, w, h } = prepare(canvas);
  const x = 6, y = 18, bw = 14, bh = h - 30;
  for (let i = 0; i < bh; i++) {
    const c = colormap(1 - i / (bh - 1));
    g.fillStyle = `rgb(${c[0]},${c[1]},${c[2]})`;
    g.fillRect(x, y + i, bw, 1.5);
  }
  g.strokeStyle = css("--fg"); g.strokeRect(x, y, bw, bh);
  g.fillStyle = css("--fg"); g.textAlign = "left"; g.textBaseline = "middle";
  g.font = "600 11px system-ui, sans-serif";
  g.fillText(label, 2, 8);
  g.font = "10px system-ui, sans-serif";
  const ts = hi > lo ? ticks(lo, hi, 5) : [lo];
  for (const t of ts) {
    const yy = y + (1 - (t - lo) / (hi - lo || 1)) * bh;
    g.fillRect(x + bw, yy, 3, 1);
    g.fillText(fmtNumber(t), x + bw + 5, yy);
  }
}
