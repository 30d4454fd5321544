"""Activity context from the IMU: lying, upright still, upright moving (walking)."""

from __future__ import annotations

import math
from typing import Final

import numba as nb
import numpy as np
import numpy.typing as npt

from spinewatch.model import (
    Activity,  # re-exported: the label type lives in model.py (crosses boundaries)
)
from spinewatch.signal._jit import FASTMATH_FLAGS
from spinewatch.signal._state import StateVector

__all__ = ["LYING_DEG", "Activity", "ActivityClassifier"]

# State: [0] EMA of |acc| (m/s^2)  [1] EMA of (|acc| - mean)^2 ((m/s^2)^2)  [2] initialised
_STATE_LEN = 3

# Trunk inclination from vertical above which the patient counts as lying, degrees: the
# default of ActivityClassifier and of PostureParams.lying_deg (one value for both).
LYING_DEG: Final = 60.0


@nb.njit(cache=True, fastmath=FASTMATH_FLAGS)
def _classify(acc, trunk_tilt_rad, alpha, lying_rad, moving_var, state, out):  # pragma: no cover
    m = state[0]
    v = state[1]
    init = state[2]
    for i in range(acc.shape[0]):
        ax, ay, az = acc[i, 0], acc[i, 1], acc[i, 2]
        if not (np.isfinite(ax) and np.isfinite(ay) and np.isfinite(az)):
            out[i] = 0
            continue
        n = np.sqrt(ax * ax + ay * ay + az * az)
        if init == 0.0:
            m = n
            v = 0.0
            init = 1.0
        d = n - m
        m += alpha * d
        v += alpha * (d * d - v)
        t = trunk_tilt_rad[i]
        if not np.isfinite(t):
            out[i] = 0
        elif t > lying_rad:
            out[i] = 1
        elif v > moving_var:
            out[i] = 3
        else:
            out[i] = 2
    state[0] = m
    state[1] = v
    state[2] = init


class ActivityClassifier(StateVector):
    """Causal per-sample activity from accelerometer energy and trunk inclination.

    Lying: the trunk is inclined more than ``lying_deg`` from vertical. Moving: the
    exponentially weighted standard deviation of the accelerometer norm (time constant
    ``window_s``) exceeds ``moving_std_m_s2``. Otherwise upright and still.

    Args:
        rate_hz: sample rate, Hz.
        window_s: time constant of the accelerometer-energy average, seconds.
        lying_deg: trunk inclination from vertical above which the patient is lying, degrees.
        moving_std_m_s2: accelerometer-norm standard deviation above which the patient
            is moving, m/s^2 (walking gives 1-3 m/s^2; sitting still about 0.05).
    """

    STATE_LEN = _STATE_LEN

    def __init__(
        self,
        rate_hz: float,
        window_s: float = 1.0,
        lying_deg: float = LYING_DEG,
        moving_std_m_s2: float = 0.6,
    ) -> None:
        if not rate_hz > 0 or not window_s > 0:
            raise ValueError(f"rate_hz and window_s must be > 0, got {rate_hz}, {window_s}")
        self.alpha = 1.0 - math.exp(-1.0 / (window_s * rate_hz))
        self.set_lying_deg(lying_deg)
        self.moving_var = moving_std_m_s2**2
        self._state = np.zeros(_STATE_LEN)

    def set_lying_deg(self, lying_deg: float) -> None:
        """Use a new lying threshold (degrees from vertical) from the next sample on."""
        self.lying_rad = math.radians(lying_deg)

    def update(
        self, acc_m_s2: npt.ArrayLike, trunk_tilt_deg: npt.ArrayLike
    ) -> npt.NDArray[np.int8]:
        """Classify a chunk.

        Args:
            acc_m_s2: (N, 3) specific force, m/s^2, any frame (only the norm is used).
            trunk_tilt_deg: (N,) inclination of the trunk axis from vertical, degrees.

        Returns:
            (N,) int8 :class:`Activity` values.
        """
        acc = np.ascontiguousarray(acc_m_s2, dtype=np.float64)
        tilt = np.ascontiguousarray(trunk_tilt_deg, dtype=np.float64)
        if acc.ndim != 2 or acc.shape[1] != 3:
            raise ValueError(f"acc_m_s2 must have shape (N, 3), got {acc.shape}")
        if tilt.shape != (acc.shape[0],):
            raise ValueError(f"trunk_tilt_deg must have shape ({acc.shape[0]},), got {tilt.shape}")
        out = np.empty(acc.shape[0], np.int8)
        _classify(acc, np.radians(tilt), self.alpha, self.lying_rad, self.moving_var, self._state, out)
        return out
