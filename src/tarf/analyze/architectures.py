"""The architecture ablation (paper Fig. 7 middle right, Table 12): the same grid of
methods and tasks benched once per architecture (``tarf bench --recipe cpu:ARCH`` into
one folder each), read back and set side by side as a table and a figure of Gap per
method, task and architecture, with the retrained reference's accuracies beside them
(a bigger network changes what "retrained" means, so the references are part of the
comparison)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tarf.io import atomic_write, write_text
from tarf.report import labels_by_task, mean_std, method_label, request_label, stat_cell, to_csv

METRICS = ("Gap", "UA", "RA", "TA", "MIA")
UNDERTRAINED_RA_DROP = 10.0  # reference RA points below the first architecture's


def arch_of(report: dict[str, Any]) -> str:
    """The network a report's recipe trains (``cpu`` -> cpunet, ``cpu:vgg16-bn`` -> vgg16-bn)."""
    from tarf.recipes import get_recipe

    return get_recipe(report["recipe"]).arch


def unique_runs(reports: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """One run per (architecture, request, task, row, seed), the first found, and how
    many others were dropped (a folder given twice, or two folders of one architecture):
    a seed counted twice would shrink the spread and inflate the seed count."""
    seen: set[tuple[Any, ...]] = set()
    kept = []
    for r in reports:
        key = (arch_of(r), r.get("dataset"), request_label(r), r["task"], method_label(r),
               r["seed"])  # fmt: skip
        if key not in seen:
            seen.add(key)
            kept.append(r)
    return kept, len(reports) - len(kept)


def mixed_requests(reports: list[dict[str, Any]]) -> list[str]:
    """The requests (dataset, forget -> target) of some task when there are several:
    architectures are compared on one request, each task's."""
    by_task = labels_by_task(reports, lambda r: f"{r.get('dataset')}: {request_label(r)}")
    return next((sorted(v) for v in by_task.values() if len(v) > 1), [])


def rows(
    reports: list[dict[str, Any]],
    tasks: tuple[str, ...] | None = None,
    methods: tuple[str, ...] | None = None,
    seeds: tuple[int, ...] | None = None,
) -> list[dict[str, Any]]:
    """Mean (± std over seeds) per (architecture, task, row) of Gap, UA, RA, TA, MIA,
    plus a ``retrained`` row per (architecture, task) from the reports' reference
    metrics (one per seed). A row is a method with its hyperparameters
    (:func:`tarf.report.method_label`: ``tarf frozen_blocks=-1`` is not ``tarf``), so
    variants of one method never merge; a run found twice counts once
    (:func:`unique_runs`). Architectures in the order they first appear,
    tasks and methods in the order given (else as found), a method's variants as found."""
    keep = [
        (arch_of(r), r) for r in unique_runs(reports)[0]
        if r.get("metrics", {}).get("Gap") is not None
        and (tasks is None or r["task"] in tasks)
        and (methods is None or r["method"] in methods)
        and (seeds is None or r["seed"] in seeds)
    ]  # fmt: skip
    archs = list(dict.fromkeys(a for a, _ in keep))
    task_order = tasks or tuple(dict.fromkeys(r["task"] for _, r in keep))
    method_order = methods or tuple(dict.fromkeys(r["method"] for _, r in keep))
    labels = {m: list(dict.fromkeys(method_label(r) for _, r in keep if r["method"] == m))
              for m in method_order}  # fmt: skip
    out: list[dict[str, Any]] = []
    for arch in archs:
        for task in task_order:
            mine = [r for a, r in keep if a == arch and r["task"] == task]
            if not mine:
                continue
            refs = {r["seed"]: r["reference"] for r in mine if r.get("reference")}
            groups = [("retrained", list(refs.values()))] + [
                (label, [r["metrics"] for r in mine if method_label(r) == label])
                for m in method_order
                for label in labels[m]
            ]
            for method, metrics in groups:
                if not metrics:
                    continue
                row: dict[str, Any] = {"arch": arch, "task": task, "method": method,
                                       "seeds": len(metrics)}  # fmt: skip
                for m in METRICS:
                    stat = mean_std([x.get(m) for x in metrics])
                    row[m], row[f"{m}_std"] = (
                        (None, None) if stat is None else (round(stat[0], 2), round(stat[1], 2))
                    )
                out.append(row)
    return out


def undertrained(rs: list[dict[str, Any]], drop: float = UNDERTRAINED_RA_DROP) -> list[str]:
    """Warnings for architectures whose retrained reference reaches an RA more than
    ``drop`` points below the first architecture's on the same task: the recipe
    under-trains that network, so its Gaps compare methods on a weak model rather than
    on a bigger one (VGG-16-bn under the ``cpu`` recipe: 46 % against cpunet's 68 %)."""
    refs = [r for r in rs if r["method"] == "retrained" and r["RA"] is not None]
    out = []
    for task in dict.fromkeys(r["task"] for r in refs):
        first, *others = [r for r in refs if r["task"] == task]
        for r in others:
            if first["RA"] - r["RA"] > drop:
                out.append(
                    f"{r['arch']} on {task}: the retrained reference's RA is {r['RA']:.1f} "
                    f"against {first['arch']}'s {first['RA']:.1f}; the recipe under-trains "
                    f"{r['arch']}, so its Gaps compare methods on a weak model (train it "
                    "longer, e.g. --recipe paper:ARCH on a GPU)."
                )
    return out


def write_summary(rs: list[dict[str, Any]], out_dir: str | Path) -> None:
    """``architectures.csv``, ``.md`` and ``.png`` under ``out_dir``."""
    out_dir = Path(out_dir)
    write_text(out_dir / "architectures.csv", to_csv(rs))
    cols = ["arch", "task", "method", "seeds", *METRICS]
    lines = ["Architectures: mean over seeds (± std when > 1); `retrained` is the reference "
             "every Gap is measured against.", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]  # fmt: skip
    for r in rs:
        stats = [None if r[m] is None else (r[m], r[f"{m}_std"]) for m in METRICS]
        cells = [str(r[c]) for c in cols[:4]] + [stat_cell(stat, r["seeds"]) for stat in stats]
        lines.append("| " + " | ".join(cells) + " |")
    warnings = undertrained(rs)
    if warnings:
        lines += ["", *(f"- **Under-trained:** {w}" for w in warnings)]
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
