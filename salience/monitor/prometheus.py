"""The latest window's drift scores and alert state in the Prometheus text format.

A collector reads ``monitor.json`` at every scrape, so a listener started before the windows
are processed reports each new window as soon as it is recorded. The listener binds the
loopback interface unless an address says otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from salience.errors import SalienceError
from salience.monitor.layout import SUMMARY

INSTALL = "Prometheus metrics need prometheus-client: pip install 'salience[monitor]'"
DEFAULT_HOST = "127.0.0.1"


def parse_address(text: str) -> tuple[str, int]:
    """``":9108"`` -> ``("127.0.0.1", 9108)``; ``"0.0.0.0:9108"`` binds every interface."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise SalienceError(f"bad --prometheus address {text!r}; write :PORT or HOST:PORT")
    return host.strip("[]") or DEFAULT_HOST, int(port)


def _load(folder: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads((folder / SUMMARY).read_text()))
    except (OSError, ValueError):
        return None


def collector(folder: Path) -> Any:
    """A ``prometheus_client`` collector over the monitor folder ``folder``."""
    try:
        from prometheus_client.core import GaugeMetricFamily
    except ImportError:
        raise SalienceError(INSTALL) from None

    class MonitorCollector:
        def collect(self) -> Iterator[Any]:
            summary = _load(folder)
            name = folder.name
            up = GaugeMetricFamily(
                "salience_monitor_up", "1 when monitor.json is readable", labels=["monitor"]
            )
            up.add_metric([name], 0.0 if summary is None else 1.0)
            yield up
            if summary is None or not summary.get("windows"):
                return
            windows = summary["windows"]
            last = windows[-1]
            g = GaugeMetricFamily
            index = g(
                "salience_monitor_window_index", "Index of the latest window", labels=["monitor"]
            )
            index.add_metric([name], float(last["index"]))
            images = g(
                "salience_monitor_window_images", "Images in the latest window", labels=["monitor"]
            )
            images.add_metric([name], float(last["n"]))
            p = g(
                "salience_monitor_p_value",
                "p-value of each test on the latest window",
                labels=["monitor", "test"],
            )
            stat = g(
                "salience_monitor_statistic",
                "Test statistic on the latest window",
                labels=["monitor", "test"],
            )
            alert = g(
                "salience_monitor_alert",
                "1 when the detector fired on the latest window",
                labels=["monitor", "detector"],
            )
            p.add_metric([name, "saliency"], float(last["p_value"]))
            p.add_metric([name, "bbsd"], float(last["bbsd"]["p_value"]))
            stat.add_metric([name, "bbsd"], float(last["bbsd"]["statistic"]))
            for test, t in last["tests"].items():
                p.add_metric([name, test], float(t["p_value"]))
                stat.add_metric([name, test], float(t["statistic"]))
            alert.add_metric([name, "saliency"], float(bool(last["alert"])))
            alert.add_metric([name, "bbsd"], float(bool(last["bbsd"]["alert"])))
            total = g("salience_monitor_windows", "Windows recorded", labels=["monitor"])
            total.add_metric([name], float(len(windows)))
            alerts = g("salience_monitor_alerts", "Alerts over all windows", labels=["monitor"])
            alerts.add_metric([name], float(len(summary.get("alerts", []))))
            yield from (index, images, p, stat, alert, total, alerts)
            far = summary.get("false_alarm_rate") or {}
            if far.get("measured") is not None:
                rate = g(
                    "salience_monitor_false_alarm_rate",
                    "Set and measured false-alarm rate",
                    labels=["monitor", "kind"],
                )
                rate.add_metric([name, "target"], float(far["target"]))
                rate.add_metric([name, "measured"], float(far["measured"]))
                yield rate

    return MonitorCollector()


def registry(folders: list[Path]) -> Any:
    try:
        from prometheus_client import CollectorRegistry
    except ImportError:
        raise SalienceError(INSTALL) from None
    reg = CollectorRegistry()
    for folder in folders:
        reg.register(collector(Path(folder)))
    return reg


def metrics_text(folders: list[Path]) -> bytes:
    """The metrics of the monitor folders as Prometheus text (for a server route)."""
    from prometheus_client import generate_latest

    return bytes(generate_latest(registry(folders)))


def serve_metrics(folders: list[Path], address: str = ":9108") -> tuple[Any, Any]:
    """Start the listener in a daemon thread; returns ``(server, thread)`` (call
    ``server.shutdown()`` to stop). Port 0 picks a free port (``server.server_port``)."""
    host, port = parse_address(address)
    reg = registry(folders)
    from prometheus_client import start_http_server

    try:
        return start_http_server(port, addr=host, registry=reg)  # type: ignore[no-any-return]
    except OSError as exc:
        raise SalienceError(f"cannot listen on {host}:{port} ({exc.strerror})") from None
