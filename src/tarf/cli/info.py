"""Commands that list and collect, without running a model: classes, methods, report."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from tarf.cli import options as opt
from tarf.cli.common import CLIError, log, preflight
from tarf.comparison import runs_table
from tarf.hierarchy import LabelHierarchy, builtin_hierarchy
from tarf.io import write_text
from tarf.methods import METHODS
from tarf.report import flat_row, hierarchy_lines, methods_catalogue, to_csv
from tarf.schema import load_reports, read_reports


def add_parsers(sub: Any) -> None:
    p = opt.add_command(
        sub, "classes", "list the class and superclass names of a dataset's hierarchy"
    )
    opt.dataset(p)
    opt.hierarchy(p)
    p.set_defaults(func=cmd_classes)

    p = opt.add_command(sub, "methods", "list the registered methods and their hyperparameters")
    p.set_defaults(func=cmd_methods)

    p = opt.add_command(sub, "report", "collect run reports (JSON) into a Markdown table and a CSV")
    p.add_argument(
        "reports",
        nargs="+",
        help="JSON reports written by `tarf unlearn --out` or `tarf bench`, or folders of them",
    )
    p.add_argument("--md", help="write the Markdown table here; left out: print it")
    p.add_argument("--csv", help="write one CSV row per run here")
    p.add_argument("--layout", choices=("runs", "table1", "gaps"), default="runs",
                   help="runs: every run with its reference and original; table1: the paper's "
                   "Table 1, one block per task, mean ± std over seeds, best Gap in bold, "
                   "RTE / retrain time; gaps: the Gap per method and task with each seed's, "
                   "then per task the best unlearning method and TARF against each")  # fmt: skip
    p.set_defaults(func=cmd_report)


def cmd_classes(args: argparse.Namespace) -> int:
    h = builtin_hierarchy(args.dataset)
    if args.hierarchy:
        h = LabelHierarchy.from_file(args.hierarchy, class_order=h.class_names)
    print("\n".join(hierarchy_lines(h)))
    return 0


def cmd_methods(args: argparse.Namespace) -> int:
    print(methods_catalogue(METHODS))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    preflight(args, files=("md", "csv"), cache=False)
    reports, seen = [], set()  # a file named twice (a folder and a file in it) counts once
    for path in args.reports:
        if Path(path).is_dir():  # a bench folder: the reports in it
            files = sorted(Path(path).glob("*.json"))
            found = [r for f in files if f.resolve() not in seen for r in read_reports(f)]
            if not found and not any(f.resolve() in seen for f in files):
                below = sorted(
                    {str(f.parent) for f in Path(path).glob("*/*.json") if read_reports(f)}
                )
                more = ", ..." if len(below) > 3 else ""
                hint = f"; {len(below)} of its subfolders do: {', '.join(below[:3])}{more}"
                raise CLIError(
                    f"{path} is a folder with no run report in it (*.json){hint if below else ''}"
                )
            seen.update(f.resolve() for f in files)
            reports.extend(found)
            continue
        if Path(path).resolve() in seen:
            continue
        seen.add(Path(path).resolve())
        try:
            reports.extend(load_reports(path))
        except ValueError as e:
            raise CLIError(str(e)) from None
    # one report copied into two folders is one run: counted once
    unique = list({json.dumps(r, sort_keys=True, default=str): r for r in reports}.values())
    if len(unique) < len(reports):
        log(
            f"note: {len(reports) - len(unique)} of the reports are copies of others; each counted once"
        )
    reports = unique
    try:
        table = runs_table(reports, args.layout)
    except ValueError as e:
        raise CLIError(str(e)) from None
    if args.md:
        write_text(args.md, table + "\n")
    else:
        print(table)
    if args.csv:
        write_text(args.csv, to_csv([flat_row(r) for r in reports]))
    return 0
