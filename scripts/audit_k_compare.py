"""The audited CIFAR-100 benchmark at K = 8 references beside K = 3, per task and method.

Reads RESULTS/cifar100-audit-k8/ (experiments/cifar100-audit-k8.yaml) and
RESULTS/cifar100-audit/ (the K = 3 bench, experiments/cifar100-audit.yaml) and prints,
for every task the K = 8 folder has, a Markdown table: Gap, U-LiRA AUC and TPR at 1 % FPR
at K = 8 with the K = 3 value beside it, the median score shift and, where the run stored
it, the shift / AUC per class of the concept (``by_class``), the null max of both, and
Spearman's rho between the methods' order by Gap and by AUC at each K.
The two benches share the original models but not always the retrained reference of
seed 0 (retrained models are not bit-identical across machines and sessions), so Gaps
can differ by a few tenths to two points. Then, for every `tarf audit --seeds 4` in
RESULTS/cifar100-audit-k8/pooled/ (one method, four seeds, four originals), the
two-sided U-LiRA over the four unlearned models and, per class of the concept, the score
shift and AUC: the tables of docs/benchmarks.md "K = 8 references, seed 0, every method".

Usage: python scripts/audit_k_compare.py [RESULTS]   (default: docs/results)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tarf.domains import MAIN_TASKS
from tarf.report import TABLE1_METHODS, spearman

RESULTS = Path(__file__).resolve().parent.parent / "docs" / "results"
K8, K3 = RESULTS / "cifar100-audit-k8", RESULTS / "cifar100-audit"


def set_results(results: Path) -> None:
    """Read the two benches under ``results`` instead of the repository's docs/results."""
    global K8, K3
    K8, K3 = results / "cifar100-audit-k8", results / "cifar100-audit"


def load(folder: Path, method: str, task: str) -> dict | None:
    path = folder / f"{method}_{task}_s0.json"
    return json.loads(path.read_text()) if path.is_file() else None


def with_k3(value: float, k3_audit: dict, key: str) -> str:
    """``value`` (K = 8), and the K = 3 bench's value in brackets where it has one."""
    return f"{value:.1f}" + (f" ({k3_audit[key]:.1f})" if key in k3_audit else "")


def class_cells(by_class: dict, classes: list[str]) -> list[str]:
    """``shift / AUC`` of each class in ``classes``, ``-`` where ``by_class`` lacks it."""
    return [
        f"{by_class[c]['score_shift']:+.1f} / {by_class[c]['AUC']:.1f}" if c in by_class else "-"
        for c in classes
    ]


def main() -> None:
    for task in MAIN_TASKS:
        rows, by_k, null = [], {8: [], 3: []}, {}
        audited = [(m, r) for m in TABLE1_METHODS if (r := load(K8, m, task)) and r.get("audit")]
        classes = list(dict.fromkeys(c for _, r in audited for c in r["audit"].get("by_class", {})))
        for method, new in audited:
            old = load(K3, method, task)
            a, b = new["audit"], (old or {}).get("audit") or {}
            null[8] = a["null_AUC"]["max"]
            null[3] = (b.get("null_AUC") or {}).get("max")
            gap = new["metrics"]["Gap"]
            by_k[8].append((gap, a["AUC"]))
            if b:
                by_k[3].append((old["metrics"]["Gap"], b["AUC"]))
            rows.append(
                f"| {method} | {gap:.2f} | {with_k3(a['AUC'], b, 'AUC')} | "
                f"{with_k3(a['TPR@1%FPR'], b, 'TPR@1%FPR')} | {a['score_shift']:+.2f} |"
                + "".join(f" {cell} |" for cell in class_cells(a.get("by_class", {}), classes))
            )
        if not rows:
            continue
        rho = {k: spearman(*zip(*pairs)) if pairs else None for k, pairs in by_k.items()}
        print(f"\n{task}: null max {null[8]:.1f} (K = 3: {null.get(3) or float('nan'):.1f}); "
              f"Spearman rho Gap vs AUC {rho[8]:+.2f} (K = 3: "
              f"{rho[3] if rho[3] is None else format(rho[3], '+.2f')})\n")  # fmt: skip
        print(
            "| method | Gap | U-LiRA AUC (K = 3) | TPR@1%FPR (K = 3) | shift |"
            + "".join(f" {c} shift / AUC |" for c in classes)
        )
        print("|---" * (5 + len(classes)) + "|")  # fmt: skip
        print("\n".join(rows))

    pooled_table()


def pooled_table() -> None:
    """One row per audited method (four seeds pooled): U-LiRA of the seeds alone (one-sided)
    and pooled (two-sided), the null range, TPR at 1 % FPR and the per-class shift / AUC."""
    files = sorted((K8 / "pooled").glob("*.json"))
    if not files:
        return
    runs = [json.loads(f.read_text()) for f in files]
    classes = list(dict.fromkeys(c for r in runs for c in r["pooled"].get("by_class", {})))
    for task in dict.fromkeys(r["task"] for r in runs):
        print(f"\n{task}, seeds pooled (two-sided U-LiRA), K = 8:\n")
        print("| method | seeds | Gap per seed | AUC per seed | pooled AUC (null) | TPR@1%FPR | "
              + " | ".join(f"{c} shift / AUC" for c in classes) + " |")  # fmt: skip
        print("|---" * (6 + len(classes)) + "|")
        for r in (r for r in runs if r["task"] == task):
            p = r["pooled"]
            cells = class_cells(p.get("by_class", {}), classes)
            print(f"| {r['method']} | {len(r['runs'])} | "
                  + ", ".join(f"{x['metrics']['Gap']:.2f}" for x in r["runs"]) + " | "
                  + ", ".join(f"{x['audit']['AUC']:.1f}" for x in r["runs"]) + " | "
                  + f"{p['AUC']:.1f} ({p['null_AUC']['min']:.1f}-{p['null_AUC']['max']:.1f}) | "
                  + f"{p['TPR@1%FPR']:.1f} | " + " | ".join(cells) + " |")  # fmt: skip


if __name__ == "__main__":
    if len(sys.argv) > 1:
        set_results(Path(sys.argv[1]))
    main()
