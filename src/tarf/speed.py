"""How close the training loop runs to the bare model: images/s of each, same model and batch."""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from tarf.hierarchy import builtin_hierarchy
from tarf.models import create_model
from tarf.recipes import get_recipe
from tarf.training import batches, build_optimizer, make_scaler, prepare_images, train_step

IMAGE_SHAPES = {
    "cifar100": (3, 32, 32),
    "cifar10": (3, 32, 32),
    "fashion-mnist": (1, 28, 28),
    "digits": (1, 8, 8),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure_throughput(
    dataset: str, recipe_name: str, device: torch.device, steps: int = 20, warmup: int = 3
) -> dict:
    """Bare forward+backward on one resident batch vs the real loop (gather, augment,
    forward, backward, optimizer and schedule step) over random uint8 data."""
    recipe = get_recipe(recipe_name, dataset)
    num_classes = builtin_hierarchy(dataset).num_classes
    c, h, w = IMAGE_SHAPES[dataset]
    g = torch.Generator().manual_seed(0)
    n = recipe.batch_size * (steps + warmup)
    x = prepare_images(
        torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8, generator=g), recipe.downsample
    )
    y = torch.randint(0, num_classes, (n,), generator=g)
    bs = recipe.batch_size

    model = (
        create_model(recipe.arch, num_classes, c)
        .to(device)
        .to(memory_format=torch.channels_last)
        .train()
    )
    xb = x[:bs].to(device).float().div(255).contiguous(memory_format=torch.channels_last)
    yb = y[:bs].to(device)
    for i in range(warmup + steps):
        if i == warmup:
            _sync(device)
            t0 = time.perf_counter()
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(xb), yb).backward()
    _sync(device)
    bare = steps * bs / (time.perf_counter() - t0)

    torch.manual_seed(0)
    model = (
        create_model(recipe.arch, num_classes, c)
        .to(device)
        .to(memory_format=torch.channels_last)
        .train()
    )
    opt, sched = build_optimizer(model, recipe, steps + warmup)
    scaler, aug_gen = make_scaler(device), torch.Generator(device=device).manual_seed(1)
    x_dev, y_dev = x.to(device), y.to(device)
    for i, idx in enumerate(batches(n, bs, torch.Generator().manual_seed(0))):
        if i == warmup:
            _sync(device)
            t0 = time.perf_counter()
        train_step(model, opt, scaler, x_dev, y_dev, idx.to(device), recipe, aug_gen, device)
        sched.step()
    _sync(device)
    loop = steps * bs / (time.perf_counter() - t0)
    return {
        "dataset": dataset, "recipe": recipe.name, "arch": recipe.arch, "batch_size": bs,
        "image_shape": list(x.shape[1:]), "device": str(device), "threads": torch.get_num_threads(),
        "bare_images_per_s": round(bare, 1), "loop_images_per_s": round(loop, 1), "ratio": loop / bare,
    }  # fmt: skip
