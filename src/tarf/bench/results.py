"""A bench folder's results: the run reports in it, and the tables made from them
(``results.csv``, one row per run; ``results.md``, the paper's Table 1 layout)."""

from __future__ import annotations

from pathlib import Path

from tarf.bench.grid import RunJob
from tarf.domains import MAIN_TASKS
from tarf.io import write_text
from tarf.schema import Report, read_reports


def read_report(path: Path) -> Report | None:
    """A run report if ``path`` exists and parses as one, else None (then it is redone)."""
    reports = read_reports(path)
    return reports[0] if len(reports) == 1 else None


def report_done(report: Report | None, job: RunJob) -> bool:
    """A run is done when its report exists and, if the job audits, holds an audit
    against as many references (the unlearned model is gone: auditing means rerunning)."""
    if report is None:
        return False
    return not job.audit or (report.get("audit") or {}).get("references") == job.audit


def collect_reports(out_dir: str | Path) -> list[Report]:
    """Every parseable run report in the folder (bench's own and manual ``tarf unlearn
    --out`` runs alike; a JSON list of reports counts too)."""
    from tarf.report import TABLE1_METHODS

    reports = [r for p in sorted(Path(out_dir).glob("*.json")) for r in read_reports(p)]
    tasks = {t: i for i, t in enumerate(MAIN_TASKS)}
    methods = {m: i for i, m in enumerate(TABLE1_METHODS)}
    reports.sort(key=lambda r: (tasks.get(r["task"], 99), r["task"], methods.get(r["method"], 99),
                                r["method"], r["seed"]))  # fmt: skip
    return reports


def write_results(out_dir: str | Path) -> list[Report]:
    """``results.csv`` (one row per run) and ``results.md`` (the paper's Table 1 layout)."""
    from tarf.comparison import gap_by_seed, standings, table1
    from tarf.report import audit_table, flat_row, to_csv

    out = Path(out_dir)
    reports = collect_reports(out)
    write_text(out / "results.csv", to_csv([flat_row(r) for r in reports]))
    kinds = sorted({f"{r.get('dataset')}/{r.get('recipe')}" for r in reports})
    head = f"Runs in {out}: {len(reports)} ({', '.join(kinds) or 'none'}). Gap to the retrained reference, lower is better.\n\n"
    audit = ""
    if any(r.get("audit") for r in reports):
        audit = ("\n\nAudit (tarf.audit, docs/audit.md): U-LiRA of the unlearned model against "
                 "the retrained references, the NeurIPS 2023 challenge's F and score, and the "
                 "concept probe.\n\n" + audit_table(reports))  # fmt: skip
    seeds = gap_by_seed(reports)  # empty unless some cell has several seeds
    if seeds:
        seeds = (
            "\n\nGap by task, mean ± std over seeds (each seed's Gap in seed order):\n\n" + seeds
        )
    standing = standings(reports)  # the best per task, and TARF against each method
    if standing:
        standing = (
            "\n\nPer task (`retrain` is the bar, not an unlearning method; methods compared"
            " seed by seed on the seeds both ran):\n\n" + standing
        )
    body = (table1(reports) if reports else "") + seeds + standing + audit
    write_text(out / "results.md", head + body + "\n")
    return reports
