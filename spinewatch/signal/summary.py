"""Daily posture summaries from a posture series: wear, zones, slouches, sedentary bouts.

Pure arithmetic on arrays (no I/O). Days run from local midnight to local midnight in the
patient's time zone (IANA name, e.g. ``Europe/Berlin``), so a day that crosses a DST change
has 23 or 25 hours.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from spinewatch.model import NS_PER_S
from spinewatch.signal.activity import Activity


@dataclass(frozen=True, slots=True)
class ZoneLimits:
    """Flexion zones relative to neutral, degrees: neutral < threshold_deg <= mild < severe_deg <= severe."""

    threshold_deg: float = 20.0
    severe_deg: float = 30.0

    def __post_init__(self) -> None:
        if not 0 < self.threshold_deg < self.severe_deg < 90:
            raise ValueError(
                f"need 0 < threshold_deg < severe_deg < 90, got {self.threshold_deg}, {self.severe_deg}"
            )


@dataclass(frozen=True, slots=True)
class DaySummary:
    """One local day of one patient.

    Attributes:
        date: local calendar date.
        wear_time_min: minutes with posture samples.
        neutral_min, mild_min, severe_min: upright minutes with flexion in each zone.
        lying_min: minutes lying (not in any zone).
        time_neutral_pct: neutral share of upright minutes, %.
        slouch_count: slouch episodes starting that day.
        slouches_per_hour: slouch_count per worn hour.
        longest_slouch_s: longest episode starting that day, seconds (0 if none).
        sedentary_bouts_over_30min: upright-still bouts longer than 30 min (interruptions
            shorter than ``bout_break_s`` do not end a bout).
    """

    date: dt.date
    wear_time_min: float
    neutral_min: float
    mild_min: float
    severe_min: float
    lying_min: float
    time_neutral_pct: float
    slouch_count: int
    slouches_per_hour: float
    longest_slouch_s: float
    sedentary_bouts_over_30min: int


def local_midnights_ns(first_ns: int, last_ns: int, tz: str) -> tuple[list[dt.date], npt.NDArray[np.int64]]:
    """Local calendar dates covering [first_ns, last_ns] and their start instants (UTC ns).

    Returns:
        ``(dates, edges)`` with ``len(edges) == len(dates) + 1``; day k is
        ``[edges[k], edges[k + 1])``.
    """
    zone = ZoneInfo(tz)
    d0 = dt.datetime.fromtimestamp(first_ns / NS_PER_S, zone).date()
    d1 = dt.datetime.fromtimestamp(last_ns / NS_PER_S, zone).date()
    dates = [d0 + dt.timedelta(days=k) for k in range((d1 - d0).days + 1)]
    edges = [
        int(dt.datetime.combine(d, dt.time(), zone).timestamp()) * NS_PER_S
        for d in [*dates, dates[-1] + dt.timedelta(days=1)]
    ]
    return dates, np.array(edges, dtype=np.int64)


def sedentary_bouts(
    t_ns: npt.NDArray[np.int64], still: npt.NDArray[np.bool_], min_bout_s: float, bout_break_s: float
) -> list[tuple[int, int]]:
    """Bouts of ``still`` samples lasting >= ``min_bout_s``; breaks shorter than
    ``bout_break_s`` (and gaps in the data shorter than that) do not end a bout.

    Returns:
        ``[(start_ns, end_ns), ...]``.
    """
    idx = np.flatnonzero(still)
    if idx.size == 0:
        return []
    ts = t_ns[idx]
    # a new bout starts where the time since the previous still sample exceeds the break
    gaps = np.flatnonzero(np.diff(ts) > bout_break_s * NS_PER_S)
    starts = np.concatenate(([0], gaps + 1))
    ends = np.concatenate((gaps, [ts.size - 1]))
    return [
        (int(ts[a]), int(ts[b])) for a, b in zip(starts, ends, strict=True)
        if ts[b] - ts[a] >= min_bout_s * NS_PER_S
    ]


def daily_summaries(
    t_ns: npt.ArrayLike,
    flexion_deg: npt.ArrayLike,
    activity: npt.ArrayLike,
    episodes_ns: npt.ArrayLike,
    rate_hz: float,
    *,
    zones: ZoneLimits | None = None,
    tz: str = "UTC",
    min_bout_s: float = 30 * 60.0,
    bout_break_s: float = 60.0,
) -> list[DaySummary]:
    """Summaries per local day.

    Args:
        t_ns: (N,) int64 UTC sample times, ns, increasing.
        flexion_deg: (N,) flexion relative to neutral, degrees (NaN = no estimate).
        activity: (N,) int :class:`Activity` per sample.
        episodes_ns: (K, 2) int64 slouch episodes ``[start_ns, end_ns)``.
        rate_hz: sample rate, Hz (a sample counts as 1 / rate_hz of wear).
        zones: flexion zone limits.
        tz: IANA time zone of the patient.
        min_bout_s: shortest sedentary bout counted, seconds (30 min).
        bout_break_s: interruptions shorter than this do not end a bout, seconds.
    """
    t = np.asarray(t_ns, dtype=np.int64)
    flex = np.asarray(flexion_deg, dtype=np.float64)
    act = np.asarray(activity)
    ep = np.asarray(episodes_ns, dtype=np.int64).reshape(-1, 2)
    if not (t.shape == flex.shape == act.shape) or t.ndim != 1:
        raise ValueError(f"t_ns, flexion_deg, activity must be equal-length 1-D arrays, got "
                         f"{t.shape}, {flex.shape}, {act.shape}")
    if not rate_hz > 0:
        raise ValueError(f"rate_hz must be > 0, got {rate_hz}")
    if t.size and np.any(np.diff(t) <= 0):
        raise ValueError("t_ns must be strictly increasing")
    z = zones or ZoneLimits()
    if t.size == 0:
        return []
    dates, edges = local_midnights_ns(int(t[0]), int(t[-1]), tz)
    bounds = np.searchsorted(t, edges)
    ep_day = np.searchsorted(edges, ep[:, 0], side="right") - 1
    bouts = sedentary_bouts(t, act == Activity.UPRIGHT_STILL, min_bout_s, bout_break_s)
    bout_day = np.searchsorted(edges, [b[0] for b in bouts], side="right") - 1 if bouts else np.zeros(0)
    per_min = 1.0 / (rate_hz * 60.0)
    out = []
    for k, day in enumerate(dates):
        a, b = bounds[k], bounds[k + 1]
        if a == b:
            continue
        f, ac = flex[a:b], act[a:b]
        upright = (ac == Activity.UPRIGHT_STILL) | (ac == Activity.UPRIGHT_MOVING)
        fu = f[upright & np.isfinite(f)]
        neutral = float(np.count_nonzero(fu < z.threshold_deg)) * per_min
        severe = float(np.count_nonzero(fu >= z.severe_deg)) * per_min
        mild = float(fu.size) * per_min - neutral - severe
        wear = (b - a) * per_min
        mine = ep[ep_day == k]
        durations = (mine[:, 1] - mine[:, 0]) / NS_PER_S
        up_min = neutral + mild + severe
        out.append(DaySummary(
            date=day, wear_time_min=round(wear, 3), neutral_min=round(neutral, 3),
            mild_min=round(mild, 3), severe_min=round(severe, 3),
            lying_min=round(float(np.count_nonzero(ac == Activity.LYING)) * per_min, 3),
            time_neutral_pct=round(100.0 * neutral / up_min, 2) if up_min > 0 else 0.0,
            slouch_count=int(len(mine)),
            slouches_per_hour=round(len(mine) / (wear / 60.0), 3) if wear > 0 else 0.0,
            longest_slouch_s=round(float(durations.max()), 2) if len(mine) else 0.0,
            sedentary_bouts_over_30min=int(np.count_nonzero(bout_day == k)),
        ))
    return out
