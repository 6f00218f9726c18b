"""Devices and precision: which device a run uses, the reduced precision of training and
of unlearning steps on it, fp32 for measuring, and cuDNN's autotuner. On a CPU every one
of them is full precision and changes nothing."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


def pick_device(name: str | torch.device = "auto", given_as: str = "--device ") -> torch.device:
    """``auto`` takes a CUDA GPU when there is one, else the CPU. A CUDA device is returned
    with its index (``cuda`` = the current GPU) and made the current one, so that every
    CUDA call of this process (synchronisation, generators, autocast) uses that GPU.
    ``given_as`` is how the caller's user wrote the choice (``--device `` on the command
    line, ``device=`` in the API), so that an error speaks their language."""

    def said(value: object) -> str:  # --device cuda:3, or device='cuda:3' in Python
        return f"{given_as}{str(value)!r}" if given_as.endswith("=") else f"{given_as}{value}"

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"{said(name)}: not a device torch knows (auto, cpu, cuda, cuda:N)") from e
    if dev.type not in ("cpu", "cuda"):  # mps, xla, meta, ...: not a path tarf has tested
        raise ValueError(
            f"{said(name)}: tarf runs on the CPU or a CUDA GPU (auto, cpu, cuda, cuda:N), "
            f"not on {dev.type}; use {said('cpu')}"
        )
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"{said(name)} was asked for but no CUDA GPU is available; use {said('cpu')}"
            )
        count = torch.cuda.device_count()
        index = torch.cuda.current_device() if dev.index is None else dev.index
        if index >= count:
            raise ValueError(
                f"{said(name)}: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}"
            )
        torch.cuda.set_device(index)
        dev = torch.device("cuda", index)
    return dev


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """The reduced precision training uses on ``device``: bf16 on GPUs that compute it
    natively (compute capability 8.0 and later: A100, H100, RTX 30xx and later), fp16 with
    loss scaling on older ones (V100, T4: ``torch.cuda.is_bf16_supported()`` says yes
    there too, but emulates it), None (full precision) off CUDA."""
    if device.type != "cuda":
        return None
    major, _ = torch.cuda.get_device_capability(device)
    return torch.bfloat16 if major >= 8 else torch.float16


def unlearn_dtype(device: torch.device) -> torch.dtype | None:
    """The reduced precision of unlearning steps: bf16 where it is native, else None (fp32).
    Never fp16: ascent on an unbounded loss overflows its range, and the methods' steps
    have no loss scaling."""
    return torch.bfloat16 if amp_dtype(device) == torch.bfloat16 else None


def _autocast_to(
    device: torch.device, dtype: torch.dtype | None
) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """Mixed precision of training steps (:func:`amp_dtype`); full precision on a CPU."""
    return _autocast_to(device, amp_dtype(device))


def unlearn_autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """Mixed precision of unlearning steps (:func:`unlearn_dtype`); full precision on a CPU."""
    return _autocast_to(device, unlearn_dtype(device))


@contextlib.contextmanager
def full_precision(device: torch.device) -> Iterator[None]:
    """fp32 for measuring a model: no autocast (even inside a caller's) and, on CUDA, no
    TF32 in convolutions and matrix products, so that confidences, losses and their
    differences match a CPU run (the MIA, U-LiRA and TARF-I thresholds were set on those)."""
    if device.type not in ("cpu", "cuda"):
        yield
        return
    with torch.autocast(device.type, enabled=False):
        if device.type != "cuda":
            yield
            return
        saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@contextlib.contextmanager
def cudnn_benchmark(device: torch.device) -> Iterator[None]:
    """cuDNN picks the fastest convolution algorithms for the shapes it sees (a training
    loop's shapes repeat); restored afterwards. Nothing changes off CUDA."""
    if device.type != "cuda":
        yield
        return
    saved = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = saved


def scaler_enabled(device: torch.device) -> bool:
    """Loss scaling is needed with fp16 only (bf16 has fp32's range)."""
    return amp_dtype(device) == torch.float16


def make_scaler(device: torch.device) -> torch.amp.GradScaler:
    return torch.amp.GradScaler("cuda", enabled=scaler_enabled(device))
