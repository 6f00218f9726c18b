"""Datasets by name: where their files live, and loading them into an :class:`ImageDataset`."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from tarf.data.core import DataError, ImageDataset
from tarf.data.readers import (
    FOLDERS,
    missing_files,
    read_cifar10,
    read_cifar100,
    read_digits,
    read_fashion_mnist,
)

DATASETS = ("cifar100", "cifar10", "fashion-mnist", "digits")
# Debian's dataset-fashion-mnist package installs the IDX files here.
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

_READERS: dict[str, Callable[[Path], ImageDataset]] = {
    "cifar100": read_cifar100,
    "cifar10": read_cifar10,
    "fashion-mnist": read_fashion_mnist,
}


def default_data_root() -> Path:
    """``$XDG_CACHE_HOME/tarf/data``, i.e. ``~/.cache/tarf/data`` by default."""
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "tarf" / "data"


def resolve_data_root(data_root: str | Path | None) -> Path:
    """The ``--data-root`` argument, else ``$TARF_DATA``, else :func:`default_data_root`."""
    chosen = data_root or os.environ.get("TARF_DATA") or default_data_root()
    return Path(chosen).expanduser()


def load_dataset(
    name: str, data_root: str | Path | None = None, download: bool = False
) -> ImageDataset:
    """Read dataset ``name``; with ``download`` fetch it into the data root when its files
    are missing or fail their checks."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    if name == "digits":
        return read_digits()
    root = resolve_data_root(data_root)
    reader = _READERS[name]
    candidates = [root] + ([DEBIAN_FASHION_MNIST] if name == "fashion-mnist" else [])
    for where in candidates:
        if not missing_files(name, where):
            try:
                return reader(where)
            except DataError:
                if not download or where != root:
                    raise
                break  # corrupt files in the data root: download a fresh copy below
    if download:
        from tarf.data.download import download as fetch_dataset

        fetch_dataset(name, root)
        return reader(root)
    looked = " and ".join(str(c) for c in candidates)
    missing = missing_files(name, root)
    more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
    raise DataError(
        f"{name}: dataset files not found (looked in {looked}; missing "
        f"{', '.join(missing[:3])}{more}). Pass --download to fetch the official, "
        f"md5-checked files into {root}, or point --data-root / TARF_DATA at a folder "
        f"holding {FOLDERS[name]}/"
    )


__all__ = [
    "DATASETS",
    "DataError",
    "ImageDataset",
    "default_data_root",
    "load_dataset",
    "resolve_data_root",
]
