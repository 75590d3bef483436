#!/usr/bin/python3
"""PyTorch side of bench_model.c: the same rows, the same output line.

The model is the PyTorch twin of the same INI config (tools/vtrain_torch.py),
so both sides run the same architecture, batch and input shape.

    /usr/bin/python3 benchmarks/bench_model_torch.py --config C.ini --batch B --mode train|forward
    /usr/bin/python3 benchmarks/bench_model_torch.py --op maxpool|batchnorm|relu|optim
"""
import argparse
import os
import resource
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import vtrain_torch  # noqa: E402


def timed(fn, reps):
    fn()
    fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def madds(model, x):
    """Multiply-adds per clip from the twin's layer table (same formula as
    vtrain's dry-run) is not exposed; count conv/linear/lstm by hooks."""
    total = [0.0]

    def hook(mod, inp, out):
        if isinstance(mod, (torch.nn.Conv3d, torch.nn.Conv2d)):
            k = mod.weight[0].numel()
            total[0] += out.numel() * k
        elif isinstance(mod, torch.nn.Linear):
            total[0] += out.numel() * mod.in_features
    hs = [m.register_forward_hook(hook) for m in model.modules()]
    was_training = model.training
    model.eval()  # one clip: batch norm cannot use batch statistics
    with torch.no_grad():
        model(x)
    model.train(was_training)
    for h in hs:
        h.remove()
    return total[0]


def bench_config(a):
    model = vtrain_torch.build_model(a.config, sets=["train.threads=0"])
    x = torch.rand((a.batch,) + tuple(model.input_shape)) - 0.5
    labels = torch.arange(a.batch) % model.classes
    flops = 2.0 * madds(model, x[:1]) * a.batch * (3 if a.mode == "train" else 1)
    if a.mode == "train":
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)

        def step():
            opt.zero_grad(set_to_none=False)
            loss = model.loss(model(x), labels)
            loss.backward()
            opt.step()
        t = timed(step, a.reps)
    else:
        model.eval()

        def fwd():
            with torch.no_grad():
                model(x)
        t = timed(fwd, a.reps)
    return t, flops


def bench_op(a):
    if a.op == "optim":
        w = torch.nn.Parameter(torch.rand(78409573))
        w.grad = torch.rand(78409573) * 1e-3
        opt = torch.optim.SGD([w], lr=1e-3, momentum=0.9, weight_decay=5e-4)
        return timed(opt.step, a.reps), 4.0 * 78409573
    x0 = torch.rand(2, 64, 16, 112, 112) * 2 - 1
    bn = torch.nn.BatchNorm3d(64)
    seed = torch.rand(x0.shape)
    x = x0.requires_grad_(True)

    def run():
        if a.op == "maxpool":
            y = F.max_pool3d(x, (1, 2, 2), (1, 2, 2))
        elif a.op == "batchnorm":
            y = bn(x)
        else:
            y = F.relu(x)
        y.backward(seed[:, :, :, :y.shape[3], :y.shape[4]])
        x.grad = None
    return timed(run, a.reps), float(x0.numel())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--mode", default="train")
    ap.add_argument("--op")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    t, flops = bench_op(a) if a.op else bench_config(a)
    print("RESULT %.6f %.1f %.6g" % (t, peak_mb(), flops))


if __name__ == "__main__":
    main()
