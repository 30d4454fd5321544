"""``spinewatch export``: a patient's raw posture series and slouch episodes as CSV or Parquet."""

from __future__ import annotations

import argparse
import datetime as dt
import re
import signal
import sys
import time
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from spinewatch.errors import ConfigError
from spinewatch.service.config import Config
from spinewatch.service.reports.periods import check_bounds, parse_bound, period_end
from spinewatch.service.storage import Store

# The demo (`spinewatch demo`, default --out out) keeps its embedded store here.
DEFAULT_SQLITE: Final = "out/spinewatch.sqlite"
# Progress appears only on work that takes longer than this (issue #8: "more than a second").
PROGRESS_AFTER_S: Final = 1.0
_SAFE: Final = re.compile(r"[^A-Za-z0-9_.-]+")


def open_store(cfg: Config, sqlite: str | None) -> Store:
    """``--sqlite FILE`` if given, else the configured InfluxDB, else the demo's SQLite store.

    A SQLite file must exist: reading never creates an empty database.
    """
    from spinewatch.service.storage import SqliteStore, open_influx  # noqa: PLC0415

    store = None if sqlite is not None else open_influx(cfg.influx)
    if store is not None:
        return store
    path = Path(sqlite or DEFAULT_SQLITE)
    if not path.is_file():
        raise ConfigError(
            "--sqlite", str(path),
            "an existing SpineWatch SQLite file (`spinewatch demo` writes out/spinewatch.sqlite, "
            "`spinewatch ingest --sqlite FILE` writes FILE), or set SPINEWATCH_INFLUX_URL to read InfluxDB",
        )
    return SqliteStore(path)


def check_tz(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError("--tz", name, "an IANA time zone name such as Europe/Berlin or UTC") from None


def patient_timezone(store: Store, patient: str) -> str:
    """The ``timezone`` of the patient's latest stored ``patient_config`` (audit), else ``UTC``."""
    recs = store.records("patient_config", patient, 0, time.time_ns() + 86_400 * 10**9)
    for r in reversed(recs):
        tz = r.fields.get("timezone")
        if isinstance(tz, str) and tz:
            return tz
    return "UTC"


def to_utc_ns(when: dt.datetime, tz: ZoneInfo) -> int:
    """UTC ns of ``when`` (naive: wall time in ``tz``)."""
    aware = when if when.tzinfo is not None else when.replace(tzinfo=tz)
    return int(aware.timestamp()) * 10**9 + aware.microsecond * 1000


class Progress:
    """A progress bar on stderr, shown only once the work has taken longer than a second."""

    def __init__(self, what: str, stream: Any = None) -> None:
        self.what = what
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._t0 = time.perf_counter()
        self._last = 0.0
        self.shown = False

    def __call__(self, frac: float, rows: int) -> None:
        now = time.perf_counter()
        elapsed = now - self._t0
        if elapsed < PROGRESS_AFTER_S or now - self._last < (0.2 if self.tty else 5.0):
            return
        self._last = now
        self.shown = True
        frac = min(1.0, max(0.0, frac))
        bar = "#" * int(30 * frac) + "-" * (30 - int(30 * frac))
        eta_s = elapsed * (1 - frac) / frac if frac > 0 else None
        eta_txt = "?" if eta_s is None else f"{int(eta_s) // 60:d}:{int(eta_s) % 60:02d}"
        line = (f"{self.what} [{bar}] {100 * frac:5.1f} %  {rows:,} rows  "
                f"{rows / elapsed / 1e3:,.0f} k rows/s  ETA {eta_txt}")
        print(("\r" + line) if self.tty else line, end="" if self.tty else "\n", file=self.stream, flush=True)

    def done(self) -> None:
        if self.shown and self.tty:
            print(file=self.stream)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def cmd_export(args: argparse.Namespace) -> int:
    from spinewatch.service.reports.export import FORMATS, export, export_paths, require_pyarrow
    from spinewatch.service.transport import wire

    fmt = args.format.lower()
    if fmt not in FORMATS:
        raise ConfigError("--format", args.format, " or ".join(FORMATS))
    try:
        wire.check_id("patient", args.patient)
    except ValueError as exc:
        raise ConfigError("--patient", args.patient, "letters, digits, _ . - (1-64 characters)") from exc
    start, start_has_tz, _ = parse_bound("--from", getattr(args, "from"))
    to, end_has_tz, to_is_day = parse_bound("--to", args.to)
    end = period_end(to, to_is_day)  # a --to day is included, as in `report` (periods.py)
    tz_override = check_tz(args.tz) if args.tz else None
    if fmt == "parquet":
        require_pyarrow()
    cfg = Config.load(path=args.config)
    store = open_store(cfg, args.sqlite)
    try:
        tz = tz_override
        if tz is None and not (start_has_tz and end_has_tz):
            name = patient_timezone(store, args.patient)
            try:
                tz = ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                tz = ZoneInfo("UTC")
        tz = tz or ZoneInfo("UTC")
        start_ns, end_ns = to_utc_ns(start, tz), to_utc_ns(end, tz)
        check_bounds(getattr(args, "from"), args.to, start_ns, end_ns)
        prefix = args.out or _SAFE.sub("-", f"{args.patient}_{getattr(args, 'from')}_{args.to}")
        if args.out and (args.out.endswith(("/", "\\")) or Path(args.out).is_dir()):
            prefix = str(Path(args.out) / _SAFE.sub("-", f"{args.patient}_{getattr(args, 'from')}_{args.to}"))
        paths = export_paths(prefix, fmt)
        progress = Progress(f"export {args.patient}")
        previous = signal.signal(signal.SIGTERM, _interrupt)  # clean up the .part files, as on Ctrl-C
        try:
            result = export(store, args.patient, start_ns, end_ns, paths, fmt, on_progress=progress)
        finally:
            signal.signal(signal.SIGTERM, previous)
            progress.done()
    finally:
        store.close()
    print(f"{result.posture_rows:,} posture samples -> {result.paths.posture}")
    print(f"{result.episodes:,} slouch episodes -> {result.paths.episodes}")
    zone = "as given" if start_has_tz and end_has_tz and tz_override is None else f"in {tz.key}"
    print(f"period [{start.isoformat()}, {end.isoformat()}) {zone}; read from {store.address} "
          f"in {result.wall_s:.1f} s ({result.rows_per_s:,.0f} rows/s)", file=sys.stderr)
    return 0


def add_export_commands(subparsers: Any) -> None:
    """Add ``export`` to the ``spinewatch`` command line."""
    e = subparsers.add_parser(
        "export", help="a patient's raw posture series and slouch episodes as CSV or Parquet",
        description=(
            "Write every posture sample (time_utc, time_utc_ns, device, flexion_deg, lateral_deg, state, "
            "activity, activity_name) and every slouch episode (device, start_utc, end_utc, start_utc_ns, "
            "end_utc_ns, duration_s, peak_deg, mean_deg) of a patient from --from to --to to "
            "PREFIX.posture.csv and PREFIX.episodes.csv (or .parquet; see --out). Dates are local days in the "
            "patient's time zone (the timezone of their latest stored config, else UTC; --tz overrides), both "
            "included, as in `spinewatch report`; a time --to (YYYY-MM-DDTHH:MM) is the end, excluded. "
            "Reads InfluxDB when SPINEWATCH_INFLUX_URL is set (same variables as `spinewatch ingest`), else "
            "the local SQLite store (--sqlite, default out/spinewatch.sqlite, the demo's). Streams one hour "
            "at a time: memory stays flat however long the period. Parquet needs "
            "`pip install 'spinewatch[parquet]'`. Details: docs/export.md."
        ),
        epilog="example: spinewatch export --patient p-042 --from 2026-03-01 --to 2026-03-31 --format csv "
               "--out exports/p-042-march   (writes exports/p-042-march.posture.csv and .episodes.csv)",
    )
    e.add_argument("--patient", required=True, metavar="ID", help="pseudonymous patient id")
    e.add_argument("--from", required=True, metavar="DATE",
                   help="first day (YYYY-MM-DD) or start time (YYYY-MM-DDTHH:MM), included")
    e.add_argument("--to", required=True, metavar="DATE",
                   help="last day (YYYY-MM-DD), included, or end time (YYYY-MM-DDTHH:MM), excluded")
    e.add_argument("--format", default="csv", metavar="FMT", help="csv (default) or parquet")
    e.add_argument("--out", default="", metavar="PREFIX",
                   help="output prefix: writes PREFIX.posture.FMT and PREFIX.episodes.FMT; an existing "
                        "folder (or a path ending in /) gets PATIENT_FROM_TO.* inside "
                        "(default: PATIENT_FROM_TO.* here)")
    e.add_argument("--tz", default="", metavar="ZONE",
                   help="IANA time zone of --from/--to (default: the patient's, else UTC)")
    e.add_argument("--sqlite", default=None, metavar="FILE",
                   help=f"read this SQLite store instead of InfluxDB (default without InfluxDB: {DEFAULT_SQLITE})")
    e.set_defaults(func=cmd_export)
