"""Metrics: MIA-efficacy on separable and inseparable confidences, accuracy, Gap."""

import numpy as np
import pytest
import torch

from tarf.metrics import evaluate, gap, mia_efficacy, mia_extrapolated, true_label_confidence
from tarf.request import UnlearningRequest


def test_mia_separable():
    rng = np.random.default_rng(0)
    members = rng.uniform(0.9, 1.0, 500)
    nonmembers = rng.uniform(0.0, 0.3, 500)
    # target data that looks like training data: called member, MIA ~ 0
    assert mia_efficacy(members, nonmembers, rng.uniform(0.92, 1.0, 200)) < 5
    # target data that looks unseen (forgotten): called non-member, MIA ~ 100
    assert mia_efficacy(members, nonmembers, rng.uniform(0.0, 0.2, 200)) > 95


def test_mia_inseparable():
    rng = np.random.default_rng(1)
    members, nonmembers = rng.uniform(0, 1, 1000), rng.uniform(0, 1, 1000)
    score = mia_efficacy(members, nonmembers, rng.uniform(0, 1, 1000))
    assert 20 < score < 80  # no signal: close to chance, far from either extreme


def test_mia_extrapolated_counts_the_target_below_the_attack_s_range():
    rng = np.random.default_rng(2)
    members, nonmembers = rng.uniform(0.9, 1.0, 300), rng.uniform(0.5, 1.0, 300)
    forgotten = np.concatenate([np.zeros(30), rng.uniform(0.6, 1.0, 10)])  # 30 of 40 below
    assert mia_extrapolated(members, nonmembers, forgotten) == pytest.approx(75.0)
    assert mia_extrapolated(members, nonmembers, rng.uniform(0.6, 1.0, 50)) == 0.0
    assert np.isnan(mia_extrapolated(members, nonmembers, np.zeros(0)))


def test_true_label_confidence():
    logits = torch.tensor([[10.0, 0.0], [0.0, 0.0]])
    conf = true_label_confidence(logits, torch.tensor([0, 1]))
    assert conf[0] > 0.99 and conf[1] == pytest.approx(0.5)


def test_gap():
    ref = {"UA": 0.0, "RA": 90.0, "TA": 60.0, "MIA": 100.0}
    assert gap({"UA": 4.0, "RA": 88.0, "TA": 61.0, "MIA": 99.0}, ref) == pytest.approx(2.0)
    assert gap(ref, ref) == 0.0


class Oracle(torch.nn.Module):
    """Predicts the label encoded in pixel (0, 0, 0); wrong on purpose for chosen labels."""

    def __init__(self, n, wrong=()):
        super().__init__()
        self.n, self.wrong = n, set(wrong)

    def forward(self, x):
        y = (x[:, 0, 0, 0] * 255).round().long()
        for w in self.wrong:
            y = torch.where(y == w, (y + 1) % self.n, y)
        return torch.nn.functional.one_hot(y, self.n).float() * 10


def test_evaluate_on_constructed_model(toy_hierarchy):
    y = torch.arange(7).repeat_interleave(20)
    x = torch.zeros(len(y), 1, 4, 4, dtype=torch.uint8)
    x[:, 0, 0, 0] = y.to(torch.uint8)
    req = UnlearningRequest.from_names(toy_hierarchy, "cat", "class", "animals")
    parts = req.partitions(y, y)
    # forgets cat (0) and dog (1), keeps everything else
    m = evaluate(Oracle(7, wrong=(0, 1)), x, y, x, y, parts, torch.device("cpu"), seed=0)
    assert m["UA"] == pytest.approx(100 / 3)  # fox still right: 1 of 3 concept classes
    assert m["RA"] == 100.0 and m["TA"] == 100.0
    mm = UnlearningRequest.from_names(toy_hierarchy, "cat", "superclass", "cat")
    ys = mm.model_labels(y)
    xs = torch.zeros_like(x)
    xs[:, 0, 0, 0] = ys.to(torch.uint8)
    # a superclass model that still predicts "animals" for every animal: UA-F = UA-R = 100
    m2 = evaluate(
        Oracle(3), xs, ys, xs, ys, mm.partitions(y, y), torch.device("cpu"), 0, model_mismatch=True
    )
    assert m2["UA-F"] == 100.0 and m2["UA-R"] == 100.0 and m2["UA"] == 100.0
    # one that moved all animals elsewhere: UA-F = UA-R = 0
    m3 = evaluate(
        Oracle(3, wrong=(0,)),
        xs,
        ys,
        xs,
        ys,
        mm.partitions(y, y),
        torch.device("cpu"),
        0,
        model_mismatch=True,
    )
    assert m3["UA-F"] == 0.0 and m3["UA-R"] == 0.0 and m3["RA"] == pytest.approx(100 * 80 / 120)


def test_diverged_logits_give_zero_confidence_not_a_crash():
    logits = torch.tensor([[float("nan"), 0.0], [2.0, 0.0]])
    conf = true_label_confidence(logits, torch.tensor([0, 0]))
    assert conf[0] == 0.0 and 0.8 < conf[1] < 0.9
    members = np.concatenate([conf, [0.9, 0.95]])
    assert 0.0 <= mia_efficacy(members, np.array([0.1, 0.2, 0.3, 0.2]), conf) <= 100.0
