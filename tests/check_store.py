"""Reads a vtrain clip store with h5py, as a user would (docs/data.md), and
checks it against its documented layout and, optionally, the list files it
was made from.

usage: check_store.py STORE.h5 [--splits DIR] [--formula]

--splits DIR  compare classes, paths, labels and split membership with the
              classInd/trainlist/testlist files in DIR (parsed here, by a
              separate implementation from the C one).
--formula     the store was written by test_loader.c with pixel values
              R = (t + 17 v) % 256, G = y % 256, B = (x + 31 v) % 256.

Exit status 0 when everything matches, 1 on a mismatch, 77 when h5py is
missing (the C test then skips).
"""
import os
import sys

try:
    import h5py
    import numpy as np
except ImportError as e:  # pragma: no cover
    print("check_store: SKIP: %s" % e)
    sys.exit(77)


def fail(msg):
    print("check_store: FAIL: " + msg)
    sys.exit(1)


def read_lists(d):
    """classInd and every split's lists, UCF101 format (CRLF, optional
    label column in test lists)."""
    classes = {}
    with open(os.path.join(d, "classInd.txt"), "rb") as f:
        for line in f.read().decode("utf-8-sig").splitlines():
            if line.strip():
                k, name = line.strip().split(None, 1)
                classes[int(k) - 1] = name
    names = [classes[i] for i in range(len(classes))]
    member = {}  # path -> {split: 1 train / 2 test}
    label = {}
    s = 1
    while os.path.exists(os.path.join(d, "trainlist%02d.txt" % s)):
        for kind, code in (("train", 1), ("test", 2)):
            with open(os.path.join(d, "%slist%02d.txt" % (kind, s)), "rb") as f:
                for line in f.read().decode("utf-8-sig").splitlines():
                    parts = line.strip().rsplit(None, 1)
                    if not parts:
                        continue
                    if len(parts) == 2 and parts[1].isdigit():
                        p, lab = parts[0], int(parts[1]) - 1
                    else:
                        p, lab = line.strip(), names.index(line.strip().split("/")[0])
                    member.setdefault(p, {})[s] = code
                    label[p] = lab
        s += 1
    return names, member, label, s - 1


def main():
    args = sys.argv[1:]
    if not args:
        print(__doc__)
        return 2
    path = args[0]
    splits = args[args.index("--splits") + 1] if "--splits" in args else None
    formula = "--formula" in args

    f = h5py.File(path, "r")
    a = f.attrs
    if a["format"] != "vtrain-clips" or int(a["version"][0]) != 1:
        fail("format/version attributes: %r %r" % (a["format"], a["version"]))
    if int(a["complete"][0]) != 1:
        fail("store not marked complete")
    n = int(a["n_videos"][0])
    ns = int(a["n_splits"][0])
    classes = list(f["classes"].asstr()[()])
    paths = list(f["paths"].asstr()[()])
    errors = list(f["errors"].asstr()[()])
    labels = f["labels"][()]
    frames = f["frames"][()]
    heights = f["heights"][()]
    widths = f["widths"][()]
    fps = f["fps"][()]
    split = f["split"][()]
    if len(classes) != int(a["n_classes"][0]):
        fail("n_classes")
    for name, arr in (("paths", paths), ("errors", errors), ("labels", labels),
                      ("frames", frames), ("heights", heights), ("widths", widths),
                      ("fps", fps)):
        if len(arr) != n:
            fail("%s has %d entries, n_videos is %d" % (name, len(arr), n))
    if split.shape != (n, ns) or split.dtype != np.int8:
        fail("split is %r %s, expected (%d, %d) int8" % (split.shape, split.dtype, n, ns))
    if paths != sorted(paths, key=lambda p: p.encode()):
        fail("paths are not sorted")
    stored = 0
    for i in range(n):
        if frames[i] == 0:
            if not errors[i]:
                fail("%s not stored but has no error" % paths[i])
            if "videos/" + paths[i] in f:
                d = f["videos/" + paths[i]]
                if d.attrs.get("complete", [0])[0] == 1:
                    fail("%s stored but frames = 0" % paths[i])
            continue
        stored += 1
        if errors[i]:
            fail("%s stored but has error %r" % (paths[i], errors[i]))
        d = f["videos/" + paths[i]]
        want = (frames[i], heights[i], widths[i], 3)
        if d.shape != want or d.dtype != np.uint8:
            fail("%s: %r %s, expected %r uint8" % (paths[i], d.shape, d.dtype, want))
        if d.chunks is None or d.chunks[0] > 16 or d.chunks[1:] != want[1:]:
            fail("%s: chunks %r, expected (<=16, H, W, 3)" % (paths[i], d.chunks))
        if int(d.attrs["label"][0]) != labels[i]:
            fail("%s: label attribute %r != %d" % (paths[i], d.attrs["label"], labels[i]))
        if abs(float(d.attrs["fps"][0]) - fps[i]) > 1e-9:
            fail("%s: fps attribute" % paths[i])
        if formula:
            x = d[()].astype(np.int64)
            t = np.arange(want[0])[:, None, None]
            yy = np.arange(want[1])[None, :, None]
            xx = np.arange(want[2])[None, None, :]
            v = i
            ok = (np.all(x[..., 0] == (t + 17 * v) % 256 + 0 * yy * xx)
                  and np.all(x[..., 1] == yy % 256 + 0 * t * xx)
                  and np.all(x[..., 2] == (xx + 31 * v) % 256 + 0 * t * yy))
            if not ok:
                fail("%s: pixel values differ from the formula" % paths[i])
        elif stored <= 3:
            # A clip read touches one or two chunks: read 16 frames from the
            # middle as a user would.
            t0 = max(0, frames[i] // 2 - 8)
            clip = d[t0:t0 + 16, 8:120, 30:142, :]
            if clip.size == 0:
                fail("%s: empty clip read" % paths[i])
    if splits:
        names, member, label, nsplits = read_lists(splits)
        if names != classes:
            fail("classes differ from classInd.txt")
        if nsplits != ns:
            fail("n_splits %d, lists have %d" % (ns, nsplits))
        if sorted(member, key=lambda p: p.encode()) != paths:
            fail("paths differ from the lists")
        for i, p in enumerate(paths):
            if label[p] != labels[i]:
                fail("%s: label %d, lists say %d" % (p, labels[i], label[p]))
            for s in range(ns):
                if member[p].get(s + 1, 0) != split[i, s]:
                    fail("%s: split %d membership %d, lists say %d"
                         % (p, s + 1, split[i, s], member[p].get(s + 1, 0)))
    print("check_store: OK: %s: %d videos (%d stored), %d classes, %d splits%s"
          % (path, n, stored, len(classes), ns,
             ", lists match" if splits else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
