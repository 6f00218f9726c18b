"""``tarf.audit``: U-LiRA on synthetic Gaussians with a known answer, TPR at low FPR, the
NeurIPS 2023 challenge's epsilon score, the concept probe, and ``tarf audit`` /
``tarf bench --audit`` end to end on the toy dataset (small models, seconds)."""

import csv
import dataclasses
import io
import json
import math

import numpy as np
import pytest
import torch

from tarf import audit, bench
from tarf.audit import measure
from tarf.cache import ModelCache, prepare_dataset
from tarf.cli import main
from tarf.recipes import RECIPES, get_recipe
from tarf.report import AUDIT_COLUMNS

MICRO = dataclasses.replace(get_recipe("tiny"), name="micro", epochs=4)


def gaussians(k, s, shift=0.0, n=400, seed=0):
    """Per-example scores: every example has its own mean; unlearned models are shifted."""
    rng = np.random.default_rng(seed)
    mu = rng.normal(0, 3, n)
    return mu + rng.normal(0, 1, (k, n)), mu + shift + rng.normal(0, 1, (s, n))


# -- scores and U-LiRA -----------------------------------------------------------------------
def test_logit_confidence_is_stable():
    z = torch.randn(6, 5)
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    p = z.double().softmax(1).gather(1, y.view(-1, 1)).flatten()
    assert np.allclose(audit.logit_confidence(z, y), (p.log() - (1 - p).log()).numpy())
    big = torch.tensor([[1000.0, 0.0, 0.0], [0.0, 1000.0, 0.0], [float("nan"), 0.0, 0.0]])
    s = audit.logit_confidence(big, torch.tensor([0, 0, 0]))
    assert s[0] == pytest.approx(1000 - math.log(2)) and s[1] == pytest.approx(-1000)
    assert s[2] == -audit.SCORE_CLIP  # a diverged model: finite and maximally unconfident


@pytest.mark.parametrize(
    "k,s,sided", [(8, 1, "one-sided"), (8, 3, "one-sided"), (8, 8, "two-sided")]
)
def test_lira_identical_vs_shifted(k, s, sided):
    ref, unl = gaussians(k, s)
    t_ref, t_unl, info = audit.lira_statistics(ref, unl)
    same = audit.attack_summary(t_ref, t_unl)
    assert info["statistic"].startswith(sided) and info["std"] == "pooled over examples"
    assert 44 < same["AUC"] < 56 and same["TPR@1%FPR"] < 5  # TPR ~ FPR: chance
    null = audit.null_auc(t_ref)  # each reference in the unlearned model's place
    assert len(null) == k and 40 < np.median(null) < 60
    ref, unl = gaussians(k, s, shift=3.0)
    shifted = audit.attack_summary(*audit.lira_statistics(ref, unl)[:2])
    assert shifted["AUC"] > 90 and shifted["TPR@1%FPR"] > 20
    assert shifted["TPR@0.1%FPR"] <= shifted["TPR@1%FPR"]
    # a shift down is caught as well as a shift up (the statistic is two-sided in the score)
    ref, unl = gaussians(k, s, shift=-3.0)
    assert audit.attack_summary(*audit.lira_statistics(ref, unl)[:2])["AUC"] > 90
    # the direction the AUC cannot tell: the report's score_shift (median, in score units)
    for shift in (-3.0, 0.0, 3.0):
        ref, unl = gaussians(k, s, shift=shift)
        out = audit.summarize(ref, unl, [None] * s, 90.0, 80.0, 90.0, 80.0)
        assert out["score_shift"] == pytest.approx(shift, abs=0.3)


def test_by_class_finds_the_class_that_is_off():
    """A wider concept: one class forgotten too far (shifted down), one left as it was in
    the original (shifted up), one like the references; ``by_class`` names which."""
    k, s, n = 8, 1, 300
    ref, unl = gaussians(k, s, n=n)
    groups = ["boy"] * 100 + ["man"] * 100 + ["woman"] * 100
    unl[:, :100] -= 4.0
    unl[:, 100:200] += 4.0
    out = audit.summarize(ref, unl, [0], 90.0, 80.0, 90.0, 80.0, groups=groups)
    by = out["by_class"]
    assert list(by) == ["boy", "man", "woman"] and by["boy"]["examples"] == 100
    assert by["boy"]["score_shift"] < -3 and by["man"]["score_shift"] > 3
    assert abs(by["woman"]["score_shift"]) < 1
    assert by["boy"]["AUC"] > 90 and by["man"]["AUC"] > 90 and by["woman"]["AUC"] < 75
    # the pooled median hides both: half the examples on each side of the references
    assert abs(out["score_shift"]) < 1
    assert "by_class" not in audit.summarize(ref, unl, [0], 90.0, 80.0, 90.0, 80.0)


def test_lira_leaves_the_scored_model_out():
    ref, unl = gaussians(5, 2, n=50)
    t_ref, t_unl, _ = audit.lira_statistics(ref, unl, pair=[1, None])
    for i in range(5):  # reference i against the fit on the other four, never on itself
        assert np.allclose(
            t_ref[i], audit.gaussian_nll(ref[i], *audit.fit_gaussian(np.delete(ref, i, 0)))
        )
    assert np.allclose(
        t_unl[0], audit.gaussian_nll(unl[0], *audit.fit_gaussian(np.delete(ref, 1, 0)))
    )
    loo = [audit.fit_gaussian(np.delete(ref, i, 0)) for i in range(5)]
    assert np.allclose(t_unl[1], np.mean([audit.gaussian_nll(unl[1], *f) for f in loo], 0))
    # a reference with an outlying score looks like one: it is not in its own fit
    ref[0, 0] += 20
    t_ref, _, _ = audit.lira_statistics(ref, unl)
    assert t_ref[0, 0] > t_ref[1:, 0].max() + 10
    with pytest.raises(ValueError, match="at least 3 references"):
        audit.lira_statistics(ref[:2], unl)


def test_tpr_at_low_fpr():
    labels = np.r_[np.ones(100), np.zeros(1000)]
    perfect = np.r_[np.full(100, 5.0), np.zeros(1000)]
    assert audit.tpr_at_fpr(labels, perfect, 0.001) == 1.0
    rng = np.random.default_rng(1)
    chance = audit.attack_summary(rng.normal(size=(40, 1000)), rng.normal(size=(40, 1000)))
    assert chance["TPR@0.1%FPR"] <= chance["TPR@1%FPR"] < 2.5 and 47 < chance["AUC"] < 53
    # one pair the attack cannot place below a negative: TPR at 0 FPR excludes it
    assert audit.tpr_at_fpr(np.array([1, 1, 0]), np.array([2.0, 0.0, 1.0]), 0.0) == 0.5


# -- the challenge's epsilon score -------------------------------------------------------------
def test_epsilon_from_rates():
    eps = lambda fpr, fnr: float(audit.epsilon_from_rates(np.array([fpr]), np.array([fnr])))  # noqa: E731
    assert eps(0.5, 0.5) == 0.0  # a coin flip: no privacy loss
    assert eps(0.1, 0.2) == pytest.approx(math.log((1 - 1e-5 - 0.2) / 0.1))  # the larger one
    assert eps(0.0, 0.0) == math.inf and eps(1.0, 1.0) == math.inf  # perfect (or reversed) attack
    assert eps(0.0, 0.3) == 0.0  # exactly one zero: the attack is discarded
    assert float(
        audit.epsilon_from_rates(np.array([0.0, 0.1]), np.array([0.3, 0.2]))
    ) == pytest.approx(math.log((1 - 1e-5 - 0.2) / 0.1))
    scores = audit.epsilon_scores(np.array([0.0, 0.3, 0.6, 1.2, math.inf]))
    assert scores.tolist() == [1.0, 1.0, 0.5, 0.25, 2 / 2**13]
    assert audit.utility_adjusted(0.5, 80, 60, 100, 75) == pytest.approx(0.5 * 0.8 * 0.8)


def test_epsilon_identical_vs_separated():
    ref, _ = gaussians(20, 1, n=100)
    eps = audit.per_example_epsilon(ref, ref.copy())  # the very same outputs: FPR + FNR = 1
    assert (eps == 0).all() and audit.forgetting_quality(eps) == 1.0  # the top score
    # same distribution, 100 models each: epsilon is small but not 0 (the extreme
    # thresholds compare counts of a few models); a shift lowers F steadily
    f = [audit.forgetting_quality(audit.per_example_epsilon(*gaussians(100, 100, sh, n=200)))
         for sh in (0.0, 1.0, 3.0)]  # fmt: skip
    assert f[0] > 0.15 and f[0] > 4 * f[1] and f[1] > 4 * f[2]
    for shift in (10.0, -10.0):  # more or less confident than retrained: both are caught
        eps = audit.per_example_epsilon(*gaussians(100, 100, shift=shift, n=200))
        assert np.isinf(eps).all() and audit.forgetting_quality(eps) == pytest.approx(2 / 2**13)
    # one unlearned model: epsilon is 0 inside the references' range and infinite outside,
    # so an ideal unlearner scores about 1 - 2 / (K + 1)
    eps = audit.per_example_epsilon(*gaussians(8, 1, n=2000))
    assert set(np.unique(eps)) <= {0.0, math.inf}
    assert abs(audit.forgetting_quality(eps) - (1 - 2 / 9)) < 0.05


# -- the concept probe ------------------------------------------------------------------------
def test_probe_separable_and_not():
    rng = np.random.default_rng(0)
    neg = rng.normal(size=(600, 16))
    pos = rng.normal(size=(200, 16)) + 2.5 * np.eye(16)[0]
    sep = audit.concept_probe(pos, neg, seed=0)
    assert sep["balanced_accuracy"] > 85 and sep["AUC"] > 95 and sep["n_test"] == 400
    same = audit.concept_probe(rng.normal(size=(200, 16)), neg, seed=0)
    assert 38 < same["balanced_accuracy"] < 62 and 38 < same["AUC"] < 62
    assert math.isnan(audit.concept_probe(pos[:1], neg)["AUC"])


# -- end to end -----------------------------------------------------------------------------
@pytest.fixture
def toy(toy_dataset, monkeypatch):
    """The toy dataset (and the micro recipe) loadable by name, as in test_bench."""
    monkeypatch.setitem(RECIPES, "micro", MICRO)
    monkeypatch.setitem(bench._DATASETS, ("toy", None, None), toy_dataset)
    return toy_dataset


def test_tarf_audit_end_to_end(toy, tmp_path, capsys, monkeypatch):
    out = tmp_path / "audit.json"
    args = ["audit", "--dataset", "toy", "--forget", "cat", "--concept", "animals", "--task",
            "target-mismatch", "--method", "ft", "--references", "3", "--recipe", "tiny",
            "--seeds", "0,3", "--device", "cpu", "--out", str(out), "--prior", "2"]  # fmt: skip
    assert main(args) == 0

    def not_standard(constant: str) -> None:
        raise AssertionError(f"{constant} in the audit file: not standard JSON")

    res = json.loads(out.read_text(), parse_constant=not_standard)
    n_target = 3 * 40  # cat, dog, fox
    assert res["task"] == "target-mismatch" and res["seeds"] == [0, 3]
    assert (
        res["references"]["seeds"] == [0, 1, 2] and len(set(res["references"]["model_keys"])) == 3
    )
    pooled = res["pooled"]
    assert pooled["examples"] == n_target and pooled["statistic"].startswith("one-sided")
    assert pooled["unlearned_models"] == 2 and len(res["runs"]) == 2
    assert all("samples" in r["record"] for r in res["runs"])  # what the method did
    # per class of the concept (cat, dog, fox: 40 train samples each)
    assert {c: v["examples"] for c, v in pooled["by_class"].items()} == {
        "cat": 40, "dog": 40, "fox": 40
    }  # fmt: skip
    for a in [pooled] + [r["audit"] for r in res["runs"]]:
        assert 0 <= a["AUC"] <= 100 and 0 <= a["TPR@0.1%FPR"] <= a["TPR@1%FPR"] <= 100
        assert a["null_AUC"]["min"] <= a["null_AUC"]["median"] <= a["null_AUC"]["max"]
        assert 0 < a["F"] <= 1 and sum(a["epsilon"]["bin_counts"]) == n_target
        assert a["score"] == pytest.approx(a["F"] * a["RA_ratio"] * a["TA_ratio"])
        for who in ("unlearned", "retrained"):
            assert 0 <= a["probe"][who]["balanced_accuracy"] <= 100
    # the concept is linearly readable from a retrained model's features on this toy data
    assert pooled["probe"]["retrained"]["AUC"] > 70
    captured = capsys.readouterr()
    table = captured.out
    assert "U-LiRA AUC" in table and "pooled" in table and "one-sided" in table
    # the unlearned models are read back from temporary files, deleted at once: unnamed
    assert "unlearned model written" not in captured.err and "original model" in captured.err
    assert "--prior is read by TARF only; ft does not use it" in captured.err
    assert "by class (pooled), score shift / U-LiRA AUC: cat " in table
    assert "statistic: one-sided" in table  # every row's test the same: said once
    from tarf.audit.text import _statistics

    mixed = {"runs": [{"seed": s, "audit": {"statistic": "one-sided: x"}} for s in (0, 1)],
             "pooled": {"statistic": "two-sided: y"}}  # fmt: skip
    assert _statistics(mixed) == "per seed one-sided: x; pooled two-sided: y"
    # the references' statistics are cached (seeds 0-2, plus 3: seed 3's own reference)
    stats = sorted((ModelCache().root.parent / "audit").glob("*.json"))
    assert len(stats) == 4
    # reference_stats looks model_stats up in the module that defines both
    monkeypatch.setattr(measure, "model_stats", lambda *a, **k: pytest.fail("not cached"))
    req = bench.build_request(toy.hierarchy, "cat", "animals", "target-mismatch")
    tiny = get_recipe("tiny", "toy")
    again = audit.reference_stats(prepare_dataset(toy, tiny), req, tiny, 1, torch.device("cpu"))
    assert again["model_key"] == res["references"]["model_keys"][1]


def test_bench_audit_columns_and_resume(toy, tmp_path):
    grid = bench.Grid("toy", "cat", "animals", ("all-matched",), ("ft",), (0,), "micro", audit=3)
    plan = bench.make_plan(grid, tmp_path)
    refs = sorted(m.job.name for m in plan.models if m.job.role == "retrained")
    assert refs == [
        "retrained_all-matched_s0",
        "retrained_all-matched_s1",
        "retrained_all-matched_s2",
    ]
    assert all(
        m.job.audit and "ft_all-matched_s0" in m.users
        for m in plan.models
        if m.job.role == "retrained"
    )
    assert "audit statistics to compute" in bench.format_plan(plan, tmp_path, 1)
    outcome = bench.run_plan(plan, tmp_path, bench.LocalBackend(1), log=lambda _m: None)
    assert outcome.ok == ["ft_all-matched_s0"] and not outcome.failed
    rep = json.loads((tmp_path / "ft_all-matched_s0.json").read_text())
    assert rep["audit"]["references"] == 3 and rep["audit"]["reference_seeds"] == [0, 1, 2]
    bench.write_results(tmp_path)
    header = next(csv.reader(io.StringIO((tmp_path / "results.csv").read_text())))
    assert header[header.index("config_changes") + 1 :] == list(AUDIT_COLUMNS)
    assert "U-LiRA AUC" in (tmp_path / "results.md").read_text()
    # done with the audit: skipped; without one (or with other K): to be redone
    assert bench.make_plan(grid, tmp_path).todo() == []
    assert bench.make_plan(dataclasses.replace(grid, audit=4), tmp_path).todo() != []
    del rep["audit"]
    (tmp_path / "ft_all-matched_s0.json").write_text(json.dumps(rep))
    assert [r.name for r in bench.make_plan(grid, tmp_path).todo()] == ["ft_all-matched_s0"]
    assert bench.make_plan(dataclasses.replace(grid, audit=0), tmp_path).todo() == []
    with pytest.raises(bench.BenchError, match="at least 3"):
        bench.make_plan(dataclasses.replace(grid, audit=2), tmp_path)


def test_lines_naming_a_temporary_file_are_hidden(tmp_path):
    seen = []
    log = audit.hiding(tmp_path / "unlearned.pt", seen.append)
    log(f"unlearned model written to {tmp_path / 'unlearned.pt'}")
    log("original model: test accuracy 99.00% (cached)")
    assert seen == ["original model: test accuracy 99.00% (cached)"]


def test_finite_or_none_makes_standard_json():
    from tarf.io import finite_or_none

    data = {"a": float("nan"), "b": [1.0, float("inf"), {"c": -float("inf")}], "d": (2, "x")}
    assert finite_or_none(data) == {"a": None, "b": [1.0, None, {"c": None}], "d": [2, "x"]}
    json.dumps(finite_or_none(data), allow_nan=False)  # raises on a NaN left behind
