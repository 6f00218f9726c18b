"""The grid: what a bench runs (tasks x rows x seeds on one forget/concept pair), the jobs
it splits into, and the checks that reject a bad grid before any work.

A row is one method with its hyperparameters: the method alone (``ft``), or a variant
of it with a label (``tarf-head-only``, ``tarf-k0.01``). Runs of a row are named
``{method}[-{variant}]_{task}_s{seed}``, the file names of their reports.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tarf.domains import (
    ALL_MATCHED,
    DATA_MISMATCH,
    MAIN_TASKS,
    MODEL_MISMATCH,
    RANDOM,
    RANDOM_FRACTION,
    TARGET_MISMATCH,
)
from tarf.request import UnlearningRequest

# task -> (model labels, the target: the forget classes, the concept, or the forgotten
# sub-set itself; whether D_f is a seeded part of each forget class, the sub-set level;
# "random": random forgetting, a seeded part of the whole training set, no forget names)
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
    # Random forgetting (SalUn, Deep Unlearn): not in `all` nor in `scenarios`.
    RANDOM: ("class", "random", True),
}
SCENARIOS = tuple(t for t in TASKS if t.startswith("scenario-"))
SUBSET_TASKS = frozenset(t for t, (_, _, subset) in TASKS.items() if subset)  # with a fraction
DEFAULT_FORGET_FRACTION = 0.5  # of each --forget class, in the sub-set scenarios


class BenchError(ValueError):
    """A bad grid (names, seeds, hyperparameters): one line for the user."""


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
    variant: str = ""  # the row's label for ``overrides`` (part of the file name)
    audit: int = 0  # number of references of tarf.audit (0: no audit)
    forget_fraction: float = DEFAULT_FORGET_FRACTION  # sub-set tasks and random only
    forget_seed: int = 0  # the seed of their draw

    @property
    def name(self) -> str:
        method = f"{self.method}-{self.variant}" if self.variant else self.method
        label = task_label(self.task, self.forget_fraction, self.forget_seed)
        return f"{method}_{label}_s{self.seed}"


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
    forget_fraction: float = DEFAULT_FORGET_FRACTION  # sub-set tasks and random only
    forget_seed: int = 0  # the seed of their draw

    @property
    def name(self) -> str:
        if self.role == "original":
            return f"original_{TASKS[self.task][0]}_s{self.seed}"
        label = task_label(self.task, self.forget_fraction, self.forget_seed)
        return f"retrained_{label}_s{self.seed}"


def task_label(task: str, forget_fraction: float, forget_seed: int = 0) -> str:
    """A task's part of file names: sub-set tasks and random forgetting carry their
    fraction (``_f0.5``) and a draw seed other than 0 (``_d1``), so grids with different
    draws never take each other's results."""
    if task not in SUBSET_TASKS:
        return task
    return f"{task}_f{forget_fraction:g}" + (f"_d{forget_seed}" if forget_seed else "")


def default_fraction(task: str) -> float:
    """The fraction a task forgets when the grid gives none: random forgetting 0.1 of the
    training set, the sub-set scenarios 0.5 of each forget class."""
    return RANDOM_FRACTION if task == RANDOM else DEFAULT_FORGET_FRACTION


@dataclass(frozen=True)
class Row:
    """One row of a grid: a method, the label of this variant of it ("" for the method
    as configured) and the hyperparameters it sets."""

    method: str
    variant: str = ""
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.method}-{self.variant}" if self.variant else self.method


@dataclass
class Grid:
    """What the user asked for: one (forget, concept) pair, tasks x rows x seeds.

    The rows are ``rows`` when given (``(method, variant, overrides)`` triples or
    :class:`Row`; ``methods`` is then filled in from them), else every method of
    ``methods`` with its ``overrides``, once per entry of ``variants`` (label ->
    hyperparameters added to every method's; none: one row per method).
    """

    dataset: str
    forget: str
    concept: str | None
    tasks: tuple[str, ...]
    methods: tuple[str, ...]
    seeds: tuple[int, ...]
    recipe: str = "auto"  # auto: tarf.recipes.default_recipe(dataset, device)
    data_root: str | None = None
    hierarchy: str | None = None
    device: str = "auto"
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # per method
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)  # label -> overrides
    audit: int = 0  # references of tarf.audit per task (seeds 0..audit-1); 0: no audit
    # of each forget class in the sub-set tasks, of the training set in random; None:
    # each task's default (default_fraction)
    forget_fraction: float | None = None
    forget_seed: int = 0  # the seed of their draw
    rows: tuple[Row, ...] = ()

    def __post_init__(self) -> None:
        from tarf.recipes import resolve_recipe

        # a name, never "auto": the jobs, their logs and the dry run's estimates use it
        self.recipe = resolve_recipe(self.recipe, self.dataset, self.device)
        if not self.rows:
            return
        self.rows = tuple(r if isinstance(r, Row) else Row(*r) for r in self.rows)
        if self.overrides or self.variants:
            raise BenchError("a grid takes rows, or methods with overrides and variants, not both")
        methods = tuple(dict.fromkeys(r.method for r in self.rows))
        if self.methods and set(self.methods) != set(methods):
            raise BenchError(
                f"the grid's methods ({', '.join(self.methods)}) are not its rows' ({', '.join(methods)})"
            )
        self.methods = methods
        seen: set[str] = set()
        for r in self.rows:
            if r.label in seen:
                raise BenchError(
                    f"two rows of the grid are named {r.label}; give each its own variant"
                )
            seen.add(r.label)

    def all_rows(self) -> tuple[Row, ...]:
        """The grid's rows in order (see the class docstring)."""
        if self.rows:
            return self.rows
        variants = self.variants or {"": {}}
        return tuple(
            Row(m, label, {**self.overrides.get(m, {}), **ov})
            for m in self.methods
            for label, ov in variants.items()
        )

    def fraction(self, task: str) -> float:
        """The fraction ``task`` forgets: the grid's, else the task's default."""
        return self.forget_fraction if self.forget_fraction is not None else default_fraction(task)

    def runs(self) -> list[RunJob]:
        rows = self.all_rows()
        return [
            RunJob(self.dataset, self.data_root, self.forget, self.concept, t, r.method,
                   dict(r.overrides), s, self.recipe, self.device, self.hierarchy, r.variant,
                   self.audit, self.fraction(t), self.forget_seed)
            for s in self.seeds for t in self.tasks for r in rows
        ]  # fmt: skip

    def model_jobs(self, task: str, seed: int) -> tuple[ModelJob, ModelJob]:
        args = (self.dataset, self.data_root, self.forget, self.concept, task)
        tail = (seed, self.recipe, self.device, self.hierarchy)
        draw = {"forget_fraction": self.fraction(task), "forget_seed": self.forget_seed}
        return (
            ModelJob(*args, "original", *tail, **draw),
            ModelJob(*args, "retrained", *tail, audit=bool(self.audit), **draw),
        )

    def audit_jobs(self, task: str) -> list[ModelJob]:
        """The references of ``task`` that ``tarf.audit`` compares with (seeds 0..audit-1)."""
        args = (self.dataset, self.data_root, self.forget, self.concept, task, "retrained")
        return [ModelJob(*args, s, self.recipe, self.device, self.hierarchy, audit=True,
                         forget_fraction=self.fraction(task), forget_seed=self.forget_seed)
                for s in range(self.audit)]  # fmt: skip

    def request(self, hierarchy: Any, task: str) -> UnlearningRequest:
        return build_request(hierarchy, self.forget, self.concept, task, self.fraction(task),
                             self.forget_seed)  # fmt: skip


def parse_tasks(text: str) -> tuple[str, ...]:
    """Task names; ``all`` = the four main tasks, ``scenarios`` = the runnable extra
    scenarios of the paper's Table 5 (sub-set level); ``random`` is named on its own."""
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
    """Registered method names; ``all`` = every method, in the paper's Table 1 order."""
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
        seeds = [int(s) for s in _split(text)]
    except ValueError:
        zero = (
            "; --seeds 0 is a count of no seeds: for seed 0, write 0,"
            if text.strip() == "0"
            else ""
        )
        raise BenchError(
            f"--seeds expects a count (3 = seeds 0,1,2) or a comma list (0,2; one seed: 5,), got {text!r}{zero}"
        ) from None
    return unique_seeds(seeds, f"--seeds {text}")


def unique_seeds(seeds: list[int], said: str) -> tuple[int, ...]:
    """The seeds as given, each once: a seed named twice (``said``: how) is refused, not
    run twice or silently merged."""
    twice = sorted({s for s in seeds if seeds.count(s) > 1})
    if twice:
        raise BenchError(f"{said}: seed {', '.join(map(str, twice))} given twice; give each once")
    return tuple(seeds)


def method_fields(method: str) -> set[str]:
    """The hyperparameter names of a registered method."""
    from tarf.methods import METHODS

    return {f.name for f in dataclasses.fields(METHODS[method].Config)}


def split_overrides(methods: Iterable[str], values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``--set``/``--config`` values per method: ``name=v`` goes to every selected method
    that has the hyperparameter ``name`` (one grid mixes methods with different ones),
    ``method.name=v`` to that method only. A name no selected method has is an error."""
    methods = list(methods)
    fields = {m: method_fields(m) for m in methods}
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
    forget_fraction: float | None = None,
    forget_seed: int = 0,
) -> UnlearningRequest:
    """The request of one of the bench's tasks, checked to be that task; the fraction
    (None: the task's default) and the draw's seed apply to the sub-set tasks and random
    forgetting, which ignores ``forget`` and ``concept``."""
    labels, which, subset = TASKS[task]
    fraction = forget_fraction if forget_fraction is not None else default_fraction(task)
    if which == "random":
        return UnlearningRequest.random(hierarchy, fraction, forget_seed)
    if which == "concept" and not concept:
        raise BenchError(f"task {task} needs --concept, the superclass of the --forget classes")
    target = {"forget": forget, "concept": concept, "subset": None}[which]
    req = UnlearningRequest.from_names(
        hierarchy, forget, labels, target, forget_fraction=fraction if subset else None,
        forget_seed=forget_seed if subset else 0,
    )  # fmt: skip
    if req.task.name != task:
        raise BenchError(
            f"task {task}: forget {forget} with a {labels}-level model and target {target} is "
            f"{'an' if req.task.name[0] in 'aeiou' else 'a'} {req.task.name} request, not {task}; --concept must be the superclass of the "
            "--forget classes (`tarf classes --dataset NAME` lists them)"
        )
    return req


def check_grid(grid: Grid, hierarchy: Any) -> None:
    """Fail fast, naming the fix: the forget names are classes, the concept is the
    superclass holding them, and every task's request classifies as that task."""
    h = hierarchy
    named = [t for t in grid.tasks if TASKS[t][1] != "random"]  # tasks of named classes
    if named and not _split(grid.forget or ""):
        raise BenchError(
            f"tasks {', '.join(named)} need --forget, the class names of the forget data "
            f"(only {RANDOM}, random forgetting, needs none)"
        )
    forget: frozenset[int] = frozenset()
    supers: list[str] = []
    if named:
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
    from tarf.training import pick_device

    try:  # here, not in every job
        pick_device(grid.device)
    except (ValueError, RuntimeError) as e:
        msg = str(e).splitlines()[0]
        raise BenchError(msg if "--device" in msg else f"--device {grid.device}: {msg}") from None
    # a concept given is checked though no task uses it: a typo is not left in a header
    if named and (grid.concept or any(TASKS[t][1] == "concept" for t in grid.tasks)):
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
