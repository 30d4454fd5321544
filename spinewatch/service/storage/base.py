"""The storage layer's shared vocabulary: the Store protocol, record types, settings and wear constants."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

import numpy as np
import numpy.typing as npt

from spinewatch.errors import SpineWatchError
from spinewatch.model import NS_PER_S, SlouchEvent
from spinewatch.service.storage.transit import SeqMsg, TransitLoss
from spinewatch.service.transport.wire import (
    ConfigMsg,
    PostureMsg,
    RecordMsg,
    StatusMsg,
)

_LOGGER = logging.getLogger(__name__)

# One HTTP request may not hang the ingest loop: InfluxDB answers a 5,000-point write in
# milliseconds; 30 s covers a compaction stall without leaving a dead server undetected.
HTTP_TIMEOUT_S: Final = 30.0
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

# Episodes' ``duration_s`` is stored to 0.01 s (InfluxDB's and SQLite's ``slouch``): reports and
# export compute and print :func:`stored_duration_s`, so their figures are those stored.
DURATION_DECIMALS: Final = 2

Message = PostureMsg | SlouchEvent | StatusMsg | ConfigMsg | RecordMsg | SeqMsg


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
class Record:
    """One point of a small measurement: time (UTC ns), device, fields by name."""

    t_ns: int
    device: str
    fields: dict[str, Any]


RECORD_MEASUREMENTS: Final = ("alert", "calibration", "patient_config", "device")

# Raw-series export reads one time window per query: an hour of one 100 Hz device is
# 360,000 samples (~10 MB as arrays), small enough to hold, large enough to amortise a query.
EXPORT_WINDOW_NS: Final = 3600 * 10**9


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


def stored_duration_s(e: SlouchEvent) -> float:
    """``e.duration_s`` at the resolution stores keep (:data:`DURATION_DECIMALS`): for an episode
    read back from a store, exactly its stored ``duration_s`` (stores write this value)."""
    return round(e.duration_s, DURATION_DECIMALS)


def stored_episode(patient: str, device: str, start_ns: int, duration_s: float, peak_deg: float,
                   mean_deg: float | None, end_ns: int | None) -> SlouchEvent:
    """An episode read back from a stored point (time ``start_ns``, fields ``duration_s``,
    ``peak_deg``, ``mean_deg`` and ``end_ns``).

    A point without ``end_ns`` (one not written by ingest, or a ``trend.slouch`` copy: see
    ``InfluxHttp.slouches_trend``) gets ``end_ns = start_ns + round(duration_s * 1e9)``, so that
    its ``duration_s`` property is its stored ``duration_s`` again (exactly: stored durations
    are whole 0.01 s, checked below 10**6 s by tests/test_sqlite_store.py); every duration a
    report or export prints is then the stored one.
    """
    end = int(end_ns) if end_ns is not None else int(start_ns) + round(float(duration_s) * NS_PER_S)
    return SlouchEvent(patient, device, int(start_ns), end, float(peak_deg),
                       None if mean_deg is None else float(mean_deg))


def posture_chunk(end_ns: int, parts: list[tuple[Any, ...]]) -> PostureChunk:
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


def codes_or_missing(col: Sequence[Any]) -> npt.NDArray[np.int8]:
    """Integer codes with None -> -1."""
    a = np.array(col, dtype=np.float64)  # None -> NaN
    return np.where(np.isnan(a), -1, a).astype(np.int8)


def time_windows(start_ns: int, end_ns: int, window_ns: int) -> Iterator[tuple[int, int]]:
    if window_ns <= 0:
        raise ValueError(f"window_ns must be > 0, got {window_ns}")
    a = start_ns
    while a < end_ns:
        b = min(end_ns, a + window_ns)
        yield a, b
        a = b


def http_refused(http_status: int) -> bool:
    """A 4xx other than timeout (408) and rate limit (429): the server will refuse the request again."""
    return 400 <= http_status < 500 and http_status not in (408, 429)


def settings_msgs(msgs: Sequence[Message]) -> list[Message]:
    """The messages whose points belong to :data:`SETTINGS_MEASUREMENTS` too."""
    return [m for m in msgs
            if isinstance(m, ConfigMsg) or (isinstance(m, RecordMsg) and m.measurement in SETTINGS_MEASUREMENTS)]


def check_measurement(measurement: str) -> None:
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

    def count_posture(self, patient: str) -> int: ...

    def has_patient(self, patient: str) -> bool:
        """Whether any point of ``patient`` is stored."""

    def records(self, measurement: str, patient: str, start_ns: int, end_ns: int) -> list[Record]:
        """Points of ``alert``, ``calibration``, ``patient_config`` or ``device`` in [start, end)."""

    def posture_chunks(self, patient: str, start_ns: int, end_ns: int,
                       window_ns: int = EXPORT_WINDOW_NS) -> Iterator[PostureChunk]:
        """Every raw posture sample with time in [start, end), one chunk per ``window_ns`` (UTC ns),
        in time order; a window without data gives an empty chunk. Memory is bounded by one window."""

    def episodes(self, patient: str, start_ns: int, end_ns: int) -> list[SlouchEvent]:
        """Slouch episodes starting in [start, end), by start time (then device): what the
        reports and export read."""

    def transit_loss(self, start_ns: int, end_ns: int, patient: str | None = None,
                     device: str | None = None) -> list[TransitLoss]:
        """Posture messages lost between bridge and database, per (patient, device, seq_epoch),
        among the messages with ``t0_ns`` in [start, end) (UTC ns); see spinewatch/service/storage/transit.py."""

    def transit_newest_ns(self, patient: str, device: str) -> int | None:
        """``t0_ns`` of the device's newest posture message with a ``seq`` stored (None: none is)."""

    def close(self) -> None: ...


def empty_minutes() -> MinuteSeries:
    z = np.zeros(0)
    return MinuteSeries(np.zeros(0, np.int64), z, z, np.zeros(0, np.int64), z, np.zeros(0, np.int64), z, z)


def legacy_wear_s(wear_s: npt.ArrayLike, samples: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """``wear_s`` where known; ``samples x LEGACY_SAMPLE_S`` where it is NaN (a minute of
    ``trend.posture_1m`` computed before the field existed and not yet backfilled)."""
    w = np.asarray(wear_s, dtype=np.float64)
    return np.where(np.isnan(w), np.nan_to_num(np.asarray(samples, dtype=np.float64)) * LEGACY_SAMPLE_S, w)


def merge_minutes(t_ns: npt.NDArray[np.int64], cols: npt.NDArray[np.float64]) -> MinuteSeries:
    """One minute series from per-device rows: ``cols`` = (R, 7) flexion mean, lateral mean,
    samples, slouch fraction, still samples, wear seconds, still seconds at minute starts
    ``t_ns`` (R,); devices sharing a minute are combined, their means weighted by their samples
    (as one InfluxQL mean() over both devices' points would be)."""
    if len(t_ns) == 0:
        return empty_minutes()
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
