"""Commands that run models on a tarf dataset: demo, unlearn, train, eval, speed."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import torch

from tarf.cache import prepare_dataset, trained_model
from tarf.checkpoint import checkpoint_meta, load_checkpoint, read_checkpoint, save_checkpoint
from tarf.cli import options as opt
from tarf.cli.common import (
    CLIError,
    device,
    load_data,
    log,
    make_method,
    make_request,
    nonempty,
    preflight,
    recipe,
    recipe_name,
    required_request_options,
)
from tarf.data import load_dataset
from tarf.domains import MAIN_TASKS, RANDOM
from tarf.io import write_json
from tarf.methods import get_method
from tarf.metrics import evaluate, gap
from tarf.recipes import AUTO, get_recipe
from tarf.report import runs_summary, throughput_verdict
from tarf.request import UnlearningRequest, training_split
from tarf.run import run_request
from tarf.speed import measure_throughput
from tarf.training import pick_device

# The demo's requests on digits: forget "1" with each model level, target "1" or "straight".
DEMO_REQUESTS = (("class", "1"), ("class", "straight"), ("superclass", "1"),
                 ("superclass", "straight"))  # fmt: skip
# What `tarf train` prints of a trained model's metadata.
TRAIN_SUMMARY = ("role", "arch", "label_level", "num_classes", "train_size", "test_acc",
                 "train_s", "images_per_s", "cached", "key")  # fmt: skip


def add_parsers(sub: Any) -> None:
    p = opt.add_command(
        sub, "demo", "all four tasks with TARF on the embedded digits dataset (about two minutes)"
    )
    opt.seed(p)
    p.add_argument("--out", help="also write the four reports to this JSON file")
    p.set_defaults(func=cmd_demo)

    p = opt.add_command(
        sub, "unlearn",
        "run an unlearning method on a request and measure it against the retrained reference",
    )  # fmt: skip
    opt.data_options(p)
    opt.request_options(p)
    opt.method_options(p)
    g = opt.run_options(p, "write the report to this JSON file")
    g.add_argument("--save-model", help="save the unlearned model as a tarf checkpoint")
    p.set_defaults(func=cmd_unlearn)

    p = opt.add_command(
        sub, "train", "train (or fetch from the cache) the original model or a retrained reference"
    )
    opt.data_options(p)
    g = p.add_argument_group("model")
    opt.model_labels(g)
    g.add_argument("--exclude",
                   help="comma-separated class/superclass names left out of training (the "
                   "reference's D_t); left out: the original, trained on everything")  # fmt: skip
    opt.run_options(p, "also write the model as a tarf checkpoint")
    p.set_defaults(func=cmd_train)

    p = opt.add_command(
        sub,
        "eval",
        "evaluate a saved checkpoint on a request (UA, RA, TA, MIA; the Gap against "
        "--reference, else against the recipe's retrained reference, trained once and cached)",
    )
    opt.data_options(p)
    opt.request_options(p)
    g = p.add_argument_group("models")
    g.add_argument("--checkpoint", required=True,
                   help="a tarf checkpoint (from unlearn --save-model or train --out)")  # fmt: skip
    g.add_argument("--reference",
                   help="checkpoint of the retrained reference; left out: train/fetch it")  # fmt: skip
    opt.run_options(p, "write the metrics to this JSON file", left_out="the checkpoint's")
    p.set_defaults(func=cmd_eval)

    p = opt.add_command(
        sub, "speed", "training loop images/s next to the bare forward+backward throughput"
    )
    p.add_argument("--dataset", default="cifar100",
                   help="dataset whose image shape and class count to use (no data is read)")  # fmt: skip
    opt.recipe(p)
    p.add_argument("--steps", type=int, default=20, help="timed steps per measurement")
    opt.device(p)
    p.set_defaults(func=cmd_speed)


def cmd_demo(args: argparse.Namespace) -> int:
    """Digits ships inside scikit-learn: all four tasks, forget "1", concept "straight"."""
    # 8×8 images: one thread is as fast, and stays fast when the cores are busy (two
    # threads next to a running bench made each 2-second run take 170 s: spin-waiting).
    torch.set_num_threads(1)
    preflight(args, files=("out",))
    ds = load_dataset("digits")
    tiny, dev = get_recipe("tiny", "digits"), pick_device("auto")
    start = time.perf_counter()
    reports = []
    for labels, target in DEMO_REQUESTS:
        req = UnlearningRequest.from_names(ds.hierarchy, "1", labels, target)
        log(req.describe())
        method = get_method("tarf")  # TARF's defaults, as a user's own run gets them
        reports.append(run_request(ds, req, method, tiny, args.seed, dev, log=log))
    print()
    print(runs_summary(reports))
    print(f"\ndigits (sklearn), recipe 'tiny', TARF's defaults, seed {args.seed}, {dev}; "
          f"total {time.perf_counter() - start:.0f}s. "
          "Gap = mean |metric - retrained| over UA, RA, TA, MIA (lower is better).")  # fmt: skip
    if args.out:
        write_json(args.out, reports)
    return 0


def cmd_unlearn(args: argparse.Namespace) -> int:
    preflight(args, files=("out", "save_model"))
    required_request_options(args)
    ds = load_data(args)
    req = make_request(args, ds)
    method = make_method(args)
    rec, dev = recipe(args), device(args)
    log(req.describe())
    if req.task.name not in (*MAIN_TASKS, RANDOM):
        log(f"note: {req.task.comment} — reported under the name {req.task.name!r}")
    if args.prior is not None and not method.uses_prior:
        log(f"note: --prior is read by TARF only; {method.name} does not use it")
    report = run_request(ds, req, method, rec, args.seed, dev, log=log, save_model=args.save_model)
    print(runs_summary([report]))
    if args.out:
        write_json(args.out, report)
        log(f"report written to {args.out}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    preflight(args, files=("out",))
    nonempty(args.exclude, "--exclude")
    ds = load_data(args)
    rec, dev = recipe(args), device(args)
    ds = prepare_dataset(ds, rec)
    req, idx = training_split(ds.hierarchy, args.model_labels, ds.y_train, args.exclude)
    role = "retrained" if args.exclude else "original"
    m = trained_model(ds, req, idx, rec, args.seed, dev, role)
    print(json.dumps({k: m.meta[k] for k in TRAIN_SUMMARY}, indent=2))
    if args.out:
        save_checkpoint(args.out, m.model, checkpoint_meta(m.meta, req, ds.name))
        log(f"checkpoint written to {args.out}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    ck = read_checkpoint(args.checkpoint)
    # left out (None): the checkpoint's, so the reference is its own
    args.recipe = args.recipe if args.recipe is not None else ck.get("recipe", AUTO)
    args.seed = args.seed if args.seed is not None else ck.get("seed", 0)
    preflight(args, files=("out",))
    required_request_options(args)
    ds = load_data(args)
    req = make_request(args, ds)
    rec, dev = recipe(args), device(args)
    ds = prepare_dataset(ds, rec)
    model = load_checkpoint(args.checkpoint, req, dev, ds.name, contents=ck)
    if not args.reference and req.has_reference:
        # a reference of another recipe or seed is another bar: say so, the Gap is then
        # partly the models' difference in training, not the unlearning
        mine = {"recipe": rec.name, "seed": args.seed}
        other = [f"--{k} {ck[k]}" for k in mine if ck.get(k) is not None and ck[k] != mine[k]]
        if other:
            log(f"note: the checkpoint was trained with {', '.join(other)}; the reference is "
                f"trained with --recipe {rec.name} --seed {args.seed}; pass "
                f"{' '.join(other)} (or leave them out) to measure against its own reference")  # fmt: skip
    ref = load_checkpoint(args.reference, req, dev, ds.name) if args.reference else None
    parts = req.partitions(ds.y_train, ds.y_test)
    ev = (ds.x_train, req.model_labels(ds.y_train), ds.x_test, req.model_labels(ds.y_test),
          parts, dev, args.seed, req.task.ua_split)  # fmt: skip
    out: dict[str, Any] = {"task": req.task.name, "metrics": evaluate(model, *ev)}
    if req.has_reference:
        if ref is None:
            ref = trained_model(ds, req, parts.remaining, rec, args.seed, dev, "retrained").model
        out["reference"] = evaluate(ref, *ev)
        out["metrics"]["Gap"] = gap(out["metrics"], out["reference"])
    print(json.dumps(out, indent=2))
    if args.out:
        write_json(args.out, out)
    return 0


def cmd_speed(args: argparse.Namespace) -> int:
    preflight(args, cache=False)
    if args.steps < 1:
        raise CLIError(f"--steps {args.steps}: give at least 1 timed step")
    res = measure_throughput(args.dataset, recipe_name(args), device(args), args.steps)
    ok, verdict = throughput_verdict(res)
    print(json.dumps(res, indent=2))
    print(verdict)
    return 0 if ok else 1
