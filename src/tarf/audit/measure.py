"""The audit's measurements on models: a model's statistics (:func:`model_stats`), the
retrained references' (:func:`reference_stats`, cached on disk), the audit of one
unlearned model (:func:`audit_run`, ``tarf bench --audit``) and of a method over several
seeds (:func:`audit_request`, ``tarf audit``)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from tarf.audit.stats import concept_probe, logit_confidence, summarize
from tarf.cache import (
    ModelCache,
    digest,
    model_key,
    prepare_dataset,
    tensor_digest,
    trained_model,
)
from tarf.checkpoint import load_checkpoint
from tarf.io import write_json
from tarf.run import run_request
from tarf.training import forward_features, forward_logits

AUDIT_VERSION = "audit-v1"  # bump when reference_stats changes what it stores
PROBE_REMAINING = 5000  # D_r samples in the probe (a seeded subsample)


def model_stats(
    model: nn.Module,
    ds: Any,
    request: Any,
    parts: Any,
    device: torch.device,
    seed: int,
    utility: bool = True,
    probe_remaining: int = PROBE_REMAINING,
) -> dict[str, Any]:
    """One model's audit inputs on the prepared dataset ``ds``: scores on ``D_t``, the
    concept probe (split seeded by ``seed``), and with ``utility`` RA (on ``D_r``) and TA
    (on ``test_r``) in percent."""
    y_tr = request.model_labels(ds.y_train)
    target, remaining = parts.target, parts.remaining
    scores = logit_confidence(forward_logits(model, ds.x_train[target], device), y_tr[target])
    g = torch.Generator().manual_seed(seed)
    sub = remaining[torch.randperm(len(remaining), generator=g)[:probe_remaining]]
    probe = concept_probe(
        forward_features(model, ds.x_train[target], device).numpy(),
        forward_features(model, ds.x_train[sub], device).numpy(),
        seed,
    )
    out: dict[str, Any] = {"scores": scores.tolist(), "probe": probe}
    if utility:
        pred = forward_logits(model, ds.x_train[remaining], device).argmax(1)
        out["RA"] = 100.0 * (pred == y_tr[remaining]).float().mean().item()
        test = parts.test_remaining
        pred = forward_logits(model, ds.x_test[test], device).argmax(1)
        out["TA"] = 100.0 * (pred == request.model_labels(ds.y_test)[test]).float().mean().item()
    return out


def target_classes(ds: Any, parts: Any) -> list[str]:
    """The class name of every sample of ``D_t``, in order (for ``by_class``)."""
    names = ds.hierarchy.class_names
    return [names[i] for i in ds.y_train[parts.target].tolist()]


def stats_key(model_key: str, parts: Any) -> str:
    """Cache key of a reference's statistics: its model and the partitions they cover."""
    return digest({
        "model": model_key, "target": tensor_digest(parts.target),
        "remaining": tensor_digest(parts.remaining), "test": tensor_digest(parts.test_remaining),
        "probe_remaining": PROBE_REMAINING, "version": AUDIT_VERSION,
    })  # fmt: skip


def stats_path(key: str, cache: Any = None) -> Path:
    return (cache or ModelCache()).root.parent / "audit" / f"{key}.json"


def reference_stats(
    ds: Any,
    request: Any,
    recipe: Any,
    seed: int,
    device: torch.device,
    cache: Any = None,
    log: Callable[[str], None] = lambda _m: None,
) -> dict[str, Any]:
    """The statistics of the task's retrained reference for ``seed`` (trained or loaded
    through the model cache), themselves cached under ``stats_key``. ``ds`` is prepared."""
    parts = request.partitions(ds.y_train, ds.y_test)
    mkey = model_key(ds, request, parts.remaining, recipe, seed)
    path = stats_path(stats_key(mkey, parts), cache)
    try:
        stats = json.loads(path.read_text())
        if stats.get("model_key") == mkey and len(stats["scores"]) == len(parts.target):
            return stats
    except (OSError, ValueError, KeyError):
        pass
    ref = trained_model(ds, request, parts.remaining, recipe, seed, device, "retrained", cache)
    log(f"audit: statistics of the reference for seed {seed}")
    stats = {
        "model_key": mkey,
        "seed": seed,
        **model_stats(ref.model, ds, request, parts, device, seed),
        "train_s": ref.meta["train_s"],
    }
    write_json(path, stats)
    return stats


def _audit(
    refs: list[dict[str, Any]],
    unlearned: list[tuple[int, dict[str, Any]]],
    own_refs: dict[int, dict[str, Any]],
    groups: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Summary of unlearned models ``(seed, stats with RA, TA)`` against ``refs``, and
    the probe of each next to its own seed's reference (``own_refs``); ``groups`` as in
    :func:`summarize`."""
    seeds = [r["seed"] for r in refs]
    ref_scores = np.array([r["scores"] for r in refs])
    unl_scores = np.array([u["scores"] for _, u in unlearned])
    pair = [seeds.index(s) if s in seeds else None for s, _ in unlearned]
    ra_r = float(np.mean([r["RA"] for r in refs]))
    ta_r = float(np.mean([r["TA"] for r in refs]))
    ra_u = float(np.mean([u["RA"] for _, u in unlearned]))
    ta_u = float(np.mean([u["TA"] for _, u in unlearned]))
    out = summarize(ref_scores, unl_scores, pair, ra_u, ta_u, ra_r, ta_r, groups=groups)
    out["reference_seeds"] = seeds
    out["reference_RA"], out["reference_TA"] = ra_r, ta_r
    out["probe"] = {
        "unlearned": _mean_probe([u["probe"] for _, u in unlearned]),
        "retrained": _mean_probe([own_refs[s]["probe"] for s, _ in unlearned]),
    }
    return out


def _mean_probe(probes: list[dict[str, float]]) -> dict[str, float]:
    return {k: float(np.mean([p[k] for p in probes])) for k in ("balanced_accuracy", "AUC")}


def audit_run(
    model: nn.Module,
    metrics: dict[str, float],
    ds: Any,
    request: Any,
    recipe: Any,
    seed: int,
    device: torch.device,
    references: int = 8,
    cache: Any = None,
    log: Callable[[str], None] = lambda _m: None,
) -> dict[str, Any]:
    """The audit of one unlearned model (seed ``seed``, its run's ``metrics`` give RA and
    TA) against the references of seeds ``0..references-1``: what ``tarf bench --audit``
    stores in a report under ``"audit"``."""
    ds = prepare_dataset(ds, recipe)
    parts = request.partitions(ds.y_train, ds.y_test)
    refs = [reference_stats(ds, request, recipe, s, device, cache, log) for s in range(references)]
    own = (
        refs[seed]
        if seed < references
        else reference_stats(ds, request, recipe, seed, device, cache, log)
    )
    stats = model_stats(model, ds, request, parts, device, seed, utility=False)
    stats["RA"], stats["TA"] = metrics["RA"], metrics["TA"]
    return _audit(refs, [(seed, stats)], {seed: own}, target_classes(ds, parts))


def hiding(path: str | Path, log: Callable[[str], None]) -> Callable[[str], None]:
    """``log`` without the lines that name ``path``: a temporary file (the unlearned
    model the audit reads back) is deleted before the user could open it, so saying
    where it was written would only mislead."""
    return lambda msg: None if str(path) in msg else log(msg)


def audit_request(
    ds: Any,
    request: Any,
    method_factory: Callable[[], Any],
    recipe: Any,
    seeds: Sequence[int],
    references: int,
    device: torch.device,
    cache: Any = None,
    log: Callable[[str], None] = lambda _m: None,
) -> dict[str, Any]:
    """``tarf audit``: run the method once per seed (as ``tarf unlearn``), audit each
    unlearned model alone and all of them together (one U-LiRA over every seed's model)."""

    pds = prepare_dataset(ds, recipe)
    parts = request.partitions(pds.y_train, pds.y_test)
    refs = [reference_stats(pds, request, recipe, s, device, cache, log) for s in range(references)]
    classes = target_classes(pds, parts)
    runs, unlearned, own = [], [], {}
    for seed in seeds:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "unlearned.pt"
            report = run_request(ds, request, method_factory(), recipe, seed, device, cache,
                                 log=hiding(path, log), save_model=str(path))  # fmt: skip
            model = load_checkpoint(path, request, device)
        stats = model_stats(model, pds, request, parts, device, seed, utility=False)
        stats["RA"], stats["TA"] = report["metrics"]["RA"], report["metrics"]["TA"]
        own[seed] = (
            refs[seed]
            if seed < references
            else reference_stats(pds, request, recipe, seed, device, cache, log)
        )
        unlearned.append((seed, stats))
        audit = _audit(refs, [(seed, stats)], {seed: own[seed]}, classes)
        run = {"seed": seed, "metrics": report["metrics"], "audit": audit}
        # what the method did (e.g. TARF's identified classes), as in the unlearn report
        run.update({k: report[k] for k in ("identification", "record") if k in report})
        runs.append(run)
        template = report
    pooled = _audit(refs, unlearned, own, classes)
    return {
        "task": template["task"],
        "dataset": template["dataset"],
        "request": template["request"],
        "method": template["method"],
        "config_changes": template["config_changes"],
        "recipe": recipe.name,
        "seeds": list(seeds),
        "references": {
            "seeds": [r["seed"] for r in refs],
            "model_keys": [r["model_key"] for r in refs],
            "RA": [r["RA"] for r in refs],
            "TA": [r["TA"] for r in refs],
            "probe": [r["probe"] for r in refs],
        },
        "pooled": pooled,
        "runs": runs,
    }
