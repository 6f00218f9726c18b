"""TARF with the bounded ascent (``--set ascent_floor=wrong-label``) beside the plain ascent:
the table behind docs/audit.md "A bounded ascent" (its table.md). Prints Markdown.

Reads, under RESULTS (default docs/results):
- cifar100-audit/ascent-floor/tarf_{task}_s{seed}.json: `tarf audit` of the floor, K = 3
  references, one per task and seed (the commands are in experiments/README.md);
- the plain ascent's audit: cifar100-audit/tarf_{task}_s0.json (experiments/cifar100-audit.yaml)
  for seed 0, else cifar100-audit/ascent-floor/plain_tarf_{task}_s{seed}.json (`tarf audit`),
  and the seed-0 score shift from cifar100-audit/shift/tarf_{task}.json where the bench's
  audit predates it; the plain Gap from cifar100/tarf_{task}_s{seed}.json (experiments/cifar100.yaml);
- Fashion-MNIST (Gap only): cifar100-audit/ascent-floor/fashion-mnist/tarf_{task}_s0.json
  (experiments/ascent-floor.yaml) against fashion-mnist/tarf_{task}_s0.json.

Usage: python scripts/ascent_floor_table.py [RESULTS] > docs/results/cifar100-audit/ascent-floor/table.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def main(results: Path) -> None:
    out = results / "cifar100-audit" / "ascent-floor"
    rows = [
        "| task | seed | Gap plain | Gap floor | AUC plain | AUC floor | TPR@1% floor "
        "| shift plain | shift floor | null max |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for f in sorted(out.glob("tarf_*_s*.json")):
        task, seed = f.stem[len("tarf_") :].rsplit("_s", 1)
        run = load(f)["runs"][0]
        a, m = run["audit"], run["metrics"]
        plain = load(results / "cifar100" / f"tarf_{task}_s{seed}.json")
        bench_audit = results / "cifar100-audit" / f"tarf_{task}_s{seed}.json"
        own_audit = out / f"plain_tarf_{task}_s{seed}.json"
        shift_only = results / "cifar100-audit" / "shift" / f"tarf_{task}.json"  # seed 0
        plain_audit: dict = {}
        if own_audit.exists():
            plain_audit = load(own_audit)["runs"][0]["audit"]
        elif bench_audit.exists():
            plain_audit = load(bench_audit)["audit"]
            if "score_shift" not in plain_audit and shift_only.exists() and seed == "0":
                plain_audit["score_shift"] = load(shift_only)["runs"][0]["audit"]["score_shift"]
        auc, plain_shift = plain_audit.get("AUC"), plain_audit.get("score_shift")
        rows.append(
            f"| {task} | {seed} | {plain['metrics']['Gap']:.2f} | {m['Gap']:.2f} | "
            + (f"{auc:.1f}" if auc is not None else "-")
            + f" | {a['AUC']:.1f} | {a['TPR@1%FPR']:.1f} | "
            + (f"{plain_shift:+.2f}" if plain_shift is not None else "-")
            + f" | {a['score_shift']:+.2f} | {a['null_AUC']['max']:.1f} |"
        )
    for f in sorted((out / "fashion-mnist").glob("tarf_*_s0.json")):
        task = f.stem[len("tarf_") : -len("_s0")]
        m = load(f)["metrics"]
        plain = load(results / "fashion-mnist" / f"tarf_{task}_s0.json")
        rows.append(
            f"| fashion-mnist {task} | 0 | {plain['metrics']['Gap']:.2f} | {m['Gap']:.2f} "
            "| - | - | - | - | - | - |"
        )
    print("\n".join(rows))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/results"))
