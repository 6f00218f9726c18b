"""Atomic writes (a result or checkpoint is either complete on disk or absent), a
cross-process lock for work two processes must not do twice, and the check that a path
can be written before the work that ends in writing it."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[Any], None], mode: str = "wb") -> Path:
    """Write through ``write(file)`` to a temp file beside ``path``, then rename it in place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would make results private
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def write_json(path: str | Path, data: Any) -> Path:
    return atomic_write(path, lambda f: json.dump(data, f, indent=2, sort_keys=False), mode="w")


def finite_or_none(data: Any) -> Any:
    """``data`` with every NaN or infinite float as None: standard JSON, which strict
    parsers (JavaScript, Go, serde) read; Python's ``json`` writes them as ``NaN`` and
    ``Infinity``, which only Python reads back."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: finite_or_none(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [finite_or_none(v) for v in data]
    return data


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text), mode="w")


def save_torch(path: str | Path, obj: Any) -> Path:
    import torch

    return atomic_write(path, lambda f: torch.save(obj, f))


class LockBusy(RuntimeError):
    """``file_lock(..., wait=False)`` found the lock held by someone else."""


@contextmanager
def file_lock(
    path: str | Path, wait: bool = True, on_wait: Callable[[], None] | None = None
) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) across processes, so that
    two workers about to compute the same cached result do it once: the second waits
    and then finds the result; ``on_wait()`` is called once before it starts waiting (a
    progress line), never when the lock is free. With ``wait=False`` a held lock raises
    ``LockBusy`` at once, so a scheduler can do other work first. POSIX ``flock``;
    elsewhere no lock (at worst, duplicate work: writes stay atomic)."""
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            if not wait:
                raise LockBusy(f"{path} is held by another process") from e
            if on_wait is not None:
                on_wait()
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def unwritable(path: str | Path, folder: bool = False) -> str | None:
    """Why ``path`` cannot be written (a file, or with ``folder`` a folder to write
    files into), without creating anything; None when it can. Missing parent folders are
    fine (writing creates them) as long as the nearest existing one is a writable folder."""
    path = Path(path)
    if path.exists() and folder != path.is_dir():
        return f"{path} is a file, not a folder" if folder else f"{path} is a folder, not a file"
    where = path if folder and path.exists() else path.parent
    while not where.exists() and where != where.parent:
        where = where.parent
    if not where.is_dir():
        return f"{where} is a file, not a folder"
    if not os.access(where, os.W_OK | os.X_OK):
        return f"cannot write in {where} (permission denied)"
    try:  # the permission bits can say yes where the file system says no (/proc, read-only)
        with tempfile.NamedTemporaryFile(dir=where, prefix=".tarf-probe-"):
            pass
    except OSError as e:
        return f"cannot write in {where} ({e.strerror or e})"
    return None


def parse_error_at(e: Exception) -> tuple[int | None, str]:
    """Where a YAML or JSON parse error is (its 1-based line, when known) and what it is,
    in one line: the parsers' own messages draw the spot over several."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    line = mark.line + 1 if mark is not None else getattr(e, "lineno", None)
    problem = getattr(e, "problem", None) or getattr(e, "msg", None) or str(e).splitlines()[0]
    return line, problem


def load_yaml(text: str) -> Any:
    """``yaml.safe_load``, but a key given twice in one mapping is an error (YAML would
    keep the last one silently); the error is a YAML error with the key's line."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        pass

    def mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
        seen = set()
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"{key!r} given twice in one mapping; keep one", key_node.start_mark
                )
            seen.add(key)
        return loader.construct_mapping(node, deep=deep)

    UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass


def load_json(text: str) -> Any:
    """``json.loads``, but a key given twice in one object is an error (JSON parsers keep
    the last one silently)."""

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise ValueError(f"{key!r} given twice in one object; keep one")
            out[key] = value
        return out

    return json.loads(text, object_pairs_hook=unique)
