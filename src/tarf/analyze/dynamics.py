"""Forgetting dynamics (paper Fig. 3, 11, 12): why a mismatch request is hard.

* :func:`ascent_curves`: gradient ascent on ``D_f`` alone, epoch by epoch, with the loss
  and accuracy of ``D_f``, of the rest of the concept (``D_uf``) and of ``D_r``, for a
  class model and a superclass model (Fig. 3 bottom). Representational gravity is the
  concept's curve following ``D_f``'s while ``D_r``'s stays put.
* :func:`class_distances`: the distance of each class's penultimate features to the
  centre of ``D_f``'s (Fig. 3 top, Fig. 11): concept classes should sit closest.
* :func:`tsne_embeddings`: a seeded t-SNE of the features of several models on one
  subsample coloured by forget / rest of concept / remaining (Fig. 12).

Every sample set is a seeded subsample, evaluation is batched and in eval mode; the
functions return plain numbers, :func:`run` writes them (JSON, CSV) and the figures.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from tarf.data.core import ImageDataset
from tarf.domains import Level
from tarf.io import atomic_write, finite_or_none, write_json, write_text
from tarf.methods.base import UnlearnContext
from tarf.methods.common import Pool, ce, clone, frozen_batchnorm, sgd, step
from tarf.recipes import Recipe
from tarf.request import UnlearningRequest
from tarf.training import forward_features, forward_logits

GROUPS = ("forget", "concept", "remaining")  # D_f, D_uf = D_t \ D_f, D_r


def subsample(idx: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """Up to ``n`` of ``idx``, seeded, in index order."""
    g = torch.Generator().manual_seed(seed)
    return idx[torch.randperm(len(idx), generator=g)[:n]].sort().values


def group_indices(
    ds: ImageDataset, request: UnlearningRequest, per_group: int, seed: int
) -> dict[str, torch.Tensor]:
    """Seeded train-split subsamples of ``D_f``, ``D_uf`` and ``D_r`` (ground truth: this
    is an analysis of the request, not a method)."""
    p = request.partitions(ds.y_train, ds.y_test)
    parts = {"forget": p.forget, "concept": p.pseudo_remaining, "remaining": p.remaining}
    return {g: subsample(parts[g], per_group, seed + i) for i, g in enumerate(GROUPS)}


def group_stats(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy (%) of one group, one batched forward pass."""
    if len(y) == 0:
        return float("nan"), float("nan")
    logits = forward_logits(model, x, device)
    return float(F.cross_entropy(logits, y)), float(100 * (logits.argmax(1) == y).float().mean())


def ascent_curves(
    model: nn.Module,
    ds: ImageDataset,
    request: UnlearningRequest,
    recipe: Recipe,
    seed: int,
    device: torch.device,
    epochs: int = 10,
    lr: float = 1e-4,
    per_group: int = 1000,
) -> list[dict[str, Any]]:
    """Loss and accuracy of each group before and after each epoch of gradient ascent
    on ``D_f`` (one pass over it per epoch, batch norm frozen as in GA and Phase I).
    TARF's Phase I step (lr 0.01 × k 0.05 = 5e-4) diverges within 3 such epochs on the
    `cpu` CIFAR-100 models, so the default, 1e-4, is slower (the bottom of GA's usual range)."""
    y_model = request.model_labels(ds.y_train)
    groups = group_indices(ds, request, per_group, seed)
    ctx = UnlearnContext(device=device, recipe=recipe, seed=seed, train_size=len(ds.y_train))
    p = request.partitions(ds.y_train, ds.y_test)
    forget = Pool(ds.x_train[p.forget], y_model[p.forget], ctx, 1)
    model = clone(model)
    opt = sgd(model.parameters(), lr, ctx)
    rows = []
    for epoch in range(epochs + 1):
        if epoch > 0:
            with frozen_batchnorm(model):
                for xb, yb in forget.epoch(len(forget), recipe.unlearn_batch_size):
                    step(opt, -ce(model, xb, yb, ctx))
        row: dict[str, Any] = {"labels": request.model_level.label, "epoch": epoch}
        for g, idx in groups.items():
            row[f"{g}_loss"], row[f"{g}_acc"] = group_stats(
                model, ds.x_train[idx], y_model[idx], device
            )
        rows.append(row)
    return rows


def class_distances(
    model: nn.Module,
    ds: ImageDataset,
    request: UnlearningRequest,
    device: torch.device,
    per_class: int = 100,
    seed: int = 0,
) -> dict[str, float]:
    """Mean Euclidean distance of each class's penultimate features (``per_class``
    seeded train samples) to the centre of ``D_f``'s, nearest first; the forget classes
    themselves are left out."""
    from tarf.methods.tarf_identify import balanced_sample

    h = ds.hierarchy
    p = request.partitions(ds.y_train, ds.y_test)
    g = torch.Generator().manual_seed(seed)
    centre = forward_features(model, ds.x_train[subsample(p.forget, 1000, seed)], device).mean(0)
    idx = balanced_sample(ds.y_train, per_class, h.num_classes, g)
    feats = forward_features(model, ds.x_train[idx], device)
    dist = (feats - centre).norm(dim=1)
    y = ds.y_train[idx]
    forget = request.forget_classes
    out = {
        h.class_names[c]: float(dist[y == c].mean())
        for c in range(h.num_classes)
        if c not in forget and (y == c).any()
    }
    return dict(sorted(out.items(), key=lambda kv: kv[1]))


def tsne_embeddings(
    models: dict[str, nn.Module],
    ds: ImageDataset,
    request: UnlearningRequest,
    device: torch.device,
    per_group: int = 300,
    seed: int = 0,
) -> dict[str, Any]:
    """2-D t-SNE (scikit-learn, seeded, PCA initialisation) of each model's penultimate
    features on the same subsample of ``D_f``, ``D_uf`` and ``D_r``."""
    from sklearn.manifold import TSNE

    groups = group_indices(ds, request, per_group, seed)
    idx = torch.cat(list(groups.values()))
    labels = [g for g, i in groups.items() for _ in range(len(i))]
    out: dict[str, Any] = {"group": labels, "embeddings": {}}
    for name, model in models.items():
        feats = forward_features(model, ds.x_train[idx], device).numpy()
        perplexity = float(min(30, max(2, (len(idx) - 1) // 3)))
        emb = TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(feats)
        out["embeddings"][name] = emb.astype(np.float32).tolist()
    return out


# -- the command ---------------------------------------------------------------------------
def run(
    ds: ImageDataset,
    forget: str,
    concept: str,
    recipe: Recipe,
    seed: int,
    device: torch.device,
    out_dir: str | Path,
    epochs: int = 10,
    lr: float = 1e-4,
    tsne_methods: tuple[str, ...] = ("ft", "ga"),
    log=print,
) -> dict[str, Any]:
    """All three analyses for one (forget, concept) pair; writes ``dynamics.json``,
    ``ascent.csv``, ``distances.csv`` and the figures ``ascent.png``, ``distances.png``,
    ``tsne.png`` under ``out_dir``."""
    from tarf.cache import prepare_dataset, trained_model
    from tarf.methods import get_method
    from tarf.run import unlearn_data

    ds = prepare_dataset(ds, recipe)
    try:
        probe = UnlearningRequest.from_names(ds.hierarchy, forget, Level.CLASS, concept)
    except ValueError as e:  # this command's option is --concept, not --target
        raise ValueError(str(e).replace("--target", "--concept")) from None
    if probe.forget_classes >= probe.target_classes:
        raise ValueError(
            f"--forget {forget} is all of --concept {concept}: the analysis follows the "
            "concept's other classes while D_f is ascended, and none is left; give fewer of "
            "its classes as --forget"
        )
    out_dir = Path(out_dir)
    everything = torch.arange(len(ds.y_train))
    result: dict[str, Any] = {
        "dataset": ds.name, "forget": forget, "concept": concept, "recipe": recipe.name,
        "seed": seed, "ascent_lr": lr, "ascent": [], "distances": {},
    }  # fmt: skip
    originals = {}
    for level in (Level.CLASS, Level.SUPERCLASS):
        req = UnlearningRequest.from_names(ds.hierarchy, forget, level, concept)
        originals[level] = trained_model(ds, req, everything, recipe, seed, device, "original")
        log(f"ascent on D_f, {level.label} model ({epochs} epochs, lr {lr:g})")
        curves = ascent_curves(originals[level].model, ds, req, recipe, seed, device, epochs, lr)
        result["ascent"] += curves
        moved = abs(curves[-1]["forget_acc"] - curves[0]["forget_acc"])
        if moved < 1.0:  # (NaN, a diverged ascent, is not: the figure shows it)
            log(f"warning: D_f's accuracy on the {level.label} model moved {moved:.1f} "
                f"points over {epochs} ascent epochs: --lr {lr:g} is too small for this "
                "model to show anything; raise --lr (x10)")  # fmt: skip
        result["distances"][level.label] = class_distances(
            originals[level].model, ds, req, device, seed=seed
        )
    # t-SNE on the class model's target-mismatch request: original, reference, baselines
    req = UnlearningRequest.from_names(ds.hierarchy, forget, Level.CLASS, concept)
    p = req.partitions(ds.y_train, ds.y_test)
    reference = trained_model(ds, req, p.remaining, recipe, seed, device, "retrained")
    models = {"original": originals[Level.CLASS].model, "retrained": reference.model}
    data = unlearn_data(ds, req)
    ctx = UnlearnContext(
        device=device, recipe=recipe, seed=seed, task=req.task.name, dataset=ds.name,
        train_size=len(ds.y_train),
    )  # fmt: skip
    for name in tsne_methods:
        log(f"t-SNE: running {name}")
        torch.manual_seed(seed)
        models[name] = get_method(name).run(originals[Level.CLASS].model, data, ctx).model
    log("t-SNE of " + ", ".join(models))
    result["tsne"] = tsne_embeddings(models, ds, req, device, seed=seed)
    write_json(out_dir / "dynamics.json", finite_or_none(result))  # a diverged ascent: null
    write_text(out_dir / "ascent.csv", _csv(result["ascent"]))
    write_text(
        out_dir / "distances.csv",
        _csv([
            {"labels": lv, "rank": i + 1, "class": c, "distance": round(d, 4),
             "in_concept": c in _concept_classes(ds, concept)}
            for lv, dists in result["distances"].items()
            for i, (c, d) in enumerate(dists.items())
        ]),
    )  # fmt: skip
    plot(result, ds, out_dir)
    return result


def _concept_classes(ds: ImageDataset, concept: str) -> set[str]:
    h = ds.hierarchy
    level, ids = h.resolve_many([c.strip() for c in concept.split(",")])
    return {h.class_names[c] for c in h.class_ids(level, ids)}


def _csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return buf.getvalue()


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
    plt.close(fig)


def plot(result: dict[str, Any], ds: ImageDataset, out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"forget": "#d64a4a", "concept": "#4a7fd6", "remaining": "#888888"}
    names = {"forget": "D_f (forget)", "concept": "rest of the concept", "remaining": "D_r"}
    levels = list(dict.fromkeys(r["labels"] for r in result["ascent"]))
    fig, axes = plt.subplots(len(levels), 2, figsize=(9, 3.2 * len(levels)), squeeze=False)
    for i, level in enumerate(levels):
        rows = [r for r in result["ascent"] if r["labels"] == level]
        for j, metric in enumerate(("loss", "acc")):
            ax = axes[i][j]
            for g in GROUPS:
                ax.plot([r["epoch"] for r in rows], [r[f"{g}_{metric}"] for r in rows],
                        marker="o", ms=3, color=colours[g], label=names[g])  # fmt: skip
            ax.set_title(f"{level} model: {'cross-entropy' if metric == 'loss' else 'accuracy %'}")
            if metric == "loss":
                ax.set_yscale("log")  # unchecked ascent ends in overflow
            ax.set_xlabel("epochs of gradient ascent on D_f")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    _save(fig, out_dir / "ascent.png")

    concept = _concept_classes(ds, result["concept"])
    fig, axes = plt.subplots(1, len(result["distances"]), figsize=(12, 3.4), squeeze=False)
    for ax, (level, dists) in zip(axes[0], result["distances"].items()):
        names_ = list(dists)
        ax.bar(range(len(names_)), list(dists.values()),
               color=["#4a7fd6" if c in concept else "#cccccc" for c in names_])  # fmt: skip
        for i, c in enumerate(names_):
            if c in concept:
                ax.text(i, dists[c], c, rotation=90, fontsize=7, va="bottom", ha="center")
        ax.set_title(f"{level} model: distance of each class to the centre of D_f")
        ax.set_xlabel("classes, nearest first (blue: rest of the concept)")
        ax.set_ylabel("mean feature distance")
    fig.tight_layout()
    _save(fig, out_dir / "distances.png")

    tsne = result["tsne"]
    emb = tsne["embeddings"]
    fig, axes = plt.subplots(1, len(emb), figsize=(3.3 * len(emb), 3.4), squeeze=False)
    group = np.array(tsne["group"])
    for ax, (name, points) in zip(axes[0], emb.items()):
        pts = np.asarray(points)
        for g in ("remaining", "concept", "forget"):
            m = group == g
            ax.scatter(pts[m, 0], pts[m, 1], s=4, color=colours[g], label=names[g])
        ax.set_title(name)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][0].legend(fontsize=7, markerscale=3)
    fig.tight_layout()
    _save(fig, out_dir / "tsne.png")
