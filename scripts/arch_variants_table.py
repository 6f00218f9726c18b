"""Gap of TARF's variants beside the best of FT/RL/GA, per architecture and task, seed 0
(the runs of scripts/arch_variants.sh and of the architecture benches). Prints Markdown."""

import json
from pathlib import Path

R = Path("docs/results")
ARCHS = {  # arch: (folder of the baselines and default TARF, folder of the variants)
    "cpunet": (R / "cifar100-audit-k8", R / "cifar100-arch/cpunet"),
    "VGG-16-bn": (R / "cifar100-arch/vgg16-bn", R / "cifar100-arch/vgg16-bn"),
    "WRN-16-4": (R / "cifar100-arch/wrn16-4", R / "cifar100-arch/wrn16-4"),
}
TASKS = {"all-matched": "all matched", "model-mismatch": "model mismatch"}


def gap(folder: Path, method: str, task: str) -> float | None:
    f = folder / f"{method}_{task}_s0.json"
    return json.loads(f.read_text())["metrics"]["Gap"] if f.exists() else None


def cell(x: float | None, best: float) -> str:
    return "-" if x is None else (f"**{x:.2f}**" if x < best else f"{x:.2f}")


print("| arch | task | best of FT/RL/GA | TARF default | head only | batch-stat Phase I | both |")
print("|---|---|---|---|---|---|---|")
for arch, (base, var) in ARCHS.items():
    for task, label in TASKS.items():
        baselines = {m: gap(base, m, task) for m in ("ft", "rl", "ga")}
        name, best = min(
            ((m, g) for m, g in baselines.items() if g is not None), key=lambda p: p[1]
        )
        variants = [base] + [var / v for v in ("frozen-head", "phase1-batch", "phase1-batch-head")]
        cells = [cell(gap(v, "tarf", task), best) for v in variants]
        print(f"| {arch} | {label} | {name.upper()} {best:.2f} | " + " | ".join(cells) + " |")
