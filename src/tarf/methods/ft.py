"""FT: fine-tune on D_un with cross-entropy (the Unlearn-Sparse/SalUn harness's ``FT``).

The simplest baseline: it relies on catastrophic forgetting of D_f while training on the
rest. It never reads D_f (not even its size). An epoch is one seeded pass over D_un,
capped by the budget rule (:mod:`tarf.methods.loop`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tarf.methods.base import UnlearnData
from tarf.methods.common import Pool
from tarf.methods.loop import Loop, LoopConfig, iterative


@dataclass
class FTConfig(LoopConfig):
    """Fine-tuning hyperparameters (defaults: the harness's FT)."""


@iterative("ft", FTConfig)
def FT(loop: Loop, data: UnlearnData) -> dict[str, Any]:
    """FT: cross-entropy on D_un only (D_f is never touched)."""
    loop.train(Pool(data.x_remain, data.y_remain, loop.ctx, seed_offset=2), loop.loss)
    return {"epochs": loop.epochs, "lr": loop.lr}
