"""RL: random labels (the Unlearn-Sparse/SalUn harness's ``RL``).

D_f with random labels and D_un with its own labels are trained on together with
cross-entropy, as one shuffled pool (the harness concatenates the relabelled forget set
and the retain set into one loader). Each forget sample gets a new label, drawn
uniformly from the classes other than its own, every time it appears in a batch
(seeded). An epoch is one pass over D_f ∪ D_un, capped by the budget rule
(:mod:`tarf.methods.loop`), so forget and remain samples keep their proportion in the data.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from tarf.methods.base import UnlearnContext, UnlearnData
from tarf.methods.common import Pool
from tarf.methods.loop import Loop, LoopConfig, iterative

LABEL_SEED_OFFSET = 997  # the random-label generator's seed: ctx.seed * 1000 + this


def random_other_labels(
    y: torch.Tensor, num_classes: int, generator: torch.Generator
) -> torch.Tensor:
    """For each label in ``y``, a class drawn uniformly from the *other* classes
    (``generator`` on ``y``'s device)."""
    if num_classes < 2:
        raise ValueError("random labels need at least two classes")
    r = torch.randint(0, num_classes - 1, y.shape, generator=generator, device=y.device)
    return r + (r >= y).long()


def relabel_forget(
    y: torch.Tensor,
    forget: torch.Tensor,
    num_classes: int,
    generator: torch.Generator,
    sync_free: bool | None = None,
) -> torch.Tensor:
    """``y`` with the label of each sample where ``forget`` holds replaced by a random
    other class. ``sync_free`` (default: off the CPU) draws for every sample and keeps
    the forget samples' draws, so the host never waits for the GPU to learn how many
    there are; on a CPU only the forget samples draw (the seeded stream of CPU runs)."""
    if sync_free is None:
        sync_free = y.device.type != "cpu"
    if sync_free:
        return torch.where(forget, random_other_labels(y, num_classes, generator), y)
    if not forget.any():
        return y
    y = y.clone()
    y[forget] = random_other_labels(y[forget], num_classes, generator)
    return y


class RelabelPool:
    """D_f ∪ D_un as one seeded pool; forget samples get fresh random labels per batch.
    Labels and their generator live on the context's device, next to the pool."""

    def __init__(self, data: UnlearnData, ctx: UnlearnContext, seed_offset: int = 4) -> None:
        self.n_forget = len(data.y_forget)
        self.num_classes = data.num_classes
        self.ctx = ctx
        self.y = torch.cat([data.y_forget, data.y_remain]).to(ctx.device)
        x = torch.cat([data.x_forget, data.x_remain])
        # The pool hands out indices as "labels", so each batch knows its forget samples.
        self.pool = Pool(x, torch.arange(len(self.y)), ctx, seed_offset)
        self.label_gen = torch.Generator(device=ctx.device).manual_seed(
            ctx.seed * 1000 + LABEL_SEED_OFFSET
        )

    def __len__(self) -> int:
        return len(self.y)

    def epoch(self, samples: int, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches totalling ``samples``: images and labels, forget labels randomised."""
        for xb, idx in self.pool.epoch(samples, batch_size):
            forget = idx < self.n_forget
            yield xb, relabel_forget(self.y[idx], forget, self.num_classes, self.label_gen)


@dataclass
class RLConfig(LoopConfig):
    """Random-label hyperparameters (defaults: the harness's RL)."""


@iterative("rl", RLConfig)
def RL(loop: Loop, data: UnlearnData) -> dict[str, Any]:
    """RL: random labels on D_f plus cross-entropy on D_un."""
    loop.train(RelabelPool(data, loop.ctx), loop.loss)
    return {"epochs": loop.epochs, "lr": loop.lr}
