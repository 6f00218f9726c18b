"""TARF's identification probe: what identification compares, measured under θ_o before
any update (:func:`measure_probe`) and again after Phase I (:func:`identify`, which hands
both to the decisions of :mod:`tarf.methods.tarf_identify`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn

from tarf.methods.base import UnlearnContext, UnlearnData
from tarf.methods.common import per_sample_loss, representation
from tarf.methods.tarf_identify import (
    balanced_sample,
    class_stats,
    feature_nearness,
    identify_classes,
    identify_instances,
    output_nearness,
    skipped,
)
from tarf.training import forward_logits

if TYPE_CHECKING:
    from tarf.methods.tarf import TARFConfig

# D_f samples (seeded) whose mean representation is D_f's centre (class_signal=features)
# and whose outputs give output_nearness (class_signal=outputs).
CENTRE_SAMPLES = 2000


@dataclass
class Probe:
    """Identification's probe: indices into D_un and their statistics under θ_o."""

    idx: torch.Tensor
    before: Any  # (accuracy %, mean loss) per class, or per-sample losses
    before_forget: torch.Tensor | None = None
    # class level: each probe sample's nearness to D_f under θ_o, by signal
    # (tarf_identify.NEARNESS), and where the representation was read
    nearness: dict[str, torch.Tensor] | None = None
    representation: str | None = None
    # class level: nearness measured per class from D_f's samples, (mean, standard error)
    class_nearness: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None


def measure_probe(
    original: nn.Module, data: UnlearnData, ctx: UnlearnContext, c: TARFConfig
) -> Probe:
    """What identification will compare against, measured under θ_o before any update:
    the class statistics (class level) or per-sample losses (instance level) of a
    seeded sample of D_un, and D_f's own losses for the instance-level ``forget``
    auto rule."""
    gen = torch.Generator().manual_seed(ctx.seed)
    x, y = data.x_remain, data.y_remain
    if c.identification == "class":
        idx = balanced_sample(y, c.id_samples_per_class, data.num_classes, gen)
        probe = Probe(idx, class_stats(original, x[idx], y[idx], data.num_classes, ctx))
        # both nearness signals, whichever ranks: cheap next to Phase I, and the report
        # shows both rankings
        centre_idx = torch.randperm(len(data.y_forget), generator=gen)[:CENTRE_SAMPLES]
        x_centre = data.x_forget[centre_idx]
        forget_rep, _ = representation(original, x_centre, ctx)
        rep, probe.representation = representation(original, x[idx], ctx)
        probe.nearness = {"features": feature_nearness(rep, forget_rep)}
        forget_logits = forward_logits(original, x_centre, ctx.device)
        probe.class_nearness = {"outputs": output_nearness(forget_logits, data.y_forget.unique())}
        return probe
    idx = torch.randperm(len(y), generator=gen)[: c.instance_pool].sort().values
    before = per_sample_loss(original, x[idx], y[idx], ctx)
    before_forget = None
    if data.prior is not None and data.prior.auto and c.auto_instance_rule == "forget":
        before_forget = per_sample_loss(original, data.x_forget, data.y_forget, ctx)
    return Probe(idx, before, before_forget)


def identify(
    model: nn.Module,
    data: UnlearnData,
    ctx: UnlearnContext,
    probe: Probe | None,
    c: TARFConfig,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Which samples of D_un keep τ = 1: the probe measured again after Phase I, and
    the decision of :mod:`tarf.methods.tarf_identify` (``probe`` None: the prior says
    there is nothing to identify)."""
    if probe is None:
        return skipped(c.identification, len(data.y_remain))
    x, y = data.x_remain[probe.idx], data.y_remain[probe.idx]
    if c.identification == "class":
        after = class_stats(model, x, y, data.num_classes, ctx)
        return identify_classes(
            probe.before,
            after,
            data,
            c,
            ctx.task,
            probe.nearness,
            probe.representation,
            probe.class_nearness,
        )
    icon = (per_sample_loss(model, x, y, ctx) - probe.before).abs()
    icon_forget = None
    if probe.before_forget is not None:
        after_forget = per_sample_loss(model, data.x_forget, data.y_forget, ctx)
        icon_forget = (after_forget - probe.before_forget).abs()
    return identify_instances(icon, probe.idx, data, c, ctx.task, icon_forget)
