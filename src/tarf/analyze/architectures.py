"""The architecture ablation (paper Fig. 7 middle right, Table 12): the same grid of
methods and tasks benched once per architecture (``tarf bench --recipe cpu:ARCH`` into
one folder each), read back and set side by side as a table and a figure of Gap per
method, task and architecture, with the retrained reference's accuracies beside them
(a bigger network changes what "retrained" means, so the references are part of the
comparison)."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from tarf.io import atomic_write, write_text

METRICS = ("Gap", "UA", "RA", "TA", "MIA")


def arch_of(report: dict[str, Any]) -> str:
    """The network a report's recipe trains (``cpu`` -> cpunet, ``cpu:vgg16-bn`` -> vgg16-bn)."""
    from tarf.recipes import get_recipe

    return get_recipe(report["recipe"]).arch


def _mean_std(vals: list[float]) -> tuple[float, float]:
    mean = sum(vals) / len(vals)
    sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return round(mean, 2), round(sd, 2)


def rows(
    reports: list[dict[str, Any]],
    tasks: tuple[str, ...] | None = None,
    methods: tuple[str, ...] | None = None,
    seeds: tuple[int, ...] | None = None,
) -> list[dict[str, Any]]:
    """Mean (± std over seeds) per (architecture, task, method) of Gap, UA, RA, TA, MIA,
    plus a ``retrained`` row per (architecture, task) from the reports' reference
    metrics (one per seed). Architectures in the order they first appear, tasks and
    methods in the order given (else as found)."""
    keep = [
        r for r in reports
        if r.get("metrics", {}).get("Gap") is not None
        and (tasks is None or r["task"] in tasks)
        and (methods is None or r["method"] in methods)
        and (seeds is None or r["seed"] in seeds)
    ]  # fmt: skip
    archs = list(dict.fromkeys(arch_of(r) for r in keep))
    task_order = tasks or tuple(dict.fromkeys(r["task"] for r in keep))
    method_order = methods or tuple(dict.fromkeys(r["method"] for r in keep))
    out: list[dict[str, Any]] = []
    for arch in archs:
        for task in task_order:
            mine = [r for r in keep if arch_of(r) == arch and r["task"] == task]
            if not mine:
                continue
            refs = {r["seed"]: r["reference"] for r in mine if r.get("reference")}
            groups = [("retrained", list(refs.values()))] + [
                (m, [r["metrics"] for r in mine if r["method"] == m]) for m in method_order
            ]
            for method, metrics in groups:
                if not metrics:
                    continue
                row: dict[str, Any] = {"arch": arch, "task": task, "method": method,
                                       "seeds": len(metrics)}  # fmt: skip
                for m in METRICS:
                    vals = [float(x[m]) for x in metrics if x.get(m) is not None]
                    row[m], row[f"{m}_std"] = _mean_std(vals) if vals else (None, None)
                out.append(row)
    return out


def write_summary(rs: list[dict[str, Any]], out_dir: str | Path) -> None:
    """``architectures.csv``, ``.md`` and ``.png`` under ``out_dir``."""
    out_dir = Path(out_dir)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rs[0]))
    w.writeheader()
    w.writerows(rs)
    write_text(out_dir / "architectures.csv", buf.getvalue())
    cols = ["arch", "task", "method", "seeds", *METRICS]
    lines = ["Architectures: mean over seeds (± std when > 1); `retrained` is the reference "
             "every Gap is measured against.", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]  # fmt: skip
    for r in rs:
        spread = r["seeds"] > 1
        cells = [str(r[c]) for c in cols[:4]] + [
            "-" if r[m] is None else f"{r[m]:.2f}" + (f" ± {r[m + '_std']:.2f}" if spread else "")
            for m in METRICS
        ]
        lines.append("| " + " | ".join(cells) + " |")
    write_text(out_dir / "architectures.md", "\n".join(lines) + "\n")
    plot(rs, out_dir / "architectures.png")


def plot(rs: list[dict[str, Any]], path: Path) -> None:
    """One panel per task: Gap of each method, one bar per architecture."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rs = [r for r in rs if r["method"] != "retrained"]
    tasks = list(dict.fromkeys(r["task"] for r in rs))
    archs = list(dict.fromkeys(r["arch"] for r in rs))
    methods = list(dict.fromkeys(r["method"] for r in rs))
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.2 * len(tasks), 3.4), squeeze=False)
    width = 0.8 / max(1, len(archs))
    for ax, task in zip(axes[0], tasks):
        for i, arch in enumerate(archs):
            pts = {r["method"]: r for r in rs if r["task"] == task and r["arch"] == arch}
            xs = [j + (i - (len(archs) - 1) / 2) * width for j, m in enumerate(methods) if m in pts]
            ys = [pts[m]["Gap"] for m in methods if m in pts]
            err = [pts[m]["Gap_std"] for m in methods if m in pts]
            ax.bar(xs, ys, width, yerr=err if any(err) else None, capsize=2, label=arch)
        ax.set_xticks(range(len(methods)))
        ax.set_xticklabels(methods)
        ax.set_title(f"{task}: Gap to the reference (lower is better)", fontsize=9)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
    plt.close(fig)
