"""Fetch the official dataset archives, md5-checked, with urllib only.

Downloads go to a temporary file in the target folder and are renamed into place only
after the md5 matches, so an interrupted or tampered download never looks like data.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tarfile
import tempfile
import urllib.request
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import IO, Any

from tarf.data.core import DataError
from tarf.data.readers import FOLDERS

TORONTO = "https://www.cs.toronto.edu/~kriz/"
ZALANDO = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"

# dataset -> (official host, {archive file: md5}); the md5s torchvision checks too.
SOURCES: dict[str, tuple[str, dict[str, str]]] = {
    "cifar10": (TORONTO, {"cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a"}),
    "cifar100": (TORONTO, {"cifar-100-python.tar.gz": "eb9058c3a382ffc7106e4002c42a8d85"}),
    "fashion-mnist": (
        ZALANDO,
        {
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
    ),
}
CHUNK = 1 << 20


class _Md5Mismatch(Exception):
    def __init__(self, actual: str) -> None:
        super().__init__(actual)
        self.actual = actual


def _write_atomic(
    src: IO[bytes], dest: Path, md5: str | None = None, bar: Any | None = None
) -> None:
    """Stream ``src`` to a temp file next to ``dest`` and rename it into place only when
    complete and (if ``md5`` is given) verified; on any failure the temp file is removed,
    so no partial file is ever left behind."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    h = hashlib.md5(usedforsecurity=False)
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := src.read(CHUNK):
                out.write(chunk)
                h.update(chunk)
                if bar is not None:
                    bar.update(len(chunk))
        if md5 is not None and h.hexdigest() != md5:
            raise _Md5Mismatch(h.hexdigest())
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def fetch(url: str, dest: Path, md5: str) -> Path:
    """Download ``url`` to ``dest`` and verify its md5; a mismatch deletes the file."""
    bar = None
    try:
        with urllib.request.urlopen(url, timeout=60) as resp:
            if sys.stderr.isatty():
                from tqdm import tqdm

                total = int(resp.headers.get("Content-Length") or 0) or None
                bar = tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, leave=False)
            _write_atomic(resp, dest, md5, bar)
    except _Md5Mismatch as e:
        raise DataError(
            f"download of {url} failed its md5 check (expected {md5}, got {e.actual}); the "
            "partial file was deleted. Retry later, or fetch the file yourself and point "
            "--data-root / TARF_DATA at the folder holding it"
        ) from None
    except OSError as e:  # URLError, HTTPError, timeouts, disk full
        raise DataError(
            f"cannot download {url} ({e}); check the network or set TARF_DOWNLOAD_URL to a "
            "mirror, or fetch the file yourself and point --data-root / TARF_DATA at it"
        ) from e
    finally:
        if bar is not None:
            bar.close()
    return dest


def extract_tar(archive: Path, root: Path) -> None:
    """Extract regular files and folders only; absolute names, ``..`` and links are refused
    so a hostile archive cannot write outside ``root``."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for m in tar:
                parts = PurePosixPath(m.name).parts
                if m.name.startswith(("/", "\\")) or ".." in parts or not (m.isfile() or m.isdir()):
                    raise DataError(
                        f"{archive}: refusing unsafe archive member {m.name!r}; delete the "
                        "archive and download it again from the official site"
                    )
                target = root.joinpath(*parts)
                if m.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                src = tar.extractfile(m)
                assert src is not None  # regular file
                with src:
                    _write_atomic(src, target)
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DataError(
            f"cannot extract {archive} ({e}); delete it and download again with --download"
        ) from e


def download(
    name: str,
    root: str | Path,
    base_url: str | None = None,
    checksums: Mapping[str, str] | None = None,
) -> Path:
    """Fetch and unpack dataset ``name`` into ``root``; returns the dataset's folder.

    ``base_url`` (else env ``TARF_DOWNLOAD_URL``, else the official host) is where the
    archive files are fetched from; ``checksums`` overrides the md5 of archive files.
    """
    if name not in SOURCES:
        raise ValueError(f"cannot download {name!r}; downloadable: {', '.join(SOURCES)}")
    host, official = SOURCES[name]
    md5s = {**official, **(checksums or {})}
    base = (base_url or os.environ.get("TARF_DOWNLOAD_URL") or host).rstrip("/") + "/"
    root = Path(root).expanduser()
    folder = root / FOLDERS[name]
    for file in official:
        md5 = md5s[file]
        if name == "fashion-mnist":
            fetch(base + file, folder / file, md5)
        else:
            archive = fetch(base + file, root / file, md5)
            extract_tar(archive, root)
            archive.unlink()
    return folder
