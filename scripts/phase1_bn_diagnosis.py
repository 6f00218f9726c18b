"""Why TARF diverges on Fashion-MNIST: Phase I (ascent on D_f only) with batch norm's
running statistics frozen (TARF's default) against batch statistics
(``phase1_batchnorm=batch``), target mismatch (Sneaker -> footwear), cpu recipe, seed 0.
Prints the skipped (non-finite) steps and the identification.

Usage: python scripts/phase1_bn_diagnosis.py [K ...]   (default: 0.005 0.02; cached models)
"""

import sys

import torch

from tarf.data import load_dataset
from tarf.methods import get_method
from tarf.methods.base import UnlearnContext
from tarf.recipes import get_recipe
from tarf.request import UnlearningRequest
from tarf.runner import prepare_dataset, trained_model, unlearn_data

if __name__ == "__main__":
    torch.set_num_threads(1)
    recipe, device = get_recipe("cpu", "fashion-mnist"), torch.device("cpu")
    ds = prepare_dataset(load_dataset("fashion-mnist"), recipe)
    req = UnlearningRequest.from_names(ds.hierarchy, "Sneaker", "class", "footwear")
    original = trained_model(ds, req, torch.arange(len(ds.y_train)), recipe, 0, device, "original")
    data = unlearn_data(ds, req)
    ctx = UnlearnContext(device=device, recipe=recipe, seed=0, task=req.task.name,
                         dataset=ds.name, train_size=len(ds.y_train))  # fmt: skip
    for k in [float(a) for a in sys.argv[1:]] or [0.005, 0.02]:
        for bn in ("frozen", "batch"):
            method = get_method("tarf", k=k, phase1_batchnorm=bn, stop_after_identification=True)
            record = method.run(original.model, data, ctx).record
            ident = record["identification"]
            top = list((ident.get("loss_increase") or {}).items())[:4]
            print(f"k={k} BN {bn}: skipped steps {record['skipped_steps']}, set aside "
                  f"{ident['classes']}, top loss rises {top}", flush=True)  # fmt: skip
