"""Dataset readers, data-root resolution and the md5-checked download, on the real
CIFAR-100 / Fashion-MNIST where present and on small files written here."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import io
import os
import pickle
import struct
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest

import tarf.data
from tarf.data import DATASETS, DataError, load_dataset, resolve_data_root
from tarf.data.download import SOURCES, download
from tarf.data.readers import (
    read_cifar10,
    read_cifar100,
    read_digits,
    read_fashion_mnist,
)
from tarf.hierarchy import builtin_hierarchy


def real_data_root() -> Path | None:
    """$TARF_DATA, else ../shared/datasets next to the repository checkout."""
    for cand in (
        os.environ.get("TARF_DATA"),
        Path(__file__).resolve().parents[2] / "shared" / "datasets",
    ):
        if cand and Path(cand).is_dir():
            return Path(cand)
    return None


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


# -- small files in the official formats ------------------------------------------------------
def cifar10_files(n: int = 4, seed: int = 0) -> dict[str, bytes]:
    """The CIFAR-10 python batches (pickled dicts, as the official ones) with n images each."""
    rng = np.random.default_rng(seed)
    names = list(builtin_hierarchy("cifar10").class_names)
    files = {"batches.meta": pickle.dumps({"label_names": names, "num_cases_per_batch": n}, 2)}
    for f in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, n).tolist()
        files[f] = pickle.dumps({"batch_label": f, "data": data, "labels": labels}, 2)
    return files


def write_cifar10(root: Path, files: dict[str, bytes] | None = None) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for f, b in (files or cifar10_files()).items():
        (folder / f).write_bytes(b)
    return folder


def cifar100_files(swap_coarse: bool = False) -> dict[str, bytes]:
    """A CIFAR-100 folder with one image per class, names from the built-in hierarchy."""
    h = builtin_hierarchy("cifar100")
    meta = {"fine_label_names": list(h.class_names), "coarse_label_names": list(h.superclass_names)}
    files = {"meta": pickle.dumps(meta, 2)}
    for split in ("train", "test"):
        fine = list(range(100))
        coarse = [h.superclass_of[c] for c in fine]
        if swap_coarse:
            coarse[0] = (coarse[0] + 1) % 20
        data = np.arange(100 * 3072, dtype=np.int64).astype(np.uint8).reshape(100, 3072)
        d = {"data": data, "fine_labels": fine, "coarse_labels": coarse}
        files[split] = pickle.dumps(d, 2)
    return files


def idx_bytes(arr: np.ndarray, magic: int) -> bytes:
    return struct.pack(f">{1 + arr.ndim}i", magic, *arr.shape) + arr.astype(np.uint8).tobytes()


def fashion_files(n_train: int = 12, n_test: int = 5) -> dict[str, bytes]:
    rng = np.random.default_rng(1)
    files = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        files[f"{split}-images-idx3-ubyte"] = idx_bytes(rng.integers(0, 256, (n, 28, 28)), 2051)
        files[f"{split}-labels-idx1-ubyte"] = idx_bytes(np.arange(n) % 10, 2049)
    return files


def write_fashion(folder: Path, files: dict[str, bytes] | None = None, gz: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for f, b in (files or fashion_files()).items():
        if gz:
            (folder / f"{f}.gz").write_bytes(gzip.compress(b))
        else:
            (folder / f).write_bytes(b)
    return folder


# -- real data --------------------------------------------------------------------------------
def test_real_cifar100():
    root = real_data_root()
    if root is None or not (root / "cifar-100-python").is_dir():
        pytest.skip("no CIFAR-100 in $TARF_DATA or ../shared/datasets")
    ds = read_cifar100(root)
    assert tuple(ds.x_train.shape) == (50000, 3, 32, 32)
    assert tuple(ds.x_test.shape) == (10000, 3, 32, 32)
    assert ds.y_train.bincount().tolist() == [500] * 100
    assert ds.y_test.bincount().tolist() == [100] * 100
    h = ds.hierarchy
    assert h.num_superclasses == 20
    assert all(len(h.classes_of(s)) == 5 for s in range(20))
    _, people = h.resolve("people")
    assert [h.class_names[c] for c in h.classes_of(people)] == [
        "baby",
        "boy",
        "girl",
        "man",
        "woman",
    ]


def test_real_fashion_mnist():
    root = real_data_root()
    if root is None or not (root / "fashion-mnist").is_dir():
        pytest.skip("no Fashion-MNIST in $TARF_DATA or ../shared/datasets")
    ds = load_dataset("fashion-mnist", root)
    assert tuple(ds.x_train.shape) == (60000, 1, 28, 28)
    assert tuple(ds.x_test.shape) == (10000, 1, 28, 28)
    assert ds.y_train.bincount().tolist() == [6000] * 10
    names = ds.hierarchy.class_names
    assert len(names) == 10 and names[0] == "T-shirt/top" and names[-1] == "Ankle boot"


# -- small self-written files -----------------------------------------------------------------
def test_cifar10_reader(tmp_path):
    files = cifar10_files()
    write_cifar10(tmp_path, files)
    ds = read_cifar10(tmp_path, checksums={f: md5(b) for f, b in files.items()})
    assert tuple(ds.x_train.shape) == (20, 3, 32, 32) and tuple(ds.x_test.shape) == (4, 3, 32, 32)
    first = pickle.loads(files["data_batch_1"])
    # row-major RGB: channel planes of 1024, each 32 rows of 32 pixels
    assert ds.x_train[1, 2, 3, 4].item() == first["data"][1, 2 * 1024 + 3 * 32 + 4]
    assert ds.y_train[:4].tolist() == first["labels"]
    assert ds.hierarchy.class_names[0] == "airplane"


def test_cifar100_reader_small_and_coarse_mismatch(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for f, b in cifar100_files().items():
        (folder / f).write_bytes(b)
    ds = read_cifar100(tmp_path, checksums=None)
    assert ds.y_train.tolist() == list(range(100))
    (folder / "train").write_bytes(cifar100_files(swap_coarse=True)["train"])
    with pytest.raises(DataError, match="train.*apple"):
        read_cifar100(tmp_path, checksums=None)


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("sub", ["fashion-mnist", ""])
def test_fashion_reader_plain_and_gzip(tmp_path, gz, sub):
    files = fashion_files()
    write_fashion(tmp_path / sub, files, gz=gz)
    ds = read_fashion_mnist(tmp_path, checksums={f: md5(b) for f, b in files.items()})
    assert tuple(ds.x_train.shape) == (12, 1, 28, 28) and tuple(ds.x_test.shape) == (5, 1, 28, 28)
    assert (
        ds.x_train[3, 0].numpy().tobytes() == files["train-images-idx3-ubyte"][16 + 3 * 784 :][:784]
    )
    assert ds.y_test.tolist() == [0, 1, 2, 3, 4]


def test_digits():
    ds = read_digits()
    assert tuple(ds.x_train.shape) == (1437, 1, 8, 8) and tuple(ds.x_test.shape) == (360, 1, 8, 8)
    assert int(ds.x_train.max()) == 240
    assert ds.y_test.bincount().min() >= 35  # stratified: ~36 per digit
    assert ds.y_train.equal(load_dataset("digits").y_train)  # deterministic split


# -- corrupt and missing files ----------------------------------------------------------------
def test_cifar10_corrupt_files(tmp_path):
    folder = write_cifar10(tmp_path)
    good = (folder / "data_batch_3").read_bytes()
    (folder / "data_batch_3").write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match="data_batch_3.*--download"):
        read_cifar10(tmp_path, checksums=None)
    (folder / "data_batch_3").write_bytes(os.urandom(500))
    with pytest.raises(DataError, match="data_batch_3"):
        read_cifar10(tmp_path, checksums=None)
    # the md5 catches it before unpickling
    with pytest.raises(DataError, match="md5 mismatch.*data_batch_3"):
        read_cifar10(tmp_path, checksums={"data_batch_3": md5(good)})
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataError, match="missing file.*data_batch_3"):
        read_cifar10(tmp_path, checksums=None)


def test_cifar10_label_out_of_range(tmp_path):
    files = cifar10_files()
    bad = pickle.loads(files["test_batch"])
    bad["labels"][0] = 10
    files["test_batch"] = pickle.dumps(bad, 2)
    write_cifar10(tmp_path, files)
    with pytest.raises(DataError, match="test_batch.*outside 0..9"):
        read_cifar10(tmp_path, checksums=None)


def test_pickle_cannot_run_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.mkdir, (str(tmp_path / "pwned"),))

    files = cifar10_files()
    files["batches.meta"] = pickle.dumps(Evil())
    write_cifar10(tmp_path, files)
    with pytest.raises(DataError, match="batches.meta.*forbidden"):
        read_cifar10(tmp_path, checksums=None)
    assert not (tmp_path / "pwned").exists()


def test_fashion_corrupt_files(tmp_path):
    files = fashion_files()
    folder = write_fashion(tmp_path / "fashion-mnist", files)
    images = folder / "train-images-idx3-ubyte"
    images.write_bytes(struct.pack(">i", 2049) + files["train-images-idx3-ubyte"][4:])
    with pytest.raises(DataError, match="train-images-idx3-ubyte.*magic 2049"):
        read_fashion_mnist(tmp_path, checksums=None)
    images.write_bytes(files["train-images-idx3-ubyte"][:-100])
    with pytest.raises(DataError, match="train-images-idx3-ubyte.*truncated"):
        read_fashion_mnist(tmp_path, checksums=None)
    images.write_bytes(files["train-images-idx3-ubyte"])
    labels = folder / "t10k-labels-idx1-ubyte"
    labels.write_bytes(idx_bytes(np.array([0, 1, 2, 3, 11]), 2049))
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.*outside 0..9"):
        read_fashion_mnist(tmp_path, checksums=None)
    labels.unlink()
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz"):
        read_fashion_mnist(tmp_path, checksums=None)
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(files["t10k-labels-idx1-ubyte"])
    )
    with pytest.raises(DataError, match="md5 mismatch.*t10k-labels-idx1-ubyte.gz.*decompressed"):
        read_fashion_mnist(tmp_path, checksums={"t10k-labels-idx1-ubyte": "0" * 32})
    read_fashion_mnist(tmp_path, checksums=None)  # repaired


# -- data root and load_dataset ---------------------------------------------------------------
def test_data_root_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("TARF_DATA", str(tmp_path / "env"))
    assert resolve_data_root(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_root(str(tmp_path / "arg")) == tmp_path / "arg"
    assert resolve_data_root(None) == tmp_path / "env"
    monkeypatch.delenv("TARF_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert resolve_data_root(None) == tmp_path / "xdg" / "tarf" / "data"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_data_root(None) == tmp_path / "home" / ".cache" / "tarf" / "data"


def test_load_dataset_errors(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="cifar100, cifar10, fashion-mnist, digits"):
        load_dataset("mnist")
    assert DATASETS == ("cifar100", "cifar10", "fashion-mnist", "digits")
    monkeypatch.setenv("TARF_DATA", str(tmp_path))
    with pytest.raises(DataError, match=f"looked in {tmp_path}.*--download.*TARF_DATA"):
        load_dataset("cifar10")


def test_fashion_debian_fallback(tmp_path, monkeypatch):
    debian = write_fashion(tmp_path / "usr-share", gz=True)
    monkeypatch.setattr(tarf.data, "DEBIAN_FASHION_MNIST", debian)
    monkeypatch.setitem(
        tarf.data._READERS, "fashion-mnist", functools.partial(read_fashion_mnist, checksums=None)
    )
    assert load_dataset("fashion-mnist", tmp_path / "empty").x_train.shape[0] == 12


# -- download from a local HTTP server --------------------------------------------------------
@pytest.fixture
def http_dir(tmp_path, monkeypatch):
    """A folder served on 127.0.0.1 (ephemeral port); yields (folder, base URL)."""
    served = tmp_path / "served"
    served.mkdir()
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def tar_gz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def test_download_cifar10(http_dir, tmp_path):
    served, url = http_dir
    files = cifar10_files(n=3)
    archive = tar_gz({f"cifar-10-batches-py/{f}": b for f, b in files.items()})
    (served / "cifar-10-python.tar.gz").write_bytes(archive)
    root = tmp_path / "data"
    folder = download(
        "cifar10", root, base_url=url, checksums={"cifar-10-python.tar.gz": md5(archive)}
    )
    assert folder == root / "cifar-10-batches-py"
    assert leftovers(root) == ["cifar-10-batches-py"] + [
        f"cifar-10-batches-py/{f}" for f in sorted(files)
    ]
    ds = read_cifar10(root, checksums={f: md5(b) for f, b in files.items()})
    assert ds.x_train.shape[0] == 15


def test_download_wrong_md5_leaves_nothing(http_dir, tmp_path):
    served, url = http_dir
    archive = tar_gz({"cifar-10-batches-py/batches.meta": b"x"})
    (served / "cifar-10-python.tar.gz").write_bytes(archive)
    root = tmp_path / "data"
    with pytest.raises(DataError) as err:
        download("cifar10", root, base_url=url, checksums={"cifar-10-python.tar.gz": "0" * 32})
    msg = str(err.value)
    assert f"{url}cifar-10-python.tar.gz" in msg and "0" * 32 in msg and md5(archive) in msg
    assert leftovers(root) == []


def test_download_missing_and_unsafe(http_dir, tmp_path):
    served, url = http_dir
    with pytest.raises(DataError, match="cannot download .*cifar-100-python.tar.gz.*404"):
        download("cifar100", tmp_path / "data", base_url=url)
    evil = tar_gz({"../escaped": b"x"})
    (served / "cifar-10-python.tar.gz").write_bytes(evil)
    with pytest.raises(DataError, match="unsafe archive member '../escaped'"):
        download(
            "cifar10",
            tmp_path / "data",
            base_url=url,
            checksums={"cifar-10-python.tar.gz": md5(evil)},
        )
    assert not (tmp_path / "escaped").exists()


def test_load_dataset_downloads(http_dir, tmp_path, monkeypatch):
    """--download through load_dataset, with the host from TARF_DOWNLOAD_URL."""
    served, url = http_dir
    files = fashion_files()
    official = SOURCES["fashion-mnist"][1]
    for stem, data in files.items():
        gz = gzip.compress(data)
        (served / f"{stem}.gz").write_bytes(gz)
        monkeypatch.setitem(official, f"{stem}.gz", md5(gz))
    monkeypatch.setenv("TARF_DOWNLOAD_URL", url)
    monkeypatch.setattr(tarf.data, "DEBIAN_FASHION_MNIST", tmp_path / "nowhere")
    monkeypatch.setitem(
        tarf.data._READERS, "fashion-mnist", functools.partial(read_fashion_mnist, checksums=None)
    )
    with pytest.raises(DataError, match="--download"):
        load_dataset("fashion-mnist", tmp_path / "data")
    ds = load_dataset("fashion-mnist", tmp_path / "data", download=True)
    assert ds.x_train.shape[0] == 12
    images = tmp_path / "data" / "fashion-mnist" / "train-images-idx3-ubyte.gz"
    images.write_bytes(images.read_bytes()[:50])  # corrupt: --download fetches a fresh copy
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz"):
        load_dataset("fashion-mnist", tmp_path / "data")
    assert load_dataset("fashion-mnist", tmp_path / "data", download=True).x_train.shape[0] == 12
