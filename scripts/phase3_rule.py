"""The rule of experiments/tarf-phase3-anneal.yaml, read off its committed reports: per
design cell, TARF with Phase III's rate annealed against the defaults' constant rate on
the same models (Gap, UA, RA, TA), then rules (1) CIFAR-100 and (2) Fashion-MNIST.
Rule (3) is the demo's: ``python scripts/tarf_demo_variants.py --rows 1,14``.

    python scripts/phase3_rule.py

Cells not run yet are listed as missing and their rule is "not decided".
"""

from __future__ import annotations

from pathlib import Path

from tarf.bench.results import read_report

REPO = Path(__file__).resolve().parent.parent
DESIGN = REPO / "docs/results/tarf-design"
TASKS = ("all-matched", "target-mismatch", "data-mismatch")
SEEDS = (0, 1)


def cells(case: str) -> list[tuple[str, int, dict | None, dict | None]]:
    """(task, seed, constant report, anneal report) of every planned cell of a case."""
    out = []
    for task in TASKS:
        for seed in SEEDS:
            pair = []
            for column in ("phase3-constant", "phase3-anneal"):
                pair.append(read_report(DESIGN / case / column / f"tarf_{task}_s{seed}.json"))
            out.append((task, seed, *pair))
    return out


def show(case: str) -> list[tuple[str, int, dict | None, dict | None]]:
    rows = cells(case)
    print(f"\n{case}: constant -> anneal (reference)\n")
    print("| task | seed | Gap | UA | RA | TA |")
    print("|---|---|---|---|---|---|")
    for task, seed, const, anneal in rows:
        if const is None or anneal is None:
            print(f"| {task} | {seed} | missing | | | |")
            continue
        c, a, ref = const["metrics"], anneal["metrics"], anneal["reference"]
        parts = " | ".join(f"{c[k]:.1f} -> {a[k]:.1f} ({ref[k]:.1f})" for k in ("UA", "RA", "TA"))
        print(f"| {task} | {seed} | {c['Gap']:.2f} -> {a['Gap']:.2f} | {parts} |")
    return rows


def main() -> None:
    cifar = show("cifar100-people")
    done = [(c["metrics"]["Gap"], a["metrics"]["Gap"]) for _, _, c, a in cifar if c and a]
    if len(done) < len(cifar):
        print(f"\nrule (1): not decided ({len(done)} of {len(cifar)} cells run)")
    else:
        mean_c = sum(c for c, _ in done) / len(done)
        mean_a = sum(a for _, a in done) / len(done)
        worst = max(a - c for c, a in done)
        ok = mean_a <= mean_c - 0.3 and worst <= 0.3
        print(f"\nrule (1): mean Gap {mean_c:.2f} -> {mean_a:.2f} (needs <= {mean_c - 0.3:.2f}), "
              f"worst cell {worst:+.2f} (needs <= +0.30): {'passes' if ok else 'fails'}")  # fmt: skip
    fmnist = show("fashion-mnist-footwear")
    moves = [abs(a["metrics"][k] - c["metrics"][k])
             for _, _, c, a in fmnist if c and a for k in ("UA", "RA", "TA")]  # fmt: skip
    if len(moves) < 3 * len(fmnist):
        print(f"\nrule (2): not decided ({len(moves) // 3} of {len(fmnist)} cells run)")
    else:
        ok = max(moves) <= 0.5
        print(f"\nrule (2): largest UA/RA/TA move {max(moves):.2f} (needs <= 0.50): "
              f"{'passes' if ok else 'fails'}")  # fmt: skip


if __name__ == "__main__":
    main()
