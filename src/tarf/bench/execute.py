"""Running a plan on a backend: each run as soon as the models it needs are there and a
slot is free (ahead of the models still to train), every finished job logged to
``bench_log.jsonl`` and told in one progress line (``[3/12] ft_all-matched_s0: ok in
14s``), with or without a terminal."""

from __future__ import annotations

import json
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tarf.bench import jobs
from tarf.bench.grid import ModelJob, _fmt_changes
from tarf.bench.plan import Plan
from tarf.io import write_text

LOG_FILE = "bench_log.jsonl"


@dataclass
class Outcome:
    ok: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def run_plan(
    plan: Plan, out_dir: str | Path, backend: Any, log: Callable[[str], None] | None = None
) -> Outcome:
    """Train the missing models and run every run not done yet, each run as soon as the
    models it needs are there; each finished job appends its wall time to bench_log.jsonl
    and gets a line in ``log`` (:func:`job_line`). A failed model fails the runs that need
    it, and only those.

    A backend with a known number of slots is kept just full, from three queues in this
    order: runs whose models are there (minutes each, and each a result), models to train
    (hours, but they unblock runs), models another process is training (waited for only
    when a slot would otherwise idle). So results come in as early as the models allow,
    and an interrupted bench leaves finished cells behind, not only trained models."""
    from tqdm.auto import tqdm

    log = log or jobs._log
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    outcome = Outcome(skipped=[r.name for r in plan.runs if r.name in plan.done])
    for name, changes in plan.other_config.items():
        log(f"warning: {name}.json exists with other hyperparameters "
            f"({_fmt_changes(changes)}); kept, not rerun")  # fmt: skip
    models = plan.models_to_train() + plan.stats_to_compute()
    planned_keys = {m.job.name: m.key for m in models}
    models_by_name = {m.job.name: m.job for m in models}
    runs = {r.name: r for r in plan.todo()}
    needs: dict[str, set[str]] = {name: set() for name in runs}  # run -> models not there yet
    bad_models: list[str] = []
    ready_runs: deque[str] = deque()  # runs whose models are all there, not yet submitted
    # another bench training one of them must not stall this one: not waited for at first
    to_train: deque[ModelJob] = deque(m.job for m in models)
    busy: list[str] = []  # models in training elsewhere, waited for when a slot is free
    for m in models:
        for user in m.users:
            if user in needs:
                needs[user].add(m.job.name)
    total = len(models) + len(runs)
    with backend, tqdm(total=total, desc="jobs", unit="job", disable=None,
                       dynamic_ncols=True) as bar:  # fmt: skip
        count = 0

        def say(line: str) -> None:
            if bar.disable:
                log(line)
            else:  # above the bar, which stays at the bottom
                bar.write(line, file=sys.stderr)

        def finished(res: dict[str, Any]) -> None:
            """One job done: the bar moves, and a line says which and how it went."""
            nonlocal count
            count += 1
            bar.update()
            say(job_line(res, count, total, out))

        def feed() -> None:
            """Fill the free slots: ready runs, then models to train, then busy models."""
            while ready_runs or to_train or busy:
                if backend.slots is not None and backend.pending() >= backend.slots:
                    return
                if ready_runs:
                    backend.submit(jobs.run_job, runs[ready_runs.popleft()], str(out))
                elif to_train:
                    backend.submit(jobs.train_model_without_waiting, to_train.popleft(), str(out))
                else:
                    backend.submit(jobs.train_model_job, models_by_name[busy.pop(0)], str(out))

        def model_done(res: dict[str, Any]) -> None:
            """Queue the runs a trained model unblocks; fail those a failed one blocks."""
            model, failed = res["job"], res["status"] == "failed"
            if failed:
                bad_models.append(model)
            elif res["key"] != planned_keys[model]:
                log(f"warning: {model} is cached under another key than planned")
            for name in [n for n, missing in needs.items() if model in missing]:
                if failed:
                    write_text(out / f"{name}.error.txt",
                               f"not run: model {model} failed, see {model}.error.txt\n")  # fmt: skip
                    outcome.failed.append(name)
                    finished({"job": name, "kind": "run", "status": "failed", "seconds": 0.0,
                              "cause": model})  # fmt: skip
                    del needs[name]
                    continue
                needs[name].discard(model)
                if not needs[name]:
                    ready_runs.append(name)
                    del needs[name]

        for name in [n for n, missing in needs.items() if not missing]:
            ready_runs.append(name)
            del needs[name]
        feed()
        for res in backend.results():
            if res["status"] == "busy":  # in training elsewhere: wait for it when idle
                say(f"{res['job']}: another process is training it; waiting for it after "
                    "the rest of the work")  # fmt: skip
                busy.append(res["job"])
            else:
                if res["status"] != "skipped":
                    append_log(out, res)
                finished(res)
                if res["kind"] == "run":
                    {"ok": outcome.ok, "failed": outcome.failed, "skipped": outcome.skipped}[
                        res["status"]
                    ].append(res["job"])
                else:
                    model_done(res)
            feed()
    outcome.failed[:0] = sorted(bad_models)
    return outcome


def job_line(res: dict[str, Any], n: int, total: int, out: Path) -> str:
    """``[n/total] job: what happened, how long``: a finished job's progress line."""
    head = f"[{n}/{total}] {res['job']}: "
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
