#!/usr/bin/env bash
# The browser test of `quadflow serve` (tests/browser/test_serve.py): a
# real headless Chromium (Debian's, with SwiftShader's WebGL2) driven by
# Playwright for Python opens the page, picks a mesh, solves, watches the
# convergence plot grow, reads the field back from the canvas and opens the
# compare view; screenshots of each view go to profiles/serve/.
#
#   tests/browser/run-tests.sh            the test
#   PERF=1 tests/browser/run-tests.sh     also the 1.3M-node venturi figures
#                                         (profiles/serve/browser_perf.json)
#
# Installs Chromium and Playwright first if they are missing
# (install-deps.sh); where Chromium cannot be installed, the test skips and
# says so in $QUADFLOW_SKIP_LOG.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
if ! bash "$here/install-deps.sh"; then
  echo "SKIPPED tests/browser: Chromium or Playwright cannot be installed here"
  [ -n "${QUADFLOW_SKIP_LOG:-}" ] && echo "tests/browser (quadflow serve in Chromium): Chromium or Playwright cannot be installed" >> "$QUADFLOW_SKIP_LOG"
  exit 0
fi
cargo build --release --bin quadflow
export QUADFLOW_BIN="$root/target/release/quadflow"
python3 -m pytest -q -rs -p no:cacheprovider "$here" "$@"
