#!/usr/bin/env bash
# Data-parallel step time of C3D-small (configs/c3d_small.ini): one process
# vs `mpirun -np 2`, one compute thread per process, the same global batch;
# with the gradient allreduce overlapping backward (default) and without
# (VT_DIST_OVERLAP=0). Prints a table; docs/distributed.md quotes it.
#
#   benchmarks/bench_mpi.sh [BUILD_DIR]     (default: build)
#   BATCH=16 STEPS=20 benchmarks/bench_mpi.sh build
#
# Numbers come from vtrain's "timing:" line: mean wall time per step from
# the second step on (data wait included; the loader runs in its own
# thread), the part of it spent blocked in MPI (the per-step control
# allreduce, waiting for gradient buckets, averaging running statistics),
# and the CPU time of the compute thread outside MPI ("compute CPU"), which
# other load on a shared machine does not inflate the way it does wall time.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "${1:-build}" && pwd)
BIN=$BUILD/train
BATCH=${BATCH:-16}
STEPS=${STEPS:-20}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_WAIT_POLICY=PASSIVE

command -v mpirun >/dev/null || { echo "bench_mpi: mpirun not found (apt-get install openmpi-bin)"; exit 1; }
"$BIN/vsynth" --out "$TMP/data" --classes MoveLeft,MoveRight,MoveUp,MoveDown,RotateCW,RotateCCW,Grow,Shrink \
    --videos-per-class 12 --size 80x64 --frames 24 --seed 3 >/dev/null
# c3d_small plus what a run needs; 16 frames of 64x64 crops from 64x80 frames.
{
    cat "$SRC/configs/c3d_small.ini"
    cat <<EOF

[data]
root = $TMP/data
resize = 64x80
flip = 0
clips_per_video = 1
threads = 1

[train]
steps = $STEPS
batch_size = $BATCH
lr = 0.003
val_every = 0
checkpoint_every = 0
log_every = 1
threads = 1

[optim]
type = sgd
momentum = 0.9
EOF
} >"$TMP/bench.ini"

run() { # label, launcher args...
    local label=$1
    shift
    rm -rf "$TMP/out"
    "$@" "$BIN/vtrain" "$TMP/bench.ini" --set train.out_dir="$TMP/out" >"$TMP/log" 2>&1 ||
        { cat "$TMP/log"; exit 1; }
    local t
    t=$(grep '^timing:' "$TMP/log") || { cat "$TMP/log"; exit 1; }
    # timing: P processes x 1 thread, X ms per step (...), of which Y ms (Z%)
    # blocked ... (W ms waiting for gradients); main thread C ms CPU per step ...
    local ms comm pct grad cpu
    ms=$(sed -E 's/.*, ([0-9.]+) ms per step.*/\1/' <<<"$t")
    comm=$(sed -E 's/.*of which ([0-9.]+) ms.*/\1/' <<<"$t")
    pct=$(sed -E 's/.*ms \(([0-9.]+)%\) blocked.*/\1/' <<<"$t")
    grad=$(sed -E 's/.*\(([0-9.]+) ms waiting for gradients.*/\1/' <<<"$t")
    cpu=$(sed -E 's/.*main thread ([0-9.]+) ms CPU.*/\1/' <<<"$t")
    printf "%-34s %9.1f %13.1f %8.1f%% %12.1f %12.1f\n" "$label" "$ms" "$comm" "$pct" "$grad" "$cpu"
}

MPI=(mpirun --oversubscribe --bind-to none --mca mpi_yield_when_idle 1)
echo "C3D-small, global batch $BATCH, $STEPS steps, 1 compute thread per process, $(nproc) cores"
grep -m1 'model name' /proc/cpuinfo | sed 's/.*: /CPU: /' || true
printf "%-34s %9s %13s %9s %12s %12s\n" "run" "ms/step" "comm ms/step" "comm %" "grad wait ms" "compute CPU"
run "1 process" "${MPI[@]}" -np 1
run "2 processes (overlapped buckets)" "${MPI[@]}" -np 2
run "2 processes (VT_DIST_OVERLAP=0)" "${MPI[@]}" -x VT_DIST_OVERLAP=0 -np 2
run "2 processes, 0.25 MB buckets" "${MPI[@]}" -x VT_BUCKET_MB=0.25 -np 2
grep '^data-parallel' "$TMP/log" | sed 's/^/last run: /'
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine inflates wall times)"
