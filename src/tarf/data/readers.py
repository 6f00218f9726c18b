"""Readers for the official dataset files: CIFAR-10/100 python pickles, Fashion-MNIST IDX,
and scikit-learn's bundled digits.

Every problem with a file (missing, truncated, wrong checksum, wrong shape) becomes a
:class:`DataError` that names the file and says how to fix it, so the CLI can print one line
instead of a traceback.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tarf.data.core import DataError, ImageDataset
from tarf.hierarchy import builtin_hierarchy

# Official md5s of the extracted files (the same torchvision checks).
CIFAR10_MD5: dict[str, str] = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
    "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
}
CIFAR100_MD5: dict[str, str] = {
    "train": "16019d7e3df5f24257cddd939b257f8d",
    "test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
    "meta": "7973b15100ade9c7d40fb424638fde48",
}
# md5 of the *decompressed* IDX payloads: gzip wrappers differ between mirrors (Debian
# recompresses them), the content does not.
FASHION_MNIST_MD5: dict[str, str] = {
    "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
}

CIFAR10_DIR = "cifar-10-batches-py"
CIFAR100_DIR = "cifar-100-python"
FASHION_MNIST_DIR = "fashion-mnist"
CIFAR10_FILES = tuple(CIFAR10_MD5)
CIFAR100_FILES = tuple(CIFAR100_MD5)
FASHION_MNIST_FILES = tuple(FASHION_MNIST_MD5)
FOLDERS = {"cifar10": CIFAR10_DIR, "cifar100": CIFAR100_DIR, "fashion-mnist": FASHION_MNIST_DIR}


def fix_hint(dataset: str) -> str:
    """The one remedy every data error offers."""
    return (
        f"rerun the command with --download (it fetches {dataset} again), or point "
        f"--data-root / TARF_DATA at a folder holding {FOLDERS[dataset]}/"
    )


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _read_bytes(path: Path, dataset: str, checksums: Mapping[str, str] | None, key: str) -> bytes:
    """Read a whole file (they fit in memory by design) and check its md5 if one is known."""
    try:
        data = path.read_bytes()
        if path.suffix == ".gz":
            data = gzip.decompress(data)
    except FileNotFoundError:
        raise DataError(f"{dataset}: missing file {path}; {fix_hint(dataset)}") from None
    except (OSError, EOFError) as e:
        raise DataError(f"{dataset}: cannot read {path} ({e}); {fix_hint(dataset)}") from e
    expected = checksums.get(key) if checksums else None
    if expected is not None and (actual := _md5(data)) != expected:
        what = "decompressed data" if path.suffix == ".gz" else "file"
        raise DataError(
            f"{dataset}: md5 mismatch for {path} ({what}: expected {expected}, got "
            f"{actual}); the file is corrupt or not the official one; {fix_hint(dataset)}"
        )
    return data


class _ArrayUnpickler(pickle.Unpickler):
    """Data pickles come from the internet: allow only what numpy arrays need, so a
    tampered file cannot run code."""

    ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"forbidden global {module}.{name}")
        return super().find_class(module, name)


def _load_pickle(path: Path, dataset: str, checksums: Mapping[str, str] | None) -> dict[str, Any]:
    """An official CIFAR pickle (written by Python 2, hence latin1) as a str-keyed dict."""
    data = _read_bytes(path, dataset, checksums, path.name)
    try:
        obj = _ArrayUnpickler(io.BytesIO(data), encoding="latin1").load()
    except Exception as e:  # noqa: BLE001 - any unpickling failure means a corrupt file
        raise DataError(
            f"{dataset}: {path} is not a valid CIFAR pickle ({type(e).__name__}: {e}); "
            f"{fix_hint(dataset)}"
        ) from e
    if not isinstance(obj, dict):
        raise DataError(
            f"{dataset}: {path} holds a {type(obj).__name__}, not a dict; {fix_hint(dataset)}"
        )
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _field(d: dict[str, Any], key: str, path: Path, dataset: str) -> Any:
    if key not in d:
        raise DataError(f"{dataset}: {path} has no {key!r} entry; {fix_hint(dataset)}")
    return d[key]


def _labels(values: Any, n: int, num_classes: int, path: Path, dataset: str) -> np.ndarray:
    """Labels as int64, checked against the image count and the class range."""
    try:
        y = np.asarray(values, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError) as e:
        raise DataError(f"{dataset}: {path} has non-integer labels; {fix_hint(dataset)}") from e
    if y.size != n:
        raise DataError(
            f"{dataset}: {path} has {n} images but {y.size} labels; {fix_hint(dataset)}"
        )
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise DataError(
            f"{dataset}: {path} has labels outside 0..{num_classes - 1} "
            f"(found {y.min()}..{y.max()}); {fix_hint(dataset)}"
        )
    return y


def _cifar_images(d: dict[str, Any], path: Path, dataset: str) -> np.ndarray:
    x = _field(d, "data", path, dataset)
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072:
        desc = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
        raise DataError(
            f"{dataset}: {path}: 'data' must be uint8 [N, 3072], got {desc}; {fix_hint(dataset)}"
        )
    return x.reshape(-1, 3, 32, 32)


def _names(d: dict[str, Any], key: str, path: Path, dataset: str) -> list[str]:
    return [n.decode() if isinstance(n, bytes) else str(n) for n in _field(d, key, path, dataset)]


def _dataset(
    name: str, xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, yte: np.ndarray
) -> ImageDataset:
    return ImageDataset(
        name,
        builtin_hierarchy(name),
        torch.from_numpy(np.ascontiguousarray(xtr)),
        torch.from_numpy(ytr),
        torch.from_numpy(np.ascontiguousarray(xte)),
        torch.from_numpy(yte),
    )


def read_cifar10(root: Path, checksums: Mapping[str, str] | None = CIFAR10_MD5) -> ImageDataset:
    """CIFAR-10 from the official python batches in ``root/cifar-10-batches-py``."""
    folder, h = Path(root) / CIFAR10_DIR, builtin_hierarchy("cifar10")
    meta_path = folder / "batches.meta"
    names = _names(
        _load_pickle(meta_path, "cifar10", checksums), "label_names", meta_path, "cifar10"
    )
    if tuple(names) != h.class_names:
        raise DataError(
            f"cifar10: {meta_path} lists classes {names}, expected {list(h.class_names)}; "
            f"{fix_hint('cifar10')}"
        )

    def split(files: list[str]) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for f in files:
            path = folder / f
            d = _load_pickle(path, "cifar10", checksums)
            x = _cifar_images(d, path, "cifar10")
            xs.append(x)
            ys.append(_labels(_field(d, "labels", path, "cifar10"), len(x), 10, path, "cifar10"))
        return np.concatenate(xs), np.concatenate(ys)

    xtr, ytr = split([f"data_batch_{i}" for i in range(1, 6)])
    xte, yte = split(["test_batch"])
    return _dataset("cifar10", xtr, ytr, xte, yte)


def read_cifar100(root: Path, checksums: Mapping[str, str] | None = CIFAR100_MD5) -> ImageDataset:
    """CIFAR-100 from ``root/cifar-100-python``; the file's own class and superclass names
    must match the built-in hierarchy, or every class id downstream would be wrong."""
    folder, h, ds = Path(root) / CIFAR100_DIR, builtin_hierarchy("cifar100"), "cifar100"
    meta_path = folder / "meta"
    meta = _load_pickle(meta_path, ds, checksums)
    fine = _names(meta, "fine_label_names", meta_path, ds)
    coarse = _names(meta, "coarse_label_names", meta_path, ds)
    if tuple(fine) != h.class_names:
        raise DataError(
            f"cifar100: {meta_path} lists classes that differ from the built-in CIFAR-100 "
            f"hierarchy (first: {fine[:3]}); {fix_hint(ds)}"
        )
    expected = [h.superclass_names[s] for s in h.superclass_of]  # class id -> superclass name

    arrays = []
    for split in ("train", "test"):
        path = folder / split
        d = _load_pickle(path, ds, checksums)
        x = _cifar_images(d, path, ds)
        y = _labels(_field(d, "fine_labels", path, ds), len(x), 100, path, ds)
        yc = _labels(_field(d, "coarse_labels", path, ds), len(x), len(coarse), path, ds)
        for c, s in np.unique(np.stack([y, yc], axis=1), axis=0):
            if coarse[s] != expected[c]:
                raise DataError(
                    f"cifar100: {path} puts class {fine[c]!r} in superclass {coarse[s]!r}, the "
                    f"built-in hierarchy in {expected[c]!r}; {fix_hint(ds)}"
                )
        arrays += [x, y]
    return _dataset(ds, *arrays)


def _fashion_path(root: Path, stem: str) -> Path | None:
    """The IDX file, plain or gzipped, in ``root/fashion-mnist`` or directly in ``root``."""
    for folder in (Path(root) / FASHION_MNIST_DIR, Path(root)):
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
    return None


def _read_idx(path: Path, magic: int, ndim: int, checksums: Mapping[str, str] | None) -> np.ndarray:
    """An IDX file of unsigned bytes: big-endian magic, then ``ndim`` int32 sizes, then data."""
    ds = "fashion-mnist"
    data = _read_bytes(path, ds, checksums, path.name.removesuffix(".gz"))
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{ds}: {path} is truncated (no IDX header); {fix_hint(ds)}")
    found, *dims = np.frombuffer(data, ">i4", count=1 + ndim).tolist()
    if found != magic:
        raise DataError(
            f"{ds}: {path} is not an IDX file of this kind (magic {found}, expected {magic}); "
            f"{fix_hint(ds)}"
        )
    if len(data) - header != int(np.prod(dims)):
        raise DataError(
            f"{ds}: {path} holds {len(data) - header} data bytes, the header promises "
            f"{int(np.prod(dims))} ({'x'.join(map(str, dims))}); the file is truncated or "
            f"corrupt; {fix_hint(ds)}"
        )
    return np.frombuffer(data, np.uint8, offset=header).reshape(dims).copy()


def read_fashion_mnist(
    root: Path, checksums: Mapping[str, str] | None = FASHION_MNIST_MD5
) -> ImageDataset:
    """Fashion-MNIST from the official IDX files (plain or ``.gz``)."""
    ds, arrays = "fashion-mnist", []
    for split in ("train", "t10k"):
        paths = []
        for stem in (f"{split}-images-idx3-ubyte", f"{split}-labels-idx1-ubyte"):
            path = _fashion_path(root, stem)
            if path is None:
                raise DataError(
                    f"{ds}: missing file {stem}[.gz] in {Path(root) / FASHION_MNIST_DIR} or "
                    f"{root}; {fix_hint(ds)}"
                )
            paths.append(path)
        x = _read_idx(paths[0], 2051, 3, checksums)
        if x.shape[1:] != (28, 28):
            raise DataError(
                f"{ds}: {paths[0]} holds {x.shape[1]}x{x.shape[2]} images, expected 28x28; "
                f"{fix_hint(ds)}"
            )
        y = _labels(_read_idx(paths[1], 2049, 1, checksums), len(x), 10, paths[1], ds)
        arrays += [x[:, None], y]
    return _dataset(ds, *arrays)


def read_digits() -> ImageDataset:
    """scikit-learn's 8x8 digits (ships with the package, so it always works offline),
    scaled 0..16 -> 0..240 and split 80/20, stratified, with a fixed seed."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = (bunch.images * 15).astype(np.uint8)[:, None]
    y = bunch.target.astype(np.int64)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.2, stratify=y, random_state=0)
    return _dataset("digits", xtr, ytr, xte, yte)


def missing_files(dataset: str, root: Path) -> list[str]:
    """Files a reader needs that are absent under ``root`` (empty: try reading)."""
    root = Path(root)
    if dataset == "cifar10":
        return [
            f"{CIFAR10_DIR}/{f}" for f in CIFAR10_FILES if not (root / CIFAR10_DIR / f).is_file()
        ]
    if dataset == "cifar100":
        return [
            f"{CIFAR100_DIR}/{f}" for f in CIFAR100_FILES if not (root / CIFAR100_DIR / f).is_file()
        ]
    if dataset == "fashion-mnist":
        return [
            f"{FASHION_MNIST_DIR}/{s}[.gz]"
            for s in FASHION_MNIST_FILES
            if _fashion_path(root, s) is None
        ]
    return []
