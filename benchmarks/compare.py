#!/usr/bin/python3
"""Runs a vtrain benchmark and its PyTorch twin in the same session and
prints them side by side with the ratio of speeds (>1: vtrain faster).

    /usr/bin/python3 benchmarks/compare.py [--build build] [--threads 2] [--reps 5] [--only NAME]
"""
import argparse
import os
import subprocess
import sys

here = os.path.dirname(os.path.abspath(__file__))


def rows(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    res, header = {}, ""
    for line in out.splitlines():
        if line.startswith("#"):
            header = line
        elif line.startswith("ROW"):
            p = line.split()
            res[(p[1], p[2])] = (float(p[3]), float(p[5]))
    return header, res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(here, "..", "build"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--only")
    a = ap.parse_args()
    extra = ["--threads", str(a.threads), "--reps", str(a.reps)] + (["--only", a.only] if a.only else [])
    env_note = "OMP_NUM_THREADS=%s" % os.environ.get("OMP_NUM_THREADS", "unset")
    hv, vt = rows([os.path.join(a.build, "benchmarks", "bench_ops")] + extra)
    ht, pt = rows([sys.executable, os.path.join(here, "bench_ops_torch.py")] + extra)
    print(hv)
    print(ht)
    print("# %s" % env_note)
    print("%-8s %-10s %10s %9s %10s %9s %7s" % ("row", "pass", "vtrain ms", "GFLOP/s", "torch ms", "GFLOP/s", "ratio"))
    for k, (ms, gf) in vt.items():
        tms, tgf = pt.get(k, (float("nan"), float("nan")))
        print("%-8s %-10s %10.2f %9.1f %10.2f %9.1f %7.2f" % (k[0], k[1], ms, gf, tms, tgf, tms / ms))


if __name__ == "__main__":
    main()
