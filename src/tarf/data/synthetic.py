"""Synthetic image data with a hierarchy's structure, for tests and the GPU check.

Each image is its class's prototype plus noise; a prototype is half its superclass's
component and half its own, so the superclass structure is visible in the features, as
in real data, and a model learns it in a few epochs.
"""

from __future__ import annotations

import torch

from tarf.data.core import ImageDataset
from tarf.hierarchy import LabelHierarchy


def prototype_dataset(
    h: LabelHierarchy,
    per_class: int,
    test_per_class: int,
    size: int,
    channels: int = 1,
    noise: float = 0.15,
    seed: int = 0,
    name: str | None = None,
) -> ImageDataset:
    """``per_class`` training and ``test_per_class`` test images of every class of ``h``
    (uint8, ``channels x size x size``), seeded."""
    g = torch.Generator().manual_seed(seed)
    supers = torch.rand(h.num_superclasses, channels, size, size, generator=g)
    protos = torch.stack(
        [
            0.5 * supers[s] + 0.5 * torch.rand(channels, size, size, generator=g)
            for s in h.superclass_of
        ]
    )

    def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(h.num_classes).repeat_interleave(n)
        x = protos[y] + noise * torch.randn(len(y), channels, size, size, generator=g)
        return (x.clamp(0, 1) * 255).to(torch.uint8), y

    return ImageDataset(name or h.name, h, *split(per_class), *split(test_per_class))
