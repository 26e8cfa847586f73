"""Audit shards as Ray tasks: the local runner's session, one shard per task.

The driver plans the run, holds the writer lock, and records progress in ``run.json``; every
task gets the model, the plan and the methods once through Ray's object store, computes its
shard with the same session as the local runner and writes it with the same atomic files. A
run is therefore identical whichever executor made it, and either one resumes it.

The run folder and the images must be on storage every node sees (NFS, a mounted bucket), and
the model's code must be importable on every node: workers unpickle the model by importing
its module (the code of a ``FILE.py:factory`` model is sent along). The cluster is the one at
``address`` (or ``RAY_ADDRESS``), else a local one started for the run and stopped after it.

Shards are idempotent (every file is written atomically under its final name, and a retried
shard reuses the batches its lost attempt saved), so a task whose worker or node dies is
retried by Ray (:data:`SHARD_RETRIES` times); exceptions raised by the task itself are not
retried. An address that does not answer fails within :data:`CONNECT_TIMEOUT` seconds instead
of Ray's own minute-long wait.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from salience.audit.plan import ModelLike, Plan
from salience.audit.session import AuditSession, Progress, record_shards
from salience.device import resolve_device
from salience.errors import SalienceError
from salience.methods import Attribution
from salience.models.sources import FILE_MODULE_PREFIX
from salience.store.layout import complete_shards

SHARD_RETRIES = 3  # attempts after the first, for a worker or node lost mid-shard
CONNECT_TIMEOUT = 5.0  # seconds


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise SalienceError(
            "the ray executor needs Ray; install it with `pip install 'salience[ray]'`"
        ) from None
    return ray


def _audit_shard(
    model: ModelLike,
    plan: Plan,
    run: str,
    methods: dict[str, Attribution],
    device: str,
    shard: int,
) -> int:
    """One task: compute and write ``shard``; returns its number of images."""
    import ray

    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
    torch.set_num_threads(max(1, int(cpus)))
    session = AuditSession(
        model,
        plan,
        Path(run),
        methods,
        resolve_device(device),
        workers=0,
        progress=None,
        shards=[shard],
        record=False,
    )
    session.run()
    return len(plan.shard_items(shard))


def check_reachable(address: str | None, timeout: float = CONNECT_TIMEOUT) -> None:
    """Fail fast, with one line, when a ``HOST:PORT`` (or ``ray://HOST:PORT``) cluster address
    does not accept connections; ``auto``, ``local`` and no address are left to Ray."""
    address = address or os.environ.get("RAY_ADDRESS")
    if not address or address in ("auto", "local"):
        return
    host, sep, port = address.split("://", 1)[-1].rstrip("/").rpartition(":")
    if not sep or not port.isdigit() or not host:
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise SalienceError(
            f"could not reach Ray at {address} ({reason}); check --ray-address"
        ) from None


def shard_task(ray: Any, want_gpu: bool) -> Any:
    """The remote shard function: one CPU (and a GPU if wanted), retried if its worker dies."""
    return ray.remote(
        num_cpus=1,
        num_gpus=1 if want_gpu else 0,
        max_retries=SHARD_RETRIES,
        retry_exceptions=False,
    )(_audit_shard)


def run_on_ray(
    model: ModelLike,
    plan: Plan,
    run: Path,
    methods: dict[str, Attribution],
    device: str | torch.device,
    progress: Callable[[Progress], None] | None,
    *,
    address: str | None = None,
) -> None:
    """Compute every shard of ``plan`` not yet on disk as a Ray task, each on one CPU (plus
    one GPU when the device is CUDA, or ``auto`` on a cluster with GPUs)."""
    ray = _ray()
    started = not ray.is_initialized()
    if started:
        check_reachable(address)
        try:
            ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING)
        except (OSError, RuntimeError, ValueError) as exc:
            where = address or "a local cluster"
            raise SalienceError(
                f"could not start or reach Ray at {where} ({exc}); check --ray-address"
            ) from None
    pending: dict[Any, int] = {}
    try:
        todo = sorted(set(range(plan.shards)) - set(complete_shards(run)))
        total = len(plan.dataset.items)
        done = total - sum(len(plan.shard_items(s)) for s in todo)
        if progress is not None:
            progress(Progress(done, total, 0, 0.0))
        if not todo:
            return
        gpus = ray.cluster_resources().get("GPU", 0) > 0
        want_gpu = str(device).startswith("cuda") or (str(device) == "auto" and gpus)
        for name, module in list(sys.modules.items()):
            if name.startswith(FILE_MODULE_PREFIX):  # FILE.py:factory models: ship their code
                ray.cloudpickle.register_pickle_by_value(module)
        try:
            shared = [ray.put(model), ray.put(plan), ray.put(methods)]
        except Exception as exc:  # pickling errors come in many types
            raise SalienceError(
                f"the model cannot be sent to Ray workers ({exc}); use --executor local"
            ) from None
        task = shard_task(ray, want_gpu)
        for shard in todo:
            ref = task.remote(shared[0], shared[1], str(run), shared[2], str(device), shard)
            pending[ref] = shard
        t0, computed = time.perf_counter(), 0
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                del pending[ref]
                n = ray.get(ref)  # a task's exception is raised here, as its own type
                done, computed = done + n, computed + n
                record_shards(run, plan)
                if progress is not None:
                    progress(Progress(done, total, computed, time.perf_counter() - t0))
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        if started:
            ray.shutdown()


@dataclass(frozen=True)
class RayExecutor:
    """The shards as Ray tasks on the cluster at ``address`` (None: ``RAY_ADDRESS`` or a
    local cluster started for the run); see :func:`run_on_ray`."""

    address: str | None = None

    def compute(
        self,
        model: ModelLike,
        plan: Plan,
        run: Path,
        methods: dict[str, Attribution],
        device: str | torch.device,
        progress: Callable[[Progress], None] | None,
    ) -> None:
        run_on_ray(model, plan, run, methods, device, progress, address=self.address)
