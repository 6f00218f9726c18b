"""``tarf bench``: the grids of a grid file, or one grid from the command line.

With a file, the grid options the user gave override that key in every grid of the file
(``tarf bench experiments/cifar100.yaml --seeds 0,`` for a quick look): they are passed
to ``tarf.bench.load_grid_file`` as keyword overrides, as the command line spells them
(``--set``/``--config`` merged into ``set``); options left out are not passed. Every grid
is planned (and so checked) before the first one runs.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from tarf import bench
from tarf.cli import options as opt
from tarf.cli.common import CLIError, hyperparameters, log, parallel_jobs, preflight
from tarf.comparison import table1
from tarf.domains import RANDOM
from tarf.io import unwritable
from tarf.recipes import get_recipe

# Options that are keys of a grid file too (their dest is the key); --set/--config: "set".
GRID_OPTIONS = ("dataset", "data_root", "hierarchy", "forget", "concept", "tasks",
                "forget_fraction", "forget_seed", "methods", "seeds", "recipe", "device", "audit",
                "out")  # fmt: skip


def add_parsers(sub: Any) -> None:
    p = opt.add_command(
        sub, "bench",
        "a grid of tasks x methods x seeds from one (forget, concept) pair, or every grid of "
        "a grid file: shared models trained once, one resumable job per run, "
        "results.md / results.csv",
    )  # fmt: skip
    p.add_argument("file", nargs="?", metavar="FILE",
                   help="a grid file (YAML, docs/bench.md) defining one or more grids; the "
                   "grid options below, when given, override its values")  # fmt: skip
    opt.data_options(p, required=False, track=True)
    g = p.add_argument_group("grid")
    opt.forget(g, required=False, track=True, classes=True,
               unless="a FILE gives it or every task is random")  # fmt: skip
    opt.concept(g, track=True)
    opt.tasks(g, track=True)
    opt.forget_fraction(g, track=True)
    opt.forget_seed(g, track=True)
    opt.methods(g, track=True)
    opt.seeds(g, track=True)
    opt.recipe(g, track=True)
    opt.device(g, track=True)
    opt.out(g, "folder of the run reports and results (required without a FILE)", track=True)
    opt.audit(g, track=True)
    g.add_argument("--only", metavar="TEXT[,TEXT]",
                   help="with a FILE: run only its grids whose out folder contains one of "
                   "these (e.g. --only digits-curved); every grid is still checked")  # fmt: skip
    opt.method_options(p, scoped=True)
    g = p.add_argument_group("execution")
    opt.jobs(g, ray=True)
    g.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="local: a process pool of --jobs; ray: a Ray cluster, scheduled by "
                   "--cpus-per-job / --gpus-per-job")  # fmt: skip
    g.add_argument("--cpus-per-job", type=float, default=1.0, help="ray: CPUs per job")
    g.add_argument("--gpus-per-job", type=float, default=None,
                   help="ray: GPUs per job, fractions share a GPU (0.25: four jobs per GPU); "
                   "default: 1 when the grid runs on --device cuda, or auto with a GPU "
                   "visible, else 0")  # fmt: skip
    opt.dry_run(g)
    p.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    """Plan every grid (checking all of them), then run them all on one backend (shared
    models trained once, each run as soon as its models are there) and write each grid's
    results as soon as its last run is in."""
    jobs = parallel_jobs(args)
    if args.only and not args.file:
        raise CLIError("--only picks grids of a grid FILE; give the file, or leave --only out")
    specs = _grids_from_file(args) if args.file else [(_grid_from_options(args), args.out, "")]
    backend = (  # Ray's GPU request is checked against the grids' devices here, before any work
        bench.RayBackend(
            args.cpus_per_job, args.gpus_per_job, devices=[g.device for g, *_ in specs]
        )
        if args.backend == "ray"
        else bench.LocalBackend(jobs)
    )
    preflight(args)  # the model cache; each grid's device and recipe: check_grid
    plans = []
    for grid, out, _ in specs:
        get_recipe(grid.recipe, grid.dataset)  # an unknown recipe fails here, not in every job
        problem = unwritable(out, folder=True)  # a dry run says what the run would refuse
        if problem:
            raise CLIError(f"--out {out}: {problem}; give another folder")
        try:
            plans.append(bench.make_plan(grid, out, download=args.download))
        except bench.BenchError as e:
            if not args.file:
                raise
            raise CLIError(
                f"{args.file}, the grid of out {out}: {_as_keys(str(e), args)}"
            ) from None
    descriptions = {description for *_, description in specs}
    shared = descriptions.pop() if len(specs) > 1 and len(descriptions) == 1 else ""
    headers = [  # a description every grid shares (the file's) is said once, first
        f"grid {i + 1} of {len(specs)}: {out}"
        + (f" ({description})" if description and not shared else "")
        for i, (_, out, description) in enumerate(specs)
    ]
    if shared:
        (print if args.dry_run else log)(f"{args.file}: {shared}")
    if args.dry_run:
        ests = [bench.estimate(plan, out, jobs) for plan, (_, out, _) in zip(plans, specs)]
        for i, (plan, (_, out, _)) in enumerate(zip(plans, specs)):
            if args.file:
                print(("\n" if i or shared else "") + headers[i])
            print(bench.format_plan(plan, out, jobs, est=ests[i]))
        if len(plans) > 1:
            print("\n" + bench.format_total(plans, ests, jobs))
        return 0
    if args.file:
        for header in headers:
            log(header)
    failed = 0

    def grid_done(i: int, outcome: bench.Outcome) -> None:
        """A grid's last run is in: its tables, while the other grids run on."""
        nonlocal failed
        out = specs[i][1]
        reports = bench.write_results(out)
        if args.file:
            log(f"{headers[i]}: done")
        if reports:
            print(table1(reports))
        log(f"{len(outcome.ok)} ran, {len(outcome.skipped)} already done, "
            f"{len(outcome.failed)} failed; {len(reports)} reports in {out}/results.md and "
            "results.csv")  # fmt: skip
        for name in outcome.failed:
            log(f"failed: {name} (see {Path(out) / name}.error.txt)")
        failed += len(outcome.failed)

    bench.run_plans([(plan, out) for plan, (_, out, _) in zip(plans, specs)], backend, log,
                    grid_done)  # fmt: skip
    return 1 if failed else 0


def _as_keys(message: str, args: argparse.Namespace) -> str:
    """A grid's error as its file spells it: ``--concept`` as the key ``concept``, unless
    the value came from the command line (or the flag is part of a quoted command)."""
    from_file = "|".join(
        k.replace("_", "-") for k in sorted(GRID_OPTIONS, key=len, reverse=True)
        if k not in opt.given(args)
    )  # fmt: skip
    flag = re.compile(rf"(?<![\w-])--({from_file})(?![\w-])")
    parts = message.split("`")  # odd parts are quoted commands: left as they are
    for i in range(0, len(parts), 2):
        parts[i] = flag.sub(lambda m: m.group(1).replace("-", "_"), parts[i])
    return "`".join(parts)


def _grids_from_file(args: argparse.Namespace) -> list[tuple[Any, Path, str]]:
    given = opt.given(args)
    overrides = {k: getattr(args, k) for k in GRID_OPTIONS if k in given}
    if {"set", "config"} & given:
        overrides["set"] = hyperparameters(args)
    specs = [(s.grid, s.out, s.description) for s in bench.load_grid_file(args.file, **overrides)]
    if not args.only:
        return specs
    wanted = [w for w in args.only.split(",") if w]
    picked = [spec for spec in specs if any(w in str(spec[1]) for w in wanted)]
    if not picked:
        outs = ", ".join(str(out) for _, out, _ in specs)
        raise CLIError(f"--only {args.only}: no grid of {args.file} has an out folder "
                       f"containing it; its grids' folders: {outs}")  # fmt: skip
    return picked


def _grid_from_options(args: argparse.Namespace) -> Any:
    # --forget: unless every task is random forgetting (which draws D_f from every class)
    only_random = all(t == RANDOM for t in bench.parse_tasks(args.tasks))
    needed = ("dataset", "out") if only_random else ("dataset", "forget", "out")
    missing = [f"--{k}" for k in needed if not getattr(args, k)]
    if missing:
        raise CLIError(f"give a grid FILE, or {', '.join(missing)} (tarf bench --help)")
    methods = bench.parse_methods(args.methods)
    tasks = bench.parse_tasks(args.tasks)
    for option, value in (("--forget-fraction", args.forget_fraction),
                          ("--forget-seed", args.forget_seed)):  # fmt: skip
        if value is not None and not bench.SUBSET_TASKS.intersection(tasks):
            raise CLIError(
                f"{option} applies to the sub-set tasks only (--tasks scenarios, scenario-6 "
                f"... scenario-9, or {RANDOM}); leave it out for the four main tasks"
            )
    return bench.Grid(
        args.dataset, args.forget or "", args.concept, tasks, methods,
        bench.parse_seeds(args.seeds), args.recipe, args.data_root, args.hierarchy, args.device,
        bench.split_overrides(methods, hyperparameters(args)), audit=args.audit,
        forget_fraction=args.forget_fraction, forget_seed=args.forget_seed or 0,
    )  # fmt: skip
