"""TARF with the known prior against `--prior auto`, target mismatch, per concept and seed:
the "Three more concepts" tables of docs/identification.md.

Reads the runs of the three held-out concepts (RESULTS/auto-vs-prior/CONCEPT/: the known
prior from experiments/auto-vs-prior.yaml, `--prior auto` from the `tarf unlearn` commands
in experiments/README.md) and the "people" runs (RESULTS/ for the known prior, from
experiments/cifar100.yaml; RESULTS/tarf-auto/ for auto, commands in experiments/README.md)
and prints a Markdown table: per concept and seed, the classes each prior set aside and
its Gap, then the mean Gap over the seeds present for both. `auto` is the default rule; where the gap test declined,
the run under the rule before 2026-11-24 (``auto_floor=none``: nothing set aside) is in
``floor-none/`` and shown beside it (where the test accepted, both rules are the same run).

Usage: python scripts/auto_vs_prior_table.py [RESULTS]   (default: docs/results/cifar100)
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent.parent / "docs" / "results" / "cifar100"
CONCEPTS = ["trees", "fruit_and_vegetables", "vehicles_1", "people"]


def run_path(concept: str, prior: str, seed: int) -> Path:
    """``prior``: "known", "auto" or "none" (auto under the old rule, where it differs).
    The three concepts: the bench's names, ``tarf`` (known prior, the grid file) and
    ``tarf-auto`` (``--prior auto``); people: the names of the commands in
    experiments/README.md."""
    if concept == "people":
        if prior == "known":  # a rerun on the same original model as the auto run, if any
            rerun = RESULTS / "tarf-auto" / f"tarf_target-mismatch_known_s{seed}.json"
            return rerun if rerun.is_file() else RESULTS / f"tarf_target-mismatch_s{seed}.json"
        sub = "floor-none" if prior == "none" else ""
        return RESULTS / "tarf-auto" / sub / f"tarf_target-mismatch_auto_s{seed}.json"
    file = f"{'tarf' if prior == 'known' else 'tarf-auto'}_target-mismatch_s{seed}.json"
    if prior == "none":
        return RESULTS / "auto-vs-prior" / "floor-none" / concept / file
    return RESULTS / "auto-vs-prior" / concept / file


def describe(run: dict) -> str:
    ident = run["identification"]
    names = ", ".join(c.replace("_tree", "") for c in ident["classes"]) or "none"
    auto = ident.get("auto")
    if auto and auto.get("decided_by") in ("data", "task floor"):
        how = "floor, " if auto["decided_by"] == "task floor" else ""
        names += f" ({how}{auto['statistic']:.2f} vs {auto['threshold']})"
    return names


def _num(v: float) -> str:
    return "–" if math.isnan(v) else f"{v:.2f}"  # NaN: a run the old rule would differ on


def main() -> None:
    print(
        "| concept | seed | known prior: set aside | Gap | `auto`: set aside (statistic vs "
        "threshold) | Gap | old rule (`auto_floor=none`): Gap |"
    )
    print("|---|---|---|---|---|---|---|")
    means: list[tuple[str, int, float, float, float]] = []
    for concept in CONCEPTS:
        gaps: dict[str, list[float]] = {"known": [], "auto": [], "none": []}
        for seed in range(3):
            paths = {p: run_path(concept, p, seed) for p in ("known", "auto")}
            if not all(path.is_file() for path in paths.values()):
                continue
            runs = {p: json.loads(path.read_text()) for p, path in paths.items()}
            old = run_path(concept, "none", seed)
            floored = runs["auto"]["identification"]["auto"].get("decided_by") == "task floor"
            if old.is_file():
                runs["none"] = json.loads(old.read_text())
            elif not floored:  # the test accepted: both rules made the same decision
                runs["none"] = runs["auto"]
            for p, run in runs.items():
                gaps[p].append(run["metrics"]["Gap"])
            if "none" not in runs:
                gaps["none"].append(math.nan)
                none = "not run"
            else:
                none = f"{gaps['none'][-1]:.2f}" + ("" if old.is_file() else " (same run)")
            print(
                f"| {concept} | {seed} | {describe(runs['known'])} | {gaps['known'][-1]:.2f} "
                f"| {describe(runs['auto'])} | {gaps['auto'][-1]:.2f} | {none} |"
            )
        if gaps["known"]:
            mean = {p: statistics.mean(g) for p, g in gaps.items()}
            means.append((concept, len(gaps["known"]), mean["known"], mean["auto"], mean["none"]))
    print(
        "\n| concept | seeds | known prior: mean Gap | `auto`: mean Gap | auto − known "
        "| old rule: mean Gap |"
    )
    print("|---|---|---|---|---|---|")
    for concept, n, known, auto, none in means:
        print(
            f"| {concept} | {n} | {known:.2f} | {auto:.2f} | {auto - known:+.2f} | {_num(none)} |"
        )
    if means:
        known, auto, none = (statistics.mean(m[i] for m in means) for i in (2, 3, 4))
        print(
            f"| **mean of the concepts** | | **{known:.2f}** | **{auto:.2f}** "
            f"| **{auto - known:+.2f}** | {_num(none)} |"
        )


if __name__ == "__main__":
    if len(sys.argv) > 1:
        RESULTS = Path(sys.argv[1])
    main()
