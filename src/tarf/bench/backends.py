"""Where the jobs run. A backend maps a job function over configs and yields each result
as it finishes: ``with backend: backend.submit(fn, job, out_dir); for res in
backend.results(): ...`` (jobs submitted while iterating are included).

``LocalBackend`` runs in this process or a spawned process pool; ``RayBackend`` runs each
job as a Ray task, on this machine or a cluster. A worker that dies yields a "failed"
result and leaves ``{name}.error.txt``; the other jobs go on.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

import torch

from tarf.bench.grid import BenchError, ModelJob, RunJob
from tarf.bench.jobs import _result
from tarf.io import write_text


def _init_worker(threads: int, setup: Callable[[], None] | None) -> None:
    torch.set_num_threads(threads)
    if setup is not None:
        setup()


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_jobs() -> int:
    """The local backend's default number of parallel jobs: min(2, cores)."""
    return min(2, _cores())


class LocalBackend:
    """``jobs == 1``: in this process (easy to debug); else a spawned process pool whose
    workers split the cores between them instead of fighting over all of them."""

    def __init__(self, jobs: int, setup: Callable[[], None] | None = None) -> None:
        self.jobs, self.setup, self.pool = jobs, setup, None
        self.queue: deque = deque()  # jobs == 1: run one by one, in order
        self.futures: dict = {}  # the pool's: future -> (job, out_dir)

    def __enter__(self) -> LocalBackend:
        import multiprocessing as mp

        if self.jobs > 1:
            threads = max(1, _cores() // self.jobs)
            self.pool = ProcessPoolExecutor(
                self.jobs, mp_context=mp.get_context("spawn"),
                initializer=_init_worker, initargs=(threads, self.setup),
            )  # fmt: skip
        elif self.setup is not None:
            self.setup()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=exc[0] is None, cancel_futures=True)

    def submit(self, fn: Callable, job: Any, out_dir: str) -> None:
        """Queue ``fn(job, out_dir)``; jobs start in the order submitted."""
        if self.pool is None:
            self.queue.append((fn, job, out_dir))
        else:
            self.futures[self.pool.submit(fn, job, out_dir)] = (job, out_dir)

    def results(self) -> Iterator[dict[str, Any]]:
        """Each job's result as it finishes, until none is left; jobs submitted while
        iterating are included."""
        while self.queue or self.futures:
            if self.pool is None:
                fn, job, out_dir = self.queue.popleft()
                yield fn(job, out_dir)
                continue
            finished, _ = wait(self.futures, return_when=FIRST_COMPLETED)
            for fut in finished:
                job, out_dir = self.futures.pop(fut)
                try:
                    yield fut.result()
                except Exception as e:  # noqa: BLE001 - a worker died (out of memory?)
                    yield _crashed(job, out_dir, e)


def _ray_call(fn: Callable, job: Any, out_dir: str, threads: int, setup: Callable | None) -> dict:
    torch.set_num_threads(threads)
    if setup is not None:
        setup()
    return fn(job, out_dir)


class RayBackend:
    """Each job as a Ray task with ``num_cpus``/``num_gpus`` (fractional GPUs share one);
    ``RAY_ADDRESS`` points at a cluster, else Ray starts on this machine. Results are
    written by the jobs themselves, so ``out_dir`` must be shared by all nodes."""

    def __init__(
        self, cpus_per_job: float = 1.0, gpus_per_job: float = 0.0, setup: Callable | None = None
    ) -> None:
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise BenchError("the ray backend needs Ray: install with pip install tarf[ray]")
        self.cpus, self.gpus, self.setup, self.started = cpus_per_job, gpus_per_job, setup, False
        self.refs: dict = {}  # object ref -> (job, out_dir)

    def __enter__(self) -> RayBackend:
        import ray

        if not ray.is_initialized():
            env = {k: v for k, v in os.environ.items() if k.startswith("TARF_")}
            ray.init(address=os.environ.get("RAY_ADDRESS"),
                     runtime_env={"env_vars": env} if env else None)  # fmt: skip
            self.started = True
        self.ray = ray
        self.task = ray.remote(num_cpus=self.cpus, num_gpus=self.gpus)(_ray_call)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.started:
            self.ray.shutdown()

    def submit(self, fn: Callable, job: Any, out_dir: str) -> None:
        threads = max(1, int(self.cpus))
        self.refs[self.task.remote(fn, job, out_dir, threads, self.setup)] = (job, out_dir)

    def results(self) -> Iterator[dict[str, Any]]:
        while self.refs:
            ready, _ = self.ray.wait(list(self.refs), num_returns=1)
            job, out_dir = self.refs.pop(ready[0])
            try:
                yield self.ray.get(ready[0])
            except Exception as e:  # noqa: BLE001 - the task's worker died
                yield _crashed(job, out_dir, e)


def _crashed(job: RunJob | ModelJob, out_dir: str, e: BaseException) -> dict[str, Any]:
    write_text(Path(out_dir) / f"{job.name}.error.txt", f"the job's worker died: {e!r}\n")
    return _result(job, "failed", 0.0)
