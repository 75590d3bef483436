#!/usr/bin/env bash
# Configs through the vtrain command line:
#  1. every ```ini example in docs/config.md and every config in configs/
#     dry-runs (exit 0), and the reference tables in docs/config.md equal
#     `vtrain --help-config`;
#  2. a table of broken configs, one per kind of mistake: exit status 2 and
#     one message naming the file, the line and the key or layer;
#  3. --set overrides change the model, and a bad one is the same strict
#     error naming the override.
set -u
SRC=${VT_SOURCE_ROOT:?}
VTRAIN=${VT_BUILD_ROOT:?}/train/vtrain
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

# ---- 1. docs and shipped configs ------------------------------------------
awk -v dir="$TMP" '/^```ini$/ {n++; f=dir "/doc_example_" n ".ini"; inblk=1; next}
                   /^```/ {inblk=0; next}
                   inblk {print > f}' "$SRC/docs/config.md"
n_ex=$(ls "$TMP"/doc_example_*.ini 2>/dev/null | wc -l)
[ "$n_ex" -ge 5 ] && ok || bad "docs/config.md has $n_ex ini examples, expected >= 5"
for f in "$TMP"/doc_example_*.ini "$SRC"/configs/*.ini "$SRC"/configs/synth/*.ini; do
    if out=$("$VTRAIN" "$f" --dry-run 2>&1); then
        grep -q "^total: .* parameters" <<<"$out" && ok || bad "$f: no totals line"
    else
        bad "$f does not dry-run: $out"
    fi
done
out=$("$VTRAIN" "$SRC/configs/c3d.ini" --dry-run)
grep -q "^total: 78,409,573 parameters, 38.55 G multiply-adds" <<<"$out" && ok ||
    bad "c3d.ini totals: $(tail -1 <<<"$out")"
grep -q "^pool5 .*(512, 1, 4, 4)" <<<"$out" && ok || bad "c3d.ini pool5 is not (512, 1, 4, 4)"
sed -n '/^<!-- BEGIN REFERENCE/,/^<!-- END REFERENCE/p' "$SRC/docs/config.md" | sed '1d;$d' > "$TMP/ref_doc.md"
"$VTRAIN" --help-config > "$TMP/ref_code.md"
if diff -q "$TMP/ref_doc.md" "$TMP/ref_code.md" >/dev/null; then ok; else
    bad "docs/config.md reference differs from vtrain --help-config (regenerate it):"
    diff "$TMP/ref_doc.md" "$TMP/ref_code.md" | head -20
fi

# ---- 2. broken configs -----------------------------------------------------
BASE='[model]
input = 3x8x32x32
classes = 5

[conv3d conv1]
filters = 8
size = 3
pad = 1
activation = relu

[maxpool3d pool1]
size = 2

[globalpool gap]

[flatten flat]

[linear fc]
units = 5
'
# Each case: a name, a sed script applied to BASE (or a whole replacement
# after "FILE:"), and the text the message must contain after "FILE:LINE:".
check_broken() {
    local name=$1 script=$2 want_line=$3 want=$4
    local f="$TMP/broken_$name.ini"
    printf '%s' "$BASE" | sed -e "$script" > "$f"
    local out rc
    out=$("$VTRAIN" "$f" --dry-run 2>&1)
    rc=$?
    if [ "$rc" -ne 2 ]; then bad "$name: exit $rc, expected 2 ($out)"; return; fi
    if [ "$(wc -l <<<"$out")" -ne 1 ]; then bad "$name: more than one line: $out"; return; fi
    case "$out" in
    "$f:$want_line:"*"$want"*) ok ;;
    *) bad "$name: message '$out' lacks '$f:$want_line: ... $want'" ;;
    esac
}
check_broken unknown_key        's/^filters = 8/fitlers = 8/'            6  "unknown key 'fitlers' in [conv3d conv1] (did you mean 'filters'?)"
check_broken unknown_section    's/^\[maxpool3d pool1\]/[maxpool pool1]/' 11 "maxpool"
check_broken missing_required   '/^filters = 8/d'                        5  "missing required key 'filters'"
check_broken bad_int            's/^filters = 8/filters = 6x4/'          6  "filters"
check_broken negative           's/^filters = 8/filters = -8/'           6  "filters"
check_broken bad_float          '$a\[train]\nlr = abc'                   21 "lr"
check_broken bad_bool           's/^activation = relu/activation = relu\nbatch_norm = maybe/' 10 "batch_norm"
check_broken bad_choice         's/^activation = relu/activation = gelu/' 9 "activation"
check_broken bad_shape3         's/^size = 3/size = 3x3/'                7  "size"
check_broken duplicate_key      's/^pad = 1/pad = 1\npad = 2/'           9  "pad"
check_broken duplicate_name     's/^\[globalpool gap\]/[globalpool conv1]/' 14 "conv1"
check_broken garbage_line       's/^pad = 1/pad 1/'                      8  ""
check_broken from_unknown       's/^\[flatten flat\]/[flatten flat]\nfrom = gapp/' 17 "'gapp' is not an earlier layer (did you mean 'gap'?)"
check_broken from_later         's/^\[globalpool gap\]/[globalpool gap]\nfrom = fc/' 15 "'fc' is not an earlier layer (it comes later"
check_broken linear_on_volume   '/^\[flatten flat\]/d'                   17 "layer 'fc': needs a vector (F) or a sequence (T, F) input, got (8, 1, 1, 1) (add a [flatten] layer before it)"
check_broken kernel_too_big     's/^size = 3/size = 11x3x3/'             7  "layer 'conv1': kernel 11x3x3 does not fit input"
check_broken pool_too_big       's/^size = 2$/size = 16/'                12 "layer 'pool1': window 16x16x16 does not fit"
check_broken classes_mismatch   's/^units = 5/units = 6/'                18 "the last layer must output (classes) logits"
check_broken groups             's/^filters = 8/filters = 8\ngroups = 3/' 7 "groups = 3 must divide"
check_broken add_shapes         's/^\[flatten flat\]/[add sum]\nfrom = conv1, gap\n\n[flatten flat]/' 17 "inputs must have the same shape"
check_broken momentum_adam      '$a\[optim]\ntype = adam\nmomentum = 0.9'  22 "key 'momentum' does not apply to type = adam"
check_broken bad_init           's/^activation = relu/activation = relu\ninit = gaussian 0.1/' 10 "unknown init 'gaussian 0.1'"
check_broken bias_init_default  's/^activation = relu/activation = relu\nbias_init = 1/' 10 "bias_init needs a non-default init"
check_broken pad_too_large      's/^size = 2$/size = 2\npad = 2/'        13 "padding 2 along T is more than half the window 2"
check_broken clip_len           '$a\[data]\nclip_len = 16'               21 "clip_len = 16 but the model's input has T = 8"
check_broken unknown_train_key  '$a\[train]\nepoch = 3'                  21 "unknown key 'epoch' in [train] (did you mean 'epochs'?)"
f="$TMP/missing.ini"
out=$("$VTRAIN" "$f" --dry-run 2>&1); rc=$?
[ $rc -eq 2 ] && grep -q "$f" <<<"$out" && ok || bad "missing file: exit $rc: $out"

# ---- 3. overrides ----------------------------------------------------------
printf '%s' "$BASE" > "$TMP/base.ini"
out=$("$VTRAIN" "$TMP/base.ini" --dry-run --set conv1.filters=16 --set model.classes=7 --set fc.units=7 2>&1)
grep -q "^conv1 .*(16, 8, 32, 32)" <<<"$out" && grep -q "^fc .*(7) " <<<"$out" && ok ||
    bad "--set did not change the model: $out"
out=$("$VTRAIN" "$TMP/base.ini" --dry-run --set train.lrr=0.01 2>&1); rc=$?
[ $rc -eq 2 ] && [ "$out" = "--set train.lrr=0.01: unknown key 'lrr' in [train] (did you mean 'lr'?)" ] && ok ||
    bad "bad --set key: exit $rc: $out"
out=$("$VTRAIN" "$TMP/base.ini" --dry-run --set conv1.filters=abc 2>&1); rc=$?
[ $rc -eq 2 ] && grep -q "^--set conv1.filters=abc: " <<<"$out" && ok || bad "bad --set value: exit $rc: $out"
out=$("$VTRAIN" "$TMP/base.ini" --dry-run --set conv9.filters=4 2>&1); rc=$?
[ $rc -eq 2 ] && grep -q "^--set conv9.filters=4: .*conv9" <<<"$out" && ok || bad "--set unknown layer: exit $rc: $out"

echo "configs: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
