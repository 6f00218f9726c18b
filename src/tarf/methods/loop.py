"""The budgeted loop every iterative unlearning method runs in.

The loop owns the budget rule (docs/design.md), so that a method is only its step:

* each epoch may use its share of the run's budget, ``(epochs · ctx.epoch_samples() −
  charged) // epochs`` samples through forward+backward, where ``charged`` is work done
  before the epochs (SalUn's saliency mask, BS's FGSM labels: :meth:`Loop.charge`);
* an epoch passes at most once over each pool it draws from, except a phase defined by
  the change it must cause (TARF's Phase I, :meth:`Epoch.until_cap`), which may pass
  again within the cap;
* every sample handed out is counted, so the result's ``samples`` is what was used.

A method is registered with :func:`iterative`: a function of the loop and the data that
trains and returns its details. One data pool and one loss: :meth:`Loop.train`. Several
passes or phases per epoch (SCRUB, TARF): iterate over the loop's :class:`Epoch` objects
and draw every batch through them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn as nn

from tarf.methods.base import Method, MethodResult, UnlearnContext, UnlearnData, register
from tarf.methods.common import ce, clone, sgd, step

Batch = tuple[torch.Tensor, torch.Tensor]
RUN_EPOCHS = 10  # the budget rule: one run may use this many ctx.epoch_samples()


def run_budget(ctx: UnlearnContext) -> int:
    """Samples one whole run may push through forward+backward (for methods without
    epochs, such as IU)."""
    return RUN_EPOCHS * ctx.epoch_samples()


class Source(Protocol):
    """What an epoch draws batches from (:class:`tarf.methods.common.Pool` and the like)."""

    def __len__(self) -> int: ...

    def epoch(self, samples: int, batch_size: int) -> Iterator[Batch]: ...


@dataclass
class LoopConfig:
    """The hyperparameters every iterative method has (a method's config may add to them)."""

    epochs: int = 10  # the harness's --unlearn_epochs
    lr: float | None = None  # None = the recipe's unlearn_lr (0.01 in every recipe)


class Loop:
    """One budgeted unlearning run: a trainable copy of ``model`` (the caller's stays as
    it is, as ``original``), its SGD optimiser, and the epochs, each capped by the budget
    rule. From ``config``: ``epochs``, ``lr`` (None = the recipe's unlearning rate) and,
    if it has them, ``momentum`` and ``weight_decay`` (else the harness's 0.9 and 5e-4)."""

    def __init__(self, model: nn.Module, ctx: UnlearnContext, config: Any) -> None:
        self.ctx, self.config, self.original = ctx, config, model
        self.epochs: int = config.epochs
        self.lr: float = config.lr if config.lr is not None else ctx.recipe.unlearn_lr
        self.model = clone(model)
        momentum = getattr(config, "momentum", 0.9)
        weight_decay = getattr(config, "weight_decay", 5e-4)
        self.opt = sgd(self.model.parameters(), self.lr, ctx, momentum, weight_decay)
        self.charged = 0
        self.samples = 0  # forward+backward samples so far, the charged work included
        self.epoch_samples = 0  # the most any epoch has used
        self._started = False

    def charge(self, samples: int) -> None:
        """Count work done before the epochs against the run's budget; the epochs share
        what is left of it."""
        if self._started:
            raise RuntimeError("Loop.charge: only before the first epoch")
        self.charged += samples
        self.samples += samples

    @property
    def cap(self) -> int:
        """Samples one epoch may use: its share of the budget left after the charged work."""
        total = self.epochs * self.ctx.epoch_samples() - self.charged
        return max(0, total // max(self.epochs, 1))

    def __iter__(self) -> Iterator[Epoch]:
        self._started = True
        for t in range(self.epochs):
            yield Epoch(self, t)

    def train(
        self,
        pool: Source,
        loss: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor],
        batch_size: int | None = None,
        *,
        update: Callable[[torch.optim.Optimizer, torch.Tensor], None] = step,
        batchnorm: Callable[[nn.Module], contextlib.AbstractContextManager] | None = None,
    ) -> None:
        """Every epoch ``t``: batches of ``pool`` up to the epoch's cap, one ``update`` of
        the optimiser from ``loss(x, y, t)`` each. ``batchnorm`` (e.g.
        :func:`tarf.methods.common.frozen_batchnorm`) holds for each epoch."""
        for epoch in self:
            with batchnorm(self.model) if batchnorm else contextlib.nullcontext():
                for x, y in epoch.batches(pool, batch_size):
                    update(self.opt, loss(x, y, epoch.t))

    def loss(self, x: torch.Tensor, y: torch.Tensor, t: int = 0) -> torch.Tensor:
        """Cross-entropy of the model being unlearned on a batch (the most common step)."""
        return ce(self.model, x, y, self.ctx)

    def result(self, **details: Any) -> MethodResult:
        """The unlearned model (eval mode) with the run's sample counts and ``details``."""
        return MethodResult(
            self.model.eval(),
            samples=self.samples,
            epoch_samples=self.epoch_samples,
            details=details,
        )


class Epoch:
    """One epoch of a :class:`Loop`: every batch drawn through it counts against its cap."""

    def __init__(self, loop: Loop, t: int) -> None:
        self.loop, self.t, self.used = loop, t, 0

    @property
    def cap(self) -> int:
        """The samples this epoch may use."""
        return self.loop.cap

    @property
    def remaining(self) -> int:
        return max(0, self.loop.cap - self.used)

    def batches(
        self, pool: Source, batch_size: int | None = None, samples: int | None = None
    ) -> Iterator[Batch]:
        """Shuffled batches of ``pool`` (default size: the recipe's unlearning batch) until
        the epoch's cap, one pass of the pool or ``samples``, whichever comes first; the
        last batch is cut to fit."""
        n = min(self.remaining, len(pool))
        if samples is not None:
            n = min(n, samples)
        for x, y in pool.epoch(n, batch_size or self.loop.ctx.recipe.unlearn_batch_size):
            self._spend(len(y))
            yield x, y

    def until_cap(self, pool: Source, batch_size: int) -> Iterator[Batch]:
        """Batches of ``pool`` until the epoch's cap, passing over it as often as that
        allows: for a phase defined by the change it must cause, which the caller ends
        (TARF's Phase I). Each batch is counted as it is drawn."""
        while self.remaining > 0 and len(pool):
            x, y = next(pool.epoch(min(batch_size, self.remaining), batch_size))
            self._spend(len(y))
            yield x, y

    def steps(self, size: int, data: int) -> range:
        """Steps of ``size`` samples each, for methods that build one step from several
        pools (TARF's Phase II): as many as fit in the cap and in one pass of ``data``
        samples, and at least one. ``size`` is every sample a step forwards, all its
        batches together, so that the count and the charge agree and the epoch stays
        within its cap."""
        n = max(1, min(self.remaining, data) // size)
        self._spend(n * size)
        return range(n)

    def _spend(self, n: int) -> None:
        self.used += n
        self.loop.samples += n
        self.loop.epoch_samples = max(self.loop.epoch_samples, self.used)


Body = Callable[[Loop, UnlearnData], dict[str, Any]]


def iterative(name: str, config: type) -> Callable[[Body], type[Method]]:
    """Register ``body`` as the method ``name`` with hyperparameters ``config``.

    ``body(loop, data)`` trains ``loop.model`` through the loop and returns the method's
    details for the report; the run, the budget and the sample counts are the loop's.
    The decorated name is the method's class."""

    def wrap(body: Body) -> type[Method]:
        def run(
            self: Method, model: nn.Module, data: UnlearnData, ctx: UnlearnContext
        ) -> MethodResult:
            loop = Loop(model, ctx, self.config)
            return loop.result(**body(loop, data))

        attrs = {"name": name, "Config": config, "run": run, "__doc__": body.__doc__}
        attrs.update(__module__=body.__module__, __qualname__=body.__qualname__)
        return register(type(body.__name__, (Method,), attrs))

    return wrap
