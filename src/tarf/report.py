"""Tables for the terminal and Markdown, and the flat rows behind CSV files."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from typing import Any

from tarf.domains import RANDOM
from tarf.identification_report import identification_lines
from tarf.schema import normalize_report

REPORT_COLUMNS = ("UA", "RA", "TA", "MIA", "Gap", "RTE_s")


def fmt(v: Any, digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return "-" if math.isnan(v) else f"{v:.{digits}f}"
    return str(v)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[fmt(c) for c in r] for r in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(header)
    ]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), sep, *(line(r) for r in cells)])


def method_label(report: dict[str, Any]) -> str:
    """The method's name, with the hyperparameters set away from its defaults (and
    ``prior=auto`` when TARF estimated its prior)."""
    changes = dict(report.get("config_changes") or {})
    if (report.get("request") or {}).get("prior") == "auto":
        changes["prior"] = "auto"
    return " ".join([report["method"], *(f"{k}={v}" for k, v in changes.items())])


def request_label(report: dict[str, Any]) -> str:
    """``forget -> target`` of a run, to tell apart runs of the same task on other concepts."""
    request = report.get("request") or {}
    forget = ",".join(request.get("forget") or [])
    if report.get("task") == RANDOM:  # random forgetting: a part of the training set
        forget = f"random {request.get('forget_fraction'):g} of the training set"
    elif request.get("forget_fraction") is not None:  # the sub-set level
        forget = f"{request['forget_fraction']:g} of {forget}"
    if request.get("forget_seed"):  # a draw other than the default one
        forget += f" (draw seed {request['forget_seed']})"
    target = ",".join(request.get("target") or []) or (
        "D_f" if report.get("task") == RANDOM else "?"
    )
    return f"{forget} -> {target}"


def report_rows(report: dict[str, Any], with_request: bool = False) -> list[list[Any]]:
    """One run as table rows: the method, the retrained reference and the original (each
    row led by the request when ``with_request``, for tables that mix requests)."""
    rows = _report_rows(report)
    return [[request_label(report), *r] for r in rows] if with_request else rows


def mixes_requests(reports: Sequence[dict[str, Any]]) -> bool:
    """Whether some task holds runs of more than one (forget, target) request (a bench's
    tasks differ in their target by design, so only requests within a task count)."""
    labels: dict[str, set[str]] = {}
    for r in reports:
        labels.setdefault(r["task"], set()).add(request_label(r))
    return any(len(v) > 1 for v in labels.values())


def _report_rows(report: dict[str, Any]) -> list[list[Any]]:
    m, ref, orig = report["metrics"], report.get("reference"), report.get("original") or {}
    rows = [[report["task"], method_label(report), *(m.get(k) for k in REPORT_COLUMNS)]]
    if ref:
        rows.append(
            [
                report["task"],
                "retrained",
                *(ref.get(k) for k in REPORT_COLUMNS[:4]),
                0.0,
                ref.get("train_s"),
            ]
        )
    if orig:
        rows.append(
            [
                report["task"],
                "original",
                *(orig.get(k) for k in REPORT_COLUMNS[:4]),
                orig.get("Gap"),
                None,
            ]
        )
    return rows


def flat_row(report: dict[str, Any]) -> dict[str, Any]:
    """The CSV row of one run (columns of docs/results/*.csv)."""
    m, ref = report["metrics"], report.get("reference") or {}
    row = {
        "dataset": report["dataset"],
        "task": report["task"],
        "method": report["method"],
        "seed": report["seed"],
        "recipe": report["recipe"],
        "forget": ",".join((report.get("request") or {}).get("forget") or []),
        "target": ",".join((report.get("request") or {}).get("target") or []),
        "prior": (report.get("request") or {}).get("prior"),  # TARF's n, or "auto"
        "forget_fraction": (report.get("request") or {}).get("forget_fraction"),  # sub-set
    }
    if "forget_seed" in (report.get("request") or {}):  # random forgetting, another draw
        row["forget_seed"] = report["request"]["forget_seed"]
    row.update({k: m.get(k) for k in ("UA", "RA", "TA", "MIA", "Gap", "RTE_s", "UA-F", "UA-R")})
    row["retrain_s"] = ref.get("train_s")
    row.update({f"ref_{k}": ref.get(k) for k in ("UA", "RA", "TA", "MIA")})
    changes = report.get("config_changes") or {}
    row["config_changes"] = " ".join(f"{k}={v}" for k, v in changes.items())
    if report.get("audit"):  # tarf bench --audit: appended, the columns above keep their order
        row.update(audit_values(report["audit"]))
    return row


AUDIT_COLUMNS = ("audit_AUC", "audit_TPR@1%FPR", "audit_TPR@0.1%FPR", "audit_F", "audit_score",
                 "probe_BA", "probe_AUC", "ref_probe_BA", "ref_probe_AUC", "audit_shift")  # fmt: skip


def audit_values(audit: dict[str, Any]) -> dict[str, Any]:
    """The CSV columns of a report's ``audit`` (tarf.audit): U-LiRA, F, score, probes."""
    probe = audit.get("probe") or {}
    unl, ref = probe.get("unlearned") or {}, probe.get("retrained") or {}
    values = (audit.get("AUC"), audit.get("TPR@1%FPR"), audit.get("TPR@0.1%FPR"),
              audit.get("F"), audit.get("score"), unl.get("balanced_accuracy"), unl.get("AUC"),
              ref.get("balanced_accuracy"), ref.get("AUC"), audit.get("score_shift"))  # fmt: skip
    return dict(zip(AUDIT_COLUMNS, values))


def audit_table(reports: Sequence[dict[str, Any]]) -> str:
    """Audited runs per task and method, mean ± std over seeds: the run's Gap beside
    U-LiRA's AUC and TPR at low FPR (50 / ~FPR = indistinguishable from retrained; read
    the AUC against the largest AUC of a retrained reference against the others, "null
    max"; "shift", the median score minus the references' mean: < 0 over-forgotten, > 0
    under-forgotten), the challenge's F and score (1 = best), and the concept probe's balanced
    accuracy for the unlearned model and its retrained reference. Below the table, per
    task, whether ranking the methods by Gap and by U-LiRA AUC agree (Spearman's ρ)."""
    from tarf.domains import MAIN_TASKS

    audited = [r for r in reports if r.get("audit")]
    order = {m: i for i, m in enumerate(TABLE1_METHODS)}
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    rank = {t: i for i, t in enumerate(MAIN_TASKS)}
    for rep in sorted(
        audited, key=lambda r: (rank.get(r["task"], 99), r["task"], _label_order(r, order))
    ):
        groups.setdefault((rep["task"], method_label(rep)), []).append(rep)
    cols = ("Gap", "audit_AUC", "null_max", "audit_TPR@1%FPR", "audit_TPR@0.1%FPR",
            "audit_shift", "audit_F", "audit_score", "probe_BA", "ref_probe_BA")  # fmt: skip
    header = ["task", "method", "seeds", "Gap", "U-LiRA AUC", "null max", "TPR@1%FPR",
              "TPR@0.1%FPR", "shift", "F", "score", "probe BA", "probe BA (retrained)"]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    means: dict[str, list[tuple[float, float]]] = {}  # task -> (Gap, AUC) per method
    for (task, label), rs in groups.items():
        vals = [_audit_cells(r) for r in rs]
        cells, stats = [], {}
        for c in cols:
            stats[c] = stat = _mean_std([v[c] for v in vals])
            digits = 3 if c in ("audit_F", "audit_score") else 2
            cells.append("-" if stat is None else f"{stat[0]:.{digits}f}"
                         + (f" ± {stat[1]:.{digits}f}" if len(rs) > 1 else ""))  # fmt: skip
        lines.append(f"| {task} | {label} | {len(rs)} | " + " | ".join(cells) + " |")
        if stats["Gap"] is not None and stats["audit_AUC"] is not None:
            means.setdefault(task, []).append((stats["Gap"][0], stats["audit_AUC"][0]))
    agree = [f"{task} {rho:+.2f} ({len(pairs)} methods)" for task, pairs in means.items()
             if (rho := spearman([g for g, _ in pairs], [a for _, a in pairs])) is not None]  # fmt: skip
    if agree:
        lines += ["", "Ranking by Gap against ranking by U-LiRA AUC, Spearman's ρ (+1: the same "
                  "order): " + "; ".join(agree) + "."]  # fmt: skip
    return "\n".join(lines)


def _audit_cells(report: dict[str, Any]) -> dict[str, Any]:
    null = (report["audit"].get("null_AUC") or {}).get("max")
    return {**audit_values(report["audit"]), "Gap": report["metrics"].get("Gap"), "null_max": null}


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rank correlation (ties get their mean rank); None for fewer than 3
    pairs or a constant side."""
    if len(x) != len(y) or len(x) < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return None
    from scipy.stats import spearmanr  # scikit-learn's dependency

    return float(spearmanr(x, y)[0])


def to_csv(rows: Sequence[dict[str, Any]]) -> str:
    if not rows:
        return ""
    keys = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


# Row order of the paper's Table 1, the newer baselines after its eight (methods not
# listed follow, alphabetically).
TABLE1_METHODS = ("ft", "rl", "ga", "iu", "bs", "l1-sparse", "salun", "scrub",
                  "ssd", "neggrad-plus", "bad-teacher", "unsir", "lotus", "rfe",
                  "retrain", "tarf")  # fmt: skip
TABLE1_COLUMNS = ("UA", "RA", "TA", "MIA", "Gap", "RTE_s", "RTE_ratio")


def _mean_std(values: Sequence[float | None]) -> tuple[float, float] | None:
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not vals:
        return None
    mean = sum(vals) / len(vals)
    var = sum((v - mean) ** 2 for v in vals) / (len(vals) - 1) if len(vals) > 1 else 0.0
    return mean, math.sqrt(var)


def _cell(stat: tuple[float, float] | None, n: int, bold: bool = False) -> str:
    if stat is None:
        return "-"
    text = f"{stat[0]:.2f}" + (f" ± {stat[1]:.2f}" if n > 1 else "")
    return f"**{text}**" if bold else text


def _label_order(report: dict[str, Any], order: dict[str, int]) -> tuple:
    """Methods in Table 1 order; runs of one method by their changed values, numerically."""
    changes = report.get("config_changes") or {}
    values = tuple((k, v if isinstance(v, (int, float)) else float("inf"), str(v))
                   for k, v in sorted(changes.items()))  # fmt: skip
    return order.get(report["method"], 99), report["method"], len(changes), values


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
        key = f"{rep['task']}: {request_label(rep)}" if mixed else rep["task"]
        task_of[key] = rep["task"]
        by_task.setdefault(key, {}).setdefault(method_label(rep), []).append(rep)
    order = {m: i for i, m in enumerate(TABLE1_METHODS)}
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
                _mean_std([v.get(k) for v in refs.values()]) for k in ("UA", "RA", "TA", "MIA")
            ]
            ref_cells = [_cell(s, len(refs)) for s in ref_stats]
            train = _mean_std([v.get("train_s") for v in refs.values()])
            lines.append(
                f"| {task} | retrained (reference) | {len(refs)} | "
                + " | ".join([*ref_cells, "-", _cell(train, len(refs)), "1.00"])
                + " |"
            )
        if origs:
            stats = [
                _mean_std([v.get(k) for v in origs.values()])
                for k in ("UA", "RA", "TA", "MIA", "Gap")
            ]
            cells = [_cell(s, len(origs)) for s in stats]
            lines.append(
                f"| {task} | original | {len(origs)} | " + " | ".join([*cells, "-", "-"]) + " |"
            )
        labels = sorted(runs, key=lambda lab: _label_order(runs[lab][0], order))
        gaps = {lab: _mean_std([r["metrics"].get("Gap") for r in runs[lab]]) for lab in labels}
        # the best Gap, in bold, among the unlearning methods that beat leaving the model
        # untouched (retraining on D_un is the bar, not an unlearning method)
        orig_gap = _mean_std([v.get("Gap") for v in origs.values()])
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
                    stat = _mean_std(vals)
                    cells.append("-" if stat is None else f"{stat[0]:.3f}")
                    continue
                stat = gaps[lab] if k == "Gap" else _mean_std([r["metrics"].get(k) for r in rs])
                cells.append(
                    _cell(stat, n, bold=k == "Gap" and stat is not None and stat[0] == best)
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
    order = {m: i for i, m in enumerate(TABLE1_METHODS)}
    labels = sorted(gaps, key=lambda lab: _label_order(first[lab], order))
    stats = {
        (lab, t): _mean_std(list(gaps[lab].get(t, {}).values())) for lab in labels for t in tasks
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
            text = _cell(stat, len(by_seed), bold=stat is not None and stat[0] == best[t])
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
        order = {m: i for i, m in enumerate(TABLE1_METHODS)}
        for lab in sorted(means, key=lambda lab: _label_order(first[lab], order)):
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


# -- the text the commands print (tarf.cli prints what these return) -------------------------
def runs_summary(reports: Sequence[dict[str, Any]]) -> str:
    """Runs as one table (each run's method, retrained reference and original) and, per
    run, what TARF set aside and the run's warnings (:func:`run_lines`)."""
    rows = [r for rep in reports for r in report_rows(rep)]
    lines = [markdown_table(["task", "model", *REPORT_COLUMNS], rows)]
    for rep in reports:
        lines += [f"{rep['task']}: {line}" for line in run_lines(rep)]
    return "\n".join(lines)


def run_summary(report: dict[str, Any]) -> str:
    """One run as text (``tarf.summary``): its metrics beside the reference's and the
    original's, what TARF set aside and why, the warnings, and what was not measured."""
    lines = [markdown_table(["task", "model", *REPORT_COLUMNS], report_rows(report))]
    return "\n".join(lines + run_lines(report))


def run_lines(report: dict[str, Any], notes: bool = True) -> list[str]:
    """The identification lines, then ``warning: ...`` and (with ``notes``) ``note: ...``."""
    report = normalize_report(report)  # older reports: one note, no warnings list
    lines = identification_lines(report) + [f"warning: {w}" for w in report["warnings"]]
    return lines + ([f"note: {n}" for n in report["notes"]] if notes else [])


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
                             "reports mix requests: give the reports of one grid")  # fmt: skip
        return gap_by_seed(reports, min_seeds=1) + "\n\n" + standings(reports)
    if layout != "runs":
        raise ValueError(f"unknown layout {layout!r}; valid: runs, table1, gaps")
    mixed = mixes_requests(reports)
    rows = [r for rep in reports for r in report_rows(rep, with_request=mixed)]
    return markdown_table(["request"] * mixed + ["task", "model", *REPORT_COLUMNS], rows)


def methods_catalogue(methods: dict[str, Any]) -> str:
    """Registered methods (name -> class, ``tarf.methods.METHODS``): per method the first
    line of its docstring (else its module's), then every hyperparameter on a line of its
    own: its name, its default and what it does."""
    import dataclasses
    import sys

    from tarf.methods.base import hyperparameter_docs

    lines = []
    for name, cls in sorted(methods.items()):
        doc = (cls.__doc__ or sys.modules[cls.__module__].__doc__ or "").strip().splitlines()
        lines.append(f"{name}: {doc[0] if doc else ''}")
        fields = dataclasses.fields(cls.Config)
        docs = hyperparameter_docs(cls.Config)
        width = max((len(f"{f.name}={f.default!r}") for f in fields), default=0)
        for f in fields:
            setting = f"{f.name}={f.default!r}"
            lines.append(f"    {setting:<{width}}  {docs.get(f.name, '')}".rstrip())
        if not fields:
            lines.append("    (no hyperparameters: everything comes from the recipe)")
    return "\n".join(lines)


def hierarchy_lines(hierarchy: Any) -> list[str]:
    """``superclass: class, class, ...`` for every superclass of a label hierarchy."""
    h = hierarchy
    return [
        f"{name}: {', '.join(h.class_names[c] for c in h.classes_of(s))}"
        for s, name in enumerate(h.superclass_names)
    ]


THROUGHPUT_MIN_RATIO = 0.9  # the training loop's images/s against the bare model's


def throughput_verdict(result: dict[str, Any]) -> tuple[bool, str]:
    """Whether the training loop of ``tarf.speed.measure_throughput`` reaches
    ``THROUGHPUT_MIN_RATIO`` of the bare forward+backward throughput, and that as a line."""
    ok = result["loop_images_per_s"] >= THROUGHPUT_MIN_RATIO * result["bare_images_per_s"]
    return ok, (
        f"training loop at {100 * result['ratio']:.1f}% of the bare forward+backward "
        f"throughput ({'ok' if ok else f'BELOW {100 * THROUGHPUT_MIN_RATIO:.0f}%'})"
    )


def dynamics_lines(result: dict[str, Any], epochs: int) -> list[str]:
    """``tarf analyze dynamics`` in a few lines: per model, the classes nearest to D_f in
    feature space, and the accuracies after the last ascent epoch."""
    lines = [
        f"{level} model, nearest classes to D_f: " + ", ".join(list(dists)[:8])
        for level, dists in result["distances"].items()
    ]
    last = {r["labels"]: r for r in result["ascent"]}
    lines += [
        f"{level} model after {epochs} ascent epochs: accuracy D_f {r['forget_acc']:.1f}, "
        f"rest of concept {r['concept_acc']:.1f}, D_r {r['remaining_acc']:.1f}"
        for level, r in last.items()
    ]
    return lines
