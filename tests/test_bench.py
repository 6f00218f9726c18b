"""``tarf bench``: the plan shares models, a killed grid resumes, a failed job is isolated,
the dry run tells done from to do, and the results table has one row per run.

Everything runs on the toy dataset with a 4-epoch recipe (a model trains in well under
a second), registered by name so that jobs, the CLI and worker processes can load it.
"""

import dataclasses
import functools
import json
from pathlib import Path

import pytest
import torch

from tarf import bench
from tarf.cli import main
from tarf.methods import METHODS
from tarf.methods.base import Method
from tarf.recipes import RECIPES, get_recipe
from tarf.request import UnlearningRequest
from tarf.runner import prepare_dataset, trained_model

MICRO = dataclasses.replace(get_recipe("tiny"), name="micro", epochs=4)


@pytest.fixture
def toy(toy_dataset, monkeypatch):
    """The toy dataset and the micro recipe, loadable by name in this process."""
    monkeypatch.setitem(RECIPES, "micro", MICRO)
    monkeypatch.setitem(bench._DATASETS, ("toy", None, None), toy_dataset)
    return toy_dataset


def grid(tasks=("all-matched", "target-mismatch"), methods=("ft",), seeds=(0,), **kw):
    return bench.Grid(
        "toy", "cat", "animals", tuple(tasks), tuple(methods), tuple(seeds), "micro", **kw
    )


def log_lines(out):
    return [json.loads(line) for line in (out / bench.LOG_FILE).read_text().splitlines()]


def test_plan_trains_each_model_once_for_all_methods(toy, tmp_path):
    plan = bench.make_plan(grid(bench.MAIN_TASKS, ("ft", "rl", "tarf"), (0, 1)), tmp_path)
    assert len(plan.runs) == 4 * 3 * 2 and len(plan.todo()) == 24 and not plan.done
    # per seed: the class and the superclass original, one reference per task
    names = sorted(m.job.name for m in plan.models)
    assert len(plan.models) == 12 and len(set(m.key for m in plan.models)) == 12
    assert names[:4] == [
        "original_class_s0",
        "original_class_s1",
        "original_superclass_s0",
        "original_superclass_s1",
    ]
    by_name = {m.job.name: m for m in plan.models}
    assert sorted(by_name["original_class_s0"].users) == sorted(
        f"{m}_{t}_s0" for m in ("ft", "rl", "tarf") for t in ("all-matched", "target-mismatch")
    )
    assert len(by_name["retrained_data-mismatch_s1"].users) == 3
    assert not any(m.cached for m in plan.models) and len(plan.models_to_train()) == 12


def test_model_key_is_the_runners(toy):
    req = UnlearningRequest.from_names(toy.hierarchy, "cat", "superclass", "animals")
    ds = prepare_dataset(toy, MICRO)
    idx = req.partitions(ds.y_train, ds.y_test).remaining
    m = trained_model(ds, req, idx, MICRO, 3, torch.device("cpu"), "retrained")
    assert bench.model_key(ds, req, idx, MICRO, 3) == m.meta["key"]


def test_parse_and_bad_input(toy, tmp_path, capsys):
    assert bench.parse_seeds("3") == (0, 1, 2)
    assert bench.parse_seeds("0,2") == (0, 2) and bench.parse_seeds("5,") == (5,)
    assert bench.parse_tasks("all") == bench.MAIN_TASKS
    with pytest.raises(
        bench.BenchError, match="valid: all, scenarios, all-matched, target-mismatch"
    ):
        bench.parse_tasks("all-matched,target")
    with pytest.raises(bench.BenchError, match="unknown method nope; valid: all, .*tarf"):
        bench.parse_methods("ft,nope")
    # a hyperparameter goes to the methods that have it; one that none has is an error
    assert bench.split_overrides(["ft", "tarf"], {"k": "0.1", "ft.lr": "0.02"}) == {
        "tarf": {"k": "0.1"},
        "ft": {"lr": "0.02"},
    }
    with pytest.raises(bench.BenchError, match="no selected method has a hyperparameter 'k'"):
        bench.split_overrides(["ft"], {"k": "0.1"})
    # the concept must be the superclass of the forget classes, and the error says which
    for concept in ("vehicles", "dog"):
        with pytest.raises(bench.BenchError, match="--concept animals"):
            bench.make_plan(dataclasses.replace(grid(), concept=concept), tmp_path)
    with pytest.raises(bench.BenchError, match="several superclasses"):
        bench.make_plan(dataclasses.replace(grid(), forget="cat,car"), tmp_path)
    # the same through the CLI: one line, exit status 2, nothing written
    base = [
        "bench",
        "--dataset",
        "toy",
        "--recipe",
        "micro",
        "--forget",
        "cat",
        "--out",
        str(tmp_path / "o"),
    ]
    assert main([*base, "--concept", "plants", "--methods", "ft"]) == 2
    assert "--concept animals" in capsys.readouterr().err
    assert main([*base, "--concept", "animals", "--tasks", "all-matched,oops"]) == 2
    assert "valid: all, scenarios, all-matched" in capsys.readouterr().err
    assert main([*base, "--concept", "animals", "--methods", "ft,nope"]) == 2
    assert "unknown method nope" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_resume_reruns_only_what_is_missing(toy, tmp_path, capsys):
    out = tmp_path / "bench"
    g = grid(methods=("ft", "rl"))
    outcome = bench.run_plan(bench.make_plan(g, out), out, bench.LocalBackend(1))
    assert sorted(outcome.ok) == sorted(r.name for r in g.runs()) and not outcome.failed
    lines = log_lines(out)
    assert [x["kind"] for x in lines].count("model") == 3  # one original, two references
    assert all(x["status"] == "ok" and x["seconds"] > 0 for x in lines)
    kept, lost = out / "ft_all-matched_s0.json", out / "rl_target-mismatch_s0.json"
    mtime = kept.stat().st_mtime_ns
    lost.unlink()
    # the dry run: every model cached, one job to do with an estimate, nothing run
    argv = ["bench", "--dataset", "toy", "--recipe", "micro", "--forget", "cat", "--concept", "animals",
            "--tasks", "all-matched,target-mismatch", "--methods", "ft,rl", "--out", str(out)]  # fmt: skip
    assert main([*argv, "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "models (3: 3 cached, 0 to train)" in text and "jobs (4: 3 done, 1 to do)" in text
    rows = {ln.split()[0]: ln for ln in text.splitlines() if ln.startswith("  ")}
    assert rows["ft_all-matched_s0"].split()[1:] == ["done"]
    assert (
        rows["rl_target-mismatch_s0"].split()[1:3] == ["to", "do"]
        and "~" in rows["rl_target-mismatch_s0"]
    )
    assert rows["original_class_s0"].split()[1] == "cached"
    assert "time left: ~" in text and len(log_lines(out)) == len(lines)
    # a new folder: nothing measured there, so the cache's log (the machine's) estimates
    fresh = tmp_path / "fresh"
    est = bench.estimate(bench.make_plan(g, fresh), fresh, workers=1)
    assert est.run_source == {"ft": "cache log", "rl": "cache log"}
    ft_times = [x["seconds"] for x in lines if x.get("method") == "ft"]
    assert est.run_s["ft"] == pytest.approx(sum(ft_times) / len(ft_times))
    audited = bench.make_plan(dataclasses.replace(g, audit=3), fresh)
    assert bench.estimate(audited, fresh, workers=1).run_s == {"ft": None, "rl": None}
    # the rerun: only the missing job runs, the kept result is not rewritten
    assert main([*argv, "--jobs", "1"]) == 0
    new = log_lines(out)[len(lines) :]
    assert [(x["job"], x["status"]) for x in new] == [("rl_target-mismatch_s0", "ok")]
    assert kept.stat().st_mtime_ns == mtime and bench.read_report(lost)["method"] == "rl"
    # results: one CSV row per run (a manual run in the folder counts too), Table 1 layout
    manual = {**json.loads(kept.read_text()), "seed": 7}
    (out / "manual.json").write_text(json.dumps(manual))
    assert main([*argv, "--jobs", "1"]) == 0
    header, *rows_csv = (out / "results.csv").read_text().splitlines()
    assert header.startswith("dataset,task,method") and len(rows_csv) == 5
    md = (out / "results.md").read_text()
    assert (
        "| all-matched | retrained (reference) | 2 |" in md and "| target-mismatch | rl | 1 |" in md
    )
    assert "| all-matched | ft | 2 |" in md  # seeds 0 and 7


def test_estimate_scales_the_base_recipe_for_a_swapped_architecture(toy, tmp_path):
    """`micro:cpunet` has never run here: its times are micro's (the machine log) times
    the ratio of the two architectures' forward FLOPs on the toy images. A method micro
    ran only audited counts its method time plus the unaudited runs' evaluation time."""
    from tarf.models import forward_flops
    from tarf.training import cache_root

    g = dataclasses.replace(grid(methods=("ft", "rl")), recipe="micro:cpunet")
    plan = bench.make_plan(g, tmp_path)
    assert bench.estimate(plan, tmp_path, workers=1).run_s == {"ft": None, "rl": None}
    entries = [
        {"kind": "run", "method": "ft", "seconds": 10.0, "rte_s": 7.0},
        {"kind": "run", "method": "ft", "seconds": 20.0, "rte_s": 15.0},  # evaluation: 4 s
        {"kind": "run", "method": "ft", "seconds": 99.0, "audit": True},  # not alike
        {"kind": "run", "method": "rl", "seconds": 90.0, "rte_s": 30.0, "audit": True},
        {"kind": "run", "method": "rl", "seconds": 5.0, "status": "failed"},
        {"kind": "model", "seconds": 40.0, "cached": False},
        {"kind": "model", "seconds": 1.0, "cached": True},  # a cache hit, no cost
        {"kind": "run", "method": "ft", "seconds": 500.0, "recipe": "tiny"},  # other recipe
    ]
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "bench_log.jsonl", "w") as f:
        for e in entries:
            f.write(json.dumps({"dataset": "toy", "recipe": "micro", "status": "ok", **e}) + "\n")
    ratio = forward_flops("cpunet", plan.input_shape) / forward_flops(MICRO.arch, plan.input_shape)
    assert ratio > 1.5 and plan.input_shape == tuple(toy.x_train.shape[1:])
    est = bench.estimate(plan, tmp_path, workers=1)
    assert est.run_s["ft"] == pytest.approx(15.0 * ratio)
    assert est.run_s["rl"] == pytest.approx((30.0 + 4.0) * ratio)  # audited: its rte_s only
    assert est.model_s == pytest.approx(40.0 * ratio) and "FLOPs" in est.model_source
    assert est.unknown == []
    audited = bench.make_plan(dataclasses.replace(g, audit=3), tmp_path / "audited")
    est = bench.estimate(audited, tmp_path / "audited", workers=1)
    assert est.run_s == {"ft": pytest.approx(99.0 * ratio), "rl": pytest.approx(90.0 * ratio)}


def test_subset_scenarios_run_through_the_bench(toy, tmp_path, capsys):
    """Table 5's No. 6-9 as bench tasks: D_f a seeded part of the forget class, the
    originals shared with the main tasks, one reference per scenario and fraction."""
    assert bench.parse_tasks("scenarios") == bench.SCENARIOS == (
        "scenario-6", "scenario-7", "scenario-8", "scenario-9",
    )  # fmt: skip
    assert bench.parse_tasks("all,scenario-7")[-1] == "scenario-7"
    with pytest.raises(bench.BenchError, match="sub-set labels"):
        bench.parse_tasks("scenario-16")
    g = grid(bench.SCENARIOS, ("ft",), forget_fraction=0.4)
    plan = bench.make_plan(g, tmp_path)
    names = sorted(m.job.name for m in plan.models)
    assert names == [
        "original_class_s0", "original_superclass_s0", "retrained_scenario-6_f0.4_s0",
        "retrained_scenario-7_f0.4_s0", "retrained_scenario-8_f0.4_s0",
        "retrained_scenario-9_f0.4_s0",
    ]  # fmt: skip
    # the same originals as the main tasks (one cache key per label level)
    main_keys = {m.key for m in bench.make_plan(grid(bench.MAIN_TASKS), tmp_path).models}
    assert {m.key for m in plan.models if m.job.role == "original"} <= main_keys
    outcome = bench.run_plan(plan, tmp_path, bench.LocalBackend(1))
    assert not outcome.failed and len(outcome.ok) == 4
    reps = {r["task"]: r for r in bench.collect_reports(tmp_path)}
    cases = {
        t: (r["case"]["table4_no"], r["case"]["L_D"], r["case"]["L_T"]) for t, r in reps.items()
    }
    assert cases == {
        "scenario-6": (6, "sub-set", "sub-set"), "scenario-7": (7, "sub-set", "superclass"),
        "scenario-8": (8, "sub-set", "superclass"), "scenario-9": (9, "sub-set", "class"),
    }  # fmt: skip
    assert all(r["request"]["forget_fraction"] == 0.4 for r in reps.values())
    # UA splits into UA-F / UA-R where the target is finer than the model's labels
    assert {t for t, r in reps.items() if "UA-F" in r["metrics"]} == {"scenario-6", "scenario-9"}
    assert (tmp_path / "ft_scenario-7_f0.4_s0.json").exists()
    # another fraction is another grid: nothing of this one counts as done
    assert not bench.make_plan(grid(bench.SCENARIOS, ("ft",)), tmp_path).done
    with pytest.raises(bench.BenchError, match="between 0 and 1"):
        bench.make_plan(grid(("scenario-7",), ("ft",), forget_fraction=1.0), tmp_path)
    argv = ["bench", "--dataset", "toy", "--recipe", "micro", "--forget", "cat", "--concept",
            "animals", "--methods", "ft", "--out", str(tmp_path), "--forget-fraction", "0.4"]  # fmt: skip
    assert main([*argv, "--tasks", "all"]) == 2
    assert "sub-set tasks only" in capsys.readouterr().err
    assert main([*argv, "--tasks", "scenarios", "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "forget 0.4 of each class" in text and "jobs (4: 4 done, 0 to do)" in text


@dataclasses.dataclass
class BoomConfig:
    pass


class Boom(Method):
    """A method that always fails."""

    name = "boom"
    Config = BoomConfig

    def run(self, model, data, ctx):
        raise RuntimeError("boom: deliberately broken")


def test_failed_job_is_isolated(toy, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(METHODS, "boom", Boom)
    out = tmp_path / "bench"
    code = main(["bench", "--dataset", "toy", "--recipe", "micro", "--forget", "cat",
                 "--tasks", "all-matched", "--methods", "boom,ft", "--jobs", "1", "--out", str(out)])  # fmt: skip
    assert code == 1
    err = capsys.readouterr().err
    assert "failed: boom_all-matched_s0" in err
    assert "RuntimeError: boom" in (out / "boom_all-matched_s0.error.txt").read_text()
    assert bench.read_report(out / "ft_all-matched_s0.json") is not None
    assert not (out / "boom_all-matched_s0.json").exists()
    status = {x["job"]: x["status"] for x in log_lines(out)}
    assert status == {
        "original_class_s0": "ok",
        "retrained_all-matched_s0": "ok",
        "boom_all-matched_s0": "failed",
        "ft_all-matched_s0": "ok",
    }
    assert len((out / "results.csv").read_text().splitlines()) == 2


def test_runs_start_as_soon_as_their_models_are_there(toy, tmp_path, monkeypatch):
    """A run whose models are cached is submitted at once, beside the model others wait
    for; a model that fails fails only the runs that need it."""
    out = tmp_path / "bench"
    bench.run_plan(bench.make_plan(grid(tasks=("all-matched",)), out), out, bench.LocalBackend(1))
    (out / "ft_all-matched_s0.json").unlink()

    def broken(job, out_dir, wait=True):
        (Path(out_dir) / f"{job.name}.error.txt").write_text("boom\n")
        return bench._result(job, "failed", 0.0)

    monkeypatch.setattr(bench, "train_model_job", broken)
    submitted, finished = [], []

    class Recording(bench.LocalBackend):
        def submit(self, fn, job, out_dir):
            submitted.append((job.name, len(finished)))
            super().submit(fn, job, out_dir)

        def results(self):
            for res in super().results():
                finished.append(res["job"])
                yield res

    outcome = bench.run_plan(bench.make_plan(grid(), out), out, Recording(1), log=lambda _m: None)
    # both submitted before anything finished; the target-mismatch run never is
    assert submitted == [("retrained_target-mismatch_s0", 0), ("ft_all-matched_s0", 0)]
    assert outcome.ok == ["ft_all-matched_s0"]
    assert outcome.failed == ["retrained_target-mismatch_s0", "ft_target-mismatch_s0"]
    why = (out / "ft_target-mismatch_s0.error.txt").read_text()
    assert "not run: model retrained_target-mismatch_s0 failed" in why


def test_a_model_in_training_elsewhere_waits_behind_the_rest(toy, tmp_path):
    """Another bench holds the lock of one model: this one trains the others first and
    comes back to it (waiting then), instead of blocking a worker from the start."""
    import contextlib
    import signal

    from tarf.training import ModelCache

    out = tmp_path / "bench"
    plan = bench.make_plan(grid(), out)
    held = next(m for m in plan.models if m.job.name == "original_class_s0")
    other_bench = contextlib.ExitStack()
    other_bench.enter_context(ModelCache().lock(held.key))
    results = []

    class OtherBenchFinishes(bench.LocalBackend):
        def submit(self, fn, job, out_dir):
            if fn is bench.train_model_job:  # queued again to wait: let the lock go
                other_bench.close()
            super().submit(fn, job, out_dir)

        def results(self):
            for res in super().results():
                results.append((res["job"], res["status"]))
                yield res

    def blocked(*_):
        raise TimeoutError("the bench blocked on the held lock instead of moving on")

    previous = signal.signal(signal.SIGALRM, blocked)
    signal.alarm(60)
    try:
        outcome = bench.run_plan(plan, out, OtherBenchFinishes(1), log=lambda _m: None)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    models = [r for r in results if r[0].startswith(("original", "retrained"))]
    assert models == [
        ("original_class_s0", "busy"),
        ("retrained_all-matched_s0", "ok"),
        ("retrained_target-mismatch_s0", "ok"),
        ("original_class_s0", "ok"),
    ]
    assert sorted(outcome.ok) == ["ft_all-matched_s0", "ft_target-mismatch_s0"]
    assert all(x["status"] == "ok" for x in log_lines(out))  # "busy" is not a result


def test_process_pool(toy, tmp_path):
    """Two spawned workers: they load the toy data through ``setup`` and share the cache."""
    out = tmp_path / "bench"
    plan = bench.make_plan(grid(methods=("ft", "rl")), out)
    setup = functools.partial(bench.register, [toy], [MICRO])
    outcome = bench.run_plan(plan, out, bench.LocalBackend(2, setup))
    assert len(outcome.ok) == 4 and not outcome.failed
    lines = log_lines(out)
    assert sum(x["kind"] == "model" for x in lines) == 3 and all(x["status"] == "ok" for x in lines)
    assert all(bench.read_report(out / f"{r.name}.json") for r in plan.runs)
    assert bench.make_plan(grid(methods=("ft", "rl")), out).models_to_train() == []


def test_ray_backend(toy, tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "bench"
    plan = bench.make_plan(grid(tasks=("all-matched",), methods=("ft", "rl")), out)
    setup = functools.partial(bench.register, [toy], [MICRO])
    outcome = bench.run_plan(plan, out, bench.RayBackend(cpus_per_job=1, setup=setup))
    assert sorted(outcome.ok) == ["ft_all-matched_s0", "rl_all-matched_s0"] and not outcome.failed
    assert sum(x["kind"] == "model" for x in log_lines(out)) == 2


def test_ray_missing_says_how_to_install(toy, tmp_path, capsys):
    import importlib.util

    if importlib.util.find_spec("ray") is not None:
        pytest.skip("ray is installed")
    argv = ["bench", "--dataset", "toy", "--recipe", "micro", "--forget", "cat",
            "--tasks", "all-matched", "--methods", "ft", "--backend", "ray", "--out", str(tmp_path)]  # fmt: skip
    assert main(argv) == 2
    assert "pip install tarf[ray]" in capsys.readouterr().err


def test_estimate_from_reports_without_a_log(toy, tmp_path, monkeypatch):
    """No bench_log yet: a method's time is its reports' RTE plus the fixed evaluation
    overhead, a model's its recorded training time; a result made with other
    hyperparameters is kept and flagged."""
    monkeypatch.setitem(bench.EVAL_OVERHEAD_S, ("toy", "micro"), 5.0)
    rep = {"dataset": "toy", "recipe": "micro", "task": "all-matched", "method": "ft", "seed": 0,
           "metrics": {"RTE_s": 10.0}, "config_changes": {"lr": 0.5},
           "original": {"train_s": 100.0}, "reference": {"train_s": 80.0}}  # fmt: skip
    (tmp_path / "ft_all-matched_s0.json").write_text(json.dumps(rep))
    plan = bench.make_plan(grid(methods=("ft", "rl")), tmp_path)
    assert list(plan.done) == ["ft_all-matched_s0"] and plan.other_config == {
        "ft_all-matched_s0": {"lr": 0.5}
    }
    est = bench.estimate(plan, tmp_path, workers=2)
    assert est.run_s == {"ft": 15.0, "rl": None} and est.model_s == 90.0 and est.unknown == ["rl"]
    # three models (rl needs them all) and one ft run (rl's are unknown) on two workers
    assert est.left_s == pytest.approx((3 * 90.0 + 15.0) / 2)
    text = bench.format_plan(plan, tmp_path, 2)
    assert "ft_all-matched_s0             done (other hyperparameters: lr=0.5)" in text
    assert "ft_target-mismatch_s0         to do  ~15s" in text and "not counting rl" in text
