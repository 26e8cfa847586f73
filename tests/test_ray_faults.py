"""The Ray executor survives a lost node (shard tasks are retried) and fails fast on a wrong
address."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from helpers.audit_helpers import TinyModel, TinyNet, importable_by_ray_workers, make_folder
from helpers.waiting import wait_until
from test_audit_ray import assert_same_run

from salience.audit import audit
from salience.audit.ray_runner import SHARD_RETRIES, shard_task
from salience.errors import SalienceError
from salience.store import Run
from salience.store.layout import PARTIAL

ray = pytest.importorskip("ray")

METHODS = ["gradcam", "integrated_gradients:steps=8"]
OPTIONS = {"batch_size": 3, "shard_size": 6, "map_size": 8, "device": "cpu"}


def test_shard_tasks_are_retried_when_their_worker_dies() -> None:
    options = shard_task(ray, want_gpu=False)._default_options
    assert options["max_retries"] == SHARD_RETRIES >= 1
    assert options["retry_exceptions"] is False  # a task's own error is not retried
    assert options["num_cpus"] == 1 and options["num_gpus"] == 0
    assert shard_task(ray, want_gpu=True)._default_options["num_gpus"] == 1


@pytest.mark.parametrize("address", ["127.0.0.1:1", "ray://127.0.0.1:1", "nosuch.invalid:6379"])
def test_a_wrong_address_fails_within_seconds(tmp_path: Path, address: str) -> None:
    data = make_folder(tmp_path / "data", per_class=1, masks=False)
    t0 = time.perf_counter()
    with pytest.raises(SalienceError, match=f"could not reach Ray at {address} .*--ray-address"):
        audit(TinyModel(), data, tmp_path / "run", ["gradcam"], executor="ray", ray_address=address)
    assert time.perf_counter() - t0 < 15
    assert not ray.is_initialized()


@pytest.mark.slow
def test_a_node_lost_mid_run_does_not_fail_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ray.cluster_utils import Cluster

    importable_by_ray_workers(monkeypatch)
    data = make_folder(tmp_path / "data", per_class=8)  # 24 images: 4 shards
    options = {**OPTIONS, "batch_size": 2}  # 3 batches per shard
    audit(TinyModel(), data, tmp_path / "local", METHODS, **options)  # type: ignore[arg-type]
    try:
        cluster = Cluster(
            initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False}
        )
        worker = cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
    except Exception as exc:
        pytest.skip(f"no local two-node Ray cluster here: {exc}")
    out, killed = tmp_path / "ray", threading.Event()
    missed: list[str] = []  # why the node was not removed

    def kill_worker_node_mid_shard() -> None:
        """Once two shards are half done (one per node: a CPU each), the worker node goes."""
        try:
            wait_until(
                lambda: len(list(out.glob(f"{PARTIAL}/part-*/batch-*"))) >= 2,
                120,
                "two batches in the partial folder",
            )
        except AssertionError as exc:
            missed.append(str(exc))
            return
        cluster.remove_node(worker, allow_graceful=False)
        killed.set()

    killer = threading.Thread(target=kill_worker_node_mid_shard, daemon=True)
    killer.start()
    try:
        audit(
            TinyModel(module=TinyNet(delay=0.3)),
            data,
            out,
            METHODS,
            executor="ray",
            ray_address=cluster.address,
            **options,  # type: ignore[arg-type]
        )
    finally:
        killer.join()
        cluster.shutdown()
    assert killed.is_set(), missed
    assert_same_run(Run.open(tmp_path / "ray"), Run.open(tmp_path / "local"))
    Run.open(tmp_path / "ray").verify()
