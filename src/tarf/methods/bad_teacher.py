"""Bad Teacher (Chundawat et al., AAAI 2023, "Can bad teaching induce forgetting?").

The student, a copy of the original, is distilled toward two teachers: the competent one
(the original model) on retained samples and an incompetent one (the same architecture,
randomly initialised) on forget samples, so it keeps what D_un needs and forgets D_f.
Follows ``vikram2000b/bad-teaching-unlearning`` (``unlearn.py``: ``UnlearnerLoss``,
``blindspot_unlearner``): one shuffled pool of D_f and a seeded 30 % of D_un, KL at
temperature T, Adam. An epoch is one pass over that pool, cut at the budget rule's cap
(:mod:`tarf.methods.loop`); the teachers' forward passes are not counted (no backward).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from tarf.methods.base import POSITIVE, UnlearnContext, UnlearnData, hyperparameter
from tarf.methods.common import Pool, step
from tarf.methods.loop import Loop, LoopConfig, iterative
from tarf.training import unlearn_autocast


@dataclass
class BadTeacherConfig(LoopConfig):
    """The authors' CIFAR values (their notebook and unlearn.py), not tuned here."""

    epochs: int = 1  # passes over the mixed pool (the authors' 1)
    lr: float = 1e-4  # Adam's learning rate (the authors' 0.0001)
    kl_temperature: float = hyperparameter(1.0, POSITIVE)  # T of the KL (KL_temperature)
    retain_fraction: float = 0.3  # share of D_un mixed with D_f (the authors' 30 % of D_r)
    batch_size: int = 256  # mixed batch (the authors' 256)


def bad_teacher_loss(
    student: torch.Tensor,
    competent: torch.Tensor,
    incompetent: torch.Tensor,
    forget: torch.Tensor,
    T: float,
) -> torch.Tensor:
    """The authors' ``UnlearnerLoss``: KL(teacher ‖ student) at temperature T, the
    teacher the incompetent one on forget rows and the competent one elsewhere, averaged
    over every element (``F.kl_div``'s ``reduction='mean'``, no T²)."""
    p_t = torch.where(
        forget.view(-1, 1),
        F.softmax(incompetent.float() / T, 1),
        F.softmax(competent.float() / T, 1),
    )
    log_ps = F.log_softmax(student.float() / T, 1)
    return F.kl_div(log_ps, p_t, reduction="sum") / log_ps.numel()


def incompetent_teacher(model: nn.Module, seed: int) -> nn.Module:
    """A copy of ``model`` whose every module has run ``reset_parameters()`` (a fresh,
    untrained network of the same architecture), seeded; built on the CPU so that the
    weights do not depend on the device and no device's random state moves."""
    device = next(model.parameters()).device
    bad = copy.deepcopy(model).cpu()
    with torch.random.fork_rng(devices=[]):  # the CPU generator only, restored after
        torch.default_generator.manual_seed(seed)
        for m in bad.modules():
            if callable(getattr(m, "reset_parameters", None)):
                m.reset_parameters()
    return bad.to(device).eval().requires_grad_(False)


def _logits(model: nn.Module, x: torch.Tensor, ctx: UnlearnContext) -> torch.Tensor:
    with unlearn_autocast(ctx.device):
        return model(x).float()


@iterative("bad-teacher", BadTeacherConfig)
def BadTeacher(loop: Loop, data: UnlearnData) -> dict[str, Any]:
    """Bad Teacher: distil from the original on D_un, from a random network on D_f."""
    c, ctx, student = loop.config, loop.ctx, loop.model
    good = copy.deepcopy(loop.original).eval().requires_grad_(False)
    bad = incompetent_teacher(loop.original, ctx.seed)
    gen = torch.Generator().manual_seed(ctx.seed)
    n_un = len(data.y_remain)
    keep = torch.randperm(n_un, generator=gen)[: round(c.retain_fraction * n_un)]
    x = torch.cat([data.x_forget, data.x_remain[keep]])
    is_forget = torch.arange(len(x)) < len(data.y_forget)  # the pool's "labels"
    pool = Pool(x, is_forget, ctx, seed_offset=5)
    loop.opt = torch.optim.Adam(student.parameters(), lr=loop.lr)  # the authors' optimiser
    losses = []
    for epoch in loop:
        total = torch.zeros((), device=ctx.device)
        n = 0
        for xb, fb in epoch.batches(pool, c.batch_size):
            with torch.no_grad():
                t_good, t_bad = _logits(good, xb, ctx), _logits(bad, xb, ctx)
            loss = bad_teacher_loss(_logits(student, xb, ctx), t_good, t_bad, fb, c.kl_temperature)
            step(loop.opt, loss)
            total += loss.detach()
            n += 1
        losses.append(round(total.item() / max(n, 1), 6))
    return {"lr": loop.lr, "retain_samples": len(keep), "loss": losses}
