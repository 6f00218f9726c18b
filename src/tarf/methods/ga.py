"""GA: gradient ascent on D_f (the Unlearn-Sparse/SalUn harness's ``GA``).

Maximises the cross-entropy of the forget data, and only of it: D_un is never used, so
nothing holds the rest of the model in place (which is why the learning rate must be
small and the run short). An epoch is one seeded pass over D_f, capped by the budget
rule (:mod:`tarf.methods.loop`); 5 epochs thus cost at most half of the other methods.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tarf.methods.base import UnlearnData
from tarf.methods.common import Pool, frozen_batchnorm
from tarf.methods.loop import Loop, LoopConfig, iterative


@dataclass
class GAConfig(LoopConfig):
    """Gradient-ascent hyperparameters (defaults: the harness's GA, the rate tuned)."""

    epochs: int = 5  # the harness's --unlearn_epochs for GA
    # Learning rate; the default was tuned on all-matched CIFAR-100, cpu recipe
    # (docs/methods.md, "Tuning").
    lr: float = 3e-5
    # Keep batch-norm running statistics at θ_o: only forget data flows through the
    # model, and D_f-only batches would otherwise shift them toward D_f.
    freeze_bn: bool = True


@iterative("ga", GAConfig)
def GA(loop: Loop, data: UnlearnData) -> dict[str, Any]:
    """GA: maximise cross-entropy on D_f only."""
    c = loop.config
    forget = Pool(data.x_forget, data.y_forget, loop.ctx, seed_offset=1)
    bn = frozen_batchnorm if c.freeze_bn else None
    loop.train(forget, lambda x, y, t: -loop.loss(x, y), batchnorm=bn)
    return {"epochs": c.epochs, "lr": c.lr, "freeze_bn": c.freeze_bn}
