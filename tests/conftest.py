"""Shared fixtures: a tiny synthetic hierarchy and dataset, an isolated model cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from tarf.data.core import ImageDataset
from tarf.data.synthetic import prototype_dataset
from tarf.hierarchy import LabelHierarchy
from tarf.methods.base import UnlearnData

os.environ.setdefault("TARF_QUIET", "1")
# One intra-op thread: the tests' tensors are tiny, and on a machine whose cores are busy
# (a benchmark in the background) two threads spin-wait on each other and slow tiny ops
# down by orders of magnitude.
torch.set_num_threads(1)

# 3 superclasses of 2-3 classes: animals {cat, dog, fox}, vehicles {car, bus}, plants {oak, fern}
GROUPS = {"animals": ["cat", "dog", "fox"], "vehicles": ["car", "bus"], "plants": ["oak", "fern"]}
CLASSES = ("cat", "dog", "fox", "car", "bus", "oak", "fern")


@pytest.fixture(scope="session")
def toy_hierarchy() -> LabelHierarchy:
    return LabelHierarchy.from_groups("toy", GROUPS, CLASSES)


def make_toy_dataset(
    h: LabelHierarchy,
    per_class: int = 40,
    test_per_class: int = 10,
    size: int = 8,
    seed: int = 0,
    noise: float = 0.15,
) -> ImageDataset:
    """Images = a class prototype + noise; classes of one superclass share a component,
    so the superclass structure is visible in the features like in real data."""
    return prototype_dataset(h, per_class, test_per_class, size, 1, noise, seed)


@pytest.fixture(scope="session")
def toy_dataset(toy_hierarchy) -> ImageDataset:
    return make_toy_dataset(toy_hierarchy)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own model cache, so none depends on another's leftovers."""
    monkeypatch.setenv("TARF_CACHE", str(tmp_path / "cache"))


def interrupted_training_state(ds: ImageDataset, tmp_path, monkeypatch, recipe) -> Path:
    """A training of ``ds``'s classes killed in its second epoch: the state file it left
    (saved after every epoch); ``train_step`` is restored afterwards."""
    import tarf.training as training

    x, y = ds.x_train, ds.y_train
    state = tmp_path / "m.training.pt"
    steps_per_epoch = -(-len(y) // recipe.batch_size)
    real_step, calls = training.train_step, []

    def dies_in_epoch_two(*args, **kwargs):
        calls.append(1)
        if len(calls) > steps_per_epoch + 1:
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    monkeypatch.setattr(training, "train_step", dies_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        training.train_classifier(x, y, int(y.max()) + 1, recipe, 0, torch.device("cpu"),
                                  resume_path=state, resume_every_s=0)  # fmt: skip
    monkeypatch.setattr(training, "train_step", real_step)
    return state


# -- the baseline tests' five-class toy (test_baselines_b.py, test_baselines_c.py) ----------
TOY_CLASSES, TOY_PER_CLASS, TOY_FORGET = 5, 40, 2


def five_class_images(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """5 classes of 1x8x8 uint8 images: a random prototype per class plus noise."""
    g = torch.Generator().manual_seed(seed)
    protos = torch.rand(TOY_CLASSES, 1, 8, 8, generator=g)
    y = torch.arange(TOY_CLASSES).repeat_interleave(TOY_PER_CLASS)
    x = protos[y] + 0.2 * torch.randn(len(y), 1, 8, 8, generator=g)
    return (x.clamp(0, 1) * 255).to(torch.uint8), y


def split_forget(x: torch.Tensor, y: torch.Tensor) -> UnlearnData:
    """D_f = class TOY_FORGET, D_un = the rest."""
    f = y == TOY_FORGET
    names = tuple(f"c{i}" for i in range(TOY_CLASSES))
    return UnlearnData(x[f], y[f], x[~f], y[~f], TOY_CLASSES, names)


def flat(model: torch.nn.Module) -> torch.Tensor:
    """Every parameter of a model in one vector."""
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])
