#!/usr/bin/env bash
# The Python package's tests: installs the package from this checkout
# (building it with cargo through maturin) and its test dependencies, then
# runs pytest. Tests that need ../shared or a tool that is missing skip,
# saying so. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"

export PIP_ROOT_USER_ACTION=ignore
pip() { python3 -m pip --disable-pip-version-check "$@"; }

pip install --quiet numpy scipy h5py pytest \
  || echo "warning: could not install the test dependencies; tests that need them will skip or fail"
# optional: meshio (the VTU check) and matplotlib (the plot example) skip without
pip install --quiet meshio matplotlib || true
# Build in the checkout's target directory: the crates `cargo test --release`
# at the root built are reused.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$(cd .. && pwd)/target}"
pip install --quiet .
# run from tests/ so that the installed package is the one imported
cd tests
python3 -m pytest -q -rs "$@"
