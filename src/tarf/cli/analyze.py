"""The paper's analyses (``tarf analyze dynamics|identify|ablate|architectures``) and the
stronger audit (``tarf audit``, ``tarf.audit``)."""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path
from typing import Any

from tarf import audit, bench
from tarf.analyze import ablate, architectures, dynamics, identification
from tarf.bench.results import read_report
from tarf.cli import options as opt
from tarf.cli.common import (
    CLIError,
    device,
    load_data,
    log,
    make_method,
    names,
    nonempty,
    parallel_jobs,
    preflight,
    recipe,
)
from tarf.domains import MAIN_TASKS
from tarf.io import finite_or_none, write_json
from tarf.methods import METHODS, get_method
from tarf.methods.base import config_changes, parse_set
from tarf.report import dynamics_lines
from tarf.request import UnlearningRequest


def add_parsers(sub: Any) -> None:
    p = opt.add_command(
        sub, "analyze", "the paper's analyses as figures and the numbers behind them"
    )
    asub = p.add_subparsers(dest="analysis", required=True, metavar="ANALYSIS",
                            help="dynamics, identify, ablate or architectures")  # fmt: skip

    p = opt.add_command(
        asub, "identify",
        "target identification for every superclass as the concept, some of its classes "
        "given (paper Fig. 13): the ranking after Phase I, precision and recall of the "
        "known prior and of --prior auto",
    )  # fmt: skip
    opt.data_options(p)
    g = p.add_argument_group("analysis")
    g.add_argument("--given", type=int, default=2,
                   help="classes of each concept handed over as D_f (seeded)")  # fmt: skip
    g.add_argument("--concepts",
                   help="comma-separated superclass names; left out: every superclass")  # fmt: skip
    opt.seeds(g)
    opt.set_values(g, "a TARF hyperparameter, e.g. --set k=0.05 (repeatable)")
    g = opt.run_options(p, "folder of the per-concept JSONs and summaries", with_seed=False,
                        out_required=True)  # fmt: skip
    p.set_defaults(func=cmd_analyze_identify)

    p = opt.add_command(
        asub, "dynamics",
        "gradient ascent on D_f: loss and accuracy of D_f, the rest of the concept and D_r per "
        "epoch (Fig. 3), each class's feature distance to D_f (Fig. 11), t-SNE (Fig. 12)",
    )  # fmt: skip
    opt.data_options(p)
    g = p.add_argument_group("analysis")
    opt.forget(g, classes=True)
    opt.concept(g, required=True)
    g.add_argument("--epochs", type=int, default=10, help="epochs of ascent (passes over D_f)")
    g.add_argument("--lr", type=float, default=1e-4,
                   help="ascent step (slow enough to follow over 10 epochs)")  # fmt: skip
    g.add_argument("--tsne-methods", default="ft,ga", help="methods whose features the t-SNE adds")
    opt.run_options(p, "folder of the figures, JSON and CSVs", out_required=True)
    p.set_defaults(func=cmd_analyze_dynamics)

    p = opt.add_command(
        asub, "ablate",
        "a TARF ablation (paper Fig. 4b, 7) as a small resumable bench grid, with its table "
        "and figure: " + ", ".join(f"{k} ({v[0]})" for k, v in ablate.STUDIES.items()),
    )  # fmt: skip
    opt.data_options(p)
    g = p.add_argument_group("grid")
    g.add_argument("--study", required=True, choices=list(ablate.STUDIES), help="what to vary")
    opt.forget(g, classes=True)
    opt.concept(g)
    opt.tasks(g)
    opt.seeds(g)
    opt.set_values(g, "a TARF hyperparameter every variant shares, e.g. --set preset=paper "
                   "(repeatable; the study's own one is the variant's)")  # fmt: skip
    opt.jobs(g)
    opt.dry_run(g)
    opt.run_options(p, "folder of the run reports and the summary", with_seed=False,
                    out_required=True)  # fmt: skip
    p.set_defaults(func=cmd_analyze_ablate)

    p = opt.add_command(
        asub, "architectures",
        "the architecture ablation (Fig. 7, Table 12): bench folders of one grid run with "
        "different --recipe cpu:ARCH, side by side as a table and a figure of Gap",
    )  # fmt: skip
    p.add_argument("--results", nargs="+", required=True, metavar="DIR",
                   help="bench folders (one per architecture)")  # fmt: skip
    p.add_argument("--tasks",
                   help="comma-separated tasks (all: the four main tasks); left out: every "
                   "task the folders hold")  # fmt: skip
    opt.methods(p, default="ft,rl,ga,tarf")
    opt.seeds(p, default=None, help=opt.SEEDS_HELP + "; left out: every seed found")
    opt.out(p, "folder of architectures.{csv,md,png}", required=True)
    p.set_defaults(func=cmd_analyze_architectures)

    _add_audit_parser(sub)


def _add_audit_parser(sub: Any) -> None:
    p = opt.add_command(
        sub, "audit",
        "a stronger audit than the MIA: U-LiRA of the unlearned models against K retrained "
        "references, the NeurIPS 2023 challenge's epsilon score, a linear concept probe",
    )  # fmt: skip
    opt.data_options(p)
    g = p.add_argument_group("request")
    opt.forget(g)
    opt.target(g, concept_alias=True)
    opt.model_labels(g, required=False, left_out="give --task")
    g.add_argument("--task", choices=list(MAIN_TASKS),
                   help="instead of --model-labels: one of the four tasks from (--forget, "
                   "--concept), as in tarf bench")  # fmt: skip
    opt.prior(g)
    opt.method_options(p)
    g = opt.run_options(p, "write the audit (JSON) here", with_seed=False)
    opt.seeds(g, help="unlearned models: " + opt.SEEDS_HELP)
    g.add_argument("--references", type=int, default=8, metavar="K",
                   help="retrained references (seeds 0..K-1, cached; at least 3)")  # fmt: skip
    p.set_defaults(func=cmd_audit)


def cmd_analyze_architectures(args: argparse.Namespace) -> int:
    preflight(args, folders=("out",), cache=False)
    missing = [d for d in args.results if not Path(d).is_dir()]
    if missing:
        raise CLIError(f"--results: no such folder {', '.join(missing)} (run tarf bench into it)")
    seeds = bench.parse_seeds(args.seeds) if args.seeds else None
    folders = list(dict.fromkeys(Path(d).resolve() for d in args.results))
    reports = [r for d in folders for r in bench.collect_reports(d)]
    mixed = architectures.mixed_requests(reports)
    if mixed:
        raise CLIError(
            f"the --results folders hold runs of different requests ({'; '.join(mixed)}): "
            "give the folders of one grid, benched once per architecture"
        )
    dropped = architectures.unique_runs(reports)[1]
    if dropped:
        log(f"note: {dropped} runs repeat a run of the same architecture, task, method and "
            "seed in an earlier --results folder; the first folder's are kept")  # fmt: skip
    tasks = bench.parse_tasks(args.tasks) if args.tasks else None
    methods = bench.parse_methods(args.methods)
    rows = architectures.rows(reports, tasks, methods, seeds)
    if not rows:
        on = f" on {', '.join(tasks)}" if tasks else ""
        raise CLIError(
            f"no finished run of {', '.join(methods)}{on} in "
            f"{', '.join(args.results)}{f' for seeds {args.seeds}' if seeds else ''}"
        )
    architectures.write_summary(rows, args.out)
    print((Path(args.out) / "architectures.md").read_text())
    return 0


def cmd_analyze_ablate(args: argparse.Namespace) -> int:
    preflight(args, folders=() if args.dry_run else ("out",))
    # typed and checked here (a bad value fails before any training); those set
    shared = config_changes(get_method("tarf", overrides=parse_set(args.set)))
    grid = ablate.make_grid(
        args.study, args.dataset, args.forget, args.concept, bench.parse_tasks(args.tasks),
        bench.parse_seeds(args.seeds), args.recipe, args.data_root, args.device, shared,
    )  # fmt: skip
    recipe(args)  # an unknown recipe fails here, not in every job
    jobs = parallel_jobs(args)
    plan = bench.make_plan(grid, args.out, download=args.download)
    if args.dry_run:
        print(bench.format_plan(plan, args.out, jobs))
    if plan.other_config:  # a bench keeps them; an ablation would compare unlike variants
        name, changes = next(iter(plan.other_config.items()))
        raise CLIError(
            f"{len(plan.other_config)} runs in {args.out} were made with other TARF settings "
            f"({name}: {', '.join(f'{k}={v}' for k, v in changes.items())}), so its table "
            "would compare them with today's variants; give another --out"
        )
    if args.dry_run:
        return 0
    outcome = bench.run_plan(plan, args.out, bench.LocalBackend(jobs), log=log)
    # this grid's own runs: other runs in the folder (another study, task or seed) stay out
    own = [read_report(Path(args.out) / f"{run.name}.json") for run in grid.runs()]
    rows = ablate.write_summary([r for r in own if r], args.study, args.out, shared)
    print((Path(args.out) / f"ablation_{args.study}.md").read_text() if rows else "no results")
    for name in outcome.failed:
        log(f"failed: {name} (see {Path(args.out) / name}.error.txt)")
    return 1 if outcome.failed else 0


def cmd_analyze_dynamics(args: argparse.Namespace) -> int:
    preflight(args, folders=("out",))
    methods = names(args.tsne_methods)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise CLIError(f"unknown --tsne-methods {unknown}; registered: {', '.join(METHODS)}")
    if args.epochs < 1:
        raise CLIError("--epochs must be >= 1")
    if not (math.isfinite(args.lr) and args.lr > 0):
        raise CLIError(f"--lr {args.lr}: give a finite learning rate > 0")
    res = dynamics.run(
        load_data(args), args.forget, args.concept, recipe(args), args.seed, device(args),
        args.out, args.epochs, args.lr, methods, log,
    )  # fmt: skip
    print("\n".join(dynamics_lines(res, args.epochs)))
    log(f"figures, JSON and CSVs in {args.out}")
    return 0


def cmd_analyze_identify(args: argparse.Namespace) -> int:
    preflight(args, folders=("out",))
    seeds = list(bench.parse_seeds(args.seeds))
    if args.given < 1:
        raise CLIError("--given must be >= 1")
    # typed and checked here (a bad value fails before any training); those set
    params = config_changes(get_method("tarf", overrides=parse_set(args.set)))
    identification.check_params(params)
    ds = load_data(args)
    concepts = list(names(args.concepts)) if args.concepts else None
    results = identification.sweep(
        ds, recipe(args), seeds, device(args), args.out, args.given, concepts, params, log
    )
    print((Path(args.out) / "identification.md").read_text())
    log(f"{len(results)} runs; figure, CSV and table in {args.out}")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    """K references (cached) -> the method per seed -> U-LiRA, epsilon score, probe."""
    preflight(args, files=("out",))
    nonempty(args.forget, "--forget", "class names")
    nonempty(args.target, "--target")
    seeds = bench.parse_seeds(args.seeds)
    if args.references < 3:
        raise CLIError("--references must be >= 3 (each is judged by a fit on the other K - 1)")
    method = make_method(args)  # a bad name or value fails before training
    if args.prior is not None and not method.uses_prior:
        log(f"note: --prior is read by TARF only; {method.name} does not use it")
    ds = bench.load_dataset_once(args.dataset, args.data_root, args.hierarchy, args.download)
    req = _audit_request(args, ds)
    log(req.describe())
    result = audit.audit_request(
        ds, req, lambda: make_method(args), recipe(args), seeds,
        args.references, device(args), log=log,
    )  # fmt: skip
    print(audit.format_audit(result))
    if args.out:
        write_json(args.out, finite_or_none(result))  # standard JSON: no NaN / Infinity
        log(f"audit written to {args.out}")
    return 0


def _audit_request(args: argparse.Namespace, ds: Any) -> Any:
    """The request from --model-labels and --target as in tarf unlearn, or from --task
    and --concept as in tarf bench."""
    if bool(args.task) == bool(args.model_labels):
        raise CLIError("give exactly one of --model-labels and --task")
    if not args.task and not args.target:
        raise CLIError("the audit compares with retrained references: give --target (or --concept)")
    if args.task:
        req = bench.build_request(ds.hierarchy, args.forget, args.target, args.task)
        try:
            return req if args.prior is None else dataclasses.replace(req, prior_classes=args.prior)
        except ValueError:  # the task fixes the target: the prior is what must change
            raise CLIError(
                f"--prior {args.prior} does not fit --task {args.task}, whose target implies "
                "another count of hidden classes; leave --prior out (it follows from the "
                "task), or give 'auto' to have TARF estimate it"
            ) from None
    return UnlearningRequest.from_names(
        ds.hierarchy, args.forget, args.model_labels, args.target, args.prior
    )
