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
    return _Scheduler(plans, backend, log or jobs._log, grid_done).run()


@dataclass
class _Grid:
    """One plan while the plans run: its folder, outcome and what of it is still open."""

    plan: Plan
    out: Path
    where: str  # its folder as progress lines name it ("" for a single grid)
    outcome: Outcome
    left: int = 0  # runs not finished yet
    open_models: int = 0  # models this grid trains, not finished yet
    failed_models: int = 0  # at the head of outcome.failed, sorted


class _Scheduler:
    """The queues of :func:`run_plans` and what moves jobs between them: ready runs (their
    models are all there), models to train, models another process is training (``busy``,
    waited for only when a slot would otherwise idle)."""

    def __init__(
        self,
        plans: Sequence[tuple[Plan, str | Path]],
        backend: Any,
        log: Callable[[str], None],
        grid_done: Callable[[int, Outcome], None] | None,
    ) -> None:
        self.backend, self.log, self.grid_done = backend, log, grid_done
        outs = [Path(o) for _, o in plans]
        self.grids = [
            _Grid(
                plan,
                out,
                where,
                Outcome(skipped=[r.name for r in plan.runs if r.name in plan.done]),
            )
            for (plan, _), out, where in zip(plans, outs, _labels(outs))
        ]
        self.runs: dict[RunId, RunJob] = {}
        self.run_at: dict[tuple[str, str], int] = {}  # (folder, run name) -> its plan
        self.needs: dict[RunId, set[str]] = {}  # run -> keys of the models not there yet
        self.owner: dict[str, tuple[int, ModelJob]] = {}  # model key -> the grid training it
        self.users: dict[str, list[RunId]] = {}  # model key -> the runs that need it
        for i, g in enumerate(self.grids):
            self._add(i, g)
        self.ready_runs: deque[RunId] = deque()  # models all there, not yet submitted
        # another bench training one of them must not stall this one: not waited for at first
        self.to_train: deque[str] = deque(self.owner)
        self.busy: deque[str] = deque()  # models in training elsewhere, waited for when idle
        self.submitted: dict[tuple[str, str], list[str]] = {}  # (folder, model job) -> keys
        self.total, self.count = len(self.owner) + len(self.runs), 0

    def _add(self, i: int, g: _Grid) -> None:
        """Plan ``i``'s runs to do and the models they need, each model owned by the
        first grid that needs it."""
        g.out.mkdir(parents=True, exist_ok=True)
        for name, changes in g.plan.other_config.items():
            self.log(f"warning: {g.where}{name}.json exists with other "
                     f"hyperparameters ({_fmt_changes(changes)}); kept, not rerun")  # fmt: skip
        for r in g.plan.todo():
            self.runs[(i, r.name)], self.needs[(i, r.name)] = r, set()
            self.run_at[(str(g.out), r.name)] = i
            g.left += 1
        for m in g.plan.models_to_train() + g.plan.stats_to_compute():
            if m.key not in self.owner:
                self.owner[m.key] = (i, m.job)
                g.open_models += 1
            elif m.job.audit and not self.owner[m.key][1].audit:  # its statistics too
                j, job = self.owner[m.key]
                self.owner[m.key] = (j, dataclasses.replace(job, audit=m.job.audit))
            for user in m.users:
                if (i, user) in self.needs:
                    self.needs[(i, user)].add(m.key)
                    self.users.setdefault(m.key, []).append((i, user))

    def run(self) -> list[Outcome]:
        from tqdm.auto import tqdm

        with self.backend, tqdm(total=self.total, desc="jobs", unit="job", disable=None,
                                dynamic_ncols=True) as self.bar:  # fmt: skip
            for rid in [rid for rid, missing in self.needs.items() if not missing]:
                self.ready_runs.append(rid)
                del self.needs[rid]
            for i in range(len(self.grids)):
                self._maybe_done(i)
            self._feed()
            for res in self.backend.results():
                self._take(res)
                self._feed()
        return [g.outcome for g in self.grids]

    def _say(self, line: str) -> None:
        if self.bar.disable:
            self.log(line)
        else:  # above the bar, which stays at the bottom
            self.bar.write(line, file=sys.stderr)

    def _maybe_done(self, i: int) -> None:
        g = self.grids[i]
        if g.left == 0 and g.open_models == 0 and self.grid_done is not None:
            self.grid_done(i, g.outcome)

    def _finished(self, i: int, res: dict[str, Any]) -> None:
        """One job done: the bar moves, and a line says which and how it went."""
        g = self.grids[i]
        self.count += 1
        self.bar.update()
        self._say(job_line(res, self.count, self.total, g.out, g.where))
        if res["kind"] == "run":
            g.left -= 1
            self._maybe_done(i)

    def _needed(self, key: str) -> bool:
        """A run still waits for the model (else its runs failed with another, and it is
        dropped from the total)."""
        if any(rid in self.needs for rid in self.users.get(key, [])):
            return True
        i = self.owner[key][0]
        self.total -= 1
        self.grids[i].open_models -= 1
        self.bar.total = self.total
        self.bar.refresh()
        self._maybe_done(i)
        return False

    def _feed(self) -> None:
        """Fill the free slots: ready runs, then models to train, then busy models."""
        backend = self.backend
        while self.ready_runs or self.to_train or self.busy:
            if backend.slots is not None and backend.pending() >= backend.slots:
                return
            if self.ready_runs:
                i, name = self.ready_runs.popleft()
                backend.submit(jobs.run_job, self.runs[(i, name)], str(self.grids[i].out))
                continue
            fn = jobs.train_model_without_waiting if self.to_train else jobs.train_model_job
            key = (self.to_train or self.busy).popleft()
            if self._needed(key):
                i, job = self.owner[key]
                out = str(self.grids[i].out)
                self.submitted.setdefault((out, job.name), []).append(key)
                backend.submit(fn, job, out)

    def _take(self, res: dict[str, Any]) -> None:
        """A result from the backend: logged, counted, and a model's runs unblocked."""
        if "out" not in res and len(self.grids) > 1:
            raise BenchError("the backend's results do not say their folder ('out')")
        out = str(Path(res.pop("out", self.grids[0].out)))
        if res["kind"] == "run":
            i = self.run_at[(out, res["job"])]
            g = self.grids[i]
            if res["status"] != "skipped":
                append_log(g.out, res)
            {"ok": g.outcome.ok, "failed": g.outcome.failed,
             "skipped": g.outcome.skipped}[res["status"]].append(res["job"])  # fmt: skip
            self._finished(i, res)
            return
        keys = self.submitted[(out, res["job"])]  # two only if one folder has two alike
        key = res["key"] if res.get("key") in keys else keys[0]
        keys.remove(key)
        i = self.owner[key][0]
        if res["status"] == "busy":  # in training elsewhere: wait for it when idle
            self._say(f"{self.grids[i].where}{res['job']}: another process is training it; "
                      "waiting for it after the rest of the work")  # fmt: skip
            self.busy.append(key)
            return
        append_log(self.grids[i].out, res)
        self._finished(i, res)
        self._model_done(i, key, res)

    def _model_done(self, i: int, key: str, res: dict[str, Any]) -> None:
        """Queue the runs a trained model unblocks; fail those a failed one blocks."""
        g = self.grids[i]
        model, failed = res["job"], res["status"] == "failed"
        if failed:  # failed models first (sorted), then the runs
            bisect.insort(g.outcome.failed, model, hi=g.failed_models)
            g.failed_models += 1
        elif res["key"] != key:
            self.log(f"warning: {model} is cached under another key than planned")
        for j, name in self.users.get(key, []):
            if (j, name) not in self.needs:
                continue
            if failed:
                user = self.grids[j]
                error = f"{model}.error.txt" if user.out == g.out else g.out / f"{model}.error.txt"
                write_text(user.out / f"{name}.error.txt",
                           f"not run: model {model} failed, see {error}\n")  # fmt: skip
                user.outcome.failed.append(name)
                del self.needs[(j, name)]
                self._finished(j, {"job": name, "kind": "run", "status": "failed",
                                   "seconds": 0.0, "cause": model})  # fmt: skip
                continue
            self.needs[(j, name)].discard(key)
            if not self.needs[(j, name)]:
                self.ready_runs.append((j, name))
                del self.needs[(j, name)]
        g.open_models -= 1
        self._maybe_done(i)


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
