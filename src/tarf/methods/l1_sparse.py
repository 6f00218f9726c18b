"""L1-sparse: FT plus an annealed L1 penalty (Jia et al. 2023, "Model Sparsity Can
Simplify Machine Unlearning"; the harness's ``FT_prune``/``l1_sparse``).

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

from tarf.methods.base import UnlearnData
from tarf.methods.common import Pool
from tarf.methods.loop import Loop, LoopConfig, iterative


@dataclass
class L1SparseConfig(LoopConfig):
    """L1-sparse hyperparameters (defaults: the harness's; epochs and lr as FT)."""

    gamma: float = 5e-4  # γ, the L1 weight of the first epoch


def l1_norm(model: nn.Module) -> torch.Tensor:
    """‖θ‖₁ over all parameters (differentiable)."""
    return sum(p.abs().sum() for p in model.parameters())


def gamma_schedule(gamma: float, epochs: int) -> list[float]:
    """γ_t = γ (1 − t/T): linear decay toward 0, one value per epoch."""
    return [gamma * (1 - t / epochs) for t in range(epochs)]


@iterative("l1-sparse", L1SparseConfig)
def L1Sparse(loop: Loop, data: UnlearnData) -> dict[str, Any]:
    """L1-sparse: FT plus γ·‖θ‖₁ with γ decaying linearly to 0."""
    gammas = gamma_schedule(loop.config.gamma, loop.epochs)

    def loss(x: torch.Tensor, y: torch.Tensor, t: int) -> torch.Tensor:
        out = loop.loss(x, y)
        return out + gammas[t] * l1_norm(loop.model) if gammas[t] > 0 else out

    loop.train(Pool(data.x_remain, data.y_remain, loop.ctx, seed_offset=2), loss)  # FT's pool
    l1 = round(float(l1_norm(loop.model).detach()), 4)
    return {"epochs": loop.epochs, "lr": loop.lr, "gamma": gammas, "l1_norm": l1}
