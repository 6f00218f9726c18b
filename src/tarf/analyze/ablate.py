"""TARF ablations (paper Fig. 4b, Fig. 7) as small bench grids: each study is a list of
TARF variants (a label and the hyperparameters it changes), run on the chosen tasks and
seeds through :mod:`tarf.bench` (shared cached models, one resumable job per run), then
summarised as a table and a figure of Gap (and UA / RA) per variant and task."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tarf.io import atomic_write, write_text
from tarf.report import mean_std, stat_cell, to_csv

# study -> (what it varies, [(label, TARF hyperparameters)]); labels end up in file names
STUDIES: dict[str, tuple[str, list[tuple[str, dict[str, Any]]]]] = {
    "k": ("initial ascent weight k", [
        (f"k{v:g}", {"k": v}) for v in (0.01, 0.02, 0.05, 0.1, 0.2)
    ]),
    "schedule": ("k(t): annealed (paper), constant, increasing", [
        (m, {"k_schedule": m}) for m in ("annealed", "constant", "increasing")
    ]),
    "op": ("operation on identified data: zero weight (paper) or gradient ascent", [
        (f"op-{m}", {"identified_op": m}) for m in ("zero", "ascent")
    ]),
    "phase3": ("length of Phase III, t0 epochs of descent only", [
        (f"t0-{v}", {"t0": v}) for v in (0, 1, 2, 4)
    ]),
    "stopgrad": ("gradient stopped below layer L in Phases II-III (0: none)", [
        (f"frozen{v}", {"frozen_blocks": v}) for v in (0, 3, 6, 9)
    ]),
}  # fmt: skip


def study(name: str) -> tuple[str, dict[str, dict[str, Any]]]:
    if name not in STUDIES:
        raise ValueError(f"unknown study {name!r}; known: {', '.join(STUDIES)}")
    what, variants = STUDIES[name]
    return what, dict(variants)


def make_grid(
    name: str, dataset: str, forget: str, concept: str | None, tasks: tuple[str, ...],
    seeds: tuple[int, ...], recipe: str, data_root: str | None = None, device: str = "auto",
    shared: dict[str, Any] | None = None,
) -> Any:  # fmt: skip
    """The bench grid of one study: one TARF row per variant (its hyperparameters over
    the ``shared`` ones every variant gets), one run per (variant, task, seed)."""
    from tarf.bench import Grid, Row

    _, variants = study(name)
    rows = tuple(
        Row("tarf", label, {**(shared or {}), **params}) for label, params in variants.items()
    )
    return Grid(dataset, forget, concept, tasks, (), seeds, recipe, data_root,
                device=device, rows=rows)  # fmt: skip


def rows(reports: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    """Mean over seeds per (variant, task) of Gap, UA, RA, TA, MIA, RTE_s; variants in
    the study's order (matched by their hyperparameters, so reports from any folder can
    be summarised)."""
    _, variants = study(name)
    out = []
    for label, params in variants.items():
        for task in dict.fromkeys(r["task"] for r in reports):
            runs = [
                r for r in reports
                if r["task"] == task and r["method"] == "tarf"
                and all(r["config"].get(k) == v for k, v in params.items())
                and r.get("metrics", {}).get("Gap") is not None
            ]  # fmt: skip
            if not runs:
                continue
            row: dict[str, Any] = {"study": name, "variant": label, "task": task,
                                   "seeds": len(runs)}  # fmt: skip
            for m in ("Gap", "UA", "RA", "TA", "MIA", "RTE_s"):
                mean, sd = mean_std([float(r["metrics"][m]) for r in runs])
                row[m], row[f"{m}_std"] = round(mean, 2), round(sd, 2)
            out.append(row)
    return out


def write_summary(
    reports: list[dict[str, Any]], name: str, out_dir: str | Path,
    shared: dict[str, Any] | None = None,
) -> list[dict]:  # fmt: skip
    """``ablation_{name}.csv``, ``.md`` and ``.png`` under ``out_dir`` (the ``shared``
    settings every variant had named in the table's head)."""
    out_dir = Path(out_dir)
    rs = rows(reports, name)
    if not rs:
        return rs
    write_text(out_dir / f"ablation_{name}.csv", to_csv(rs))
    cols = ["variant", "task", "seeds", "Gap", "UA", "RA", "TA", "MIA", "RTE_s"]
    on = ", ".join(f"{k}={v}" for k, v in (shared or {}).items()) or "TARF's defaults"
    lines = [f"Ablation `{name}`: {STUDIES[name][0]}, on {on}. Mean over seeds (± std when "
             "> 1).", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]  # fmt: skip
    for r in rs:
        cells = [str(r[c]) if c in ("variant", "task", "seeds") else
                 stat_cell((r[c], r[f"{c}_std"]), r["seeds"]) for c in cols]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    write_text(out_dir / f"ablation_{name}.md", "\n".join(lines) + "\n")
    plot(rs, name, out_dir / f"ablation_{name}.png")
    return rs


def plot(rs: list[dict[str, Any]], name: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(dict.fromkeys(r["variant"] for r in rs))
    tasks = list(dict.fromkeys(r["task"] for r in rs))
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    for ax, metric in zip(axes, ("Gap", "UA", "RA")):
        for task in tasks:
            pts = {r["variant"]: r for r in rs if r["task"] == task}
            xs = [i for i, lb in enumerate(labels) if lb in pts]
            ax.errorbar(xs, [pts[labels[i]][metric] for i in xs],
                        yerr=[pts[labels[i]][f"{metric}_std"] for i in xs],
                        marker="o", capsize=3, label=task)  # fmt: skip
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels, rotation=30, fontsize=8)
        ax.set_title(
            f"{metric}" + (" to the reference (lower is better)" if metric == "Gap" else "")
        )
    axes[0].legend(fontsize=7)
    fig.suptitle(f"TARF ablation: {STUDIES[name][0]}", fontsize=10)
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
    plt.close(fig)
