"""InfluxDB stores: 1.x through ``/write`` and 2.x/3.x through influxdb-client, read in InfluxQL.

Every store writes idempotently: a point is keyed by (measurement, patient, device, time),
so a redelivered MQTT message overwrites the same points instead of adding new ones.
Reads are InfluxQL, portable across 1.x, 2.x with a DBRP mapping, and 3.x.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from typing import Any, Final

import numpy as np

from spinewatch.errors import ConnectionFailed, SpineWatchError
from spinewatch.model import NS_PER_MIN, SlouchEvent
from spinewatch.service.config import redact_url
from spinewatch.service.storage import transit
from spinewatch.service.storage.base import (
    EXPORT_WINDOW_NS,
    HTTP_TIMEOUT_S,
    LATE_NS,
    LEGACY_SAMPLE_S,
    POLICIES_RETRY_S,
    SETTINGS_MEASUREMENTS,
    SETTINGS_RP,
    TREND_RECHECK_S,
    WEAR_FIELD,
    Message,
    MinuteSeries,
    PostureChunk,
    Record,
    StoreRejected,
    check_measurement,
    codes_or_missing,
    empty_minutes,
    http_refused,
    merge_minutes,
    posture_chunk,
    settings_msgs,
    stored_episode,
    time_windows,
)
from spinewatch.service.storage.transit import SeqGroup, TransitLoss
from spinewatch.service.transport.wire import PostureMsg

_LOGGER = logging.getLogger(__name__)

# Rows per piece of InfluxDB's chunked /query response: parsed one piece at a time, so the
# JSON of a whole window is never held at once.
INFLUX_CHUNK_ROWS: Final = 20_000


# --------------------------------------------------------------------------- InfluxDB (HTTP)


def _q(s: str) -> str:
    """InfluxQL string literal."""
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


class InfluxHttp:
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
            if http_refused(exc.code):
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
            return empty_minutes()
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
            return empty_minutes()
        v = series[0]["values"]
        a = np.array([[np.nan if x is None else x for x in row[1:]] for row in v], dtype=np.float64)
        return merge_minutes(np.array([row[0] for row in v], dtype=np.int64), a)

    def slouches_trend(self, patient: str, start_ns: int, end_ns: int) -> list[SlouchEvent]:
        """Like :meth:`episodes`, from the copies in ``trend.slouch`` (kept after raw expires).

        A copy's time is its 1-s bucket (``GROUP BY time(1s)`` of ``SLOUCH_COPY_SELECT``), its
        episode's start floored to the second: that is ``start_ns`` here, as ever, and ``end_ns``
        is ``start_ns + duration_s`` (:func:`stored_episode`; the copied ``end_ns`` field is not
        read), so that the duration is the stored one, not lengthened by the floor.
        """
        series = self.query(
            'SELECT "duration_s", "peak_deg", "mean_deg" FROM "trend"."slouch" '
            f'WHERE "patient" = {_q(patient)} AND time >= {start_ns} AND time < {end_ns} GROUP BY "device"'
        )
        out = [stored_episode(patient, str((s.get("tags") or {}).get("device", "")), t, d, p, m, None)
               for s in series for t, d, p, m in s["values"]]
        return sorted(out, key=lambda x: (x.start_ns, x.device))

    def has_patient(self, patient: str) -> bool:
        """Whether any point of ``patient`` is stored (in any measurement)."""
        series = self.query(f'SHOW TAG VALUES WITH KEY = "patient" WHERE "patient" = {_q(patient)}')
        return any(s.get("values") for s in series)

    def count_posture(self, patient: str) -> int:
        series = self.query(
            f'SELECT count("flexion_deg") FROM "posture" WHERE "patient" = {_q(patient)}'
        )
        return int(series[0]["values"][0][1]) if series else 0

    def records(self, measurement: str, patient: str, start_ns: int, end_ns: int) -> list[Record]:
        """Points of ``measurement`` in [start, end), oldest first; settings also from RP ``settings``,
        where they outlive the raw retention (a point kept in both is returned once)."""
        check_measurement(measurement)
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
        for a, b in time_windows(start_ns, end_ns, window_ns):
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
                    codes_or_missing(cols[idx["state"]]), codes_or_missing(cols[idx["activity"]]),
                    np.array([np.nan if x is None else x for x in cols[idx[WEAR_FIELD]]], np.float64)
                    if WEAR_FIELD in idx else np.full(n, np.nan),  # no point of the window has one
                ))
            yield posture_chunk(b, parts)

    def episodes(self, patient: str, start_ns: int, end_ns: int) -> list[SlouchEvent]:
        """Episodes of ``slouch``; a point without ``end_ns`` gets one from its ``duration_s``
        (:func:`stored_episode`)."""
        series = self.query(
            'SELECT "duration_s", "peak_deg", "mean_deg", "end_ns" FROM "slouch" '
            f'WHERE "patient" = {_q(patient)} AND time >= {start_ns} AND time < {end_ns} GROUP BY "device"'
        )
        out = [stored_episode(patient, str((s.get("tags") or {}).get("device", "")), t, d, p, m, e)
               for s in series for t, d, p, m, e in s["values"]]
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


class Influx1Store(InfluxHttp):
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
        from spinewatch.service.storage.lineprotocol import to_bytes

        body, points = to_bytes(msgs)
        if points:
            if (settings := settings_msgs(msgs)) and SETTINGS_RP in self._known_policies():
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
        from spinewatch.service.storage.influx1_schema import (  # noqa: PLC0415
            POSTURE_1M_SELECT,
            POSTURE_1M_STILL_SELECT,
            SLOUCH_COPY_SELECT,
        )

        late_before = time.time_ns() - LATE_NS
        spans: dict[tuple[str, str], tuple[int, int]] = {}
        for m in msgs:
            if isinstance(m, PostureMsg) and len(m):
                kind, a, b = "posture", m.t0_ns, m.t0_ns + len(m) * m.dt_ns
            elif isinstance(m, SlouchEvent):
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


class Influx2Store(InfluxHttp):
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

        from spinewatch.service.storage.lineprotocol import to_bytes

        body, points = to_bytes(msgs)
        if not points:
            return 0
        try:
            if (settings := settings_msgs(msgs)) and SETTINGS_RP in self._known_policies():
                # `influx init` maps DBRP settings to the trend bucket (no expiry)
                self._write_api.write(bucket=f"{self.bucket}_trend", org=self.org, record=to_bytes(settings)[0])
            self._write_api.write(bucket=self.bucket, org=self.org, record=body)
        except ApiException as exc:
            if exc.status is not None and http_refused(exc.status):
                raise StoreRejected(f"{self.url}: HTTP {exc.status}: {exc.body!s:.300}") from exc
            raise ConnectionFailed(self.url, f"HTTP {exc.status}") from exc
        except Exception as exc:  # urllib3 connection errors and friends
            raise ConnectionFailed(self.url, str(exc)[:300]) from exc
        return points

    def close(self) -> None:
        self._client.close()
