"""Running a plan on a backend: each run as soon as the models it needs are there and a
slot is free (ahead of the models still to train), every finished job logged to
``bench_log.jsonl`` and told in one progress line (``[3/12] ft_all-matched_s0: ok in
14s``), with or without a terminal."""

from __future__ import annotations

import bisect
import dataclasses
import json
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tarf.bench import jobs
from tarf.bench.grid import BenchError, ModelJob, RunJob, _fmt_changes
from tarf.bench.plan import Plan
from tarf.io import write_text

LOG_FILE = "bench_log.jsonl"
RunId = tuple[int, str]  # (the plan's index, the run's name)


@dataclass
class Outcome:
    ok: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def run_plan(
    plan: Plan, out_dir: str | Path, backend: Any, log: Callable[[str], None] | None = None
) -> Outcome:
    """Train the missing models and run every run not done yet, each run as soon as the
    models it needs are there; each finished job appends its times to bench_log.jsonl
    and gets a line in ``log`` (:func:`job_line`). A failed model fails the runs that need
    it, and only those.

    A backend with a known number of slots is kept just full, from three queues in this
    order: runs whose models are there (minutes each, and each a result), models to train
    (hours, but they unblock runs), models another process is training (waited for only
    when a slot would otherwise idle). So results come in as early as the models allow,
    and an interrupted bench leaves finished cells behind, not only trained models."""
    return run_plans([(plan, out_dir)], backend, log)[0]


def run_plans(
    plans: Sequence[tuple[Plan, str | Path]],
    backend: Any,
    log: Callable[[str], None] | None = None,
    grid_done: Callable[[int, Outcome], None] | None = None,
) -> list[Outcome]:
    """:func:`run_plan` for several plans at once (the grids of a file), from one set of
    queues: the workers a grid's last long runs leave free take the next grid's work
    instead of idling, and a model two grids need (one cache key) is trained once, by the
    first grid that needs it (with the audit statistics if any grid wants them), its log
    line in that grid's folder. Grids may share a folder, not a run's name in it (as
    ``load_grid_file`` checks). ``grid_done(i, outcome)`` runs once plan ``i``'s runs and
    the models it trains are all done. A model no run needs any more (its runs failed
    with another model) is not trained. With several plans a progress line names the
    job's folder (``[3/40] people-vgg16-bn/ft_all-matched_s0``); the backend must tag each
    result with the folder it was submitted with (``"out"``, as tarf's backends do)."""
    from tqdm.auto import tqdm

    log = log or jobs._log
    outs = [Path(o) for _, o in plans]
    outcomes = [Outcome(skipped=[r.name for r in p.runs if r.name in p.done]) for p, _ in plans]
    where = _labels(outs)
    runs: dict[RunId, RunJob] = {}
    run_at: dict[tuple[str, str], int] = {}  # (folder, run name) -> its plan
    needs: dict[RunId, set[str]] = {}  # run -> keys of the models not there yet
    owner: dict[str, tuple[int, ModelJob]] = {}  # model key -> the grid whose job trains it
    users: dict[str, list[RunId]] = {}
    left = [0] * len(plans)  # runs of each grid not finished yet
    open_models = [0] * len(plans)  # models each grid trains, not finished yet
    failed_models = [0] * len(plans)
    for i, ((plan, _), out) in enumerate(zip(plans, outs)):
        out.mkdir(parents=True, exist_ok=True)
        for name, changes in plan.other_config.items():
            log(f"warning: {where[i]}{name}.json exists with other "
                f"hyperparameters ({_fmt_changes(changes)}); kept, not rerun")  # fmt: skip
        for r in plan.todo():
            runs[(i, r.name)], needs[(i, r.name)] = r, set()
            run_at[(str(out), r.name)] = i
            left[i] += 1
        for m in plan.models_to_train() + plan.stats_to_compute():
            if m.key not in owner:
                owner[m.key] = (i, m.job)
                open_models[i] += 1
            elif m.job.audit and not owner[m.key][1].audit:  # its statistics too
                j, job = owner[m.key]
                owner[m.key] = (j, dataclasses.replace(job, audit=m.job.audit))
            for user in m.users:
                if (i, user) in needs:
                    needs[(i, user)].add(m.key)
                    users.setdefault(m.key, []).append((i, user))
    ready_runs: deque[RunId] = deque()  # runs whose models are all there, not yet submitted
    # another bench training one of them must not stall this one: not waited for at first
    to_train: deque[str] = deque(owner)
    busy: deque[str] = deque()  # models in training elsewhere, waited for when idle
    submitted: dict[tuple[str, str], list[str]] = {}  # (folder, model job name) -> keys
    total = len(owner) + len(runs)
    with backend, tqdm(total=total, desc="jobs", unit="job", disable=None,
                       dynamic_ncols=True) as bar:  # fmt: skip
        count = 0

        def say(line: str) -> None:
            if bar.disable:
                log(line)
            else:  # above the bar, which stays at the bottom
                bar.write(line, file=sys.stderr)

        def maybe_done(i: int) -> None:
            if left[i] == 0 and open_models[i] == 0 and grid_done is not None:
                grid_done(i, outcomes[i])

        def finished(i: int, res: dict[str, Any]) -> None:
            """One job done: the bar moves, and a line says which and how it went."""
            nonlocal count
            count += 1
            bar.update()
            say(job_line(res, count, total, outs[i], where[i]))
            if res["kind"] == "run":
                left[i] -= 1
                maybe_done(i)

        def needed(key: str) -> bool:
            """A run still waits for the model (else its runs failed with another)."""
            if any(rid in needs for rid in users.get(key, [])):
                return True
            nonlocal total
            i = owner[key][0]
            total, open_models[i] = total - 1, open_models[i] - 1
            bar.total = total
            bar.refresh()
            maybe_done(i)
            return False

        def feed() -> None:
            """Fill the free slots: ready runs, then models to train, then busy models."""
            while ready_runs or to_train or busy:
                if backend.slots is not None and backend.pending() >= backend.slots:
                    return
                if ready_runs:
                    i, name = ready_runs.popleft()
                    backend.submit(jobs.run_job, runs[(i, name)], str(outs[i]))
                    continue
                fn = jobs.train_model_without_waiting if to_train else jobs.train_model_job
                key = (to_train or busy).popleft()
                if needed(key):
                    i, job = owner[key]
                    submitted.setdefault((str(outs[i]), job.name), []).append(key)
                    backend.submit(fn, job, str(outs[i]))

        def model_done(i: int, key: str, res: dict[str, Any]) -> None:
            """Queue the runs a trained model unblocks; fail those a failed one blocks."""
            model, failed = res["job"], res["status"] == "failed"
            if failed:  # failed models first (sorted), then the runs
                bisect.insort(outcomes[i].failed, model, hi=failed_models[i])
                failed_models[i] += 1
            elif res["key"] != key:
                log(f"warning: {model} is cached under another key than planned")
            for j, name in users.get(key, []):
                if (j, name) not in needs:
                    continue
                if failed:
                    error = (
                        f"{model}.error.txt"
                        if outs[j] == outs[i]
                        else outs[i] / f"{model}.error.txt"
                    )
                    write_text(outs[j] / f"{name}.error.txt",
                               f"not run: model {model} failed, see {error}\n")  # fmt: skip
                    outcomes[j].failed.append(name)
                    del needs[(j, name)]
                    finished(j, {"job": name, "kind": "run", "status": "failed",
                                 "seconds": 0.0, "cause": model})  # fmt: skip
                    continue
                needs[(j, name)].discard(key)
                if not needs[(j, name)]:
                    ready_runs.append((j, name))
                    del needs[(j, name)]
            open_models[i] -= 1
            maybe_done(i)

        for rid in [rid for rid, missing in needs.items() if not missing]:
            ready_runs.append(rid)
            del needs[rid]
        for i in range(len(plans)):
            maybe_done(i)
        feed()
        for res in backend.results():
            if "out" not in res and len(plans) > 1:
                raise BenchError("the backend's results do not say their folder ('out')")
            out = str(Path(res.pop("out", outs[0])))
            if res["kind"] == "run":
                i = run_at[(out, res["job"])]
                if res["status"] != "skipped":
                    append_log(outs[i], res)
                {"ok": outcomes[i].ok, "failed": outcomes[i].failed,
                 "skipped": outcomes[i].skipped}[res["status"]].append(res["job"])  # fmt: skip
                finished(i, res)
            else:
                keys = submitted[(out, res["job"])]  # two only if one folder has two alike
                key = res["key"] if res.get("key") in keys else keys[0]
                keys.remove(key)
                i = owner[key][0]
                if res["status"] == "busy":  # in training elsewhere: wait for it when idle
                    say(f"{where[i]}{res['job']}: another process is training it; waiting "
                        "for it after the rest of the work")  # fmt: skip
                    busy.append(key)
                else:
                    append_log(outs[i], res)
                    finished(i, res)
                    model_done(i, key, res)
            feed()
    return outcomes


def _labels(outs: list[Path]) -> list[str]:
    """Each grid's folder as its progress lines name it when several grids run at once:
    the path below the folders' common parent (``people-vgg16-bn/``); none for one grid."""
    if len(outs) < 2:
        return [""] * len(outs)
    full = [o.resolve() for o in outs]
    common = os.path.commonpath(full)
    return [
        f"{os.path.relpath(f, common) if f != Path(common) else o.name}/"
        for o, f in zip(outs, full)
    ]


def job_line(res: dict[str, Any], n: int, total: int, out: Path, where: str = "") -> str:
    """``[n/total] job: what happened, how long``: a finished job's progress line
    (``where``: the job's folder, when several grids run at once)."""
    head = f"[{n}/{total}] {where}{res['job']}: "
    seconds = f"{res.get('seconds', 0.0):.0f}s"
    status = res["status"]
    if status == "failed":
        why = f"model {res['cause']} failed; " if res.get("cause") else ""
        return head + f"FAILED ({why}see {out / (res['job'] + '.error.txt')})"
    if status == "skipped":
        return head + "already done"
    if res.get("kind") == "model":
        return head + ("cached" if res.get("cached") else f"trained in {seconds}")
    rte = f", method {res['rte_s']:.1f}s" if res.get("rte_s") is not None else ""
    return head + f"ok in {seconds}{rte}"


def append_log(out: Path, res: dict[str, Any]) -> None:
    """One line per finished job, in the folder's log and in the cache's (the machine's
    measured job times, so the dry run of a new folder can estimate from other benches).
    Only the parent writes, so a folder's lines never interleave; the cache's log is
    best effort (a read-only cache loses no result)."""
    text = json.dumps({**res, "date": time.strftime("%Y-%m-%dT%H:%M:%S")}) + "\n"
    with open(out / LOG_FILE, "a") as f:
        f.write(text)
    try:
        from tarf.cache import cache_root

        cache_root().mkdir(parents=True, exist_ok=True)
        with open(cache_root() / LOG_FILE, "a") as f:
            f.write(text)
    except OSError:
        pass


def read_log(out_dir: str | Path) -> list[dict[str, Any]]:
    """The lines of a folder's ``bench_log.jsonl`` (a line cut by a kill is skipped)."""
    lines = []
    try:
        text = (Path(out_dir) / LOG_FILE).read_text()
    except OSError:
        return []
    for line in text.splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            continue
    return lines
