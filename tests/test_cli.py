"""The command line on the embedded digits dataset: a full run, its JSON, and bad input."""

import argparse
import dataclasses
import json

import pytest
import torch

from tarf import bench
from tarf.cli import build_parser, main
from tarf.methods import METHODS


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


DIGITS = ["--dataset", "digits", "--recipe", "tiny"]


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def test_unlearn_writes_report(capsys, tmp_path, monkeypatch, shared_cache):
    monkeypatch.setenv("TARF_CACHE", str(shared_cache))
    out = tmp_path / "r.json"
    ck = tmp_path / "m.pt"
    code, stdout, err = run(
        capsys,
        "unlearn",
        *DIGITS,
        "--model-labels",
        "class",
        "--forget",
        "1",
        "--target",
        "straight",
        "--method",
        "tarf",
        "--out",
        str(out),
        "--save-model",
        str(ck),
    )
    assert code == 0, err
    rep = json.loads(out.read_text())
    assert rep["task"] == "target-mismatch" and rep["method"] == "tarf" and rep["seed"] == 0
    for block in ("metrics", "reference"):
        for k in ("UA", "RA", "TA", "MIA"):
            assert 0 <= rep[block][k] <= 100
    assert (
        rep["metrics"]["Gap"] >= 0
        and rep["metrics"]["RTE_s"] > 0
        and rep["reference"]["train_s"] > 0
    )
    ident = rep["identification"]
    assert len(ident["classes"]) == 2 and set(ident["drops"]) == {str(i) for i in range(10)} - {"1"}
    assert "| target-mismatch | tarf" in stdout
    # the report command turns run files into a table and a CSV
    md, csv = tmp_path / "t.md", tmp_path / "t.csv"
    assert main(["report", str(out), "--md", str(md), "--csv", str(csv)]) == 0
    assert "| target-mismatch | retrained" in md.read_text()
    header, row = csv.read_text().splitlines()
    assert header.startswith("dataset,task,method,seed") and "retrain_s" in header
    assert row.startswith("digits,target-mismatch,tarf,0")
    # a folder gives its reports (the checkpoint and other files in it are not reports);
    # a pattern that matched nothing, or a file that is not JSON, says what to give
    assert main(["report", str(tmp_path)]) == 0
    assert "| target-mismatch | tarf" in capsys.readouterr().out
    (tmp_path / "nest" / "sub").mkdir(parents=True)
    (tmp_path / "nest" / "sub" / "r.json").write_text(out.read_text())
    assert main(["report", str(tmp_path / "nest")]) == 2  # the reports are one folder down
    assert f"1 of its subfolders do: {tmp_path / 'nest' / 'sub'}" in capsys.readouterr().err
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "r.json").write_text(out.read_text())  # one run in two folders
    assert main(["report", str(out), str(tmp_path / "copy"), "--layout", "table1"]) == 0
    printed = capsys.readouterr()
    assert "1 of the reports are copies" in printed.err and "| tarf | 1 |" in printed.out
    assert main(["report", str(tmp_path / "none" / "*.json")]) == 2
    assert "no file matches" in capsys.readouterr().err
    assert main(["report", str(ck)]) == 2
    assert "not a JSON file" in capsys.readouterr().err
    # the saved model evaluates; a checkpoint of another label domain is refused
    code, stdout, err = run(
        capsys,
        "eval",
        *DIGITS,
        "--model-labels",
        "class",
        "--forget",
        "1",
        "--target",
        "straight",
        "--checkpoint",
        str(ck),
    )
    assert code == 0, err
    assert json.loads(stdout)["metrics"]["UA"] == pytest.approx(rep["metrics"]["UA"])
    assert "note" not in err  # its own recipe and seed: no note
    # --recipe left out is the checkpoint's; another --seed measures against another
    # reference, and the run says so
    request = ["--model-labels", "class", "--forget", "1", "--target", "straight"]
    code, stdout, err = run(capsys, "eval", "--dataset", "digits", *request,
                            "--checkpoint", str(ck), "--seed", "1")  # fmt: skip
    assert code == 0, err
    assert "checkpoint was trained with --seed 0" in err and "--recipe tiny --seed 1" in err
    assert json.loads(stdout)["metrics"]["UA"] == pytest.approx(rep["metrics"]["UA"])
    code, _, err = run(
        capsys,
        "eval",
        *DIGITS,
        "--model-labels",
        "superclass",
        "--forget",
        "1",
        "--target",
        "straight",
        "--checkpoint",
        str(ck),
    )
    assert code == 2 and "predicts 10 class labels" in err and "--model-labels class" in err
    # a checkpoint of another dataset: the dataset to pass, not the labels
    import tarf
    from tarf.checkpoint import CheckpointError, load_checkpoint

    groups = {"animals": ["cat", "dog", "fox"], "vehicles": ["car", "bus"]}
    other = tarf.make_request(
        groups, "cat", "animals", class_names=["cat", "dog", "fox", "car", "bus"]
    )
    with pytest.raises(
        CheckpointError, match="is a model of digits, not of toy: pass --dataset digits"
    ):
        load_checkpoint(ck, other, torch.device("cpu"), "toy")
    # a superclass model of another hierarchy: other superclass names, or the same names
    # over another grouping, is told to pass the hierarchy it was trained with
    from tarf.hierarchy import builtin_hierarchy

    digits = builtin_hierarchy("digits")
    request = tarf.make_request(digits, "1", "1", model_labels="superclass")
    saved = torch.load(ck, weights_only=False)
    for names, grouping, said in (
        (["a", "b", "c"], list(digits.superclass_of), "labels are a, b, c, the request's"),
        (list(digits.superclass_names), [(s + 1) % 3 for s in digits.superclass_of], "grouped otherwise"),
    ):  # fmt: skip
        relabelled = ck.parent / "relabelled.pt"
        torch.save({**saved, "label_level": "superclass", "label_names": names,
                    "superclass_of": grouping}, relabelled)  # fmt: skip
        with pytest.raises(CheckpointError, match=f"another hierarchy: .*{said}.*--hierarchy"):
            load_checkpoint(relabelled, request, torch.device("cpu"), "digits")


def test_second_run_hits_the_cache(capsys, monkeypatch, shared_cache):
    monkeypatch.setenv("TARF_CACHE", str(shared_cache))
    code, _, err = run(
        capsys,
        "unlearn",
        *DIGITS,
        "--model-labels",
        "class",
        "--forget",
        "1",
        "--target",
        "straight",
        "--method",
        "tarf",
        "--set",
        "lr=0.02",
    )
    assert code == 0, err
    assert err.count("(cached)") == 2  # original and reference


@pytest.mark.parametrize(
    "args,message",
    [
        (["--forget", "11", "--target", "straight"], "unknown class or superclass '11'"),
        (["--forget", "1", "--target", "straigt"], "closest: 'straight'"),
        (["--forget", "straight", "--target", "1"], "L_D ≻ L_T"),
        (["--forget", "1", "--target", "round"], "D_f ⊆ D_t"),
        (["--forget", "1", "--target", "1", "--set", "nonsense=1"], "unknown hyperparameter"),
        (["--forget", "1", "--target", "1", "--method", "magic"], "unknown method 'magic'"),
        (["--forget", "1", "--target", "1", "--method", "GA"], "(closest: 'ga')"),
        (["--forget", "1", "--target", "1", "--set", "lrr=0.1"], "'lrr' (closest: 'lr')"),
        (["--forget", "1", "--target", "1", "--device", "mps"], "tarf runs on the CPU or a CUDA"),
        (
            ["--forget", "1", "--target", "1", "--out", "same.pt", "--save-model", "same.pt"],
            "--out and --save-model are both same.pt",
        ),
        (
            ["--forget", "1", "--target", "1", "--method", "retrain", "--set", "lr=0.1"],
            "for this method; it takes no hyperparameters",
        ),
    ],
)
def test_bad_input_is_one_clear_line(capsys, args, message):
    code, _, err = run(capsys, "unlearn", *DIGITS, "--model-labels", "class", *args)
    assert code == 2
    assert message in err and "Traceback" not in err


def test_unknown_dataset_and_recipe(capsys):
    code, _, err = run(
        capsys,
        "unlearn",
        "--dataset",
        "imagenet",
        "--model-labels",
        "class",
        "--forget",
        "1",
        "--target",
        "1",
    )
    assert code == 2 and "cifar100" in err
    code, _, err = run(
        capsys,
        "unlearn",
        "--dataset",
        "digits",
        "--recipe",
        "gpu9000",
        "--model-labels",
        "class",
        "--forget",
        "1",
        "--target",
        "1",
    )
    assert code == 2 and "unknown recipe" in err


def test_help_documents_every_option():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")

    def check(name: str, p) -> None:  # nested commands too (tarf analyze identify ...)
        for action in p._actions:
            if action.dest != "help":
                assert action.help, f"tarf {name}: option {action.option_strings} has no help"
            if isinstance(action, argparse._SubParsersAction):
                for child, cp in action.choices.items():
                    check(f"{name} {child}", cp)

    for name, p in sub.choices.items():
        check(name, p)
    text = sub.choices["unlearn"].format_help()
    for opt in (
        "--dataset",
        "--data-root",
        "--model-labels",
        "--forget",
        "--target",
        "--prior",
        "--method",
        "--recipe",
        "--seed",
        "--out",
        "--set",
        "--config",
    ):
        assert opt in text


def test_classes_and_methods(capsys):
    code, out, _ = run(capsys, "classes", "--dataset", "cifar100")
    lines = out.splitlines()
    assert code == 0 and "people: baby, boy, girl, man, woman" in lines and len(lines) == 20
    code, out, _ = run(capsys, "methods")
    assert code == 0
    listed: dict[str, list[str]] = {}  # method: its hyperparameter lines
    method = ""
    for line in out.splitlines():
        if line.startswith("    "):
            listed[method].append(line.strip())
        else:
            method = line.split(":")[0]
            listed[method] = []
    assert set(listed) == set(METHODS)  # every registered method, nothing else
    for name, cls in METHODS.items():
        for f in dataclasses.fields(cls.Config):  # each on its own line, with its default
            line = next(x for x in listed[name] if x.startswith(f"{f.name}={f.default!r}"))
            assert len(line.split(None, 1)) == 2, (name, f.name)  # ... and a description
    assert any(x.startswith("t1=1") and "end of Phase I" in x for x in listed["tarf"])


def subcommands(parser=None, prefix=""):
    """Every (sub)command's name and parser, nested ones (tarf analyze identify) too."""
    parser = parser or build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield f"{prefix}{name}", child
                yield from subcommands(child, f"{prefix}{name} ")


def test_every_help_works_and_shows_defaults(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")  # one line per option: nothing wrapped
    names = [name for name, _ in subcommands()]
    assert {"demo", "unlearn", "train", "eval", "speed", "classes", "methods", "report", "bench",
            "unlearn-model", "eval-model", "analyze", "analyze identify", "analyze dynamics",
            "analyze ablate", "analyze architectures", "audit", "gpucheck"} == set(names)  # fmt: skip
    for name, parser in subcommands():
        with pytest.raises(SystemExit) as exit_:
            main([*name.split(), "--help"])
        assert exit_.value.code == 0
        text = capsys.readouterr().out
        assert text.startswith(f"usage: tarf {name}"), name
        for action in parser._actions:
            if action.default not in (None, False, argparse.SUPPRESS) and action.help:
                assert f"(default: {action.default})" in text, (name, action.option_strings)


def test_device_defaults_to_auto_everywhere():
    with_device = [name for name, p in subcommands() if "device" in {a.dest for a in p._actions}]
    assert len(with_device) >= 10
    for name, parser in subcommands():
        for action in parser._actions:
            if action.dest == "device":
                assert action.default == "auto", name


def test_train_original_and_reference(capsys, tmp_path, monkeypatch, shared_cache):
    """`tarf train`: the original on every sample; --exclude: the reference without it."""
    monkeypatch.setenv("TARF_CACHE", str(shared_cache))
    ck = tmp_path / "orig.pt"
    code, out, err = run(capsys, "train", *DIGITS, "--model-labels", "class", "--out", str(ck))
    assert code == 0, err
    orig = json.loads(out)
    assert orig["role"] == "original" and orig["label_level"] == "class"
    assert orig["num_classes"] == 10 and ck.exists()
    code, out, err = run(capsys, "train", *DIGITS, "--model-labels", "class", "--exclude",
                         "straight")  # fmt: skip
    assert code == 0, err
    ref = json.loads(out)
    assert ref["role"] == "retrained" and ref["num_classes"] == 10
    # "straight" is 1, 4 and 7: three of the ten (about equally large) digit classes
    assert 0.6 * orig["train_size"] < ref["train_size"] < 0.8 * orig["train_size"]


# -- tarf bench FILE --------------------------------------------------------------------------
@pytest.fixture
def grid_file_calls(monkeypatch, tmp_path):
    """``load_grid_file`` replaced by one that records its arguments and returns two
    grids on digits (the tests only plan them: --dry-run)."""
    monkeypatch.setenv("TARF_CACHE", str(tmp_path / "cache"))
    calls = []

    def fake(path, **overrides):
        calls.append((str(path), overrides))
        return [
            bench.GridSpec(bench.Grid("digits", "1", "straight", ("all-matched",), ("ft",), (0,),
                                      "tiny"), tmp_path / "a", "first"),
            bench.GridSpec(bench.Grid("digits", "1", "straight", ("target-mismatch",), ("ft",),
                                      (0,), "tiny"), tmp_path / "b"),
        ]  # fmt: skip

    monkeypatch.setattr(bench, "load_grid_file", fake)
    return calls


def test_bench_file_passes_only_the_options_given(capsys, grid_file_calls, tmp_path):
    code, out, err = run(capsys, "bench", "grids.yaml", "--dry-run")
    assert code == 0, err
    assert grid_file_calls == [("grids.yaml", {})]  # nothing given: the file's values
    assert "grid 1 of 2: " in out and "(first)" in out and "grid 2 of 2: " in out
    assert out.count("models (") == 2  # one plan per grid
    code, out, err = run(capsys, "bench", "grids.yaml", "--seeds", "0,", "--device", "cpu",
                         "--set", "lr=0.01", "--audit", "--dry-run", "--jobs", "1")  # fmt: skip
    assert code == 0, err
    assert grid_file_calls[-1] == (
        "grids.yaml",
        {"seeds": "0,", "device": "cpu", "audit": 8, "set": {"lr": "0.01"}},
    )
    config = tmp_path / "c.yaml"
    config.write_text("lr: 0.5\nk: 0.1\n")
    code, _, err = run(capsys, "bench", "grids.yaml", "--config", str(config), "--set", "lr=0.2",
                       "--methods", "ft", "--dry-run")  # fmt: skip
    assert code == 0, err
    assert grid_file_calls[-1][1] == {"methods": "ft", "set": {"lr": "0.2", "k": 0.1}}


def test_bench_only_picks_grids_by_their_folder(capsys, grid_file_calls, tmp_path):
    only = str(tmp_path / "b")  # the folder's whole path: "b" alone is in tmp_path too
    code, out, err = run(capsys, "bench", "grids.yaml", "--only", only, "--dry-run")
    assert code == 0, err
    assert "grid 1 of 1: " + str(tmp_path / "b") in out and "(first)" not in out
    code, _, err = run(capsys, "bench", "grids.yaml", "--only", "zz", "--dry-run")
    assert code == 2 and "--only zz: no grid of grids.yaml" in err and str(tmp_path / "a") in err
    code, _, err = run(capsys, "bench", *DIGITS, "--forget", "1", "--out", str(tmp_path / "o"),
                       "--only", "b", "--dry-run")  # fmt: skip
    assert code == 2 and "--only picks grids of a grid FILE" in err


def test_bench_without_a_file_needs_the_grid(capsys):
    code, _, err = run(capsys, "bench", "--dataset", "digits", "--dry-run")
    assert code == 2 and "give a grid FILE, or --forget, --out" in err


def test_bench_file_end_to_end_dry_run(capsys, tmp_path, monkeypatch):
    """A real grid file, two grids on digits, one flag overriding both: planned, not run."""
    monkeypatch.setenv("TARF_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "g.yaml"
    path.write_text(
        "dataset: digits\nforget: '1'\nconcept: straight\nrecipe: tiny\nmethods: ft\n"
        "seeds: 2\ngrids:\n"
        f"  - {{tasks: all-matched, out: {tmp_path / 'am'}}}\n"
        f"  - {{tasks: target-mismatch, out: {tmp_path / 'tm'}, description: wider}}\n"
    )
    code, out, err = run(capsys, "bench", str(path), "--dry-run", "--seeds", "5,")
    assert code == 0, err
    assert "(wider)" in out and out.count("seeds 5;") == 2 and "ft_target-mismatch_s5" in out
    assert not (tmp_path / "am").exists()
    # --out overrides every grid's folder (the two grids' runs have different names)
    code, out, err = run(capsys, "bench", str(path), "--dry-run", "--out", str(tmp_path / "x"))
    assert code == 0, err
    assert (
        f"grid 1 of 2: {tmp_path / 'x'}" in out and f"grid 2 of 2: {tmp_path / 'x'} (wider)" in out
    )


def test_speed_reports_both_figures(capsys):
    main(["speed", "--dataset", "digits", "--recipe", "tiny", "--steps", "2"])
    out = capsys.readouterr().out
    res = json.loads(out[: out.rindex("}") + 1])
    assert res["bare_images_per_s"] > 0 and res["loop_images_per_s"] > 0


def test_unlearn_a_subset_of_a_class(capsys, tmp_path):
    """--forget-fraction: the third label layer (Table 4 No. 4 here), end to end."""
    out = tmp_path / "sub.json"
    code = main(["unlearn", "--dataset", "digits", "--recipe", "tiny", "--model-labels", "class",
                 "--forget", "1", "--forget-fraction", "0.5", "--target", "1", "--method", "ft",
                 "--out", str(out)])  # fmt: skip
    assert code == 0
    rep = json.loads(out.read_text())
    assert rep["task"] == "data-mismatch" and rep["case"]["L_D"] == "sub-set"
    assert rep["request"]["forget_fraction"] == 0.5
    sizes = rep["partition_sizes"]
    assert sizes["forget"] + sizes["pseudo_remaining"] == sizes["target"]  # the rest of "1"
    assert abs(sizes["forget"] - sizes["pseudo_remaining"]) <= 1  # half of it
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["unlearn", "--dataset", "digits", "--model-labels", "class", "--forget", "1",
              "--forget-fraction", "2", "--target", "1"])  # fmt: skip
    err = capsys.readouterr().err  # one line, like every tarf error, not the usage first
    assert err.startswith("tarf unlearn: error: ") and "between 0 and 1" in err
    assert err.count("\n") == 1 and err.rstrip().endswith(
        "`tarf unlearn --help` lists the options)"
    )
    # an option the command lacks is told by that command, nested ones too
    for argv, prog in ((["audit", *DIGITS, "--forget", "1", "--bogus", "3"], "tarf audit"),
                       (["analyze", "identify", *DIGITS, "--out", "x", "--bogus"],
                        "tarf analyze identify")):  # fmt: skip
        with pytest.raises(SystemExit):
            main(argv)
        err = capsys.readouterr().err
        assert err.startswith(f"{prog}: error: unrecognized arguments: --bogus")
        assert f"`{prog} --help` lists the options" in err


# -- refusals before any work -----------------------------------------------------------------
@pytest.fixture
def no_training(monkeypatch):
    """A refusal must come before any training: a training fails the test."""
    import tarf.cache

    def trains(*_a, **_k):
        pytest.fail("a model was trained before the input was refused")

    monkeypatch.setattr(tarf.cache, "train_classifier", trains)


def refused(capsys, *argv):
    """The command's exit status 2 and its one line of stderr (no traceback)."""
    code, _, err = run(capsys, *argv)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("tarf: error: "), err
    return lines[0]


UNLEARN = ["unlearn", *DIGITS, "--model-labels", "class", "--forget", "1", "--target", "straight"]
REFUSALS = [
    (["--set", "k=nan"], ["hyperparameter k=nan", "finite number >= 0"]),
    (["--set", "epochs=0"], ["hyperparameter epochs=0", "an integer >= 1"]),
    (["--set", "lr=-0.1"], ["lr=-0.1", "> 0"]),
    (["--set", "lr=1e999"], ["lr=inf", "finite"]),
    (["--method", "salun", "--set", "mask_ratio=2"], ["mask_ratio=2.0", "in (0, 1]"]),
    (["--device", "tpu"], ["--device tpu"]),
    (["--out", "{file}/r.json"], ["--out {file}/r.json: {file} is a file, not a folder"]),
    (["--out", "{dir}"], ["--out {dir}: {dir} is a folder, not a file"]),
    (["--save-model", "{file}/m.pt"], ["--save-model {file}/m.pt: {file} is a file"]),
    (["--config", "{dir}/bad.yaml"], ["--config {dir}/bad.yaml, line 2: not valid YAML"]),
    (["--config", "{dir}/bad.json"], ["--config {dir}/bad.json, line 1: not valid JSON"]),
    (["--config", "{dir}/nope.yaml"], ["--config {dir}/nope.yaml: cannot read the file"]),
    (["--forget", ""], ["--forget '' names nothing"]),
    (["--target", " , "], ["--target ' , ' names nothing"]),
]


@pytest.mark.parametrize("args,messages", REFUSALS)
def test_bad_input_is_refused_before_any_training(capsys, tmp_path, no_training, args, messages):
    afile = tmp_path / "afile"
    afile.write_text("x")
    (tmp_path / "bad.yaml").write_text("lr: [0.1\nk: 2\n")
    (tmp_path / "bad.json").write_text('{"lr": 0.1,,}')
    fill = {"file": str(afile), "dir": str(tmp_path)}
    line = refused(capsys, *UNLEARN, *(a.format(**fill) for a in args))
    for m in messages:
        assert m.format(**fill) in line


def test_a_cache_path_that_is_a_file_is_refused(capsys, tmp_path, monkeypatch, no_training):
    afile = tmp_path / "afile"
    afile.write_text("x")
    monkeypatch.setenv("TARF_CACHE", str(afile))
    line = refused(capsys, *UNLEARN)
    assert f"TARF_CACHE={afile}: {afile} is a file, not a folder" in line
    line = refused(capsys, "train", *DIGITS, "--model-labels", "class")
    assert "TARF_CACHE" in line


def test_eval_of_a_file_that_is_not_a_model(capsys, tmp_path, no_training):
    junk = tmp_path / "notes.pt"
    junk.write_text("hello")
    args = ["eval", *DIGITS, "--model-labels", "class", "--forget", "1", "--target", "1"]
    line = refused(capsys, *args, "--checkpoint", str(junk))
    assert f"{junk} is not a model file" in line and "tarf eval-model" in line
    assert "Memo" not in line
    line = refused(capsys, *args, "--checkpoint", str(tmp_path / "none.pt"))
    assert "does not exist" in line
    import torch

    torch.save({"weights": 1}, tmp_path / "other.pt")
    line = refused(capsys, *args, "--checkpoint", str(tmp_path / "other.pt"))
    assert "a PyTorch file but not a tarf checkpoint" in line


def test_other_commands_refuse_before_any_work(capsys, tmp_path, no_training):
    afile = tmp_path / "afile"
    afile.write_text("x")
    grid = ["bench", "--dataset", "digits", "--forget", "1", "--concept", "straight", "--tasks",
            "all-matched", "--methods", "ft", "--seeds", "1", "--out", str(tmp_path / "b")]  # fmt: skip
    assert "hyperparameter epochs=0" in refused(capsys, *grid, "--set", "epochs=0")
    assert "hyperparameter k=nan" in refused(capsys, *grid, "--methods", "tarf", "--set", "k=nan")
    assert "--device tpu" in refused(capsys, *grid, "--device", "tpu")
    assert "is a file, not a folder" in refused(capsys, *grid, "--out", str(afile))
    assert not (tmp_path / "b").exists()
    train = ["train", *DIGITS, "--model-labels", "class"]
    assert "--exclude '' names nothing" in refused(capsys, *train, "--exclude", "")
    assert "--out" in refused(capsys, *train, "--out", f"{afile}/m.pt")
    assert "--out" in refused(capsys, "demo", "--out", f"{afile}/r.json")
    assert "--steps 0" in refused(capsys, "speed", *DIGITS, "--steps", "0")
    audit = ["audit", *DIGITS, "--forget", "1", "--target", "straight", "--model-labels", "class"]
    assert "hyperparameter lr=nan" in refused(capsys, *audit, "--method", "ft", "--set", "lr=nan")
    assert "--out" in refused(capsys, *audit, "--out", f"{afile}/a.json")
    ident = ["analyze", "identify", *DIGITS, "--out", str(tmp_path / "i")]
    assert "hyperparameter k=-1.0" in refused(capsys, *ident, "--set", "k=-1")


# -- the default recipe --------------------------------------------------------------------------
def test_the_default_recipe_follows_the_dataset_and_the_device(monkeypatch, capsys):
    import torch

    from tarf.cli.common import recipe
    from tarf.recipes import default_recipe

    assert default_recipe("digits", "cpu") == default_recipe("digits", "cuda") == "tiny"
    assert default_recipe("cifar100", "cpu") == default_recipe("fashion-mnist", "cpu") == "cpu"
    assert default_recipe("cifar100", "cuda:1") == "paper"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert default_recipe("cifar100", "auto") == "paper"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert default_recipe("cifar100", "auto") == "cpu"
    # every command resolves it the same way, and the bench's grids too
    parse = build_parser().parse_args
    args = parse(["unlearn", "--dataset", "digits", "--model-labels", "class", "--forget", "1"])
    assert args.recipe == "auto" and recipe(args).name == "tiny"
    args = parse(["train", "--dataset", "cifar100", "--model-labels", "class", "--device", "cpu"])
    assert recipe(args).name == "cpu"
    assert bench.Grid("digits", "1", "straight", ("all-matched",), ("ft",), (0,)).recipe == "tiny"
    g = bench.Grid("cifar100", "boy", "people", ("all-matched",), ("ft",), (0,), device="cuda")
    assert g.recipe == "paper"
    with pytest.raises(SystemExit):
        main(["unlearn", "--help"])
    assert "auto: tiny for digits, else paper on a CUDA GPU, else cpu" in " ".join(
        capsys.readouterr().out.split()
    )
