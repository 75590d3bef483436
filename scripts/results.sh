#!/usr/bin/env bash
# Reproduces docs/results.md: the lecture's model families trained with the
# same budget on the synthetic motion dataset and evaluated on its test split.
#
#   bash scripts/results.sh [MODEL ...]     (default: every configs/synth/*.ini)
#
# Needs a release build in $BUILD (default: build, which the README's first
# command makes). Every config trains on one compute thread, two models at a
# time, so the accuracies repeat bit for bit on a 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
DATA=data/synth100
if [[ ! -x $BUILD/train/vtrain ]]; then
    echo "results.sh: no $BUILD/train/vtrain; build first (meson setup $BUILD --buildtype=release && ninja -C $BUILD)" >&2
    exit 2
fi
if [[ ! -f $DATA/ucfTrainTestlist/classInd.txt ]]; then
    "$BUILD"/train/vsynth --out "$DATA" --videos-per-class 100 --seed 1
fi
models=("$@")
if [[ ${#models[@]} -eq 0 ]]; then
    models=(single_frame late_fusion_pool late_fusion_fc early_fusion c3d
            convlstm convlstm_perframe lrcn)
fi
for m in "${models[@]}"; do
    [[ -f configs/synth/$m.ini ]] || { echo "results.sh: no configs/synth/$m.ini" >&2; exit 2; }
done

run_one() {
    local m=$1 out=runs/synth/$1
    mkdir -p "$out"
    "$BUILD"/train/vtrain "configs/synth/$m.ini" --quiet > "$out/train.log" 2>&1 &&
        "$BUILD"/train/veval --checkpoint "$out/last.h5" --threads 1 \
            --json "$out/eval.json" > "$out/eval.txt" 2>&1 &&
        echo "$m: $(grep -m1 '^done:' "$out/train.log")" ||
        { echo "results.sh: $m failed, see $out/train.log and $out/eval.txt" >&2; return 1; }
}
export -f run_one
export BUILD
printf '%s\n' "${models[@]}" | xargs -P 2 -I{} bash -c 'run_one "$@"' _ {}

jsons=()
for m in "${models[@]}"; do jsons+=("runs/synth/$m/eval.json"); done
/usr/bin/python3 tools/results_table.py "${jsons[@]}"
