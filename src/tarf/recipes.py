"""Training recipes and the unlearning budget rule they imply."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Recipe:
    """Everything that determines how a model is trained (and so part of its cache key)."""

    name: str
    arch: str
    epochs: int
    batch_size: int
    lr: float  # peak learning rate
    schedule: str  # "onecycle" or "step"
    milestones: tuple[int, ...] = ()
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    label_smoothing: float = 0.0
    crop_pad: int = 4
    flip: bool = True
    downsample: int = 1  # integer factor applied to images of at least 16 px
    unlearn_lr: float = 0.01  # default learning rate of the unlearning methods
    unlearn_batch_size: int = 128
    budget_fraction: float = 0.1  # unlearning work <= this fraction of training work

    def for_dataset(self, dataset: str) -> Recipe:
        """Dataset-specific adjustments: digits are not mirror-symmetric."""
        if dataset == "digits":
            return dataclasses.replace(self, flip=False, crop_pad=min(self.crop_pad, 1))
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def unlearn_epoch_samples(self, train_size: int, method_epochs: int = 10) -> int:
        """Samples (forward+backward) one unlearning epoch may use.

        The budget rule: one unlearning run (10 epochs) costs at most ``budget_fraction``
        of training the reference (``epochs`` passes over ``train_size`` samples). With
        the paper recipe (182 epochs) this exceeds a full pass, i.e. a normal epoch.
        """
        total = self.budget_fraction * self.epochs * train_size
        return max(1, int(total // method_epochs))


RECIPES: dict[str, Recipe] = {
    # ResNet-18 on a GPU, as in the paper (182 epochs, step decay at 91 and 136).
    "paper": Recipe(
        name="paper", arch="resnet18", epochs=182, batch_size=256, lr=0.1, schedule="step",
        milestones=(91, 136), crop_pad=4, unlearn_lr=0.01, unlearn_batch_size=256,
    ),
    # Two CPU cores: a residual CNN at half resolution, one-cycle schedule.
    "cpu": Recipe(
        name="cpu", arch="cpunet", epochs=10, batch_size=256, lr=0.2, schedule="onecycle",
        nesterov=True, label_smoothing=0.1, crop_pad=2, downsample=2, unlearn_lr=0.01,
    ),
    # Seconds: the embedded demo and the tests.
    "tiny": Recipe(
        name="tiny", arch="cpunet-tiny", epochs=30, batch_size=128, lr=0.1, schedule="onecycle",
        nesterov=True, label_smoothing=0.0, crop_pad=1, downsample=1, unlearn_lr=0.01,
        unlearn_batch_size=64,
    ),
}  # fmt: skip


# ``--recipe auto`` (every command's default): :func:`default_recipe` picks the recipe.
AUTO = "auto"
AUTO_HELP = "auto: tiny for digits, else paper on a CUDA GPU, else cpu"


def default_recipe(dataset: str | None, device: Any = "auto") -> str:
    """The recipe a command uses when none is given: ``tiny`` for the digits dataset
    (8×8 images: seconds, 99 % accurate, where ``cpu`` takes minutes for a worse model),
    else ``paper`` when ``device`` is a CUDA GPU (``auto``: when one is available), else
    ``cpu``. The one place this is decided: every command and the bench call it."""
    if dataset == "digits":
        return "tiny"
    kind = str(device).partition(":")[0]
    if kind == "auto":
        import torch

        kind = "cuda" if torch.cuda.is_available() else "cpu"
    return "paper" if kind == "cuda" else "cpu"


def resolve_recipe(name: str | None, dataset: str | None, device: Any = "auto") -> str:
    """``name``, or the default recipe (:func:`default_recipe`) for None or ``auto``."""
    return default_recipe(dataset, device) if name in (None, AUTO) else name


def get_recipe(name: str, dataset: str | None = None, device: Any = "auto") -> Recipe:
    """A recipe by name; ``NAME:ARCH`` swaps in another registered architecture (e.g.
    ``cpu:vgg16-bn`` for the architecture ablation), everything else unchanged; ``auto``
    is :func:`default_recipe` for ``dataset`` and ``device``."""
    name = resolve_recipe(name, dataset, device)
    base, _, arch = name.partition(":")
    if base not in RECIPES:
        raise ValueError(
            f"unknown recipe {base!r}; known: {', '.join(RECIPES)} (optionally NAME:ARCH), or auto"
        )
    r = RECIPES[base]
    if arch:
        from tarf.models import MODELS

        if arch not in MODELS:
            raise ValueError(
                f"unknown architecture {arch!r} in recipe {name!r}; registered: {', '.join(sorted(MODELS))}"
            )
        r = dataclasses.replace(r, name=name, arch=arch)
    return r.for_dataset(dataset) if dataset else r
