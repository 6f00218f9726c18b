"""Retrain: what a user without tarf would do: train from scratch on D_un.

Trains the recipe's architecture on all of D_un with the model's labels, with the same
recipe and seed as the original (``train_classifier``), using the original model's
normalisation constants. It sees only D_un, never D_f. Unlike the *retrained reference*
(trained on D_r, which needs the ground truth), this is a method a user can run; it is
exempt from the budget rule (it costs a full training run).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch.nn as nn

from tarf.methods.base import Method, MethodResult, UnlearnContext, UnlearnData, register
from tarf.training import train_classifier


@dataclass
class RetrainConfig:
    """No hyperparameters: everything comes from the recipe (SPEC section 6: "same recipe
    as the original")."""


def model_normalisation(model: nn.Module) -> tuple[tuple[float, ...] | None, ...]:
    """The (mean, std) a tarf model normalises with, or (None, None) to recompute them."""
    mean, std = getattr(model, "mean", None), getattr(model, "std", None)
    if mean is None or std is None:
        return None, None
    return tuple(mean.flatten().tolist()), tuple(std.flatten().tolist())


@register
class Retrain(Method):
    """Retrain: train from scratch on D_un with the original recipe (no budget rule)."""

    name = "retrain"
    Config = RetrainConfig

    def run(self, model: nn.Module, data: UnlearnData, ctx: UnlearnContext) -> MethodResult:
        mean, std = model_normalisation(model)
        r = ctx.recipe
        result = train_classifier(
            data.x_remain,
            data.y_remain,
            data.num_classes,
            r,
            ctx.seed,
            ctx.device,
            mean,
            std,
            desc="retrain",
        )
        record: dict[str, Any] = {
            "budget_exempt": True,
            "arch": r.arch,
            "epochs": r.epochs,
            "lr": r.lr,
            "samples": r.epochs * len(data.y_remain),
            "train_seconds": round(result.train_seconds, 3),
        }
        return MethodResult(result.model.eval(), record)
