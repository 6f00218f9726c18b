"""TARF's design cells side by side: the Gap per task and seed for each folder of TARF
runs given, beside the best of the eight original baselines in the committed grid of the
same seed (other models: that grid's references) and the untouched original (the first
folder's reports), as a Markdown table (docs/methods.md, "What TARF achieves").

    python scripts/tarf_design_table.py [--seeds 0,1] [--columns defaults,former=.]
        [--baselines ssd,neggrad-plus]   # methods of the committed grid as columns too

A column is a folder under docs/results/tarf-design/<case>/, or ``label=folder`` (``.``:
the case's folder itself: TARF with its settings of 2026-12-02 on earlier models), or
``label=folderA|folderB``: each run from the first of them that holds it (the current
defaults where a default changed for some tasks only and was rerun on those). Reads only
committed reports; seconds. A cell whose run is missing shows "—".
"""

from __future__ import annotations

import argparse
from pathlib import Path
from statistics import mean

from tarf.bench.results import read_report
from tarf.report import TABLE1_METHODS

REPO = Path(__file__).resolve().parent.parent
DESIGN = {  # dataset folder under docs/results/tarf-design -> (label, committed grid)
    "fashion-mnist-footwear": ("Fashion-MNIST", REPO / "docs/results/fashion-mnist"),
    "cifar100-people": ("CIFAR-100", REPO / "docs/results/cifar100"),
}
TASKS = ["all-matched", "target-mismatch", "model-mismatch", "data-mismatch"]
BASELINES = TABLE1_METHODS[:8]  # the paper's eight
NAMES = {
    "l1-sparse": "L1-sparse", "salun": "SalUn", "scrub": "SCRUB", "ssd": "SSD",
    "neggrad-plus": "NegGrad+", "bad-teacher": "Bad Teacher", "unsir": "UNSIR",
    "lotus": "LoTUS", "rfe": "RFE",
}  # fmt: skip


def gap(report: dict | None, part: str = "metrics") -> float | None:
    """A report's Gap (``part="original"``: the untouched original's); None without one."""
    return None if report is None else float(report[part]["Gap"])


def best_baseline(grid: Path, task: str, seed: int) -> str:
    gaps = {m: gap(read_report(grid / f"{m}_{task}_s{seed}.json")) for m in BASELINES}
    gaps = {m: g for m, g in gaps.items() if g is not None}
    if not gaps:
        return "—"
    m = min(gaps, key=gaps.get)
    return f"{NAMES.get(m, m.upper())} {gaps[m]:.2f}"


def first_report(case: Path, column: str, name: str) -> dict | None:
    """The report ``name`` from the first folder of ``column`` (``a|b``) that holds it."""
    for folder in column.split("|"):
        report = read_report(case / folder / name)
        if report is not None:
            return report
    return None


def cell(values: list[float | None]) -> str:
    shown = " / ".join("—" if v is None else f"{v:.2f}" for v in values)
    done = [v for v in values if v is not None]
    return shown + (f" ({mean(done):.2f})" if len(done) > 1 else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--columns", default="defaults,mixed-retained,separate-trained")
    ap.add_argument(
        "--baselines", default="", help="methods of the committed grid shown as columns too"
    )
    args = ap.parse_args()
    extra = [m for m in args.baselines.split(",") if m]
    seeds = [int(s) for s in args.seeds.split(",")]
    columns = dict(c.split("=", 1) if "=" in c else (c, c) for c in args.columns.split(","))
    seed_label = " / ".join(str(s) for s in seeds)
    head = [f"design cell, Gap at seeds {seed_label} (mean)", *columns]
    head += [NAMES.get(m, m) for m in extra]
    head += ["best original baseline", "untouched original"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for folder, (label, grid) in DESIGN.items():
        for task in TASKS:
            case = REPO / "docs/results/tarf-design" / folder
            runs = [
                [first_report(case, column, f"tarf_{task}_s{s}.json") for s in seeds]
                for column in columns.values()
            ]
            row = [f"{label} {task.replace('-', ' ')}", *(cell([gap(r) for r in c]) for c in runs)]
            for m in extra:
                row.append(cell([gap(read_report(grid / f"{m}_{task}_s{s}.json")) for s in seeds]))
            row.append(" / ".join(best_baseline(grid, task, s) for s in seeds))
            row.append(cell([gap(r, "original") for r in runs[0]]))  # the first column's
            print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
