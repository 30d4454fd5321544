"""Guided calibration: the neutral up direction, its quality check, and the forward-bend yaw.

Pure numerics on a captured block of samples (no I/O, no clock): ``spinewatch calibrate``
collects the samples, these functions judge and summarise them. Frames: the samples are in
the frame the source delivers (the body frame after the sensor profile's mount remap; the
simulator's sensor frame), called "sensor frame" here as in :mod:`spinewatch.signal.angles`.

The neutral up direction is the mean of the normalised accelerometer vectors over the
capture: while the patient sits still, the accelerometer measures only the reaction to
gravity, which points up. No orientation filter is needed (nor any time for it to settle).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from spinewatch.model import GRAVITY_M_S2
from spinewatch.signal.angles import mount_yaw_deg

__all__ = [
    "BendCheck",
    "NeutralCheck",
    "NeutralLimits",
    "assess_neutral",
    "bend_yaw_deg",
    "neutral_up",
]

Float1D = npt.NDArray[np.float64]
Float2D = npt.NDArray[np.float64]

# Sitting still, a MEMS gyroscope reads its bias (typically 0.5-3 deg/s) plus ~0.1 deg/s of
# noise; breathing adds < 1 deg/s. A slow posture change of 10 deg over 2 s averages 5 deg/s.
MAX_GYR_RMS_DEG_S: Final = 5.0
# Standard deviation of |acc| sitting still: ~0.02-0.05 m/s^2 (noise, breathing);
# walking gives 1-3 m/s^2, shifting on the chair a few 0.1 m/s^2.
MAX_ACC_STD_M_S2: Final = 0.25
# Largest angle between the capture's mean up direction and the mean of any 0.5 s block:
# catches a slow lean that is too gentle for the gyroscope test. Noise gives < 0.2 deg.
MAX_TILT_SPREAD_DEG: Final = 3.0
BLOCK_S: Final = 0.5  # block length of the tilt-spread test, s
# Neutral must be roughly upright in the source's frame (body frame after the profile's
# mount remap): more than 45 deg off means the patient is lying or reclining, or the
# sensor is mounted differently from the profile's --mount. (The tracker calls 60 deg
# "lying"; a neutral posture must be well clear of that.)
MAX_UPRIGHT_TILT_DEG: Final = 45.0
# The forward bend: samples tilted at least this far from neutral are "bent" ...
BEND_MIN_TILT_DEG: Final = 15.0
# ... and at least this long must be bent to trust the direction, s.
BEND_MIN_HELD_S: Final = 0.5
# |acc| within this of g during the bend: samples with larger linear acceleration
# (a jerky movement) do not point up and are left out, m/s^2.
BEND_MAX_ACC_DEV_M_S2: Final = 1.5


@dataclass(frozen=True, slots=True)
class NeutralLimits:
    """Thresholds of the neutral-capture quality check (see the module constants for why).

    Attributes:
        max_gyr_rms_deg_s: largest RMS angular rate (raw, bias included), deg/s.
        max_acc_std_m_s2: largest standard deviation of the acceleration norm, m/s^2.
        max_tilt_spread_deg: largest drift of the up direction (0.5 s block means), degrees.
        max_upright_tilt_deg: largest angle between neutral up and the frame's +z, degrees.
    """

    max_gyr_rms_deg_s: float = MAX_GYR_RMS_DEG_S
    max_acc_std_m_s2: float = MAX_ACC_STD_M_S2
    max_tilt_spread_deg: float = MAX_TILT_SPREAD_DEG
    max_upright_tilt_deg: float = MAX_UPRIGHT_TILT_DEG

    def __post_init__(self) -> None:
        for name in ("max_gyr_rms_deg_s", "max_acc_std_m_s2", "max_tilt_spread_deg", "max_upright_tilt_deg"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {v!r}")


@dataclass(frozen=True, slots=True)
class NeutralCheck:
    """The outcome of :func:`assess_neutral`.

    Attributes:
        up_sensor: (3,) unit vector, neutral up in the sensor frame.
        gyr_rms_deg_s: RMS angular rate over the capture (raw, bias included), deg/s.
        acc_std_m_s2: standard deviation of the acceleration norm, m/s^2.
        tilt_spread_deg: largest angle between up_sensor and a 0.5 s block's mean up, degrees.
        upright_tilt_deg: angle between up_sensor and the frame's +z, degrees.
        problem: None if the capture is usable, else one sentence saying why not and
            what to do (the first problem found, in the order lying, motion, drift).
    """

    up_sensor: tuple[float, float, float]
    gyr_rms_deg_s: float
    acc_std_m_s2: float
    tilt_spread_deg: float
    upright_tilt_deg: float
    problem: str | None

    @property
    def ok(self) -> bool:
        return self.problem is None


def _check_block(gyr_rad_s: npt.ArrayLike, acc_m_s2: npt.ArrayLike) -> tuple[Float2D, Float2D]:
    gyr = np.asarray(gyr_rad_s, dtype=np.float64)
    acc = np.asarray(acc_m_s2, dtype=np.float64)
    if acc.ndim != 2 or acc.shape[1] != 3 or acc.shape[0] < 1:
        raise ValueError(f"acc_m_s2 must have shape (N, 3) with N >= 1, got {acc.shape}")
    if gyr.shape != acc.shape:
        raise ValueError(f"gyr_rad_s shape {gyr.shape} != acc_m_s2 shape {acc.shape}")
    if not (np.all(np.isfinite(gyr)) and np.all(np.isfinite(acc))):
        raise ValueError("the samples must be finite (no NaN or inf)")
    return gyr, acc


def neutral_up(acc_m_s2: npt.ArrayLike) -> Float1D:
    """Neutral up direction: the normalised mean of the normalised accelerations.

    Args:
        acc_m_s2: (N, 3) specific force, m/s^2, sensor frame, taken while still.

    Returns:
        (3,) unit vector, sensor frame.

    Raises:
        ValueError: wrong shape, non-finite values, or accelerations that cancel out.
    """
    acc = np.asarray(acc_m_s2, dtype=np.float64)
    if acc.ndim != 2 or acc.shape[1] != 3 or acc.shape[0] < 1 or not np.all(np.isfinite(acc)):
        raise ValueError(f"acc_m_s2 must be finite with shape (N, 3), N >= 1, got {acc.shape}")
    norm = np.linalg.norm(acc, axis=1, keepdims=True)
    m = (acc / np.where(norm > 0, norm, 1.0)).mean(axis=0)
    n = float(np.linalg.norm(m))
    if n < 0.5:
        raise ValueError("the accelerations point in all directions: no up direction")
    up: Float1D = m / n
    return up


def _angle_deg(a: Float2D, b: Float1D) -> Float1D:
    an = a / np.linalg.norm(a, axis=-1, keepdims=True)
    deg: Float1D = np.degrees(np.arccos(np.clip(an @ b, -1.0, 1.0)))
    return deg


def assess_neutral(
    gyr_rad_s: npt.ArrayLike,
    acc_m_s2: npt.ArrayLike,
    rate_hz: float,
    limits: NeutralLimits | None = None,
) -> NeutralCheck:
    """Neutral up direction of a capture and whether it is good enough to calibrate with.

    A capture is refused when the trunk is far from upright (lying, reclining, or the
    sensor mounted other than the profile says), or when the patient moved: RMS angular
    rate, spread of the acceleration norm, or drift of the up direction over the capture
    above :class:`NeutralLimits`.

    Args:
        gyr_rad_s: (N, 3) angular rate, rad/s, sensor frame, raw.
        acc_m_s2: (N, 3) specific force, m/s^2, sensor frame.
        rate_hz: sample rate, Hz (for the 0.5 s blocks of the drift test).
        limits: thresholds; default :class:`NeutralLimits` ().

    Returns:
        A :class:`NeutralCheck` (``problem`` None when usable).
    """
    lim = limits or NeutralLimits()
    if not (math.isfinite(rate_hz) and rate_hz > 0):
        raise ValueError(f"rate_hz must be > 0, got {rate_hz!r}")
    gyr, acc = _check_block(gyr_rad_s, acc_m_s2)
    up = neutral_up(acc)
    gyr_rms = float(np.degrees(np.sqrt(np.mean(np.sum(gyr * gyr, axis=1)))))
    acc_std = float(np.std(np.linalg.norm(acc, axis=1)))
    blk = max(1, round(BLOCK_S * rate_hz))
    nb = acc.shape[0] // blk
    if nb >= 1:
        means = acc[: nb * blk].reshape(nb, blk, 3).mean(axis=1)
        spread = float(np.max(_angle_deg(means, up)))
    else:
        spread = 0.0
    upright = float(np.degrees(np.arccos(np.clip(up[2], -1.0, 1.0))))
    problem = None
    if upright > lim.max_upright_tilt_deg:
        problem = (f"the trunk is {upright:.0f} deg from upright (more than {lim.max_upright_tilt_deg:g}): "
                   "the patient seems to be lying or reclining, or the sensor is mounted other than "
                   "--mount says; sit upright")
    elif gyr_rms > lim.max_gyr_rms_deg_s:
        problem = (f"the patient moved: angular rate {gyr_rms:.1f} deg/s RMS (at most "
                   f"{lim.max_gyr_rms_deg_s:g} allowed); sit upright and hold still")
    elif acc_std > lim.max_acc_std_m_s2:
        problem = (f"the patient moved: acceleration varied by {acc_std:.2f} m/s^2 (at most "
                   f"{lim.max_acc_std_m_s2:g} allowed); sit upright and hold still")
    elif spread > lim.max_tilt_spread_deg:
        problem = (f"the posture drifted by {spread:.1f} deg during the capture (at most "
                   f"{lim.max_tilt_spread_deg:g} allowed); sit upright and hold still")
    return NeutralCheck((float(up[0]), float(up[1]), float(up[2])), gyr_rms, acc_std, spread, upright, problem)


@dataclass(frozen=True, slots=True)
class BendCheck:
    """The outcome of :func:`bend_yaw_deg`.

    Attributes:
        mount_yaw_deg: the sensor's turn about the spine, degrees in (-180, 180], or None
            when the bend could not be used.
        max_tilt_deg: deepest tilt from neutral during the capture, degrees.
        bent_s: time spent at least ``BEND_MIN_TILT_DEG`` from neutral, s.
        problem: None if usable, else one sentence saying why not.
    """

    mount_yaw_deg: float | None
    max_tilt_deg: float
    bent_s: float
    problem: str | None

    @property
    def ok(self) -> bool:
        return self.problem is None


def bend_yaw_deg(neutral_up_sensor: npt.ArrayLike, acc_m_s2: npt.ArrayLike, rate_hz: float) -> BendCheck:
    """The sensor's turn about the spine from a guided, slow, straight forward bend.

    Uses the samples of the capture that are tilted at least ``BEND_MIN_TILT_DEG`` from
    neutral and nearly free of linear acceleration (|acc| within ``BEND_MAX_ACC_DEV_M_S2``
    of g), and passes their up directions to
    :func:`spinewatch.signal.angles.mount_yaw_deg`.

    Args:
        neutral_up_sensor: (3,) neutral up, sensor frame (from :func:`assess_neutral`).
        acc_m_s2: (N, 3) specific force during the bend, m/s^2, sensor frame.
        rate_hz: sample rate, Hz.

    Returns:
        A :class:`BendCheck`.
    """
    if not (math.isfinite(rate_hz) and rate_hz > 0):
        raise ValueError(f"rate_hz must be > 0, got {rate_hz!r}")
    acc = np.asarray(acc_m_s2, dtype=np.float64)
    if acc.ndim != 2 or acc.shape[1] != 3 or not np.all(np.isfinite(acc)):
        raise ValueError(f"acc_m_s2 must be finite with shape (N, 3), got {acc.shape}")
    n = np.asarray(neutral_up_sensor, dtype=np.float64)
    n = n / np.linalg.norm(n)
    norm = np.linalg.norm(acc, axis=1)
    tilt = _angle_deg(acc, n) if len(acc) else np.zeros(0)
    calm = np.abs(norm - GRAVITY_M_S2) <= BEND_MAX_ACC_DEV_M_S2
    bent = calm & (tilt >= BEND_MIN_TILT_DEG)
    max_tilt = float(tilt[calm].max()) if np.any(calm) else 0.0
    bent_s = float(np.count_nonzero(bent)) / rate_hz
    if bent_s < BEND_MIN_HELD_S:
        return BendCheck(None, max_tilt, bent_s, (
            f"the forward bend reached {max_tilt:.0f} deg for {bent_s:.1f} s (at least {BEND_MIN_TILT_DEG:g} deg "
            f"for {BEND_MIN_HELD_S:g} s needed); bend further forward, slowly, or skip it with --no-bend"))
    try:
        yaw = mount_yaw_deg(n, acc[bent])
    except ValueError as exc:  # the bent samples point every which way (a twist, not a bend)
        return BendCheck(None, max_tilt, bent_s, f"{exc}; bend straight forward, or skip it with --no-bend")
    if yaw <= -180.0:
        yaw = 180.0
    return BendCheck(yaw, max_tilt, bent_s, None)
