#!/usr/bin/env bash
# Installs what the browser test of `quadflow serve` needs: Debian's
# Chromium (/usr/bin/chromium; no browser download) and Playwright for
# Python (driving that Chromium). Idempotent and quiet: does nothing when
# they are there. Needs root (or sudo) and apt-get; exits non-zero when
# Chromium cannot be installed (the test then skips, logged).
set -euo pipefail
if ! command -v chromium >/dev/null; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq >/dev/null
  $SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
fi
command -v chromium >/dev/null || { echo "install-deps.sh: chromium still missing" >&2; exit 1; }
python3 -c "import playwright.sync_api, pytest" 2>/dev/null \
  || PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check playwright pytest
python3 -c "import playwright.sync_api, pytest" 2>/dev/null \
  || { echo "install-deps.sh: playwright or pytest missing" >&2; exit 1; }
