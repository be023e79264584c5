// quadflow's page: the gallery, the scene, the live solve, the field, the
// timeline, the comparison and the jobs, on the JSON API of `quadflow serve`.
import { FieldView, viridis } from "/assets/view.js";
import { drawConvergence, drawTimeline, drawCompare, drawColorbar, fmtSeconds, fmtNumber, PHASES } from "/assets/charts.js";

const $ = (id) => document.getElementById(id);
const token = new URLSearchParams(location.search).get("token");
const headers = (extra = {}) => (token ? { ...extra, Authorization: "Bearer " + token } : extra);

async function api(path, opts = {}) {
  const r = await fetch(path, { ...opts, headers: headers(opts.headers || {}) });
  const ct = r.headers.get("content-type") || "";
  const body = ct.includes("json") ? await r.json() : await r.arrayBuffer();
  if (!r.ok) throw new Error((body && body.error) || `${r.status} ${r.statusText}`);
  return body;
}

const state = {
  info: null,
  mesh: null, // {kind: "file", id, name} | {kind: "gen", geometry, nodes}
  job: null,
  points: [],
  rtol: 1e-8,
  source: null,
  result: null,
  timing: {}, // first frame and bytes of the last result
  tomlEdited: false,
};
const FIELD_LABEL = { u: "u", abs_vel: "|v| m/s", pressure: "p Pa" };

// ---------- theme ----------
$("theme").onclick = () => {
  const t = document.documentElement.dataset.theme === "dark" ? "light" : "dark";
  document.documentElement.dataset.theme = t;
  localStorage.setItem("quadflow-theme", t);
  redrawAll();
};

// ---------- tabs ----------
for (const b of document.querySelectorAll("#tabs button")) {
  b.onclick = () => showView(b.dataset.view);
}
function showView(name) {
  for (const b of document.querySelectorAll("#tabs button")) b.classList.toggle("on", b.dataset.view === name);
  for (const v of document.querySelectorAll(".view")) v.classList.toggle("on", v.id === "view-" + name);
  if (name === "jobs") refreshJobs();
  if (name === "compare") redrawCompare();
  if (name === "run") { viewer && viewer.resize(); redrawAll(); }
}

// ---------- viewer ----------
let viewer = null;
try {
  viewer = new FieldView($("gl"), (p, x, y) => {
    if (!p) { $("hover").textContent = ""; return; }
    $("hover").textContent = `x ${x.toFixed(4)}  y ${y.toFixed(4)}  ·  element ${p.element}  ·  u ${fmtNumber(p.u)}  ·  |v| ${fmtNumber(p.abs_vel)}  ·  p ${fmtNumber(p.pressure)}`;
  });
} catch (e) {
  $("viewer-empty").textContent = "WebGL2 is not available in this browser: " + e.message;
}
$("field").onchange = () => { if (viewer) viewer.setField($("field").value); drawBar(); };
$("edges").onchange = () => { if (viewer) { viewer.showEdges = $("edges").checked; viewer.invalidate(); } };
$("arrows").onchange = () => { if (viewer) { viewer.showArrows = $("arrows").checked; viewer.invalidate(); } };
$("reset-view").onclick = () => viewer && viewer.fit();

function drawBar() {
  if (!viewer || !viewer.mesh) return;
  const [lo, hi] = viewer.range();
  drawColorbar($("colorbar"), viridis, lo, hi, FIELD_LABEL[viewer.fieldName]);
}

// ---------- machine, backends, gallery ----------
async function loadInfo() {
  state.info = await api("/api/info");
  const i = state.info;
  const gpu = i.backends.find((b) => b.name === "gpu");
  $("machine").textContent = `${i.cpu || "CPU"} · ${i.cores} cores` + (gpu && gpu.available ? ` · ${gpu.note}` : "");
  const be = $("f-backend");
  be.innerHTML = "";
  for (const b of i.backends) {
    const o = document.createElement("option");
    o.value = b.name;
    o.textContent = b.name + (b.name === "gpu" && b.available ? ` (${b.note})` : b.name === "parallel" ? ` (${b.note})` : "");
    o.disabled = !b.available;
    o.title = b.available ? b.about : b.note;
    be.appendChild(o);
  }
  $("f-solver").innerHTML = i.solvers.map((s) => `<option>${s}</option>`).join("");
  $("gen-geom").innerHTML = i.geometries.map((g) => `<option>${g}</option>`).join("");
  $("gen-geom").value = "venturi";
}

async function loadMeshes(select) {
  const { meshes } = await api("/api/meshes");
  const g = $("gallery");
  g.innerHTML = "";
  for (const m of meshes) {
    const card = document.createElement("div");
    card.className = "card";
    card.dataset.id = m.id;
    card.title = m.id;
    const q = encodeURIComponent(m.id);
    card.innerHTML = `<img alt="" loading="lazy" src="/api/meshes/thumbnail?id=${q}&w=150&h=60${token ? "&token=" + token : ""}">
      <div class="name">${m.name}</div><div class="meta">${m.nodes ? `${m.nodes.toLocaleString()} nodes · ${m.elements.toLocaleString()} el.` : `${(m.bytes / 1024).toFixed(0)} KiB`}</div>`;
    card.onclick = () => pickMesh({ kind: "file", id: m.id, name: m.name });
    g.appendChild(card);
    if (!m.nodes) {
      api("/api/meshes/info?id=" + q).then((inf) => {
        card.querySelector(".meta").textContent = `${inf.nodes.toLocaleString()} nodes · ${inf.elements.toLocaleString()} el.`;
      }).catch((e) => { card.querySelector(".meta").textContent = e.message; });
    }
  }
  if (select) pickMesh({ kind: "file", id: select, name: select.split("/").pop() });
  else if (!state.mesh && meshes.length) {
    const first = meshes.find((m) => m.name.startsWith("y_tube_201")) || meshes[0];
    pickMesh({ kind: "file", id: first.id, name: first.name });
  }
}

function pickMesh(m) {
  state.mesh = m;
  for (const c of document.querySelectorAll(".card")) c.classList.toggle("on", m.kind === "file" && c.dataset.id === m.id);
  const label = m.kind === "file" ? m.id : `generated ${m.geometry}, ~${m.nodes.toLocaleString()} nodes`;
  $("f-mesh").textContent = label;
  $("cmp-mesh").textContent = label;
  state.tomlEdited = false;
  writeToml();
}

$("gen-pick").onclick = () => pickMesh({ kind: "gen", geometry: $("gen-geom").value, nodes: Math.max(50, +$("gen-nodes").value || 20000) });

$("upload").onchange = async () => {
  const f = $("upload").files[0];
  if (!f) return;
  $("upload-msg").className = "msg";
  $("upload-msg").textContent = `uploading ${f.name}…`;
  try {
    const r = await api("/api/meshes?name=" + encodeURIComponent(f.name), {
      method: "POST", headers: { "Content-Type": "application/octet-stream" }, body: f,
    });
    $("upload-msg").textContent = `${f.name}: ${r.nodes.toLocaleString()} nodes, ${r.elements.toLocaleString()} elements`;
    await loadMeshes(r.id);
  } catch (e) {
    $("upload-msg").className = "msg err";
    $("upload-msg").textContent = e.message;
  }
  $("upload").value = "";
};

// ---------- scene form <-> TOML ----------
function sceneToml() {
  const m = state.mesh;
  const lines = [];
  lines.push("[mesh]");
  if (!m) lines.push('# pick a mesh');
  else if (m.kind === "file") lines.push(`file = "${m.id}"`);
  else lines.push(`generate = "${m.geometry}"`, `nodes = ${m.nodes}`);
  lines.push("", "[solver]", `method = "${$("f-solver").value}"`, `rtol = ${$("f-rtol").value || "1e-8"}`,
    `max_iterations = ${$("f-maxit").value || 15000}`, "", "[backend]", `default = "${$("f-backend").value}"`);
  const th = +$("f-threads").value;
  if ($("f-backend").value === "parallel" && th > 0) lines.push("", "[parallel]", `threads = ${th}`);
  return lines.join("\n") + "\n";
}
function writeToml() { if (!state.tomlEdited) $("toml").value = sceneToml(); }
for (const id of ["f-backend", "f-solver", "f-rtol", "f-threads", "f-maxit"]) {
  $(id).addEventListener("input", () => { state.tomlEdited = false; writeToml(); });
}
$("toml").addEventListener("input", () => { state.tomlEdited = true; });

// ---------- solving ----------
$("solve").onclick = () => solve();
$("cancel").onclick = async () => {
  if (state.job) await api(`/api/jobs/${state.job}/cancel`, { method: "POST" }).catch(() => {});
};

async function solve() {
  $("error").textContent = "";
  const toml = $("toml").value;
  const rt = /rtol\s*=\s*([0-9.eE+-]+)/.exec(toml);
  state.rtol = rt ? +rt[1] : 1e-8;
  let job;
  try {
    job = await api("/api/jobs", { method: "POST", headers: { "Content-Type": "application/toml" }, body: toml });
  } catch (e) {
    $("error").textContent = e.message;
    return;
  }
  follow(job.id);
}

function follow(id) {
  if (state.source) state.source.close();
  state.job = id;
  state.points = [];
  state.result = null;
  $("solve").disabled = true;
  $("cancel").disabled = false;
  $("status").textContent = `job ${id} queued`;
  $("phase").textContent = "queued";
  drawConvergence($("conv"), [], state.rtol);
  drawTimeline($("timeline"), []);
  const es = new EventSource(`/api/jobs/${id}/events${token ? "?token=" + token : ""}`);
  state.source = es;
  const onData = (ev) => {
    const d = JSON.parse(ev.data);
    for (const p of d.residuals) state.points.push(p);
    if (d.phase) $("phase").textContent = d.phase;
    $("status").textContent = `job ${id} ${d.status}` + (d.queued_ahead ? ` (${d.queued_ahead} ahead)` : "") +
      (state.points.length ? ` · iteration ${state.points[state.points.length - 1][0]}, residual ${state.points[state.points.length - 1][1].toExponential(2)}` : "");
    if (d.warnings.length) $("error").textContent += d.warnings.map((w) => "warning: " + w).join("\n") + "\n";
    drawConvergence($("conv"), state.points, state.rtol);
  };
  es.addEventListener("progress", onData);
  es.addEventListener("end", async (ev) => {
    const tEnd = performance.now();
    es.close();
    onData(ev);
    $("solve").disabled = false;
    $("cancel").disabled = true;
    $("phase").textContent = "";
    const d = JSON.parse(ev.data);
    if (d.status !== "done") {
      $("status").textContent = `job ${id} ${d.status}`;
      if (d.error) $("error").textContent += d.error;
      return;
    }
    await showResult(id, tEnd);
  });
}

async function fetchArray(url, type) {
  const buf = await api(url);
  state.timing.bytes = (state.timing.bytes || 0) + buf.byteLength;
  return new type(buf);
}

async function showResult(id, tEnd) {
  const s = await api(`/api/jobs/${id}`);
  state.result = s;
  state.timing = { job: id, bytes: 0, nodes: s.nodes };
  $("status").textContent = `job ${id} done in ${fmtSeconds(s.seconds_per_solve)} (time per solve)`;
  drawConvergence($("conv"), state.points, state.rtol);
  drawTimeline($("timeline"), s.timeline);
  showSummary(s);
  if (!viewer) return;
  // what the first frame needs, then the element fields
  const [coords, quad8, u] = await Promise.all([
    fetchArray(s.arrays.coords, Float32Array), fetchArray(s.arrays.quad8, Uint32Array), fetchArray(s.arrays.u, Float32Array),
  ]);
  state.timing.firstBytes = state.timing.bytes;
  $("viewer-empty").style.display = "none";
  viewer.stats.firstFrameMs = null;
  viewer.onFirstFrame = () => {
    const ms = performance.now() - tEnd;
    state.timing.firstFrameMs = ms;
    state.timing.firstFrameBytesPerNode = state.timing.firstBytes / s.nodes;
    return ms;
  };
  if ($("field").value !== "u") $("field").value = "u";
  viewer.fieldName = "u";
  viewer.setMesh(coords, quad8, { u }, s.ranges);
  drawBar();
  const [vel, abs_vel, pressure] = await Promise.all([
    fetchArray(s.arrays.vel, Float32Array), fetchArray(s.arrays.abs_vel, Float32Array), fetchArray(s.arrays.pressure, Float32Array),
  ]);
  if (viewer.mesh && state.result && state.result.id === id) {
    Object.assign(viewer.mesh.fields, { vel, abs_vel, pressure });
    state.timing.bytesPerNode = state.timing.bytes / s.nodes;
    viewer.invalidate();
  }
}

function showSummary(s) {
  const rows = [
    ["mesh", s.mesh], ["nodes / elements", `${s.nodes.toLocaleString()} / ${s.elements.toLocaleString()}`],
    ["backend", s.backend + (s.gpu_device ? ` (${s.gpu_device})` : "")], ["solver", s.solver],
    ["iterations", `${s.iterations}${s.converged ? "" : " (NOT converged)"}`],
    ["relative residual", s.relative_residual.toExponential(3)],
    ["u", `${fmtNumber(s.ranges.u[0])} … ${fmtNumber(s.ranges.u[1])}`],
    ["|v| m/s", `${fmtNumber(s.ranges.abs_vel[0])} … ${fmtNumber(s.ranges.abs_vel[1])}`],
    ["load + phases", fmtSeconds(s.times.total)], ["time per solve", fmtSeconds(s.seconds_per_solve)],
  ];
  $("result").classList.remove("muted");
  $("result").innerHTML = "<table>" + rows.map(([k, v]) => `<tr><td>${k}</td><td>${v}</td></tr>`).join("") + "</table>";
  const t = token ? "?token=" + token : "";
  $("files").innerHTML = Object.entries(s.files).map(([k, u]) => `<a href="${u}${t}" download>${k === "results" ? "results .h5" : k === "trace" ? "trace .json" : k === "vtu" ? ".vtu" : ".png"}</a>`).join("");
}

function redrawAll() {
  drawConvergence($("conv"), state.points, state.rtol);
  drawTimeline($("timeline"), state.result ? state.result.timeline : []);
  drawBar();
  if (viewer) viewer.invalidate();
  redrawCompare();
}
window.addEventListener("resize", () => redrawAll());

// ---------- compare ----------
let compare = { id: null, rows: [], timer: null };
$("cmp-run").onclick = async () => {
  $("cmp-error").textContent = "";
  try {
    const r = await api("/api/compare", { method: "POST", headers: { "Content-Type": "application/toml" }, body: $("toml").value });
    compare = { id: r.id, rows: [], timer: null };
    $("cmp-status").textContent = `comparison ${r.id}: ${r.jobs.length} runs queued`;
    pollCompare();
  } catch (e) {
    $("cmp-error").textContent = e.message;
  }
};
async function pollCompare() {
  if (!compare.id) return;
  const c = await api(`/api/compare/${compare.id}`);
  $("cmp-tol").textContent = c.tolerance;
  compare.rows = c.jobs;
  compare.finished = c.finished;
  const done = c.jobs.filter((j) => j.status === "done").length;
  $("cmp-status").textContent = `comparison ${compare.id}: ${done} of ${c.jobs.length} done` + (c.failed ? `, ${c.failed} failed` : "") + (c.finished ? "" : "…");
  redrawCompare();
  if (!c.finished) compare.timer = setTimeout(pollCompare, 400);
}
function redrawCompare() {
  if (!$("view-compare").classList.contains("on")) return;
  $("cmp-chart").style.height = Math.max(120, 28 * compare.rows.length + 70) + "px";
  drawCompare($("cmp-chart"), compare.rows);
  const head = "<tr><th>backend</th><th>solver</th><th>status</th><th>iterations</th>" +
    PHASES.map((p) => `<th>${p}</th>`).join("") + "<th>total</th><th>speed-up vs serial</th><th>fields vs serial cg-jacobi</th></tr>";
  $("cmp-table").innerHTML = head + compare.rows.map((r) => {
    const t = r.times || {};
    const diff = r.max_rel_diff === undefined ? "" :
      `<span class="${r.differs ? "bad" : "good"}">${r.differs ? "DIFFER" : "agree"} (${r.max_rel_diff.toExponential(1)})</span>`;
    return `<tr><td>${r.backend_name}</td><td>${r.solver}</td><td>${r.status}${r.error ? ": " + r.error : ""}</td><td class="num">${r.iterations ?? ""}</td>` +
      PHASES.map((p) => `<td class="num">${t[p] !== undefined ? fmtSeconds(t[p]) : ""}</td>`).join("") +
      `<td class="num">${t.total !== undefined ? fmtSeconds(t.total) : ""}</td><td class="num">${r.speedup_vs_serial !== undefined ? r.speedup_vs_serial.toFixed(2) + "×" : ""}</td><td>${diff}</td></tr>`;
  }).join("");
}

// ---------- jobs ----------
async function refreshJobs() {
  const { jobs } = await api("/api/jobs");
  $("jobs-table").innerHTML = "<tr><th>job</th><th>mesh</th><th>backend</th><th>solver</th><th>status</th><th>iterations</th><th>time per solve</th><th></th></tr>" +
    jobs.slice().reverse().map((j) => `<tr><td>${j.id}${j.group ? ` (compare ${j.group})` : ""}</td><td>${j.mesh}</td><td>${j.backend}</td><td>${j.solver}</td><td>${j.status}${j.error ? ": " + j.error : ""}</td>` +
      `<td class="num">${j.iterations ?? j.iterations_so_far ?? ""}</td><td class="num">${j.seconds_per_solve !== undefined ? fmtSeconds(j.seconds_per_solve) : ""}</td>` +
      `<td>${j.status === "done" && j.arrays ? `<button data-open="${j.id}">show</button>` : ""} <button data-del="${j.id}">forget</button></td></tr>`).join("");
  for (const b of document.querySelectorAll("[data-open]")) b.onclick = () => { showView("run"); state.points = []; showResult(+b.dataset.open, performance.now()); };
  for (const b of document.querySelectorAll("[data-del]")) b.onclick = async () => { await api(`/api/jobs/${b.dataset.del}`, { method: "DELETE" }); refreshJobs(); };
  if ($("view-jobs").classList.contains("on")) setTimeout(refreshJobs, 2000);
}

// for tests and the curious
window.qf = { state, get viewer() { return viewer; }, solve, pickMesh, showView, compare: () => compare };

(async () => {
  try {
    await loadInfo();
    await loadMeshes();
    writeToml();
    redrawAll();
    document.body.dataset.ready = "1";
  } catch (e) {
    $("error").textContent = "cannot reach the server: " + e.message;
  }
})();
