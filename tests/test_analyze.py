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


# -- dynamics ------------------------------------------------------------------------------
class _PixelFeatures(torch.nn.Module):
    """features(x) = the first pixel: class c's images (all pixels c/10) sit at c/10."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.head = torch.nn.Linear(1, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, :1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def test_class_distances_rank_a_constructed_feature_set(toy_hierarchy):
    from tarf.analyze.dynamics import class_distances
    from tarf.data.core import ImageDataset
    from tarf.request import UnlearningRequest

    y = torch.arange(7).repeat_interleave(5)
    x = (y.float() / 10 * 255).round().to(torch.uint8).view(-1, 1, 1, 1).expand(-1, 1, 4, 4)
    ds = ImageDataset("toy", toy_hierarchy, x.contiguous(), y, x[:7].contiguous(), y[:7])
    req = UnlearningRequest.from_names(toy_hierarchy, "cat", "class", "animals")
    d = class_distances(_PixelFeatures(7), ds, req, torch.device("cpu"), per_class=5)
    assert list(d) == ["dog", "fox", "car", "bus", "oak", "fern"]  # cat itself left out
    assert d["dog"] == pytest.approx(0.1, abs=0.01) and d["fern"] == pytest.approx(0.6, abs=0.01)


def test_dynamics_run_writes_curves_distances_and_tsne(toy_dataset, tmp_path):
    from tarf.analyze import dynamics

    recipe = get_recipe("tiny", "toy")
    res = dynamics.run(
        toy_dataset, "cat", "animals", recipe, 0, torch.device("cpu"), tmp_path, epochs=3,
        lr=0.05, tsne_methods=("ga",), log=lambda *_: None,
    )  # fmt: skip
    rows = res["ascent"]
    assert [r["epoch"] for r in rows] == [0, 1, 2, 3] * 2
    assert [r["labels"] for r in rows] == ["class"] * 4 + ["superclass"] * 4
    cls = rows[:4]
    assert cls[-1]["forget_loss"] > cls[0]["forget_loss"]  # ascent raises D_f's loss
    assert set(res["distances"]["class"]) == {"dog", "fox", "car", "bus", "oak", "fern"}
    emb = res["tsne"]["embeddings"]
    assert list(emb) == ["original", "retrained", "ga"]
    assert all(len(e) == len(res["tsne"]["group"]) for e in emb.values())
    for name in ("ascent.png", "distances.png", "tsne.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "ascent.csv").read_text().count("\n") == 1 + 8
