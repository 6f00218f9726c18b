"""The bench's jobs: pure functions of a small config (``RunJob``, ``ModelJob``) and the
output folder, importable by name so that a process pool or Ray can run them anywhere.

A run job writes its report atomically to ``{name}.json`` (or its traceback to
``{name}.error.txt``); a model job trains one model into the model cache. Each returns
a one-line result (job name, status, wall time) for ``bench_log.jsonl``.
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
import time
import traceback
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from tarf.bench.grid import ModelJob, RunJob, _method, build_request
from tarf.bench.results import read_report, report_done
from tarf.data.core import ImageDataset
from tarf.io import write_json, write_text

_DATASETS: dict[tuple[str, str | None, str | None], ImageDataset] = {}


def load_dataset_once(
    name: str, data_root: str | None = None, hierarchy: str | None = None, download: bool = False
) -> ImageDataset:
    """``load_dataset`` memoised per process: a worker reads its data once for all its jobs."""
    key = (name, data_root, hierarchy)
    if key not in _DATASETS:
        from tarf.data import load_dataset
        from tarf.hierarchy import LabelHierarchy

        ds = load_dataset(name, data_root, download=download)
        if hierarchy:
            user = LabelHierarchy.from_file(hierarchy, class_order=ds.hierarchy.class_names)
            ds = dataclasses.replace(ds, hierarchy=user)
        _DATASETS[key] = ds
    return _DATASETS[key]


def register(datasets: Iterable[ImageDataset] = (), recipes: Iterable[Any] = ()) -> None:
    """Make in-memory datasets and recipes loadable by name in this process (tests,
    notebooks); ``functools.partial(register, ...)`` as a backend's ``setup`` does it in
    every worker."""
    from tarf.recipes import RECIPES

    for ds in datasets:
        _DATASETS[(ds.name, None, None)] = ds
    for r in recipes:
        RECIPES[r.name] = r


def run_job(job: RunJob, out_dir: str) -> dict[str, Any]:
    """Run one (task, method, seed) as ``tarf unlearn`` does; write its report, or its
    traceback to ``{name}.error.txt``. Never raises for a failure of the run itself.
    With ``job.audit``, the unlearned model is audited while it exists (the bench keeps
    no unlearned model) and the audit is stored in the report under ``"audit"``."""
    out = Path(out_dir)
    path, err = out / f"{job.name}.json", out / f"{job.name}.error.txt"
    if report_done(read_report(path), job):
        return _result(job, "skipped", 0.0)
    start, cpu_start, threads = time.perf_counter(), time.process_time(), torch.get_num_threads()
    try:
        from tarf.recipes import get_recipe
        from tarf.run import run_request
        from tarf.training import pick_device, time_alone

        ds = load_dataset_once(job.dataset, job.data_root, job.hierarchy)
        req = build_request(ds.hierarchy, job.forget, job.concept, job.task, job.forget_fraction,
                            job.forget_seed)  # fmt: skip
        recipe = get_recipe(job.recipe, job.dataset)
        device, log = pick_device(job.device), lambda m: _log(f"{job.name}: {m}")
        with tempfile.TemporaryDirectory() as tmp:
            # the audit needs the unlearned model: through a temporary checkpoint (deleted
            # with the folder, so no line names it)
            saved = str(Path(tmp) / "unlearned.pt") if job.audit else None
            if saved:
                from tarf.audit import hiding

                log = hiding(saved, log)
            report = run_request(ds, req, _method(job.method, job.overrides), recipe, job.seed,
                                 device, log=log, save_model=saved)  # fmt: skip
            if job.audit:
                from tarf.audit import audit_run
                from tarf.checkpoint import load_checkpoint

                model = load_checkpoint(saved, req, device)
                report["audit"] = audit_run(model, report["metrics"], ds, req, recipe,
                                            job.seed, device, job.audit, log=log)  # fmt: skip
        write_json(path, report)
        err.unlink(missing_ok=True)
        # what the dry run estimates from: CPU time over threads (on a GPU it measures little)
        alone = time_alone(start, cpu_start, threads) if device.type == "cpu" else None
        seconds = time.perf_counter() - start
        return _result(job, "ok", seconds, rte_s=report["metrics"]["RTE_s"], alone_s=alone)
    except Exception:  # noqa: BLE001 - one failed run must not stop the grid
        write_text(err, traceback.format_exc())
        return _result(job, "failed", time.perf_counter() - start)


def train_model_job(job: ModelJob, out_dir: str, wait: bool = True) -> dict[str, Any]:
    """Train one model into the cache (or find it there) through ``cache.trained_model``,
    and with ``job.audit`` the reference's audit statistics (``audit.reference_stats``).
    With ``wait=False``, a model another process is training gives status "busy" at once
    (``run_plan`` queues it again behind the work it can do now)."""
    from tarf.io import LockBusy

    start = time.perf_counter()
    err = Path(out_dir) / f"{job.name}.error.txt"
    try:
        from tarf.cache import prepare_dataset, trained_model
        from tarf.recipes import get_recipe
        from tarf.training import pick_device

        ds = load_dataset_once(job.dataset, job.data_root, job.hierarchy)
        req = build_request(ds.hierarchy, job.forget, job.concept, job.task, job.forget_fraction,
                            job.forget_seed)  # fmt: skip
        recipe = get_recipe(job.recipe, job.dataset)
        pds = prepare_dataset(ds, recipe)
        if job.role == "original":
            idx = torch.arange(len(pds.y_train))
        else:
            idx = req.partitions(pds.y_train, pds.y_test).remaining
        device = pick_device(job.device)
        try:
            m = trained_model(pds, req, idx, recipe, job.seed, device, job.role, wait=wait,
                              log=lambda msg: _log(f"{job.name}: {msg}"))  # fmt: skip
        except LockBusy:
            return _result(job, "busy", time.perf_counter() - start)
        if job.audit:  # the reference's per-example statistics, into the cache
            from tarf.audit import reference_stats

            reference_stats(pds, req, recipe, job.seed, device)
        err.unlink(missing_ok=True)
        meta = m.meta
        return _result(job, "ok", time.perf_counter() - start, key=meta["key"],
                       train_s=meta["train_s"], alone_s=meta.get("alone_s"),
                       cached=meta["cached"])  # fmt: skip
    except Exception:  # noqa: BLE001
        write_text(err, traceback.format_exc())
        return _result(job, "failed", time.perf_counter() - start)


def train_model_without_waiting(job: ModelJob, out_dir: str) -> dict[str, Any]:
    """``train_model_job(..., wait=False)``, as a named function the backends can pickle."""
    return train_model_job(job, out_dir, wait=False)


def _result(job: RunJob | ModelJob, status: str, seconds: float, **extra: Any) -> dict[str, Any]:
    kind = "run" if isinstance(job, RunJob) else "model"
    info = {"method": job.method} if isinstance(job, RunJob) else {"role": job.role}
    if job.audit:  # an audited run takes longer: the dry run keeps the two apart
        info["audit"] = job.audit
    times = {k: round(v, 3) for k, v in extra.items() if isinstance(v, float)}  # as "seconds"
    return {
        "job": job.name, "kind": kind, "status": status, "seconds": round(seconds, 3),
        "dataset": job.dataset, "recipe": job.recipe, "task": job.task, "seed": job.seed,
        **info, **extra, **times,
    }  # fmt: skip


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
