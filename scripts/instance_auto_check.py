"""How well TARF-I's ``--prior auto`` picks the hidden concept samples, rule by rule.

For each concept (two given classes, the others hidden in D_un) and model (class: target
mismatch; superclass: data mismatch), run TARF-I's Phase I once (seed 0, `cpu` recipe)
and score the samples each instance-level rule sets aside against the truth: the
default (β = the 5 % quantile of D_f's own I_con), the largest-gap rule, and the known
fraction. Only D_f, D_un and the original model are used (no reference is trained).
The table "Which samples each rule sets aside" in docs/identification.md; not a `tarf`
command because it scores TARF-I's internal I_con against the hidden classes.

    python scripts/instance_auto_check.py [--data-root DIR] [--seed 0] \
        [--out docs/results/cifar100/tarf-instance]   # writes instance_auto_check.md/.json
"""

import argparse
from pathlib import Path

import torch

import tarf.identify as identify
from tarf.bench import load_dataset_once
from tarf.cache import prepare_dataset
from tarf.identify import forget_calibrated_cut, largest_gap, log_icon
from tarf.io import write_json, write_text
from tarf.methods import get_method
from tarf.recipes import get_recipe
from tarf.report import markdown_table
from tarf.request import UnlearningRequest
from tarf.run import run_request

# Concept -> its two given classes: people and the three held-out concepts of
# docs/identification.md (the classes `tarf analyze identify` chose for seed 0), as in
# experiments/auto-vs-prior.yaml.
CONCEPTS = {
    "people": "boy,girl",
    "trees": "maple_tree,oak_tree",
    "fruit_and_vegetables": "pear,sweet_pepper",
    "vehicles_1": "bus,motorcycle",
}


def _rule_holders() -> list:
    """``tarf.identify`` and the modules that import ``forget_calibrated_cut`` from it."""
    import importlib

    mods = [identify]
    for name in ("tarf.methods.tarf_identify", "tarf.methods.tarf"):
        try:
            mods.append(importlib.import_module(name))
        except ImportError:
            pass
    return mods


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--out", default="docs/results/cifar100/tarf-instance")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    ds = load_dataset_once("cifar100", args.data_root)
    recipe = get_recipe("cpu", "cifar100")
    pds = prepare_dataset(ds, recipe)
    out = Path(args.out)
    rows, results = [], []
    for concept, given in CONCEPTS.items():
        for labels, task in (("class", "target-mismatch"), ("superclass", "data-mismatch")):
            seen: dict = {}
            real = identify.forget_calibrated_cut

            def spy(icon, icon_forget, quantile=0.05, seen=seen, real=real):
                seen.update(icon=icon.clone(), icon_forget=icon_forget.clone())
                return real(icon, icon_forget, quantile)

            # every module that holds the rule by name (TARF calls it from one of them)
            holders = [m for m in _rule_holders() if hasattr(m, "forget_calibrated_cut")]
            for m in holders:
                m.forget_calibrated_cut = spy
            try:  # an unnamed concept: no reference to train, TARF sees only D_f and D_un
                req = UnlearningRequest.from_names(ds.hierarchy, given, labels, None, "auto")
                method = get_method(
                    "tarf", identification="instance", stop_after_identification=True
                )
                run_request(
                    ds, req, method, recipe, args.seed, torch.device("cpu"), log=lambda m: None
                )
            finally:
                for m in holders:
                    m.forget_calibrated_cut = real
            named = UnlearningRequest.from_names(ds.hierarchy, given, labels, concept)
            parts = named.partitions(pds.y_train, pds.y_test)
            gen = torch.Generator().manual_seed(args.seed)
            probe = torch.randperm(len(parts.unlearn), generator=gen)[:10000].sort().values
            truth = torch.isin(parts.unlearn[probe], parts.pseudo_remaining)
            icon = seen["icon"]
            known = int(round(len(parts.pseudo_remaining) / len(parts.unlearn) * len(icon)))
            choices = {
                "auto (D_f quantile)": forget_calibrated_cut(icon, seen["icon_forget"])["n"],
                "auto (largest gap)": largest_gap(log_icon(icon)).n,
                "known fraction": known,
            }
            for rule, n in choices.items():
                chosen = torch.zeros(len(icon), dtype=torch.bool)
                chosen[icon.topk(n).indices] = True
                hit = int((chosen & truth).sum())
                res = {
                    "concept": concept, "given": given, "task": task, "rule": rule,
                    "set_aside": n, "hidden": int(truth.sum()),
                    "precision": round(hit / n, 3) if n else None,
                    "recall": round(hit / max(int(truth.sum()), 1), 3),
                }  # fmt: skip
                results.append(res)
                rows.append(
                    [concept, task, rule, n, res["hidden"], res["precision"], res["recall"]]
                )
                print(res, flush=True)
    write_json(out / "instance_auto_check.json", {"seed": args.seed, "results": results})
    head = ["concept", "task", "rule", "set aside", "hidden (scored)", "precision", "recall"]
    write_text(out / "instance_auto_check.md", markdown_table(head, rows) + "\n")


if __name__ == "__main__":
    main()
