"""Remount detection: the sensor was taken off and stuck back on at a different tilt.

Angles are relative to the neutral posture captured at calibration, so a sensor put back
on tilted by 30 degrees would read 30 degrees of slouch all day. Sitting posture cannot tell
the two apart (a patient may sit slouched and still for an hour); walking can: people walk
with the trunk near upright (typically 0-10 degrees of forward lean, rarely over 20). So the
detector averages the sensor's up direction over walking, and when that average stays far
from the calibrated neutral over several walking windows, it reports a remount.

It sees tilt only: a sensor turned about the spine (yaw) keeps its up direction and needs
the guided forward bend of ``spinewatch calibrate`` to be found.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from spinewatch.signal.activity import Activity, ActivityClassifier


@dataclass(frozen=True, slots=True)
class RemountParams:
    """Settings of :class:`RemountDetector`.

    Attributes:
        remount_deg: walking up direction this far from neutral counts against the
            calibration, degrees (walking lean is rarely over 20).
        window_s: seconds of walking averaged per window (walking need not be continuous).
        confirm_windows: consecutive far-off windows before a remount is reported.
        moving_std_m_s2: accelerometer-norm standard deviation that counts as walking, m/s^2.
    """

    remount_deg: float = 30.0
    window_s: float = 20.0
    confirm_windows: int = 3
    moving_std_m_s2: float = 0.6

    def __post_init__(self) -> None:
        if not 0 < self.remount_deg < 180:
            raise ValueError(f"remount_deg must be in (0, 180), got {self.remount_deg}")
        if not self.window_s > 0 or self.confirm_windows < 1:
            raise ValueError(f"window_s must be > 0 and confirm_windows >= 1, got {self.window_s}, "
                             f"{self.confirm_windows}")


class RemountDetector:
    """Streaming remount detector (see the module docstring).

    Args:
        rate_hz: sample rate, Hz.
        params: thresholds.
    """

    def __init__(self, rate_hz: float, params: RemountParams | None = None) -> None:
        self.params = params or RemountParams()
        # lying_deg=180 and a zero tilt: the classifier then labels motion only
        self._motion = ActivityClassifier(rate_hz, lying_deg=180.0, moving_std_m_s2=self.params.moving_std_m_s2)
        self._window_n = max(1, int(round(self.params.window_s * rate_hz)))
        # Chunks are held and processed a second at a time: the bridge updates every few
        # samples, and per-call overhead would otherwise cost more than the detection itself.
        self._block_n = max(1, int(round(rate_hz)))
        self._held: list[tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]] = []
        self._held_n = 0
        self._seen = 0
        self._sum = np.zeros(3)
        self._n = 0
        self._far = 0
        self.suspected = False
        self.reported_at_sample = -1
        """Samples seen (since construction) when the remount was reported; -1 if not."""
        self.walking_tilt_deg = math.nan
        """Angle between the last walking window's mean up direction and neutral, degrees."""

    def reset(self) -> None:
        """Forget the evidence (after a new calibration)."""
        self._seen += self._held_n
        self._held.clear()
        self._held_n = 0
        self._sum[:] = 0.0
        self._n = 0
        self._far = 0
        self.suspected = False
        self.reported_at_sample = -1
        self.walking_tilt_deg = math.nan

    def update(self, up_sensor: npt.ArrayLike, acc_m_s2: npt.ArrayLike, neutral_up_sensor: npt.ArrayLike) -> bool:
        """Take a chunk (held by reference, so the caller must not modify it afterwards).

        Args:
            up_sensor: (N, 3) estimated up direction in the sensor frame (unit vectors).
            acc_m_s2: (N, 3) specific force, m/s^2, any frame (only the norm is used).
            neutral_up_sensor: (3,) the calibrated neutral up direction in the sensor frame.

        Returns:
            True when this call reported a remount (``suspected`` turned true).
        """
        up = np.asarray(up_sensor, dtype=np.float64)
        acc = np.asarray(acc_m_s2, dtype=np.float64)
        if up.ndim != 2 or up.shape[1] != 3 or acc.shape != up.shape:
            raise ValueError(f"up_sensor and acc_m_s2 must both have shape (N, 3), got {up.shape}, {acc.shape}")
        self._held.append((up, acc))
        self._held_n += len(up)
        if self._held_n < self._block_n:
            return False
        ups, accs = zip(*self._held, strict=True)
        self._held.clear()
        self._held_n = 0
        return self._process(np.concatenate(ups), np.concatenate(accs), neutral_up_sensor)

    def _process(self, up: npt.NDArray[np.float64], acc: npt.NDArray[np.float64],
                 neutral_up_sensor: npt.ArrayLike) -> bool:
        neutral = np.asarray(neutral_up_sensor, dtype=np.float64)
        neutral = neutral / np.linalg.norm(neutral)
        walking = self._motion.update(acc, np.zeros(len(up))) == Activity.UPRIGHT_MOVING
        rows = np.flatnonzero(walking & np.all(np.isfinite(up), axis=1))
        base = self._seen
        self._seen += len(up)
        reported = False
        start = 0
        while start < len(rows):
            take = min(len(rows) - start, self._window_n - self._n)
            self._sum += up[rows[start:start + take]].sum(axis=0)
            self._n += take
            start += take
            if self._n < self._window_n:
                break
            mean = self._sum / np.linalg.norm(self._sum)
            self.walking_tilt_deg = math.degrees(math.acos(min(1.0, max(-1.0, float(mean @ neutral)))))
            self._far = self._far + 1 if self.walking_tilt_deg > self.params.remount_deg else 0
            self._sum[:] = 0.0
            self._n = 0
            if self._far >= self.params.confirm_windows and not self.suspected:
                self.suspected = True
                self.reported_at_sample = base + int(rows[start - 1])
                reported = True
        return reported
