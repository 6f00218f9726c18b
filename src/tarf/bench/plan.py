"""The plan of a grid: the models its runs need, deduplicated by cache key (each original
and reference is trained once and shared by every run that needs it), which of them are
cached, and which runs already have their report in the output folder."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tarf.bench.grid import (
    BenchError,
    Grid,
    ModelJob,
    RunJob,
    _config_changes,
    _method,
    check_grid,
)
from tarf.bench.jobs import load_dataset_once
from tarf.bench.results import read_report, report_done
from tarf.cache import model_key
from tarf.methods.base import config_dict, config_diff
from tarf.request import UnlearningRequest


@dataclass
class PlannedModel:
    job: ModelJob
    key: str
    cached: bool
    users: list[str] = field(default_factory=list)  # run jobs that need it
    stats_cached: bool = True  # its audit statistics (only when job.audit)


@dataclass
class Plan:
    grid: Grid
    models: list[PlannedModel]
    runs: list[RunJob]
    done: dict[str, dict[str, Any]]  # job name -> its existing report
    # done runs whose report has other hyperparameters than asked: kept, flagged
    other_config: dict[str, dict[str, Any]] = field(default_factory=dict)
    input_shape: tuple[int, ...] = ()  # one prepared image (C, H, W), for cost scaling

    def todo(self) -> list[RunJob]:
        return [r for r in self.runs if r.name not in self.done]

    def models_to_train(self) -> list[PlannedModel]:
        todo = {r.name for r in self.todo()}
        return [m for m in self.models if not m.cached and todo.intersection(m.users)]

    def stats_to_compute(self) -> list[PlannedModel]:
        """Cached references whose audit statistics are not (trained ones get them too)."""
        todo = {r.name for r in self.todo()}
        return [m for m in self.models
                if m.cached and not m.stats_cached and todo.intersection(m.users)]  # fmt: skip


def make_plan(grid: Grid, out_dir: str | Path, cache: Any = None, download: bool = False) -> Plan:
    """Which models each run needs (deduplicated by cache key) and which runs are done."""
    from tarf.audit import stats_key, stats_path
    from tarf.cache import ModelCache, prepare_dataset
    from tarf.recipes import get_recipe

    cache = cache or ModelCache()
    ds = load_dataset_once(grid.dataset, grid.data_root, grid.hierarchy, download)
    check_grid(grid, ds.hierarchy)
    recipe = get_recipe(grid.recipe, grid.dataset)
    pds = prepare_dataset(ds, recipe)
    everything = torch.arange(len(pds.y_train))
    models: dict[str, PlannedModel] = {}
    runs = grid.runs()

    def add(job: ModelJob, req: UnlearningRequest, idx: torch.Tensor, users: list[str]) -> None:
        key = model_key(pds, req, idx, recipe, job.seed)
        if key not in models:
            models[key] = PlannedModel(job, key, cache.path(key).exists())
            if job.audit:
                parts = req.partitions(pds.y_train, pds.y_test)
                models[key].stats_cached = stats_path(stats_key(key, parts), cache).exists()
        models[key].users.extend(users)

    for seed in grid.seeds:
        for task in grid.tasks:
            req = grid.request(ds.hierarchy, task)
            remaining = req.partitions(pds.y_train, pds.y_test).remaining
            users = [r.name for r in runs if r.task == task and r.seed == seed]
            for job, idx in zip(grid.model_jobs(task, seed), (everything, remaining)):
                add(job, req, idx, users)
    for task in grid.tasks:  # the audit's references: every run of the task needs them all
        req = grid.request(ds.hierarchy, task)
        remaining = req.partitions(pds.y_train, pds.y_test).remaining
        users = [r.name for r in runs if r.task == task]
        for job in grid.audit_jobs(task):
            add(job, req, remaining, users)
    out = Path(out_dir)
    done, other = {}, {}
    requests = {task: grid.request(ds.hierarchy, task) for task in grid.tasks}
    for run in runs:
        rep = read_report(out / f"{run.name}.json")
        if not report_done(rep, run):
            continue
        differs = _other_request(rep, requests[run.task], ds.name, recipe.name)
        if differs:
            raise BenchError(
                f"{out / run.name}.json is a run of another request ({differs}), so this "
                "grid cannot count it done nor overwrite it; give the grid another out "
                "folder (or move the reports away)"
            )
        done[run.name] = rep
        other_settings = _other_settings(rep, run)
        if other_settings is not None:
            other[run.name] = other_settings
    shape = tuple(pds.x_train.shape[1:])
    return Plan(grid, list(models.values()), runs, done, other, shape)


def _other_request(rep: dict[str, Any], req: UnlearningRequest, dataset: str, recipe: str) -> str:
    """How a finished report's request differs from the run's (dataset, recipe, model
    labels, forget data, concept, the sub-set draw), or "": names compare as the classes
    they stand for; a field an older report lacks is not compared."""
    have = rep.get("request") or {}

    def classes(names: Any) -> frozenset[int] | None:
        if not names:
            return None
        try:
            return req.hierarchy.class_ids(*req.hierarchy.resolve_many(names))
        except ValueError:  # a name this hierarchy lacks: another request
            return frozenset({-1})

    # each field as (the report's, this run's), in the words a user gave
    fields = {
        "dataset": (rep.get("dataset"), dataset),
        "recipe": (rep.get("recipe"), recipe),  # as resolved: `auto` is the one it picks
        "model labels": (have.get("model_labels"), req.model_level.label),
        "forget": (have.get("forget"), req.forget),
        "target": (have.get("target"), req.target or ()),
        "forget fraction": (have.get("forget_fraction"), req.forget_fraction),
        "forget seed": (have.get("forget_seed", 0), req.subset_seed),
    }
    named = "request" in rep  # its forget and target, an empty target included, are known

    def differs(name: str, theirs: Any, mine: Any) -> bool:
        if name in ("forget", "target"):  # names compare as the classes they stand for
            return named and classes(theirs) != classes(mine)
        return theirs is not None and theirs != mine

    return "; ".join(f"{name} {_text(theirs)} -> {_text(mine)}"
                     for name, (theirs, mine) in fields.items() if differs(name, theirs, mine))  # fmt: skip


def _text(value: Any) -> str:
    """A report field as the option would be written (names comma-joined, none: -)."""
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value)) or "-"
    return "-" if value is None else str(value)


def _other_settings(rep: dict[str, Any], run: RunJob) -> dict[str, Any] | None:
    """How a finished report's hyperparameters differ from what the run would use now, or
    None. Compared in full (``config``), so a report made under other defaults (a method
    whose defaults changed since) is flagged too; the report's values are returned."""
    method = _method(run.method, run.overrides)
    want_all = json.loads(json.dumps(config_dict(method)))
    have_all = rep.get("config")
    if isinstance(have_all, dict) and have_all != want_all:
        diff = config_diff(have_all, want_all)
        out = {k: h for k, (h, w) in diff.items() if k in have_all and k in want_all}
        added = [k for k in diff if k not in have_all]  # fields newer than the report
        if added:
            out["fields the report predates"] = ",".join(added)
        return out or None
    want = json.loads(json.dumps(_config_changes(run.method, run.overrides)))
    if (rep.get("config_changes") or {}) != want:
        return rep.get("config_changes") or {}
    return None
