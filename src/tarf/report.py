"""Tables for the terminal and Markdown, and the flat rows behind CSV files."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from typing import Any

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


def report_rows(report: dict[str, Any]) -> list[list[Any]]:
    """One run as table rows: the method, the retrained reference and the original."""
    m, ref, orig = report["metrics"], report.get("reference"), report.get("original") or {}
    rows = [[report["task"], report["method"], *(m.get(k) for k in REPORT_COLUMNS)]]
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
    }
    row.update({k: m.get(k) for k in ("UA", "RA", "TA", "MIA", "Gap", "RTE_s", "UA-F", "UA-R")})
    row["retrain_s"] = ref.get("train_s")
    row.update({f"ref_{k}": ref.get(k) for k in ("UA", "RA", "TA", "MIA")})
    return row


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
