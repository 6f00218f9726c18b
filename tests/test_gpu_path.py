"""The GPU path (issue 28) on a CPU: Ray's GPU request, the torch floor, cross-device
resume, the precision choice, fp32 evaluation, cuDNN autotuning, the device index, the
local backend's GPU spread, `tarf speed` on the same work, per-epoch log lines and
`tarf gpucheck`; mocks stand in for the GPU where one is needed."""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing as mp
import re
from pathlib import Path

import pytest
import torch
from conftest import interrupted_training_state

import tarf.devices as tarf_devices
import tarf.training as training
from tarf.bench import backends
from tarf.bench.grid import BenchError
from tarf.cli import main
from tarf.methods.base import UnlearnContext
from tarf.methods.common import Pool, per_sample_loss
from tarf.models import create_model
from tarf.recipes import get_recipe

ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")
CUDA = torch.device("cuda", 0)


# -- 1. Ray gives a job no GPU unless it asks for one ---------------------------------------
def test_ray_gpus_per_job_follows_the_device_or_refuses():
    ask = backends.ray_gpus_per_job
    assert ask(None, ["cuda"], gpus_visible=False) == 1.0
    assert ask(None, ["auto"], gpus_visible=True) == 1.0
    assert ask(None, ["auto"], gpus_visible=False) == 0.0
    assert ask(None, ["cpu"], gpus_visible=True) == 0.0
    assert ask(0.25, ["cuda", "auto"], gpus_visible=True) == 0.25
    assert ask(0, ["cpu"], gpus_visible=True) == 0.0
    for requested, devices, visible in ((0, ["cuda"], False), (0, ["auto"], True)):
        with pytest.raises(BenchError, match="--gpus-per-job"):
            ask(requested, devices, visible)
    with pytest.raises(BenchError, match="use --device cuda"):
        ask(None, ["cuda:1"], True)


def test_bench_refuses_cuda_jobs_without_a_gpu_before_any_work(tmp_path, capsys, monkeypatch):
    import tarf.bench

    def no_work(*args, **kwargs):
        raise AssertionError("the grid was planned before the refusal")

    monkeypatch.setattr(tarf.bench, "make_plan", no_work)
    argv = ["bench", "--dataset", "digits", "--recipe", "tiny", "--forget", "1",
            "--tasks", "all-matched", "--methods", "ft", "--out", str(tmp_path / "b"),
            "--backend", "ray", "--device", "cuda", "--gpus-per-job", "0"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--gpus-per-job" in err and "Traceback" not in err


def test_ray_backend_checks_the_cluster_once_it_is_up(monkeypatch):
    """A driver without a GPU may drive a cluster with GPUs (auto: one per job), and jobs
    that ask for GPUs a cluster lacks would wait forever (refused)."""
    b = object.__new__(backends.RayBackend)
    b.requested, b.devices = None, ("auto",)
    monkeypatch.setattr(backends, "visible_gpus", lambda: 0)
    assert b._cluster_gpus(cluster_gpus=4) == 1.0
    assert b._cluster_gpus(cluster_gpus=0) == 0.0
    b.devices = ("cuda",)
    with pytest.raises(BenchError, match="cluster has none"):
        b._cluster_gpus(cluster_gpus=0)


# -- 2. the torch floor -----------------------------------------------------------------------
def test_torch_floor_covers_the_training_loop():
    """``torch.amp.GradScaler`` (the training loop's) exists from torch 2.3 on."""
    text = (ROOT / "pyproject.toml").read_text()
    floor = re.search(r'"torch>=(\d+)\.(\d+)', text)
    assert floor and (int(floor[1]), int(floor[2])) >= (2, 3)
    assert "torch==2.13.0" in (ROOT / ".ci" / "run").read_text()  # CI's pin, unchanged


# -- 3. a training state saved on another device type -----------------------------------------
def test_state_from_another_device_type_starts_over(toy_dataset, tmp_path, monkeypatch):
    recipe = dataclasses.replace(get_recipe("tiny"), epochs=3)
    x, y = toy_dataset.x_train, toy_dataset.y_train
    whole = training.train_classifier(x, y, 7, recipe, 0, CPU).model.state_dict()
    state = interrupted_training_state(toy_dataset, tmp_path, monkeypatch, recipe)
    saved = torch.load(state, weights_only=False)
    assert saved["device_type"] == "cpu"

    # the other way round needs no GPU: a CUDA training finds the CPU state
    with pytest.warns(UserWarning, match="saved on cpu .* runs on cuda"):
        assert training.load_training_state(state, CUDA) is None
    assert not state.exists()

    # a state a CUDA training left (its 16-byte generator state), found by a CPU training
    cuda_state = {**saved, "device_type": "cuda", "aug_gen": torch.zeros(16, dtype=torch.uint8)}
    torch.save(cuda_state, state)
    with pytest.warns(UserWarning, match="saved on cuda .* runs on cpu"):
        again = training.train_classifier(x, y, 7, recipe, 0, CPU, resume_path=state)
    assert not state.exists()
    for name, w in whole.items():
        assert torch.equal(again.model.state_dict()[name], w), name

    # written before the device type was recorded: told by the generator state's size
    legacy = {k: v for k, v in saved.items() if k != "device_type"}
    assert training.state_device_type(legacy) == "cpu"
    assert training.state_device_type({**legacy, "aug_gen": torch.zeros(16)}) == "cuda"
    torch.save(legacy, state)
    resumed = training.train_classifier(x, y, 7, recipe, 0, CPU, resume_path=state)
    for name, w in whole.items():
        assert torch.equal(resumed.model.state_dict()[name], w), name


def test_state_that_does_not_fit_starts_over(toy_dataset, tmp_path, monkeypatch):
    recipe = dataclasses.replace(get_recipe("tiny"), epochs=2)
    x, y = toy_dataset.x_train, toy_dataset.y_train
    whole = training.train_classifier(x, y, 7, recipe, 0, CPU).model.state_dict()
    state = interrupted_training_state(toy_dataset, tmp_path, monkeypatch, recipe)
    saved = torch.load(state, weights_only=False)
    saved["gen"] = torch.zeros(3, dtype=torch.uint8)  # no generator's state
    torch.save(saved, state)
    with pytest.warns(UserWarning, match="does not fit"):
        again = training.train_classifier(x, y, 7, recipe, 0, CPU, resume_path=state)
    assert not state.exists()
    for name, w in whole.items():
        assert torch.equal(again.model.state_dict()[name], w), name


# -- 4. pools on the device: CPU batches unchanged ---------------------------------------------
def test_pool_batches_on_cpu_are_those_of_the_seeded_cpu_stream(toy_dataset):
    """The pool draws on its device; on a CPU that is the CPU generator seeded as before,
    so the batches (and every CPU result) are bit-identical to the earlier pools'."""
    recipe = get_recipe("tiny")
    ctx = UnlearnContext(CPU, recipe, seed=3)
    x, y = toy_dataset.x_train, toy_dataset.y_train
    pool = Pool(x, y, ctx, seed_offset=2)
    gen = torch.Generator().manual_seed(3 * 1000 + 2)
    aug = torch.Generator().manual_seed(3 * 1000 + 3)
    order = torch.empty(0, dtype=torch.long)
    for n in (64, 100, 200, 37):
        idx = []
        while sum(len(i) for i in idx) < min(n, len(y)):
            if len(order) == 0:
                order = torch.randperm(len(y), generator=gen)
            need = min(n, len(y)) - sum(len(i) for i in idx)
            idx.append(order[:need])
            order = order[need:]
        idx = torch.cat(idx)
        expected = training.augment(x[idx].float().div_(255), recipe.crop_pad, recipe.flip, aug)
        xb, yb = pool.batch(n)
        assert torch.equal(xb, expected) and torch.equal(yb, y[idx])


def test_relabel_pool_draws_on_its_device(toy_dataset):
    """RL's labels: forget samples get another class, the rest keep theirs, in both ways
    of drawing them: only for forget samples (the CPU's stream) or for every sample with
    no host sync (the GPU's; forced here on the CPU)."""
    from tarf.methods.rl import RelabelPool, relabel_forget
    from tarf.request import UnlearningRequest
    from tarf.run import unlearn_data

    req = UnlearningRequest.from_names(toy_dataset.hierarchy, "cat", "class", "cat")
    data = unlearn_data(toy_dataset, req)
    pool = RelabelPool(data, UnlearnContext(CPU, get_recipe("tiny"), seed=0))
    batches = list(pool.epoch(200, 64))
    assert sum(len(yb) for _, yb in batches) == 200
    assert all(xb.device == yb.device == CPU for xb, yb in batches)
    y = torch.cat([data.y_forget, data.y_remain])
    forget = torch.arange(len(y)) < len(data.y_forget)
    for sync_free in (False, True):
        new = relabel_forget(y, forget, 7, torch.Generator().manual_seed(0), sync_free)
        assert (new[forget] != y[forget]).all() and torch.equal(new[~forget], y[~forget])
    assert relabel_forget(y, torch.zeros_like(forget), 7, torch.Generator()) is y


def test_scrub_reads_its_losses_once_per_pass():
    """SCRUB's per-epoch means are summed on the device and read once; the value is the
    Python sum of the per-step values (float64, in order)."""
    from tarf.methods.scrub import _Mean

    values = [torch.tensor(v, dtype=torch.float32) for v in (0.1, 2.5, 1e-3, 7.25)]
    m = _Mean(CPU)
    for v in values:
        m.add(v)
    assert m.read() == round(sum(v.item() for v in values) / len(values), 5)


# -- 5. precision ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "capability, train, unlearn, scaled",
    [((7, 0), torch.float16, None, True), ((7, 5), torch.float16, None, True),
     ((8, 0), torch.bfloat16, torch.bfloat16, False), ((9, 0), torch.bfloat16, torch.bfloat16, False)],
)  # fmt: skip
def test_bf16_only_where_it_is_native(capability, train, unlearn, scaled, monkeypatch):
    """V100/T4 (7.x) say yes to is_bf16_supported() (emulation): fp16 with loss scaling
    for training there, fp32 for unlearning (no fp16 ascent without a scaler)."""
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert training.amp_dtype(CUDA) == train
    assert training.unlearn_dtype(CUDA) == unlearn
    assert training.scaler_enabled(CUDA) is scaled
    made = []

    class Recorder(contextlib.nullcontext):
        def __init__(self, device_type, dtype=None, **kw):
            made.append((device_type, dtype))

    monkeypatch.setattr(torch, "autocast", Recorder)
    training.autocast(CUDA)
    training.unlearn_autocast(CUDA)
    assert made == [("cuda", train)] + ([("cuda", unlearn)] if unlearn else [])


def test_cpu_runs_in_full_precision():
    assert training.amp_dtype(CPU) is None and training.unlearn_dtype(CPU) is None
    assert not training.scaler_enabled(CPU) and not training.make_scaler(CPU).is_enabled()
    assert isinstance(training.autocast(CPU), contextlib.nullcontext)


def test_unlearning_code_never_uses_the_training_precision():
    """Every method's forward passes use unlearn_autocast (bf16 or fp32, never fp16)."""
    for path in (ROOT / "src" / "tarf" / "methods").glob("*.py"):
        text = path.read_text()
        assert not re.search(r"(?<!unlearn_)autocast\(", text), path.name


# -- 6. evaluation in fp32 ---------------------------------------------------------------------
def test_evaluation_is_fp32_under_mixed_precision(toy_dataset, monkeypatch):
    """With the device's training precision bf16 (simulated on the CPU, whose autocast
    does bf16), and even inside a caller's autocast, evaluation passes stay fp32: the
    same logits, features, losses and metrics as a plain fp32 run."""
    from tarf.metrics import evaluate
    from tarf.request import UnlearningRequest

    torch.manual_seed(0)
    model = create_model("cpunet-tiny", 7).eval()
    x, y = toy_dataset.x_train, toy_dataset.y_train
    ctx = UnlearnContext(CPU, get_recipe("tiny"))
    req = UnlearningRequest.from_names(toy_dataset.hierarchy, "cat", "class", "animals")
    parts = req.partitions(y, toy_dataset.y_test)
    ev = (x, y, toy_dataset.x_test, toy_dataset.y_test, parts, CPU, 0)

    def measure():
        return (training.forward_logits(model, x, CPU), training.forward_features(model, x, CPU),
                per_sample_loss(model, x, y, ctx), evaluate(model, *ev))  # fmt: skip

    fp32 = measure()
    monkeypatch.setattr(tarf_devices, "amp_dtype", lambda device: torch.bfloat16)
    with torch.no_grad(), training.autocast(CPU):  # the simulation is real: bf16 differs
        assert not torch.equal(model(training.to_float(x, CPU)).float(), fp32[0])
    for outer in (contextlib.nullcontext(), torch.autocast("cpu", dtype=torch.bfloat16)):
        with outer:
            again = measure()
        for a, b in zip(again[:3], fp32[:3]):
            assert a.dtype == torch.float32 and torch.equal(a, b)
        assert again[3] == fp32[3]


def test_full_precision_turns_tf32_off_on_cuda_and_restores_it():
    flags = torch.backends.cuda.matmul, torch.backends.cudnn
    saved = [f.allow_tf32 for f in flags]
    try:
        for f in flags:
            f.allow_tf32 = True
        with training.full_precision(CUDA):
            assert not any(f.allow_tf32 for f in flags)
        assert all(f.allow_tf32 for f in flags)
    finally:
        for f, s in zip(flags, saved):
            f.allow_tf32 = s


# -- 7. cuDNN autotuning, the device index, the local backend's GPUs, `tarf speed` ------------
def test_training_runs_with_cudnn_autotuning(toy_dataset, monkeypatch):
    saved = torch.backends.cudnn.benchmark
    with training.cudnn_benchmark(CUDA):
        assert torch.backends.cudnn.benchmark
    assert torch.backends.cudnn.benchmark == saved
    seen = []

    @contextlib.contextmanager
    def recorder(device):
        seen.append(device)
        yield

    monkeypatch.setattr(training, "cudnn_benchmark", recorder)
    recipe = dataclasses.replace(get_recipe("tiny"), epochs=1)
    training.train_classifier(toy_dataset.x_train, toy_dataset.y_train, 7, recipe, 0, CPU)
    assert seen == [CPU]


def test_device_index_is_kept_and_made_current(monkeypatch):
    current = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "set_device", current.append)
    assert training.pick_device("cuda:1") == torch.device("cuda", 1) and current == [1]
    assert training.pick_device("cuda") == torch.device("cuda", 0) and current == [1, 0]
    with pytest.raises(ValueError, match="--device cuda:2: this machine has 2 CUDA GPU"):
        training.pick_device("cuda:2")
    # the API's wording, and a torch.device as the API takes it
    with pytest.raises(ValueError, match="device='cuda:2': this machine has 2 CUDA GPU"):
        training.pick_device(torch.device("cuda", 2), given_as="device=")
    assert training.pick_device(torch.device("cpu"), given_as="device=") == torch.device("cpu")
    synced = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: synced.append(device))
    from tarf.speed import _sync

    _sync(torch.device("cuda", 1))
    assert synced == [torch.device("cuda", 1)]


def test_batches_copy_the_epoch_order_once(monkeypatch):
    """On CUDA the whole permutation goes to the device once per epoch; the order is
    the CPU generator's on every device."""
    g = torch.Generator().manual_seed(0)
    cpu = torch.cat(list(training.batches(10, 4, g)))
    assert torch.equal(cpu, torch.randperm(10, generator=torch.Generator().manual_seed(0)))
    copies = []
    real_to = torch.Tensor.to

    def fake_to(self, *args, **kwargs):
        copies.append((args, kwargs))
        return real_to(self, "cpu")

    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self: self)
    monkeypatch.setattr(torch.Tensor, "to", fake_to)
    out = list(training.batches(10, 4, torch.Generator().manual_seed(0), device=CUDA))
    monkeypatch.undo()
    assert len(out) == 3 and torch.equal(torch.cat(out), cpu)
    assert copies == [((CUDA,), {"non_blocking": True})]


def test_local_backend_spreads_workers_over_visible_gpus(monkeypatch):
    chosen = []
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    slots = mp.get_context("spawn").Value("i", 0)
    for _ in range(5):
        backends._init_worker(1, None, slots, 2)
    assert chosen == [0, 1, 0, 1, 0]
    backends._init_worker(1, None, mp.get_context("spawn").Value("i", 0), 0)
    assert len(chosen) == 5  # no GPU: nothing chosen

    made = {}

    class Pool:
        def __init__(self, jobs, mp_context, initializer, initargs):
            made.update(jobs=jobs, initargs=initargs)

        def shutdown(self, **kw):
            pass

    monkeypatch.setattr(backends, "ProcessPoolExecutor", Pool)
    monkeypatch.setattr(backends, "visible_gpus", lambda: 2)
    with backends.LocalBackend(2):
        pass
    assert made["jobs"] == 2 and made["initargs"][3] == 2


def test_speed_times_bare_and_loop_on_the_same_work(monkeypatch):
    """Both under the same precision (counted: as many autocast passes for the bare model
    as for the loop) and the same number of steps."""
    import tarf.speed as speed

    entered = []

    def counting(device):
        entered.append(1)
        return contextlib.nullcontext()

    monkeypatch.setattr(speed, "autocast", counting)
    monkeypatch.setattr(training, "autocast", counting)
    res = speed.measure_throughput("digits", "tiny", CPU, steps=4, warmup=1, rounds=2)
    per_model = 1 + res["steps"]
    assert res["steps"] == 4 and len(entered) == 2 * per_model
    assert res["precision"] == "float32" and res["ratio"] > 0


# -- issue 26 (b): a line per epoch where no terminal is attached --------------------------
def test_epoch_lines_without_a_terminal(toy_dataset, capsys, monkeypatch):
    recipe = dataclasses.replace(get_recipe("tiny"), epochs=2)
    x, y = toy_dataset.x_train, toy_dataset.y_train
    monkeypatch.setenv("TARF_QUIET", "0")
    training.train_classifier(x, y, 7, recipe, 0, CPU, desc="train original")
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2
    for i, line in enumerate(lines, 1):
        assert re.fullmatch(rf"train original: epoch {i}/2, loss \d+\.\d{{4}}, elapsed \d+s", line)
    training.train_classifier(x, y, 7, recipe, 0, CPU, desc="retrain")
    assert capsys.readouterr().err.startswith("train retrain: epoch 1/2, loss ")
    monkeypatch.setenv("TARF_QUIET", "1")
    training.train_classifier(x, y, 7, recipe, 0, CPU)
    assert capsys.readouterr().err == ""


# -- tarf gpucheck -------------------------------------------------------------------------------
def test_gpucheck_without_cuda_says_so_in_one_line(capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["gpucheck"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1 and "no CUDA GPU" in err


def test_gpucheck_checks_run_end_to_end_on_a_cpu():
    """The checks themselves, shrunk to seconds on a CPU (no throughput; the bench in
    this process): every check passes, and the temporary cache is gone afterwards."""
    import os

    from tarf.cli.gpucheck import run_checks

    before = os.environ.get("TARF_CACHE")
    lines = []
    checks = run_checks(CPU, epochs=15, backend="inline", per_class=10, size=8,
                        arch="cpunet-tiny", speed=False, report=lambda c: lines.append(c.line()))  # fmt: skip
    assert [c.name for c in checks] == [
        "precision",
        "training",
        "fp32 evaluation",
        "tarf",
        "salun",
        "bench",
    ]
    assert all(c.ok for c in checks), lines
    assert os.environ.get("TARF_CACHE") == before
    assert checks[2].values["max_abs_diff"] == 0.0  # the CPU against itself
