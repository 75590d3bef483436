#!/usr/bin/python3
"""Loads a vtrain checkpoint into the equivalent PyTorch module and checks
that PyTorch's logits equal `vpredict --tensor` on the same input.

    /usr/bin/python3 tools/check_ckpt_torch.py [--vpredict PATH] CKPT

The PyTorch side uses only h5py and the checkpoint's own content: the
stored config builds the module (tools/vtrain_torch.py), the /model group
is its state_dict, loaded with strict=True. Exit 0 when every logit agrees
within 1e-4 relative (1e-5 absolute)."""
import argparse
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vtrain_torch  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ckpt")
    ap.add_argument("--vpredict", default="build/train/vpredict")
    ap.add_argument("--batch", type=int, default=3)
    a = ap.parse_args()
    with h5py.File(a.ckpt, "r") as f:
        config = f["config"][()]
        config = config.decode() if isinstance(config, bytes) else str(config)
        sd = {k: torch.from_numpy(np.asarray(v[...])) for k, v in f["model"].items()}
    model = vtrain_torch.build_model(config)
    sd = {k: (v.reshape(()).long() if k.endswith("num_batches_tracked") else v) for k, v in sd.items()}
    model.load_state_dict(sd, strict=True)
    model.eval()
    g = torch.Generator().manual_seed(0)
    x = torch.randn((a.batch,) + tuple(model.input_shape), generator=g)
    with torch.no_grad():
        want = model(x).numpy()
    with tempfile.TemporaryDirectory() as d:
        inp, out = os.path.join(d, "in.h5"), os.path.join(d, "out.h5")
        with h5py.File(inp, "w") as f:
            f["x"] = x.numpy()
        subprocess.run([a.vpredict, "--checkpoint", a.ckpt, "--tensor", inp + ":x", "--out", out],
                       check=True, stdout=subprocess.DEVNULL)
        with h5py.File(out, "r") as f:
            got = f["logits"][...]
    if got.shape != want.shape:
        print("shape mismatch: vpredict %s, PyTorch %s" % (got.shape, want.shape))
        return 1
    err = np.abs(got - want) / (1e-5 + 1e-4 * np.abs(want))
    print("PyTorch vs vpredict --tensor: %d logits, max |diff| %.3g, worst diff/tol %.3g"
          % (got.size, np.abs(got - want).max(), err.max()))
    return 0 if err.max() <= 1 else 1


if __name__ == "__main__":
    sys.exit(main())
