"""``--prior auto``: TARF estimates how much of the concept hides in D_un (tarf.identify).

The rule on constructed signals (clear outliers, pure noise, rescaled, a real CIFAR-100
ranking), its use inside TARF at class and instance level, the request and the CLI.
"""

import dataclasses
import json

import numpy as np
import pytest
import torch

import tarf.methods.tarf_probe as tarf_probe
from tarf.cli import main
from tarf.identify import (
    auto_count,
    concept_can_hide,
    forget_calibrated_cut,
    gap_threshold,
    largest_gap,
    log_icon,
)
from tarf.methods import get_method
from tarf.methods.base import UnlearnContext
from tarf.recipes import get_recipe
from tarf.request import AUTO, UnlearningRequest
from tarf.run import unlearn_data

# Loss rises after Phase I on CIFAR-100 (cpu recipe, forget boy + girl, 98 classes of
# D_un), from docs/results/cifar100/tarf_target-mismatch_s0.json: woman, baby, hamster,
# man, then chimpanzee after a 2.3-nat gap, then a long tail.
CIFAR_LOSS_RISE = [
    6.85, 6.49, 5.59, 5.54, 3.21, 3.21, 3.17, 3.07, 3.03, 3.0, 2.92, 2.9, 2.83, 2.82, 2.81,
    2.71, 2.68, 2.62, 2.56, 2.55, 2.52, 2.48, 2.48, 2.38, 2.38, 2.38, 2.38, 2.35, 2.26, 2.24,
    2.19, 2.09, 2.07, 2.05, 2.04, 2.01, 2.0, 1.98, 1.95, 1.93, 1.89, 1.84, 1.82, 1.81, 1.71,
    1.69, 1.67, 1.65, 1.62, 1.59, 1.58, 1.55, 1.52, 1.5, 1.48, 1.42, 1.41, 1.39, 1.36, 1.34,
    1.33, 1.33, 1.3, 1.27, 1.25, 1.22, 1.2, 1.15, 1.13, 1.11, 1.07, 1.05, 1.05, 1.04, 0.97,
    0.93, 0.84, 0.83, 0.83, 0.75, 0.74, 0.65, 0.65, 0.59, 0.58, 0.57, 0.56, 0.44, 0.43, 0.42,
    0.41, 0.4, 0.29, 0.18, 0.06, 0.01, 0.01, -0.84,
]  # fmt: skip
# The same run's accuracy drops (points): broad, no class stands apart.
CIFAR_ACC_DROP = [76, 74, 70, 65, 65, 63, 63, 62, 62, 59, 59, 57, 56, 56, 56] + list(
    np.linspace(55, -17, 83)
)


def test_two_clear_outliers_give_n_2():
    rng = np.random.default_rng(0)
    for m in (9, 20, 98):
        v = rng.normal(0, 1, m)
        v[[3, 7]] = [9.0, 8.5]
        d = largest_gap(v)
        assert d.n == 2 and d.margin > 0, (m, d)
        assert d.above == pytest.approx(8.5) and d.below == pytest.approx(np.sort(v)[-3])


def test_noise_alone_gives_n_0_nearly_always():
    """The explicit null: on Gaussian noise the rule fires in about alpha = 1 % of draws."""
    rng = np.random.default_rng(1)
    for m in (9, 98):
        hits = sum(largest_gap(rng.normal(0, 1, m)).n > 0 for _ in range(400))
        assert hits / 400 <= 0.03, (m, hits)


def test_scale_and_shift_free():
    rng = np.random.default_rng(2)
    v = np.r_[rng.normal(0, 1, 40), [7.0, 6.0, 6.5]]
    a, b, c = largest_gap(v), largest_gap(100 * v), largest_gap(0.01 * v - 3)
    assert a.n == b.n == c.n == 3
    assert a.statistic == pytest.approx(b.statistic) == pytest.approx(c.statistic)


def test_real_cifar_signal():
    """Loss rises: the four classes above the gap (woman, baby, hamster, man); accuracy
    drops of the same run: nothing stands apart, n = 0 (and the same answer in nats x 100)."""
    d = largest_gap(CIFAR_LOSS_RISE)
    assert d.n == 4 and (d.above, d.below) == (5.54, 3.21) and d.margin > 0.3
    assert largest_gap([100 * v for v in CIFAR_LOSS_RISE]).n == 4
    assert largest_gap(CIFAR_ACC_DROP).n == 0


def test_nan_ignored_and_degenerate_inputs():
    v = torch.tensor([float("nan"), 0.1, 0.0, 9.0, 0.05, -0.1, 0.02, 0.08, 0.03])
    assert largest_gap(v).n == 1 and largest_gap(v).m == 8
    assert largest_gap([1.0, 5.0]).n == 0  # too few values to tell noise from signal
    assert largest_gap([2.0] * 10).n == 0  # all equal
    assert gap_threshold(98) < gap_threshold(9) < gap_threshold(4)  # fewer values, more doubt


def test_instance_level_beta_between_two_populations():
    """Two clearly separated I_con populations: the cut falls in the gap between them."""
    g = torch.Generator().manual_seed(0)
    bulk = torch.exp(torch.randn(3000, generator=g) * 0.5 - 4)  # around 0.02
    concept = torch.exp(torch.randn(150, generator=g) * 0.3)  # around 1
    icon = torch.cat([bulk, concept])[torch.randperm(3150, generator=g)]
    d = largest_gap(log_icon(icon))
    assert d.n == 150
    beta = float(icon.topk(d.n).values[-1])
    assert float(bulk.max()) < beta <= float(concept.min())
    assert largest_gap(log_icon(icon * 1000)).n == 150  # I_con's unit does not matter
    assert largest_gap(log_icon(bulk)).n == 0  # one population: nothing set aside


def test_task_decides_whether_anything_can_hide():
    assert concept_can_hide("target-mismatch") and concept_can_hide("data-mismatch")
    assert concept_can_hide("scenario-5")
    assert not concept_can_hide("all-matched") and not concept_can_hide("model-mismatch")


def test_auto_count_takes_the_largest_gap_when_the_task_says_the_concept_is_wider():
    """A weak group (a 0.9-SD gap, below the noise threshold): the test declines, yet
    in target mismatch the task rules out n = 0 and the candidate cut is taken; in all
    matched the task says 0; with floor "none" the decline stands."""
    rng = np.random.default_rng(1)
    v = np.concatenate([rng.normal(0, 1, 60), [2.9, 2.8, 2.75]])
    weak = largest_gap(v)
    assert weak.n == 0 and weak.cut > 0 and weak.margin < 0
    assert auto_count(weak, "target-mismatch") == (weak.cut, "task floor")
    assert auto_count(weak, "data-mismatch")[0] == weak.cut
    assert auto_count(weak, "all-matched") == (0, "task")
    assert auto_count(weak, "target-mismatch", floor="none") == (0, "data")
    strong = largest_gap(np.concatenate([rng.normal(0, 1, 60), [9.0, 8.5]]))
    assert auto_count(strong, "target-mismatch") == (2, "data")
    assert auto_count(largest_gap([2.0] * 10), "target-mismatch") == (0, "data")  # no signal


def test_request_with_prior_auto(toy_hierarchy, toy_dataset):
    h = toy_hierarchy
    r = UnlearningRequest.from_names(h, "cat", "class", prior_classes="AUTO")
    assert r.prior_classes == AUTO and r.prior(toy_dataset.y_train).auto
    # an unnamed concept that TARF is to find is wider than the data: target mismatch
    assert r.task.name == "target-mismatch" and not r.has_reference
    assert UnlearningRequest.from_names(h, "cat", "superclass", prior_classes="auto").task.name == (
        "data-mismatch"
    )
    # with a named target: auto overrides the count, the target still defines D_t
    named = UnlearningRequest.from_names(h, "cat", "class", "animals", prior_classes="auto")
    assert named.prior(toy_dataset.y_train).num_classes == AUTO
    assert len(named.partitions(toy_dataset.y_train, toy_dataset.y_test).target) == 120
    with pytest.raises(ValueError, match="'auto'"):
        UnlearningRequest.from_names(h, "cat", "class", prior_classes="many")


# -- inside TARF -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(toy_dataset):
    from tarf.training import train_classifier

    recipe = dataclasses.replace(get_recipe("tiny"), epochs=4, flip=False, crop_pad=0)
    res = train_classifier(
        toy_dataset.x_train, toy_dataset.y_train, 7, recipe, 0, torch.device("cpu")
    )
    return res.model, recipe


def _ctx(recipe, ds, task):
    return UnlearnContext(torch.device("cpu"), recipe, 0, task, "toy", len(ds.y_train))


def _replay(monkeypatch, module, name, first, then):
    """``module.name`` returns ``first`` (at θ_o), then ``then`` (after Phase I) on every
    later call (run() identifies a second time after stop_after_identification)."""
    calls = [first]
    monkeypatch.setattr(module, name, lambda *a, **k: calls.pop() if calls else then)


@pytest.mark.parametrize("task", ["target-mismatch", "all-matched"])
def test_tarf_class_level_auto(trained, toy_dataset, monkeypatch, task):
    """Planted signal: dog and fox rise far above the rest after Phase I. Auto sets them
    aside in target mismatch; in all matched the task says nothing can hide (n = 0), and
    the data's estimate is still recorded."""

    model, recipe = trained
    req = UnlearningRequest.from_names(toy_dataset.hierarchy, "cat", "class", prior_classes="auto")
    data = unlearn_data(toy_dataset, req)
    acc0, loss0 = torch.full((7,), 90.0), torch.full((7,), 0.3)
    acc0[0] = loss0[0] = float("nan")  # cat is not in D_un
    rise = torch.tensor([0, 2.0, 1.8, 0.05, -0.02, 0.01, 0.03])
    _replay(monkeypatch, tarf_probe, "class_stats", (acc0, loss0), (acc0 - 10 * rise, loss0 + rise))
    res = get_method("tarf", stop_after_identification=True, class_signal="loss").run(
        model, data, _ctx(recipe, toy_dataset, task)
    )
    ident = res.identification
    assert ident["n_source"] == "auto" and ident["auto"]["data_estimate"] == 2
    assert list(ident["top10"])[:2] == ["dog", "fox"] and ident["top10"]["dog"] == 2.0
    assert ident["auto"]["margin"] > 0 and ident["auto"]["threshold"] > 0
    if task == "target-mismatch":
        assert ident["n"] == 2 and sorted(ident["classes"]) == ["dog", "fox"]
        assert ident["auto"]["decided_by"] == "data" and ident["set_aside_samples"] == 80
        assert ident["auto"]["gap_between"] == ["fox", "car"]
    else:
        assert ident["n"] == 0 and ident["classes"] == [] and ident["auto"]["decided_by"] == "task"


@pytest.mark.parametrize("floor", ["largest-gap", "none"])
def test_tarf_class_level_auto_weak_signal(trained, toy_dataset, monkeypatch, floor):
    """dog rises a little above a broad bulk: the gap test declines; in target mismatch
    the default floor still sets dog aside (the concept is wider than D_f), "none" not."""

    model, recipe = trained
    req = UnlearningRequest.from_names(toy_dataset.hierarchy, "cat", "class", prior_classes="auto")
    data = unlearn_data(toy_dataset, req)
    acc0, loss0 = torch.full((7,), 90.0), torch.full((7,), 0.3)
    acc0[0] = loss0[0] = float("nan")
    rise = torch.tensor([0, 1.0, 0.6, 0.4, 0.2, 0.1, 0.0])
    _replay(monkeypatch, tarf_probe, "class_stats", (acc0, loss0), (acc0 - 10 * rise, loss0 + rise))
    res = get_method(
        "tarf", stop_after_identification=True, auto_floor=floor, class_signal="loss"
    ).run(model, data, _ctx(recipe, toy_dataset, "target-mismatch"))
    ident = res.identification
    assert ident["auto"]["data_estimate"] == 0 and ident["auto"]["margin"] < 0
    if floor == "largest-gap":
        assert ident["n"] == ident["auto"]["cut"] >= 1 and ident["classes"][0] == "dog"
        assert ident["auto"]["decided_by"] == "task floor" and "declined" in ident["auto"]["why"]
    else:
        assert ident["n"] == 0 and ident["classes"] == []


def test_tarf_instance_level_auto(trained, toy_dataset, monkeypatch):

    model, recipe = trained
    req = UnlearningRequest.from_names(toy_dataset.hierarchy, "cat", "class", prior_classes="auto")
    data = unlearn_data(toy_dataset, req)
    n = len(data.y_remain)
    g = torch.Generator().manual_seed(0)
    before = torch.rand(n, generator=g)
    delta = torch.exp(torch.randn(n, generator=g) * 0.3 - 5)
    planted = data.y_remain == 1  # dog: 40 samples whose loss jumps
    delta[planted] = torch.exp(torch.randn(int(planted.sum()), generator=g) * 0.3)
    _replay(monkeypatch, tarf_probe, "per_sample_loss", before, before + delta)
    res = get_method(
        "tarf", identification="instance", auto_instance_rule="gap", stop_after_identification=True
    ).run(model, data, _ctx(recipe, toy_dataset, "target-mismatch"))
    ident = res.identification
    assert ident["n_source"] == "auto" and ident["set_aside_samples"] == 40
    assert ident["fraction"] == pytest.approx(40 / n)
    assert float(delta[~planted].max()) < ident["beta"] <= float(delta[planted].min()) + 1e-6


def test_auto_does_not_depend_on_the_target(trained, toy_dataset):
    """No leakage: with prior auto, requests that differ only in the ground-truth target
    hand TARF the same inputs, so identification is identical."""
    model, recipe = trained
    h = toy_dataset.hierarchy
    idents = []
    for target in ("cat", "animals"):
        req = UnlearningRequest.from_names(h, "cat", "class", target, prior_classes="auto")
        data = unlearn_data(toy_dataset, req)
        res = get_method("tarf", phase1="pass", stop_after_identification=True, k=1.0, lr=0.05).run(
            model, data, _ctx(recipe, toy_dataset, "target-mismatch")
        )
        idents.append(res.identification)
    assert idents[0] == idents[1]


def test_cli_unlearn_with_prior_auto(capsys, tmp_path):
    out = tmp_path / "r.json"
    code = main(
        ["unlearn", "--dataset", "digits", "--recipe", "tiny", "--model-labels", "class",
         "--forget", "1", "--prior", "auto", "--out", str(out)]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    rep = json.loads(out.read_text())
    ident = rep["identification"]
    assert rep["request"]["prior"] == "auto" and rep["task"] == "target-mismatch"
    assert ident["n_source"] == "auto" and ident["auto"]["decided_by"] in ("data", "task floor")
    assert ident["n"] >= 1  # target mismatch: the concept is wider than D_f
    assert ident["n"] == len(ident["classes"]) and len(ident["top10"]) == 9
    assert {"statistic", "threshold", "margin"} <= set(ident["auto"])
    assert "(auto n=" in captured.out and rep["reference"] is None
    with pytest.raises(SystemExit):
        main(["unlearn", "--dataset", "digits", "--model-labels", "class", "--forget", "1",
              "--prior", "some"])  # fmt: skip
    assert "expected a number >= 0 or 'auto'" in capsys.readouterr().err


def test_forget_calibrated_cut_on_a_continuum():
    """No gap anywhere (one smooth population with a concept bump at its top): the gap
    rule declines, the cut calibrated on D_f's own I_con finds the bump; without a
    concept, or when Phase I moved nothing, it sets (almost) nothing aside."""
    g = torch.Generator().manual_seed(0)
    bulk = torch.exp(torch.randn(9700, generator=g) * 0.8 - 0.5)
    concept = torch.exp(torch.randn(300, generator=g) * 0.25 + 2.0)
    icon_forget = torch.exp(torch.randn(1000, generator=g) * 0.25 + 2.0)
    icon = torch.cat([bulk, concept])
    truth = torch.arange(10000) >= 9700
    assert largest_gap(log_icon(icon)).n == 0
    cut = forget_calibrated_cut(icon, icon_forget, 0.05)
    chosen = icon >= cut["beta"]
    assert cut["n"] == int(chosen.sum()) and "declined" not in cut
    assert (chosen & truth).sum() / chosen.sum() > 0.6 and (chosen & truth).sum() / 300 > 0.9
    assert forget_calibrated_cut(bulk, icon_forget, 0.05)["n"] < 0.01 * len(bulk)
    assert "did not change" in forget_calibrated_cut(icon, torch.zeros(50))["declined"]
    # D_f no more disturbed than D_un: the cut would take most of it, declined
    low = forget_calibrated_cut(icon, torch.exp(torch.randn(500, generator=g) - 3))
    assert low["n"] == 0 and "not set apart" in low["declined"]


def test_tarf_instance_auto_calibrated_on_forget_data(trained, toy_dataset, monkeypatch):
    """TARF-I's default auto rule: D_f's loss change (planted around e) sets β; the
    planted dog samples (around e too) are set aside, the bulk (around e^-5) is not."""
    import tarf.methods.tarf as tarf_mod

    model, recipe = trained
    req = UnlearningRequest.from_names(toy_dataset.hierarchy, "cat", "class", prior_classes="auto")
    data = unlearn_data(toy_dataset, req)
    g = torch.Generator().manual_seed(1)
    planted = data.y_remain == 1
    jump = lambda n: torch.exp(torch.randn(n, generator=g) * 0.2 + 1)  # noqa: E731
    delta = torch.exp(torch.randn(len(planted), generator=g) * 0.3 - 5)
    delta[planted] = jump(int(planted.sum()))
    deltas = {len(data.y_remain): delta, len(data.y_forget): jump(len(data.y_forget))}
    seen: set[int] = set()

    def fake_loss(model, x, y, ctx):  # θ_o: zeros; after Phase I: the planted change
        n = len(y)
        after = n in seen
        seen.add(n)
        return deltas[n] if after else torch.zeros(n)

    monkeypatch.setattr(tarf_probe, "per_sample_loss", fake_loss)
    monkeypatch.setattr(
        tarf_mod.torch, "randperm", lambda n, generator=None, **kw: torch.arange(n, **kw)
    )
    res = get_method("tarf", identification="instance", stop_after_identification=True).run(
        model, data, _ctx(recipe, toy_dataset, "target-mismatch")
    )
    ident = res.identification
    auto = ident["auto"]
    assert (
        auto["rule"].startswith("samples of D_un at least as disturbed")
        and auto["quantile"] == 0.05
    )
    assert float(delta[~planted].max()) < auto["beta"] <= float(delta[planted].max())
    assert 0.8 * planted.sum() <= ident["set_aside_samples"] <= planted.sum()
