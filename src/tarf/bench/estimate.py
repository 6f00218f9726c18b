"""The dry run: the plan as text (models cached or to train, runs done or to do) and the
time left, estimated from what this folder, the reports in it or other benches on this
machine have measured."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tarf.bench.execute import read_log
from tarf.bench.grid import SCENARIOS, _fmt_changes
from tarf.bench.plan import Plan
from tarf.bench.results import collect_reports
from tarf.domains import RANDOM

# Seconds a run spends outside ``method.run`` (loading data and models, evaluating, the
# MIA's SVC), for the dry run until bench_log.jsonl has measured it (docs/bench.md).
EVAL_OVERHEAD_S: dict[tuple[str, str], float] = {
    ("digits", "tiny"): 1.0,
    ("cifar100", "cpu"): 100.0,
    ("cifar10", "cpu"): 100.0,
}


def _job_s(line: dict[str, Any]) -> float:
    """A logged job's time as it would run with its cores to itself: ``alone_s`` (CPU
    seconds over threads, unmoved by another bench on the same cores; a model's counts
    every session of a training resumed from its saved state), else a model's whole
    training's wall time (``train_s``), else the job's wall time (older logs)."""
    return line.get("alone_s") or line.get("train_s") or line["seconds"]


def _typical(vals: list[float]) -> float | None:
    """The median of the finite values: a job slowed by another bench sharing the cores
    (niced, or three to a core) moves it little, where it would drag a mean."""
    vals = [v for v in vals if v is not None and math.isfinite(v)]
    return statistics.median(vals) if vals else None


@dataclass
class Estimate:
    run_s: dict[str, float | None]  # method -> seconds per run
    run_source: dict[str, str]
    model_s: float | None
    model_source: str
    left_s: float | None
    unknown: list[str]


def estimate(plan: Plan, out_dir: str | Path, workers: int, cache: Any = None) -> Estimate:
    """Time left from what this folder has measured: per method the median wall time in
    bench_log.jsonl, else its reports' median RTE plus the evaluation overhead (measured in
    the log, else ``EVAL_OVERHEAD_S``), else the cache's log (other benches on this
    machine); per model the recorded training times, else the cache's log."""
    from tarf.cache import cache_root

    g = plan.grid

    def same(d: dict[str, Any], recipe: str = g.recipe) -> bool:
        """Same data and recipe; runs: audited or not alike."""
        audit_alike = d.get("kind") != "run" or bool(d.get("audit")) == bool(g.audit)
        return d.get("dataset") == g.dataset and d.get("recipe") == recipe and audit_alike

    log = [x for x in read_log(out_dir) if same(x) and x.get("status") == "ok"]
    # where append_log writes it (the cache root, whichever model cache the plan used)
    machine_all = [x for x in read_log(cache_root()) if x.get("status") == "ok"]
    machine_log = [x for x in machine_all if same(x)]
    reports = [r for r in collect_reports(out_dir) if same(r)]
    overhead = _typical([x["seconds"] - x["rte_s"] for x in log if x.get("rte_s") is not None])
    over_src = "measured"
    if overhead is None:
        overhead, over_src = EVAL_OVERHEAD_S.get((g.dataset, g.recipe)), "fixed"
    run_s: dict[str, float | None] = {}
    src: dict[str, str] = {}
    for m in g.methods:
        logged = _typical([_job_s(x) for x in log if x["kind"] == "run" and x.get("method") == m])
        rte = _typical([r["metrics"].get("RTE_s") for r in reports if r["method"] == m])
        if logged is not None:
            run_s[m], src[m] = logged, "bench_log"
        elif rte is not None and overhead is not None:
            run_s[m], src[m] = rte + overhead, f"RTE + {over_src} overhead {overhead:.0f}s"
        else:
            runs = (x for x in machine_log if x["kind"] == "run" and x.get("method") == m)
            elsewhere = [_job_s(x) for x in runs]
            run_s[m], src[m] = _typical(elsewhere), "cache log" if elsewhere else "unknown"
    trained, trained_elsewhere = (
        [_job_s(x) for x in lines if x["kind"] == "model" and not x.get("cached")]
        for lines in (log, machine_log)
    )
    recorded = [m for m in (_cached_train_s(pm.key, cache) for pm in plan.models if pm.cached) if m]
    from_reports = [
        b.get("train_s") for r in reports for b in (r.get("original"), r.get("reference")) if b
    ]
    model_s, model_src = None, "unknown"
    for vals, name in ((trained, "bench_log"), (recorded, "cache"), (from_reports, "reports"),
                       (trained_elsewhere, "cache log")):  # fmt: skip
        if (typical := _typical(vals)) is not None:
            model_s, model_src = typical, name
            break
    if ":" in g.recipe and (model_s is None or None in run_s.values()):
        # a swapped architecture not measured yet: the base recipe's times on this
        # machine, scaled by the two architectures' forward FLOPs
        base = g.recipe.partition(":")[0]
        base_log = [
            x for x in machine_all if x.get("dataset") == g.dataset and x.get("recipe") == base
        ]
        scaled = _scaled_from_base(plan, base, base_log)
        if scaled is not None:
            ratio, base_runs, costs, base_model = scaled
            label = f"{base} × {ratio:.1f} FLOPs"
            for m in g.methods:
                if run_s[m] is None and base_runs.get(m) is not None:
                    run_s[m], src[m] = base_runs[m], label
                    if costs[m] != ratio:
                        src[m] += f", its method time × {costs[m]:.1f} ({m}'s cost)"
            if model_s is None and base_model is not None:
                model_s, model_src = base_model, label
    todo_models = plan.models_to_train()
    unknown = sorted({r.method for r in plan.todo() if run_s[r.method] is None})
    if todo_models and model_s is None:
        unknown.insert(0, "models")
    model_times = [model_s or 0.0] * len(todo_models)
    run_times = [run_s[r.method] or 0.0 for r in plan.todo()]
    left = _time_left([(model_times, run_times)], workers)
    return Estimate(run_s, src, model_s, model_src, left, unknown)


def _time_left(
    work: list[tuple[list[float], list[float]]], workers: int, chain: float | None = None
) -> float:
    """How long the (model times, run times) of one or more grids take on ``workers``
    that share everything (runs start as their models are there): the total over the
    workers, or the longest chain (one model then one run) when that is longer.
    ``chain``: that chain when the caller knows it better (a grid's runs waiting on a
    model another grid trains, which its own model times leave out)."""
    total = sum(sum(models) + sum(runs) for models, runs in work)
    if chain is None:
        chain = max((max(m, default=0.0) + max(r, default=0.0) for m, r in work), default=0.0)
    return max(total / max(1, workers), chain)


def format_total(plans: list[Plan], ests: list[Estimate], workers: int) -> str:
    """The dry run's last line for a file of several grids, which run at once on the
    same workers: the time left for all of them, a model two grids need counted once."""
    seen: set[str] = set()
    work, chain = [], 0.0
    for plan, est in zip(plans, ests):
        needed = [m.key for m in plan.models_to_train()]
        models = [k for k in needed if k not in seen]  # a model two grids need: once
        seen.update(models)
        runs = [est.run_s[r.method] or 0.0 for r in plan.todo()]
        work.append(([est.model_s or 0.0] * len(models), runs))
        # its runs wait for every model they need, whichever grid trains it
        waited = (est.model_s or 0.0) if needed else 0.0
        chain = max(chain, waited + max(runs, default=0.0))
    if not any(models or runs for models, runs in work):
        return f"all {len(plans)} grids: nothing to do"
    unknown = sorted({u for est in ests for u in est.unknown})
    line = f"all {len(plans)} grids, sharing {workers} worker{'s' * (workers > 1)}: "
    line += f"~{fmt_seconds(_time_left(work, workers, chain))} left"
    return line + (f" (not counting {', '.join(unknown)}: unknown)" if unknown else "")


def _scaled_from_base(
    plan: Plan, base: str, log: list[dict[str, Any]]
) -> tuple[float, dict[str, float | None], dict[str, float], float | None] | None:
    """(FLOPs ratio, per-method run times scaled, per-method cost ratio, model time
    scaled) of ``base`` (the recipe without its ``:ARCH``) from ``log`` (this machine's
    finished jobs of ``base``), the FLOPs ratio being that of the two architectures'
    forward passes on the plan's images, a method's cost ratio that of its
    ``Method.relative_cost`` on each (the FLOPs ratio but for a method whose work grows
    otherwise, such as IU): a run's method time scales by its cost ratio, the rest of the
    job (evaluation) by the FLOPs ratio. None when the log has nothing of ``base``. A run
    is timed by ``base``'s runs audited or not alike; for a grid without audit whose
    method ``base`` has run only audited, by their method time (``rte_s``) plus the
    evaluation overhead of ``base``'s unaudited runs, else ``EVAL_OVERHEAD_S``."""
    from tarf.methods import get_method
    from tarf.models import network_size
    from tarf.recipes import get_recipe

    if not log or not plan.input_shape:
        return None
    g = plan.grid
    base_arch, arch = get_recipe(base).arch, get_recipe(g.recipe).arch
    sizes = [network_size(a, plan.input_shape) for a in (base_arch, arch)]  # (FLOPs, params)
    ratio = sizes[1][0] / sizes[0][0]
    runs_logged = [x for x in log if x["kind"] == "run"]
    alike = [x for x in runs_logged if bool(x.get("audit")) == bool(g.audit)]
    overhead = _typical([x["seconds"] - x["rte_s"] for x in alike if x.get("rte_s") is not None])
    if overhead is None:
        overhead = EVAL_OVERHEAD_S.get((g.dataset, base))
    runs: dict[str, float | None] = {}
    costs: dict[str, float] = {}
    for m in g.methods:
        method = get_method(m, None, dict(g.overrides.get(m, {})))
        cost = [method.relative_cost(n, f) for f, n in sizes]
        costs[m] = cost[1] / cost[0]
        job = _typical([_job_s(x) for x in alike if x.get("method") == m])
        rte = _typical([x.get("rte_s") for x in runs_logged if x.get("method") == m])
        if job is None and not g.audit and overhead is not None and rte is not None:
            job = rte + overhead
        if job is None:
            runs[m] = None
            continue
        own = job if rte is None else min(rte, job)  # the method's time; the rest evaluates
        runs[m] = (job - own) * ratio + own * costs[m]
    model = _typical([_job_s(x) for x in log if x["kind"] == "model" and not x.get("cached")])
    return ratio, runs, costs, None if model is None else model * ratio


def expected_model_s(dataset: str, recipe: str) -> float | None:
    """Seconds a model of ``dataset`` and ``recipe`` takes to train on this machine: the
    median of the trainings the benches here logged (the cache's ``bench_log.jsonl``); None
    when none was logged (the line before a training then shows no time)."""
    from tarf.cache import cache_root

    times = [
        _job_s(x)
        for x in read_log(cache_root())
        if x.get("kind") == "model" and x.get("status") == "ok" and not x.get("cached")
        and x.get("dataset") == dataset and x.get("recipe") == recipe
    ]  # fmt: skip
    return _typical(times)


def _cached_train_s(key: str, cache: Any) -> float | None:
    """The training time recorded in a cache entry (read only: a dry run changes nothing)."""
    from tarf.cache import ModelCache

    try:
        entry = torch.load(
            (cache or ModelCache()).path(key), map_location="cpu", weights_only=False
        )
        return float(_job_s(entry["meta"]))  # the meta has a log line's alone_s, train_s
    except Exception:  # noqa: BLE001 - unreadable: no estimate from it
        return None


def format_plan(
    plan: Plan, out_dir: str | Path, workers: int, cache: Any = None, est: Estimate | None = None
) -> str:
    """The dry run: models (cached or not), every job (done or to do), the time left
    (``est``: :func:`estimate`'s, when the caller has it already)."""
    from tarf.cache import ModelCache

    g, cache = plan.grid, cache or ModelCache()
    est = est or estimate(plan, out_dir, workers, cache)
    todo = plan.todo()
    train = {m.key for m in plan.models_to_train()}
    rows = g.all_rows()
    lines = [
        f"grid: {g.dataset}, forget {g.forget or '-'}, concept {g.concept or '-'}, recipe {g.recipe}, "
        f"seeds {','.join(map(str, g.seeds))}; tasks {', '.join(g.tasks)}; methods {', '.join(g.methods)}"
        + (f" (rows {', '.join(r.label for r in rows)})" if any(r.variant for r in rows) else "")
        + (
            f"; sub-set tasks forget {g.fraction(SCENARIOS[0]):g} of each class"
            if set(SCENARIOS).intersection(g.tasks)
            else ""
        )
        + (
            f"; random forgets {g.fraction(RANDOM):g} of the training set"
            if RANDOM in g.tasks
            else ""
        )
        + (f" (draw seed {g.forget_seed})" if g.forget_seed else "")
        + (
            f"; audit against {g.audit} references per task (seeds 0-{g.audit - 1})"
            if g.audit
            else ""
        ),
        f"models ({len(plan.models)}: {sum(m.cached for m in plan.models)} cached, {len(train)} to train):",
    ]
    width = max([len(m.job.name) for m in plan.models] + [len(r.name) for r in plan.runs] + [4])
    for m in plan.models:
        state = (
            "cached" if m.cached else "to train" if m.key in train else "not cached (not needed)"
        )
        if state == "to train" and cache.training_state_path(m.key).exists():
            state += ", resumes its saved training state"
        if m.job.audit and not m.stats_cached:
            state += ", audit statistics to compute"
        lines.append(f"  {m.job.name:<{width}}  {state:<10}  {m.key}")
    lines.append(f"jobs ({len(plan.runs)}: {len(plan.done)} done, {len(todo)} to do):")
    for r in plan.runs:
        if r.name in plan.done:
            other = plan.other_config.get(r.name)
            state = "done" + (
                f" (other hyperparameters: {_fmt_changes(other)})" if other is not None else ""
            )
        else:
            s = est.run_s[r.method]
            state = "to do" + (f"  ~{fmt_seconds(s)}" if s is not None else "")
        lines.append(f"  {r.name:<{width}}  {state}")
    per = ", ".join(
        f"{m} {fmt_seconds(est.run_s[m])}"
        + (" (other benches)" if est.run_source[m] == "cache log" else "")
        + (f" ({est.run_source[m]})" if "FLOPs" in est.run_source[m] else "")
        for m in g.methods
    )
    lines.append(f"time per run: {per}; per model: "
                 + (f"{fmt_seconds(est.model_s)} ({est.model_source})" if est.model_s is not None else "unknown"))  # fmt: skip
    left = f"~{fmt_seconds(est.left_s)} with {workers} worker{'s' * (workers > 1)}"
    if not est.left_s:
        left = "unknown (nothing measured yet in this folder or the cache on this machine)"
    if est.unknown:
        left += f" (not counting {', '.join(est.unknown)}: unknown)"
    lines.append(f"time left: {left}" if todo else "time left: nothing to do")
    return "\n".join(lines)


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return "unknown"
    if s < 120:
        return f"{s:.0f}s"
    return f"{s / 60:.0f}min" if s < 7200 else f"{s / 3600:.1f}h"
