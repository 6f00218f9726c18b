"""`tarf analyze identify`: scoring, the seeded choice of given classes, and a sweep on a
constructed case with a known answer (written, summarised, resumed)."""

import json
import re

import pytest
import torch

import tarf.methods.tarf_probe as tarf_probe
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
    monkeypatch.setattr(tarf_probe, "class_stats", fake_stats)
    recipe = get_recipe("tiny", "toy")
    out = tmp_path / "ident"
    loss = {"class_signal": "loss"}  # the stub has no per-sample values, no representation
    results = ident.sweep(toy_dataset, recipe, [0], torch.device("cpu"), out, 2, ["animals"], loss)
    assert fake_stats.calls == 2 and len(results) == 1
    r = results[0]
    assert r["given"] == given and r["truth"] == [hidden] and r["task"] == "target-mismatch"
    assert sorted(r["signals"]) == ["accuracy", "loss"] and r["signal"] == "loss"
    for signal in r["signals"]:
        s = r["signals"][signal]
        assert list(s["top10"])[0] == hidden
        assert s["oracle"]["recall"] == 1.0 and s["oracle"]["ranks"] == {hidden: 1}
        assert s["auto"]["n"] == 1 and s["auto"]["precision"] == 1.0
        assert s["auto"]["decision"]["margin"] > 0
    on_disk = json.loads((out / "runs" / "animals_s0.json").read_text())
    assert on_disk["signals"]["loss"]["auto"]["n"] == 1
    csv_lines = (out / "identification.csv").read_text().strip().splitlines()
    assert len(csv_lines) == 1 + 2
    assert "| loss | 1 | 1.000 |" in (out / "identification.md").read_text()
    assert (out / "identification.png").read_bytes()[:4] == b"\x89PNG"
    # rerun: read from disk, Phase I not run again
    again = ident.sweep(toy_dataset, recipe, [0], torch.device("cpu"), out, 2, ["animals"], loss)
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
    # D_f all of the concept: nothing to follow, refused before any training
    with pytest.raises(ValueError, match="--forget cat,dog,fox is all of --concept animals"):
        dynamics.run(toy_dataset, "cat,dog,fox", "animals", recipe, 0, torch.device("cpu"),
                     tmp_path)  # fmt: skip
    with pytest.raises(ValueError, match=r"\(--concept\)"):
        dynamics.run(toy_dataset, "car", "animals", recipe, 0, torch.device("cpu"), tmp_path)
    # an ascent too weak to move D_f is told, with the fix
    said = []
    dynamics.run(toy_dataset, "cat", "animals", recipe, 0, torch.device("cpu"), tmp_path,
                 epochs=1, lr=1e-9, tsne_methods=(), log=said.append)  # fmt: skip
    assert any("moved 0.0 points over 1 ascent epochs: --lr 1e-09" in s for s in said)


# -- ablations -----------------------------------------------------------------------------
@pytest.mark.parametrize("frozen", [3, -1])
def test_frozen_blocks_stop_the_gradient_below_layer_n(toy_dataset, frozen):
    from tarf.methods import get_method
    from tarf.methods.base import UnlearnContext
    from tarf.methods.common import param_blocks
    from tarf.models import create_model
    from tarf.request import UnlearningRequest
    from tarf.run import unlearn_data

    recipe = get_recipe("tiny", "toy")
    model = create_model("cpunet-tiny", 7, 1)
    req = UnlearningRequest.from_names(toy_dataset.hierarchy, "cat", "class", "animals")
    ctx = UnlearnContext(torch.device("cpu"), recipe, 0, "target-mismatch", "toy", 280)
    before = [[p.clone() for p in b.parameters()] for b in param_blocks(model)]
    n_frozen = frozen if frozen > 0 else len(before) + frozen  # -1: all but the classifier
    # t1 = 0: no Phase I, so every update happens with the first layers frozen
    res = get_method("tarf", phase1="pass", frozen_blocks=frozen, t1=0, k=0.1, lr=0.05).run(
        model, unlearn_data(toy_dataset, req), ctx
    )
    after = param_blocks(res.model)
    assert len(res.details["frozen_blocks"]) == n_frozen
    for i, (b0, b1) in enumerate(zip(before, after)):
        same = all(torch.equal(p0, p1) for p0, p1 in zip(b0, b1.parameters()))
        assert same == (i < n_frozen), f"layer {i}"
    assert all(p.requires_grad for p in res.model.parameters())
    with pytest.raises(ValueError, match="layers with weights"):
        get_method("tarf", frozen_blocks=99, t1=0).run(model, unlearn_data(toy_dataset, req), ctx)
    with pytest.raises(ValueError, match="layers with weights"):
        get_method("tarf", frozen_blocks=-99, t1=0).run(model, unlearn_data(toy_dataset, req), ctx)


def test_ablation_grid_names_and_summary():
    from tarf.analyze import ablate

    grid = ablate.make_grid("op", "toy", "cat", "animals", ("target-mismatch",), (0, 1), "tiny")
    names = [r.name for r in grid.runs()]
    assert names == [
        "tarf-op-zero_target-mismatch_s0", "tarf-op-ascent_target-mismatch_s0",
        "tarf-op-zero_target-mismatch_s1", "tarf-op-ascent_target-mismatch_s1",
    ]  # fmt: skip
    assert grid.runs()[1].overrides == {"identified_op": "ascent"}
    # hyperparameters every variant shares; the study's own stays the variant's
    shared = {"lr": 0.5, "identified_op": "zero"}
    grid = ablate.make_grid("op", "toy", "cat", "animals", ("target-mismatch",), (0,), "tiny",
                            shared=shared)  # fmt: skip
    assert grid.runs()[1].overrides == {"lr": 0.5, "identified_op": "ascent"}

    def rep(op, seed, gap):
        m = {"Gap": gap, "UA": 1.0, "RA": 2.0, "TA": 3.0, "MIA": 4.0, "RTE_s": 5.0}
        return {"task": "target-mismatch", "method": "tarf", "seed": seed,
                "config": {"identified_op": op}, "metrics": m}  # fmt: skip

    rows = ablate.rows([rep("zero", 0, 1.0), rep("zero", 1, 3.0), rep("ascent", 0, 7.0)], "op")
    assert [(r["variant"], r["seeds"], r["Gap"]) for r in rows] == [
        ("op-zero", 2, 2.0), ("op-ascent", 1, 7.0),
    ]  # fmt: skip
    assert rows[0]["Gap_std"] == pytest.approx(1.41, abs=0.01)
    with pytest.raises(ValueError, match="unknown study"):
        ablate.study("nope")


def test_analyze_cli_identify_and_bad_input(tmp_path, capsys):
    from tarf.cli import main

    out = tmp_path / "ident"
    argv = ["analyze", "identify", "--dataset", "digits", "--recipe", "tiny", "--given", "1",
            "--concepts", "straight", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    assert "| straight | 1 |" in capsys.readouterr().out
    assert (out / "runs" / "straight_s0.json").exists() and (out / "identification.png").exists()
    # the same sweep resumes; one of other settings into the folder is refused, not resumed
    assert main(argv) == 0
    capsys.readouterr()
    assert main([*argv, "--set", "k=0.5"]) == 2
    err = capsys.readouterr().err
    assert "was made with --set k=none; this run asks for --set k=0.5" in err
    other = [*argv[:-6], "--given", "2", "--concepts", "straight", "--out", str(out)]
    assert main(other) == 2
    assert re.search(r"was made with given \w+; this run asks for given \w+, \w+",
                     capsys.readouterr().err)  # fmt: skip
    assert main([*argv[:-2], "--out", str(tmp_path / "i"), "--set", "identification=instance"]) == 2
    assert "identification=instance sets aside samples" in capsys.readouterr().err
    assert main(argv[:-2] + ["--given", "0", "--out", str(out)]) == 2
    assert "--given must be >= 1" in capsys.readouterr().err
    assert main(argv[:-6] + ["--given", "5", "--out", str(out)]) == 2  # digits' largest: 4
    assert "has more than 5 classes (the largest has 4)" in capsys.readouterr().err
    bad = ["analyze", "ablate", "--study", "k", "--dataset", "digits", "--forget", "1",
           "--concept", "round", "--out", str(tmp_path / "a"), "--dry-run"]  # fmt: skip
    assert main(bad) == 2
    assert "--concept" in capsys.readouterr().err


def test_ablation_summary_holds_its_own_runs_only(tmp_path, capsys, monkeypatch):
    """A report of another study or task in the --out folder (which matches a variant's
    hyperparameters) stays out of the summary."""
    from tarf.cli import main
    from tarf.io import write_json

    monkeypatch.setenv("TARF_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "ab"
    m = {"Gap": 50.0, "UA": 1.0, "RA": 2.0, "TA": 3.0, "MIA": 4.0, "RTE_s": 5.0}
    foreign = {"task": "target-mismatch", "method": "tarf", "seed": 0, "metrics": m,
               "config": {"identified_op": "zero"}}  # fmt: skip
    write_json(out / "tarf-frozen0_target-mismatch_s0.json", foreign)
    argv = ["analyze", "ablate", "--study", "op", "--dataset", "digits", "--forget", "1",
            "--concept", "straight", "--tasks", "all-matched", "--seeds", "0,", "--recipe",
            "tiny", "--jobs", "1", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    table = (out / "ablation_op.md").read_text()
    assert "| op-zero | all-matched | 1 |" in table and "| op-ascent | all-matched | 1 |" in table
    assert "target-mismatch" not in table and "on TARF's defaults" in table
    # a run of the grid made with other settings is refused, not summarised as today's
    path = out / "tarf-op-zero_all-matched_s0.json"
    rep = json.loads(path.read_text())
    rep["config"]["lr"] = 0.123
    path.write_text(json.dumps(rep))
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "1 runs in" in err and "lr=0.123" in err and "give another --out" in err
    assert main([*argv, "--dry-run"]) == 2  # the dry run shows the plan, then says so too
    printed = capsys.readouterr()
    assert "tarf-op-zero_all-matched_s0" in printed.out and "lr=0.123" in printed.err


def test_architecture_summary_sets_benches_side_by_side(tmp_path, capsys):
    """Two bench folders of one grid, recipes `tiny` and `tiny:vgg16-bn`: one row per
    (arch, task, method) with the mean over the chosen seeds, the reference per seed."""
    from tarf.analyze import architectures
    from tarf.cli import main
    from tarf.io import write_json
    from tarf.recipes import get_recipe

    def rep(recipe, method, seed, gap, ref_ra=50.0):
        m = {"Gap": gap, "UA": gap, "RA": 60.0, "TA": 40.0, "MIA": 90.0}
        ref = {"UA": 0.0, "RA": ref_ra + seed, "TA": 30.0, "MIA": 100.0}
        return {"task": "all-matched", "case": "x", "dataset": "toy", "method": method,
                "seed": seed, "recipe": recipe, "config": {}, "metrics": m,
                "reference": ref}  # fmt: skip

    base, vgg = tmp_path / "base", tmp_path / "vgg"
    reports = {
        base: [rep("tiny", "ga", 0, 2.0), rep("tiny", "ga", 1, 4.0), rep("tiny", "tarf", 0, 1.0)],
        vgg: [rep("tiny:vgg16-bn", "ga", 0, 8.0), rep("tiny:vgg16-bn", "tarf", 0, 3.0)],
    }
    for folder, rs in reports.items():
        for r in rs:
            write_json(folder / f"{r['method']}_{r['task']}_s{r['seed']}.json", r)
    all_reports = [r for rs in reports.values() for r in rs]
    rows = architectures.rows(all_reports, ("all-matched",), ("tarf", "ga"))
    base_arch = get_recipe("tiny").arch
    got = [(r["arch"], r["method"], r["seeds"], r["Gap"]) for r in rows]
    assert got == [
        (base_arch, "retrained", 2, None), (base_arch, "tarf", 1, 1.0),
        (base_arch, "ga", 2, 3.0), ("vgg16-bn", "retrained", 1, None),
        ("vgg16-bn", "tarf", 1, 3.0), ("vgg16-bn", "ga", 1, 8.0),
    ]  # fmt: skip
    assert rows[0]["RA"] == 50.5 and rows[2]["Gap_std"] == pytest.approx(1.41, abs=0.01)
    seed0 = architectures.rows(all_reports, ("all-matched",), ("ga",), seeds=(0,))
    assert [r["Gap"] for r in seed0 if r["method"] == "ga"] == [2.0, 8.0]
    # a folder given twice (or copied) counts each run once: 2 seeds of ga, not 4
    twice = architectures.rows(all_reports + reports[base], ("all-matched",), ("ga",))
    assert [(r["seeds"], r["Gap_std"]) for r in twice if r["method"] == "ga"][0] == (2, 1.41)
    # folders of another request are not architectures of this one
    other = {**rep("tiny", "ga", 0, 9.0), "request": {"forget": ["pear"], "target": ["fruit"]}}
    assert architectures.mixed_requests(all_reports) == []
    assert architectures.mixed_requests([*all_reports, other]) == [
        "toy:  -> ?",
        "toy: pear -> fruit",
    ]

    out = tmp_path / "fig"
    argv = ["analyze", "architectures", "--results", str(base), str(vgg), "--tasks",
            "all-matched", "--methods", "tarf,ga", "--seeds", "0,", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| vgg16-bn | all-matched | ga | 1 | 8.00 |" in printed
    assert "Under-trained" not in printed  # reference RA 50 on both
    weak = rep("tiny:vgg16-bn", "ga", 0, 8.0, ref_ra=30.0)
    assert architectures.undertrained(architectures.rows(all_reports[:3] + [weak])) == [
        "vgg16-bn on all-matched: the retrained reference's RA is 30.0 against "
        f"{base_arch}'s 50.5; the recipe under-trains vgg16-bn, so its Gaps compare "
        "methods on a weak model (train it longer, e.g. --recipe paper:ARCH on a GPU)."
    ]
    assert (out / "architectures.png").stat().st_size > 0 and (out / "architectures.csv").exists()
    assert main(argv[:4] + [str(tmp_path / "nope"), "--out", str(out)]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert main(argv[:-4] + ["--methods", "scrub", "--out", str(out)]) == 2
    assert "no finished run of scrub" in capsys.readouterr().err


def test_architecture_rows_keep_variants_apart_and_show_every_task(tmp_path, capsys):
    """Two TARF variants are two rows (as tarf.report labels them), and without --tasks
    every task the folders hold is shown."""
    from tarf.analyze import architectures
    from tarf.cli import main
    from tarf.io import write_json

    def rep(task, changes, seed, gap):
        m = {"Gap": gap, "UA": gap, "RA": 60.0, "TA": 40.0, "MIA": 90.0}
        return {"task": task, "case": "x", "dataset": "toy", "method": "tarf", "seed": seed,
                "recipe": "tiny", "config": {}, "config_changes": changes, "metrics": m,
                "reference": {"UA": 0.0, "RA": 50.0, "TA": 30.0, "MIA": 100.0}}  # fmt: skip

    tasks = ("all-matched", "target-mismatch", "model-mismatch", "data-mismatch")
    reports = [rep(t, ch, s, gap) for t in tasks for s in (0, 1)
               for ch, gap in (({}, 1.0), ({"frozen_blocks": -1}, 9.0))]  # fmt: skip
    rows = architectures.rows(reports, None, ("tarf",))
    am = [(r["method"], r["seeds"], r["Gap"]) for r in rows if r["task"] == "all-matched"]
    assert am == [("retrained", 2, None), ("tarf", 2, 1.0), ("tarf frozen_blocks=-1", 2, 9.0)]
    folder = tmp_path / "bench"
    for i, r in enumerate(reports):
        write_json(folder / f"r{i}.json", r)
    assert main(["analyze", "architectures", "--results", str(folder), "--out",
                 str(tmp_path / "out")]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    arch = architectures.arch_of(reports[0])
    for t in tasks:
        assert f"| {arch} | {t} | tarf | 2 | 1.00 ± 0.00 |" in printed
        assert f"| {arch} | {t} | tarf frozen_blocks=-1 | 2 | 9.00 ± 0.00 |" in printed
