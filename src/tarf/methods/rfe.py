"""RFE (Cheng et al., ICLR 2026, "Machine Unlearning under Retain–Forget Entanglement").

D_un splits by D_f's model labels: D_adj, the retained samples that carry one of them
(model mismatch: the sibling sub-classes under the forgotten sub-class's superclass, the
paper's CIFAR-100 setting), and D_rem, the rest. Stage 1 (augmented Lagrangian): steps
on ``−γ·CE_clip(D_f) + λ·h + μ/2·h²``, ``h = CE(D_rem) − CE_θo(D_rem)``, then ``λ += μ·h``.
Stage 2 (W-PGD; none when D_adj is empty): SGD along the momentum of ∇CE(D_adj) projected
off span{∇L̃_f, ∇CE(D_rem)}, ``L̃_f = (1 − α)·mean(−ℓ_f) + α·W₂²`` between the sorted
per-sample D_f losses and those of the model that ended Stage 1. Follows
``Jingpu-Cheng/unlearning-entanglement`` (``src/method.py``; values from
``experiments/cifar100_resnet18/run.py``): eval mode throughout (frozen batch norm), no
augmentation. Each step's samples through forward+backward count against the budget
(:mod:`tarf.methods.loop`); a step larger than an epoch's cap shrinks its parts together.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from tarf.methods.base import AT_LEAST_ONE, POSITIVE, UNIT, UnlearnData, hyperparameter
from tarf.methods.common import Pool, ce, step
from tarf.methods.loop import Loop, LoopConfig, iterative
from tarf.training import eval_batch_size, to_float, unlearn_autocast

FORGET_CHUNK, REMOTE_CHUNK = 128, 512  # the authors' Stage-2 batches of D_f and D_rem


@dataclass
class RFEConfig(LoopConfig):
    """The authors' CIFAR-100 superclass run (method "ours"), not tuned here."""

    epochs: int = 7  # Stage-1 epochs, then Stage-2 epochs (the authors: 1 + 6)
    stage1_epochs: int = hyperparameter(1, AT_LEAST_ONE)  # epochs of Stage 1
    lr: float = 2.5e-6  # Stage-1 Adam learning rate
    mu: float = 10.0  # μ, the penalty weight and the multiplier's step
    gamma: float = 1.0  # γ, the weight of the forget term
    clip: float = hyperparameter(10.0, POSITIVE)  # c: per-sample D_f CE past it has no gradient
    remote_batch_size: int = 128  # D_rem samples per Stage-1 step
    forget_batch_size: int = 16  # D_f samples per Stage-1 step
    stage2_lr: float = 2e-5  # Stage-2 SGD learning rate
    alpha: float = hyperparameter(0.5, UNIT)  # α, weight of W₂² in L̃_f (0: the no-W₂ ablation)
    momentum: float = hyperparameter(0.9, UNIT)  # of the D_adj gradient, before projection
    adjacent_batch_size: int = 128  # D_adj samples per Stage-2 step
    forget_grad_samples: int = 1280  # D_f samples for ∇L̃_f per Stage-2 step (10 × 128; ≤ |D_f|)
    remote_grad_samples: int = 5120  # D_rem samples for ∇CE(D_rem) per Stage-2 step (10 × 512)


def clipped_ce(logits: torch.Tensor, y: torch.Tensor, clip: float) -> torch.Tensor:
    """Mean CE whose per-sample value past ``clip`` keeps its value but not its gradient."""
    loss = F.cross_entropy(logits.float(), y, reduction="none")
    return torch.where(loss < clip, loss, clip + (loss - clip).detach()).mean()


def w2_forget_loss(
    logits: torch.Tensor, ref_logits: torch.Tensor, y: torch.Tensor, alpha: float
) -> torch.Tensor:
    """L̃_f of one batch on the negated losses, as the authors: ``(1 − α)·mean(−ℓ) +
    α·mean((sort(−ℓ) − sort(−ℓ_ref))²)``, the last term W₂² of the two empirical
    distributions."""
    cur = -F.cross_entropy(logits.float(), y, reduction="none")
    ref = -F.cross_entropy(ref_logits.float(), y, reduction="none")
    w2 = (cur.sort().values - ref.sort().values).square().mean()
    return (1 - alpha) * cur.mean() + alpha * w2


def project(v: torch.Tensor, g1: torch.Tensor, g2: torch.Tensor, n_tensors: int) -> torch.Tensor:
    """``v`` minus its projection on span{g1, g2} (flat vectors): the authors' 2 × 2 Gram
    solve in float64, with their 1e-8 per parameter tensor on the diagonal."""
    a = torch.stack([g1, g2]).double()
    gram = a @ a.T + 1e-8 * n_tensors * torch.eye(2, dtype=torch.float64, device=a.device)
    coef = torch.linalg.solve(gram, a @ v.double())
    return v - (coef[0] * g1.double() + coef[1] * g2.double()).to(v.dtype)


def flat_grad(loss: torch.Tensor, params: list[nn.Parameter]) -> torch.Tensor:
    gs = torch.autograd.grad(loss, params, allow_unused=True)
    return torch.cat(
        [(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(gs, params)]
    )


def _logits(model: nn.Module, x: torch.Tensor, device: torch.device) -> torch.Tensor:
    with unlearn_autocast(device):
        return model(x).float()


@torch.no_grad()
def mean_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> float:
    """Mean CE over all of (x, y), un-augmented, in the model's current mode."""
    total, n = 0.0, eval_batch_size(device)
    for xb, yb in zip(x.split(n), y.split(n)):
        logits = _logits(model, to_float(xb, device), device)
        total += F.cross_entropy(logits, yb.to(device), reduction="sum").item()
    return total / max(len(y), 1)


def fit(sizes: list[int], cap: int) -> list[int]:
    """``sizes`` scaled down together when their sum exceeds an epoch's cap."""
    total = sum(sizes)
    return sizes if total <= cap else [max(1, s * cap // total) for s in sizes]


@iterative("rfe", RFEConfig)
def RFE(loop: Loop, data: UnlearnData) -> dict[str, Any]:
    """RFE: augmented-Lagrangian forgetting, then W₂-guided projected repair of D_adj."""
    c, ctx, model = loop.config, loop.ctx, loop.model.eval()
    dev = ctx.device
    adj = torch.isin(data.y_remain.cpu(), torch.unique(data.y_forget.cpu()))
    forget = Pool(data.x_forget, data.y_forget, ctx, seed_offset=1)
    # Random forgetting: D_f spans every label, so no retained sample is remote. The
    # constraint then holds all of D_un in place, and Stage 2 is skipped: its repair
    # direction (D_adj = D_un) would be projected off its own gradient.
    no_remote = not bool((~adj).any())
    rem = torch.ones_like(adj) if no_remote else ~adj
    remote = Pool(data.x_remain[rem], data.y_remain[rem], ctx, seed_offset=2)
    adjacent = Pool(data.x_remain[adj], data.y_remain[adj], ctx, seed_offset=3)
    pinned = mean_loss(model, remote.x, remote.y, dev)  # CE_θo(D_rem), the constraint's value
    rb, fb = fit([c.remote_batch_size, c.forget_batch_size], loop.cap)
    opt = torch.optim.Adam(model.parameters(), lr=c.lr)
    multiplier = torch.zeros((), device=dev)
    params = [p for p in model.parameters() if p.requires_grad]
    sizes = [c.adjacent_batch_size, min(c.forget_grad_samples, len(forget))]
    sizes = fit([*sizes, min(c.remote_grad_samples, len(remote))], loop.cap)
    ref, velocity, constraint, stage2_steps = None, torch.zeros(0), [], 0
    for epoch in loop:
        if epoch.t < c.stage1_epochs:
            for _ in epoch.steps(rb + fb, len(remote) * (rb + fb) // rb):
                (xr, yr), (xf, yf) = remote.batch(rb, False), forget.batch(fb, False)
                h = ce(model, xr, yr, ctx) - pinned
                lf = clipped_ce(_logits(model, xf, dev), yf, c.clip)
                step(opt, -c.gamma * lf + multiplier * h + 0.5 * c.mu * h**2)
                multiplier += c.mu * h.detach()
            constraint.append(round(float(h.detach()), 5))
            continue
        if not len(adjacent) or no_remote:  # Stage 1 is the whole method
            break
        if ref is None:  # θ̄, the model at the end of Stage 1
            ref = copy.deepcopy(model).requires_grad_(False)
            opt = torch.optim.SGD(params, lr=c.stage2_lr)
            velocity = torch.zeros(sum(p.numel() for p in params), device=dev)
        na, nf, nr = sizes
        for _ in epoch.steps(na + nf + nr, len(adjacent) * (na + nf + nr) // na):
            xa, ya = adjacent.batch(na, False)
            v = c.momentum * velocity + flat_grad(ce(model, xa, ya, ctx), params)
            xf, yf = forget.batch(nf, False)
            g_f = sum(
                flat_grad(
                    w2_forget_loss(_logits(model, x, dev), _logits(ref, x, dev), y, c.alpha), params
                )
                for x, y in zip(xf.split(FORGET_CHUNK), yf.split(FORGET_CHUNK))
            )
            xr, yr = remote.batch(nr, False)
            g_r = sum(
                flat_grad(-ce(model, x, y, ctx), params)
                for x, y in zip(xr.split(REMOTE_CHUNK), yr.split(REMOTE_CHUNK))
            )
            velocity = project(v, g_f, g_r, len(params))
            opt.zero_grad(set_to_none=True)
            for p, g in zip(params, velocity.split([p.numel() for p in params])):
                p.grad = g.view_as(p).clone()
            opt.step()
            stage2_steps += 1
    return {
        "adjacent": int(adj.sum()),
        "remote": 0 if no_remote else len(remote),
        "pinned_remote_loss": round(pinned, 5),
        "multiplier": round(float(multiplier), 5),
        "stage1_constraint": constraint,  # h at the last step of each Stage-1 epoch
        "stage1_batches": [rb, fb],
        "stage2_sizes": sizes,  # D_adj, D_f, D_rem samples per Stage-2 step
        "stage2_steps": stage2_steps,
    }
