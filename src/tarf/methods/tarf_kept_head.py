"""TARF's ``retained_label=kept-head``: what a model that never saw D_f would answer for
it, estimated without retraining, for the forget samples whose label the kept data still
carries (model mismatch: "boy" labelled "people" while "man" keeps the label).

A model retrained without D_f gives such a sample whatever the kept data taught it, which
can be the label itself (the reference still calls most boys "people") or not. A linear
head fit on the kept data alone, over the original model's representation, is that
answer's estimate: it never saw D_f, and its temperature is set so that on the kept data
it is as sure as the original model is (:func:`kept_head_targets`). The forget samples
are then taught the head's answer (descent towards its soft outputs) instead of being
ascended to chance."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from tarf.methods.base import UnlearnContext, UnlearnData
from tarf.methods.common import representation
from tarf.methods.tarf_identify import balanced_sample
from tarf.training import forward_logits

# Kept samples per label (seeded, class-balanced) the head is fit on.
HEAD_SAMPLES_PER_CLASS = 200
HEAD_STEPS = 100  # L-BFGS iterations of the head's fit (full batch: it converges)
HEAD_L2 = 1e-4  # weight decay of the head, for a unique, finite fit on separable data


def fit_head(rep: torch.Tensor, y: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, ...]:
    """Multinomial logistic regression on standardised ``rep``: (mean, std, W, b). Labels
    absent from ``y`` get a bias of −inf: the head never answers a label the kept data
    does not carry."""
    mean, std = rep.mean(0), rep.std(0).clamp_min(1e-6)
    z = (rep - mean) / std
    w = torch.zeros(num_classes, z.shape[1], requires_grad=True)
    b = torch.zeros(num_classes, requires_grad=True)
    absent = torch.ones(num_classes, dtype=torch.bool)
    absent[y.unique()] = False
    mask = torch.zeros(num_classes).masked_fill(absent, -math.inf)
    opt = torch.optim.LBFGS([w, b], max_iter=HEAD_STEPS, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(z @ w.T + b + mask, y) + HEAD_L2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return mean, std, w.detach(), (b.detach() + mask)


def matching_temperature(logits: torch.Tensor, y: torch.Tensor, target_nll: float) -> float:
    """The temperature, at least the best-calibrated one, at which ``logits`` have mean
    cross-entropy ``target_nll`` on ``y``: the cross-entropy falls to its minimum at the
    calibrated temperature and rises towards ln C past it, so the search (in log space)
    finds that minimum, then bisects the rising side; a target under the minimum gets
    the calibrated temperature."""

    def nll(log_t: float) -> float:
        return float(F.cross_entropy(logits / math.exp(log_t), y))

    lo, hi = math.log(1e-2), math.log(1e2)
    for _ in range(60):  # ternary search of the minimum (convex in 1/T)
        a, b = lo + (hi - lo) / 3, hi - (hi - lo) / 3
        lo, hi = (lo, b) if nll(a) < nll(b) else (a, hi)
    lo, hi = (lo + hi) / 2, math.log(1e2)
    if nll(lo) >= target_nll:
        return math.exp(lo)
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if nll(mid) < target_nll else (lo, mid)
    return math.exp((lo + hi) / 2)


def kept_head_targets(
    original: torch.nn.Module, data: UnlearnData, ctx: UnlearnContext, forget: torch.Tensor
) -> tuple[torch.Tensor, dict]:
    """Soft targets (rows of probabilities over the model's labels) for the forget samples
    ``forget`` (indices into D_f): the answer of a head fit on a seeded, class-balanced
    sample of D_un over the original model's representation, at the temperature that
    makes the head exactly as sure on that sample as the original model is (mean
    cross-entropy). Reads only the model, D_un and D_f. Returns the targets and a record."""
    gen = torch.Generator().manual_seed(ctx.seed + 6007)
    idx = balanced_sample(data.y_remain, HEAD_SAMPLES_PER_CLASS, data.num_classes, gen)
    x_kept, y_kept = data.x_remain[idx], data.y_remain[idx]
    rep, source = representation(original, x_kept, ctx)
    mean, std, w, b = fit_head(rep, y_kept, data.num_classes)
    head_logits = ((rep - mean) / std) @ w.T + b
    model_nll = float(F.cross_entropy(forward_logits(original, x_kept, ctx.device), y_kept))
    temperature = matching_temperature(head_logits, y_kept, model_nll)
    forget_rep, _ = representation(original, data.x_forget[forget], ctx)
    probs = ((((forget_rep - mean) / std) @ w.T + b) / temperature).softmax(1)
    y_f = data.y_forget[forget]
    record = {
        "samples": len(idx), "representation": source, "temperature": round(temperature, 4),
        "kept_nll": round(model_nll, 4),
        # how often the head gives a forget sample its own label, and how surely on average
        "label_kept_pct": round(100 * float((probs.argmax(1) == y_f).float().mean()), 2),
        "label_prob_mean": round(float(probs.gather(1, y_f.view(-1, 1)).mean()), 4),
    }  # fmt: skip
    return probs, record
