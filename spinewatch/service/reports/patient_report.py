"""A patient's report over a date range: read per-minute series, settings and episodes; figures; JSON.

Reads only per-minute and per-episode data (never the 100 Hz samples of InfluxDB's trend
path), a few days per query, so a 90-day report stays small and fast (benchmarks/bench_report.py).
The arithmetic is in :mod:`spinewatch.signal.minute_summary` and :mod:`spinewatch.signal.rtm`;
the PDF in :mod:`spinewatch.service.reports.patient_report_pdf`. Definitions: docs/reports.md.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import numpy.typing as npt

from spinewatch.errors import ConfigError, SpineWatchError
from spinewatch.model import NS_PER_S, SlouchEvent
from spinewatch.service.reports.periods import check_days, parse_day
from spinewatch.service.storage import (
    MinuteSeries,
    Record,
    Store,
    empty_minutes,
    stored_duration_s,
)
from spinewatch.signal.minute_summary import (
    BASELINE_DAYS,
    DayFigures,
    PeriodFigures,
    baseline_band,
    day_figures,
    local_day_edges_ns,
    period_figures,
    slouches_by_hour,
)
from spinewatch.signal.rtm import RtmPeriod, rtm_periods

READ_CHUNK_DAYS: Final = 5  # days per query: 5 x 1,440 minutes stays under InfluxDB 1.x's 10,000-row default limit
MAX_REPORT_DAYS: Final = 3660  # ten years: a typo in a year should not start a century-long read
FAR_FUTURE_NS: Final = 2**62  # year 2116: "every settings change ever stored"

Source = Literal["auto", "trend", "raw"]
Progress = Callable[[str, int, int], None]


class ReportError(SpineWatchError):
    """The report cannot be made from what is stored (unknown patient, no data in the period)."""


@dataclass(frozen=True, slots=True)
class PatientReport:
    """Everything a report shows, in the patient's local days.

    Attributes:
        patient: pseudonymous id.
        first, last: the range, local dates (inclusive).
        tz: IANA time zone of the days; tz_source: ``--tz``, ``patient_config`` or ``default``.
        dates: (D,) local dates; day_edges_ns: (D + 1,) their midnights, UTC ns.
        minutes: per-minute series read; slouches: episodes starting in the range.
        source: where the minutes came from (``trend.posture_1m``, ``raw posture``, ``sqlite``).
        store: the database address.
        rate_hz: mean sample rate of the data read, Hz (samples / wear seconds; NaN without
            data): reported, never used to compute wear, which is the samples' own periods.
        min_wear_min: minutes that make a day with data.
        settings: ``patient_config`` points in force during the range (the one in force at
            its start, then every change), oldest first.
        days, totals, rtm: the figures.
        by_hour: (D, 24) slouch episodes per local day and hour of day.
        baseline_days: days at the start of the range forming the trend baseline.
        baseline_neutral_pct, baseline_slouches_per_hour: the baseline of each trend (NaN if no data).
        sdc_neutral_pct, sdc_slouches_per_hour: smallest real change (the band half-width).
        default_threshold_deg, default_severe_deg: zone limits before any stored setting, degrees.
        transit_lost_messages: posture messages of the range lost between the bridge and the
            database (gaps in their ``seq``, spinewatch/service/storage/transit.py); transit_lost_min:
            the minutes of data they held.
    """

    patient: str
    first: dt.date
    last: dt.date
    tz: str
    tz_source: str
    dates: list[dt.date]
    day_edges_ns: npt.NDArray[np.int64]
    minutes: MinuteSeries
    slouches: list[SlouchEvent]
    source: str
    store: str
    rate_hz: float
    min_wear_min: float
    settings: list[Record]
    days: list[DayFigures]
    totals: PeriodFigures
    rtm: list[RtmPeriod]
    by_hour: npt.NDArray[np.int64]
    baseline_days: int
    baseline_neutral_pct: float
    baseline_slouches_per_hour: float
    sdc_neutral_pct: float
    sdc_slouches_per_hour: float
    default_threshold_deg: float
    default_severe_deg: float
    transit_lost_messages: int = 0
    transit_lost_min: float = 0.0


def parse_date(option: str, text: str) -> dt.date:
    """``YYYY-MM-DD`` -> date; ConfigError naming ``option`` otherwise (the rule: :mod:`periods`)."""
    return parse_day(option, text)


def check_tz(option: str, tz: str) -> str:
    """An IANA time zone name, or ConfigError naming ``option``."""
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ConfigError(option, tz, "an IANA time zone name such as America/New_York or UTC") from None
    return tz


def check_range(first: dt.date, last: dt.date) -> None:
    check_days(first, last)
    if (last - first).days + 1 > MAX_REPORT_DAYS:
        raise ConfigError("--to", last.isoformat(), f"at most {MAX_REPORT_DAYS} days after --from")


def _in_force(records: list[Record], start_ns: int, end_ns: int) -> list[Record]:
    before = [r for r in records if r.t_ns <= start_ns]
    return before[-1:] + [r for r in records if start_ns < r.t_ns < end_ns]


def _per_minute_setting(
    records: list[Record], key: str, t_ns: npt.NDArray[np.int64], default: float
) -> npt.NDArray[np.float64]:
    """The value of ``key`` in force at each minute (the latest change at or before it)."""
    rs = [r for r in records if isinstance(r.fields.get(key), (int, float))]
    if not rs:
        return np.full(t_ns.shape, default)
    times = np.array([r.t_ns for r in rs], dtype=np.int64)
    values = np.array([float(r.fields[key]) for r in rs])
    k = np.searchsorted(times, t_ns, side="right") - 1
    return np.where(k >= 0, values[np.maximum(k, 0)], default)


def _concat(parts: list[MinuteSeries]) -> MinuteSeries:
    parts = [p for p in parts if len(p.t_ns)]
    if not parts:
        return empty_minutes()
    return MinuteSeries(*(np.concatenate([getattr(p, f) for p in parts]) for f in MinuteSeries.__slots__))


def read_minutes(store: Store, patient: str, edges: npt.NDArray[np.int64], source: Source,
                 progress: Progress | None = None) -> tuple[MinuteSeries, str, bool]:
    """Per-minute series over ``[edges[0], edges[-1])``, a few days per query.

    Returns:
        ``(minutes, source name, trend)``; ``trend`` says whether the trend RP was read.
    """
    has_trend = bool(getattr(store, "has_trend", None)) and store.has_trend()  # type: ignore[attr-defined]
    if source == "trend" and not has_trend:
        raise ConfigError("--source", "trend", "auto or raw: this store has no retention policy 'trend' "
                                               "(run spinewatch influx init --backfill)")
    use_trend = has_trend and source in ("auto", "trend")
    chunks = list(range(0, len(edges) - 1, READ_CHUNK_DAYS))

    def read(trend: bool) -> MinuteSeries:
        parts = []
        for i, k in enumerate(chunks):
            a, b = int(edges[k]), int(edges[min(k + READ_CHUNK_DAYS, len(edges) - 1)])
            fn = store.minutes_trend if trend else store.minutes  # type: ignore[attr-defined]
            parts.append(fn(patient, a, b))
            if progress:
                progress("reading minutes", i + 1, len(chunks))
        return _concat(parts)

    if use_trend:
        m = read(True)
        if len(m.t_ns) or source == "trend":
            return m, "InfluxDB trend.posture_1m", True
        # trend exists but holds nothing here (e.g. --backfill never ran): the raw samples
    m = read(False)
    name = ("SQLite posture" if store.address.startswith("sqlite:")
            else "InfluxDB posture (1-minute means of raw samples)")
    return m, name, False


def build(
    store: Store, patient: str, first: dt.date, last: dt.date, *,
    min_wear_min: float, default_threshold_deg: float, default_severe_deg: float,
    tz: str | None = None, source: Source = "auto", progress: Progress | None = None,
) -> PatientReport:
    """Read and compute a patient's report (nothing is written).

    Args:
        store: where posture, episodes and settings are stored.
        patient: pseudonymous id.
        first, last: the range, local dates (inclusive).
        min_wear_min: wear minutes that make a local day a day with data.
        default_threshold_deg, default_severe_deg: zone limits before any stored setting, degrees.
        tz: time zone override; None: the patient's latest stored ``timezone``, else UTC.
        source: ``trend`` (InfluxDB per-minute RP), ``raw`` (1-minute means of raw samples),
            or ``auto`` (trend when it exists and holds data in the range).
        progress: called with (stage, done, total) while reading.

    Raises:
        ConfigError: a bad option (range, time zone, source).
        ReportError: unknown patient, or no posture data in the range.
    """
    check_range(first, last)
    if tz is not None:
        check_tz("--tz", tz)
    if not store.has_patient(patient):
        raise ReportError(f"unknown patient {patient!r}: nothing stored for this id in {store.address}")
    records = store.records("patient_config", patient, 0, FAR_FUTURE_NS)
    tz_source = "--tz" if tz is not None else "default"
    if tz is None:
        tz = "UTC"
        for r in reversed(records):
            if isinstance(r.fields.get("timezone"), str):
                tz, tz_source = check_tz("patient_config timezone", r.fields["timezone"]), "patient_config"
                break
    dates, edges = local_day_edges_ns(first, last, tz)
    minutes, source_name, trend = read_minutes(store, patient, edges, source, progress)
    if len(minutes.t_ns) == 0:
        raise ReportError(f"no posture data for patient {patient!r} from {first} to {last} ({tz}) in {store.address}")
    reader = store.slouches_trend if trend else store.episodes  # type: ignore[attr-defined]
    slouches = sorted(reader(patient, int(edges[0]), int(edges[-1])), key=lambda s: s.start_ns)
    lost = store.transit_loss(int(edges[0]), int(edges[-1]), patient=patient)
    thr = _per_minute_setting(records, "threshold_deg", minutes.t_ns, default_threshold_deg)
    sev = _per_minute_setting(records, "severe_deg", minutes.t_ns, default_severe_deg)
    start_ns = np.array([s.start_ns for s in slouches], dtype=np.int64)
    days = day_figures(
        minutes.t_ns, minutes.flexion_mean_deg, minutes.wear_s, minutes.still_s, dates, edges,
        start_ns, np.array([stored_duration_s(s) for s in slouches]),
        threshold_deg=thr, severe_deg=sev, min_wear_min=min_wear_min,
    )
    nan = float("nan")
    wear_s = float(minutes.wear_s.sum())
    rate_hz = float(minutes.samples.sum()) / wear_s if wear_s > 0 else nan
    neutral_band = baseline_band([d.time_neutral_pct if d.has_data else nan for d in days], BASELINE_DAYS)
    slouch_band = baseline_band([d.slouches_per_hour if d.has_data else nan for d in days], BASELINE_DAYS)
    return PatientReport(
        patient=patient, first=first, last=last, tz=tz, tz_source=tz_source, dates=dates, day_edges_ns=edges,
        minutes=minutes, slouches=slouches, source=source_name, store=store.address, rate_hz=rate_hz,
        min_wear_min=min_wear_min, settings=_in_force(records, int(edges[0]), int(edges[-1])),
        days=days, totals=period_figures(days), rtm=rtm_periods(dates, [d.has_data for d in days]),
        by_hour=slouches_by_hour(start_ns, edges, tz), baseline_days=BASELINE_DAYS,
        baseline_neutral_pct=neutral_band[0], sdc_neutral_pct=neutral_band[1],
        baseline_slouches_per_hour=slouch_band[0], sdc_slouches_per_hour=slouch_band[1],
        default_threshold_deg=default_threshold_deg, default_severe_deg=default_severe_deg,
        transit_lost_messages=sum(x.lost for x in lost), transit_lost_min=sum(x.lost_s for x in lost) / 60.0,
    )


def _num(x: float, nd: int = 2) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), nd)


def utc_iso(t_ns: int) -> str:
    return dt.datetime.fromtimestamp(t_ns / NS_PER_S, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def settings_rows(r: PatientReport) -> list[dict[str, Any]]:
    """The settings in force, one dict per stored change (numbers, author, time zone, UTC time)."""
    return [{"set_utc": utc_iso(s.t_ns), "device": s.device, **s.fields} for s in r.settings]


def to_json(r: PatientReport) -> dict[str, Any]:
    """The figures of ``--format json`` (docs/reports.md lists every key)."""
    t = r.totals
    return {
        "patient": r.patient, "from": r.first.isoformat(), "to": r.last.isoformat(),
        "timezone": r.tz, "timezone_source": r.tz_source, "source": r.source,
        "min_wear_min": r.min_wear_min, "rate_hz": _num(r.rate_hz),
        "days_with_data": t.days_with_data,
        "wear_time_min": _num(t.wear_time_min),
        "time_neutral_pct": _num(t.time_neutral_pct),
        "slouch_count": t.slouch_count,
        "slouches_per_hour": _num(t.slouches_per_hour),
        "longest_slouch_s": _num(t.longest_slouch_s),
        "sitting_bouts_over_30min": t.sitting_bouts_over_30min,
        "rtm": [{"start": p.start.isoformat(), "end": p.end.isoformat(), "days": p.days,
                 "days_with_data": p.days_with_data, "meets_2_to_15_days": p.meets_2_to_15_days,
                 "meets_16_plus_days": p.meets_16_plus_days, "band": p.band} for p in r.rtm],
        "days": [{"date": d.date.isoformat(), "wear_time_min": _num(d.wear_time_min), "worn_min": d.worn_min,
                  "neutral_min": d.neutral_min, "mild_min": d.mild_min, "severe_min": d.severe_min,
                  "time_neutral_pct": _num(d.time_neutral_pct), "slouch_count": d.slouch_count,
                  "slouches_per_hour": _num(d.slouches_per_hour), "longest_slouch_s": _num(d.longest_slouch_s),
                  "sitting_bouts_over_30min": d.sitting_bouts_over_30min,
                  "mean_flexion_deg": _num(d.mean_flexion_deg), "has_data": d.has_data} for d in r.days],
        "trend": {"baseline_days": r.baseline_days,
                  "time_neutral_pct": {"baseline": _num(r.baseline_neutral_pct), "sdc": _num(r.sdc_neutral_pct)},
                  "slouches_per_hour": {"baseline": _num(r.baseline_slouches_per_hour),
                                        "sdc": _num(r.sdc_slouches_per_hour)}},
        "slouches_by_hour_of_day": r.by_hour.sum(axis=0).tolist(),
        "settings": settings_rows(r),
        "transit_lost_messages": r.transit_lost_messages,
        "transit_lost_min": round(r.transit_lost_min, 2),
    }
