#!/usr/bin/python3
"""Regenerates every PyTorch reference fixture in tests/fixtures/.

    /usr/bin/python3 tools/gen_fixtures.py          # all groups
    /usr/bin/python3 tools/gen_fixtures.py conv     # tools/fixtures/gen_conv.py only

Each tools/fixtures/gen_<group>.py writes tests/fixtures/<group>.h5 from
fixed seeds, so a rerun reproduces the committed files' numbers.
"""
import glob
import os
import runpy
import sys

import torch

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "fixtures"))
torch.set_num_threads(1)

wanted = sys.argv[1:]
for path in sorted(glob.glob(os.path.join(here, "fixtures", "gen_*.py"))):
    group = os.path.basename(path)[4:-3]
    if wanted and group not in wanted:
        continue
    print("fixtures:", group)
    runpy.run_path(path, run_name="__main__")
