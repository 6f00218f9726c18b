"""One interface for every unlearning method.

A method is one small module: a config dataclass with typed, documented defaults, and a
``run(model, data, ctx)`` that returns the unlearned model and a small record. What it
may see is exactly :class:`UnlearnData` (no leakage, docs/design.md): the model, ``D_f``,
``D_un`` and, for TARF, the request's prior. Ground-truth partitions never reach it.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn as nn

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
    and dataset names (which the user states, and which pick the paper's defaults)."""

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
        if overrides:
            self.config = dataclasses.replace(
                self.config, **coerce_overrides(self.Config, overrides)
            )

    def run(self, model: nn.Module, data: UnlearnData, ctx: UnlearnContext) -> MethodResult:
        raise NotImplementedError

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
        raise ValueError(f"unknown method {name!r}; registered: {', '.join(sorted(METHODS))}")
    cls = METHODS[name]
    values: dict[str, Any] = {}
    if config_file is not None:
        values.update(read_config_file(config_file))
    values.update(overrides or {})
    values.update(params)
    return cls(**values)


def read_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    text = path.read_text()
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(text) or {}
    else:
        data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a method config file must map hyperparameter names to values")
    return data


def parse_set(pairs: list[str] | None) -> dict[str, str]:
    """``["lr=0.005", "k=0.1"]`` -> ``{"lr": "0.005", "k": "0.1"}`` (typed later)."""
    out: dict[str, str] = {}
    for p in pairs or []:
        for item in p.split(","):
            if "=" not in item:
                raise ValueError(f"--set expects NAME=VALUE, got {item!r}")
            k, v = item.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def coerce_overrides(config_cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """Type each value by the config field it sets; unknown names list the valid ones."""
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    hints = typing.get_type_hints(config_cls)
    out = {}
    for k, v in values.items():
        key = k.replace("-", "_")
        if key not in fields:
            raise ValueError(
                f"unknown hyperparameter {k!r} for this method; valid: {', '.join(fields)}"
            )
        out[key] = _coerce(v, hints[key], key)
    return out


def _coerce(value: Any, hint: Any, name: str) -> Any:
    if not isinstance(value, str):
        return value
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    base = args[0] if args else hint
    if value.lower() in ("none", "null") and type(None) in typing.get_args(hint):
        return None
    try:
        if base is bool:
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(value)
            return value.lower() in ("true", "1", "yes")
        if base in (int, float):
            return base(value)
    except ValueError:
        raise ValueError(f"hyperparameter {name}={value!r}: expected {base.__name__}") from None
    return value


def config_dict(method: Method) -> dict[str, Any]:
    return dataclasses.asdict(method.config)


def config_changes(method: Method) -> dict[str, Any]:
    """The hyperparameters that differ from the method's defaults (they label a run)."""
    default = dataclasses.asdict(method.Config())
    return {k: v for k, v in config_dict(method).items() if default.get(k) != v}
