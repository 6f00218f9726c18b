"""The run report: one typed structure, written as JSON by every run (``tarf unlearn
--out``, ``tarf.unlearn``, each job of ``tarf bench``) and read by every table.

docs/report.md describes each key. A report is a plain dict (it is JSON), typed here
with ``TypedDict`` so that writers and readers agree; :func:`normalize_report` brings a
report written by an older tarf to this schema.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypedDict

REPORT_KEYS = ("task", "method", "seed", "metrics")  # what makes a JSON object a report


class Case(TypedDict):
    """The request's place in the paper's Table 4 (27 combinations of three layers)."""

    table4_no: int | None
    comment: str
    L_D: str
    L_M: str
    L_T: str


class RequestInfo(TypedDict, total=False):
    forget: list[str]
    target: list[str] | None  # None: an unnamed concept (no reference, no Gap)
    model_labels: str  # "class" or "superclass"
    prior: int | str | None  # TARF's prior: a count, "auto", or None
    forget_fraction: float | None  # the sub-set level: this seeded part of each class
    # (random forgetting: of the whole training set)
    forget_seed: int  # the seed of that draw; only with random forgetting or a seed other than 0


class Metrics(TypedDict, total=False):
    """Percentages in [0, 100] except RTE_s (seconds) and RTE_ratio (a fraction)."""

    UA: float | None
    RA: float | None
    TA: float | None
    MIA: float | None
    # percent of D_t below every confidence the MIA's attack was fit on (its extrapolation)
    MIA_extrapolated: float | None
    Gap: float  # mean |metric - reference's| over UA, RA, TA, MIA
    RTE_s: float
    RTE_ratio: float  # RTE_s / the reference's training time
    UA_F: float  # written "UA-F": accuracy on D_f (model mismatch)
    UA_R: float  # written "UA-R": accuracy on D_r's affected part (model mismatch)


class Budget(TypedDict):
    train_epochs: int  # the original's training length, which sets the budget
    epoch_samples: int  # samples one unlearning epoch may push through forward + backward


class Report(TypedDict, total=False):
    task: str
    case: Case
    dataset: str
    request: RequestInfo
    method: str
    config: dict[str, Any]  # every hyperparameter
    config_changes: dict[str, Any]  # the ones that differ from the method's defaults
    seed: int
    recipe: str
    budget: Budget
    metrics: Metrics
    original: dict[str, Any] | None  # the untouched model's metrics (+ test_acc, train_s)
    reference: dict[str, Any] | None  # the retrained reference's (+ test_acc, train_s)
    partition_sizes: dict[str, int]
    record: dict[str, Any]  # what the method did: samples, epochs, lr, per-epoch losses
    identification: dict[str, Any]  # TARF only: what it set aside, and why
    warnings: list[str]  # one line each, the likely cause and the fix
    notes: list[str]  # what could not be measured, and why
    machine: dict[str, Any]
    date: str
    audit: dict[str, Any]  # tarf bench --audit only


def is_report(d: Any) -> bool:
    return isinstance(d, dict) and all(k in d for k in REPORT_KEYS)


def normalize_report(d: dict[str, Any]) -> Report:
    """A report as this schema has it: older ones kept one ``note`` string (now
    ``notes``, a list) and no ``warnings``."""
    out = dict(d)
    if "note" in out:
        note = out.pop("note")
        out.setdefault("notes", [note] if note else [])
    out.setdefault("notes", [])
    if "warnings" not in out:
        warning = (out.get("identification") or {}).get("warning")
        out["warnings"] = [warning] if warning else []
    return out  # type: ignore[return-value]


def load_reports(path: str | Path) -> list[Report]:
    """The reports in one JSON file (a report, or a list of them); a ValueError naming
    the file when it cannot be read or holds no report."""
    path = Path(path)
    made = "give the .json reports `tarf unlearn --out` or `tarf bench` wrote"
    if not path.exists():
        if any(c in str(path) for c in "*?["):  # a shell pattern that matched nothing
            raise ValueError(f"no file matches {path}; {made}")
        raise ValueError(f"report {path} not found; {made}")
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise ValueError(f"cannot read report {path}: not a JSON file (binary); {made}") from None
    except OSError as e:
        raise ValueError(f"cannot read report {path} ({e.strerror or e})") from None
    try:
        data = json.loads(text)
    except ValueError as e:
        raise ValueError(
            f"cannot read report {path}: not a JSON file ({type(e).__name__}); {made}"
        ) from None
    items = data if isinstance(data, list) else [data]
    reports = [normalize_report(d) for d in items if is_report(d)]
    if not reports:
        raise ValueError(
            f"{path} holds no run report (a JSON object with {', '.join(REPORT_KEYS)})"
        )
    return reports


def read_reports(path: str | Path) -> list[Report]:
    """:func:`load_reports`, but [] for a file that is missing, unreadable or holds no
    report (a bench folder holds other JSON files too)."""
    try:
        return load_reports(path)
    except ValueError:
        return []
