"""TARF's identification (paper Algorithms 1 and 2): which samples of D_un are set aside.

The inputs are the probe's statistics under θ_o and after Phase I (:func:`class_stats`,
which :mod:`tarf.methods.tarf_probe` runs); everything else here is a decision on those
numbers and the request's prior (or, with ``--prior auto``, the rules of :mod:`tarf.identify`).
The result is the mask of D_un samples that keep τ = 1 and the dict the report shows
as ``identification``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from tarf.identify import (
    FORGET_RULE,
    RULE,
    auto_count,
    concept_can_hide,
    forget_calibrated_cut,
    largest_gap,
    log_icon,
)
from tarf.methods.base import UnlearnContext, UnlearnData
from tarf.training import forward_logits

if TYPE_CHECKING:
    from tarf.methods.tarf import TARFConfig


def class_accuracy(pred: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Per-class accuracy in %, NaN where a class has no samples."""
    correct = torch.zeros(num_classes).index_add_(0, y, (pred == y).float())
    count = torch.zeros(num_classes).index_add_(0, y, torch.ones(len(y)))
    return torch.where(
        count > 0, 100 * correct / count.clamp_min(1), torch.full_like(count, float("nan"))
    )


class ClassStats(NamedTuple):
    """The probe's statistics of a model: per class, and per sample (for the icon signal
    and for the noise of the identification's margin)."""

    accuracy: torch.Tensor  # per class, %, NaN where a class has no probe sample
    loss: torch.Tensor  # per class, mean cross-entropy
    sample_loss: torch.Tensor | None = None
    sample_correct: torch.Tensor | None = None
    labels: torch.Tensor | None = None  # each probe sample's model label


def class_stats(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int, ctx: UnlearnContext
) -> ClassStats:
    """Per-class accuracy (%) and mean cross-entropy, from one batched forward pass."""
    logits = forward_logits(model, x, ctx.device)
    loss = F.cross_entropy(logits, y, reduction="none")
    count = torch.zeros(num_classes).index_add_(0, y, torch.ones(len(y))).clamp_min(1)
    mean_loss = torch.zeros(num_classes).index_add_(0, y, loss) / count
    correct = logits.argmax(1) == y
    acc = class_accuracy(logits.argmax(1), y, num_classes)
    return ClassStats(acc, torch.where(torch.isnan(acc), acc, mean_loss), loss, correct, y)


def balanced_sample(
    y: torch.Tensor, per_class: int, num_classes: int, generator: torch.Generator
) -> torch.Tensor:
    """Up to ``per_class`` indices of each label, seeded (vectorised: one sort)."""
    perm = torch.randperm(len(y), generator=generator)
    ys = y[perm]
    order = torch.argsort(ys, stable=True)
    ys_sorted = ys[order]
    starts = torch.searchsorted(ys_sorted, torch.arange(num_classes))
    rank = torch.arange(len(y)) - starts[ys_sorted]
    return perm[order[rank < per_class]].sort().values


# Largest class accuracy drop (points, on the probe's samples of each class) below which
# Phase I counts as having moved no class, and the report warns (docs/identification.md).
WEAK_PHASE1_DROP = 5.0


def nothing_to_identify(prior: Any, level: str) -> bool:
    """Whether the prior states that nothing of the concept hides in ``D_un``: no prior,
    or a known count (class level) or fraction (instance level) of zero; never ``auto``."""
    if prior is None:
        return True
    if prior.auto:
        return False
    return not (prior.num_classes if level == "class" else prior.fraction)


def skipped(level: str, remain: int) -> tuple[torch.Tensor, dict[str, Any]]:
    """Identification when the prior says there is nothing to find: all of D_un kept."""
    return torch.ones(remain, dtype=torch.bool), {
        "level": level, "n": 0, "n_source": "prior", "classes": [], "class_ids": [],
        "set_aside_samples": 0,
        "skipped": "the prior says no concept data is left in D_un (n = 0): "
        "nothing to identify, no probe passes",
    }  # fmt: skip


# What moves the model more in Phase I, by TARFConfig.phase1.
STRONGER_PHASE1 = {
    "pass": "raise k (--set k=...) or use --set phase1_batchnorm=batch",
    "chance": "ascend further in Phase I (--set phase1=floor) or raise lr (--set lr=...)",
    "floor": "raise lr (--set lr=...) or t1 (--set t1=2)",
}


def weak_phase1_warning(
    acc_drops: torch.Tensor, loss_rise: torch.Tensor, n: int, phase1: str = "pass"
) -> str | None:
    """Why a class-level identification should not be trusted: Phase I moved no class
    (every accuracy drop below ``WEAK_PHASE1_DROP``), so the n classes set aside were
    picked on noise-level differences. None when n = 0 or some class moved."""
    if n <= 0:
        return None
    top_drop = float(torch.nan_to_num(acc_drops, nan=0.0).max())
    if top_drop >= WEAK_PHASE1_DROP:
        return None
    top_rise = float(torch.nan_to_num(loss_rise, nan=0.0).max())
    chosen = "the class set aside was" if n == 1 else f"the {n} classes set aside were"
    return (
        f"Phase I barely moved the model (largest class accuracy drop {top_drop:.1f} points, "
        f"largest loss rise {top_rise:.3f} nats): {chosen} ranked on noise and may be wrong; "
        + STRONGER_PHASE1[phase1]
    )


def rank_drops(
    acc_before: torch.Tensor, acc_after: torch.Tensor, n: int
) -> tuple[list[int], torch.Tensor, float]:
    """Algorithm 1's identification: the ``n`` classes whose accuracy dropped most.

    Returns (class ids set aside, per-class drops, β = the n-th drop). Classes absent
    from D_un (NaN) are never chosen.
    """
    drops = acc_before - acc_after
    order = [
        int(i) for i in torch.argsort(torch.nan_to_num(drops, nan=-float("inf")), descending=True)
    ]
    present = [i for i in order if not torch.isnan(drops[i])]
    chosen = present[:n]
    beta = float(drops[chosen[-1]]) if chosen else float("inf")
    return chosen, drops, beta


def _auto_classes(signal: torch.Tensor, c: TARFConfig, task: str) -> tuple[int, dict[str, Any]]:
    """``--prior auto`` at class level: the count to set aside and the record of why."""
    decision = largest_gap(signal, c.auto_alpha)
    n, decided_by = auto_count(decision, task, c.auto_floor)
    record = {
        "decided_by": decided_by,
        "data_estimate": decision.n,
        **decision.to_dict(),
        "rule": RULE,
        "floor": c.auto_floor,
    }
    if decided_by == "task floor":
        record["why"] = (
            f"{task}: the concept is wider than the forget data, so some of it "
            "is in D_un; the gap test declined (margin "
            f"{decision.margin:+.2f}), so the largest gap, its candidate, is taken"
        )
    elif decided_by == "task":
        record["why"] = (
            f"{task}: the target is the forget data itself, so none of it "
            "can be left in D_un (the data alone cannot tell this from a wider "
            "concept: the same D_f, D_un and model)"
        )
    return n, record


def feature_nearness(rep: torch.Tensor, forget_rep: torch.Tensor) -> torch.Tensor:
    """Representational gravity read directly: each probe sample's cosine between its
    representation and D_f's centre, both taken from the probe's mean (``rep`` is a
    class-balanced sample of D_un, so its mean is no class's). The cosine, not a
    distance: a class whose features are small (near the origin) is near every centre
    by distance, but points nowhere in particular."""
    centre = rep.mean(0)
    return F.cosine_similarity(rep - centre, (forget_rep.mean(0) - centre)[None], dim=1)


def output_nearness(
    forget_logits: torch.Tensor, forget_labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Representational gravity as the model's own outputs show it: per model class, the
    mean over D_f's samples of the log-probability the original model gives that class
    among the labels that are not D_f's (what the model would answer for D_f if not
    D_f's label), and its standard error over the samples. D_f's own labels get 0, the
    top (the concept's own model class, as in data mismatch, is D_f's label). Read from
    D_f's samples, not the probe's: thousands of samples answer for every class at once,
    where the probe has a hundred per class."""
    logits = forget_logits.float()
    is_forget = torch.zeros(logits.shape[1], dtype=torch.bool)
    is_forget[forget_labels] = True
    logq = torch.log_softmax(logits.masked_fill(is_forget[None], float("-inf")), 1)
    logq = logq[:, ~is_forget]
    mean = torch.zeros(logits.shape[1])
    se = torch.zeros(logits.shape[1])
    mean[~is_forget] = logq.mean(0)
    if len(logq) > 1:
        se[~is_forget] = logq.std(0) / len(logq) ** 0.5
    return mean, se


def class_signals(
    before: Any,
    after: Any,
    num_classes: int,
    nearness: dict[str, torch.Tensor] | None = None,
    class_nearness: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> dict[str, torch.Tensor]:
    """Per class, each signal identification can rank by (bigger: nearer to D_f or moved
    more), and, when the probe kept per-sample values (:class:`ClassStats`), the class
    mean of I_con (``icon``), the class mean of each per-sample nearness to D_f under θ_o
    in ``nearness`` (``features``: :func:`feature_nearness`), and each signal's standard
    error (``{name}_se``). ``class_nearness`` holds nearness signals measured per class
    already, as (mean, standard error) (``outputs``: :func:`output_nearness`); they are
    kept for the classes the probe holds."""
    out = {"accuracy": before[0] - after[0], "loss": after[1] - before[1]}
    y = getattr(before, "labels", None)
    if y is None or getattr(after, "sample_loss", None) is None:
        return out
    dloss = after.sample_loss - before.sample_loss
    per_sample = {
        "loss": dloss,
        "icon": dloss.abs(),
        "accuracy": 100.0 * (before.sample_correct.float() - after.sample_correct.float()),
    }
    per_sample.update(nearness or {})
    count = torch.zeros(num_classes).index_add_(0, y, torch.ones(len(y)))
    present = count > 0
    for name, v in per_sample.items():
        mean = torch.zeros(num_classes).index_add_(0, y, v) / count.clamp_min(1)
        sq = torch.zeros(num_classes).index_add_(0, y, (v - mean[y]) ** 2)
        se = (sq / (count - 1).clamp_min(1) / count.clamp_min(1)).sqrt()
        nan = torch.full_like(mean, float("nan"))
        if name in ("icon", *NEARNESS):
            out[name] = torch.where(present, mean, nan)
        out[f"{name}_se"] = torch.where(present, se, nan)
    for name, (mean, se) in (class_nearness or {}).items():
        nan = torch.full_like(mean, float("nan"))
        out[name] = torch.where(present, mean, nan)
        out[f"{name}_se"] = torch.where(present, se, nan)
    return out


# Each class signal's units, for the report's lines.
SIGNAL_UNITS = {
    "features": "cosine", "outputs": "nats", "loss": "nats", "icon": "nats", "accuracy": "points",
}  # fmt: skip
# The signals read from the original model before Phase I (nearness to D_f), and the
# report's key for each one's class means.
NEARNESS = {"features": "feature_nearness", "outputs": "output_nearness"}
# What makes an unsure ranking surer, by the signal that ranked.
MORE_FORGET = "hand over images of more of the concept's classes as forget data (--forget)"
LARGER_PROBE = "raise id_samples_per_class (--set id_samples_per_class=500) for a less noisy probe"
UNSURE_FIX = {
    "outputs": MORE_FORGET + " (more forget samples also steady this signal), or give "
    "the count if you know it (--prior N)",
    "features": MORE_FORGET + ", or " + LARGER_PROBE,
    "phase1": LARGER_PROBE + ", or rank by nearness to D_f (--set class_signal=outputs)",
}

# The margin between the n-th and the (n+1)-th class counts as noise below this many
# standard errors of their difference.
MARGIN_SES = 2.0


def margin_record(
    signal: torch.Tensor, se: torch.Tensor | None, present: list[int], n: int, names: tuple
) -> dict[str, Any] | None:
    """How sure the cut is: the gap between the last class set aside and the first kept,
    in the signal's units, with the noise of that gap (the two class means' standard
    errors combined) when the probe has per-sample values."""
    if n <= 0 or n >= len(present):
        return None
    a, b = present[n - 1], present[n]
    rec: dict[str, Any] = {
        "between": [names[a], names[b]],
        "margin": round(float(signal[a] - signal[b]), 4),
    }
    if se is not None:
        rec["noise"] = round(float((se[a] ** 2 + se[b] ** 2).sqrt()), 4)
        rec["within_noise"] = bool(rec["margin"] < MARGIN_SES * rec["noise"])
    return rec


def identify_classes(
    before: Any,
    after: Any,
    data: UnlearnData,
    c: TARFConfig,
    task: str,
    nearness: dict[str, torch.Tensor] | None = None,
    source: str | None = None,
    class_nearness: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Class level: from the probe's statistics under θ_o (``before``) and after Phase I
    (``after``): per class (accuracy %, mean loss, and per sample when kept, see
    :class:`ClassStats`), and nearness to D_f under θ_o (:data:`NEARNESS`: per probe
    sample in ``nearness``, the representation read from ``source``; per class in
    ``class_nearness``), the classes nearest to D_f or moved most are set aside, ranked
    by ``c.class_signal``.
    Returns the mask of D_un kept and the report's dict."""
    prior = data.prior
    auto = prior is not None and prior.auto
    signals = class_signals(before, after, data.num_classes, nearness, class_nearness)
    if c.class_signal not in signals:
        raise ValueError(
            f"class_signal={c.class_signal!r} needs the probe's per-sample values, which "
            "this probe did not keep; use loss or accuracy"
        )
    acc_drops, loss_rise, signal = signals["accuracy"], signals["loss"], signals[c.class_signal]
    auto_record = None
    if auto:
        n, auto_record = _auto_classes(signal, c, task)
    else:
        n = prior.num_classes if prior is not None and prior.num_classes is not None else 0
    chosen, drops, beta = rank_drops(signal, torch.zeros_like(signal), n)
    keep = torch.ones(len(data.y_remain), dtype=torch.bool)
    if chosen:
        keep &= ~torch.isin(data.y_remain, torch.tensor(chosen))
    ranked = [int(i) for i in torch.argsort(torch.nan_to_num(drops, nan=-1e9), descending=True)]
    present = [i for i in ranked if not torch.isnan(drops[i])]
    names = data.class_names
    ident = {
        "level": "class",
        "n": n,
        "n_source": "auto" if auto else "prior",
        "class_ids": chosen,
        "classes": [names[i] for i in chosen],
        "beta": beta,
        "signal": c.class_signal,
        # the configured signal's largest values (nats or accuracy points)
        "top10": {names[i]: round(float(signal[i]), 3) for i in present[:10]},
        # in rank order of the signal; accuracy drops in points, loss rises in nats
        "drops": {names[i]: round(float(acc_drops[i]), 2) for i in present},
        "loss_increase": {names[i]: round(float(loss_rise[i]), 3) for i in present},
        "set_aside_samples": int((~keep).sum()),
    }
    for name, key in NEARNESS.items():
        if name in signals:
            # the class means of the nearness (cosine or nats), nearest first
            ident[key] = {
                names[i]: round(float(signals[name][i]), 4)
                for i in sorted(present, key=lambda i: -float(signals[name][i]))
            }
    if "features" in signals:
        ident["representation"] = source
    margin = margin_record(signal, signals.get(f"{c.class_signal}_se"), present, n, names)
    if margin is not None:
        ident["margin"] = margin
    # A ranking by nearness under θ_o does not depend on how far Phase I moved the model.
    warning = (
        None
        if c.class_signal in NEARNESS
        else weak_phase1_warning(acc_drops, loss_rise, n, c.phase1)
    )
    if warning is None and margin is not None and margin.get("within_noise"):
        warning = (
            f"identification is unsure: the last class set aside ({margin['between'][0]}) "
            f"and the next ({margin['between'][1]}) are {margin['margin']:.3g} "
            f"{SIGNAL_UNITS[c.class_signal]} apart on the {c.class_signal} signal, within "
            f"noise (±{margin['noise']:.2g}); the classes set aside may be wrong: "
            + UNSURE_FIX.get(c.class_signal, UNSURE_FIX["phase1"])
        )
    if warning:
        ident["warning"] = warning
    if auto_record is not None:
        cut = auto_record["cut"]
        if 0 < cut < len(present):
            auto_record["gap_between"] = [names[present[cut - 1]], names[present[cut]]]
        ident["auto"] = auto_record
    return keep, ident


def identify_instances(
    icon: torch.Tensor,
    probe: torch.Tensor,
    data: UnlearnData,
    c: TARFConfig,
    task: str,
    icon_forget: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Instance level (TARF-I): ``icon`` is each probe sample's I_con (the absolute loss
    change over Phase I; ``probe`` their indices in D_un); the samples above β are set
    aside, and only scored samples are kept. ``icon_forget``: D_f's own I_con, for the
    ``forget`` auto rule."""
    prior = data.prior
    auto = prior is not None and prior.auto
    auto_record = None
    if auto:
        if c.auto_instance_rule == "forget":
            found = forget_calibrated_cut(icon, icon_forget, c.auto_forget_quantile)
            estimate, found = found["n"], {**found, "signal": "I_con", "rule": FORGET_RULE}
        else:
            decision = largest_gap(log_icon(icon), c.auto_alpha)
            estimate = decision.n
            found = {**decision.to_dict(), "signal": "log I_con", "rule": RULE}
        can_hide = concept_can_hide(task)
        n_out = estimate if can_hide else 0
        auto_record = {
            "decided_by": "data" if can_hide else "task",
            "data_estimate": estimate,
            **found,
        }
        fraction = n_out / max(len(probe), 1)
    else:
        fraction = prior.fraction if prior is not None and prior.fraction is not None else 0.0
        n_out = int(round(fraction * len(probe)))
    beta = float(torch.topk(icon, n_out).values[-1]) if n_out > 0 else float("inf")
    # Only scored samples are kept: I_con of the others is unknown.
    keep = torch.zeros(len(data.y_remain), dtype=torch.bool)
    keep[probe[icon < beta]] = True
    ident = {
        "level": "instance",
        "n_source": "auto" if auto else "prior",
        "fraction": fraction,
        "beta": beta,
        "scored_samples": len(probe),
        "set_aside_samples": int((icon >= beta).sum()) if n_out > 0 else 0,
        "top10": [round(float(v), 4) for v in torch.topk(icon, min(10, len(icon))).values],
    }
    if auto_record is not None:
        ident["auto"] = auto_record
    return keep, ident
