"""L1-sparse: FT plus an annealed L1 penalty (SPEC section 6; Jia et al. 2023, "Model
Sparsity Can Simplify Machine Unlearning", the harness's ``FT_prune``/``l1_sparse``).

    L_t = CE(D_un) + γ_t · ‖θ‖₁,   γ_t = γ · (1 − t / T)   (t = epoch, 0 .. T−1)

γ decays linearly toward 0 over the run, epoch by epoch as in the harness
(``current_alpha = alpha * (1 - epoch / unlearn_epochs)``); ‖θ‖₁ sums over every
parameter. Batches are exactly FT's (same pools, same seeds), so with γ = 0 it is FT.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from tarf.methods.base import Method, MethodResult, UnlearnContext, UnlearnData, register
from tarf.methods.common import Pool, ce, clone, sgd, step
from tarf.methods.ft import remain_epoch_samples


@dataclass
class L1SparseConfig:
    """L1-sparse hyperparameters (defaults: SPEC section 6)."""

    epochs: int = 10  # SPEC 6: 10 epochs, as FT
    lr: float | None = None  # SPEC 6: 0.01; None = the recipe's unlearn_lr (0.01 in cpu/paper)
    gamma: float = 5e-4  # SPEC 6: γ = 5e-4, the L1 weight of the first epoch


def l1_norm(model: nn.Module) -> torch.Tensor:
    """‖θ‖₁ over all parameters (differentiable)."""
    return sum(p.abs().sum() for p in model.parameters())


def gamma_schedule(gamma: float, epochs: int) -> list[float]:
    """γ_t = γ (1 − t/T): linear decay toward 0, one value per epoch."""
    return [gamma * (1 - t / epochs) for t in range(epochs)]


@register
class L1Sparse(Method):
    """L1-sparse: FT plus γ·‖θ‖₁ with γ decaying linearly to 0."""

    name = "l1-sparse"
    Config = L1SparseConfig

    def run(self, model: nn.Module, data: UnlearnData, ctx: UnlearnContext) -> MethodResult:
        c = self.config
        lr = c.lr if c.lr is not None else ctx.recipe.unlearn_lr
        gammas = gamma_schedule(c.gamma, c.epochs)
        model = clone(model)
        opt = sgd(model.parameters(), lr, ctx)
        per_epoch = remain_epoch_samples(data, ctx)
        remain = Pool(data.x_remain, data.y_remain, ctx, 2)  # FT's pool and seed
        for g in gammas:
            for xr, yr in remain.epoch(per_epoch, ctx.recipe.unlearn_batch_size):
                loss = ce(model, xr, yr, ctx)
                if g > 0:
                    loss = loss + g * l1_norm(model)
                step(opt, loss)
        record: dict[str, Any] = {
            "epochs": c.epochs,
            "lr": lr,
            "gamma": gammas,
            "epoch_samples": per_epoch,
            "samples": c.epochs * per_epoch,
            "l1_norm": round(float(l1_norm(model).detach()), 4),
        }
        return MethodResult(model.eval(), record)
