"""Slouch episodes: threshold with hysteresis and minimum duration, batch and streaming."""

from __future__ import annotations

import math

import numba as nb
import numpy as np
import numpy.typing as npt

from spinewatch.signal._jit import FASTMATH_FLAGS
from spinewatch.signal._state import StateVector
from spinewatch.signal.angles import tilt_deg, up_in_sensor
from spinewatch.signal.orientation import estimate_orientation

Int2D = npt.NDArray[np.int64]
Float1D = npt.NDArray[np.float64]

# Detector state vector layout (float64, so it saves/restores with the other filters):
# [0] in_episode (0/1)  [1] episode start, global sample index  [2] peak angle, deg
# [3] sum of angles in episode, deg  [4] samples in episode  [5] global index of next sample
_STATE_LEN = 6


@nb.njit(cache=True, fastmath=FASTMATH_FLAGS)
def _detect(angle_deg, on_deg, off_deg, min_samples, state, ep, confirmed):  # pragma: no cover
    """Scan angles; write closed episodes into ep (K, 4): start, end, peak, mean. Returns K."""
    k = 0
    in_ep = state[0]
    start = state[1]
    peak = state[2]
    total = state[3]
    count = state[4]
    base = state[5]
    for i in range(angle_deg.shape[0]):
        a = angle_deg[i]
        g = base + i
        if not np.isfinite(a):
            # missing sample: no decision either way, the episode (if any) continues
            confirmed[i] = 1 if (in_ep == 1.0 and g - start >= min_samples) else 0
            continue
        if in_ep == 0.0:
            if a > on_deg:
                in_ep = 1.0
                start = g
                peak = a
                total = a
                count = 1.0
        else:
            if a < off_deg:
                if g - start >= min_samples:
                    ep[k, 0] = start
                    ep[k, 1] = g
                    ep[k, 2] = peak
                    ep[k, 3] = total / count
                    k += 1
                in_ep = 0.0
            else:
                if a > peak:
                    peak = a
                total += a
                count += 1.0
        confirmed[i] = 1 if (in_ep == 1.0 and g + 1 - start >= min_samples) else 0
    state[0] = in_ep
    state[1] = start
    state[2] = peak
    state[3] = total
    state[4] = count
    state[5] = base + angle_deg.shape[0]
    return k


class SlouchDetector(StateVector):
    """Streaming slouch-episode detector over an angle series.

    An episode starts at the first sample whose angle exceeds ``threshold_deg`` and ends at
    the first sample whose angle falls below ``threshold_deg - hysteresis_deg``; it is
    reported only if it lasted at least ``min_duration_s``. NaN angles neither start nor
    end an episode. Chunks of any length give the same episodes as one batch.

    Args:
        rate_hz: sample rate, Hz.
        threshold_deg: angle above which an episode starts, degrees.
        hysteresis_deg: the episode ends below ``threshold_deg - hysteresis_deg``, degrees (>= 0).
        min_duration_s: shortest episode reported, seconds (>= 0).
    """

    STATE_LEN = _STATE_LEN

    def __init__(
        self, rate_hz: float, threshold_deg: float, hysteresis_deg: float, min_duration_s: float
    ) -> None:
        if not rate_hz > 0:
            raise ValueError(f"rate_hz must be > 0, got {rate_hz}")
        self.rate_hz = float(rate_hz)
        self.set_thresholds(threshold_deg, hysteresis_deg, min_duration_s)
        self._state = np.zeros(_STATE_LEN)

    def set_thresholds(self, threshold_deg: float, hysteresis_deg: float, min_duration_s: float) -> None:
        """Apply new thresholds from the next sample on; the detector's state is kept (an
        open episode goes on, and is confirmed and reported by the new minimum duration).

        Args: as for the constructor.

        Raises:
            ValueError: if a value is out of range (the detector is then unchanged).
        """
        if not math.isfinite(threshold_deg):
            raise ValueError(f"threshold_deg must be finite, got {threshold_deg}")
        if not hysteresis_deg >= 0:
            raise ValueError(f"hysteresis_deg must be >= 0, got {hysteresis_deg}")
        if not min_duration_s >= 0:
            raise ValueError(f"min_duration_s must be >= 0, got {min_duration_s}")
        self.on_deg = float(threshold_deg)
        self.off_deg = float(threshold_deg - hysteresis_deg)
        self.min_samples = int(math.ceil(min_duration_s * self.rate_hz - 1e-9))

    @property
    def samples_seen(self) -> int:
        return int(self._state[5])

    def update(self, angle_deg: npt.ArrayLike) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int8]]:
        """Feed a chunk of angles.

        Args:
            angle_deg: (N,) angle in degrees (flexion or tilt; NaN = no data).

        Returns:
            ``(episodes, confirmed)``: episodes closed in this chunk as (K, 4) float64 rows
            ``[start, end, peak_deg, mean_deg]`` with global sample indices, ``[start, end)``;
            and (N,) int8, 1 where the sample lies in an episode already longer than the
            minimum duration.
        """
        a = np.ascontiguousarray(angle_deg, dtype=np.float64)
        if a.ndim != 1:
            raise ValueError(f"angle_deg must have shape (N,), got {a.shape}")
        ep = np.empty((a.shape[0] // 2 + 1, 4))
        confirmed = np.empty(a.shape[0], np.int8)
        k = _detect(a, self.on_deg, self.off_deg, self.min_samples, self._state, ep, confirmed)
        return ep[:k].copy(), confirmed

    def flush(self) -> npt.NDArray[np.float64]:
        """Close an episode still open at the end of the stream (ends at the next index).

        Returns:
            (0 or 1, 4) rows as in :meth:`update`.
        """
        s = self._state
        out = np.empty((0, 4))
        if s[0] == 1.0 and s[5] - s[1] >= self.min_samples:
            out = np.array([[s[1], s[5], s[2], s[3] / s[4]]])
        s[0] = 0.0
        return out


def detect_slouch(
    gyr_rad_s: npt.ArrayLike,
    acc_m_s2: npt.ArrayLike,
    rate_hz: float,
    *,
    threshold_deg: float,
    min_duration_s: float,
    hysteresis_deg: float,
    calibration_s: float,
) -> Int2D:
    """Slouch episodes of a whole recording.

    Neutral is the mean gravity (up) direction in the sensor frame over the first
    ``calibration_s`` seconds, as estimated by :func:`estimate_orientation`; tilt is the
    angle between the current up direction and neutral. An episode starts at the sample
    where tilt first exceeds ``threshold_deg`` and ends at the sample where it falls below
    ``threshold_deg - hysteresis_deg``; an episode still open at the end of the input ends
    at N. Only episodes lasting at least ``min_duration_s`` are returned.

    Args:
        gyr_rad_s: (N, 3) angular rate, rad/s, sensor frame, raw.
        acc_m_s2: (N, 3) specific force, m/s^2, sensor frame.
        rate_hz: sample rate, Hz.
        threshold_deg: tilt that starts an episode, degrees.
        min_duration_s: shortest episode returned, seconds.
        hysteresis_deg: how far below the threshold tilt must fall to end an episode, degrees.
        calibration_s: length of the neutral-posture capture at the start, seconds (> 0).

    Returns:
        (K, 2) int64 ``[start, end)`` sample indices.
    """
    if not calibration_s > 0:
        raise ValueError(f"calibration_s must be > 0, got {calibration_s}")
    q = estimate_orientation(gyr_rad_s, acc_m_s2, rate_hz)
    up = up_in_sensor(q)
    n_cal = max(1, int(round(calibration_s * rate_hz)))
    if up.shape[0] < n_cal:
        raise ValueError(
            f"recording has {up.shape[0]} samples, fewer than calibration_s * rate_hz = {n_cal}"
        )
    cal = up[:n_cal]
    cal = cal[np.all(np.isfinite(cal), axis=1)]
    if cal.shape[0] == 0:
        raise ValueError("no finite samples in the calibration window")
    tilt = tilt_deg(up, cal.mean(axis=0))
    det = SlouchDetector(rate_hz, threshold_deg, hysteresis_deg, min_duration_s)
    ep, _ = det.update(tilt)
    ep = np.vstack([ep, det.flush()])
    return ep[:, :2].astype(np.int64)
