"""TARF: the k(t) schedule, the phase boundaries, identification, and the Phase I cost rule."""

import dataclasses
import math

import pytest
import torch
import torch.nn as nn
from conftest import CLASSES

import tarf.methods.common as common
import tarf.methods.tarf as tarf_mod
import tarf.methods.tarf_probe as tarf_probe
from tarf.methods import get_method
from tarf.methods.base import UnlearnContext, UnlearnData
from tarf.methods.tarf import (
    TARFConfig,
    ascent_loss,
    k_schedule,
    label_ceilings,
    paper_k,
    phase_of,
    wrong_label_floor,
)
from tarf.methods.tarf_identify import (
    balanced_sample,
    class_accuracy,
    rank_drops,
    weak_phase1_warning,
)
from tarf.recipes import get_recipe
from tarf.request import Prior, UnlearningRequest
from tarf.run import unlearn_data
from tarf.training import train_classifier


def test_k_schedule_matches_paper_formula():
    ks = k_schedule(0.05, epochs=10, t0=2)
    assert ks == pytest.approx([0.05 * (10 - t - 2) / 10 for t in range(8)] + [0.0, 0.0])
    assert ks[0] == pytest.approx(0.04) and ks[7] == pytest.approx(0.005)
    assert all(
        a > b for a, b in zip(ks[:8], ks[1:8])
    )  # annealed: strictly decreasing while positive
    assert k_schedule(0.1, 10, 2, "constant")[:8] == [0.1] * 8
    inc = k_schedule(0.1, 10, 2, "increasing")
    assert inc[0] < inc[7] and inc[8:] == [0.0, 0.0]
    with pytest.raises(ValueError):
        k_schedule(0.1, 10, 2, "cosine")


def test_phase_boundaries():
    ks = k_schedule(0.05, 10, 2)
    phases = [phase_of(t, 1, ks[t]) for t in range(10)]
    assert phases == ["I"] + ["II"] * 7 + ["III"] * 2
    ks = k_schedule(0.05, 10, 4)
    assert [phase_of(t, 2, ks[t]) for t in range(10)] == ["I", "I"] + ["II"] * 4 + ["III"] * 4


def test_paper_k_is_the_papers_table():
    assert paper_k("cifar100", "model-mismatch") == 0.5
    assert paper_k("cifar100", "target-mismatch") == 0.05
    assert paper_k("cifar10", "model-mismatch") == 0.04
    assert paper_k("cifar10", "all-matched") == 0.02
    assert paper_k("fashion-mnist", "all-matched") == 0.02  # datasets beyond the paper: CIFAR-10's


def test_rank_drops_picks_largest_and_skips_absent():
    before = torch.tensor([90.0, 80.0, 85.0, float("nan"), 70.0])
    after = torch.tensor([20.0, 78.0, 40.0, float("nan"), 69.0])
    chosen, drops, beta = rank_drops(before, after, 2)
    assert chosen == [0, 2] and beta == pytest.approx(45.0)
    assert rank_drops(before, after, 0)[0] == [] and rank_drops(before, after, 0)[2] == float("inf")
    assert 3 not in rank_drops(before, after, 4)[0]  # a class absent from D_un is never chosen


def test_class_accuracy_and_balanced_sample():
    y = torch.tensor([0, 0, 1, 1, 1, 2])
    pred = torch.tensor([0, 1, 1, 1, 0, 2])
    acc = class_accuracy(pred, y, 4)
    assert acc[:3].tolist() == pytest.approx([50.0, 200 / 3, 100.0]) and torch.isnan(acc[3])
    yy = torch.arange(5).repeat_interleave(30)
    idx = balanced_sample(yy, 7, 5, torch.Generator().manual_seed(0))
    assert torch.bincount(yy[idx]).tolist() == [7] * 5 and len(idx.unique()) == 35


def _toy_recipe():
    """The tiny recipe, longer and without augmentation: a toy model that fits its data."""
    return dataclasses.replace(get_recipe("tiny"), epochs=15, flip=False, crop_pad=0)


def _same_state(a: nn.Module, b: nn.Module) -> bool:
    """Bit-identical weights and buffers."""
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.fixture(scope="module")
def trained(toy_dataset):
    recipe = _toy_recipe()
    res = train_classifier(
        toy_dataset.x_train, toy_dataset.y_train, 7, recipe, 0, torch.device("cpu")
    )
    return res.model, recipe


def _ctx(recipe, ds, task):
    return UnlearnContext(
        device=torch.device("cpu"),
        recipe=recipe,
        seed=0,
        task=task,
        dataset="toy",
        train_size=len(ds.y_train),
    )


@pytest.mark.parametrize("signal", ["loss", "accuracy"])
def test_identification_sets_aside_the_classes_that_moved(
    trained, toy_dataset, monkeypatch, signal
):
    """A constructed case: after Phase I, dog and fox (the concept's hidden classes) lose
    accuracy and gain loss, the rest barely move. Identification must set aside exactly
    their samples, and Phase II/III must never descend on them."""
    import tarf.methods.tarf as tarf_mod

    model, recipe = trained
    req = UnlearningRequest.from_names(toy_dataset.hierarchy, "cat", "class", "animals")
    data = unlearn_data(toy_dataset, req)
    acc0, loss0 = torch.full((7,), 90.0), torch.full((7,), 0.3)
    acc0[0] = loss0[0] = float("nan")  # cat is not in D_un
    acc1, loss1 = (
        acc0 - torch.tensor([0, 30, 25, 2, 1, 3, 0.0]),
        loss0 + torch.tensor([0, 2.0, 1.5, 0.1, 0.2, 0.0, 0.1]),
    )
    calls = iter([(acc0, loss0), (acc1, loss1)])
    monkeypatch.setattr(tarf_probe, "class_stats", lambda *a, **k: next(calls))
    seen_labels: list[torch.Tensor] = []
    orig_init = tarf_mod.Pool.__init__

    def spy_init(self, x, y, ctx, seed_offset=0):
        seen_labels.append(y)
        orig_init(self, x, y, ctx, seed_offset)

    monkeypatch.setattr(tarf_mod.Pool, "__init__", spy_init)
    res = get_method("tarf", phase1="pass", class_signal=signal, k=0.5, lr=0.01).run(
        model, data, _ctx(recipe, toy_dataset, "target-mismatch")
    )
    ident = res.identification
    assert sorted(ident["classes"]) == ["dog", "fox"] and ident["signal"] == signal
    assert ident["set_aside_samples"] == 80
    assert list(ident["drops"])[:2] == ["dog", "fox"] and ident["drops"]["dog"] == pytest.approx(
        30.0
    )
    retained = seen_labels[1]  # pools: forget, then retained D_un
    assert (
        len(retained) == len(data.y_remain) - 80
        and not torch.isin(retained, torch.tensor([1, 2])).any()
    )
    assert res.details["phases"] == ["I"] + ["II"] * 7 + ["III"] * 2
    assert "warning" not in ident and res.warnings == []
    assert "identification" not in res.record()  # the report shows it on its own


def test_identification_warns_when_phase_one_moved_nothing(trained, toy_dataset, monkeypatch):
    """A Phase I too weak to move any class (Fashion-MNIST at k = 0.0005) still yields
    n classes; the report must say they were ranked on noise."""

    model, recipe = trained
    req = UnlearningRequest.from_names(toy_dataset.hierarchy, "cat", "class", "animals")
    data = unlearn_data(toy_dataset, req)
    acc0, loss0 = torch.full((7,), 90.0), torch.full((7,), 0.3)
    acc1, loss1 = acc0 - torch.tensor([0, 1, 0, 0, 0, 0, 0.0]), loss0 + 0.01 * torch.arange(7)
    calls = iter([(acc0, loss0), (acc1, loss1)])
    monkeypatch.setattr(tarf_probe, "class_stats", lambda *a, **k: next(calls))
    res = get_method(
        "tarf", phase1="pass", class_signal="loss", k=0.5, lr=0.01, epochs=2, t0=0
    ).run(model, data, _ctx(recipe, toy_dataset, "target-mismatch"))
    ident = res.identification
    assert (
        ident["n"] == 2
        and "1.0 points" in ident["warning"]
        and "phase1_batchnorm" in ident["warning"]
    )
    assert res.warnings == [ident["warning"]]
    assert weak_phase1_warning(acc1 - acc0, loss1 - loss0, 0) is None  # nothing chosen
    # two of 100 probe samples flipped (Fashion-MNIST seed 2) is still noise; 38 points is not
    two, many = torch.tensor([2.0, 0, 0]), torch.tensor([38.0, 0, 0])
    assert weak_phase1_warning(two, torch.zeros(3), 2) is not None
    assert weak_phase1_warning(many, torch.zeros(3), 2) is None


def test_tarf_does_not_modify_input_and_forgets(trained, toy_dataset):
    model, recipe = trained
    before = {k: v.clone() for k, v in model.state_dict().items()}
    req = UnlearningRequest.from_names(toy_dataset.hierarchy, "cat", "class", "cat")
    data = unlearn_data(toy_dataset, req)
    res = get_method("tarf", phase1="pass", k=1.0, lr=0.05).run(
        model, data, _ctx(recipe, toy_dataset, "all-matched")
    )
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    pred = res.model(data.x_forget.float() / 255).argmax(1)
    assert (pred == data.y_forget).float().mean() < 0.5
    assert res.identification["classes"] == []  # all matched: prior 0


class _FixedLogits(torch.nn.Module):
    """A 'model' whose logits are the same row for every image."""

    def __init__(self, row: list[float]) -> None:
        super().__init__()
        self.row = torch.nn.Parameter(torch.tensor(row))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.row.expand(len(x), -1) * torch.ones(len(x), 1)


def test_wrong_label_floor_is_the_median_wrong_label_probability(toy_dataset):
    """Probabilities (0.7, 0.2, 0.1) for every image, every label 0: the wrong labels get
    0.2 and 0.1, so the median is 0.1 (torch's lower median) and the floor −log 0.1."""
    req = UnlearningRequest.from_names(toy_dataset.hierarchy, "cat", "class", "cat")
    data = dataclasses.replace(
        unlearn_data(toy_dataset, req), y_remain=torch.zeros(50, dtype=torch.long)
    )
    data = dataclasses.replace(data, x_remain=data.x_remain[:50])
    model = _FixedLogits(torch.tensor([0.7, 0.2, 0.1]).log().tolist())
    ctx = _ctx(get_recipe("tiny"), toy_dataset, "all-matched")
    assert wrong_label_floor(model, data, ctx) == pytest.approx(-torch.tensor(0.1).log().item())


def test_ascent_loss_stops_pushing_samples_past_the_ceiling():
    model = _FixedLogits([2.0, 0.0, -2.0])
    x = torch.zeros(2, 3, 4, 4)
    y = torch.tensor([0, 2])  # cross-entropy about 0.14 and 4.14 nats
    ctx = UnlearnContext(device=torch.device("cpu"), recipe=get_recipe("tiny"))
    free = torch.autograd.grad(ascent_loss(model, x, y, ctx, None), model.row)[0]
    ceilings = label_ceilings(1.0, torch.tensor([1]), 3)  # label 1 is still trained on
    assert ceilings.tolist() == [1.0, float("inf"), 1.0]
    bounded = ascent_loss(model, x, y, ctx, ceilings)
    assert bounded.item() == pytest.approx((0.1429 + 1.0) / 2, abs=1e-3)
    grad = torch.autograd.grad(bounded, model.row)[0]
    # only the first sample (below the ceiling) pushes: half its unbounded gradient share
    only_first = torch.autograd.grad(ascent_loss(model, x[:1], y[:1], ctx, None), model.row)[0]
    assert torch.allclose(grad, only_first / 2, atol=1e-6)
    assert not torch.allclose(grad, free)
    # a label the retained data still carries has no ceiling: the plain ascent
    open_ceilings = label_ceilings(1.0, torch.tensor([0, 2]), 3)
    assert torch.allclose(ascent_loss(model, x, y, ctx, open_ceilings), ce_mean(model, x, y))
    assert label_ceilings(None, torch.tensor([0]), 3) is None


def test_a_retained_label_is_ascended_to_chance_at_most():
    model = _FixedLogits([2.0, 0.0, -2.0])
    x, y = torch.zeros(2, 3, 4, 4), torch.tensor([0, 2])  # about 0.14 and 4.14 nats
    ctx = UnlearnContext(device=torch.device("cpu"), recipe=get_recipe("tiny"))
    chance = math.log(3)
    ceilings = label_ceilings(5.0, torch.tensor([2]), 3, retained=chance)
    assert ceilings.tolist() == pytest.approx([5.0, 5.0, chance])
    # label 2 is still trained on: its sample is past chance and pushes no further
    only_first = torch.autograd.grad(ascent_loss(model, x[:1], y[:1], ctx, None), model.row)[0]
    grad = torch.autograd.grad(ascent_loss(model, x, y, ctx, ceilings), model.row)[0]
    assert torch.allclose(grad, only_first / 2, atol=1e-6)


def test_retained_ceiling_spares_the_label_in_model_mismatch(toy_dataset):
    """Model mismatch: cat is forgotten, dog and fox keep the label "animals". Ascent
    without bound drives cat's loss far past chance and takes its siblings with it; with
    the chance ceiling the push stops near ln 3 and the siblings keep their label."""
    recipe = _toy_recipe()
    req = UnlearningRequest.from_names(toy_dataset.hierarchy, "cat", "superclass", "cat")
    y_super = req.model_labels(toy_dataset.y_train)
    model = train_classifier(toy_dataset.x_train, y_super, 3, recipe, 0, torch.device("cpu")).model
    data = unlearn_data(toy_dataset, req)
    ctx = _ctx(recipe, toy_dataset, "model-mismatch")
    # two batches, running statistics as the steps left them: the push itself is measured
    isolated = dict(phase2_batch="separate", batchnorm_stats="trained")
    runs = {
        how: get_method("tarf", retained_ceiling=how, **isolated).run(model, data, ctx)
        for how in ("none", "chance")
    }
    assert runs["chance"].details["ascent_chance_labels"] == ["animals"]
    assert "ascent_chance_labels" not in runs["none"].details
    siblings = data.y_remain == data.y_forget[0]
    loss, kept = {}, {}
    for how, res in runs.items():
        with torch.no_grad():
            logits = res.model(data.x_forget.float() / 255)
            loss[how] = torch.nn.functional.cross_entropy(logits, data.y_forget).item()
            pred = res.model(data.x_remain[siblings].float() / 255).argmax(1)
        kept[how] = (pred == data.y_remain[siblings]).float().mean().item()
    assert loss["none"] > 2 * loss["chance"]  # about 22 against 5 nats
    assert kept["chance"] > kept["none"] + 0.2  # about 0.96 against 0.57
    # the defaults (one mixed batch, statistics recomputed): cat forgotten, siblings kept
    res = get_method("tarf").run(model, data, ctx)
    with torch.no_grad():
        forget_acc = (res.model(data.x_forget.float() / 255).argmax(1) == data.y_forget).float()
        pred = res.model(data.x_remain[siblings].float() / 255).argmax(1)
    assert forget_acc.mean() < 0.1  # about 0.00
    assert (pred == data.y_remain[siblings]).float().mean() > 0.9  # about 0.98


def test_weak_forgetting_hint_names_the_chance_ceiling():
    from tarf.methods.base import MethodResult

    tarf = get_method("tarf")
    bounded = MethodResult(nn.Identity(), details={"ascent_chance_labels": ["people"], "k": 1.0})
    assert "retained_ceiling=none" in tarf.weak_forgetting_hint(bounded)
    assert "(people)" in tarf.weak_forgetting_hint(bounded)
    plain = MethodResult(nn.Identity(), details={"k": 1.0, "lr": 0.01})
    assert "--set k=10" in tarf.weak_forgetting_hint(plain)


def ce_mean(model, x, y):
    return torch.nn.functional.cross_entropy(model(x), y)


def test_ascent_floor_leaves_forget_data_less_pushed(trained, toy_dataset):
    """With the floor, the forget data still ends up misclassified, but its loss stays
    near the floor instead of running off (the over-forgetting the audit sees)."""
    model, recipe = trained
    req = UnlearningRequest.from_names(toy_dataset.hierarchy, "cat", "class", "cat")
    data = unlearn_data(toy_dataset, req)
    ctx = _ctx(recipe, toy_dataset, "all-matched")
    runs = {
        floor: get_method("tarf", phase1="pass", k=1.0, lr=0.05, ascent_floor=floor).run(
            model, data, ctx
        )
        for floor in ("none", "wrong-label")
    }
    ceiling = runs["wrong-label"].details["ascent_ceiling_nats"]
    assert 0 < ceiling < 20 and "ascent_ceiling_nats" not in runs["none"].details
    assert runs["wrong-label"].details["ascent_bounded_labels"] == ["cat"]
    losses = {}
    for floor, res in runs.items():
        logits = res.model(data.x_forget.float() / 255)
        assert (logits.argmax(1) == data.y_forget).float().mean() < 0.5
        losses[floor] = torch.nn.functional.cross_entropy(logits, data.y_forget).item()
    assert losses["wrong-label"] < 0.5 * losses["none"]


def test_ascent_floor_leaves_labels_still_trained_on_to_the_chance_ceiling(trained, toy_dataset):
    """Half of "cat" forgotten, the other half retained: the label keeps training data, so
    the wrong-label floor does not apply; without the chance ceiling the run is the
    paper's, bit for bit, and with it (the default) the label is bounded at chance."""
    model, recipe = trained
    req = UnlearningRequest.from_names(toy_dataset.hierarchy, "cat", "class", forget_fraction=0.5)
    data = unlearn_data(toy_dataset, req)
    ctx = _ctx(recipe, toy_dataset, req.task.name)
    settings = dict(phase1="pass", k=1.0, lr=0.05)
    plain = get_method("tarf", **settings, ascent_floor="none").run(model, data, ctx)
    floored = get_method("tarf", **settings, retained_ceiling="none").run(model, data, ctx)
    assert floored.details["ascent_bounded_labels"] == []
    assert "ascent_chance_labels" not in floored.details
    assert _same_state(plain.model, floored.model)
    at_chance = get_method("tarf", **settings).run(model, data, ctx)
    assert at_chance.details["ascent_chance_labels"] == ["cat"]
    assert at_chance.details["ascent_chance_nats"] == pytest.approx(math.log(7))
    assert not _same_state(plain.model, at_chance.model)


def test_phase_one_skips_remaining_data(trained, toy_dataset):
    """τ = 0 in Phase I, so no D_un sample may pass through the network there."""
    model, recipe = trained
    req = UnlearningRequest.from_names(toy_dataset.hierarchy, "cat", "class", "animals")
    data = unlearn_data(toy_dataset, req)
    seen: list[int] = []
    orig_forward = type(model).forward

    def spy(self, x):
        if self.training:
            seen.append(len(x))
        return orig_forward(self, x)

    # Stopping at identification leaves exactly Phase I (then eval-mode passes only).
    type(model).forward = spy
    try:
        res = get_method("tarf", phase1="pass", stop_after_identification=True, k=1.0, lr=0.05).run(
            model, data, _ctx(recipe, toy_dataset, "target-mismatch")
        )
    finally:
        type(model).forward = orig_forward
    assert res.details["phases"] == ["I"] and res.identification is not None
    assert sum(seen) == len(data.y_forget)


def test_instance_level_identification(trained, toy_dataset):
    model, recipe = trained
    req = UnlearningRequest.from_names(toy_dataset.hierarchy, "cat", "class", "animals")
    data = unlearn_data(toy_dataset, req)
    res = get_method("tarf", phase1="pass", identification="instance", k=1.0, lr=0.05).run(
        model, data, _ctx(recipe, toy_dataset, "target-mismatch")
    )
    ident = res.identification
    assert ident["level"] == "instance"
    assert ident["set_aside_samples"] == round(data.prior.fraction * ident["scored_samples"])


def test_bad_options_are_rejected(trained, toy_dataset):
    model, recipe = trained
    req = UnlearningRequest.from_names(toy_dataset.hierarchy, "cat", "class", "cat")
    with pytest.raises(ValueError, match="identification"):
        get_method("tarf", identification="cluster").run(
            model, unlearn_data(toy_dataset, req), _ctx(recipe, toy_dataset, "all-matched")
        )
    with pytest.raises(ValueError, match="phase1_batchnorm"):
        get_method("tarf", phase1_batchnorm="none").run(
            model, unlearn_data(toy_dataset, req), _ctx(recipe, toy_dataset, "all-matched")
        )
    with pytest.raises(ValueError, match="ascent_floor"):
        get_method("tarf", ascent_floor="half").run(
            model, unlearn_data(toy_dataset, req), _ctx(recipe, toy_dataset, "all-matched")
        )
    with pytest.raises(ValueError, match="unknown hyperparameter"):
        get_method("tarf", overrides={"kk": "1"})
    with pytest.raises(ValueError, match="expected float"):
        get_method("tarf", overrides={"k": "lots"})


def test_known_zero_prior_skips_the_probe(trained, toy_dataset, monkeypatch):
    """All matched (prior n = 0): no identification passes at all; with a nonzero prior
    or auto, the probe is measured before and after Phase I."""

    model, recipe = trained
    calls = []
    real = tarf_probe.class_stats
    monkeypatch.setattr(tarf_probe, "class_stats", lambda *a, **k: calls.append(1) or real(*a, **k))
    h = toy_dataset.hierarchy
    for target, prior, want_calls in (("cat", None, 0), ("animals", None, 2), ("cat", "auto", 2)):
        calls.clear()
        req = UnlearningRequest.from_names(h, "cat", "class", target, prior_classes=prior)
        task = "all-matched" if target == "cat" and prior is None else "target-mismatch"
        res = get_method("tarf", phase1="pass", k=0.5, lr=0.01).run(
            model, unlearn_data(toy_dataset, req), _ctx(recipe, toy_dataset, task)
        )
        assert len(calls) == want_calls, (target, prior)
        assert ("skipped" in res.identification) == (want_calls == 0)


def test_batch_statistics_batchnorm_normalises_by_batch_and_keeps_running_stats():
    """Phase I's "batch" option: outputs use the batch's statistics (the same as a
    functional batch norm in training mode), running statistics stay bit-identical,
    modes are restored."""
    import torch.nn as nn

    from tarf.methods.common import batch_statistics_batchnorm

    net = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3)).eval()
    bn = net[1]
    before = (bn.running_mean.clone(), bn.running_var.clone(), bn.momentum)
    x = torch.randn(32, 4) + 5.0
    with batch_statistics_batchnorm(net):
        assert bn.training
        y = net(x)
        y_batch_stats = nn.functional.batch_norm(
            net[0](x), None, None, bn.weight, bn.bias, training=True, eps=bn.eps
        )
    assert torch.allclose(y, y_batch_stats, atol=1e-5)  # batch statistics, not the running ones
    assert torch.equal(bn.running_mean, before[0]) and torch.equal(bn.running_var, before[1])
    assert not bn.training and bn.momentum == before[2]


def _bn_pull_toward_forget(how: str, toy_dataset, stats: str = "trained") -> float:
    """How far Phase II moves the running mean of a batch-norm layer on the input from
    D_un's pixel mean toward D_f's (0: D_un's, 1: D_f's), with D_f much brighter."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.BatchNorm2d(1), nn.Flatten(), nn.Linear(64, 7))
    ds = toy_dataset
    forget = ds.y_train == 0
    x_f = (ds.x_train[forget].int() + 120).clamp(max=255).to(torch.uint8)
    data = UnlearnData(x_f, ds.y_train[forget], ds.x_train[~forget], ds.y_train[~forget], 7,
                       CLASSES, Prior(0))  # fmt: skip
    model[0].running_mean.fill_(float(data.x_remain.float().mean() / 255))
    recipe = dataclasses.replace(get_recipe("tiny"), crop_pad=0, flip=False, unlearn_batch_size=32)
    # a budget of a full pass per epoch: 5 Phase II steps per epoch, 55 in all
    ctx = UnlearnContext(torch.device("cpu"), recipe, seed=0, train_size=5000)
    cfg = dict(k=0.01, lr=1e-4, t0=0, epochs=12, forget_batch_size=16, phase2_batch=how,
               batchnorm_stats=stats)  # fmt: skip
    out = get_method("tarf", **cfg).run(model, data, ctx).model
    r, f = (float(x.float().mean() / 255) for x in (data.x_remain, data.x_forget))
    return (float(out[0].running_mean) - r) / (f - r)


def test_phase_two_batches_set_batchnorm_statistics(toy_dataset):
    """One mixed batch (Algorithm 1) and retain-stats leave the running statistics the
    retained data's; separate forwards pull them toward D_f. At the end,
    batchnorm_stats=retained recomputes them from the kept data whatever the batches."""
    pulls = {
        how: _bn_pull_toward_forget(how, toy_dataset)
        for how in ("separate", "mixed", "retain-stats")
    }
    assert abs(pulls["retain-stats"]) < 0.02
    # 16 of 48 samples per step are forget data, but only the retained 32 feed the statistics
    assert abs(pulls["mixed"]) < 0.02
    # an EMA (momentum m) fed D_f, then D_un, settles at (1 - m) / (2 - m) = 0.47 of the way
    assert 0.44 < pulls["separate"] < 0.50
    assert abs(_bn_pull_toward_forget("separate", toy_dataset, stats="retained")) < 0.02


def test_tail_statistics_batchnorm_learns_from_the_last_rows_only():
    """The running statistics move as a batch of the last rows alone would move them,
    while the whole batch is normalised together (its output differs from the tail's)."""
    torch.manual_seed(0)
    x = torch.cat([torch.randn(5, 3, 4, 4) * 4 + 9, torch.randn(7, 3, 4, 4)])
    for momentum in (0.1, None):
        bn, alone = nn.BatchNorm2d(3, momentum=momentum), nn.BatchNorm2d(3, momentum=momentum)
        with common.tail_statistics_batchnorm(bn, 7):
            y = bn(x)
        alone.train()
        y_tail = alone(x[5:])
        assert torch.allclose(bn.running_mean, alone.running_mean, atol=1e-6)
        assert torch.allclose(bn.running_var, alone.running_var, atol=1e-5)
        assert not torch.allclose(y[5:], y_tail, atol=1e-2)
        assert bn.momentum == momentum and int(bn.num_batches_tracked) == 1


def test_recompute_batchnorm_statistics_replaces_them_by_the_data_s():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2), nn.Flatten()).eval()
    net[1].running_mean.fill_(50.0)
    x = torch.randint(0, 256, (320, 1, 3, 3), dtype=torch.uint8)  # 5 batches of 64
    assert common.recompute_batchnorm_statistics(net, x, torch.device("cpu"), 64) == 1
    h = net[0](x.float() / 255)
    assert torch.allclose(net[1].running_mean, h.mean((0, 2, 3)), atol=1e-5)
    assert torch.allclose(net[1].running_var, h.var((0, 2, 3)), atol=1e-4)
    assert not net.training and not net[1].training and net[1].momentum == 0.1
    assert common.recompute_batchnorm_statistics(nn.Linear(2, 2), x, torch.device("cpu")) == 0


def test_recompute_batchnorm_statistics_on_augmented_batches_sees_the_padding():
    # zero-padded crops darken the images: the recomputed mean is that of the augmented
    # batches (the same generator state gives the same batches), not of the raw images
    net = nn.Sequential(nn.Conv2d(1, 1, 1, bias=False), nn.BatchNorm2d(1)).eval()
    nn.init.ones_(net[0].weight)
    x = torch.full((128, 1, 4, 4), 255, dtype=torch.uint8)
    aug = (2, True, torch.Generator().manual_seed(3))
    assert common.recompute_batchnorm_statistics(net, x, torch.device("cpu"), 64, aug) == 1
    gen = torch.Generator().manual_seed(3)
    seen = torch.cat([common.augment(c.float() / 255, 2, True, gen) for c in x.split(64)])
    assert seen.mean() < 0.9  # padding came in
    assert torch.allclose(net[1].running_mean, seen.mean((0, 2, 3)), atol=1e-5)
    common.recompute_batchnorm_statistics(net, x, torch.device("cpu"), 64)
    assert torch.allclose(net[1].running_mean, torch.ones(1))


def test_mixed_batch_loss_is_the_weighted_sum_of_the_parts():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3)).eval()
    ctx = UnlearnContext(torch.device("cpu"), get_recipe("tiny"))
    f = (torch.rand(5, 1, 2, 2), torch.randint(0, 3, (5,)))
    r = (torch.rand(7, 1, 2, 2), torch.randint(0, 3, (7,)))
    ce = lambda x, y: torch.nn.functional.cross_entropy(model(x), y)  # noqa: E731
    expected = -0.3 * ce(*f) + ce(*r)
    assert torch.allclose(tarf_mod.mixed_batch_loss(model, [f], r, 0.3, ctx, None), expected)


def _stats(loss_before, loss_after, labels, num_classes=4):
    """ClassStats from per-sample losses (every sample correct before, wrong after a rise)."""
    from tarf.methods.tarf_identify import ClassStats

    def agg(loss, correct):
        count = torch.zeros(num_classes).index_add_(0, labels, torch.ones(len(labels)))
        mean = torch.zeros(num_classes).index_add_(0, labels, loss) / count
        acc = 100 * torch.zeros(num_classes).index_add_(0, labels, correct.float()) / count
        return ClassStats(acc, mean, loss, correct, labels)

    return agg(loss_before, torch.ones(len(labels), dtype=torch.bool)), agg(
        loss_after, loss_after <= loss_before
    )


def _identify(signal, before, after, prior=1):
    from tarf.methods.tarf_identify import identify_classes

    y = before.labels
    data = UnlearnData(y[:1], y[:1], y, y, 4, ("a", "b", "c", "d"), Prior(prior))
    return identify_classes(
        before, after, data, TARFConfig(class_signal=signal), "target-mismatch"
    )[1]


def test_icon_ranks_by_the_size_of_the_change_not_its_sign():
    """Class b's losses move a lot both ways (the mean stays put); class c's rise a little."""
    labels = torch.arange(4).repeat_interleave(50)
    before = torch.ones(200)
    change = torch.zeros(200)
    change[50:100] = torch.tensor([2.0, -0.9]).repeat(25)  # b: |Δ| 1.45 on average, mean +0.55
    change[100:150] = 0.6  # c: +0.6
    b, a = _stats(before, before + change, labels)
    assert _identify("loss", b, a)["classes"] == ["c"]
    assert _identify("icon", b, a)["classes"] == ["b"]


def test_margin_reports_how_sure_the_cut_is_and_warns_within_noise():
    labels = torch.arange(4).repeat_interleave(50)
    g = torch.Generator().manual_seed(0)
    before = torch.ones(200)
    noisy = torch.randn(200, generator=g)  # per-sample changes with SD 1: SE of a mean ≈ 0.14
    clear = noisy * 0.01
    clear[:50] += 3.0  # class a rose by 3 nats; the others by nothing
    ident = _identify("loss", *_stats(before, before + clear, labels))
    assert ident["margin"]["between"][0] == "a" and not ident["margin"]["within_noise"]
    assert ident["margin"]["margin"] > 2.9 and "warning" not in ident
    unsure = noisy.clone()
    unsure[:50] += 3.0
    unsure[50:100] += 2.95  # b is as far up as a, within the noise
    ident = _identify("loss", *_stats(before, before + unsure, labels))
    assert ident["margin"]["within_noise"] and "identification is unsure" in ident["warning"]


def test_paper_preset_is_algorithm_one(trained, toy_dataset):
    """preset=paper: accuracy-drop ranking, one mixed Phase II batch, the paper's k."""
    model, recipe = trained
    h = toy_dataset.hierarchy
    data = unlearn_data(toy_dataset, UnlearningRequest.from_names(h, "cat", "class", "animals"))
    ctx = _ctx(recipe, toy_dataset, "target-mismatch")
    res = get_method("tarf", preset="paper", epochs=3, t0=1).run(model, data, ctx)
    assert res.identification["signal"] == "accuracy" and res.details["k"] == paper_k(
        ctx.dataset, ctx.task
    )
    assert res.details["k_rule"] == "paper" and "phase1" not in res.details  # one pass of D_f
    with pytest.raises(ValueError, match="preset=paper fixes class_signal='accuracy'"):
        get_method("tarf", preset="paper", class_signal="icon").run(model, data, ctx)


def test_calibrated_tarf_does_not_read_the_dataset_name(trained, toy_dataset):
    """The default derives its settings from the model and the data: a renamed dataset
    (cifar100 has a k of its own in the paper's table) gives bit-identical weights."""
    model, recipe = trained
    req = UnlearningRequest.from_names(toy_dataset.hierarchy, "cat", "class", "cat")
    data = unlearn_data(toy_dataset, req)
    runs = []
    for name in ("toy", "cifar100"):
        ctx = dataclasses.replace(_ctx(recipe, toy_dataset, "all-matched"), dataset=name)
        runs.append(get_method("tarf", epochs=3, t0=1).run(model, data, ctx))
    a, b = (r.model.state_dict() for r in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert runs[0].details["k"] == runs[1].details["k"] == 1.0
    assert runs[0].details["k_rule"] == "equal" and "phase1" in runs[0].details
    # preset=paper does read it: the paper's k differs between the two names
    paper = [
        get_method("tarf", preset="paper", epochs=3, t0=1).run(
            model, data, dataclasses.replace(_ctx(recipe, toy_dataset, "all-matched"), dataset=n)
        )
        for n in ("toy", "cifar100")
    ]
    assert [r.details["k"] for r in paper] == [paper_k("toy", "x"), paper_k("cifar100", "x")]


def _forget_loss(model: nn.Module, data: UnlearnData) -> float:
    with torch.no_grad():
        logits = model.eval()(data.x_forget.float() / 255)
    return float(nn.functional.cross_entropy(logits, data.y_forget))


@pytest.mark.parametrize("rule", ["chance", "floor"])
def test_phase_one_ascends_until_the_change_it_must_cause(trained, toy_dataset, rule):
    """Phase I stops when D_f's loss reaches its target (ln C, or the wrong-label floor),
    not after a number of steps set by |D_f|; its budget is one epoch's cap."""
    model, recipe = trained
    req = UnlearningRequest.from_names(toy_dataset.hierarchy, "cat", "class", "animals")
    data = unlearn_data(toy_dataset, req)
    ctx = dataclasses.replace(_ctx(recipe, toy_dataset, "target-mismatch"), train_size=10**5)
    res = get_method(
        "tarf", phase1=rule, lr=0.05, forget_batch_size=16, stop_after_identification=True
    ).run(model, data, ctx)
    p1 = res.details["phase1"]
    target = math.log(7) if rule == "chance" else wrong_label_floor(model, data, ctx)
    assert p1["rule"] == rule and p1["target_nats"] == pytest.approx(target)
    assert p1["reached"] and p1["steps"] > 0 and p1["last_loss"] >= target
    assert _forget_loss(model, data) < 0.5 * target  # the original was far below it
    assert _forget_loss(res.model, data) > 0.5 * target  # Phase I moved D_f most of the way
    # a budget too small for the change: Phase I says so, and the run carries the warning
    tight = dataclasses.replace(ctx, train_size=len(toy_dataset.y_train) // 20)
    res = get_method("tarf", phase1=rule, lr=1e-4, stop_after_identification=True).run(
        model, data, tight
    )
    assert not res.details["phase1"]["reached"] and "did not bring D_f" in res.warnings[0]


@pytest.mark.parametrize("schedule", ["constant", "anneal"])
def test_phase_three_lr_anneals_to_zero_only_when_asked(
    trained, toy_dataset, monkeypatch, schedule
):
    """phase3_lr=anneal: Phase III's steps run at a learning rate falling linearly from
    the run's to (nearly) zero; constant keeps the run's lr throughout."""
    model, recipe = trained
    recipe = dataclasses.replace(recipe, unlearn_batch_size=16)  # several steps per epoch
    lrs: list[float] = []
    real_step = tarf_mod.step
    monkeypatch.setattr(
        tarf_mod,
        "step",
        lambda opt, loss: lrs.append(opt.param_groups[0]["lr"]) or real_step(opt, loss),
    )
    req = UnlearningRequest.from_names(toy_dataset.hierarchy, "cat", "class", "cat")
    data = unlearn_data(toy_dataset, req)
    get_method("tarf", epochs=4, t0=2, lr=0.05, phase3_lr=schedule).run(
        model, data, _ctx(recipe, toy_dataset, "all-matched")
    )
    assert len(lrs) >= 4  # Phase III's steps, two epochs of them
    if schedule == "constant":
        assert lrs == [0.05] * len(lrs)
    else:
        assert lrs[0] == pytest.approx(0.05)
        assert all(a > b for a, b in zip(lrs, lrs[1:]))
        assert lrs[-1] < 0.05 * 2.5 / len(lrs)


def test_auto_batches_mix_only_where_the_forget_label_stays():
    """phase2_batch=auto: one mixed batch (statistics recomputed on the kept data) when
    the kept data still carries a label of D_f's, as in model mismatch; separate batches
    (statistics as trained) when it does not; a value set by hand is kept. Phase III
    likewise: three annealed epochs where the label stays, two at a constant rate
    otherwise."""
    from tarf.methods.tarf import resolve_by_kept_labels

    x = torch.zeros(6, 1, 2, 2, dtype=torch.uint8)
    y_remain = torch.tensor([0, 1, 1, 2, 2, 2])
    data = UnlearnData(x[:2], torch.tensor([0, 0]), x, y_remain, 3, ("a", "b", "c"), Prior(0))
    keep_all = {0, 1, 2}  # the labels the kept data carries
    details: dict = {}
    c = resolve_by_kept_labels(TARFConfig(), data, keep_all, details)
    assert (c.phase2_batch, c.batchnorm_stats) == ("mixed", "retained")
    assert (c.t0, c.phase3_lr) == (3, "anneal")
    assert details["phase2"]["labels_kept"] == ["a"] == details["phase3"]["labels_kept"]
    without_a = {1, 2}  # identification set label 0 aside (data mismatch)
    c = resolve_by_kept_labels(TARFConfig(), data, without_a, details)
    assert (c.phase2_batch, c.batchnorm_stats) == ("separate", "trained")
    assert (c.t0, c.phase3_lr) == (2, "constant")
    c = resolve_by_kept_labels(TARFConfig(batchnorm_stats="retained"), data, without_a, {})
    assert (c.phase2_batch, c.batchnorm_stats) == ("separate", "retained")
    c = resolve_by_kept_labels(TARFConfig(t0=1), data, keep_all, {})
    assert (c.t0, c.phase3_lr) == (1, "anneal")
    set_by_hand = TARFConfig(
        phase2_batch="mixed", batchnorm_stats="trained", t0=2, phase3_lr="constant"
    )
    assert resolve_by_kept_labels(set_by_hand, data, without_a, {}) is set_by_hand


def test_model_mismatch_gets_the_longer_annealed_phase_three(toy_dataset):
    """The run itself: in model mismatch k(t) reaches zero three epochs before the end
    and the record says why; in all matched, two; preset=paper keeps the paper's two."""
    recipe = _toy_recipe()
    runs = {}
    for task, labels in (("model-mismatch", "superclass"), ("all-matched", "class")):
        req = UnlearningRequest.from_names(toy_dataset.hierarchy, "cat", labels, "cat")
        y = req.model_labels(toy_dataset.y_train)
        n = len(y.unique())
        model = train_classifier(toy_dataset.x_train, y, n, recipe, 0, torch.device("cpu")).model
        data = unlearn_data(toy_dataset, req)
        ctx = _ctx(recipe, toy_dataset, task)
        runs[task] = get_method("tarf").run(model, data, ctx).details
        if task == "model-mismatch":
            runs["paper"] = get_method("tarf", preset="paper").run(model, data, ctx).details
    assert runs["model-mismatch"]["phases"][-3:] == ["III"] * 3
    assert runs["model-mismatch"]["phases"][-4] == "II"
    assert runs["model-mismatch"]["phase3"] == {"t0": 3, "lr": "anneal", "labels_kept": ["animals"]}
    assert runs["all-matched"]["phases"][-3:] == ["II", "III", "III"]
    assert runs["all-matched"]["phase3"]["lr"] == "constant"
    assert runs["paper"]["phases"][-3:] == ["II", "III", "III"] and "phase3" not in runs["paper"]


def test_ascent_on_what_is_set_aside_stays_within_the_budget(trained, toy_dataset):
    """With the set-aside classes ascended on (the default), each Phase II step forwards
    a third batch; the step count must shrink for it, so that no epoch passes its cap."""
    model, recipe = trained
    req = UnlearningRequest.from_names(toy_dataset.hierarchy, "cat", "class", "animals")
    data = unlearn_data(toy_dataset, req)
    # an epoch's cap of a few Phase II steps, below one pass of the data
    ctx = dataclasses.replace(_ctx(recipe, toy_dataset, "target-mismatch"), train_size=1200)
    cap, fb = ctx.epoch_samples(), 16
    assert recipe.unlearn_batch_size + 2 * fb < cap < len(data.y_remain) + len(data.y_forget)
    res = get_method("tarf", forget_batch_size=fb).run(model, data, ctx)
    assert res.identification["classes"]  # something was set aside and ascended on
    assert 0 < res.epoch_samples <= cap and res.samples <= len(res.details["k_schedule"]) * cap


def test_matching_temperature_reaches_the_target_on_the_rising_side():
    """The head's temperature makes its mean cross-entropy the original model's: past the
    best-calibrated temperature, where it rises; a target under the minimum gets that."""
    from tarf.methods.tarf_kept_head import matching_temperature

    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 5, (400,), generator=g)
    logits = torch.randn(400, 5, generator=g)
    logits[torch.arange(400), y] += 3.0  # right most of the time
    logits[:40] = torch.randn(40, 5, generator=g) * 4  # and some confidently wrong

    def nll(t: float) -> float:
        return float(torch.nn.functional.cross_entropy(logits / t, y))

    best = matching_temperature(logits, y, 0.0)  # unreachable: the calibrated temperature
    assert nll(best) <= min(nll(best * 0.9), nll(best * 1.1))
    t = matching_temperature(logits, y, nll(best) + 0.3)
    assert t > best and abs(nll(t) - (nll(best) + 0.3)) < 1e-3


def test_kept_head_answers_with_the_kept_labels_only(trained, toy_dataset):
    """The head is fit on D_un alone: a forget class whose label D_un does not carry gets
    probability zero, its rows sum to one, and the record says how often D_f's own label
    is kept."""
    from tarf.methods.tarf_kept_head import kept_head_targets

    model, recipe = trained
    req = UnlearningRequest.from_names(toy_dataset.hierarchy, "cat", "class", "cat")
    data = unlearn_data(toy_dataset, req)
    ctx = _ctx(recipe, toy_dataset, "all-matched")
    probs, record = kept_head_targets(model, data, ctx, torch.arange(len(data.y_forget)))
    cat = CLASSES.index("cat")
    assert probs.shape == (len(data.y_forget), len(CLASSES))
    assert torch.allclose(probs.sum(1), torch.ones(len(probs)))
    assert probs[:, cat].max() == 0 and record["label_kept_pct"] == 0
    assert record["representation"] == "features" and record["temperature"] > 0


def test_kept_head_teaches_instead_of_ascending_in_model_mismatch(toy_dataset):
    """retained_label=kept-head in model mismatch: every D_f label is kept, so nothing is
    ascended (Phase I skipped, Phase II from the first epoch) and D_f's loss stays far
    under the ascent's chance ceiling; the defaults push it to about ln 3."""
    recipe = _toy_recipe()
    req = UnlearningRequest.from_names(toy_dataset.hierarchy, "cat", "superclass", "cat")
    y_super = req.model_labels(toy_dataset.y_train)
    model = train_classifier(toy_dataset.x_train, y_super, 3, recipe, 0, torch.device("cpu")).model
    data = unlearn_data(toy_dataset, req)
    # an epoch's cap of a few Phase II steps (as in the budget test above)
    ctx = dataclasses.replace(_ctx(recipe, toy_dataset, "model-mismatch"), train_size=1200)
    taught = get_method("tarf", retained_label="kept-head", forget_batch_size=16).run(
        model, data, ctx
    )
    pushed = get_method("tarf", forget_batch_size=16).run(model, data, ctx)
    assert taught.details["phases"][0] == "II" and pushed.details["phases"][0] == "I"
    assert taught.details["kept_head"]["taught"] == len(data.y_forget)
    assert "kept_head" not in pushed.details
    assert 0 < taught.epoch_samples <= ctx.epoch_samples()
    with torch.no_grad():
        before = pushed.details["phase1"]["target_nats"]  # ln 3, chance
        loss = torch.nn.functional.cross_entropy(
            taught.model(data.x_forget.float() / 255), data.y_forget
        ).item()
    assert loss < 0.5 * before
