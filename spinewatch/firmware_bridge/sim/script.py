"""The scripted posture day: segments of held postures, sensor taps, and the truth they imply.

A :class:`PostureScript` is the simulated patient's timeline (conventions in
:mod:`spinewatch.firmware_bridge.sim`): contiguous :class:`Segment` s entered with
raised-cosine ramps, walking sway, and :class:`Tap` s on the sensor. It answers what the
trunk did at any time (angles, orientation, posture kind, stillness, slouch episodes);
:class:`~spinewatch.firmware_bridge.sim.imu.ImuSynthesizer` turns it into IMU samples.
:meth:`PostureScript.day` writes a realistic, reproducible day with its phases (calibrate,
desk work with slouches, walking breaks, a nap, the night).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, NamedTuple

import numpy as np
import numpy.typing as npt

from spinewatch.firmware_bridge.sim._common import Float3, finite, unit3
from spinewatch.firmware_bridge.sim.quaternion import q_from_angles
from spinewatch.model import Float1D, Float2D, Int8_1D

__all__ = [
    "DEFAULT_RAMP_S",
    "LIE_RAMP_S",
    "SEGMENT_KINDS",
    "STEP_HZ",
    "TAP_MAX_S",
    "TAP_REBOUND",
    "TAP_SPAN",
    "TURN_RAMP_S",
    "PostureScript",
    "Segment",
    "SegmentTables",
    "Tap",
    "Trajectory",
]


# Posture kinds; ``labels_at`` returns the index into this tuple (int8).
SEGMENT_KINDS: Final = ("calibrate", "sit", "slouch", "stand", "walk", "lie")
# Kinds during which flexion above the threshold counts as slouching (truth episodes).
_UPRIGHT_KINDS: Final = ("calibrate", "sit", "slouch", "stand")

DEFAULT_RAMP_S: Final = 1.5  # raised-cosine transition between postures: a calm sit-to-slouch
LIE_RAMP_S: Final = 3.0  # lying down / getting up takes longer
TURN_RAMP_S: Final = 2.0  # a 180 deg turn while walking takes about 2 s

# Walking sway of the trunk (scaled by the walking intensity 0..1); the accelerations of
# walking are the synthesizer's (imu.py)
STEP_HZ: Final = 1.9  # cadence ~114 steps/min, typical indoor walking
WALK_FLEXION_SWAY_DEG: Final = 1.5  # trunk pitch oscillation per step
WALK_LATERAL_SWAY_DEG: Final = 2.5  # trunk roll oscillation per stride
WALK_HEADING_SWAY_DEG: Final = 3.0  # trunk yaw oscillation per stride

TAP_MAX_S: Final = 0.2  # longest tap spike accepted, s
TAP_REBOUND: Final = 4.0  # the rebound is 4x longer and 4x weaker: zero net velocity change
TAP_SPAN: Final = 1.0 + TAP_REBOUND  # spike + rebound, in units of the spike's duration


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
            object.__setattr__(self, name, finite(getattr(self, name), name))
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
            object.__setattr__(self, name, finite(getattr(self, name), name))
        if self.t_s < 0.0:
            raise ValueError(f"t_s must be >= 0, got {self.t_s!r}")
        if not 0.0 < self.duration_s <= TAP_MAX_S:
            raise ValueError(f"duration_s must be in (0, {TAP_MAX_S}] s, got {self.duration_s!r}")
        if self.peak_m_s2 < 0.0:
            raise ValueError(f"peak_m_s2 must be >= 0, got {self.peak_m_s2!r}")
        unit3(self.direction_body, "direction_body")  # validates
        object.__setattr__(self, "direction_body", tuple(float(v) for v in self.direction_body))


class Trajectory(NamedTuple):
    """The trunk's trajectory at some times: what :meth:`PostureScript.trajectory` returns
    (angles in rad, read by the synthesizer)."""

    seg: npt.NDArray[np.intp]  # segment index
    flexion_rad: Float1D
    lateral_rad: Float1D
    heading_rad: Float1D
    walk: Float1D  # walking intensity 0..1
    ramping: npt.NDArray[np.bool_]  # inside a segment's ramp (u < 1)


@dataclass(frozen=True, slots=True)
class SegmentTables:
    """Per-segment and per-tap arrays of a script, for vectorised evaluation (read by the
    synthesizer; never written)."""

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
        tables: the segments and taps as :class:`SegmentTables` (derived, read-only).
    """

    segments: tuple[Segment, ...]
    taps: tuple[Tap, ...] = ()
    tables: SegmentTables = field(init=False, repr=False, compare=False)

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
        tab = SegmentTables(
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
                [unit3(t.direction_body, "direction_body") for t in taps], dtype=np.float64
            ).reshape(-1, 3),
        )
        object.__setattr__(self, "tables", tab)

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

    def trajectory(self, t_s: Float1D) -> Trajectory:
        """The :class:`Trajectory` at (N,) script times ``t_s``, s, unchecked (the ``*_at``
        accessors validate their times first)."""
        tab = self.tables
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
        return Trajectory(seg, flex, lat, head, walk, (u < 1.0) & tab.changes.take(seg))

    def flexion_deg_at(self, t_s: npt.ArrayLike) -> Float1D:
        """True trunk flexion at script times.

        Args:
            t_s: (N,) script times, s (sensor clock, 0 = script start).

        Returns:
            (N,) flexion relative to neutral upright, degrees, forward bend positive.
        """
        return np.degrees(self.trajectory(_times(t_s)).flexion_rad)

    def lateral_deg_at(self, t_s: npt.ArrayLike) -> Float1D:
        """True lateral bend at (N,) script times t_s, s -> (N,) degrees, right bend positive."""
        return np.degrees(self.trajectory(_times(t_s)).lateral_rad)

    def heading_deg_at(self, t_s: npt.ArrayLike) -> Float1D:
        """True heading at (N,) script times t_s, s -> (N,) degrees about earth z, unwrapped."""
        return np.degrees(self.trajectory(_times(t_s)).heading_rad)

    def labels_at(self, t_s: npt.ArrayLike) -> Int8_1D:
        """Posture kind at (N,) script times t_s, s -> (N,) int8 index into SEGMENT_KINDS."""
        return self.tables.kind[self.trajectory(_times(t_s)).seg]

    def q_body_to_earth_at(self, t_s: npt.ArrayLike) -> Float2D:
        """True trunk orientation at (N,) script times t_s, s -> (N, 4) ``[w, x, y, z]``."""
        ch = self.trajectory(_times(t_s))
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
        ch = self.trajectory(t)
        still = ~ch.ramping & (ch.walk == 0.0)
        tab = self.tables
        if len(tab.tap_t_s):
            # t is near a tap iff some tap j with t_j - margin <= t has t <= end_j + margin
            k = np.searchsorted(tab.tap_t_s, t + margin_s, side="right") - 1
            end_max_s = np.maximum.accumulate(tab.tap_t_s + TAP_SPAN * tab.tap_duration_s)
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
            ch = self.trajectory(t)
            mask = (ch.flexion_rad > thr) & np.isin(tab.kind[ch.seg], upright)
            return mask, ch.flexion_rad

        # The trajectory is monotonic within each ramp and constant (or swaying while
        # walking) after it, so a grid finer than every segment that also holds each
        # ramp's end (where the ramp peaks) sees every crossing and every peak.
        tab = self.tables
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
