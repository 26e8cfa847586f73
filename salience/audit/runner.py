"""The local audit runner: read -> decode -> predict/attribute -> statistics -> write.

Decoding runs in DataLoader workers, the model in the calling thread, statistics and writes
in a writer thread, so the three overlap. Shards are independent ranges of the dataset; a
rerun of the same command skips the shards on disk and the batches saved under ``.partial/``,
so a run killed at any moment finishes identical to an uninterrupted one. The same session
runs one shard per task under :mod:`salience.audit.ray_runner`, writing the same layout.
"""

from __future__ import annotations

import contextlib
import errno
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from salience.audit.assemble import Columns, Computed, assemble
from salience.audit.attribute import attribute_each
from salience.audit.decode import DecodeStage, collate, exact_frame
from salience.audit.failures import FailureTally
from salience.audit.lifeline import die_with_parent
from salience.audit.plan import Batch, ModelLike, Plan, check_resume, make_plan, now
from salience.audit.summary import summarize
from salience.data import Dataset, read_dataset
from salience.device import resolve_device
from salience.errors import SalienceError
from salience.methods import Attribution, from_spec
from salience.methods.preflight import preflight
from salience.store.layout import (
    MANIFEST,
    PARTIAL,
    SUMMARY,
    complete_shards,
    read_json,
    remove_tree,
    write_json,
)
from salience.store.lock import RunLock
from salience.store.run import Run
from salience.store.verify import damaged_shards
from salience.store.writer import ShardWriter

SHARD_MAP_BYTES = 256 * 2**20  # a shard's maps are held in memory until it is written
Saved = tuple[Columns, dict[str, Columns], dict[str, np.ndarray]]


@dataclass(frozen=True)
class Progress:
    """Reported after every batch: images done (resumed ones included) out of ``total``."""

    done: int
    total: int
    computed: int  # images computed by this process
    elapsed: float  # seconds since this process started computing


def parse_map_size(value: int | str | Sequence[int]) -> tuple[int, int]:
    """``64``, ``"64"``, ``"48x64"`` (height x width) or ``(48, 64)`` -> ``(h, w)``."""
    if isinstance(value, int):
        return value, value
    if isinstance(value, str):
        parts = value.lower().replace(" ", "").split("x")
        if len(parts) in (1, 2) and all(p.isdigit() for p in parts):
            return int(parts[0]), int(parts[-1])
        raise SalienceError(f"bad map size {value!r}; write S or HxW, e.g. 64 or 48x64")
    h, w = value
    return int(h), int(w)


def default_workers(device: torch.device) -> int:
    """Decoding processes for a local audit. On a GPU: up to 4, leaving a core for the model.
    On the CPU the model already uses every core and a decoding process takes turns with it
    (measured on 2 cores, ResNet-18: 0.84 of the engine's speed with one worker, 0.93 with
    decoding in the main process), so workers start at 8 cores, one per 4 cores, at most 4."""
    cpus = os.cpu_count() or 1
    if device.type == "cpu":
        return min(4, cpus // 4) if cpus >= 8 else 0
    return min(4, max(0, cpus - 1))


def build_methods(
    specs: Sequence[str], cam_layer: str | None
) -> tuple[dict[str, Attribution], dict[str, dict[str, Any]]]:
    """Method specs -> instances and their recorded parameters; CAMs get the model's layer."""
    methods: dict[str, Attribution] = {}
    for spec in specs:
        method = from_spec(spec, cam_layer)
        if method.name in methods:
            raise SalienceError(f"method {method.name} given twice; give each method once")
        methods[method.name] = method
    return methods, {n: m.params() for n, m in methods.items()}


def audit(
    model: ModelLike,
    data: str | os.PathLike[str] | Dataset,
    out: str | os.PathLike[str],
    methods: Sequence[str] = ("gradcam",),
    *,
    batch_size: int = 32,
    device: str | torch.device = "auto",
    workers: int | None = None,
    map_size: int | str | Sequence[int] = 64,
    shard_size: int = 1024,
    class_names: Sequence[str] | None = None,
    top_k: int = 5,
    ground_truth: Sequence[str] | None = None,
    progress: Callable[[Progress], None] | None = None,
    root: str | os.PathLike[str] | None = None,
    executor: str = "local",
    ray_address: str | None = None,
) -> dict[str, Any]:
    """Audit ``model`` on ``data`` into the run folder ``out``; returns the summary.

    Rerunning the same call resumes an interrupted run. A shard holds at most ``shard_size``
    images and at most 256 MB of maps (large map sizes get smaller shards). ``ground_truth``
    names the mask regions that count as the object for Shared Interest (default: all
    annotated regions). ``root`` is the data root of a manifest (default: its folder).
    ``workers`` decoding processes default to :func:`default_workers`.
    ``executor="ray"`` computes the shards as Ray tasks (one shard per task, on the cluster at
    ``ray_address`` or a local one); the run folder must then be on storage every node sees.
    """
    if executor not in ("local", "ray"):
        raise SalienceError(f"unknown executor {executor!r}; use local or ray")
    dataset = (
        data
        if isinstance(data, Dataset)
        else read_dataset(Path(data), None if root is None else Path(root))
    )
    dev = resolve_device(device)
    built, params = build_methods(list(methods), model.cam_layer)
    check_methods(model, built, dev)
    size = parse_map_size(map_size)
    row_bytes = 2 * size[0] * size[1] * max(1, len(built))
    plan = make_plan(
        model,
        dataset,
        params,
        class_names=class_names,
        map_size=size,
        shard_size=max(1, min(shard_size, SHARD_MAP_BYTES // row_bytes)),
        batch_size=batch_size,
        top_k=top_k,
        ground_truth=ground_truth,
        device=dev,
    )
    plan.manifest["mask_frame"] = "preprocess" if exact_frame(model.preprocess) else "whole image"
    run = Path(out).expanduser()
    with _disk_full_in_one_line(run):
        run.mkdir(parents=True, exist_ok=True)
        with RunLock(run):
            if _start(run, plan):
                discard_damaged(run, plan)
            try:
                if executor == "ray":
                    from salience.audit.ray_runner import run_on_ray

                    run_on_ray(model, plan, run, built, device, progress, address=ray_address)
                else:
                    n = default_workers(dev) if workers is None else workers
                    AuditSession(model, plan, run, built, dev, n, progress).run()
                remove_tree(run / PARTIAL)  # every shard is written: no batch is needed again
            except BaseException as exc:
                _record_failure(run, exc)
                raise
            counts = {
                "images": len(dataset.items),
                "done": len(dataset.items),
                "shards": plan.shards,
                "shards_done": plan.shards,
            }
            ShardWriter(
                run, plan.meta_columns, plan.manifest["stat_columns"], bool(plan.regions)
            ).write_index()
            _update(run, status="complete", counts=counts, failure=None)
            summary = summarize(Run.open(run))
            write_json(run / SUMMARY, summary)
    return summary


def check_methods(model: ModelLike, methods: dict[str, Attribution], device: torch.device) -> None:
    """Every method once on a noise image through the model's preprocessing (see
    :func:`salience.methods.preflight.preflight`), before any image is read."""
    rng = np.random.default_rng(0)
    side = int(getattr(model.preprocess, "resize", None) or 64)
    noise = Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8))
    x = model.preprocess(noise).unsqueeze(0)
    module = model.module.to(device)
    dtype = next((p.dtype for p in module.parameters()), x.dtype)
    preflight(module, methods, x.to(device, dtype if dtype.is_floating_point else x.dtype))


def _disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


@contextmanager
def _disk_full_in_one_line(run: Path) -> Iterator[None]:
    """A full disk (or quota) anywhere in the audit -> one line; the run stays resumable."""
    try:
        yield
    except OSError as exc:
        if _disk_full(exc):
            raise SalienceError(
                f"disk full writing {run}; free space and rerun to resume"
            ) from None
        raise


def _record_failure(run: Path, exc: BaseException) -> None:
    """Mark the run failed with the reason; a disk too full to say so leaves it ``running``
    (resumable either way)."""
    if isinstance(exc, KeyboardInterrupt):
        reason = "interrupted"
    elif _disk_full(exc):
        reason = "disk full"
    else:
        reason = str(exc)
    with contextlib.suppress(OSError):
        _update(run, status="failed", failure=f"{reason}; rerun the same command to resume")


def discard_damaged(run: Path, plan: Plan) -> None:
    """Before resuming: check every complete shard against its recorded sizes and checksums
    and remove the damaged ones, which are then computed again like any missing shard."""
    methods = list(plan.manifest["methods"])
    writer = ShardWriter(run, plan.meta_columns, plan.manifest["stat_columns"], bool(plan.regions))
    for shard in damaged_shards(run, complete_shards(run), methods):
        writer.discard_shard(shard, methods)


def _start(run: Path, plan: Plan) -> bool:
    """Write the manifest as ``running``; True when resuming a run already in the folder."""
    path = run / MANIFEST
    resumed = path.exists()
    if resumed:
        stored = read_json(path)
        check_resume(stored, plan)
        manifest = {
            **plan.manifest,
            "created": stored.get("created", now()),
            "status": "running",
            "updated": now(),
        }
    else:
        others = [p.name for p in run.iterdir() if p.name != ".lock"]
        if others:
            raise SalienceError(
                f"{run} is not empty and holds no run ({', '.join(sorted(others)[:3])}...); "
                "choose a new or empty --out folder"
            )
        manifest = plan.manifest
    write_json(path, manifest)
    return resumed


def _update(run: Path, **fields: Any) -> None:
    manifest = read_json(run / MANIFEST)
    manifest.update(fields, updated=now())
    write_json(run / MANIFEST, manifest)


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
            run, plan.meta_columns, plan.manifest["stat_columns"], pattern=bool(plan.regions)
        )
        self.buffers: dict[int, dict[tuple[int, int], Saved]] = {}
        self.queue: queue.Queue[Computed | None] = queue.Queue(maxsize=4)
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
            tuple(plan.manifest["map_size"]),
            plan.regions,
        )  # type: ignore[arg-type]
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
        held: list[Computed] = []  # see salience.audit.failures
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
    ) -> Computed:
        h, w = self.plan.manifest["map_size"]
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
                    f"classes ({self.plan.manifest['class_source']}); pass --classes FILE "
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
        return Computed(
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

    def _put(self, item: Computed | None) -> None:
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
    _update(
        run,
        counts={"images": len(plan.dataset.items), "shards": plan.shards, "shards_done": shards},
    )
