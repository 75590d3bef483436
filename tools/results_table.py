#!/usr/bin/python3
"""The table of docs/results.md from veval --json files.

    tools/results_table.py runs/synth/*/eval.json

For every model: video and clip top-1 accuracy on the test split, the
accuracy within each pair of classes that differ only in the direction of
their motion (of the test videos of the two classes that were given one of
the two labels, the share given the right one: 50% is chance), and the
training time that scripts/results.sh recorded beside the checkpoint.
Standard library only: no torch, no numpy.
"""
import json
import os
import re
import sys

PAIRS = [("MoveLeft", "MoveRight"), ("MoveUp", "MoveDown"),
         ("RotateCW", "RotateCCW"), ("Grow", "Shrink"), ("Still", "Flicker")]


def pair_accuracy(classes, confusion, a, b):
    if a not in classes or b not in classes:
        return None
    i, j = classes.index(a), classes.index(b)
    right = confusion[i][i] + confusion[j][j]
    total = right + confusion[i][j] + confusion[j][i]
    return None if total == 0 else (right / total, total)


def train_seconds(run_dir):
    try:
        with open(os.path.join(run_dir, "train.log")) as f:
            m = re.search(r"done: \d+ steps in ([0-9.]+) s", f.read())
            return float(m.group(1)) if m else None
    except OSError:
        return None


def main(paths):
    if not paths:
        sys.exit("usage: results_table.py EVAL.json ...")
    evals = []
    for p in paths:
        try:
            with open(p) as f:
                evals.append((p, json.load(f)))
        except (OSError, ValueError) as e:
            sys.exit("results_table.py: %s: %s" % (p, e))
    head = ["model", "video top-1", "clip top-1"] + ["%s/%s" % p for p in PAIRS] + ["train s"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for p, d in evals:
        classes = [c["name"] for c in d["per_class"]]
        cells = [d["model"], "%.1f%%" % (100 * d["video_top1"]), "%.1f%%" % (100 * d["clip_top1"])]
        for a, b in PAIRS:
            acc = pair_accuracy(classes, d["confusion"], a, b)
            cells.append("-" if acc is None else "%.0f%% (%d)" % (100 * acc[0], acc[1]))
        s = train_seconds(os.path.dirname(p))
        cells.append("-" if s is None else "%.0f" % s)
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
