"""``spinewatch demo``: a simulated patient (or a caseload) through the whole pipeline."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal as _signal
import sys
from pathlib import Path
from typing import Any

from spinewatch.service.cli.args import parse_duration_s, parse_speed

__all__ = ["add_demo_command"]


def _fmt_hms(seconds: float) -> str:
    from spinewatch.service.ops.live_view import fmt_hms  # noqa: PLC0415

    return fmt_hms(seconds)


def _cmd_demo(args: argparse.Namespace) -> int:
    from spinewatch.service.config import Config  # noqa: PLC0415
    from spinewatch.service.ops.demo import DemoInterrupted, DemoResult, DemoStop, run_demo  # noqa: PLC0415
    from spinewatch.service.ops.live_view import DemoConsole  # noqa: PLC0415

    cfg = Config.load(path=args.config)
    if args.patients > 1 or args.days > 1:
        from spinewatch.service.ops.clinic_demo import cmd_clinic_demo  # noqa: PLC0415

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


def add_demo_command(subparsers: Any) -> None:
    """Register ``demo`` on the main parser's subparsers."""
    d = subparsers.add_parser(
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
    from spinewatch.service.ops.clinic_demo import add_clinic_options  # noqa: PLC0415

    add_clinic_options(d)
    d.set_defaults(func=_cmd_demo)
