"""Where the jobs run. A backend maps a job function over configs and yields each result
as it finishes: ``with backend: backend.submit(fn, job, out_dir); for res in
backend.results(): ...`` (jobs submitted while iterating are included; each result
carries the ``out`` folder it was submitted with).

``slots`` is how many jobs run at once (None: as many as the cluster has room for) and
``pending()`` how many are submitted and not yet yielded, so a caller can keep work that
would only wait (a model another process is training) until a slot would idle.

``LocalBackend`` runs in this process or a spawned process pool (whose workers take the
visible GPUs in turn); ``RayBackend`` runs each job as a Ray task, on this machine or a
cluster, with the GPUs the grid's device needs. A worker that dies yields a "failed"
result and leaves ``{name}.error.txt``; the other jobs go on.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

import torch

from tarf.bench.grid import BenchError, ModelJob, RunJob
from tarf.bench.jobs import _result
from tarf.io import write_text


def _init_worker(
    threads: int, setup: Callable[[], None] | None, slots: Any = None, gpus: int = 0
) -> None:
    """A pool worker's start: its share of the cores and, with ``gpus`` visible, the next
    GPU in turn (``slots``, a shared counter, numbers the workers) as its current device,
    which ``--device cuda`` and ``auto`` then use."""
    torch.set_num_threads(threads)
    if gpus and slots is not None:
        with slots.get_lock():
            slot = slots.value
            slots.value += 1
        torch.cuda.set_device(slot % gpus)
    if setup is not None:
        setup()


def visible_gpus() -> int:
    """CUDA GPUs this process sees (0 without CUDA)."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


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
    workers split the cores between them instead of fighting over all of them, and the
    visible GPUs: worker i works on GPU i mod #GPUs (``--device cuda`` or ``auto``)."""

    def __init__(self, jobs: int, setup: Callable[[], None] | None = None) -> None:
        self.jobs, self.setup, self.pool = jobs, setup, None
        self.slots: int | None = jobs
        self.queue: deque = deque()  # jobs == 1: run one by one, in order
        self.futures: dict = {}  # the pool's: future -> (job, out_dir)

    def __enter__(self) -> LocalBackend:
        import multiprocessing as mp

        if self.jobs > 1:
            threads = max(1, _cores() // self.jobs)
            ctx = mp.get_context("spawn")
            self.pool = ProcessPoolExecutor(
                self.jobs, mp_context=ctx, initializer=_init_worker,
                initargs=(threads, self.setup, ctx.Value("i", 0), visible_gpus()),
            )  # fmt: skip
        elif self.setup is not None:
            self.setup()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.pool is None:
            return
        if exc[0] is not None:  # interrupted or failed: no worker outlives the bench
            for process in list(getattr(self.pool, "_processes", {}).values()):
                process.terminate()
        self.pool.shutdown(wait=exc[0] is None, cancel_futures=True)

    def submit(self, fn: Callable, job: Any, out_dir: str) -> None:
        """Queue ``fn(job, out_dir)``; jobs start in the order submitted."""
        if self.pool is None:
            self.queue.append((fn, job, out_dir))
        else:
            self.futures[self.pool.submit(fn, job, out_dir)] = (job, out_dir)

    def pending(self) -> int:
        """Jobs submitted and not yet yielded by ``results``."""
        return len(self.queue) + len(self.futures)

    def results(self) -> Iterator[dict[str, Any]]:
        """Each job's result as it finishes, until none is left; jobs submitted while
        iterating are included."""
        while self.queue or self.futures:
            if self.pool is None:
                fn, job, out_dir = self.queue.popleft()
                yield {**fn(job, out_dir), "out": out_dir}
                continue
            finished, _ = wait(self.futures, return_when=FIRST_COMPLETED)
            for fut in finished:
                job, out_dir = self.futures.pop(fut)
                try:
                    yield {**fut.result(), "out": out_dir}
                except Exception as e:  # noqa: BLE001 - a worker died (out of memory?)
                    yield {**_crashed(job, out_dir, e), "out": out_dir}


def _ray_call(fn: Callable, job: Any, out_dir: str, threads: int, setup: Callable | None) -> dict:
    torch.set_num_threads(threads)
    if setup is not None:
        setup()
    return fn(job, out_dir)


GPU_HINT = "1, or a fraction such as 0.25 for four jobs per GPU"


def ray_gpus_per_job(requested: float | None, devices: Iterable[str], gpus_visible: bool) -> float:
    """GPUs each Ray job asks for, given the grids' ``--device`` values.

    Ray hides every GPU from a task that asks for none: with ``--gpus-per-job 0``, a grid
    on ``cuda`` would fail in every job and one on ``auto`` would train on the CPU. So
    ``requested`` None (the default) gives each job one GPU when a grid runs on ``cuda``,
    or on ``auto`` while a GPU is visible (here or in the cluster), else none; an explicit
    0 in those cases, and ``cuda:N`` (Ray assigns the GPU), are refused (BenchError)."""
    devices = [d or "auto" for d in devices]
    cuda = any(d.startswith("cuda") for d in devices)
    auto = "auto" in devices
    for d in devices:
        if d.startswith("cuda:"):
            raise BenchError(
                f"--device {d} with the ray backend: Ray assigns each job its GPU, which the "
                "job sees as cuda:0; use --device cuda"
            )
    if requested is None:
        return 1.0 if cuda or (auto and gpus_visible) else 0.0
    if requested < 0:
        raise BenchError(f"--gpus-per-job must be >= 0, got {requested}")
    if requested == 0 and cuda:
        raise BenchError(
            "--device cuda with --gpus-per-job 0: Ray gives a job that asks for no GPU none "
            f"at all, so every job would fail; set --gpus-per-job ({GPU_HINT})"
        )
    if requested == 0 and auto and gpus_visible:
        raise BenchError(
            "--device auto with --gpus-per-job 0 while a GPU is visible: Ray would hide it "
            f"and every job would train on the CPU; set --gpus-per-job ({GPU_HINT}), or "
            "--device cpu to mean it"
        )
    return float(requested)


class RayBackend:
    """Each job as a Ray task with ``num_cpus``/``num_gpus`` (fractional GPUs share one);
    ``RAY_ADDRESS`` points at a cluster, else Ray starts on this machine. Results are
    written by the jobs themselves, so ``out_dir`` must be shared by all nodes.

    ``gpus_per_job`` None: what the grids' ``devices`` need (:func:`ray_gpus_per_job`),
    checked here against this machine and again against the cluster once Ray is up, both
    before any job starts."""

    def __init__(
        self,
        cpus_per_job: float = 1.0,
        gpus_per_job: float | None = None,
        setup: Callable | None = None,
        devices: Iterable[str] = ("auto",),
    ) -> None:
        import importlib.util

        self.devices, self.requested = tuple(devices), gpus_per_job
        self.gpus = ray_gpus_per_job(gpus_per_job, self.devices, visible_gpus() > 0)
        if importlib.util.find_spec("ray") is None:
            raise BenchError(
                'the ray backend needs Ray: pip install -e ".[ray]" in tarf\'s checkout'
            )
        self.cpus, self.setup, self.started = cpus_per_job, setup, False
        self.slots: int | None = None  # the cluster's room is not known here
        self.refs: dict = {}  # object ref -> (job, out_dir)

    def __enter__(self) -> RayBackend:
        import ray

        if not ray.is_initialized():
            env = {k: v for k, v in os.environ.items() if k.startswith("TARF_")}
            ray.init(address=os.environ.get("RAY_ADDRESS"),
                     runtime_env={"env_vars": env} if env else None)  # fmt: skip
            self.started = True
        self.ray = ray
        try:
            self.gpus = self._cluster_gpus(ray.cluster_resources().get("GPU", 0))
        except BenchError:
            self.__exit__(None, None, None)
            raise
        self.task = ray.remote(num_cpus=self.cpus, num_gpus=self.gpus)(_ray_call)
        return self

    def _cluster_gpus(self, cluster_gpus: float) -> float:
        """GPUs per job once the cluster's GPUs are known (a login node without a GPU may
        drive a cluster with GPUs); jobs asking for GPUs a cluster lacks would wait forever."""
        visible = visible_gpus() > 0 or cluster_gpus > 0
        gpus = ray_gpus_per_job(self.requested, self.devices, visible)
        if gpus > 0 and cluster_gpus == 0:
            raise BenchError(
                f"each job asks for {gpus:g} GPU but the Ray cluster has none, so no job "
                "would ever start; --device cpu, or a cluster with GPUs (RAY_ADDRESS)"
            )
        return gpus

    def __exit__(self, *exc: Any) -> None:
        if self.started:
            self.ray.shutdown()

    def submit(self, fn: Callable, job: Any, out_dir: str) -> None:
        threads = max(1, int(self.cpus))
        self.refs[self.task.remote(fn, job, out_dir, threads, self.setup)] = (job, out_dir)

    def pending(self) -> int:
        return len(self.refs)

    def results(self) -> Iterator[dict[str, Any]]:
        while self.refs:
            ready, _ = self.ray.wait(list(self.refs), num_returns=1)
            job, out_dir = self.refs.pop(ready[0])
            try:
                yield {**self.ray.get(ready[0]), "out": out_dir}
            except Exception as e:  # noqa: BLE001 - the task's worker died
                yield {**_crashed(job, out_dir, e), "out": out_dir}


def _crashed(job: RunJob | ModelJob, out_dir: str, e: BaseException) -> dict[str, Any]:
    write_text(Path(out_dir) / f"{job.name}.error.txt", f"the job's worker died: {e!r}\n")
    return _result(job, "failed", 0.0)
