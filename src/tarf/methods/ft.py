"""FT: fine-tune on D_un with cross-entropy (SPEC section 6; Unlearn-Sparse/SalUn harness ``FT``).

The simplest baseline: it relies on catastrophic forgetting of D_f while training on the
rest. It never reads D_f (not even its size). Under the budget rule an epoch is one
seeded pass over D_un, or a seeded subsample of ``ctx.epoch_samples()`` samples when
that is smaller (SPEC section 7).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch.nn as nn

from tarf.methods.base import Method, MethodResult, UnlearnContext, UnlearnData, register
from tarf.methods.common import Pool, ce, clone, sgd, step


@dataclass
class FTConfig:
    """Fine-tuning hyperparameters (defaults: SPEC section 6, the harness's FT)."""

    epochs: int = 10  # SPEC 6: 10 epochs (harness --unlearn_epochs 10)
    lr: float | None = None  # SPEC 6: 0.01; None = the recipe's unlearn_lr (0.01 in cpu/paper)


def remain_epoch_samples(data: UnlearnData, ctx: UnlearnContext) -> int:
    """One epoch over D_un: a full pass, capped by the budget rule."""
    return min(ctx.epoch_samples(), len(data.y_remain))


@register
class FT(Method):
    """FT: cross-entropy on D_un only (D_f is never touched)."""

    name = "ft"
    Config = FTConfig

    def run(self, model: nn.Module, data: UnlearnData, ctx: UnlearnContext) -> MethodResult:
        c = self.config
        lr = c.lr if c.lr is not None else ctx.recipe.unlearn_lr
        model = clone(model)
        opt = sgd(model.parameters(), lr, ctx)
        per_epoch = remain_epoch_samples(data, ctx)
        remain = Pool(data.x_remain, data.y_remain, ctx, 2)
        for _ in range(c.epochs):
            for xr, yr in remain.epoch(per_epoch, ctx.recipe.unlearn_batch_size):
                step(opt, ce(model, xr, yr, ctx))
        record: dict[str, Any] = {
            "epochs": c.epochs,
            "lr": lr,
            "epoch_samples": per_epoch,
            "samples": c.epochs * per_epoch,
        }
        return MethodResult(model.eval(), record)
