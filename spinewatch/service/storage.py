"""Where ingested points go: InfluxDB 1.x (/write), InfluxDB 2.x/3.x (influxdb-client), or SQLite.

Every store writes idempotently: a point is keyed by (measurement, patient, device, time),
so a redelivered MQTT message overwrites the same points instead of adding new ones.
Every store also answers the few read queries the report needs, in InfluxQL for InfluxDB
(portable across 1.x, 2.x with a DBRP mapping, and 3.x) and in SQL for SQLite.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import sqlite3
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

import numpy as np
import numpy.typing as npt

from spinewatch.errors import ConnectionFailed, SpineWatchError
from spinewatch.service import transit
from spinewatch.service.config import redact_url
from spinewatch.service.transit import SeqGroup, SeqMsg, TransitLoss
from spinewatch.service.wire import (
    ConfigMsg,
    EventMsg,
    PostureMsg,
    RecordMsg,
    StatusMsg,
)

_LOGGER = logging.getLogger(__name__)

# One HTTP request may not hang the ingest loop: InfluxDB answers a 5,000-point write in
# milliseconds; 30 s covers a compaction stall without leaving a dead server undetected.
HTTP_TIMEOUT_S: Final = 30.0
NS_PER_MIN: Final = 60 * 10**9
# Posture older than this when written missed its continuous query: downsample it on the spot.
LATE_NS: Final = 90 * 10**9
TREND_RECHECK_S: Final = 600.0
POLICIES_RETRY_S: Final = 60.0
# Settings in force must outlive the raw retention (a threshold set 120 days ago still applies):
# ingest writes these measurements to the default RP, like everything else, and a second time to
# the retention policy ``settings`` (forever), which the readers of settings read too.
SETTINGS_RP: Final = "settings"
SETTINGS_MEASUREMENTS: Final = ("patient_config", "calibration")
# Wear time comes from the data's own clock, never from a configured rate: every raw ``posture``
# point that has a ``flexion_deg`` also carries ``wear_s``, the seconds of wear it stands for
# (its message's sample period, ``dt_ns / 1e9``: 0.1 at 10 Hz, 0.005 at 200 Hz). Wear seconds of
# any span are ``sum("wear_s")``; ``trend.posture_1m`` holds them per minute (``wear_s``, and
# ``still_s`` for the upright-still ones). Points stored before the field existed (ingest older
# than this) carry no period: they are credited LEGACY_SAMPLE_S each, the fixed 100 Hz that was
# assumed for every point then (docs/storage.md "Wear time").
WEAR_FIELD: Final = "wear_s"
LEGACY_SAMPLE_S: Final = 0.01

Message = PostureMsg | EventMsg | StatusMsg | ConfigMsg | RecordMsg | SeqMsg


class StoreRejected(SpineWatchError):
    """The database refused the data itself (HTTP 4xx): retrying the same points won't help."""


@dataclass(frozen=True, slots=True)
class MinuteSeries:
    """Posture per minute for one patient (all devices).

    Attributes:
        t_ns: (M,) int64 UTC start of each minute, ns.
        flexion_mean_deg: (M,) mean flexion, degrees.
        lateral_mean_deg: (M,) mean lateral bend, degrees.
        samples: (M,) int64 number of samples in the minute.
        slouch_fraction: (M,) fraction of samples in a confirmed slouch (0..1).
        still_samples: (M,) int64 samples of the minute with activity "upright still" (2).
        wear_s: (M,) float64 seconds of wear in the minute: the sum of its samples' own
            periods (0..60 per device), what wear minutes are made of.
        still_s: (M,) float64 of them upright still (activity 2), seconds.
    """

    t_ns: npt.NDArray[np.int64]
    flexion_mean_deg: npt.NDArray[np.float64]
    lateral_mean_deg: npt.NDArray[np.float64]
    samples: npt.NDArray[np.int64]
    slouch_fraction: npt.NDArray[np.float64]
    still_samples: npt.NDArray[np.int64]
    wear_s: npt.NDArray[np.float64]
    still_s: npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class SlouchRow:
    start_ns: int
    duration_s: float
    peak_deg: float
    mean_deg: float | None


@dataclass(frozen=True, slots=True)
class Record:
    """One point of a small measurement: time (UTC ns), device, fields by name."""

    t_ns: int
    device: str
    fields: dict[str, Any]


RECORD_MEASUREMENTS: Final = ("alert", "calibration", "patient_config", "device")

# Raw-series export reads one time window per query: an hour of one 100 Hz device is
# 360,000 samples (~10 MB as arrays), small enough to hold, large enough to amortise a query.
EXPORT_WINDOW_NS: Final = 3600 * 10**9
# Rows per piece of InfluxDB's chunked /query response: parsed one piece at a time, so the
# JSON of a whole window is never held at once.
INFLUX_CHUNK_ROWS: Final = 20_000
# How far before a window a SQLite posture row (one message) may start and still reach into
# it: a message holds at most wire.MAX_SAMPLES samples, a day covers 60,000 samples down to 0.7 Hz.
SQLITE_LOOKBACK_NS: Final = 86_400 * 10**9


@dataclass(frozen=True, slots=True)
class PostureChunk:
    """Raw posture samples of one patient in one time window, sorted by (time, device).

    Attributes:
        end_ns: UTC ns end (exclusive) of the window this chunk covers (for progress).
        t_ns: (N,) int64 sample time, UTC ns (sensor-derived).
        device: (N,) object array of device ids (str).
        flexion_deg: (N,) float64 trunk flexion relative to neutral, degrees (body frame,
            forward positive); NaN where the sender sent null.
        lateral_deg: (N,) float64 lateral bend, degrees (right positive); NaN where null.
        state: (N,) int8 0 neutral, 1 confirmed slouch; -1 where not sent.
        activity: (N,) int8 1 lying, 2 upright still, 3 upright moving (0 unknown); -1 where not sent.
        wear_s: (N,) float64 seconds of wear each sample stands for (its message's sample
            period); NaN where flexion_deg is (no wear), and for InfluxDB points stored
            before the period was (see WEAR_FIELD).
    """

    end_ns: int
    t_ns: npt.NDArray[np.int64]
    device: npt.NDArray[np.object_]
    flexion_deg: npt.NDArray[np.float64]
    lateral_deg: npt.NDArray[np.float64]
    state: npt.NDArray[np.int8]
    activity: npt.NDArray[np.int8]
    wear_s: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.t_ns)


@dataclass(frozen=True, slots=True)
class Episode:
    """One slouch episode with its device and end (UTC ns); durations in s, angles in degrees."""

    device: str
    start_ns: int
    end_ns: int
    duration_s: float
    peak_deg: float
    mean_deg: float | None


def _posture_chunk(end_ns: int, parts: list[tuple[Any, ...]]) -> PostureChunk:
    """Concatenate (t, device, flex, lat, state, activity, wear_s) array tuples; sort by (time, device)."""
    if not parts:
        return PostureChunk(end_ns, np.zeros(0, np.int64), np.zeros(0, object), np.zeros(0), np.zeros(0),
                            np.zeros(0, np.int8), np.zeros(0, np.int8), np.zeros(0))
    cols = [np.concatenate([p[k] for p in parts]) for k in range(7)]
    if not np.all(np.diff(cols[0]) > 0):  # one device's rows come sorted; several interleave
        order = np.lexsort((cols[1], cols[0]))
        cols = [c[order] for c in cols]
    t, dev, flex, lat, state, act, wear = cols
    return PostureChunk(end_ns, t.astype(np.int64), dev.astype(object), flex.astype(np.float64),
                        lat.astype(np.float64), state.astype(np.int8), act.astype(np.int8), wear.astype(np.float64))


def _codes_or_missing(col: Sequence[Any]) -> npt.NDArray[np.int8]:
    """Integer codes with None -> -1."""
    a = np.array(col, dtype=np.float64)  # None -> NaN
    return np.where(np.isnan(a), -1, a).astype(np.int8)


def _windows(start_ns: int, end_ns: int, window_ns: int) -> Iterator[tuple[int, int]]:
    if window_ns <= 0:
        raise ValueError(f"window_ns must be > 0, got {window_ns}")
    a = start_ns
    while a < end_ns:
        b = min(end_ns, a + window_ns)
        yield a, b
        a = b


def _refused(http_status: int) -> bool:
    """A 4xx other than timeout (408) and rate limit (429): the server will refuse the request again."""
    return 400 <= http_status < 500 and http_status not in (408, 429)


def _settings_msgs(msgs: Sequence[Message]) -> list[Message]:
    """The messages whose points belong to :data:`SETTINGS_MEASUREMENTS` too."""
    return [m for m in msgs
            if isinstance(m, ConfigMsg) or (isinstance(m, RecordMsg) and m.measurement in SETTINGS_MEASUREMENTS)]


def _check_measurement(measurement: str) -> None:
    if measurement not in RECORD_MEASUREMENTS:
        raise ValueError(f"measurement must be one of {', '.join(RECORD_MEASUREMENTS)}, got {measurement!r}")


class Store(Protocol):
    """What the ingest worker and the report need from a database."""

    address: str

    def write(self, msgs: Sequence[Message]) -> int:
        """Write the points of ``msgs``; return how many points were written.

        Raises:
            ConnectionFailed: the database could not be reached or failed (retry later).
            StoreRejected: the database refused the data (do not retry).
        """

    def minutes(self, patient: str, start_ns: int, end_ns: int) -> MinuteSeries: ...

    def slouches(self, patient: str, start_ns: int, end_ns: int) -> list[SlouchRow]: ...

    def count_posture(self, patient: str) -> int: ...

    def has_patient(self, patient: str) -> bool:
        """Whether any point of ``patient`` is stored."""

    def records(self, measurement: str, patient: str, start_ns: int, end_ns: int) -> list[Record]:
        """Points of ``alert``, ``calibration``, ``patient_config`` or ``device`` in [start, end)."""

    def posture_chunks(self, patient: str, start_ns: int, end_ns: int,
                       window_ns: int = EXPORT_WINDOW_NS) -> Iterator[PostureChunk]:
        """Every raw posture sample with time in [start, end), one chunk per ``window_ns`` (UTC ns),
        in time order; a window without data gives an empty chunk. Memory is bounded by one window."""

    def episodes(self, patient: str, start_ns: int, end_ns: int) -> list[Episode]:
        """Slouch episodes starting in [start, end), by start time (then device)."""

    def transit_loss(self, start_ns: int, end_ns: int, patient: str | None = None,
                     device: str | None = None) -> list[TransitLoss]:
        """Posture messages lost between bridge and database, per (patient, device, seq_epoch),
        among the messages with ``t0_ns`` in [start, end) (UTC ns); see spinewatch/service/transit.py."""

    def transit_newest_ns(self, patient: str, device: str) -> int | None:
        """``t0_ns`` of the device's newest posture message with a ``seq`` stored (None: none is)."""

    def close(self) -> None: ...


def _empty_minutes() -> MinuteSeries:
    z = np.zeros(0)
    return MinuteSeries(np.zeros(0, np.int64), z, z, np.zeros(0, np.int64), z, np.zeros(0, np.int64), z, z)


def legacy_wear_s(wear_s: npt.ArrayLike, samples: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """``wear_s`` where known; ``samples x LEGACY_SAMPLE_S`` where it is NaN (a minute of
    ``trend.posture_1m`` computed before the field existed and not yet backfilled)."""
    w = np.asarray(wear_s, dtype=np.float64)
    return np.where(np.isnan(w), np.nan_to_num(np.asarray(samples, dtype=np.float64)) * LEGACY_SAMPLE_S, w)


def _merge_minutes(t_ns: npt.NDArray[np.int64], cols: npt.NDArray[np.float64]) -> MinuteSeries:
    """One minute series from per-device rows: ``cols`` = (R, 7) flexion mean, lateral mean,
    samples, slouch fraction, still samples, wear seconds, still seconds at minute starts
    ``t_ns`` (R,); devices sharing a minute are combined, their means weighted by their samples
    (as one InfluxQL mean() over both devices' points would be)."""
    if len(t_ns) == 0:
        return _empty_minutes()
    uniq, inv = np.unique(t_ns, return_inverse=True)
    n = np.nan_to_num(cols[:, 2])
    wear = legacy_wear_s(cols[:, 5], n)
    still = legacy_wear_s(cols[:, 6], cols[:, 4])

    def total(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        # float64 with weights (numpy's stub says intp); asarray adds no copy
        return np.asarray(np.bincount(inv, weights=np.nan_to_num(x), minlength=len(uniq)), np.float64)

    n_sum = total(n)
    w = np.where(n_sum > 0, n_sum, 1.0)
    return MinuteSeries(
        uniq.astype(np.int64), total(cols[:, 0] * n) / w, total(cols[:, 1] * n) / w,
        n_sum.astype(np.int64), total(cols[:, 3] * n) / w, total(cols[:, 4]).astype(np.int64),
        total(wear), total(still),
    )


# --------------------------------------------------------------------------- InfluxDB (HTTP)


def _q(s: str) -> str:
    """InfluxQL string literal."""
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


class _InfluxHttp:
    """Shared InfluxQL reads over HTTP ``/query`` (1.x natively, 2.x via DBRP, 3.x)."""

    address: str

    def __init__(self, url: str, db: str, headers: dict[str, str], params: dict[str, str]) -> None:
        self.url = url.rstrip("/")
        self.address = redact_url(self.url)  # printed and logged: never with a password
        self.db = db
        self._headers = headers
        self._params = params
        self._policies: frozenset[str] = frozenset()
        self._policies_checked_s = -math.inf

    def _request(self, path: str, params: dict[str, str], body: bytes | None) -> bytes:
        qs = urllib.parse.urlencode({**self._params, **params})
        req = urllib.request.Request(
            f"{self.url}{path}?{qs}", data=body, headers=self._headers,
            method="POST" if body is not None else "GET",
        )
        try:
            with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT_S) as resp:
                return resp.read()
        except (urllib.error.URLError, OSError) as exc:
            raise self._failure(path, exc) from exc

    def _failure(self, path: str, exc: urllib.error.URLError | OSError) -> SpineWatchError:
        """What a failed request to ``path`` raises: :class:`StoreRejected` when the server refused
        it (the same request would be refused again), else :class:`ConnectionFailed` (retry later)."""
        if isinstance(exc, urllib.error.HTTPError):
            detail = exc.read()[:300].decode(errors="replace")
            if _refused(exc.code):
                return StoreRejected(f"{self.url}{path}: HTTP {exc.code}: {detail}")
            return ConnectionFailed(self.url, f"HTTP {exc.code}: {detail}")
        return ConnectionFailed(self.url, str(getattr(exc, "reason", exc)))

    def query(self, influxql: str) -> list[dict[str, Any]]:
        """Run InfluxQL; return the ``series`` of the first statement (empty list if none)."""
        raw = self._request("/query", {"db": self.db, "q": influxql, "epoch": "ns"}, None)
        res = json.loads(raw)["results"][0]
        if "error" in res:
            raise StoreRejected(f"InfluxQL error: {res['error']}: {influxql}")
        return list(res.get("series", []))

    def minutes(self, patient: str, start_ns: int, end_ns: int) -> MinuteSeries:
        # wear seconds: the points' own periods, plus LEGACY_SAMPLE_S per point stored without one
        series = self.query(
            'SELECT mean("flexion_deg"), mean("lateral_deg"), count("flexion_deg"), mean("state"), '
            f'sum("{WEAR_FIELD}"), count("{WEAR_FIELD}") '
            f'FROM "posture" WHERE "patient" = {_q(patient)} '
            f"AND time >= {start_ns} AND time < {end_ns} GROUP BY time(1m) fill(none)"
        )
        if not series:
            return _empty_minutes()
        v = series[0]["values"]
        a = np.array([[np.nan if x is None else x for x in row] for row in v], dtype=np.float64)
        t = np.array([row[0] for row in v], dtype=np.int64)
        wear = np.nan_to_num(a[:, 5]) + (np.nan_to_num(a[:, 3]) - np.nan_to_num(a[:, 6])) * LEGACY_SAMPLE_S
        still = np.zeros(len(t))
        still_s = np.zeros(len(t))
        s_series = self.query(
            f'SELECT count("activity"), sum("{WEAR_FIELD}"), count("{WEAR_FIELD}"), count("flexion_deg") '
            'FROM "posture" WHERE "activity" = 2 AND '
            f'"patient" = {_q(patient)} AND time >= {start_ns} AND time < {end_ns} GROUP BY time(1m) fill(none)'
        )
        if s_series:
            sv = s_series[0]["values"]
            st = np.array([row[0] for row in sv], dtype=np.int64)
            sa = np.array([[np.nan if x is None else x for x in row[1:]] for row in sv], dtype=np.float64)
            idx = np.minimum(np.searchsorted(t, st), len(t) - 1)
            hit = t[idx] == st  # a still minute without a flexion estimate is not a worn minute
            still[idx[hit]] = sa[hit, 0]
            sa = np.nan_to_num(sa)
            still_s[idx[hit]] = (sa[:, 1] + (sa[:, 3] - sa[:, 2]) * LEGACY_SAMPLE_S)[hit]
        return MinuteSeries(t, a[:, 1], a[:, 2], a[:, 3].astype(np.int64), np.nan_to_num(a[:, 4]),
                            still.astype(np.int64), wear, still_s)

    def retention_policies(self) -> frozenset[str]:
        """Names of the database's retention policies (its DBRP mappings on 2.x)."""
        series = self.query(f'SHOW RETENTION POLICIES ON "{self.db}"')
        return frozenset(row[0] for row in series[0]["values"]) if series else frozenset()

    def _policy_names(self) -> frozenset[str]:
        """:meth:`retention_policies`, or none if the server can't say."""
        try:
            return self.retention_policies()
        except (StoreRejected, ConnectionFailed):
            return frozenset()

    def _known_policies(self) -> frozenset[str]:
        """The database's retention policies, asked again every 10 minutes (the last answer while
        the server can't say, asked again a minute later)."""
        now = time.monotonic()
        if now - self._policies_checked_s > TREND_RECHECK_S:
            try:
                self._policies = self.retention_policies()
                self._policies_checked_s = now
            except (StoreRejected, ConnectionFailed):
                self._policies_checked_s = now - TREND_RECHECK_S + POLICIES_RETRY_S
        return self._policies

    def has_trend(self) -> bool:
        """Whether retention policy ``trend`` exists (``spinewatch influx init``)."""
        return "trend" in self._policy_names()

    def minutes_trend(self, patient: str, start_ns: int, end_ns: int) -> MinuteSeries:
        """Like :meth:`minutes`, from the per-minute points of ``trend.posture_1m`` (filled by the
        continuous queries of ``spinewatch influx init``): what reports over weeks read."""
        series = self.query(
            'SELECT "flexion_deg", "lateral_deg", "samples", "slouch_fraction", "still_samples", "wear_s", "still_s" '
            f'FROM "trend"."posture_1m" WHERE "patient" = {_q(patient)} '
            f"AND time >= {start_ns} AND time < {end_ns}"
        )
        if not series:
            return _empty_minutes()
        v = series[0]["values"]
        a = np.array([[np.nan if x is None else x for x in row[1:]] for row in v], dtype=np.float64)
        return _merge_minutes(np.array([row[0] for row in v], dtype=np.int64), a)

    def slouches_trend(self, patient: str, start_ns: int, end_ns: int) -> list[SlouchRow]:
        """Like :meth:`slouches`, from the copies in ``trend.slouch`` (kept after raw expires)."""
        series = self.query(
            'SELECT "duration_s", "peak_deg", "mean_deg" FROM "trend"."slouch" '
            f'WHERE "patient" = {_q(patient)} AND time >= {start_ns} AND time < {end_ns}'
        )
        if not series:
            return []
        return [SlouchRow(int(t), float(d), float(p), m) for t, d, p, m in series[0]["values"]]

    def has_patient(self, patient: str) -> bool:
        """Whether any point of ``patient`` is stored (in any measurement)."""
        series = self.query(f'SHOW TAG VALUES WITH KEY = "patient" WHERE "patient" = {_q(patient)}')
        return any(s.get("values") for s in series)

    def slouches(self, patient: str, start_ns: int, end_ns: int) -> list[SlouchRow]:
        series = self.query(
            'SELECT "duration_s", "peak_deg", "mean_deg" FROM "slouch" '
            f'WHERE "patient" = {_q(patient)} AND time >= {start_ns} AND time < {end_ns}'
        )
        if not series:
            return []
        return [SlouchRow(int(t), float(d), float(p), m) for t, d, p, m in series[0]["values"]]

    def count_posture(self, patient: str) -> int:
        series = self.query(
            f'SELECT count("flexion_deg") FROM "posture" WHERE "patient" = {_q(patient)}'
        )
        return int(series[0]["values"][0][1]) if series else 0

    def records(self, measurement: str, patient: str, start_ns: int, end_ns: int) -> list[Record]:
        """Points of ``measurement`` in [start, end), oldest first; settings also from RP ``settings``,
        where they outlive the raw retention (a point kept in both is returned once)."""
        _check_measurement(measurement)
        source = f'"{measurement}"'
        if measurement in SETTINGS_MEASUREMENTS and SETTINGS_RP in self._policy_names():
            source += f', "{SETTINGS_RP}"."{measurement}"'
        series = self.query(
            f'SELECT * FROM {source} WHERE "patient" = {_q(patient)} '
            f"AND time >= {start_ns} AND time < {end_ns} ORDER BY time"
        )
        seen: dict[tuple[int, str], Record] = {}
        for s in series:
            cols = s["columns"]
            for row in s["values"]:
                d = {c: v for c, v in zip(cols, row, strict=True) if v is not None}
                t = int(d.pop("time"))
                d.pop("patient", None)
                device = str(d.pop("device", ""))
                seen[(t, device)] = Record(t, device, d)
        return sorted(seen.values(), key=lambda r: (r.t_ns, r.device))

    def _query_stream(self, influxql: str) -> Iterator[dict[str, Any]]:
        """Run a SELECT with InfluxDB's chunked responses; yield each series piece as it arrives."""
        import orjson  # a core dependency (wire.py), only needed here

        qs = urllib.parse.urlencode({**self._params, "db": self.db, "q": influxql, "epoch": "ns",
                                     "chunked": "true", "chunk_size": str(INFLUX_CHUNK_ROWS)})
        req = urllib.request.Request(f"{self.url}/query?{qs}", headers=self._headers)
        try:
            with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT_S) as resp:
                for line in resp:
                    if not line.strip():
                        continue
                    for res in orjson.loads(line).get("results", []):
                        if "error" in res:
                            raise StoreRejected(f"InfluxQL error: {res['error']}: {influxql}")
                        yield from res.get("series", [])
        except (urllib.error.URLError, OSError) as exc:
            raise self._failure("/query", exc) from exc

    def posture_chunks(self, patient: str, start_ns: int, end_ns: int,
                       window_ns: int = EXPORT_WINDOW_NS) -> Iterator[PostureChunk]:
        for a, b in _windows(start_ns, end_ns, window_ns):
            parts: list[tuple[Any, ...]] = []
            for series in self._query_stream(
                f'SELECT "flexion_deg", "lateral_deg", "state", "activity", "{WEAR_FIELD}" FROM "posture" '
                f'WHERE "patient" = {_q(patient)} AND time >= {a} AND time < {b} GROUP BY "device"'
            ):
                idx = {c: i for i, c in enumerate(series["columns"])}
                cols = list(zip(*series["values"], strict=True))
                if not cols:
                    continue
                n = len(cols[0])
                dev = str((series.get("tags") or {}).get("device", ""))
                parts.append((
                    np.array(cols[idx["time"]], np.int64), np.full(n, dev, dtype=object),
                    np.array(cols[idx["flexion_deg"]], np.float64), np.array(cols[idx["lateral_deg"]], np.float64),
                    _codes_or_missing(cols[idx["state"]]), _codes_or_missing(cols[idx["activity"]]),
                    np.array([np.nan if x is None else x for x in cols[idx[WEAR_FIELD]]], np.float64)
                    if WEAR_FIELD in idx else np.full(n, np.nan),  # no point of the window has one
                ))
            yield _posture_chunk(b, parts)

    def episodes(self, patient: str, start_ns: int, end_ns: int) -> list[Episode]:
        series = self.query(
            'SELECT "duration_s", "peak_deg", "mean_deg", "end_ns" FROM "slouch" '
            f'WHERE "patient" = {_q(patient)} AND time >= {start_ns} AND time < {end_ns} GROUP BY "device"'
        )
        out = []
        for s in series:
            dev = str((s.get("tags") or {}).get("device", ""))
            for t, d, p, m, e in s["values"]:
                end = int(e) if e is not None else int(t) + round(float(d) * 1e9)
                out.append(Episode(dev, int(t), end, float(d), float(p), m))
        return sorted(out, key=lambda x: (x.start_ns, x.device))


    def transit_loss(self, start_ns: int, end_ns: int, patient: str | None = None,
                     device: str | None = None) -> list[TransitLoss]:
        """Two aggregate queries: the period's count, first and last seq per counter, and the
        last seq before it (so a gap across the period's start counts); no raw points are read."""
        where = "".join(f'"{k}" = {_q(v)} AND ' for k, v in (("patient", patient), ("device", device)) if v)
        by = ' GROUP BY "patient", "device", "seq_epoch"'
        m = f'"{transit.MEASUREMENT}"'
        period = self.query(
            f'SELECT count("seq"), min("seq"), max("seq"), sum("duration_ns") FROM {m} '
            f"WHERE {where}time >= {start_ns} AND time < {end_ns}{by}"
        )
        if not period:
            return []
        before = self.query(
            f'SELECT last("seq") FROM {m} '
            f"WHERE {where}time >= {start_ns - transit.BASELINE_LOOKBACK_NS} AND time < {start_ns}{by}"
        )
        last_before = {_seq_key(s["tags"]): int(s["values"][0][1]) for s in before}
        groups = []
        for s in period:
            _, n, lo, hi, dur = s["values"][0]
            key = _seq_key(s["tags"])
            groups.append(SeqGroup(*key, int(n), int(lo), int(hi), int(dur or 0), last_before.get(key)))
        return transit.losses(groups)


    def transit_newest_ns(self, patient: str, device: str) -> int | None:
        series = self.query(f'SELECT last("seq") FROM "{transit.MEASUREMENT}" '
                            f'WHERE "patient" = {_q(patient)} AND "device" = {_q(device)}')
        return int(series[0]["values"][0][0]) if series else None


def _seq_key(tags: dict[str, str]) -> tuple[str, str, int]:
    return tags["patient"], tags["device"], int(tags["seq_epoch"])


class Influx1Store(_InfluxHttp):
    """InfluxDB 1.x through its plain ``/write`` endpoint (works back to 1.0).

    Args:
        url: e.g. ``http://127.0.0.1:8086``.
        db: database name (created by :meth:`ensure_database`).
        username, password: for servers with auth enabled.
    """

    def __init__(self, url: str, db: str, username: str = "", password: str = "") -> None:
        params = {"u": username, "p": password} if username else {}
        super().__init__(url, db, {}, params)
        # The ingest's writer threads write batches at once; two batches may hold samples of the
        # same minute. Each downsamples its minutes after its own raw write, and InfluxDB runs
        # queries concurrently: an earlier SELECT INTO that read before the other batch's raw
        # write could land its (partial) minute after the later, complete one. One at a time,
        # the last to run reads every raw write that asked for it (seen in CI: trend short of
        # a 50 Hz patient's samples for good).
        self._downsample_lock = threading.Lock()

    def ensure_database(self) -> None:
        """Create the database and its retention policy ``settings`` (forever) if missing."""
        self._request("/query", {"q": f'CREATE DATABASE "{self.db}"'}, b"")
        if SETTINGS_RP not in self.retention_policies():
            self.execute(f'CREATE RETENTION POLICY "{SETTINGS_RP}" ON "{self.db}" DURATION INF REPLICATION 1')
        self._policies_checked_s = -math.inf  # ask again at the next write

    def execute(self, influxql: str) -> None:
        """Run a statement that changes the server (CREATE, DROP, SELECT INTO), via POST."""
        raw = self._request("/query", {"db": self.db, "q": influxql}, b"")
        res = json.loads(raw)["results"][0]
        if "error" in res:
            raise StoreRejected(f"InfluxQL error: {res['error']}: {influxql}")

    def write(self, msgs: Sequence[Message]) -> int:
        # imported here: the Numba kernels behind it cost ~70 MB that readers (report, export) don't need
        from spinewatch.service.lineprotocol import to_bytes

        body, points = to_bytes(msgs)
        if points:
            if (settings := _settings_msgs(msgs)) and SETTINGS_RP in self._known_policies():
                # an error in either write fails the batch, whose retry rewrites the same points
                self._request("/write", {"db": self.db, "rp": SETTINGS_RP, "precision": "ns"}, to_bytes(settings)[0])
            self._request("/write", {"db": self.db, "precision": "ns"}, body)
            self._downsample_late(msgs)
        return points

    def _has_trend(self) -> bool:
        """Whether ``spinewatch influx init`` made RP ``trend``."""
        return "trend" in self._known_policies()

    def _downsample_late(self, msgs: Sequence[Message]) -> None:
        """Downsample into ``trend`` what arrived after its continuous query ran.

        The continuous queries only look at the last few minutes (posture) or the last hour
        (slouch): a bridge flushing its outbox after a day offline would leave those days out
        of every trend figure and RTM count. Best effort: the raw points are written already,
        and ``influx init --backfill`` repairs anything missed here.
        """
        from spinewatch.service.schema import (  # noqa: PLC0415
            POSTURE_1M_SELECT,
            POSTURE_1M_STILL_SELECT,
            SLOUCH_COPY_SELECT,
        )

        late_before = time.time_ns() - LATE_NS
        spans: dict[tuple[str, str], tuple[int, int]] = {}
        for m in msgs:
            if isinstance(m, PostureMsg) and len(m):
                kind, a, b = "posture", m.t0_ns, m.t0_ns + len(m) * m.dt_ns
            elif isinstance(m, EventMsg):
                kind, a, b = "slouch", m.start_ns, m.start_ns + 1
            else:
                continue
            if b < late_before:
                lo, hi = spans.get((kind, m.patient), (a, b))
                spans[(kind, m.patient)] = (min(lo, a), max(hi, b))
        if not spans or not self._has_trend():
            return
        for (kind, patient), (a, b) in spans.items():
            a, b = a // NS_PER_MIN * NS_PER_MIN, -(-b // NS_PER_MIN) * NS_PER_MIN  # whole minutes
            where = f'"patient" = {_q(patient)} AND time >= {a} AND time < {b} '
            stmts = ([POSTURE_1M_SELECT.format(db=self.db, where="WHERE " + where),
                      POSTURE_1M_STILL_SELECT.format(db=self.db, where="AND " + where)] if kind == "posture"
                     else [SLOUCH_COPY_SELECT.format(db=self.db, where="WHERE " + where)])
            try:
                with self._downsample_lock:
                    for q in stmts:
                        self.execute(q)
            except (StoreRejected, ConnectionFailed) as exc:
                _LOGGER.warning("late %s of %s not downsampled into trend (run `spinewatch influx init "
                                "--backfill`): %s", kind, patient, exc)

    def close(self) -> None:
        pass


class Influx2Store(_InfluxHttp):
    """InfluxDB 2.x / 3.x / Cloud (and 1.8+ compatibility API) through influxdb-client.

    Writes go through influxdb-client's synchronous write API as line-protocol bytes; the
    report's InfluxQL reads use ``/query`` with the bucket's DBRP mapping.
    """

    def __init__(self, url: str, org: str, bucket: str, token: str) -> None:
        from influxdb_client import InfluxDBClient  # noqa: PLC0415 - heavy import, only here
        from influxdb_client.client.write_api import SYNCHRONOUS  # noqa: PLC0415

        super().__init__(url, bucket, {"Authorization": f"Token {token}"}, {})
        self.org = org
        self.bucket = bucket
        self._client = InfluxDBClient(url=url, token=token, org=org, timeout=int(HTTP_TIMEOUT_S * 1000))
        self._write_api = self._client.write_api(write_options=SYNCHRONOUS)

    def write(self, msgs: Sequence[Message]) -> int:
        from influxdb_client.rest import ApiException  # noqa: PLC0415

        from spinewatch.service.lineprotocol import to_bytes

        body, points = to_bytes(msgs)
        if not points:
            return 0
        try:
            if (settings := _settings_msgs(msgs)) and SETTINGS_RP in self._known_policies():
                # `influx init` maps DBRP settings to the trend bucket (no expiry)
                self._write_api.write(bucket=f"{self.bucket}_trend", org=self.org, record=to_bytes(settings)[0])
            self._write_api.write(bucket=self.bucket, org=self.org, record=body)
        except ApiException as exc:
            if exc.status is not None and _refused(exc.status):
                raise StoreRejected(f"{self.url}: HTTP {exc.status}: {exc.body!s:.300}") from exc
            raise ConnectionFailed(self.url, f"HTTP {exc.status}") from exc
        except Exception as exc:  # urllib3 connection errors and friends
            raise ConnectionFailed(self.url, str(exc)[:300]) from exc
        return points

    def close(self) -> None:
        self._client.close()


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
                               round((m.end_ns - m.start_ns) / 1e9, 2), m.peak_deg, m.mean_deg))
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
            return _empty_minutes()
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
            return _empty_minutes()
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

    def slouches(self, patient: str, start_ns: int, end_ns: int) -> list[SlouchRow]:
        with self._lock:
            rows = self._db.execute(
                "SELECT start_ns, duration_s, peak_deg, mean_deg FROM slouch"
                " WHERE patient = ? AND start_ns >= ? AND start_ns < ? ORDER BY start_ns",
                (patient, start_ns, end_ns),
            ).fetchall()
        return [SlouchRow(int(s), float(d), float(p), m) for s, d, p, m in rows]

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
        _check_measurement(measurement)
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
        for a, b in _windows(start_ns, end_ns, window_ns):
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
            chunk = _posture_chunk(b, parts)
            # float32 on disk: the wire's 0.01 degree values come back exactly when rounded
            yield dataclasses.replace(chunk, flexion_deg=np.round(chunk.flexion_deg, 2),
                                      lateral_deg=np.round(chunk.lateral_deg, 2))

    def episodes(self, patient: str, start_ns: int, end_ns: int) -> list[Episode]:
        with self._lock:
            rows = self._db.execute(
                "SELECT device, start_ns, end_ns, duration_s, peak_deg, mean_deg FROM slouch"
                " WHERE patient = ? AND start_ns >= ? AND start_ns < ? ORDER BY start_ns, device",
                (patient, start_ns, end_ns),
            ).fetchall()
        return [Episode(str(d), int(s), int(e), float(du), float(p), m) for d, s, e, du, p, m in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
