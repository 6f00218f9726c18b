"""Every method's hyperparameters are checked when the method is made, before any work:
type, finiteness and range by one declarative rule set (tarf.methods.base), for the
baselines and TARF alike; config files and --set pairs that cannot be read name
themselves."""

import dataclasses
import math
import typing

import pytest

from tarf.methods import METHODS, get_method
from tarf.methods.base import check_config, number_check, parse_set, read_config_file


def numeric_fields():
    """(method, field, its base type) for every int or float hyperparameter."""
    for name, cls in METHODS.items():
        hints = typing.get_type_hints(cls.Config)
        for f in dataclasses.fields(cls.Config):
            hint, args = hints[f.name], typing.get_args(hints[f.name])
            if type(None) in args:  # X | None
                hint = next(a for a in args if a is not type(None))
            if hint in (int, float):
                yield name, f, hint


def test_every_default_is_valid():
    for name, cls in METHODS.items():
        check_config(cls.Config())
        get_method(name)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_no_number_may_be_non_finite(value):
    fields = list(numeric_fields())
    assert {m for m, *_ in fields} >= {"tarf", "ft", "ga", "rl", "salun", "scrub", "iu", "bs"}
    for method, f, _ in fields:
        with pytest.raises(ValueError, match=f"method {method}: hyperparameter {f.name}="):
            get_method(method, overrides={f.name: value})


def test_ranges_every_method_follows():
    for method, f, base in numeric_fields():
        if f.name == "epochs":
            for bad in ("0", "-1"):
                with pytest.raises(ValueError, match=r"epochs=-?\d+: expected an integer >= 1"):
                    get_method(method, overrides={"epochs": bad})
        if f.name == "lr" or f.name.endswith("batch_size"):
            with pytest.raises(ValueError, match=f"{f.name}=0"):
                get_method(method, overrides={f.name: "0"})
        if f.name.endswith(("_fraction", "_ratio")):
            for bad in ("0", "1.5"):
                with pytest.raises(ValueError, match=r"in \(0, 1\]"):
                    get_method(method, overrides={f.name: bad})
        check = number_check(f)
        if base is int and check.test(-1) is False:  # a count
            with pytest.raises(ValueError, match=f"{f.name}=-1"):
                get_method(method, overrides={f.name: "-1"})
    # TARF's fields through the generic rules (tarf.py declares none itself)
    for name, value in [("k", "-0.1"), ("t1", "-1"), ("t0", "-1"), ("auto_alpha", "1"),
                        ("auto_forget_quantile", "1.5"), ("id_samples_per_class", "0"),
                        ("instance_pool", "0"), ("forget_batch_size", "0"),
                        ("class_signal", "nonsense")]:  # fmt: skip
        with pytest.raises(ValueError, match=f"method tarf: hyperparameter {name}="):
            get_method("tarf", overrides={name: value})
    # a field's own rule: SCRUB's temperature divides the logits
    with pytest.raises(ValueError, match=r"kd_T=0: expected a finite number > 0"):
        get_method("scrub", kd_T=0)
    # what is valid stays valid: a negative frozen_blocks counts from the end
    assert get_method("tarf", frozen_blocks=-1).config.frozen_blocks == -1
    assert get_method("tarf", k=0.0).config.k == 0.0


def test_types_are_checked_for_values_that_are_not_text():
    """A config file's or a caller's values: no silent float for an int, no string for a
    switch."""
    for method, name, value, expected in [
        ("ft", "epochs", 2.5, "an integer >= 1"),
        ("ga", "freeze_bn", "yes please", "expected bool"),
        ("ga", "freeze_bn", 1, "true or false"),
        ("ft", "lr", "fast", "expected float"),
        ("ft", "lr", True, "a finite number > 0"),
        ("scrub", "lr_decay_epochs", (3, -1), "a list of numbers >= 0"),
    ]:
        with pytest.raises(ValueError, match=expected):
            get_method(method, overrides={name: value})
    assert get_method("scrub", overrides={"lr_decay_epochs": "2,4"}).config.lr_decay_epochs == (
        2,
        4,
    )
    assert math.isclose(get_method("ft", lr=1).config.lr, 1)


def test_set_pairs_and_list_values():
    assert parse_set(["lr=0.1,k=2", "lr_decay_epochs=3,5,9"]) == {
        "lr": "0.1", "k": "2", "lr_decay_epochs": "3,5,9"
    }  # fmt: skip
    for bad in ("", "=1", "lr"):
        with pytest.raises(ValueError, match="--set expects NAME=VALUE"):
            parse_set([bad])


def test_config_files_that_cannot_be_read_name_themselves(tmp_path):
    cases = {
        "bad.yaml": ("lr: [0.1\nk: 2\n", "bad.yaml, line 2: not valid YAML"),
        "bad.json": ('{"lr": 0.1,,}', "bad.json, line 1: not valid JSON"),
        "list.yaml": ("- 1\n", "list.yaml: a method config file must map"),
        "twice.yaml": ("lr: 0.1\nk: 2\nlr: 0.2\n", "twice.yaml, line 3: .*'lr' given twice"),
        "twice.json": ('{"lr": 0.1, "lr": 0.2}', "twice.json: not valid JSON .*'lr' given twice"),
        "grid.yaml": ("grids:\n  - {dataset: digits}\n", "grid.yaml is a grid file .*tarf bench"),
    }
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(ValueError, match=message):
            read_config_file(tmp_path / name)
    with pytest.raises(ValueError, match="nope.yaml: cannot read the file"):
        read_config_file(tmp_path / "nope.yaml")
    (tmp_path / "ok.yaml").write_text("lr: 0.5\n")
    assert get_method("ft", tmp_path / "ok.yaml").config.lr == 0.5
    (tmp_path / "typo.yaml").write_text("lrr: 0.5\n")
    with pytest.raises(ValueError, match=r"--config \S*typo.yaml: unknown hyperparameter 'lrr'"):
        get_method("ft", tmp_path / "typo.yaml", {"lr": "0.1"})
    (tmp_path / "nan.yaml").write_text("lr: .nan\n")
    with pytest.raises(ValueError, match="lr=nan"):
        get_method("ft", tmp_path / "nan.yaml")


def test_config_diff_names_each_field_that_differs_or_one_side_lacks():
    from tarf.methods.base import NOT_A_SETTING, config_diff

    have, want = {"lr": 0.1, "k": 1.0, "old": 3}, {"k": 1.0, "lr": 0.2, "new": "x"}
    assert config_diff(have, want) == {
        "lr": (0.1, 0.2), "old": (3, NOT_A_SETTING), "new": (NOT_A_SETTING, "x"),
    }  # fmt: skip
    assert list(config_diff(have, want)) == ["lr", "old", "new"]  # have's order, then want's
    assert config_diff(have, dict(have)) == {}
