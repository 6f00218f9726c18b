"""Gap to the retrained reference, ours (from a results.csv) beside the paper's Table 1
(CIFAR-100 column), one row per method, one column pair per task: the table "Against the
paper" in docs/results.md. Each cell is the mean over the chosen seeds
(default: every seed in the file) of the runs at the method's defaults.

Usage: python scripts/paper_gap_comparison.py [RESULTS_CSV] [--seeds 0,1]
  docs/results.md's table: python scripts/paper_gap_comparison.py docs/results/cifar100/results.csv
  (the CSV is written by `tarf bench experiments/cifar100.yaml`)
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict

TASKS = ("all-matched", "target-mismatch", "model-mismatch", "data-mismatch")
# Paper Table 1, CIFAR-100, Gap (lower is better); order of TASKS.
PAPER = {
    "ft": (1.47, 28.54, 4.58, 37.15),
    "rl": (1.70, 28.81, 21.35, 30.49),
    "ga": (3.01, 8.86, 39.68, 2.43),
    "iu": (26.67, 42.93, 29.14, 11.46),
    "bs": (5.42, 15.20, 37.14, 6.76),
    "l1-sparse": (6.70, 29.33, 7.15, 46.45),
    "salun": (9.10, 27.35, 25.15, 36.89),
    "scrub": (0.71, 29.90, 79.29, 39.29),
    "tarf": (1.11, 0.21, 1.21, 1.17),
}
ORDER = ("ft", "rl", "ga", "iu", "bs", "l1-sparse", "salun", "scrub", "retrain", "tarf")


def main(path: str, seeds: set[str] | None = None) -> None:
    gaps: dict[tuple[str, str], list[float]] = defaultdict(list)
    for row in csv.DictReader(open(path)):
        if row.get("config_changes"):
            continue  # the table compares each method at its defaults
        if seeds is not None and row["seed"] not in seeds:
            continue
        gaps[row["method"], row["task"]].append(float(row["Gap"]))
    header = ["method"] + [f"{t} ours / paper" for t in TASKS]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for m in ORDER:
        cells = []
        for i, t in enumerate(TASKS):
            ours = gaps.get((m, t))
            mine = f"{sum(ours) / len(ours):.2f}" if ours else "-"
            paper = f"{PAPER[m][i]:.2f}" if m in PAPER else "-"
            cells.append(f"{mine} / {paper}")
        print(f"| {m} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results_csv", nargs="?", default="docs/results/cifar100/results.csv")
    ap.add_argument("--seeds", help="comma-separated seeds to average (default: all in the file)")
    args = ap.parse_args()
    main(args.results_csv, set(args.seeds.split(",")) if args.seeds else None)
