"""``tarf bench``: a grid of tasks x methods x seeds as independent, resumable jobs.

A grid is dozens of runs that share a handful of trained models. The plan trains each
shared model once (the original per label level and seed, the retrained reference per
task and seed; the model cache makes them shared) and runs one job per (task, row, seed)
as soon as the models it needs are there, so a worker never waits while another trains a
model some other run needs. A job is a pure function of a small config and writes its
own report atomically to ``DIR/{method}[-{variant}]_{task}_s{seed}.json``, so a killed
bench resumes where it stopped, and jobs may run in any order: in this process, in a
local process pool, or as Ray tasks on a cluster.

``Grid.audit = K`` adds ``tarf.audit``'s U-LiRA, epsilon score and concept probe to every
report: the plan also trains the task's references for seeds ``0..K-1`` and computes
their per-example statistics into the cache (``audit.reference_stats``), and each run
job audits its unlearned model while it has it, storing the result under ``"audit"``. A
report without it counts as not done.

One module per step: ``grid`` (what to run), ``gridfile`` (grids from a YAML file),
``plan`` (the models and what is done), ``jobs`` (the job functions), ``backends``
(where they run), ``execute`` (running a plan), ``results`` (the tables), ``estimate``
(the dry run). The user's guide is ``docs/bench.md``.
"""

from tarf.bench.backends import LocalBackend, RayBackend, default_jobs
from tarf.bench.estimate import EVAL_OVERHEAD_S, Estimate, estimate, format_plan, format_total
from tarf.bench.execute import LOG_FILE, Outcome, append_log, read_log, run_plan, run_plans
from tarf.bench.grid import (
    DEFAULT_FORGET_FRACTION,
    SCENARIOS,
    SUBSET_TASKS,
    TASKS,
    BenchError,
    Grid,
    ModelJob,
    Row,
    RunJob,
    build_request,
    check_grid,
    parse_methods,
    parse_seeds,
    parse_tasks,
    split_overrides,
    task_label,
)
from tarf.bench.gridfile import GridSpec, load_grid_file
from tarf.bench.jobs import (
    _DATASETS,
    load_dataset_once,
    register,
    run_job,
    train_model_job,
    train_model_without_waiting,
)
from tarf.bench.plan import Plan, PlannedModel, make_plan
from tarf.bench.results import collect_reports, read_report, report_done, write_results
from tarf.domains import MAIN_TASKS

__all__ = [
    "DEFAULT_FORGET_FRACTION",
    "EVAL_OVERHEAD_S",
    "LOG_FILE",
    "MAIN_TASKS",
    "SCENARIOS",
    "SUBSET_TASKS",
    "TASKS",
    "_DATASETS",
    "BenchError",
    "Estimate",
    "Grid",
    "GridSpec",
    "LocalBackend",
    "ModelJob",
    "Outcome",
    "Plan",
    "PlannedModel",
    "RayBackend",
    "Row",
    "RunJob",
    "append_log",
    "build_request",
    "check_grid",
    "collect_reports",
    "default_jobs",
    "estimate",
    "format_plan",
    "format_total",
    "load_dataset_once",
    "load_grid_file",
    "make_plan",
    "parse_methods",
    "parse_seeds",
    "parse_tasks",
    "read_log",
    "read_report",
    "register",
    "report_done",
    "run_job",
    "run_plan",
    "run_plans",
    "split_overrides",
    "task_label",
    "train_model_job",
    "train_model_without_waiting",
    "write_results",
]
