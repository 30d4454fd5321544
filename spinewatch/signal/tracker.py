"""Streaming posture tracker: orientation -> neutral calibration -> angles -> activity -> slouch."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from spinewatch.signal.activity import LYING_DEG, Activity, ActivityClassifier
from spinewatch.signal.angles import (
    neutral_alignment,
    trunk_angles_deg,
    up_in_sensor,
    yaw_rotation,
)
from spinewatch.signal.orientation import OrientationFilter, OrientationParams
from spinewatch.signal.remount import RemountDetector
from spinewatch.signal.slouch import SlouchDetector

Float1D = npt.NDArray[np.float64]
Float2D = npt.NDArray[np.float64]

# Angle fed to the slouch detector where no slouch may be detected (calibration, lying).
_NOT_ELIGIBLE_DEG = -1.0e9
_LYING = int(Activity.LYING)


@dataclass(frozen=True, slots=True)
class PostureParams:
    """Posture analytics settings (per patient).

    Attributes:
        threshold_deg: flexion above neutral that starts a slouch, degrees.
        hysteresis_deg: a slouch ends below ``threshold_deg - hysteresis_deg``, degrees.
        min_duration_s: shortest slouch reported, seconds.
        calibration_s: neutral-posture capture at the start of a stream, seconds.
        lying_deg: trunk inclination from vertical above which the patient counts as lying
            (no slouch is detected while lying), degrees.
        mount_yaw_deg: how far the sensor is turned about the spine, degrees, measured by a
            guided forward bend (:func:`spinewatch.signal.angles.mount_yaw_deg`); 0 trusts
            the sensor profile's mounting.
    """

    threshold_deg: float = 20.0
    hysteresis_deg: float = 5.0
    min_duration_s: float = 30.0
    calibration_s: float = 10.0
    lying_deg: float = LYING_DEG
    mount_yaw_deg: float = 0.0

    def __post_init__(self) -> None:
        if not 0 < self.threshold_deg < 90:
            raise ValueError(f"threshold_deg must be in (0, 90), got {self.threshold_deg}")
        if not 0 <= self.hysteresis_deg < self.threshold_deg:
            raise ValueError(
                f"hysteresis_deg must be in [0, threshold_deg), got {self.hysteresis_deg}"
            )
        if not self.min_duration_s >= 0:
            raise ValueError(f"min_duration_s must be >= 0, got {self.min_duration_s}")
        if not self.calibration_s > 0:
            raise ValueError(f"calibration_s must be > 0, got {self.calibration_s}")
        if not -180.0 < self.mount_yaw_deg <= 180.0:
            raise ValueError(f"mount_yaw_deg must be in (-180, 180], got {self.mount_yaw_deg}")


@dataclass(frozen=True, slots=True)
class TrackerOutput:
    """What :meth:`PostureTracker.update` returns for one chunk of N samples.

    Attributes:
        flexion_deg: (N,) forward flexion relative to neutral, degrees.
        lateral_deg: (N,) lateral bend relative to neutral (right positive), degrees.
        state: (N,) int8, 1 inside a confirmed slouch (longer than the minimum duration).
        activity: (N,) int8 :class:`Activity`.
        episodes: (K, 4) slouches closed in this chunk: ``[start, end, peak_deg, mean_deg]``
            with global sample indices (sample 0 = first sample of the stream).
    """

    flexion_deg: Float1D
    lateral_deg: Float1D
    state: npt.NDArray[np.int8]
    activity: npt.NDArray[np.int8]
    episodes: Float2D


class PostureTracker:
    """Turns raw IMU chunks into trunk angles, activity and slouch episodes.

    During the first ``calibration_s`` seconds the neutral up direction is the running mean
    of the estimated up direction (the patient sits upright and still); after that it is
    fixed, and angles are relative to it. Slouches are not detected during calibration or
    while lying. A stored calibration (:meth:`set_neutral`) replaces the auto-capture, also
    in the middle of a stream. During the orientation filter's start-up (after a cold start
    or :meth:`reset_motion`, ``tau_acc_s``) the activity is :attr:`Activity.UNKNOWN` and the
    slouch detector takes no decision.

    Args:
        rate_hz: sample rate, Hz.
        params: posture settings.
        orientation_params: orientation filter tuning (defaults suit a body-worn sensor).
    """

    def __init__(
        self,
        rate_hz: float,
        params: PostureParams | None = None,
        orientation_params: OrientationParams | None = None,
    ) -> None:
        self.rate_hz = float(rate_hz)
        self.params = params or PostureParams()
        p = self.params
        self.orientation = OrientationFilter(rate_hz, orientation_params)
        self.activity = ActivityClassifier(rate_hz, lying_deg=p.lying_deg)
        self.slouch = SlouchDetector(rate_hz, p.threshold_deg, p.hysteresis_deg, p.min_duration_s)
        self._cal_samples = self._calibration_samples(p)
        self._cal_sum = np.zeros(3)
        self._cal_n = 0
        self._r_sensor_to_body: Float2D | None = None
        self.remount = RemountDetector(rate_hz)
        """Watches for a sensor stuck back on at another tilt (``remount.suspected``)."""
        self._fixed = False
        self._neutral_cache: Float1D | None = None  # neutral_up_sensor once calibrated

    @property
    def calibrated(self) -> bool:
        return self._cal_n >= self._cal_samples

    @property
    def neutral_up_sensor(self) -> Float1D:
        """Neutral up direction in the sensor frame (unit vector; running mean until calibrated)."""
        if self._cal_n == 0:
            return np.array([0.0, 0.0, 1.0])
        return self._cal_sum / np.linalg.norm(self._cal_sum)

    @property
    def neutral_fixed(self) -> bool:
        """True once :meth:`set_neutral` installed a stored calibration."""
        return self._fixed

    def set_neutral(self, up_sensor: npt.ArrayLike, mount_yaw_deg: float | None = None) -> None:
        """Use a stored calibration (``spinewatch calibrate``) instead of the auto-capture.

        From the next sample on, angles are relative to ``up_sensor`` turned by
        ``mount_yaw_deg``; an auto-capture still running ends (slouch detection starts).
        May be called again at any time (a new calibration arrives live).

        Args:
            up_sensor: (3,) neutral up direction, sensor frame, any norm > 0.
            mount_yaw_deg: the sensor's turn about the spine, degrees in (-180, 180];
                None means no guided bend was done (0: trust the profile's mounting).
        """
        yaw = 0.0 if mount_yaw_deg is None else float(mount_yaw_deg)
        r = neutral_alignment(up_sensor)  # validates
        self.params = replace(self.params, mount_yaw_deg=yaw)  # validates the yaw
        u = np.asarray(up_sensor, dtype=np.float64)
        self._cal_sum = u / np.linalg.norm(u)
        self._cal_n = self._cal_samples
        self._r_sensor_to_body = yaw_rotation(yaw) @ r
        self._neutral_cache = None
        self._fixed = True
        self.remount.reset()  # a new calibration answers a suspected remount

    def set_params(self, params: PostureParams) -> None:
        """Apply new posture settings to a running tracker (a patient's settings changed live).

        From the next sample on the tracker behaves as one built with ``params``, keeping
        what it has learnt and what is under way: the orientation filter, the neutral
        posture (stored or auto-captured), the activity classifier's and the slouch
        detector's state (an open slouch goes on and is judged by the new thresholds and
        minimum duration). ``lying_deg`` applies to the activity from the next sample;
        ``mount_yaw_deg`` turns the body frame at once once calibrated; ``calibration_s``
        changes an auto-capture still running (it ends at the next sample if the new
        window is already full) and nothing after it.

        Args:
            params: the new settings.
        """
        old = self.params
        self.slouch.set_thresholds(params.threshold_deg, params.hysteresis_deg, params.min_duration_s)
        self.activity.set_lying_deg(params.lying_deg)
        if not self.calibrated:
            self._cal_samples = self._calibration_samples(params)
        self.params = params
        if params.mount_yaw_deg != old.mount_yaw_deg and self._r_sensor_to_body is not None:
            self._r_sensor_to_body = self._body_rotation()

    def reset_motion(self) -> None:
        """Call after a gap in the data: the orientation filter restarts its motion state.

        For the filter's start-up average that follows (``tau_acc_s``, 3 s by default) the
        slouch detector takes no decision (an episode open before the gap continues) and the
        activity is :attr:`Activity.UNKNOWN` (lying and upright are told by the inclination).
        """
        reset = getattr(self.orientation, "reset_motion", None)
        if reset is not None:
            reset()

    def update(self, gyr_rad_s: npt.ArrayLike, acc_m_s2: npt.ArrayLike) -> TrackerOutput:
        """Process a chunk.

        Args:
            gyr_rad_s: (N, 3) angular rate, rad/s, sensor frame, raw.
            acc_m_s2: (N, 3) specific force, m/s^2, sensor frame.
        """
        acc = np.asarray(acc_m_s2, dtype=np.float64)
        # samples in the orientation filter's start-up average (after a cold start or a
        # reset in motion): their inclination is still converging, so no slouch decision
        start_up = getattr(self.orientation, "start_up_samples_left", 0)
        q = self.orientation.update(gyr_rad_s, acc)
        up = up_in_sensor(q)
        n = up.shape[0]
        start_up = min(n, start_up)
        if self.calibrated and self._r_sensor_to_body is not None:  # the usual case, in fewer steps
            flex, lat = trunk_angles_deg(up @ self._r_sensor_to_body.T)
            self.remount.update(up, acc, self._neutral_up())
            return self._classify(acc, flex, lat, 0, start_up)
        flex = np.empty(n)
        lat = np.empty(n)
        i = 0
        if not self.calibrated:
            # calibration window: neutral is the running mean, updated sample by sample
            m = min(n, self._cal_samples - self._cal_n)
            good = np.all(np.isfinite(up[:m]), axis=1)
            csum = np.cumsum(np.where(good[:, None], up[:m], 0.0), axis=0) + self._cal_sum
            self._cal_sum = csum[-1].copy()
            self._cal_n += m
            for j in range(m):
                r = neutral_alignment(csum[j]) if np.any(csum[j]) else np.eye(3)
                f, la = trunk_angles_deg((r @ up[j])[None, :])
                flex[j], lat[j] = f[0], la[0]
            i = m
        if i < n:
            if self._r_sensor_to_body is None:  # fixed once calibration is complete
                self._r_sensor_to_body = self._body_rotation()
            f, la = trunk_angles_deg(up[i:] @ self._r_sensor_to_body.T)
            flex[i:], lat[i:] = f, la
            self.remount.update(up[i:], acc[i:], self._neutral_up())
        return self._classify(acc, flex, lat, i, start_up)

    def _calibration_samples(self, params: PostureParams) -> int:
        """Samples of the auto-captured neutral for ``params.calibration_s``."""
        return max(1, round(params.calibration_s * self.rate_hz))

    def _body_rotation(self) -> Float2D:
        """``R_sensor_to_body`` from the captured neutral and the params' mount yaw."""
        return yaw_rotation(self.params.mount_yaw_deg) @ neutral_alignment(self._cal_sum)

    def _neutral_up(self) -> Float1D:
        """:attr:`neutral_up_sensor` once calibrated, computed once (it is fixed until set_neutral)."""
        if self._neutral_cache is None:
            self._neutral_cache = self.neutral_up_sensor
        return self._neutral_cache

    def _classify(
        self, acc: Float2D, flex: Float1D, lat: Float1D, i: int, start_up: int = 0
    ) -> TrackerOutput:
        """Activity and slouch state of a chunk whose first ``i`` samples are in the calibration
        window and whose first ``start_up`` samples in the orientation filter's start-up."""
        # inclination of the trunk from vertical: angle of up_body from body z
        incl = np.degrees(np.arccos(np.clip(np.cos(np.radians(flex)) * np.cos(np.radians(lat)), -1, 1)))
        # in the orientation filter's start-up the inclination is still converging: the
        # classifier gets no inclination there and says UNKNOWN (its motion energy still
        # follows the accelerometer), as the slouch detector gets NaN below
        incl[:start_up] = np.nan
        act = self.activity.update(acc, incl)
        angle = flex.copy()
        # A finite "far below" value ends any episode (NaN would mean "no data" and keep it).
        if start_up > i:
            # the start-up transient of the orientation filter neither starts nor ends an
            # episode (NaN: no decision either way; a slouch open before a gap goes on)
            angle[i:start_up] = np.nan
        if i:
            angle[:i] = _NOT_ELIGIBLE_DEG  # no slouch detection inside the calibration window
        angle[act == _LYING] = _NOT_ELIGIBLE_DEG
        episodes, state = self.slouch.update(angle)
        return TrackerOutput(flex, lat, state, act, episodes)

    def flush(self) -> Float2D:
        """Close a slouch still open at the end of the stream; rows as in ``episodes``."""
        return self.slouch.flush()
