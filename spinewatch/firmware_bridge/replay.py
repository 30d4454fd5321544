"""Recorded IMU streams: the file format, a writer (``bridge record``) and a replay ImuSource.

The format is documented for users in docs/recordings.md; keep the two in step.

Two containers hold the same columns, one row per sample, in sensor-time order:

| column | unit | meaning |
|---|---|---|
| ``t_ns`` | ns, int64 | sensor time (sensor clock, not UTC); evenly spaced by ``dt_ns`` except across gaps |
| ``acc_x_m_s2``, ``acc_y_m_s2``, ``acc_z_m_s2`` | m/s^2 | specific force, body frame (x forward, y left, z up) |
| ``gyr_x_rad_s``, ``gyr_y_rad_s``, ``gyr_z_rad_s`` | rad/s | angular rate, body frame |
| ``gap_before`` | 0/1 | 1 if samples were lost just before this one |

- **CSV** (``.csv``): first line ``# spinewatch-imu v1 rate_hz=<Hz>``, then a header line
  with the column names above, then one row per sample. Floats are written with 9
  significant digits.
- **NumPy** (``.npz``): arrays ``t_ns`` (N,) int64, ``acc_m_s2`` (N, 3), ``gyr_rad_s`` (N, 3)
  float64, ``gap_before`` (N,) bool, and scalars ``rate_hz`` (float) and ``version`` (1).

Recordings hold what the bridge hands to the filter: body-frame samples after decoding,
remapping and timing, so a replay reproduces a live session's angles exactly.
"""

from __future__ import annotations

import asyncio
import csv
import math
import os
import time
import zipfile
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final, Self

import numpy as np
import numpy.typing as npt

from spinewatch.firmware_bridge.source import ImuSource
from spinewatch.model import NS_PER_S, Float2D, ImuBatch

__all__ = ["COLUMNS", "Recording", "RecordingWriter", "ReplaySource", "read_recording", "record", "write_recording"]

FORMAT_LINE: Final = "# spinewatch-imu v1"
COLUMNS: Final = (
    "t_ns", "acc_x_m_s2", "acc_y_m_s2", "acc_z_m_s2", "gyr_x_rad_s", "gyr_y_rad_s", "gyr_z_rad_s", "gap_before",
)
_YIELD_EVERY_BATCHES: Final = 200


@dataclass(frozen=True, slots=True)
class Recording:
    """A whole recording in memory.

    Attributes:
        rate_hz: nominal sample rate, Hz.
        t_ns: (N,) int64 sensor time, ns.
        acc_m_s2: (N, 3) body frame, m/s^2.
        gyr_rad_s: (N, 3) body frame, rad/s.
        gap_before: (N,) bool.
    """

    rate_hz: float
    t_ns: npt.NDArray[np.int64]
    acc_m_s2: Float2D
    gyr_rad_s: Float2D
    gap_before: npt.NDArray[np.bool_]

    def __len__(self) -> int:
        return len(self.t_ns)

    @property
    def dt_ns(self) -> int:
        return round(NS_PER_S / self.rate_hz)

    def batches(self, batch_samples: int) -> list[ImuBatch]:
        """Split into batches of at most ``batch_samples``, breaking at every gap."""
        if batch_samples < 1:
            raise ValueError(f"batch_samples must be >= 1, got {batch_samples}")
        dt = self.dt_ns
        breaks = np.flatnonzero(self.gap_before[1:] | (np.diff(self.t_ns) != dt)) + 1
        out: list[ImuBatch] = []
        for a, b in zip(np.r_[0, breaks], np.r_[breaks, len(self)], strict=True):
            for i in range(int(a), int(b), batch_samples):
                j = min(int(b), i + batch_samples)
                gap = bool(self.gap_before[i]) or (i == a and a > 0)
                out.append(ImuBatch(int(self.t_ns[i]), dt, self.gyr_rad_s[i:j], self.acc_m_s2[i:j], gap))
        return out


def _check(rec: Recording, path: Path) -> Recording:
    n = len(rec.t_ns)
    if n == 0:
        raise ValueError(f"{path}: holds no samples")
    if rec.acc_m_s2.shape != (n, 3) or rec.gyr_rad_s.shape != (n, 3) or rec.gap_before.shape != (n,):
        raise ValueError(f"{path}: columns have different lengths or shapes")
    if not (math.isfinite(rec.rate_hz) and rec.rate_hz > 0):
        raise ValueError(f"{path}: rate_hz must be > 0, got {rec.rate_hz}")
    if n > 1 and np.any(np.diff(rec.t_ns) <= 0):
        i = int(np.flatnonzero(np.diff(rec.t_ns) <= 0)[0]) + 1
        raise ValueError(f"{path}: t_ns must increase; sample {i} has {rec.t_ns[i]} after {rec.t_ns[i - 1]}")
    if not (np.all(np.isfinite(rec.acc_m_s2)) and np.all(np.isfinite(rec.gyr_rad_s))):
        raise ValueError(f"{path}: non-finite acc/gyr values")
    return rec


def read_recording(path: str | Path) -> Recording:
    """Read a ``.csv`` or ``.npz`` recording.

    Raises:
        ValueError: the file is missing or unreadable, not a recording (unknown extension,
            not a NumPy archive, not UTF-8 text), has missing columns or bad values, or holds
            no sample; one line naming the file (and, for CSV, the line).
    """
    p = Path(path)
    try:
        return _read_recording(p)
    except OSError as exc:
        cause = (exc.strerror or str(exc)).lower()
        raise ValueError(f"{p}: cannot be read ({cause})") from None
    except UnicodeDecodeError:
        raise ValueError(f"{p}: not a CSV recording (not UTF-8 text)") from None


def _read_recording(p: Path) -> Recording:
    if p.suffix == ".npz":
        try:
            z = np.load(p, allow_pickle=False)
        except (ValueError, EOFError, zipfile.BadZipFile):  # numpy's "pickled data" is any non-archive
            raise ValueError(f"{p}: not a .npz recording (not a NumPy .npz archive)") from None
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise ValueError(f"{p}: not a .npz recording (a single .npy array, not an .npz archive)")
        with z:
            missing = {"t_ns", "acc_m_s2", "gyr_rad_s", "gap_before", "rate_hz"} - set(z.files)
            if missing:
                raise ValueError(f"{p}: missing arrays {sorted(missing)}")
            rec = Recording(float(z["rate_hz"]), z["t_ns"].astype(np.int64), z["acc_m_s2"].astype(np.float64),
                            z["gyr_rad_s"].astype(np.float64), z["gap_before"].astype(bool))
        return _check(rec, p)
    if p.suffix != ".csv":
        raise ValueError(f"{p}: recordings are .csv or .npz, got {p.suffix!r}")
    with p.open(newline="") as f:
        first = f.readline().strip()
        if not first.startswith(FORMAT_LINE):
            raise ValueError(f"{p}: line 1 must start with {FORMAT_LINE!r}, got {first[:60]!r}")
        try:
            rate_hz = float(dict(kv.split("=", 1) for kv in first[len(FORMAT_LINE):].split())["rate_hz"])
        except (KeyError, ValueError):
            raise ValueError(f"{p}: line 1 must give rate_hz=<Hz>, got {first!r}") from None
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header) != COLUMNS:
            raise ValueError(f"{p}: line 2 must be the header {','.join(COLUMNS)}, got {header}")
        rows: list[list[str]] = list(reader)
    try:
        t = np.array([int(r[0]) for r in rows], dtype=np.int64)
        vals = np.array([[float(x) for x in r[1:7]] for r in rows], dtype=np.float64).reshape(-1, 6)
        gap = np.array([r[7].strip() not in ("0", "", "false", "False") for r in rows], dtype=bool)
    except (ValueError, IndexError) as exc:
        bad = next((i for i, r in enumerate(rows) if len(r) != len(COLUMNS)), None)
        where = f"line {bad + 3} has {len(rows[bad])} fields" if bad is not None else str(exc)
        raise ValueError(f"{p}: bad row: {where}") from None
    return _check(Recording(rate_hz, t, vals[:, :3], vals[:, 3:], gap), p)


class RecordingWriter:
    """Append batches to a recording; ``.csv`` streams to disk, ``.npz`` is written on close.

    Everything goes to ``FILE.part`` first (:attr:`part_path`); :meth:`close` renames it to
    ``FILE`` when at least one sample was written, and removes it otherwise: there is never an
    empty or half-written file under the recording's name, and an existing ``FILE`` is only
    replaced by a complete recording. Closing on an exception (Ctrl-C) keeps the samples
    written so far: they make a valid recording.

    Usage::

        with RecordingWriter("session.csv", rate_hz=100.0) as w:
            w.write(batch)
    """

    def __init__(self, path: str | Path, rate_hz: float) -> None:
        self.path = Path(path)
        if self.path.suffix not in (".csv", ".npz"):
            raise ValueError(f"{self.path}: recordings are .csv or .npz, got {self.path.suffix!r}")
        self.part_path = self.path.with_name(self.path.name + ".part")
        self.rate_hz = float(rate_hz)
        self.samples = 0
        self._parts: list[ImuBatch] = []
        self._f = None
        self._closed = False
        if self.path.suffix == ".csv":
            self._f = self.part_path.open("w", newline="")
            self._f.write(f"{FORMAT_LINE} rate_hz={self.rate_hz:g}\n{','.join(COLUMNS)}\n")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def write(self, b: ImuBatch) -> None:
        n = len(b)
        if self._f is not None:
            t = b.t0_ns + np.arange(n, dtype=np.int64) * b.dt_ns
            lines = [
                f"{t[i]},{a[0]:.9g},{a[1]:.9g},{a[2]:.9g},{g[0]:.9g},{g[1]:.9g},{g[2]:.9g},"
                f"{int(b.gap_before and i == 0)}\n"
                for i, (a, g) in enumerate(zip(b.acc_m_s2, b.gyr_rad_s, strict=True))
            ]
            self._f.writelines(lines)
        else:
            self._parts.append(b)
        self.samples += n

    def close(self) -> None:
        """Finish the file: ``FILE`` if a sample was written, else nothing (``FILE.part`` removed)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._finish_part()
        except BaseException:
            self.part_path.unlink(missing_ok=True)
            raise
        if self.samples:
            os.replace(self.part_path, self.path)
        else:
            self.part_path.unlink(missing_ok=True)

    def _finish_part(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None
        elif self.path.suffix == ".npz" and self.samples:
            parts, self._parts = self._parts, []
            t = (np.concatenate([p.t0_ns + np.arange(len(p), dtype=np.int64) * p.dt_ns for p in parts])
                 if parts else np.zeros(0, np.int64))
            gap = (np.concatenate([np.r_[p.gap_before, np.zeros(len(p) - 1, bool)] for p in parts])
                   if parts else np.zeros(0, bool))
            acc = np.concatenate([p.acc_m_s2 for p in parts]) if parts else np.zeros((0, 3))
            gyr = np.concatenate([p.gyr_rad_s for p in parts]) if parts else np.zeros((0, 3))
            with self.part_path.open("wb") as f:  # a file object: savez would append .npz to a name
                np.savez_compressed(f, t_ns=t, acc_m_s2=acc, gyr_rad_s=gyr, gap_before=gap,
                                    rate_hz=np.float64(self.rate_hz), version=np.int64(1))


async def record(source: ImuSource, path: str | Path, duration_s: float | None = None,
                 max_samples: int | None = None, on_start: Callable[[], None] | None = None) -> int:
    """Record ``source`` to ``path`` until it ends, ``duration_s`` of sensor time passed,
    or ``max_samples`` were written. Returns the number of samples written; with none,
    ``path`` is not written (see :class:`RecordingWriter`). ``on_start`` is called once the
    source is open and the file started (the CLI installs its Ctrl-C handler there)."""
    async with source:
        with RecordingWriter(path, source.rate_hz) as w:
            if on_start is not None:
                on_start()
            t_start: int | None = None
            async for b in source.batches():
                t_start = b.t0_ns if t_start is None else t_start
                w.write(b)
                if max_samples is not None and w.samples >= max_samples:
                    break
                if duration_s is not None and b.t0_ns + len(b) * b.dt_ns - t_start >= duration_s * NS_PER_S:
                    break
            return w.samples


class ReplaySource:
    """A recording played back as an :class:`ImuSource`.

    Args:
        path: ``.csv`` or ``.npz`` recording (see the module docstring).
        batch_samples: samples per batch (batches also break at gaps).
        speed: None = as fast as possible; otherwise ``speed`` times real time.
    """

    def __init__(self, path: str | Path, batch_samples: int = 50, speed: float | None = None) -> None:
        if speed is not None and not (math.isfinite(speed) and speed > 0):
            raise ValueError(f"speed must be None or > 0, got {speed!r}")
        self.path = Path(path)
        self.batch_samples = batch_samples
        self.speed = speed
        self._rec: Recording | None = None
        self._stopping = False

    @property
    def rate_hz(self) -> float:
        return self._rec.rate_hz if self._rec is not None else read_recording(self.path).rate_hz

    async def __aenter__(self) -> Self:
        self._rec = await asyncio.get_running_loop().run_in_executor(None, read_recording, self.path)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._rec = None

    def stop(self) -> None:
        """End the stream after the current batch (SIGINT/SIGTERM of ``bridge run --replay``)."""
        self._stopping = True

    async def batches(self) -> AsyncIterator[ImuBatch]:
        if self._rec is None:
            raise RuntimeError("use ReplaySource inside 'async with' before batches()")
        batches = self._rec.batches(self.batch_samples)
        t_wall0 = time.monotonic()
        t_sensor0 = batches[0].t0_ns if batches else 0
        for k, b in enumerate(batches):
            if self._stopping:
                return
            if self.speed is not None:
                due = t_wall0 + (b.t0_ns + len(b) * b.dt_ns - t_sensor0) / NS_PER_S / self.speed
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)  # sync-ok: real-time pacing of the replay
                if self._stopping:
                    return
            elif k % _YIELD_EVERY_BATCHES == 0:
                await asyncio.sleep(0)
            yield b


def write_recording(path: str | Path, rate_hz: float, batches: Iterable[ImuBatch]) -> int:
    """Write ``batches`` to ``path`` at once; returns the number of samples."""
    with RecordingWriter(path, rate_hz) as w:
        for b in batches:
            w.write(b)
        return w.samples
