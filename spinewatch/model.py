"""Frozen value types that cross component boundaries (bridge -> signal -> service)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt

Float1D = npt.NDArray[np.float64]
Float2D = npt.NDArray[np.float64]
Int8_1D = npt.NDArray[np.int8]

NS_PER_S: Final = 1_000_000_000
NS_PER_MIN: Final = 60 * NS_PER_S
GRAVITY_M_S2: Final = 9.80665  # standard gravity (the "g" of accelerometer full scales), m/s^2


@dataclass(frozen=True, slots=True)
class ImuBatch:
    """Consecutive IMU samples of one sensor, evenly spaced in sensor time.

    Attributes:
        t0_ns: sensor time of the first sample, ns on the sensor's monotonic clock
            (not UTC; the publisher maps it to UTC with a clock anchor).
        dt_ns: sample period, ns (10_000_000 at 100 Hz).
        gyr_rad_s: (N, 3) angular rate in rad/s, sensor frame, raw (bias not removed).
        acc_m_s2: (N, 3) specific force in m/s^2, sensor frame (about +9.81 on the
            axis pointing up when still).
        gap_before: True if samples were lost just before this batch; the filter
            resets its motion state across the gap.
    """

    t0_ns: int
    dt_ns: int
    gyr_rad_s: Float2D
    acc_m_s2: Float2D
    gap_before: bool = False

    def __post_init__(self) -> None:
        if self.gyr_rad_s.ndim != 2 or self.gyr_rad_s.shape[1] != 3:
            raise ValueError(f"gyr_rad_s must have shape (N, 3), got {self.gyr_rad_s.shape}")
        if self.acc_m_s2.shape != self.gyr_rad_s.shape:
            raise ValueError(
                f"acc_m_s2 shape {self.acc_m_s2.shape} != gyr_rad_s shape {self.gyr_rad_s.shape}"
            )
        if self.dt_ns <= 0:
            raise ValueError(f"dt_ns must be > 0, got {self.dt_ns}")

    def __len__(self) -> int:
        return int(self.gyr_rad_s.shape[0])

    @property
    def rate_hz(self) -> float:
        return NS_PER_S / self.dt_ns


@dataclass(frozen=True, slots=True)
class PostureBatch:
    """Trunk angles of consecutive samples, relative to the calibrated neutral posture.

    Attributes:
        patient: pseudonymous patient id.
        device: pseudonymous device id.
        t0_ns: UTC time of the first sample, ns since the Unix epoch (sensor-derived).
        dt_ns: sample period, ns.
        flexion_deg: (N,) sagittal flexion in degrees, forward bend positive.
        lateral_deg: (N,) lateral bend in degrees, bend to the right positive.
        state: (N,) int8 posture state, 0 = neutral, 1 = slouching (confirmed episode).
        activity: (N,) int8 activity, see ``spinewatch.signal.activity.Activity``.
    """

    patient: str
    device: str
    t0_ns: int
    dt_ns: int
    flexion_deg: Float1D
    lateral_deg: Float1D
    state: Int8_1D = field(default_factory=lambda: np.zeros(0, np.int8))
    activity: Int8_1D = field(default_factory=lambda: np.zeros(0, np.int8))

    def __post_init__(self) -> None:
        n = len(self.flexion_deg)
        if len(self.lateral_deg) != n:
            raise ValueError(f"lateral_deg has {len(self.lateral_deg)} samples, flexion_deg {n}")
        for name in ("state", "activity"):
            arr = getattr(self, name)
            if len(arr) not in (0, n):
                raise ValueError(f"{name} has {len(arr)} samples, flexion_deg {n}")

    def __len__(self) -> int:
        return len(self.flexion_deg)


@dataclass(frozen=True, slots=True)
class SlouchEvent:
    """One slouch episode: the one shape of an episode outside the Numba kernels (whose
    ``(K, 4)`` arrays stay inside ``spinewatch.signal``). The bridge publishes it, the wire
    codec decodes it, ingest stores it and the stores' ``episodes()`` return it
    to reports and export.

    Attributes:
        patient: pseudonymous patient id.
        device: pseudonymous device id.
        start_ns: UTC ns of the first sample above the threshold.
        end_ns: UTC ns of the first sample back below threshold - hysteresis.
        peak_deg: largest flexion during the episode, degrees.
        mean_deg: mean flexion during the episode, degrees; None when the sender omitted it
            (optional on the wire, docs/wire-format.md).
    """

    patient: str
    device: str
    start_ns: int
    end_ns: int
    peak_deg: float
    mean_deg: float | None

    @property
    def duration_s(self) -> float:
        """``(end_ns - start_ns)`` in seconds, unrounded (stores keep it to 0.01 s)."""
        return (self.end_ns - self.start_ns) / NS_PER_S


@dataclass(frozen=True, slots=True)
class HapticAlert:
    """One haptic alert and how the patient responded.

    Attributes:
        t_ns: UTC ns when the buzz was sent.
        flexion_deg: flexion relative to neutral when it fired, degrees.
        corrected: whether flexion fell below threshold - hysteresis within the response
            window after the buzz.
        response_s: buzz to correction, seconds; None if not corrected.
    """

    patient: str
    device: str
    t_ns: int
    flexion_deg: float
    corrected: bool
    response_s: float | None


@dataclass(frozen=True, slots=True)
class Calibration:
    """A neutral-posture calibration (``spinewatch calibrate``).

    Attributes:
        t_ns: UTC ns at the end of the capture.
        up_sensor: (3,) unit vector, the neutral "up" direction in the sensor frame.
        mount_yaw_deg: the sensor's rotation about the body's up axis, degrees, from the
            guided forward bend; None when no bend was captured.
        gyr_rms_deg_s: RMS angular rate during the neutral capture, deg/s (stillness).
        acc_std_m_s2: standard deviation of the acceleration norm during the capture, m/s^2.
        duration_s: length of the neutral capture, seconds.
        author: pseudonymous id of who ran it.
    """

    patient: str
    device: str
    t_ns: int
    up_sensor: tuple[float, float, float]
    mount_yaw_deg: float | None
    gyr_rms_deg_s: float
    acc_std_m_s2: float
    duration_s: float
    author: str = ""


class Activity(enum.IntEnum):
    """Activity label per sample (stored as int8 on the wire and in InfluxDB)."""

    UNKNOWN = 0
    LYING = 1
    UPRIGHT_STILL = 2
    UPRIGHT_MOVING = 3
