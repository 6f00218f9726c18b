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


def test_a_run_that_wrecked_the_retained_data_is_told_so_and_not_to_push_harder():
    from tarf.methods.base import MethodResult, UnlearnContext

    ctx = UnlearnContext(torch.device("cpu"), get_recipe("tiny"))
    data = _toy_data()
    report = {"metrics": {"UA": 60.0, "RA": 30.0}, "original": {"UA": 90.0, "RA": 80.0}}
    wrecked = MethodResult(_Always(0))
    line = run.damage_warning(get_method("ft"), wrecked, _Always(0), data, ctx, report)
    assert line.startswith("ft damaged the model: RA 30.0% against the original's 80.0%")
    assert "lower its learning rate" in line
    report["metrics"]["RA"] = 45.0  # more than half kept: no warning
    assert run.damage_warning(get_method("ft"), wrecked, _Always(0), data, ctx, report) is None
    # unmeasured: on D_un (labels 1 and 2), the original right on half, the run on none
    ssd = MethodResult(_Always(0), details={"dampened_share": 0.054})
    line = run.damage_warning(get_method("ssd"), ssd, _Always(1), data, ctx, {"metrics": {}})
    assert "accuracy on the data kept 0.0% against the original's 50.0%" in line
    assert "5.4% of the weights" in line and "raise alpha" in line
    kept = MethodResult(_Always(1))
    assert (
        run.damage_warning(get_method("ft"), kept, _Always(1), data, ctx, {"metrics": {}}) is None
    )


def test_a_run_that_cost_the_retained_data_more_than_retraining_is_told_so():
    """Short of damage, a loss of more than 10 points of RA against both the original and
    the reference is a warning; TARF names the classes it ascended on."""
    from tarf.methods.base import MethodResult, UnlearnContext

    ctx = UnlearnContext(torch.device("cpu"), get_recipe("tiny"))
    data = _toy_data()
    report = {
        "metrics": {"UA": 0.0, "RA": 81.7},
        "original": {"UA": 90.0, "RA": 97.5},
        "reference": {"UA": 0.0, "RA": 98.5},
    }
    costly = MethodResult(_Always(1), identification={"classes": ["Shirt", "Dress"]})
    line = run.cost_warning(get_method("ft"), costly, _Always(1), data, ctx, report)
    assert line.startswith("ft cost the retained data more than 10 points: RA 81.7%")
    assert "the original's 97.5% and the retrained reference's 98.5%" in line
    assert "lower its learning rate" in line
    # methods without a learning rate name their own setting
    for name, fix in (("iu", "lower alpha"), ("ssd", "raise alpha")):
        assert fix in run.cost_warning(get_method(name), costly, _Always(1), data, ctx, report)
    line = run.cost_warning(get_method("tarf"), costly, _Always(1), data, ctx, report)
    assert "ascended on the classes identification set aside (Shirt, Dress)" in line
    costly.details["k"] = 0.1
    zero = get_method("tarf", identified_op="zero")
    line = run.cost_warning(zero, costly, _Always(1), data, ctx, report)
    assert "set aside" not in line and "lower k (--set k=0.05)" in line
    # what retraining loses too is not the method's cost: the bar is the lower of the two
    report["reference"]["RA"] = 90.0
    assert run.cost_warning(get_method("ft"), costly, _Always(1), data, ctx, report) is None
    report["metrics"]["RA"] = 88.0  # under 10 points lost: no warning
    report["reference"]["RA"] = 98.5
    assert run.cost_warning(get_method("ft"), costly, _Always(1), data, ctx, report) is None
    # unmeasured: on a sample of D_un, against the original alone (here right on half)
    line = run.cost_warning(get_method("ft"), costly, _Always(1), data, ctx, {"metrics": {}})
    assert line is None  # the same model: nothing lost
    # damage comes first, and only one line is given
    report["metrics"]["RA"] = 30.0
    checks = [c(get_method("ft"), costly, _Always(1), data, ctx, report) for c in run.CHECKS]
    assert "damaged the model" in checks[0] and "cost the retained data" in checks[2]


def test_the_checks_of_a_run_measure_the_retained_sample_once(monkeypatch):
    """Unmeasured (no RA), the damage and the cost checks both judge the run on a sample
    of D_un: one run's checks share a memo, so it is measured once (two models), not
    twice."""
    from tarf.methods.base import MethodResult, UnlearnContext

    ctx = UnlearnContext(torch.device("cpu"), get_recipe("tiny"))
    data, calls = _toy_data(), []
    measured = run.accuracy
    monkeypatch.setattr(run, "accuracy", lambda *a: calls.append(1) or measured(*a))
    kept, memo = MethodResult(_Always(1)), {}
    for check in (run.damage_warning, run.cost_warning):
        assert check(get_method("ft"), kept, _Always(1), data, ctx, {"metrics": {}}, memo) is None
    assert len(calls) == 2  # the original and the unlearned model, once each
    run.cost_warning(get_method("ft"), kept, _Always(1), data, ctx, {"metrics": {}})
    assert len(calls) == 4  # without a memo each check measures again


def test_a_run_that_forgot_the_forget_data_but_not_the_target_is_told_why():
    """Target mismatch: D_f is forgotten but UA on D_t stays high, so the cause is the rest
    of the concept, not a weak ascent; TARF names the classes it set aside."""
    from tarf.methods.base import MethodResult, UnlearnContext

    ctx = UnlearnContext(torch.device("cpu"), get_recipe("tiny"))
    data = _toy_data()
    report = {"metrics": {"UA": 70.0}, "original": {"UA": 95.0}, "reference": {"UA": 0.0}}
    forgot_df = MethodResult(_Always(1))  # D_f (label 0) at 0 %, the original at 100 %
    line = run.forgetting_warning(get_method("ft"), forgot_df, _Always(0), data, ctx, report)
    assert line.startswith("ft forgot little of the target: UA 70.0%")
    assert "forget data itself is down to 0.0% (the original: 100.0%)" in line
    assert "--method tarf" in line and "raise its learning rate" not in line
    forgot_df.identification = {"classes": ["3", "8"]}
    line = run.forgetting_warning(get_method("tarf"), forgot_df, _Always(0), data, ctx, report)
    assert "identification set aside 3, 8" in line and "--forget" in line
    # D_f not forgotten either: the weak-update hint, as before
    kept = MethodResult(_Always(0))
    line = run.forgetting_warning(get_method("ft"), kept, _Always(0), data, ctx, report)
    assert "raise its learning rate" in line


def test_an_extrapolated_mia_is_noted(toy_dataset):
    """A report whose D_t lies below the attack's range says so in its notes."""
    from tarf.methods.base import MethodResult, UnlearnContext

    ctx = UnlearnContext(torch.device("cpu"), get_recipe("tiny"))
    req = UnlearningRequest.from_names(toy_dataset.hierarchy, "cat", "class", "cat")
    data = run.unlearn_data(toy_dataset, req)

    class Fixed(get_method("ft").__class__):
        def run(self, model, data, ctx):
            return MethodResult(model)

    def report(outside, mia=0.0):
        metrics = {"UA": 0.0, "RA": 90.0, "TA": 80.0, "MIA": mia, "MIA_extrapolated": outside}
        return run.execute(
            Fixed(), _Always(1), data, ctx, req, measure=lambda m: metrics, original=None,
            reference=None, partition_sizes={}, recipe_name="tiny",
        )[1]  # fmt: skip

    notes = report(100.0)["notes"]
    assert any(n.startswith("MIA extrapolated: 100% of D_t") for n in notes)
    assert any("calls 100% of D_t members" in n for n in notes)
    assert not any("MIA extrapolated" in n for n in report(10.0)["notes"])
    # called non-member, as a confidence of 0 should be: nothing to note
    assert not any("MIA extrapolated" in n for n in report(100.0, mia=100.0)["notes"])
