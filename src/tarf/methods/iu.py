"""IU: influence unlearning, the harness's ``wfisher`` (paper Appendix C).

One weight perturbation along the inverse-Fisher-preconditioned gradient difference:

    v = n_f / (n_f + n_un) · (ḡ_f − ḡ_un)          (Unlearn-Sparse ``Wfisher``'s scaling)
    F = λ I + (1/N) Σ_i g_i g_iᵀ                    (empirical Fisher of N D_un samples)
    θ ← θ + α · F⁻¹ v

``ḡ_f`` and ``ḡ_un`` are mean loss gradients on D_f and on a seeded sample of D_un; the
``g_i`` are per-sample gradients on that sample. The harness builds ``F⁻¹ v`` with
WoodFisher's sequential rank-1 Woodbury updates (starting from ``F_0 = I``, ``N = 1000``);
here the same quantity is computed exactly and in one shot with the Woodbury identity

    F⁻¹ v = (v − Gᵀ (N λ I + G Gᵀ)⁻¹ G v) / λ,       G = [g_1 … g_N]ᵀ

which needs the N × N Gram matrix ``G Gᵀ`` and ``G v`` only. Per-sample gradients come
from ``torch.func.vmap(grad(...))`` in chunks, with batch norm in eval mode. When the
N × P gradient matrix does not fit in ``max_store_mb`` it is not stored: Gram blocks are
computed pairwise (each chunk recomputed as needed) and ``Gᵀ a`` becomes one batched
backward of the ``a``-weighted loss. (The harness's own loop keeps a single running
vector ``o_vec`` that stays parallel to the first sample's gradient, so its perturbation
differs from the exact one in size and direction: α has to be tuned for this one.)
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from tarf.methods.base import Method, MethodResult, UnlearnContext, UnlearnData, register
from tarf.methods.common import clone
from tarf.methods.loop import run_budget
from tarf.training import to_float


@dataclass
class IUConfig:
    """IU hyperparameters (defaults: the Unlearn-Sparse/SalUn harness's ``wfisher``)."""

    # α, the perturbation scale (harness ``--alpha``); our F⁻¹ includes the damping λ, so
    # its scale differs from the harness's. The default was tuned on all-matched CIFAR-100,
    # cpu recipe (docs/methods.md, "Tuning").
    alpha: float = 3.0
    # D_un samples (seeded) for ḡ_un and the Fisher: the harness's woodfisher uses N = 1000.
    num_samples: int = 1000
    # λ in F = λI + GᵀG/N: the harness starts its recursion from F_0 = I, i.e. λ = 1.
    damping: float = 1.0
    # Samples per vmap(grad) call (memory of one call ~ chunk_size × #params floats).
    chunk_size: int = 64
    # Batch size of the mean-gradient passes (D_f gradient, Gᵀa); ours, no effect on results.
    batch_size: int = 256
    # Per-sample gradient matrix kept in memory up to this size (MB); above it, Gram
    # blocks are recomputed pairwise (bounded memory, more compute). Ours.
    max_store_mb: float = 4096.0


def grad_params(model: nn.Module) -> tuple[list[str], list[torch.Tensor]]:
    """Names and tensors of the trainable parameters, in the flattening order."""
    named = [(k, p) for k, p in model.named_parameters() if p.requires_grad]
    return [k for k, _ in named], [p for _, p in named]


def per_sample_grads(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: UnlearnContext, chunk_size: int = 64
) -> torch.Tensor:
    """Flattened per-sample gradients of the cross-entropy, [n, #params], eval-mode model.

    ``x`` is uint8. One ``vmap(grad(...))`` call per chunk, no per-sample Python loop.
    """
    names, params = grad_params(model)
    p = {k: v.detach() for k, v in zip(names, params)}
    buffers = dict(model.named_buffers())

    def loss(p: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        out = functional_call(model, (p, buffers), (xi.unsqueeze(0),))
        return F.cross_entropy(out.float(), yi.unsqueeze(0))

    per_sample = vmap(grad(loss), in_dims=(None, 0, 0))
    sizes = [v.numel() for v in params]
    out = torch.empty(len(y), sum(sizes), device=ctx.device)
    for i in range(0, len(y), chunk_size):
        xb = to_float(x[i : i + chunk_size], ctx.device)
        g = per_sample(p, xb, y[i : i + chunk_size].to(ctx.device))
        j = 0
        for k, size in zip(names, sizes):  # written in place: no concatenated copy
            out[i : i + len(xb), j : j + size] = g.pop(k).reshape(len(xb), -1)
            j += size
    return out


def symmetric_gram(g: torch.Tensor, block: int = 128) -> torch.Tensor:
    """``g gᵀ`` in float64, computing only the upper block triangle (about half the
    work of one matmul, which dominates IU's cost for large models)."""
    n = len(g)
    out = torch.empty(n, n, dtype=torch.float64, device=g.device)
    for i in range(0, n, block):
        rows = (g[i : i + block] @ g[i:].T).double()
        out[i : i + block, i:] = rows
        out[i:, i : i + block] = rows.T
    return out


def weighted_grad(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    w: torch.Tensor,
    ctx: UnlearnContext,
    batch_size: int = 256,
) -> torch.Tensor:
    """∇_θ Σ_i w_i ℓ_i as one flat vector: batched backward passes, eval-mode model.

    With ``w = 1/n`` this is the mean gradient; with the Woodbury weights it is ``Gᵀ a``.
    """
    _, params = grad_params(model)
    acc = [torch.zeros_like(p) for p in params]
    w = w.to(ctx.device, torch.float32)
    for i in range(0, len(y), batch_size):
        logits = model(to_float(x[i : i + batch_size], ctx.device)).float()
        losses = F.cross_entropy(logits, y[i : i + batch_size].to(ctx.device), reduction="none")
        gs = torch.autograd.grad((losses * w[i : i + batch_size]).sum(), params)
        for a, g in zip(acc, gs):
            a += g
    return torch.cat([a.reshape(-1) for a in acc])


def woodbury_ihvp(
    v: torch.Tensor,
    gram: torch.Tensor,
    gv: torch.Tensor,
    damping: float,
    apply_gt,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(λI + GᵀG/N)⁻¹ v`` from ``gram = G Gᵀ`` and ``gv = G v`` (N = rows of G).

    ``apply_gt(a)`` returns ``Gᵀ a``. Solved in float64. Returns (IHVP, a).
    """
    n = gram.shape[0]
    eye = torch.eye(n, dtype=torch.float64, device=gram.device)
    system = gram.double() + n * damping * eye
    a = torch.linalg.solve(system, gv.double().unsqueeze(1)).squeeze(1)
    a32 = a.to(v.dtype)
    return (v - apply_gt(a32)) / damping, a32


# A per-sample gradient written costs about this many Gram-matrix entries' multiply-adds
# (per parameter): the dry run's estimate of IU's time on another network (IU.relative_cost)
GRADIENT_WRITE_COST = 474.0


@dataclass(frozen=True)
class WorkPlan:
    """How many samples IU uses and how the Gram matrix is built (see :func:`plan_work`)."""

    fisher_samples: int
    forget_samples: int
    blocks: list[tuple[int, int]]
    stored: bool
    fisher_work: int  # per-sample gradients computed (with recomputation) + Gᵀa samples


def plan_work(
    n_params: int, n_remain: int, n_forget: int, budget: int, num_samples: int, max_store_mb: float
) -> WorkPlan:
    """Sample counts that keep IU's gradient work (samples through forward+backward)
    within ``budget`` (the budget rule), and the block layout of the Gram matrix.

    Stored: one pass of per-sample gradients. Not stored: blocks of half the memory cap,
    computed pairwise (block j is recomputed for every earlier block), plus one batched
    backward over the sample for ``Gᵀ a``. At least half the budget is left to D_f's
    gradient when D_f needs it; the Fisher sample shrinks first.
    """
    row_mb = n_params * 4 / 2**20
    reserve_f = min(n_forget, budget // 2)
    n = max(1, min(num_samples, n_remain))
    while True:
        stored = n * row_mb <= max_store_mb
        size = n if stored else max(1, int(max_store_mb / (2 * row_mb)))
        blocks = [(i, min(i + size, n)) for i in range(0, n, size)]
        m = len(blocks)
        work = n if stored else sum((hi - lo) * (m - j) for j, (lo, hi) in enumerate(blocks)) + n
        if work <= max(1, budget - reserve_f) or n == 1:
            break
        n = max(1, int(n * 0.9))
    forget = min(n_forget, max(1, budget - work))
    return WorkPlan(n, forget, blocks, stored, work)


def apply_perturbation(model: nn.Module, delta: torch.Tensor) -> None:
    """θ ← θ + delta, ``delta`` flattened in :func:`grad_params` order."""
    _, params = grad_params(model)
    i = 0
    with torch.no_grad():
        for p in params:
            p += delta[i : i + p.numel()].view_as(p).to(p.dtype)
            i += p.numel()


@register
class IU(Method):
    name = "iu"
    Config = IUConfig

    def weak_forgetting_hint(self, result: MethodResult) -> str:
        return "its one Newton step was too small for this model; raise alpha (--set alpha=...)"

    def damage_hint(self, result: MethodResult) -> str:
        return "its one Newton step was too large for this model; lower alpha (--set alpha=...)"

    def relative_cost(self, n_params: int, flops: float) -> float:
        """IU's time goes to the Gram matrix (``N² P``) and to writing per-sample
        gradients (``P`` floats for each of the samples :func:`plan_work` computes, blocks
        recomputed pair by pair once ``G`` exceeds ``max_store_mb``), not to the forward
        FLOPs. ``GRADIENT_WRITE_COST``, the second's weight against the first, was fitted
        to this machine's IU times on cpunet and VGG-16-bn (28 and 2,477 s of method time
        on CIFAR-100); it puts WRN-16-4's at 186 s, measured 159."""
        c, plenty = self.config, 10**9
        plan = plan_work(n_params, plenty, 1, plenty, c.num_samples, c.max_store_mb)
        n = plan.fisher_samples
        return float(n_params) * (n * n + GRADIENT_WRITE_COST * plan.fisher_work)

    def run(self, model: nn.Module, data: UnlearnData, ctx: UnlearnContext) -> MethodResult:
        c = self.config
        start = time.perf_counter()
        model = clone(model).eval()  # eval-mode batch norm for every gradient below
        n_f, n_un = len(data.y_forget), len(data.y_remain)
        if n_f == 0 or n_un == 0:
            raise ValueError("IU needs forget data and remaining data")
        n_params = sum(p.numel() for p in grad_params(model)[1])
        budget = run_budget(ctx)
        plan = plan_work(n_params, n_un, n_f, budget, c.num_samples, c.max_store_mb)
        n, blocks, stored = plan.fisher_samples, plan.blocks, plan.stored
        gen = torch.Generator().manual_seed(ctx.seed)
        idx = torch.randperm(n_un, generator=gen)[:n].sort().values
        # on the device once: the gradient passes below go over them chunk by chunk
        xs, ys = data.x_remain[idx].to(ctx.device), data.y_remain[idx].to(ctx.device)
        n_f_used = plan.forget_samples
        fidx = torch.arange(n_f)
        if n_f_used < n_f:  # only when the budget rule would otherwise be broken
            fidx = torch.randperm(n_f, generator=gen)[:n_f_used].sort().values
        g_f = weighted_grad(
            model,
            data.x_forget[fidx],
            data.y_forget[fidx],
            torch.full((n_f_used,), 1.0 / n_f_used),
            ctx,
            c.batch_size,
        )

        # Gram matrix G Gᵀ, G ḡ_f and Σ g_i, block by block.
        gram = torch.zeros(n, n, dtype=torch.float64, device=ctx.device)
        g_gf = torch.zeros(n, device=ctx.device)
        g_sum = torch.zeros(n_params, device=ctx.device)
        stored_g: torch.Tensor | None = None
        for j, (lo, hi) in enumerate(blocks):
            ga = per_sample_grads(model, xs[lo:hi], ys[lo:hi], ctx, c.chunk_size)
            g_sum += ga.sum(0)
            g_gf[lo:hi] = ga @ g_f
            gram[lo:hi, lo:hi] = symmetric_gram(ga)
            for lo2, hi2 in blocks[j + 1 :]:
                gb = per_sample_grads(model, xs[lo2:hi2], ys[lo2:hi2], ctx, c.chunk_size)
                block = (ga @ gb.T).double()
                gram[lo:hi, lo2:hi2] = block
                gram[lo2:hi2, lo:hi] = block.T
                del gb
            if stored:
                stored_g = ga
            del ga

        # v = n_f/(n_f + n_un) (ḡ_f − ḡ_un), scaled as the harness does with |D_f|, |D_un|.
        scale = n_f / (n_f + n_un)
        g_un = g_sum / n
        v = scale * (g_f - g_un)
        gv = scale * (
            g_gf
            - (gram @ torch.full((n,), 1.0 / n, dtype=torch.float64, device=ctx.device)).float()
        )

        def apply_gt(a: torch.Tensor) -> torch.Tensor:
            if stored_g is not None:
                return a @ stored_g
            return weighted_grad(model, xs, ys, a, ctx, c.batch_size)

        ihvp, _ = woodbury_ihvp(v, gram, gv, c.damping, apply_gt)
        apply_perturbation(model, c.alpha * ihvp)
        seconds = time.perf_counter() - start
        if not math.isfinite(float(ihvp.norm())):
            raise FloatingPointError("IU: the inverse-Fisher-vector product is not finite")
        return MethodResult(
            model.eval(),
            samples=n_f_used + plan.fisher_work,
            epoch_samples=ctx.epoch_samples(),
            details={
                "alpha": c.alpha,
                "damping": c.damping,
                "fisher_samples": n,
                "forget_samples": n_f_used,
                "gram_blocks": len(blocks),
                "stored_gradients": stored,
                "budget_samples": budget,
                "influence_seconds": round(seconds, 3),
                "ihvp_norm": float(ihvp.norm()),
                "v_norm": float(v.norm()),
                "displacement_norm": float(c.alpha * ihvp.norm()),
            },
        )
