"""Shared fixtures: a tiny synthetic hierarchy and dataset, an isolated model cache."""

from __future__ import annotations

import os

import pytest
import torch

from tarf.data.core import ImageDataset
from tarf.hierarchy import LabelHierarchy

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
    g = torch.Generator().manual_seed(seed)
    supers = torch.rand(h.num_superclasses, 1, size, size, generator=g)
    protos = torch.stack(
        [0.5 * supers[s] + 0.5 * torch.rand(1, size, size, generator=g) for s in h.superclass_of]
    )

    def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(h.num_classes).repeat_interleave(n)
        x = protos[y] + noise * torch.randn(len(y), 1, size, size, generator=g)
        return (x.clamp(0, 1) * 255).to(torch.uint8), y

    xtr, ytr = split(per_class)
    xte, yte = split(test_per_class)
    return ImageDataset(h.name, h, xtr, ytr, xte, yte)


@pytest.fixture(scope="session")
def toy_dataset(toy_hierarchy) -> ImageDataset:
    return make_toy_dataset(toy_hierarchy)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own model cache, so none depends on another's leftovers."""
    monkeypatch.setenv("TARF_CACHE", str(tmp_path / "cache"))
