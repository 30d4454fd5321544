"""Export of a patient's raw posture series and slouch episodes to CSV or Parquet, streamed.

Two files per export, ``<prefix>.posture.<ext>`` (every sample) and ``<prefix>.episodes.<ext>``
(one row per slouch episode), with units in the column names:

| posture column | type | meaning |
|---|---|---|
| ``time_utc`` | ISO 8601 text, ms, ``Z`` (Parquet: timestamp[ns, UTC]) | sample time, UTC (sensor-derived) |
| ``time_utc_ns`` | int64 | the same, ns since 1970-01-01 UTC (exact) |
| ``device`` | text | pseudonymous device id |
| ``flexion_deg`` | float, degrees | trunk flexion from neutral (body frame, forward positive); empty/null if not sent |
| ``lateral_deg`` | float, degrees | lateral bend (right positive); empty/null if not sent |
| ``state`` | int | 0 neutral, 1 confirmed slouch; empty/null if not sent |
| ``activity`` | int | 0 unknown, 1 lying, 2 upright still, 3 upright moving; empty/null if not sent |
| ``activity_name`` | text | ``unknown``, ``lying``, ``upright_still``, ``upright_moving`` |

| episodes column | meaning |
|---|---|
| ``device`` | device id |
| ``start_utc``, ``end_utc`` | ISO 8601, ms, ``Z`` (Parquet: timestamp[ns, UTC]) |
| ``start_utc_ns``, ``end_utc_ns`` | int64 ns since 1970-01-01 UTC |
| ``duration_s`` | seconds, to 0.01 s (as stored) |
| ``peak_deg``, ``mean_deg`` | peak and mean flexion of the episode, degrees (mean empty/null if not sent) |

The store is read one time window at a time (:meth:`Store.posture_chunks`) and each window
is written before the next is read (a CSV block, a Parquet row group), so memory does not
grow with the period. Files are written as ``*.part`` and renamed when complete: a failed
or empty export leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

import numpy as np
import numpy.typing as npt

from spinewatch.errors import SpineWatchError
from spinewatch.model import SlouchEvent
from spinewatch.service.storage import EXPORT_WINDOW_NS, PostureChunk, Store, stored_duration_s

FORMATS: Final = ("csv", "parquet")
# spinewatch.signal.activity.Activity's names (a test checks they agree); not imported from
# there, because importing spinewatch.signal loads Numba (~70 MB) that an export never uses.
ACTIVITY_NAMES: Final = {0: "unknown", 1: "lying", 2: "upright_still", 3: "upright_moving"}
# CSV rows formatted per block: Python strings cost ~60 bytes each, 8 per row; a block of
# 32,768 rows keeps that near 20 MB whatever the window holds.
CSV_BLOCK_ROWS: Final = 32_768
POSTURE_COLUMNS: Final = ("time_utc", "time_utc_ns", "device", "flexion_deg", "lateral_deg",
                          "state", "activity", "activity_name", "wear_s")
EPISODE_COLUMNS: Final = ("device", "start_utc", "end_utc", "start_utc_ns", "end_utc_ns",
                          "duration_s", "peak_deg", "mean_deg")
PARQUET_INSTALL_HINT: Final = "--format parquet needs pyarrow: pip install 'spinewatch[parquet]'"
# Ids are checked by the wire format (letters, digits, _ . -), so CSV rows can be joined
# without quoting; anything else goes through the csv module.
_PLAIN_ID: Final = re.compile(r"^[A-Za-z0-9_.-]*$")

# int8 code (offset by 1 so that -1, "not sent", is index 0) -> CSV text / activity name
_CODE_TEXT: Final = np.array([""] + [str(i) for i in range(128)], dtype=object)
_ACTIVITY_NAME: Final = np.array([""] + [ACTIVITY_NAMES.get(i, str(i)) for i in range(128)], dtype=object)


class ExportError(SpineWatchError):
    """The export cannot be made (unknown patient, no data in the period)."""


def require_pyarrow() -> Any:
    """``pyarrow`` (the optional extra ``spinewatch[parquet]``), or ExportError naming the pip command."""
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError as exc:
        raise ExportError(PARQUET_INSTALL_HINT) from exc
    return pyarrow


@dataclass(frozen=True, slots=True)
class ExportPaths:
    posture: Path
    episodes: Path


def export_paths(prefix: str | Path, fmt: str) -> ExportPaths:
    """``<prefix>.posture.<fmt>`` and ``<prefix>.episodes.<fmt>`` (a trailing .csv/.parquet is dropped)."""
    p = Path(prefix)
    if p.suffix in (".csv", ".parquet"):
        p = p.with_suffix("")
    return ExportPaths(Path(f"{p}.posture.{fmt}"), Path(f"{p}.episodes.{fmt}"))


@dataclass(frozen=True, slots=True)
class ExportResult:
    paths: ExportPaths
    posture_rows: int
    episodes: int
    wall_s: float

    @property
    def rows_per_s(self) -> float:
        return self.posture_rows / self.wall_s if self.wall_s > 0 else float("inf")


def iso_utc_ms(t_ns: npt.NDArray[np.int64]) -> npt.NDArray[np.str_]:
    """UTC ns -> ``2026-03-01T08:00:00.010Z`` (ms resolution)."""
    return np.datetime_as_string(np.asarray(t_ns, np.int64).astype("datetime64[ns]"), unit="ms", timezone="UTC")


def _angle_text(x: npt.NDArray[np.float64]) -> list[str]:
    """Degrees with the wire's 0.01 resolution; NaN -> empty."""
    x = np.round(x, 2) + 0.0  # + 0.0: no "-0.00"
    if np.isnan(x).any():
        return ["" if math.isnan(v) else f"{v:.2f}" for v in x.tolist()]
    return [f"{v:.2f}" for v in x.tolist()]


class _Writer(Protocol):
    def posture(self, chunk: PostureChunk) -> None: ...
    def episodes(self, rows: list[SlouchEvent]) -> None: ...
    def close(self) -> None: ...


def _period_text(x: npt.NDArray[np.float64]) -> list[str]:
    """Sample periods, s, as the shortest text that reads back exactly (``0.01``); empty if unknown."""
    uniq, inv = np.unique(x, return_inverse=True)  # a few distinct periods per chunk
    text = np.array(["" if np.isnan(v) else repr(float(v)) for v in uniq], dtype=object)
    out: list[str] = text[inv.reshape(-1)].tolist()
    return out


class CsvWriter:
    """Posture and episode CSV files (UTF-8, header row, ``\\n`` line ends)."""

    def __init__(self, posture_path: Path, episodes_path: Path) -> None:
        self._pf = open(posture_path, "w", newline="", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._ef = open(episodes_path, "w", newline="", encoding="utf-8")  # noqa: SIM115
        self._pw = csv.writer(self._pf, lineterminator="\n")
        self._pw.writerow(POSTURE_COLUMNS)
        csv.writer(self._ef, lineterminator="\n").writerow(EPISODE_COLUMNS)

    def posture(self, chunk: PostureChunk) -> None:
        for i in range(0, len(chunk), CSV_BLOCK_ROWS):
            self._block(chunk, slice(i, i + CSV_BLOCK_ROWS))

    def _block(self, chunk: PostureChunk, rows: slice) -> None:
        c = PostureChunk(chunk.end_ns, chunk.t_ns[rows], chunk.device[rows], chunk.flexion_deg[rows],
                         chunk.lateral_deg[rows], chunk.state[rows], chunk.activity[rows], chunk.wear_s[rows])
        cols = (
            iso_utc_ms(c.t_ns).tolist(), [str(t) for t in c.t_ns.tolist()], c.device.tolist(),
            _angle_text(c.flexion_deg), _angle_text(c.lateral_deg),
            _CODE_TEXT[c.state.astype(np.int16) + 1].tolist(), _CODE_TEXT[c.activity.astype(np.int16) + 1].tolist(),
            _ACTIVITY_NAME[c.activity.astype(np.int16) + 1].tolist(), _period_text(c.wear_s),
        )
        if all(_PLAIN_ID.match(d) for d in set(cols[2])):
            # ~2x faster than csv.writer, and the same bytes: no field needs quoting
            self._pf.write("\n".join(map(",".join, zip(*cols, strict=True))))
            self._pf.write("\n")
        else:
            self._pw.writerows(zip(*cols, strict=True))

    def episodes(self, rows: list[SlouchEvent]) -> None:
        w = csv.writer(self._ef, lineterminator="\n")
        starts = iso_utc_ms(np.array([e.start_ns for e in rows], np.int64)).tolist() if rows else []
        ends = iso_utc_ms(np.array([e.end_ns for e in rows], np.int64)).tolist() if rows else []
        for e, s, t in zip(rows, starts, ends, strict=True):
            w.writerow((e.device, s, t, e.start_ns, e.end_ns, f"{stored_duration_s(e):.2f}", f"{e.peak_deg:.2f}",
                        "" if e.mean_deg is None else f"{e.mean_deg:.2f}"))

    def close(self) -> None:
        self._pf.close()
        self._ef.close()


class ParquetWriter:
    """Posture and episode Parquet files (zstd); one row group per posture chunk (time window)."""

    def __init__(self, posture_path: Path, episodes_path: Path, metadata: dict[str, str]) -> None:
        pa = require_pyarrow()
        import pyarrow.parquet as pq

        self._pa, self._pq = pa, pq
        ts = pa.timestamp("ns", tz="UTC")
        self._psch = pa.schema([
            ("time_utc", ts), ("time_utc_ns", pa.int64()), ("device", pa.string()),
            ("flexion_deg", pa.float64()), ("lateral_deg", pa.float64()), ("state", pa.int8()),
            ("activity", pa.int8()), ("activity_name", pa.string()), ("wear_s", pa.float64()),
        ], metadata=metadata)
        self._esch = pa.schema([
            ("device", pa.string()), ("start_utc", ts), ("end_utc", ts), ("start_utc_ns", pa.int64()),
            ("end_utc_ns", pa.int64()), ("duration_s", pa.float64()), ("peak_deg", pa.float64()),
            ("mean_deg", pa.float64()),
        ], metadata=metadata)
        self._episodes_path = episodes_path
        self._pw = pq.ParquetWriter(posture_path, self._psch, compression="zstd")
        self._episodes: list[SlouchEvent] | None = None

    def posture(self, c: PostureChunk) -> None:
        if not len(c):
            return
        pa = self._pa
        act = c.activity.astype(np.int16) + 1
        # Strings are built in Arrow from dictionary codes, not from Python lists of str: an hour
        # is 360,000 rows, and per-row Python objects made the Parquet export the memory peak.
        devices, dev_codes = np.unique(c.device, return_inverse=True)
        device = pa.DictionaryArray.from_arrays(pa.array(dev_codes.astype(np.int32)),
                                                pa.array(devices.tolist(), pa.string()))
        names = pa.DictionaryArray.from_arrays(pa.array(act, pa.int16(), mask=act == 0),
                                               pa.array(_ACTIVITY_NAME.tolist(), pa.string()))
        arrays = [
            pa.array(c.t_ns, pa.int64()).cast(pa.timestamp("ns", tz="UTC")), pa.array(c.t_ns, pa.int64()),
            device.cast(pa.string()),
            pa.array(c.flexion_deg, pa.float64(), from_pandas=True),  # NaN -> null
            pa.array(c.lateral_deg, pa.float64(), from_pandas=True),
            pa.array(c.state, pa.int8(), mask=c.state < 0), pa.array(c.activity, pa.int8(), mask=c.activity < 0),
            names.cast(pa.string()), pa.array(c.wear_s, pa.float64(), from_pandas=True),
        ]
        self._pw.write_table(pa.Table.from_arrays(arrays, schema=self._psch))
        del arrays
        pa.default_memory_pool().release_unused()  # hand freed chunk buffers back between hours

    def episodes(self, rows: list[SlouchEvent]) -> None:
        self._episodes = rows

    def close(self) -> None:
        self._pw.close()
        pa, rows = self._pa, self._episodes or []
        start = np.array([e.start_ns for e in rows], np.int64)
        end = np.array([e.end_ns for e in rows], np.int64)
        ts = pa.timestamp("ns", tz="UTC")
        table = pa.Table.from_arrays([
            pa.array([e.device for e in rows], pa.string()), pa.array(start, pa.int64()).cast(ts),
            pa.array(end, pa.int64()).cast(ts), pa.array(start, pa.int64()), pa.array(end, pa.int64()),
            pa.array([stored_duration_s(e) for e in rows], pa.float64()),
            pa.array([e.peak_deg for e in rows], pa.float64()),
            pa.array([e.mean_deg for e in rows], pa.float64()),
        ], schema=self._esch)
        self._pq.write_table(table, self._episodes_path, compression="zstd")


def _part(p: Path) -> Path:
    return p.with_name(p.name + ".part")


def export(
    store: Store,
    patient: str,
    start_ns: int,
    end_ns: int,
    paths: ExportPaths,
    fmt: str,
    *,
    on_progress: Callable[[float, int], None] | None = None,
    window_ns: int = EXPORT_WINDOW_NS,
) -> ExportResult:
    """Write every posture sample and slouch episode of ``patient`` in [start_ns, end_ns) (UTC ns).

    Args:
        store: where to read (InfluxDB or SQLite).
        patient: pseudonymous patient id.
        start_ns, end_ns: the period, UTC ns, end exclusive.
        paths: the two output files (see :func:`export_paths`); their folder is created.
        fmt: ``csv`` or ``parquet``.
        on_progress: called after each window with (fraction of the period done 0..1, rows so far).
        window_ns: time window per read, UTC ns (memory is bounded by one window).

    Raises:
        ExportError: unknown patient, no posture data in the period, pyarrow missing for parquet.
        ValueError: ``fmt`` unknown or start_ns >= end_ns.
    """
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if start_ns >= end_ns:
        raise ValueError(f"start_ns must be < end_ns, got {start_ns} >= {end_ns}")
    if fmt == "parquet":
        require_pyarrow()
    if not store.has_patient(patient):
        raise ExportError(f"unknown patient {patient!r}: no posture data of this patient in {store.address}")
    t_start = time.perf_counter()
    created_dirs: list[Path] = []  # deepest first
    d = paths.posture.parent
    while not d.exists():
        created_dirs.append(d)
        d = d.parent
    for d in reversed(created_dirs):
        d.mkdir()
    parts = ExportPaths(_part(paths.posture), _part(paths.episodes))
    ok = False
    writer: _Writer | None = None
    try:
        if fmt == "csv":
            writer = CsvWriter(parts.posture, parts.episodes)
        else:
            writer = ParquetWriter(parts.posture, parts.episodes, {
                "spinewatch.patient": patient, "spinewatch.start_utc_ns": str(start_ns),
                "spinewatch.end_utc_ns": str(end_ns)})
        rows = 0
        for chunk in store.posture_chunks(patient, start_ns, end_ns, window_ns):
            writer.posture(chunk)
            rows += len(chunk)
            if on_progress is not None:
                on_progress((chunk.end_ns - start_ns) / (end_ns - start_ns), rows)
        if rows == 0:
            raise ExportError(f"no posture data for patient {patient!r} in the period "
                              f"{_iso(start_ns)} to {_iso(end_ns)} (end exclusive)")
        episodes = store.episodes(patient, start_ns, end_ns)
        writer.episodes(episodes)
        writer.close()
        writer = None
        os.replace(parts.posture, paths.posture)
        os.replace(parts.episodes, paths.episodes)
        ok = True
    finally:
        if writer is not None:
            with contextlib.suppress(Exception):  # already failing: keep the first error
                writer.close()
        if not ok:
            for p in (parts.posture, parts.episodes):
                p.unlink(missing_ok=True)
            for d in created_dirs:
                try:
                    d.rmdir()
                except OSError:
                    break
    return ExportResult(paths, rows, len(episodes), time.perf_counter() - t_start)


def _iso(t_ns: int) -> str:
    return str(iso_utc_ms(np.array([t_ns], np.int64))[0])
