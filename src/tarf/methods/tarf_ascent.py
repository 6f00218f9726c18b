"""TARF's ascent on the forget data: Phase I run to its target (``phase1=chance`` or
``floor``), the floor the ascent stops at (``ascent_floor=wrong-label``), which batches
Phase II uses (``phase2_batch=auto``), a Phase II epoch and its loss over one mixed
batch, and the step that skips a non-finite loss."""

from __future__ import annotations

import dataclasses
import math
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from tarf.methods.base import UnlearnContext, UnlearnData
from tarf.methods.common import (
    Pool,
    batch_statistics_batchnorm,
    ce,
    step,
    tail_statistics_batchnorm,
    unlearn_autocast,
)
from tarf.methods.loop import Epoch, Loop
from tarf.training import forward_logits

if TYPE_CHECKING:
    from tarf.methods.tarf import TARFConfig

# D_un samples whose wrong-label probabilities set the ascent floor ("wrong-label").
FLOOR_SAMPLES = 2000
# Phase I's batches shrink (below forget_batch_size) until its budget allows this many
# steps: a small budget still leaves the ascent steps enough to reach its target.
MIN_PHASE1_STEPS = 32


def wrong_label_floor(
    model: nn.Module, data: UnlearnData, ctx: UnlearnContext, samples: int = FLOOR_SAMPLES
) -> float:
    """Cross-entropy at which a forget sample counts as forgotten: −log of the median
    probability the original model gives a wrong label on (a seeded sample of) D_un.

    A retrained model never saw the target, so it gives the target's label about the
    probability it gives any wrong label. Plain ascent pushes far below that, which
    makes the forgotten examples stand out to a per-example test (docs/audit.md).
    Uses only D_un and the model (no leakage)."""
    gen = torch.Generator().manual_seed(ctx.seed + 7919)
    idx = torch.randperm(len(data.y_remain), generator=gen)[:samples]
    y = data.y_remain[idx]
    probs = forward_logits(model, data.x_remain[idx], ctx.device).softmax(1)
    wrong = torch.ones_like(probs, dtype=torch.bool)
    wrong[torch.arange(len(y)), y] = False
    return float(-probs[wrong].median().clamp_min(1e-12).log())


def label_ceilings(
    floor: float | None,
    retained_labels: torch.Tensor,
    num_classes: int,
    device: torch.device | None = None,
    retained: float = math.inf,
) -> torch.Tensor | None:
    """Per-label cross-entropy ceiling of the ascent: ``floor`` for labels the descent
    no longer trains (a model that never saw them gives them wrong-label probability),
    ``retained`` for labels the retained data still carries (model mismatch: the
    reference still calls part of D_f by its superclass, so there is no floor to aim
    at; ``math.log(num_classes)``, chance, stops the ascent where its label is no likelier
    than a uniform guess, past which it only fights the descent on the label's other
    members; inf, no ceiling)."""
    if floor is None:
        return None
    ceilings = torch.full((num_classes,), floor)
    ceilings[retained_labels.unique()] = retained
    return ceilings.to(device) if device is not None else ceilings  # once, not per batch


def ascent_loss(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    ctx: UnlearnContext,
    ceilings: torch.Tensor | None,
) -> torch.Tensor:
    """Mean cross-entropy of a forget batch for the ascent; with per-label ``ceilings``,
    samples already past their label's ceiling contribute no gradient (they stay in the
    mean's denominator, so the ascent fades as D_f reaches the floor)."""
    if ceilings is None:
        return ce(model, x, y, ctx)
    losses = ce(model, x, y, ctx, reduction="none")
    return torch.minimum(losses, ceilings.to(losses.device)[y]).mean()


def mixed_batch_loss(
    model: nn.Module,
    ascend: list[tuple[torch.Tensor, torch.Tensor]],
    descend: tuple[torch.Tensor, torch.Tensor] | None,
    k_t: float,
    ctx: UnlearnContext,
    ceilings: torch.Tensor | None,
    taught: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Phase II as the paper's Algorithm 1 writes it: one forward pass of one mini-batch
    (the forget batches and the retained batch together, so batch norm normalises one
    batch of D), each part weighted by its own mean: ``-k(t) · mean ℓ_f + mean ℓ_r``.
    The running statistics learn from the retained rows alone
    (:func:`tail_statistics_batchnorm`): the model is evaluated on the retained data's.
    ``taught`` (images, soft targets: ``retained_label=kept-head``) joins the descent."""
    parts = ascend + ([taught] if taught is not None else [])
    parts += [descend] if descend is not None else []
    batchnorm = (
        tail_statistics_batchnorm(model, len(descend[1]))
        if descend is not None
        else batch_statistics_batchnorm(model)  # forget rows only: no running statistics
    )
    with batchnorm, unlearn_autocast(ctx.device):
        logits = model(torch.cat([x for x, _ in parts])).float()
    loss, start = logits.new_zeros(()), 0
    for i, (_, y) in enumerate(parts):
        # y: labels, or the taught part's soft targets; with a taught part the descent
        # parts take cross-entropy's own mean, as those runs were measured (same value,
        # other rounding)
        reduction = "none" if i < len(ascend) or taught is None else "mean"
        part = F.cross_entropy(logits[start : start + len(y)], y, reduction=reduction)
        start += len(y)
        if i < len(ascend):
            if ceilings is not None:
                part = torch.minimum(part, ceilings.to(part.device)[y])
            loss = loss - k_t * part.mean()
        else:
            loss = loss + part.mean()
    return loss


def phase_two_epoch(
    loop: Loop,
    epoch: Epoch,
    forget: Pool,
    retain: Pool,
    extra: Pool | None,
    k_t: float,
    ceilings: torch.Tensor | None,
    taught: tuple[Pool, torch.Tensor] | None = None,
) -> int:
    """One Phase II epoch: steps of a forget batch (ascent, weight k_t) and a retained
    batch (descent); with ``extra`` (the set-aside data), also a batch of it (ascent);
    with ``taught`` (``retained_label=kept-head``: the forget samples of a kept label and
    their soft targets), also a batch of those (descent). ``phase2_batch`` decides how
    they meet batch norm. Returns the steps skipped as non-finite."""
    model, ctx, how = loop.model, loop.ctx, loop.config.phase2_batch
    fb, bs = loop.config.forget_batch_size, ctx.recipe.unlearn_batch_size
    ascending = [p for p in (forget, extra) if p is not None and len(p)]
    data = sum(map(len, ascending)) + len(retain) + (len(taught[0]) if taught else 0)
    size = fb * len(ascending) + bs + (fb if taught else 0)  # every sample a step forwards
    skipped_steps = 0
    for _ in epoch.steps(size, data):
        ascend = [p.batch(fb) for p in ascending]
        descend = retain.batch(bs) if len(retain) else None
        soft = None
        if taught is not None:
            x_t, rows = taught[0].batch(fb)
            soft = (x_t, taught[1][rows])
        if how == "mixed":
            loss = mixed_batch_loss(model, ascend, descend, k_t, ctx, ceilings, soft)
        else:
            loss = torch.zeros((), device=ctx.device)
            with batch_statistics_batchnorm(model) if how == "retain-stats" else nullcontext():
                for x, y in ascend:
                    loss = loss - k_t * ascent_loss(model, x, y, ctx, ceilings)
            if soft is not None:
                loss = loss + ce(model, *soft, ctx)
            if descend is not None:
                loss = loss + ce(model, *descend, ctx)
        skipped_steps += guarded_step(loop.opt, loss)
    return skipped_steps


def guarded_step(opt: torch.optim.Optimizer, loss: torch.Tensor) -> int:
    """Ascent on an unbounded loss can overflow; a non-finite loss is skipped, not applied
    (which would turn every weight into NaN). Returns 1 when skipped."""
    if not torch.isfinite(loss):
        opt.zero_grad(set_to_none=True)
        return 1
    step(opt, loss)
    return 0


def ascend_to(
    loop: Loop,
    epoch: Epoch,
    forget: Pool,
    rule: str,
    target: float,
    so_far: dict[str, Any] | None,
) -> dict[str, Any]:
    """Phase I by the change it must cause: ascent steps (weight 1) on D_f batches until a
    batch's loss reaches ``target`` nats, within the epoch's budget, in at least
    ``MIN_PHASE1_STEPS`` steps' worth of batches; then the optimiser's momentum is
    dropped, so Phase II does not start with the ascent's velocity. ``so_far`` continues
    a Phase I of several epochs."""
    model, ctx = loop.model, loop.ctx
    fb = max(1, min(loop.config.forget_batch_size, epoch.remaining // MIN_PHASE1_STEPS))
    out = so_far or {"rule": rule, "target_nats": target, "steps": 0, "reached": False}
    if out["reached"]:
        return out
    loss_value = float("nan")
    for xf, yf in epoch.until_cap(forget, fb):
        loss = ce(model, xf, yf, ctx)
        loss_value = float(loss.detach())  # one host sync per step: the rule reads it
        if loss_value >= target:
            out["reached"] = True
            break
        out["steps"] += 1 - guarded_step(loop.opt, -loss)
    out.update(last_loss=loss_value, batch_size=fb)
    loop.opt.state.clear()  # momentum buffers: Phase II starts from rest
    if not out["reached"]:
        out["warning"] = (
            f"Phase I did not bring D_f's loss to its target ({rule}) within its budget "
            f"({loss_value:.2f} of {target:.2f} nats after {out['steps']} steps): the "
            "forgetting, and an identification ranked by Phase I's change, may rest on too "
            "small a change; raise lr (--set lr=...) or t1"
        )
    return out


# Phase III's epochs (t0) and learning rate where the kept data still carries a label of
# D_f's (model mismatch) and where it does not (docs/methods.md, "Phase III's
# length in model mismatch").
PHASE3_KEPT_LABEL = {"t0": 3, "phase3_lr": "anneal"}
PHASE3_OTHERWISE = {"t0": 2, "phase3_lr": "constant"}


def with_phase3(c: TARFConfig, rule: dict[str, Any]) -> TARFConfig:
    """``c`` with ``t0`` and ``phase3_lr`` taken from ``rule`` where they are ``auto``
    (``None`` for ``t0``); a value set by hand stays."""
    t0 = c.t0 if c.t0 is not None else rule["t0"]
    lr = c.phase3_lr if c.phase3_lr != "auto" else rule["phase3_lr"]
    return dataclasses.replace(c, t0=t0, phase3_lr=lr)


def resolve_by_kept_labels(
    c: TARFConfig, data: UnlearnData, kept: set[int], details: dict[str, Any]
) -> TARFConfig:
    """``c`` with its ``auto`` fields decided once identification has said what is kept
    (``kept``: the labels the kept data carries). Where it still carries a label of
    D_f's (model mismatch), the label's other members must pull D_f back to what a model
    that never saw it answers: one mixed Phase II batch (and the running statistics
    recomputed on the kept data), then a longer Phase III whose rate falls to zero
    (:data:`PHASE3_KEPT_LABEL`); otherwise separate batches (statistics as trained) and
    the two constant-rate epochs of :data:`PHASE3_OTHERWISE`. The decisions go in
    ``details["phase2"]`` and ``details["phase3"]``."""
    shared = sorted(set(data.y_forget.unique().tolist()) & kept)
    labels = [data.class_names[i] for i in shared]
    if c.phase2_batch == "auto" or c.batchnorm_stats == "auto":
        batch = c.phase2_batch if c.phase2_batch != "auto" else ("mixed" if shared else "separate")
        stats = c.batchnorm_stats
        if stats == "auto":
            stats = "retained" if batch == "mixed" else "trained"
        details["phase2"] = {"batch": batch, "batchnorm_stats": stats, "labels_kept": labels}
        c = dataclasses.replace(c, phase2_batch=batch, batchnorm_stats=stats)
    if c.t0 is None or c.phase3_lr == "auto":
        c = with_phase3(c, PHASE3_KEPT_LABEL if shared else PHASE3_OTHERWISE)
        details["phase3"] = {"t0": c.t0, "lr": c.phase3_lr, "labels_kept": labels}
    return c
