"""Self-describing model checkpoints: architecture, label domain and names, weights.

Loading checks the label domain against the request, so a 20-superclass model is never
silently evaluated as a 100-class one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from tarf.domains import Level
from tarf.io import save_torch
from tarf.models import create_model
from tarf.request import UnlearningRequest

CHECKPOINT_FORMAT = "tarf-checkpoint-v1"
# what a checkpoint holds besides its weights (checkpoint_meta)
CHECKPOINT_KEYS = ("arch", "num_classes", "in_channels", "mean", "std", "label_level",
                   "label_names")  # fmt: skip


class CheckpointError(ValueError):
    """An unreadable checkpoint, or one whose label domain does not match the request."""


def model_label_names(request: UnlearningRequest) -> list[str]:
    h = request.hierarchy
    return list(h.class_names if request.model_level == Level.CLASS else h.superclass_names)


def checkpoint_meta(
    train_meta: dict[str, Any], request: UnlearningRequest, dataset: str
) -> dict[str, Any]:
    keys = ("arch", "num_classes", "in_channels", "mean", "std", "recipe", "seed")
    return {
        **{k: train_meta[k] for k in keys},
        "label_level": request.model_level.label,
        "label_names": model_label_names(request),
        "dataset": dataset,
        # which superclass each class is in: a superclass model's labels depend on it
        "superclass_of": list(request.hierarchy.superclass_of),
    }


def save_checkpoint(path: str | Path, model: nn.Module, meta: dict[str, Any]) -> Path:
    state = {k: v.cpu() for k, v in model.state_dict().items()}
    return save_torch(path, {"format": CHECKPOINT_FORMAT, **meta, "state_dict": state})


MAKE = "write one with `tarf unlearn --save-model` or `tarf train --out`"


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A tarf checkpoint's contents (its meta and ``state_dict``). A file that is missing,
    is not a file ``torch.save`` wrote, or is not a tarf checkpoint is a
    :class:`CheckpointError` naming it and the fix."""
    make = MAKE
    path = Path(path)
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise CheckpointError(f"checkpoint {path} {what}; give a tarf checkpoint file ({make})")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets one clear message
        raise CheckpointError(
            f"{path} is not a model file (torch cannot read it: {type(e).__name__}); give a "
            f"tarf checkpoint ({make}); for a model of your own, use `tarf eval-model`"
        ) from None
    if not isinstance(ck, dict) or ck.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} is a PyTorch file but not a tarf checkpoint ({make}); for a model of "
            "your own, use `tarf eval-model`"
        )
    missing = [k for k in (*CHECKPOINT_KEYS, "state_dict") if k not in ck]
    if missing:
        raise CheckpointError(
            f"checkpoint {path} lacks {', '.join(missing)}: it is damaged; {make} again"
        )
    return ck


def load_checkpoint(
    path: str | Path,
    request: UnlearningRequest,
    device: torch.device,
    dataset: str | None = None,
    contents: dict[str, Any] | None = None,
) -> nn.Module:
    """Load a checkpoint (``contents``: already read by :func:`read_checkpoint`), refusing
    one whose label domain is not the request's model domain (``dataset``, the one in use:
    a checkpoint of another is told so)."""
    make, path = MAKE, Path(path)
    ck = read_checkpoint(path) if contents is None else contents
    names = model_label_names(request)
    other = ck.get("dataset")
    if dataset and other and other != dataset:
        raise CheckpointError(
            f"checkpoint {path} is a model of {other}, not of {dataset}: pass --dataset "
            f"{other}, or a checkpoint trained on {dataset}"
        )
    regrouped = (
        request.model_level == Level.SUPERCLASS
        and ck.get("superclass_of") is not None
        and list(ck["superclass_of"]) != list(request.hierarchy.superclass_of)
    )
    if ck["label_level"] == request.model_level.label and (
        len(ck["label_names"]) == len(names) and (list(ck["label_names"]) != names or regrouped)
    ):
        raise CheckpointError(
            f"checkpoint {path} was trained under another hierarchy: its "
            f"{ck['label_level']} labels are {', '.join(ck['label_names'][:5])}"
            f"{', ...' if len(names) > 5 else ''}"
            f"{' grouped otherwise' if list(ck['label_names']) == names else ''}, the "
            f"request's {', '.join(names[:5])}{', ...' if len(names) > 5 else ''}; pass the "
            "--hierarchy it was trained with"
        )
    if ck["label_level"] != request.model_level.label or list(ck["label_names"]) != names:
        raise CheckpointError(
            f"checkpoint {path} predicts {len(ck['label_names'])} {ck['label_level']} labels, but the request's "
            f"model domain is {len(names)} {request.model_level.label} labels of {request.hierarchy.name}; pass "
            f"--model-labels {ck['label_level']}, or the checkpoint of a model trained on that domain"
        )
    model = create_model(ck["arch"], ck["num_classes"], ck["in_channels"], ck["mean"], ck["std"])
    try:
        model.load_state_dict(ck["state_dict"])
    except RuntimeError as e:
        raise CheckpointError(
            f"checkpoint {path}: its weights do not fit its architecture {ck['arch']} "
            f"({str(e).splitlines()[0]}); it is damaged; {make} again"
        ) from None
    return model.to(device).to(memory_format=torch.channels_last).eval()
