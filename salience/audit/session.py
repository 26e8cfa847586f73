"""One process's share of an audit: decode -> predict/attribute -> statistics -> write.

Decoding runs in DataLoader workers, the model in the calling thread, statistics and writes
in a writer thread, so the three overlap. Shards are independent ranges of the dataset; a
session skips the shards on disk and the batches saved under ``.partial/``, so a run killed at
any moment finishes identical to an uninterrupted one. The local executor runs one session
over every shard (:func:`salience.audit.runner.audit`); the Ray executor runs one per shard
(:mod:`salience.audit.ray_runner`).
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader

from salience.audit.assemble import BatchResult, BatchTables, assemble
from salience.audit.attribute import attribute_each
from salience.audit.decode import DecodeStage, collate
from salience.audit.failures import FailureTally
from salience.audit.lifeline import die_with_parent
from salience.audit.plan import Batch, ModelLike, Plan, now
from salience.device import resolve_device
from salience.errors import SalienceError
from salience.methods import Attribution
from salience.store.layout import (
    complete_shards,
)
from salience.store.manifest import read_manifest, write_manifest
from salience.store.writer import ShardWriter

SHARD_MAP_BYTES = 256 * 2**20  # a shard's maps are held in memory until it is written


@dataclass(frozen=True)
class Progress:
    """Reported after every batch: images done (resumed ones included) out of ``total``."""

    done: int
    total: int
    computed: int  # images computed by this process
    elapsed: float  # seconds since this process started computing


class Executor(Protocol):
    """Computes every shard of a planned run not yet on disk (the runner holds the lock)."""

    def compute(
        self,
        model: ModelLike,
        plan: Plan,
        run: Path,
        methods: dict[str, Attribution],
        device: str | torch.device,
        progress: Callable[[Progress], None] | None,
    ) -> None: ...


@dataclass(frozen=True)
class LocalExecutor:
    """One :class:`AuditSession` over every shard in this process, with ``workers`` decoding
    processes (None: :func:`default_workers`)."""

    workers: int | None = None

    def compute(
        self,
        model: ModelLike,
        plan: Plan,
        run: Path,
        methods: dict[str, Attribution],
        device: str | torch.device,
        progress: Callable[[Progress], None] | None,
    ) -> None:
        dev = resolve_device(device)
        n = default_workers(dev) if self.workers is None else self.workers
        AuditSession(model, plan, run, methods, dev, n, progress).run()


def default_workers(device: torch.device) -> int:
    """Decoding processes for a local audit. On a GPU: up to 4, leaving a core for the model.
    On the CPU the model already uses every core and a decoding process takes turns with it,
    so workers start at 8 cores, one per 4 cores, at most 4 (benchmarks/audit.py measures
    the trade-off)."""
    cpus = os.cpu_count() or 1
    if device.type == "cpu":
        return min(4, cpus // 4) if cpus >= 8 else 0
    return min(4, max(0, cpus - 1))


def update_manifest(run: Path, **changes: Any) -> None:
    """Set ``changes`` in ``run.json`` (atomically), stamping the update time; a key the
    manifest does not name (``failure``) goes to its extra keys."""
    manifest = read_manifest(run)
    named = {f.name for f in fields(manifest)}
    extra = {k: v for k, v in changes.items() if k not in named}
    known = {k: v for k, v in changes.items() if k in named}
    write_manifest(
        run, replace(manifest, **known, extra={**manifest.extra, **extra}, updated=now())
    )


class AuditSession:
    """One process's work on a run: what is left, computed and written."""

    def __init__(
        self,
        model: ModelLike,
        plan: Plan,
        run: Path,
        methods: dict[str, Attribution],
        device: torch.device,
        workers: int,
        progress: Callable[[Progress], None] | None,
        shards: Sequence[int] | None = None,
        record: bool = True,
    ) -> None:
        """``shards``: the shards this session computes (default: all); ``record``: update
        ``run.json`` as shards complete (off when several processes share the run)."""
        self.model, self.plan, self.run_dir, self.methods = model, plan, run, methods
        self.device, self.workers, self.progress = device, workers, progress
        self.shards = range(plan.shards) if shards is None else shards
        self.record = record
        self.writer = ShardWriter(
            run, plan.meta_columns, plan.manifest.stat_columns, pattern=bool(plan.regions)
        )
        self.buffers: dict[int, dict[tuple[int, int], BatchTables]] = {}
        self.queue: queue.Queue[BatchResult | None] = queue.Queue(maxsize=4)
        self.failure: BaseException | None = None
        self.tally = FailureTally(methods)

    def run(self) -> None:
        plan = self.plan
        wanted = set(self.shards)
        done = set(complete_shards(self.run_dir)) & wanted
        todo: list[Batch] = []
        finished = sum(len(plan.shard_items(s)) for s in done)
        for shard in sorted(wanted - done):
            planned = {(b.start, b.stop) for b in plan.batches(shard)}
            saved = {k: v for k, v in self.writer.load_batches(shard).items() if k in planned}
            self.buffers[shard] = saved
            finished += sum(b - a for a, b in saved)
            todo += [b for b in plan.batches(shard) if (b.start, b.stop) not in saved]
            self._maybe_write(shard)
        self.total = sum(len(plan.shard_items(s)) for s in wanted)
        self.finished, self.computed, self.t0 = finished, 0, time.perf_counter()
        if todo:
            self._compute(todo)

    def _compute(self, todo: list[Batch]) -> None:
        plan = self.plan
        stage = DecodeStage(
            plan.dataset.items,
            plan.dataset.root,
            self.model.preprocess,
            (plan.manifest.map_size[0], plan.manifest.map_size[1]),
            plan.regions,
        )
        cuda = self.device.type == "cuda"
        loader = DataLoader(
            stage,
            batch_sampler=[list(b.positions(plan.shard_size)) for b in todo],
            collate_fn=collate,
            num_workers=self.workers,
            pin_memory=cuda,
            prefetch_factor=4 if self.workers else None,
            worker_init_fn=partial(die_with_parent, os.getpid()) if self.workers else None,
        )
        batches = iter(loader)  # workers fork here, before the writer thread starts
        thread = threading.Thread(target=self._write_loop, name="salience-writer", daemon=True)
        thread.start()
        module = self.model.module.to(self.device)
        held: list[BatchResult] = []  # see salience.audit.failures
        try:
            for batch, decoded in zip(todo, batches, strict=True):
                held.append(self._model_stage(module, batch, decoded, cuda))
                self.tally.check()
                if self.tally.proven:
                    while held:
                        self._put(held.pop(0))
                self.finished += len(decoded)
                self.computed += len(decoded)
                if self.progress is not None:
                    elapsed = time.perf_counter() - self.t0
                    self.progress(Progress(self.finished, self.total, self.computed, elapsed))
            while held:  # nothing proved the model works, nor failed often enough to stop
                self._put(held.pop(0))
        finally:
            self._put(None)
            thread.join()
            del batches
        if self.failure is not None:
            raise self.failure

    def _model_stage(
        self, module: torch.nn.Module, batch: Batch, decoded: list[Any], cuda: bool
    ) -> BatchResult:
        h, w = self.plan.manifest.map_size
        k = len(self.plan.class_names)
        reached = [i for i, d in enumerate(decoded) if d.x is not None]
        logits_parts: dict[int, np.ndarray] = {}
        map_parts: dict[str, dict[int, np.ndarray]] = {m: {} for m in self.methods}
        errors: dict[str, dict[int, str]] = {m: {} for m in self.methods}
        failed: dict[int, str] = {}
        shapes: dict[tuple[int, ...], list[int]] = {}
        for i in reached:
            shapes.setdefault(tuple(decoded[i].x.shape), []).append(i)
        for rows in shapes.values():  # inputs of different sizes are run separately
            x = torch.stack([decoded[i].x for i in rows])
            x = (x.pin_memory() if cuda else x).to(self.device, non_blocking=cuda)
            result = attribute_each(module, x, self.methods, (h, w))
            if len(result.model_errors) < len(rows) and result.logits.shape[1] != k:
                raise SalienceError(
                    f"the model has {result.logits.shape[1]} outputs but the run has {k} "
                    f"classes ({self.plan.manifest.class_source}); pass --classes FILE "
                    "with one name per output"
                )
            logits = result.logits.cpu().numpy()
            maps = {name: m.cpu().numpy() for name, m in result.maps.items()}
            for j, i in enumerate(rows):
                if j in result.model_errors:
                    failed[i] = result.model_errors[j]
                    continue
                logits_parts[i] = logits[j]
                for name, arr in maps.items():
                    map_parts[name][i] = arr[j]
                    if j in result.errors[name]:
                        errors[name][i] = result.errors[name][j]
        self.tally.add_batch(len(reached), failed, errors)
        for i, reason in failed.items():
            decoded[i].error = reason  # no prediction: recorded like an unreadable image
        for d in decoded:
            d.x = None  # free the input tensors before queueing
        ok = [i for i in reached if i not in failed]
        return BatchResult(
            batch=batch,
            decoded=decoded,
            ok=ok,
            logits=np.stack([logits_parts[i] for i in ok]) if ok else np.zeros((0, k)),
            maps={
                m: np.stack([p[i] for i in ok]) if ok else np.zeros((0, h, w), np.float32)
                for m, p in map_parts.items()
            },
            method_errors=errors,
        )

    def _put(self, item: BatchResult | None) -> None:
        while True:
            if self.failure is not None and item is not None:
                raise self.failure
            try:
                self.queue.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def _write_loop(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            if self.failure is not None:
                continue
            try:
                samples, stats, maps = assemble(self.plan, item)
                b = item.batch
                self.writer.save_batch(b.shard, b.start, b.stop, samples, stats, maps)
                self.buffers.setdefault(b.shard, {})[(b.start, b.stop)] = (samples, stats, maps)
                self._maybe_write(b.shard)
            except BaseException as exc:
                self.failure = exc

    def _maybe_write(self, shard: int) -> None:
        """Write ``shard`` once every one of its batches is computed."""
        saved = self.buffers.get(shard, {})
        keys = [(b.start, b.stop) for b in self.plan.batches(shard)]
        if any(k not in saved for k in keys):
            return
        parts = [saved[k] for k in keys]
        samples = {c: [v for p in parts for v in p[0][c]] for c in parts[0][0]}
        stats = {
            m: {c: [v for p in parts for v in p[1][m][c]] for c in parts[0][1][m]}
            for m in parts[0][1]
        }
        maps = {m: np.concatenate([p[2][m] for p in parts]) for m in parts[0][2]}
        self.writer.write_shard(shard, samples, stats, maps)
        del self.buffers[shard]
        if self.record:
            record_shards(self.run_dir, self.plan)


def record_shards(run: Path, plan: Plan) -> None:
    """Write the number of complete shards (counted on disk) into ``run.json``."""
    shards = len(set(complete_shards(run)) & set(range(plan.shards)))
    update_manifest(
        run,
        counts={"images": len(plan.dataset.items), "shards": plan.shards, "shards_done": shards},
    )
