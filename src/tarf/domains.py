"""Label domains and the task taxonomy (paper Tables 2 and 4; docs/design.md).

This is the one place that says what a request *is*: given the level of the reported
forget data (L_D), of the model's outputs (L_M) and of the target concept (L_T), it
names the task. Everything else (partitions, methods, reports) asks this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class Level(IntEnum):
    """A label layer; a smaller value is finer (``SUBSET ≺ CLASS ≺ SUPERCLASS``)."""

    SUBSET = 0
    CLASS = 1
    SUPERCLASS = 2

    @property
    def label(self) -> str:
        return {0: "sub-set", 1: "class", 2: "superclass"}[int(self)]

    @classmethod
    def parse(cls, text: str) -> Level:
        key = text.strip().lower().replace("_", "-")
        aliases = {
            "subset": cls.SUBSET,
            "sub-set": cls.SUBSET,
            "class": cls.CLASS,
            "classes": cls.CLASS,
            "fine": cls.CLASS,
            "superclass": cls.SUPERCLASS,
            "superclasses": cls.SUPERCLASS,
            "coarse": cls.SUPERCLASS,
        }
        if key not in aliases:
            raise ValueError(
                f"unknown label level {text!r}: use one of 'subset', 'class', 'superclass'"
            )
        return aliases[key]


# Task names as they appear in reports, JSON and on the command line.
ALL_MATCHED = "all-matched"
TARGET_MISMATCH = "target-mismatch"
MODEL_MISMATCH = "model-mismatch"
DATA_MISMATCH = "data-mismatch"
MAIN_TASKS = (ALL_MATCHED, TARGET_MISMATCH, MODEL_MISMATCH, DATA_MISMATCH)
EXTRA_SCENARIOS = (5, 6, 7, 8, 9, 16)
# Random forgetting, the standard setting of the SalUn harness and the Deep Unlearn
# benchmark: D_f is a seeded fraction of the whole training set, every class, and the
# target is D_f itself. Not one of the main tasks (``all`` keeps meaning those four);
# its place in Table 4 is :func:`random_task`.
RANDOM = "random"
RANDOM_FRACTION = 0.1  # of the training set, when no fraction is given (as both harnesses)


class ImpracticalRequestError(ValueError):
    """``L_D ≻ L_T``: the user reports more data than the concept holds."""


@dataclass(frozen=True)
class TaskKind:
    """Where a request falls in the taxonomy.

    ``name`` is what the methods and reports act on: one of the four main tasks (a
    "similar to all matched" case is handled as all matched) or ``scenario-N`` for
    the six extra three-layer scenarios. ``case`` is the paper's Table 4 number and
    ``comment`` its wording, so a user sees exactly which row their request is.
    """

    name: str
    case: int
    comment: str
    data: Level
    model: Level
    target: Level

    @property
    def is_main(self) -> bool:
        return self.name in MAIN_TASKS

    @property
    def target_finer_than_model(self) -> bool:
        """``L_T ≺ L_M`` (model mismatch, No. 6, 9): the model's forget classes also hold
        data to keep, so UA splits into UA-F (on ``D_f``) and UA-R (on ``D_ar``)."""
        return self.target < self.model

    @property
    def ua_split(self) -> bool:
        """Whether the report splits UA into UA-F and UA-R: where ``L_T ≺ L_M``, except in
        random forgetting, whose ``D_f`` spans every class: there ``D_t`` is ``D_f`` and
        ``D_ar`` is all of ``D_r``, so the split would only repeat UA and RA."""
        return self.target_finer_than_model and self.name != RANDOM


def _table4() -> dict[tuple[Level, Level, Level], tuple[int, str]]:
    """The paper's Table 4: (L_D, L_M, L_T) -> (No., comment), all 27 cases."""
    s, c, p = Level.SUBSET, Level.CLASS, Level.SUPERCLASS
    rows = [
        (s, s, s, "All matched"),
        (s, s, c, "Target mismatch"),
        (s, c, s, "Model mismatch"),
        (s, c, c, "Data mismatch"),
        (s, s, p, "Different"),
        (s, p, s, "Different"),
        (s, p, p, "Different"),
        (s, c, p, "Different"),
        (s, p, c, "Different"),
        (c, c, c, "All matched"),
        (c, c, p, "Target mismatch"),
        (c, p, c, "Model mismatch"),
        (c, p, p, "Data mismatch"),
        (c, s, s, "Impractical"),
        (c, s, c, "Similar to all matched"),
        (c, s, p, "Different"),
        (c, c, s, "Impractical"),
        (c, p, s, "Impractical"),
        (p, p, p, "All matched"),
        (p, c, c, "Impractical"),
        (p, c, p, "Similar to all matched"),
        (p, p, c, "Impractical"),
        (p, s, s, "Impractical"),
        (p, s, c, "Impractical"),
        (p, s, p, "Similar to all matched"),
        (p, c, s, "Impractical"),
        (p, p, s, "Impractical"),
    ]
    return {(d, m, t): (i + 1, comment) for i, (d, m, t, comment) in enumerate(rows)}


TABLE4 = _table4()


def classify(data: Level, model: Level, target: Level) -> TaskKind:
    """Name the task of a request from its three label domains.

    The rule, which reproduces every row of the paper's Table 4:
    ``L_D ≻ L_T`` is impractical; ``L_D = L_T`` is all matched when ``L_M ⪯ L_T``
    and model mismatch when ``L_M`` is one level coarser; ``L_D ≺ L_T`` is target
    mismatch when ``L_M = L_D`` and data mismatch when ``L_M = L_T``, each only when
    the two differing domains are adjacent levels. Everything else is one of the six
    extra scenarios, named by its Table 4 number.
    """
    data, model, target = Level(data), Level(model), Level(target)
    case = TABLE4[(data, model, target)][0]
    if data > target:
        raise ImpracticalRequestError(
            f"impractical request (paper Table 4 No. {case}): the forget data is reported at "
            f"the {data.label} level but the target concept is at the finer {target.label} "
            "level (L_D ≻ L_T), so the reported data is larger than what must be forgotten. "
            "Report only the data of the concept (e.g. its classes), or widen the target."
        )
    if data == target:
        if model == target:
            return TaskKind(ALL_MATCHED, case, "all matched", data, model, target)
        if model < target:
            return TaskKind(ALL_MATCHED, case, "similar to all matched", data, model, target)
        if model - target == 1:
            return TaskKind(MODEL_MISMATCH, case, "model mismatch", data, model, target)
    elif target - data == 1:
        if model == data:
            return TaskKind(TARGET_MISMATCH, case, "target mismatch", data, model, target)
        if model == target:
            return TaskKind(DATA_MISMATCH, case, "data mismatch", data, model, target)
    return TaskKind(f"scenario-{case}", case, f"extra scenario No. {case}", data, model, target)


def random_task() -> TaskKind:
    """Random forgetting in the taxonomy. The forgotten samples are a sub-set of the
    training data and are the whole target (``L_D = L_T`` = sub-set: data and target are
    matched, nothing of the concept is left in ``D_un``, TARF's prior is 0); the model
    predicts classes, one level coarser (``L_M`` = class). That is the paper's Table 4
    No. 3, the row of a ``--forget-fraction`` request without a target, with ``D_f``
    drawn from every class instead of named ones: like model mismatch, the retrained
    reference still classifies the forgotten samples (it generalises to them as to test
    data), so the ideal UA is near the test accuracy, not 0. Reported as ``random``."""
    d, m, t = Level.SUBSET, Level.CLASS, Level.SUBSET
    case = TABLE4[(d, m, t)][0]
    return TaskKind(RANDOM, case, "random forgetting", d, m, t)


def target_is_data(task: str) -> bool:
    """Whether a task, by its name in reports, has ``L_T = L_D``: all matched, model
    mismatch, random forgetting, and scenario No. 6 (the forgotten sub-set is the whole
    target)."""
    if task in (ALL_MATCHED, MODEL_MISMATCH, RANDOM):
        return True
    if task.startswith("scenario-"):
        case = int(task.partition("-")[2])
        return any(d == t for (d, _, t), (no, _) in TABLE4.items() if no == case)
    return False
