// The field on the mesh in WebGL2, written for quadflow (no library).
//
// Vertex pulling: node coordinates, nodal and element values and the
// Quad-8 connectivity live in textures; one drawArrays call draws 6
// triangles per element (corner triangles and the mid-side quadrilateral),
// each vertex fetching its node, so per-node fields (u) interpolate and
// per-element ones (speed, pressure) are constant per element, as the
// engine computes them. Edges: 8 segments per element, the same way.
//
// Moving: a full draw of a million-node mesh in software GL takes longer
// than a frame, so while the view moves the last full frame is moved and
// scaled by the compositor (a CSS transform of the canvas: no GL work at
// all), and the mesh is drawn again, at the new view, when the motion
// stops (that is the "coarser mesh while moving").

const W = 2048; // texture width of every data texture

// viridis, the colour map of quadflow's PNG plots (viz::raster::colormap)
const VIRIDIS = [
  [68, 1, 84], [72, 40, 120], [62, 74, 137], [49, 104, 142], [38, 130, 142],
  [31, 158, 137], [53, 183, 121], [109, 205, 89], [180, 222, 44], [253, 231, 37],
];

export function viridis(t) {
  t = Math.min(1, Math.max(0, isFinite(t) ? t : 0)) * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(t)), f = t - i;
  return VIRIDIS[i].map((a, k) => Math.round(a + f * (VIRIDIS[i + 1][k] - a)));
}

const VS_FIELD = `#version 300 es
precision highp float; precision highp int; precision highp usampler2D;
uniform highp sampler2D uPos; uniform highp sampler2D uNode; uniform highp sampler2D uElem;
uniform usampler2D uConn;
uniform int uPerElem; uniform int uEdges; uniform int uCoarse;
uniform vec2 uScale; uniform vec2 uOffset; uniform float uMin; uniform float uMax;
const int TRI[18] = int[18](0,4,7, 4,1,5, 5,2,6, 6,3,7, 4,5,6, 4,6,7);
const int EDG[16] = int[16](0,4, 4,1, 1,5, 5,2, 2,6, 6,3, 3,7, 7,0);
const int QUAD[6] = int[6](0,1,2, 0,2,3);
out float vT;
ivec2 at(int i) { return ivec2(i % ${W}, i / ${W}); }
void main() {
  int per = uEdges == 1 ? 16 : (uCoarse == 1 ? 6 : 18);
  int e = gl_VertexID / per;
  int j = gl_VertexID - e * per;
  int k = uEdges == 1 ? EDG[j] : (uCoarse == 1 ? QUAD[j] : TRI[j]);
  uvec4 c = texelFetch(uConn, at(2 * e + k / 4), 0);
  int n = int(c[k % 4]);
  vec2 p = texelFetch(uPos, at(n), 0).xy;
  float v = uPerElem == 1 ? texelFetch(uElem, at(e), 0).x : texelFetch(uNode, at(n), 0).x;
  vT = (v - uMin) / max(uMax - uMin, 1e-30);
  gl_Position = vec4(p * uScale + uOffset, 0.0, 1.0);
}`;

const FS_FIELD = `#version 300 es
precision highp float; precision highp int;
uniform sampler2D uLut; uniform int uEdges; uniform vec4 uLine;
in float vT; out vec4 o;
void main() { o = uEdges == 1 ? uLine : texture(uLut, vec2(clamp(vT, 0.0, 1.0), 0.5)); }`;

const VS_LINES = `#version 300 es
precision highp float;
in vec2 aP; uniform vec2 uScale; uniform vec2 uOffset;
void main() { gl_Position = vec4(aP * uScale + uOffset, 0.0, 1.0); }`;
const FS_LINES = `#version 300 es
precision highp float; uniform vec4 uColor; out vec4 o; void main() { o = uColor; }`;

function compile(gl, vs, fs) {
  const p = gl.createProgram();
  for (const [type, src] of [[gl.VERTEX_SHADER, vs], [gl.FRAGMENT_SHADER, fs]]) {
    const s = gl.createShader(type);
    gl.shaderSource(s, src);
    gl.compileShader(s);
    if (!gl.getShaderParameter(s, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(s));
    gl.attachShader(p, s);
  }
  gl.linkProgram(p);
  if (!gl.getProgramParameter(p, gl.LINK_STATUS)) throw new Error(gl.getProgramInfoLog(p));
  const u = {};
  const n = gl.getProgramParameter(p, gl.ACTIVE_UNIFORMS);
  for (let i = 0; i < n; i++) {
    const name = gl.getActiveUniform(p, i).name;
    u[name] = gl.getUniformLocation(p, name);
  }
  return { p, u };
}

function dataTexture(gl, internal, format, type, data, comps, count) {
  const rows = Math.max(1, Math.ceil(count / W));
  const full = new data.constructor(W * rows * comps);
  full.set(data.subarray(0, count * comps));
  const t = gl.createTexture();
  gl.bindTexture(gl.TEXTURE_2D, t);
  gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.NEAREST);
  gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.NEAREST);
  gl.pixelStorei(gl.UNPACK_ALIGNMENT, 1);
  gl.texImage2D(gl.TEXTURE_2D, 0, internal, W, rows, 0, format, type, full);
  return t;
}

// Quad-8 shape functions at (xi, eta) in [-1, 1]^2 (corners 0-3, mid-sides 4-7).
function shape(xi, eta) {
  return [
    -0.25 * (1 - xi) * (1 - eta) * (1 + xi + eta),
    -0.25 * (1 + xi) * (1 - eta) * (1 - xi + eta),
    -0.25 * (1 + xi) * (1 + eta) * (1 - xi - eta),
    -0.25 * (1 - xi) * (1 + eta) * (1 + xi - eta),
    0.5 * (1 - xi * xi) * (1 - eta),
    0.5 * (1 + xi) * (1 - eta * eta),
    0.5 * (1 - xi * xi) * (1 + eta),
    0.5 * (1 - xi) * (1 - eta * eta),
  ];
}

export class FieldView {
  constructor(canvas, onHover) {
    this.canvas = canvas;
    this.onHover = onHover || (() => {});
    // opaque, not preserved: the compositor neither blends nor copies it
    const gl = canvas.getContext("webgl2", { alpha: false, antialias: false, preserveDrawingBuffer: false });
    if (!gl) throw new Error("this browser has no WebGL2");
    this.gl = gl;
    this.field = compile(gl, VS_FIELD, FS_FIELD);
    this.lines = compile(gl, VS_LINES, FS_LINES);
    this.vao = gl.createVertexArray();
    this.arrowBuf = gl.createBuffer();
    this.arrowCount = 0;
    this.lut = this.makeLut();
    this.mesh = null;
    this.showEdges = false;
    this.showArrows = true;
    this.fieldName = "u";
    this.view = { cx: 0, cy: 0, s: 1 }; // centre (mesh units, relative) and pixels per unit
    this.moving = false;
    this.stats = { frames: 0, fullDraws: 0, movingFrames: 0, lastFullMs: 0, firstFrameMs: null };
    this.pending = false;
    this.installInput();
    new ResizeObserver(() => this.resize()).observe(canvas);
  }

  // the viewer's background (CSS --view-bg), as GL colour components
  background() {
    const v = getComputedStyle(document.documentElement).getPropertyValue("--view-bg").trim() || "#eef1f4";
    const m = /^#?([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})/i.exec(v);
    return m ? [1, 2, 3].map((k) => parseInt(m[k], 16) / 255) : [0.93, 0.94, 0.96];
  }

  makeLut() {
    const gl = this.gl;
    const px = new Uint8Array(256 * 4);
    for (let i = 0; i < 256; i++) {
      const c = viridis(i / 255);
      px.set([c[0], c[1], c[2], 255], 4 * i);
    }
    const t = gl.createTexture();
    gl.bindTexture(gl.TEXTURE_2D, t);
    gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA8, 256, 1, 0, gl.RGBA, gl.UNSIGNED_BYTE, px);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.LINEAR);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.LINEAR);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_S, gl.CLAMP_TO_EDGE);
    return t;
  }

  // coords: Float32Array [x, y, ...]; quad8: Uint32Array; fields: {u, abs_vel, pressure, vel}
  setMesh(coords, quad8, fields, ranges) {
    const gl = this.gl;
    this.dispose();
    const n = coords.length / 2, e = quad8.length / 8;
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (let i = 0; i < n; i++) {
      const x = coords[2 * i], y = coords[2 * i + 1];
      if (x < x0) x0 = x; if (x > x1) x1 = x; if (y < y0) y0 = y; if (y > y1) y1 = y;
    }
    // coordinates relative to the centre keep float32's digits
    const ox = (x0 + x1) / 2, oy = (y0 + y1) / 2;
    const rel = new Float32Array(coords.length);
    for (let i = 0; i < n; i++) { rel[2 * i] = coords[2 * i] - ox; rel[2 * i + 1] = coords[2 * i + 1] - oy; }
    this.mesh = {
      n, e, rel, quad8, fields, ranges, ox, oy, w: x1 - x0, h: y1 - y0,
      pos: dataTexture(gl, gl.RG32F, gl.RG, gl.FLOAT, rel, 2, n),
      conn: dataTexture(gl, gl.RGBA32UI, gl.RGBA_INTEGER, gl.UNSIGNED_INT, quad8, 4, 2 * e),
      tex: {}, grid: null,
    };
    this.fit();
    this.setField(this.fieldName);
  }

  fieldTexture(name) {
    const m = this.mesh, gl = this.gl;
    if (!m.tex[name] && m.fields[name]) {
      const per = name === "u" ? m.n : m.e;
      m.tex[name] = dataTexture(gl, gl.R32F, gl.RED, gl.FLOAT, m.fields[name], 1, per);
    }
    return m.tex[name];
  }

  setField(name) {
    this.fieldName = name;
    if (!this.mesh) return;
    this.fieldTexture(name);
    this.invalidate();
  }

  range() {
    const m = this.mesh, r = m.ranges && m.ranges[this.fieldName];
    if (r) return r;
    const a = m.fields[this.fieldName];
    let lo = Infinity, hi = -Infinity;
    for (const v of a) { if (v < lo) lo = v; if (v > hi) hi = v; }
    return [lo, hi];
  }

  dispose() {
    const m = this.mesh, gl = this.gl;
    if (!m) return;
    for (const t of [m.pos, m.conn, ...Object.values(m.tex)]) gl.deleteTexture(t);
    this.mesh = null;
  }

  fit() {
    const m = this.mesh;
    if (!m) return;
    const { width, height, d } = this.size();
    // room on the right for the colour bar
    const bar = 110 * d, room = width - bar;
    const s = 0.92 * Math.min(room / Math.max(m.w, 1e-30), height / Math.max(m.h, 1e-30));
    this.view = { cx: bar / 2 / s, cy: 0, s };
    this.invalidate();
  }

  size() {
    const r = this.canvas.getBoundingClientRect(), d = window.devicePixelRatio || 1;
    return { width: Math.max(1, Math.round(r.width * d)), height: Math.max(1, Math.round(r.height * d)), d };
  }

  resize() {
    const { width, height } = this.size();
    if (this.canvas.width !== width || this.canvas.height !== height) {
      this.canvas.width = width;
      this.canvas.height = height;
      this.invalidate();
    }
  }

  // clip-space scale and offset of a view on a target of w x h pixels
  transform(v, w, h) {
    const sx = 2 * v.s / w, sy = 2 * v.s / h;
    return { scale: [sx, sy], offset: [-v.cx * sx, -v.cy * sy] };
  }

  // the full draw of the mesh (field, edges, arrows) with view v into the bound target
  drawMesh(v, w, h, arrows) {
    const gl = this.gl, m = this.mesh, f = this.field, t = this.transform(v, w, h);
    const [lo, hi] = this.range();
    gl.useProgram(f.p);
    gl.bindVertexArray(this.vao);
    const bind = (unit, tex, name) => { gl.activeTexture(gl.TEXTURE0 + unit); gl.bindTexture(gl.TEXTURE_2D, tex); gl.uniform1i(f.u[name], unit); };
    const perElem = this.fieldName !== "u";
    bind(0, m.pos, "uPos");
    bind(1, this.fieldTexture("u"), "uNode");
    bind(2, perElem ? this.fieldTexture(this.fieldName) : this.fieldTexture("u"), "uElem");
    bind(3, m.conn, "uConn");
    bind(4, this.lut, "uLut");
    gl.uniform1i(f.u.uPerElem, perElem ? 1 : 0);
    gl.uniform2f(f.u.uScale, ...t.scale);
    gl.uniform2f(f.u.uOffset, ...t.offset);
    gl.uniform1f(f.u.uMin, lo);
    gl.uniform1f(f.u.uMax, hi);
    gl.uniform1i(f.u.uEdges, 0);
    // elements a few pixels across or less: their corners' two triangles
    // (the mid-side nodes fall inside a pixel), a third of the vertices
    const px = Math.sqrt((m.w * m.h) / m.e) * v.s;
    const coarse = px < 4;
    this.stats.coarse = coarse;
    gl.uniform1i(f.u.uCoarse, coarse ? 1 : 0);
    gl.drawArrays(gl.TRIANGLES, 0, (coarse ? 6 : 18) * m.e);
    if (this.showEdges) {
      gl.uniform1i(f.u.uEdges, 1);
      const dark = document.documentElement.dataset.theme === "dark";
      gl.uniform4f(f.u.uLine, dark ? 0.9 : 0.1, dark ? 0.9 : 0.1, dark ? 0.9 : 0.1, 0.55);
      gl.enable(gl.BLEND);
      gl.blendFunc(gl.SRC_ALPHA, gl.ONE_MINUS_SRC_ALPHA);
      gl.drawArrays(gl.LINES, 0, 16 * m.e);
      gl.disable(gl.BLEND);
    }
    if (arrows && this.showArrows && m.fields.vel) this.drawArrows(v, w, h);
  }

  // arrows: one per cell of a grid over the view (the element whose centre falls there first)
  buildArrows(v, w, h) {
    const m = this.mesh, vel = m.fields.vel;
    const cell = 34 * (this.size().d || 1);
    const cols = Math.ceil(w / cell), rows = Math.ceil(h / cell);
    const taken = new Int32Array(cols * rows).fill(-1);
    const dist = new Float32Array(cols * rows);
    const q = m.quad8, p = m.rel;
    const x0 = v.cx - w / 2 / v.s, y0 = v.cy - h / 2 / v.s;
    let vmax = 0;
    for (let e = 0; e < m.e; e++) {
      const a = q[8 * e], c = q[8 * e + 2];
      const cx = 0.5 * (p[2 * a] + p[2 * c]), cy = 0.5 * (p[2 * a + 1] + p[2 * c + 1]);
      const i = Math.floor((cx - x0) * v.s / cell), j = Math.floor((cy - y0) * v.s / cell);
      if (i < 0 || j < 0 || i >= cols || j >= rows) continue;
      // the element nearest the cell's centre
      const k = j * cols + i;
      const dx = (cx - x0) * v.s / cell - i - 0.5, dy = (cy - y0) * v.s / cell - j - 0.5;
      const d = dx * dx + dy * dy;
      if (taken[k] < 0 || d < dist[k]) { taken[k] = e; dist[k] = d; }
    }
    for (const e of taken) if (e >= 0) vmax = Math.max(vmax, Math.hypot(vel[2 * e], vel[2 * e + 1]));
    const L = 0.85 * cell / v.s / Math.max(vmax, 1e-30);
    const out = [];
    for (const e of taken) {
      if (e < 0) continue;
      const a = q[8 * e], c = q[8 * e + 2];
      const cx = 0.5 * (p[2 * a] + p[2 * c]), cy = 0.5 * (p[2 * a + 1] + p[2 * c + 1]);
      const vx = vel[2 * e] * L, vy = vel[2 * e + 1] * L;
      const bx = cx - vx / 2, by = cy - vy / 2, tx = cx + vx / 2, ty = cy + vy / 2;
      const hx = -vx * 0.3, hy = -vy * 0.3;
      out.push(bx, by, tx, ty,
        tx, ty, tx + hx * 0.87 - hy * 0.5, ty + hy * 0.87 + hx * 0.5,
        tx, ty, tx + hx * 0.87 + hy * 0.5, ty + hy * 0.87 - hx * 0.5);
    }
    const gl = this.gl;
    gl.bindBuffer(gl.ARRAY_BUFFER, this.arrowBuf);
    gl.bufferData(gl.ARRAY_BUFFER, new Float32Array(out), gl.DYNAMIC_DRAW);
    this.arrowCount = out.length / 2;
  }

  drawArrows(v, w, h) {
    const gl = this.gl, l = this.lines, t = this.transform(v, w, h);
    this.buildArrows(v, w, h);
    gl.useProgram(l.p);
    const loc = gl.getAttribLocation(l.p, "aP");
    const vao = this._arrowVao || (this._arrowVao = gl.createVertexArray());
    gl.bindVertexArray(vao);
    gl.bindBuffer(gl.ARRAY_BUFFER, this.arrowBuf);
    gl.enableVertexAttribArray(loc);
    gl.vertexAttribPointer(loc, 2, gl.FLOAT, false, 0, 0);
    gl.uniform2f(l.u.uScale, ...t.scale);
    gl.uniform2f(l.u.uOffset, ...t.offset);
    const dark = document.documentElement.dataset.theme === "dark";
    gl.uniform4f(l.u.uColor, dark ? 1 : 1, dark ? 1 : 1, dark ? 1 : 1, 0.9);
    gl.enable(gl.BLEND);
    gl.blendFunc(gl.SRC_ALPHA, gl.ONE_MINUS_SRC_ALPHA);
    gl.drawArrays(gl.LINES, 0, this.arrowCount);
    gl.disable(gl.BLEND);
    gl.bindVertexArray(null);
  }

  invalidate() {
    this.moving = false;
    this.request();
  }

  request() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      if (this.moving) this.moveFrame(); else this.frame();
    });
  }

  // a full draw at the current view; the canvas's CSS transform reset
  frame() {
    const gl = this.gl, m = this.mesh, W0 = this.canvas.width, H0 = this.canvas.height;
    gl.bindFramebuffer(gl.FRAMEBUFFER, null);
    gl.viewport(0, 0, W0, H0);
    gl.clearColor(...this.background(), 1);
    gl.clear(gl.COLOR_BUFFER_BIT);
    this.stats.frames++;
    this.canvas.style.transform = "";
    if (!m) return;
    const t0 = performance.now();
    this.drawMesh(this.view, W0, H0, true);
    this.drawn = { ...this.view };
    this.stats.fullDraws++;
    this.stats.lastFullMs = performance.now() - t0;
    if (this.stats.firstFrameMs === null && this.onFirstFrame) {
      // the frame is drawn once its pixels can be read (the GPU has finished)
      gl.readPixels(0, 0, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, new Uint8Array(4));
      this.stats.firstFrameMs = this.onFirstFrame();
    }
  }

  // while moving: the last full frame moved and scaled to the current view by the compositor
  moveFrame() {
    const a = this.drawn, v = this.view, d = window.devicePixelRatio || 1;
    if (!a || !this.mesh) return this.frame();
    const k = v.s / a.s;
    const tx = (a.cx - v.cx) * v.s / d, ty = (v.cy - a.cy) * v.s / d;
    this.canvas.style.transform = `translate(${tx}px, ${ty}px) scale(${k})`;
    this.stats.movingFrames++;
  }

  // pan, zoom and hover
  installInput() {
    const c = this.canvas;
    let drag = null, settle = null;
    const moved = () => {
      this.moving = true;
      this.request();
      clearTimeout(settle);
      settle = setTimeout(() => { this.moving = false; this.request(); }, 150);
    };
    const toMesh = (ev) => {
      const r = c.getBoundingClientRect(), d = window.devicePixelRatio || 1;
      const px = (ev.clientX - r.left) * d, py = (ev.clientY - r.top) * d;
      return [this.view.cx + (px - c.width / 2) / this.view.s, this.view.cy - (py - c.height / 2) / this.view.s];
    };
    c.addEventListener("pointerdown", (ev) => {
      drag = { x: ev.clientX, y: ev.clientY };
      c.setPointerCapture(ev.pointerId);
      c.classList.add("drag");
    });
    c.addEventListener("pointerup", (ev) => {
      drag = null;
      c.releasePointerCapture(ev.pointerId);
      c.classList.remove("drag");
    });
    c.addEventListener("pointermove", (ev) => {
      if (drag) {
        const d = window.devicePixelRatio || 1;
        this.view.cx -= (ev.clientX - drag.x) * d / this.view.s;
        this.view.cy += (ev.clientY - drag.y) * d / this.view.s;
        drag = { x: ev.clientX, y: ev.clientY };
        moved();
      } else if (this.mesh) {
        const [x, y] = toMesh(ev);
        this.onHover(this.probe(x, y), x + this.mesh.ox, y + this.mesh.oy);
      }
    });
    c.addEventListener("pointerleave", () => this.onHover(null));
    c.addEventListener("wheel", (ev) => {
      ev.preventDefault();
      if (!this.mesh) return;
      const [x, y] = toMesh(ev);
      const k = Math.exp(-ev.deltaY * 0.0015);
      this.view.s *= k;
      // keep the point under the cursor in place
      this.view.cx = x - (x - this.view.cx) / k;
      this.view.cy = y - (y - this.view.cy) / k;
      moved();
    }, { passive: false });
  }

  // The value under a point: the element containing it (a grid of element
  // boxes), its local coordinates by Newton on the Quad-8 map, u there and
  // the element's values.
  probe(x, y) {
    const m = this.mesh;
    if (!m) return null;
    if (!m.grid) m.grid = this.buildGrid();
    const g = m.grid;
    const i = Math.floor((x - g.x0) / g.cw), j = Math.floor((y - g.y0) / g.ch);
    if (i < 0 || j < 0 || i >= g.nx || j >= g.ny) return null;
    const k = j * g.nx + i;
    for (let s = g.start[k]; s < g.start[k + 1]; s++) {
      const e = g.items[s];
      const r = this.local(e, x, y);
      if (r) {
        const N = shape(r[0], r[1]);
        let u = 0;
        for (let a = 0; a < 8; a++) u += N[a] * m.fields.u[m.quad8[8 * e + a]];
        return { element: e, u, abs_vel: m.fields.abs_vel?.[e], pressure: m.fields.pressure?.[e] };
      }
    }
    return null;
  }

  local(e, x, y) {
    const m = this.mesh, q = m.quad8, p = m.rel;
    let xi = 0, eta = 0;
    for (let it = 0; it < 12; it++) {
      const N = shape(xi, eta);
      // derivatives by central differences of the shape functions (small, exact enough)
      const h = 1e-6, Nx = shape(xi + h, eta), Ny = shape(xi, eta + h);
      let fx = -x, fy = -y, a = 0, b = 0, c = 0, d = 0;
      for (let k = 0; k < 8; k++) {
        const n = q[8 * e + k], px = p[2 * n], py = p[2 * n + 1];
        fx += N[k] * px; fy += N[k] * py;
        a += (Nx[k] - N[k]) / h * px; b += (Ny[k] - N[k]) / h * px;
        c += (Nx[k] - N[k]) / h * py; d += (Ny[k] - N[k]) / h * py;
      }
      const det = a * d - b * c;
      if (!isFinite(det) || det === 0) return null;
      const dxi = (d * fx - b * fy) / det, deta = (-c * fx + a * fy) / det;
      xi -= dxi; eta -= deta;
      if (Math.abs(dxi) + Math.abs(deta) < 1e-9) break;
    }
    return Math.abs(xi) <= 1.0001 && Math.abs(eta) <= 1.0001 ? [xi, eta] : null;
  }

  buildGrid() {
    const m = this.mesh, q = m.quad8, p = m.rel;
    const nx = Math.max(1, Math.min(1024, Math.ceil(Math.sqrt(m.e * m.w / Math.max(m.h, 1e-30))))),
      ny = Math.max(1, Math.min(1024, Math.ceil(m.e / nx)));
    const x0 = -m.w / 2, y0 = -m.h / 2, cw = m.w / nx || 1, ch = m.h / ny || 1;
    const boxes = new Int32Array(4 * m.e);
    const count = new Int32Array(nx * ny + 1);
    for (let e = 0; e < m.e; e++) {
      let a = Infinity, b = -Infinity, c = Infinity, d = -Infinity;
      for (let k = 0; k < 8; k++) {
        const n = q[8 * e + k];
        a = Math.min(a, p[2 * n]); b = Math.max(b, p[2 * n]); c = Math.min(c, p[2 * n + 1]); d = Math.max(d, p[2 * n + 1]);
      }
      const i0 = Math.max(0, Math.floor((a - x0) / cw)), i1 = Math.min(nx - 1, Math.floor((b - x0) / cw));
      const j0 = Math.max(0, Math.floor((c - y0) / ch)), j1 = Math.min(ny - 1, Math.floor((d - y0) / ch));
      boxes.set([i0, i1, j0, j1], 4 * e);
      for (let j = j0; j <= j1; j++) for (let i = i0; i <= i1; i++) count[j * nx + i + 1]++;
    }
    for (let k = 0; k < nx * ny; k++) count[k + 1] += count[k];
    const items = new Int32Array(count[nx * ny]), fill = count.slice();
    for (let e = 0; e < m.e; e++) {
      const [i0, i1, j0, j1] = boxes.subarray(4 * e, 4 * e + 4);
      for (let j = j0; j <= j1; j++) for (let i = i0; i <= i1; i++) items[fill[j * nx + i]++] = e;
    }
    return { nx, ny, x0, y0, cw, ch, start: count, items };
  }

  // for tests: the colours along the horizontal line through the middle
  // of the canvas, drawn afresh ([r, g, b, 255] on the mesh, [r, g, b, 0]
  // on the background)
  sampleRow(samples = 64) {
    const gl = this.gl, W0 = this.canvas.width, H0 = this.canvas.height;
    this.moving = false;
    this.frame();
    const px = new Uint8Array(4 * W0);
    gl.bindFramebuffer(gl.FRAMEBUFFER, null);
    gl.readPixels(0, Math.floor(H0 / 2), W0, 1, gl.RGBA, gl.UNSIGNED_BYTE, px);
    const bg = this.background().map((c) => Math.round(255 * c));
    const out = [];
    for (let s = 0; s < samples; s++) {
      const i = Math.floor((s + 0.5) * W0 / samples);
      const c = [px[4 * i], px[4 * i + 1], px[4 * i + 2]];
      const onMesh = Math.abs(c[0] - bg[0]) + Math.abs(c[1] - bg[1]) + Math.abs(c[2] - bg[2]) > 6;
      out.push([...c, onMesh ? 255 : 0]);
    }
    return out;
  }
}
