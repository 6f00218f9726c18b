"""The runner's caches: metrics of the original and the reference are computed once."""

import dataclasses

import torch

from tarf import cache, run
from tarf.methods import get_method
from tarf.recipes import get_recipe
from tarf.request import UnlearningRequest

MICRO = dataclasses.replace(get_recipe("tiny"), name="micro", epochs=3)


def test_original_and_reference_are_evaluated_once(toy_dataset, monkeypatch):
    calls = []
    real = run.evaluate
    for module in (run, cache):
        monkeypatch.setattr(module, "evaluate", lambda m, *a: calls.append(m) or real(m, *a))
    req = UnlearningRequest.from_names(toy_dataset.hierarchy, "cat", "class", "animals")
    cpu = torch.device("cpu")
    first = run.run_request(toy_dataset, req, get_method("ft"), MICRO, 0, cpu, log=lambda *_: 0)
    assert len(calls) == 3  # unlearned, original, reference
    second = run.run_request(toy_dataset, req, get_method("ga"), MICRO, 0, cpu, log=lambda *_: 0)
    assert len(calls) == 4  # only the unlearned model; the other two from the cache
    assert second["reference"] == first["reference"] and second["original"] == first["original"]
    other_seed = run.run_request(
        toy_dataset, req, get_method("ga"), MICRO, 1, cpu, log=lambda *_: 0
    )
    assert len(calls) == 7 and other_seed["seed"] == 1  # new models, new metrics
