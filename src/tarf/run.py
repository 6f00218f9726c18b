"""One run path: request -> partitions -> method -> metrics -> report.

:func:`execute` runs a method on what a user has (:class:`UnlearnData`), times it,
measures the result and builds the report (:class:`tarf.schema.Report`). Everything that
calls a method calls it: :func:`run_request` (``tarf unlearn``, each ``tarf bench`` job,
with the original and the retrained reference from the model cache) and
:func:`tarf.api.unlearn` (a user's own model).
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn

from tarf.cache import ModelCache, TrainedModel, evaluate_cached, prepare_dataset, trained_model
from tarf.checkpoint import checkpoint_meta, save_checkpoint
from tarf.data.core import ImageDataset
from tarf.domains import Level
from tarf.methods.base import (
    Method,
    MethodResult,
    UnlearnContext,
    UnlearnData,
    config_changes,
    config_dict,
)
from tarf.metrics import evaluate, gap
from tarf.recipes import Recipe
from tarf.request import UnlearningRequest
from tarf.schema import Report
from tarf.training import accuracy

Measure = Callable[[nn.Module], dict[str, Any]]


def _provenance(m: TrainedModel) -> str:
    return "cached" if m.meta["cached"] else f"trained in {m.meta['train_s']:.0f}s"


def machine_info(device: torch.device) -> dict[str, Any]:
    return {
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "torch": torch.__version__,
    }


def model_label_names(request: UnlearningRequest) -> tuple[str, ...]:
    h = request.hierarchy
    return tuple(h.class_names if request.model_level == Level.CLASS else h.superclass_names)


def make_unlearn_data(request: UnlearningRequest, x: torch.Tensor, y: torch.Tensor) -> UnlearnData:
    """Everything a method may see, and nothing else: D_f and D_un with the model's
    labels, and the request's prior. The ground-truth partitions stay here."""
    parts = request.partitions(y, y[:0])
    y_model = request.model_labels(y)
    return UnlearnData(
        x_forget=x[parts.forget], y_forget=y_model[parts.forget],
        x_remain=x[parts.unlearn], y_remain=y_model[parts.unlearn],
        num_classes=request.num_model_classes, class_names=model_label_names(request),
        prior=request.prior(y),
    )  # fmt: skip


def unlearn_data(ds: ImageDataset, request: UnlearningRequest) -> UnlearnData:
    """:func:`make_unlearn_data` on a dataset's training split."""
    return make_unlearn_data(request, ds.x_train, ds.y_train)


# Percent of D_t below the MIA attack's range (metrics.mia_extrapolated) from which the
# report notes an MIA that still calls most of D_t members: an extrapolation, not evidence.
MIA_EXTRAPOLATED = 50.0
# Fewer samples than this where UA is measured and it moves in coarse steps: a note says so.
FEW_FORGET = 20
# The unlearned model counts as having forgotten little when it moved less than this
# fraction of the way from the original toward the retrained reference on D_t (or, with
# no reference, kept more than this fraction of the original's accuracy on D_f).
WEAK_FORGETTING = 0.5


# The unlearned model counts as damaged when it keeps less than this fraction of the
# original's accuracy on the retained data (RA where measured, else a seeded sample of
# DAMAGE_SAMPLES of D_un): it forgot far more than was asked.
DAMAGED = 0.5
DAMAGE_SAMPLES = 2000
# Short of damage, a run is still told what it cost when it lost more than this many
# points of accuracy on the retained data against the original and, where there is one,
# the retrained reference (which shows what leaving D_f out costs by itself).
COSTLY_POINTS = 10.0


def retained_accuracy(
    result: MethodResult,
    original: nn.Module,
    data: UnlearnData,
    ctx: UnlearnContext,
    report: Report,
    memo: dict[str, Any] | None = None,
) -> tuple[float, float, str] | None:
    """The original's and the unlearned model's accuracy on the retained data, and its
    name: RA where the run is measured, else on a seeded sample of ``D_un``. None when
    there is nothing to judge a loss by: no retained data, or an original under 20 %.
    ``memo``: one run's checks share it, so the sample is measured once, not per check
    (two forward passes of 2,000 images: tens of seconds for a large network on a CPU)."""
    if memo is not None and "retained" in memo:
        return memo["retained"]
    kept = _retained_accuracy(result, original, data, ctx, report)
    if memo is not None:
        memo["retained"] = kept
    return kept


def _retained_accuracy(
    result: MethodResult,
    original: nn.Module,
    data: UnlearnData,
    ctx: UnlearnContext,
    report: Report,
) -> tuple[float, float, str] | None:
    m, orig = report.get("metrics") or {}, report.get("original") or {}
    if m.get("RA") is not None and orig.get("RA") is not None:
        before, after, what = orig["RA"], m["RA"], "RA"
    else:
        n = min(len(data.y_remain), DAMAGE_SAMPLES)
        if n == 0:
            return None
        gen = torch.Generator().manual_seed(ctx.seed)
        idx = torch.randperm(len(data.y_remain), generator=gen)[:n]
        x, y = data.x_remain[idx], data.y_remain[idx]
        before, after = (accuracy(net, x, y, ctx.device) for net in (original, result.model))
        what = "accuracy on the data kept"
    return (before, after, what) if before >= 20 else None


def damage_warning(
    method: Method,
    result: MethodResult,
    original: nn.Module,
    data: UnlearnData,
    ctx: UnlearnContext,
    report: Report,
    memo: dict[str, Any] | None = None,
) -> str | None:
    """One line when the run wrecked what it should keep, with the likely cause and the
    fix (the opposite advice to :func:`forgetting_warning`'s, which it then replaces)."""
    kept = retained_accuracy(result, original, data, ctx, report, memo)
    if kept is None:
        return None
    before, after, what = kept
    if after >= DAMAGED * before:
        return None
    return (
        f"{method.name} damaged the model: {what} {after:.1f}% against the original's "
        f"{before:.1f}%; {method.damage_hint(result)}"
    )


def cost_warning(
    method: Method,
    result: MethodResult,
    original: nn.Module,
    data: UnlearnData,
    ctx: UnlearnContext,
    report: Report,
    memo: dict[str, Any] | None = None,
) -> str | None:
    """One line when the run, short of damage, lost more than :data:`COSTLY_POINTS` of
    the retained accuracy that retraining keeps: the forgetting came at a cost the user
    should weigh (checked last, so that a worse failure is the one named)."""
    kept = retained_accuracy(result, original, data, ctx, report, memo)
    if kept is None:
        return None
    before, after, what = kept
    ref = (report.get("reference") or {}).get("RA") if what == "RA" else None
    bar = min(before, ref) if ref is not None else before
    if after >= bar - COSTLY_POINTS:
        return None
    against = f" and the retrained reference's {ref:.1f}%" if ref is not None else ""
    return (
        f"{method.name} cost the retained data more than {COSTLY_POINTS:g} points: {what} "
        f"{after:.1f}% against the original's {before:.1f}%{against}; "
        f"{method.cost_hint(result)}"
    )


def forgetting_warning(
    method: Method,
    result: MethodResult,
    original: nn.Module,
    data: UnlearnData,
    ctx: UnlearnContext,
    report: Report,
    memo: dict[str, Any] | None = None,  # the checks' shared signature; unused here
) -> str | None:
    """One line when the run forgot little, with the likely cause and the fix: against
    the reference on D_t where there is one, else on D_f's labels that D_un no longer
    carries (a label D_un still trains, as in model mismatch, is not to be forgotten)."""
    m, orig, ref = (
        report.get("metrics") or {},
        report.get("original") or {},
        report.get("reference"),
    )
    if ref and m.get("UA") is not None and orig.get("UA") is not None:
        span = orig["UA"] - ref["UA"]
        if span < 10 or orig["UA"] - m["UA"] >= WEAK_FORGETTING * span:
            return None
        what = (
            f"UA {m['UA']:.1f}% against the original's {orig['UA']:.1f}% and the retrained "
            f"reference's {ref['UA']:.1f}%"
        )
        # D_f itself forgotten: what is left of the target is its part outside D_f
        before, after = (
            accuracy(net, data.x_forget, data.y_forget, ctx.device)
            for net in (original, result.model)
        )
        if before >= 20 and after <= WEAK_FORGETTING * before:
            return (
                f"{method.name} forgot little of the target: {what}, though the forget data "
                f"itself is down to {after:.1f}% (the original: {before:.1f}%); "
                f"{method.hidden_target_hint(result)}"
            )
    else:
        gone = ~torch.isin(data.y_forget, data.y_remain.unique())
        if not bool(gone.any()):
            return None
        x, y = data.x_forget[gone], data.y_forget[gone]
        before, after = (accuracy(net, x, y, ctx.device) for net in (original, result.model))
        if before < 20 or after <= WEAK_FORGETTING * before:
            return None
        what = f"it still classifies the forget data at {after:.1f}% (the original: {before:.1f}%)"
    return f"{method.name} forgot little: {what}; {method.weak_forgetting_hint(result)}"


# After every run, the first of these that has something to say is the run's warning:
# damage first (its advice is the opposite of forgot-little's), cost last.
CHECKS = (damage_warning, forgetting_warning, cost_warning)


def execute(
    method: Method,
    model: nn.Module,
    data: UnlearnData,
    ctx: UnlearnContext,
    request: UnlearningRequest,
    *,
    measure: Measure | None,
    original: dict[str, Any] | None,
    reference: dict[str, Any] | None,
    partition_sizes: dict[str, int],
    recipe_name: str,
    notes: list[str] | None = None,
    on_result: Callable[[MethodResult], None] | None = None,
) -> tuple[MethodResult, Report]:
    """Run ``method`` on ``data``, measure the unlearned model and build the report.

    ``measure`` gives a model's metrics (None: the report has only the run time);
    ``original`` and ``reference`` are the metrics of the untouched and the retrained
    model (with their ``train_s`` and ``test_acc`` where known); ``on_result`` sees the
    result before it is measured (to save it, say).
    """
    torch.manual_seed(ctx.seed)
    start = time.perf_counter()
    result = method.run(model, data, ctx)
    if ctx.device.type == "cuda":
        torch.cuda.synchronize(ctx.device)
    # a method that reused a cached result (retrain) reports what it cost to compute
    rte = result.compute_s if result.compute_s is not None else time.perf_counter() - start
    if on_result is not None:
        on_result(result)
    task = request.task
    report: Report = {
        "task": task.name,
        "case": {
            "table4_no": task.case, "comment": task.comment, "L_D": task.data.label,
            "L_M": task.model.label, "L_T": task.target.label,
        },
        "dataset": ctx.dataset,
        "request": {
            "forget": list(request.forget),
            "target": list(request.target) if request.target else None,
            "model_labels": request.model_level.label,
            "prior": data.prior.num_classes if data.prior else None,
            "forget_fraction": request.forget_fraction,
            # the draw's seed, where it is not the default 0 or the task is random
            # forgetting (other reports keep their keys)
            **(
                {"forget_seed": request.subset_seed}
                if request.random_forgetting or request.subset_seed
                else {}
            ),
        },
        "method": method.name, "config": config_dict(method),
        "config_changes": config_changes(method), "seed": ctx.seed, "recipe": recipe_name,
        "budget": {"train_epochs": ctx.recipe.epochs, "epoch_samples": ctx.epoch_samples()},
        "metrics": {"RTE_s": rte},
        "original": None, "reference": None,
        "partition_sizes": partition_sizes,
        "record": result.record(),
    }  # fmt: skip
    if result.identification is not None:
        report["identification"] = result.identification
    if measure is not None:
        report["metrics"] = {**measure(result.model), "RTE_s": rte}
        report["original"] = dict(original) if original is not None else None
        if reference is not None:
            report["reference"] = dict(reference)
            report["metrics"]["Gap"] = gap(report["metrics"], reference)
            if reference.get("train_s"):
                report["metrics"]["RTE_ratio"] = rte / reference["train_s"]
            if report["original"] is not None:
                report["original"]["Gap"] = gap(report["original"], reference)
    memo: dict[str, Any] = {}  # what more than one check measures, measured once
    failed = next(
        filter(None, (check(method, result, model, data, ctx, report, memo) for check in CHECKS)),
        None,
    )
    report["warnings"] = list(result.warnings) + ([failed] if failed else [])
    report["notes"] = list(notes or [])
    few = _few_samples_note(request, partition_sizes) if measure is not None else None
    if few:
        report["notes"].append(few)
    outside, mia = (report["metrics"].get(k) for k in ("MIA_extrapolated", "MIA"))
    if outside is not None and mia is not None and outside >= MIA_EXTRAPOLATED and mia < 50:
        report["notes"].append(
            f"MIA extrapolated: {outside:.0f}% of D_t's true-label confidences lie below every "
            f"confidence the attack was fit on, yet it calls {100 - mia:.0f}% of D_t members: "
            "its verdict there is the SVC's extrapolation and can flip between 0 and 100 "
            "from one model to the next; read UA, RA and TA first (docs/design.md, Metrics)"
        )
    report["machine"] = machine_info(ctx.device)
    report["date"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    return result, report


def _few_samples_note(request: UnlearningRequest, sizes: dict[str, int]) -> str | None:
    """A note when UA is measured on fewer than FEW_FORGET samples (D_t, and D_f where
    UA-F is reported): its steps are then too coarse to tell methods apart."""
    measured = {"target": "D_t"} | ({"forget": "D_f"} if request.task.ua_split else {})
    n, name = min((sizes.get(k, FEW_FORGET), v) for k, v in measured.items())
    if not 0 < n < FEW_FORGET:
        return None
    if request.random_forgetting:
        more = "a larger fraction of the training set"
    elif request.forget_fraction is not None:
        more = "a larger forget fraction"
    else:
        more = "more classes, or classes with more samples"
    return (
        f"UA is measured on {n} sample{'s' * (n != 1)} of {name}: it moves in steps of "
        f"{100 / n:.0f} points, too coarse to tell methods apart; forget more ({more})"
    )


def run_request(
    ds: ImageDataset,
    request: UnlearningRequest,
    method: Method,
    recipe: Recipe,
    seed: int,
    device: torch.device,
    cache: ModelCache | None = None,
    log=print,
    save_model: str | None = None,
) -> Report:
    """Run one method on one request of a tarf dataset and measure it against the
    retrained reference (both models from the cache); ``save_model`` also writes the
    unlearned model as a checkpoint."""
    ds = prepare_dataset(ds, recipe)
    parts = request.partitions(ds.y_train, ds.y_test)
    everything = torch.arange(len(ds.y_train))
    original = trained_model(ds, request, everything, recipe, seed, device, "original", cache)
    log(f"original model: test accuracy {original.meta['test_acc']:.2f}% ({_provenance(original)})")
    y_tr, y_te = request.model_labels(ds.y_train), request.model_labels(ds.y_test)
    mm = request.task.ua_split
    eval_args = (ds.x_train, y_tr, ds.x_test, y_te, parts, device, seed, mm)
    reference = None
    if request.has_reference:
        reference = trained_model(
            ds, request, parts.remaining, recipe, seed, device, "retrained", cache
        )
        log(
            f"retrained reference: test accuracy {reference.meta['test_acc']:.2f}% ({_provenance(reference)})"
        )

    def stats(m: TrainedModel) -> dict[str, Any]:
        metrics = evaluate_cached(m, request, ds, eval_args, cache)
        return {**metrics, "test_acc": m.meta["test_acc"], "train_s": m.meta["train_s"]}

    def save(result: MethodResult) -> None:
        if save_model:
            meta = checkpoint_meta(original.meta, request, ds.name)
            save_checkpoint(save_model, result.model, meta)
            log(f"unlearned model written to {save_model}")

    ctx = UnlearnContext(
        device=device, recipe=recipe, seed=seed, task=request.task.name, dataset=ds.name,
        train_size=len(ds.y_train),
    )  # fmt: skip
    notes = []
    if reference is None:
        notes.append(
            "no named target concept: no retrained reference, so no Gap; UA is measured on D_f"
        )
    _, report = execute(
        method, original.model, unlearn_data(ds, request), ctx, request,
        measure=lambda m: evaluate(m, *eval_args), original=stats(original),
        reference=stats(reference) if reference is not None else None,
        partition_sizes=parts.sizes(), recipe_name=recipe.name, notes=notes, on_result=save,
    )  # fmt: skip
    return report
