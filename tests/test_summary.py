"""Daily summaries: zones, wear, slouches, sedentary bouts, local days."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from spinewatch.signal.activity import Activity
from spinewatch.signal.summary import ZoneLimits, daily_summaries, local_midnights_ns

RATE_HZ = 1.0  # one sample per second keeps the arithmetic readable
MIDNIGHT_UTC_NS = int(dt.datetime(2026, 11, 25, tzinfo=dt.UTC).timestamp()) * 10**9
STILL, MOVING, LYING = Activity.UPRIGHT_STILL, Activity.UPRIGHT_MOVING, Activity.LYING


def series(start_ns: int, *parts: tuple[float, float, int]):
    """Consecutive parts of (minutes, flexion_deg, activity) at 1 Hz from start_ns."""
    flex, act = [], []
    for minutes, f, a in parts:
        n = int(minutes * 60)
        flex += [f] * n
        act += [a] * n
    t = start_ns + np.arange(len(flex), dtype=np.int64) * 10**9
    return t, np.array(flex), np.array(act, dtype=np.int8)


def test_minutes_per_zone_wear_and_neutral_share():
    t, f, a = series(MIDNIGHT_UTC_NS + 8 * 3600 * 10**9,
                     (120, 5, STILL), (10, 25, STILL), (5, 35, STILL), (20, -90, LYING), (15, 3, MOVING))
    (day,) = daily_summaries(t, f, a, np.zeros((0, 2)), RATE_HZ, zones=ZoneLimits(20, 30))
    assert day.date == dt.date(2026, 11, 25)
    assert (day.wear_time_min, day.neutral_min, day.mild_min, day.severe_min, day.lying_min) == (170, 135, 10, 5, 20)
    assert day.time_neutral_pct == pytest.approx(100 * 135 / 150, abs=0.01)


def test_slouches_count_on_the_day_they_start():
    t, f, a = series(MIDNIGHT_UTC_NS - 30 * 60 * 10**9, (60, 5, STILL))  # 23:30 to 00:30 UTC
    ep = np.array([[t[600], t[900]], [t[1700], t[2300]], [t[3000], t[3100]]])  # 5 min, 10 min, 100 s
    d1, d2 = daily_summaries(t, f, a, ep, RATE_HZ)
    assert (d1.slouch_count, d1.longest_slouch_s) == (2, 600.0)  # the second starts 23:58:20
    assert (d2.slouch_count, d2.longest_slouch_s) == (1, 100.0)
    assert d1.slouches_per_hour == pytest.approx(2 / 0.5) and d2.wear_time_min == 30


def test_sedentary_bout_survives_short_breaks_and_ends_at_long_ones():
    t, f, a = series(MIDNIGHT_UTC_NS, (45, 5, STILL), (0.5, 5, MOVING), (20, 5, STILL),  # one 65.5-min bout
                     (2, 5, MOVING), (25, 5, STILL),                                      # break; 25 min: too short
                     (3, 5, MOVING), (31, 5, STILL))                                      # a second bout
    (day,) = daily_summaries(t, f, a, np.zeros((0, 2)), RATE_HZ)
    assert day.sedentary_bouts_over_30min == 2


def test_days_follow_the_patients_time_zone():
    # 22:30 to 23:30 UTC is 23:30 to 00:30 in Berlin (UTC+1 in November)
    t, f, a = series(MIDNIGHT_UTC_NS + int(22.5 * 3600) * 10**9, (60, 5, STILL))
    utc = daily_summaries(t, f, a, np.zeros((0, 2)), RATE_HZ, tz="UTC")
    berlin = daily_summaries(t, f, a, np.zeros((0, 2)), RATE_HZ, tz="Europe/Berlin")
    assert [d.wear_time_min for d in utc] == [60]
    assert [(d.date.day, d.wear_time_min) for d in berlin] == [(25, 30), (26, 30)]


def test_a_dst_day_has_23_hours():
    start = int(dt.datetime(2026, 3, 29, 1, tzinfo=dt.UTC).timestamp()) * 10**9
    dates, edges = local_midnights_ns(start, start + 3600 * 10**9, "Europe/Berlin")
    assert dates == [dt.date(2026, 3, 29)] and (edges[1] - edges[0]) == 23 * 3600 * 10**9


def test_bad_input_names_the_problem():
    t, f, a = series(MIDNIGHT_UTC_NS, (1, 5, STILL))
    with pytest.raises(ValueError, match="equal-length"):
        daily_summaries(t, f[:-1], a, np.zeros((0, 2)), RATE_HZ)
    with pytest.raises(ValueError, match="increasing"):
        daily_summaries(t[::-1], f, a, np.zeros((0, 2)), RATE_HZ)
    with pytest.raises(ValueError, match="severe_deg"):
        ZoneLimits(30, 20)
    assert daily_summaries(t[:0], f[:0], a[:0], np.zeros((0, 2)), RATE_HZ) == []
