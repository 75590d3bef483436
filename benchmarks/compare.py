#!/usr/bin/python3
"""The per-layer rows: vtrain's bench_ops and its PyTorch twin
(bench_ops_torch.py), side by side with the ratio of speeds (>1: vtrain
faster), each side's share of the measured FMA peak and each layer's peak
RSS.

    /usr/bin/python3 benchmarks/compare.py [--build build] [--threads 2] [--reps 5]
                                           [--rounds N] [--peak GFLOPS] [--only NAME]

Every layer (conv1a ... conv5b, lstm) runs in its own process, vtrain then
PyTorch, so a row's RSS is its layer's alone (the three passes of a conv
layer share one process and one figure). --rounds N repeats that N times;
a row then shows the median over rounds of each side's time (each a median
of --reps repetitions), the median of the per-round ratios, and vtrain's
%pk in every round: on a shared VM a layer's time moves by 10-70% between
runs (a whole pass at the slower speed, not a stray repetition), which a
single round cannot tell from the code's speed. --peak is the FMA peak the
%pk columns divide by; without it, benchmarks/fma_peak measures it at
--threads before the first round and after the last, and the mean is used.
"""
import argparse
import os
import statistics
import subprocess
import sys

here = os.path.dirname(os.path.abspath(__file__))
LAYERS = ["conv1a", "conv2a", "conv3a", "conv3b", "conv4a", "conv4b", "conv5a", "conv5b", "lstm"]


def run(cmd):
    """ROW lines as {(name, pass): (ms, GFLOP/s)}, the header line, the RSS in MB."""
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    res, header, rss = {}, "", float("nan")
    for line in out.splitlines():
        if line.startswith("#"):
            header = line
        elif line.startswith("ROW"):
            p = line.split()
            res[(p[1], p[2])] = (float(p[3]), float(p[5]))
        elif line.startswith("RSS"):
            rss = float(line.split()[1])
    if not res:
        raise RuntimeError("no ROW lines from %s" % " ".join(cmd))
    return header, res, rss


def fma_peak(build, threads):
    out = subprocess.run([os.path.join(build, "benchmarks", "fma_peak"), str(threads)], check=True,
                         capture_output=True, text=True).stdout
    return float(out.split("RESULT")[1].split()[0])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(here, "..", "build"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--peak", type=float, default=None)
    ap.add_argument("--only")
    a = ap.parse_args()
    if a.rounds < 1:
        ap.error("--rounds must be at least 1")
    layers = [a.only] if a.only else LAYERS
    common = ["--threads", str(a.threads), "--reps", str(a.reps)]
    vt_cmd = [os.path.join(a.build, "benchmarks", "bench_ops")] + common
    pt_cmd = [sys.executable, os.path.join(here, "bench_ops_torch.py")] + common
    peaks = [] if a.peak else [fma_peak(a.build, a.threads)]

    rounds = []  # per round: {(name, pass): (vt (ms, GF), pt (ms, GF))}
    rss, order, headers = {}, [], ["", ""]
    for _ in range(a.rounds):
        got = {}
        for layer in layers:
            headers[0], vt, vrss = run(vt_cmd + ["--only", layer])
            headers[1], pt, prss = run(pt_cmd + ["--only", layer])
            rss.setdefault(layer, []).append((vrss, prss))
            for k, v in vt.items():
                if k not in order:
                    order.append(k)
                got[k] = (v, pt.get(k, (float("nan"), float("nan"))))
        rounds.append(got)
    if not a.peak:
        peaks.append(fma_peak(a.build, a.threads))
    peak = a.peak or statistics.mean(peaks)

    print(headers[0])
    print(headers[1])
    print("# OMP_NUM_THREADS=%s; %d round(s), each layer in its own process, vtrain then PyTorch"
          % (os.environ.get("OMP_NUM_THREADS", "unset"), a.rounds))
    print("# %%pk: share of %.1f GFLOP/s%s" % (
        peak, " (given)" if a.peak else ", the mean of fma_peak's %s" % " and ".join(
            "%.1f" % p for p in peaks)))
    if a.rounds > 1:
        print("# times: median over rounds; ratio: median of the per-round ratios")
    hdr = "%-8s %-10s | %10s %8s %5s %7s | %10s %8s %5s %7s | %6s" % (
        "row", "pass", "vtrain ms", "GFLOP/s", "%pk", "RSS MB", "torch ms", "GFLOP/s", "%pk",
        "RSS MB", "ratio")
    if a.rounds > 1:
        hdr += " | vtrain %pk by round"
    print(hdr)
    for k in order:
        per = [r[k] for r in rounds if k in r]
        vms = statistics.median(v[0][0] for v in per)
        pms = statistics.median(v[1][0] for v in per)
        # GFLOP/s at the median time: the flop count is fixed per row
        vgf = per[0][0][1] * per[0][0][0] / vms
        pgf = per[0][1][1] * per[0][1][0] / pms
        ratio = statistics.median(v[1][0] / v[0][0] for v in per)
        lr = rss[k[0] if k[0] in rss else "lstm"]
        vr = max(x[0] for x in lr)
        pr = max(x[1] for x in lr)
        line = "%-8s %-10s | %10.2f %8.1f %5.1f %7.0f | %10.2f %8.1f %5.1f %7.0f | %6.2f" % (
            k[0], k[1], vms, vgf, 100 * vgf / peak, vr, pms, pgf, 100 * pgf / peak, pr, ratio)
        if a.rounds > 1:
            line += " | " + " ".join("%.0f" % (100 * v[0][1] / peak) for v in per)
        print(line, flush=True)


if __name__ == "__main__":
    main()
