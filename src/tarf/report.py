"""Tables for the terminal and Markdown, and the flat rows behind CSV files."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Sequence
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
    # tarf.evaluate's result has no method: its row is the model it was given
    return " ".join([report.get("method", "model"), *(f"{k}={v}" for k, v in changes.items())])


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


def setting_label(report: dict[str, Any]) -> str:
    """:func:`request_label` with the dataset and recipe: one request run under two
    recipes (or architectures) is two settings, whose runs are never pooled."""
    return f"{request_label(report)} ({report.get('dataset', '?')}, {report.get('recipe', '?')})"


def report_rows(
    report: dict[str, Any], with_request: bool = False, with_seed: bool = False
) -> list[list[Any]]:
    """One run as table rows: the method, the retrained reference and the original (each
    row led by the request, dataset and recipe when ``with_request``, for tables that mix
    them; the seed after the model when ``with_seed``)."""
    rows = _report_rows(report)
    if with_seed:
        rows = [[*r[:2], report.get("seed"), *r[2:]] for r in rows]
    return [[setting_label(report), *r] for r in rows] if with_request else rows


def labels_by_task(
    reports: Sequence[dict[str, Any]], label: Callable[[dict[str, Any]], str]
) -> dict[str, set[str]]:
    """Each task's runs' ``label`` values (a bench's tasks differ in their target by
    design, so runs are compared within a task)."""
    labels: dict[str, set[str]] = {}
    for r in reports:
        labels.setdefault(r["task"], set()).add(label(r))
    return labels


def mixes_requests(reports: Sequence[dict[str, Any]]) -> bool:
    """Whether some task holds runs of more than one (forget, target) request, dataset
    or recipe."""
    return any(len(v) > 1 for v in labels_by_task(reports, setting_label).values())


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
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    rank = {t: i for i, t in enumerate(MAIN_TASKS)}
    for rep in sorted(
        audited, key=lambda r: (rank.get(r["task"], 99), r["task"], method_order_key(r))
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
            stats[c] = stat = mean_std([v[c] for v in vals])
            digits = 3 if c in ("audit_F", "audit_score") else 2
            cells.append(stat_cell(stat, len(rs), digits=digits))
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
_METHOD_ORDER = {m: i for i, m in enumerate(TABLE1_METHODS)}  # a method's row in every table


def mean_std(values: Sequence[float | None]) -> tuple[float, float] | None:
    """Mean and sample standard deviation of the values that were measured (``None`` and
    NaN are runs that did not measure it), or ``None`` when none was."""
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not vals:
        return None
    mean = sum(vals) / len(vals)
    var = sum((v - mean) ** 2 for v in vals) / (len(vals) - 1) if len(vals) > 1 else 0.0
    return mean, math.sqrt(var)


def stat_cell(stat: tuple[float, float] | None, n: int, bold: bool = False, digits: int = 2) -> str:
    """A table cell: ``mean ± std`` over ``n`` runs (the mean alone for one), ``-`` when
    nothing was measured."""
    if stat is None:
        return "-"
    text = f"{stat[0]:.{digits}f}" + (f" ± {stat[1]:.{digits}f}" if n > 1 else "")
    return f"**{text}**" if bold else text


def method_order_key(report: dict[str, Any]) -> tuple:
    """Methods in Table 1 order; runs of one method by their changed values, numerically."""
    changes = report.get("config_changes") or {}
    values = tuple((k, v if isinstance(v, (int, float)) else float("inf"), str(v))
                   for k, v in sorted(changes.items()))  # fmt: skip
    return _METHOD_ORDER.get(report["method"], 99), report["method"], len(changes), values


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
