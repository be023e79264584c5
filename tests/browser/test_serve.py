"""`quadflow serve` in a real browser: Debian's Chromium, headless, WebGL2
through SwiftShader, driven by Playwright (tests/browser/run-tests.sh
installs both). Opens the page, picks a mesh from the gallery, solves,
watches the convergence plot grow, reads the field back from the canvas,
hovers for a value, opens the compare view; saves a screenshot of each view
under profiles/serve/. With PERF=1, also measures the 1.3M-node venturi:
first frame after the solve's end, bytes per node, frames per second while
panning and zooming (profiles/serve/browser_perf.json)."""

import datetime
import json
import os
import pathlib
import re
import shutil
import subprocess
import time

import pytest
from playwright.sync_api import sync_playwright

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "profiles" / "serve"
BIN = os.environ.get("QUADFLOW_BIN", str(ROOT / "target" / "release" / "quadflow"))
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# what this closed machine's headless Chromium needs (see the README, "serve"):
# no network, WebGL2 through SwiftShader, the page composited in software
ARGS = [
    "--no-sandbox", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-quic",
    "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist",
    "--disable-gpu-compositing",
]


@pytest.fixture(scope="module")
def server():
    proc = subprocess.Popen([BIN, "serve", "--port", "0"], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    url = re.search(r"http://\S+", line).group(0)
    yield url
    proc.kill()
    proc.wait()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        # (Playwright gives the browser a fresh profile folder of its own)
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def open_page(browser, url):
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    page.wait_for_selector("body[data-ready='1']", timeout=20000)
    return page, errors


def luma(c):
    return 0.3 * c[0] + 0.59 * c[1] + 0.11 * c[2]


def wait_result(page, timeout_s):
    page.wait_for_function("window.qf.state.timing.firstFrameMs !== undefined", timeout=timeout_s * 1000)


def test_page_solves_draws_and_compares(server, browser):
    OUT.mkdir(parents=True, exist_ok=True)
    page, errors = open_page(browser, server)
    # the gallery has the repository's meshes, with counts and thumbnails
    page.wait_for_function("document.querySelectorAll('.card .meta')[0].textContent.includes('nodes')")
    cards = page.eval_on_selector_all(".card", "cs => cs.map(c => c.dataset.id)")
    assert "data/venturi_341.h5" in cards and "data/y_tube_201.h5" in cards, cards
    assert page.eval_on_selector(".card img", "i => i.complete && i.naturalWidth > 0")
    # backends offered are this machine's
    options = page.eval_on_selector_all("#f-backend option:not([disabled])", "os => os.map(o => o.value)")
    assert "serial" in options and "parallel" in options, options

    # a generated venturi (about a second of Jacobi-CG: the plot grows)
    page.select_option("#gen-geom", "venturi")
    page.fill("#gen-nodes", "30000")
    page.click("#gen-pick")
    assert 'generate = "venturi"' in page.input_value("#toml")
    page.click("#solve")
    seen = []
    t0 = time.time()
    while time.time() - t0 < 120:
        n = page.evaluate("window.qf.state.points.length")
        seen.append(n)
        if page.evaluate("window.qf.state.timing.firstFrameMs !== undefined"):
            break
        time.sleep(0.05)
    grew = sorted(set(n for n in seen if n > 0))
    assert len(grew) >= 3, f"the convergence plot did not grow in steps: {grew}"
    wait_result(page, 60)
    page.wait_for_timeout(300)
    # the field is drawn: not blank, colours vary along the channel, from
    # the inflow's high potential (bright) to the outlet's zero (dark)
    row = page.evaluate("window.qf.viewer.sampleRow(96)")
    drawn = [c for c in row if c[3] > 0]
    assert len(drawn) > 40, row
    assert len({tuple(c[:3]) for c in drawn}) > 12, drawn
    assert luma(drawn[0]) > luma(drawn[-1]) + 60, (drawn[0], drawn[-1])
    # the value under the cursor
    box = page.locator("#gl").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.45, box["y"] + box["height"] / 2)
    page.wait_for_function("document.getElementById('hover').textContent.includes('u ')")
    # the timeline of phases and the result
    assert "time per solve" in page.inner_text("#result")
    assert page.evaluate("window.qf.state.result.timeline.length") == 6
    page.screenshot(path=str(OUT / "run.png"))

    # a mesh from the gallery, speed with element edges, dark theme
    page.click(".card[data-id='data/venturi_341.h5']")
    page.click("#solve")
    page.wait_for_function("window.qf.state.result && window.qf.state.result.mesh === 'data/venturi_341.h5'"
                           " && window.qf.state.timing.firstFrameMs !== undefined", timeout=30000)
    page.select_option("#field", "abs_vel")
    page.check("#edges")
    page.click("#theme")
    page.wait_for_timeout(400)
    row = page.evaluate("window.qf.viewer.sampleRow(96)")
    assert len({tuple(c[:3]) for c in row if c[3] > 0}) > 5
    page.screenshot(path=str(OUT / "run_dark_speed_edges.png"))
    page.click("#theme")

    # the compare view: every backend and solver on venturi_341
    page.click("#tab-compare")
    page.click("#cmp-run")
    page.wait_for_function("window.qf.compare().finished === true", timeout=120000)
    page.wait_for_timeout(300)
    rows = page.evaluate("window.qf.compare().rows")
    pairs = {(r["backend_name"], r["solver"]) for r in rows}
    assert ("serial", "cg-jacobi") in pairs and ("parallel", "amg-cg") in pairs and len(rows) >= 6, pairs
    assert all(r["status"] == "done" for r in rows), [(r["backend_name"], r["solver"], r.get("error")) for r in rows]
    assert all("speedup_vs_serial" in r and "max_rel_diff" in r for r in rows)
    assert not any(r["differs"] for r in rows), [(r["backend_name"], r["solver"], r["max_rel_diff"]) for r in rows]
    assert "speed-up vs serial" in page.inner_text("#cmp-table")
    page.screenshot(path=str(OUT / "compare.png"))

    page.click("#tab-jobs")
    page.wait_for_selector("#jobs-table tr:nth-child(3)")
    page.screenshot(path=str(OUT / "jobs.png"))
    assert not errors, errors


@pytest.mark.skipif(os.environ.get("PERF") != "1", reason="PERF=1 runs the 1.3M-node measurements")
def test_perf_venturi_1m3(server, browser):
    """The 1.3M-node venturi: first frame after the solve's end, bytes per
    node, pan and zoom frames per second (software GL)."""
    page, errors = open_page(browser, server)
    page.evaluate("window.qf.state.tomlEdited = true")
    page.fill("#toml", '[mesh]\ngenerate = "venturi"\nnodes = 1300000\n\n[solver]\nmethod = "amg-cg"\n'
                       'rtol = 1e-8\n\n[backend]\ndefault = "parallel"\n')
    page.evaluate("window.qf.state.tomlEdited = true")
    page.click("#solve")
    wait_result(page, 600)
    timing = page.evaluate("window.qf.state.timing")
    page.wait_for_function("window.qf.state.timing.bytesPerNode !== undefined", timeout=60000)
    timing = page.evaluate("window.qf.state.timing")
    page.wait_for_timeout(1500)
    # a full draw at the fitted view, timed to its pixels
    full = page.evaluate("""() => { const v = window.qf.viewer, t = performance.now(); v.moving = false; v.frame();
      v.gl.readPixels(0, 0, 1, 1, v.gl.RGBA, v.gl.UNSIGNED_BYTE, new Uint8Array(4)); return performance.now() - t; }""")
    # pan and zoom driven by pointer and wheel events, one per animation frame, for 4 s
    fps = page.evaluate("""async () => {
      const v = window.qf.viewer, c = v.canvas, r = c.getBoundingClientRect();
      const x0 = r.left + r.width / 2, y0 = r.top + r.height / 2;
      const frames0 = v.stats.movingFrames;
      c.dispatchEvent(new PointerEvent('pointerdown', {clientX: x0, clientY: y0, pointerId: 1, bubbles: true}));
      const t0 = performance.now();
      let k = 0;
      await new Promise((done) => {
        const step = () => {
          const t = performance.now() - t0;
          if (t > 4000) return done();
          k++;
          if (k % 2) c.dispatchEvent(new PointerEvent('pointermove', {clientX: x0 + 120 * Math.sin(t / 300), clientY: y0 + 40 * Math.cos(t / 400), pointerId: 1, bubbles: true}));
          else c.dispatchEvent(new WheelEvent('wheel', {clientX: x0, clientY: y0, deltaY: 40 * Math.sin(t / 500), bubbles: true, cancelable: true}));
          requestAnimationFrame(step);
        };
        requestAnimationFrame(step);
      });
      const secs = (performance.now() - t0) / 1000;
      c.dispatchEvent(new PointerEvent('pointerup', {clientX: x0, clientY: y0, pointerId: 1, bubbles: true}));
      return {frames: v.stats.movingFrames - frames0, seconds: secs, fps: (v.stats.movingFrames - frames0) / secs,
              events: k};
    }""")
    page.wait_for_timeout(500)
    page.click("#reset-view")
    page.wait_for_timeout(2500)
    page.screenshot(path=str(OUT / "venturi_1m3.png"))
    result = page.evaluate("window.qf.state.result")
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "")
    record = {
        "what": "quadflow serve, 1.3M-node venturi (generate venturi 1300000, amg-cg, parallel), headless Chromium with SwiftShader WebGL2",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{cpu}, {os.cpu_count()} cores, no GPU",
        "loadavg": open("/proc/loadavg").read().split()[:3],
        "chromium_flags": ARGS,
        "command": "PERF=1 tests/browser/run-tests.sh -k perf",
        "chromium": subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True).stdout.strip(),
        "nodes": result["nodes"], "elements": result["elements"],
        "solve_seconds_per_solve": result["seconds_per_solve"],
        "first_frame_ms_after_solve_end": timing["firstFrameMs"],
        "bytes_per_node_before_first_frame": timing["firstFrameBytesPerNode"],
        "bytes_per_node_all_arrays": timing["bytesPerNode"],
        "full_redraw_ms": full,
        "pan_zoom": fps,
    }
    (OUT / "browser_perf.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))
    assert not errors, errors
    assert timing["firstFrameMs"] < 2000, timing
    assert fps["fps"] >= 30, fps
