"""Gap of TARF's variants beside the best of FT/RL/GA, per architecture and task, seed 0:
the table "TARF's two variants on the three networks" in docs/analysis.md. Prints Markdown.

Reads the runs of experiments/arch-variants.yaml (the variants), experiments/cifar100-arch.yaml
(VGG-16-bn and WRN-16-4 baselines and default TARF) and experiments/cifar100-audit-k8.yaml
(cpunet's: the models cached when the variants ran; its superclass original was retrained
for that bench, so docs/results/cifar100's seed 0 is another model).

Usage: python scripts/arch_variants_table.py [RESULTS]   (default: docs/results)
"""

import json
import sys
from pathlib import Path

TASKS = {"all-matched": "all matched", "model-mismatch": "model mismatch"}


def archs(results: Path) -> dict[str, tuple[Path, Path]]:
    """arch: (folder of the baselines and default TARF, folder of the variants)."""
    return {
        "cpunet": (results / "cifar100-audit-k8", results / "cifar100-arch/cpunet"),
        "VGG-16-bn": (results / "cifar100-arch/vgg16-bn", results / "cifar100-arch/vgg16-bn"),
        "WRN-16-4": (results / "cifar100-arch/wrn16-4", results / "cifar100-arch/wrn16-4"),
    }


def gap(folder: Path, method: str, task: str) -> float | None:
    f = folder / f"{method}_{task}_s0.json"
    return json.loads(f.read_text())["metrics"]["Gap"] if f.exists() else None


def cell(x: float | None, best: float) -> str:
    return "-" if x is None else (f"**{x:.2f}**" if x < best else f"{x:.2f}")


def main(results: Path) -> None:
    print(
        "| arch | task | best of FT/RL/GA | TARF default | head only | batch-stat Phase I | both |"
    )
    print("|---|---|---|---|---|---|---|")
    for arch, (base, var) in archs(results).items():
        for task, label in TASKS.items():
            baselines = {m: gap(base, m, task) for m in ("ft", "rl", "ga")}
            name, best = min(
                ((m, g) for m, g in baselines.items() if g is not None), key=lambda p: p[1]
            )
            variants = [base] + [
                var / v for v in ("frozen-head", "phase1-batch", "phase1-batch-head")
            ]
            cells = [cell(gap(v, "tarf", task), best) for v in variants]
            print(f"| {arch} | {label} | {name.upper()} {best:.2f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/results"))
