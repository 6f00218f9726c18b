"""Random forgetting (the task ``random``): D_f a seeded fraction of the whole training
set, the reference retrained without it, every method through the one run path, the
command line and the bench. Toy data and a 4-epoch recipe (docs/design.md, "Label
domains and tasks"; docs/guide.md, "Random forgetting")."""

from __future__ import annotations

import dataclasses
import json
import textwrap

import pytest
import torch

import tarf
from tarf import bench
from tarf.cache import ModelCache, model_key, prepare_dataset
from tarf.cli import main
from tarf.domains import RANDOM, RANDOM_FRACTION, Level, target_is_data
from tarf.methods import METHODS, get_method
from tarf.metrics import evaluate
from tarf.recipes import RECIPES, get_recipe
from tarf.report import request_label
from tarf.request import UnlearningRequest
from tarf.run import run_request

MICRO = dataclasses.replace(get_recipe("tiny"), name="micro", epochs=4)
CPU = torch.device("cpu")


@pytest.fixture
def toy(toy_dataset, monkeypatch):
    """The toy dataset and the micro recipe, loadable by name (bench and CLI)."""
    monkeypatch.setitem(RECIPES, "micro", MICRO)
    monkeypatch.setitem(bench._DATASETS, ("toy", None, None), toy_dataset)
    monkeypatch.setattr("tarf.cli.common.load_dataset", lambda *a, **k: toy_dataset)
    return toy_dataset


# -- the request and its partitions -----------------------------------------------------------
def test_the_task_in_the_taxonomy(toy_hierarchy):
    req = UnlearningRequest.random(toy_hierarchy)
    t = req.task
    assert (t.name, t.case, t.comment) == (RANDOM, 3, "random forgetting")
    assert (t.data, t.model, t.target) == (Level.SUBSET, Level.CLASS, Level.SUBSET)
    assert req.forget_fraction == RANDOM_FRACTION == 0.1 and req.subset_seed == 0
    assert not t.is_main and target_is_data(RANDOM) and req.has_reference
    # L_T ≺ L_M, but D_t = D_f and D_ar = D_r: no UA-F / UA-R split
    assert t.target_finer_than_model and not t.ua_split
    assert "random forgetting" in req.describe() and "10%" in req.describe()


def test_the_draw_is_seeded_the_fraction_and_spans_classes(toy_dataset):
    h, y, yt = toy_dataset.hierarchy, toy_dataset.y_train, toy_dataset.y_test
    n = len(y)

    def forget(fraction=0.1, seed=0):
        return UnlearningRequest.random(h, fraction, seed).partitions(y, yt).forget

    f = forget()
    assert len(f) == round(0.1 * n) == 28
    assert torch.equal(f, forget())  # seeded: the same samples every time
    assert not torch.equal(f, forget(seed=1))  # another seed, another draw
    assert len(forget(0.25)) == round(0.25 * n)
    # drawn from the whole set, not per class: several classes, unequal counts
    counts = torch.bincount(y[f], minlength=h.num_classes)
    assert (counts > 0).sum() >= 4 and counts.max() > counts[counts > 0].min()
    assert set(y[forget(0.5)].tolist()) == set(range(h.num_classes))
    # not the sub-set level's part of each class: that one is stratified
    every = ",".join(h.class_names)
    part = UnlearningRequest.from_names(h, every, "class", None, forget_fraction=0.1)
    assert not torch.equal(part.partitions(y, yt).forget, f)


def test_partitions_are_disjoint_cover_the_data_and_hide_nothing(toy_dataset):
    h, y, yt = toy_dataset.hierarchy, toy_dataset.y_train, toy_dataset.y_test
    req = UnlearningRequest.random(h, 0.2, seed=3)
    p = req.partitions(y, yt)
    f, un = set(p.forget.tolist()), set(p.unlearn.tolist())
    assert not f & un and f | un == set(range(len(y)))
    assert torch.equal(p.target, p.forget) and len(p.pseudo_remaining) == 0
    assert torch.equal(p.remaining, p.unlearn)
    # no test class is forgotten: TA on the whole test set, UA on D_f itself
    assert len(p.test_target) == 0 and torch.equal(p.test_remaining, torch.arange(len(yt)))
    prior = req.prior(y)
    assert prior.num_classes == 0 and prior.fraction == 0.0 and not prior.auto


def test_contradictions_are_refused(toy_hierarchy):
    h = toy_hierarchy
    cases = [
        (dict(forget="cat"), "drop --forget"),
        (dict(target="cat"), "drop --target"),
        (dict(prior=2), "--prior 2 contradicts random forgetting"),
        (dict(model_labels="superclass"), "--model-labels class"),
        (dict(forget_fraction=1.0), "between 0 and 1"),
        (dict(forget_seed=-1), "--forget-seed must be an integer >= 0"),
    ]
    for kw, message in cases:
        with pytest.raises(ValueError, match=message):
            tarf.make_request(h, task=RANDOM, **kw)
    # a prior of 0 or auto says nothing against it
    assert tarf.make_request(h, task=RANDOM, prior=0).task.name == RANDOM
    assert tarf.make_request(h, task=RANDOM, prior="auto").prior_classes == "auto"
    with pytest.raises(ValueError, match="only 'random'"):
        tarf.make_request(h, "cat", task="all-matched")
    with pytest.raises(ValueError, match="task='random'"):
        tarf.make_request(h)
    # a draw's seed needs a draw
    with pytest.raises(ValueError, match="--forget-seed draws"):
        tarf.make_request(h, "cat", "cat", forget_seed=1)
    api = tarf.make_request(h, task=RANDOM, forget_fraction=0.2, forget_seed=4)
    assert (api.forget_fraction, api.subset_seed, api.random_forgetting) == (0.2, 4, True)


def test_metrics_ua_on_the_forgotten_samples_ta_on_the_whole_test_set(toy_dataset):
    """A model that always says class 0: UA is the share of 0s in D_f, TA in all of test."""

    class Zero(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.one_hot(torch.zeros(len(x), dtype=torch.long), 7).float()

    ds = toy_dataset
    req = UnlearningRequest.random(ds.hierarchy, 0.3)
    p = req.partitions(ds.y_train, ds.y_test)
    m = evaluate(Zero(), ds.x_train, ds.y_train, ds.x_test, ds.y_test, p, CPU, 0, req.task.ua_split)
    share = lambda y: 100.0 * (y == 0).float().mean().item()  # noqa: E731
    assert m["UA"] == pytest.approx(share(ds.y_train[p.forget]))
    assert m["RA"] == pytest.approx(share(ds.y_train[p.unlearn]))
    assert m["TA"] == pytest.approx(share(ds.y_test)) == pytest.approx(100 / 7)
    assert "UA-F" not in m and 0 <= m["MIA"] <= 100


# -- the reference in the model cache --------------------------------------------------------
def test_the_references_cache_key_is_its_own(toy_dataset):
    ds = prepare_dataset(toy_dataset, MICRO)
    h = ds.hierarchy
    everything = torch.arange(len(ds.y_train))

    def ref_key(req):
        return model_key(ds, req, req.partitions(ds.y_train, ds.y_test).remaining, MICRO, 0)

    rnd = UnlearningRequest.random(h)
    key = ref_key(rnd)
    assert key == ref_key(UnlearningRequest.random(h, 0.1, 0))  # the same draw: shared
    draws = {
        key,
        ref_key(UnlearningRequest.random(h, 0.2)),  # another fraction
        ref_key(UnlearningRequest.random(h, 0.1, 1)),  # another seed of the draw
    }
    tasks = {
        ref_key(bench.build_request(h, "cat", "animals", t)) for t in bench.TASKS if t != RANDOM
    }
    assert len(draws) == 3 and not draws & tasks
    assert model_key(ds, rnd, everything, MICRO, 0) not in draws  # nor the original's
    # the original is the all-matched one: one model for both tasks
    am = bench.build_request(h, "cat", "animals", "all-matched")
    assert model_key(ds, rnd, everything, MICRO, 0) == model_key(ds, am, everything, MICRO, 0)


# -- every method through the run path --------------------------------------------------------
@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    return ModelCache(tmp_path_factory.mktemp("cache") / "models")


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_runs_on_the_random_task(name, toy_dataset, shared_cache):
    req = UnlearningRequest.random(toy_dataset.hierarchy)
    rep = run_request(toy_dataset, req, get_method(name), MICRO, 0, CPU, shared_cache,
                      log=lambda *_: None)  # fmt: skip
    assert rep["task"] == RANDOM and rep["method"] == name
    assert rep["case"] == {"table4_no": 3, "comment": "random forgetting", "L_D": "sub-set",
                           "L_M": "class", "L_T": "sub-set"}  # fmt: skip
    assert rep["request"] == {"forget": [], "target": None, "model_labels": "class",
                              "prior": 0, "forget_fraction": 0.1, "forget_seed": 0}  # fmt: skip
    sizes = rep["partition_sizes"]
    assert sizes["forget"] == sizes["target"] == 28 and sizes["remaining"] == 280 - 28
    assert sizes["test_remaining"] == len(toy_dataset.y_test) and sizes["test_target"] == 0
    m = rep["metrics"]
    assert all(m[k] is not None for k in ("UA", "RA", "TA", "MIA", "Gap", "RTE_s"))
    assert "UA-F" not in m and rep["reference"] is not None
    assert rep["reference"]["train_s"] > 0 and not rep["notes"]
    if name == "tarf":  # a zero prior: nothing to identify, and TARF says so
        assert rep["identification"]["n"] == 0 and "skipped" in rep["identification"]
    assert request_label(rep) == "random 0.1 of the training set -> D_f"


def test_a_forget_set_of_few_samples_gets_a_note(toy_dataset, shared_cache):
    req = UnlearningRequest.random(toy_dataset.hierarchy, 0.05)
    rep = run_request(toy_dataset, req, get_method("ft"), MICRO, 0, CPU, shared_cache,
                      log=lambda *_: None)  # fmt: skip
    assert rep["partition_sizes"]["forget"] == 14
    assert any("UA is measured on 14 samples of D_t: it moves in steps of 7 points" in note
               and "a larger fraction of the training set" in note for note in rep["notes"])  # fmt: skip


# -- the command line and the bench ------------------------------------------------------------
@pytest.fixture
def no_training(monkeypatch):
    import tarf.cache

    monkeypatch.setattr(tarf.cache, "train_classifier", lambda *a, **k: pytest.fail("trained"))


def refused(capsys, *argv) -> str:
    code = main(list(argv))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("tarf: error: "), err
    return err[0]


RANDOM_CLI = ["unlearn", "--dataset", "digits", "--recipe", "tiny", "--task", "random"]


@pytest.mark.parametrize(
    "args,message",
    [
        (["--target", "1"], "drop --target"),
        (["--forget", "1"], "drop --forget"),
        (["--prior", "2"], "--prior 2 contradicts random forgetting"),
        (["--model-labels", "superclass"], "--model-labels class"),
    ],
)
def test_the_cli_refuses_contradictions(capsys, no_training, args, message):
    assert message in refused(capsys, *RANDOM_CLI, *args)


def test_the_cli_needs_forget_only_without_random(capsys, no_training):
    plain = ["unlearn", "--dataset", "digits", "--recipe", "tiny"]
    line = refused(capsys, *plain, "--model-labels", "class")
    assert "required: --forget" in line and "--task random" in line
    line = refused(capsys, *plain, "--model-labels", "class", "--forget", "1", "--target", "1",
                   "--forget-seed", "2")  # fmt: skip
    assert "--forget-seed draws" in line
    with pytest.raises(SystemExit):
        main([*plain, "--task", "everything"])
    assert "invalid choice" in capsys.readouterr().err


def test_tarf_unlearn_task_random_end_to_end(toy, capsys, tmp_path):
    out = tmp_path / "r.json"
    code = main(["unlearn", "--dataset", "toy", "--recipe", "micro", "--task", "random",
                 "--forget-fraction", "0.2", "--forget-seed", "1", "--method", "ft",
                 "--out", str(out)])  # fmt: skip
    text = capsys.readouterr()
    assert code == 0, text.err
    rep = json.loads(out.read_text())
    assert rep["task"] == RANDOM and rep["partition_sizes"]["forget"] == 56
    assert rep["request"]["forget_fraction"] == 0.2 and rep["request"]["forget_seed"] == 1
    assert "random forgetting" in text.err and "note:" not in text.err
    assert "| random" in text.out


def test_bench_plans_and_runs_random_jobs(toy, capsys, tmp_path):
    argv = ["bench", "--dataset", "toy", "--recipe", "micro", "--tasks", "random",
            "--methods", "ft,tarf", "--out", str(tmp_path)]  # fmt: skip
    assert main([*argv, "--dry-run"]) == 0  # no --forget: random draws from every class
    text = capsys.readouterr().out
    assert "random forgets 0.1 of the training set" in text
    for name in ("original_class_s0", "retrained_random_f0.1_s0", "ft_random_f0.1_s0",
                 "tarf_random_f0.1_s0"):  # fmt: skip
        assert name in text
    assert "jobs (2: 0 done, 2 to do)" in text
    assert main([*argv, "--forget-fraction", "0.2", "--forget-seed", "1", "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "ft_random_f0.2_d1_s0" in text and "(draw seed 1)" in text
    # the main tasks still need --forget
    assert main([*argv, "--tasks", "all-matched,random", "--dry-run"]) == 2
    assert "give a grid FILE, or --forget" in capsys.readouterr().err
    # mixed with the main tasks: the original is shared with all matched
    g = bench.Grid("toy", "cat", "animals", ("all-matched", RANDOM), ("ft",), (0,), "micro")
    plan = bench.make_plan(g, tmp_path / "mixed")
    assert sorted(m.job.name for m in plan.models) == [
        "original_class_s0", "retrained_all-matched_s0", "retrained_random_f0.1_s0",
    ]  # fmt: skip
    assert len(next(m for m in plan.models if m.job.role == "original").users) == 2
    # a real run of one job: the report is the random task's
    g = bench.Grid("toy", "", None, (RANDOM,), ("ft",), (0,), "micro", forget_seed=2)
    plan = bench.make_plan(g, tmp_path / "run")
    outcome = bench.run_plan(plan, tmp_path / "run", bench.LocalBackend(1))
    assert outcome.ok and not outcome.failed
    (rep,) = bench.collect_reports(tmp_path / "run")
    assert rep["task"] == RANDOM and rep["request"]["forget_seed"] == 2
    assert (tmp_path / "run" / "ft_random_f0.1_d2_s0.json").exists()


def test_grid_file_with_the_random_task(toy, tmp_path):
    path = tmp_path / "g.yaml"
    path.write_text(textwrap.dedent("""\
        dataset: toy
        recipe: micro
        tasks: [random]
        forget_fraction: 0.25
        forget_seed: 3
        methods: [ft]
        out: o
    """))  # fmt: skip
    (spec,) = bench.load_grid_file(path)
    assert spec.grid.forget == "" and [r.name for r in spec.grid.runs()] == [
        "ft_random_f0.25_d3_s0"
    ]
    req = spec.grid.request(toy.hierarchy, RANDOM)
    assert (req.forget_fraction, req.subset_seed) == (0.25, 3)
    path.write_text(path.read_text().replace("tasks: [random]", "tasks: [all-matched]"))
    with pytest.raises(bench.BenchError, match="has no forget"):
        bench.load_grid_file(path)
    path.write_text(
        "dataset: toy\nforget: cat\ntasks: all\nforget_seed: 1\nmethods: [ft]\nout: o\n"
    )
    with pytest.raises(bench.BenchError, match="forget_seed: applies to the sub-set tasks only"):
        bench.load_grid_file(path)
    # `all` and `scenarios` keep their meaning: random is named on its own
    assert RANDOM not in bench.parse_tasks("all") + bench.parse_tasks("scenarios")
