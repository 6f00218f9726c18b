"""The command line on the embedded digits dataset: a full run, its JSON, and bad input."""

import argparse
import json

import pytest

from tarf.cli import build_parser, main


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
    assert code == 0 and "people: baby, boy, girl, man, woman" in out
    code, out, _ = run(capsys, "methods")
    assert code == 0 and out.startswith("") and "tarf:" in out and "k_schedule" in out


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
    with pytest.raises(SystemExit):
        main(["unlearn", "--dataset", "digits", "--model-labels", "class", "--forget", "1",
              "--forget-fraction", "2", "--target", "1"])  # fmt: skip
    assert "between 0 and 1" in capsys.readouterr().err
