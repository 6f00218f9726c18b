"""Pieces every method's loop shares: batches from tensor pools, SGD, frozen batch norm."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from tarf.methods.base import UnlearnContext
from tarf.training import (
    augment,
    eval_batch_size,
    forward_features,
    forward_logits,
    full_precision,
    to_float,
    unlearn_autocast,
)


class Pool:
    """A tensor pool (images, labels) that hands out shuffled batches forever, seeded.

    The pool lives on the context's device, and so do its generators: batches are drawn
    and gathered there, with no copy from the host and no wait for the GPU. On a CPU the
    batches are those of a CPU generator seeded as before (bit-identical runs)."""

    def __init__(
        self, x: torch.Tensor, y: torch.Tensor, ctx: UnlearnContext, seed_offset: int = 0
    ) -> None:
        self.x, self.y, self.ctx = x.to(ctx.device), y.to(ctx.device), ctx
        self.gen = torch.Generator(device=ctx.device).manual_seed(ctx.seed * 1000 + seed_offset)
        self.aug_gen = torch.Generator(device=ctx.device).manual_seed(
            ctx.seed * 1000 + seed_offset + 1
        )
        self._order = torch.empty(0, dtype=torch.long, device=ctx.device)

    def __len__(self) -> int:
        return len(self.y)

    def next_indices(self, n: int) -> torch.Tensor:
        """The next ``n`` indices of an endless shuffled stream (reshuffled each pass)."""
        out = []
        while n > 0:
            if len(self._order) == 0:
                self._order = torch.randperm(
                    len(self.y), generator=self.gen, device=self.gen.device
                )
            take, self._order = self._order[:n], self._order[n:]
            out.append(take)
            n -= len(take)
        return torch.cat(out)

    def batch(self, n: int, augmented: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self.next_indices(min(n, len(self.y)))
        return self.images(idx, augmented), self.y[idx]

    def images(self, idx: torch.Tensor, augmented: bool = True) -> torch.Tensor:
        x = self.x[idx].float().div_(255)
        r = self.ctx.recipe
        if augmented:
            return augment(x, r.crop_pad, r.flip, self.aug_gen)
        return x.contiguous(memory_format=torch.channels_last)

    def epoch(self, samples: int, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches totalling ``samples`` (one budgeted unlearning epoch)."""
        done = 0
        while done < samples and len(self.y):
            xb, yb = self.batch(min(batch_size, samples - done))
            done += len(yb)
            yield xb, yb


def sgd(
    params, lr: float, ctx: UnlearnContext, momentum: float = 0.9, weight_decay: float = 5e-4
) -> torch.optim.SGD:
    """The harness's optimizer: SGD, momentum 0.9, weight decay 5e-4 by default."""
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


def ce(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: UnlearnContext, reduction: str = "mean"
) -> torch.Tensor:
    """Cross-entropy of an unlearning step, computed in fp32 from the logits (the forward
    pass in the unlearning precision, :func:`tarf.training.unlearn_autocast`)."""
    with unlearn_autocast(ctx.device):
        return F.cross_entropy(model(x).float(), y, reduction=reduction)


def step(opt: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def _batchnorms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@contextlib.contextmanager
def _batchnorm_mode(model: nn.Module, training: bool, momentum: float | None = None):
    """Put every batch-norm layer in ``training`` mode (and, if given, set its running-
    statistics ``momentum``) for the block, then restore both."""
    bns = _batchnorms(model)
    states = [(m.training, m.momentum) for m in bns]
    for m in bns:
        m.train(training)
        if momentum is not None:
            m.momentum = momentum
    try:
        yield
    finally:
        for m, (was_training, was_momentum) in zip(bns, states):
            m.train(was_training)
            m.momentum = was_momentum


def frozen_batchnorm(model: nn.Module) -> contextlib.AbstractContextManager:
    """Keep batch-norm running statistics fixed, e.g. while only forget data flows:
    otherwise a few forget-only batches shift them toward D_f and hurt every class."""
    return _batchnorm_mode(model, training=False)


def batch_statistics_batchnorm(model: nn.Module) -> contextlib.AbstractContextManager:
    """Batch norm normalises with each batch's statistics (as in training) but leaves
    the running statistics untouched (momentum 0): forget-only batches cannot shift
    them, and the network stays scale-invariant, which frozen statistics are not (an
    ascent can then grow the weights of successive layers without bound)."""
    return _batchnorm_mode(model, training=True, momentum=0.0)


@contextlib.contextmanager
def tail_statistics_batchnorm(model: nn.Module, rows: int) -> Iterator[None]:
    """Batch norm normalises each batch with its own statistics (as in training), but the
    running statistics learn from the batch's last ``rows`` rows only: one forward of a
    mixed batch (forget rows first, retained rows last) keeps them the retained data's.
    Without this, an ascent through shared batch statistics can raise the forget loss by
    making the forget rows' activations extreme, and those outliers then sit in the
    running variance that every class is evaluated with."""
    momenta = {m: m.momentum for m in _batchnorms(model)}  # before the block zeroes them

    def update(m: nn.modules.batchnorm._BatchNorm, args: tuple[torch.Tensor, ...]) -> None:
        if not m.track_running_stats or m.running_mean is None:
            return
        x = args[0].detach()[-rows:].float()
        dims = [0, *range(2, x.dim())]
        n = x.numel() / x.shape[1]
        mean, var = x.mean(dims), x.var(dims, unbiased=n > 1)
        # momentum None: a cumulative average, as batch norm's own (the call itself counts
        # the batch in num_batches_tracked)
        f = 1.0 / float(m.num_batches_tracked + 1) if momenta[m] is None else momenta[m]
        m.running_mean.mul_(1 - f).add_(mean.to(m.running_mean.dtype), alpha=f)
        m.running_var.mul_(1 - f).add_(var.to(m.running_var.dtype), alpha=f)

    hooks = [m.register_forward_pre_hook(update) for m in momenta]
    try:
        with batch_statistics_batchnorm(model):  # the call itself leaves them alone
            yield
    finally:
        for h in hooks:
            h.remove()


@torch.no_grad()
def recompute_batchnorm_statistics(
    model: nn.Module,
    x: torch.Tensor,
    device: torch.device,
    batch_size: int = 256,
    augmentation: tuple[int, bool, torch.Generator] | None = None,
) -> int:
    """Replace every batch-norm layer's running statistics by those of ``x`` (uint8
    images; a cumulative average over its batches), weights untouched. ``augmentation``
    (crop padding, flip, generator) augments each batch first, as training batches are.
    Returns the number of layers reset (0: the model has no batch norm).

    After unlearning the running statistics are an average over steps whose weights kept
    changing, and over batches that held forget data; the model is evaluated on the
    retained data, so their statistics under the final weights are the ones to keep."""
    bns = [m for m in _batchnorms(model) if m.track_running_stats and m.running_mean is not None]
    if not bns or not len(x):
        return 0
    was_training = model.training
    model.eval()  # dropout and the like as in evaluation; batch norm in training mode below
    with _batchnorm_mode(model, training=True), full_precision(device):
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # restored with the mode
        for chunk in x.split(batch_size):
            xb = to_float(chunk, device)
            if augmentation is not None:
                xb = augment(xb, *augmentation)
            model(xb)
    model.train(was_training)
    return len(bns)


def param_blocks(model: nn.Module) -> list[nn.Module]:
    """The model's layers with weights, input to output: the children of its feature
    extractor (``body``, as in tarf.models) that have parameters, then the head; for
    other models, its top-level children with parameters."""
    body = getattr(model, "body", None)
    head = getattr(model, "head", None)
    children = (
        [*body.children(), head] if body is not None and head is not None else model.children()
    )
    return [m for m in children if any(True for _ in m.parameters())]


def clone(model: nn.Module) -> nn.Module:
    """A trainable copy, so the caller's original model is never modified."""
    m = copy.deepcopy(model)
    m.train()
    return m


@torch.no_grad()
def per_sample_loss(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    ctx: UnlearnContext,
    batch_size: int | None = None,
) -> torch.Tensor:
    """Cross-entropy of each sample in eval mode (no augmentation), batched, in full
    precision (TARF-I's loss differences match a CPU run); float32 on the CPU."""
    was = model.training
    model.eval()
    out = []
    step = batch_size or eval_batch_size(ctx.device)
    with full_precision(ctx.device):
        for xb, yb in zip(x.split(step), y.split(step)):
            logits = model(to_float(xb, ctx.device)).float()
            out.append(F.cross_entropy(logits, yb.to(ctx.device), reduction="none"))
    model.train(was)
    return torch.cat(out).cpu() if out else torch.empty(0)


@torch.no_grad()
def predictions(
    model: nn.Module, x: torch.Tensor, ctx: UnlearnContext, batch_size: int | None = None
) -> torch.Tensor:
    return forward_logits(model, x, ctx.device, batch_size).argmax(1)


def representation(
    model: nn.Module, x: torch.Tensor, ctx: UnlearnContext, batch_size: int | None = None
) -> tuple[torch.Tensor, str]:
    """Each sample's representation (eval mode, batched, full precision, float32 on the
    CPU) and where it was read: ``features`` (the model's own ``features(x)``, as tarf's
    models have), ``last-linear`` (the input of the model's last ``nn.Linear``, for a
    user's model without ``features``) or ``logits`` (neither can be read, e.g. a
    TorchScript model)."""
    if callable(getattr(model, "features", None)):
        return forward_features(model, x, ctx.device, batch_size), "features"
    inner = getattr(model, "model", None)  # a user's model behind tarf.adapter.InputAdapter
    inner = inner if isinstance(inner, nn.Module) else model
    linears = [m for m in inner.modules() if isinstance(m, nn.Linear)]
    if not linears or isinstance(inner, torch.jit.ScriptModule):
        return forward_logits(model, x, ctx.device, batch_size), "logits"
    seen: list[torch.Tensor] = []
    hook = linears[-1].register_forward_pre_hook(
        lambda _m, args: seen.append(args[0].flatten(1).float().cpu())
    )
    try:
        forward_logits(model, x, ctx.device, batch_size)
    finally:
        hook.remove()
    return (torch.cat(seen) if seen else torch.empty(0, 0)), "last-linear"
