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


def _toy_data(n_classes: int = 3):
    from tarf.methods.base import UnlearnData

    x = torch.zeros(30, 1, 2, 2, dtype=torch.uint8)
    y = torch.arange(n_classes).repeat(10)
    return UnlearnData(x[y == 0], y[y == 0], x[y != 0], y[y != 0], n_classes, ("a", "b", "c"))


class _Always(torch.nn.Module):
    """A model that predicts one class for every input."""

    def __init__(self, label: int) -> None:
        super().__init__()
        self.label = label

    def forward(self, x):
        return torch.nn.functional.one_hot(torch.full((len(x),), self.label), 3).float()


def test_a_run_that_forgot_little_is_told_so():
    from tarf.methods.base import MethodResult, UnlearnContext

    ctx = UnlearnContext(torch.device("cpu"), get_recipe("tiny"))
    ft, data = get_method("ft"), _toy_data()
    orig = {"UA": 90.0}
    # against the reference: moved a third of the way from 90 to 0
    report = {"metrics": {"UA": 60.0}, "original": orig, "reference": {"UA": 0.0}}
    kept = MethodResult(_Always(0))
    line = run.forgetting_warning(ft, kept, _Always(0), data, ctx, report)
    assert line.startswith("ft forgot little: UA 60.0% against the original's 90.0%")
    assert "raise its learning rate" in line
    report["metrics"]["UA"] = 40.0  # more than half the way: no warning
    assert run.forgetting_warning(ft, kept, _Always(0), data, ctx, report) is None
    # without a reference: D_f's label 0 is gone from D_un, and the model still predicts it
    line = run.forgetting_warning(ft, kept, _Always(0), data, ctx, {"metrics": {}})
    assert "still classifies the forget data at 100.0% (the original: 100.0%)" in line
    forgot = MethodResult(_Always(1))
    assert run.forgetting_warning(ft, forgot, _Always(0), data, ctx, {"metrics": {}}) is None
