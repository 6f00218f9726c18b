"""The in-memory dataset every command works on: uint8 image tensors plus class ids."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tarf.hierarchy import LabelHierarchy


class DataError(RuntimeError):
    """A missing or corrupt data file; the message names the file and the fix."""


@dataclass
class ImageDataset:
    """A whole dataset held in memory, as the compute budget demands.

    Images are uint8 ``[N, C, H, W]``; labels are class ids (the finest named level,
    ``hierarchy.class_names[i]``). Model labels at another level come from the request.
    """

    name: str
    hierarchy: LabelHierarchy
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    def __post_init__(self) -> None:
        for split, x, y in (
            ("train", self.x_train, self.y_train),
            ("test", self.x_test, self.y_test),
        ):
            if x.dtype != torch.uint8 or x.ndim != 4:
                raise DataError(
                    f"{self.name} {split}: images must be uint8 [N, C, H, W], got {x.dtype} {tuple(x.shape)}"
                )
            if y.ndim != 1 or y.numel() != x.shape[0]:
                raise DataError(f"{self.name} {split}: {x.shape[0]} images but {y.numel()} labels")
            if y.numel() and (int(y.min()) < 0 or int(y.max()) >= self.hierarchy.num_classes):
                raise DataError(
                    f"{self.name} {split}: labels outside 0..{self.hierarchy.num_classes - 1}"
                )

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]

    def subset(
        self, train_per_class: int | None = None, test_per_class: int | None = None, seed: int = 0
    ) -> ImageDataset:
        """A class-balanced slice, for tests and quick runs (deterministic in ``seed``)."""

        def take(y: torch.Tensor, k: int | None) -> torch.Tensor:
            if k is None:
                return torch.arange(y.numel())
            g = torch.Generator().manual_seed(seed)
            perm = torch.randperm(y.numel(), generator=g)
            keep = [perm[y[perm] == c][:k] for c in range(self.hierarchy.num_classes)]
            return torch.cat(keep).sort().values

        tr, te = take(self.y_train, train_per_class), take(self.y_test, test_per_class)
        return ImageDataset(
            self.name,
            self.hierarchy,
            self.x_train[tr],
            self.y_train[tr],
            self.x_test[te],
            self.y_test[te],
        )
