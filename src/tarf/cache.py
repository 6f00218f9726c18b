"""The model cache: trained models on disk, keyed by a hash of everything that
determines their weights, and the cached metrics of those models.

A second process asking for a model in training waits for it (a file lock, with a line
saying so) and then loads it; a corrupt entry is a miss and is retrained. Each entry
carries a random ``weights_id`` written with it, so that results computed from a model
(its cached metrics) are keyed by the weights, never only by the model's key.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from tarf.data.core import ImageDataset
from tarf.io import file_lock, save_torch, unwritable, write_json
from tarf.metrics import evaluate
from tarf.models import create_model
from tarf.recipes import Recipe
from tarf.request import UnlearningRequest
from tarf.training import (
    CODE_VERSION,
    accuracy,
    channel_stats,
    prepare_images,
    train_classifier,
)


class CacheError(ValueError):
    """The cache folder cannot be used (a file, not writable): one line naming the fix."""


def cache_root() -> Path:
    """``TARF_CACHE``, else ``~/.cache/tarf`` (``XDG_CACHE_HOME`` respected); a path that
    cannot be a writable folder is a :class:`CacheError` (before any training)."""
    if os.environ.get("TARF_CACHE"):
        root, what = Path(os.environ["TARF_CACHE"]), f"TARF_CACHE={os.environ['TARF_CACHE']}"
    else:
        base = os.environ.get("XDG_CACHE_HOME") or (Path.home() / ".cache")
        root, what = Path(base) / "tarf", f"the model cache {Path(base) / 'tarf'}"
    problem = unwritable(root, folder=True)
    if problem:
        raise CacheError(
            f"{what}: {problem}; point TARF_CACHE at a folder tarf may write in "
            "(left unset: ~/.cache/tarf)"
        )
    return root


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def digest(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:24]


def tensor_digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.contiguous().cpu().numpy().tobytes()).hexdigest()[:24]


class ModelCache:
    """Trained models on disk, keyed by a hash; a corrupt entry is a miss, not a crash."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else cache_root() / "models"

    def path(self, key: str) -> Path:
        return self.root / f"{key}.pt"

    def load(self, key: str) -> dict | None:
        p = self.path(key)
        if not p.exists():
            return None
        try:
            entry = torch.load(p, map_location="cpu", weights_only=False)
            if not isinstance(entry, dict) or "state_dict" not in entry or entry.get("key") != key:
                raise ValueError("not a tarf cache entry")
            return entry
        except Exception as e:  # noqa: BLE001 - any unreadable entry is retrained
            warnings.warn(
                f"cached model {p} is unreadable ({e}); it will be retrained", stacklevel=2
            )
            p.unlink(missing_ok=True)
            return None

    def save(self, key: str, entry: dict) -> Path:
        return save_torch(self.path(key), {**entry, "key": key})

    def training_state_path(self, key: str) -> Path:
        """Where an unfinished training of ``key`` keeps its state (``train_classifier``)."""
        return self.root / f"{key}.training.pt"

    def lock(
        self, key: str, wait: bool = True, on_wait: Callable[[], None] | None = None
    ) -> contextlib.AbstractContextManager[None]:
        """Held while checking for and training the model ``key`` (see ``file_lock``;
        ``wait=False`` raises ``LockBusy`` when another process holds it; ``on_wait()``
        runs once if this one has to wait)."""
        return file_lock(self.root / f"{key}.lock", wait, on_wait)


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
    everything that determines its weights. The exact training indices stand for the
    request: a reference of random forgetting or of a sub-set task is keyed by the
    samples its draw (fraction, seed) left in, so two draws never share a model, and no
    other task's reference (which leaves out whole classes) has its indices. A superclass
    model under a hierarchy of the user's (``--hierarchy``) that groups the classes
    otherwise than the built-in one is keyed by its grouping too (the built-in grouping
    adds nothing, so the keys of models trained before stay theirs)."""
    parts = {
        "data": dataset_digest(ds), "labels": request.model_level.label,
        "num_classes": request.num_model_classes, "train": tensor_digest(train_idx),
        "recipe": recipe.to_dict(), "seed": seed, "code": CODE_VERSION,
    }  # fmt: skip
    grouping = _own_grouping(ds.name, request)
    if grouping is not None:
        parts["grouping"] = grouping
    return digest(parts)


def _own_grouping(dataset: str, request: UnlearningRequest) -> list[int] | None:
    """The superclass of each class when a superclass model's labels are not the built-in
    hierarchy's (another grouping, or the same groups in another order), else None."""
    from tarf.domains import Level
    from tarf.hierarchy import BUILTIN, builtin_hierarchy

    if request.model_level != Level.SUPERCLASS:
        return None
    h = request.hierarchy
    if dataset in BUILTIN:
        b = builtin_hierarchy(dataset)
        if (b.class_names, b.superclass_of) == (h.class_names, h.superclass_of):
            return None  # the built-in grouping, its superclasses renamed at most
    return list(h.superclass_of)


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
    log: Callable[[str], None] | None = None,
) -> TrainedModel:
    """Train (or load from the cache) a model on ``train_idx`` in the request's label domain.
    A second process asking for a model in training waits for it, then loads it; with
    ``wait=False`` it gets ``tarf.io.LockBusy`` instead (the bench then does other work).
    ``log`` (default: stderr) gets a line before a training starts (what, the recipe, the
    expected time when the bench's log knows it) and one when waiting for another process."""
    cache = cache or ModelCache()
    log = log or _stderr
    key = model_key(ds, request, train_idx, recipe, seed)
    y_model = request.model_labels(ds.y_train)
    what = f"the {role} model ({ds.name}, {request.model_level.label} labels, seed {seed})"

    def waiting() -> None:
        log(f"waiting for another process training {what}; this one loads it when it is done "
            f"(lock {cache.root / key}.lock)")  # fmt: skip

    with cache.lock(key, wait, waiting):
        entry = cache.load(key)
        if entry is None:
            log(training_line(what, ds.name, recipe, len(train_idx), device))
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
                "train_s": res.train_seconds, "alone_s": res.alone_seconds,
                "images_per_s": res.images_per_second, "train_size": len(train_idx),
                "test_acc": accuracy(res.model, ds.x_test, request.model_labels(ds.y_test), device),
                "seed": seed, "recipe": recipe.name, "device": str(device),
                # these weights, whatever key they are stored under (evaluate_cached)
                "weights_id": uuid.uuid4().hex,
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
    if not meta.get("weights_id"):  # an entry written before weights ids: its weights' hash
        meta = {**meta, "weights_id": state_digest(entry["state_dict"])}
    model = model.to(device).to(memory_format=torch.channels_last).eval()
    return TrainedModel(model, {**meta, "cached": True, "key": key})


def training_line(what: str, dataset: str, recipe: Recipe, size: int, device: Any) -> str:
    """The line before a training: what, on how much, the recipe, and the time the bench's
    log on this machine expects (when it has timed this dataset and recipe)."""
    from tarf.bench.estimate import expected_model_s, fmt_seconds

    line = (f"training {what}: recipe {recipe.name} ({recipe.arch}, {recipe.epochs} epochs, "
            f"{size} images) on {device}")  # fmt: skip
    expected = expected_model_s(dataset, recipe.name)
    if expected is not None:
        line += f", about {fmt_seconds(expected)} (measured here before)"
    return line


def state_digest(state_dict: dict[str, torch.Tensor]) -> str:
    """A hash of a model's weights (every tensor, in order)."""
    h = hashlib.sha256()
    for name, t in state_dict.items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:24]


EVAL_VERSION = "eval-v2"  # bump when tarf.metrics.evaluate changes what it returns


def evaluate_cached(
    trained: TrainedModel,
    request: UnlearningRequest,
    ds: ImageDataset,
    eval_args: tuple,
    cache: ModelCache | None = None,
) -> dict[str, float]:
    """The metrics of a cached (original or reference) model, themselves cached: every
    run of a grid evaluates the same two models on the same partitions and seed. Keyed
    by the weights (``weights_id``, else their hash), not the model key: a model retrained
    under the same key (a corrupt entry) never shows the metrics of the one it replaced."""
    *_, parts, _device, seed, mm = eval_args
    weights = trained.meta.get("weights_id") or state_digest(trained.model.state_dict())
    # The partitions, not the names: a sub-set request's D_f depends on its fraction.
    key = digest({
        "model": trained.meta["key"], "weights": weights, "data": dataset_digest(ds),
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
