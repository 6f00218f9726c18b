"""TARF epoch by epoch: accuracy on the forget data (UA) and on a tenth of the retained
data (RA) after each epoch, as the model stands then (eval mode, its running batch-norm
statistics as the steps left them), and of the model the run returns (after
``batchnorm_stats``); then the run's final metrics. Markdown tables (docs/methods.md,
"Phase III's length in model mismatch").

    python scripts/tarf_epoch_trace.py --dataset cifar100 --forget boy,girl \
        --model-labels superclass --seed 0 [--set t0=3]    # one run, about 6 minutes

The original model and the reference come from the cache (trained if missing). The trace
costs one forward pass over D_f and a tenth of D_un per epoch; the run itself is the
bench's (same seed, same result).
"""

from __future__ import annotations

import argparse

import torch

from tarf.cli.common import parse_set
from tarf.data import load_dataset
from tarf.methods import get_method
from tarf.methods import loop as loop_module
from tarf.recipes import get_recipe
from tarf.request import UnlearningRequest
from tarf.run import run_request
from tarf.training import accuracy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="cifar100")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--forget", required=True)
    ap.add_argument("--target", default=None, help="left out: the forget classes")
    ap.add_argument("--model-labels", default="class")
    ap.add_argument("--recipe", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    args = ap.parse_args()

    ds = load_dataset(args.dataset, args.data_root)
    request = UnlearningRequest.from_names(
        ds.hierarchy, args.forget, args.model_labels, args.target or args.forget
    )
    method = get_method("tarf", overrides=parse_set(args.set))
    rows: list[tuple[int, float, float]] = []
    seen: dict[str, object] = {}
    plain_iter = loop_module.Loop.__iter__

    def traced(loop: loop_module.Loop):
        data = seen["data"]
        for epoch in plain_iter(loop):
            yield epoch
            dev = loop.ctx.device
            ua = accuracy(loop.model, data.x_forget, data.y_forget, dev)
            ra = accuracy(loop.model, data.x_remain[::10], data.y_remain[::10], dev)
            rows.append((epoch.t, ua, ra))

    plain_run = type(method).run

    def run(self, model, data, ctx):
        seen["data"] = data
        result = plain_run(self, model, data, ctx)
        # the returned model: batch norm's statistics as the run left them at the end
        ua = accuracy(result.model, data.x_forget, data.y_forget, ctx.device)
        ra = accuracy(result.model, data.x_remain[::10], data.y_remain[::10], ctx.device)
        rows.append((-1, ua, ra))
        return result

    loop_module.Loop.__iter__ = traced  # type: ignore[method-assign]
    type(method).run = run  # type: ignore[method-assign]
    report = run_request(
        ds, request, method, get_recipe(args.recipe, args.dataset), args.seed,
        torch.device("cpu"), log=lambda *a: None,
    )  # fmt: skip
    phases = report["record"]["phases"]
    print(f"{request.describe()}, seed {args.seed}, settings {parse_set(args.set) or 'defaults'}")
    print("\n| epoch | phase | UA (D_f) | RA (a tenth of D_un) |\n|---|---|---|---|")
    for t, ua, ra in rows:
        where = (t, phases[t]) if t >= 0 else ("end", "returned")
        print(f"| {where[0]} | {where[1]} | {ua:.1f} | {ra:.1f} |")
    m, r, o = report["metrics"], report["reference"], report["original"]
    print("\n| model | UA | RA | TA | MIA | Gap |\n|---|---|---|---|---|---|")
    for name, x in (("unlearned", m), ("reference", r), ("original", o)):
        if x is not None:
            gap = f"{x['Gap']:.2f}" if "Gap" in x else "—"
            cells = " | ".join(f"{x[k]:.1f}" for k in ("UA", "RA", "TA", "MIA"))
            print(f"| {name} | {cells} | {gap} |")


if __name__ == "__main__":
    main()
