"""Explorer performance on a generated run of 100,000 images (issue 5's acceptance numbers).

Writes a synthetic run straight through the store's shard writer (a pool of small images and
masks, two methods with 32x32 maps), serves it with the project's own app on a loopback port,
waits until ``salience serve`` has preloaded the run's tables (as it does at start), and
measures with a fresh image cache:

- a grid page: the page query plus 60 thumbnails and 60 overlays, fetched over 6 connections
  as a browser does (target: p95 under 300 ms);
- the confusion matrix (target: under 200 ms, first and repeated request);
- load: 8 concurrent clients, 50 mixed requests each, no errors allowed.

    python benchmarks/explorer.py                 # the full 100,000-image run
    python benchmarks/explorer.py --n 3000 --pages 5   # a smoke run

Reported per grid page: wall clock on the client over loopback (includes the HTTP round trips
and any wait for a CPU on a busy machine), the sum of the app's own ``Server-Timing`` durations,
and the server process's CPU time (user + system), which does not depend on other load.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
from PIL import Image

from salience import __version__
from salience.audit.stats import region_columns, stat_columns
from salience.store import ShardWriter
from salience.store.layout import write_json

REGIONS = ["background", "head", "uniform"]
METHODS = {"gradcam": {}, "integrated_gradients": {"steps": 16}}
MAP = 32
IMAGE = 96


def generate(root: Path, n: int, classes: int = 100, shard: int = 1000, seed: int = 0) -> Path:
    """A complete run of ``n`` images under ``root/run`` (data under ``root/data``)."""
    rng = np.random.default_rng(seed)
    data, run = root / "data", root / "run"
    pool = _image_pool(data, rng, size=min(n, 500))
    names = [f"class_{k:03d}" for k in range(classes)]
    cols = stat_columns(REGIONS)
    meta = ["meta_site"]
    write_json(run / "run.json", _manifest(data, names, n, cols, meta, status="running"))
    writer = ShardWriter(run, meta, cols, pattern=True)
    yy, xx = np.mgrid[0:MAP, 0:MAP] / MAP
    for s, start in enumerate(range(0, n, shard)):
        rows = np.arange(start, min(n, start + shard))
        m = len(rows)
        label = rng.integers(0, classes, m)
        right = rng.random(m) < 0.8
        pred = np.where(right, label, rng.integers(0, classes, m))
        conf = rng.uniform(0.2, 1.0, m)
        pick = rng.integers(0, len(pool), m)
        samples = {
            "sample_id": [f"img_{i:06d}" for i in rows],
            "path": [pool[k] for k in pick],
            "label": [names[k] for k in label],
            "label_index": label.tolist(),
            "pred": [names[k] for k in pred],
            "pred_index": pred.tolist(),
            "confidence": conf.tolist(),
            "correct": (label == pred).tolist(),
            "loss": (-np.log(np.where(label == pred, conf, (1 - conf) / 4))).tolist(),
            "topk_index": [[int(p), int((p + 1) % classes)] for p in pred],
            "topk_prob": [[float(c), float(1 - c)] for c in conf],
            "split": ["test"] * m,
            "mask": [pool[k].replace("img/", "mask/").replace(".jpg", ".png") for k in pick],
            "legend": [json.dumps({"1": "head", "2": "uniform"})] * m,
            "width": [IMAGE] * m,
            "height": [IMAGE] * m,
            "shard": [s] * m,
            "row": list(range(m)),
            "meta_site": [f"site{k % 4}" for k in rows],
        }
        maps, stats = {}, {}
        for method in METHODS:
            cy = np.where(rng.random(m) < 0.5, 0.25, 0.65)[:, None, None]
            blob = np.exp(-((yy - cy) ** 2 + (xx - 0.5) ** 2) / 0.03)
            maps[method] = blob + 0.1 * rng.random((m, MAP, MAP))
            stats[method] = _stats(samples, maps[method], cols, s)
        writer.write_shard(s, samples, stats, maps)
    write_json(run / "run.json", _manifest(data, names, n, cols, meta, status="complete"))
    return run


def _image_pool(data: Path, rng: np.random.Generator, size: int) -> list[str]:
    out = []
    mask = np.zeros((IMAGE, IMAGE), np.uint8)
    mask[10:40, 30:66], mask[40:90, 20:76] = 1, 2
    for k in range(size):
        img = np.empty((IMAGE, IMAGE, 3), np.uint8)
        img[:] = rng.integers(0, 255, 3)
        img[10:40, 30:66] = (230, 190, 160)
        img[40:90, 20:76] = rng.integers(0, 255, 3)
        rel = f"img/{k:04d}.jpg"
        (data / "img").mkdir(parents=True, exist_ok=True)
        (data / "mask").mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(data / rel, quality=90)
        Image.fromarray(mask).save(data / f"mask/{k:04d}.png")
        out.append(rel)
    return out


def _stats(samples: dict[str, Any], maps: np.ndarray, cols: list[str], shard: int) -> dict:
    pos = np.clip(maps, 0, None)
    total = pos.sum(axis=(1, 2))
    head = pos[:, 3:13, 10:22].sum(axis=(1, 2)) / total
    uniform = pos[:, 13:30, 7:25].sum(axis=(1, 2)) / total
    m = len(maps)
    out: dict[str, Any] = {c: np.random.default_rng(shard).random(m).tolist() for c in cols}
    ids = region_columns(REGIONS)
    out[f"share_{ids['head']}"] = head.tolist()
    out[f"share_{ids['uniform']}"] = uniform.tolist()
    out[f"share_{ids['background']}"] = (1 - head - uniform).tolist()
    out.update(sample_id=samples["sample_id"], shard=[shard] * m, row=samples["row"])
    out["si_pattern"] = ["n/a"] * m
    return out


def _manifest(
    data: Path, names: list[str], n: int, cols: list[str], meta: list[str], status: str
) -> dict[str, Any]:
    return {
        "salience": __version__,
        "model": {"spec": "synthetic", "weights": None},
        "dataset": {"source": "generated", "root": str(data), "count": n},
        "class_names": names,
        "regions": REGIONS,
        "region_columns": region_columns(REGIONS),
        "methods": METHODS,
        "map_size": [MAP, MAP],
        "meta_columns": meta,
        "stat_columns": cols,
        "preprocess": {"size": IMAGE, "resize": IMAGE, "mean": [0.5] * 3, "std": [0.5] * 3},
        "status": status,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


class Server:
    """``salience serve`` in a subprocess on a free loopback port (so that the client's
    threads do not share the server's interpreter)."""

    def __init__(self, runs: list[Path]) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        code = "import sys; from salience.cli import main; sys.argv[0] = 'salience'; main()"
        self.cmd = [sys.executable, "-c", code, "serve", *map(str, runs), "--port", str(self.port)]
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(self.url + "/api/health", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the explorer did not start")
            time.sleep(0.2)

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


def server_ms(response: httpx.Response) -> float:
    """The app's own time for a response, from its ``Server-Timing`` header."""
    response.raise_for_status()
    return float(response.headers["server-timing"].split("dur=")[1])


def grid_page(
    client: httpx.Client, pool: ThreadPoolExecutor, run: str, params: dict[str, Any]
) -> tuple[float, float]:
    """What the browser fetches for one page of the grid: (wall ms, summed server ms)."""
    t0 = time.perf_counter()
    res = client.get(f"/api/runs/{run}/samples", params={**params, "limit": 60})
    spent = server_ms(res)
    ids = [s["sample_id"] for s in res.json()["items"]]
    urls = [f"/api/runs/{run}/thumb/{i}?size=192" for i in ids]
    urls += [f"/api/runs/{run}/overlay/{params['method']}/{i}?size=192" for i in ids]
    spent += sum(pool.map(lambda u: server_ms(client.get(u)), urls))
    return (time.perf_counter() - t0) * 1000, spent


def load(url: str, run: str, clients: int, requests: int, classes: list[str]) -> dict:
    """``clients`` threads, each sending ``requests`` mixed requests; errors and latencies."""
    errors: list[str] = []
    lat: list[float] = []
    lock = threading.Lock()

    def client(k: int) -> None:
        rng = random.Random(k)
        with httpx.Client(base_url=url, timeout=30) as c:
            for i in range(requests):
                choice = i % 5
                if choice == 0:
                    path = f"/api/runs/{run}/samples?true={rng.choice(classes)}&limit=60"
                elif choice == 1:
                    path = f"/api/runs/{run}/confusion"
                elif choice == 2:
                    path = f"/api/runs/{run}/overlay/gradcam/img_{rng.randrange(1000):06d}"
                elif choice == 3:
                    path = f"/api/runs/{run}/thumb/img_{rng.randrange(1000):06d}"
                else:
                    path = f"/api/runs/{run}/samples/img_{rng.randrange(1000):06d}"
                t0 = time.perf_counter()
                r = c.get(path)
                ms = (time.perf_counter() - t0) * 1000
                with lock:
                    lat.append(ms)
                    if r.status_code != 200:
                        errors.append(f"{r.status_code} {path}")

    with ThreadPoolExecutor(clients) as ex:
        list(ex.map(client, range(clients)))
    return {"requests": len(lat), "errors": errors[:10], "error_count": len(errors),
            "p50_ms": _pct(lat, 50), "p95_ms": _pct(lat, 95)}  # fmt: skip


def _pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 1) if values else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000, help="images in the generated run")
    ap.add_argument("--classes", type=int, default=100)
    ap.add_argument("--pages", type=int, default=20, help="grid pages to time (cold cache)")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=50, help="requests per client")
    ap.add_argument("--dir", type=Path, default=None, help="keep the run here (default: temp)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = args.dir or Path(tmp)
        run_dir = root / "run"
        t0 = time.perf_counter()
        if not (run_dir / "run.json").exists():
            generate(root, args.n, args.classes)
        gen_s = time.perf_counter() - t0
        result: dict[str, Any] = {"n": args.n, "classes": args.classes, "generate_s": gen_s}
        with Server([run_dir]) as srv, httpx.Client(base_url=srv.url, timeout=120) as client:
            run = "run"
            t0 = time.perf_counter()
            while not client.get("/api/health").json()["preloaded"]:  # salience serve preloads
                if time.perf_counter() - t0 > 300:
                    raise RuntimeError("the explorer did not preload its run within 5 minutes")
                time.sleep(0.2)
            result["preload_s"] = round(time.perf_counter() - t0, 2)
            t0 = time.perf_counter()
            classes = client.get(f"/api/runs/{run}").raise_for_status().json()["class_names"]
            client.get(f"/api/runs/{run}/samples?method=gradcam&limit=1").raise_for_status()
            client.get(f"/api/runs/{run}/thumb/img_000000").raise_for_status()
            result["warmup_s"] = round(time.perf_counter() - t0, 2)
            proc = psutil.Process(srv.proc.pid if srv.proc else 0)
            cm = [server_ms(client.get(f"/api/runs/{run}/confusion")) for _ in range(6)]
            result["confusion_ms"] = {"first": cm[0], "then_max": max(cm[1:])}
            stat = {"stat": "share_head", "method": "gradcam"}
            result["confusion_by_stat_ms"] = server_ms(
                client.get(f"/api/runs/{run}/confusion", params=stat)
            )
            walls, spent, cpu = [], [], []
            with ThreadPoolExecutor(6) as pool:
                for k in range(args.pages):
                    params: dict[str, Any] = {"method": "gradcam", "sort": "confidence"}
                    params["offset"] = 60 * (7 * k + 1)
                    if k % 2:
                        params = {"method": "gradcam", "sort": "share_head", "true": classes[k]}
                    before = proc.cpu_times()
                    wall, server = grid_page(client, pool, run, params)
                    after = proc.cpu_times()
                    walls.append(wall)
                    spent.append(server)
                    cpu.append(1000 * (after.user + after.system - before.user - before.system))
            result["grid_page_wall_ms"] = {"p50": _pct(walls, 50), "p95": _pct(walls, 95)}
            result["grid_page_server_ms_summed"] = {"p50": _pct(spent, 50), "p95": _pct(spent, 95)}
            result["grid_page_server_cpu_ms"] = {"p50": _pct(cpu, 50), "p95": _pct(cpu, 95)}
            result["load"] = load(srv.url, run, args.clients, args.requests, classes)
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
