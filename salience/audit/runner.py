"""The audit: plan a run, check the methods, hold the lock, and have an executor compute it.

The work itself is :class:`salience.audit.session.AuditSession`; the local executor runs one
session over every shard in this process, the Ray executor one per shard as Ray tasks
(:mod:`salience.audit.ray_runner`). Either resumes what the other left.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from salience.audit.decode import exact_frame
from salience.audit.plan import ModelLike, Plan, check_resume, make_plan, now
from salience.audit.ray_runner import RayExecutor
from salience.audit.session import (
    SHARD_MAP_BYTES,
    Executor,
    LocalExecutor,
    Progress,
    update_manifest,
)
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
    remove_tree,
    write_json,
)
from salience.store.lock import RunLock
from salience.store.manifest import MethodKind, read_manifest, write_manifest
from salience.store.run import Run
from salience.store.verify import damaged_shards
from salience.store.writer import discard_shard, write_index


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
    executor: str | Executor = "local",
    ray_address: str | None = None,
) -> dict[str, Any]:
    """Audit ``model`` on ``data`` into the run folder ``out``; returns the summary.

    Rerunning the same call resumes an interrupted run. A shard holds at most ``shard_size``
    images and at most 256 MB of maps (large map sizes get smaller shards). ``ground_truth``
    names the mask regions that count as the object for Shared Interest (default: all
    annotated regions). ``root`` is the data root of a manifest (default: its folder).
    ``executor`` computes the shards: an :class:`Executor`, or its name: ``"local"``
    (:class:`LocalExecutor` with ``workers`` decoding processes, default
    :func:`default_workers`) or ``"ray"`` (:class:`RayExecutor`: one shard per Ray task on
    the cluster at ``ray_address`` or a local one; the run folder must then be on storage
    every node sees).
    """
    chosen = (
        executor_named(executor, workers, ray_address) if isinstance(executor, str) else executor
    )
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
        kinds={n: MethodKind(m.family, m.signed) for n, m in built.items()},
    )
    frame = "preprocess" if exact_frame(model.preprocess) else "whole image"
    plan.manifest.extra["mask_frame"] = frame
    run = Path(out).expanduser()
    with _disk_full_in_one_line(run):
        run.mkdir(parents=True, exist_ok=True)
        with RunLock(run):
            if _start(run, plan):
                discard_damaged(run, plan)
            try:
                chosen.compute(model, plan, run, built, device, progress)
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
            write_index(run)
            update_manifest(run, status="complete", counts=counts, failure=None)
            summary = summarize(Run.open(run))
            write_json(run / SUMMARY, summary)
    return summary


def executor_named(name: str, workers: int | None, ray_address: str | None) -> Executor:
    """``"local"`` or ``"ray"`` -> the executor object (the CLI's ``--executor``)."""
    if name == "local":
        return LocalExecutor(workers)
    if name == "ray":
        return RayExecutor(ray_address)
    raise SalienceError(f"unknown executor {name!r}; use local or ray")


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
        update_manifest(run, status="failed", failure=f"{reason}; rerun the same command to resume")


def discard_damaged(run: Path, plan: Plan) -> None:
    """Before resuming: check every complete shard against its recorded sizes and checksums
    and remove the damaged ones, which are then computed again like any missing shard."""
    methods = list(plan.manifest.methods)
    for shard in damaged_shards(run, complete_shards(run), methods):
        discard_shard(run, shard, methods)


def _start(run: Path, plan: Plan) -> bool:
    """Write the manifest as ``running``; True when resuming a run already in the folder."""
    resumed = (run / MANIFEST).exists()
    if resumed:
        stored = read_manifest(run)
        check_resume(stored, plan)
        created = stored.created or now()
        manifest = replace(plan.manifest, created=created, status="running", updated=now())
    else:
        others = [p.name for p in run.iterdir() if p.name != ".lock"]
        if others:
            raise SalienceError(
                f"{run} is not empty and holds no run ({', '.join(sorted(others)[:3])}...); "
                "choose a new or empty --out folder"
            )
        manifest = plan.manifest
    write_manifest(run, manifest)
    return resumed
