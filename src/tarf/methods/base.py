"""One interface for every unlearning method.

A method is one small module: a config dataclass with typed, documented defaults, and a
``run(model, data, ctx)`` that returns the unlearned model and a small record. What it
may see is exactly :class:`UnlearnData` (no leakage, docs/design.md): the model, ``D_f``,
``D_un`` and, for TARF, the request's prior. Ground-truth partitions never reach it.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import math
import numbers
import sys
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn as nn

from tarf.io import load_json, load_yaml, parse_error_at
from tarf.recipes import Recipe
from tarf.request import Prior


@dataclass(frozen=True)
class UnlearnData:
    """What a real user has: forget data, the rest of the training data, the prior.

    Images are uint8 (as prepared by the recipe), labels are in the model's domain.
    """

    x_forget: torch.Tensor
    y_forget: torch.Tensor
    x_remain: torch.Tensor
    y_remain: torch.Tensor
    num_classes: int
    class_names: tuple[str, ...]  # model-level label names, for reports
    prior: Prior | None = None


@dataclass
class UnlearnContext:
    """How to run: device, recipe (augmentation, budget), seed, and the request's task
    and dataset names (which the user states; only TARF's preset=paper reads the dataset's,
    for the paper's k)."""

    device: torch.device
    recipe: Recipe
    seed: int = 0
    task: str = "all-matched"
    dataset: str = ""
    train_size: int = 0  # |D|, for the budget rule

    def epoch_samples(self) -> int:
        """Samples one unlearning epoch may push through forward+backward: a tenth of
        the budget rule's total (docs/design.md), the same for every method."""
        return self.recipe.unlearn_epoch_samples(self.train_size, 10)


@dataclass
class MethodResult:
    """What a method returns: the unlearned model and the facts of its run.

    The typed fields are what the run path and the report read; ``details`` holds the
    method's own facts (its learning rate, per-epoch losses), kept verbatim in the
    report's ``record``.
    """

    model: nn.Module
    samples: int = 0  # samples pushed through forward + backward (the budget rule's unit)
    epoch_samples: int = 0  # the per-epoch sample cap the method ran under
    # the cost of a result reused from the model cache (``retrain``): reported as its RTE
    # instead of the near-zero wall time of loading it; None = the measured wall time
    compute_s: float | None = None
    identification: dict[str, Any] | None = None  # TARF: what was set aside, and why
    warnings: list[str] = field(default_factory=list)  # one line each: the cause and the fix
    details: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        """The report's ``record``: the method's details plus its sample counts."""
        out = dict(self.details)
        if self.epoch_samples:
            out.setdefault("epoch_samples", self.epoch_samples)
        if self.samples:
            out.setdefault("samples", self.samples)
        if self.compute_s is not None:
            out.setdefault("compute_s", self.compute_s)
        return out


class Method:
    """Base class: subclasses set ``name``, ``Config`` and implement ``run``."""

    name: ClassVar[str] = ""
    Config: ClassVar[type] = object
    uses_prior: ClassVar[bool] = False
    # trains a tarf architecture from scratch (retrain): not for a user's own model
    trains_architecture: ClassVar[bool] = False

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        self.config = config if config is not None else self.Config()
        try:
            if overrides:
                self.config = dataclasses.replace(
                    self.config, **coerce_overrides(self.Config, overrides)
                )
            if dataclasses.is_dataclass(self.config):
                check_config(self.config)
        except ValueError as e:  # a bad value fails here, before any work, naming the method
            raise ValueError(f"method {self.name}: {e}") from None

    def run(self, model: nn.Module, data: UnlearnData, ctx: UnlearnContext) -> MethodResult:
        raise NotImplementedError

    def weak_forgetting_hint(self, result: MethodResult) -> str:
        """The likely cause and the fix when a run forgot little (``tarf.run``); methods
        with a better guess override it."""
        return (
            "its updates were too weak for this model; raise its learning rate "
            "(--set lr=...) or its epochs"
        )

    def damage_hint(self, result: MethodResult) -> str:
        """The likely cause and the fix when a run wrecked the retained accuracy
        (``tarf.run``); methods with a better guess override it."""
        return (
            "its updates were too strong for this model; lower its learning rate "
            "(--set lr=...) or its epochs"
        )

    def cost_hint(self, result: MethodResult) -> str:
        """The likely cause and the fix when a run, short of damage, cost the retained
        data more than retraining does (``tarf.run``): by default the damage hint's."""
        return self.damage_hint(result)

    def hidden_target_hint(self, result: MethodResult) -> str:
        """The likely cause and the fix when a run forgot the forget data but not the rest
        of the target concept (target or data mismatch: the target holds more than D_f)."""
        return (
            f"{self.name} forgets what it is given, and the target concept holds more: hand "
            "over images of its other classes as forget data (--forget), or use a "
            "target-aware method (--method tarf)"
        )

    def relative_cost(self, n_params: int, flops: float) -> float:
        """The cost of one run on a network of ``n_params`` parameters and ``flops``
        floating-point operations per image's forward pass, up to a constant: the dry run
        scales a run time measured on another architecture by the ratio of two of these.
        The budget fixes most methods' sample count whatever the network, so their cost
        is its FLOPs; a method whose work grows otherwise says how."""
        return flops

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config})"


METHODS: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    METHODS[cls.name] = cls
    return cls


def get_method(
    name: str,
    config_file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    **params: Any,
) -> Method:
    """A registered method with hyperparameters from a YAML/JSON file, then ``--set``
    pairs (``overrides``), then keyword arguments."""
    if name not in METHODS:
        close = difflib.get_close_matches(str(name).lower(), list(METHODS), n=1)
        hint = f" (closest: {close[0]!r})" if close else ""
        raise ValueError(f"unknown method {name!r}{hint}; registered: {', '.join(sorted(METHODS))}")
    cls = METHODS[name]
    values: dict[str, Any] = {}
    if config_file is not None:
        values.update(read_config_file(config_file))
        try:  # the file's own keys first, so that an error names the file
            coerce_overrides(cls.Config, values)
        except ValueError as e:
            raise ValueError(f"--config {config_file}: {e}") from None
    values.update(overrides or {})
    values.update(params)
    return cls(**values)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A YAML (``.yaml``/``.yml``) or JSON file of hyperparameters; a file that cannot be
    read or parsed is a ``ValueError`` naming it (and the line, when known)."""
    path = Path(path)
    what = f"--config {path}"
    try:
        text = path.read_text()
    except OSError as e:
        raise ValueError(f"{what}: cannot read the file ({e.strerror})") from None
    except UnicodeDecodeError:
        raise ValueError(f"{what}: not a text file; give a YAML or JSON file") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            data = load_yaml(text) or {}  # a name given twice is refused, not the last kept
        except yaml.YAMLError as e:
            line, problem = parse_error_at(e)
            where = f", line {line}" if line else ""
            raise ValueError(f"{what}{where}: not valid YAML ({problem}); fix the file") from None
    else:
        try:
            data = load_json(text) if text.strip() else {}
        except ValueError as e:
            line, problem = parse_error_at(e)
            where = f", line {line}" if line else ""
            raise ValueError(
                f"{what}{where}: not valid JSON ({problem}); fix the file, or name it .yaml "
                "to write YAML"
            ) from None
    if not isinstance(data, dict):
        raise ValueError(f"{what}: a method config file must map hyperparameter names to values")
    if "grids" in data:
        raise ValueError(
            f"{what} is a grid file (it has grids:), not hyperparameters; run it as "
            f"`tarf bench {path}`"
        )
    return data


def parse_set(pairs: list[str] | None) -> dict[str, str]:
    """``["lr=0.005", "k=0.1"]`` -> ``{"lr": "0.005", "k": "0.1"}`` (typed later). One
    ``--set`` may hold several pairs, ``lr=0.005,k=0.1``; a part without ``=`` continues
    the value before it (``lr_decay_epochs=3,5,9``)."""
    out: dict[str, str] = {}
    for p in pairs or []:
        key = None
        for item in p.split(","):
            if "=" in item:
                k, v = item.split("=", 1)
                key = k.strip()
                if not key:
                    raise ValueError(f"--set expects NAME=VALUE, got {p!r}")
                out[key] = v.strip()
            elif key is not None:
                out[key] += "," + item.strip()
            else:
                raise ValueError(f"--set expects NAME=VALUE, got {p!r}")
    return out


def coerce_overrides(config_cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """Type each value by the config field it sets; unknown names list the valid ones."""
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    hints = typing.get_type_hints(config_cls)
    out = {}
    for k, v in values.items():
        key = k.replace("-", "_")
        if key not in fields:
            valid = f"valid: {', '.join(fields)}" if fields else "it takes no hyperparameters"
            close = difflib.get_close_matches(key, list(fields), n=1)
            hint = f" (closest: {close[0]!r})" if close else ""
            raise ValueError(f"unknown hyperparameter {k!r}{hint} for this method; {valid}")
        out[key] = _coerce(v, hints[key], key)
    return out


def _unwrap(hint: Any) -> tuple[Any, bool]:
    """``X | None`` -> (X, True); any other hint -> (hint, False)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else hint), type(None) in args
    return hint, False


def _coerce(value: Any, hint: Any, name: str) -> Any:
    if not isinstance(value, str):
        return value
    base, optional = _unwrap(hint)
    if value.lower() in ("none", "null") and optional:
        return None
    try:
        if base is bool:
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(value)
            return value.lower() in ("true", "1", "yes")
        if base in (int, float):
            return base(value)
        if typing.get_origin(base) is tuple:  # "3,5,9" or "3 5 9"
            (item, *_) = typing.get_args(base) or (str,)
            parts = value.replace(",", " ").split()
            return tuple(item(v) for v in parts) if item in (int, float) else tuple(parts)
    except ValueError:
        what = getattr(base, "__name__", "") if base in (bool, int, float) else "a list (3,5,9)"
        raise ValueError(f"hyperparameter {name}={value!r}: expected {what}") from None
    return value


# -- the valid values of hyperparameters ------------------------------------------------------
@dataclass(frozen=True)
class Check:
    """The values a number may take: ``test(value)`` holds; ``text`` says which, for the
    error (``>= 1``)."""

    test: Callable[[float], bool]
    text: str


POSITIVE = Check(lambda v: v > 0, "> 0")
AT_LEAST_ONE = Check(lambda v: v >= 1, ">= 1")
NON_NEGATIVE = Check(lambda v: v >= 0, ">= 0")
FRACTION = Check(lambda v: 0 < v <= 1, "in (0, 1]")
UNIT = Check(lambda v: 0 <= v <= 1, "in [0, 1]")
OPEN_UNIT = Check(lambda v: 0 < v < 1, "strictly between 0 and 1")
ANY = Check(lambda v: True, "any value")

# Rules by field name (glob patterns, first match wins), for every method's config: a
# field's own ``hyperparameter(check=...)`` comes first, and a number no rule names is
# a count or a weight, >= 0 (NUMBER_DEFAULT). Every number must also be finite.
NAME_CHECKS: tuple[tuple[str, Check], ...] = (
    ("epochs", AT_LEAST_ONE),
    ("lr", POSITIVE),
    ("*_lr", POSITIVE),
    ("*batch_size", AT_LEAST_ONE),
    ("*_size", AT_LEAST_ONE),
    ("*samples*", AT_LEAST_ONE),
    ("*_pool", AT_LEAST_ONE),
    ("*_fraction", FRACTION),
    ("*_ratio", FRACTION),
    ("*_quantile", UNIT),
    ("auto_alpha", OPEN_UNIT),  # a false-positive rate (TARF's --prior auto)
    ("frozen_blocks", ANY),  # a negative N counts from the classifier back (TARF)
)
NUMBER_DEFAULT = NON_NEGATIVE


def hyperparameter(
    default: Any, check: Check | None = None, choices: tuple[str, ...] | None = None
) -> Any:
    """A config field with its valid values: ``check`` for a number (else the rules of
    :data:`NAME_CHECKS`), ``choices`` for a string. ``lr: float = hyperparameter(0.1,
    POSITIVE)``."""
    meta: dict[str, Any] = {}
    if check is not None:
        meta["check"] = check
    if choices is not None:
        meta["choices"] = tuple(choices)
    return field(default=default, metadata=meta)


def number_check(f: dataclasses.Field) -> Check:
    """The rule a numeric hyperparameter follows: its own, else by its name, else >= 0."""
    if "check" in f.metadata:
        return f.metadata["check"]
    for pattern, check in NAME_CHECKS:
        if fnmatch.fnmatchcase(f.name, pattern):
            return check
    return NUMBER_DEFAULT


def field_choices(config: Any, f: dataclasses.Field) -> tuple[str, ...] | None:
    """The valid strings of a field: its own ``choices``, else the ``CHOICES`` table
    (``{field: values}``) of the module that defines the config, if it has one."""
    if "choices" in f.metadata:
        return f.metadata["choices"]
    table = getattr(sys.modules.get(type(config).__module__), "CHOICES", None)
    if isinstance(table, dict) and f.name in table:
        return tuple(table[f.name])
    return None


def check_config(config: Any) -> None:
    """Every hyperparameter of ``config`` has its declared type and a valid value, or a
    ``ValueError`` names the first that does not and the values it may take: numbers
    finite and in their range (:func:`number_check`), switches true or false, strings one
    of their choices. Run when a method is made, so a bad value fails before any work."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        problem = _problem(value, hints.get(f.name, Any), config, f)
        if problem:
            raise ValueError(f"hyperparameter {f.name}={value!r}: expected {problem}")


def _problem(value: Any, hint: Any, config: Any, f: dataclasses.Field) -> str | None:
    """Why ``value`` cannot be the field's, as the value it expects; None when it can."""
    base, optional = _unwrap(hint)
    if value is None:
        return None if optional or hint is Any else "a value"
    if base is bool:
        return None if isinstance(value, bool) else "true or false"
    if base in (int, float):
        check = number_check(f)
        kind = "an integer" if base is int else "a finite number"
        want = kind if check is ANY else f"{kind} {check.text}"
        numeric = numbers.Integral if base is int else numbers.Real
        if isinstance(value, bool) or not isinstance(value, numeric):
            return want
        return None if math.isfinite(value) and check.test(value) else want
    if typing.get_origin(base) is tuple:
        items = typing.get_args(base)
        item = items[0] if items else Any
        if not isinstance(value, (tuple, list)):
            return "a list"
        if item in (int, float):
            for v in value:
                if _problem(v, item, config, f):
                    return f"a list of numbers {number_check(f).text}"
        return None
    if base is str:
        if not isinstance(value, str):
            return "a string"
        choices = field_choices(config, f)
        if choices is not None and value not in choices:
            return " or ".join(map(repr, choices))
    return None


def config_dict(method: Method) -> dict[str, Any]:
    return dataclasses.asdict(method.config)


NOT_A_SETTING = "(not a setting)"  # config_diff: a field one side's config lacks


def config_diff(have: dict[str, Any], want: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """The fields whose values differ between two configs (a finished run's and the one
    it is compared with): name -> (have's, want's), a field one lacks as
    :data:`NOT_A_SETTING`; have's fields first, in its order, then want's own."""
    names = dict.fromkeys([*have, *want])
    pairs = {k: (have.get(k, NOT_A_SETTING), want.get(k, NOT_A_SETTING)) for k in names}
    return {k: (h, w) for k, (h, w) in pairs.items() if h != w or (k in have) != (k in want)}


def config_changes(method: Method) -> dict[str, Any]:
    """The hyperparameters that differ from the method's defaults (they label a run)."""
    default = dataclasses.asdict(method.Config())
    return {k: v for k, v in config_dict(method).items() if default.get(k) != v}


def hyperparameter_docs(config_cls: type) -> dict[str, str]:
    """Each hyperparameter's one-line description, read from the config classes' source:
    the comment after the field, else the comment lines just above it (base classes
    first, so a method's own comment wins)."""
    import inspect
    import re

    docs: dict[str, str] = {}
    for cls in reversed([c for c in config_cls.__mro__ if dataclasses.is_dataclass(c)]):
        try:
            lines = inspect.getsource(cls).splitlines()
        except (OSError, TypeError):
            continue
        above: list[str] = []
        for line in lines[1:]:
            text = line.strip()
            if text.startswith("#"):
                above.append(text.lstrip("# ").strip())
                continue
            m = re.match(r"(\w+)\s*:[^=]*=.*?(?:#\s*(.*))?$", text)
            if m and not text.startswith(("def ", "return")):
                doc = m.group(2) or " ".join(above)
                if doc:
                    docs[m.group(1)] = re.sub(r"\s+", " ", doc).strip()
            above = []
    return docs
