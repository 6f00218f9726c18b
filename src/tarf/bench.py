"""``tarf bench``: a grid of tasks x methods x seeds as independent, resumable jobs.

Why jobs: a grid is dozens of runs that share a handful of trained models. The plan
trains each shared model once (the original per label level and seed, the retrained
reference per task and seed; the model cache makes them shared) and runs one job per
(task, method, seed) as soon as the models it needs are there, so a worker never waits
while another trains a model some other run needs. A job is a pure function of a small config and
writes its own report atomically to ``DIR/{method}_{task}_s{seed}.json``, so a killed
bench resumes where it stopped, and jobs may run in any order: in this process, in a
local process pool, or as Ray tasks on a cluster.

``--audit K`` (``Grid.audit``) adds ``tarf.audit``'s U-LiRA, epsilon score and concept
probe to every report: the plan also trains the task's references for seeds ``0..K-1`` and
computes their per-example statistics into the cache (``audit.reference_stats``), and
each run job audits its unlearned model while it has it (the bench saves no unlearned
model), storing the result under ``"audit"``. A report without it counts as not done.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import tempfile
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tarf.data.core import ImageDataset
from tarf.domains import ALL_MATCHED, DATA_MISMATCH, MAIN_TASKS, MODEL_MISMATCH, TARGET_MISMATCH
from tarf.io import write_json, write_text
from tarf.request import UnlearningRequest
from tarf.runner import model_key

# task -> (model labels, the target: the forget classes, the concept, or the forgotten
# sub-set itself; whether D_f is a seeded part of each forget class, the sub-set level)
TASKS: dict[str, tuple[str, str, bool]] = {
    ALL_MATCHED: ("class", "forget", False),
    TARGET_MISMATCH: ("class", "concept", False),
    MODEL_MISMATCH: ("superclass", "forget", False),
    DATA_MISMATCH: ("superclass", "concept", False),
    # The extra scenarios of the paper's Table 5 that the sub-set layer makes real (No. 5
    # and 16 need a model trained on sub-set labels, which no dataset here has).
    "scenario-6": ("superclass", "subset", True),
    "scenario-7": ("superclass", "concept", True),
    "scenario-8": ("class", "concept", True),
    "scenario-9": ("superclass", "forget", True),
}
SCENARIOS = tuple(t for t in TASKS if t not in MAIN_TASKS)
SUBSET_TASKS = frozenset(t for t, (_, _, subset) in TASKS.items() if subset)
DEFAULT_FORGET_FRACTION = 0.5  # of each --forget class, in the sub-set scenarios
LOG_FILE = "bench_log.jsonl"
# Seconds a run spends outside ``method.run`` (loading data and models, evaluating, the
# MIA's SVC), used by --dry-run until bench_log.jsonl has measured it. digits/tiny measured
# here (loaded 2-core machine). cpu-recipe CIFAR from parts measured at 1 thread on
# CIFAR-shaped random tensors: one model's evaluation is ~60k images at ~950 images/s
# (cpunet, 16 px) + ~10 s of SVC; the original's and reference's metrics are cached per
# task and seed (runner.evaluate_cached), so a grid averages a little over one model's.
EVAL_OVERHEAD_S: dict[tuple[str, str], float] = {
    ("digits", "tiny"): 1.0,
    ("cifar100", "cpu"): 100.0,
    ("cifar10", "cpu"): 100.0,
}


class BenchError(ValueError):
    """A bad grid (names, seeds, hyperparameters): one line for the user."""


# -- the grid --------------------------------------------------------------------------
@dataclass(frozen=True)
class RunJob:
    """One (task, method, seed) run: all it needs, so that it can run anywhere."""

    dataset: str
    data_root: str | None
    forget: str
    concept: str | None
    task: str
    method: str
    overrides: dict[str, Any]
    seed: int
    recipe: str
    device: str = "auto"
    hierarchy: str | None = None
    variant: str = ""  # an ablation's label for ``overrides`` (part of the file name)
    audit: int = 0  # number of references of tarf.audit (0: no audit)
    forget_fraction: float = DEFAULT_FORGET_FRACTION  # sub-set tasks only

    @property
    def name(self) -> str:
        method = f"{self.method}-{self.variant}" if self.variant else self.method
        return f"{method}_{task_label(self.task, self.forget_fraction)}_s{self.seed}"


@dataclass(frozen=True)
class ModelJob:
    """One model to train into the cache: the original (``role="original"``) or the
    retrained reference of ``task``."""

    dataset: str
    data_root: str | None
    forget: str
    concept: str | None
    task: str
    role: str
    seed: int
    recipe: str
    device: str = "auto"
    hierarchy: str | None = None
    audit: bool = False  # also compute the reference's audit statistics (tarf.audit)
    forget_fraction: float = DEFAULT_FORGET_FRACTION  # sub-set tasks only

    @property
    def name(self) -> str:
        if self.role == "original":
            return f"original_{TASKS[self.task][0]}_s{self.seed}"
        return f"retrained_{task_label(self.task, self.forget_fraction)}_s{self.seed}"


def task_label(task: str, forget_fraction: float) -> str:
    """A task's part of file names: sub-set tasks carry their fraction (``_f0.5``), so
    grids with different fractions never take each other's results."""
    return f"{task}_f{forget_fraction:g}" if task in SUBSET_TASKS else task


@dataclass
class Grid:
    """What the user asked for: one (forget, concept) pair, tasks x methods x seeds."""

    dataset: str
    forget: str
    concept: str | None
    tasks: tuple[str, ...]
    methods: tuple[str, ...]
    seeds: tuple[int, ...]
    recipe: str = "cpu"
    data_root: str | None = None
    hierarchy: str | None = None
    device: str = "auto"
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # per method
    # ablations: label -> hyperparameters added to every method's (one run per label)
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    audit: int = 0  # references of tarf.audit per task (seeds 0..audit-1); 0: no audit
    forget_fraction: float = DEFAULT_FORGET_FRACTION  # of each forget class, sub-set tasks

    def runs(self) -> list[RunJob]:
        variants = self.variants or {"": {}}
        return [
            RunJob(self.dataset, self.data_root, self.forget, self.concept, t, m,
                   {**self.overrides.get(m, {}), **ov}, s, self.recipe, self.device,
                   self.hierarchy, label, self.audit, self.forget_fraction)
            for s in self.seeds for t in self.tasks for m in self.methods
            for label, ov in variants.items()
        ]  # fmt: skip

    def model_jobs(self, task: str, seed: int) -> tuple[ModelJob, ModelJob]:
        args = (self.dataset, self.data_root, self.forget, self.concept, task)
        tail = (seed, self.recipe, self.device, self.hierarchy)
        frac = self.forget_fraction
        return (
            ModelJob(*args, "original", *tail, forget_fraction=frac),
            ModelJob(*args, "retrained", *tail, audit=bool(self.audit), forget_fraction=frac),
        )

    def audit_jobs(self, task: str) -> list[ModelJob]:
        """The references of ``task`` that ``tarf.audit`` compares with (seeds 0..audit-1)."""
        args = (self.dataset, self.data_root, self.forget, self.concept, task, "retrained")
        return [ModelJob(*args, s, self.recipe, self.device, self.hierarchy, audit=True,
                         forget_fraction=self.forget_fraction)
                for s in range(self.audit)]  # fmt: skip

    def request(self, hierarchy: Any, task: str) -> UnlearningRequest:
        return build_request(hierarchy, self.forget, self.concept, task, self.forget_fraction)


def parse_tasks(text: str) -> tuple[str, ...]:
    """Task names; ``all`` = the four main tasks, ``scenarios`` = the runnable extra
    scenarios of the paper's Table 5 (sub-set level)."""
    groups = {"all": MAIN_TASKS, "scenarios": SCENARIOS}
    names = [t for n in _split(text) for t in groups.get(n, (n,))]
    bad = [n for n in names if n not in TASKS]
    if bad or not names:
        hint = ""
        if any(n in ("scenario-5", "scenario-16") for n in bad):
            hint = (" (scenarios No. 5 and 16 need a model trained on sub-set labels; "
                    "no dataset here has them)")  # fmt: skip
        raise BenchError(
            f"unknown task {', '.join(bad) or '(none)'}{hint}; valid: all, scenarios, "
            f"{', '.join(TASKS)}"
        )
    return tuple(dict.fromkeys(names))


def parse_methods(text: str) -> tuple[str, ...]:
    from tarf.methods import METHODS
    from tarf.report import TABLE1_METHODS

    names = _split(text)
    if names == ["all"]:
        order = {m: i for i, m in enumerate(TABLE1_METHODS)}
        return tuple(sorted(METHODS, key=lambda m: (order.get(m, 99), m)))
    bad = [n for n in names if n not in METHODS]
    if bad or not names:
        raise BenchError(
            f"unknown method {', '.join(bad) or '(none)'}; valid: all, {', '.join(sorted(METHODS))}"
        )
    return tuple(dict.fromkeys(names))


def parse_seeds(text: str) -> tuple[int, ...]:
    """``3`` -> seeds 0, 1, 2 (a count); ``0,2`` or ``5,`` -> exactly those seeds."""
    try:
        if "," not in text:
            n = int(text)
            if n < 1:
                raise ValueError
            return tuple(range(n))
        return tuple(dict.fromkeys(int(s) for s in _split(text)))
    except ValueError:
        raise BenchError(
            f"--seeds expects a count (3 = seeds 0,1,2) or a comma list (0,2; one seed: 5,), got {text!r}"
        ) from None


def split_overrides(methods: Iterable[str], values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``--set``/``--config`` values per method: ``name=v`` goes to every selected method
    that has the hyperparameter ``name`` (one grid mixes methods with different ones),
    ``method.name=v`` to that method only. A name no selected method has is an error."""
    from tarf.methods import METHODS

    methods = list(methods)
    fields = {m: {f.name for f in dataclasses.fields(METHODS[m].Config)} for m in methods}
    per: dict[str, dict[str, Any]] = {m: {} for m in methods}
    for key, value in values.items():
        scope, _, name = key.rpartition(".")
        targets = [scope] if scope else methods
        if scope and scope not in per:
            raise BenchError(
                f"--set {key}: method {scope!r} is not in --methods ({', '.join(methods)})"
            )
        hits = [m for m in targets if name.replace("-", "_") in fields[m]]
        if not hits:
            valid = sorted({f for m in targets for f in fields[m]})
            raise BenchError(
                f"--set {key}: no selected method has a hyperparameter {name!r}; valid: {', '.join(valid)}"
            )
        for m in hits:
            per[m][name] = value
    for m, ov in per.items():  # type errors now, not in the middle of a grid
        _method(m, ov)
    return {m: ov for m, ov in per.items() if ov}


def build_request(
    hierarchy: Any,
    forget: str,
    concept: str | None,
    task: str,
    forget_fraction: float = DEFAULT_FORGET_FRACTION,
) -> UnlearningRequest:
    """The request of one of the bench's tasks, checked to be that task."""
    labels, which, subset = TASKS[task]
    if which == "concept" and not concept:
        raise BenchError(f"task {task} needs --concept, the superclass of the --forget classes")
    target = {"forget": forget, "concept": concept, "subset": None}[which]
    req = UnlearningRequest.from_names(
        hierarchy, forget, labels, target, forget_fraction=forget_fraction if subset else None
    )
    if req.task.name != task:
        raise BenchError(
            f"task {task}: forget {forget} with a {labels}-level model and target {target} is "
            f"a {req.task.name} request, not {task}; --concept must be the superclass of the "
            "--forget classes (`tarf classes --dataset NAME` lists them)"
        )
    return req


def check_grid(grid: Grid, hierarchy: Any) -> None:
    """Fail fast, naming the fix: the forget names are classes, the concept is the
    superclass holding them, and every task's request classifies as that task."""
    h = hierarchy
    try:
        level, ids = h.resolve_many(_split(grid.forget))
    except ValueError as e:
        raise BenchError(f"--forget: {e}") from None
    if level.label != "class":
        raise BenchError(
            "--forget must name classes: the bench's tasks report the forget data by class "
            "(the scenarios take a part of each class, --forget-fraction)"
        )
    forget = h.class_ids(level, ids)
    supers = sorted({h.superclass_names[h.superclass_of[c]] for c in forget})
    if grid.audit and grid.audit < 3:
        raise BenchError("--audit needs at least 3 references (leave-one-out fits on K - 1)")
    if any(TASKS[t][1] == "concept" for t in grid.tasks):
        if len(supers) > 1:
            raise BenchError(
                f"the --forget classes lie in several superclasses ({', '.join(supers)}); "
                "the concept tasks need classes of one superclass"
            )
        fix = f"--concept must be the superclass containing the --forget classes: --concept {supers[0]}"
        if not grid.concept:
            raise BenchError(
                f"tasks {', '.join(t for t in grid.tasks if TASKS[t][1] == 'concept')} need a concept; {fix}"
            )
        try:
            clevel, cids = h.resolve_many(_split(grid.concept))
        except ValueError as e:
            raise BenchError(f"--concept: {str(e).rstrip('.')}. {fix}") from None
        if clevel.label != "superclass" or not forget <= h.class_ids(clevel, cids):
            raise BenchError(f"--concept {grid.concept} does not fit --forget {grid.forget}; {fix}")
    for task in grid.tasks:
        try:
            grid.request(h, task)
        except BenchError:
            raise
        except ValueError as e:
            raise BenchError(f"task {task}: {e}") from None


# -- the plan --------------------------------------------------------------------------
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
    from tarf.recipes import get_recipe
    from tarf.runner import prepare_dataset
    from tarf.training import ModelCache

    cache = cache or ModelCache()
    ds = load_dataset_once(grid.dataset, grid.data_root, grid.hierarchy, download)
    check_grid(grid, ds.hierarchy)
    recipe = get_recipe(grid.recipe, grid.dataset)
    pds = prepare_dataset(ds, recipe)
    everything = torch.arange(len(pds.y_train))
    models: dict[str, PlannedModel] = {}

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
            users = [r.name for r in grid.runs() if r.task == task and r.seed == seed]
            for job, idx in zip(grid.model_jobs(task, seed), (everything, remaining)):
                add(job, req, idx, users)
    for task in grid.tasks:  # the audit's references: every run of the task needs them all
        req = grid.request(ds.hierarchy, task)
        remaining = req.partitions(pds.y_train, pds.y_test).remaining
        users = [r.name for r in grid.runs() if r.task == task]
        for job in grid.audit_jobs(task):
            add(job, req, remaining, users)
    out = Path(out_dir)
    done, other = {}, {}
    for run in grid.runs():
        rep = read_report(out / f"{run.name}.json")
        if not report_done(rep, run):
            continue
        done[run.name] = rep
        want = json.loads(json.dumps(_config_changes(run.method, run.overrides)))
        if (rep.get("config_changes") or {}) != want:
            other[run.name] = rep.get("config_changes") or {}
    shape = tuple(pds.x_train.shape[1:])
    return Plan(grid, list(models.values()), grid.runs(), done, other, shape)


# -- the jobs (pure functions of their config; run in any process) ---------------------
_DATASETS: dict[tuple[str, str | None, str | None], ImageDataset] = {}


def load_dataset_once(
    name: str, data_root: str | None = None, hierarchy: str | None = None, download: bool = False
) -> ImageDataset:
    """``load_dataset`` memoised per process: a worker reads its data once for all its jobs."""
    key = (name, data_root, hierarchy)
    if key not in _DATASETS:
        from tarf.data import load_dataset
        from tarf.hierarchy import LabelHierarchy

        ds = load_dataset(name, data_root, download=download)
        if hierarchy:
            user = LabelHierarchy.from_file(hierarchy, class_order=ds.hierarchy.class_names)
            ds = dataclasses.replace(ds, hierarchy=user)
        _DATASETS[key] = ds
    return _DATASETS[key]


def register(datasets: Iterable[ImageDataset] = (), recipes: Iterable[Any] = ()) -> None:
    """Make in-memory datasets and recipes loadable by name in this process (tests,
    notebooks); ``functools.partial(register, ...)`` as a backend's ``setup`` does it in
    every worker."""
    from tarf.recipes import RECIPES

    for ds in datasets:
        _DATASETS[(ds.name, None, None)] = ds
    for r in recipes:
        RECIPES[r.name] = r


def run_job(job: RunJob, out_dir: str) -> dict[str, Any]:
    """Run one (task, method, seed) as ``tarf unlearn`` does; write its report, or its
    traceback to ``{name}.error.txt``. Never raises for a failure of the run itself."""
    out = Path(out_dir)
    path, err = out / f"{job.name}.json", out / f"{job.name}.error.txt"
    if report_done(read_report(path), job):
        return _result(job, "skipped", 0.0)
    start = time.perf_counter()
    try:
        from tarf.recipes import get_recipe
        from tarf.runner import run_request
        from tarf.training import pick_device

        ds = load_dataset_once(job.dataset, job.data_root, job.hierarchy)
        req = build_request(ds.hierarchy, job.forget, job.concept, job.task, job.forget_fraction)
        recipe = get_recipe(job.recipe, job.dataset)
        device, log = pick_device(job.device), lambda m: _log(f"{job.name}: {m}")
        with tempfile.TemporaryDirectory() as tmp:
            # the audit needs the unlearned model: through a temporary checkpoint
            saved = str(Path(tmp) / "unlearned.pt") if job.audit else None
            report = run_request(ds, req, _method(job.method, job.overrides), recipe, job.seed,
                                 device, log=log, save_model=saved)  # fmt: skip
            if job.audit:
                from tarf.audit import audit_run
                from tarf.checkpoint import load_checkpoint

                model = load_checkpoint(saved, req, device)
                report["audit"] = audit_run(model, report["metrics"], ds, req, recipe,
                                            job.seed, device, job.audit, log=log)  # fmt: skip
        write_json(path, report)
        err.unlink(missing_ok=True)
        return _result(job, "ok", time.perf_counter() - start, rte_s=report["metrics"]["RTE_s"])
    except Exception:  # noqa: BLE001 - one failed run must not stop the grid
        write_text(err, traceback.format_exc())
        return _result(job, "failed", time.perf_counter() - start)


def train_model_job(job: ModelJob, out_dir: str, wait: bool = True) -> dict[str, Any]:
    """Train one model into the cache (or find it there) through ``runner.trained_model``.
    With ``wait=False``, a model another process is training gives status "busy" at once
    (``run_plan`` queues it again behind the work it can do now)."""
    from tarf.io import LockBusy

    start = time.perf_counter()
    err = Path(out_dir) / f"{job.name}.error.txt"
    try:
        from tarf.recipes import get_recipe
        from tarf.runner import prepare_dataset, trained_model
        from tarf.training import pick_device

        ds = load_dataset_once(job.dataset, job.data_root, job.hierarchy)
        req = build_request(ds.hierarchy, job.forget, job.concept, job.task, job.forget_fraction)
        recipe = get_recipe(job.recipe, job.dataset)
        pds = prepare_dataset(ds, recipe)
        if job.role == "original":
            idx = torch.arange(len(pds.y_train))
        else:
            idx = req.partitions(pds.y_train, pds.y_test).remaining
        device = pick_device(job.device)
        try:
            m = trained_model(pds, req, idx, recipe, job.seed, device, job.role, wait=wait)
        except LockBusy:
            return _result(job, "busy", time.perf_counter() - start)
        if job.audit:  # the reference's per-example statistics, into the cache
            from tarf.audit import reference_stats

            reference_stats(pds, req, recipe, job.seed, device)
        err.unlink(missing_ok=True)
        meta = m.meta
        return _result(job, "ok", time.perf_counter() - start, key=meta["key"],
                       train_s=meta["train_s"], cached=meta["cached"])  # fmt: skip
    except Exception:  # noqa: BLE001
        write_text(err, traceback.format_exc())
        return _result(job, "failed", time.perf_counter() - start)


def train_model_without_waiting(job: ModelJob, out_dir: str) -> dict[str, Any]:
    """``train_model_job(..., wait=False)``, as a named function the backends can pickle."""
    return train_model_job(job, out_dir, wait=False)


def _result(job: RunJob | ModelJob, status: str, seconds: float, **extra: Any) -> dict[str, Any]:
    kind = "run" if isinstance(job, RunJob) else "model"
    info = {"method": job.method} if isinstance(job, RunJob) else {"role": job.role}
    if job.audit:  # an audited run takes longer: the dry run keeps the two apart
        info["audit"] = job.audit
    return {
        "job": job.name, "kind": kind, "status": status, "seconds": round(seconds, 3),
        "dataset": job.dataset, "recipe": job.recipe, "task": job.task, "seed": job.seed,
        **info, **extra,
    }  # fmt: skip


# -- backends: map a job function over configs, yielding results as they finish -------
def _init_worker(threads: int, setup: Callable[[], None] | None) -> None:
    torch.set_num_threads(threads)
    if setup is not None:
        setup()


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_jobs() -> int:
    return min(2, _cores())


class LocalBackend:
    """``jobs == 1``: in this process (easy to debug); else a spawned process pool whose
    workers split the cores between them instead of fighting over all of them."""

    def __init__(self, jobs: int, setup: Callable[[], None] | None = None) -> None:
        self.jobs, self.setup, self.pool = jobs, setup, None
        self.queue: deque = deque()  # jobs == 1: run one by one, in order
        self.futures: dict = {}  # the pool's: future -> (job, out_dir)

    def __enter__(self) -> LocalBackend:
        import multiprocessing as mp

        if self.jobs > 1:
            threads = max(1, _cores() // self.jobs)
            self.pool = ProcessPoolExecutor(
                self.jobs, mp_context=mp.get_context("spawn"),
                initializer=_init_worker, initargs=(threads, self.setup),
            )  # fmt: skip
        elif self.setup is not None:
            self.setup()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=exc[0] is None, cancel_futures=True)

    def submit(self, fn: Callable, job: Any, out_dir: str) -> None:
        """Queue ``fn(job, out_dir)``; jobs start in the order submitted."""
        if self.pool is None:
            self.queue.append((fn, job, out_dir))
        else:
            self.futures[self.pool.submit(fn, job, out_dir)] = (job, out_dir)

    def results(self) -> Iterator[dict[str, Any]]:
        """Each job's result as it finishes, until none is left; jobs submitted while
        iterating are included."""
        while self.queue or self.futures:
            if self.pool is None:
                fn, job, out_dir = self.queue.popleft()
                yield fn(job, out_dir)
                continue
            finished, _ = wait(self.futures, return_when=FIRST_COMPLETED)
            for fut in finished:
                job, out_dir = self.futures.pop(fut)
                try:
                    yield fut.result()
                except Exception as e:  # noqa: BLE001 - a worker died (out of memory?)
                    yield _crashed(job, out_dir, e)


def _ray_call(fn: Callable, job: Any, out_dir: str, threads: int, setup: Callable | None) -> dict:
    torch.set_num_threads(threads)
    if setup is not None:
        setup()
    return fn(job, out_dir)


class RayBackend:
    """Each job as a Ray task with ``num_cpus``/``num_gpus`` (fractional GPUs share one);
    ``RAY_ADDRESS`` points at a cluster, else Ray starts on this machine. Results are
    written by the jobs themselves, so ``out_dir`` must be shared by all nodes."""

    def __init__(
        self, cpus_per_job: float = 1.0, gpus_per_job: float = 0.0, setup: Callable | None = None
    ) -> None:
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise BenchError("the ray backend needs Ray: install with pip install tarf[ray]")
        self.cpus, self.gpus, self.setup, self.started = cpus_per_job, gpus_per_job, setup, False
        self.refs: dict = {}  # object ref -> (job, out_dir)

    def __enter__(self) -> RayBackend:
        import ray

        if not ray.is_initialized():
            env = {k: v for k, v in os.environ.items() if k.startswith("TARF_")}
            ray.init(address=os.environ.get("RAY_ADDRESS"),
                     runtime_env={"env_vars": env} if env else None)  # fmt: skip
            self.started = True
        self.ray = ray
        self.task = ray.remote(num_cpus=self.cpus, num_gpus=self.gpus)(_ray_call)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.started:
            self.ray.shutdown()

    def submit(self, fn: Callable, job: Any, out_dir: str) -> None:
        threads = max(1, int(self.cpus))
        self.refs[self.task.remote(fn, job, out_dir, threads, self.setup)] = (job, out_dir)

    def results(self) -> Iterator[dict[str, Any]]:
        while self.refs:
            ready, _ = self.ray.wait(list(self.refs), num_returns=1)
            job, out_dir = self.refs.pop(ready[0])
            try:
                yield self.ray.get(ready[0])
            except Exception as e:  # noqa: BLE001 - the task's worker died
                yield _crashed(job, out_dir, e)


def _crashed(job: RunJob | ModelJob, out_dir: str, e: BaseException) -> dict[str, Any]:
    write_text(Path(out_dir) / f"{job.name}.error.txt", f"the job's worker died: {e!r}\n")
    return _result(job, "failed", 0.0)


# -- running the plan ------------------------------------------------------------------
@dataclass
class Outcome:
    ok: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def run_plan(
    plan: Plan, out_dir: str | Path, backend: Any, log: Callable[[str], None] | None = None
) -> Outcome:
    """Train the missing models and run every run not done yet, each run as soon as the
    models it needs are there (models are submitted first: they unblock runs); each
    finished job appends its wall time to bench_log.jsonl. A failed model fails the runs
    that need it, and only those."""
    from tqdm.auto import tqdm

    log = log or _log
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    outcome = Outcome(skipped=[r.name for r in plan.runs if r.name in plan.done])
    for name, changes in plan.other_config.items():
        log(f"warning: {name}.json exists with other hyperparameters "
            f"({_fmt_changes(changes)}); kept, not rerun")  # fmt: skip
    models = plan.models_to_train() + plan.stats_to_compute()
    planned_keys = {m.job.name: m.key for m in models}
    models_by_name = {m.job.name: m.job for m in models}
    runs = {r.name: r for r in plan.todo()}
    needs: dict[str, set[str]] = {name: set() for name in runs}  # run -> models not there yet
    bad_models: list[str] = []
    for m in models:
        for user in m.users:
            if user in needs:
                needs[user].add(m.job.name)
    with backend, tqdm(total=len(models) + len(runs), desc="jobs", unit="job", disable=None,
                       dynamic_ncols=True) as bar:  # fmt: skip
        for m in models:  # another bench training one of them must not stall this one
            backend.submit(train_model_without_waiting, m.job, str(out))
        for name in [n for n, missing in needs.items() if not missing]:
            backend.submit(run_job, runs[name], str(out))
            del needs[name]
        for res in backend.results():
            if res["status"] == "busy":  # in training elsewhere: wait for it after the rest
                backend.submit(train_model_job, models_by_name[res["job"]], str(out))
                continue
            bar.update()
            if res["status"] != "skipped":
                append_log(out, res)
            if res["status"] == "failed":
                bar.write(f"FAILED {res['job']}: see {out / (res['job'] + '.error.txt')}",
                          file=sys.stderr)  # fmt: skip
            if res["kind"] == "run":
                {"ok": outcome.ok, "failed": outcome.failed, "skipped": outcome.skipped}[
                    res["status"]
                ].append(res["job"])
                continue
            model, failed = res["job"], res["status"] == "failed"
            if failed:
                bad_models.append(model)
            elif res["key"] != planned_keys[model]:
                log(f"warning: {model} is cached under another key than planned")
            for name in [n for n, missing in needs.items() if model in missing]:
                if failed:
                    write_text(out / f"{name}.error.txt",
                               f"not run: model {model} failed, see {model}.error.txt\n")  # fmt: skip
                    outcome.failed.append(name)
                    bar.update()
                    del needs[name]
                    continue
                needs[name].discard(model)
                if not needs[name]:
                    backend.submit(run_job, runs[name], str(out))
                    del needs[name]
    outcome.failed[:0] = sorted(bad_models)
    return outcome


def append_log(out: Path, res: dict[str, Any]) -> None:
    """One line per finished job, in the folder's log and in the cache's (the machine's
    measured job times, so the dry run of a new folder can estimate from other benches).
    Only the parent writes, so a folder's lines never interleave; the cache's log is
    best effort (a read-only cache loses no result)."""
    text = json.dumps({**res, "date": time.strftime("%Y-%m-%dT%H:%M:%S")}) + "\n"
    with open(out / LOG_FILE, "a") as f:
        f.write(text)
    try:
        from tarf.training import cache_root

        cache_root().mkdir(parents=True, exist_ok=True)
        with open(cache_root() / LOG_FILE, "a") as f:
            f.write(text)
    except OSError:
        pass


# -- results ---------------------------------------------------------------------------
def read_report(path: Path) -> dict[str, Any] | None:
    """A run report if ``path`` exists and parses as one, else None (then it is redone)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if _is_report(data) else None


def report_done(report: dict[str, Any] | None, job: RunJob) -> bool:
    """A run is done when its report exists and, if the job audits, holds an audit
    against as many references (the unlearned model is gone: auditing means rerunning)."""
    if report is None:
        return False
    return not job.audit or (report.get("audit") or {}).get("references") == job.audit


def _is_report(d: Any) -> bool:
    return isinstance(d, dict) and all(k in d for k in ("task", "method", "seed", "metrics"))


def collect_reports(out_dir: str | Path) -> list[dict[str, Any]]:
    """Every parseable run report in the folder (bench's own and manual ``tarf unlearn
    --out`` runs alike; a JSON list of reports counts too)."""
    from tarf.report import TABLE1_METHODS

    reports = []
    for p in sorted(Path(out_dir).glob("*.json")):
        try:
            data = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        reports.extend(d for d in (data if isinstance(data, list) else [data]) if _is_report(d))
    tasks = {t: i for i, t in enumerate(MAIN_TASKS)}
    methods = {m: i for i, m in enumerate(TABLE1_METHODS)}
    reports.sort(key=lambda r: (tasks.get(r["task"], 99), r["task"], methods.get(r["method"], 99),
                                r["method"], r["seed"]))  # fmt: skip
    return reports


def write_results(out_dir: str | Path) -> list[dict[str, Any]]:
    """``results.csv`` (one row per run) and ``results.md`` (the paper's Table 1 layout)."""
    from tarf.report import audit_table, flat_row, gap_by_seed, table1, to_csv

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
    body = (table1(reports) if reports else "") + seeds + audit
    write_text(out / "results.md", head + body + "\n")
    return reports


# -- dry run ---------------------------------------------------------------------------
def read_log(out_dir: str | Path) -> list[dict[str, Any]]:
    lines = []
    try:
        text = (Path(out_dir) / LOG_FILE).read_text()
    except OSError:
        return []
    for line in text.splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            continue  # a line cut by a kill
    return lines


def _mean(vals: list[float]) -> float | None:
    vals = [v for v in vals if v is not None and math.isfinite(v)]
    return sum(vals) / len(vals) if vals else None


@dataclass
class Estimate:
    run_s: dict[str, float | None]  # method -> seconds per run
    run_source: dict[str, str]
    model_s: float | None
    model_source: str
    left_s: float | None
    unknown: list[str]


def estimate(plan: Plan, out_dir: str | Path, workers: int, cache: Any = None) -> Estimate:
    """Time left from what this folder has measured: per method the mean wall time in
    bench_log.jsonl, else its reports' mean RTE plus the evaluation overhead (measured in
    the log, else ``EVAL_OVERHEAD_S``), else the cache's log (other benches on this
    machine); per model the recorded training times, else the cache's log."""
    from tarf.training import cache_root

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
    overhead = _mean([x["seconds"] - x["rte_s"] for x in log if x.get("rte_s") is not None])
    over_src = "measured"
    if overhead is None:
        overhead, over_src = EVAL_OVERHEAD_S.get((g.dataset, g.recipe)), "fixed"
    run_s: dict[str, float | None] = {}
    src: dict[str, str] = {}
    for m in g.methods:
        logged = _mean([x["seconds"] for x in log if x["kind"] == "run" and x.get("method") == m])
        rte = _mean([r["metrics"].get("RTE_s") for r in reports if r["method"] == m])
        if logged is not None:
            run_s[m], src[m] = logged, "bench_log"
        elif rte is not None and overhead is not None:
            run_s[m], src[m] = rte + overhead, f"RTE + {over_src} overhead {overhead:.0f}s"
        else:
            runs = (x for x in machine_log if x["kind"] == "run" and x.get("method") == m)
            elsewhere = [x["seconds"] for x in runs]
            run_s[m], src[m] = _mean(elsewhere), "cache log" if elsewhere else "unknown"
    trained, trained_elsewhere = (
        [x["seconds"] for x in lines if x["kind"] == "model" and not x.get("cached")]
        for lines in (log, machine_log)
    )
    recorded = [m for m in (_cached_train_s(pm.key, cache) for pm in plan.models if pm.cached) if m]
    from_reports = [
        b.get("train_s") for r in reports for b in (r.get("original"), r.get("reference")) if b
    ]
    model_s, model_src = None, "unknown"
    for vals, name in ((trained, "bench_log"), (recorded, "cache"), (from_reports, "reports"),
                       (trained_elsewhere, "cache log")):  # fmt: skip
        if _mean(vals) is not None:
            model_s, model_src = _mean(vals), name
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
            ratio, base_runs, base_model = scaled
            label = f"{base} × {ratio:.1f} FLOPs"
            for m in g.methods:
                if run_s[m] is None and base_runs.get(m) is not None:
                    run_s[m], src[m] = base_runs[m] * ratio, label
            if model_s is None and base_model is not None:
                model_s, model_src = base_model * ratio, label
    todo_models = plan.models_to_train()
    unknown = sorted({r.method for r in plan.todo() if run_s[r.method] is None})
    if todo_models and model_s is None:
        unknown.insert(0, "models")
    model_times = [model_s or 0.0] * len(todo_models)
    run_times = [run_s[r.method] or 0.0 for r in plan.todo()]
    # the workers share everything (runs start as their models are there); the floor is
    # one model then one run, the longest chain
    left = max((sum(model_times) + sum(run_times)) / max(1, workers),
               max(model_times, default=0.0) + max(run_times, default=0.0))  # fmt: skip
    return Estimate(run_s, src, model_s, model_src, left, unknown)


def _scaled_from_base(
    plan: Plan, base: str, log: list[dict[str, Any]]
) -> tuple[float, dict[str, float | None], float | None] | None:
    """(cost ratio, per-method run times, model time) of ``base`` (the recipe without
    its ``:ARCH``) from ``log`` (this machine's finished jobs of ``base``), the ratio
    being the forward FLOPs of the two architectures on the plan's images; None when
    the log has nothing of ``base``. A run is timed by ``base``'s runs audited or not
    alike; for a grid without audit whose method ``base`` has run only audited (as the
    K = 8 benches leave it), by their method time (``rte_s``) plus the evaluation
    overhead of ``base``'s unaudited runs, else ``EVAL_OVERHEAD_S``."""
    from tarf.models import forward_flops
    from tarf.recipes import get_recipe

    if not log or not plan.input_shape:
        return None
    g = plan.grid
    base_arch, arch = get_recipe(base).arch, get_recipe(g.recipe).arch
    ratio = forward_flops(arch, plan.input_shape) / forward_flops(base_arch, plan.input_shape)
    runs_logged = [x for x in log if x["kind"] == "run"]
    alike = [x for x in runs_logged if bool(x.get("audit")) == bool(g.audit)]
    overhead = _mean([x["seconds"] - x["rte_s"] for x in alike if x.get("rte_s") is not None])
    if overhead is None:
        overhead = EVAL_OVERHEAD_S.get((g.dataset, base))
    runs: dict[str, float | None] = {}
    for m in g.methods:
        runs[m] = _mean([x["seconds"] for x in alike if x.get("method") == m])
        if runs[m] is None and not g.audit and overhead is not None:
            rte = _mean([x.get("rte_s") for x in runs_logged if x.get("method") == m])
            runs[m] = None if rte is None else rte + overhead
    model = _mean([x["seconds"] for x in log if x["kind"] == "model" and not x.get("cached")])
    return ratio, runs, model


def _cached_train_s(key: str, cache: Any) -> float | None:
    """The training time recorded in a cache entry (read only: a dry run changes nothing)."""
    from tarf.training import ModelCache

    try:
        entry = torch.load(
            (cache or ModelCache()).path(key), map_location="cpu", weights_only=False
        )
        return float(entry["meta"]["train_s"])
    except Exception:  # noqa: BLE001 - unreadable: no estimate from it
        return None


def format_plan(plan: Plan, out_dir: str | Path, workers: int, cache: Any = None) -> str:
    """The dry run: models (cached or not), every job (done or to do), the time left."""
    from tarf.training import ModelCache

    g, cache = plan.grid, cache or ModelCache()
    est = estimate(plan, out_dir, workers, cache)
    todo = plan.todo()
    train = {m.key for m in plan.models_to_train()}
    lines = [
        f"grid: {g.dataset}, forget {g.forget}, concept {g.concept or '-'}, recipe {g.recipe}, "
        f"seeds {','.join(map(str, g.seeds))}; tasks {', '.join(g.tasks)}; methods {', '.join(g.methods)}"
        + (
            f"; sub-set tasks forget {g.forget_fraction:g} of each class"
            if SUBSET_TASKS.intersection(g.tasks)
            else ""
        )
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
            state = "to do" + (f"  ~{_fmt_s(s)}" if s is not None else "")
        lines.append(f"  {r.name:<{width}}  {state}")
    per = ", ".join(
        f"{m} {_fmt_s(est.run_s[m])}"
        + (" (other benches)" if est.run_source[m] == "cache log" else "")
        + (f" ({est.run_source[m]})" if "FLOPs" in est.run_source[m] else "")
        for m in g.methods
    )
    lines.append(f"time per run: {per}; per model: "
                 + (f"{_fmt_s(est.model_s)} ({est.model_source})" if est.model_s is not None else "unknown"))  # fmt: skip
    left = f"~{_fmt_s(est.left_s)} with {workers} worker{'s' * (workers > 1)}"
    if not est.left_s:
        left = "unknown (nothing measured yet in this folder or the cache on this machine)"
    if est.unknown:
        left += f" (not counting {', '.join(est.unknown)}: unknown)"
    lines.append(f"time left: {left}" if todo else "time left: nothing to do")
    return "\n".join(lines)


# -- helpers ---------------------------------------------------------------------------
def _split(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


def _method(name: str, overrides: dict[str, Any]):
    from tarf.methods import get_method

    return get_method(name, None, dict(overrides))


def _config_changes(name: str, overrides: dict[str, Any]) -> dict[str, Any]:
    from tarf.methods.base import config_changes

    return config_changes(_method(name, overrides))


def _fmt_changes(changes: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in changes.items()) or "defaults"


def _fmt_s(s: float | None) -> str:
    if s is None:
        return "unknown"
    if s < 120:
        return f"{s:.0f}s"
    return f"{s / 60:.0f}min" if s < 7200 else f"{s / 3600:.1f}h"


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
