"""TARF settings on the demo's four digits requests (forget "1"): the Gap per task and
seed for each candidate, as a Markdown table (docs/methods.md, "Calibrated, not tuned").

    python scripts/tarf_demo_variants.py [--seeds 0,1,2] [--rows 1,9]   # about 20 s per row and seed

``--rows`` picks candidates by their number (1 = the defaults); every row also gets its
Gap per task and seed after the table.
"""

import argparse

import torch

from tarf.cli.run import DEMO_REQUESTS
from tarf.data import load_dataset
from tarf.methods import get_method
from tarf.recipes import get_recipe
from tarf.request import UnlearningRequest
from tarf.run import run_request

# The first calibrated defaults: Phase I to chance, k = 1, the wrong-label floor, the
# ranking by loss rise (before identification by nearness, ascent on what is set aside,
# the chance ceiling and the mixed Phase II batch).
# Rows 7-12 also keep the Phase III they were measured with (two epochs at a constant rate
# on every task, before model mismatch got three annealed ones).
FORMER_PHASE3 = {"t0": 2, "phase3_lr": "constant"}
LOSS_RANKING = {"class_signal": "loss", "identified_op": "zero", "retained_ceiling": "none",
                "phase2_batch": "separate", "batchnorm_stats": "trained", **FORMER_PHASE3}  # fmt: skip
CANDIDATES = {
    "the defaults (ranking by the model's outputs, ascent on what is set aside, chance "
    "ceiling; where D_f's label stays one mixed Phase II batch and three annealed Phase III "
    "epochs, elsewhere separate batches and two at a constant rate)":
        {},
    "the defaults, `retained_ceiling=none` (a retained label's ascent unbounded)": {
        "retained_ceiling": "none",
    },
    "the defaults, `batchnorm_stats=trained` (after a mixed Phase II, the running statistics as the steps left them)": {
        "batchnorm_stats": "trained",
    },
    "one mixed batch everywhere (`phase2_batch=mixed batchnorm_stats=retained`)": {
        "phase2_batch": "mixed", "batchnorm_stats": "retained",
    },
    "separate batches everywhere (`phase2_batch=separate batchnorm_stats=trained`)": {
        "phase2_batch": "separate", "batchnorm_stats": "trained",
    },
    "the defaults, ranking by representation (`class_signal=features`)": {
        "class_signal": "features",
    },
    "the first calibrated defaults (Phase I to chance, k = 1, wrong-label floor, ranking by loss rise)":
        LOSS_RANKING,
    "the demo's former hand-set values": {
        **LOSS_RANKING, "lr": 0.02, "k": 0.1, "forget_batch_size": 16, "phase1": "pass",
        "ascent_floor": "none",
    },
    "Phase I to chance, k = 1, no floor": {**LOSS_RANKING, "ascent_floor": "none"},
    "Phase I to chance, k = 0.3, wrong-label floor": {**LOSS_RANKING, "k": 0.3},
    "k = 1, wrong-label floor, phase1_batchnorm=batch": {
        **LOSS_RANKING, "phase1_batchnorm": "batch",
    },
    "k = 1, wrong-label floor, ranking by loss rise, identified_op=ascent": {
        "class_signal": "loss", "retained_ceiling": "none", "phase2_batch": "separate",
        "batchnorm_stats": "trained", **FORMER_PHASE3,
    },
    "one mixed batch everywhere, the running statistics as the steps left them (`phase2_batch=mixed batchnorm_stats=trained`)": {
        "phase2_batch": "mixed", "batchnorm_stats": "trained",
    },
    "the defaults, Phase III's rate falling to zero on every task (`phase3_lr=anneal`)": {
        "phase3_lr": "anneal",
    },
}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--rows", default=None, help="comma-separated row numbers (1 = defaults)")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = list(CANDIDATES.items())
    if args.rows:
        rows = [rows[int(i) - 1] for i in args.rows.split(",")]
    torch.set_num_threads(1)  # 8x8 images: one thread is as fast
    ds, tiny = load_dataset("digits"), get_recipe("tiny", "digits")
    print("| TARF settings | " + " | ".join(f"seed {s}" for s in seeds) + " | mean |")
    print("|---|" + "---|" * (len(seeds) + 1))
    per_task: dict[str, dict[str, list[float]]] = {}  # row -> task -> Gap per seed
    for label, params in rows:
        means = []
        for seed in seeds:
            gaps = []
            for labels, target in DEMO_REQUESTS:
                req = UnlearningRequest.from_names(ds.hierarchy, "1", labels, target)
                method = get_method("tarf", **params)
                rep = run_request(
                    ds, req, method, tiny, seed, torch.device("cpu"), log=lambda *a: None
                )
                gaps.append(rep["metrics"]["Gap"])
                per_task.setdefault(label, {}).setdefault(rep["task"], []).append(gaps[-1])
            means.append(sum(gaps) / len(gaps))
        cells = " | ".join(f"{m:.2f}" for m in means)
        print(f"| {label} | {cells} | {sum(means) / len(means):.2f} |", flush=True)
    for label, tasks in per_task.items():
        print(f"\n| {label}: task | " + " | ".join(f"seed {s}" for s in seeds) + " |")
        print("|---|" + "---|" * len(seeds))
        for task, gaps in tasks.items():
            print(f"| {task} | " + " | ".join(f"{g:.2f}" for g in gaps) + " |")


if __name__ == "__main__":
    main()
