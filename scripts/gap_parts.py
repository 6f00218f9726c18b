"""Where a Gap comes from: per committed report of one task, the method's UA, RA, TA and
MIA minus the retrained reference's (the Gap is the mean of their absolute values), so a
table can show whether a method loses on forgetting (UA, MIA) or on what it keeps (RA,
TA).

    python scripts/gap_parts.py [--task model-mismatch] [--methods tarf,scrub] [--dataset cifar100]

Reads every ``<method>_<task>_s<seed>.json`` under docs/results/tarf-design/*/defaults
(TARF's current defaults on the design cases) and docs/results/tarf-heldout/* (the
held-out cases; a case's ``defaults/`` sub-folder, TARF rerun with the current defaults,
gets rows of its own, labelled so); seconds.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tarf.bench.results import read_report

REPO = Path(__file__).resolve().parent.parent
PARTS = ("UA", "RA", "TA", "MIA")


def folders(dataset: str) -> list[tuple[str, Path]]:
    """(label, folder) of the design cases' defaults, then every held-out case."""
    out = [(f"design {p.parent.name}", p)
           for p in sorted((REPO / "docs/results/tarf-design").glob(f"{dataset}-*/defaults"))]  # fmt: skip
    for case in sorted((REPO / "docs/results/tarf-heldout").glob(f"{dataset}-*")):
        out.append((f"held-out {case.name}", case))
        if (case / "defaults").is_dir():
            out.append((f"held-out {case.name} (TARF's defaults)", case / "defaults"))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", default="model-mismatch")
    ap.add_argument("--methods", default="tarf,scrub")
    ap.add_argument("--dataset", default="cifar100")
    args = ap.parse_args()
    print(f"{args.task}, {args.dataset}: method minus the retrained reference, in points\n")
    print("| case | seed | method | Gap | UA | RA | TA | MIA |")
    print("|---|---|---|---|---|---|---|---|")
    for label, folder in folders(args.dataset):
        for method in args.methods.split(","):
            for path in sorted(folder.glob(f"{method}_{args.task}_s*.json")):
                r = read_report(path)
                m, ref = r["metrics"], r["reference"]
                parts = " | ".join(f"{m[k] - ref[k]:+.1f}" for k in PARTS)
                print(f"| {label} | {r['seed']} | {method} | {m['Gap']:.2f} | {parts} |")


if __name__ == "__main__":
    main()
