"""Reference orientation filter: the algorithm of spinewatch.signal.orientation, written
plainly with NumPy vectors, matrices and np.linalg.inv, one sample at a time.

Slow (about 20 k samples/s); used only to check the Numba kernel on short inputs.
"""

from __future__ import annotations

import math

import numpy as np

from spinewatch.signal.orientation import (
    MAX_ACC_NORM_M_S2,
    MAX_GYR_NORM_RAD_S,
    OrientationParams,
)

DEG = math.pi / 180.0


def quat_mul(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Hamilton product p * q of [w, x, y, z] quaternions."""
    pw, pv = p[0], p[1:]
    qw, qv = q[0], q[1:]
    return np.concatenate([[pw * qw - pv @ qv], pw * qv + qw * pv + np.cross(pv, qv)])


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """Rotation matrix R with R v = q * v * q^-1."""
    w, x, y, z = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def quat_from_rotvec(u: np.ndarray) -> np.ndarray:
    angle = np.linalg.norm(u)
    if angle == 0.0:
        return np.array([1.0, 0.0, 0.0, 0.0])
    return np.concatenate([[math.cos(angle / 2)], math.sin(angle / 2) * u / angle])


class LowPass:
    """Second-order low-pass y'' + sqrt(2) w0 y' + w0^2 y = w0^2 x, semi-implicit Euler,
    started in steady state at its first input; with ``average_start`` its output is the
    mean of the inputs for the first ``round(tau_s * rate_hz)`` of them, and the low-pass
    continues in steady state from that mean."""

    def __init__(self, tau_s: float, rate_hz: float, average_start: bool = False) -> None:
        w0_ts = math.sqrt(2.0) / tau_s / rate_hz
        self.g = w0_ts**2
        self.d = math.sqrt(2.0) * w0_ts
        self.y: np.ndarray | None = None
        self.u: np.ndarray | None = None
        self.avg_n = max(1, round(tau_s * rate_hz)) if average_start else 0
        self.n = 0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        if self.n < self.avg_n:
            self.n += 1
            if self.y is None:
                self.y = np.zeros_like(x)
            self.y = self.y + (x - self.y) / self.n
            self.u = np.zeros_like(x)
            return self.y
        if self.y is None:
            self.y, self.u = x.copy(), np.zeros_like(x)
        self.u = self.u - self.d * self.u + self.g * (x - self.y)
        self.y = self.y + self.u
        return self.y


class ReferenceOrientationFilter:
    def __init__(self, rate_hz: float, params: OrientationParams | None = None) -> None:
        p = params or OrientationParams()
        self.p = p
        self.ts = 1.0 / rate_hz
        self.gyr_q = np.array([1.0, 0, 0, 0])
        self.corr_q = np.array([1.0, 0, 0, 0])
        self.bias = np.zeros(3)
        self.P = np.eye(3) * (p.bias_sigma_init_dps * DEG) ** 2
        self.acc_lp = LowPass(p.tau_acc_s, rate_hz, average_start=True)
        self.rest_gyr_lp = LowPass(p.rest_filter_tau_s, rate_hz)
        self.rest_acc_lp = LowPass(p.rest_filter_tau_s, rate_hz)
        self.rest_t = 0.0
        self.rest = False
        self.rest_gyr_mean = np.zeros(3)
        self.every = max(1, round(rate_hz / 40.0))  # the bias filter runs at about 40 Hz
        self.mat_lp = LowPass(p.tau_acc_s, rate_hz / self.every, average_start=True)
        self.bias_lp = LowPass(p.tau_acc_s, rate_hz / self.every, average_start=True)
        self.count = 0
        self.acc_m2 = 0.0  # start-up average: Welford sum of squared deviations across the mean
        v = (0.1 * DEG) ** 2 * self.every * self.ts / p.bias_forgetting_time_s
        self.v = v
        pm = (p.bias_sigma_motion_dps * DEG) ** 2
        pr = (p.bias_sigma_rest_dps * DEG) ** 2
        self.w_motion = pm**2 / v + pm
        self.w_vertical = self.w_motion / max(p.bias_vertical_forgetting_factor, 1e-10)
        self.w_rest = pr**2 / v + pr
        self.horizon_s = (p.gyr_latency_samples - 0.5) * self.ts
        self.n_bad_gyr = 0
        self.n_bad_acc = 0

    def step(self, gyr: np.ndarray, acc: np.ndarray) -> np.ndarray:
        p = self.p
        clip = p.bias_clip_dps * DEG
        gyr_ok = bool(np.all(np.isfinite(gyr))) and np.linalg.norm(gyr) <= MAX_GYR_NORM_RAD_S
        mid_q = self.gyr_q
        if not gyr_ok:
            self.n_bad_gyr += 1
        else:
            if p.rest_bias_est:
                lp = self.rest_gyr_lp(gyr)
                dev = gyr - lp
                if dev @ dev >= (p.rest_th_gyr_dps * DEG) ** 2 or np.any(np.abs(lp) > clip):
                    self.rest_t, self.rest = 0.0, False
                self.rest_gyr_mean = lp.copy()
            u = (gyr - self.bias) * self.ts
            # attitude at the sampling instant, half a step into the period (the rate
            # of sample k is applied over the whole period before it)
            mid_q = quat_mul(self.gyr_q, quat_from_rotvec(0.5 * u))
            self.gyr_q = quat_mul(self.gyr_q, quat_from_rotvec(u))
            self.gyr_q /= np.linalg.norm(self.gyr_q)

        acc_ok = bool(np.all(np.isfinite(acc))) and 0 < np.linalg.norm(acc) <= MAX_ACC_NORM_M_S2
        if not acc_ok:
            self.n_bad_acc += 1
        else:
            if p.rest_bias_est:
                lp = self.rest_acc_lp(acc)
                dev = acc - lp
                if dev @ dev >= p.rest_th_acc_m_s2**2:
                    self.rest_t, self.rest = 0.0, False
                else:
                    self.rest_t += self.ts
                    if self.rest_t >= p.rest_min_duration_s:
                        self.rest = True
            x = quat_to_matrix(mid_q) @ acc
            in_average = self.acc_lp.n < self.acc_lp.avg_n
            d = x - (self.acc_lp.y if self.acc_lp.y is not None else 0.0)
            acc_inertial = self.acc_lp(x)
            if in_average and acc_inertial @ acc_inertial > 1e-6:
                mean_dir = acc_inertial / np.linalg.norm(acc_inertial)
                across = d - (d @ mean_dir) * mean_dir
                self.acc_m2 += (1.0 - 1.0 / self.acc_lp.n) * (across @ across)
            e = quat_to_matrix(self.corr_q) @ acc_inertial
            if e @ e > 1e-6:
                e = e / np.linalg.norm(e)
                axis = np.cross(e, [0.0, 0.0, 1.0])
                angle = math.atan2(np.linalg.norm(axis), e[2])
                if np.linalg.norm(axis) > 1e-9:
                    k = quat_from_rotvec(axis / np.linalg.norm(axis) * angle)
                elif e[2] > 0:
                    k = np.array([1.0, 0, 0, 0])
                else:
                    k = np.array([0.0, 1, 0, 0])
                self.corr_q = quat_mul(k, self.corr_q)
                self.corr_q /= np.linalg.norm(self.corr_q)
                if p.motion_bias_est or p.rest_bias_est:
                    self.count += 1
                    h = z = w = None
                    if self.count >= self.every:
                        self.count = 0
                        m = quat_to_matrix(quat_mul(self.corr_q, self.gyr_q))
                        bias_earth_xy = (m @ self.bias)[:2]
                        bias_average = self.mat_lp.n < self.mat_lp.avg_n
                        m_lp = self.mat_lp(m)
                        b_lp = self.bias_lp(bias_earth_xy)
                        if self.rest and p.rest_bias_est:
                            h, z, w = np.eye(3), self.rest_gyr_mean, np.eye(3) * self.w_rest
                        elif p.motion_bias_est:
                            h = m_lp
                            # earth-frame rate the correction compensated, plus the
                            # (identically delayed) bias already removed
                            rate = np.array([-e[1] / self.ts, e[0] / self.ts])
                            w_h, gate = self.w_motion, clip
                            n = self.acc_lp.n
                            if bias_average and n >= 2 and n * self.ts >= p.rest_min_duration_s:
                                # the mean turns at half the rate error; noise from the spread
                                s2 = self.acc_m2 / (2.0 * (n - 1)) / (n * self.ts) ** 2
                                s2 /= acc_inertial @ acc_inertial
                                rate, w_h = 2.0 * rate, 4.0 * (self.w_motion + s2)
                                gate = clip + 6.0 * math.sqrt(s2)
                            elif bias_average:
                                gate = -1.0  # no motion update early in the average
                            z = np.array([rate[0] + b_lp[0], rate[1] + b_lp[1], 0.0])
                            # a horizontal residual beyond the largest bias: no update
                            if np.any(np.abs((z - h @ self.bias)[:2]) > gate):
                                h = None
                            w = np.diag([w_h, w_h, self.w_vertical])
                        p0 = (p.bias_sigma_init_dps * DEG) ** 2
                        for j in range(3):
                            if self.P[j, j] < p0:
                                self.P[j, j] += self.v
                    if h is not None:
                        gain = self.P @ h.T @ np.linalg.inv(h @ self.P @ h.T + w)
                        self.bias = self.bias + gain @ (z - h @ self.bias)
                        self.P = self.P - gain @ h @ self.P
                        self.bias = np.clip(self.bias, -clip, clip)

        q = quat_mul(self.corr_q, self.gyr_q)
        if gyr_ok and self.horizon_s != 0.0:
            q = quat_mul(q, quat_from_rotvec((gyr - self.bias) * self.horizon_s))
        return q

    def update(self, gyr_rad_s: np.ndarray, acc_m_s2: np.ndarray) -> np.ndarray:
        gyr = np.asarray(gyr_rad_s, dtype=float)
        acc = np.asarray(acc_m_s2, dtype=float)
        return np.array([self.step(g, a) for g, a in zip(gyr, acc, strict=True)])
