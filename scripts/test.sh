#!/usr/bin/env bash
# Installs what the tests need, builds, and runs the whole test suite.
#   scripts/test.sh                 release build in build/
#   BUILD=build-asan MESON_ARGS="-Db_sanitize=address,undefined" scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --test
BUILD=${BUILD:-build}
if [[ ! -f "$BUILD/build.ninja" ]]; then
    # shellcheck disable=SC2086
    meson setup "$BUILD" ${MESON_ARGS:-}
fi
ninja -C "$BUILD"
set +e
meson test -C "$BUILD" --print-errorlogs --num-processes "${VT_TEST_JOBS:-2}" | tee "$BUILD/test-summary.txt"
rc=${PIPESTATUS[0]}
set -e
ok=$(awk '/^Ok:/ {print $2}' "$BUILD/test-summary.txt")
fail=$(awk '/^Fail:/ {print $2}' "$BUILD/test-summary.txt")
skip=$(awk '/^Skipped:/ {print $2}' "$BUILD/test-summary.txt")
timeout=$(awk '/^Timeout:/ {print $2}' "$BUILD/test-summary.txt")
echo "tests: ${ok:-0} passed, $(( ${fail:-0} + ${timeout:-0} )) failed, ${skip:-0} skipped"
exit "$rc"
