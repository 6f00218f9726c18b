"""Requests, hierarchies and partitions on a synthetic hierarchy and on the built-ins."""

import json

import pytest
import torch

from tarf.domains import ImpracticalRequestError
from tarf.hierarchy import LabelHierarchy, UnknownNameError, builtin_hierarchy
from tarf.request import UnlearningRequest


def labels(h, per_class):
    return torch.arange(h.num_classes).repeat_interleave(per_class)


@pytest.mark.parametrize(
    "model,target,task,prior",
    [
        ("class", "cat", "all-matched", 0),
        ("class", "animals", "target-mismatch", 2),
        ("superclass", "cat", "model-mismatch", 0),
        ("superclass", "animals", "data-mismatch", 1),
    ],
)
def test_four_tasks_partitions(toy_hierarchy, model, target, task, prior):
    h = toy_hierarchy
    ytr, yte = labels(h, 10), labels(h, 3)
    req = UnlearningRequest.from_names(h, "cat", model, target)
    assert req.task.name == task
    p = req.partitions(ytr, yte)
    n = len(ytr)
    # sizes
    assert len(p.forget) == 10
    assert len(p.unlearn) == n - 10
    assert len(p.target) == (10 if target == "cat" else 30)
    assert len(p.pseudo_remaining) == len(p.target) - 10
    assert len(p.remaining) == n - len(p.target)
    # disjointness and unions
    as_set = lambda t: set(t.tolist())  # noqa: E731
    assert as_set(p.forget) | as_set(p.unlearn) == set(range(n))
    assert not as_set(p.forget) & as_set(p.unlearn)
    assert as_set(p.forget) <= as_set(p.target)
    assert as_set(p.pseudo_remaining) == as_set(p.target) - as_set(p.forget)
    assert as_set(p.remaining) == set(range(n)) - as_set(p.target)
    assert as_set(p.affected_remaining) <= as_set(p.remaining)
    # D_ar: only model mismatch has remaining data sharing a model class with D_f
    assert len(p.affected_remaining) == (20 if task == "model-mismatch" else 0)
    assert len(p.test_target) + len(p.test_remaining) == len(yte)
    assert req.prior(ytr).num_classes == prior


def test_model_labels(toy_hierarchy):
    req = UnlearningRequest.from_names(toy_hierarchy, "cat", "superclass", "cat")
    assert req.model_labels(torch.tensor([0, 3, 6])).tolist() == [0, 1, 2]
    assert req.num_model_classes == 3


def test_cifar100_people_prior():
    h = builtin_hierarchy("cifar100")
    y = labels(h, 2)
    tm = UnlearningRequest.from_names(h, "boy,girl", "class", "people")
    dm = UnlearningRequest.from_names(h, "boy,girl", "superclass", "people")
    assert tm.prior(y).num_classes == 3  # baby, man, woman
    assert dm.prior(y).num_classes == 1  # people
    assert abs(tm.prior(y).fraction - 6 / 196) < 1e-9


def test_unknown_name_lists_closest():
    h = builtin_hierarchy("cifar100")
    with pytest.raises(UnknownNameError, match="'boy'"):
        UnlearningRequest.from_names(h, "boyy,girl", "class", "people")
    with pytest.raises(UnknownNameError, match="closest"):
        UnlearningRequest.from_names(h, "boy", "class", "peeple")
    with pytest.raises(UnknownNameError, match="`tarf classes --dataset cifar100` lists"):
        h.resolve("peeple")
    # a user's file that happens to be named like a built-in dataset: its own names
    mine = LabelHierarchy.from_groups("cifar100", {"people": ["boy", "girl"], "trees": ["oak"]})
    with pytest.raises(UnknownNameError, match=r"The hierarchy you gave \(its file"):
        mine.resolve("peeple")


def test_names_are_normalised():
    h = builtin_hierarchy("cifar100")
    r = UnlearningRequest.from_names(h, "Pickup Truck", "class", "vehicles 1")
    assert r.task.name == "target-mismatch"
    f = builtin_hierarchy("fashion-mnist")
    assert (
        UnlearningRequest.from_names(f, "ankle boot", "class", "Footwear")
        .prior(labels(f, 1))
        .num_classes
        == 2
    )


def test_impractical_request_rejected(toy_hierarchy):
    with pytest.raises(ImpracticalRequestError, match="L_D ≻ L_T"):
        UnlearningRequest.from_names(toy_hierarchy, "animals", "class", "cat")


def test_forget_outside_target_rejected(toy_hierarchy):
    with pytest.raises(ValueError, match="D_f ⊆ D_t"):
        UnlearningRequest.from_names(toy_hierarchy, "car", "class", "animals")


def test_mixed_levels_rejected(toy_hierarchy):
    with pytest.raises(ValueError, match="mix classes and superclasses"):
        UnlearningRequest.from_names(toy_hierarchy, "cat,vehicles", "class", "animals")


def test_no_target_needs_prior(toy_hierarchy):
    with pytest.raises(ValueError, match="--prior"):
        UnlearningRequest.from_names(toy_hierarchy, "cat", "class")
    import numpy as np

    numpy_prior = UnlearningRequest.from_names(
        toy_hierarchy, "cat", "class", prior_classes=np.int64(2)
    )
    assert numpy_prior.prior_classes == 2 and type(numpy_prior.prior_classes) is int
    for bad in (2.0, True, [2]):  # a float, a bool and a list are not counts
        with pytest.raises(ValueError, match="must be a whole number >= 0 or 'auto'"):
            UnlearningRequest.from_names(toy_hierarchy, "cat", "class", prior_classes=bad)
    r = UnlearningRequest.from_names(toy_hierarchy, "cat", "class", prior_classes=2)
    assert not r.has_reference and r.prior(labels(toy_hierarchy, 2)).num_classes == 2


def test_user_hierarchy_files(tmp_path):
    (tmp_path / "h.json").write_text(json.dumps({"a": "X", "b": "X", "c": "Y"}))
    (tmp_path / "g.yaml").write_text("X: [a, b]\nY: [c]\n")
    hj = LabelHierarchy.from_file(tmp_path / "h.json", class_order=["a", "b", "c"])
    hy = LabelHierarchy.from_file(tmp_path / "g.yaml", class_order=["a", "b", "c"])
    assert hj.superclass_of == hy.superclass_of == (0, 0, 1)
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="must map class names"):
        LabelHierarchy.from_file(tmp_path / "bad.json")
    (tmp_path / "broken.yaml").write_text("X: [a, b\n")
    with pytest.raises(ValueError, match=r"broken.yaml, line 2 is not valid JSON/YAML \(") as e:
        LabelHierarchy.from_file(tmp_path / "broken.yaml")
    assert "\n" not in str(e.value)  # one line, not the parser's drawing of the spot
    (tmp_path / "broken.json").write_text('{"a": "X",\n "b": }')
    with pytest.raises(ValueError, match=r"broken.json, line 2 is not valid JSON/YAML \(Expect"):
        LabelHierarchy.from_file(tmp_path / "broken.json")
    with pytest.raises(ValueError, match="without a superclass"):
        LabelHierarchy.from_file(tmp_path / "h.json", class_order=["a", "b", "c", "d"])
    (tmp_path / "twice.yaml").write_text("X: [a]\nY: [c]\nX: [b]\n")  # YAML would keep [b]
    with pytest.raises(ValueError, match=r"twice.yaml, line 3 .*'X' given twice"):
        LabelHierarchy.from_file(tmp_path / "twice.yaml")


def test_builtin_hierarchies_match_spec():
    c100 = builtin_hierarchy("cifar100")
    assert c100.num_classes == 100 and c100.num_superclasses == 20
    assert all(len(c100.classes_of(s)) == 5 for s in range(20))
    people = c100.superclass_names.index("people")
    assert [c100.class_names[c] for c in c100.classes_of(people)] == [
        "baby",
        "boy",
        "girl",
        "man",
        "woman",
    ]
    d = builtin_hierarchy("digits")
    assert [d.class_names[c] for c in d.classes_of(d.superclass_names.index("straight"))] == [
        "1",
        "4",
        "7",
    ]
    c10 = builtin_hierarchy("cifar10")
    assert [c10.class_names[c] for c in c10.classes_of(c10.superclass_names.index("vehicle"))] == [
        "automobile",
        "truck",
    ]


@pytest.mark.parametrize(
    "model,target,task,case,prior",
    [
        ("class", "cat", "data-mismatch", 4, 1),  # the rest of cat hides in D_un
        ("superclass", "animals", "scenario-7", 7, 1),
        ("class", "animals", "scenario-8", 8, 3),
        ("superclass", "cat", "scenario-9", 9, 1),
    ],
)
def test_subset_requests(toy_hierarchy, model, target, task, case, prior):
    """The sub-set layer: a seeded part of the forget class is D_f, the rest of the class
    stays in D_un (as concept data); Table 4 numbers follow from L_D = sub-set."""
    h = toy_hierarchy
    ytr, yte = labels(h, 10), labels(h, 3)
    req = UnlearningRequest.from_names(h, "cat", model, target, forget_fraction=0.3)
    assert req.task.name == task and req.task.case == case
    p = req.partitions(ytr, yte)
    assert len(p.forget) == 3 and set(ytr[p.forget].tolist()) == {0}
    assert len(p.unlearn) == len(ytr) - 3
    assert set(p.forget.tolist()) <= set(p.target.tolist())
    assert len(p.pseudo_remaining) == len(p.target) - 3  # includes 7 samples of cat
    assert req.prior(ytr).num_classes == prior
    again = UnlearningRequest.from_names(h, "cat", model, target, forget_fraction=0.3)
    assert torch.equal(again.partitions(ytr, yte).forget, p.forget)  # seeded
    assert "30%" in req.describe()


def test_subset_bad_input(toy_hierarchy):
    h = toy_hierarchy
    with pytest.raises(ValueError, match="between 0 and 1"):
        UnlearningRequest.from_names(h, "cat", "class", "cat", forget_fraction=1.5)
    with pytest.raises(ValueError, match="name classes"):
        UnlearningRequest.from_names(h, "animals", "class", "animals", forget_fraction=0.5)


def test_subset_target_is_the_subset_itself(toy_hierarchy):
    """No --target with --forget-fraction: forget exactly those samples (L_T = sub-set);
    the rest of the class is remaining data, also in test (No. 6 with a superclass model)."""
    h = toy_hierarchy
    ytr, yte = labels(h, 10), labels(h, 3)
    for model, task, case in (("superclass", "scenario-6", 6), ("class", "model-mismatch", 3)):
        req = UnlearningRequest.from_names(h, "cat", model, None, forget_fraction=0.3)
        assert (req.task.name, req.task.case) == (task, case) and req.has_reference
        p = req.partitions(ytr, yte)
        assert torch.equal(p.target, p.forget) and len(p.pseudo_remaining) == 0
        assert len(p.test_target) == 0 and len(p.test_remaining) == len(yte)
        assert len(p.remaining) == len(ytr) - 3  # includes the other 7 cats
        assert req.prior(ytr).num_classes == 0
        assert "sub-set itself" in req.describe()
    # a prior of 0 says the same; a prior > 0 makes the concept unnamed and wider
    zero = UnlearningRequest.from_names(h, "cat", "superclass", None, 0, forget_fraction=0.3)
    assert zero.task.case == 6 and torch.equal(zero.partitions(ytr, yte).target, p.forget)
    told = UnlearningRequest.from_names(h, "cat", "class", None, 2, forget_fraction=0.5)
    assert told.task.case == 4 and not told.has_reference
    tp = told.partitions(ytr, yte)  # unnamed: UA is measured on D_f, as the report says
    assert torch.equal(tp.target, tp.forget) and len(tp.test_target) == 0


def test_class_list_wider_than_forget_is_a_concept(toy_hierarchy):
    """Target classes beyond the forget classes name a wider concept: not all matched."""
    h = toy_hierarchy
    req = UnlearningRequest.from_names(h, "cat", "class", "cat,dog")
    assert req.task.name == "target-mismatch" and req.prior(labels(h, 4)).num_classes == 1
    assert "wider than its classes" in req.describe()
    assert UnlearningRequest.from_names(h, "cat,dog", "class", "dog,cat").task.name == "all-matched"
    # an unnamed concept with a prior > 0 is wider too; with 0 it is the forget data
    assert UnlearningRequest.from_names(h, "cat", "class", None, 2).task.name == "target-mismatch"
    assert UnlearningRequest.from_names(h, "cat", "class", None, 0).task.name == "all-matched"
    # at the sub-set level too: a part of cat, target cat and dog -> No. 8 / No. 7
    for model, case in (("class", 8), ("superclass", 7)):
        part = UnlearningRequest.from_names(h, "cat", model, "cat,dog", forget_fraction=0.5)
        assert part.task.case == case


def test_cached_metrics_tell_fractions_apart(toy_dataset, tmp_path, monkeypatch):
    """The original's metrics are cached per partitions: two sub-set requests of one model
    that differ only in their fraction must not share an entry."""
    from tarf import cache as cache_mod
    from tarf.cache import ModelCache

    calls = []
    monkeypatch.setattr(cache_mod, "evaluate", lambda *a: calls.append(1) or {"UA": len(calls)})
    ds, h, cache = toy_dataset, toy_dataset.hierarchy, ModelCache(tmp_path / "models")
    trained = cache_mod.TrainedModel(None, {"key": "same-original", "weights_id": "w0"})

    def metrics(fraction):
        req = UnlearningRequest.from_names(h, "cat", "superclass", "cat", forget_fraction=fraction)
        parts = req.partitions(ds.y_train, ds.y_test)
        args = (None, None, None, None, parts, None, 0, req.task.target_finer_than_model)
        return cache_mod.evaluate_cached(trained, req, ds, args, cache)["UA"]

    assert (metrics(0.5), metrics(0.2), metrics(0.5)) == (1, 2, 1) and len(calls) == 2


def test_requests_that_cannot_be_right_are_refused(toy_hierarchy):
    h = toy_hierarchy
    every = ",".join(h.class_names)
    with pytest.raises(ValueError, match="--forget covers every class"):
        UnlearningRequest.from_names(h, every, "class", every)
    with pytest.raises(ValueError, match="--forget covers every class"):
        UnlearningRequest.from_names(h, "animals,vehicles,plants", "superclass", prior_classes=0)
    with pytest.raises(ValueError, match="--target covers every class"):
        UnlearningRequest.from_names(h, "cat", "class", every)
    # 7 classes, cat forgotten: 6 model labels left, TARF must keep one to learn from
    with pytest.raises(ValueError, match="only 6 model labels are left"):
        UnlearningRequest.from_names(h, "cat", "class", prior_classes=6)
    assert UnlearningRequest.from_names(h, "cat", "class", prior_classes=5).task.name
    with pytest.raises(ValueError, match="--prior 3 contradicts --target animals, which leaves 2"):
        UnlearningRequest.from_names(h, "cat", "class", "animals", prior_classes=3)
    agreed = UnlearningRequest.from_names(h, "cat", "class", "animals", prior_classes=2)
    assert agreed.task.name == "target-mismatch"
