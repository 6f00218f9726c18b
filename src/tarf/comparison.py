"""Methods compared on the same request: the paper's Table 1 (mean ± std over seeds),
the Gap per seed, and per task the best unlearning method and where TARF stands against
each. ``retrain`` is the bar, never the best; nor is a Gap worse than the untouched
original's. :func:`runs_table` picks one of these layouts, or one row per run, for
``tarf report``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tarf.report import (
    REPORT_COLUMNS,
    TABLE1_COLUMNS,
    markdown_table,
    mean_std,
    method_label,
    method_order_key,
    mixes_requests,
    report_rows,
    setting_label,
    stat_cell,
)


def _unlearns(report: dict[str, Any]) -> bool:
    """Whether a run's method is an unlearning method: ``retrain`` (training from scratch
    on the data the user kept) is the bar the others are held to, never the best of them."""
    return report["method"] != "retrain"


def table1(reports: Sequence[dict[str, Any]]) -> str:
    """The paper's Table 1 layout: per task the retrained reference, then each method
    (mean ± std over seeds when there are several), the best unlearning method's Gap per
    task in bold (only a Gap below the untouched original's) and
    RTE as a ratio to the reference's training time. Runs of different requests are
    never pooled: each (task, request) gets its own block."""
    from tarf.domains import MAIN_TASKS

    mixed = mixes_requests(reports)
    by_task: dict[str, dict[str, list[dict[str, Any]]]] = {}
    task_of: dict[str, str] = {}
    for rep in reports:
        key = f"{rep['task']}: {setting_label(rep)}" if mixed else rep["task"]
        task_of[key] = rep["task"]
        by_task.setdefault(key, {}).setdefault(method_label(rep), []).append(rep)
    rank = lambda t: MAIN_TASKS.index(task_of[t]) if task_of[t] in MAIN_TASKS else 99  # noqa: E731
    tasks = sorted(by_task, key=lambda t: (rank(t), t))
    header = ["task", "method", "seeds", *TABLE1_COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for task in tasks:
        runs = by_task[task]
        refs = {
            (r["seed"]): r["reference"] for rs in runs.values() for r in rs if r.get("reference")
        }
        origs = {
            (r["seed"]): r["original"] for rs in runs.values() for r in rs if r.get("original")
        }
        if refs:
            ref_stats = [
                mean_std([v.get(k) for v in refs.values()]) for k in ("UA", "RA", "TA", "MIA")
            ]
            ref_cells = [stat_cell(s, len(refs)) for s in ref_stats]
            train = mean_std([v.get("train_s") for v in refs.values()])
            lines.append(
                f"| {task} | retrained (reference) | {len(refs)} | "
                + " | ".join([*ref_cells, "-", stat_cell(train, len(refs)), "1.00"])
                + " |"
            )
        if origs:
            stats = [
                mean_std([v.get(k) for v in origs.values()])
                for k in ("UA", "RA", "TA", "MIA", "Gap")
            ]
            cells = [stat_cell(s, len(origs)) for s in stats]
            lines.append(
                f"| {task} | original | {len(origs)} | " + " | ".join([*cells, "-", "-"]) + " |"
            )
        labels = sorted(runs, key=lambda lab: method_order_key(runs[lab][0]))
        gaps = {lab: mean_std([r["metrics"].get("Gap") for r in runs[lab]]) for lab in labels}
        # the best Gap, in bold, among the unlearning methods that beat leaving the model
        # untouched (retraining on D_un is the bar, not an unlearning method)
        orig_gap = mean_std([v.get("Gap") for v in origs.values()])
        means = {lab: g[0] for lab, g in gaps.items() if g is not None}
        best_lab = _best_label(means, {lab: rs[0] for lab, rs in runs.items()},
                               orig_gap[0] if orig_gap else None)  # fmt: skip
        best = means[best_lab] if best_lab else None
        for lab in labels:
            rs = runs[lab]
            n = len(rs)
            cells = []
            for k in TABLE1_COLUMNS:
                if k == "RTE_ratio":
                    vals = [
                        r["metrics"]["RTE_s"] / r["reference"]["train_s"]
                        if r.get("reference") and r["reference"].get("train_s")
                        else None
                        for r in rs
                    ]
                    stat = mean_std(vals)
                    cells.append("-" if stat is None else f"{stat[0]:.3f}")
                    continue
                stat = gaps[lab] if k == "Gap" else mean_std([r["metrics"].get(k) for r in rs])
                cells.append(
                    stat_cell(stat, n, bold=k == "Gap" and stat is not None and stat[0] == best)
                )
            lines.append(f"| {task} | {lab} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def gap_by_seed(reports: Sequence[dict[str, Any]], min_seeds: int = 2) -> str:
    """Gap per method (rows, Table 1 order) and task (columns): mean ± std over seeds,
    then each seed's value in seed order, so a reader sees the spread behind a mean.
    The best unlearning method's mean per task in bold (as in :func:`table1`); empty when
    the reports mix requests or no cell has ``min_seeds`` seeds (with one seed
    everywhere Table 1 already says it all)."""
    if not reports or mixes_requests(reports):
        return ""
    gaps, first, tasks = _gaps_by_method(reports)
    if not any(len(s) >= min_seeds for by_task in gaps.values() for s in by_task.values()):
        return ""
    labels = sorted(gaps, key=lambda lab: method_order_key(first[lab]))
    stats = {
        (lab, t): mean_std(list(gaps[lab].get(t, {}).values())) for lab in labels for t in tasks
    }
    originals = _original_gaps(reports)
    best = {}
    for t in tasks:
        means = {lab: stats[(lab, t)][0] for lab in labels if stats[(lab, t)]}
        lab = _best_label(means, first, originals.get(t))
        best[t] = means[lab] if lab else None
    rows = []
    for lab in labels:
        cells = [lab]
        for t in tasks:
            by_seed, stat = gaps[lab].get(t, {}), stats[(lab, t)]
            text = stat_cell(stat, len(by_seed), bold=stat is not None and stat[0] == best[t])
            if len(by_seed) > 1:
                text += " (" + " / ".join(f"{by_seed[s]:.2f}" for s in sorted(by_seed)) + ")"
            cells.append(text)
        rows.append(cells)
    return markdown_table(["method", *tasks], rows)


def _gaps_by_method(
    reports: Sequence[dict[str, Any]],
) -> tuple[dict[str, dict[str, dict[int, float]]], dict[str, dict[str, Any]], list[str]]:
    """``{method label: {task: {seed: Gap}}}``, each label's first report, and the tasks in
    the paper's order (other tasks after them, by name)."""
    from tarf.domains import MAIN_TASKS

    gaps: dict[str, dict[str, dict[int, float]]] = {}
    first: dict[str, dict[str, Any]] = {}
    for rep in reports:
        gap = rep["metrics"].get("Gap")
        if gap is None:
            continue
        lab = method_label(rep)
        gaps.setdefault(lab, {}).setdefault(rep["task"], {})[rep["seed"]] = gap
        first.setdefault(lab, rep)
    present = {t for by_task in gaps.values() for t in by_task}
    tasks = [t for t in MAIN_TASKS if t in present] + sorted(present - set(MAIN_TASKS))
    return gaps, first, tasks


def _original_gaps(reports: Sequence[dict[str, Any]]) -> dict[str, float]:
    """The untouched original's mean Gap per task (one value per seed, as in Table 1)."""
    by_task: dict[str, dict[int, float]] = {}
    for rep in reports:
        gap = (rep.get("original") or {}).get("Gap")
        if gap is not None:
            by_task.setdefault(rep["task"], {})[rep["seed"]] = gap
    return {t: sum(v.values()) / len(v) for t, v in by_task.items()}


def _best_label(
    means: dict[str, float], report_of: dict[str, dict[str, Any]], original: float | None
) -> str | None:
    """The label with the lowest mean Gap among the unlearning methods (``report_of``: a
    report of each label) whose Gap is below the untouched original's; None when no
    method beat leaving the model as it was."""
    beaten = {lab: g for lab, g in means.items()
              if _unlearns(report_of[lab]) and (original is None or g < original)}  # fmt: skip
    return min(beaten, key=beaten.get) if beaten else None


def standings(reports: Sequence[dict[str, Any]], method: str = "tarf") -> str:
    """Per task, in words: the best unlearning method (lowest mean Gap, below the untouched
    original's) and where ``method`` stands against every other unlearning method, compared
    seed by seed on the seeds both ran. Empty when the reports mix requests."""
    if not reports or mixes_requests(reports):
        return ""
    gaps, first, tasks = _gaps_by_method(reports)
    originals = _original_gaps(reports)
    lines = []
    for t in tasks:
        means = {lab: sum(g[t].values()) / len(g[t]) for lab, g in gaps.items()
                 if t in g and _unlearns(first[lab])}  # fmt: skip
        lab = _best_label(means, first, originals.get(t))
        if lab:
            n = len(gaps[lab][t])
            head = f"best unlearning method {lab} {means[lab]:.2f} ({n} seed{'s' * (n != 1)})"
        else:
            head = f"no unlearning method beat the untouched original ({originals[t]:.2f})"
        mine = next((lab for lab in means if first[lab]["method"] == method
                     and not first[lab].get("config_changes")), None)  # fmt: skip
        if mine is None:
            lines.append(f"- {t}: {head}.")
            continue
        lower, higher, split = [], [], []
        for lab in sorted(means, key=lambda lab: method_order_key(first[lab])):
            shared = sorted(set(gaps[mine][t]) & set(gaps[lab][t]))
            if lab == mine or not shared:
                continue
            wins = sum(gaps[mine][t][s] < gaps[lab][t][s] for s in shared)
            name = f"{lab} ({means[lab]:.2f})"
            if wins == len(shared):
                lower.append(name)
            elif wins == 0:
                higher.append(name)
            else:
                split.append(f"{name}: lower at {wins} of {len(shared)}")
        others = len(lower) + len(higher) + len(split)
        if not others:
            lines.append(f"- {t}: {head}; no other unlearning method has run here.")
            continue
        parts = [f"{method} {means[mine]:.2f} is lower than {len(lower)} of the other "
                 f"{others} at every seed they share"]  # fmt: skip
        if higher:
            parts.append("higher than " + ", ".join(higher) + " at every seed")
        if split:
            parts.append("split against " + "; ".join(split))
        lines.append(f"- {t}: {head}; " + "; ".join(parts) + ".")
    return "\n".join(lines)


def runs_table(reports: Sequence[dict[str, Any]], layout: str = "runs") -> str:
    """``tarf report``: ``runs``, every run with its reference and original (led by the
    request when the reports mix requests), ``table1``, the paper's layout, or ``gaps``,
    the Gap per method and task with each seed's value, then per task the best unlearning
    method and where TARF stands against each (one request per task only)."""
    if layout == "table1":
        return table1(reports)
    if layout == "gaps":
        if mixes_requests(reports):
            raise ValueError("--layout gaps compares methods on one request per task; these "
                         "reports mix requests, datasets or recipes: give the reports of "
                         "one grid, or use --layout table1, which keeps them apart")  # fmt: skip
        return gap_by_seed(reports, min_seeds=1) + "\n\n" + standings(reports)
    if layout != "runs":
        raise ValueError(f"unknown layout {layout!r}; valid: runs, table1, gaps")
    mixed = mixes_requests(reports)
    seeds = len({r.get("seed") for r in reports}) > 1
    rows = [r for rep in reports for r in report_rows(rep, with_request=mixed, with_seed=seeds)]
    head = ["setting"] * mixed + ["task", "model"] + ["seed"] * seeds + [*REPORT_COLUMNS]
    return markdown_table(head, rows)
