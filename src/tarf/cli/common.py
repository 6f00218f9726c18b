"""What every command needs: the user-error type, logging, the checks every command runs
before any work (:func:`preflight`), and the dataset, request, recipe and device from
the parsed options."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

import torch

from tarf.data import load_dataset
from tarf.data.core import ImageDataset
from tarf.domains import RANDOM
from tarf.hierarchy import LabelHierarchy
from tarf.io import unwritable
from tarf.methods import Method, get_method
from tarf.methods.base import parse_set, read_config_file
from tarf.recipes import Recipe, get_recipe, resolve_recipe
from tarf.request import UnlearningRequest
from tarf.training import pick_device


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


def log(msg: str) -> None:
    """Progress and notes go to stderr; stdout carries the results."""
    print(msg, file=sys.stderr, flush=True)


def preflight(
    args: argparse.Namespace,
    files: tuple[str, ...] = (),
    folders: tuple[str, ...] = (),
    cache: bool = True,
) -> None:
    """The checks of a command's inputs that need no data, before any work: the device
    (``--device``), the recipe (``--recipe``), the model cache (``TARF_CACHE``, with
    ``cache``) and that every output can be written, ``files`` and ``folders`` being the
    ``dest`` names of the options that hold them (a run never ends in a write that fails)."""
    if getattr(args, "device", None) is not None:
        device(args)
    if getattr(args, "recipe", None) is not None and getattr(args, "dataset", None):
        recipe(args)
    for dest in files:
        writable(args, dest)
    for dest in folders:
        writable(args, dest, folder=True)
    given = {}  # two outputs to one path: the second write would replace the first
    for dest in (*files, *folders):
        path = getattr(args, dest, None)
        if path:
            where = Path(path).resolve()
            if where in given:
                raise CLIError(
                    f"--{given[where].replace('_', '-')} and --{dest.replace('_', '-')} are "
                    f"both {path}: the second would overwrite the first; give two paths"
                )
            given[where] = dest
    if cache:
        from tarf.cache import cache_root

        cache_root()  # a CacheError (one line) when TARF_CACHE cannot be a folder


def writable(args: argparse.Namespace, dest: str, folder: bool = False) -> None:
    """The output option ``dest``, if given, names a file (a folder) that can be written."""
    path = getattr(args, dest, None)
    if path:
        option = "--" + dest.replace("_", "-")
        problem = unwritable(path, folder)
        if problem:
            raise CLIError(f"{option} {path}: {problem}; give another path")


def load_data(args: argparse.Namespace) -> ImageDataset:
    """``--dataset`` from ``--data-root`` (``--download``), with ``--hierarchy`` if given."""
    ds = load_dataset(args.dataset, args.data_root, download=args.download)
    if args.hierarchy:
        user = LabelHierarchy.from_file(args.hierarchy, class_order=ds.hierarchy.class_names)
        ds = dataclasses.replace(ds, hierarchy=user)
    return ds


def nonempty(text: str | None, option: str, what: str = "class or superclass names") -> None:
    """A names option that was given holds at least one name."""
    if text is not None and not names(text):
        raise CLIError(
            f"{option} {text!r} names nothing: give comma-separated {what} "
            "(`tarf classes --dataset NAME` lists them)"
        )


def required_request_options(args: argparse.Namespace) -> None:
    """--model-labels and --forget, which every request but random forgetting needs
    (``options.request_options``); before any data is read."""
    if getattr(args, "task", None) == RANDOM:
        return
    missing = [
        f"--{d.replace('_', '-')}" for d in ("model_labels", "forget") if getattr(args, d) is None
    ]
    if missing:
        raise CLIError(
            f"the following arguments are required: {', '.join(missing)} (only --task "
            f"{RANDOM}, random forgetting, needs neither)"
        )


def make_request(args: argparse.Namespace, ds: ImageDataset) -> UnlearningRequest:
    """The request of the ``request`` options on the dataset's hierarchy; random
    forgetting (``--task random``) refuses the options that contradict it."""
    required_request_options(args)
    nonempty(args.forget, "--forget")
    nonempty(args.target, "--target")
    random = getattr(args, "task", None) == RANDOM
    return UnlearningRequest.from_names(
        ds.hierarchy, args.forget, args.model_labels or "class", args.target, args.prior,
        getattr(args, "forget_fraction", None), getattr(args, "forget_seed", None) or 0,
        random,
    )  # fmt: skip


def make_method(args: argparse.Namespace) -> Method:
    """``--method`` with its hyperparameters: ``--config``, then ``--set`` (which wins);
    every value checked (type and range) here, before any work."""
    return get_method(args.method, args.config, parse_set(args.set))


def hyperparameters(args: argparse.Namespace) -> dict[str, Any]:
    """``--config`` then ``--set`` (which wins) as one mapping, names (or METHOD.NAME) to
    values, for a grid's methods to split between them."""
    values = read_config_file(args.config) if args.config else {}
    values.update(parse_set(args.set))
    return values


def parallel_jobs(args: argparse.Namespace) -> int:
    """``--jobs``, left out: the local backend's default (min(2, cores)); below 1 refused."""
    from tarf.bench import default_jobs

    n = args.jobs if args.jobs is not None else default_jobs()
    if n < 1:
        raise CLIError("--jobs must be >= 1")
    return n


def device(args: argparse.Namespace) -> torch.device:
    """``--device``; a name torch does not know, or a GPU this machine lacks, is a
    one-line error."""
    try:
        return pick_device(args.device)
    except (ValueError, RuntimeError) as e:
        msg = str(e).splitlines()[0]
        if "--device" not in msg:
            msg = f"--device {args.device}: {msg}; use auto, cpu or cuda[:N]"
        raise CLIError(msg) from None


def recipe_name(args: argparse.Namespace) -> str:
    """``--recipe``, ``auto`` resolved for ``--dataset`` and ``--device``
    (:func:`tarf.recipes.default_recipe`)."""
    return resolve_recipe(args.recipe, args.dataset, getattr(args, "device", "auto"))


def recipe(args: argparse.Namespace) -> Recipe:
    """``--recipe`` for ``--dataset`` (``auto``: the default for the dataset and device):
    an unknown name fails here, before any work."""
    return get_recipe(recipe_name(args), args.dataset)


def names(text: str) -> tuple[str, ...]:
    """A comma list as names, blanks dropped."""
    return tuple(t.strip() for t in text.split(",") if t.strip())
