"""The embedded SQLite store's per-minute figures equal a sample-by-sample count."""

from __future__ import annotations

import numpy as np

from spinewatch.service.storage import NS_PER_MIN, SqliteStore
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
