"""Per-day and per-period posture figures from per-minute series (what long reports read).

Pure arithmetic on arrays (no I/O). The definitions are the dashboards' ones
(docs/dashboards.md "Definitions"), computed per local day of the patient instead of per
UTC day:

- wear time: the sum of the posture samples' own periods (each sample stands for its
  message's ``dt_ns``), seconds / 60, minutes: the same at 10 Hz as at 200 Hz;
- worn minute: a minute with at least one sample (wear seconds > 0);
- zone of a minute: by its **mean** flexion, neutral below ``threshold_deg``, mild from
  ``threshold_deg`` to below ``severe_deg``, severe from ``severe_deg`` (lying counts as
  neutral, as on the dashboards);
- time neutral: neutral minutes / worn minutes x 100;
- slouch episode: counted on the day and hour it starts;
- prolonged sitting: a run of minutes whose trailing ``sit_bout_min``-minute window is at
  least ``sit_min_share`` upright still (upright-still seconds / 60 s; minutes without data
  count as not still), counted once per run, on the day its first window starts;
- day with data: a day with at least ``min_wear_min`` minutes of wear time.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from spinewatch.model import NS_PER_MIN, NS_PER_S

SIT_BOUT_MIN: Final = 30  # prolonged sitting window, minutes (dashboards' sit_bout_min)
SIT_MIN_SHARE: Final = 0.95  # share of the window upright still that makes it a sitting bout (dashboards)

FloatOrArray = float | npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class DayFigures:
    """One local calendar day of one patient.

    Attributes:
        date: local calendar date (patient's time zone).
        wear_time_min: wear seconds (the samples' own periods) / 60, minutes.
        worn_min: minutes with at least one sample.
        neutral_min, mild_min, severe_min: worn minutes whose mean flexion is in each zone.
        slouch_count: slouch episodes starting that day.
        longest_slouch_s: longest of them, seconds (0 if none).
        sitting_bouts_over_30min: prolonged-sitting bouts starting that day.
        mean_flexion_deg: wear-time-weighted mean flexion, degrees (NaN without data).
        has_data: wear_time_min >= min_wear_min (a day with data, RTM).
    """

    date: dt.date
    wear_time_min: float
    worn_min: int
    neutral_min: int
    mild_min: int
    severe_min: int
    slouch_count: int
    longest_slouch_s: float
    sitting_bouts_over_30min: int
    mean_flexion_deg: float
    has_data: bool

    @property
    def time_neutral_pct(self) -> float:
        """Neutral minutes / worn minutes x 100 (NaN without worn minutes)."""
        return 100.0 * self.neutral_min / self.worn_min if self.worn_min else float("nan")

    @property
    def slouches_per_hour(self) -> float:
        """Episodes per wear hour (NaN without wear)."""
        return self.slouch_count / (self.wear_time_min / 60.0) if self.wear_time_min > 0 else float("nan")


@dataclass(frozen=True, slots=True)
class PeriodFigures:
    """Totals over a report's days (every minute in the range, whether its day counts or not).

    Attributes:
        days_with_data: days with at least min_wear_min minutes of wear time.
        wear_time_min: minutes of wear time.
        time_neutral_pct: neutral minutes / worn minutes x 100 (NaN without data).
        slouch_count: episodes.
        slouches_per_hour: episodes per wear hour (0 without wear).
        longest_slouch_s: longest episode, seconds (0 if none).
        sitting_bouts_over_30min: prolonged-sitting bouts.
    """

    days_with_data: int
    wear_time_min: float
    time_neutral_pct: float
    slouch_count: int
    slouches_per_hour: float
    longest_slouch_s: float
    sitting_bouts_over_30min: int


def local_day_edges_ns(first: dt.date, last: dt.date, tz: str) -> tuple[list[dt.date], npt.NDArray[np.int64]]:
    """Local dates ``first..last`` (inclusive) and their midnights as UTC ns.

    Returns:
        ``(dates, edges)``, ``len(edges) == len(dates) + 1``; day k is ``[edges[k], edges[k+1])``.
        A day crossing a DST change lasts 23 or 25 hours.

    Raises:
        ValueError: ``last`` before ``first``.
    """
    if last < first:
        raise ValueError(f"last ({last}) is before first ({first})")
    zone = ZoneInfo(tz)
    dates = [first + dt.timedelta(days=k) for k in range((last - first).days + 1)]
    edges = [int(dt.datetime.combine(d, dt.time(), zone).timestamp()) * NS_PER_S
             for d in [*dates, last + dt.timedelta(days=1)]]
    return dates, np.array(edges, dtype=np.int64)


def sitting_bout_starts_ns(
    t_ns: npt.ArrayLike, still_s: npt.ArrayLike,
    window_min: int = SIT_BOUT_MIN, min_share: float = SIT_MIN_SHARE,
) -> npt.NDArray[np.int64]:
    """Start times of prolonged-sitting bouts (the dashboards' "Minutes in prolonged sitting").

    Each minute's upright-still share is ``still_s / 60`` (0 for minutes without data). A
    minute *qualifies* when the mean share over it and the ``window_min - 1`` minutes before it
    is at least ``min_share``; a run of qualifying minutes is one bout, starting at the first
    minute of its first window.

    Args:
        t_ns: (M,) int64 UTC minute starts, ns, increasing, multiples of 60 s.
        still_s: (M,) seconds of each minute with activity "upright still" (the samples' own periods).
        window_min: window length, minutes.
        min_share: share of the window upright still, 0..1.

    Returns:
        (B,) int64 UTC ns.
    """
    t = np.asarray(t_ns, dtype=np.int64)
    still = np.asarray(still_s, dtype=np.float64)
    if t.shape != still.shape or t.ndim != 1:
        raise ValueError(f"t_ns and still_s must be equal-length 1-D arrays, got {t.shape}, {still.shape}")
    if window_min < 1:
        raise ValueError(f"need window_min >= 1, got {window_min}")
    if t.size == 0:
        return np.zeros(0, np.int64)
    m0 = t[0] // NS_PER_MIN
    idx = t // NS_PER_MIN - m0
    share = np.zeros(int(idx[-1]) + 1)
    share[idx] = still / 60.0
    if share.size < window_min:
        return np.zeros(0, np.int64)
    c = np.concatenate(([0.0], np.cumsum(share)))
    mean = (c[window_min:] - c[:-window_min]) / window_min  # mean[j]: window ending at minute j + window_min - 1
    ok = mean >= min_share - 1e-9
    first = np.flatnonzero(ok & ~np.concatenate(([False], ok[:-1])))
    out: npt.NDArray[np.int64] = ((first + m0) * NS_PER_MIN).astype(np.int64)
    return out


def _per_minute(x: FloatOrArray, m: int, name: str) -> npt.NDArray[np.float64]:
    a = np.broadcast_to(np.asarray(x, dtype=np.float64), (m,)) if np.ndim(x) == 0 else np.asarray(x, np.float64)
    if a.shape != (m,):
        raise ValueError(f"{name} must be a number or have shape ({m},), got {a.shape}")
    return a


def day_figures(
    t_ns: npt.ArrayLike,
    flexion_mean_deg: npt.ArrayLike,
    wear_s: npt.ArrayLike,
    still_s: npt.ArrayLike,
    dates: Sequence[dt.date],
    day_edges_ns: npt.ArrayLike,
    slouch_start_ns: npt.ArrayLike,
    slouch_duration_s: npt.ArrayLike,
    *,
    threshold_deg: FloatOrArray,
    severe_deg: FloatOrArray,
    min_wear_min: float,
    sit_bout_min: int = SIT_BOUT_MIN,
    sit_min_share: float = SIT_MIN_SHARE,
) -> list[DayFigures]:
    """Figures of every day in ``dates`` (days without data included, ``has_data`` False).

    Args:
        t_ns: (M,) int64 UTC minute starts, ns, increasing.
        flexion_mean_deg: (M,) mean flexion of each minute, degrees (relative to neutral).
        wear_s: (M,) wear seconds of each minute: the sum of its samples' own periods.
        still_s: (M,) of them with activity "upright still", seconds.
        dates: (D,) local dates; day k is ``[day_edges_ns[k], day_edges_ns[k + 1])``.
        day_edges_ns: (D + 1,) int64 UTC ns (see :func:`local_day_edges_ns`).
        slouch_start_ns: (K,) int64 UTC episode starts, ns.
        slouch_duration_s: (K,) episode durations, seconds.
        threshold_deg, severe_deg: zone limits in force, degrees: one number, or (M,) per minute.
        min_wear_min: wear time that makes a day a day with data, minutes.
        sit_bout_min, sit_min_share: prolonged-sitting window (:func:`sitting_bout_starts_ns`).
    """
    t = np.asarray(t_ns, dtype=np.int64)
    flex = np.asarray(flexion_mean_deg, dtype=np.float64)
    n = np.asarray(wear_s, dtype=np.float64)
    still = np.asarray(still_s, dtype=np.float64)
    edges = np.asarray(day_edges_ns, dtype=np.int64)
    ss = np.asarray(slouch_start_ns, dtype=np.int64).reshape(-1)
    sd = np.asarray(slouch_duration_s, dtype=np.float64).reshape(-1)
    m = t.size
    if not (t.shape == flex.shape == n.shape == still.shape) or t.ndim != 1:
        raise ValueError("t_ns, flexion_mean_deg, wear_s, still_s must be equal-length 1-D arrays, got "
                         f"{t.shape}, {flex.shape}, {n.shape}, {still.shape}")
    if edges.shape != (len(dates) + 1,):
        raise ValueError(f"day_edges_ns must have shape ({len(dates) + 1},), got {edges.shape}")
    if ss.shape != sd.shape:
        raise ValueError(f"slouch_start_ns and slouch_duration_s differ in shape: {ss.shape}, {sd.shape}")
    if not min_wear_min >= 0:
        raise ValueError(f"min_wear_min must be >= 0, got {min_wear_min}")
    if m and np.any(np.diff(t) <= 0):
        raise ValueError("t_ns must be strictly increasing")
    thr = _per_minute(threshold_deg, m, "threshold_deg")
    sev = _per_minute(severe_deg, m, "severe_deg")
    worn = n > 0
    neutral = worn & (flex < thr)
    severe = worn & (flex >= sev)
    mild = worn & ~neutral & ~severe & np.isfinite(flex)
    bounds = np.searchsorted(t, edges)
    # cumulative sums turn every per-day total into two look-ups
    def cum(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return np.concatenate(([0.0], np.cumsum(x)))

    c_n, c_worn, c_neu, c_mild, c_sev = (cum(x.astype(np.float64)) for x in (n, worn, neutral, mild, severe))
    c_flex = cum(np.where(worn & np.isfinite(flex), flex * n, 0.0))
    c_nflex = cum(np.where(worn & np.isfinite(flex), n, 0.0))
    ep_day = np.searchsorted(edges, ss, side="right") - 1
    bouts = sitting_bout_starts_ns(t, still, sit_bout_min, sit_min_share)
    bout_day = np.searchsorted(edges, bouts, side="right") - 1
    out = []
    for k, day in enumerate(dates):
        a, b = int(bounds[k]), int(bounds[k + 1])
        wear = (c_n[b] - c_n[a]) / 60.0
        mine = sd[ep_day == k]
        nf = c_nflex[b] - c_nflex[a]
        out.append(DayFigures(
            date=day,
            wear_time_min=float(wear),
            worn_min=int(c_worn[b] - c_worn[a]),
            neutral_min=int(c_neu[b] - c_neu[a]),
            mild_min=int(c_mild[b] - c_mild[a]),
            severe_min=int(c_sev[b] - c_sev[a]),
            slouch_count=int(mine.size),
            longest_slouch_s=float(mine.max()) if mine.size else 0.0,
            sitting_bouts_over_30min=int(np.count_nonzero(bout_day == k)),
            mean_flexion_deg=float((c_flex[b] - c_flex[a]) / nf) if nf > 0 else float("nan"),
            has_data=bool(wear >= min_wear_min and wear > 0),
        ))
    return out


def period_figures(days: Sequence[DayFigures]) -> PeriodFigures:
    """Totals of ``days`` (the report's first page and its JSON)."""
    wear = float(sum(d.wear_time_min for d in days))
    worn = sum(d.worn_min for d in days)
    slouches = sum(d.slouch_count for d in days)
    return PeriodFigures(
        days_with_data=sum(d.has_data for d in days),
        wear_time_min=wear,
        time_neutral_pct=100.0 * sum(d.neutral_min for d in days) / worn if worn else float("nan"),
        slouch_count=slouches,
        slouches_per_hour=slouches / (wear / 60.0) if wear > 0 else 0.0,
        longest_slouch_s=max((d.longest_slouch_s for d in days), default=0.0),
        sitting_bouts_over_30min=sum(d.sitting_bouts_over_30min for d in days),
    )


def slouches_by_hour(slouch_start_ns: npt.ArrayLike, day_edges_ns: npt.ArrayLike, tz: str) -> npt.NDArray[np.int64]:
    """Episodes per local day and local hour of day (by start).

    Args:
        slouch_start_ns: (K,) int64 UTC episode starts, ns.
        day_edges_ns: (D + 1,) int64 local midnights, UTC ns.
        tz: IANA time zone of the days.

    Returns:
        (D, 24) counts; episodes outside the days are left out. In the hour repeated when
        DST ends, both occurrences count in the same hour of day.
    """
    edges = np.asarray(day_edges_ns, dtype=np.int64)
    out = np.zeros((max(0, edges.size - 1), 24), np.int64)
    zone = ZoneInfo(tz)
    for s in np.asarray(slouch_start_ns, dtype=np.int64).reshape(-1):
        k = int(np.searchsorted(edges, s, side="right")) - 1
        if 0 <= k < out.shape[0]:
            out[k, dt.datetime.fromtimestamp(int(s) / NS_PER_S, zone).hour] += 1
    return out


BASELINE_DAYS: Final = 7  # trend band: the first week of the range (therapy start) is the baseline
SDC95_PER_MAD: Final = 1.96 * math.sqrt(math.pi)  # 3.474: SDC95 = 1.96 sqrt(2) SD, SD ~= sqrt(pi/2) MAD
MIN_BASELINE_DAYS: Final = 3  # fewer baseline days with data give no estimate of day-to-day variation


def baseline_band(daily: Sequence[float], baseline_days: int) -> tuple[float, float]:
    """Centre and half-width of the smallest-detectable-change band (the dashboards' definition).

    Baseline: the days with data (finite values) among the first ``baseline_days`` days.
    Centre: their mean. Half-width: SDC95 = 1.96 x sqrt(2) x SD of those days (Jacobson & Truax
    1991), with SD estimated as sqrt(pi/2) x their mean absolute deviation about the mean, as the
    Patient trends dashboard must (Grafana expressions have no square root), so both agree.

    Returns:
        ``(centre, sdc95)``; ``sdc95`` is NaN with fewer than MIN_BASELINE_DAYS baseline days,
        ``centre`` NaN without any.
    """
    v = np.asarray(daily[:baseline_days], dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    centre = float(v.mean())
    if v.size < MIN_BASELINE_DAYS:
        return centre, float("nan")
    return centre, SDC95_PER_MAD * float(np.abs(v - centre).mean())
