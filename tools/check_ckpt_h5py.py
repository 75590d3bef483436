"""Reads a checkpoint written by tests/test_ckpt.c with h5py, and with
PyTorch when it is installed, with the snippets of docs/checkpoint.md; with
EXPORT.h5, also writes PyTorch weights there with the docs' export snippet
for the C test to load.

    /usr/bin/python3 tools/check_ckpt_h5py.py CHECKPOINT.h5 [EXPORT.h5]

The C test fills element i of model entry j with i % 251 + j / 4 (exact in
float32), so the values show that the layout is PyTorch's (row-major, same
shapes), not only the names. Exit status: 0 pass, 1 fail, 77 h5py missing
(the C test reports a skip).
"""
import os
import re
import sys

try:
    import h5py
    import numpy as np
except ImportError as e:
    print(f"check_ckpt_h5py: {e}; skipping")
    sys.exit(77)

# The C test's store, in its order: name -> shape.
MODEL = [
    ("conv1a.weight", (4, 3, 3, 3, 3)),
    ("conv1a.bias", (4,)),
    ("conv1a_bn.weight", (4,)),
    ("conv1a_bn.bias", (4,)),
    ("conv1a_bn.running_mean", (4,)),
    ("conv1a_bn.running_var", (4,)),
    ("conv1a_bn.num_batches_tracked", ()),
    ("fc8.weight", (5, 16)),
    ("fc8.bias", (5,)),
]
NBT = 321
CONFIG = ('# vtrain ckpt test\n[model]\nname = tiny\nclasses = 5\n\n'
          '[data]\nroot = "/data/run #1 \\"\u00fc\\""\n')
CLASSES = ["ApplyEyeMakeup", "Basketball", "Yo-Yo", "\u00dcn\u00efcode", "Zumba"]

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)


def main(path, export_path=None):
    with h5py.File(path, "r") as f:
        check(int(f.attrs["vtrain"]) == 1, "root attribute vtrain is not 1")
        check(f.attrs["model"] == "tiny", f"model name {f.attrs['model']!r}")
        model = f["model"]
        check(sorted(model.keys()) == sorted(n for n, _ in MODEL),
              f"model keys {sorted(model.keys())}")
        arrays = {}
        for j, (name, shape) in enumerate(MODEL):
            a = model[name][...]
            arrays[name] = a
            check(a.shape == shape, f"{name}: shape {a.shape}, want {shape}")
            if name.endswith("num_batches_tracked"):
                check(a.dtype == np.int64, f"{name}: dtype {a.dtype}, want int64")
                check(int(a) == NBT, f"{name}: {int(a)}, want {NBT}")
                continue
            check(a.dtype == np.float32, f"{name}: dtype {a.dtype}, want float32")
            want = (np.arange(a.size) % 251 + 0.25 * j).astype(np.float32).reshape(shape)
            check(np.array_equal(a, want), f"{name}: values differ from the C pattern")
        config = f["config"].asstr()[()]
        check(config == CONFIG, f"config text {config!r}")
        classes = list(f["classes"].asstr()[...])
        check(classes == CLASSES, f"classes {classes}")
        check(int(f["train/epoch"][()]) == 3 and int(f["train/samples"][()]) == 16,
              "train position")
        check(np.isnan(f["train/best_metric"][()]), "best_metric should be NaN")
        check(list(f["rng/init"][...]) == [42, 7], "rng/init")
        check(f["optim"].attrs["type"] == "adam", "optim type")
        check(int(f["optim/step"][()]) == 1, "optim step")
        m = f["optim/fc8.weight.exp_avg"]
        check(m.shape == (5, 16) and m.dtype == np.float32, "optim/fc8.weight.exp_avg")
        print(f"check_ckpt_h5py: h5py read {len(arrays)} model entries, the config "
              f"({len(config)} chars) and {len(classes)} class names")

    try:
        import torch
        from torch import nn
    except ImportError:
        print("check_ckpt_h5py: torch not installed; state_dict load not checked")
        return

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1a = nn.Conv3d(3, 4, 3)
            self.conv1a_bn = nn.BatchNorm3d(4)
            self.fc8 = nn.Linear(16, 5)

        def forward(self, x):
            x = torch.relu(self.conv1a_bn(self.conv1a(x)))
            return self.fc8(torch.flatten(x, 1))

    # docs/checkpoint.md's snippet, run as written there.
    net = Tiny()
    ns = {"model": net}
    exec(doc_snippet("load", "runs/c3d/best.h5", path), ns)
    sd = ns["state_dict"]
    check(ns["classes"] == CLASSES, "classes read by the docs snippet")
    check(net.conv1a_bn.num_batches_tracked.dtype == torch.int64, "nbt dtype in torch")
    check(int(net.conv1a_bn.num_batches_tracked) == NBT, "nbt value in torch")
    check(torch.equal(net.fc8.weight.detach(), torch.from_numpy(arrays["fc8.weight"])),
          "fc8.weight in torch")
    net.eval()
    with torch.no_grad():
        y = net(torch.ones(2, 3, 3, 4, 4))
    check(tuple(y.shape) == (2, 5) and bool(torch.isfinite(y).all()), "forward")
    print(f"check_ckpt_h5py: torch load_state_dict(strict=True) of {len(sd)} tensors "
          f"into the equivalent module passed; forward gives {tuple(y.shape)}")

    if export_path:
        # The other direction: a PyTorch module's weights, exported with the
        # docs' snippet, in the C test's pattern so that it can check them.
        with torch.no_grad():
            for j, (name, t) in enumerate(net.state_dict().items()):
                if name.endswith("num_batches_tracked"):
                    t.fill_(NBT)
                else:
                    t.copy_((torch.arange(t.numel()) % 251 + 0.25 * j).reshape(t.shape))
        exec(doc_snippet("export", "pretrained.h5", export_path), {"model": net})
        print(f"check_ckpt_h5py: exported the module's weights to {export_path}")


def doc_snippet(tag, placeholder, path):
    """The ```python block after <!-- tested: TAG --> in docs/checkpoint.md,
    with its example file name replaced by path."""
    doc = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs",
                       "checkpoint.md")
    with open(doc, encoding="utf-8") as f:
        m = re.search(r"<!-- tested: %s -->\n```python\n(.*?)```" % tag, f.read(), re.S)
    if not m or f'"{placeholder}"' not in m.group(1):
        raise SystemExit(f"check_ckpt_h5py: docs/checkpoint.md lacks the '{tag}' snippet")
    return m.group(1).replace(f'"{placeholder}"', repr(path))


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        print(__doc__)
        sys.exit(2)
    main(*sys.argv[1:])
    for msg in failures:
        print(f"check_ckpt_h5py: FAIL: {msg}")
    sys.exit(1 if failures else 0)
