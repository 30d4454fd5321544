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
from collections import namedtuple
from dataclasses import dataclass
from typing import Final

import numba as nb
import numpy as np
import numpy.typing as npt

from spinewatch.signal._jit import FASTMATH_FLAGS

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
#
# _filter_stream is a short loop over samples that calls the steps below, as VQF's
# updateGyr / updateAcc call small helpers. Every step is inlined into the loop at Numba IR
# level (inline="always"), so the filter state stays in registers as tuples: a quaternion
# is a 4-tuple [w, x, y, z], a vector a 3-tuple, a 3x3 matrix a tuple of its 3 rows, a
# low-pass state the pair (outputs, increments) of 3-tuples (see _svf). The steps keep the
# arithmetic of the former unrolled kernel (main before 2026-12-08) operation for operation:
# compiled without fastmath, and run with NUMBA_DISABLE_JIT=1, the outputs are bit for bit
# the unrolled kernel's. With FASTMATH_FLAGS, LLVM's choice of which products to fuse and
# how to reassociate sums follows the shape of the IR (the order of its phi nodes), so they
# differ in the last bits (at most 2.5e-13 on BROAD and the simulator; benchmarks/README.md).
# The bias learning during the start-up average (_gravity_lowpass's spread, _start_up_rate)
# was written for the unrolled kernel (branch orient-startbias) and ported the same way.
# Plain (not inlined) njit steps cost about 22 % of the speed; inlined about 2-5 %.

_STEP = nb.njit(cache=True, fastmath=FASTMATH_FLAGS, inline="always")

# The coefficients the loop reads, unpacked once per call from the vector c (see _C_*).
_Coeffs = namedtuple(
    "_Coeffs",
    (
        "ts inv_ts horizon_s acc_g acc_d blp_g blp_d rest_g rest_d th_gyr2 th_acc2 rest_min_s"
        " p0 pv w_motion w_vert w_rest clip motion_bias rest_bias bias_every acc_avg_n bias_avg_n"
    ),
)

# The rest detector's state: low-pass states of gyroscope and accelerometer with their
# "started" flags, the time since the last movement (s), the rest flag, and the last
# low-passed gyroscope (rad/s), which is the bias measurement at rest.
_Rest = namedtuple("_Rest", "gyr_lp gyr_init acc_lp acc_init t_s at_rest gyr_mean")

_ZERO3 = (0.0, 0.0, 0.0)


@_STEP
def _svf(x, g, d, y, u):  # pragma: no cover - jitted
    """One step of the second-order low-pass in state-variable form; returns (y, u).

    States are the output y and its increment per sample u, so a constant input x is
    steady state with y = x, u = 0 whatever the coefficients: the coefficients may change
    from sample to sample without a transient. Semi-implicit Euler step of
    ``y'' + sqrt(2) w0 y' + w0^2 y = w0^2 x`` with g = (w0 ts)^2, d = sqrt(2) w0 ts.
    """
    u = u - d * u + g * (x - y)
    return y + u, u


@_STEP
def _svf3(x, g, d, lp):  # pragma: no cover - jitted
    """_svf on the three channels of x with state lp = (y, u); returns (y, (y, u))."""
    (y0, y1, y2), (u0, u1, u2) = lp
    y0, u0 = _svf(x[0], g, d, y0, u0)
    y1, u1 = _svf(x[1], g, d, y1, u1)
    y2, u2 = _svf(x[2], g, d, y2, u2)
    return (y0, y1, y2), ((y0, y1, y2), (u0, u1, u2))


@_STEP
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


@_STEP
def _svf_at3(x, g, d, st, k, n):  # pragma: no cover - jitted
    """_svf_at on the three channels of x, stored from st[k] on."""
    return (_svf_at(x[0], g, d, st, k, n), _svf_at(x[1], g, d, st, k + 2, n), _svf_at(x[2], g, d, st, k + 4, n))


@_STEP
def _sub3(a, b):  # pragma: no cover - jitted
    return (a[0] - b[0], a[1] - b[1], a[2] - b[2])


@_STEP
def _scale3(a, s):  # pragma: no cover - jitted
    return (a[0] * s, a[1] * s, a[2] * s)


@_STEP
def _dot3(a, b):  # pragma: no cover - jitted
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


@_STEP
def _mat_vec(m, v):  # pragma: no cover - jitted
    """m v for the 3x3 matrix m (rows)."""
    return (_dot3(m[0], v), _dot3(m[1], v), _dot3(m[2], v))


@_STEP
def _mat_mul_t(a, b):  # pragma: no cover - jitted
    """a b^T for 3x3 matrices (rows): entry (i, j) is row i of a dot row j of b."""
    return (
        (_dot3(a[0], b[0]), _dot3(a[0], b[1]), _dot3(a[0], b[2])),
        (_dot3(a[1], b[0]), _dot3(a[1], b[1]), _dot3(a[1], b[2])),
        (_dot3(a[2], b[0]), _dot3(a[2], b[1]), _dot3(a[2], b[2])),
    )


@_STEP
def _transpose(a):  # pragma: no cover - jitted
    return ((a[0][0], a[1][0], a[2][0]), (a[0][1], a[1][1], a[2][1]), (a[0][2], a[1][2], a[2][2]))


@_STEP
def _sym3_inv(s00, s01, s02, s11, s12, s22):  # pragma: no cover - jitted
    """Inverse of the symmetric 3x3 matrix given by its upper triangle, by cofactors (rows)."""
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
    return ((i00, i01, i02), (i01, i11, i12), (i02, i12, i22))


@_STEP
def _dot4(a, b):  # pragma: no cover - jitted
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2] + a[3] * b[3]


@_STEP
def _scale4(q, s):  # pragma: no cover - jitted
    return (q[0] * s, q[1] * s, q[2] * s, q[3] * s)


@_STEP
def _quat_mul(a, b):  # pragma: no cover - jitted
    """Hamilton product a * b of quaternions [w, x, y, z]."""
    aw, ax, ay, az = a
    bw, bx, by, bz = b
    return (
        aw * bw - ax * bx - ay * by - az * bz,
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
    )


@_STEP
def _quat_matrix(q):  # pragma: no cover - jitted
    """Rotation matrix (rows) of the unit quaternion q = [w, x, y, z]: R v = q * v * q^-1."""
    w, x, y, z = q
    return ((1.0 - 2.0 * (y * y + z * z), 2.0 * (x * y - w * z), 2.0 * (x * z + w * y)),
            (2.0 * (x * y + w * z), 1.0 - 2.0 * (x * x + z * z), 2.0 * (y * z - w * x)),
            (2.0 * (x * z - w * y), 2.0 * (y * z + w * x), 1.0 - 2.0 * (x * x + y * y)))


@_STEP
def _rotvec_quat(u):  # pragma: no cover - jitted
    """Unit quaternion [w, x, y, z] of the rotation vector u (angle |u| rad about u)."""
    ux, uy, uz = u
    h2 = 0.25 * (ux * ux + uy * uy + uz * uz)  # (half angle)^2
    if h2 < _SERIES_MAX_HALF_ANGLE_RAD * _SERIES_MAX_HALF_ANGLE_RAD:
        co = 1.0 - h2 * (0.5 - h2 * (1.0 / 24.0))
        si = 0.5 * (1.0 - h2 * ((1.0 / 6.0) - h2 * (1.0 / 120.0)))
    else:
        h = math.sqrt(h2)
        co = math.cos(h)
        si = 0.5 * math.sin(h) / h
    return co, si * ux, si * uy, si * uz


@_STEP
def _unpack_coeffs(c):  # pragma: no cover - jitted
    return _Coeffs(
        c[_C_TS], 1.0 / c[_C_TS], c[_C_HORIZON_S], c[_C_ACC_G], c[_C_ACC_D], c[_C_BIAS_LP_G],
        c[_C_BIAS_LP_D], c[_C_REST_G], c[_C_REST_D], c[_C_REST_TH_GYR2], c[_C_REST_TH_ACC2],
        c[_C_REST_MIN_S], c[_C_BIAS_P0], c[_C_BIAS_V], c[_C_BIAS_MOTION_W],
        c[_C_BIAS_VERTICAL_W], c[_C_BIAS_REST_W], c[_C_BIAS_CLIP], c[_C_MOTION_BIAS] != 0.0,
        c[_C_REST_BIAS] != 0.0, c[_C_BIAS_EVERY], c[_C_ACC_AVG_N], c[_C_BIAS_AVG_N],
    )  # fmt: skip


@_STEP
def _vec_at(st, k):  # pragma: no cover - jitted
    return (st[k], st[k + 1], st[k + 2])


@_STEP
def _lp_at(st, k):  # pragma: no cover - jitted
    """The 3-channel low-pass state (y, u) stored as pairs from st[k] on."""
    return ((st[k], st[k + 2], st[k + 4]), (st[k + 1], st[k + 3], st[k + 5]))


@_STEP
def _store_lp(st, k, lp):  # pragma: no cover - jitted
    (y0, y1, y2), (u0, u1, u2) = lp
    st[k + 0], st[k + 1] = y0, u0
    st[k + 2], st[k + 3] = y1, u1
    st[k + 4], st[k + 5] = y2, u2


@_STEP
def _load_state(st):  # pragma: no cover - jitted
    """The state vector's registers: (q_gyr, q_corr, bias, p, acc_lp, rest, counts)."""
    q_gyr = (st[_S_GQ], st[_S_GQ + 1], st[_S_GQ + 2], st[_S_GQ + 3])
    q_corr = (st[_S_AQ], st[_S_AQ + 1], st[_S_AQ + 2], st[_S_AQ + 3])
    # the bias covariance as its upper triangle (p00, p01, p02, p11, p12, p22)
    p = (st[_S_P + 0], st[_S_P + 1], st[_S_P + 2], st[_S_P + 4], st[_S_P + 5], st[_S_P + 8])
    rest = _Rest(
        _lp_at(st, _S_REST_GYR_LP), st[_S_REST_GYR_INIT] != 0.0,
        _lp_at(st, _S_REST_ACC_LP), st[_S_REST_ACC_INIT] != 0.0,
        st[_S_REST_T], st[_S_REST] != 0.0, _vec_at(st, _S_REST_GYR_MEAN),
    )  # fmt: skip
    # (gravity samples averaged, their spread sum (see _gravity_lowpass), bias updates
    # averaged, bias filter count, bad gyr, bad acc)
    counts = (st[_S_ACC_N], st[_S_ACC_M2], st[_S_BLP_N], st[_S_BIAS_COUNT], st[_S_N_BAD_GYR], st[_S_N_BAD_ACC])
    return q_gyr, q_corr, _vec_at(st, _S_BIAS), p, _lp_at(st, _S_ACC_LP), rest, counts


@_STEP
def _store_state(st, q_gyr, q_corr, bias, p, acc_lp, rest, counts):  # pragma: no cover - jitted
    """Write back what _load_state read."""
    st[_S_GQ], st[_S_GQ + 1], st[_S_GQ + 2], st[_S_GQ + 3] = q_gyr
    st[_S_AQ], st[_S_AQ + 1], st[_S_AQ + 2], st[_S_AQ + 3] = q_corr
    st[_S_BIAS], st[_S_BIAS + 1], st[_S_BIAS + 2] = bias
    p00, p01, p02, p11, p12, p22 = p
    st[_S_P + 0], st[_S_P + 1], st[_S_P + 2] = p00, p01, p02
    st[_S_P + 3], st[_S_P + 4], st[_S_P + 5] = p01, p11, p12
    st[_S_P + 6], st[_S_P + 7], st[_S_P + 8] = p02, p12, p22
    st[_S_REST_T] = rest.t_s
    st[_S_REST] = 1.0 if rest.at_rest else 0.0
    st[_S_REST_GYR_MEAN], st[_S_REST_GYR_MEAN + 1], st[_S_REST_GYR_MEAN + 2] = rest.gyr_mean
    acc_n, acc_m2, blp_n, bias_count, n_bad_gyr, n_bad_acc = counts
    st[_S_N_BAD_GYR] = n_bad_gyr
    st[_S_N_BAD_ACC] = n_bad_acc
    st[_S_BIAS_COUNT] = bias_count
    _store_lp(st, _S_ACC_LP, acc_lp)
    _store_lp(st, _S_REST_GYR_LP, rest.gyr_lp)
    _store_lp(st, _S_REST_ACC_LP, rest.acc_lp)
    st[_S_ACC_INIT] = 1.0 if acc_n > 0.0 else 0.0
    st[_S_BLP_INIT] = 1.0 if blp_n > 0.0 else 0.0
    st[_S_ACC_N] = acc_n
    st[_S_BLP_N] = blp_n
    st[_S_ACC_M2] = acc_m2
    st[_S_REST_GYR_INIT] = 1.0 if rest.gyr_init else 0.0
    st[_S_REST_ACC_INIT] = 1.0 if rest.acc_init else 0.0


@_STEP
def _gyr_valid(w):  # pragma: no cover - jitted
    """Whether a gyroscope sample is usable: finite and within MAX_GYR_NORM_RAD_S."""
    # component check first (false for NaN, no overflow), then the norm
    ok = abs(w[0]) <= MAX_GYR_NORM_RAD_S and abs(w[1]) <= MAX_GYR_NORM_RAD_S and abs(w[2]) <= MAX_GYR_NORM_RAD_S
    return ok and w[0] * w[0] + w[1] * w[1] + w[2] * w[2] <= MAX_GYR_NORM_RAD_S * MAX_GYR_NORM_RAD_S


@_STEP
def _acc_valid(f):  # pragma: no cover - jitted
    """Whether an accelerometer sample is usable: finite, not zero, within MAX_ACC_NORM_M_S2."""
    ok = abs(f[0]) <= MAX_ACC_NORM_M_S2 and abs(f[1]) <= MAX_ACC_NORM_M_S2 and abs(f[2]) <= MAX_ACC_NORM_M_S2
    f2 = f[0] * f[0] + f[1] * f[1] + f[2] * f[2] if ok else 0.0
    return f2 <= MAX_ACC_NORM_M_S2 * MAX_ACC_NORM_M_S2 and f2 != 0.0


@_STEP
def _rest_gyr_step(rest, w, co):  # pragma: no cover - jitted
    """Rest detection, gyroscope half: movement if w deviates from its low-pass or the
    low-pass exceeds the largest bias. Returns the new _Rest."""
    lp = rest.gyr_lp if rest.gyr_init else (w, _ZERO3)
    y, lp = _svf3(w, co.rest_g, co.rest_d, lp)
    d = _sub3(w, y)
    t_s, at_rest = rest.t_s, rest.at_rest
    if _dot3(d, d) >= co.th_gyr2 or abs(y[0]) > co.clip or abs(y[1]) > co.clip or abs(y[2]) > co.clip:
        t_s = 0.0
        at_rest = False
    return _Rest(lp, True, rest.acc_lp, rest.acc_init, t_s, at_rest, y)


@_STEP
def _rest_acc_step(rest, f, co):  # pragma: no cover - jitted
    """Rest detection, accelerometer half: movement if f deviates from its low-pass, else the
    rest timer runs and rest is detected after rest_min_s. Returns the new _Rest."""
    lp = rest.acc_lp if rest.acc_init else (f, _ZERO3)
    y, lp = _svf3(f, co.rest_g, co.rest_d, lp)
    d = _sub3(f, y)
    t_s, at_rest = rest.t_s, rest.at_rest
    if _dot3(d, d) >= co.th_acc2:
        t_s = 0.0
        at_rest = False
    else:
        t_s += co.ts
        if t_s >= co.rest_min_s:
            at_rest = True
    return _Rest(rest.gyr_lp, rest.gyr_init, lp, True, t_s, at_rest, rest.gyr_mean)


@_STEP
def _strapdown(q_gyr, w, bias, ts):  # pragma: no cover - jitted
    """q_gyr <- q_gyr * exp((w - bias) ts); returns (q_gyr, q_mid).

    The rate of sample k is applied over the whole period before it, so q_gyr then holds
    the attitude half a period after the instant the rate was sampled at; the accelerometer,
    sampled with the gyroscope, is rotated with the attitude at that instant:
    q_mid = q_gyr(k-1) * exp(u / 2). (Off the serial chain of q_gyr.)
    """
    u = _scale3(_sub3(w, bias), ts)
    d = _rotvec_quat(u)
    q_mid = _quat_mul(q_gyr, _rotvec_quat(_scale3(u, 0.5)))
    n = _quat_mul(q_gyr, d)
    # both factors are unit to rounding, so one Newton step for 1/sqrt(|n|^2) about 1
    # renormalises; |n|^2 = |q_gyr|^2 |d|^2 is known before the product is
    inv = 1.5 - 0.5 * _dot4(q_gyr, q_gyr) * _dot4(d, d)
    return _scale4(n, inv), q_mid


@_STEP
def _gravity_lowpass(i, lp, n, m2, co):  # pragma: no cover - jitted
    """Low-pass of the specific force i in the almost-inertial frame; returns (i_lp, lp, n, m2).

    During the start-up (after a cold start or reset_motion, n < acc_avg_n samples) the
    output is the mean of all samples so far, then the low-pass continues from it in
    steady state. Meanwhile m2 sums the squared deviations of the samples across the
    mean's direction (Welford's sum; the part along it does not turn the mean): the noise
    of the correction rate as a bias measurement during the average (_start_up_rate).
    """
    (y0, y1, y2), (u0, u1, u2) = lp
    if n < co.acc_avg_n:
        n += 1.0
        k_avg = 1.0 / n
        d = _sub3(i, (y0, y1, y2))
        y0 += d[0] * k_avg
        y1 += d[1] * k_avg
        y2 += d[2] * k_avg
        u0 = u1 = u2 = 0.0
        y = (y0, y1, y2)
        g2 = _dot3(y, y)
        if g2 > _MIN_GRAVITY_NORM_M_S2 * _MIN_GRAVITY_NORM_M_S2:
            across = _sub3(d, _scale3(y, _dot3(d, y) / g2))
            m2 += (1.0 - k_avg) * _dot3(across, across)
    else:
        y0, u0 = _svf(i[0], co.acc_g, co.acc_d, y0, u0)
        y1, u1 = _svf(i[1], co.acc_g, co.acc_d, y1, u1)
        y2, u2 = _svf(i[2], co.acc_g, co.acc_d, y2, u2)
    return (y0, y1, y2), ((y0, y1, y2), (u0, u1, u2)), n, m2


@_STEP
def _tilt_mul(k, q):  # pragma: no cover - jitted
    """k * q for a quaternion k = [w, x, y, 0] given as (w, x, y)."""
    kw, kx, ky = k
    cw, cx, cy, cz = q
    return (
        kw * cw - kx * cx - ky * cy,
        kw * cx + kx * cw + ky * cz,
        kw * cy - kx * cz + ky * cw,
        kw * cz + kx * cy - ky * cx,
    )


@_STEP
def _correct_inclination(q_corr, i, e2):  # pragma: no cover - jitted
    """Turn q_corr so that the filtered gravity i (|i|^2 = e2 > 0) points up in the earth
    frame; returns (q_corr, e) with e the unit gravity direction before the turn.

    |e| = |i|: the norm is known before the rotation by q_corr, which keeps the square
    root and division off the serial chain q_corr -> e -> q_corr.
    """
    en = math.sqrt(e2)
    inv_en = 1.0 / en
    e = _mat_vec(_quat_matrix(q_corr), i)  # filtered gravity in the earth frame
    ex, ey, ez = e
    # k = shortest rotation taking e onto +z: k ~ [|e| + ez, ey, -ex, 0], whose norm is
    # sqrt(2 |e| (|e| + ez))
    h2 = ex * ex + ey * ey
    if ez > 0.0 and h2 < _SMALL_CORRECTION2 * e2:
        # usual case, a tiny correction: with eps = h2 / (4 |e|^2) = sin^2(a/2) to first
        # order, 1 / norm = (1 + eps / 2) / (2 |e|) + O(eps^2); the Newton step below
        # removes the rest
        f = 0.5 * inv_en * (1.0 + 0.125 * h2 * inv_en * inv_en)
        k = ((en + ez) * f, ey * f, -ex * f)
    else:
        m2 = 0.5 * en * (en + ez)
        if m2 > 1e-12 * e2:
            m = math.sqrt(m2)
            hk = 0.5 / m
            k = (m * inv_en, ey * hk, -ex * hk)
        else:  # gravity points straight down: turn by 180 deg about x
            k = (0.0, 1.0, 0.0)
    n = _tilt_mul(k, q_corr)
    # k and q_corr are unit quaternions (to O(eps^2) resp. rounding), so one Newton step
    # for 1/sqrt(|n|^2) about 1 makes the product unit without sqrt or division;
    # |n|^2 = |k|^2 |q_corr|^2 is known before the product is
    inv = 1.5 - 0.5 * _dot3(k, k) * _dot4(q_corr, q_corr)
    return _scale4(n, inv), _scale3(e, inv_en)


@_STEP
def _start_up_rate(rate, avg, co):  # pragma: no cover - jitted
    """The correction rate as a bias measurement during the start-up average; returns
    (update, rate, noise variance per horizontal axis, gate).

    Gravity is then a mean, whose direction turns at half the rate error (its lag is half
    its length): the measurement is 2 x the correction rate, with twice its noise. A new
    sample's deviation d across the mean turns it by d / (n g): per horizontal axis a rate
    noise of variance s2 = spread^2 / (n g ts)^2, spread^2 = m2 / (2 (n - 1)), with
    avg = (n, m2, g^2) from _gravity_lowpass. The spread is trusted once it spans
    rest_min_duration_s, the time the rest detector needs to judge the same signal's
    spread; before, there is no update.
    """
    n, m2, g2 = avg
    if n >= 2.0 and n * co.ts >= co.rest_min_s:
        s2 = m2 / (2.0 * (n - 1.0)) / (n * n * g2 * co.ts * co.ts)
        gate = co.clip + 6.0 * math.sqrt(s2)  # + 3 sigma of 2 x the rate
        return True, (2.0 * rate[0], 2.0 * rate[1]), 4.0 * (co.w_motion + s2), gate
    return False, rate, co.w_motion, co.clip


@_STEP
def _bias_measurement(bias, m, bl, e, rest, in_average, avg, co):  # pragma: no cover - jitted
    """The bias filter's measurement z = H b + noise as (update, H, residual y, noise W).

    At rest the low-passed gyroscope measures the bias directly. In motion, the correction
    just applied rotated by (ey, -ex) rad about earth x/y; the earth-frame rate error it
    compensates is minus that / ts, compared with the low-passed earth-frame bias bl;
    while the bias filter's low-passes are in their start-up average (in_average), with
    the average's own model (_start_up_rate, avg = (n, m2, g^2) of the gravity average).
    A residual beyond the largest bias (and the noise of the start-up average) is not
    explained by a bias (the average converging, a burst of acceleration): the update is
    skipped, so it cannot drag the estimate.
    """
    if rest.at_rest and co.rest_bias:
        h = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
        return True, h, _sub3(rest.gyr_mean, bias), (co.w_rest, co.w_rest, co.w_rest)
    if co.motion_bias:
        update, rate, w_h, gate = True, (-e[1] * co.inv_ts, e[0] * co.inv_ts), co.w_motion, co.clip
        if in_average:
            update, rate, w_h, gate = _start_up_rate(rate, avg, co)
        y = (
            rate[0] + bl[0] - _dot3(m[0], bias),
            rate[1] + bl[1] - _dot3(m[1], bias),
            -_dot3(m[2], bias),
        )
        update = update and not (abs(y[0]) > gate or abs(y[1]) > gate)
        return update, m, y, (w_h, w_h, co.w_vert)
    return False, (_ZERO3, _ZERO3, _ZERO3), _ZERO3, _ZERO3


@_STEP
def _bias_predict(p, co):  # pragma: no cover - jitted
    """The bias may drift: its variances grow by pv (bounded by the initial variance)."""
    p00, p01, p02, p11, p12, p22 = p
    if p00 < co.p0:
        p00 += co.pv
    if p11 < co.p0:
        p11 += co.pv
    if p22 < co.p0:
        p22 += co.pv
    return (p00, p01, p02, p11, p12, p22)


@_STEP
def _kalman_update(bias, p, h, y, w, clip):  # pragma: no cover - jitted
    """Kalman update of the bias with measurement matrix h (rows), residual y and noise
    variances w; returns (bias clipped to +/-clip, p)."""
    p00, p01, p02, p11, p12, p22 = p
    a = _mat_mul_t(((p00, p01, p02), (p01, p11, p12), (p02, p12, p22)), h)  # A = P H^T
    at = _transpose(a)
    # S = H A + W (symmetric)
    s00 = _dot3(h[0], at[0]) + w[0]
    s01 = _dot3(h[0], at[1])
    s02 = _dot3(h[0], at[2])
    s11 = _dot3(h[1], at[1]) + w[1]
    s12 = _dot3(h[1], at[2])
    s22 = _dot3(h[2], at[2]) + w[2]
    k = _mat_mul_t(a, _sym3_inv(s00, s01, s02, s11, s12, s22))  # K = A S^-1
    bias = (bias[0] + _dot3(k[0], y), bias[1] + _dot3(k[1], y), bias[2] + _dot3(k[2], y))
    # P <- P - K A^T (A^T = H P), kept symmetric
    p = (
        p00 - _dot3(k[0], a[0]), p01 - _dot3(k[0], a[1]), p02 - _dot3(k[0], a[2]),
        p11 - _dot3(k[1], a[1]), p12 - _dot3(k[1], a[2]), p22 - _dot3(k[2], a[2]),
    )  # fmt: skip
    bias = (min(max(bias[0], -clip), clip), min(max(bias[1], -clip), clip), min(max(bias[2], -clip), clip))
    return bias, p


@_STEP
def _update_bias(bias, p, blp_n, q, e, rest, avg, st, co):  # pragma: no cover - jitted
    """One step of the bias Kalman filter with the 6-axis estimate q; returns (bias, p, blp_n).

    Its measurements are low-passed like gravity, so the measurement and the prediction
    share the same delay; those low-pass states live in st (used at ~40 Hz only, they need
    no register), with a start-up average in step with the gravity low-pass's (whose
    (n, m2, g^2) is avg, see _bias_measurement).
    """
    m = _quat_matrix(q)
    bl = (_dot3(m[0], bias), _dot3(m[1], bias))  # earth-frame horizontal bias
    if blp_n < co.bias_avg_n:
        blp_n += 1.0
        avg_n = blp_n
    else:
        avg_n = 0.0
    m = (
        _svf_at3(m[0], co.blp_g, co.blp_d, st, _S_R_LP + 0, avg_n),
        _svf_at3(m[1], co.blp_g, co.blp_d, st, _S_R_LP + 6, avg_n),
        _svf_at3(m[2], co.blp_g, co.blp_d, st, _S_R_LP + 12, avg_n),
    )
    bl = (
        _svf_at(bl[0], co.blp_g, co.blp_d, st, _S_BLP_LP, avg_n),
        _svf_at(bl[1], co.blp_g, co.blp_d, st, _S_BLP_LP + 2, avg_n),
    )
    update, h, y, w = _bias_measurement(bias, m, bl, e, rest, avg_n > 0.0, avg, co)
    p = _bias_predict(p, co)
    if update:
        bias, p = _kalman_update(bias, p, h, y, w, co.clip)
    return bias, p, blp_n


@_STEP
def _output(q_corr, q_gyr, w, bias, gyr_ok, horizon_s):  # pragma: no cover - jitted
    """q = q_corr * q_gyr * exp((w - b) * horizon): predicted over the rest of the sensor
    latency with the current rate (when there is one)."""
    q = _quat_mul(q_corr, q_gyr)
    if horizon_s != 0.0 and gyr_ok:
        q = _quat_mul(q, _rotvec_quat(_scale3(_sub3(w, bias), horizon_s)))
    return q


@nb.njit(cache=True, fastmath=FASTMATH_FLAGS)
def _filter_stream(gyr, acc, c, st, out):  # pragma: no cover - jitted
    """Run the filter over one stream's chunk.

    gyr, acc: (N, 3) inputs; c: coefficients; st: state, updated in place; out: (N, 4).
    """
    co = _unpack_coeffs(c)
    q_gyr, q_corr, bias, p, acc_lp, rest, counts = _load_state(st)
    acc_n, acc_m2, blp_n, bias_count, n_bad_gyr, n_bad_acc = counts
    for i in range(gyr.shape[0]):
        w = (gyr[i, 0], gyr[i, 1], gyr[i, 2])
        f = (acc[i, 0], acc[i, 1], acc[i, 2])
        # ---- gyroscope: rest detection and strapdown integration
        gyr_ok = _gyr_valid(w)
        q_mid = q_gyr  # attitude at the instant the accelerometer sample was taken
        if not gyr_ok:
            n_bad_gyr += 1.0
        else:
            if co.rest_bias:
                rest = _rest_gyr_step(rest, w, co)
            q_gyr, q_mid = _strapdown(q_gyr, w, bias, co.ts)
        # ---- accelerometer: inclination correction and bias estimation
        if not _acc_valid(f):
            n_bad_acc += 1.0
        else:
            if co.rest_bias:
                rest = _rest_acc_step(rest, f, co)
            grav, acc_lp, acc_n, acc_m2 = _gravity_lowpass(_mat_vec(_quat_matrix(q_mid), f), acc_lp, acc_n, acc_m2, co)
            e2 = _dot3(grav, grav)
            if e2 > _MIN_GRAVITY_NORM_M_S2 * _MIN_GRAVITY_NORM_M_S2:
                q_corr, e = _correct_inclination(q_corr, grav, e2)
                if co.motion_bias or co.rest_bias:
                    # The bias filter runs on every bias_every-th accelerometer sample only:
                    # its inputs are low-passed far below that rate, so nothing is lost.
                    bias_count += 1.0
                    if bias_count >= co.bias_every:
                        bias_count = 0.0
                        q = _quat_mul(q_corr, q_gyr)
                        bias, p, blp_n = _update_bias(bias, p, blp_n, q, e, rest, (acc_n, acc_m2, e2), st, co)
        # ---- output
        out[i, 0], out[i, 1], out[i, 2], out[i, 3] = _output(q_corr, q_gyr, w, bias, gyr_ok, co.horizon_s)
    counts = (acc_n, acc_m2, blp_n, bias_count, n_bad_gyr, n_bad_acc)
    _store_state(st, q_gyr, q_corr, bias, p, acc_lp, rest, counts)


@nb.njit(cache=True, fastmath=FASTMATH_FLAGS)
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
