"""Training on tensors held in memory: batch augmentation, mixed precision, resumable state.

Hot loops touch whole batches only (no per-sample Python). Trained models are cached
under a hash of everything that determines their weights and written atomically.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from tarf.devices import (  # noqa: F401 - re-exported: tarf.training's callers import them
    amp_dtype,
    autocast,
    cudnn_benchmark,
    full_precision,
    make_scaler,
    pick_device,
    scaler_enabled,
    unlearn_autocast,
    unlearn_dtype,
)
from tarf.io import save_torch
from tarf.models import create_model
from tarf.recipes import Recipe

CODE_VERSION = "train-v1"  # bump when the training loop changes the weights it produces


# -- timing, progress --------------------------------------------------------------------
def time_alone(
    wall_start: float, cpu_start: float, threads: int, wall_now: float | None = None
) -> float:
    """Seconds since ``wall_start`` this process would have taken with its cores to itself:
    its CPU time over torch's threads, at most the wall time up to ``wall_now`` (default:
    now; give the caller's own reading so that the two never disagree). CPU time counts
    every thread of the process, so a short job's can exceed its torch threads' share."""
    wall_now = time.perf_counter() if wall_now is None else wall_now
    return min(wall_now - wall_start, (time.process_time() - cpu_start) / threads)


def _progress_mode() -> str:
    """The progress display: quiet with TARF_QUIET=1, a bar on a terminal, else lines."""
    if os.environ.get("TARF_QUIET") == "1":
        return "quiet"
    return "bar" if sys.stderr.isatty() else "lines"


def progress(
    iterable: Iterable, desc: str, total: int | None = None, leave: bool = False
) -> Iterable:
    """A tqdm bar on a terminal, silence elsewhere (CI logs, background runs)."""
    quiet = _progress_mode() != "bar"
    return tqdm(iterable, desc=desc, total=total, leave=leave, disable=quiet, dynamic_ncols=True)


class EpochProgress:
    """A training's progress: a tqdm bar on a terminal; where no terminal is attached
    (nohup, CI, a log file) a line per epoch on stderr, ``train {desc}: epoch i/n, loss x,
    elapsed s``; nothing with ``TARF_QUIET=1``."""

    def __init__(self, desc: str, first: int, epochs: int, elapsed: float = 0.0) -> None:
        self.mode, self.epochs, self.done_before = _progress_mode(), epochs, elapsed
        self.name = desc if desc.startswith("train") else f"train {desc}"
        self.start = time.perf_counter()
        self.bar = None
        if self.mode == "bar":
            self.bar = tqdm(desc=desc, total=epochs - first, leave=True, dynamic_ncols=True)

    @property
    def wants_loss(self) -> bool:
        return self.mode != "quiet"

    def epoch(self, epoch: int, loss: float) -> None:
        """Epoch ``epoch`` (0-based) ended with mean training loss ``loss``."""
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
            self.bar.update(1)
        elif self.mode == "lines":
            elapsed = self.done_before + time.perf_counter() - self.start
            print(f"{self.name}: epoch {epoch + 1}/{self.epochs}, loss {loss:.4f}, "
                  f"elapsed {elapsed:.0f}s", file=sys.stderr, flush=True)  # fmt: skip

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# -- images ------------------------------------------------------------------------------
def prepare_images(x: torch.Tensor, downsample: int) -> torch.Tensor:
    """Downsample uint8 images once (area average) when the recipe asks and they are >= 16 px."""
    if downsample <= 1 or x.shape[-1] < 16:
        return x
    out = []
    for chunk in x.split(8192):
        out.append(F.avg_pool2d(chunk.float(), downsample).round_().to(torch.uint8))
    return torch.cat(out)


def channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images, in [0, 1] units (the model normalises)."""
    xs = x[: min(len(x), 10000)].float().div_(255)
    return tuple(xs.mean((0, 2, 3)).tolist()), tuple(xs.std((0, 2, 3)).clamp_min(1e-3).tolist())


def to_float(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    return (
        x.to(device, non_blocking=True)
        .float()
        .div_(255)
        .contiguous(memory_format=torch.channels_last)
    )


def augment(x: torch.Tensor, pad: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Random crop (zero padding ``pad``) and horizontal flip of a whole batch at once."""
    n, c, h, w = x.shape
    gen_device = generator.device
    if flip:
        mask = torch.rand(n, generator=generator, device=gen_device).to(x.device) < 0.5
        x = torch.where(mask.view(n, 1, 1, 1), x.flip(3), x)
    if pad > 0:
        xp = F.pad(x, (pad, pad, pad, pad))
        dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=gen_device).to(
            x.device
        )
        dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=gen_device).to(
            x.device
        )
        rows = (torch.arange(h, device=x.device).view(1, h) + dy.view(n, 1)).view(n, 1, h, 1)
        cols = (torch.arange(w, device=x.device).view(1, w) + dx.view(n, 1)).view(n, 1, 1, w)
        xp = xp.gather(2, rows.expand(n, c, h, w + 2 * pad))
        x = xp.gather(3, cols.expand(n, c, h, w))
    return x.contiguous(memory_format=torch.channels_last)


def batches(
    n: int,
    batch_size: int,
    generator: torch.Generator,
    shuffle: bool = True,
    device: torch.device | None = None,
) -> Iterator[torch.Tensor]:
    """One epoch's index batches, drawn on the CPU from ``generator`` (so the order is
    the same on every device); on CUDA the whole permutation is copied once per epoch
    from pinned memory without blocking, not once per batch."""
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    if device is not None and device.type == "cuda":
        order = order.pin_memory().to(device, non_blocking=True)
    yield from order.split(batch_size)


def eval_batch_size(device: torch.device) -> int:
    """Batch size of inference passes. On a CPU, 256 images run about a third faster
    than 1024 (the activations stay in cache; same logits bit for bit, measured on
    cpunet); a GPU wants large batches."""
    return 1024 if device.type == "cuda" else 256


@torch.no_grad()
def forward_logits(
    model: nn.Module, x: torch.Tensor, device: torch.device, batch_size: int | None = None
) -> torch.Tensor:
    """Logits of uint8 images in eval mode, batched, in full precision (:func:`full_precision`:
    metrics, MIA confidences and audit scores match a CPU run); float32 on the CPU."""
    was_training = model.training
    model.eval()
    out = []
    with full_precision(device):
        for chunk in x.split(batch_size or eval_batch_size(device)):
            out.append(model(to_float(chunk, device)).float())
    model.train(was_training)
    return torch.cat(out).cpu() if out else torch.empty(0, 0)


@torch.no_grad()
def forward_features(
    model: nn.Module, x: torch.Tensor, device: torch.device, batch_size: int | None = None
) -> torch.Tensor:
    """Penultimate-layer features, batched, eval mode, full precision; float32 on the CPU."""
    was_training = model.training
    model.eval()
    chunks = x.split(batch_size or eval_batch_size(device))
    with full_precision(device):
        out = [model.features(to_float(c, device)).float() for c in chunks]
    model.train(was_training)
    return torch.cat(out).cpu()


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> float:
    if len(y) == 0:
        return float("nan")
    return 100.0 * (forward_logits(model, x, device).argmax(1) == y).float().mean().item()


# -- training ------------------------------------------------------------------------------
def build_optimizer(
    model: nn.Module, recipe: Recipe, steps_per_epoch: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    opt = torch.optim.SGD(
        model.parameters(),
        lr=recipe.lr,
        momentum=recipe.momentum,
        nesterov=recipe.nesterov,
        weight_decay=recipe.weight_decay,
    )
    total = recipe.epochs * steps_per_epoch
    if recipe.schedule == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt,
            max_lr=recipe.lr,
            total_steps=max(total, 8),  # warm-up and decay need at least two steps each
            pct_start=0.25,
            anneal_strategy="linear",
            div_factor=10,
            final_div_factor=100,
        )
    elif recipe.schedule == "step":
        ms = [m * steps_per_epoch for m in recipe.milestones]
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, ms, gamma=0.1)
    else:
        raise ValueError(f"unknown schedule {recipe.schedule!r}")
    return opt, sched


def train_step(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    x: torch.Tensor,
    y: torch.Tensor,
    idx: torch.Tensor,
    recipe: Recipe,
    aug_gen: torch.Generator,
    device: torch.device,
) -> torch.Tensor:
    """One step of the training loop: gather, augment, forward, backward, update. Returns
    the loss (detached, on the device: reading it would wait for the GPU)."""
    xb = augment(x[idx].float().div_(255), recipe.crop_pad, recipe.flip, aug_gen)
    with autocast(device):
        loss = F.cross_entropy(model(xb), y[idx], label_smoothing=recipe.label_smoothing)
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(opt)  # with fp16 (loss scaling) this checks for inf: a sync per step
    scaler.update()
    return loss.detach()


@dataclass
class TrainResult:
    model: nn.Module
    train_seconds: float
    images_per_second: float
    # each session's CPU seconds over its threads, summed: at least the wall time the
    # training would take with its cores to itself, which another process on the same
    # cores does not inflate (None: on a GPU, or resumed from a state that predates it)
    alone_seconds: float | None = None


def train_classifier(
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    recipe: Recipe,
    seed: int,
    device: torch.device,
    mean=None,
    std=None,
    desc: str = "train",
    resume_path: Path | None = None,
    resume_every_s: float = 120.0,
) -> TrainResult:
    """Train ``recipe.arch`` from scratch on uint8 images ``x`` with labels ``y``.

    With ``resume_path``, the whole training state (weights, optimiser, schedule, scaler,
    every generator, the device type) is written there atomically after an epoch when
    ``resume_every_s`` have passed since the last write, and a later call picks it up: a
    model that takes hours on a CPU survives the end of a session, and the resumed
    weights are those of an uninterrupted run. The file is removed once training
    finishes. A state saved on another device type (a cache shared by a CPU login node
    and GPU nodes: their generator states do not carry over) or one that does not fit
    this training is discarded with a warning, and training starts over."""
    if mean is None:
        mean, std = channel_stats(x)
    steps = -(-len(y) // recipe.batch_size)

    def fresh() -> tuple[nn.Module, dict[str, Any], torch.Generator, torch.Generator]:
        torch.manual_seed(seed)
        model = (
            create_model(recipe.arch, num_classes, x.shape[1], mean, std)
            .to(device)
            .to(memory_format=torch.channels_last)
        )
        opt, sched = build_optimizer(model, recipe, steps)
        parts = {"model": model, "opt": opt, "sched": sched, "scaler": make_scaler(device)}
        gen = torch.Generator().manual_seed(seed)
        return model, parts, gen, torch.Generator(device=device).manual_seed(seed + 1)

    model, parts, gen, aug_gen = fresh()
    first_epoch, seen, elapsed, alone = 0, 0, 0.0, 0.0
    state = load_training_state(resume_path, device) if resume_path is not None else None
    if state is not None:
        try:
            for name, part in parts.items():
                if state[name] or name != "scaler":  # a disabled scaler saves nothing
                    part.load_state_dict(state[name])
            gen.set_state(state["gen"])
            aug_gen.set_state(state["aug_gen"])
            torch.set_rng_state(state["torch_rng"])
            first_epoch, seen, elapsed = state["epoch"], state["seen"], state["elapsed"]
            alone = state.get("alone_elapsed")
        except Exception as e:  # noqa: BLE001 - a state of another training costs the restart
            warnings.warn(
                f"training state {resume_path} does not fit this training ({e}); starting over",
                stacklevel=2,
            )
            resume_path.unlink(missing_ok=True)
            model, parts, gen, aug_gen = fresh()
    opt, sched, scaler = parts["opt"], parts["sched"], parts["scaler"]
    x_dev, y_dev = x.to(device), y.to(device)
    model.train()
    start = last_save = time.perf_counter()
    cpu_start, threads = time.process_time(), torch.get_num_threads()
    log = EpochProgress(desc, first_epoch, recipe.epochs, elapsed)
    try:
        with cudnn_benchmark(device):
            for epoch in range(first_epoch, recipe.epochs):
                loss_sum, n_steps = torch.zeros((), device=device), 0
                for idx in batches(len(y), recipe.batch_size, gen, device=device):
                    loss = train_step(
                        model, opt, scaler, x_dev, y_dev, idx, recipe, aug_gen, device
                    )
                    sched.step()
                    seen += len(idx)
                    if log.wants_loss:  # summed on the device: one read per epoch
                        loss_sum += loss.float()
                        n_steps += 1
                if log.wants_loss:
                    log.epoch(epoch, loss_sum.item() / max(n_steps, 1))
                now = time.perf_counter()
                if (
                    resume_path is not None
                    and epoch + 1 < recipe.epochs
                    and now - last_save >= resume_every_s
                ):
                    session = now - start  # one reading for both times: alone <= elapsed
                    save_torch(resume_path, {
                        **{name: part.state_dict() for name, part in parts.items()},
                        "gen": gen.get_state(), "aug_gen": aug_gen.get_state().cpu(),
                        "torch_rng": torch.get_rng_state(), "epoch": epoch + 1, "seen": seen,
                        "elapsed": elapsed + session, "device_type": device.type,
                        "alone_elapsed": None if alone is None
                        else alone + time_alone(start, cpu_start, threads, now),
                    })  # fmt: skip
                    last_save = now
    finally:
        log.close()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    if alone is not None and device.type == "cpu":  # on a GPU, CPU time measures little
        alone += time_alone(start, cpu_start, threads)
    else:
        alone = None
    elapsed += time.perf_counter() - start
    if resume_path is not None:
        resume_path.unlink(missing_ok=True)
    model.eval()
    return TrainResult(model, elapsed, seen / max(elapsed, 1e-9), alone)


def state_device_type(state: dict) -> str:
    """The device type a training state was saved on; states written before it was
    recorded tell by their augmentation generator (a CPU generator's state is 5,056
    bytes, a CUDA one's 16)."""
    if "device_type" in state:
        return state["device_type"]
    cpu_size = torch.Generator().get_state().numel()
    return "cpu" if state["aug_gen"].numel() == cpu_size else "cuda"


def load_training_state(path: Path, device: torch.device | None = None) -> dict | None:
    """The state ``train_classifier`` left at ``path``, or None: missing, unreadable, or
    (with ``device``) saved on another device type; training then starts over, with a
    warning for the last two."""
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
        saved_on = state_device_type(state)
    except Exception as e:  # noqa: BLE001 - a torn or foreign file only costs the restart
        warnings.warn(f"training state {path} is unreadable ({e}); starting over", stacklevel=2)
        path.unlink(missing_ok=True)
        return None
    if device is not None and saved_on != device.type:
        warnings.warn(
            f"training state {path} was saved on {saved_on} and this training runs on "
            f"{device.type}: random-generator states do not carry over between them; "
            "starting over",
            stacklevel=2,
        )
        path.unlink(missing_ok=True)
        return None
    return state
