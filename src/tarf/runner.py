"""From a request to a measured result: request -> partitions -> method -> metrics -> report.

The original model and the retrained reference are trained once and cached; the
method sees only :class:`UnlearnData`; metrics compare it with the reference.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from tarf.checkpoint import checkpoint_meta, save_checkpoint
from tarf.data.core import ImageDataset
from tarf.io import write_json
from tarf.methods.base import Method, UnlearnContext, UnlearnData, config_changes, config_dict
from tarf.metrics import evaluate, gap
from tarf.models import create_model
from tarf.recipes import Recipe
from tarf.request import UnlearningRequest
from tarf.training import (
    CODE_VERSION,
    ModelCache,
    accuracy,
    channel_stats,
    digest,
    prepare_images,
    tensor_digest,
    train_classifier,
)

_prepared: dict[tuple[int, int], ImageDataset] = {}
_digests: dict[int, str] = {}


def prepare_dataset(ds: ImageDataset, recipe: Recipe) -> ImageDataset:
    """The dataset at the recipe's resolution (downsampled once, memoised)."""
    key = (id(ds), recipe.downsample)
    if key not in _prepared:
        _prepared[key] = ImageDataset(
            ds.name, ds.hierarchy, prepare_images(ds.x_train, recipe.downsample), ds.y_train,
            prepare_images(ds.x_test, recipe.downsample), ds.y_test,
        )  # fmt: skip
    return _prepared[key]


def dataset_digest(ds: ImageDataset) -> str:
    if id(ds) not in _digests:
        _digests[id(ds)] = digest([ds.name, tensor_digest(ds.x_train), tensor_digest(ds.y_train)])
    return _digests[id(ds)]


@dataclass
class TrainedModel:
    model: nn.Module
    meta: dict[str, Any]


def model_key(
    ds: ImageDataset,
    request: UnlearningRequest,
    train_idx: torch.Tensor,
    recipe: Recipe,
    seed: int,
) -> str:
    """The cache key of a model trained on ``train_idx`` of the prepared ``ds``: a hash of
    everything that determines its weights."""
    return digest({
        "data": dataset_digest(ds), "labels": request.model_level.label,
        "num_classes": request.num_model_classes, "train": tensor_digest(train_idx),
        "recipe": recipe.to_dict(), "seed": seed, "code": CODE_VERSION,
    })  # fmt: skip


def trained_model(
    ds: ImageDataset,
    request: UnlearningRequest,
    train_idx: torch.Tensor,
    recipe: Recipe,
    seed: int,
    device: torch.device,
    role: str,
    cache: ModelCache | None = None,
    wait: bool = True,
) -> TrainedModel:
    """Train (or load from the cache) a model on ``train_idx`` in the request's label domain.
    A second process asking for a model in training waits for it, then loads it; with
    ``wait=False`` it gets ``tarf.io.LockBusy`` instead (the bench then does other work)."""
    cache = cache or ModelCache()
    key = model_key(ds, request, train_idx, recipe, seed)
    y_model = request.model_labels(ds.y_train)
    with cache.lock(key, wait):
        entry = cache.load(key)
        if entry is None:
            x = ds.x_train[train_idx]
            mean, std = channel_stats(x)
            res = train_classifier(
                x,
                y_model[train_idx],
                request.num_model_classes,
                recipe,
                seed,
                device,
                mean,
                std,
                desc=f"train {role}",
                resume_path=cache.training_state_path(key),
            )
            meta = {
                "role": role, "arch": recipe.arch, "num_classes": request.num_model_classes,
                "label_level": request.model_level.label, "in_channels": x.shape[1], "mean": mean, "std": std,
                "train_s": res.train_seconds, "images_per_s": res.images_per_second, "train_size": len(train_idx),
                "test_acc": accuracy(res.model, ds.x_test, request.model_labels(ds.y_test), device),
                "seed": seed, "recipe": recipe.name, "device": str(device),
            }  # fmt: skip
            cache.save(
                key,
                {
                    "state_dict": {k: v.cpu() for k, v in res.model.state_dict().items()},
                    "meta": meta,
                },
            )
            return TrainedModel(res.model, {**meta, "cached": False, "key": key})
    meta = entry["meta"]
    model = create_model(
        meta["arch"], meta["num_classes"], meta["in_channels"], meta["mean"], meta["std"]
    )
    model.load_state_dict(entry["state_dict"])
    model = model.to(device).to(memory_format=torch.channels_last).eval()
    return TrainedModel(model, {**meta, "cached": True, "key": key})


EVAL_VERSION = "eval-v2"  # bump when tarf.metrics.evaluate changes what it returns


def evaluate_cached(
    trained: TrainedModel,
    request: UnlearningRequest,
    ds: ImageDataset,
    eval_args: tuple,
    cache: ModelCache | None = None,
) -> dict[str, float]:
    """The metrics of a cached (original or reference) model, themselves cached: every
    run of a grid evaluates the same two models on the same partitions and seed."""
    *_, parts, _device, seed, mm = eval_args
    # The partitions, not the names: a sub-set request's D_f depends on its fraction.
    key = digest({
        "model": trained.meta["key"], "data": dataset_digest(ds),
        "parts": {k: tensor_digest(v) for k, v in vars(parts).items()},
        "labels": request.model_level.label, "seed": seed, "ua_split": mm,
        "metrics": EVAL_VERSION,
    })  # fmt: skip
    path = (cache or ModelCache()).root.parent / "evals" / f"{key}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        metrics = evaluate(trained.model, *eval_args)
        write_json(path, metrics)
        return metrics


def _provenance(m: TrainedModel) -> str:
    return "cached" if m.meta["cached"] else f"trained in {m.meta['train_s']:.0f}s"


def machine_info(device: torch.device) -> dict[str, Any]:
    return {
        "device": str(device),
        "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None,
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "torch": torch.__version__,
    }


def unlearn_data(ds: ImageDataset, request: UnlearningRequest) -> UnlearnData:
    """Everything a method may see, and nothing else (SPEC "No leakage")."""
    parts = request.partitions(ds.y_train, ds.y_test)
    y_model = request.model_labels(ds.y_train)
    h = request.hierarchy
    names = h.class_names if request.num_model_classes == h.num_classes else h.superclass_names
    return UnlearnData(
        x_forget=ds.x_train[parts.forget], y_forget=y_model[parts.forget],
        x_remain=ds.x_train[parts.unlearn], y_remain=y_model[parts.unlearn],
        num_classes=request.num_model_classes, class_names=tuple(names),
        prior=request.prior(ds.y_train),
    )  # fmt: skip


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
) -> dict[str, Any]:
    """Run one method on one request and measure it against the retrained reference;
    ``save_model`` also writes the unlearned model as a checkpoint."""
    ds = prepare_dataset(ds, recipe)
    parts = request.partitions(ds.y_train, ds.y_test)
    task = request.task
    everything = torch.arange(len(ds.y_train))
    original = trained_model(ds, request, everything, recipe, seed, device, "original", cache)
    log(f"original model: test accuracy {original.meta['test_acc']:.2f}% ({_provenance(original)})")
    y_tr, y_te = request.model_labels(ds.y_train), request.model_labels(ds.y_test)
    mm = task.target_finer_than_model
    eval_args = (ds.x_train, y_tr, ds.x_test, y_te, parts, device, seed, mm)

    reference = None
    if request.has_reference:
        reference = trained_model(
            ds, request, parts.remaining, recipe, seed, device, "retrained", cache
        )
        log(
            f"retrained reference: test accuracy {reference.meta['test_acc']:.2f}% ({_provenance(reference)})"
        )

    data = unlearn_data(ds, request)
    ctx = UnlearnContext(
        device=device,
        recipe=recipe,
        seed=seed,
        task=task.name,
        dataset=ds.name,
        train_size=len(ds.y_train),
    )
    torch.manual_seed(seed)
    start = time.perf_counter()
    result = method.run(original.model, data, ctx)
    if device.type == "cuda":
        torch.cuda.synchronize()
    rte = time.perf_counter() - start
    # A method that reused a cached result (retrain) reports what it cost to compute.
    rte = float(result.record.get("compute_s", rte))

    if save_model:
        save_checkpoint(save_model, result.model, checkpoint_meta(original.meta, request, ds.name))
        log(f"unlearned model written to {save_model}")
    metrics = evaluate(result.model, *eval_args)
    metrics_original = evaluate_cached(original, request, ds, eval_args, cache)
    report: dict[str, Any] = {
        "task": task.name,
        "case": {
            "table4_no": task.case,
            "comment": task.comment,
            "L_D": task.data.label,
            "L_M": task.model.label,
            "L_T": task.target.label,
        },
        "dataset": ds.name,
        "request": {
            "forget": list(request.forget),
            "target": list(request.target) if request.target else None,
            "model_labels": request.model_level.label,
            "prior": data.prior.num_classes if data.prior else None,
            "forget_fraction": request.forget_fraction,
        },
        "method": method.name,
        "config": config_dict(method),
        "config_changes": config_changes(method),
        "seed": seed,
        "recipe": recipe.name,
        "metrics": {**metrics, "RTE_s": rte},
        "original": {
            **metrics_original,
            "test_acc": original.meta["test_acc"],
            "train_s": original.meta["train_s"],
        },
        "partition_sizes": parts.sizes(),
        "record": {k: v for k, v in result.record.items() if k != "identification"},
        "machine": machine_info(device),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if "identification" in result.record:
        report["identification"] = result.record["identification"]
    if reference is not None:
        ref_metrics = evaluate_cached(reference, request, ds, eval_args, cache)
        report["reference"] = {
            **ref_metrics,
            "train_s": reference.meta["train_s"],
            "test_acc": reference.meta["test_acc"],
        }
        report["metrics"]["Gap"] = gap(metrics, ref_metrics)
        report["metrics"]["RTE_ratio"] = rte / reference.meta["train_s"]
        report["original"]["Gap"] = gap(metrics_original, ref_metrics)
    else:
        report["reference"] = None
        report["note"] = (
            "no named target concept: no retrained reference, so no Gap; UA is measured on D_f"
        )
    return report
