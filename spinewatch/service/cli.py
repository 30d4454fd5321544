"""The ``spinewatch`` command line. The only module that prints."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import re
import signal as _signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from spinewatch import __version__
from spinewatch.errors import ConfigError, SpineWatchError

_DURATION_RE = re.compile(r"^(?:(\d+(?:\.\d+)?)d)?(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?$")


def parse_duration_s(text: str) -> float:
    """``8h``, ``90m``, ``1h30m``, ``45s`` or plain seconds -> seconds (> 0)."""
    m = _DURATION_RE.match(text.strip())
    if not text.strip() or not m or not any(m.groups()):
        raise argparse.ArgumentTypeError(f"--duration {text!r}: use e.g. 8h, 90m, 1h30m, 45s")
    d, h, mi, s = (float(g) if g else 0.0 for g in m.groups())
    total = d * 86400 + h * 3600 + mi * 60 + s
    if total <= 0:
        raise argparse.ArgumentTypeError(f"--duration {text!r}: must be > 0")
    return total


def parse_speed(text: str) -> float | None:
    """``max`` -> None (as fast as possible), else a factor > 0 (1 = real time)."""
    if text.strip().lower() == "max":
        return None
    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not v > 0:
        raise argparse.ArgumentTypeError(f"--speed {text!r}: use 'max' or a number > 0 (1 = real time)")
    return v


def _fmt_hms(seconds: float) -> str:
    from spinewatch.service.live_view import fmt_hms  # noqa: PLC0415

    return fmt_hms(seconds)


def _cmd_demo(args: argparse.Namespace) -> int:
    from spinewatch.service.config import Config  # noqa: PLC0415
    from spinewatch.service.live_view import DemoConsole  # noqa: PLC0415
    from spinewatch.service.pipeline import DemoInterrupted, DemoResult, DemoStop, run_demo  # noqa: PLC0415

    cfg = Config.load(path=args.config)
    if args.patients > 1 or args.days > 1:
        from spinewatch.service.clinic_demo import cmd_clinic_demo  # noqa: PLC0415

        return cmd_clinic_demo(args, cfg)
    if args.duration is None:
        args.duration = parse_duration_s("8h")
    console = DemoConsole(args.duration, live=args.speed is not None and args.speed <= 60)
    stop = DemoStop()

    def on_signal() -> None:
        if stop.requested:  # the second Ctrl-C: now, with no broker or temporary folder left behind
            stop.abort()
            print("\nspinewatch: interrupted twice: quit at once (no report)", file=sys.stderr, flush=True)
            os._exit(130)
        console.end_line()
        stop.request()  # the first: end the stream, then shut down in order

    async def demo() -> DemoResult:
        loop = asyncio.get_running_loop()
        for sig in (_signal.SIGINT, _signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal)
        return await run_demo(
            cfg, args.duration, args.speed, Path(args.out), seed=args.seed,
            on_status=console.status, on_event=console.event, on_stage=console.stage, stop=stop,
            on_haptic=console.haptic, on_alert=console.alert,
        )

    try:
        result = asyncio.run(demo())
    except DemoInterrupted as exc:
        print(f"spinewatch: {exc}", file=sys.stderr)
        return 130
    s = result.summary
    print(f"\nsimulated {_fmt_hms(args.duration)} ({result.samples:,} samples) in "
          f"{result.wall_s:.1f} s: {result.samples_per_s:,.0f} samples/s")
    print(f"published {result.posture_messages:,} posture messages, {result.events} slouch events and "
          f"{result.alerts} haptic alerts via {result.broker}; {result.points_written:,} points written to "
          f"{result.store}")
    print(f"wear {s.wear_time_min:.0f} min, neutral {s.time_neutral_pct:.1f} %, "
          f"{s.slouch_count} slouches ({s.slouches_per_hour:.1f}/h), longest {s.longest_slouch_s:.0f} s, "
          f"{s.alerts} haptic alerts ({s.alerts_corrected} corrected)")
    print(f"report: {result.report_png}\nevents: {result.events_csv}")
    if result.store.startswith("sqlite:"):
        import datetime as _dt  # noqa: PLC0415

        day0 = _dt.datetime.fromtimestamp(result.start_utc_ns / 1e9, _dt.UTC).date()
        day1 = _dt.datetime.fromtimestamp((result.start_utc_ns + args.duration * 1e9) / 1e9, _dt.UTC).date()
        print(f"the therapist's PDF report of these days: spinewatch report --patient {result.patient} "
              f"--from {day0} --to {day1} --sqlite {result.store.removeprefix('sqlite:')} "
              f"--out {Path(args.out) / 'patient-report.pdf'}")
    if result.messages_missing:
        print(f"demo: {result.messages_missing:,} of {result.messages_sent:,} messages the broker acknowledged never "
              f"reached the store (~{result.missing_min:.1f} min of posture data lost in transit); "
              + ("" if result.broker_dropped is None else
                 f"the broker reports {result.broker_dropped:,} messages dropped since it started; ")
              + "a broker drops "
              "messages when a subscriber's queue is full: raise max_queued_messages / max_queued_bytes "
              "(docs/operator-guide.md, \"Sizing the broker's queue\")", file=sys.stderr)
        return 1
    return 0


def _cmd_ingest(args: argparse.Namespace) -> int:
    from spinewatch.service.config import Config  # noqa: PLC0415
    from spinewatch.service.ingest import IngestWorker  # noqa: PLC0415
    from spinewatch.service.mqtt import resolve_protocol  # noqa: PLC0415
    from spinewatch.service.pipeline import make_store  # noqa: PLC0415

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
    store = make_store(cfg, Path(args.sqlite or "spinewatch.sqlite"), stop)
    protocol = resolve_protocol(cfg.mqtt)
    worker = IngestWorker(cfg.mqtt, cfg.ingest, store, protocol)
    print(f"ingest {worker.client_id}: {cfg.mqtt.address} (MQTT {protocol}) -> {store.address}",
          file=sys.stderr)
    worker.start()
    with contextlib.ExitStack() as stack:
        if cfg.ingest.health_listen:
            from spinewatch.service.health import HealthServer  # noqa: PLC0415

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


def _influx2_init(i: Any, args: argparse.Namespace) -> int:
    from spinewatch.service.retry import retry_until_connected  # noqa: PLC0415
    from spinewatch.service.schema_v2 import (  # noqa: PLC0415
        Influx2Admin,
        Influx2Schema,
        apply_influx2_schema,
    )

    try:
        schema = Influx2Schema(i.bucket, args.raw_retention)
    except ValueError as exc:
        raise ConfigError("--raw-retention", args.raw_retention, str(exc)) from exc
    admin = Influx2Admin(i.url, i.token)
    retry_until_connected(lambda: apply_influx2_schema(admin, i.org, schema, backfill=args.backfill), "InfluxDB")
    return 0


def _cmd_influx_init(args: argparse.Namespace) -> int:
    from spinewatch.service.config import Config  # noqa: PLC0415
    from spinewatch.service.retry import retry_until_connected  # noqa: PLC0415
    from spinewatch.service.schema import Influx1Schema  # noqa: PLC0415
    from spinewatch.service.storage import Influx1Store, StoreRejected  # noqa: PLC0415

    cfg = Config.load(path=args.config)
    i = cfg.influx
    if i.kind == "none":
        raise ConfigError("SPINEWATCH_INFLUX_URL", i.url, "the InfluxDB to set up, e.g. http://127.0.0.1:8086")
    if i.kind == "v2":
        return _influx2_init(i, args)
    try:
        schema = Influx1Schema(i.db, args.raw_retention)
    except ValueError as exc:
        raise ConfigError("--raw-retention", args.raw_retention, str(exc)) from exc
    store = Influx1Store(i.url, i.db, i.username, i.password)
    retry_until_connected(store.ensure_database, "InfluxDB")
    for q in schema.statements(store.retention_policies()):
        try:
            store.execute(q)
        except StoreRejected as exc:
            if q.startswith("DROP CONTINUOUS QUERY") and "not found" in str(exc):
                continue  # first run: nothing to replace
            raise
        print(f"ok: {q[:110]}{'...' if len(q) > 110 else ''}")
    if args.backfill:
        for q in schema.backfill_statements():
            store.execute(q)
            print(f"backfilled: {q[:90]}...")
    print(f"InfluxDB {store.address} database {i.db!r}: raw samples kept {args.raw_retention}, "
          "per-minute trend, slouch episodes and settings kept forever")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="spinewatch",
        description="SpineWatch: posture monitoring from a back-worn IMU (BLE -> MQTT -> InfluxDB). "
                    "Each COMMAND has its own --help with an example.",
        epilog=(
            "examples:\n"
            "  spinewatch demo --duration 1h        # a simulated patient through the whole pipeline, no servers\n"
            "  spinewatch report --patient p-demo --from $(date -u +%F) --to $(date -u +%F) --format json "
            "--sqlite out/spinewatch.sqlite\n"
            "  spinewatch doctor --skip bluetooth   # is the installation working?"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"spinewatch {__version__}")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    p.add_argument("--config", metavar="FILE", help="TOML config file (default: $SPINEWATCH_CONFIG)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    d = sub.add_parser(
        "demo", help="simulated patient through the whole pipeline, ending with a report",
        description=(
            "Run a simulated patient's posture day through the real pipeline: Numba filter, "
            "slouch detector, simulated haptic alerts (a buzz that does nothing physical; its outcome is "
            "what the script implies), MQTT publisher, broker, ingest worker and storage, then write a "
            "therapist report (PNG) and a CSV of slouch episodes. With no SPINEWATCH_MQTT_URL a "
            "private broker is started (mosquitto if installed, else the in-process amqtt); with "
            "no SPINEWATCH_INFLUX_URL points go to SQLite in --out. Exit status 1 when any message the "
            "broker acknowledged never reached the store (the count and the minutes of posture are printed). "
            "Ctrl-C stops it in order (stream, publisher, ingest, store, broker last; no report; exit status "
            "130); a second Ctrl-C quits at once."
        ),
        epilog="examples:\n  spinewatch demo --duration 8h --speed max --out out/\n"
               "  spinewatch demo --duration 10m --speed 1          # the patient's live view, in real time\n"
               "  spinewatch demo --patients 5 --days 30 --out out/  # a month of a caseload: reports, dashboards",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d.add_argument("--duration", type=parse_duration_s, default=None,
                   metavar="D", help="simulated time: 8h, 90m, 1h30m, 45s (default 8h); with --patients/--days: "
                                     "the wear of each simulated day (default 30m)")
    d.add_argument("--speed", type=parse_speed, default=None, metavar="S",
                   help="1 = real time with a live view, N = N times faster, max = as fast as possible "
                        "with a progress bar (default max)")
    d.add_argument("--out", default="out", metavar="DIR", help="report, events CSV and local store (default out)")
    d.add_argument("--seed", type=int, default=0, help="seed of the simulated day (default 0)")
    from spinewatch.service.clinic_demo import add_clinic_options  # noqa: PLC0415

    add_clinic_options(d)
    d.set_defaults(func=_cmd_demo)

    i = sub.add_parser(
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

    inf = sub.add_parser(
        "influx", help="InfluxDB administration",
        description="Set up InfluxDB for SpineWatch (retention policies, downsampling, settings).",
        epilog="example: SPINEWATCH_INFLUX_URL=http://127.0.0.1:8086 SPINEWATCH_INFLUX_DB=spinewatch "
               "spinewatch influx init",
    )
    inf_sub = inf.add_subparsers(dest="influx_command", required=True, metavar="SUBCOMMAND")
    init = inf_sub.add_parser(
        "init", help="create the database, retention policies and downsampling",
        description=(
            "Set up InfluxDB for SpineWatch: raw posture samples and slouch episodes, kept "
            "--raw-retention, and trend data kept forever (per-minute posture means in posture_1m "
            "and a copy of every slouch episode), filled every minute, and the patients' settings "
            "(patient_config, calibration) kept forever. On 1.x "
            "(SPINEWATCH_INFLUX_URL + SPINEWATCH_INFLUX_DB, and _USERNAME/_PASSWORD): retention "
            "policies 'raw' (default), 'trend' with continuous queries, and 'settings'. On 2.x/Cloud "
            "(SPINEWATCH_INFLUX_URL + _ORG + _BUCKET + _TOKEN, an operator token): buckets BUCKET and "
            "BUCKET_trend, the DBRP mappings BUCKET/raw, BUCKET/trend and BUCKET/settings (to "
            "BUCKET_trend) that let the InfluxQL "
            "dashboards and reports run, and two Flux tasks. Idempotent: run it again to change the "
            "retention."
        ),
        epilog="example: SPINEWATCH_INFLUX_URL=http://127.0.0.1:8086 SPINEWATCH_INFLUX_DB=spinewatch "
               "spinewatch influx init --raw-retention 90d --backfill",
    )
    init.add_argument("--raw-retention", default="90d", metavar="D",
                      help="how long raw samples are kept: 90d, 12w, 2160h or INF (default 90d)")
    init.add_argument("--backfill", action="store_true",
                      help="also downsample data written before the continuous queries existed (and recompute every "
                           "minute's wear seconds: run it once after upgrading; raw points stored "
                           "before wear_s existed count 0.01 s each), and copy settings stored before "
                           "'settings' existed")
    init.set_defaults(func=_cmd_influx_init)

    from spinewatch.service.cli_bridge import add_bridge_commands  # noqa: PLC0415
    from spinewatch.service.cli_calibrate import add_calibrate_command
    from spinewatch.service.cli_config import add_config_commands  # noqa: PLC0415
    from spinewatch.service.cli_doctor import add_doctor_commands  # noqa: PLC0415
    from spinewatch.service.cli_export import add_export_commands  # noqa: PLC0415
    from spinewatch.service.cli_report import add_report_commands  # noqa: PLC0415
    from spinewatch.service.grafana_push import add_grafana_commands  # noqa: PLC0415

    add_bridge_commands(sub)
    add_calibrate_command(sub)
    add_config_commands(sub)
    add_grafana_commands(sub)
    add_report_commands(sub)
    add_export_commands(sub)
    add_doctor_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.WARNING - 10 * min(2, args.verbose)
    env_level = os.environ.get("SPINEWATCH_LOG_LEVEL", "").upper()
    if env_level in ("DEBUG", "INFO", "WARNING", "ERROR") and not args.verbose:
        level = getattr(logging, env_level)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"spinewatch: configuration error: {exc}", file=sys.stderr)
        return 2
    except SpineWatchError as exc:
        print(f"spinewatch: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nspinewatch: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
