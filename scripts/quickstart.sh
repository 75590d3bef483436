#!/usr/bin/env bash
# The README's first command: install the Debian packages, build, make the
# synthetic motion dataset (once), train the quickstart model (a small C3D)
# on it, and evaluate it on the test split.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
[[ -f build/build.ninja ]] || meson setup build --buildtype=release
ninja -C build
# Two loader threads feed the two compute threads; the dataset is made once.
if [[ ! -f data/synth/ucfTrainTestlist/classInd.txt ]]; then
    build/train/vsynth --out data/synth
fi
build/train/vtrain configs/quickstart.ini "$@"
build/train/veval --checkpoint runs/quickstart/last.h5
