"""What every command needs: the user-error type, logging, and the dataset, request,
recipe and device from the parsed options."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

import torch

from tarf.data import load_dataset
from tarf.data.core import ImageDataset
from tarf.hierarchy import LabelHierarchy
from tarf.methods import Method, get_method
from tarf.methods.base import parse_set, read_config_file
from tarf.recipes import Recipe, get_recipe
from tarf.request import UnlearningRequest
from tarf.training import pick_device


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


def log(msg: str) -> None:
    """Progress and notes go to stderr; stdout carries the results."""
    print(msg, file=sys.stderr, flush=True)


def load_data(args: argparse.Namespace) -> ImageDataset:
    """``--dataset`` from ``--data-root`` (``--download``), with ``--hierarchy`` if given."""
    ds = load_dataset(args.dataset, args.data_root, download=args.download)
    if args.hierarchy:
        user = LabelHierarchy.from_file(args.hierarchy, class_order=ds.hierarchy.class_names)
        ds = dataclasses.replace(ds, hierarchy=user)
    return ds


def make_request(args: argparse.Namespace, ds: ImageDataset) -> UnlearningRequest:
    """The request of the ``request`` options on the dataset's hierarchy."""
    return UnlearningRequest.from_names(
        ds.hierarchy, args.forget, args.model_labels, args.target, args.prior,
        getattr(args, "forget_fraction", None),
    )  # fmt: skip


def make_method(args: argparse.Namespace) -> Method:
    """``--method`` with its hyperparameters: ``--config``, then ``--set`` (which wins)."""
    return get_method(args.method, args.config, parse_set(args.set))


def hyperparameters(args: argparse.Namespace) -> dict[str, Any]:
    """``--config`` then ``--set`` (which wins) as one mapping, names (or METHOD.NAME) to
    values, for a grid's methods to split between them."""
    values = read_config_file(args.config) if args.config else {}
    values.update(parse_set(args.set))
    return values


def device(args: argparse.Namespace) -> torch.device:
    return pick_device(args.device)


def recipe(args: argparse.Namespace) -> Recipe:
    """``--recipe`` for ``--dataset``: an unknown name fails here, before any work."""
    return get_recipe(args.recipe, args.dataset)


def names(text: str) -> tuple[str, ...]:
    """A comma list as names, blanks dropped."""
    return tuple(t.strip() for t in text.split(",") if t.strip())
