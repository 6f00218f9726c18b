"""TARF with the known prior against `--prior auto`, target mismatch, per concept and seed.

Reads the runs of scripts/auto_vs_prior.sh (docs/results/cifar100/auto-vs-prior/) and the
"people" runs (docs/results/cifar100/ and docs/results/cifar100/tarf-auto/) and prints a
Markdown table: per concept and seed, the classes each prior set aside and its Gap, then
the mean Gap over the seeds present for both. Usage: python scripts/auto_vs_prior_table.py
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

RESULTS = Path(__file__).resolve().parent.parent / "docs" / "results" / "cifar100"
CONCEPTS = ["trees", "fruit_and_vegetables", "vehicles_1", "people"]


def run_path(concept: str, prior: str, seed: int) -> Path:
    if concept == "people":
        if prior == "known":
            return RESULTS / f"tarf_target-mismatch_s{seed}.json"
        return RESULTS / "tarf-auto" / f"tarf_target-mismatch_auto_s{seed}.json"
    return RESULTS / "auto-vs-prior" / f"tarf_{concept}_{prior}_s{seed}.json"


def describe(run: dict) -> str:
    ident = run["identification"]
    names = ", ".join(c.replace("_tree", "") for c in ident["classes"]) or "none"
    auto = ident.get("auto")
    if auto and auto.get("decided_by") == "data":
        names += f" ({auto['statistic']:.2f} vs {auto['threshold']})"
    return names


def main() -> None:
    print(
        "| concept | seed | known prior: set aside | Gap | `auto`: set aside (statistic vs threshold) | Gap |"
    )
    print("|---|---|---|---|---|---|")
    means: list[tuple[str, float, float, int]] = []
    for concept in CONCEPTS:
        gaps: dict[str, list[float]] = {"known": [], "auto": []}
        for seed in range(3):
            paths = {p: run_path(concept, p, seed) for p in ("known", "auto")}
            if not all(path.is_file() for path in paths.values()):
                continue
            runs = {p: json.loads(path.read_text()) for p, path in paths.items()}
            for p, run in runs.items():
                gaps[p].append(run["metrics"]["Gap"])
            print(
                f"| {concept} | {seed} | {describe(runs['known'])} | {gaps['known'][-1]:.2f} "
                f"| {describe(runs['auto'])} | {gaps['auto'][-1]:.2f} |"
            )
        if gaps["known"]:
            means.append(
                (
                    concept,
                    statistics.mean(gaps["known"]),
                    statistics.mean(gaps["auto"]),
                    len(gaps["known"]),
                )
            )
    print("\n| concept | seeds | known prior: mean Gap | `auto`: mean Gap | auto − known |")
    print("|---|---|---|---|---|")
    for concept, known, auto, n in means:
        print(f"| {concept} | {n} | {known:.2f} | {auto:.2f} | {auto - known:+.2f} |")
    if means:
        known = statistics.mean(m[1] for m in means)
        auto = statistics.mean(m[2] for m in means)
        print(
            f"| **mean of the concepts** | | **{known:.2f}** | **{auto:.2f}** | **{auto - known:+.2f}** |"
        )


if __name__ == "__main__":
    main()
