"""The model cache beyond hits and misses: cached metrics keyed by the weights, the
progress lines of a training and of a wait for another process, an unusable cache
folder refused."""

import threading
import time

import pytest
import torch

from tarf.cache import (
    CacheError,
    ModelCache,
    cache_root,
    evaluate_cached,
    prepare_dataset,
    trained_model,
)
from tarf.metrics import evaluate
from tarf.recipes import get_recipe
from tarf.request import UnlearningRequest

CPU = torch.device("cpu")


@pytest.fixture
def setup(toy_dataset, tmp_path):
    recipe = get_recipe("tiny", "toy")
    ds = prepare_dataset(toy_dataset, recipe)
    req = UnlearningRequest.from_names(ds.hierarchy, "cat", "class", "cat")
    cache = ModelCache(tmp_path / "models")
    idx = torch.arange(len(ds.y_train))
    parts = req.partitions(ds.y_train, ds.y_test)
    ev = (ds.x_train, req.model_labels(ds.y_train), ds.x_test, req.model_labels(ds.y_test),
          parts, CPU, 0, False)  # fmt: skip
    return ds, req, recipe, cache, idx, ev


def test_cached_metrics_follow_the_weights_not_the_key(setup):
    """A model replaced under the same key (a corrupt entry retrained, another process's
    model) never shows the metrics of the one it replaced."""
    ds, req, recipe, cache, idx, ev = setup
    first = trained_model(ds, req, idx, recipe, 0, CPU, "original", cache, log=lambda _m: None)
    before = evaluate_cached(first, req, ds, ev, cache)
    assert before == evaluate(first.model, *ev)
    # the same key now holds other weights: those of a seed-1 model
    other = trained_model(ds, req, idx, recipe, 1, CPU, "original", cache, log=lambda _m: None)
    entry = cache.load(other.meta["key"])
    cache.save(first.meta["key"], {k: v for k, v in entry.items() if k != "key"})
    swapped = trained_model(ds, req, idx, recipe, 0, CPU, "original", cache)
    assert swapped.meta["cached"] and swapped.meta["key"] == first.meta["key"]
    after = evaluate_cached(swapped, req, ds, ev, cache)
    assert after == evaluate(other.model, *ev) and after != before
    # a corrupt entry is retrained under a new weights id: its metrics are computed anew
    cache.path(first.meta["key"]).write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="unreadable"):
        retrained = trained_model(ds, req, idx, recipe, 0, CPU, "original", cache)
    assert not retrained.meta["cached"]
    assert retrained.meta["weights_id"] not in (first.meta["weights_id"], other.meta["weights_id"])
    assert (
        trained_model(ds, req, idx, recipe, 0, CPU, "original", cache).meta["weights_id"]
        == (retrained.meta["weights_id"])
    )
    # an entry written before weights ids: keyed by a hash of its weights
    entry = cache.load(first.meta["key"])
    del entry["meta"]["weights_id"]
    cache.save(first.meta["key"], {k: v for k, v in entry.items() if k != "key"})
    old = trained_model(ds, req, idx, recipe, 0, CPU, "original", cache)
    assert old.meta["weights_id"] and old.meta["weights_id"] != retrained.meta["weights_id"]


def test_a_training_and_a_wait_are_announced(setup):
    """A line before a training (what, recipe, size) and one when another process holds
    the model's lock; none for a model loaded from the cache."""
    ds, req, recipe, cache, idx, _ = setup
    lines: list[str] = []
    trained_model(ds, req, idx, recipe, 0, CPU, "original", cache, log=lines.append)
    assert len(lines) == 1
    assert lines[0].startswith("training the original model (toy, class labels, seed 0): ")
    assert f"recipe tiny ({recipe.arch}, {recipe.epochs} epochs, {len(idx)} images)" in lines[0]
    trained_model(ds, req, idx, recipe, 0, CPU, "original", cache, log=lines.append)
    assert len(lines) == 1  # cached: nothing to announce
    key = trained_model(ds, req, idx, recipe, 0, CPU, "original", cache).meta["key"]
    waited: list[str] = []
    with cache.lock(key):  # another process is training this model
        t = threading.Thread(
            target=trained_model,
            args=(ds, req, idx, recipe, 0, CPU, "original", cache),
            kwargs={"log": waited.append},
        )
        t.start()
        for _ in range(100):
            if waited:
                break
            time.sleep(0.05)
        assert len(waited) == 1 and waited[0].startswith("waiting for another process training")
    t.join()
    assert len(waited) == 1  # then loaded from the cache: no training line


def test_an_expected_time_from_the_bench_log(setup, monkeypatch):
    """The training line gives the time the benches on this machine measured."""
    from tarf.bench.execute import append_log

    ds, req, recipe, cache, idx, _ = setup
    out = cache.root.parent / "bench"
    out.mkdir(parents=True)
    for seconds in (40.0, 50.0):
        append_log(out, {"job": "original_class_s0", "kind": "model", "status": "ok",
                         "seconds": seconds + 1, "train_s": seconds, "cached": False,
                         "dataset": "toy", "recipe": "tiny"})  # fmt: skip
    lines: list[str] = []
    trained_model(ds, req, idx, recipe, 0, CPU, "original", cache, log=lines.append)
    assert lines[0].endswith("about 45s (measured here before)")


def test_a_cache_that_cannot_be_a_folder_is_refused(tmp_path, monkeypatch):
    afile = tmp_path / "afile"
    afile.write_text("x")
    for value in (afile, afile / "below"):
        monkeypatch.setenv("TARF_CACHE", str(value))
        with pytest.raises(CacheError, match=f"TARF_CACHE={value}: {afile} is a file"):
            cache_root()
    monkeypatch.setenv("TARF_CACHE", str(tmp_path / "new" / "cache"))
    assert cache_root() == tmp_path / "new" / "cache" and not (tmp_path / "new").exists()


def test_a_superclass_model_of_another_grouping_has_its_own_key():
    """A --hierarchy that regroups the classes trains its own superclass model; the
    built-in grouping (its superclasses renamed at most) keeps the built-in key."""
    from tarf.cache import model_key
    from tarf.data import load_dataset
    from tarf.hierarchy import LabelHierarchy

    ds = load_dataset("digits")
    recipe, idx = get_recipe("tiny", "digits"), torch.arange(len(ds.y_train))
    groups = {"round": ["0", "6", "8", "9"], "straight": ["1", "4", "7"], "curved": ["2", "3", "5"]}
    order = ds.hierarchy.class_names

    def key(hierarchy, level="superclass"):
        req = UnlearningRequest.from_names(hierarchy, "2", level, "2")
        return model_key(ds, req, idx, recipe, 0)

    builtin = key(ds.hierarchy)
    renamed = {f"s{i}": v for i, v in enumerate(groups.values())}
    assert key(LabelHierarchy.from_groups("h", renamed, order)) == builtin
    swapped = {"round": groups["straight"], "straight": groups["round"], "curved": groups["curved"]}
    assert key(LabelHierarchy.from_groups("h", swapped, order)) != builtin
    # a class model's labels are the dataset's own: no hierarchy changes its key
    assert key(LabelHierarchy.from_groups("h", swapped, order), "class") == key(
        ds.hierarchy, "class"
    )
