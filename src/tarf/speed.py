"""How close the training loop runs to the bare model: images/s of each, on the same work."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from tarf.hierarchy import builtin_hierarchy
from tarf.models import create_model
from tarf.recipes import get_recipe
from tarf.training import (
    amp_dtype,
    augment,
    autocast,
    batches,
    build_optimizer,
    cudnn_benchmark,
    make_scaler,
    prepare_images,
    train_step,
)

IMAGE_SHAPES = {
    "cifar100": (3, 32, 32),
    "cifar10": (3, 32, 32),
    "fashion-mnist": (1, 28, 28),
    "digits": (1, 8, 8),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _fastest(run: Callable[[], int], device: torch.device) -> float:
    """Seconds per image of one call of ``run`` (which returns its image count)."""
    _sync(device)
    t0 = time.perf_counter()
    images = run()
    _sync(device)
    return (time.perf_counter() - t0) / max(images, 1)


def measure_throughput(
    dataset: str,
    recipe_name: str,
    device: torch.device,
    steps: int = 20,
    warmup: int = 3,
    rounds: int = 3,
) -> dict:
    """Images/s of the bare model and of the training loop, on the same work.

    Both start from the same weights and take the same batches of the same random uint8
    images, with the same loss (the recipe's label smoothing) and the same precision
    (:func:`tarf.training.autocast`), cuDNN autotuning on for both. Bare: forward and
    backward of each batch, already gathered, augmented and resident on the device. Loop:
    the training loop's step (gather, augment, forward, backward, optimizer and schedule
    step). After ``warmup`` steps of each, the ``steps`` timed steps of each are split
    into ``rounds`` rounds that alternate between the two, and the fastest round of each
    counts: the first passes of a process (allocator, kernel selection) and the noise of
    a busy machine would otherwise favour whichever ran last.
    """
    recipe = get_recipe(recipe_name, dataset)
    num_classes = builtin_hierarchy(dataset).num_classes
    c, h, w = IMAGE_SHAPES[dataset]
    bs = recipe.batch_size
    g = torch.Generator().manual_seed(0)
    per_round = -(-max(steps, 1) // rounds)
    n = bs * per_round
    x = prepare_images(
        torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8, generator=g), recipe.downsample
    )
    y = torch.randint(0, num_classes, (n,), generator=g)
    x_dev, y_dev = x.to(device), y.to(device)
    smoothing = recipe.label_smoothing

    torch.manual_seed(0)
    first = create_model(recipe.arch, num_classes, c).to(device)
    first = first.to(memory_format=torch.channels_last).train()
    bare_model, loop_model = first, copy.deepcopy(first)

    # the loop's batches, gathered and augmented once, for the bare model
    aug = torch.Generator(device=device).manual_seed(1)
    order = list(batches(n, bs, torch.Generator().manual_seed(0), device=device))
    resident = [
        (augment(x_dev[i].float().div_(255), recipe.crop_pad, recipe.flip, aug), y_dev[i])
        for i in order
    ]

    def bare(limit: int | None = None) -> int:
        done = 0
        for xb, yb in resident[:limit]:
            bare_model.zero_grad(set_to_none=True)
            with autocast(device):
                loss = F.cross_entropy(bare_model(xb), yb, label_smoothing=smoothing)
            loss.backward()
            done += len(yb)
        return done

    opt, sched = build_optimizer(loop_model, recipe, warmup + rounds * per_round)
    scaler, aug_gen = make_scaler(device), torch.Generator(device=device).manual_seed(1)
    order_gen = torch.Generator().manual_seed(0)

    def loop(limit: int | None = None) -> int:
        done = 0
        for i, idx in enumerate(batches(n, bs, order_gen, device=device)):
            if limit is not None and i >= limit:
                break
            train_step(loop_model, opt, scaler, x_dev, y_dev, idx, recipe, aug_gen, device)
            sched.step()
            done += len(idx)
        return done

    with cudnn_benchmark(device):
        _fastest(lambda: bare(warmup), device)
        _fastest(lambda: loop(warmup), device)
        bare_s, loop_s = [], []
        for _ in range(rounds):
            bare_s.append(_fastest(bare, device))
            loop_s.append(_fastest(loop, device))
    bare_ips, loop_ips = 1 / min(bare_s), 1 / min(loop_s)
    dtype = amp_dtype(device)
    return {
        "dataset": dataset, "recipe": recipe.name, "arch": recipe.arch, "batch_size": bs,
        "image_shape": list(x.shape[1:]), "device": str(device), "threads": torch.get_num_threads(),
        "precision": str(dtype).removeprefix("torch.") if dtype else "float32",
        "steps": rounds * per_round, "rounds": rounds,
        "bare_images_per_s": round(bare_ips, 1), "loop_images_per_s": round(loop_ips, 1),
        "ratio": loop_ips / bare_ips,
    }  # fmt: skip
