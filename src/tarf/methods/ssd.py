"""SSD: Selective Synaptic Dampening (Foster et al., AAAI 2024). Training-free.

Diagonal Fisher importance of every parameter, ``I = mean over batches of (∇θ CE)²``, on
D_f and on the training data D; parameters with ``I_f > α · I_D`` are multiplied by
``min(λ · I_D / I_f, 1)``, the others stay bit-identical. Follows the authors'
``if-loops/selective-synaptic-dampening`` (``src/ssd.py``, ``ParameterPerturber``): eval
mode, no augmentation, unshuffled batches of 64. D is what the user has, D_f ∪ D_un, and
its importance is the batch-weighted mean of the D_f and D_un importances (what the
authors' unshuffled concatenated loader computes), so D_f needs one pass, not two.

Budget rule: the passes are work. D_un is sampled (seeded) so that |D_f| + the sample
fit :func:`tarf.methods.loop.run_budget`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from tarf.methods.base import Method, MethodResult, UnlearnContext, UnlearnData, register
from tarf.methods.common import clone
from tarf.methods.loop import run_budget
from tarf.training import to_float


@dataclass
class SSDConfig:
    """SSD hyperparameters: the authors' CIFAR-100 full-class values, not tuned here."""

    alpha: float = 10.0  # α, selection: dampen where importance on D_f > α × on D
    lam: float = 1.0  # λ, dampening: scale a selected weight by min(λ·I_D/I_f, 1)
    batch_size: int = 64  # batch of the importance passes (the authors' -b 64)


def importance(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: UnlearnContext, batch_size: int
) -> list[torch.Tensor]:
    """Per parameter: the mean over unshuffled batches of the squared gradient of the
    batch's mean cross-entropy (the authors' ``calc_importance``)."""
    params = [p for p in model.parameters() if p.requires_grad]  # frozen layers stay
    imp = [torch.zeros_like(p) for p in params]
    batches = 0
    for i in range(0, len(y), batch_size):
        logits = model(to_float(x[i : i + batch_size], ctx.device)).float()
        loss = F.cross_entropy(logits, y[i : i + batch_size].to(ctx.device))
        for acc, g in zip(imp, torch.autograd.grad(loss, params, allow_unused=True)):
            if g is not None:
                acc += g.pow(2)
        batches += 1
    return [acc / max(batches, 1) for acc in imp]


@torch.no_grad()
def dampen(
    params: list[torch.Tensor],
    imp_f: list[torch.Tensor],
    imp_d: list[torch.Tensor],
    alpha: float,
    lam: float,
) -> int:
    """The authors' ``modify_weight`` in place; returns how many weights were dampened."""
    n = 0
    for p, f, d in zip(params, imp_f, imp_d):
        where = f > alpha * d
        p[where] *= (lam * d[where] / f[where]).clamp(max=1.0)
        n += int(where.sum())
    return n


@register
class SSD(Method):
    """SSD: dampen the weights far more important to D_f than to D (training-free)."""

    name = "ssd"
    Config = SSDConfig

    def weak_forgetting_hint(self, result: MethodResult) -> str:
        return "it dampened too few weights; lower alpha (--set alpha=...) or raise lam"

    def damage_hint(self, result: MethodResult) -> str:
        share = result.details.get("dampened_share")
        dampened = f" ({share:.1%} of the weights)" if share is not None else ""
        return (
            f"it dampened weights the retained data needs{dampened}; raise alpha "
            "(--set alpha=...) so that fewer are selected"
        )

    def run(self, model: nn.Module, data: UnlearnData, ctx: UnlearnContext) -> MethodResult:
        c = self.config
        model = clone(model).eval()  # eval-mode batch norm, as the authors
        n_f, n_un = len(data.y_forget), len(data.y_remain)
        if n_f == 0 or n_un == 0:
            raise ValueError("SSD needs forget data and remaining data")
        # D = D_f ∪ D_un: each weighted by its number of batches in the whole set
        b_f, b_un = math.ceil(n_f / c.batch_size), math.ceil(n_un / c.batch_size)
        share = b_f / (b_f + b_un)
        if c.alpha * share >= 1:  # I_D >= share·I_f, so I_f > α·I_D cannot hold: no work
            return MethodResult(
                model.eval(),
                epoch_samples=ctx.epoch_samples(),
                warnings=[
                    f"SSD: D_f is {share:.0%} of the data, so no weight's importance on D_f "
                    f"can exceed alpha={c.alpha:g} times its importance on D and the model "
                    f"was left as it was; set alpha below {1 / share:.3g} (--set alpha=...)"
                ],
                details={"alpha": c.alpha, "lam": c.lam, "dampened": 0},
            )
        budget = run_budget(ctx)
        gen = torch.Generator().manual_seed(ctx.seed)
        f_used = min(n_f, max(1, budget // 2))  # D_f whole unless the budget is tiny
        un_used = min(n_un, max(1, budget - f_used))
        fidx = torch.randperm(n_f, generator=gen)[:f_used].sort().values
        uidx = torch.randperm(n_un, generator=gen)[:un_used].sort().values
        imp_f = importance(model, data.x_forget[fidx], data.y_forget[fidx], ctx, c.batch_size)
        imp_un = importance(model, data.x_remain[uidx], data.y_remain[uidx], ctx, c.batch_size)
        imp_d = [share * f + (1 - share) * u for f, u in zip(imp_f, imp_un)]
        params = [p for p in model.parameters() if p.requires_grad]
        total = sum(p.numel() for p in params)
        dampened = dampen(params, imp_f, imp_d, c.alpha, c.lam)
        return MethodResult(
            model.eval(),
            samples=f_used + un_used,
            epoch_samples=ctx.epoch_samples(),
            details={
                "alpha": c.alpha,
                "lam": c.lam,
                "forget_samples": f_used,
                "remain_samples": un_used,
                "dampened": dampened,
                "dampened_share": round(dampened / max(total, 1), 6),
                "budget_samples": budget,
            },
        )
