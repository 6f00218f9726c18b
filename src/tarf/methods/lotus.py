"""LoTUS (Spartalis et al., CVPR 2025, "LoTUS: Large-Scale Machine Unlearning with a
Taste of Uncertainty").

The student (a copy of the original) is distilled from the frozen original on one
shuffled pool of D_f and a fixed random ``subset_fraction`` of D_un, with the loss
``−Σ_k t_k log s_k`` (batch mean), where the teacher's target ``t`` is

* on D_f: a Gumbel-softmax sample of the teacher's logits at temperature τ (soft, so
  the student's confidence on D_f is smoothed toward uncertainty);
* on retained data: a hard Gumbel-max sample (a one-hot label drawn from the
  teacher's softmax).

Before each epoch, τ = exp(α · (Acc_f − Acc_val)) from the student's accuracy on D_f
(eval mode, rounded to 2 decimals, as the authors' ``compute_accuracy``); the run stops
when Acc_f ≤ Acc_val − 0.01. Acc_val is the original's accuracy on a validation split in
the authors' instance-wise runs and 0 in their class-unlearning runs (``val_acc``).
Follows ``cspartalis/LoTUS`` (``src/unlearning_methods/lotus_class.py``). An epoch is
one pass over the pool, capped by the budget rule (:mod:`tarf.methods.loop`).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from tarf.methods.base import UNIT, UnlearnData, hyperparameter
from tarf.methods.common import Pool, predictions, step
from tarf.methods.loop import Loop, LoopConfig, iterative
from tarf.training import unlearn_autocast

GUMBEL_SEED_OFFSET = 983  # the Gumbel noise's seed: ctx.seed * 1000 + this


@dataclass
class LoTUSConfig(LoopConfig):
    """The authors' CIFAR-100 values (``src/bash_scripts/*reproduce_results.sh``,
    ``src/helpers/config.py``), not tuned here."""

    epochs: int = 10  # passes over D_f and the retained subset (--epochs)
    lr: float = 1e-4  # AdamW learning rate (--lr)
    weight_decay: float = 5e-4  # AdamW weight decay (--weight_decay)
    # α, the temperature's slope; None = 32 (the authors' class unlearning) when no D_un
    # sample shares a label with D_f, else 2 (their instance-wise CIFAR-100 runs).
    alpha: float | None = None
    # Acc_val in [0, 1]: the forget accuracy aimed at (0: the authors' class unlearning;
    # their instance-wise runs use the original's accuracy on a validation split).
    val_acc: float = hyperparameter(0.0, UNIT)
    subset_fraction: float = 0.3  # share of D_un drawn once as the retained data (--subset_size)
    batch_size: int = 128  # batch of the mixed pool (--batch_size)


def gumbel(logits: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Gumbel(0, 1) noise shaped like ``logits``, as ``F.gumbel_softmax`` draws it."""
    return -torch.empty_like(logits).exponential_(generator=gen).log()


def lotus_targets(
    teacher_logits: torch.Tensor, forget: torch.Tensor, tau: float, gen: torch.Generator
) -> torch.Tensor:
    """LoTUS's teacher distribution per sample: ``softmax((z + g₁) / τ)`` where ``forget``
    holds, else ``one_hot(argmax(z + g₂))`` (``gumbel_softmax(z, τ)`` and
    ``gumbel_softmax(z, hard=True)``; both drawn for every row, soft first)."""
    z = teacher_logits.float()
    soft = F.softmax((z + gumbel(z, gen)) / tau, dim=1)
    hard = F.one_hot((z + gumbel(z, gen)).argmax(1), z.shape[1]).float()
    w = forget.float().unsqueeze(1)
    return w * soft + (1 - w) * hard


@iterative("lotus", LoTUSConfig)
def LoTUS(loop: Loop, data: UnlearnData) -> dict[str, Any]:
    """LoTUS: distil the original with Gumbel-softmax targets on D_f, τ from Acc_f."""
    c, ctx, student = loop.config, loop.ctx, loop.model
    shared = bool(torch.isin(data.y_forget.cpu(), data.y_remain.cpu()).any())
    alpha = c.alpha if c.alpha is not None else (2.0 if shared else 32.0)
    teacher = copy.deepcopy(loop.original).eval().requires_grad_(False)
    g = torch.Generator().manual_seed(ctx.seed * 1000 + 3)
    n_sub = int(c.subset_fraction * len(data.y_remain))
    sub = torch.randperm(len(data.y_remain), generator=g)[:n_sub]
    n_f = len(data.y_forget)
    x = torch.cat([data.x_forget, data.x_remain[sub]])
    pool = Pool(x, torch.arange(len(x)), ctx, seed_offset=4)  # "labels" = indices
    gen = torch.Generator(device=ctx.device).manual_seed(ctx.seed * 1000 + GUMBEL_SEED_OFFSET)
    opt = torch.optim.AdamW(student.parameters(), lr=c.lr, weight_decay=c.weight_decay)
    y_f = data.y_forget.cpu()
    taus: list[float] = []
    accs: list[float] = []
    stopped = None
    for epoch in loop:
        acc = round((predictions(student, data.x_forget, ctx) == y_f).float().mean().item(), 2)
        accs.append(acc)
        if acc - c.val_acc <= -0.01:  # forgotten enough: the authors' early stop
            stopped = epoch.t
            break
        tau = math.exp(alpha * (acc - c.val_acc))
        taus.append(tau)
        student.train()
        for xb, idx in epoch.batches(pool, c.batch_size):
            with torch.no_grad(), unlearn_autocast(ctx.device):
                t_logits = teacher(xb).float()
            t = lotus_targets(t_logits, idx < n_f, tau, gen)
            with unlearn_autocast(ctx.device):
                log_s = F.log_softmax(student(xb).float(), dim=1)
            step(opt, -(t * log_s).sum(1).mean())
    return {
        "alpha": alpha,
        "val_acc": c.val_acc,
        "temperature": [round(v, 6) for v in taus],
        "forget_acc": accs,
        "stopped_at_epoch": stopped,
        "retain_subset": n_sub,
    }
