"""``tarf bench``: the plan shares models, a killed grid resumes, a failed job is isolated,
the dry run tells done from to do, and the results table has one row per run.

Everything runs on the toy dataset with a 4-epoch recipe (a model trains in well under
a second), registered by name so that jobs, the CLI and worker processes can load it.
"""

import dataclasses
import functools
import json
import textwrap
from pathlib import Path

import pytest
import torch

from tarf import bench
from tarf.cache import prepare_dataset, trained_model
from tarf.cli import main
from tarf.methods import METHODS
from tarf.methods.base import Method
from tarf.recipes import RECIPES, get_recipe
from tarf.request import UnlearningRequest

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


def test_the_plans_key_is_where_the_cache_stores_the_model(toy, tmp_path, monkeypatch):
    """The plan decides "cached or to train" by the key it computes; training the model
    must store it under that key, and the key must change with the seed and the recipe
    (else a grid would take another seed's or recipe's model for its own)."""
    from tarf.cache import ModelCache

    g = grid(tasks=("data-mismatch",))
    plan = bench.make_plan(g, tmp_path)
    planned = {m.job.name: m for m in plan.models}
    assert sorted(planned) == ["original_superclass_s0", "retrained_data-mismatch_s0"]
    ref = planned["retrained_data-mismatch_s0"]
    assert not ref.cached and not ModelCache().path(ref.key).exists()
    res = bench.jobs.train_model_job(ref.job, str(tmp_path))
    assert res["status"] == "ok" and res["key"] == ref.key
    assert ModelCache().path(ref.key).exists()
    # the run path finds the same entry: same request, D_un, recipe and seed
    req = UnlearningRequest.from_names(toy.hierarchy, "cat", "superclass", "animals")
    ds = prepare_dataset(toy, MICRO)
    idx = req.partitions(ds.y_train, ds.y_test).remaining
    m = trained_model(ds, req, idx, MICRO, 0, torch.device("cpu"), "retrained")
    assert m.meta["cached"] and m.meta["key"] == ref.key
    again = {m.job.name: m for m in bench.make_plan(g, tmp_path).models}
    assert again["retrained_data-mismatch_s0"].cached
    assert not again["original_superclass_s0"].cached
    # another seed, another recipe: other keys, nothing cached
    other_seed = bench.make_plan(dataclasses.replace(g, seeds=(1,)), tmp_path).models
    monkeypatch.setitem(RECIPES, "micro5", dataclasses.replace(MICRO, name="micro5", epochs=5))
    other_recipe = bench.make_plan(dataclasses.replace(g, recipe="micro5"), tmp_path).models
    for models in (other_seed, other_recipe):
        assert not {m.key for m in models} & {m.key for m in planned.values()}
        assert not any(m.cached for m in models)


def test_parse_and_bad_input(toy, tmp_path, capsys):
    assert bench.parse_seeds("3") == (0, 1, 2)
    assert bench.parse_seeds("0,2") == (0, 2) and bench.parse_seeds("5,") == (5,)
    with pytest.raises(bench.BenchError, match="seed 0 given twice"):
        bench.parse_seeds("0,1,0")
    with pytest.raises(bench.BenchError, match="a count of no seeds: for seed 0, write 0,"):
        bench.parse_seeds("0")
    with pytest.raises(bench.BenchError, match="--concept animls does not fit|closest"):
        bench.make_plan(dataclasses.replace(grid(("all-matched",)), concept="animls"), tmp_path)
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
    ft_times = [x["alone_s"] for x in lines if x.get("method") == "ft"]  # times alone
    assert est.run_s["ft"] == pytest.approx(sum(ft_times) / len(ft_times))
    # the models are cached: their time alone, recorded in the cache entries (the log to ms)
    model_times = sorted(x["alone_s"] for x in lines if x["kind"] == "model")
    assert est.model_source == "cache" and est.model_s == pytest.approx(model_times[1], abs=1e-3)
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


def write_log(folder, entries):
    """``folder/bench_log.jsonl`` with one finished toy/micro job per entry."""
    with open(folder / "bench_log.jsonl", "w") as f:
        for e in entries:
            f.write(json.dumps({"dataset": "toy", "recipe": "micro", "status": "ok", **e}) + "\n")


def test_estimate_scales_the_base_recipe_for_a_swapped_architecture(toy, tmp_path):
    """`micro:cpunet` has never run here: its times are micro's (the machine log) times
    the ratio of the two architectures' forward FLOPs on the toy images. A method micro
    ran only audited counts its method time plus the unaudited runs' evaluation time. Each
    time is the median of those logged, so one slowed by other work moves it little."""
    from tarf.cache import cache_root
    from tarf.models import forward_flops

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
        {"kind": "model", "seconds": 45.0, "cached": False},
        {"kind": "model", "seconds": 400.0, "cached": False},  # shared the cores: the median
        {"kind": "model", "seconds": 1.0, "cached": True},  # a cache hit, no cost
        {"kind": "run", "method": "ft", "seconds": 500.0, "recipe": "tiny"},  # other recipe
    ]
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    write_log(root, entries)
    ratio = forward_flops("cpunet", plan.input_shape) / forward_flops(MICRO.arch, plan.input_shape)
    assert ratio > 1.5 and plan.input_shape == tuple(toy.x_train.shape[1:])
    est = bench.estimate(plan, tmp_path, workers=1)
    assert est.run_s["ft"] == pytest.approx(15.0 * ratio)
    assert est.run_s["rl"] == pytest.approx((30.0 + 4.0) * ratio)  # audited: its rte_s only
    assert est.model_s == pytest.approx(45.0 * ratio) and "FLOPs" in est.model_source
    assert est.unknown == []
    audited = bench.make_plan(dataclasses.replace(g, audit=3), tmp_path / "audited")
    est = bench.estimate(audited, tmp_path / "audited", workers=1)
    assert est.run_s == {"ft": pytest.approx(99.0 * ratio), "rl": pytest.approx(90.0 * ratio)}

    # IU's cost grows with the parameters (its Gram matrix, its per-sample gradients,
    # recomputed in blocks once they no longer fit in memory), not with the FLOPs: its
    # method time scales by that cost, the rest of the job (evaluation) by the FLOPs
    from tarf.methods import get_method
    from tarf.models import create_model

    iu = dataclasses.replace(g, methods=("iu",), overrides={"iu": {"max_store_mb": 1000.0}})
    write_log(root, [{"kind": "run", "method": "iu", "seconds": 12.0, "rte_s": 8.0}])
    nets = [(sum(p.numel() for p in create_model(a, 10, plan.input_shape[0]).parameters()),
             forward_flops(a, plan.input_shape)) for a in (MICRO.arch, "cpunet")]  # fmt: skip
    costs = [get_method("iu", None, {"max_store_mb": 1000.0}).relative_cost(*n) for n in nets]
    cost = costs[1] / costs[0]
    assert cost > 2 * ratio  # the bigger network's gradients are recomputed in blocks
    est = bench.estimate(bench.make_plan(iu, tmp_path / "iu"), tmp_path / "iu", workers=1)
    assert est.run_s["iu"] == pytest.approx(4.0 * ratio + 8.0 * cost)
    assert "iu's cost" in est.run_source["iu"]


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


class Recording(bench.LocalBackend):
    """In this process, with ``slots`` jobs handed out at once: records each job handed to
    it (its folder's name, its name, how many results were in by then) and each result
    it hands back, in order; ``on_submit(fn, job)`` and ``on_result(res)`` see them too."""

    def __init__(self, slots: int = 1, on_submit=None, on_result=None) -> None:
        super().__init__(1)
        self.slots, self.on_submit, self.on_result = slots, on_submit, on_result
        self.submitted: list[tuple[str, str, int]] = []
        self.finished: list[dict] = []

    def submit(self, fn, job, out_dir):
        if self.on_submit:
            self.on_submit(fn, job)
        self.submitted.append((Path(out_dir).name, job.name, len(self.finished)))
        super().submit(fn, job, out_dir)

    def results(self):
        for res in super().results():
            self.finished.append(dict(res))  # as handed back (run_plans pops "out")
            if self.on_result:
                self.on_result(res)
            yield res


def test_runs_start_as_soon_as_their_models_are_there(toy, tmp_path, monkeypatch):
    """A run whose models are cached is submitted at once, ahead of the model others wait
    for; a model that fails fails only the runs that need it."""
    out = tmp_path / "bench"
    bench.run_plan(bench.make_plan(grid(tasks=("all-matched",)), out), out, bench.LocalBackend(1))
    (out / "ft_all-matched_s0.json").unlink()

    def broken(job, out_dir, wait=True):
        (Path(out_dir) / f"{job.name}.error.txt").write_text("boom\n")
        return bench.jobs._result(job, "failed", 0.0)

    monkeypatch.setattr(bench.jobs, "train_model_job", broken)
    backend = Recording()
    outcome = bench.run_plan(bench.make_plan(grid(), out), out, backend, log=lambda _m: None)
    # the ready run first, the model once its slot is free; the target-mismatch run never
    submitted = [(name, n) for _, name, n in backend.submitted]
    assert submitted == [("ft_all-matched_s0", 0), ("retrained_target-mismatch_s0", 1)]
    assert outcome.ok == ["ft_all-matched_s0"]
    assert outcome.failed == ["retrained_target-mismatch_s0", "ft_target-mismatch_s0"]
    why = (out / "ft_target-mismatch_s0.error.txt").read_text()
    assert "not run: model retrained_target-mismatch_s0 failed" in why


def _another_bench_holds(plan, model: str, events: list) -> bench.LocalBackend:
    """A one-worker backend while another bench holds ``model``'s lock, which it lets go
    once this bench starts waiting for the model; ``events`` gets ("wait", None) then,
    and (job, status) for every result."""
    import contextlib

    from tarf.cache import ModelCache

    held = next(m for m in plan.models if m.job.name == model)
    other_bench = contextlib.ExitStack()
    other_bench.enter_context(ModelCache().lock(held.key))

    def on_submit(fn, job) -> None:
        if fn is bench.jobs.train_model_job:  # the wait starts: let the lock go
            other_bench.close()
            events.append(("wait", None))

    def on_result(res) -> None:
        events.append((res["job"], res["status"]))

    return Recording(on_submit=on_submit, on_result=on_result)


def test_a_model_in_training_elsewhere_waits_behind_the_rest(toy, tmp_path):
    """Another bench holds the lock of one model: this one trains the others first and
    comes back to it (waiting then), instead of blocking a worker from the start."""
    import signal

    out = tmp_path / "bench"
    plan = bench.make_plan(grid(), out)
    events = []
    backend = _another_bench_holds(plan, "original_class_s0", events)

    def blocked(*_):
        raise TimeoutError("the bench blocked on the held lock instead of moving on")

    previous = signal.signal(signal.SIGALRM, blocked)
    signal.alarm(60)
    try:
        outcome = bench.run_plan(plan, out, backend, log=lambda _m: None)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    models = [e for e in events if e[0].startswith(("original", "retrained"))]
    assert models == [
        ("original_class_s0", "busy"),
        ("retrained_all-matched_s0", "ok"),
        ("retrained_target-mismatch_s0", "ok"),
        ("original_class_s0", "ok"),
    ]
    assert sorted(outcome.ok) == ["ft_all-matched_s0", "ft_target-mismatch_s0"]
    assert all(x["status"] == "ok" for x in log_lines(out))  # "busy" is not a result


def test_runs_unblocked_meanwhile_go_before_the_wait(toy, tmp_path):
    """One worker, a model held by another bench: the runs that the other models unlock
    run before this bench sits waiting for the held one (not queued behind the wait)."""
    out = tmp_path / "bench"
    plan = bench.make_plan(grid(), out)
    events = []
    backend = _another_bench_holds(plan, "retrained_all-matched_s0", events)
    outcome = bench.run_plan(plan, out, backend, log=lambda _m: None)
    order = [job for job, _ in events]
    assert sorted(outcome.ok) == ["ft_all-matched_s0", "ft_target-mismatch_s0"]
    assert order.index("ft_target-mismatch_s0") < order.index("wait")
    assert order[-2:] == ["retrained_all-matched_s0", "ft_all-matched_s0"]


def test_runs_go_before_the_models_still_to_train(toy, tmp_path):
    """One worker, three models to train: the all-matched run goes as soon as its two
    models are there, not after the target-mismatch model queued behind them."""
    out = tmp_path / "bench"
    plan = bench.make_plan(grid(), out)
    assert [m.job.name for m in plan.models_to_train()] == [
        "original_class_s0", "retrained_all-matched_s0", "retrained_target-mismatch_s0"]  # fmt: skip
    backend = Recording()
    outcome = bench.run_plan(plan, out, backend, log=lambda _m: None)
    assert sorted(outcome.ok) == ["ft_all-matched_s0", "ft_target-mismatch_s0"]
    assert [res["job"] for res in backend.finished] == ["original_class_s0", "retrained_all-matched_s0", "ft_all-matched_s0",
                     "retrained_target-mismatch_s0", "ft_target-mismatch_s0"]  # fmt: skip


def test_grids_run_at_once_on_shared_workers(toy, tmp_path):
    """Two grids on one backend of two slots (run_plans, as ``tarf bench FILE`` runs
    them): the second grid's work takes a slot before the first grid's last run is in,
    the original both need trains once, and each grid is announced done with its own
    outcome as soon as its last run is in."""
    a, b = tmp_path / "a", tmp_path / "b"
    plans = [(bench.make_plan(grid(tasks=("all-matched",)), a), a),
             (bench.make_plan(dataclasses.replace(grid(tasks=("all-matched",)), forget="car",
                                                  concept="vehicles"), b), b)]  # fmt: skip
    shared = {m.key for m in plans[0][0].models} & {m.key for m in plans[1][0].models}
    assert len(shared) == 1  # the original, trained on every class
    est = bench.Estimate({"ft": 10.0}, {"ft": "log"}, 100.0, "log", None, [])
    total = bench.format_total([p for p, _ in plans], [est, est], workers=1)
    assert total == "all 2 grids, sharing 1 worker: ~5min left"  # 3 models, 2 runs: 320 s
    # a grid whose models another grid trains still waits for them: with workers to
    # spare, the floor is a model then its longest run (100 + 1000 s), not the run alone
    same_models = [bench.make_plan(grid(tasks=("all-matched",)), a),
                   bench.make_plan(grid(tasks=("all-matched",), methods=("rl",)), a)]  # fmt: skip
    slow = bench.Estimate({"rl": 1000.0}, {"rl": "log"}, 100.0, "log", None, [])
    total = bench.format_total(same_models, [est, slow], workers=8)
    assert total == "all 2 grids, sharing 8 workers: ~18min left"  # was ~17min: 1000 s
    done, lines = [], []
    backend = Recording(slots=2)  # in this process, but two jobs handed out at once
    outcomes = bench.run_plans(plans, backend, lines.append,
                               lambda i, o: done.append((i, list(o.ok), len(backend.finished))))  # fmt: skip
    submitted = backend.submitted
    results = [(Path(res["out"]).name, res["job"]) for res in backend.finished]
    assert [o.ok for o in outcomes] == [["ft_all-matched_s0"], ["ft_all-matched_s0"]]
    assert sorted(d[:2] for d in done) == [(0, ["ft_all-matched_s0"]), (1, ["ft_all-matched_s0"])]
    last_of_a = results.index(("a", "ft_all-matched_s0"))
    first_of_b = min(n for where, _, n in submitted if where == "b")
    assert first_of_b <= last_of_a  # handed out while grid a was still running
    assert dict((i, n) for i, _, n in done)[0] == last_of_a + 1  # announced at once
    models = [x for out in (a, b) for x in log_lines(out) if x["kind"] == "model"]
    assert len(models) == 3 and not any(x["cached"] for x in models)  # 1 original, 2 retrained
    assert any(line.startswith("[") and "] b/ft_all-matched_s0: ok" in line for line in lines)
    # grids may share a folder (other seeds of one grid): each run is told apart by name
    seed1 = bench.make_plan(grid(tasks=("all-matched",), seeds=(1,)), a)
    again = bench.run_plans([(bench.make_plan(grid(tasks=("all-matched",)), a), a), (seed1, a)],
                            bench.LocalBackend(1), lines.append)  # fmt: skip
    assert [(o.ok, o.skipped) for o in again] == [([], ["ft_all-matched_s0"]),
                                                  (["ft_all-matched_s1"], [])]  # fmt: skip


def test_a_failed_shared_model_fails_both_grids_and_spares_the_models_left(toy, tmp_path,
                                                                          monkeypatch):  # fmt: skip
    """The original two grids need fails: every run of both fails, the references no run
    needs any more are not trained, and each grid is announced once, complete."""
    a, b = tmp_path / "a", tmp_path / "b"
    plans = [(bench.make_plan(grid(tasks=("all-matched",)), a), a),
             (bench.make_plan(dataclasses.replace(grid(tasks=("all-matched",)), forget="car",
                                                  concept="vehicles"), b), b)]  # fmt: skip
    real = bench.jobs.train_model_without_waiting

    def original_fails(job, out_dir):
        if job.role == "original":
            (Path(out_dir) / f"{job.name}.error.txt").write_text("boom\n")
            return bench.jobs._result(job, "failed", 0.0)
        return real(job, out_dir)

    monkeypatch.setattr(bench.jobs, "train_model_without_waiting", original_fails)
    done, backend = [], Recording()
    outcomes = bench.run_plans(plans, backend, lambda _m: None,
                               lambda i, o: done.append((i, list(o.failed))))  # fmt: skip
    assert [name for _, name, _ in backend.submitted] == ["original_class_s0"]  # none for nothing
    assert [o.failed for o in outcomes] == [["original_class_s0", "ft_all-matched_s0"],
                                            ["ft_all-matched_s0"]]  # fmt: skip
    assert sorted(done) == [(0, outcomes[0].failed), (1, outcomes[1].failed)]
    assert (
        f"see {a / 'original_class_s0.error.txt'}"
        in (b / "ft_all-matched_s0.error.txt").read_text()
    )


def test_a_model_shared_with_an_audited_grid_trains_once_with_its_statistics(toy, tmp_path):
    """A grid without an audit and one with: the reference both need is trained once, by
    the first grid's job made to compute the audit statistics the second one needs."""
    a, b = tmp_path / "a", tmp_path / "b"
    plain = grid(tasks=("all-matched",))
    plans = [(bench.make_plan(plain, a), a),
             (bench.make_plan(dataclasses.replace(plain, audit=3), b), b)]  # fmt: skip
    outcomes = bench.run_plans(plans, bench.LocalBackend(1), lambda _m: None)
    assert [o.ok for o in outcomes] == [["ft_all-matched_s0"], ["ft_all-matched_s0"]]
    models = [x for out in (a, b) for x in log_lines(out) if x["kind"] == "model"]
    assert len(models) == 4 and not any(x["cached"] for x in models)  # original, 3 references
    assert bench.read_report(b / "ft_all-matched_s0.json")["audit"]["references"] == 3


def test_process_pool(toy, tmp_path):
    """Two spawned workers: they load the toy data through ``setup`` and share the cache."""
    out = tmp_path / "bench"
    plan = bench.make_plan(grid(methods=("ft", "rl")), out)
    setup = functools.partial(bench.register, [toy], [MICRO])
    outcome = bench.run_plan(plan, out, bench.LocalBackend(2, setup))
    assert len(outcome.ok) == 4 and not outcome.failed
    lines = log_lines(out)
    assert sum(x["kind"] == "model" for x in lines) == 3 and all(x["status"] == "ok" for x in lines)
    assert all(0 < x["alone_s"] <= x["seconds"] for x in lines)  # one thread each: its CPU time
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
    assert 'pip install -e ".[ray]"' in capsys.readouterr().err


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


def test_a_report_of_another_request_is_neither_done_nor_overwritten(toy, tmp_path):
    rep = {"dataset": "toy", "recipe": "micro", "task": "all-matched", "method": "ft", "seed": 0,
           "request": {"forget": ["Dog"], "target": ["dog"], "model_labels": "class"},
           "metrics": {"RTE_s": 10.0}}  # fmt: skip
    (tmp_path / "ft_all-matched_s0.json").write_text(json.dumps(rep))
    with pytest.raises(
        bench.BenchError, match=r"another request \(forget Dog -> cat; target dog -> cat\)"
    ):
        bench.make_plan(grid(tasks=("all-matched",)), tmp_path)
    rep["request"] = {"forget": ["CAT"], "target": ["cat"], "model_labels": "class"}
    (tmp_path / "ft_all-matched_s0.json").write_text(json.dumps(rep))  # the same, spelt so
    assert list(bench.make_plan(grid(tasks=("all-matched",)), tmp_path).done) == [
        "ft_all-matched_s0"
    ]


def test_estimate_counts_a_resumed_training_whole(toy, tmp_path):
    """A training resumed from its saved state logs this process's seconds (its last
    part) and the whole training's ``train_s``: a model's time is the whole, and a job's
    time is its time alone (``alone_s``) where the line has it."""
    plan = bench.make_plan(grid(methods=("ft",)), tmp_path)
    entries = [
        {"kind": "model", "seconds": 5.0, "train_s": 100.0},  # resumed near its end
        {"kind": "model", "seconds": 90.0},  # an older line, without train_s
        {"kind": "model", "seconds": 112.0, "train_s": 110.0},
    ]
    write_log(tmp_path, [{"cached": False, **e} for e in entries])
    est = bench.estimate(plan, tmp_path, workers=1)
    assert est.model_s == 100.0 and est.model_source == "bench_log"
    # where the line has it, the time alone (CPU over threads): another bench on the
    # same cores tripled the wall time of the last two
    alone = [{**entries[0], "alone_s": 95.0}, {**entries[2], "train_s": 330.0, "alone_s": 108.0},
             {"kind": "model", "seconds": 310.0, "train_s": 300.0, "alone_s": 101.0}]  # fmt: skip
    runs = [{"kind": "run", "method": "ft", "seconds": w, "alone_s": a}
            for w, a in ((300.0, 100.0), (330.0, 110.0), (30.0, 30.0))]  # fmt: skip
    write_log(tmp_path, [{"cached": False, **e} for e in alone] + runs)
    est = bench.estimate(plan, tmp_path, workers=1)
    assert est.model_s == 101.0 and est.run_s["ft"] == 100.0


def test_a_report_made_under_other_defaults_is_flagged(toy, tmp_path):
    """The full config is compared: a report whose method's defaults changed since it ran
    (a field it predates, a value the default no longer has) is kept and flagged."""
    from tarf.methods import get_method
    from tarf.methods.base import config_dict

    config = config_dict(get_method("ft"))
    rep = {"dataset": "toy", "recipe": "micro", "task": "all-matched", "method": "ft", "seed": 0,
           "metrics": {"RTE_s": 1.0}, "config_changes": {}, "original": {}, "reference": {}}  # fmt: skip
    for name, cfg in {"same": config, "old": {**config, "epochs": 99}}.items():
        out = tmp_path / name
        out.mkdir()
        (out / "ft_all-matched_s0.json").write_text(json.dumps({**rep, "config": cfg}))
    assert bench.make_plan(grid(methods=("ft",)), tmp_path / "same").other_config == {}
    older = {k: v for k, v in config.items() if k != "lr"}
    (tmp_path / "old" / "ft_all-matched_s0.json").write_text(
        json.dumps({**rep, "config": {**older, "epochs": 99}})
    )
    flagged = bench.make_plan(grid(methods=("ft",)), tmp_path / "old").other_config
    assert flagged == {"ft_all-matched_s0": {"epochs": 99, "fields the report predates": "lr"}}


# -- grids with rows, and grid files ---------------------------------------------------
def write_grid_file(tmp_path, text, name="grid.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


TOY_HEAD = """\
    description: toy grid
    dataset: toy
    forget: [cat]
    concept: animals
    recipe: micro
    tasks: [all-matched]
"""


def test_rows_of_one_method_are_distinct_runs(toy, tmp_path):
    """Variants of one method side by side: each row its own runs, file names and
    hyperparameters; the models are shared by all rows."""
    rows = (("tarf", "a", {"k": 0.1}), ("ft", "", {}), ("tarf", "", {}), ("tarf", "b", {"k": 0.2}))
    g = grid(methods=(), seeds=(0, 1), rows=rows)
    assert g.methods == ("tarf", "ft") and all(isinstance(r, bench.Row) for r in g.rows)
    names = [r.name for r in g.runs() if r.seed == 0 and r.task == "all-matched"]
    assert names == ["tarf-a_all-matched_s0", "ft_all-matched_s0", "tarf_all-matched_s0",
                     "tarf-b_all-matched_s0"]  # fmt: skip
    by_name = {r.name: r for r in g.runs()}
    assert by_name["tarf-b_target-mismatch_s1"].overrides == {"k": 0.2}
    assert by_name["tarf_target-mismatch_s1"].overrides == {}
    # dataclasses.replace (the tests', the CLI's) keeps the rows
    assert [r.name for r in dataclasses.replace(g, audit=3).runs()] == [r.name for r in g.runs()]
    plan = bench.make_plan(g, tmp_path)
    assert len(plan.models) == 2 * 3  # per seed: one original, two references
    ref = next(m for m in plan.models if m.job.name == "retrained_all-matched_s0")
    assert sorted(ref.users) == sorted(names)
    # the old construction is unchanged: every method x every variant, overrides per method
    old = grid(methods=("ft", "tarf"), overrides={"ft": {"lr": 0.5}}, variants={"x": {"epochs": 2}})
    assert [(r.method, r.variant, r.overrides) for r in old.all_rows()] == [
        ("ft", "x", {"lr": 0.5, "epochs": 2}), ("tarf", "x", {"epochs": 2}),
    ]  # fmt: skip
    with pytest.raises(bench.BenchError, match="two rows of the grid are named tarf-a"):
        grid(methods=(), rows=(("tarf", "a", {}), ("tarf", "a", {"k": 0.3})))
    with pytest.raises(bench.BenchError, match="not both"):
        grid(methods=(), rows=(("ft", "", {}),), overrides={"ft": {"lr": 0.1}})
    with pytest.raises(bench.BenchError, match="not its rows'"):
        grid(methods=("rl",), rows=(("ft", "", {}),))


def test_grid_file_sweeps_and_variants_make_the_expected_jobs(toy, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write_grid_file(tmp_path, TOY_HEAD + """\
    seeds: 2
    out: results/toy
    set: {lr: 0.01, tarf.k: 0.05}
    methods:
      - ft
      - tarf
      - method: tarf
        variant: head-only
        set: {frozen_blocks: -1}
      - method: tarf
        set: {k: [0.01, 0.02]}
      - method: tarf
        variant: short
        set: {epochs: [3, 4], identified_op: [zero, ascent]}
      - {method: scrub, set: {lr_decay_epochs: [1, 2]}}
      - {method: rl, set: {lr: [1e-3, 2.5e-3]}}
    """)  # fmt: skip
    (spec,) = bench.load_grid_file(path)
    assert isinstance(spec, bench.GridSpec) and spec.description == "toy grid"
    assert spec.out == Path("results/toy") and not spec.out.is_absolute()
    g = spec.grid
    assert (g.dataset, g.forget, g.concept, g.recipe) == ("toy", "cat", "animals", "micro")
    assert (
        g.tasks == ("all-matched",)
        and g.seeds == (0, 1)
        and g.methods == ("ft", "tarf", "scrub", "rl")
    )
    rows = {r.label: r.overrides for r in g.all_rows()}
    assert rows == {
        "ft": {"lr": 0.01},
        "tarf": {"lr": 0.01, "k": 0.05},
        "tarf-head-only": {"lr": 0.01, "k": 0.05, "frozen_blocks": -1},
        "tarf-k0.01": {"lr": 0.01, "k": 0.01},  # the row's own value wins over the grid's
        "tarf-k0.02": {"lr": 0.01, "k": 0.02},
        "tarf-short-epochs3-identified_op-zero": {"lr": 0.01, "k": 0.05, "epochs": 3, "identified_op": "zero"},
        "tarf-short-epochs3-identified_op-ascent": {"lr": 0.01, "k": 0.05, "epochs": 3, "identified_op": "ascent"},
        "tarf-short-epochs4-identified_op-zero": {"lr": 0.01, "k": 0.05, "epochs": 4, "identified_op": "zero"},
        "tarf-short-epochs4-identified_op-ascent": {"lr": 0.01, "k": 0.05, "epochs": 4, "identified_op": "ascent"},
        "scrub": {"lr": 0.01, "lr_decay_epochs": (1, 2)},  # a list of a tuple hyperparameter: one value
        "rl-lr0.001": {"lr": 0.001},  # YAML's string "1e-3", typed as --set types it
        "rl-lr0.0025": {"lr": 0.0025},
    }  # fmt: skip
    names = [r.name for r in g.runs()]
    assert len(names) == len(set(names)) == 2 * len(rows)
    assert "tarf-k0.02_all-matched_s1" in names and "tarf-head-only_all-matched_s0" in names
    # nothing was run or written by loading
    assert not (tmp_path / "results").exists()


def test_grid_file_variants_run_as_distinct_rows(toy, tmp_path):
    """A sweep runs end to end: one report per row with its own hyperparameters, and
    results.md keeps the rows apart."""
    path = write_grid_file(tmp_path, TOY_HEAD + f"""\
    out: {tmp_path / "out"}
    methods: [ft, {{method: ft, set: {{lr: [0.5, 0.05]}}}}]
    """)  # fmt: skip
    (spec,) = bench.load_grid_file(path)
    outcome = bench.run_plan(bench.make_plan(spec.grid, spec.out), spec.out, bench.LocalBackend(1))
    assert sorted(outcome.ok) == ["ft-lr0.05_all-matched_s0", "ft-lr0.5_all-matched_s0",
                                  "ft_all-matched_s0"]  # fmt: skip
    changes = {n: bench.read_report(spec.out / f"{n}.json")["config_changes"] for n in outcome.ok}
    assert changes == {"ft_all-matched_s0": {}, "ft-lr0.5_all-matched_s0": {"lr": 0.5},
                       "ft-lr0.05_all-matched_s0": {"lr": 0.05}}  # fmt: skip
    assert sum(x["kind"] == "model" for x in log_lines(spec.out)) == 2  # shared by the rows
    bench.write_results(spec.out)
    md = (spec.out / "results.md").read_text()
    assert "| all-matched | ft lr=0.5 | 1 |" in md and "| all-matched | ft lr=0.05 | 1 |" in md
    assert bench.make_plan(spec.grid, spec.out).todo() == []


def test_a_grid_file_runs_its_grids_at_once(toy, tmp_path, capsys):
    """``tarf bench FILE``: the dry run ends with the time left for all grids; the run
    takes every grid at once and writes each grid's results.md."""
    path = write_grid_file(tmp_path, TOY_HEAD + f"""\
    methods: [ft]
    grids:
      - {{out: {tmp_path / "a"}}}
      - {{out: {tmp_path / "b"}, forget: [car], concept: vehicles}}
    """)  # fmt: skip
    assert main(["bench", str(path), "--jobs", "1", "--dry-run"]) == 0
    dry = capsys.readouterr().out
    assert "grid 2 of 2" in dry and dry.strip().splitlines()[-1].startswith("all 2 grids")
    assert dry.startswith(f"{path}: toy grid\n") and dry.count("toy grid") == 1  # said once
    assert main(["bench", str(path), "--jobs", "1"]) == 0
    err = capsys.readouterr().err
    assert err.index("grid 2 of 2") < err.index("[1/")  # every header, then the jobs
    assert "a/original_class_s0: trained" in err and "b/original_class_s0" not in err
    for out in ("a", "b"):
        assert "| all-matched | ft | 1 |" in (tmp_path / out / "results.md").read_text()


def test_a_grid_that_does_not_fit_its_dataset_names_the_file_and_its_keys(toy, tmp_path, capsys):
    path = write_grid_file(tmp_path, TOY_HEAD + f"""\
    methods: [ft]
    grids: [{{out: {tmp_path / "a"}}}, {{out: {tmp_path / "b"}, forget: [car], tasks: [target-mismatch]}}]
    """)  # fmt: skip
    assert main(["bench", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert (
        f"{path}, the grid of out {tmp_path / 'b'}: concept animals does not fit forget car" in err
    )
    assert "--" not in err and err.rstrip().endswith("concept vehicles")  # the file's keys
    assert main(["bench", str(path), "--dry-run", "--concept", "plants"]) == 2
    err = capsys.readouterr().err  # a value given on the command line keeps its flag
    # (grid a's all-matched uses no concept, but a concept given is checked all the same)
    assert "--concept plants does not fit forget cat" in err


def test_grid_file_grids_inherit_and_override(toy, tmp_path):
    path = write_grid_file(tmp_path, TOY_HEAD + """\
    seeds: [0, 2]
    out: base
    set: {lr: 0.01}
    methods: [ft, rl]
    grids:
      - {out: a}
      - {out: b, recipe: tiny, tasks: all, seeds: 1, description: the other one}
      - out: c
        set: {ft.lr: 0.5}
        methods: [ft, {method: tarf, variant: v, set: {k: 0.2}}]
    """)  # fmt: skip
    a, b, c = bench.load_grid_file(path)
    assert [s.out for s in (a, b, c)] == [Path("a"), Path("b"), Path("c")]
    assert a.grid.recipe == "micro" and a.grid.seeds == (0, 2) and a.grid.tasks == ("all-matched",)
    assert a.description == "toy grid" and b.description == "the other one"
    assert b.grid.recipe == "tiny" and b.grid.seeds == (0,) and b.grid.tasks == bench.MAIN_TASKS
    assert {r.label: r.overrides for r in a.grid.all_rows()} == {
        "ft": {"lr": 0.01},
        "rl": {"lr": 0.01},
    }
    # an entry's set replaces the file's: tarf-v has no lr, ft gets 0.5
    assert {r.label: r.overrides for r in c.grid.all_rows()} == {
        "ft": {"lr": 0.5}, "tarf-v": {"k": 0.2},
    }  # fmt: skip
    # overrides (the command line's) replace a key in every grid; their set goes on top
    specs = bench.load_grid_file(path, seeds="3", device="cpu", audit=None, set={"lr": "0.3"})
    assert all(s.grid.seeds == (0, 1, 2) and s.grid.device == "cpu" for s in specs)
    assert specs[0].grid.audit == 0
    assert {r.label: r.overrides for r in specs[2].grid.all_rows()} == {
        "ft": {"lr": 0.3}, "tarf-v": {"k": 0.2, "lr": 0.3},
    }  # fmt: skip
    with pytest.raises(
        bench.BenchError,
        match=r"grid\.yaml: override out: grids\[0\] and grids\[1\] both write \S+\.json to a;",
    ):
        bench.load_grid_file(path, out="a")
    with pytest.raises(bench.BenchError, match="unknown override jobs"):
        bench.load_grid_file(path, jobs=2)


BAD_GRID_FILES = [
    # (text after TOY_HEAD, what the message says: file, line, key, fix)
    ("out: o\nmetods: [ft]\n", ["line 8", "metods: unknown key; did you mean methods?"]),
    ("out: o\nmethods: [ft, nope]\n", ["line 8", "methods[1]: unknown method nope; valid: all,"]),
    ("out: o\nmethods: [ft]\nset: {kk: 1}\n",
     ["line 9", "set.kk: no method of this grid has a hyperparameter 'kk'; valid: epochs, lr"]),
    ("out: o\nmethods: [ft]\nset: {rl.lr: 1}\n", ["set.rl.lr: method 'rl' is not in this grid's methods"]),
    ("out: o\nmethods:\n  - {method: ft, set: {k: 0.1}}\n",
     ["line 9", "methods[0].set.k: ft has no hyperparameter 'k'; valid: epochs, lr"]),
    ("out: o\nmethods:\n  - {method: tarf, set: {frozen_block: 1}}\n",
     ["tarf has no hyperparameter 'frozen_block'; did you mean frozen_blocks? valid: "]),
    ("out: o\nmethods:\n  - {method: ft, set: {epochs: 1.5}}\n",
     ["methods[0].set.epochs: epochs: expected an int, got 1.5"]),
    ("out: o\nmethods:\n  - {method: tarf, set: {k: [0.1, {a: 1}]}}\n",
     ["methods[0].set.k: k: expected a float"]),
    ("out: o\nmethods:\n  - {method: ft, set: {lr: [fast]}}\n",
     ["methods[0].set.lr: ft: hyperparameter lr='fast': expected float"]),
    ("out: o\nmethods:\n  - {method: ft, set: {lr: []}}\n", ["methods[0].set.lr: an empty list"]),
    ("out: o\nmethods:\n  - {method: tarf, variant: a/b}\n", ["methods[0].variant: expected a label"]),
    ("out: o\nmethods:\n  - {method: tarf, varaint: a}\n", ["methods[0].varaint: unknown key; did you mean variant?"]),
    ("out: o\nmethods: [tarf, {method: tarf}]\n", ["methods[1]: a second row named tarf (the first: methods[0])"]),
    ("out: o\nmethods: [ft]\nseeds: -1\n", ["line 9", "seeds: expected a count (3 = seeds 0, 1, 2)"]),
    ("out: o\nmethods: [ft]\nseeds: [0, a]\n", ["seeds: expected a count"]),
    ("out: o\nmethods: [ft]\naudit: yes\n", ["audit: expected a number of references"]),
    ("out: o\nmethods: [ft]\nforget_fraction: 0.3\n", ["forget_fraction: applies to the sub-set tasks only"]),
    ("methods: [ft]\n", ["the file has no out: add `out:`"]),
    ("out: o\nmethods: [ft]\ngrids: [{outt: x}]\n", ["line 9", "grids[0].outt: unknown key; did you mean out?"]),
    ("out: o\nmethods: [ft]\ngrids: [{out: x}, {out: y, recipe: nope}]\n", ["grids[1].recipe: unknown recipe 'nope'"]),
    ("out: o\nmethods: [ft]\nout: p\n", ["line 9", "out: given twice in one mapping"]),
    ("out: o\nmethods: [ft]\ngrids: [{out: x, forget: [1, 7]}]\n",
     ["grids[0].forget: expected class names", "got [1, 7]: YAML reads unquoted digits as "
      "numbers; quote the names: ['1', '7']"]),
    ("out: o\nmethods: [ft\nseeds: 1\n", ["line 9", "not valid YAML"]),
]  # fmt: skip


@pytest.mark.parametrize("tail,expected", BAD_GRID_FILES)
def test_grid_file_errors_name_the_file_and_key(toy, tmp_path, tail, expected):
    path = write_grid_file(tmp_path, TOY_HEAD + textwrap.indent(tail, "    "), "bad.yaml")
    with pytest.raises(bench.BenchError) as e:
        bench.load_grid_file(path)
    msg = str(e.value)
    assert msg.startswith(str(path)) and "\n" not in msg
    for part in expected:
        assert part in msg
    assert not (tmp_path / "o").exists()


def test_grid_file_other_errors(toy, tmp_path):
    with pytest.raises(bench.BenchError, match=r"nope\.yaml: cannot read"):
        bench.load_grid_file(tmp_path / "nope.yaml")
    path = write_grid_file(tmp_path, "- just\n- a list\n")
    with pytest.raises(bench.BenchError, match=r"grid\.yaml: a grid file is a YAML mapping"):
        bench.load_grid_file(path)
    path = write_grid_file(
        tmp_path,
        TOY_HEAD.replace("dataset: toy", "dataset: toys") + "    out: o\n    methods: [ft]\n",
    )
    with pytest.raises(
        bench.BenchError, match=r"line 2: dataset: unknown dataset 'toys'; valid: cifar100"
    ):
        bench.load_grid_file(path)


def test_the_grid_file_of_the_docs_loads(tmp_path):
    """docs/bench.md's example is a valid grid file (for CIFAR-100: names only, no data)."""
    text = (Path(__file__).parents[1] / "docs" / "bench.md").read_text()
    path = tmp_path / "table1.yaml"
    path.write_text(text.split("```yaml\n", 1)[1].split("```", 1)[0])
    specs = bench.load_grid_file(path)
    assert [s.grid.recipe for s in specs] == ["cpu", "cpu:vgg16-bn"]
    labels = [r.label for r in specs[0].grid.all_rows()]
    assert labels == ["ft", "tarf", "tarf-head-only", "tarf-k0.01", "tarf-k0.02"]
    assert len(specs[0].grid.runs()) == 4 * 3 * len(labels)
    assert specs[1].grid.tasks == ("all-matched",) and specs[1].out != specs[0].out


def test_every_finished_job_gets_a_line(toy, tmp_path, monkeypatch, capsys):
    """Without a terminal (no bar), a line per finished job: its number, what, how it
    went, how long; a worker announces each training before it starts."""
    import re

    def shapes(lines):
        """The counters in order, and each line without them, its times as Ns."""
        heads = [line.split()[0] for line in lines]
        return heads, sorted(
            re.sub(r"\d+(\.\d+)?s\b", "Ns", line.split(" ", 1)[1]) for line in lines
        )

    out = tmp_path / "bench"
    lines = []
    plan = bench.make_plan(grid(tasks=("all-matched",)), out)
    bench.run_plan(plan, out, bench.LocalBackend(1), log=lines.append)
    assert shapes(lines) == (["[1/3]", "[2/3]", "[3/3]"], [
        "ft_all-matched_s0: ok in Ns, method Ns",
        "original_class_s0: trained in Ns",
        "retrained_all-matched_s0: trained in Ns",
    ])  # fmt: skip
    err = capsys.readouterr().err
    assert "original_class_s0: training the original model (toy, class labels, seed 0): " \
        "recipe micro" in err  # fmt: skip
    # a model that fails: its line, and one for each run it takes down
    (out / "ft_all-matched_s0.json").unlink()

    def broken(job, out_dir, wait=True):
        (Path(out_dir) / f"{job.name}.error.txt").write_text("boom\n")
        return bench.jobs._result(job, "failed", 0.0)

    monkeypatch.setattr(bench.jobs, "train_model_job", broken)
    lines.clear()
    bench.run_plan(bench.make_plan(grid(), out), out, bench.LocalBackend(1), log=lines.append)
    assert shapes(lines) == (["[1/3]", "[2/3]", "[3/3]"], [
        "ft_all-matched_s0: ok in Ns, method Ns",
        f"ft_target-mismatch_s0: FAILED (model retrained_target-mismatch_s0 failed; see "
        f"{out}/ft_target-mismatch_s0.error.txt)",
        f"retrained_target-mismatch_s0: FAILED (see {out}/retrained_target-mismatch_s0.error.txt)",
    ])  # fmt: skip


@pytest.mark.parametrize(
    "path",
    sorted((Path(__file__).resolve().parent.parent / "experiments").glob("*.yaml")),
    ids=lambda p: p.name,
)
def test_every_committed_grid_file_loads(path):
    """The docs point at each of these files: one that no longer parses is a broken command."""
    specs = bench.load_grid_file(path)
    assert specs and all(spec.grid.methods for spec in specs)
