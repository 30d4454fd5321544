"""Simulated patient: a scripted posture day turned into IMU samples, served as an ImuSource.

Conventions (the same as the rest of SpineWatch):

- Body frame: x forward, y left, z up (cranial). Earth frame: z up; x is the direction
  the patient faces at heading 0, y to their left.
- Orientation ``q_body_to_earth`` (stored ``[w, x, y, z]``) is built from the script's
  angles as ``Rz(heading) @ Ry(flexion) @ Rx(lateral)`` (intrinsic z-y'-x'', SciPy
  ``Rotation.from_euler("ZYX", [heading, flexion, lateral])``):

  - flexion: rotation about body +y (left); positive tilts the trunk forward.
  - lateral: rotation about body +x (forward); positive bends the trunk to the right.
  - heading: rotation about earth +z (counter-clockwise seen from above), unwrapped.

  At rest the accelerometer (body frame) therefore reads
  ``g * (-sin(flexion), sin(lateral) * cos(flexion), cos(lateral) * cos(flexion))``.
- Sensor frame = body frame rotated by the fixed mounting misalignment:
  ``q_sensor_to_earth = q_body_to_earth * q_sensor_to_body`` (:class:`Mounting`).
- Accelerometer: specific force in the sensor frame, m/s^2,
  ``R_earth_to_sensor @ ((0, 0, 9.80665) + a_linear_earth)`` (+9.81 on "up" at rest).
- Gyroscope: angular rate in the sensor frame, rad/s. Sample k holds the mean rate over
  ``(t[k-1], t[k]]``: ``q[k] = q[k-1] * exp(gyr_true[k] * dt)`` holds exactly, so a filter
  that integrates each sample's rate from the previous sample reproduces the trajectory.
- Sample k is taken at ``t_s = k * dt_ns / 1e9`` with ``dt_ns = round(1e9 / rate_hz)``.

Everything random (script, noise, bias) is seeded; a sample's value depends only on the
script, the seed and its index, never on how the samples are chunked.

Not modelled: the sensor's linear acceleration caused by the trunk rotating about the hips
(a few 0.1 m/s^2 during posture ramps), magnetometer, temperature effects, packet loss.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import itertools
import math
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Final, NamedTuple, Self

import numpy as np
import numpy.typing as npt

from spinewatch.model import GRAVITY_M_S2, NS_PER_S, Float1D, Float2D, ImuBatch, Int8_1D

__all__ = [
    "GRAVITY_M_S2",
    "SEGMENT_KINDS",
    "ImuErrors",
    "ImuSynthesizer",
    "Mounting",
    "PostureScript",
    "Segment",
    "SimulatedPatient",
    "SimulatedRecording",
    "Tap",
    "q_from_angles",
    "simulate",
]


# Posture kinds; ``labels_at`` returns the index into this tuple (int8).
SEGMENT_KINDS: Final = ("calibrate", "sit", "slouch", "stand", "walk", "lie")
# Kinds during which flexion above the threshold counts as slouching (truth episodes).
_UPRIGHT_KINDS: Final = ("calibrate", "sit", "slouch", "stand")

DEFAULT_RAMP_S: Final = 1.5  # raised-cosine transition between postures: a calm sit-to-slouch
LIE_RAMP_S: Final = 3.0  # lying down / getting up takes longer
TURN_RAMP_S: Final = 2.0  # a 180 deg turn while walking takes about 2 s

# Walking model (earth frame, scaled by the walking intensity 0..1)
STEP_HZ: Final = 1.9  # cadence ~114 steps/min, typical indoor walking
WALK_VERTICAL_M_S2: Final = 2.0  # trunk vertical acceleration at the step frequency
WALK_FORE_AFT_M_S2: Final = 1.0  # fore-aft, at the step frequency, 90 deg out of phase
WALK_MEDIOLATERAL_M_S2: Final = 0.5  # side to side, at the stride frequency (STEP_HZ / 2)
WALK_FLEXION_SWAY_DEG: Final = 1.5  # trunk pitch oscillation per step
WALK_LATERAL_SWAY_DEG: Final = 2.5  # trunk roll oscillation per stride
WALK_HEADING_SWAY_DEG: Final = 3.0  # trunk yaw oscillation per stride

_TAP_MAX_S: Final = 0.2  # longest tap spike accepted, s
_TAP_REBOUND: Final = 4.0  # the rebound is 4x longer and 4x weaker: zero net velocity change
_TAP_SPAN: Final = 1.0 + _TAP_REBOUND  # spike + rebound, in units of the spike's duration
_BIAS_KNOT_S: Final = 10.0  # the gyro bias random walk is drawn every 10 s, linear in between
_NOISE_BLOCK_SAMPLES: Final = 4096  # white noise is drawn in index-aligned blocks (chunking-proof)
_STREAM_NOISE: Final = 0x6E6F  # SeedSequence spawn keys of the independent random streams
_STREAM_BIAS: Final = 0x6269

Float3 = tuple[float, float, float]


# --------------------------------------------------------------------------- quaternions


def q_from_angles(heading_rad: Float1D, flexion_rad: Float1D, lateral_rad: Float1D) -> Float2D:
    """``q_body_to_earth`` from the script's angles, ``Rz(heading) Ry(flexion) Rx(lateral)``.

    Args:
        heading_rad: (N,) rotation about earth +z, rad.
        flexion_rad: (N,) rotation about body +y (left), forward positive, rad.
        lateral_rad: (N,) rotation about body +x (forward), right bend positive, rad.

    Returns:
        (N, 4) ``q_body_to_earth`` as ``[w, x, y, z]``, unit norm.
    """
    ch, sh = np.cos(0.5 * heading_rad), np.sin(0.5 * heading_rad)
    cf, sf = np.cos(0.5 * flexion_rad), np.sin(0.5 * flexion_rad)
    cl, sl = np.cos(0.5 * lateral_rad), np.sin(0.5 * lateral_rad)
    q = np.empty((np.shape(heading_rad)[0], 4))
    q[:, 0] = ch * cf * cl + sh * sf * sl
    q[:, 1] = ch * cf * sl - sh * sf * cl
    q[:, 2] = ch * sf * cl + sh * cf * sl
    q[:, 3] = sh * cf * cl - ch * sf * sl
    return q


def _qmul(a: Float2D, b: Float2D) -> Float2D:
    """Hamilton product of (N, 4) or (4,) ``[w, x, y, z]`` quaternions, broadcast."""
    aw, ax, ay, az = a[..., 0], a[..., 1], a[..., 2], a[..., 3]
    bw, bx, by, bz = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    return np.stack(
        (
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ),
        axis=-1,
    )


def _qconj(q: Float2D) -> Float2D:
    return q * np.array([1.0, -1.0, -1.0, -1.0])


def _rotate(q: Float2D, v: Float2D) -> Float2D:
    """Rotate (N, 3) vectors by (N, 4) quaternions: ``R(q) @ v`` (from q's source frame)."""
    w = q[:, :1]
    u = q[:, 1:]
    t = 2.0 * np.cross(u, v)
    return v + w * t + np.cross(u, t)


def _rotvec(q: Float2D) -> Float2D:
    """(N, 3) rotation vectors (axis * angle, rad) of (N, 4) quaternions, shortest arc."""
    sign = np.where(q[:, 0] < 0.0, -1.0, 1.0)
    w = q[:, 0] * sign
    v = q[:, 1:] * sign[:, None]
    s = np.sqrt(np.einsum("ij,ij->i", v, v))
    angle = 2.0 * np.arctan2(s, w)
    small = s < 1e-12
    scale = np.where(small, 2.0 / np.where(small, w, 1.0), angle / np.where(small, 1.0, s))
    return v * scale[:, None]


def _finite(value: object, name: str) -> float:
    """``float(value)``, or ValueError naming the field if it is not a finite number."""
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(x):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return x


def _unit3(v: Float3, name: str) -> npt.NDArray[np.float64]:
    a = np.asarray(v, dtype=np.float64)
    if a.shape != (3,) or not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be 3 finite numbers, got {v!r}")
    n = float(np.linalg.norm(a))
    if n < 1e-9:
        raise ValueError(f"{name} must not be the zero vector")
    return a / n


# --------------------------------------------------------------------------- the script


@dataclass(frozen=True, slots=True)
class Segment:
    """One held posture of the script, entered with a raised-cosine ramp.

    Within ``[start_s, start_s + ramp_s]`` every angle moves from the previous segment's
    target to this segment's with a raised cosine (rate zero at both ends); afterwards it
    is held (walking adds its oscillation).

    Attributes:
        kind: one of :data:`SEGMENT_KINDS`.
        start_s: script time the segment (and its ramp) starts, s.
        end_s: script time it ends, s; the next segment starts here.
        flexion_deg: target trunk flexion relative to neutral upright, degrees, forward +.
        lateral_deg: target lateral bend relative to neutral, degrees, right bend +.
        heading_deg: target heading about earth z, degrees, counter-clockwise seen from
            above, unwrapped (a change between walk segments is a turn).
        ramp_s: transition time into this segment, s; at most the segment's duration.
    """

    kind: str
    start_s: float
    end_s: float
    flexion_deg: float = 0.0
    lateral_deg: float = 0.0
    heading_deg: float = 0.0
    ramp_s: float = DEFAULT_RAMP_S

    def __post_init__(self) -> None:
        if self.kind not in SEGMENT_KINDS:
            raise ValueError(f"kind must be one of {SEGMENT_KINDS}, got {self.kind!r}")
        for name in ("start_s", "end_s", "flexion_deg", "lateral_deg", "heading_deg", "ramp_s"):
            object.__setattr__(self, name, _finite(getattr(self, name), name))
        if not self.end_s > self.start_s:
            raise ValueError(f"end_s ({self.end_s}) must be > start_s ({self.start_s})")
        if not 0.0 < self.ramp_s <= self.end_s - self.start_s:
            raise ValueError(
                f"ramp_s must be in (0, {self.end_s - self.start_s:g}] s (the segment's "
                f"duration), got {self.ramp_s}"
            )

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclass(frozen=True, slots=True)
class Tap:
    """An instantaneous knock on the sensor: a short spike of linear acceleration.

    The spike is a half sine of ``duration_s`` and ``peak_m_s2`` along ``direction_body``,
    followed by a rebound (half sine of ``-peak_m_s2 / 4`` over ``4 * duration_s``) that
    brings the sensor back to rest; the orientation does not change.

    Attributes:
        t_s: script time the spike starts, s.
        peak_m_s2: amplitude of the spike, m/s^2 (several g).
        duration_s: length of the spike, s (20-50 ms for a finger tap).
        direction_body: direction of the push, body frame (normalised on use);
            (1, 0, 0) is a tap on the back pushing the sensor forward.
    """

    t_s: float
    peak_m_s2: float = 40.0
    duration_s: float = 0.03
    direction_body: Float3 = (1.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        for name in ("t_s", "peak_m_s2", "duration_s"):
            object.__setattr__(self, name, _finite(getattr(self, name), name))
        if self.t_s < 0.0:
            raise ValueError(f"t_s must be >= 0, got {self.t_s!r}")
        if not 0.0 < self.duration_s <= _TAP_MAX_S:
            raise ValueError(f"duration_s must be in (0, {_TAP_MAX_S}] s, got {self.duration_s!r}")
        if self.peak_m_s2 < 0.0:
            raise ValueError(f"peak_m_s2 must be >= 0, got {self.peak_m_s2!r}")
        _unit3(self.direction_body, "direction_body")  # validates
        object.__setattr__(self, "direction_body", tuple(float(v) for v in self.direction_body))


class _Channels(NamedTuple):
    """Trajectory channels at some times (internal)."""

    seg: npt.NDArray[np.intp]  # segment index
    flexion_rad: Float1D
    lateral_rad: Float1D
    heading_rad: Float1D
    walk: Float1D  # walking intensity 0..1
    ramping: npt.NDArray[np.bool_]  # inside a segment's ramp (u < 1)


@dataclass(frozen=True, slots=True)
class _Tables:
    """Per-segment arrays for vectorised evaluation (internal)."""

    start_s: Float1D
    end_s: Float1D
    ramp_s: Float1D
    kind: Int8_1D
    target: Float2D  # (S, 4): flexion_rad, lateral_rad, heading_rad, walk
    prev: Float2D  # (S, 4): the previous segment's target (own for the first)
    changes: npt.NDArray[np.bool_]  # (S,): target != prev, i.e. the ramp really moves
    tap_t_s: Float1D
    tap_duration_s: Float1D
    tap_peak_m_s2: Float1D
    tap_dir_body: Float2D


@dataclass(frozen=True, slots=True)
class PostureScript:
    """A scripted posture timeline: contiguous segments from t = 0 plus sensor taps.

    Attributes:
        segments: contiguous :class:`Segment` s, the first starting at 0 s.
        taps: :class:`Tap` s, sorted by time, inside the script.
    """

    segments: tuple[Segment, ...]
    taps: tuple[Tap, ...] = ()
    _tab: _Tables = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        segs = tuple(self.segments)
        taps = tuple(self.taps)
        if not segs:
            raise ValueError("segments must not be empty")
        if not all(isinstance(s, Segment) for s in segs):
            raise TypeError("segments must be Segment instances")
        if not all(isinstance(t, Tap) for t in taps):
            raise TypeError("taps must be Tap instances")
        if segs[0].start_s != 0.0:
            raise ValueError(f"the first segment must start at 0 s, got {segs[0].start_s}")
        for a, b in itertools.pairwise(segs):
            if abs(b.start_s - a.end_s) > 1e-9:
                raise ValueError(f"segments must be contiguous: {a.end_s} s != {b.start_s} s")
        end = segs[-1].end_s
        if any(t.t_s > end for t in taps):
            raise ValueError(f"taps must lie within the script (0..{end} s)")
        if any(b.t_s < a.t_s for a, b in itertools.pairwise(taps)):
            raise ValueError("taps must be sorted by t_s")
        object.__setattr__(self, "segments", segs)
        object.__setattr__(self, "taps", taps)
        target = np.array(
            [
                (
                    math.radians(s.flexion_deg),
                    math.radians(s.lateral_deg),
                    math.radians(s.heading_deg),
                    1.0 if s.kind == "walk" else 0.0,
                )
                for s in segs
            ]
        )
        prev = np.vstack((target[:1], target[:-1]))
        tab = _Tables(
            start_s=np.array([s.start_s for s in segs]),
            end_s=np.array([s.end_s for s in segs]),
            ramp_s=np.array([s.ramp_s for s in segs]),
            kind=np.array([SEGMENT_KINDS.index(s.kind) for s in segs], dtype=np.int8),
            target=target,
            prev=prev,
            changes=np.any(target != prev, axis=1),
            tap_t_s=np.array([t.t_s for t in taps], dtype=np.float64),
            tap_duration_s=np.array([t.duration_s for t in taps], dtype=np.float64),
            tap_peak_m_s2=np.array([t.peak_m_s2 for t in taps], dtype=np.float64),
            tap_dir_body=np.array(
                [_unit3(t.direction_body, "direction_body") for t in taps], dtype=np.float64
            ).reshape(-1, 3),
        )
        object.__setattr__(self, "_tab", tab)

    # ------------------------------------------------------------------ basic properties

    @property
    def duration_s(self) -> float:
        """Length of the script, s."""
        return self.segments[-1].end_s

    def kinds(self) -> frozenset[str]:
        """The posture kinds the script contains (plus "tap" if it has taps)."""
        out = {s.kind for s in self.segments}
        if self.taps:
            out.add("tap")
        return frozenset(out)

    # ------------------------------------------------------------------ truth accessors

    def _channels(self, t_s: Float1D) -> _Channels:
        tab = self._tab
        t = np.asarray(t_s, dtype=np.float64)
        seg = np.searchsorted(tab.start_s, t, side="right") - 1
        np.maximum(seg, 0, out=seg)  # times before 0 hold the first segment
        u = (t - tab.start_s.take(seg)) / tab.ramp_s.take(seg)
        # written so that a held sample (u >= 1) equals the target exactly
        remaining = 0.5 + 0.5 * np.cos(np.pi * np.minimum(np.maximum(u, 0.0), 1.0))
        target = tab.target.take(seg, axis=0)
        val = target + (tab.prev.take(seg, axis=0) - target) * remaining[:, None]
        walk = val[:, 3]
        flex, lat, head = val[:, 0], val[:, 1], val[:, 2]
        if np.any(walk > 0.0):
            phase = (2.0 * np.pi * STEP_HZ) * t
            flex = flex + walk * (math.radians(WALK_FLEXION_SWAY_DEG) * np.sin(phase + 0.4))
            lat = lat + walk * (math.radians(WALK_LATERAL_SWAY_DEG) * np.sin(0.5 * phase))
            head = head + walk * (math.radians(WALK_HEADING_SWAY_DEG) * np.cos(0.5 * phase))
        return _Channels(seg, flex, lat, head, walk, (u < 1.0) & tab.changes.take(seg))

    def flexion_deg_at(self, t_s: npt.ArrayLike) -> Float1D:
        """True trunk flexion at script times.

        Args:
            t_s: (N,) script times, s (sensor clock, 0 = script start).

        Returns:
            (N,) flexion relative to neutral upright, degrees, forward bend positive.
        """
        return np.degrees(self._channels(_times(t_s)).flexion_rad)

    def lateral_deg_at(self, t_s: npt.ArrayLike) -> Float1D:
        """True lateral bend at (N,) script times t_s, s -> (N,) degrees, right bend positive."""
        return np.degrees(self._channels(_times(t_s)).lateral_rad)

    def heading_deg_at(self, t_s: npt.ArrayLike) -> Float1D:
        """True heading at (N,) script times t_s, s -> (N,) degrees about earth z, unwrapped."""
        return np.degrees(self._channels(_times(t_s)).heading_rad)

    def labels_at(self, t_s: npt.ArrayLike) -> Int8_1D:
        """Posture kind at (N,) script times t_s, s -> (N,) int8 index into SEGMENT_KINDS."""
        return self._tab.kind[self._channels(_times(t_s)).seg]

    def q_body_to_earth_at(self, t_s: npt.ArrayLike) -> Float2D:
        """True trunk orientation at (N,) script times t_s, s -> (N, 4) ``[w, x, y, z]``."""
        ch = self._channels(_times(t_s))
        return q_from_angles(ch.heading_rad, ch.flexion_rad, ch.lateral_rad)

    def still_at(self, t_s: npt.ArrayLike, margin_s: float = 0.5) -> npt.NDArray[np.bool_]:
        """Whether the trunk is held still (gravity is the only specific force).

        False inside ramps, while walking (any intensity) and within ``margin_s`` of a tap.

        Args:
            t_s: (N,) script times, s.
            margin_s: extra time excluded around taps, s.

        Returns:
            (N,) bool.
        """
        if not (math.isfinite(margin_s) and margin_s >= 0.0):
            raise ValueError(f"margin_s must be finite and >= 0, got {margin_s!r}")
        t = _times(t_s)
        ch = self._channels(t)
        still = ~ch.ramping & (ch.walk == 0.0)
        tab = self._tab
        if len(tab.tap_t_s):
            # t is near a tap iff some tap j with t_j - margin <= t has t <= end_j + margin
            k = np.searchsorted(tab.tap_t_s, t + margin_s, side="right") - 1
            end_max_s = np.maximum.accumulate(tab.tap_t_s + _TAP_SPAN * tab.tap_duration_s)
            near = (k >= 0) & (t <= end_max_s[np.maximum(k, 0)] + margin_s)
            still &= ~near
        return still

    def slouch_episodes(
        self, threshold_deg: float = 20.0, min_duration_s: float = 0.0
    ) -> list[tuple[float, float, float]]:
        """True slouch episodes computed from the true flexion trajectory.

        An episode starts at the first time the true flexion exceeds ``threshold_deg``
        while the patient is upright (calibrate, sit, slouch or stand; not walking or
        lying) and ends at the first time it falls back to ``threshold_deg`` or below (or
        the upright posture ends, or the script ends). Times are exact to 1 us.

        Args:
            threshold_deg: flexion threshold, degrees.
            min_duration_s: episodes shorter than this are dropped, s.

        Returns:
            ``[(start_s, end_s, peak_deg), ...]`` in time order; peak_deg is the largest
            true flexion within the episode, degrees.
        """
        if not math.isfinite(threshold_deg):
            raise ValueError(f"threshold_deg must be finite, got {threshold_deg!r}")
        if not (math.isfinite(min_duration_s) and min_duration_s >= 0.0):
            raise ValueError(f"min_duration_s must be finite and >= 0, got {min_duration_s!r}")
        upright = np.array([SEGMENT_KINDS.index(k) for k in _UPRIGHT_KINDS], dtype=np.int8)
        thr = math.radians(threshold_deg)

        def above(t: Float1D) -> tuple[npt.NDArray[np.bool_], Float1D]:
            ch = self._channels(t)
            mask = (ch.flexion_rad > thr) & np.isin(tab.kind[ch.seg], upright)
            return mask, ch.flexion_rad

        # The trajectory is monotonic within each ramp and constant (or swaying while
        # walking) after it, so a grid finer than every segment that also holds each
        # ramp's end (where the ramp peaks) sees every crossing and every peak.
        tab = self._tab
        dur = self.duration_s
        grid_dt_s = min(0.05, 0.5 * float(np.min(tab.end_s - tab.start_s)))
        grid = np.unique(
            np.concatenate(
                (
                    np.arange(int(math.floor(dur / grid_dt_s)) + 1) * grid_dt_s,
                    tab.start_s,
                    np.minimum(tab.start_s + tab.ramp_s, dur),
                    [dur],
                )
            )
        )
        grid = grid[grid <= dur]
        mask = np.empty(len(grid), dtype=np.bool_)
        flex = np.empty(len(grid))
        block = 200_000  # grid points per evaluation: bounded temporaries for 24 h scripts
        for b0 in range(0, len(grid), block):
            mask[b0 : b0 + block], flex[b0 : b0 + block] = above(grid[b0 : b0 + block])
        edges = np.diff(mask.astype(np.int8))
        rises = np.flatnonzero(edges == 1) + 1  # first grid index inside a run
        falls = np.flatnonzero(edges == -1) + 1  # first grid index after a run
        if mask[0]:
            rises = np.concatenate(([0], rises))
        starts = _bisect(above, grid[np.maximum(rises - 1, 0)], grid[rises])
        starts[rises == 0] = 0.0
        ends = np.full(len(rises), dur)
        ends[: len(falls)] = _bisect(above, grid[falls - 1], grid[falls])
        out: list[tuple[float, float, float]] = []
        for i, (a, b) in enumerate(zip(starts, ends, strict=True)):
            stop = falls[i] if i < len(falls) else len(grid)
            peak = math.degrees(float(flex[rises[i] : stop].max()))
            if b - a >= min_duration_s:
                out.append((float(a), float(b), peak))
        return out

    # ------------------------------------------------------------------ the scripted day

    @classmethod
    def day(cls, duration_s: float, seed: int = 0) -> PostureScript:
        """A realistic, reproducible posture day of any length from 60 s to 24 h.

        Design (so a detector can be checked exactly against :meth:`slouch_episodes`):

        - 12 s "calibrate": upright sitting, still, flexion = lateral = heading = 0.
        - Desk phases: upright "sit" (flexion -4..+6 deg, lateral +/-3 deg) with "slouch"
          episodes of 25-45 deg flexion (+/-8 deg lateral) lasting 10 s to 6 min (about
          30 % shorter than 30 s); every slouch is preceded and followed by >= 25 s of
          sitting, so true episodes at a 20 deg threshold are >= 20 s apart.
        - Breaks: "stand" (-3..+5 deg), "walk" bouts (2-5 deg plus step sway, legs of
          8-60 s with turns of 30-180 deg), "stand" again. Non-slouch postures never
          exceed +/-8 deg.
        - A supine "lie" (flexion -90 deg) nap at 55 % of days >= 5 min; days >= 16 h
          sleep from 15 h (23:00 when the script starts at 08:00) lying supine or on
          either side.
        - About three "tap"s per hour (some double taps) while sitting, at least one:
          20-50 ms spikes of 30-50 m/s^2.
        - Transitions are raised-cosine ramps of 1.5 s (2 s turns, 3 s lying down/up).

        Args:
            duration_s: script length, s, 60 <= duration_s <= 86400.
            seed: random seed; the same (duration_s, seed) gives the same script.

        Raises:
            ValueError: duration_s out of range.
        """
        if not (math.isfinite(duration_s) and 60.0 <= duration_s <= 86_400.0):
            raise ValueError(f"duration_s must be within 60..86400 s, got {duration_s!r}")
        return _DayBuilder(float(duration_s), int(seed)).build()


def _times(t_s: npt.ArrayLike) -> Float1D:
    t = np.atleast_1d(np.asarray(t_s, dtype=np.float64))
    if t.ndim != 1:
        raise ValueError(f"t_s must be a scalar or have shape (N,), got {t.shape}")
    if not np.all(np.isfinite(t)):
        raise ValueError("t_s must be finite")
    return t


def _bisect(
    pred: Callable[[Float1D], tuple[npt.NDArray[np.bool_], Float1D]],
    lo_s: Float1D,
    hi_s: Float1D,
    tol_s: float = 1e-6,
) -> Float1D:
    """Vectorised bisection: where ``pred(t)[0]`` flips between lo_s (old) and hi_s (new).

    Returns the first time (to tol_s) with the state of hi_s, s.
    """
    lo = np.array(lo_s, dtype=np.float64)
    hi = np.array(hi_s, dtype=np.float64)
    if lo.size == 0:
        return hi
    target = pred(hi)[0]
    while np.max(hi - lo) > tol_s:
        mid = 0.5 * (lo + hi)
        same = pred(mid)[0] == target
        hi = np.where(same, mid, hi)
        lo = np.where(same, lo, mid)
    return hi


@dataclass(slots=True)
class _Row:
    """A segment being planned by :class:`_DayBuilder` (mutable; times relative)."""

    kind: str
    dur_s: float
    flex_deg: float
    lat_deg: float
    heading_deg: float
    ramp_s: float


class _DayBuilder:
    """Builds :meth:`PostureScript.day` (internal; see its docstring for the design)."""

    CALIBRATE_S: Final = 12.0  # >= 10 s of still, upright sitting for the neutral posture
    MIN_GAP_S: Final = 25.0  # sitting before/after each slouch: episodes >= 20 s apart
    NIGHT_START_S: Final = 15 * 3600.0  # 23:00 for a script starting at 08:00
    NIGHT_END_S: Final = 23 * 3600.0  # 07:00

    def __init__(self, duration_s: float, seed: int) -> None:
        self.duration_s = duration_s
        self.rng = np.random.default_rng(np.random.SeedSequence([seed, 0x646179]))
        self.rows: list[_Row] = []
        self.t_s = 0.0
        self.heading_deg = 0.0

    def add(
        self,
        kind: str,
        dur_s: float,
        flex_deg: float,
        lat_deg: float,
        heading_deg: float | None = None,
        ramp_s: float = DEFAULT_RAMP_S,
    ) -> None:
        if heading_deg is None:
            heading_deg = self.heading_deg
        if kind == "lie" or (self.rows and self.rows[-1].kind == "lie"):
            ramp_s = LIE_RAMP_S
        dur_s = round(float(dur_s), 3)
        self.rows.append(
            _Row(kind, dur_s, round(flex_deg, 2), round(lat_deg, 2), heading_deg, ramp_s)
        )
        self.t_s += dur_s
        self.heading_deg = heading_deg

    def sit(self, dur_s: float) -> None:
        u = self.rng.uniform
        if dur_s > 120.0 and self.rng.random() < 0.5:  # a posture shift within a long sit
            first = u(0.3, 0.7) * dur_s
            self.add("sit", first, u(-4.0, 6.0), u(-3.0, 3.0))
            dur_s -= first
        self.add("sit", dur_s, u(-4.0, 6.0), u(-3.0, 3.0))

    def desk(self, length_s: float) -> None:
        u = self.rng.uniform
        end_s = self.t_s + length_s
        self.sit(u(self.MIN_GAP_S, 120.0))
        while self.t_s < end_s:
            r = self.rng.random()
            # short ones (a detector with a 30 s minimum must ignore them), medium, long
            dur = u(10.0, 28.0) if r < 0.3 else u(30.0, 120.0) if r < 0.7 else u(120.0, 360.0)
            self.add("slouch", dur, u(25.0, 45.0), u(-8.0, 8.0))
            long_gap = self.rng.random() < 0.25
            self.sit(u(300.0, 900.0) if long_gap else u(self.MIN_GAP_S, 300.0))

    def walk_break(self, scale: float) -> None:
        u = self.rng.uniform
        if self.rng.random() < 0.25:  # a standing break only
            self.add("stand", u(30.0, 300.0) * scale + 10.0, u(-3.0, 5.0), u(-3.0, 3.0))
            return
        self.add("stand", u(10.0, 60.0), u(-3.0, 5.0), u(-3.0, 3.0))
        total_s = u(40.0, 480.0) * scale + 20.0
        walked_s = 0.0
        while walked_s < total_s:
            leg_s = u(8.0, 60.0)
            turn_deg = float(self.rng.choice([-1.0, 1.0]) * u(30.0, 180.0))
            heading = round(self.heading_deg + turn_deg, 1)
            self.add("walk", leg_s, u(2.0, 5.0), u(-2.0, 2.0), heading, TURN_RAMP_S)
            walked_s += leg_s
        self.add("stand", u(5.0, 40.0), u(-3.0, 5.0), u(-3.0, 3.0))

    def nap(self, dur_s: float) -> None:
        self.add("lie", dur_s, -90.0, 0.0)
        self.sit(self.MIN_GAP_S + 5.0)

    def night(self, dur_s: float) -> None:
        u = self.rng.uniform
        end_s = self.t_s + dur_s
        postures = ((-90.0, 0.0), (0.0, 85.0), (0.0, -85.0))  # supine, right side, left side
        k = 0
        while self.t_s < end_s - 600.0:
            flex, lat = postures[k % 3]
            self.add("lie", min(u(1200.0, 5400.0), end_s - self.t_s), flex, lat)
            k += 1 + int(self.rng.integers(0, 2))
        self.sit(self.MIN_GAP_S + 5.0)

    def build(self) -> PostureScript:
        u = self.rng.uniform
        d = self.duration_s
        self.add("calibrate", self.CALIBRATE_S, 0.0, 0.0, 0.0)
        nap_at_s = 0.55 * d if d >= 300.0 else math.inf
        night_at_s = self.NIGHT_START_S if d >= 16 * 3600.0 else math.inf
        desk_s = min(max(d / 8.0, 40.0), 2700.0)
        scale = min(max(d / 3600.0, 0.1), 1.0)
        while self.t_s < d:
            if self.t_s >= night_at_s:
                self.night(min(self.NIGHT_END_S, d - 1800.0) - self.t_s)
                night_at_s = math.inf
            elif self.t_s >= nap_at_s:
                self.nap(min(max(0.05 * d, 30.0), 1800.0))
                nap_at_s = math.inf
            else:
                self.desk(u(0.5, 1.0) * desk_s)
                self.walk_break(scale)
        return self._finish()

    def _finish(self) -> PostureScript:
        d = self.duration_s
        rows: list[_Row] = []
        t = 0.0
        for row in self.rows:  # cut at the end of the day
            if t >= d - 1e-6:
                break
            rows.append(row)
            t += row.dur_s
        rows[-1].dur_s = round(rows[-1].dur_s - (t - d), 6)
        while True:  # no cut slouch (its episode must end), no segment shorter than its ramp
            last = rows[-1]
            if last.kind == "slouch":
                last.kind, last.flex_deg, last.lat_deg = "sit", 2.0, 0.0
                last.ramp_s = DEFAULT_RAMP_S
            elif last.dur_s < last.ramp_s + 1.0 and len(rows) > 1:
                rows.pop()
                rows[-1].dur_s += last.dur_s
            else:
                break
        segs: list[Segment] = []
        t = 0.0
        for i, r in enumerate(rows):
            end = d if i == len(rows) - 1 else round(t + r.dur_s, 6)
            segs.append(Segment(r.kind, t, end, r.flex_deg, r.lat_deg, r.heading_deg, r.ramp_s))
            t = end
        return PostureScript(tuple(segs), self._taps(segs))

    def _taps(self, segs: list[Segment]) -> tuple[Tap, ...]:
        u = self.rng.uniform
        sits = [s for s in segs if s.kind == "sit" and s.duration_s >= 10.0]
        if not sits:
            return ()
        lengths = np.array([s.duration_s for s in sits])
        n = max(1, int(self.rng.poisson(3.0 * self.duration_s / 3600.0)))
        taps: list[Tap] = []
        for _ in range(n):
            s = sits[int(self.rng.choice(len(sits), p=lengths / lengths.sum()))]
            t = round(u(s.start_s + 4.0, s.end_s - 4.0), 3)
            direction = (1.0, round(u(-0.3, 0.3), 3), round(u(-0.3, 0.3), 3))
            tap = Tap(t, round(u(30.0, 50.0), 1), round(u(0.02, 0.05), 3), direction)
            taps.append(tap)
            if self.rng.random() < 0.3 and t + 0.5 < s.end_s - 3.0:  # a double tap
                t2 = round(t + u(0.25, 0.4), 3)
                taps.append(Tap(t2, tap.peak_m_s2, tap.duration_s, direction))
        return tuple(sorted(taps, key=lambda x: x.t_s))


# --------------------------------------------------------------------------- the sensor


@dataclass(frozen=True, slots=True)
class Mounting:
    """Fixed misalignment of the sensor on the back.

    ``R_sensor_to_body = Rz(yaw) @ Ry(pitch) @ Rx(roll)``: the sensor's axes are the body's
    rotated by these angles (same sign conventions as flexion and lateral bend).

    Attributes:
        pitch_deg: rotation about body +y, degrees.
        roll_deg: rotation about body +x, degrees.
        yaw_deg: rotation about body +z, degrees.
    """

    pitch_deg: float = 4.0
    roll_deg: float = -3.0
    yaw_deg: float = 0.0

    def __post_init__(self) -> None:
        for name in ("pitch_deg", "roll_deg", "yaw_deg"):
            object.__setattr__(self, name, _finite(getattr(self, name), name))

    @property
    def q_sensor_to_body(self) -> Float1D:
        """(4,) ``q_sensor_to_body`` as ``[w, x, y, z]``."""
        rad = np.radians([[self.yaw_deg], [self.pitch_deg], [self.roll_deg]])
        return q_from_angles(rad[0], rad[1], rad[2])[0]

    @property
    def r_sensor_to_body(self) -> Float2D:
        """(3, 3) rotation matrix taking sensor-frame vectors to the body frame."""
        q = np.broadcast_to(self.q_sensor_to_body, (3, 4))
        return _rotate(np.ascontiguousarray(q), np.eye(3)).T


@dataclass(frozen=True, slots=True)
class ImuErrors:
    """Sensor error model (degrees at this configuration edge, rad/s inside).

    Attributes:
        gyr_bias_dps: constant gyroscope bias per sensor axis, deg/s; None draws each
            axis from +/-U(0.5, 1.0) deg/s with the simulator's seed.
        gyr_bias_walk_dps_per_sqrt_s: random-walk density of the slowly drifting part of
            the bias, deg/s/sqrt(s) (0.0015 gives ~0.25 deg/s after 8 h).
        gyr_noise_dps: white noise standard deviation per gyroscope sample, deg/s.
        acc_noise_m_s2: white noise standard deviation per accelerometer sample, m/s^2.
    """

    gyr_bias_dps: Float3 | None = None
    gyr_bias_walk_dps_per_sqrt_s: float = 0.0015
    gyr_noise_dps: float = 0.1
    acc_noise_m_s2: float = 0.02

    def __post_init__(self) -> None:
        if self.gyr_bias_dps is not None:
            b = np.asarray(self.gyr_bias_dps, dtype=np.float64)
            if b.shape != (3,) or not np.all(np.isfinite(b)):
                raise ValueError(
                    f"gyr_bias_dps must be 3 finite numbers, got {self.gyr_bias_dps!r}"
                )
        for name in ("gyr_bias_walk_dps_per_sqrt_s", "gyr_noise_dps", "acc_noise_m_s2"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0.0):
                raise ValueError(f"{name} must be finite and >= 0, got {v!r}")

    @classmethod
    def ideal(cls) -> ImuErrors:
        """No bias, no drift, no noise: the true specific force and angular rate."""
        return cls((0.0, 0.0, 0.0), 0.0, 0.0, 0.0)


@dataclass(frozen=True, slots=True)
class SimulatedRecording:
    """Simulated samples ``[i0, i0 + N)`` with their truth.

    Attributes:
        i0: index of the first sample (sensor time ``i0 * dt_ns``).
        dt_ns: sample period, ns.
        t_s: (N,) sensor/script time of each sample, s.
        gyr_rad_s: (N, 3) measured angular rate, rad/s, sensor frame (bias and noise).
        acc_m_s2: (N, 3) measured specific force, m/s^2, sensor frame (noise).
        flexion_deg: (N,) true flexion relative to neutral, degrees, forward positive.
        lateral_deg: (N,) true lateral bend, degrees, right bend positive.
        heading_deg: (N,) true heading about earth z, degrees, unwrapped.
        labels: (N,) int8 posture kind, index into :data:`SEGMENT_KINDS`.
        q_sensor_to_earth: (N, 4) true sensor orientation ``[w, x, y, z]``, or None.
        gyr_bias_rad_s: (N, 3) true gyroscope bias, rad/s, sensor frame, or None.
    """

    i0: int
    dt_ns: int
    t_s: Float1D
    gyr_rad_s: Float2D
    acc_m_s2: Float2D
    flexion_deg: Float1D
    lateral_deg: Float1D
    heading_deg: Float1D
    labels: Int8_1D
    q_sensor_to_earth: Float2D | None = None
    gyr_bias_rad_s: Float2D | None = None

    def __len__(self) -> int:
        return int(self.t_s.shape[0])

    @property
    def rate_hz(self) -> float:
        return NS_PER_S / self.dt_ns


def _dt_ns(rate_hz: float) -> int:
    if not (math.isfinite(rate_hz) and 1.0 <= rate_hz <= 10_000.0):
        raise ValueError(f"rate_hz must be within 1..10000 Hz, got {rate_hz!r}")
    return round(NS_PER_S / rate_hz)


class ImuSynthesizer:
    """Turns a :class:`PostureScript` into IMU samples, any index range at a time.

    The value of sample k depends only on (script, rate_hz, seed, mounting, errors, k):
    chunks of any size concatenate to the same arrays.

    Args:
        script: the posture timeline.
        rate_hz: sample rate, Hz; samples are at ``k * round(1e9 / rate_hz)`` ns.
        seed: seed of the sensor's randomness (bias, drift, noise).
        mounting: sensor misalignment on the back.
        errors: sensor error model.
    """

    def __init__(
        self,
        script: PostureScript,
        rate_hz: float = 100.0,
        seed: int = 0,
        mounting: Mounting | None = None,
        errors: ImuErrors | None = None,
    ) -> None:
        if not isinstance(script, PostureScript):
            raise TypeError(f"script must be a PostureScript, got {type(script).__name__}")
        self.script = script
        self.dt_ns = _dt_ns(rate_hz)
        self.rate_hz = float(rate_hz)
        self.seed = int(seed)
        self.mounting = mounting if mounting is not None else Mounting()
        self.errors = errors if errors is not None else ImuErrors()
        # samples cover [0, duration): 8 h at 100 Hz is 2_880_000 samples
        self.n_samples = max(1, math.ceil(script.duration_s * NS_PER_S / self.dt_ns - 1e-6))
        self._dt_s = self.dt_ns / NS_PER_S
        self._r_b2s = self.mounting.r_sensor_to_body.T
        # q_body_to_earth @ this == q_body_to_earth * q_sensor_to_body (right product)
        self._right_mul_s2b = _qmul(np.eye(4), self.mounting.q_sensor_to_body[None, :])
        # each segment's held orientation and specific force (the fast path of chunk())
        tgt = script._tab.target
        self._q_seg = q_from_angles(tgt[:, 2], tgt[:, 0], tgt[:, 1]) @ self._right_mul_s2b
        gravity = np.zeros((len(tgt), 3))
        gravity[:, 2] = GRAVITY_M_S2
        self._acc_seg = _rotate(_qconj(self._q_seg), gravity)
        err = self.errors
        if err.gyr_bias_dps is None:
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, _STREAM_BIAS, 0]))
            bias_dps = rng.choice([-1.0, 1.0], 3) * rng.uniform(0.5, 1.0, 3)
        else:
            bias_dps = np.asarray(err.gyr_bias_dps, dtype=np.float64)
        self._bias0_rad_s = np.radians(bias_dps)
        # random walk of the bias: Gaussian steps at knots every _BIAS_KNOT_S, linear between
        walk_rng = np.random.default_rng(np.random.SeedSequence([self.seed, _STREAM_BIAS, 1]))
        n_knots = int(script.duration_s // _BIAS_KNOT_S) + 3
        steps = walk_rng.standard_normal((n_knots, 3))
        steps[0] = 0.0
        walk = math.radians(err.gyr_bias_walk_dps_per_sqrt_s) * math.sqrt(_BIAS_KNOT_S)
        self._bias_knots_rad_s = np.cumsum(steps * walk, axis=0)
        self._bias_knot_t_s = np.arange(n_knots) * _BIAS_KNOT_S
        self._noise_cache: dict[int, Float2D] = {}

    def _noise(self, i0: int, n: int) -> Float2D:
        """(n, 6) standard normal draws for samples [i0, i0+n): gyro xyz, acc xyz."""
        b = _NOISE_BLOCK_SAMPLES
        out = np.empty((n, 6))
        k = i0
        while k < i0 + n:
            j = k // b
            block = self._noise_cache.get(j)
            if block is None:
                rng = np.random.default_rng(np.random.SeedSequence([self.seed, _STREAM_NOISE, j]))
                # float32 draws are twice as fast; ample precision for sensor noise
                block = rng.standard_normal((b, 6), dtype=np.float32).astype(np.float64)
                if len(self._noise_cache) >= 2:  # sequential access needs at most two blocks
                    self._noise_cache.pop(next(iter(self._noise_cache)))
                self._noise_cache[j] = block
            stop = min(i0 + n, (j + 1) * b)
            out[k - i0 : stop - i0] = block[k - j * b : stop - j * b]
            k = stop
        return out

    def chunk(self, i0: int, n: int) -> SimulatedRecording:
        """Samples ``[i0, i0 + n)`` (clipped to the script) with their truth.

        Args:
            i0: first sample index, >= 0.
            n: number of samples, >= 0.

        Returns:
            A :class:`SimulatedRecording` with ``q_sensor_to_earth`` and ``gyr_bias_rad_s``.
        """
        if i0 < 0 or n < 0:
            raise ValueError(f"i0 and n must be >= 0, got i0={i0}, n={n}")
        n = max(0, min(n, self.n_samples - i0))
        idx = np.arange(i0 - 1, i0 + n, dtype=np.int64)
        t_all = idx * self.dt_ns / NS_PER_S  # includes the sample before i0 for the rate
        ch = self.script._channels(t_all)
        t = t_all[1:]
        seg = ch.seg[1:]
        # Fast path: a sample whose posture is held since the previous sample has the
        # segment's constant orientation, zero rate and gravity as the only force.
        held = ~ch.ramping & (ch.walk == 0.0)
        moving = ~(held[1:] & held[:-1] & (seg == ch.seg[:-1]))
        q = self._q_seg.take(seg, axis=0)
        gyr_true = np.zeros((n, 3))
        acc = self._acc_seg.take(seg, axis=0)
        m = np.flatnonzero(moving)
        if len(m):
            pos = np.concatenate((m, m + 1))  # positions in t_all of samples k-1 and k
            q_b2e = q_from_angles(ch.heading_rad[pos], ch.flexion_rad[pos], ch.lateral_rad[pos])
            q_s2e = q_b2e @ self._right_mul_s2b
            q_prev, q_m = q_s2e[: len(m)], q_s2e[len(m) :]
            gyr_true[m] = _rotvec(_qmul(_qconj(q_prev), q_m)) / self._dt_s
            q[m] = q_m
            acc[m] = _rotate(_qconj(q_m), self._specific_force_earth(t[m], ch, m + 1))
        self._add_taps(t, acc)
        bias = np.empty((n, 3))
        for k in range(3):
            bias[:, k] = self._bias0_rad_s[k] + np.interp(
                t, self._bias_knot_t_s, self._bias_knots_rad_s[:, k]
            )
        noise = self._noise(i0, n)
        err = self.errors
        gyr = gyr_true + bias + noise[:, :3] * math.radians(err.gyr_noise_dps)
        acc += noise[:, 3:] * err.acc_noise_m_s2
        return SimulatedRecording(
            i0=i0,
            dt_ns=self.dt_ns,
            t_s=t,
            gyr_rad_s=gyr,
            acc_m_s2=acc,
            flexion_deg=np.degrees(ch.flexion_rad[1:]),
            lateral_deg=np.degrees(ch.lateral_rad[1:]),
            heading_deg=np.degrees(ch.heading_rad[1:]),
            labels=self.script._tab.kind.take(seg),
            q_sensor_to_earth=q,
            gyr_bias_rad_s=bias,
        )

    def _specific_force_earth(
        self, t: Float1D, ch: _Channels, pos: npt.NDArray[np.intp]
    ) -> Float2D:
        """(M, 3) gravity reaction + walking accelerations, m/s^2, earth frame."""
        f_e = np.zeros((len(t), 3))
        f_e[:, 2] = GRAVITY_M_S2
        walk = ch.walk[pos]
        if np.any(walk > 0.0):
            phase = (2.0 * np.pi * STEP_HZ) * t
            head = ch.heading_rad[pos]
            a_v = WALK_VERTICAL_M_S2 * (np.sin(phase) + 0.25 * np.sin(2.0 * phase + 0.7))
            a_ap = WALK_FORE_AFT_M_S2 * np.cos(phase)
            a_ml = WALK_MEDIOLATERAL_M_S2 * np.sin(0.5 * phase)
            c, s = np.cos(head), np.sin(head)
            f_e[:, 0] += walk * (a_ap * c - a_ml * s)
            f_e[:, 1] += walk * (a_ap * s + a_ml * c)
            f_e[:, 2] += walk * a_v
        return f_e

    def _add_taps(self, t: Float1D, acc: Float2D) -> None:
        tab = self.script._tab
        if not len(tab.tap_t_s) or not len(t):
            return
        lo = int(np.searchsorted(tab.tap_t_s, t[0] - _TAP_SPAN * _TAP_MAX_S, side="left"))
        hi = int(np.searchsorted(tab.tap_t_s, t[-1], side="right"))
        for k in range(lo, hi):
            t0, d, peak = tab.tap_t_s[k], tab.tap_duration_s[k], tab.tap_peak_m_s2[k]
            a, b = np.searchsorted(t, [t0, t0 + _TAP_SPAN * d], side="left")
            if a >= b:
                continue
            tau = t[a:b] - t0
            spike = peak * np.sin((np.pi / d) * tau)
            rebound = -(peak / _TAP_REBOUND) * np.sin((np.pi / (_TAP_REBOUND * d)) * (tau - d))
            pulse = np.where(tau < d, spike, rebound)
            acc[a:b] += pulse[:, None] * (self._r_b2s @ tab.tap_dir_body[k])

    def chunks(self, chunk_samples: int) -> Iterator[SimulatedRecording]:
        """Consecutive chunks of ``chunk_samples`` samples (the last may be shorter)."""
        if chunk_samples < 1:
            raise ValueError(f"chunk_samples must be >= 1, got {chunk_samples}")
        for i0 in range(0, self.n_samples, chunk_samples):
            yield self.chunk(i0, chunk_samples)


def simulate(
    script: PostureScript,
    rate_hz: float = 100.0,
    seed: int = 0,
    mounting: Mounting | None = None,
    errors: ImuErrors | None = None,
    chunk_s: float = 60.0,
    with_orientation: bool = False,
) -> SimulatedRecording:
    """Simulate the whole script into arrays (tests and benchmarks).

    Args:
        script: the posture timeline.
        rate_hz: sample rate, Hz.
        seed: seed of the sensor's randomness.
        mounting: sensor misalignment; default :class:`Mounting` ().
        errors: sensor error model; default :class:`ImuErrors` ().
        chunk_s: internal generation chunk, s (results do not depend on it).
        with_orientation: also keep ``q_sensor_to_earth`` and ``gyr_bias_rad_s`` (7 more
            floats per sample).

    Returns:
        A :class:`SimulatedRecording` of the ``ceil(duration_s * rate_hz)`` samples in
        ``[0, duration_s)``.
    """
    syn = ImuSynthesizer(script, rate_hz, seed, mounting, errors)
    if not (math.isfinite(chunk_s) and chunk_s > 0.0):
        raise ValueError(f"chunk_s must be > 0, got {chunk_s!r}")
    n = syn.n_samples
    out: dict[str, Float1D | Float2D | Int8_1D] = {
        "t_s": np.empty(n),
        "gyr_rad_s": np.empty((n, 3)),
        "acc_m_s2": np.empty((n, 3)),
        "flexion_deg": np.empty(n),
        "lateral_deg": np.empty(n),
        "heading_deg": np.empty(n),
        "labels": np.empty(n, dtype=np.int8),
    }
    if with_orientation:
        out["q_sensor_to_earth"] = np.empty((n, 4))
        out["gyr_bias_rad_s"] = np.empty((n, 3))
    for c in syn.chunks(max(1, round(chunk_s * syn.rate_hz))):
        for name, arr in out.items():
            arr[c.i0 : c.i0 + len(c)] = getattr(c, name)
    return SimulatedRecording(i0=0, dt_ns=syn.dt_ns, **out)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- the ImuSource

_CHUNK_S: Final = 10.0  # generation chunk of the live source: ~1 ms of numpy work at 100 Hz
_YIELD_EVERY_BATCHES: Final = 200  # unpaced: let other tasks run at least this often


def _today_0800_utc_ns() -> int:
    now = _dt.datetime.now(_dt.UTC)
    anchor = now.replace(hour=8, minute=0, second=0, microsecond=0)
    return int(anchor.timestamp()) * NS_PER_S


class SimulatedPatient:
    """A simulated sensor on a patient following a :class:`PostureScript`; an ImuSource.

    Usage::

        async with SimulatedPatient(PostureScript.day(8 * 3600), speed=10.0) as src:
            async for batch in src.batches():
                ...

    Args:
        script: the posture timeline.
        rate_hz: sample rate, Hz; batches have ``dt_ns = round(1e9 / rate_hz)``.
        seed: seed of the sensor's randomness (bias, drift, noise).
        batch_samples: samples per :class:`ImuBatch` (the last batch may be shorter).
        speed: None streams as fast as possible (yielding to the event loop every
            200 batches); otherwise the script plays ``speed`` times faster than real time
            against ``time.monotonic()`` (1.0 = real time), each batch released once its
            last sample's time has passed.
        start_utc_ns: UTC time, ns since the epoch, that sensor time 0 maps to; default
            today's 08:00 UTC.
        mounting: sensor misalignment; default :class:`Mounting` ().
        errors: sensor error model; default :class:`ImuErrors` ().

    Attributes:
        rate_hz: sample rate, Hz.
        dt_ns: sample period, ns.
        start_utc_ns: UTC ns of sensor time 0 (the publisher's clock anchor).
        synthesizer: the :class:`ImuSynthesizer` producing the samples (truth access).
    """

    def __init__(
        self,
        script: PostureScript,
        rate_hz: float = 100.0,
        seed: int = 0,
        batch_samples: int = 10,
        speed: float | None = None,
        start_utc_ns: int | None = None,
        mounting: Mounting | None = None,
        errors: ImuErrors | None = None,
    ) -> None:
        if isinstance(batch_samples, bool) or not isinstance(batch_samples, int):
            raise TypeError(f"batch_samples must be an int, got {batch_samples!r}")
        if batch_samples < 1:
            raise ValueError(f"batch_samples must be >= 1, got {batch_samples!r}")
        if speed is not None and not (math.isfinite(speed) and speed > 0.0):
            raise ValueError(f"speed must be None or > 0, got {speed!r}")
        self.synthesizer = ImuSynthesizer(script, rate_hz, seed, mounting, errors)
        self._rate_hz = float(rate_hz)
        self.dt_ns = self.synthesizer.dt_ns
        self.batch_samples = batch_samples
        self.speed = speed
        self.start_utc_ns = _today_0800_utc_ns() if start_utc_ns is None else int(start_utc_ns)
        self._open = False
        self._stopping = False
        self.buzzes: list[tuple[str, int, int]] = []  # (pattern, intensity_pct, duration_ms) of each buzz

    @property
    def rate_hz(self) -> float:
        """Nominal sample rate, Hz."""
        return self._rate_hz

    @property
    def script(self) -> PostureScript:
        return self.synthesizer.script

    async def __aenter__(self) -> Self:
        self._open = True
        self._stopping = False
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._open = False

    def stop(self) -> None:
        """Make :meth:`batches` end before its next batch (Ctrl-C in the demo), like a sensor
        switched off: what was yielded stays yielded."""
        self._stopping = True

    async def buzz(self, pattern: str, intensity_pct: int, duration_ms: int) -> bool:
        """A simulated haptic write: recorded in ``buzzes``, nothing physical happens.

        The scripted patient does not react to it: the script alone decides when each
        slouch ends, so an alert's outcome is what the script implies.
        """
        self.buzzes.append((pattern, int(intensity_pct), int(duration_ms)))
        return True

    async def batches(self) -> AsyncIterator[ImuBatch]:
        """The script's samples as :class:`ImuBatch` es, from sensor time 0 to the end.

        Each call starts again at sample 0 (same samples).

        Raises:
            RuntimeError: called outside ``async with``.
        """
        if not self._open:
            raise RuntimeError("use SimulatedPatient inside 'async with' before batches()")
        syn = self.synthesizer
        bs = self.batch_samples
        chunk_n = max(bs, round(_CHUNK_S * self._rate_hz) // bs * bs)  # whole batches
        t_start = time.monotonic()
        emitted = 0
        for c in syn.chunks(chunk_n):
            for a in range(0, len(c), bs):
                i0 = c.i0 + a
                gyr = c.gyr_rad_s[a : a + bs]
                if self.speed is not None:
                    due = t_start + (i0 + len(gyr)) * self.dt_ns / NS_PER_S / self.speed
                    delay = due - time.monotonic()
                    if delay > 0.0:
                        await asyncio.sleep(delay)
                elif emitted % _YIELD_EVERY_BATCHES == 0:
                    await asyncio.sleep(0)
                if not self._open or self._stopping:
                    return
                yield ImuBatch(i0 * self.dt_ns, self.dt_ns, gyr, c.acc_m_s2[a : a + bs])
                emitted += 1
