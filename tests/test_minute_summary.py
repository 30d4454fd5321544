"""Per-minute daily figures and RTM periods: pure arithmetic checked against hand-made days."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from spinewatch.signal.minute_summary import (
    NS_PER_MIN,
    day_figures,
    local_day_edges_ns,
    period_figures,
    sitting_bout_starts_ns,
    slouches_by_hour,
)
from spinewatch.signal.rtm import rtm_periods

# minutes(): wear and upright-still seconds of each minute (60 = a full minute)
D0 = dt.date(2026, 3, 1)


def utc_ns(y, mo, d, h=0, mi=0) -> int:
    return int(dt.datetime(y, mo, d, h, mi, tzinfo=dt.UTC).timestamp()) * 10**9


def minutes(start_ns: int, n: int, flex: float = 5.0, samples: float = 60, still: float = 0):
    t = start_ns + NS_PER_MIN * np.arange(n, dtype=np.int64)
    return t, np.full(n, flex), np.full(n, samples), np.full(n, still)


def cat(*parts):
    return tuple(np.concatenate(x) for x in zip(*parts, strict=True))


def test_new_york_days_run_from_local_midnight_and_split_a_session_across_midnight():
    dates, edges = local_day_edges_ns(dt.date(2026, 1, 10), dt.date(2026, 1, 11), "America/New_York")
    assert edges[0] == utc_ns(2026, 1, 10, 5)  # EST = UTC-5
    # 23:30-00:30 local = 04:30-05:30 UTC, all one UTC day, two local days
    t, f, n, s = minutes(utc_ns(2026, 1, 11, 4, 30), 60)
    days = day_figures(t, f, n, s, dates, edges, [], [], threshold_deg=20, severe_deg=30,
                       min_wear_min=1)
    assert [d.wear_time_min for d in days] == [30.0, 30.0]


def test_dst_day_has_23_hours():
    _, edges = local_day_edges_ns(dt.date(2026, 3, 8), dt.date(2026, 3, 8), "America/New_York")
    assert edges[1] - edges[0] == 23 * 3600 * 10**9


def test_zones_wear_and_min_wear_per_day():
    dates, edges = local_day_edges_ns(D0, D0 + dt.timedelta(days=2), "UTC")
    t, f, n, s = cat(
        minutes(utc_ns(2026, 3, 1, 8), 10, flex=5.0),      # 10 neutral
        minutes(utc_ns(2026, 3, 1, 9), 4, flex=25.0),      # 4 mild
        minutes(utc_ns(2026, 3, 1, 10), 6, flex=30.0),     # 6 severe (30 is severe)
        minutes(utc_ns(2026, 3, 2, 8), 1, samples=30),     # half a minute of data: below min_wear_min
    )
    days = day_figures(t, f, n, s, dates, edges, [utc_ns(2026, 3, 1, 9, 1)], [45.0],
                       threshold_deg=20, severe_deg=30, min_wear_min=1)
    d1, d2, d3 = days
    assert (d1.worn_min, d1.neutral_min, d1.mild_min, d1.severe_min) == (20, 10, 4, 6)
    assert d1.time_neutral_pct == 50.0 and d1.wear_time_min == 20.0 and d1.has_data
    assert d1.slouch_count == 1 and d1.longest_slouch_s == 45.0 and d1.slouches_per_hour == 3.0
    assert d2.wear_time_min == 0.5 and d2.worn_min == 1 and not d2.has_data
    assert d3.wear_time_min == 0 and not d3.has_data and np.isnan(d3.time_neutral_pct)
    p = period_figures(days)
    assert p.days_with_data == 1 and p.wear_time_min == 20.5 and p.slouch_count == 1
    assert p.time_neutral_pct == pytest.approx(100 * 11 / 21)


def test_threshold_in_force_can_change_per_minute():
    dates, edges = local_day_edges_ns(D0, D0, "UTC")
    t, f, n, s = minutes(utc_ns(2026, 3, 1, 8), 10, flex=22.0)
    thr = np.where(np.arange(10) < 5, 20.0, 25.0)  # threshold raised to 25 after 5 minutes
    (d,) = day_figures(t, f, n, s, dates, edges, [], [], threshold_deg=thr, severe_deg=30,
                       min_wear_min=1)
    assert (d.neutral_min, d.mild_min) == (5, 5)


@pytest.mark.parametrize(("still_min", "bouts"), [(29, 0), (30, 1), (95, 1)])
def test_sitting_bout_needs_a_full_window_of_upright_still(still_min, bouts):
    t, _, _, s = minutes(utc_ns(2026, 3, 1, 8), still_min, still=60)
    assert len(sitting_bout_starts_ns(t, s)) == bouts


def test_a_gap_in_the_data_breaks_a_sitting_bout_and_the_bout_starts_at_its_first_window():
    a = minutes(utc_ns(2026, 3, 1, 8), 40, still=60)
    b = minutes(utc_ns(2026, 3, 1, 8, 45), 35, still=60)  # 5 minutes without data in between
    t, _, _, s = cat(a, b)
    # the second bout's first window (29 still minutes of 30 = 96.7 %) starts in the last empty minute
    assert sitting_bout_starts_ns(t, s).tolist() == [utc_ns(2026, 3, 1, 8), utc_ns(2026, 3, 1, 8, 44)]


def test_slouches_by_local_hour():
    _, edges = local_day_edges_ns(D0, D0, "Europe/Berlin")  # UTC+1 in March before DST
    m = slouches_by_hour([utc_ns(2026, 3, 1, 8, 10), utc_ns(2026, 3, 1, 8, 50), utc_ns(2026, 3, 2, 9)],
                         edges, "Europe/Berlin")
    assert m.shape == (1, 24) and m[0, 9] == 2 and m.sum() == 2


def test_trend_band_is_the_dashboards_sdc95_over_the_baseline_days_with_data():
    from spinewatch.signal.minute_summary import SDC95_PER_MAD, baseline_band

    nan = float("nan")
    centre, sdc = baseline_band([50, 60, nan, 70, 80, nan, nan, 5, 5], 7)  # days 8-9 are after the baseline
    assert centre == 65.0 and sdc == pytest.approx(SDC95_PER_MAD * 10.0)  # MAD (15+5+5+15)/4
    assert SDC95_PER_MAD == pytest.approx(1.96 * np.sqrt(2) * np.sqrt(np.pi / 2))
    c2, s2 = baseline_band([40, nan, 42], 7)  # two days with data: no estimate of day-to-day spread
    assert c2 == 41.0 and np.isnan(s2)
    assert all(np.isnan(baseline_band([nan] * 7, 7)))


@pytest.mark.parametrize(("n_days", "low", "high"), [(0, False, False), (1, False, False), (2, True, False),
                                                     (15, True, False), (16, False, True), (30, False, True)])
def test_rtm_thresholds(n_days, low, high):
    dates = [D0 + dt.timedelta(days=k) for k in range(30)]
    (p,) = rtm_periods(dates, [k < n_days for k in range(30)])
    assert (p.days_with_data, p.meets_2_to_15_days, p.meets_16_plus_days) == (n_days, low, high)
    assert p.band == ("16+" if high else "2-15" if low else "none")
    assert not (low and high), "the code families are exclusive"


def test_rtm_periods_are_30_days_from_the_first_day_and_the_last_may_be_shorter():
    dates = [D0 + dt.timedelta(days=k) for k in range(65)]
    ps = rtm_periods(dates, [True] * 65)
    assert [(p.start, p.days, p.days_with_data) for p in ps] == [
        (D0, 30, 30), (D0 + dt.timedelta(days=30), 30, 30), (D0 + dt.timedelta(days=60), 5, 5)]
    with pytest.raises(ValueError, match="consecutive"):
        rtm_periods([D0, D0 + dt.timedelta(days=2)], [True, True])
