"""NegGrad+ (Kurmanji et al., NeurIPS 2023): descent on D_un, ascent on D_f, one loss.

Each step pairs a D_un batch with a D_f batch: ``alpha · CE(D_un) − (1 − alpha) · CE(D_f)``
(``meghdadk/SCRUB``, ``train_negrad`` in ``thirdparty/repdistiller/helper/loops.py``).
An epoch is one pass over D_un, cut at the budget rule's cap (:mod:`tarf.methods.loop`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tarf.methods.base import UNIT, UnlearnData, hyperparameter
from tarf.methods.common import Pool, step
from tarf.methods.loop import Loop, LoopConfig, iterative


@dataclass
class NegGradPlusConfig(LoopConfig):
    """The SCRUB authors' CIFAR-100 values (resnet50_cifar100.ipynb), not tuned here."""

    epochs: int = 5  # passes over D_un (ng_epochs)
    lr: float = 0.01  # learning rate (ng_lr)
    alpha: float = hyperparameter(0.9999, UNIT)  # weight of CE(D_un); 1 - alpha: of -CE(D_f)
    momentum: float = 0.0  # the authors' plain SGD
    weight_decay: float = 0.0  # the authors' plain SGD
    retain_batch_size: int = 128  # D_un samples per step (retain_bs)
    forget_batch_size: int = 64  # D_f samples per step (forget_bs)


@iterative("neggrad-plus", NegGradPlusConfig)
def NegGradPlus(loop: Loop, data: UnlearnData) -> dict[str, Any]:
    """NegGrad+: alpha · CE(D_un) − (1 − alpha) · CE(D_f), one step per pair of batches."""
    c = loop.config
    a, rb, fb = c.alpha, c.retain_batch_size, c.forget_batch_size
    if rb + fb > loop.cap:  # an epoch's cap smaller than one step: smaller batches
        rb, fb = max(1, rb * loop.cap // (rb + fb)), max(1, fb * loop.cap // (rb + fb))
    forget = Pool(data.x_forget, data.y_forget, loop.ctx, seed_offset=1)
    remain = Pool(data.x_remain, data.y_remain, loop.ctx, seed_offset=2)
    for epoch in loop:  # a step costs rb + fb samples; one pass over D_un, or the cap
        for _ in epoch.steps(rb + fb, len(remain) * (rb + fb) // rb):
            (xr, yr), (xf, yf) = remain.batch(rb), forget.batch(fb)
            step(loop.opt, a * loop.loss(xr, yr) - (1 - a) * loop.loss(xf, yf))
    return {"alpha": a, "lr": loop.lr, "epochs": loop.epochs, "batch_sizes": [rb, fb]}
