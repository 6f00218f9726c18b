"""Training pieces: batch augmentation, the model cache (hit, miss, corrupt), atomic writes."""

import dataclasses
import os
import time

import pytest
import torch
from conftest import interrupted_training_state

from tarf.cache import ModelCache, trained_model
from tarf.io import atomic_write, write_json
from tarf.methods.base import UnlearnContext
from tarf.methods.common import per_sample_loss
from tarf.models import create_model
from tarf.recipes import get_recipe
from tarf.request import UnlearningRequest
from tarf.training import augment, forward_logits, prepare_images


def test_augment_crops_and_flips_whole_batch():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).view(2, 1, 4, 4)
    g = torch.Generator().manual_seed(0)
    out = augment(x, pad=0, flip=True, generator=g)
    for i in range(2):  # each image is either itself or its mirror
        assert torch.equal(out[i], x[i]) or torch.equal(out[i], x[i].flip(2))
    out = augment(x, pad=1, flip=False, generator=torch.Generator().manual_seed(1))
    assert out.shape == x.shape
    # a crop of the zero-padded image: every value is 0 or comes from the same image
    for i in range(2):
        assert set(out[i].flatten().tolist()) <= set(x[i].flatten().tolist()) | {0.0}
    # seeded: same generator state, same batch
    a = augment(x, 1, True, torch.Generator().manual_seed(5))
    b = augment(x, 1, True, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_inference_passes_do_not_depend_on_the_batch_size():
    """Eval passes pick their batch by device; the logits must not: eval mode, so no
    batch statistics, and a chunked pass equals one whole-batch pass."""
    torch.manual_seed(0)
    model = create_model("cpunet-tiny", 5).train()
    x = torch.randint(0, 256, (300, 3, 8, 8), dtype=torch.uint8)
    y = torch.randint(0, 5, (300,))
    cpu = torch.device("cpu")
    whole = forward_logits(model, x, cpu, batch_size=300)
    assert model.training  # the pass restores the caller's mode
    assert torch.allclose(forward_logits(model, x, cpu), whole, atol=1e-5)
    assert torch.allclose(forward_logits(model, x, cpu, batch_size=7), whole, atol=1e-5)
    ctx = UnlearnContext(device=cpu, recipe=get_recipe("tiny"))
    expected = torch.nn.functional.cross_entropy(whole, y, reduction="none")
    assert torch.allclose(per_sample_loss(model, x, y, ctx, batch_size=7), expected, atol=1e-5)
    assert torch.allclose(per_sample_loss(model, x, y, ctx), expected, atol=1e-5)


def test_prepare_images_downsamples_by_area():
    x = torch.tensor([[[[0, 255] * 8] * 16]], dtype=torch.uint8)  # 1x1x16x16 stripes
    y = prepare_images(x, 2)
    assert y.shape == (1, 1, 8, 8) and int(y[0, 0, 0, 0]) == 128
    assert (
        prepare_images(torch.zeros(1, 1, 8, 8, dtype=torch.uint8), 2).shape[-1] == 8
    )  # small: untouched


def _tiny(toy_dataset):
    recipe = dataclasses.replace(get_recipe("tiny"), epochs=2)
    req = UnlearningRequest.from_names(toy_dataset.hierarchy, "cat", "class", "cat")
    return recipe, req


def test_cache_hit_miss_and_corrupt(toy_dataset, tmp_path):
    recipe, req = _tiny(toy_dataset)
    cache = ModelCache(tmp_path / "models")
    idx = torch.arange(len(toy_dataset.y_train))
    cpu = torch.device("cpu")
    first = trained_model(toy_dataset, req, idx, recipe, 0, cpu, "original", cache)
    assert not first.meta["cached"]
    second = trained_model(toy_dataset, req, idx, recipe, 0, cpu, "original", cache)
    assert second.meta["cached"] and second.meta["key"] == first.meta["key"]
    for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values()):
        assert torch.equal(a, b)
    # anything that determines the weights changes the key: seed, data, recipe
    assert (
        trained_model(toy_dataset, req, idx, recipe, 1, cpu, "original", cache).meta["key"]
        != first.meta["key"]
    )
    assert (
        trained_model(toy_dataset, req, idx[10:], recipe, 0, cpu, "retrained", cache).meta["key"]
        != first.meta["key"]
    )
    lr = dataclasses.replace(recipe, lr=0.05)
    assert (
        trained_model(toy_dataset, req, idx, lr, 0, cpu, "original", cache).meta["key"]
        != first.meta["key"]
    )
    # a corrupt entry is a miss that retrains and rewrites it
    path = cache.path(first.meta["key"])
    path.write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning, match="unreadable"):
        third = trained_model(toy_dataset, req, idx, recipe, 0, cpu, "original", cache)
    assert not third.meta["cached"] and path.exists()
    assert cache.load(first.meta["key"]) is not None


def test_concurrent_requests_for_one_model_train_it_once(toy_dataset, tmp_path):
    """Two bench workers needing the same model (retrain on one D_un for two tasks): the
    cache lock makes the second wait and load what the first trained."""
    import threading

    recipe, req = _tiny(toy_dataset)
    cache = ModelCache(tmp_path / "models")
    idx = torch.arange(len(toy_dataset.y_train))
    metas = []
    run = lambda: metas.append(  # noqa: E731
        trained_model(toy_dataset, req, idx, recipe, 0, torch.device("cpu"), "original", cache).meta
    )
    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(m["cached"] for m in metas) == [False, True]


def test_file_lock_excludes_a_second_holder(tmp_path):
    import threading
    import time

    from tarf.io import file_lock

    events = []

    def hold(name: str, seconds: float) -> None:
        with file_lock(tmp_path / "x.lock"):
            events.append(f"{name} in")
            time.sleep(seconds)
            events.append(f"{name} out")

    first = threading.Thread(target=hold, args=("a", 0.3))
    first.start()
    time.sleep(0.1)
    hold("b", 0)
    first.join()
    assert events == ["a in", "a out", "b in", "b out"]


def test_training_is_deterministic(toy_dataset, tmp_path):
    recipe, req = _tiny(toy_dataset)
    idx = torch.arange(len(toy_dataset.y_train))
    a = trained_model(
        toy_dataset,
        req,
        idx,
        recipe,
        3,
        torch.device("cpu"),
        "original",
        ModelCache(tmp_path / "a"),
    )
    b = trained_model(
        toy_dataset,
        req,
        idx,
        recipe,
        3,
        torch.device("cpu"),
        "original",
        ModelCache(tmp_path / "b"),
    )
    for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()):
        assert torch.equal(x, y)


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "r.json"
    write_json(target, {"ok": 1})

    def boom(f):
        f.write("partial")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        atomic_write(target, boom, mode="w")
    assert target.read_text().startswith("{") and '"ok": 1' in target.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temp file left behind
    assert os.access(target, os.R_OK)


def test_atomic_write_respects_umask(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_json(tmp_path / "r.json", {"ok": 1})
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644  # mkstemp alone would leave 0600


@pytest.mark.parametrize("arch", ["vgg16-bn", "wrn16-4"])
def test_ablation_architectures_classify_small_images(arch):
    """The architecture ablation's models: any image size of the recipes, features and head."""
    from tarf.models import create_model
    from tarf.recipes import get_recipe

    r = get_recipe(f"cpu:{arch}", "cifar100")
    assert r.arch == arch and r.name == f"cpu:{arch}" and r.epochs == get_recipe("cpu").epochs
    for channels, size in ((3, 16), (1, 14)):
        m = create_model(arch, 20, channels).eval()
        x = torch.rand(2, channels, size, size)
        assert m(x).shape == (2, 20) and m.features(x).shape[0] == 2
    with pytest.raises(ValueError, match="unknown architecture"):
        get_recipe("cpu:nope")


def test_a_registered_factory_gets_the_keywords_it_names(monkeypatch):
    """A user's ``def net(num_classes)`` builds; one that needs more names the fix."""
    from tarf import models

    monkeypatch.setitem(models.MODELS, "mine", lambda num_classes: torch.nn.Linear(4, num_classes))
    assert models.create_model("mine", 3, in_channels=1).out_features == 3
    monkeypatch.setitem(models.MODELS, "needy", lambda num_classes, width: None)
    with pytest.raises(ValueError, match="'needy' could not be built .*give any other argument"):
        models.create_model("needy", 3)


def test_interrupted_training_resumes_to_the_same_weights(toy_dataset, tmp_path, monkeypatch):
    """A training killed after its first epoch picks up the saved state and ends with the
    weights of an uninterrupted run; the state file is gone once the model is done."""
    import tarf.training as training

    recipe = dataclasses.replace(get_recipe("tiny"), epochs=3)
    x, y, cpu = toy_dataset.x_train, toy_dataset.y_train, torch.device("cpu")
    k = int(y.max()) + 1
    whole = training.train_classifier(x, y, k, recipe, 0, cpu).model.state_dict()

    state = interrupted_training_state(toy_dataset, tmp_path, monkeypatch, recipe)
    assert torch.load(state, weights_only=False)["epoch"] == 1
    resumed = training.train_classifier(x, y, k, recipe, 0, cpu, resume_path=state)
    assert not state.exists()
    for name, w in whole.items():
        assert torch.equal(resumed.model.state_dict()[name], w), name
    # a torn state file costs the restart, not the run
    state.write_bytes(b"torn")
    with pytest.warns(UserWarning, match="starting over"):
        again = training.train_classifier(x, y, k, recipe, 0, cpu, resume_path=state)
    assert torch.equal(again.model.state_dict()["head.weight"], whole["head.weight"])


def test_training_time_alone_is_its_cpu_time_over_its_threads(toy_dataset, tmp_path, monkeypatch):
    """``alone_seconds`` (what the dry run estimates a model from) is CPU time over
    threads: a training whose wall clock runs ten times slower (another bench on the
    same cores) keeps it, it adds every session of a resumed training over that session's
    own threads, and a state that predates it gives None rather than the last session's
    share."""
    import types

    import tarf.training as training

    recipe = dataclasses.replace(get_recipe("tiny"), epochs=3)
    x, y, cpu = toy_dataset.x_train, toy_dataset.y_train, torch.device("cpu")
    k = int(y.max()) + 1
    slow = types.SimpleNamespace(
        perf_counter=lambda: 10 * time.perf_counter(), process_time=time.process_time
    )
    monkeypatch.setattr(training, "time", slow)
    res = training.train_classifier(x, y, k, recipe, 0, cpu)
    assert 0 < res.alone_seconds < res.train_seconds / 4  # cores/threads <= 2 here

    monkeypatch.setattr(training, "time", time)
    state = interrupted_training_state(toy_dataset, tmp_path, monkeypatch, recipe)
    saved = torch.load(state, weights_only=False)
    assert 0 < saved["alone_elapsed"] <= saved["elapsed"]
    torch.save({**saved, "alone_elapsed": 1000.0, "elapsed": 2000.0}, state)  # a long first part
    threads = torch.get_num_threads()
    # the last part with twice the threads, its CPU clock running `threads` times the wall
    # clock: its share is half its wall time, and the first part's 1000 s stay 1000 s
    busy = types.SimpleNamespace(
        perf_counter=time.perf_counter, process_time=lambda: threads * time.perf_counter()
    )
    monkeypatch.setattr(training, "time", busy)
    try:
        torch.set_num_threads(2 * threads)
        resumed = training.train_classifier(x, y, k, recipe, 0, cpu, resume_path=state)
    finally:
        torch.set_num_threads(threads)
    monkeypatch.setattr(training, "time", time)
    last_part = resumed.train_seconds - 2000.0
    assert resumed.alone_seconds - 1000.0 == pytest.approx(last_part / 2, rel=0.1)

    state = interrupted_training_state(toy_dataset, tmp_path, monkeypatch, recipe)
    older = torch.load(state, weights_only=False)
    del older["alone_elapsed"]
    torch.save(older, state)
    older_result = training.train_classifier(x, y, k, recipe, 0, cpu, resume_path=state)
    assert older_result.alone_seconds is None


def test_time_alone_is_cpu_time_over_threads_at_most_the_wall_time(monkeypatch):
    """CPU time counts every thread of the process, not only torch's: a short job's CPU
    time over torch's threads can exceed its wall time, and the time alone never does."""
    import types

    import tarf.training as training

    def clocks(wall: float, cpu: float) -> types.SimpleNamespace:
        return types.SimpleNamespace(perf_counter=lambda: wall, process_time=lambda: cpu)

    monkeypatch.setattr(training, "time", clocks(wall=11.0, cpu=3.0))
    assert training.time_alone(10.0, 1.0, threads=4) == 0.5  # two CPU seconds over 4 threads
    monkeypatch.setattr(training, "time", clocks(wall=11.0, cpu=6.0))
    assert training.time_alone(10.0, 1.0, threads=2) == 1.0  # 2.5 over 2 threads: the wall's 1
    # the caller's own reading of the wall clock caps it (a saved state's elapsed time)
    assert training.time_alone(10.0, 1.0, threads=2, wall_now=10.5) == 0.5
