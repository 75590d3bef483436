#!/usr/bin/python3
"""The benchmark suite: every row for vtrain and for PyTorch (Debian's
python3-torch) in the same run, same thread count, shapes and batch; each
row in its own process (so peak RSS is the row's), warm-up then >= 5 timed
repetitions, medians. Prints a table with time, clips/s, GFLOP/s, the
share of this machine's measured FMA peak, peak RSS and the speed ratio
vtrain/PyTorch (> 1: vtrain is faster).

    /usr/bin/python3 benchmarks/run.py [--build build] [--reps 5] [--quick]
                                       [--rounds N] [--only SUBSTRING]

--quick skips the C3D rows (minutes each on 2 cores). --rounds N runs each
model and op row N times, vtrain and PyTorch alternating, prints every
round and then the median time of each side and the median of the
per-round ratios: on a machine whose speed drifts (a shared VM) a single
pair of runs can catch one side in a slow phase. The per-layer table
(compare.py) gets the same N rounds, each layer in its own process. --only
keeps the rows whose name contains SUBSTRING (and skips the per-layer
table).
"""
import statistics
import argparse
import os
import platform
import subprocess
import sys
import time

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.join(here, "..")


def result(cmd, env=None):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    for line in out.splitlines():
        if line.startswith("RESULT"):
            return [float(v) for v in line.split()[1:]]
    raise RuntimeError("no RESULT line from %s" % cmd)


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(root, "build"))
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--only", default=None)
    a = ap.parse_args()
    bm = os.path.join(a.build, "benchmarks")
    py = sys.executable
    peak = {t: result([os.path.join(bm, "fma_peak"), str(t)])[0] for t in (1, 2)}
    print("# vtrain benchmarks, %s, CPU %s, %d cores" % (time.strftime("%Y-%m-%d %H:%M"), cpu_name(), os.cpu_count()))
    print("# measured fp32 FMA peak: %.0f GFLOP/s at 1 thread, %.0f at 2" % (peak[1], peak[2]))
    hdr = "%-34s %3s | %9s %8s %7s %5s %7s | %9s %8s %7s %5s %7s | %5s" % (
        "row", "thr", "vt ms", "clips/s", "GFLOP/s", "%pk", "RSS MB", "pt ms", "clips/s", "GFLOP/s", "%pk", "RSS MB", "ratio")
    print(hdr)
    print("-" * len(hdr))

    def line(name, threads, clips, vt, pt, ratio):
        cells = []
        for t, rss, flops in (vt, pt):
            gf = flops / t * 1e-9
            cells.append("%9.1f %8s %7.1f %5.0f %7.0f" % (t * 1e3, "%.2f" % (clips / t) if clips else "-",
                                                           gf, 100 * gf / peak[threads], rss))
        print("%-34s %3d | %s | %s | %5.2f" % (name, threads, cells[0], cells[1], ratio), flush=True)

    def row(name, threads, clips, vt_cmd, pt_cmd):
        if a.only and a.only not in name:
            return
        runs = []
        for r in range(a.rounds):
            vt = result(vt_cmd + ["--threads", str(threads), "--reps", str(a.reps)])
            pt = result([py] + pt_cmd + ["--threads", str(threads), "--reps", str(a.reps)])
            runs.append((vt, pt))
            label = name if a.rounds == 1 else "%s [round %d]" % (name, r + 1)
            line(label, threads, clips, vt, pt, pt[0] / vt[0])
        if a.rounds > 1:
            med = lambda side: [statistics.median(x[side][k] for x in runs) for k in range(3)]
            ratio = statistics.median(x[1][0] / x[0][0] for x in runs)
            line("%s [median of %d]" % (name, a.rounds), threads, clips, med(0), med(1), ratio)

    bmodel = [os.path.join(bm, "bench_model")]
    tmodel = [os.path.join(here, "bench_model_torch.py")]
    cfg = lambda n: os.path.join(root, "configs", n)
    if not a.quick:
        for thr in (2, 1):
            row("C3D train step, batch 4", thr, 4,
                bmodel + ["--config", cfg("c3d.ini"), "--batch", "4", "--mode", "train"],
                tmodel + ["--config", cfg("c3d.ini"), "--batch", "4", "--mode", "train"])
        row("C3D forward (eval), batch 4", 2, 4,
            bmodel + ["--config", cfg("c3d.ini"), "--batch", "4", "--mode", "forward"],
            tmodel + ["--config", cfg("c3d.ini"), "--batch", "4", "--mode", "forward"])
    row("ConvLSTM train step, batch 4", 2, 4,
        bmodel + ["--config", cfg("convlstm.ini"), "--batch", "4", "--mode", "train"],
        tmodel + ["--config", cfg("convlstm.ini"), "--batch", "4", "--mode", "train"])
    row("C3D-small train step, batch 8", 2, 8,
        bmodel + ["--config", cfg("c3d_small.ini"), "--batch", "8", "--mode", "train"],
        tmodel + ["--config", cfg("c3d_small.ini"), "--batch", "8", "--mode", "train"])
    for op, name in (("maxpool", "max-pool 1x2x2 fwd+bwd (2,64,16,112,112)"),
                     ("batchnorm", "batch norm fwd+bwd (2,64,16,112,112)"),
                     ("relu", "ReLU fwd+bwd (2,64,16,112,112)"),
                     ("optim", "SGD momentum step, 78.4 M params")):
        row(name, 2, 0, bmodel + ["--op", op], tmodel + ["--op", op])
    # Per-layer conv and LSTM rows: bench_ops / bench_ops_torch.py, side by side.
    if a.only:
        return
    print("\n# C3D conv layers (batch 2) and LSTM 512->512 (batch 8), 2 threads:")
    subprocess.run([py, os.path.join(here, "compare.py"), "--build", a.build, "--threads", "2",
                    "--reps", str(a.reps), "--rounds", str(a.rounds)], check=True)


if __name__ == "__main__":
    main()
