"""SQLite store: the demo's and the InfluxDB-less site's embedded database, read in SQL."""

from __future__ import annotations

import dataclasses
import json
import logging
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from spinewatch.model import NS_PER_MIN, SlouchEvent
from spinewatch.service.storage import transit
from spinewatch.service.storage.base import (
    EXPORT_WINDOW_NS,
    Message,
    MinuteSeries,
    PostureChunk,
    Record,
    check_measurement,
    empty_minutes,
    posture_chunk,
    stored_duration_s,
    stored_episode,
    time_windows,
)
from spinewatch.service.storage.transit import SeqGroup, SeqMsg, TransitLoss
from spinewatch.service.transport.wire import (
    ConfigMsg,
    PostureMsg,
    RecordMsg,
    StatusMsg,
)

_LOGGER = logging.getLogger(__name__)

# How far before a window a SQLite posture row (one message) may start and still reach into
# it: a message holds at most wire.MAX_SAMPLES samples, a day covers 60,000 samples down to 0.7 Hz.
SQLITE_LOOKBACK_NS: Final = 86_400 * 10**9


# --------------------------------------------------------------------------- SQLite


class SqliteStore:
    """Embedded local store for the demo and for sites without InfluxDB.

    ``posture`` holds one row per posture message (a chunk of evenly spaced samples, the
    arrays stored as little-endian binary columns), keyed by (patient, device, t0_ns);
    ``slouch`` one row per episode keyed by (patient, device, start_ns). INSERT OR REPLACE
    makes a redelivered message overwrite its own row, as InfluxDB overwrites its points.
    A row per message instead of per sample keeps an 8-hour day (2.9 M samples) a
    28,800-row write. Safe to use from several threads (one connection behind a lock).

    Args:
        path: database file (created with its parent folder if missing).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.address = f"sqlite:{self.path}"
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False)
        self._db.executescript(
            """
            PRAGMA journal_mode=WAL;
            PRAGMA synchronous=NORMAL;
            CREATE TABLE IF NOT EXISTS posture (
                patient TEXT NOT NULL, device TEXT NOT NULL, t0_ns INTEGER NOT NULL,
                dt_ns INTEGER NOT NULL, n INTEGER NOT NULL,
                flexion_deg BLOB NOT NULL, lateral_deg BLOB NOT NULL,  -- float32 LE, NaN = null
                state BLOB, activity BLOB,                              -- int8, NULL if not sent
                PRIMARY KEY (patient, device, t0_ns)) WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS device (
                patient TEXT NOT NULL, device TEXT NOT NULL, ts_ns INTEGER NOT NULL,
                fields TEXT NOT NULL,  -- JSON object of numeric status fields
                PRIMARY KEY (patient, device, ts_ns)) WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS patient_config (
                patient TEXT NOT NULL, device TEXT NOT NULL, ts_ns INTEGER NOT NULL,
                fields TEXT NOT NULL,  -- JSON: settings and author (audit)
                PRIMARY KEY (patient, device, ts_ns)) WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS record (
                measurement TEXT NOT NULL,  -- alert, calibration
                patient TEXT NOT NULL, device TEXT NOT NULL, ts_ns INTEGER NOT NULL,
                fields TEXT NOT NULL,  -- JSON object
                PRIMARY KEY (measurement, patient, device, ts_ns)) WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS posture_seq (  -- one row per posture message (transit.py)
                patient TEXT NOT NULL, device TEXT NOT NULL, seq_epoch INTEGER NOT NULL,
                t0_ns INTEGER NOT NULL, seq INTEGER NOT NULL, samples INTEGER NOT NULL,
                dt_ns INTEGER NOT NULL,
                PRIMARY KEY (patient, device, seq_epoch, t0_ns)) WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS slouch (
                patient TEXT NOT NULL, device TEXT NOT NULL, start_ns INTEGER NOT NULL,
                end_ns INTEGER NOT NULL, duration_s REAL, peak_deg REAL, mean_deg REAL,
                PRIMARY KEY (patient, device, start_ns)) WITHOUT ROWID;
            """
        )

    def write(self, msgs: Sequence[Message]) -> int:
        rows = []
        events = []
        statuses = []
        configs = []
        records = []
        seqs = []
        points = 0
        for m in msgs:
            if isinstance(m, SeqMsg):
                seqs.append((m.patient, m.device, m.seq_epoch, m.t0_ns, m.seq, m.samples, m.dt_ns))
            elif isinstance(m, StatusMsg):
                statuses.append((m.patient, m.device, m.t_ns, json.dumps(m.fields, sort_keys=True)))
            elif isinstance(m, ConfigMsg):
                configs.append((m.patient, m.device, m.t_ns,
                                json.dumps({**m.fields, "author": m.author, "timezone": m.timezone})))
            elif isinstance(m, RecordMsg):
                records.append((m.measurement, m.patient, m.device, m.t_ns, json.dumps(m.fields, sort_keys=True)))
            elif isinstance(m, PostureMsg):
                rows.append((
                    m.patient, m.device, m.t0_ns, m.dt_ns, len(m),
                    m.flexion_deg.astype("<f4").tobytes(), m.lateral_deg.astype("<f4").tobytes(),
                    None if m.state is None else m.state.astype(np.int8).tobytes(),
                    None if m.activity is None else m.activity.astype(np.int8).tobytes(),
                ))
                points += int(np.count_nonzero(~(np.isnan(m.flexion_deg) & np.isnan(m.lateral_deg))))
            else:
                events.append((m.patient, m.device, m.start_ns, m.end_ns,
                               stored_duration_s(m), m.peak_deg, m.mean_deg))
        with self._lock, self._db:
            self._db.executemany("INSERT OR REPLACE INTO posture VALUES (?,?,?,?,?,?,?,?,?)", rows)
            self._db.executemany("INSERT OR REPLACE INTO slouch VALUES (?,?,?,?,?,?,?)", events)
            self._db.executemany("INSERT OR REPLACE INTO device VALUES (?,?,?,?)", statuses)
            self._db.executemany("INSERT OR REPLACE INTO patient_config VALUES (?,?,?,?)", configs)
            self._db.executemany("INSERT OR REPLACE INTO record VALUES (?,?,?,?,?)", records)
            self._db.executemany("INSERT OR REPLACE INTO posture_seq VALUES (?,?,?,?,?,?,?)", seqs)
        return points + len(events) + len(statuses) + len(configs) + len(records) + len(seqs)

    def transit_loss(self, start_ns: int, end_ns: int, patient: str | None = None,
                     device: str | None = None) -> list[TransitLoss]:
        where = "".join(f" AND {k} = ?" for k, v in (("patient", patient), ("device", device)) if v)
        args = tuple(v for v in (patient, device) if v)
        with self._lock:
            period = self._db.execute(
                "SELECT patient, device, seq_epoch, count(*), min(seq), max(seq), sum(samples * dt_ns) "
                f"FROM posture_seq WHERE t0_ns >= ? AND t0_ns < ?{where} GROUP BY patient, device, seq_epoch",
                (start_ns, end_ns, *args),
            ).fetchall()
            # SQLite returns the other columns of the row holding max(t0_ns): the last seq before
            before = self._db.execute(
                "SELECT patient, device, seq_epoch, seq, max(t0_ns) "
                f"FROM posture_seq WHERE t0_ns >= ? AND t0_ns < ?{where} GROUP BY patient, device, seq_epoch",
                (start_ns - transit.BASELINE_LOOKBACK_NS, start_ns, *args),
            ).fetchall()
        last_before = {(p, d, int(e)): int(q) for p, d, e, q, _ in before}
        return transit.losses([
            SeqGroup(p, d, int(e), int(n), int(lo), int(hi), int(dur or 0), last_before.get((p, d, int(e))))
            for p, d, e, n, lo, hi, dur in period
        ])

    def transit_newest_ns(self, patient: str, device: str) -> int | None:
        with self._lock:
            row = self._db.execute("SELECT max(t0_ns) FROM posture_seq WHERE patient = ? AND device = ?",
                                   (patient, device)).fetchone()
        return None if row[0] is None else int(row[0])

    def _chunks(self, patient: str, start_ns: int, end_ns: int) -> list[tuple[Any, ...]]:
        # a chunk starting before start_ns may reach into the period: look back one hour.
        # One query per device, so the primary key (patient, device, t0_ns) serves the time
        # range; with the device left open SQLite reads every row the patient ever stored.
        sql = ("SELECT t0_ns, dt_ns, n, flexion_deg, lateral_deg, state, activity FROM posture"
               " WHERE patient = ? AND device = ? AND t0_ns >= ? AND t0_ns < ?")
        devices = self.devices(patient)
        with self._lock:
            rows = [r for dev in devices
                    for r in self._db.execute(sql, (patient, dev, start_ns - 3600 * 10**9, end_ns)).fetchall()]
        return sorted(rows, key=lambda r: r[0])

    def minutes(self, patient: str, start_ns: int, end_ns: int) -> MinuteSeries:
        rows = self._chunks(patient, start_ns, end_ns)
        if not rows:
            return empty_minutes()
        # whole columns at once (a day is 86,400 rows): per-row NumPy calls would dominate
        t0, dt, n = (np.fromiter((r[i] for r in rows), np.int64, len(rows)) for i in range(3))
        first = np.cumsum(n) - n
        t = np.repeat(t0, n) + np.repeat(dt, n) * (np.arange(int(n.sum()), dtype=np.int64) - np.repeat(first, n))
        flex = np.frombuffer(b"".join(r[3] for r in rows), "<f4").astype(np.float64)
        lat = np.frombuffer(b"".join(r[4] for r in rows), "<f4").astype(np.float64)
        state = np.frombuffer(b"".join(bytes(r[2]) if r[5] is None else r[5] for r in rows),
                              np.int8).astype(np.float64)
        still = np.frombuffer(b"".join(bytes(r[2]) if r[6] is None else r[6] for r in rows), np.int8) == 2
        wear = np.repeat(dt.astype(np.float64) / 1e9, n)  # each sample: its own message's period, s
        keep = (t >= start_ns) & (t < end_ns) & ~np.isnan(flex)
        t, flex, lat, state, still, wear = t[keep], flex[keep], lat[keep], state[keep], still[keep], wear[keep]
        if len(t) == 0:
            return empty_minutes()
        minute = t // NS_PER_MIN
        uniq, inv, counts = np.unique(minute, return_inverse=True, return_counts=True)

        wear_min = np.bincount(inv, weights=wear, minlength=len(uniq))

        def mean(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:  # per sample, as InfluxQL's mean()
            return np.asarray(np.bincount(inv, weights=x, minlength=len(uniq)) / counts, np.float64)

        return MinuteSeries(uniq * NS_PER_MIN, mean(flex), mean(np.nan_to_num(lat)),
                            counts.astype(np.int64), mean(state),
                            np.bincount(inv, weights=still, minlength=len(uniq)).astype(np.int64),
                            np.asarray(wear_min, np.float64),
                            np.asarray(np.bincount(inv, weights=wear * still, minlength=len(uniq)), np.float64))

    def has_patient(self, patient: str) -> bool:
        """Whether any posture, slouch or settings row of ``patient`` is stored."""
        with self._lock:
            return any(
                self._db.execute(f"SELECT 1 FROM {table} WHERE patient = ? LIMIT 1", (patient,)).fetchone()
                for table in ("posture", "slouch", "patient_config")
            )

    def count_posture(self, patient: str) -> int:
        with self._lock:
            rows = self._db.execute(
                "SELECT flexion_deg, lateral_deg FROM posture WHERE patient = ?", (patient,)
            ).fetchall()
        return sum(
            int(np.count_nonzero(~(np.isnan(np.frombuffer(f, "<f4")) & np.isnan(np.frombuffer(la, "<f4")))))
            for f, la in rows
        )

    def records(self, measurement: str, patient: str, start_ns: int, end_ns: int) -> list[Record]:
        check_measurement(measurement)
        if measurement in ("patient_config", "device"):
            sql = f"SELECT ts_ns, device, fields FROM {measurement} WHERE patient = ?"
            args: tuple[Any, ...] = (patient, start_ns, end_ns)
        else:
            sql = "SELECT ts_ns, device, fields FROM record WHERE measurement = ? AND patient = ?"
            args = (measurement, patient, start_ns, end_ns)
        with self._lock:
            rows = self._db.execute(sql + " AND ts_ns >= ? AND ts_ns < ? ORDER BY ts_ns", args).fetchall()
        return [Record(int(t), str(d), json.loads(f)) for t, d, f in rows]

    def devices(self, patient: str) -> list[str]:
        """The patient's device ids, found by index seeks (one per device), not a scan."""
        with self._lock:
            rows = self._db.execute(
                "WITH RECURSIVE d(dev) AS ("
                " SELECT (SELECT min(device) FROM posture WHERE patient = ?1)"
                " UNION ALL SELECT (SELECT min(device) FROM posture WHERE patient = ?1 AND device > d.dev)"
                " FROM d WHERE d.dev IS NOT NULL) SELECT dev FROM d WHERE dev IS NOT NULL",
                (patient,),
            ).fetchall()
        return [str(r[0]) for r in rows]

    def posture_chunks(self, patient: str, start_ns: int, end_ns: int,
                       window_ns: int = EXPORT_WINDOW_NS) -> Iterator[PostureChunk]:
        """Rows (messages) are read by start time ``t0_ns``, one window at a time; samples of a
        message reaching past its window are carried into the next one, so every chunk holds
        exactly the samples of its window, in time order."""
        # one query per device and window: the primary key (patient, device, t0_ns) then
        # serves the time range; with the device left open SQLite would scan every row of
        # the patient for every window
        sql = ("SELECT device, t0_ns, dt_ns, n, flexion_deg, lateral_deg, state, activity FROM posture"
               " WHERE patient = ? AND device = ? AND t0_ns >= ? AND t0_ns < ? AND t0_ns + dt_ns * n > ?"
               " ORDER BY t0_ns")
        devices = self.devices(patient)
        carry: list[tuple[Any, ...]] = []
        first = True
        for a, b in time_windows(start_ns, end_ns, window_ns):
            lo = a - SQLITE_LOOKBACK_NS if first else a
            first = False
            rows = []
            with self._lock:
                for dev in devices:
                    rows += self._db.execute(sql, (patient, dev, lo, b, a)).fetchall()
            parts = carry
            carry = []
            for dev, t0, dt, n, f, la, st, ac in rows:
                t = t0 + dt * np.arange(n, dtype=np.int64)
                cols = (t, np.full(n, dev, dtype=object), np.frombuffer(f, "<f4"), np.frombuffer(la, "<f4"),
                        np.full(n, -1, np.int8) if st is None else np.frombuffer(st, np.int8),
                        np.full(n, -1, np.int8) if ac is None else np.frombuffer(ac, np.int8),
                        np.where(np.isnan(np.frombuffer(f, "<f4")), np.nan, dt / 1e9))  # as InfluxDB's wear_s
                # a sample with neither angle is no point in InfluxDB either (line protocol skips it)
                inside = (t >= a) & (t < b) & ~(np.isnan(cols[2]) & np.isnan(cols[3]))
                if not inside.all():
                    later = (t >= b) & (t < end_ns) & ~(np.isnan(cols[2]) & np.isnan(cols[3]))
                    if later.any():
                        carry.append(tuple(c[later] for c in cols))
                    cols = tuple(c[inside] for c in cols)
                parts.append(cols)
            chunk = posture_chunk(b, parts)
            # float32 on disk: the wire's 0.01 degree values come back exactly when rounded
            yield dataclasses.replace(chunk, flexion_deg=np.round(chunk.flexion_deg, 2),
                                      lateral_deg=np.round(chunk.lateral_deg, 2))

    def episodes(self, patient: str, start_ns: int, end_ns: int) -> list[SlouchEvent]:
        """Every row has its ``end_ns`` (NOT NULL), and ``duration_s`` = round((end - start) / 1e9, 2)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT device, start_ns, duration_s, peak_deg, mean_deg, end_ns FROM slouch"
                " WHERE patient = ? AND start_ns >= ? AND start_ns < ? ORDER BY start_ns, device",
                (patient, start_ns, end_ns),
            ).fetchall()
        return [stored_episode(patient, str(d), s, du, p, m, e) for d, s, du, p, m, e in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
