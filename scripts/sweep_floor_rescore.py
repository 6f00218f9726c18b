"""The identification sweep (tarf analyze identify) rescored with the task floor.

The floor (tarf.identify.auto_count) only changes what happens after the gap test, so
it can be applied exactly to the stored Phase I results of docs/figures/identification/
runs/: each run records the test's decision (its cut) and the rank of every hidden
class. Prints, per seed and over all seeds, precision and recall of the known prior (top
n_true), of `auto` with the floor (the default since 2026-11-24) and without it (the old
rule), as means over the requests (an empty choice has precision 0, as in the sweep's
own summary, identification.md), and the pooled precision (hits / classes set aside):
the `auto` rows of docs/identification.md "Precision and recall over every superclass".
The runs are `tarf analyze identify`'s (command in experiments/README.md).
Usage: python scripts/sweep_floor_rescore.py [RUNS_DIR] [SIGNAL]
"""

from __future__ import annotations

import json
import sys
from dataclasses import fields
from pathlib import Path

from tarf.identify import GapDecision, auto_count

ROOT = Path(__file__).resolve().parent.parent


def scores(ranks: dict[str, int], n: int) -> tuple[int, int]:
    """(hits among the top n, n): the hidden classes ranked 1..n."""
    return sum(r <= n for r in ranks.values()), n


def main() -> None:
    runs = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs/figures/identification/runs"
    signal = sys.argv[2] if len(sys.argv) > 2 else "loss"
    keys = [f.name for f in fields(GapDecision)]
    # seed -> rule -> [hits, chosen, exact n, requests, sum of precisions, sum of recalls]
    rows: dict[str, dict[str, list[float]]] = {}
    for path in sorted(runs.glob("*.json")):
        run = json.loads(path.read_text())
        sig = run["signals"][signal]
        ranks, truth = sig["oracle"]["ranks"], len(run["truth"])
        decision = GapDecision(**{k: sig["auto"]["decision"][k] for k in keys})
        counts = {
            "known prior (top n_true)": truth,
            "auto, task floor (default)": auto_count(decision, run["task"], "largest-gap")[0],
            "auto, old rule (floor none)": auto_count(decision, run["task"], "none")[0],
        }
        for seed in (str(run["seed"]), "all"):
            for rule, n in counts.items():
                hits, chosen = scores(ranks, n)
                acc = rows.setdefault(seed, {}).setdefault(rule, [0, 0, 0, 0, 0.0, 0.0])
                acc[0] += hits
                acc[1] += chosen
                acc[2] += n == truth
                acc[3] += 1
                acc[4] += hits / chosen if chosen else 0.0
                acc[5] += hits / truth
    print(f"signal: {signal}")
    print("\n| seed | rule | precision | recall | exact n | set aside (right) | pooled precision |")
    print("|---|---|---|---|---|---|---|")
    for seed in sorted(rows, key=lambda s: (s == "all", s)):
        for rule, (hits, chosen, exact, n_runs, p_sum, r_sum) in rows[seed].items():
            pooled = hits / chosen if chosen else 0.0
            print(
                f"| {seed} | {rule} | {p_sum / n_runs:.3f} | {r_sum / n_runs:.3f} "
                f"| {exact} / {n_runs} | {chosen} ({hits}) | {pooled:.3f} |"
            )


if __name__ == "__main__":
    main()
