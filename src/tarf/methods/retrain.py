"""Retrain: what a user without tarf would do: train from scratch on D_un.

Trains the recipe's architecture on all of D_un with the model's labels, with the same
recipe and seed as the original (``train_classifier``), using the original model's
normalisation constants. It sees only D_un, never D_f. Unlike the *retrained reference*
(trained on D_r, which needs the ground truth), this is a method a user can run; it is
exempt from the budget rule (it costs a full training run). Its result is cached like
the reference (two tasks with the same D_un and model labels share one training), and
a cached run reports the training time it cost when first computed.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import torch.nn as nn

from tarf.cache import ModelCache, digest, tensor_digest, training_line
from tarf.methods.base import Method, MethodResult, UnlearnContext, UnlearnData, register
from tarf.models import create_model
from tarf.training import CODE_VERSION, train_classifier


@dataclass
class RetrainConfig:
    """No hyperparameters: everything comes from the recipe (the original's)."""


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
    trains_architecture = True

    def run(self, model: nn.Module, data: UnlearnData, ctx: UnlearnContext) -> MethodResult:
        mean, std = model_normalisation(model)
        r = ctx.recipe
        record: dict[str, Any] = {
            "budget_exempt": True,
            "arch": r.arch,
            "epochs": r.epochs,
            "lr": r.lr,
        }
        counts = {"samples": r.epochs * len(data.y_remain), "epoch_samples": len(data.y_remain)}
        cache = ModelCache()
        key = digest({
            "method": "retrain", "x": tensor_digest(data.x_remain), "y": tensor_digest(data.y_remain),
            "num_classes": data.num_classes, "mean": mean, "std": std, "recipe": r.to_dict(),
            "seed": ctx.seed, "code": CODE_VERSION,
        })  # fmt: skip
        with cache.lock(key):  # two tasks sharing D_un run at once: one trains
            entry = cache.load(key)
            if entry is not None:
                meta = entry["meta"]
                trained = create_model(
                    meta["arch"],
                    meta["num_classes"],
                    meta["in_channels"],
                    meta["mean"],
                    meta["std"],
                )
                trained.load_state_dict(entry["state_dict"])
                record.update(cached=True, train_seconds=meta["train_s"])
                return MethodResult(
                    trained.to(ctx.device).eval(),
                    **counts,
                    compute_s=meta["train_s"],
                    details=record,
                )
            what = f"the retrain method's model ({ctx.dataset}, D_un, seed {ctx.seed})"
            print(training_line(what, ctx.dataset, r, len(data.y_remain), ctx.device),
                  file=sys.stderr, flush=True)  # fmt: skip
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
            trained = result.model
            meta = {
                "arch": r.arch, "num_classes": data.num_classes, "in_channels": data.x_remain.shape[1],
                "mean": trained.mean.flatten().tolist(),
                "std": trained.std.flatten().tolist(), "train_s": result.train_seconds,
            }  # fmt: skip
            cache.save(
                key,
                {"state_dict": {k: v.cpu() for k, v in trained.state_dict().items()}, "meta": meta},
            )
            record["train_seconds"] = round(result.train_seconds, 3)
        return MethodResult(trained.eval(), **counts, details=record)
