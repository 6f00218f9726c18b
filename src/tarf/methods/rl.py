"""RL: random labels (SPEC section 6; the Unlearn-Sparse/SalUn harness's ``RL``).

D_f with random labels and D_un with its own labels are trained on together with
cross-entropy, as one shuffled pool (the harness concatenates the relabelled forget set
and the retain set into one loader). Each forget sample gets a new label, drawn
uniformly from the classes other than its own, every time it appears in a batch
(seeded). An epoch is one pass over D_f ∪ D_un, or a seeded subsample of
``ctx.epoch_samples()`` samples when that is smaller (budget rule, SPEC section 7), so
forget and remain samples keep their proportion in the data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from tarf.methods.base import Method, MethodResult, UnlearnContext, UnlearnData, register
from tarf.methods.common import Pool, ce, clone, sgd, step

LABEL_SEED_OFFSET = 997  # the random-label generator's seed: ctx.seed * 1000 + this


def random_other_labels(
    y: torch.Tensor, num_classes: int, generator: torch.Generator
) -> torch.Tensor:
    """For each label in ``y`` (CPU), a class drawn uniformly from the *other* classes."""
    if num_classes < 2:
        raise ValueError("random labels need at least two classes")
    r = torch.randint(0, num_classes - 1, y.shape, generator=generator)
    return r + (r >= y).long()


class RelabelPool:
    """D_f ∪ D_un as one seeded pool; forget samples get fresh random labels per batch."""

    def __init__(self, data: UnlearnData, ctx: UnlearnContext, seed_offset: int = 4) -> None:
        self.n_forget = len(data.y_forget)
        self.num_classes = data.num_classes
        self.ctx = ctx
        self.y = torch.cat([data.y_forget, data.y_remain]).cpu()
        x = torch.cat([data.x_forget, data.x_remain])
        # The pool hands out indices as "labels", so each batch knows its forget samples.
        self.pool = Pool(x, torch.arange(len(self.y)), ctx, seed_offset)
        self.label_gen = torch.Generator().manual_seed(ctx.seed * 1000 + LABEL_SEED_OFFSET)

    def __len__(self) -> int:
        return len(self.y)

    def epoch(self, samples: int, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches totalling ``samples``: images and labels, forget labels randomised."""
        for xb, idx in self.pool.epoch(samples, batch_size):
            idx = idx.cpu()
            yb = self.y[idx].clone()
            forget = idx < self.n_forget
            if forget.any():
                yb[forget] = random_other_labels(yb[forget], self.num_classes, self.label_gen)
            yield xb, yb.to(self.ctx.device)


def relabel_train(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    data: UnlearnData,
    ctx: UnlearnContext,
    epochs: int,
    per_epoch: int,
    update: Callable[[torch.optim.Optimizer, torch.Tensor], None] = step,
) -> None:
    """RL's loop: ``epochs`` × ``per_epoch`` samples of the relabelled pool; ``update``
    does one optimizer step from a loss (SalUn passes its masked step)."""
    pool = RelabelPool(data, ctx)
    for _ in range(epochs):
        for xb, yb in pool.epoch(per_epoch, ctx.recipe.unlearn_batch_size):
            update(opt, ce(model, xb, yb, ctx))


@dataclass
class RLConfig:
    """Random-label hyperparameters (defaults: SPEC section 6, the harness's RL)."""

    epochs: int = 10  # SPEC 6: 10 epochs (harness --unlearn_epochs 10)
    lr: float | None = None  # SPEC 6: 0.01; None = the recipe's unlearn_lr (0.01 in cpu/paper)


@register
class RL(Method):
    """RL: random labels on D_f plus cross-entropy on D_un."""

    name = "rl"
    Config = RLConfig

    def run(self, model: nn.Module, data: UnlearnData, ctx: UnlearnContext) -> MethodResult:
        c = self.config
        lr = c.lr if c.lr is not None else ctx.recipe.unlearn_lr
        model = clone(model)
        opt = sgd(model.parameters(), lr, ctx)
        per_epoch = min(ctx.epoch_samples(), len(data.y_forget) + len(data.y_remain))
        relabel_train(model, opt, data, ctx, c.epochs, per_epoch)
        record: dict[str, Any] = {
            "epochs": c.epochs,
            "lr": lr,
            "epoch_samples": per_epoch,
            "samples": c.epochs * per_epoch,
        }
        return MethodResult(model.eval(), record)
