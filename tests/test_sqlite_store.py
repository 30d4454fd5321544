"""The embedded SQLite store's per-minute figures equal a sample-by-sample count."""

from __future__ import annotations

import numpy as np

from spinewatch.model import SlouchEvent
from spinewatch.service.storage import NS_PER_MIN, SqliteStore, stored_duration_s
from spinewatch.service.storage.base import stored_episode
from spinewatch.service.transport.wire import PostureMsg

T0 = 1_700_000_000 * 10**9 // NS_PER_MIN * NS_PER_MIN


def _messages(rng: np.random.Generator) -> list[PostureMsg]:
    """Two devices of one patient, 1-s and 0.5-s messages, one device without state/activity, some NaN."""
    out = []
    for device, dt_ns, n, with_state in (("d1", 10**7, 100, True), ("d2", 2 * 10**7, 25, False)):
        for k in range(400):
            flex = rng.normal(15, 10, n)
            flex[rng.random(n) < 0.05] = np.nan
            state = (flex > 20).astype(np.int8) if with_state else None
            activity = rng.integers(1, 4, n).astype(np.int8) if with_state else None
            out.append(PostureMsg("p", device, T0 + k * n * dt_ns, dt_ns, flex, rng.normal(0, 3, n), state, activity))
    out.append(PostureMsg("other", "d1", T0, 10**7, np.full(100, 50.0), np.zeros(100), None, None))
    return out


def test_minutes_count_every_stored_sample_of_every_device(tmp_path):
    msgs = _messages(np.random.default_rng(7))
    store = SqliteStore(tmp_path / "s.db")
    store.write(msgs[::-1])  # stored order does not matter
    start, end = T0 + 90 * 10**9, T0 + 6 * NS_PER_MIN  # starts inside a message of each device
    got = store.minutes("p", start, end)

    rows = []
    for m in msgs:
        if m.patient != "p":
            continue
        for i in range(len(m)):
            t = m.t0_ns + i * m.dt_ns
            if start <= t < end and not np.isnan(m.flexion_deg[i]):
                st = 0 if m.state is None else m.state[i]
                rows.append((t // NS_PER_MIN, m.flexion_deg[i], st, m.activity is not None and m.activity[i] == 2))
    minutes = sorted({r[0] for r in rows})
    assert got.t_ns.tolist() == [mi * NS_PER_MIN for mi in minutes]
    for j, mi in enumerate(minutes):
        mine = [r for r in rows if r[0] == mi]
        assert got.samples[j] == len(mine)
        assert abs(got.flexion_mean_deg[j] - np.mean([r[1] for r in mine])) < 1e-4  # float32 on disk
        assert abs(got.slouch_fraction[j] - np.mean([r[2] for r in mine])) < 1e-12
        assert got.still_samples[j] == sum(r[3] for r in mine)


def test_episodes_read_back_as_the_events_written(tmp_path):
    """One episode type in and out: the stored end_ns exactly, duration_s kept to 0.01 s."""
    evs = [SlouchEvent("p", "d2", T0, T0 + 40_123_456_789, 33.3, 30.1),  # a 200 Hz-ish end
           SlouchEvent("p", "d1", T0, T0 + 75 * 10**9, 25.5, None),
           SlouchEvent("other", "d1", T0, T0 + 10**9, 30.0, 28.0)]
    store = SqliteStore(tmp_path / "s.db")
    store.write(evs)
    got = store.episodes("p", T0, T0 + 1)
    assert got == [evs[1], evs[0]]  # by start, then device
    (stored,) = store._db.execute("SELECT duration_s FROM slouch WHERE device = 'd2'").fetchone()
    assert stored == 40.12 == stored_duration_s(got[1]) and got[1].duration_s == 40.123456789
    store.close()


def test_points_without_end_ns_get_it_from_their_stored_duration():
    """end_ns = start_ns + round(duration_s * 1e9): the duration_s property is the stored one again."""
    e = stored_episode("p", "d1", T0, 40.12, 33.0, None, None)
    assert (e.end_ns, e.duration_s, stored_duration_s(e)) == (T0 + 40_120_000_000, 40.12, 40.12)
    assert stored_episode("p", "d1", T0, 40.12, 33.0, 30, T0 + 40_123_456_789).end_ns == T0 + 40_123_456_789
    for k in [*range(0, 200_000, 7), 99_999_999, 12_345_678]:  # every 0.01 s below 10**6 s round-trips
        d = round(k / 100, 2)
        e = stored_episode("p", "d1", T0, d, 0.0, None, None)
        assert e.duration_s == d == stored_duration_s(e), d
