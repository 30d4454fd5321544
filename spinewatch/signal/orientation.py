"""6-axis orientation filter (gyroscope + accelerometer): batch, streaming and multi-stream forms.

The design follows the structure described by Laidig & Seel, "VQF: Highly accurate IMU
orientation estimation with bias estimation and magnetic disturbance rejection" (Information
Fusion, 2023): the gyroscope is integrated on its own (strapdown) into an "almost inertial"
frame, the accelerometer is rotated into that frame (with the attitude at its sampling
instant, half a strapdown step back; VQF uses the attitude after the step) and low-pass
filtered there, and the inclination of the almost-inertial frame is corrected from the
filtered gravity direction. After a cold start or a reset, gravity is first the plain mean
of the rotated samples for ``tau_acc_s`` (a start in motion converges within about a
second), and a motion bias update whose residual exceeds the largest bias is rejected; during
the average, motion updates use its own measurement model (half the rate error, noise from the
accelerometer's spread). A rest detector
and a Kalman-like estimator track the gyroscope bias at rest and in motion.
See ``docs/orientation.md`` for the algorithm in prose and the parameter table.

Quaternions are ``q_sensor_to_earth`` stored as ``[w, x, y, z]`` (a vector ``v_sensor`` is
rotated into the earth frame as ``q * v_sensor * q^-1``); the earth frame has z up and an
arbitrary heading.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numba as nb
import numpy as np
import numpy.typing as npt

from spinewatch.signal._jit import FASTMATH_FLAGS

# Numba accepts a set (not a frozenset) of flags; derived from the one shared constant.
_FASTMATH = set(FASTMATH_FLAGS)

Float1D = npt.NDArray[np.float64]
Float2D = npt.NDArray[np.float64]
Float3D = npt.NDArray[np.float64]

# Samples outside these magnitudes are treated like NaN (skipped and counted): no body-worn
# MEMS sensor reports them (typical full scales are 16 g and 2000 deg/s), and letting
# absurd values into the low-pass filters could overflow their state.
MAX_ACC_NORM_M_S2: Final = 1000.0  # about 100 g
MAX_GYR_NORM_RAD_S: Final = 100.0  # about 5700 deg/s

# A low-pass filtered gravity vector shorter than this (free fall, or a chunk of zeros)
# carries no direction: the inclination correction is skipped.
_MIN_GRAVITY_NORM_M_S2: Final = 1e-3

# Inclination corrections below 0.01 rad per sample (the usual 1e-6..1e-4 rad) take the
# sqrt-free path; its normalisation error, below 3e-10 there, is squared away by the
# Newton step that follows. The value is the square of the angle.
_SMALL_CORRECTION2: Final = 1e-4

# Above this rotation angle per sample the exact sin/cos step is used instead of the
# Taylor series (the series' truncation error is below 1e-13 below this angle).
_SERIES_MAX_HALF_ANGLE_RAD: Final = 0.02

# ---------------------------------------------------------------------------------------
# Coefficient vector layout (float64), derived from params and rate by _make_coeffs.
_C_TS = 0  # sample period, s
_C_ACC_G = 1  # gravity low-pass (tau_acc_s): (w0 ts)^2, see _svf
_C_ACC_D = 2  # gravity low-pass: sqrt(2) w0 ts
_C_HORIZON_S = 3  # output prediction horizon, s (see gyr_latency_samples)
_C_REST_G = 4  # rest detector low-pass (rest_filter_tau_s): (w0 ts)^2
_C_REST_D = 5  # rest detector low-pass: sqrt(2) w0 ts
_C_REST_TH_GYR2 = 6  # (rad/s)^2
_C_REST_TH_ACC2 = 7  # (m/s^2)^2
_C_REST_MIN_S = 8  # s
_C_BIAS_P0 = 9  # (rad/s)^2
_C_BIAS_V = 10  # process noise per bias update, (rad/s)^2
_C_BIAS_MOTION_W = 11  # (rad/s)^2
_C_BIAS_VERTICAL_W = 12  # (rad/s)^2
_C_BIAS_REST_W = 13  # (rad/s)^2
_C_BIAS_CLIP = 14  # rad/s
_C_MOTION_BIAS = 15  # 1.0 enables bias estimation in motion
_C_REST_BIAS = 16  # 1.0 enables bias estimation at rest
_C_BIAS_EVERY = 17  # run the bias Kalman filter every this many accelerometer samples
_C_BIAS_LP_G = 18  # the tau_acc_s low-pass at the bias filter's rate: (w0 ts bias_every)^2
_C_BIAS_LP_D = 19  # sqrt(2) w0 ts bias_every
_C_ACC_AVG_N = 20  # accelerometer samples in the start-up average of gravity (tau_acc_s)
_C_BIAS_AVG_N = 21  # bias filter updates in the start-up average of its low-passes (tau_acc_s)
_COEFFS_LEN = 22

# The bias Kalman filter runs at about this rate: its measurements are low-passed with
# time constants of 0.5 s and more, so a faster update adds cost, not information.
_BIAS_UPDATE_RATE_HZ: Final = 40.0

# ---------------------------------------------------------------------------------------
# State vector layout (float64). Low-pass states are (output, increment) pairs, see _svf.
# The "init" flags are 0.0 until the filter has seen its first sample (for _S_ACC_INIT and
# _S_BLP_INIT the same as the counts _S_ACC_N, _S_BLP_N being 0; kept so the layout only grows).
_S_GQ = 0  # gyroscope strapdown quaternion, sensor -> almost-inertial frame [w, x, y, z]
_S_AQ = 4  # inclination correction, almost-inertial -> earth [w, x, y, z]
_S_BIAS = 8  # gyroscope bias estimate, rad/s, sensor frame (3)
_S_P = 11  # bias covariance, (rad/s)^2, row-major 3x3 (9)
_S_ACC_LP = 20  # gravity low-pass state in the almost-inertial frame (3 channels x 2)
_S_ACC_INIT = 26
_S_R_LP = 27  # low-pass of the rotation matrix (9 channels x 2)
_S_BLP_LP = 45  # low-pass of the earth-frame bias x/y (2 channels x 2)
_S_REST_GYR_LP = 49  # rest detector gyro low-pass (3 x 2)
_S_REST_GYR_INIT = 55
_S_REST_ACC_LP = 56  # rest detector accelerometer low-pass (3 x 2)
_S_REST_ACC_INIT = 62
_S_REST_GYR_MEAN = 63  # last low-passed gyro, rad/s (3): the bias measurement at rest
_S_REST_T = 66  # time since the last movement, s
_S_REST = 67  # 1.0 while at rest
_S_N_BAD_GYR = 68  # count of skipped gyroscope samples (non-finite or out of range)
_S_N_BAD_ACC = 69  # count of skipped accelerometer samples (non-finite, zero or out of range)
_S_BLP_INIT = 70
_S_BIAS_COUNT = 71  # accelerometer samples since the last bias filter update
_S_ACC_N = 72  # accelerometer samples averaged since the (re)start, capped at _C_ACC_AVG_N
_S_BLP_N = 73  # bias filter updates averaged since the (re)start, capped at _C_BIAS_AVG_N
_S_ACC_M2 = 74  # start-up average: sum of squared deviations across the mean (Welford), (m/s^2)^2
STATE_LEN: Final = 75  # 600 bytes per stream


@dataclass(frozen=True, slots=True)
class OrientationParams:
    """Tuning of the orientation filter. Defaults suit a body-worn MEMS IMU at 50-1000 Hz.

    Attributes:
        tau_acc_s: time constant of the accelerometer low-pass in the almost-inertial frame,
            s. Larger trusts the gyroscope longer and rejects more acceleration. Also the
            length of the start-up average after a cold start or reset.
        gyr_latency_samples: how many sample periods the gyroscope output lags the motion
            (group delay of the sensor's digital low-pass); the output orientation is
            predicted over it with the current rate. 0.5 (default) gives the plain
            strapdown output: a sensor property, set it from the sensor profile or datasheet
            (BROAD's myon aktos-t measures 1.0, see docs/orientation.md).
        motion_bias_est: estimate the gyroscope bias while moving (updates whose residual
            exceeds ``bias_clip_dps`` are rejected; during the start-up average with its own
            measurement model, see docs/orientation.md).
        rest_bias_est: detect rest and estimate the gyroscope bias from it.
        bias_sigma_init_dps: initial standard deviation of the bias estimate, deg/s.
        bias_forgetting_time_s: time in which the bias uncertainty grows by 0.1 deg/s, s.
        bias_clip_dps: largest bias magnitude per axis, deg/s; also the largest low-passed
            rate that still counts as rest.
        bias_sigma_motion_dps: steady-state bias uncertainty from motion updates, deg/s.
        bias_vertical_forgetting_factor: how much weaker the (unobservable) earth-vertical
            bias component is pulled towards zero than the horizontal ones are corrected.
        bias_sigma_rest_dps: steady-state bias uncertainty from rest updates, deg/s.
        rest_min_duration_s: how long the thresholds must hold before rest is detected, s;
            also how far into the start-up average motion bias learning begins.
        rest_filter_tau_s: time constant of the rest detector's low-pass filters, s.
        rest_th_gyr_dps: rest threshold on the gyroscope deviation from its low-pass, deg/s.
        rest_th_acc_m_s2: rest threshold on the accelerometer deviation, m/s^2.
    """

    tau_acc_s: float = 3.0
    gyr_latency_samples: float = 0.5
    motion_bias_est: bool = True
    rest_bias_est: bool = True
    bias_sigma_init_dps: float = 0.5
    bias_forgetting_time_s: float = 100.0
    bias_clip_dps: float = 2.0
    bias_sigma_motion_dps: float = 0.1
    bias_vertical_forgetting_factor: float = 1e-4
    bias_sigma_rest_dps: float = 0.03
    rest_min_duration_s: float = 1.5
    rest_filter_tau_s: float = 0.5
    rest_th_gyr_dps: float = 2.0
    rest_th_acc_m_s2: float = 0.5

    def __post_init__(self) -> None:
        positive = (
            "tau_acc_s",
            "bias_sigma_init_dps",
            "bias_forgetting_time_s",
            "bias_clip_dps",
            "bias_sigma_motion_dps",
            "bias_vertical_forgetting_factor",
            "bias_sigma_rest_dps",
            "rest_filter_tau_s",
            "rest_th_gyr_dps",
            "rest_th_acc_m_s2",
        )
        for name in positive:
            value = getattr(self, name)
            if not (_is_number(value) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        for name in ("rest_min_duration_s", "gyr_latency_samples"):
            value = getattr(self, name)
            if not (_is_number(value) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        for name in ("motion_bias_est", "rest_bias_est"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def lowpass_coeffs(tau_s: float, rate_hz: float) -> tuple[float, float]:
    """Coefficients of the second-order low-pass used throughout (see ``_svf``).

    The filter is a discretised Butterworth prototype ``y'' + sqrt(2) w0 y' + w0^2 y = w0^2 x``
    with ``w0 = sqrt(2) / tau_s`` (cut-off ``w0 / 2 pi``), so its step response settles
    roughly like a first-order filter of time constant ``tau_s``.

    Args:
        tau_s: time constant, s (> 0).
        rate_hz: sample rate, Hz.

    Returns:
        ``((w0 ts)^2, sqrt(2) w0 ts)`` with ``ts = 1 / rate_hz``.

    Raises:
        ValueError: if tau_s is too short for the sample rate (the discretisation would
            not be stable).
    """
    w0_ts = math.sqrt(2.0) / tau_s / rate_hz
    if w0_ts > 0.5:
        raise ValueError(
            f"time constant {tau_s} s is too short for rate_hz={rate_hz}: need tau_s >= "
            f"{2.0 * math.sqrt(2.0) / rate_hz:.3g} s"
        )
    return w0_ts * w0_ts, math.sqrt(2.0) * w0_ts


def _make_coeffs(params: OrientationParams, rate_hz: float) -> Float1D:
    c = np.zeros(_COEFFS_LEN)
    ts_s = 1.0 / rate_hz
    dps = math.pi / 180.0
    c[_C_TS] = ts_s
    c[_C_ACC_G], c[_C_ACC_D] = lowpass_coeffs(params.tau_acc_s, rate_hz)
    # the strapdown step applies the rate of sample k to the interval (k-1, k], which by
    # itself leads point samples by half a period; the rest of the latency is predicted
    c[_C_HORIZON_S] = (params.gyr_latency_samples - 0.5) * ts_s
    c[_C_REST_G], c[_C_REST_D] = lowpass_coeffs(params.rest_filter_tau_s, rate_hz)
    c[_C_REST_TH_GYR2] = (params.rest_th_gyr_dps * dps) ** 2
    c[_C_REST_TH_ACC2] = params.rest_th_acc_m_s2**2
    c[_C_REST_MIN_S] = params.rest_min_duration_s
    c[_C_BIAS_P0] = (params.bias_sigma_init_dps * dps) ** 2
    # process noise: the variance grows by (0.1 deg/s)^2 in bias_forgetting_time_s
    bias_every = max(1, round(rate_hz / _BIAS_UPDATE_RATE_HZ))
    c[_C_BIAS_EVERY] = bias_every
    c[_C_BIAS_LP_G], c[_C_BIAS_LP_D] = lowpass_coeffs(params.tau_acc_s, rate_hz / bias_every)
    v = (0.1 * dps) ** 2 * bias_every * ts_s / params.bias_forgetting_time_s
    c[_C_BIAS_V] = v
    # measurement noise chosen so that a scalar Kalman filter with process noise v settles
    # at the posterior variance p: w = p^2 / v + p
    p_motion = (params.bias_sigma_motion_dps * dps) ** 2
    c[_C_BIAS_MOTION_W] = p_motion**2 / v + p_motion
    c[_C_BIAS_VERTICAL_W] = c[_C_BIAS_MOTION_W] / max(params.bias_vertical_forgetting_factor, 1e-10)
    p_rest = (params.bias_sigma_rest_dps * dps) ** 2
    c[_C_BIAS_REST_W] = p_rest**2 / v + p_rest
    c[_C_BIAS_CLIP] = params.bias_clip_dps * dps
    c[_C_MOTION_BIAS] = 1.0 if params.motion_bias_est else 0.0
    c[_C_REST_BIAS] = 1.0 if params.rest_bias_est else 0.0
    c[_C_ACC_AVG_N] = max(1, round(params.tau_acc_s * rate_hz))
    c[_C_BIAS_AVG_N] = max(1, round(params.tau_acc_s * rate_hz / bias_every))
    return c


def _initial_state(params: OrientationParams) -> Float1D:
    s = np.zeros(STATE_LEN)
    s[_S_GQ] = 1.0
    s[_S_AQ] = 1.0
    p0 = (params.bias_sigma_init_dps * math.pi / 180.0) ** 2
    s[_S_P + 0] = p0
    s[_S_P + 4] = p0
    s[_S_P + 8] = p0
    return s


def _reset_motion_state(state: Float1D) -> None:
    """Forget everything tied to the recent motion; keep orientation, bias and covariance."""
    state[_S_ACC_INIT] = 0.0
    state[_S_ACC_LP : _S_ACC_LP + 6] = 0.0
    state[_S_R_LP : _S_R_LP + 18] = 0.0
    state[_S_BLP_LP : _S_BLP_LP + 4] = 0.0
    state[_S_BLP_INIT] = 0.0
    state[_S_REST_GYR_INIT] = 0.0
    state[_S_REST_GYR_LP : _S_REST_GYR_LP + 6] = 0.0
    state[_S_REST_ACC_INIT] = 0.0
    state[_S_REST_ACC_LP : _S_REST_ACC_LP + 6] = 0.0
    state[_S_REST_GYR_MEAN : _S_REST_GYR_MEAN + 3] = 0.0
    state[_S_REST_T] = 0.0
    state[_S_REST] = 0.0
    state[_S_ACC_N] = 0.0
    state[_S_BLP_N] = 0.0
    state[_S_ACC_M2] = 0.0


# ---------------------------------------------------------------------------------------
# Kernels


@nb.njit(cache=True, fastmath=_FASTMATH, inline="always")
def _svf(x, g, d, y, u):  # pragma: no cover - jitted
    """One step of the second-order low-pass in state-variable form; returns (y, u).

    States are the output y and its increment per sample u, so a constant input x is
    steady state with y = x, u = 0 whatever the coefficients: the coefficients may change
    from sample to sample without a transient. Semi-implicit Euler step of
    ``y'' + sqrt(2) w0 y' + w0^2 y = w0^2 x`` with g = (w0 ts)^2, d = sqrt(2) w0 ts.
    """
    u = u - d * u + g * (x - y)
    return y + u, u


@nb.njit(cache=True, fastmath=_FASTMATH, inline="always")
def _svf_at(x, g, d, st, k, n):  # pragma: no cover - jitted
    """_svf on the channel whose (y, u) live in st[k], st[k + 1], after a start-up average.

    n is the number of inputs so far including x while the start-up average runs (the
    output is then the mean of them and u stays 0), 0 once the low-pass runs.
    """
    if n > 0.0:
        y = st[k] + (x - st[k]) / n
        st[k] = y
        st[k + 1] = 0.0
        return y
    y, u = _svf(x, g, d, st[k], st[k + 1])
    st[k] = y
    st[k + 1] = u
    return y


@nb.njit(cache=True, fastmath=_FASTMATH, inline="always")
def _quat_matrix(w, x, y, z):  # pragma: no cover - jitted
    """Rotation matrix of the unit quaternion [w, x, y, z], row by row (r00, r01, ..., r22)."""
    return (1.0 - 2.0 * (y * y + z * z), 2.0 * (x * y - w * z), 2.0 * (x * z + w * y),
            2.0 * (x * y + w * z), 1.0 - 2.0 * (x * x + z * z), 2.0 * (y * z - w * x),
            2.0 * (x * z - w * y), 2.0 * (y * z + w * x), 1.0 - 2.0 * (x * x + y * y))


@nb.njit(cache=True, fastmath=_FASTMATH, inline="always")
def _rotvec_quat(ux, uy, uz):  # pragma: no cover - jitted
    """Unit quaternion [w, x, y, z] of the rotation vector u (angle |u| rad about u)."""
    h2 = 0.25 * (ux * ux + uy * uy + uz * uz)  # (half angle)^2
    if h2 < _SERIES_MAX_HALF_ANGLE_RAD * _SERIES_MAX_HALF_ANGLE_RAD:
        co = 1.0 - h2 * (0.5 - h2 * (1.0 / 24.0))
        si = 0.5 * (1.0 - h2 * ((1.0 / 6.0) - h2 * (1.0 / 120.0)))
    else:
        h = math.sqrt(h2)
        co = math.cos(h)
        si = 0.5 * math.sin(h) / h
    return co, si * ux, si * uy, si * uz


@nb.njit(cache=True, fastmath=_FASTMATH)
def _filter_stream(gyr, acc, c, st, out):  # pragma: no cover - jitted
    """Run the filter over one stream's chunk.

    gyr, acc: (N, 3) inputs; c: coefficients; st: state, updated in place; out: (N, 4).
    """
    ts = c[_C_TS]
    ag, ad = c[_C_ACC_G], c[_C_ACC_D]
    bg, bd = c[_C_BIAS_LP_G], c[_C_BIAS_LP_D]
    rg, rd = c[_C_REST_G], c[_C_REST_D]
    th_gyr2 = c[_C_REST_TH_GYR2]
    th_acc2 = c[_C_REST_TH_ACC2]
    rest_min = c[_C_REST_MIN_S]
    p0 = c[_C_BIAS_P0]
    pv = c[_C_BIAS_V]
    w_motion = c[_C_BIAS_MOTION_W]
    w_vert = c[_C_BIAS_VERTICAL_W]
    w_rest = c[_C_BIAS_REST_W]
    clip = c[_C_BIAS_CLIP]
    motion_bias = c[_C_MOTION_BIAS] != 0.0
    rest_bias = c[_C_REST_BIAS] != 0.0
    inv_ts = 1.0 / ts
    max_acc = MAX_ACC_NORM_M_S2
    max_gyr = MAX_GYR_NORM_RAD_S
    max_acc2 = max_acc * max_acc
    max_gyr2 = max_gyr * max_gyr
    min_g2 = _MIN_GRAVITY_NORM_M_S2 * _MIN_GRAVITY_NORM_M_S2

    gw, gx, gy, gz = st[_S_GQ], st[_S_GQ + 1], st[_S_GQ + 2], st[_S_GQ + 3]
    cw, cx, cy, cz = st[_S_AQ], st[_S_AQ + 1], st[_S_AQ + 2], st[_S_AQ + 3]
    bx, by, bz = st[_S_BIAS], st[_S_BIAS + 1], st[_S_BIAS + 2]
    p00, p01, p02 = st[_S_P + 0], st[_S_P + 1], st[_S_P + 2]
    p11, p12, p22 = st[_S_P + 4], st[_S_P + 5], st[_S_P + 8]
    rest_t = st[_S_REST_T]
    rest = st[_S_REST] != 0.0
    mgx, mgy, mgz = st[_S_REST_GYR_MEAN], st[_S_REST_GYR_MEAN + 1], st[_S_REST_GYR_MEAN + 2]
    n_bad_gyr = st[_S_N_BAD_GYR]
    n_bad_acc = st[_S_N_BAD_ACC]
    bias_count = st[_S_BIAS_COUNT]
    horizon = c[_C_HORIZON_S]
    bias_every = c[_C_BIAS_EVERY]
    lax1, lax2 = st[_S_ACC_LP + 0], st[_S_ACC_LP + 1]
    lay1, lay2 = st[_S_ACC_LP + 2], st[_S_ACC_LP + 3]
    laz1, laz2 = st[_S_ACC_LP + 4], st[_S_ACC_LP + 5]
    rgx1, rgx2 = st[_S_REST_GYR_LP + 0], st[_S_REST_GYR_LP + 1]
    rgy1, rgy2 = st[_S_REST_GYR_LP + 2], st[_S_REST_GYR_LP + 3]
    rgz1, rgz2 = st[_S_REST_GYR_LP + 4], st[_S_REST_GYR_LP + 5]
    rax1, rax2 = st[_S_REST_ACC_LP + 0], st[_S_REST_ACC_LP + 1]
    ray1, ray2 = st[_S_REST_ACC_LP + 2], st[_S_REST_ACC_LP + 3]
    raz1, raz2 = st[_S_REST_ACC_LP + 4], st[_S_REST_ACC_LP + 5]
    acc_n = st[_S_ACC_N]
    blp_n = st[_S_BLP_N]
    acc_avg_n = c[_C_ACC_AVG_N]
    bias_avg_n = c[_C_BIAS_AVG_N]
    init_rg = st[_S_REST_GYR_INIT] != 0.0
    init_ra = st[_S_REST_ACC_INIT] != 0.0
    acc_m2 = st[_S_ACC_M2]

    for i in range(gyr.shape[0]):
        wx, wy, wz = gyr[i, 0], gyr[i, 1], gyr[i, 2]
        fx, fy, fz = acc[i, 0], acc[i, 1], acc[i, 2]

        # ---- gyroscope: rest detection and strapdown integration -----------------------
        # component check first (false for NaN, no overflow), then the norm
        gyr_ok = abs(wx) <= max_gyr and abs(wy) <= max_gyr and abs(wz) <= max_gyr
        gyr_ok = gyr_ok and wx * wx + wy * wy + wz * wz <= max_gyr2
        # attitude at the instant the accelerometer sample was taken (see below)
        mw, mx, my, mz = gw, gx, gy, gz
        if not gyr_ok:
            n_bad_gyr += 1.0
        else:
            if rest_bias:
                if not init_rg:
                    rgx1, rgx2 = wx, 0.0
                    rgy1, rgy2 = wy, 0.0
                    rgz1, rgz2 = wz, 0.0
                    init_rg = True
                rgx1, rgx2 = _svf(wx, rg, rd, rgx1, rgx2)
                lx = rgx1
                rgy1, rgy2 = _svf(wy, rg, rd, rgy1, rgy2)
                ly = rgy1
                rgz1, rgz2 = _svf(wz, rg, rd, rgz1, rgz2)
                lz = rgz1
                dx, dy, dz = wx - lx, wy - ly, wz - lz
                if (
                    dx * dx + dy * dy + dz * dz >= th_gyr2
                    or abs(lx) > clip
                    or abs(ly) > clip
                    or abs(lz) > clip
                ):
                    rest_t = 0.0
                    rest = False
                mgx, mgy, mgz = lx, ly, lz

            # q_gyr <- q_gyr * d, d = rotation by the rotation vector (w - b) ts
            ux, uy, uz = (wx - bx) * ts, (wy - by) * ts, (wz - bz) * ts
            dw, dx, dy, dz = _rotvec_quat(ux, uy, uz)
            # The rate of sample k is applied over the whole period before it, so q_gyr now
            # holds the attitude half a period after the instant the rate was sampled at; the
            # accelerometer, sampled with the gyroscope, is rotated with the attitude at that
            # instant: q_mid = q_gyr(k-1) * exp(u / 2). (Off the serial chain of q_gyr.)
            hw, hx, hy, hz = _rotvec_quat(0.5 * ux, 0.5 * uy, 0.5 * uz)
            mw = gw * hw - gx * hx - gy * hy - gz * hz
            mx = gw * hx + gx * hw + gy * hz - gz * hy
            my = gw * hy - gx * hz + gy * hw + gz * hx
            mz = gw * hz + gx * hy - gy * hx + gz * hw
            nw = gw * dw - gx * dx - gy * dy - gz * dz
            nx = gw * dx + gx * dw + gy * dz - gz * dy
            ny = gw * dy - gx * dz + gy * dw + gz * dx
            nz = gw * dz + gx * dy - gy * dx + gz * dw
            # both factors are unit to rounding, so one Newton step for 1/sqrt(|n|^2) about 1
            # renormalises; |n|^2 = |q_gyr|^2 |d|^2 is known before the product is
            g2 = gw * gw + gx * gx + gy * gy + gz * gz
            inv = 1.5 - 0.5 * g2 * (dw * dw + dx * dx + dy * dy + dz * dz)
            gw, gx, gy, gz = nw * inv, nx * inv, ny * inv, nz * inv

        # ---- accelerometer: inclination correction and bias estimation -----------------
        acc_ok = abs(fx) <= max_acc and abs(fy) <= max_acc and abs(fz) <= max_acc
        f2 = fx * fx + fy * fy + fz * fz if acc_ok else 0.0
        if not (f2 <= max_acc2) or f2 == 0.0:
            n_bad_acc += 1.0
        else:
            if rest_bias:
                if not init_ra:
                    rax1, rax2 = fx, 0.0
                    ray1, ray2 = fy, 0.0
                    raz1, raz2 = fz, 0.0
                    init_ra = True
                rax1, rax2 = _svf(fx, rg, rd, rax1, rax2)
                lx = rax1
                ray1, ray2 = _svf(fy, rg, rd, ray1, ray2)
                ly = ray1
                raz1, raz2 = _svf(fz, rg, rd, raz1, raz2)
                lz = raz1
                dx, dy, dz = fx - lx, fy - ly, fz - lz
                if dx * dx + dy * dy + dz * dz >= th_acc2:
                    rest_t = 0.0
                    rest = False
                else:
                    rest_t += ts
                    if rest_t >= rest_min:
                        rest = True

            # specific force in the almost-inertial frame: R(q_mid) f
            r00, r01, r02, r10, r11, r12, r20, r21, r22 = _quat_matrix(mw, mx, my, mz)
            ix = r00 * fx + r01 * fy + r02 * fz
            iy = r10 * fx + r11 * fy + r12 * fz
            iz = r20 * fx + r21 * fy + r22 * fz
            if acc_n < acc_avg_n:
                # start-up (after a cold start or reset_motion): the mean of all samples
                # so far, then the low-pass continues from it in steady state
                acc_n += 1.0
                k_avg = 1.0 / acc_n
                dx, dy, dz = ix - lax1, iy - lay1, iz - laz1
                lax1 += dx * k_avg
                lay1 += dy * k_avg
                laz1 += dz * k_avg
                lax2 = lay2 = laz2 = 0.0
                # spread of the samples across the mean's direction (Welford's sum; the
                # part along it does not turn the mean): the noise of the correction rate
                # as a bias measurement during the average (bias filter below)
                m2 = lax1 * lax1 + lay1 * lay1 + laz1 * laz1
                if m2 > min_g2:
                    dm = (dx * lax1 + dy * lay1 + dz * laz1) / m2
                    acc_m2 += (1.0 - k_avg) * ((dx - dm * lax1) ** 2 + (dy - dm * lay1) ** 2
                                               + (dz - dm * laz1) ** 2)
                ix, iy, iz = lax1, lay1, laz1
            else:
                lax1, lax2 = _svf(ix, ag, ad, lax1, lax2)
                ix = lax1
                lay1, lay2 = _svf(iy, ag, ad, lay1, lay2)
                iy = lay1
                laz1, laz2 = _svf(iz, ag, ad, laz1, laz2)
                iz = laz1

            # |e| = |i|: the norm is known before the rotation by q_corr, which keeps the
            # square root and division off the serial chain q_corr -> e -> q_corr
            e2 = ix * ix + iy * iy + iz * iz
            if e2 > min_g2:
                en = math.sqrt(e2)
                inv_en = 1.0 / en
                # filtered gravity in the earth frame: e = R(q_corr) i
                ex = (1.0 - 2.0 * (cy * cy + cz * cz)) * ix + 2.0 * (cx * cy - cw * cz) * iy
                ex += 2.0 * (cx * cz + cw * cy) * iz
                ey = 2.0 * (cx * cy + cw * cz) * ix + (1.0 - 2.0 * (cx * cx + cz * cz)) * iy
                ey += 2.0 * (cy * cz - cw * cx) * iz
                ez = 2.0 * (cx * cz - cw * cy) * ix + 2.0 * (cy * cz + cw * cx) * iy
                ez += (1.0 - 2.0 * (cx * cx + cy * cy)) * iz
                # k = shortest rotation taking e onto +z: k ~ [|e| + ez, ey, -ex, 0], whose
                # norm is sqrt(2 |e| (|e| + ez))
                h2 = ex * ex + ey * ey
                if ez > 0.0 and h2 < _SMALL_CORRECTION2 * e2:
                    # usual case, a tiny correction: with eps = h2 / (4 |e|^2) = sin^2(a/2)
                    # to first order, 1 / norm = (1 + eps / 2) / (2 |e|) + O(eps^2); the
                    # Newton step below removes the rest
                    f = 0.5 * inv_en * (1.0 + 0.125 * h2 * inv_en * inv_en)
                    kw = (en + ez) * f
                    kx = ey * f
                    ky = -ex * f
                else:
                    m2 = 0.5 * en * (en + ez)
                    if m2 > 1e-12 * e2:
                        m = math.sqrt(m2)
                        hk = 0.5 / m
                        kw = m * inv_en
                        kx = ey * hk
                        ky = -ex * hk
                    else:  # gravity points straight down: turn by 180 deg about x
                        kw, kx, ky = 0.0, 1.0, 0.0
                ex, ey, ez = ex * inv_en, ey * inv_en, ez * inv_en
                nw = kw * cw - kx * cx - ky * cy
                nx = kw * cx + kx * cw + ky * cz
                ny = kw * cy - kx * cz + ky * cw
                nz = kw * cz + kx * cy - ky * cx
                # k and q_corr are unit quaternions (to O(eps^2) resp. rounding), so one
                # Newton step for 1/sqrt(|n|^2) about 1 makes the product unit without sqrt
                # or division; |n|^2 = |k|^2 |q_corr|^2 is known before the product is
                c2 = cw * cw + cx * cx + cy * cy + cz * cz
                inv = 1.5 - 0.5 * (kw * kw + kx * kx + ky * ky) * c2
                cw, cx, cy, cz = nw * inv, nx * inv, ny * inv, nz * inv

                if motion_bias or rest_bias:
                    # The bias filter runs on every bias_every-th accelerometer sample only:
                    # its inputs are low-passed far below that rate, so nothing is lost.
                    bias_count += 1.0
                    if bias_count >= bias_every:
                        bias_count = 0.0
                        # rotation matrix of the 6-axis estimate q = q_corr * q_gyr
                        qw = cw * gw - cx * gx - cy * gy - cz * gz
                        qx = cw * gx + cx * gw + cy * gz - cz * gy
                        qy = cw * gy - cx * gz + cy * gw + cz * gx
                        qz = cw * gz + cx * gy - cy * gx + cz * gw
                        m00, m01, m02, m10, m11, m12, m20, m21, m22 = _quat_matrix(qw, qx, qy, qz)
                        # earth-frame horizontal bias, low-passed with the same filter as the
                        # gravity so the measurement and the prediction share the same delay
                        blx = m00 * bx + m01 * by + m02 * bz
                        bly = m10 * bx + m11 * by + m12 * bz
                        # (these states live in st: used at ~40 Hz only, they need no register)
                        # start-up average in step with the gravity low-pass's
                        if blp_n < bias_avg_n:
                            blp_n += 1.0
                            avg_n = blp_n
                        else:
                            avg_n = 0.0
                        m00 = _svf_at(m00, bg, bd, st, _S_R_LP + 0, avg_n)
                        m01 = _svf_at(m01, bg, bd, st, _S_R_LP + 2, avg_n)
                        m02 = _svf_at(m02, bg, bd, st, _S_R_LP + 4, avg_n)
                        m10 = _svf_at(m10, bg, bd, st, _S_R_LP + 6, avg_n)
                        m11 = _svf_at(m11, bg, bd, st, _S_R_LP + 8, avg_n)
                        m12 = _svf_at(m12, bg, bd, st, _S_R_LP + 10, avg_n)
                        m20 = _svf_at(m20, bg, bd, st, _S_R_LP + 12, avg_n)
                        m21 = _svf_at(m21, bg, bd, st, _S_R_LP + 14, avg_n)
                        m22 = _svf_at(m22, bg, bd, st, _S_R_LP + 16, avg_n)
                        blx = _svf_at(blx, bg, bd, st, _S_BLP_LP, avg_n)
                        bly = _svf_at(bly, bg, bd, st, _S_BLP_LP + 2, avg_n)

                        # measurement z = H b + noise, residual y = z - H b
                        update = True
                        if rest and rest_bias:
                            h00, h01, h02 = 1.0, 0.0, 0.0
                            h10, h11, h12 = 0.0, 1.0, 0.0
                            h20, h21, h22 = 0.0, 0.0, 1.0
                            y0, y1, y2 = mgx - bx, mgy - by, mgz - bz
                            w0, w1, w2_ = w_rest, w_rest, w_rest
                        elif motion_bias:
                            h00, h01, h02 = m00, m01, m02
                            h10, h11, h12 = m10, m11, m12
                            h20, h21, h22 = m20, m21, m22
                            # the correction just applied rotated by (ey, -ex) rad about earth
                            # x/y; the earth-frame rate error it compensates is minus that / ts
                            rx, ry = -ey * inv_ts, ex * inv_ts
                            w0 = w_motion
                            gate = clip
                            if avg_n > 0.0 and acc_n >= 2.0 and acc_n * ts >= rest_min:
                                # During the start-up average gravity is a mean, whose direction
                                # turns at half the rate error (its lag is half its length): the
                                # measurement is 2 x the correction rate, with twice its noise. A
                                # new sample's deviation d across the mean turns it by d / (n g):
                                # per horizontal axis a rate noise of variance
                                # spread^2 / (n g ts)^2, spread^2 = acc_m2 / (2 (n - 1)). The
                                # spread is trusted once it spans rest_min_duration_s, the time
                                # the rest detector needs to judge the same signal's spread.
                                rx, ry = 2.0 * rx, 2.0 * ry
                                s2 = acc_m2 / (2.0 * (acc_n - 1.0)) / (acc_n * acc_n * e2 * ts * ts)
                                w0 = 4.0 * (w_motion + s2)
                                gate = clip + 6.0 * math.sqrt(s2)  # + 3 sigma of 2 x the rate
                            elif avg_n > 0.0:
                                update = False
                            y0 = rx + blx - (m00 * bx + m01 * by + m02 * bz)
                            y1 = ry + bly - (m10 * bx + m11 * by + m12 * bz)
                            y2 = -(m20 * bx + m21 * by + m22 * bz)
                            w1, w2_ = w0, w_vert
                            # a residual beyond the largest bias (and the noise of the
                            # start-up average) is not explained by a bias (the average
                            # converging, a burst of acceleration): the update is skipped,
                            # so it cannot drag the estimate
                            if abs(y0) > gate or abs(y1) > gate:
                                update = False
                        else:
                            update = False
                            h00 = h01 = h02 = h10 = h11 = h12 = h20 = h21 = h22 = 0.0
                            y0 = y1 = y2 = w0 = w1 = w2_ = 0.0

                        # prediction: the bias may drift (bounded by the initial variance)
                        if p00 < p0:
                            p00 += pv
                        if p11 < p0:
                            p11 += pv
                        if p22 < p0:
                            p22 += pv

                        if update:
                            # A = P H^T (3x3), S = H A + W (symmetric)
                            a00 = p00 * h00 + p01 * h01 + p02 * h02
                            a01 = p00 * h10 + p01 * h11 + p02 * h12
                            a02 = p00 * h20 + p01 * h21 + p02 * h22
                            a10 = p01 * h00 + p11 * h01 + p12 * h02
                            a11 = p01 * h10 + p11 * h11 + p12 * h12
                            a12 = p01 * h20 + p11 * h21 + p12 * h22
                            a20 = p02 * h00 + p12 * h01 + p22 * h02
                            a21 = p02 * h10 + p12 * h11 + p22 * h12
                            a22 = p02 * h20 + p12 * h21 + p22 * h22
                            s00 = h00 * a00 + h01 * a10 + h02 * a20 + w0
                            s01 = h00 * a01 + h01 * a11 + h02 * a21
                            s02 = h00 * a02 + h01 * a12 + h02 * a22
                            s11 = h10 * a01 + h11 * a11 + h12 * a21 + w1
                            s12 = h10 * a02 + h11 * a12 + h12 * a22
                            s22 = h20 * a02 + h21 * a12 + h22 * a22 + w2_
                            # inverse of symmetric S by cofactors
                            c00 = s11 * s22 - s12 * s12
                            c01 = s02 * s12 - s01 * s22
                            c02 = s01 * s12 - s02 * s11
                            c11 = s00 * s22 - s02 * s02
                            c12 = s01 * s02 - s00 * s12
                            c22 = s00 * s11 - s01 * s01
                            det = s00 * c00 + s01 * c01 + s02 * c02
                            idet = 1.0 / det
                            i00, i01, i02 = c00 * idet, c01 * idet, c02 * idet
                            i11, i12, i22 = c11 * idet, c12 * idet, c22 * idet
                            # K = A S^-1
                            k00 = a00 * i00 + a01 * i01 + a02 * i02
                            k01 = a00 * i01 + a01 * i11 + a02 * i12
                            k02 = a00 * i02 + a01 * i12 + a02 * i22
                            k10 = a10 * i00 + a11 * i01 + a12 * i02
                            k11 = a10 * i01 + a11 * i11 + a12 * i12
                            k12 = a10 * i02 + a11 * i12 + a12 * i22
                            k20 = a20 * i00 + a21 * i01 + a22 * i02
                            k21 = a20 * i01 + a21 * i11 + a22 * i12
                            k22 = a20 * i02 + a21 * i12 + a22 * i22
                            bx += k00 * y0 + k01 * y1 + k02 * y2
                            by += k10 * y0 + k11 * y1 + k12 * y2
                            bz += k20 * y0 + k21 * y1 + k22 * y2
                            # P <- P - K A^T (A^T = H P), kept symmetric
                            p00 -= k00 * a00 + k01 * a01 + k02 * a02
                            p01 -= k00 * a10 + k01 * a11 + k02 * a12
                            p02 -= k00 * a20 + k01 * a21 + k02 * a22
                            p11 -= k10 * a10 + k11 * a11 + k12 * a12
                            p12 -= k10 * a20 + k11 * a21 + k12 * a22
                            p22 -= k20 * a20 + k21 * a21 + k22 * a22
                            bx = min(max(bx, -clip), clip)
                            by = min(max(by, -clip), clip)
                            bz = min(max(bz, -clip), clip)

        # ---- output: q = q_corr * q_gyr * exp((w - b) * horizon) ----------------------
        ow = cw * gw - cx * gx - cy * gy - cz * gz
        ox = cw * gx + cx * gw + cy * gz - cz * gy
        oy = cw * gy - cx * gz + cy * gw + cz * gx
        oz = cw * gz + cx * gy - cy * gx + cz * gw
        if horizon != 0.0 and gyr_ok:
            # predict over the rest of the sensor latency with the current rate
            hx, hy, hz = (wx - bx) * horizon, (wy - by) * horizon, (wz - bz) * horizon
            pw, px, py, pz = _rotvec_quat(hx, hy, hz)
            ow, ox, oy, oz = (
                ow * pw - ox * px - oy * py - oz * pz,
                ow * px + ox * pw + oy * pz - oz * py,
                ow * py - ox * pz + oy * pw + oz * px,
                ow * pz + ox * py - oy * px + oz * pw,
            )
        out[i, 0] = ow
        out[i, 1] = ox
        out[i, 2] = oy
        out[i, 3] = oz

    st[_S_GQ], st[_S_GQ + 1], st[_S_GQ + 2], st[_S_GQ + 3] = gw, gx, gy, gz
    st[_S_AQ], st[_S_AQ + 1], st[_S_AQ + 2], st[_S_AQ + 3] = cw, cx, cy, cz
    st[_S_BIAS], st[_S_BIAS + 1], st[_S_BIAS + 2] = bx, by, bz
    st[_S_P + 0], st[_S_P + 1], st[_S_P + 2] = p00, p01, p02
    st[_S_P + 3], st[_S_P + 4], st[_S_P + 5] = p01, p11, p12
    st[_S_P + 6], st[_S_P + 7], st[_S_P + 8] = p02, p12, p22
    st[_S_REST_T] = rest_t
    st[_S_REST] = 1.0 if rest else 0.0
    st[_S_REST_GYR_MEAN], st[_S_REST_GYR_MEAN + 1], st[_S_REST_GYR_MEAN + 2] = mgx, mgy, mgz
    st[_S_N_BAD_GYR] = n_bad_gyr
    st[_S_N_BAD_ACC] = n_bad_acc
    st[_S_BIAS_COUNT] = bias_count
    st[_S_ACC_LP + 0], st[_S_ACC_LP + 1] = lax1, lax2
    st[_S_ACC_LP + 2], st[_S_ACC_LP + 3] = lay1, lay2
    st[_S_ACC_LP + 4], st[_S_ACC_LP + 5] = laz1, laz2
    st[_S_REST_GYR_LP + 0], st[_S_REST_GYR_LP + 1] = rgx1, rgx2
    st[_S_REST_GYR_LP + 2], st[_S_REST_GYR_LP + 3] = rgy1, rgy2
    st[_S_REST_GYR_LP + 4], st[_S_REST_GYR_LP + 5] = rgz1, rgz2
    st[_S_REST_ACC_LP + 0], st[_S_REST_ACC_LP + 1] = rax1, rax2
    st[_S_REST_ACC_LP + 2], st[_S_REST_ACC_LP + 3] = ray1, ray2
    st[_S_REST_ACC_LP + 4], st[_S_REST_ACC_LP + 5] = raz1, raz2
    st[_S_ACC_INIT] = 1.0 if acc_n > 0.0 else 0.0
    st[_S_BLP_INIT] = 1.0 if blp_n > 0.0 else 0.0
    st[_S_ACC_N] = acc_n
    st[_S_BLP_N] = blp_n
    st[_S_ACC_M2] = acc_m2
    st[_S_REST_GYR_INIT] = 1.0 if init_rg else 0.0
    st[_S_REST_ACC_INIT] = 1.0 if init_ra else 0.0


@nb.njit(cache=True, fastmath=_FASTMATH)
def _filter_bank(gyr, acc, c, st, out):  # pragma: no cover - jitted
    """Run _filter_stream on each stream s of (S, N, 3) inputs with state st[s]."""
    for s in range(gyr.shape[0]):
        _filter_stream(gyr[s], acc[s], c, st[s], out[s])


# ---------------------------------------------------------------------------------------
# Public wrappers


def _check(name: str, arr: object, ndim: int = 2) -> npt.NDArray[np.float64]:
    a = np.ascontiguousarray(arr, dtype=np.float64)
    if a.ndim != ndim or a.shape[-1] != 3:
        want = "(N, 3)" if ndim == 2 else "(S, N, 3)"
        raise ValueError(f"{name} must have shape {want}, got {a.shape}")
    return a


def _check_state(value: npt.ArrayLike) -> Float1D:
    v = np.array(value, dtype=np.float64)
    if v.shape != (STATE_LEN,):
        raise ValueError(f"state must have shape ({STATE_LEN},), got {v.shape}")
    if not np.all(np.isfinite(v)):
        raise ValueError("state must be finite; it was not saved from this filter")
    return v


def _check_rate(rate_hz: float) -> float:
    rate = float(rate_hz)
    if not (math.isfinite(rate) and rate > 0):
        raise ValueError(f"rate_hz must be a finite number > 0, got {rate_hz!r}")
    return rate


class OrientationFilter:
    """Streaming 6-axis orientation filter; chunks of any length give the batch result.

    Args:
        rate_hz: sample rate of the input, Hz.
        params: tuning; ``None`` uses the defaults recommended for a body-worn sensor.

    Raises:
        ValueError: if rate_hz is not a positive finite number or too low for the params.
    """

    def __init__(self, rate_hz: float, params: OrientationParams | None = None) -> None:
        self.rate_hz = _check_rate(rate_hz)
        self.params = params if params is not None else OrientationParams()
        self._coeffs = _make_coeffs(self.params, self.rate_hz)
        self._state = _initial_state(self.params)

    @property
    def state(self) -> Float1D:
        """A copy of the filter state as a flat float64 vector; assign it back to resume."""
        return self._state.copy()

    @state.setter
    def state(self, value: npt.ArrayLike) -> None:
        self._state = _check_state(value)

    @property
    def quat_wxyz(self) -> Float1D:
        """Current ``q_sensor_to_earth`` as ``[w, x, y, z]``, before the latency prediction."""
        return _output_quat(self._state)

    @property
    def gyr_bias_rad_s(self) -> Float1D:
        """Current gyroscope bias estimate, rad/s, sensor frame, shape (3,)."""
        return self._state[_S_BIAS : _S_BIAS + 3].copy()

    @property
    def rest_detected(self) -> bool:
        """Whether the sensor is currently considered at rest."""
        return bool(self._state[_S_REST] != 0.0)

    @property
    def start_up_samples_left(self) -> int:
        """Accelerometer samples until gravity leaves its start-up average (0 once it has).

        After a cold start or :meth:`reset_motion` the gravity estimate is the mean of the
        samples so far for ``tau_acc_s`` seconds (docs/orientation.md, "Start-up"); its
        error shrinks as that mean grows, so the output is not yet as accurate as later.
        A consumer that makes decisions on the inclination (the slouch detector) holds
        them for these samples. Skipped (bad) accelerometer samples do not count.
        """
        return int(max(0.0, self._coeffs[_C_ACC_AVG_N] - self._state[_S_ACC_N]))

    @property
    def n_skipped_gyr(self) -> int:
        """Number of gyroscope samples skipped so far (non-finite or out of range)."""
        return int(self._state[_S_N_BAD_GYR])

    @property
    def n_skipped_acc(self) -> int:
        """Number of accelerometer samples skipped so far (non-finite, zero or out of range)."""
        return int(self._state[_S_N_BAD_ACC])

    def reset_motion(self) -> None:
        """Forget motion and rest-detection state after a gap in the data.

        The low-pass filters restart from the next accelerometer sample (so inclination
        re-aligns at once) with a start-up average of ``tau_acc_s`` (see
        :attr:`start_up_samples_left`), the rest timer restarts; orientation and the
        gyroscope bias estimate with its uncertainty are kept.
        """
        _reset_motion_state(self._state)

    def resume(self, state: npt.ArrayLike, elapsed_s: float = 0.0) -> None:
        """Continue from a saved :attr:`state` after ``elapsed_s`` seconds without data, in an
        orientation that may have changed meanwhile (a restarted bridge).

        What outlives the pause is kept: the gyroscope bias estimate (clipped to this filter's
        ``bias_clip_dps``) and its uncertainty, grown as the filter's own process noise grows
        it over ``elapsed_s`` (the variance by (0.1 deg/s)^2 per ``bias_forgetting_time_s``,
        never beyond ``bias_sigma_init_dps``). Everything tied to the motion restarts as after
        :meth:`reset_motion`: the inclination re-aligns from the next accelerometer samples
        with the start-up average, so the saved orientation does not matter (heading is
        arbitrary anyway).

        Args:
            state: a vector saved from :attr:`state` (of any rate and parameters).
            elapsed_s: seconds since it was saved, >= 0.

        Raises:
            ValueError: if the state is not a finite vector of :data:`STATE_LEN` or elapsed_s < 0.
        """
        v = _check_state(state)
        elapsed = float(elapsed_s)
        if not (math.isfinite(elapsed) and elapsed >= 0.0):
            raise ValueError(f"elapsed_s must be a finite number >= 0, got {elapsed_s!r}")
        c = self._coeffs
        v[_S_BIAS : _S_BIAS + 3] = np.clip(v[_S_BIAS : _S_BIAS + 3], -c[_C_BIAS_CLIP], c[_C_BIAS_CLIP])
        p0 = c[_C_BIAS_P0]
        # the process noise per bias update, per second of data
        grow = c[_C_BIAS_V] / (c[_C_BIAS_EVERY] * c[_C_TS]) * elapsed
        for k in (0, 4, 8):
            if v[_S_P + k] < p0:
                v[_S_P + k] = min(p0, v[_S_P + k] + grow)
        v[_S_BIAS_COUNT] = 0.0  # counted at the saved rate
        _reset_motion_state(v)
        self._state = v

    def update(self, gyr_rad_s: npt.ArrayLike, acc_m_s2: npt.ArrayLike) -> Float2D:
        """Filter a chunk of samples that follows the previous one without a gap.

        Args:
            gyr_rad_s: (N, 3) angular rate, rad/s, sensor frame, raw (bias not removed).
            acc_m_s2: (N, 3) specific force, m/s^2, sensor frame. Rows with a non-finite
                value are skipped (the gyroscope still propagates) and counted.

        Returns:
            (N, 4) float64 ``q_sensor_to_earth`` as ``[w, x, y, z]``, one per sample.

        Raises:
            ValueError: if a shape is not (N, 3) or the two lengths differ.
        """
        gyr = _check("gyr_rad_s", gyr_rad_s)
        acc = _check("acc_m_s2", acc_m_s2)
        if gyr.shape != acc.shape:
            raise ValueError(
                f"acc_m_s2 must have the shape of gyr_rad_s {gyr.shape}, got {acc.shape}"
            )
        out = np.empty((gyr.shape[0], 4))
        _filter_stream(gyr, acc, self._coeffs, self._state, out)
        return out


class OrientationFilterBank:
    """Many independent orientation filters updated in one call (one row of state each).

    Each stream gives exactly the numbers of an :class:`OrientationFilter` fed the same data.

    Args:
        n_streams: number of independent streams S.
        rate_hz: common sample rate, Hz.
        params: tuning shared by all streams; ``None`` uses the defaults.
    """

    def __init__(
        self, n_streams: int, rate_hz: float, params: OrientationParams | None = None
    ) -> None:
        if int(n_streams) != n_streams or n_streams < 1:
            raise ValueError(f"n_streams must be a positive integer, got {n_streams!r}")
        self.n_streams = int(n_streams)
        self.rate_hz = _check_rate(rate_hz)
        self.params = params if params is not None else OrientationParams()
        self._coeffs = _make_coeffs(self.params, self.rate_hz)
        self._states = np.tile(_initial_state(self.params), (self.n_streams, 1))

    @property
    def states(self) -> Float2D:
        """A copy of all states, shape (S, STATE_LEN); assign it back to resume."""
        return self._states.copy()

    @states.setter
    def states(self, value: npt.ArrayLike) -> None:
        v = np.array(value, dtype=np.float64)
        if v.shape != (self.n_streams, STATE_LEN):
            raise ValueError(
                f"states must have shape ({self.n_streams}, {STATE_LEN}), got {v.shape}"
            )
        self._states = np.stack([_check_state(row) for row in v]) if len(v) else v

    def get_state(self, stream: int) -> Float1D:
        """A copy of one stream's state, compatible with :attr:`OrientationFilter.state`."""
        return self._states[stream].copy()

    def set_state(self, stream: int, value: npt.ArrayLike) -> None:
        """Restore one stream's state (e.g. from :attr:`OrientationFilter.state`)."""
        self._states[stream] = _check_state(value)

    def reset_motion(self, stream: int | None = None) -> None:
        """Like :meth:`OrientationFilter.reset_motion` for one stream, or all if None."""
        rows = range(self.n_streams) if stream is None else [stream]
        for s in rows:
            _reset_motion_state(self._states[s])

    def update(self, gyr_rad_s: npt.ArrayLike, acc_m_s2: npt.ArrayLike) -> Float3D:
        """Filter one chunk per stream; all streams share the chunk length N.

        Args:
            gyr_rad_s: (S, N, 3) angular rate, rad/s, sensor frame, raw.
            acc_m_s2: (S, N, 3) specific force, m/s^2, sensor frame.

        Returns:
            (S, N, 4) float64 ``q_sensor_to_earth`` as ``[w, x, y, z]``.

        Raises:
            ValueError: if a shape is not (S, N, 3) with S = n_streams or they differ.
        """
        gyr = _check("gyr_rad_s", gyr_rad_s, ndim=3)
        acc = _check("acc_m_s2", acc_m_s2, ndim=3)
        if gyr.shape[0] != self.n_streams:
            raise ValueError(f"gyr_rad_s must have shape ({self.n_streams}, N, 3), got {gyr.shape}")
        if gyr.shape != acc.shape:
            raise ValueError(
                f"acc_m_s2 must have the shape of gyr_rad_s {gyr.shape}, got {acc.shape}"
            )
        out = np.empty(gyr.shape[:2] + (4,))
        _filter_bank(gyr, acc, self._coeffs, self._states, out)
        return out


def _output_quat(state: Float1D) -> Float1D:
    cw, cx, cy, cz = state[_S_AQ : _S_AQ + 4]
    gw, gx, gy, gz = state[_S_GQ : _S_GQ + 4]
    return np.array(
        [
            cw * gw - cx * gx - cy * gy - cz * gz,
            cw * gx + cx * gw + cy * gz - cz * gy,
            cw * gy - cx * gz + cy * gw + cz * gx,
            cw * gz + cx * gy - cy * gx + cz * gw,
        ]
    )


def estimate_orientation(
    gyr_rad_s: npt.ArrayLike,
    acc_m_s2: npt.ArrayLike,
    rate_hz: float,
    params: OrientationParams | None = None,
) -> Float2D:
    """Causal 6-axis orientation of the sensor frame relative to an earth frame with z up.

    Args:
        gyr_rad_s: (N, 3) angular rate in rad/s, sensor frame, raw (bias not removed).
        acc_m_s2: (N, 3) specific force in m/s^2, sensor frame.
        rate_hz: sample rate, Hz.
        params: tuning; ``None`` uses the defaults recommended for a body-worn sensor.

    Returns:
        (N, 4) float64 ``q_sensor_to_earth`` as ``[w, x, y, z]``; heading is arbitrary.

    Raises:
        ValueError: if a shape is not (N, 3), the lengths differ or rate_hz is invalid.
    """
    return OrientationFilter(rate_hz, params).update(gyr_rad_s, acc_m_s2)
