#!/usr/bin/env bash
# Data-parallel training under MPI (docs/distributed.md), on the tiny model
# of tests/tiny.ini without batch norm (per-rank batch statistics would
# differ from one process's by design) and with its dropout:
#  1. `mpirun -np 2` trains 20 steps that match the one-process run with
#     the same global batch: every step's loss within 1e-5 relative, final
#     weights and optimizer moments within 1e-6 absolute (float rounding:
#     two half-batch gradients summed instead of one; values are ~0.01-1);
#     validation rows alike; rank 0 alone writes (one row per step);
#  2. resume: a checkpoint written at N=2 resumed at N=1, and the reverse,
#     continue the same loss curve and end at the same weights;
#  3. veval with 2 and 3 processes reports what one process does;
#  4. with batch norm (per-rank statistics) training runs and resumes;
#  5. a batch size that N does not divide: exit 2, one message;
#  6. SIGINT at rank 0 stops every rank after the same step with a
#     checkpoint from which the curve continues;
#  7. a rank killed mid-run ends the job (non-zero exit, a message from
#     rank 0) and leaves a loadable last.h5.
# Runs as root in CI: Open MPI needs its allow-run-as-root variables.
set -u
SRC=${VT_SOURCE_ROOT:?}
BIN=${VT_BUILD_ROOT:?}/train
if ! command -v mpirun >/dev/null; then
    echo "SKIP: mpirun not found (apt-get install openmpi-bin)"
    exit 77
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Ranks that poll while waiting would starve each other on a busy machine;
# under the sanitizers Open MPI's own allocations at exit are not ours.
export OMPI_MCA_mpi_yield_when_idle=1
[ -n "${LSAN_OPTIONS:-}" ] && export LSAN_OPTIONS="$LSAN_OPTIONS:suppressions=$SRC/tests/lsan_mpi.supp"
MPI=(mpirun --oversubscribe --bind-to none)
TMP=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$TMP"' EXIT
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

"$BIN/vsynth" --out "$TMP/data" --classes MoveLeft,MoveRight,Grow,Still --videos-per-class 8 \
    --size 48x36 --frames 12 --seed 5 >/dev/null || { echo "vsynth failed"; exit 1; }
CFG="$SRC/tests/tiny.ini"
# 20 steps = 5 epochs of 4; validation after epochs 2 and 4 and at the end.
# Small gradient buckets (VT_BUCKET_MB) so that several start during backward.
SETS=(--set "data.root=$TMP/data" --set conv1.batch_norm=0 --set train.steps=20
      --set train.threads=1)
one() { "$BIN/vtrain" "$CFG" --quiet "${SETS[@]}" "$@"; }
two() { "${MPI[@]}" -np 2 -x VT_BUCKET_MB=0.002 "$BIN/vtrain" "$CFG" --quiet "${SETS[@]}" "$@"; }
# Step and loss of every metrics.csv row.
losses() { tail -n +2 "$1/metrics.csv" | cut -d, -f1,3; }
# Compares two "step,loss" lists: same steps, losses within 1e-5 relative.
same_curve() {
    paste -d, <(losses "$1") <(losses "$2") | awk -F, -v a="$1" -v b="$2" '
        { n++; if ($1 != $3) { print "step " $1 " vs " $3; bad = 1; next }
          d = $2 - $4; if (d < 0) d = -d; r = d / ($2 > 0 ? $2 : -$2);
          if (r > worst) worst = r;
          if (r > 1e-5) { print "step " $1 ": loss " $2 " vs " $4; bad = 1 } }
        END { printf "  %s vs %s: %d steps, max relative loss difference %.2g\n", a, b, n, worst;
              exit bad || n == 0 }'
}
# Every tensor of /model and /optim within 1e-6 (h5diff prints differences).
same_weights() {
    h5diff -d 1e-6 "$1" "$2" /model /model >"$TMP/h5d" 2>&1 &&
        h5diff -d 1e-6 "$1" "$2" /optim /optim >>"$TMP/h5d" 2>&1 || { head "$TMP/h5d"; return 1; }
}

# ---- 1. N=2 equals N=1 ------------------------------------------------------
one --set train.out_dir="$TMP/A1" >"$TMP/A1.log" 2>&1 || { bad "1-process run"; cat "$TMP/A1.log"; }
two --set train.out_dir="$TMP/A2" >"$TMP/A2.log" 2>&1 || { bad "2-process run"; cat "$TMP/A2.log"; }
same_curve "$TMP/A1" "$TMP/A2" && ok || bad "per-step losses of N=2 differ from N=1"
[ "$(losses "$TMP/A2" | wc -l)" -eq 20 ] && ok || bad "metrics.csv of N=2 has $(losses "$TMP/A2" | wc -l) rows, expected 20 (rank 0 alone writes)"
same_weights "$TMP/A1/last.h5" "$TMP/A2/last.h5" && ok || bad "final weights of N=2 differ from N=1"
# Validation (2 ranks, each half of the test videos, counts summed).
diff <(cut -d, -f1-7 "$TMP/A1/val.csv") <(cut -d, -f1-7 "$TMP/A2/val.csv") >/dev/null && ok ||
    bad "validation rows differ: $(diff "$TMP/A1/val.csv" "$TMP/A2/val.csv")"
[ "$(grep -c '^validation after' "$TMP/A2.log")" -eq 3 ] && ok || bad "N=2 printed $(grep -c '^validation after' "$TMP/A2.log") validation lines, expected 3 (rank 0 only)"
# Progress output comes from rank 0 alone.
"${MPI[@]}" -np 2 "$BIN/vtrain" "$CFG" "${SETS[@]}" --set train.steps=4 --set train.out_dir="$TMP/P" >"$TMP/P.log" 2>&1
[ "$(grep -c 'step 4/4' "$TMP/P.log")" -eq 1 ] && grep -q "^data-parallel: 2 processes" "$TMP/P.log" && ok ||
    { bad "progress lines of N=2"; cat "$TMP/P.log"; }

# ---- 2. resume across N -----------------------------------------------------
two --set train.out_dir="$TMP/B" --stop-after 7 >"$TMP/B1.log" 2>&1 &&
    "$BIN/vinfo" "$TMP/B/last.h5" | grep -q "step 7" && ok || { bad "N=2 --stop-after 7"; cat "$TMP/B1.log"; }
one --set train.out_dir="$TMP/B" --resume "$TMP/B/last.h5" >"$TMP/B2.log" 2>&1 && ok ||
    { bad "N=1 resume of an N=2 checkpoint"; cat "$TMP/B2.log"; }
same_curve "$TMP/A1" "$TMP/B" && ok || bad "N=2 -> N=1 resume does not continue the curve"
same_weights "$TMP/A1/last.h5" "$TMP/B/last.h5" && ok || bad "N=2 -> N=1 resume: final weights differ"
one --set train.out_dir="$TMP/C" --stop-after 9 >"$TMP/C1.log" 2>&1 && ok || { bad "N=1 --stop-after 9"; cat "$TMP/C1.log"; }
two --set train.out_dir="$TMP/C" --resume "$TMP/C/last.h5" >"$TMP/C2.log" 2>&1 && ok ||
    { bad "N=2 resume of an N=1 checkpoint"; cat "$TMP/C2.log"; }
same_curve "$TMP/A1" "$TMP/C" && ok || bad "N=1 -> N=2 resume does not continue the curve"
same_weights "$TMP/A1/last.h5" "$TMP/C/last.h5" && ok || bad "N=1 -> N=2 resume: final weights differ"

# ---- 3. veval distributed ---------------------------------------------------
numbers() { grep -v -e '"seconds"' -e '"files"' -e '"checkpoint"' "$1"; }
"$BIN/veval" --checkpoint "$TMP/A1/last.h5" --clips 3 --json "$TMP/E1.json" --out "$TMP/E1" >/dev/null 2>&1 &&
    ok || bad "veval, 1 process"
for n in 2 3; do
    "${MPI[@]}" -np $n "$BIN/veval" --checkpoint "$TMP/A1/last.h5" --clips 3 --json "$TMP/E$n.json" \
        --out "$TMP/E$n" >"$TMP/E$n.log" 2>&1 || { bad "veval, $n processes"; cat "$TMP/E$n.log"; }
    diff <(numbers "$TMP/E1.json") <(numbers "$TMP/E$n.json") >/dev/null && ok ||
        bad "veval with $n processes: $(diff <(numbers "$TMP/E1.json") <(numbers "$TMP/E$n.json") | head -5)"
    diff "$TMP/E1/eval_last_split1_videos.csv" "$TMP/E$n/eval_last_split1_videos.csv" >/dev/null && ok ||
        bad "veval with $n processes: per-video predictions differ"
done

# ---- 4. batch norm: per-rank statistics, averaged running buffers -----------
BN=(--set "data.root=$TMP/data" --set train.steps=8 --set train.threads=1 --set train.val_every=0)
"${MPI[@]}" -np 2 "$BIN/vtrain" "$CFG" --quiet "${BN[@]}" --set train.out_dir="$TMP/N" --stop-after 5 \
    >"$TMP/N1.log" 2>&1 && "$BIN/vtrain" "$CFG" --quiet "${BN[@]}" --set train.out_dir="$TMP/N" \
    --resume "$TMP/N/last.h5" >"$TMP/N2.log" 2>&1 && "$BIN/vinfo" "$TMP/N/last.h5" | grep -q "step 8" && ok ||
    { bad "batch-norm model at N=2, resumed at N=1"; cat "$TMP/N1.log" "$TMP/N2.log"; }

# ---- 5. a batch N does not divide -------------------------------------------
"${MPI[@]}" -np 3 "$BIN/vtrain" "$CFG" --quiet "${SETS[@]}" --set train.out_dir="$TMP/D" >"$TMP/D.log" 2>&1
rc=$?
[ $rc -ne 0 ] && [ "$(grep -c 'must be divisible by the 3 processes' "$TMP/D.log")" -eq 1 ] && [ ! -e "$TMP/D" ] && ok ||
    { bad "batch 4 on 3 processes: exit $rc"; cat "$TMP/D.log"; }

# ---- 6. SIGINT at rank 0 ----------------------------------------------------
rank_pid() { # out_dir, rank -> pid of that vtrain rank
    local p
    for p in $(pgrep -f "out_dir=$1"); do
        tr '\0' '\n' </proc/"$p"/environ 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$2" && echo "$p"
    done
}
LONG=(--set train.steps=4000 --set train.val_every=0 --set train.checkpoint_every=0)
"${MPI[@]}" -np 2 "$BIN/vtrain" "$CFG" --quiet "${SETS[@]}" "${LONG[@]}" --set train.out_dir="$TMP/S" \
    >"$TMP/S1.log" 2>&1 &
mpid=$!
for _ in $(seq 600); do # at least 6 steps, at most 60 s
    [ -f "$TMP/S/metrics.csv" ] && [ "$(wc -l <"$TMP/S/metrics.csv")" -ge 7 ] && break
    sleep 0.1
done
kill -INT "$(rank_pid "$TMP/S" 0)"
wait $mpid
k=$(tail -n 1 "$TMP/S/metrics.csv" | cut -d, -f1)
"$BIN/vinfo" "$TMP/S/last.h5" 2>/dev/null | grep -q "step $k\b" && grep -q "stopped after step $k;" "$TMP/S1.log" && ok ||
    { bad "SIGINT at rank 0: checkpoint not at the last logged step $k"; cat "$TMP/S1.log"; }
two "${LONG[@]}" --set train.out_dir="$TMP/S" --resume "$TMP/S/last.h5" --stop-after 3 >"$TMP/S2.log" 2>&1 ||
    { bad "resume after SIGINT"; cat "$TMP/S2.log"; }
one "${LONG[@]}" --set train.out_dir="$TMP/S0" --stop-after $((k + 3)) >/dev/null 2>&1
same_curve "$TMP/S0" "$TMP/S" && ok || bad "the curve after a SIGINT stop and resume differs"

# ---- 7. a rank dies ---------------------------------------------------------
"${MPI[@]}" -np 2 "$BIN/vtrain" "$CFG" --quiet "${SETS[@]}" "${LONG[@]}" --set train.checkpoint_every=2 \
    --set train.out_dir="$TMP/K" >"$TMP/K.log" 2>&1 &
mpid=$!
for _ in $(seq 600); do
    [ -f "$TMP/K/last.h5" ] && [ "$(wc -l <"$TMP/K/metrics.csv")" -ge 7 ] && break
    sleep 0.1
done
kill -KILL "$(rank_pid "$TMP/K" 1)"
wait $mpid
rc=$?
[ $rc -ne 0 ] && ok || bad "a killed rank: mpirun exit $rc"
grep -q "rank 0: the launcher is ending the job" "$TMP/K.log" && ok ||
    { bad "a killed rank: no message from rank 0"; cat "$TMP/K.log"; }
"$BIN/vinfo" "$TMP/K/last.h5" >/dev/null 2>&1 && ok || bad "a killed rank: last.h5 does not load"

echo "mpi: $pass passed, $fail failed"
[ $fail -eq 0 ]
