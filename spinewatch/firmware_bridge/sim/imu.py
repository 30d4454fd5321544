"""IMU synthesis: a posture script turned into accelerometer and gyroscope samples.

:class:`ImuSynthesizer` computes the specific force (gravity, walking, taps) and angular
rate of the sensor in its own frame, which is the body frame turned by a fixed
:class:`Mounting` misalignment, then adds the :class:`ImuErrors` (gyroscope bias with a
random walk, white noise). Any index range can be computed on its own: a sample depends on
the script, rate, seed, mounting, error model and its index only. :func:`simulate` computes
a whole script into arrays. Conventions: :mod:`spinewatch.firmware_bridge.sim`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from spinewatch.firmware_bridge.sim._common import Float3, finite
from spinewatch.firmware_bridge.sim.quaternion import q_conj, q_from_angles, q_mul, rotate, rotvec
from spinewatch.firmware_bridge.sim.script import STEP_HZ, TAP_MAX_S, TAP_REBOUND, TAP_SPAN, PostureScript, Trajectory
from spinewatch.model import GRAVITY_M_S2, NS_PER_S, Float1D, Float2D, Int8_1D

__all__ = ["ImuErrors", "ImuSynthesizer", "Mounting", "SimulatedRecording", "simulate"]

# Walking accelerations (earth frame, scaled by the walking intensity 0..1); the trunk's
# sway and the cadence STEP_HZ are the script's
WALK_VERTICAL_M_S2: Final = 2.0  # trunk vertical acceleration at the step frequency
WALK_FORE_AFT_M_S2: Final = 1.0  # fore-aft, at the step frequency, 90 deg out of phase
WALK_MEDIOLATERAL_M_S2: Final = 0.5  # side to side, at the stride frequency (STEP_HZ / 2)

_BIAS_KNOT_S: Final = 10.0  # the gyro bias random walk is drawn every 10 s, linear in between
_NOISE_BLOCK_SAMPLES: Final = 4096  # white noise is drawn in index-aligned blocks (chunking-proof)
_STREAM_NOISE: Final = 0x6E6F  # SeedSequence spawn keys of the independent random streams
_STREAM_BIAS: Final = 0x6269


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
            object.__setattr__(self, name, finite(getattr(self, name), name))

    @property
    def q_sensor_to_body(self) -> Float1D:
        """(4,) ``q_sensor_to_body`` as ``[w, x, y, z]``."""
        rad = np.radians([[self.yaw_deg], [self.pitch_deg], [self.roll_deg]])
        return q_from_angles(rad[0], rad[1], rad[2])[0]

    @property
    def r_sensor_to_body(self) -> Float2D:
        """(3, 3) rotation matrix taking sensor-frame vectors to the body frame."""
        q = np.broadcast_to(self.q_sensor_to_body, (3, 4))
        return rotate(np.ascontiguousarray(q), np.eye(3)).T


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
        self._right_mul_s2b = q_mul(np.eye(4), self.mounting.q_sensor_to_body[None, :])
        # each segment's held orientation and specific force (the fast path of chunk())
        tgt = script.tables.target
        self._q_seg = q_from_angles(tgt[:, 2], tgt[:, 0], tgt[:, 1]) @ self._right_mul_s2b
        gravity = np.zeros((len(tgt), 3))
        gravity[:, 2] = GRAVITY_M_S2
        self._acc_seg = rotate(q_conj(self._q_seg), gravity)
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
        ch = self.script.trajectory(t_all)
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
            gyr_true[m] = rotvec(q_mul(q_conj(q_prev), q_m)) / self._dt_s
            q[m] = q_m
            acc[m] = rotate(q_conj(q_m), self._specific_force_earth(t[m], ch, m + 1))
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
            labels=self.script.tables.kind.take(seg),
            q_sensor_to_earth=q,
            gyr_bias_rad_s=bias,
        )

    def _specific_force_earth(
        self, t: Float1D, ch: Trajectory, pos: npt.NDArray[np.intp]
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
        tab = self.script.tables
        if not len(tab.tap_t_s) or not len(t):
            return
        lo = int(np.searchsorted(tab.tap_t_s, t[0] - TAP_SPAN * TAP_MAX_S, side="left"))
        hi = int(np.searchsorted(tab.tap_t_s, t[-1], side="right"))
        for k in range(lo, hi):
            t0, d, peak = tab.tap_t_s[k], tab.tap_duration_s[k], tab.tap_peak_m_s2[k]
            a, b = np.searchsorted(t, [t0, t0 + TAP_SPAN * d], side="left")
            if a >= b:
                continue
            tau = t[a:b] - t0
            spike = peak * np.sin((np.pi / d) * tau)
            rebound = -(peak / TAP_REBOUND) * np.sin((np.pi / (TAP_REBOUND * d)) * (tau - d))
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
