#!/bin/bash
# test_evaltools.sh - veval and vpredict end to end on a tiny synthetic
# dataset (vsynth) with checkpoints of freshly initialised models (mkckpt):
#   veval: the JSON fields and their mutual consistency (top-k order,
#     per-class accuracies vs video accuracy, confusion rows vs per-class
#     counts, clip counts for --clips/--crops), the CSV and SVG files;
#   vpredict: JSON and text output, its top-1 per video against veval's
#     predictions (two independent decoding paths), per-frame timelines,
#     --annotate (decodable mp4 with the source's frame count), --tensor
#     (logits (N, classes), probs = softmax(logits));
#   user errors: missing / text / truncated checkpoints, a config of
#     another architecture, a bad --set, bad option values, missing and
#     broken videos, a tensor of the wrong shape: non-zero status, one
#     line on stderr naming the file or key, never a crash.
# Needs VT_BUILD_ROOT (set by tests/meson.build), ffprobe and Debian's
# /usr/bin/python3 with numpy and h5py.
set -u
B=${VT_BUILD_ROOT:?VT_BUILD_ROOT must name the build directory}
PY=/usr/bin/python3
VEVAL=$B/train/veval
VPREDICT=$B/train/vpredict
T=$(mktemp -d "${TMPDIR:-/tmp}/vt_evaltools_XXXXXX")
trap 'rm -rf "$T"' EXIT
fails=0
t_start=$(date +%s.%N)

ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fails=$((fails + 1)); }

# run NAME CMD...: must exit 0 (and UBSan, which does not change the
# status, must stay quiet); output in $T/out, $T/err.
run() {
    local name=$1
    shift
    "$@" >"$T/out" 2>"$T/err"
    local st=$?
    if [ $st -ne 0 ] || grep -q "runtime error" "$T/err"; then
        bad "$name: exit status $st"
        sed 's/^/     | /' "$T/err" | head -20
        return 1
    fi
    ok "$name"
}

# expect_fail NAME STATUS NEEDLE CMD...: must exit with STATUS and print
# one message on stderr whose line contains NEEDLE (a file name or a key),
# followed at most by a "(see TOOL --help)" hint for usage errors.
expect_fail() {
    local name=$1 want=$2 needle=$3
    shift 3
    "$@" >"$T/out" 2>"$T/err"
    local st=$? lines
    lines=$(grep -c . "$T/err")
    if [ $st -ne "$want" ]; then
        bad "$name: exit status $st, expected $want"
    elif [ "$lines" -ne 1 ] && ! { [ "$lines" -eq 2 ] && sed -n 2p "$T/err" | grep -q '^(see .* --help)$'; }; then
        bad "$name: $lines lines on stderr, expected 1"
    elif ! head -1 "$T/err" | grep -qF -- "$needle"; then
        bad "$name: the message does not name '$needle'"
    else
        ok "$name (status $st): $(head -1 "$T/err")"
        return 0
    fi
    sed 's/^/     | /' "$T/err" | head -20
}

# pycheck NAME SCRIPT ARGS...: a Python check that prints its findings and
# exits non-zero on failure.
pycheck() {
    local name=$1 script=$2
    shift 2
    if out=$($PY -c "$script" "$@" 2>&1); then
        ok "$name${out:+: $out}"
    else
        bad "$name"
        echo "$out" | sed 's/^/     | /' | head -30
    fi
}

# ==== Data and checkpoints ================================================

run "vsynth: 4 classes x 4 videos" \
    "$B/train/vsynth" --out "$T/ds" --classes MoveLeft,MoveRight,Still,Grow \
    --videos-per-class 4 --groups 2 --size 64x48 --frames 20 || exit 1

# batch_size 3 leaves a partial last batch; resize 36x48 is larger than
# the 32x32 input, so crops have somewhere to go.
cat >"$T/tiny3d.ini" <<EOF
[model]
name = tiny3d
input = 3x8x32x32
classes = 4
seed = 7

[conv3d conv1]
filters = 4
size = 3
pad = 1
activation = relu

[maxpool3d pool1]
size = 2x4x4

[flatten flat]

[linear fc]
units = 4

[train]
batch_size = 3
threads = 1

[data]
root = $T/ds
resize = 36x48
clips_per_video = 3
threads = 1
EOF
sed 's/^filters = 4/filters = 6/' "$T/tiny3d.ini" >"$T/wide.ini"

# Per-frame model (single-frame baseline shape): (T, classes) logits.
cat >"$T/frames.ini" <<EOF
[model]
name = tinyframes
input = 3x6x32x32
classes = 4
seed = 3

[conv2d conv1]
filters = 4
size = 3
stride = 2
pad = 1
activation = relu

[maxpool2d pool1]
size = 4

[sequence frames]

[linear head]
units = 4

[train]
batch_size = 4
threads = 1

[data]
root = $T/ds
short_side = 40
clips_per_video = 2
threads = 1
EOF

mkdir -p "$T/run" "$T/pf"
run "mkckpt tiny3d" "$B/tests/mkckpt" "$T/tiny3d.ini" "$T/run/last.h5" || exit 1
run "mkckpt per-frame" "$B/tests/mkckpt" "$T/frames.ini" "$T/pf/last.h5" || exit 1

# ==== veval ==============================================================

CHECK_EVAL='
import csv, json, math, os, sys
j = json.load(open(sys.argv[1]))
clips_per_video, crops, outdir = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
names = ["MoveLeft", "MoveRight", "Still", "Grow"]
for k in ["clip_top1", "clip_top5", "video_top1", "video_top5", "mean_class_acc", "loss",
          "clips", "videos", "per_class", "checkpoint", "split", "clips_per_video",
          "crops", "seconds"]:
    assert k in j, "missing field " + k
assert j["videos"] == 8, j["videos"]
assert j["clips"] == 8 * clips_per_video * crops, (j["clips"], clips_per_video, crops)
assert j["clips_per_video"] == clips_per_video and j["crops"] == crops
for k in ["clip_top1", "clip_top5", "video_top1", "video_top5", "mean_class_acc"]:
    assert 0 <= j[k] <= 1, (k, j[k])
# 4 classes: the top-5 holds every class.
assert j["clip_top5"] == 1 and j["video_top5"] == 1, (j["clip_top5"], j["video_top5"])
assert j["loss"] > 0 and math.isfinite(j["loss"]) and j["seconds"] >= 0
pc = j["per_class"]
assert [c["name"] for c in pc] == names, [c["name"] for c in pc]
assert sum(c["videos"] for c in pc) == 8
assert all(c["videos"] == 2 for c in pc), pc
hits = sum(c["accuracy"] * c["videos"] for c in pc)
assert abs(hits / 8 - j["video_top1"]) < 1e-9, (hits, j["video_top1"])
mean = sum(c["accuracy"] for c in pc) / 4
assert abs(mean - j["mean_class_acc"]) < 1e-9, (mean, j["mean_class_acc"])
stem = os.path.basename(j["checkpoint"])[:-3]
base = os.path.join(outdir, "eval_%s_split%d_" % (stem, j["split"]))
rows = list(csv.reader(open(base + "per_class.csv")))
assert rows[0] == ["class", "accuracy", "videos"], rows[0]
assert [r[0] for r in rows[1:]] == names
for r, c in zip(rows[1:], pc):
    assert abs(float(r[1]) - c["accuracy"]) < 1e-6 and int(r[2]) == c["videos"], (r, c)
rows = list(csv.reader(open(base + "confusion.csv")))
assert rows[0][1:] == names, rows[0]
assert [r[0] for r in rows[1:]] == names
m = [[int(x) for x in r[1:]] for r in rows[1:]]
assert m == j["confusion"], (m, j["confusion"])
for i, c in enumerate(pc):
    assert sum(m[i]) == c["videos"] and abs(m[i][i] / c["videos"] - c["accuracy"]) < 1e-9
svg = open(base + "confusion.svg").read()
assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>") and svg.count("<rect") >= 17
rows = list(csv.reader(open(base + "videos.csv")))
assert rows[0] == ["video", "true", "predicted"] and len(rows) == 9, rows[:2]
assert sum(r[1] == r[2] for r in rows[1:]) == round(8 * j["video_top1"])
print("video top-1 %.3f, clip top-1 %.3f, mean class %.3f, loss %.4f, %d clips"
      % (j["video_top1"], j["clip_top1"], j["mean_class_acc"], j["loss"], j["clips"]))
'

run "veval --clips 2 --json (outputs next to the checkpoint)" \
    "$VEVAL" --checkpoint "$T/run/last.h5" --clips 2 --json "$T/eval.json" &&
    pycheck "veval JSON, CSV and SVG" "$CHECK_EVAL" "$T/eval.json" 2 1 "$T/run"
if grep -q "video" "$T/out" && grep -q "mean class accuracy" "$T/out"; then
    ok "veval summary table on stdout"
else
    bad "veval summary table missing"
fi
run "veval --crops 3 --clips 1 --out DIR" \
    "$VEVAL" --checkpoint "$T/run/last.h5" --clips 1 --crops 3 --out "$T/ev3" \
    --json "$T/eval3.json" &&
    pycheck "veval 3 crops: 24 clips" "$CHECK_EVAL" "$T/eval3.json" 1 3 "$T/ev3"
run "veval --split 2 --set data.clips_per_video=1" \
    "$VEVAL" --checkpoint "$T/run/last.h5" --split 2 --set data.clips_per_video=1 \
    --out "$T/ev2" --json "$T/eval2.json" &&
    pycheck "veval split 2" "$CHECK_EVAL" "$T/eval2.json" 1 1 "$T/ev2"
run "veval per-frame model" \
    "$VEVAL" --checkpoint "$T/pf/last.h5" --json "$T/evalpf.json" &&
    pycheck "veval per-frame JSON" "$CHECK_EVAL" "$T/evalpf.json" 2 1 "$T/pf"
run "veval --help" "$VEVAL" --help && grep -q -- "--checkpoint" "$T/out" || bad "veval --help text"

# ==== vpredict ===========================================================

V1=$T/ds/MoveLeft/v_MoveLeft_g01_c01.avi
V2=$T/ds/Still/v_Still_g01_c02.avi

run "vpredict --json --top 3 --clips 2 (two videos)" \
    "$VPREDICT" --checkpoint "$T/run/last.h5" --json --top 3 --clips 2 "$V1" "$V2" &&
    cp "$T/out" "$T/pred.json" &&
    pycheck "vpredict JSON fields; top-1 agrees with veval's prediction" '
import csv, json, os, sys
j = json.load(open(sys.argv[1]))
names = ["MoveLeft", "MoveRight", "Still", "Grow"]
assert j["per_frame"] is False and j["top"] == 3 and j["clips_per_video"] == 2
assert len(j["videos"]) == 2
veval = {os.path.basename(r["video"]): r["predicted"]
         for r in csv.DictReader(open(sys.argv[2]))}
agree = 0
for v, path in zip(j["videos"], sys.argv[3:]):
    assert v["path"] == path and "error" not in v
    assert v["frames"] == 20 and abs(v["fps"] - 25) < 1e-6 and v["clips"] == 2
    top = v["top"]
    assert len(top) == 3 and len({t["index"] for t in top}) == 3
    assert all(names[t["index"]] == t["class"] for t in top)
    p = [t["prob"] for t in top]
    assert p == sorted(p, reverse=True) and 0 < sum(p) <= 1 + 1e-6, p
    tl = v["timeline"]
    assert len(tl) == 2 and tl[0]["start"] < tl[1]["start"], tl
    for c in tl:
        assert 0 <= c["start"] < c["end"] <= 20 / 25 + 1e-9 and 0 < c["prob"] <= 1
        assert names[c["index"]] == c["class"] and "frames" not in c
    # 8 frames of 20, K = 2: clips start at floor((k + 0.5) / 2 * 13).
    assert abs(tl[0]["start"] - 3 / 25) < 1e-9 and abs(tl[1]["start"] - 9 / 25) < 1e-9, tl
    # veval (loader path) and vpredict (own decode) must agree unless the
    # two best classes are too close for float rounding to settle it.
    if p[0] - p[1] > 1e-4:
        assert veval[os.path.basename(path)] == top[0]["class"], (path, veval, top)
        agree += 1
print("top-1 %s %.3f, %s %.3f; %d of 2 checked against veval" % (
    j["videos"][0]["top"][0]["class"], j["videos"][0]["top"][0]["prob"],
    j["videos"][1]["top"][0]["class"], j["videos"][1]["top"][0]["prob"], agree))
' "$T/pred.json" "$T/run/eval_last_split1_videos.csv" "$V1" "$V2"

run "vpredict text output" "$VPREDICT" --checkpoint "$T/run/last.h5" --top 2 "$V1" &&
    if grep -q "timeline" "$T/out" && [ "$(grep -c '^ *[12]\. ' "$T/out")" -eq 2 ]; then
        ok "vpredict text: top 2 and timeline"
    else
        bad "vpredict text output"
        sed 's/^/     | /' "$T/out"
    fi

run "vpredict per-frame model --json" \
    "$VPREDICT" --checkpoint "$T/pf/last.h5" --json --clips 3 "$V2" &&
    pycheck "per-frame timeline: a class at every frame of each clip" '
import json, sys
j = json.load(open(sys.argv[1]))
assert j["per_frame"] is True
v = j["videos"][0]
assert len(v["timeline"]) == 3
for c in v["timeline"]:
    fr = c["frames"]
    assert len(fr) == 6, len(fr)
    idx = [f["frame"] for f in fr]
    assert idx == list(range(idx[0], idx[0] + 6)), idx
    assert abs(fr[0]["time"] - c["start"]) < 1e-9
    assert all(0 < f["prob"] <= 1 and 0 <= f["index"] < 4 for f in fr)
print("clip starts", [c["start"] for c in v["timeline"]])
' "$T/out"

run "vpredict --annotate OUT.mp4" \
    "$VPREDICT" --checkpoint "$T/run/last.h5" --clips 2 --annotate "$T/ann.mp4" "$V1" "$V2"
run "vpredict --annotate OUT.avi (per-frame model)" \
    "$VPREDICT" --checkpoint "$T/pf/last.h5" --annotate "$T/ann.avi" "$V2"
# Decodable, same frame count as the source, the codec the extension
# asks for, and the label visible: annotated frames differ from the
# source in the label box (top-left) and hardly anywhere else.
pycheck "annotated videos" '
import subprocess, sys, numpy as np
def frames(p):
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", p, "-f", "rawvideo", "-pix_fmt",
                          "rgb24", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, 48, 64, 3).astype(float)
def codec(p):
    return subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                           "stream=codec_name", "-of", "csv=p=0", p],
                          capture_output=True, text=True, check=True).stdout.strip()
out = []
for ann, src, want in zip(sys.argv[1::3], sys.argv[2::3], sys.argv[3::3]):
    a, s = frames(ann), frames(src)
    assert codec(ann) == want, (ann, codec(ann), want)
    assert len(a) == len(s) == 20, (ann, len(a), len(s))
    box = np.abs(a[:, :8, :20] - s[:, :8, :20]).mean()
    rest = np.abs(a[:, 24:, :] - s[:, 24:, :]).mean()
    assert box > 20 and rest < 8, (ann, box, rest)
    out.append("%s %s %d frames, |diff| %.1f in the label box, %.1f below" % (
        ann[-3:], want, len(a), box, rest))
print("; ".join(out))
' "$T/ann.mp4" "$V1" h264 "$T/ann.avi" "$V2" mpeg4

$PY -c '
import h5py, numpy as np, sys
rng = np.random.default_rng(0)
with h5py.File(sys.argv[1], "w") as f:
    f["x"] = rng.standard_normal((5, 3, 8, 32, 32)).astype(np.float32)
    f["xf"] = rng.standard_normal((3, 3, 6, 32, 32)).astype(np.float32)
    f["bad"] = rng.standard_normal((2, 3, 4, 32, 32)).astype(np.float32)
' "$T/in.h5" || bad "writing the input tensor"
CHECK_TENSOR='
import h5py, numpy as np, sys
out = []
for path, shape in zip(sys.argv[1::2], sys.argv[2::2]):
    with h5py.File(path, "r") as f:
        lg, pr = f["logits"][...], f["probs"][...]
    want = tuple(int(x) for x in shape.split(","))
    assert lg.shape == want and lg.dtype == np.float32, (lg.shape, want)
    e = np.exp(lg - lg.max(-1, keepdims=True))
    sm = e / e.sum(-1, keepdims=True)
    if sm.ndim == 3:
        sm = sm.mean(1)
    err = np.abs(pr - sm).max()
    assert pr.shape == (want[0], 4) and err < 1e-5, err
    assert len({tuple(r) for r in lg.reshape(want[0], -1)}) == want[0]
    out.append("logits %s, max |probs - softmax(logits)| %.2g" % (lg.shape, err))
print("; ".join(out))
'
run "vpredict --tensor (batches of 3 over N = 5)" \
    "$VPREDICT" --checkpoint "$T/run/last.h5" --tensor "$T/in.h5:x" --out "$T/logits.h5"
run "vpredict --tensor per-frame model" \
    "$VPREDICT" --checkpoint "$T/pf/last.h5" --tensor "$T/in.h5:xf" --out "$T/logitsf.h5"
pycheck "tensor logits (N, classes) and (N, T, classes)" "$CHECK_TENSOR" \
    "$T/logits.h5" 5,4 "$T/logitsf.h5" 3,6,4
run "vpredict --help" "$VPREDICT" --help && grep -q -- "--annotate" "$T/out" ||
    bad "vpredict --help text"

# ==== User errors =========================================================

echo "not a checkpoint" >"$T/text.h5"
size=$(stat -c %s "$T/run/last.h5")
head -c $((size / 2)) "$T/run/last.h5" >"$T/trunc.h5"
for tool in "$VEVAL" "$VPREDICT"; do
    name=$(basename "$tool")
    video=()
    [ "$name" = vpredict ] && video=("$V1")
    expect_fail "$name: missing checkpoint" 2 "$T/nope.h5" \
        "$tool" --checkpoint "$T/nope.h5" "${video[@]}"
    expect_fail "$name: text file as checkpoint" 1 "$T/text.h5" \
        "$tool" --checkpoint "$T/text.h5" "${video[@]}"
    expect_fail "$name: truncated checkpoint" 1 "$T/trunc.h5" \
        "$tool" --checkpoint "$T/trunc.h5" "${video[@]}"
    expect_fail "$name: --config of another architecture" 2 "$T/wide.ini" \
        "$tool" --checkpoint "$T/run/last.h5" --config "$T/wide.ini" "${video[@]}"
    expect_fail "$name: bad --set key" 2 "clipz" \
        "$tool" --checkpoint "$T/run/last.h5" --set data.clipz=3 "${video[@]}"
    expect_fail "$name: --set changing the architecture" 2 "conv1" \
        "$tool" --checkpoint "$T/run/last.h5" --set conv1.filters=5 "${video[@]}"
    expect_fail "$name: unknown option" 2 "--frobnicate" \
        "$tool" --checkpoint "$T/run/last.h5" --frobnicate 1 "${video[@]}"
done
expect_fail "veval: --crops 2" 2 "--crops" "$VEVAL" --checkpoint "$T/run/last.h5" --crops 2
expect_fail "veval: split lists missing" 1 "$T/gone" \
    "$VEVAL" --checkpoint "$T/run/last.h5" --set "data.splits=$T/gone" --out "$T/ev4"
# Videos missing from the root: one warning per video, then the failure.
"$VEVAL" --checkpoint "$T/run/last.h5" --set "data.root=$T/gone" --out "$T/ev4" \
    >"$T/out" 2>"$T/err"
st=$?
if [ $st -eq 1 ] && [ "$(grep -c "warning: $T/gone/.*avi" "$T/err")" -eq 8 ] &&
    [ "$(grep -c . "$T/err")" -eq 9 ] && tail -1 "$T/err" | grep -q "no test video"; then
    ok "veval: every video missing: status 1, a warning per video, then: $(tail -1 "$T/err")"
else
    bad "veval: every video missing: status $st"
    sed 's/^/     | /' "$T/err"
fi

head -c 3000 "$V2" >"$T/broken.avi"
"$VPREDICT" --checkpoint "$T/run/last.h5" --json "$V1" "$T/missing.avi" "$T/broken.avi" "$V2" \
    >"$T/out" 2>"$T/err"
st=$?
if [ $st -eq 1 ] && [ "$(grep -c . "$T/err")" -eq 2 ] && grep -qF "$T/missing.avi" "$T/err" &&
    grep -qF "$T/broken.avi" "$T/err"; then
    ok "vpredict: a missing and a broken video: status 1, one line each:"
    sed 's/^/     | /' "$T/err"
    pycheck "vpredict: the other videos still predicted" '
import json, sys
v = json.load(open(sys.argv[1]))["videos"]
assert [("error" in x) for x in v] == [False, True, True, False], v
assert all(len(x["top"]) == 4 for x in (v[0], v[3]))
' "$T/out"
else
    bad "vpredict with a missing and a broken video: status $st"
    sed 's/^/     | /' "$T/err"
fi
"$VPREDICT" --checkpoint "$T/run/last.h5" --annotate "$T/x.mp4" "$T/missing.avi" \
    >"$T/out" 2>"$T/err"
st=$?
if [ $st -eq 1 ] && grep -qF "$T/missing.avi" "$T/err" && grep -qF "$T/x.mp4" "$T/err" &&
    [ ! -e "$T/x.mp4" ]; then
    ok "vpredict: --annotate of a missing video: status 1, nothing written"
else
    bad "vpredict: --annotate of a missing video: status $st"
    sed 's/^/     | /' "$T/err"
fi
expect_fail "vpredict: tensor of the wrong shape" 2 "$T/in.h5:bad" \
    "$VPREDICT" --checkpoint "$T/run/last.h5" --tensor "$T/in.h5:bad" --out "$T/o.h5"
expect_fail "vpredict: missing tensor dataset" 1 "$T/in.h5:nothere" \
    "$VPREDICT" --checkpoint "$T/run/last.h5" --tensor "$T/in.h5:nothere" --out "$T/o.h5"
[ -e "$T/o.h5" ] && bad "a failed --tensor left $T/o.h5 behind"
expect_fail "vpredict: --top 0" 2 "--top" "$VPREDICT" --checkpoint "$T/run/last.h5" --top 0 "$V1"

t_end=$(date +%s.%N)
echo "$fails failure(s), $(awk "BEGIN { printf \"%.1f\", $t_end - $t_start }") s"
[ "$fails" -eq 0 ]
