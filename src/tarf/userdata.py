"""A user's own files: saved models (TorchScript or state dict + architecture), data as
``.npz`` arrays or an ImageFolder tree, read for ``tarf unlearn-model``.

Every problem becomes a :class:`~tarf.data.core.DataError` (or ``ValueError``) whose one
line names the file and the fix, as for the built-in datasets.
"""

from __future__ import annotations

import importlib
import importlib.util
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from tarf.data.core import DataError
from tarf.hierarchy import LabelHierarchy, normalize_name

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


@dataclass
class UserData:
    """Train samples (and optional test samples) with class ids of the hierarchy."""

    x: torch.Tensor
    y: torch.Tensor
    x_test: torch.Tensor | None = None
    y_test: torch.Tensor | None = None

    @property
    def test(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        return None if self.x_test is None else (self.x_test, self.y_test)


def class_lookup(hierarchy: LabelHierarchy) -> dict[str, int]:
    """Class names as written in files and folder names: normalised, and with "/" (not
    allowed in a folder name, e.g. Fashion-MNIST's "T-shirt/top") also as "_"."""
    out: dict[str, int] = {}
    for i, name in enumerate(hierarchy.class_names):
        out[normalize_name(name)] = i
        out[normalize_name(name.replace("/", "_"))] = i
    return out


def class_ids(names: list[str], hierarchy: LabelHierarchy, where: str) -> torch.Tensor:
    """Class names -> class ids; a superclass or unknown name fails with the valid ones."""
    lookup = class_lookup(hierarchy)
    ids = []
    for name in dict.fromkeys(names):  # each distinct name once, in order
        key = normalize_name(str(name).replace("/", "_"))
        if key not in lookup:
            hierarchy.resolve(str(name))  # unknown: raises with the closest names
            raise ValueError(
                f"{where}: {name!r} is a superclass of {hierarchy.name}, but samples must be "
                "labelled with classes (the finest level); relabel them with class names"
            )
        ids.append(lookup[key])
    table = dict(zip(dict.fromkeys(names), ids))
    return torch.tensor([table[n] for n in names], dtype=torch.long)


def labels_to_ids(y: Any, hierarchy: LabelHierarchy, where: str) -> torch.Tensor:
    """Integer class ids (checked against the hierarchy) or class names -> ids."""
    arr = np.asarray(y)
    if arr.ndim > 1 and arr.size != len(arr):
        raise ValueError(
            f"{where}: labels must be one class id or name per sample, got shape {arr.shape}"
            + ("; one-hot or scores? pass y.argmax(1)" if arr.ndim == 2 else "")
        )
    if arr.dtype.kind in "USO":
        return class_ids([str(v) for v in arr.reshape(-1)], hierarchy, where)
    if arr.dtype.kind not in "iu" and not (arr.dtype.kind == "f" and np.all(arr == np.round(arr))):
        raise ValueError(f"{where}: labels must be class ids (integers) or class names")
    ids = torch.as_tensor(arr.reshape(-1).astype(np.int64))
    k = hierarchy.num_classes
    if not hierarchy.ordered:
        raise ValueError(
            f"{where}: integer labels need the class of each label id, and the hierarchy only "
            f"lists its classes ({', '.join(hierarchy.class_names[:4])}, ...): give the class "
            "names in label-id order (class_names=[...] in Python; a 'class_order' list in a "
            "hierarchy file), or store class names as labels"
        )
    if len(ids) and (int(ids.min()) < 0 or int(ids.max()) >= k):
        raise ValueError(
            f"{where}: labels must be class ids 0..{k - 1} of {hierarchy.name}'s classes "
            f"({', '.join(hierarchy.class_names[:4])}, ...), got {int(ids.min())}..{int(ids.max())}; "
            "store class names instead, or list the classes in label order in the hierarchy file"
        )
    return ids


# -- data files ---------------------------------------------------------------------------
def read_npz(path: str | Path, hierarchy: LabelHierarchy) -> UserData:
    """``x`` (images, N first) and ``y`` (class ids or names); ``x_test``/``y_test`` optional."""
    path = Path(path)
    fix = f"write it with numpy.savez({path.name!r}, x=images, y=labels[, x_test=..., y_test=...])"
    if path.is_file() and not zipfile.is_zipfile(path):
        raise DataError(
            f"{path} is not a .npz archive (not a zip file: corrupt or another format); {fix}"
        )
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except FileNotFoundError:
        raise DataError(f"data file {path} not found") from None
    except Exception as e:  # noqa: BLE001 - zip, pickle and format errors: one clear line
        raise DataError(
            f"cannot read {path} as .npz arrays ({type(e).__name__}: {e}); {fix}"
        ) from e
    x_key = next((k for k in ("x", "x_train", "images") if k in arrays), None)
    y_key = next((k for k in ("y", "y_train", "labels") if k in arrays), None)
    if x_key is None or y_key is None:
        raise DataError(f"{path} holds arrays {sorted(arrays)} but no 'x' and 'y'; {fix}")
    out = UserData(*_xy(arrays[x_key], arrays[y_key], hierarchy, f"{path}"))
    if ("x_test" in arrays) != ("y_test" in arrays):
        has, lacks = ("x_test", "y_test") if "x_test" in arrays else ("y_test", "x_test")
        raise DataError(f"{path} holds {has} but no {lacks}; the test data need both. {fix}")
    if "x_test" in arrays and "y_test" in arrays:
        out.x_test, out.y_test = _xy(
            arrays["x_test"], arrays["y_test"], hierarchy, f"{path} (test)"
        )
    return out


def _xy(
    x: np.ndarray, y: np.ndarray, h: LabelHierarchy, where: str
) -> tuple[torch.Tensor, torch.Tensor]:
    if x.dtype.kind not in "uif" or x.ndim < 2:
        raise DataError(
            f"{where}: x must be a numeric array with samples first, got {x.dtype} {x.shape}"
        )
    labels = labels_to_ids(y, h, where)
    if len(labels) != len(x):
        raise DataError(f"{where}: {len(x)} samples but {len(labels)} labels")
    return torch.from_numpy(np.ascontiguousarray(x)), labels


def read_image_folder(root: str | Path, hierarchy: LabelHierarchy) -> UserData:
    """ImageFolder layout, ``root/<class name>/<image>`` (read with Pillow), or with
    ``root/train/...`` and ``root/test/...``. Images must share one size; they become
    uint8 ``[N, C, H, W]`` (grey if every image is, else RGB)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data folder {root} not found")
    if (root / "train").is_dir() and (root / "test").is_dir():
        train, test = _read_split(root / "train", hierarchy), _read_split(root / "test", hierarchy)
        return UserData(*train, *test)
    return UserData(*_read_split(root, hierarchy))


def _read_split(root: Path, hierarchy: LabelHierarchy) -> tuple[torch.Tensor, torch.Tensor]:
    from PIL import Image, UnidentifiedImageError

    folders = sorted(d for d in root.iterdir() if d.is_dir())
    if not folders:
        raise DataError(f"{root} has no class folders; expected {root}/<class name>/<images>")
    ids = class_ids([d.name for d in folders], hierarchy, str(root))
    images, labels = [], []
    for folder, cid in zip(folders, ids.tolist()):
        for f in sorted(folder.iterdir()):
            if f.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                with Image.open(f) as im:
                    im.load()
                    images.append(im.copy())
            except (UnidentifiedImageError, OSError) as e:
                raise DataError(f"cannot read image {f} ({e}); delete or replace it") from e
            labels.append(cid)
    if not images:
        raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {root}")
    sizes = {im.size for im in images}
    if len(sizes) > 1:
        raise DataError(
            f"images under {root} have different sizes {sorted(sizes)[:3]}; resize them to one size"
        )
    mode = "L" if all(im.mode in ("L", "1", "I;16") for im in images) else "RGB"
    arr = np.stack([np.asarray(im.convert(mode), dtype=np.uint8) for im in images])
    x = torch.from_numpy(arr[:, None] if mode == "L" else arr.transpose(0, 3, 1, 2).copy())
    return x.contiguous(), torch.tensor(labels, dtype=torch.long)


def read_data(path: str | Path, hierarchy: LabelHierarchy) -> UserData:
    """A ``.npz`` file or an ImageFolder directory."""
    path = Path(path)
    if path.is_dir():
        return read_image_folder(path, hierarchy)
    if path.suffix.lower() == ".npz" or path.is_file():
        return read_npz(path, hierarchy)
    raise DataError(f"data {path} not found: give a .npz file or an ImageFolder directory")


# -- model files --------------------------------------------------------------------------
def import_arch_module(spec: str) -> None:
    """Import a module (dotted name or ``.py`` file) whose ``@tarf.models.register(NAME)``
    adds the user's architecture to the registry."""
    if spec.endswith(".py"):
        path = Path(spec)
        if not path.is_file():
            raise FileNotFoundError(f"--arch-module {spec}: no such file")
        mod_spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(mod_spec)
        mod_spec.loader.exec_module(module)  # type: ignore[union-attr]
    else:
        importlib.import_module(spec)


def output_size(state: dict[str, torch.Tensor]) -> int | None:
    """The number of labels a state dict's model predicts: rows of its last 2-D weight."""
    weights = [v for k, v in state.items() if k.endswith("weight") and v.ndim == 2]
    return int(weights[-1].shape[0]) if weights else None


@dataclass
class LoadedModel:
    model: nn.Module
    kind: str  # "torchscript" | "state_dict" | "tarf-checkpoint"
    arch: str | None = None


def load_model_file(path: str | Path, arch: str | None, in_channels: int) -> LoadedModel:
    """A TorchScript file, a tarf checkpoint, or a state dict of a registered ``arch``."""
    from tarf.checkpoint import CHECKPOINT_FORMAT
    from tarf.models import MODELS, create_model

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} not found")
    try:
        return LoadedModel(torch.jit.load(str(path), map_location="cpu").eval(), "torchscript")
    except Exception:  # noqa: BLE001 - not TorchScript: try a state dict below
        pass
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise ValueError(
            f"cannot read model {path}: neither TorchScript nor a state dict ({type(e).__name__}); "
            "save it with torch.jit.script(model).save(FILE) or torch.save(model.state_dict(), FILE)"
        ) from e
    if isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT:
        m = create_model(
            obj["arch"], obj["num_classes"], obj["in_channels"], obj["mean"], obj["std"]
        )
        m.load_state_dict(obj["state_dict"])
        return LoadedModel(m.eval(), "tarf-checkpoint", obj["arch"])
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} holds no state dict (a mapping of parameter names to tensors)")
    if arch is None:
        raise ValueError(
            f"{path} holds only weights (a state dict): name its architecture with --arch NAME "
            f"(registered: {', '.join(sorted(MODELS))}; --arch-module FILE.py registers your own), "
            "or save the model with torch.jit.script(model).save(FILE)"
        )
    k = output_size(state)
    if k is None:
        raise ValueError(f"{path}: no 2-D weight in the state dict, so no classifier head")
    model = create_model(arch, k, in_channels)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        detail = first[1].strip() if len(first) > 1 else first[0]
        detail = detail if len(detail) <= 160 else detail[:157].rstrip(", ") + "..."
        raise ValueError(
            f"the weights in {path} do not fit architecture {arch!r} ({detail}); "
            "pass the --arch the model was built with"
        ) from e
    return LoadedModel(model.eval(), "state_dict", arch)


def save_model_file(path: str | Path, model: nn.Module, kind: str) -> Path:
    """Save in the input's format: TorchScript stays TorchScript, weights stay weights."""
    from tarf.io import atomic_write

    if kind == "torchscript":
        return atomic_write(path, lambda f: torch.jit.save(model, f))
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return atomic_write(path, lambda f: torch.save(state, f))
