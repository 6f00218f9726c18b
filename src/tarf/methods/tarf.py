"""TARF: TARget-aware Forgetting (paper Algorithms 1 and 2).

    L = k(t) · (− mean_{D_f} ℓ) + mean_{D_un} ℓ · τ(x, y, t)
    k(t) = max(k (T − t − t0) / T, 0)

Phase I (t < t1): gradient ascent on D_f only, which pulls the data that sits close to
D_f in representation ("representational gravity") along with it. Identification sets
aside the classes of D_un the original model holds closest to D_f: those it would answer
for D_f's samples if D_f's labels were ruled out (``class_signal=outputs``), or those
nearest in its representation (``features``); or those Phase I moved most (``loss``,
``icon``, ``accuracy``). Phase II: ascent on D_f and on what was set aside, plus descent on the
retained part of D_un (separation). Phase III (k(t) = 0): descent on the retained part
only (approximation of the retrained model).

Calibrated from the request alone (preset ``tarf``): Phase I ascends until D_f's label is
no likelier than a uniform guess (``phase1=chance``), within one epoch's budget; in Phase
II the forget batch weighs as much as the retained one (k = 1) and each forget sample
stops being pushed once its label is as unlikely as a typical wrong label under the
original model (``ascent_floor=wrong-label``). Nothing is read from the dataset's name.
``preset=paper`` is the paper's Algorithm 1 with its k per dataset and task (Appendix
F.1). Identification's probe is in :mod:`tarf.methods.tarf_probe`, its decisions in
:mod:`tarf.methods.tarf_identify`, the ascent's pieces in
:mod:`tarf.methods.tarf_ascent`; every epoch runs under the budget rule
(:mod:`tarf.methods.loop`).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from tarf.domains import MODEL_MISMATCH
from tarf.identify import AUTO_FLOORS
from tarf.methods.base import Method, MethodResult, UnlearnContext, UnlearnData, register
from tarf.methods.common import (
    Pool,
    batch_statistics_batchnorm,
    ce,
    frozen_batchnorm,
    param_blocks,
    recompute_batchnorm_statistics,
    step,
)
from tarf.methods.loop import Loop
from tarf.methods.tarf_ascent import (  # noqa: F401 - re-exported
    FLOOR_SAMPLES,
    PHASE3_OTHERWISE,
    ascend_to,
    ascent_loss,
    guarded_step,
    label_ceilings,
    mixed_batch_loss,
    phase_two_epoch,
    resolve_by_kept_labels,
    with_phase3,
    wrong_label_floor,
)
from tarf.methods.tarf_identify import nothing_to_identify
from tarf.methods.tarf_kept_head import kept_head_targets
from tarf.methods.tarf_probe import identify, measure_probe

# Paper Appendix F.1: k per dataset and task (t1 = 1, t0 = 2 everywhere). Only
# preset=paper reads it: the calibrated default never looks at the dataset's name.
PAPER_K = {
    "cifar100": {MODEL_MISMATCH: 0.5, "other": 0.05},
    "cifar10": {MODEL_MISMATCH: 0.04, "other": 0.02},
}


def paper_k(dataset: str, task: str) -> float:
    """The paper's k for a dataset and task; datasets the paper does not use take
    CIFAR-10's (10 classes too)."""
    table = PAPER_K.get(dataset, PAPER_K["cifar10"])
    return table[MODEL_MISMATCH] if task == MODEL_MISMATCH else table["other"]


def k_schedule(k: float, epochs: int, t0: int, mode: str = "annealed") -> list[float]:
    """k(t) for t = 0..T-1. ``annealed`` is the paper's; ``constant`` and ``increasing``
    are the ablations of Fig. 7 (all reach zero at T - t0)."""
    ks = []
    for t in range(epochs):
        if mode == "annealed":
            ks.append(max(k * (epochs - t - t0) / epochs, 0.0))
        elif mode == "constant":
            ks.append(k if t < epochs - t0 else 0.0)
        elif mode == "increasing":
            ks.append(k * (t + 1) / epochs if t < epochs - t0 else 0.0)
        else:
            raise ValueError(f"unknown k schedule {mode!r}: annealed, constant or increasing")
    return ks


def phase_of(t: int, t1: int, k_t: float) -> str:
    """I before t1 (identification), II while k(t) > 0 (separation), III after (approximation)."""
    if t < t1:
        return "I"
    return "II" if k_t > 0 else "III"


@dataclass
class TARFConfig:
    """TARF hyperparameters. The defaults come from what the run is given (docs/methods.md,
    "Calibrated, not tuned"); ``preset="paper"`` takes Appendix F.1's; ``None`` = derived."""

    epochs: int = 10  # T, the number of unlearning epochs
    t1: int = 1  # end of Phase I: identification happens at θ_{t1}
    # Phase III's length: k(t) reaches zero at T - t0; None: 3 where the kept data still
    # carries a label of D_f's (model mismatch), else 2 (resolve_by_kept_labels)
    t0: int | None = None
    # Phase II's ascent weight before annealing; None = 1 under preset tarf (the scale on
    # which k(t) = 1 would weigh a forget batch's mean loss as much as the retained
    # batch's; the annealed k(t) runs from 0.7 to 0.1; ascent_floor bounds it), the
    # paper's k for the dataset and task under preset paper
    k: float | None = None
    k_schedule: str = "annealed"  # annealed | constant | increasing (ablation)
    lr: float | None = None  # None = the recipe's unlearning learning rate
    identification: str = "class"  # class (Algorithm 1) | instance (Algorithm 2, TARF-I)
    # what happens to the data identification set aside: "ascent" (ascended on with D_f,
    # weight k(t): the concept's hidden classes are forgotten, not only left untrained)
    # or "zero" weight (the paper's τ = 0)
    identified_op: str = "ascent"
    id_samples_per_class: int = 100  # D_un samples per model class in identification's probe
    # what ranks the classes: nearness to D_f under the original model, "outputs" (what
    # the model answers for D_f's samples with D_f's labels ruled out: each class's mean
    # log-probability, tarf_identify.output_nearness) or "features" (representational
    # gravity read in the representation: how closely each class's samples point the way
    # D_f's do, tarf_identify.feature_nearness); or the change Phase I caused:
    # "loss" (the class-mean loss rise, signed), "icon" (the class mean of the paper's
    # I_con = |loss change|), "accuracy" (the accuracy drop, as the paper's Algorithm 1)
    class_signal: str = "outputs"
    instance_pool: int = 10000  # D_un samples scored by I_con at instance level
    forget_batch_size: int = 64  # D_f batch of Phases I and II
    # Phase I's length, by the change it must cause: ascent on D_f (weight 1) until a
    # batch's loss reaches "chance" (ln of the number of labels: D_f's label no likelier
    # than a uniform guess) or the "floor" (the loss the original model gives a typical
    # wrong label), within one epoch's budget; "pass" is one pass of D_f at weight k(0),
    # the paper's epoch
    phase1: str = "chance"
    stop_after_identification: bool = False  # analysis: run Phase I, identify, stop
    # ablation (paper Fig. 4b): the first N layers with weights (tarf.methods.common.
    # param_blocks) are not updated in Phases II and III; 0 = every layer learns; a
    # negative N leaves only the last -N learning (-1: only the classifier)
    frozen_blocks: int = 0
    auto_alpha: float = 0.01  # --prior auto: the rule's false-positive rate on noise
    # --prior auto at class level when the gap test declines on a concept wider than D_f:
    # "largest-gap" takes the test's candidate cut, "none" sets nothing aside (auto_count)
    auto_floor: str = "largest-gap"
    # --prior auto at instance level: "forget" (β = the auto_forget_quantile of D_f's own
    # I_con, tarf.identify.forget_calibrated_cut) or "gap" (the largest-gap rule)
    auto_instance_rule: str = "forget"
    auto_forget_quantile: float = 0.05  # the quantile of D_f's own I_con that sets β ("forget")
    # batch norm during Phase I (forget-only batches): "frozen" running statistics, or
    # "batch": each batch's own statistics, the running ones untouched
    phase1_batchnorm: str = "frozen"
    # ours: "none" (the paper) ascends on D_f without bound; "wrong-label" stops pushing a
    # sample once its label is as unlikely as a typical wrong label under the original
    # model (wrong_label_floor), for labels the retained data no longer carries
    ascent_floor: str = "wrong-label"
    # with ascent_floor: how far the ascent pushes a label the retained data still
    # carries (model mismatch: "boy" labelled "people" while "man" keeps the label):
    # "chance" (until the label is no likelier than a uniform guess, ln of the number of
    # labels; further, it only fights the descent on the label's other members) or
    # "none" (without bound)
    retained_ceiling: str = "chance"
    # what the forget samples whose label the kept data still carries (model mismatch)
    # are pushed to: "ascent" (ascended, up to retained_ceiling) or "kept-head" (taught
    # what a linear head fit on the kept data's representation answers for them, the
    # estimate of a model retrained without them, tarf_kept_head; Phase I is skipped when
    # it leaves nothing to ascend and nothing to identify)
    retained_label: str = "ascent"
    # Phase II's batches: "mixed" forwards the forget and the retained batch as one batch
    # with per-sample weights -k(t)/n_f and 1/n_r (the paper's Algorithm 1: one mini-batch
    # of D), the running statistics fed by its retained rows only; "separate" forwards them
    # one after the other (both update the running statistics); "retain-stats" forwards
    # them one after the other, the forget batch normalised by its own statistics and the
    # running ones left to the retained data; "auto": mixed where the retained data still
    # carries one of D_f's labels (model mismatch: the ascent must separate D_f from the
    # label's other members under the normalisation evaluation uses), else separate
    # (the shared batch costs retained accuracy where nothing needs separating)
    phase2_batch: str = "auto"
    # batch norm's running statistics at the end: "retained" recomputes them from (a seeded
    # sample of BATCHNORM_SAMPLES of) the data TARF kept, under the final weights;
    # "retained-augmented" does so from those samples augmented as training batches are;
    # "trained" keeps what the unlearning steps left (the paper's Algorithm 1); "auto":
    # retained after a mixed Phase II, trained after separate batches
    batchnorm_stats: str = "auto"
    # Phase III's learning rate: "constant" (the run's lr, as every other epoch), or
    # "anneal" (linearly from lr to zero over Phase III's steps, so that the model settles
    # on the retained data as training ended, instead of stopping mid-stride); "auto":
    # anneal where the kept data still carries a label of D_f's, else constant
    phase3_lr: str = "auto"
    # "paper": the paper's Algorithm 1 as written (PAPER_PRESET: accuracy-drop ranking,
    # one mixed Phase II batch, one pass of D_f in Phase I, the running statistics as
    # trained, the paper's k per dataset and task); "tarf": the fields as set
    preset: str = "tarf"


# batchnorm_stats=retained: kept samples (seeded) the running statistics are recomputed from.
BATCHNORM_SAMPLES = 4096

# What preset="paper" fixes: Algorithm 1 ranks by accuracy drop over one mixed batch of D,
# gives the data it sets aside zero weight and keeps the running statistics its steps left.
PAPER_PRESET = {
    "class_signal": "accuracy", "phase2_batch": "mixed", "phase1": "pass", "ascent_floor": "none",
    "identified_op": "zero", "batchnorm_stats": "trained",
}  # fmt: skip


def paper_preset(c: TARFConfig) -> TARFConfig:
    """``c`` with the paper's Algorithm 1 settings (:data:`PAPER_PRESET`); a field set to
    something else than its default and the paper's is a contradiction, refused."""
    default = TARFConfig()
    for name, value in PAPER_PRESET.items():
        mine = getattr(c, name)
        if mine not in (value, getattr(default, name)):
            raise ValueError(
                f"preset=paper fixes {name}={value!r}, but {name}={mine!r} was set; drop one"
            )
    # the paper's Phase III (t0 = 2 everywhere, the run's rate), unless set by hand
    return with_phase3(dataclasses.replace(c, **PAPER_PRESET), PHASE3_OTHERWISE)


# Batch norm during Phase I, by TARFConfig.phase1_batchnorm.
PHASE1_BATCHNORM = {"frozen": frozen_batchnorm, "batch": batch_statistics_batchnorm}
# The string options of TARFConfig and their values, checked before a run.
CHOICES: dict[str, tuple[str, ...]] = {
    "identification": ("class", "instance"),
    "class_signal": ("features", "outputs", "loss", "icon", "accuracy"),
    "phase2_batch": ("auto", "separate", "mixed", "retain-stats"),
    "batchnorm_stats": ("auto", "retained", "retained-augmented", "trained"),
    "preset": ("tarf", "paper"),
    "phase1": ("chance", "floor", "pass"),
    "identified_op": ("zero", "ascent"),
    "phase1_batchnorm": tuple(PHASE1_BATCHNORM),
    "auto_instance_rule": ("forget", "gap"),
    "auto_floor": AUTO_FLOORS,
    "ascent_floor": ("none", "wrong-label"),
    "retained_ceiling": ("chance", "none"),
    "retained_label": ("ascent", "kept-head"),
    "phase3_lr": ("auto", "constant", "anneal"),
}


@register
class TARF(Method):
    """TARF: annealed ascent on D_f, identification of the concept in D_un, separation."""

    uses_prior = True  # identification reads the request's prior
    name = "tarf"
    Config = TARFConfig

    def run(self, model: nn.Module, data: UnlearnData, ctx: UnlearnContext) -> MethodResult:
        for name, allowed in CHOICES.items():
            value = getattr(self.config, name)
            if value not in allowed:
                raise ValueError(f"{name} must be {' or '.join(map(repr, allowed))}, got {value!r}")
        # the settings this run uses: the preset applied
        c = paper_preset(self.config) if self.config.preset == "paper" else self.config
        k, k_rule = c.k, "set"
        if k is None:
            k, k_rule = (
                (paper_k(ctx.dataset, ctx.task), "paper") if c.preset == "paper" else (1.0, "equal")
            )
        # before identification decides an auto t0, Phase I's k(0) takes the other tasks'
        ks = k_schedule(k, c.epochs, with_phase3(c, PHASE3_OTHERWISE).t0, c.k_schedule)
        loop = Loop(model, ctx, c)
        forget = Pool(data.x_forget, data.y_forget, ctx, seed_offset=1)
        floor = (
            wrong_label_floor(model, data, ctx)
            if c.ascent_floor != "none" or c.phase1 == "floor"
            else None
        )
        # Before identification, only labels absent from all of D_un are bounded.
        bounded = floor if c.ascent_floor != "none" else None
        retained = math.log(data.num_classes) if c.retained_ceiling == "chance" else math.inf
        ceilings = label_ceilings(bounded, data.y_remain, data.num_classes, ctx.device, retained)
        # A known prior of zero (all matched, model mismatch) leaves nothing to identify:
        # skip the probe's forward passes, which cannot change the result.
        skip = nothing_to_identify(data.prior, c.identification) and not c.stop_after_identification
        probe = None if skip else measure_probe(model, data, ctx, c)
        # retained_label=kept-head: the forget samples of a label D_un carries are taught
        # a kept-data head's answer (taught), the others ascended (forget)
        taught: tuple[Pool, torch.Tensor] | None = None
        head: dict[str, Any] | None = None
        t1 = c.t1
        if c.retained_label == "kept-head":
            carried = torch.isin(data.y_forget, data.y_remain.unique())
            if carried.any():
                rows = carried.nonzero().squeeze(1)
                targets, head = kept_head_targets(model, data, ctx, rows)
                head["taught"] = len(rows)
                positions = torch.arange(len(rows))  # the pool's labels: rows of targets
                taught = (Pool(data.x_forget[rows], positions, ctx, 5), targets.to(ctx.device))
                forget = Pool(data.x_forget[~carried], data.y_forget[~carried], ctx, 1)
                if carried.all() and skip:
                    t1 = 0  # nothing to ascend before identification, nothing to identify

        details: dict[str, Any] = {
            "k": k, "k_rule": k_rule, "lr": loop.lr, "k_schedule": ks, "phases": [],
            "skipped_steps": 0,
            "seconds": {},  # wall time per phase and of identification: where RTE goes
        }  # fmt: skip
        if c.preset == "paper":  # the report's config holds the fields as set, not as run
            details["preset_applied"] = dict(PAPER_PRESET)
        if bounded is not None:
            details["ascent_ceiling_nats"] = floor
        if head is not None:
            details["kept_head"] = head
        secs = details["seconds"]
        tick = time.perf_counter()
        retain: Pool | None = None
        extra: Pool | None = None  # the set-aside samples, for identified_op="ascent"
        ident: dict[str, Any] | None = None
        phase3: list[int] | None = None
        for epoch in loop:
            t = epoch.t
            if t == t1 or (retain is None and t >= t1):
                keep, ident = identify(loop.model, data, ctx, probe, c)
                secs["identify"] = time.perf_counter() - tick
                tick = time.perf_counter()
                if c.stop_after_identification:
                    break
                y_kept = data.y_remain[keep]
                kept = set(y_kept.unique().tolist())  # the labels the kept data carries
                c = loop.config = resolve_by_kept_labels(c, data, kept, details)
                ks = details["k_schedule"] = k_schedule(k, c.epochs, c.t0, c.k_schedule)
                retain = Pool(data.x_remain[keep], y_kept, ctx, seed_offset=2)
                ceilings = label_ceilings(bounded, y_kept, data.num_classes, ctx.device, retained)
                if ceilings is not None:
                    # D_f's labels: bounded by the floor, or (still retained) by chance
                    labels = data.y_forget.unique().tolist()
                    details["ascent_bounded_labels"] = [
                        data.class_names[i] for i in labels if i not in kept
                    ]
                    if math.isfinite(retained):
                        details["ascent_chance_labels"] = [
                            data.class_names[i] for i in labels if i in kept
                        ]
                        details["ascent_chance_nats"] = retained
                frozen = self._freeze(loop.model, c.frozen_blocks)
                if frozen:
                    details["frozen_blocks"] = frozen
                if c.identified_op == "ascent" and (~keep).any():
                    extra = Pool(data.x_remain[~keep], data.y_remain[~keep], ctx, seed_offset=3)
            phase = phase_of(t, t1, ks[t])
            details["phases"].append(phase)
            if phase == "I":
                # τ = 0 for all of D_un: its forward passes cannot change the update, so skip them.
                with PHASE1_BATCHNORM[c.phase1_batchnorm](loop.model):
                    if not len(forget):
                        details["phase1"] = {"rule": "none: every D_f label is kept (kept-head)"}
                    elif c.phase1 != "pass":
                        target = floor if c.phase1 == "floor" else math.log(data.num_classes)
                        details["phase1"] = ascend_to(
                            loop, epoch, forget, c.phase1, target, details.get("phase1")
                        )
                    else:
                        for xf, yf in epoch.batches(forget, c.forget_batch_size):
                            loss = -ks[t] * ascent_loss(loop.model, xf, yf, ctx, ceilings)
                            details["skipped_steps"] += guarded_step(loop.opt, loss)
            elif phase == "II":
                details["skipped_steps"] += phase_two_epoch(
                    loop, epoch, forget, retain, extra, ks[t], ceilings, taught
                )
            else:
                if phase3 is None:  # Phase III's samples so far and in all (phase3_lr=anneal)
                    epochs3 = sum(ks[u] == 0 for u in range(t, c.epochs))
                    phase3 = [0, epochs3 * min(epoch.cap, len(retain))]
                for xr, yr in epoch.batches(retain):
                    if c.phase3_lr == "anneal":
                        for group in loop.opt.param_groups:
                            group["lr"] = loop.lr * max(0.0, 1 - phase3[0] / phase3[1])
                        phase3[0] += len(yr)
                    step(loop.opt, ce(loop.model, xr, yr, ctx))
            now = time.perf_counter()
            secs[phase] = secs.get(phase, 0.0) + now - tick
            tick = now
        if ident is None:  # t1 >= T: Phase I only (identification analysis)
            ident = identify(loop.model, data, ctx, probe, c)[1]
        elif c.batchnorm_stats.startswith("retained") and not c.stop_after_identification:
            gen = torch.Generator().manual_seed(ctx.seed + 4099)
            kept = keep.nonzero().squeeze(1)
            kept = kept[torch.randperm(len(kept), generator=gen)[:BATCHNORM_SAMPLES]]
            aug = None
            if c.batchnorm_stats == "retained-augmented":
                r = ctx.recipe
                aug = (r.crop_pad, r.flip, torch.Generator(ctx.device).manual_seed(ctx.seed + 4111))
            layers = recompute_batchnorm_statistics(
                loop.model, data.x_remain[kept], ctx.device, augmentation=aug
            )
            if layers:
                details["batchnorm_recomputed"] = {
                    "layers": layers,
                    "samples": len(kept),
                    "augmented": aug is not None,
                }
                secs["batchnorm"] = time.perf_counter() - tick
        for p in loop.model.parameters():
            p.requires_grad_(True)
        result = loop.result(**details)
        result.identification = ident
        if probe is not None and "warning" in details.get("phase1", {}):
            result.warnings.append(details["phase1"]["warning"])
        if "warning" in ident:
            result.warnings.append(ident["warning"])
        return result

    def hidden_target_hint(self, result: MethodResult) -> str:
        """The forget data is forgotten, the rest of the target is not: identification set
        aside the wrong classes, or too few."""
        ident = result.identification or {}
        if ident.get("classes"):
            found = f"identification set aside {', '.join(map(str, ident['classes']))}"
        elif ident.get("set_aside_samples"):
            found = f"identification set aside {ident['set_aside_samples']} samples"
        else:
            found = "identification set nothing aside"
        doubt = " (its margin is within noise)" if ident.get("warning") else ""
        return (
            f"{found}{doubt}, and the concept's other members are still trained on: if you "
            "know classes the concept holds, hand over their images as forget data "
            "(--forget); if the number set aside is wrong, give it (--prior)"
        )

    def cost_hint(self, result: MethodResult) -> str:
        """The cost on the retained data most often comes from ascending on classes that
        identification set aside wrongly: name them."""
        ident = result.identification or {}
        k = result.details.get("k") or 0.0
        weaker = f"lower k (--set k={k / 2:g}) or lr" if k > 0 else "lower k or lr"
        if ident.get("classes") and self.config.identified_op == "ascent":
            return (
                f"it ascended on the classes identification set aside "
                f"({', '.join(map(str, ident['classes']))}) too: one outside the concept "
                "loses its accuracy (hand over images of the concept's classes as forget "
                "data, --forget, or leave what is set aside alone, --set "
                f"identified_op=zero); if all belong to it, the ascent reached further: {weaker}"
            )
        return f"the ascent reached past what it was asked to forget: {weaker}"

    def weak_forgetting_hint(self, result: MethodResult) -> str:
        """The likely cause and the fix when a run forgot little (:mod:`tarf.run`)."""
        if (result.identification or {}).get("warning"):
            return (
                "the classes set aside are doubtful (see the identification's warning), so "
                "the concept's hidden classes may still be trained on: hand over the images "
                "of the classes you know the concept holds as forget data (--forget), or "
                "strengthen Phase I (--set phase1=floor)"
            )
        if result.details.get("ascent_chance_labels"):
            return (
                "the ascent stopped at chance for a label the retained data still carries "
                f"({', '.join(result.details['ascent_chance_labels'])}), and the descent on "
                "its other members brought the forget data back: --set retained_ceiling=none "
                "ascends without bound (it can ruin the rest of the model: watch RA)"
            )
        k, lr = result.details.get("k") or 0.0, result.details.get("lr")
        stronger = f"--set k={10 * k:g}" if k > 0 else "--set k=..."
        return f"the ascent was too weak for this model (k={k:g}, lr={lr:g}): raise k ({stronger}) or lr"

    @staticmethod
    def _freeze(model: nn.Module, n: int) -> list[str]:
        """Stop the gradient below layer ``n`` for the rest of the run: parameters without
        a gradient are skipped by SGD (no step, no momentum, no weight decay). A negative
        ``n`` counts from the output, as in Python slicing: ``-1`` freezes every layer but
        the classifier, whatever the architecture."""
        if n == 0:
            return []
        blocks = param_blocks(model)
        if n > len(blocks) or -n >= len(blocks):
            raise ValueError(
                f"frozen_blocks={n}, but the model has {len(blocks)} layers with weights: "
                f"use 1 to {len(blocks)} (from the input) or -1 to -{len(blocks) - 1} "
                "(all but that many from the output)"
            )
        for b in blocks[:n]:
            for p in b.parameters():
                p.requires_grad_(False)
        return [type(b).__name__ for b in blocks[:n]]
