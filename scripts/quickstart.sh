#!/usr/bin/env bash
# The README's first command: install, build, and run the main job.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
[[ -f build/build.ninja ]] || meson setup build
ninja -C build
# The training tools arrive with the training-tools issue; until then the
# main job is the test suite of the engine.
meson test -C build --print-errorlogs
