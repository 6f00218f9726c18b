"""A user's own saved model and data (``tarf.api``): unlearn-model, eval-model. Nothing
is trained or cached."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from typing import Any

import numpy as np
import torch

from tarf.api import TarfWarning, evaluate, infer_model_labels, make_request, summary, unlearn
from tarf.cli import options as opt
from tarf.cli.common import CLIError, device, log, make_method, nonempty, preflight
from tarf.hierarchy import LabelHierarchy
from tarf.io import write_json
from tarf.userdata import import_arch_module, load_model_file, read_data, save_model_file

COMMANDS = {
    "unlearn-model": "unlearn a request from your own saved model (TorchScript, or state dict "
    "+ --arch) on your own data (.npz or image folders) and hierarchy file",
    "eval-model": "the paper's metrics of your own saved model on a request (Gap with --reference)",
}


def add_parsers(sub: Any) -> None:
    for name, help_text in COMMANDS.items():
        p = opt.add_command(sub, name, help_text)
        g = p.add_argument_group("model and data")
        g.add_argument("--model", required=True,
                       help="TorchScript file, tarf checkpoint, or state dict (then --arch)")  # fmt: skip
        g.add_argument("--arch",
                       help="architecture of a state dict, registered in tarf.models (e.g. cpunet)")  # fmt: skip
        g.add_argument("--arch-module",
                       help="a .py file or module to import first; its "
                       "@tarf.models.register(NAME) adds --arch NAME")  # fmt: skip
        g.add_argument("--data", required=True,
                       help="training data: .npz (x, y[, x_test, y_test]) or an ImageFolder "
                       "directory (DIR/<class>/<image>, or DIR/train/... and DIR/test/...)")  # fmt: skip
        g.add_argument("--test", help="held-out data in the same format (for TA and MIA)")
        opt.hierarchy(g, required=True)
        g.add_argument("--reference",
                       help="a model retrained without the concept, same formats as --model")  # fmt: skip
        opt.request_options(p, labels_left_out="read off the model's output size", subset=False)
        g = p.add_argument_group("run")
        opt.seed(g)
        opt.device(g)
        opt.out(g, "write the report (JSON) here")
        if name == "unlearn-model":
            opt.method_options(p)
            g = p.add_argument_group("unlearning")
            g.add_argument("--train-epochs", type=int, default=10,
                           help="epochs the original was trained for: the budget rule gives "
                           "each of the 10 unlearning epochs 1%% of that work")  # fmt: skip
            g.add_argument("--batch-size", type=int, default=128,
                           help="retained-data batch size")  # fmt: skip
            g.add_argument("--augment", action="store_true",
                           help="crop + flip images while unlearning")  # fmt: skip
            g.add_argument("--save-model",
                           help="write the unlearned model here, in the input's format")  # fmt: skip
        p.set_defaults(func=cmd_unlearn_model if name == "unlearn-model" else cmd_eval_model)


def _user_inputs(args: argparse.Namespace):
    """The model (and reference), the data, the held-out data and the request."""
    preflight(args, files=("out", "save_model"), cache=False)
    nonempty(args.forget, "--forget")
    nonempty(args.target, "--target")
    for option in ("train_epochs", "batch_size"):
        value = getattr(args, option, None)
        if value is not None and value < 1:
            raise CLIError(f"--{option.replace('_', '-')} {value}: give a number >= 1")
    if args.arch_module:
        import_arch_module(args.arch_module)
    h = LabelHierarchy.from_file(args.hierarchy)
    data = read_data(args.data, h)
    test = read_data(args.test, h) if args.test else None
    test_pair = (test.x, test.y) if test is not None else data.test
    channels = data.x.shape[1] if data.x.ndim == 4 else 1
    channels_last = CLIError(
        f"--data {args.data}: images of shape {tuple(data.x.shape[1:])} look channels-last "
        "(H, W, C), but --arch builds a network that takes (C, H, W); save "
        "x.transpose(0, 3, 1, 2)"
    )
    looks_nhwc = data.x.ndim == 4 and channels not in (1, 3, 4) and data.x.shape[3] in (1, 3, 4)
    try:
        loaded = load_model_file(args.model, args.arch, channels)
    except ValueError:
        if args.arch and looks_nhwc:  # the weights do not fit: the channels are why
            raise channels_last from None
        raise
    if looks_nhwc and loaded.kind != "torchscript":
        raise channels_last
    if args.arch and loaded.kind != "state_dict":
        log(f"--arch {args.arch} not used: {args.model} is a {loaded.kind.replace('-', ' ')}, "
            "which carries its architecture")  # fmt: skip
    reference = (
        load_model_file(args.reference, args.arch, channels).model if args.reference else None
    )
    labels = args.model_labels or infer_model_labels(loaded.model, h, data.x[:2])
    req = make_request(h, args.forget, args.target, model_labels=labels, prior=args.prior)
    log(req.describe())
    data_pair = (data.x, data.y)
    if not h.ordered:  # the files named their classes (ids would have failed to read)
        data_pair = (data.x, _names(data.y, h))
        if test_pair is not None:
            test_pair = (test_pair[0], _names(test_pair[1], h))
    return loaded, reference, data_pair, test_pair, req


def _names(y: torch.Tensor, h: LabelHierarchy) -> np.ndarray:
    """Class ids read from class names, as those names again: a hierarchy without a
    class order takes labels as names only."""
    return np.asarray(h.class_names, dtype=object)[y.numpy()]


def cmd_unlearn_model(args: argparse.Namespace) -> int:
    loaded, reference, data, test, req = _user_inputs(args)
    method = make_method(args)
    with warnings.catch_warnings():  # the summary prints them, once
        warnings.simplefilter("ignore", TarfWarning)
        model, report = unlearn(
            loaded.model, data, req, method, test=test, reference=reference,
            device=device(args), seed=args.seed, train_epochs=args.train_epochs,
            batch_size=args.batch_size, augment=args.augment,
        )  # fmt: skip
    report["model_file"] = {"path": str(args.model), "format": loaded.kind, "arch": loaded.arch}
    print(summary(report))
    if args.save_model:
        save_model_file(args.save_model, model.cpu(), loaded.kind)
        log(f"unlearned model written to {args.save_model} ({loaded.kind})")
    if args.out:
        write_json(args.out, report)
        log(f"report written to {args.out}")
    return 0


def cmd_eval_model(args: argparse.Namespace) -> int:
    loaded, reference, data, test, req = _user_inputs(args)
    with warnings.catch_warnings():  # said below as plain lines, beside the JSON
        warnings.simplefilter("ignore", TarfWarning)
        out = evaluate(
            loaded.model, data, req, test=test, reference=reference, device=device(args),
            seed=args.seed,
        )  # fmt: skip
    print(json.dumps(out, indent=2))
    for line in out["warnings"]:
        print(f"warning: {line}", file=sys.stderr)
    if args.out:
        write_json(args.out, out)
    return 0
