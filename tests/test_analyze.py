"""`tarf analyze identify`: scoring, the seeded choice of given classes, and a sweep on a
constructed case with a known answer (written, summarised, resumed)."""

import json

import pytest
import torch

import tarf.methods.tarf as tarf_mod
from tarf.analyze import identification as ident
from tarf.recipes import get_recipe


def test_score_known_answers():
    ranked = ["dog", "fox", "car", "oak", "bus"]
    s = ident.score(ranked, ["dog", "car"], {"dog", "fox"})
    assert s["precision"] == 0.5 and s["recall"] == 0.5 and s["n"] == 2
    assert s["ranks"] == {"dog": 1, "fox": 2} and s["top10_hits"] == 2
    # nothing chosen: nothing found (precision 0), unless there was nothing to find
    assert ident.score(ranked, [], {"fox"})["precision"] == 0.0
    assert ident.score(ranked, [], set()) | {"ranks": None} == {
        "n": 0, "precision": 1.0, "recall": 1.0, "ranks": None, "top10_hits": 0,
    }  # fmt: skip
    assert ident.score(ranked, ["car"], set())["precision"] == 0.0


def test_given_classes_seeded_and_inside_the_concept(toy_hierarchy):
    animals = toy_hierarchy.superclass_names.index("animals")
    a = ident.given_classes(toy_hierarchy, animals, 2, seed=0)
    assert a == ident.given_classes(toy_hierarchy, animals, 2, seed=0)
    assert len(set(a)) == 2 and set(a) <= {"cat", "dog", "fox"}
    assert a == sorted(a, key=toy_hierarchy.class_names.index)
    seen = {tuple(ident.given_classes(toy_hierarchy, animals, 2, seed=s)) for s in range(20)}
    assert len(seen) > 1  # the seed matters


def test_sweep_finds_the_hidden_class_writes_and_resumes(toy_dataset, tmp_path, monkeypatch):
    """Constructed case: after Phase I the concept's one hidden class loses 2 nats and 40
    points, the rest almost nothing. Oracle and auto must both find exactly it."""
    h = toy_dataset.hierarchy
    animals = h.superclass_names.index("animals")
    given = ident.given_classes(h, animals, 2, seed=0)
    (hidden,) = {"cat", "dog", "fox"} - set(given)
    hid = h.class_names.index(hidden)

    def fake_stats(model, x, y, num_classes, ctx):
        fake_stats.calls += 1
        acc, loss = torch.full((num_classes,), 90.0), torch.full((num_classes,), 0.3)
        for c in given:  # absent from D_un
            acc[h.class_names.index(c)] = loss[h.class_names.index(c)] = float("nan")
        if fake_stats.calls % 2 == 0:  # after Phase I
            acc = acc - torch.linspace(0, 1.2, num_classes)
            loss = loss + torch.linspace(0, 0.06, num_classes)
            acc[hid] -= 40
            loss[hid] += 2.0
        return acc, loss

    fake_stats.calls = 0
    monkeypatch.setattr(tarf_mod, "class_stats", fake_stats)
    recipe = get_recipe("tiny", "toy")
    out = tmp_path / "ident"
    results = ident.sweep(toy_dataset, recipe, [0], torch.device("cpu"), out, 2, ["animals"])
    assert fake_stats.calls == 2 and len(results) == 1
    r = results[0]
    assert r["given"] == given and r["truth"] == [hidden] and r["task"] == "target-mismatch"
    for signal in ident.SIGNALS:
        s = r["signals"][signal]
        assert list(s["top10"])[0] == hidden
        assert s["oracle"]["recall"] == 1.0 and s["oracle"]["ranks"] == {hidden: 1}
        assert s["auto"]["n"] == 1 and s["auto"]["precision"] == 1.0
        assert s["auto"]["decision"]["margin"] > 0
    on_disk = json.loads((out / "runs" / "animals_s0.json").read_text())
    assert on_disk["signals"]["loss"]["auto"]["n"] == 1
    csv_lines = (out / "identification.csv").read_text().strip().splitlines()
    assert len(csv_lines) == 1 + len(ident.SIGNALS)
    assert "| loss | 1 | 1.000 |" in (out / "identification.md").read_text()
    assert (out / "identification.png").read_bytes()[:4] == b"\x89PNG"
    # rerun: read from disk, Phase I not run again
    again = ident.sweep(toy_dataset, recipe, [0], torch.device("cpu"), out, 2, ["animals"])
    assert fake_stats.calls == 2 and again[0]["signals"] == r["signals"]


def test_sweep_rejects_bad_concepts(toy_dataset, tmp_path):
    recipe = get_recipe("tiny", "toy")
    with pytest.raises(ValueError, match="is a class"):
        ident.sweep(toy_dataset, recipe, [0], torch.device("cpu"), tmp_path, 1, ["cat"])
    with pytest.raises(ValueError, match="nothing is left to identify"):
        ident.sweep(toy_dataset, recipe, [0], torch.device("cpu"), tmp_path, 2, ["vehicles"])
