"""UNSIR (Tarun et al., IEEE TNNLS 2023, "Fast Yet Effective Machine Unlearning").

Per forget label ``c``, a noise batch ``z`` learnt to *maximise* the frozen original's
cross-entropy on ``c`` (Adam on ``−CE(f(z), c) + λ · mean_i Σ z_i²``); then an impair
epoch (cross-entropy on the noise, labelled ``c``, shuffled with a retained subset: the
first ``retain_per_class`` samples of each D_un label) and repair epochs (the subset
alone), each with a fresh Adam. ``z`` lives in the normalised input space, as in the
authors' notebook, and enters a tarf model as the image ``mean + std · z``. Follows
``vikram2000b/Fast-Machine-Unlearning`` (``Machine Unlearning.ipynb``). The noise work
(one forward+backward per noise image and step) is charged to the budget
(:mod:`tarf.methods.loop`), at most ``noise_fraction`` of it: fewer noise images when
more would not fit. D_f's images are never used, only its labels: with model mismatch
the noise impairs the whole shared label, and its retained samples repair it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from tarf.methods.base import AT_LEAST_ONE, UnlearnContext, UnlearnData, hyperparameter
from tarf.methods.common import Pool, ce, step
from tarf.methods.loop import Loop, LoopConfig, iterative
from tarf.training import channel_stats, unlearn_autocast

NOISE_SEED_OFFSET = 991  # the noise initialisation's seed: ctx.seed * 1000 + this


@dataclass
class UNSIRConfig(LoopConfig):
    """The authors' notebook values (CIFAR-10; their code gives none for CIFAR-100), not
    tuned here."""

    epochs: int = 2  # epoch 1 impairs, the others repair (the notebook: one of each)
    lr: float = 0.02  # Adam learning rate of the impair epoch
    repair_lr: float = 0.01  # Adam learning rate of the repair epochs
    batch_size: int = 256  # batch of the impair and repair epochs
    noise_batch_size: int = 256  # noise images learnt per forget label
    noise_steps: int = hyperparameter(40, AT_LEAST_ONE)  # Adam steps on the noise (5 × 8)
    noise_lr: float = 0.1  # Adam learning rate of the noise
    noise_l2: float = 0.1  # λ, weight of the noise's L2 regulariser mean_i Σ z_i²
    noise_samples_per_label: int = 5120  # noise entries per label in the impair pool (20 × 256)
    retain_per_class: int = hyperparameter(1000, AT_LEAST_ONE)  # D_un samples kept per label
    noise_fraction: float = 0.5  # ours: the noise may use at most this share of the budget


def input_stats(model: nn.Module, data: UnlearnData) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's input normalisation, (1, C, 1, 1) each, in [0, 1] units: its own
    ``mean``/``std`` buffers (tarf models), else D_un's channel statistics."""
    mean, std = getattr(model, "mean", None), getattr(model, "std", None)
    if not (isinstance(mean, torch.Tensor) and isinstance(std, torch.Tensor)):
        mean, std = map(torch.tensor, channel_stats(data.x_remain))
    return mean.detach().float().view(1, -1, 1, 1), std.detach().float().view(1, -1, 1, 1)


def learn_noise(
    model: nn.Module,
    label: int,
    z: torch.Tensor,
    stats: tuple[torch.Tensor, torch.Tensor],
    c: UNSIRConfig,
    steps: int,
    ctx: UnlearnContext,
) -> tuple[torch.Tensor, list[float]]:
    """``z`` after ``steps`` Adam steps on ``−CE(f(mean + std·z), label) + λ·mean Σ z²``,
    and the CE before and after. The model is in eval mode and not modified (gradients
    are taken for ``z`` only)."""
    mean, std = (t.to(ctx.device) for t in stats)
    z = z.detach().clone().to(ctx.device).requires_grad_(True)
    opt = torch.optim.Adam([z], lr=c.noise_lr)
    y = torch.full((len(z),), label, dtype=torch.long, device=ctx.device)
    was, losses = model.training, []
    model.eval()
    try:
        for i in range(steps + 1):
            with unlearn_autocast(ctx.device), torch.set_grad_enabled(i < steps):
                loss = F.cross_entropy(model(mean + std * z).float(), y)
            if i in (0, steps):
                losses.append(round(loss.item(), 5))
            if i < steps:
                penalty = c.noise_l2 * z.square().sum((1, 2, 3)).mean()
                (z.grad,) = torch.autograd.grad(penalty - loss, z)
                opt.step()
    finally:
        model.train(was)
    return z.detach(), losses


def per_class_subset(y: torch.Tensor, per_class: int) -> torch.Tensor:
    """Indices of the first ``per_class`` samples of each label (the notebook's
    ``classwise_train[i][:num_samples_per_class]``)."""
    keep = torch.zeros(len(y), dtype=torch.bool)
    for label in torch.unique(y):
        keep[(y == label).nonzero().flatten()[:per_class]] = True
    return keep.nonzero().flatten()


class ImpairPool:
    """The impair epoch's data: ``entries`` noise entries (the noise images repeated,
    each with its forget label) and the retain pool's samples, shuffled together; with
    no entries, the repair epochs' data. Nothing is augmented (the notebook does not)."""

    def __init__(
        self, noise: torch.Tensor, noise_y: torch.Tensor, entries: int, retain: Pool, seed: int
    ) -> None:
        self.noise, self.noise_y, self.entries, self.retain = noise, noise_y, entries, retain
        n = entries + len(retain)
        self.order = Pool(torch.arange(n), torch.arange(n), retain.ctx, seed)

    def __len__(self) -> int:
        return self.entries + len(self.retain)

    def epoch(self, samples: int, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        done = 0
        while done < samples:
            idx = self.order.next_indices(min(batch_size, samples - done))
            done += len(idx)
            k = idx[idx < self.entries] % len(self.noise)
            r = idx[idx >= self.entries] - self.entries
            x = torch.cat([self.noise[k], self.retain.images(r, augmented=False)])
            yield x, torch.cat([self.noise_y[k], self.retain.y[r]])


@iterative("unsir", UNSIRConfig)
def UNSIR(loop: Loop, data: UnlearnData) -> dict[str, Any]:
    """UNSIR: error-maximising noise per forget label, then impair and repair."""
    c, ctx = loop.config, loop.ctx
    labels = sorted(set(data.y_forget.tolist()))
    share = int(c.noise_fraction * loop.epochs * ctx.epoch_samples()) // max(len(labels), 1)
    if share < 1:  # not one noise image per forget label fits in its share of the budget
        raise ValueError(
            f"unsir: the noise's share of the budget ({c.noise_fraction:g}) holds less than "
            f"one image for each of the {len(labels)} forget labels; raise noise_fraction "
            "(--set noise_fraction=...) or epochs"
        )
    size = max(1, min(c.noise_batch_size, share // c.noise_steps))
    steps = max(1, min(c.noise_steps, share // size))
    stats = input_stats(loop.original, data)
    gen = torch.Generator().manual_seed(ctx.seed * 1000 + NOISE_SEED_OFFSET)
    noise, losses = [], []
    for label in labels:
        z0 = torch.randn(size, *data.x_forget.shape[1:], generator=gen)
        z, ce_z = learn_noise(loop.original, label, z0, stats, c, steps, ctx)
        noise.append(stats[0].to(ctx.device) + stats[1].to(ctx.device) * z)
        losses.append(ce_z)
    loop.charge(len(labels) * size * steps)  # one forward+backward per noise image and step
    keep = per_class_subset(data.y_remain.cpu(), c.retain_per_class)
    retain = Pool(data.x_remain[keep], data.y_remain[keep], ctx, seed_offset=2)
    noise_y = torch.tensor(labels, device=ctx.device).repeat_interleave(size)
    entries = c.noise_samples_per_label * len(labels)
    impair = ImpairPool(torch.cat(noise), noise_y, entries, retain, seed=5)
    repair = ImpairPool(impair.noise, noise_y, 0, retain, seed=6)
    opt = None
    for epoch in loop:
        if epoch.t <= 1:  # a fresh Adam for each phase, as the notebook
            lr = c.lr if epoch.t == 0 else c.repair_lr
            opt = torch.optim.Adam(loop.model.parameters(), lr=lr)
        for x, y in epoch.batches(impair if epoch.t == 0 else repair, c.batch_size):
            step(opt, ce(loop.model, x, y, ctx))
    return {
        "forget_labels": [data.class_names[k] for k in labels],
        "noise_images": size,
        "noise_steps": steps,
        "noise_ce": losses,  # per label: the original's CE on the initial, the learnt noise
        "retain_subset": len(keep),
    }
