"""``spinewatch ingest``: the MQTT -> store worker, with its stats and health endpoint."""

from __future__ import annotations

import argparse
import contextlib
import signal as _signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from spinewatch.errors import ConfigError

__all__ = ["add_ingest_command"]


def _cmd_ingest(args: argparse.Namespace) -> int:
    from spinewatch.service.config import Config  # noqa: PLC0415
    from spinewatch.service.ingest.worker import IngestWorker  # noqa: PLC0415
    from spinewatch.service.storage import open_store  # noqa: PLC0415
    from spinewatch.service.transport.mqtt import resolve_protocol  # noqa: PLC0415

    cfg = Config.load(path=args.config)
    if not cfg.mqtt.url:
        raise ConfigError("SPINEWATCH_MQTT_URL", "", "the broker to read from, e.g. mqtt://127.0.0.1:1883")
    if cfg.influx.kind == "none" and not args.sqlite:
        raise ConfigError(
            "SPINEWATCH_INFLUX_URL", "",
            "the InfluxDB to write to, e.g. http://127.0.0.1:8086 (or pass --sqlite FILE)",
        )
    stop = threading.Event()
    for sig in (_signal.SIGTERM, _signal.SIGINT):
        _signal.signal(sig, lambda *_: stop.set())
    store = open_store(cfg.influx, Path(args.sqlite or "spinewatch.sqlite"), stop)
    protocol = resolve_protocol(cfg.mqtt)
    worker = IngestWorker(cfg.mqtt, cfg.ingest, store, protocol)
    print(f"ingest {worker.client_id}: {cfg.mqtt.address} (MQTT {protocol}) -> {store.address}",
          file=sys.stderr)
    worker.start()
    with contextlib.ExitStack() as stack:
        if cfg.ingest.health_listen:
            from spinewatch.service.ingest.health import HealthServer  # noqa: PLC0415

            host, _, port = cfg.ingest.health_listen.rpartition(":")
            stack.enter_context(HealthServer(host, int(port), worker.health))
            print(f"health: http://{cfg.ingest.health_listen}/healthz and /metrics", file=sys.stderr)
        next_stats = time.monotonic() + args.stats_interval
        try:
            while not stop.wait(0.5) and not worker.failed.is_set():
                if time.monotonic() >= next_stats:
                    next_stats += args.stats_interval
                    print(f"ingest stats: {worker.stats.snapshot()}", file=sys.stderr)
        finally:
            worker.stop()
            store.close()
            print(f"ingest stopped: {worker.stats.snapshot()}", file=sys.stderr)
    if worker.failed.is_set():
        print(f"ingest: stopped after an internal error ({worker.failure}); what was not acknowledged "
              "is redelivered when the worker is restarted", file=sys.stderr)
        return 1
    return 0


def add_ingest_command(subparsers: Any) -> None:
    """Register ``ingest`` on the main parser's subparsers."""
    i = subparsers.add_parser(
        "ingest", help="MQTT -> InfluxDB worker",
        description=(
            "Subscribe to spinewatch/v1/+/+/+ (a shared subscription on MQTT 5 brokers) and write "
            "posture and slouch points to InfluxDB, acknowledging each message only after the "
            "database accepted it. Configured from SPINEWATCH_MQTT_URL, SPINEWATCH_INFLUX_URL and "
            "SPINEWATCH_INFLUX_DB (1.x) or SPINEWATCH_INFLUX_ORG/_BUCKET/_TOKEN (2.x/3.x), "
            "SPINEWATCH_WORKER_ID, or a TOML file (--config)."
        ),
        epilog=(
            "example: SPINEWATCH_MQTT_URL=mqtt://127.0.0.1:1883 SPINEWATCH_INFLUX_URL=http://127.0.0.1:8086 "
            "SPINEWATCH_INFLUX_DB=spinewatch spinewatch ingest"
        ),
    )
    i.add_argument("--sqlite", metavar="FILE", help="write to this SQLite file instead of InfluxDB")
    i.add_argument("--stats-interval", type=float, default=60.0, metavar="S",
                   help="print counters every S seconds (default 60)")
    i.set_defaults(func=_cmd_ingest)
