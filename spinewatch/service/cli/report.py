"""``spinewatch report``: a patient's PDF report (with PNG pages) or its figures as JSON."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from spinewatch.errors import ConfigError

DEMO_SQLITE = "out/spinewatch.sqlite"  # where `spinewatch demo` (default --out out) stores its points
PROGRESS_AFTER_S = 1.0  # show a progress bar only for reports that take longer than this


class _ProgressBar:
    """A stderr progress bar that appears once the work has taken over a second."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.tty = sys.stderr.isatty()
        self.shown = False
        self._last_stage = ""

    def __call__(self, stage: str, done: int, total: int) -> None:
        if time.monotonic() - self.t0 < PROGRESS_AFTER_S:
            return
        frac = done / max(1, total)
        bar = "#" * int(30 * frac) + "-" * (30 - int(30 * frac))
        line = f"{stage:<16} [{bar}] {done}/{total}"
        if self.tty:
            print("\r" + line, end="" if done < total else "\n", file=sys.stderr, flush=True)
        elif done == total and stage != self._last_stage:  # logs: one line per finished stage
            print(line, file=sys.stderr, flush=True)
            self._last_stage = stage
        self.shown = True


def _store(cfg: Any, sqlite: str | None) -> Any:
    from spinewatch.service.storage import SqliteStore, open_influx  # noqa: PLC0415

    store = None if sqlite is not None else open_influx(cfg.influx)
    if store is not None:
        return store
    path = Path(sqlite or cfg.report.sqlite or DEMO_SQLITE)
    if not path.is_file():
        raise ConfigError("--sqlite", str(path), "an existing SpineWatch SQLite store (spinewatch demo writes "
                                                  f"{DEMO_SQLITE}), or set SPINEWATCH_INFLUX_URL")
    return SqliteStore(path)


def _cmd_report(args: argparse.Namespace) -> int:
    from spinewatch.service.config import DEFAULT_SEVERE_DEG, Config
    from spinewatch.service.reports.patient_report import (
        build,
        check_range,
        check_tz,
        parse_date,
        to_json,
    )
    from spinewatch.service.transport import wire

    cfg = Config.load(path=args.config)
    try:
        wire.check_id("patient", args.patient)
    except ValueError as exc:
        raise ConfigError("--patient", args.patient, "1-64 characters of A-Z a-z 0-9 _ . -") from exc
    first, last = parse_date("--from", args.date_from), parse_date("--to", args.date_to)
    check_range(first, last)
    if args.tz is not None:
        check_tz("--tz", args.tz)
    min_wear = cfg.report.min_wear_min
    if args.min_wear_min is not None:
        try:
            min_wear = float(args.min_wear_min)
        except ValueError:
            min_wear = float("nan")
    if not 0 <= min_wear <= 1440:
        raise ConfigError("--min-wear-min", args.min_wear_min, "a number of minutes in [0, 1440]")
    if args.format == "pdf" and not args.out:
        raise ConfigError("--out", "", "the PDF to write, e.g. --out p-042-march.pdf (or use --format json)")
    out = Path(args.out) if args.out else None
    if out is not None and out.is_dir():
        raise ConfigError("--out", str(out), "a file name, not a folder")
    store = _store(cfg, args.sqlite)
    progress = _ProgressBar()
    try:
        report = build(
            store, args.patient, first, last, min_wear_min=min_wear,
            default_threshold_deg=cfg.posture.threshold_deg, default_severe_deg=DEFAULT_SEVERE_DEG,
            tz=args.tz, source=args.source, progress=progress,
        )
        if args.format == "json":
            text = json.dumps(to_json(report), indent=2)
            if out is None:
                print(text)
                return 0
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text + "\n")
            print(f"figures: {out}", file=sys.stderr)
            return 0
        from spinewatch.service.reports.patient_report_pdf import write_pdf

        assert out is not None  # checked above
        out.parent.mkdir(parents=True, exist_ok=True)
        paths = write_pdf(report, out, progress)
    finally:
        store.close()
    t = report.totals
    print(f"report of {args.patient}, {first} to {last} ({report.tz}): "
          f"{t.days_with_data} day{'' if t.days_with_data == 1 else 's'} with data, "
          f"{t.wear_time_min / 60:.1f} h worn, {t.slouch_count} slouches; " + ", ".join(str(p) for p in paths))
    return 0


def add_report_commands(subparsers: Any) -> None:
    """Add ``report`` to the ``spinewatch`` command line."""
    r = subparsers.add_parser(
        "report", help="a patient's PDF report with RTM figures (or --format json)",
        description=(
            "A patient's posture report over local days --from to --to (inclusive): key figures, "
            "remote-monitoring (RTM) compliance per 30-day period, daily time in zones, trend with the "
            "smallest-real-change band, slouches by hour of day, and the settings in force. Writes a PDF "
            "(--out FILE.pdf) and one PNG per page (FILE-1.png ...), or prints the figures as JSON. "
            "Reads InfluxDB when SPINEWATCH_INFLUX_URL is set (per-minute retention policy 'trend' when "
            "`spinewatch influx init` made it), else the SQLite store (--sqlite, default "
            f"{DEMO_SQLITE}). Definitions: docs/reports.md."
        ),
        epilog=(
            "examples:\n"
            "  SPINEWATCH_INFLUX_URL=http://127.0.0.1:8086 SPINEWATCH_INFLUX_DB=spinewatch \\\n"
            "    spinewatch report --patient p-042 --from 2026-03-01 --to 2026-03-30 --out p-042-march.pdf\n"
            "  spinewatch demo && spinewatch report --patient p-demo --from $(date -u +%F) --to $(date -u +%F) "
            "--format json --sqlite out/spinewatch.sqlite   # the day the demo simulated (today, UTC)"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    r.add_argument("--patient", required=True, metavar="ID", help="pseudonymous patient id")
    r.add_argument("--from", dest="date_from", required=True, metavar="YYYY-MM-DD",
                   help="first local day of the report")
    r.add_argument("--to", dest="date_to", required=True, metavar="YYYY-MM-DD",
                   help="last local day of the report (inclusive)")
    r.add_argument("--out", metavar="FILE", help="PDF to write (PNG pages next to it); with --format json, "
                                                 "write the JSON there instead of printing it")
    r.add_argument("--format", choices=("pdf", "json"), default="pdf", help="pdf (default) or json")
    r.add_argument("--tz", metavar="ZONE", help="IANA time zone of the days (default: the patient's stored "
                                                "timezone setting, else UTC)")
    r.add_argument("--min-wear-min", metavar="MIN",
                   help="wear minutes that make a day with data (default: config report.min_wear_min, 1)")
    r.add_argument("--sqlite", metavar="FILE", help="read this SQLite store (even if InfluxDB is configured)")
    r.add_argument("--source", choices=("auto", "trend", "raw"), default="auto",
                   help="InfluxDB: per-minute 'trend' data, 1-minute means of 'raw' samples, or auto "
                        "(trend when it holds data; default)")
    r.set_defaults(func=_cmd_report)
