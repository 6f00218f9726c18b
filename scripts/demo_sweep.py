"""The search behind the README's note on the demo: TARF settings on the digits demo's
four tasks, one line per (seed, setting) with the Gap per task and their mean.

Usage: python scripts/demo_sweep.py [SEED ...]   (default: 0; cached models are reused)
"""

import itertools
import sys

import torch

from tarf.cli import DEMO_TARF
from tarf.data import load_dataset
from tarf.methods import get_method
from tarf.recipes import get_recipe
from tarf.request import UnlearningRequest
from tarf.runner import run_request

TASKS = (("class", "1"), ("class", "straight"), ("superclass", "1"), ("superclass", "straight"))
GRID = [DEMO_TARF, dict(DEMO_TARF, phase1_batchnorm="batch")] + [
    {"lr": lr, "k": k, "forget_batch_size": fb}
    for lr, k, fb in itertools.product([0.005, 0.01, 0.02], [0.2, 0.3, 0.5], [16, 64])
]

if __name__ == "__main__":
    torch.set_num_threads(1)  # as tarf demo
    ds, recipe = load_dataset("digits"), get_recipe("tiny", "digits")
    for seed in [int(s) for s in sys.argv[1:]] or [0]:
        for cfg in GRID:
            gaps = []
            for labels, target in TASKS:
                req = UnlearningRequest.from_names(ds.hierarchy, "1", labels, target)
                method = get_method("tarf", **cfg)
                rep = run_request(
                    ds, req, method, recipe, seed, torch.device("cpu"), log=lambda m: None
                )
                gaps.append(rep["metrics"]["Gap"])
            print(
                seed,
                cfg,
                " / ".join(f"{g:.2f}" for g in gaps),
                f"mean {sum(gaps) / 4:.2f}",
                flush=True,
            )
