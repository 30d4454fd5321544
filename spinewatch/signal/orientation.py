"""6-axis orientation filter (gyroscope + accelerometer): batch and streaming forms.

Skeleton version: a Mahony-style complementary filter with an integral gyroscope-bias
term, gated on accelerometer norm. Issue #4 replaces the kernel; the public API stays.
Quaternions are ``q_sensor_to_earth`` stored as ``[w, x, y, z]``, earth frame z up.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba as nb
import numpy as np
import numpy.typing as npt

from spinewatch.signal._jit import FASTMATH_FLAGS

Float2D = npt.NDArray[np.float64]

GRAVITY_M_S2 = 9.80665  # standard gravity; accelerometer norm expected at rest

# State vector layout (float64): q_wxyz[0:4], gyro_bias_rad_s[4:7], initialised flag[7]
_STATE_LEN = 8


@dataclass(frozen=True, slots=True)
class OrientationParams:
    """Tuning of the orientation filter.

    Attributes:
        kp: proportional gain of the accelerometer correction, 1/s.
        ki: integral gain (gyroscope bias), 1/s^2.
        acc_gate_m_s2: accelerometer samples whose norm differs from gravity by more than
            this are not used for correction (walking, taps).
    """

    kp: float = 1.0
    ki: float = 0.01
    acc_gate_m_s2: float = 1.5


def _check(name: str, arr: object) -> Float2D:
    a = np.ascontiguousarray(arr, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != 3:
        raise ValueError(f"{name} must have shape (N, 3), got {a.shape}")
    return a


@nb.njit(cache=True, fastmath=FASTMATH_FLAGS)
def _mahony(gyr, acc, dt_s, kp, ki, gate, state, out):  # pragma: no cover - jitted
    q0, q1, q2, q3 = state[0], state[1], state[2], state[3]
    bx, by, bz = state[4], state[5], state[6]
    init = state[7]
    for i in range(gyr.shape[0]):
        gx, gy, gz = gyr[i, 0], gyr[i, 1], gyr[i, 2]
        ax, ay, az = acc[i, 0], acc[i, 1], acc[i, 2]
        gyr_ok = np.isfinite(gx) and np.isfinite(gy) and np.isfinite(gz)
        acc_ok = np.isfinite(ax) and np.isfinite(ay) and np.isfinite(az)
        an = np.sqrt(ax * ax + ay * ay + az * az) if acc_ok else 0.0
        if init == 0.0:
            if acc_ok and an > 1e-3:
                # align measured "up" with earth z, zero heading (shortest rotation)
                ux, uy, uz = ax / an, ay / an, az / an
                # rotation taking sensor up vector u to earth z: axis u x z, q = [1+uz, uy, -ux, 0]
                w = 1.0 + uz
                if w < 1e-9:
                    q0, q1, q2, q3 = 0.0, 1.0, 0.0, 0.0
                else:
                    nrm = np.sqrt(w * w + uy * uy + ux * ux)
                    q0, q1, q2, q3 = w / nrm, uy / nrm, -ux / nrm, 0.0
                init = 1.0
            out[i, 0], out[i, 1], out[i, 2], out[i, 3] = q0, q1, q2, q3
            continue
        if not gyr_ok:
            gx, gy, gz = bx, by, bz  # hold orientation
        gx -= bx
        gy -= by
        gz -= bz
        if acc_ok and abs(an - 9.80665) < gate:
            ax /= an
            ay /= an
            az /= an
            # earth up expressed in the sensor frame
            vx = 2.0 * (q1 * q3 - q0 * q2)
            vy = 2.0 * (q2 * q3 + q0 * q1)
            vz = q0 * q0 - q1 * q1 - q2 * q2 + q3 * q3
            ex = ay * vz - az * vy
            ey = az * vx - ax * vz
            ez = ax * vy - ay * vx
            gx += kp * ex
            gy += kp * ey
            gz += kp * ez
            bx -= ki * ex * dt_s
            by -= ki * ey * dt_s
            bz -= ki * ez * dt_s
        hx, hy, hz = 0.5 * gx * dt_s, 0.5 * gy * dt_s, 0.5 * gz * dt_s
        n0 = q0 - q1 * hx - q2 * hy - q3 * hz
        n1 = q1 + q0 * hx + q2 * hz - q3 * hy
        n2 = q2 + q0 * hy - q1 * hz + q3 * hx
        n3 = q3 + q0 * hz + q1 * hy - q2 * hx
        nrm = np.sqrt(n0 * n0 + n1 * n1 + n2 * n2 + n3 * n3)
        q0, q1, q2, q3 = n0 / nrm, n1 / nrm, n2 / nrm, n3 / nrm
        out[i, 0], out[i, 1], out[i, 2], out[i, 3] = q0, q1, q2, q3
    state[0], state[1], state[2], state[3] = q0, q1, q2, q3
    state[4], state[5], state[6] = bx, by, bz
    state[7] = init


class OrientationFilter:
    """Streaming orientation filter; chunks of any length give the batch result.

    Args:
        rate_hz: sample rate of the input, Hz.
        params: tuning; defaults suit a body-worn sensor.
    """

    def __init__(self, rate_hz: float, params: OrientationParams | None = None) -> None:
        if not rate_hz > 0:
            raise ValueError(f"rate_hz must be > 0, got {rate_hz}")
        self.rate_hz = float(rate_hz)
        self.params = params or OrientationParams()
        self._state = np.zeros(_STATE_LEN)
        self._state[0] = 1.0

    @property
    def state(self) -> npt.NDArray[np.float64]:
        """A copy of the filter state (float64 vector); assign it back to resume."""
        return self._state.copy()

    @state.setter
    def state(self, value: npt.ArrayLike) -> None:
        v = np.asarray(value, dtype=np.float64)
        if v.shape != (_STATE_LEN,):
            raise ValueError(f"state must have shape ({_STATE_LEN},), got {v.shape}")
        self._state = v.copy()

    def update(self, gyr_rad_s: npt.ArrayLike, acc_m_s2: npt.ArrayLike) -> Float2D:
        """Filter a chunk.

        Args:
            gyr_rad_s: (N, 3) angular rate, rad/s, sensor frame, raw.
            acc_m_s2: (N, 3) specific force, m/s^2, sensor frame.

        Returns:
            (N, 4) ``q_sensor_to_earth`` as ``[w, x, y, z]``.
        """
        gyr = _check("gyr_rad_s", gyr_rad_s)
        acc = _check("acc_m_s2", acc_m_s2)
        if gyr.shape != acc.shape:
            raise ValueError(f"acc_m_s2 shape {acc.shape} != gyr_rad_s shape {gyr.shape}")
        out = np.empty((gyr.shape[0], 4))
        p = self.params
        _mahony(gyr, acc, 1.0 / self.rate_hz, p.kp, p.ki, p.acc_gate_m_s2, self._state, out)
        return out


def estimate_orientation(
    gyr_rad_s: npt.ArrayLike, acc_m_s2: npt.ArrayLike, rate_hz: float
) -> Float2D:
    """Causal 6-axis orientation of the sensor frame relative to an earth frame with z up.

    Args:
        gyr_rad_s: (N, 3) angular rate in rad/s, sensor frame, raw (bias not removed).
        acc_m_s2: (N, 3) specific force in m/s^2, sensor frame.
        rate_hz: sample rate, Hz.

    Returns:
        (N, 4) float64 quaternions ``[w, x, y, z]`` (sensor -> earth).
    """
    return OrientationFilter(rate_hz).update(gyr_rad_s, acc_m_s2)
