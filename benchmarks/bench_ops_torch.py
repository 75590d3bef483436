#!/usr/bin/python3
"""PyTorch side of bench_ops.c: same shapes, same passes, same output format.

    /usr/bin/python3 benchmarks/bench_ops_torch.py [--reps N] [--threads T] [--only NAME]
"""
import argparse
import resource
import statistics
import time

import torch
import torch.nn.functional as F

C3D = [("conv1a", 3, 64, 16, 112, 112), ("conv2a", 64, 128, 16, 56, 56),
       ("conv3a", 128, 256, 8, 28, 28), ("conv3b", 256, 256, 8, 28, 28),
       ("conv4a", 256, 512, 4, 14, 14), ("conv4b", 512, 512, 4, 14, 14),
       ("conv5a", 512, 512, 2, 7, 7), ("conv5b", 512, 512, 2, 7, 7)]


def row(name, pas, sec, flops, cpu=None):
    line = "ROW %-8s %-10s %9.2f ms %8.1f GFLOP/s" % (name, pas, sec * 1e3, flops / sec * 1e-9)
    if cpu is not None:
        # as bench_ops.c: process CPU time, less affected by other jobs' load
        line += "  cpu %9.2f ms %6.1f GFLOP/cpu-s" % (cpu * 1e3, flops / cpu * 1e-9)
    print(line, flush=True)


def timed(fn, reps, cpu=None):
    """Median wall time; the median CPU time goes to cpu[0] if given.
    Two warm-ups, as bench_ops.c."""
    fn()
    fn()
    ts, cs = [], []
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        ts.append(time.perf_counter() - t0)
        cs.append(time.process_time() - c0)
    if cpu is not None:
        cpu.append(statistics.median(cs))
    return statistics.median(ts)


def conv(s, batch, reps):
    name, cin, cout, t, h, w = s
    x = torch.rand(batch, cin, t, h, w) - 0.5
    wt = torch.rand(cout, cin, 3, 3, 3) - 0.5
    b = torch.rand(cout) - 0.5
    flops = 2.0 * batch * cout * t * h * w * cin * 27
    with torch.no_grad():
        cpu = []
        t = timed(lambda: F.conv3d(x, wt, b, padding=1), reps, cpu)
        row(name, "fwd", t, flops, cpu[0])

    def bwd(need_x, cpu):
        xx = x.clone().requires_grad_(need_x)
        ww = wt.clone().requires_grad_(not need_x)
        bb = b.clone().requires_grad_(not need_x)
        y = F.conv3d(xx, ww, bb, padding=1)
        g = torch.full_like(y, 1e-3)
        def run():
            torch.autograd.grad(y, [xx] if need_x else [ww, bb], g, retain_graph=True)
        return timed(run, reps, cpu)
    for pas, need_x in (("bwd_data", True), ("bwd_weight", False)):
        cpu = []
        t = bwd(need_x, cpu)
        row(name, pas, t, flops, cpu[0])


def lstm(T, reps):
    N, Fi, H = 8, 512, 512
    m = torch.nn.LSTM(Fi, H, batch_first=True)
    x = (torch.rand(N, T, Fi) - 0.5).requires_grad_(True)
    ff = 2.0 * N * T * 4 * H * (Fi + H)
    with torch.no_grad():
        tf = timed(lambda: m(x), reps)

    def fb():
        y, _ = m(x)
        y.backward(torch.full_like(y, 1e-3))
    row("lstm_t%d" % T, "fwd", tf, ff)
    row("lstm_t%d" % T, "fwd+bwd", timed(fb, reps), 3 * ff)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--only")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    print("# pytorch %s bench_ops: %d threads, %d timed repetitions (median)" % (
        torch.__version__, torch.get_num_threads(), a.reps))
    for s in C3D:
        if a.only and a.only != s[0]:
            continue
        conv(s, 2, a.reps)
    if not a.only or a.only == "lstm":
        lstm(16, a.reps)
        lstm(64, a.reps)
    # as bench_ops.c: the process's peak resident set, the last line
    print("RSS %.0f" % (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0), flush=True)


if __name__ == "__main__":
    main()
