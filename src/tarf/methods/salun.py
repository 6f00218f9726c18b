"""SalUn: saliency unlearning (Fan et al., ICLR 2024).

1. Saliency mask at θ_o: m = 1 for the top ``mask_ratio`` of |∇_θ CE(D_f)| over all
   parameters, one global threshold (SalUn's ``generate_mask.py`` ranks all entries
   together). The gradient is taken over all of D_f (batched, eval mode, no
   augmentation), like the repository's pass over the forget loader.
2. RL (random labels on D_f + cross-entropy on D_un, :mod:`tarf.methods.rl`), updating
   only the salient weights: gradients are multiplied by m before each step, and after
   each step the weights outside the mask are restored to θ_o and their momentum
   buffers zeroed, so weight decay and momentum cannot move them either (SalUn's code
   only masks the gradient). Masked-out weights stay bit-identical to θ_o.

Budget rule: the mask pass (one forward+backward per D_f sample) is charged to the run
(:mod:`tarf.methods.loop`), so the RL epochs share what is left of the budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from tarf.methods.base import UnlearnContext, UnlearnData
from tarf.methods.loop import Loop, LoopConfig, iterative
from tarf.methods.rl import RelabelPool
from tarf.training import to_float, unlearn_autocast


@dataclass
class SalUnConfig(LoopConfig):
    """SalUn hyperparameters (defaults: SalUn's code and the harness; epochs of RL)."""

    mask_ratio: float = 0.5  # share of the weights updated: top 50 % of |∇θ ℓ(D_f)|
    mask_batch_size: int = 256  # batch of the gradient pass; ours, only memory depends on it


def saliency_mask(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    ratio: float,
    ctx: UnlearnContext,
    batch_size: int = 256,
) -> dict[str, torch.Tensor]:
    """Boolean mask per named parameter: the ``ratio`` share of all entries with the
    largest |∇_θ Σ CE| over (x, y), ranked globally. ``model`` is not modified."""
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    grads = [torch.zeros_like(p, dtype=torch.float32) for _, p in params]
    was = model.training
    model.eval()
    x, y = x.to(ctx.device), y.to(ctx.device)  # one copy, not one per batch
    try:
        for i in range(0, len(y), batch_size):
            xb = to_float(x[i : i + batch_size], ctx.device)
            yb = y[i : i + batch_size]
            with unlearn_autocast(ctx.device):
                loss = F.cross_entropy(model(xb).float(), yb, reduction="sum")
            gs = torch.autograd.grad(loss, [p for _, p in params], allow_unused=True)
            for acc, g in zip(grads, gs):
                if g is not None:
                    acc.add_(g.float())
    finally:
        model.train(was)
    scores = torch.cat([g.abs().reshape(-1) for g in grads])
    k = int(len(scores) * ratio)
    flat = torch.zeros(len(scores), dtype=torch.bool, device=scores.device)
    flat[torch.argsort(scores, descending=True, stable=True)[:k]] = True
    masks, start = {}, 0
    for name, p in params:
        masks[name] = flat[start : start + p.numel()].view(p.shape)
        start += p.numel()
    return masks


class MaskedUpdate:
    """An optimizer step that changes only the masked-in entries of each parameter."""

    def __init__(self, model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
        self.items = [
            (p, masks[n], p.detach().clone()) for n, p in model.named_parameters() if n in masks
        ]

    def __call__(self, opt: torch.optim.Optimizer, loss: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        loss.backward()
        for p, m, _ in self.items:
            if p.grad is not None:
                p.grad.masked_fill_(~m, 0)
        opt.step()
        with torch.no_grad():
            for p, m, saved in self.items:
                # Weight decay and momentum would still move masked-out weights: undo that.
                p.copy_(torch.where(m, p, saved))
                buf = opt.state.get(p, {}).get("momentum_buffer")
                if buf is not None:
                    buf.masked_fill_(~m, 0)


@iterative("salun", SalUnConfig)
def SalUn(loop: Loop, data: UnlearnData) -> dict[str, Any]:
    """SalUn: random labels updating only the weights salient for D_f."""
    c = loop.config
    x, y = data.x_forget, data.y_forget
    masks = saliency_mask(loop.original, x, y, c.mask_ratio, loop.ctx, c.mask_batch_size)
    loop.charge(len(y))  # the mask pass: one forward+backward per D_f sample
    loop.train(RelabelPool(data, loop.ctx), loop.loss, update=MaskedUpdate(loop.model, masks))
    kept = sum(int(m.sum()) for m in masks.values())
    size = sum(m.numel() for m in masks.values())
    return {
        "epochs": c.epochs,
        "lr": loop.lr,
        "mask_ratio": c.mask_ratio,
        "mask_fraction": round(kept / max(size, 1), 6),
        "mask_samples": len(y),
    }
