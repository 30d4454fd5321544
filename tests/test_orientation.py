"""Specification of the 6-axis orientation filter (spinewatch.signal.orientation).

Quaternions are ``q_sensor_to_earth`` as ``[w, x, y, z]``; the earth frame has z up and an
arbitrary heading, so most checks compare inclination (the direction of "up" seen from the
sensor), which is what a 6-axis filter can observe.

Run the short-input subset without Numba (as coverage does):
    NUMBA_DISABLE_JIT=1 pytest tests/test_orientation.py
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from spinewatch.firmware_bridge.sim import ImuErrors, PostureScript, Segment, simulate
from spinewatch.signal import (
    OrientationFilter,
    OrientationFilterBank,
    OrientationParams,
    estimate_orientation,
)
from spinewatch.signal.orientation import STATE_LEN
from tests.reference.orientation_ref import ReferenceOrientationFilter

G_M_S2 = 9.81
RATE_HZ = 100.0
JIT_DISABLED = bool(numba.config.DISABLE_JIT)
BROAD_DIR = Path(__file__).parents[1] / ".." / "shared" / "data" / "broad"
needs_jit = pytest.mark.skipif(JIT_DISABLED, reason="long input; too slow with NUMBA_DISABLE_JIT=1")


# ---------------------------------------------------------------------------------------
# helpers


def scipy_from_wxyz(q: np.ndarray) -> Rotation:
    return Rotation.from_quat(np.asarray(q)[..., [1, 2, 3, 0]])  # SciPy is [x, y, z, w]


def wxyz_from_scipy(r: Rotation) -> np.ndarray:
    return r.as_quat()[..., [3, 0, 1, 2]]


def inclination_error_deg(q_est: np.ndarray, q_true: np.ndarray) -> np.ndarray:
    """Angle between the "up" directions seen from the sensor, degrees (heading ignored)."""
    up = np.array([0.0, 0.0, 1.0])
    up_est = scipy_from_wxyz(q_est).inv().apply(up)
    up_true = scipy_from_wxyz(q_true).inv().apply(up)
    cos = np.clip(np.sum(up_est * up_true, axis=-1), -1.0, 1.0)
    return np.degrees(np.arccos(cos))


def static_recording(q_true: np.ndarray, n: int, bias_rad_s=(0.0, 0.0, 0.0), noise=0.0, seed=0):
    """Sensor at rest in orientation q_true: gyro reads its bias, accelerometer reads up."""
    rng = np.random.default_rng(seed)
    acc = scipy_from_wxyz(q_true).inv().apply([0.0, 0.0, G_M_S2])
    gyr = np.tile(np.asarray(bias_rad_s, float), (n, 1)) + rng.normal(0, 0.2 * noise, (n, 3))
    return gyr, np.tile(acc, (n, 1)) + rng.normal(0, noise, (n, 3))


def moving_recording(n: int, seed: int = 0, rest_s: float = 3.0, bias_rad_s=(0.0, 0.0, 0.0)):
    """Smooth random rotation (no linear acceleration) after a rest; returns gyr, acc, q_true.

    A synchronous IMU with the default latency of half a period: sample i reports the
    motion at the middle of the period (t_i - ts, t_i], the gyroscope as the rate held over
    that period and the accelerometer at the attitude half a period before q_true[i].
    """
    rng = np.random.default_rng(seed)
    t = np.arange(n) / RATE_HZ
    freqs = rng.uniform(0.1, 1.0, (3, 3))
    phases = rng.uniform(0, 2 * np.pi, (3, 3))
    amp_rad_s = rng.uniform(0.2, 1.5, (3, 3))
    w = sum(amp_rad_s[k] * np.sin(2 * np.pi * freqs[k] * t[:, None] + phases[k]) for k in range(3))
    w[t < rest_s] = 0.0
    q = np.empty((n, 4))
    q_mid = np.empty((n, 4))
    r = Rotation.from_rotvec(rng.normal(0, 0.5, 3))
    for i in range(n):
        q_mid[i] = wxyz_from_scipy(r * Rotation.from_rotvec(0.5 * w[i] / RATE_HZ))
        r = r * Rotation.from_rotvec(w[i] / RATE_HZ)
        q[i] = wxyz_from_scipy(r)
    acc = scipy_from_wxyz(q_mid).inv().apply([0.0, 0.0, G_M_S2])
    return w + np.asarray(bias_rad_s, float), acc, q


unit_quats = st.tuples(*[st.floats(-1, 1) for _ in range(4)]).filter(
    lambda v: 0.1 < math.sqrt(sum(x * x for x in v))
).map(lambda v: np.asarray(v) / np.linalg.norm(v))

# the default is the plain strapdown output (no latency prediction), which is what the
# synthetic recordings need: they have no gyroscope latency
NO_LATENCY = OrientationParams(gyr_latency_samples=0.5)
ONE_SAMPLE_LATENCY = OrientationParams(gyr_latency_samples=1.0)  # BROAD's myon aktos-t


# ---------------------------------------------------------------------------------------
# accuracy on synthetic motion


@settings(max_examples=15, deadline=None)
@given(q_true=unit_quats, bias_dps=st.tuples(*[st.floats(-1.5, 1.5)] * 3))
def test_static_sensor_in_any_orientation_converges_to_it(q_true, bias_dps):
    gyr, acc = static_recording(q_true, n=1500, bias_rad_s=np.radians(bias_dps), noise=0.02)
    q = estimate_orientation(gyr, acc, RATE_HZ)
    assert np.all(np.isfinite(q))
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-12)
    # the first accelerometer sample sets the inclination
    assert inclination_error_deg(q[0], q_true) < 0.5
    # the bias is learnt once rest is detected (1.5 s); the drift it caused decays with tau_acc
    assert inclination_error_deg(q[-1], q_true) < 0.2


def test_gyro_bias_is_estimated_at_rest():
    bias_rad_s = np.radians([0.8, -0.5, 1.2])
    gyr, acc = static_recording(np.array([1.0, 0, 0, 0]), n=1500, bias_rad_s=bias_rad_s, noise=0.01)
    f = OrientationFilter(RATE_HZ)
    f.update(gyr, acc)
    assert f.rest_detected
    np.testing.assert_allclose(f.gyr_bias_rad_s, bias_rad_s, atol=np.radians(0.05))


@needs_jit
def test_gyro_bias_is_estimated_in_motion_and_tilt_stays_accurate():
    bias_rad_s = np.radians([0.6, -0.4, 0.3])
    gyr, acc, q_true = moving_recording(30_000, seed=3, rest_s=0.0, bias_rad_s=bias_rad_s)
    f = OrientationFilter(RATE_HZ, OrientationParams(gyr_latency_samples=0.5, rest_bias_est=False))
    q = f.update(gyr, acc)
    # the earth-vertical component is not observable from gravity alone, but a rotating
    # sensor turns every axis horizontal now and then
    assert np.linalg.norm(f.gyr_bias_rad_s - bias_rad_s) < np.radians(0.15)
    assert np.sqrt(np.mean(inclination_error_deg(q[-5000:], q_true[-5000:]) ** 2)) < 0.3


def test_moving_sensor_without_bias_is_tracked():
    gyr, acc, q_true = moving_recording(1500 if JIT_DISABLED else 6000, seed=1)
    q = estimate_orientation(gyr, acc, RATE_HZ, NO_LATENCY)
    assert np.max(inclination_error_deg(q, q_true)) < 0.2


def test_accelerometer_is_rotated_with_the_attitude_at_its_sampling_instant():
    # A wheel-like spin at 360 deg/s about a horizontal axis, from rest, sampled by a
    # synchronous IMU (both sensors half a period late, the default latency model). The
    # strapdown attitude after sample k is half a step ahead of the instant both sensors
    # sampled; rotating the accelerometer with it (as VQF and the filter before this test
    # did) tilts the averaged gravity by the half step, |w| ts / 2 = 1.8 deg here, for as
    # long as the spin lasts (measured: 1.86 deg). With the attitude at the sampling
    # instant the inclination is exact.
    n = 3000
    t = np.arange(n) / RATE_HZ
    w = np.zeros((n, 3))
    w[:, 0] = np.radians(360.0) * np.clip(t - 2.0, 0.0, 1.0)  # rest 2 s, spin up in 1 s
    q_true = np.empty((n, 4))
    q_sampled = np.empty((n, 4))
    r = Rotation.identity()
    for i in range(n):
        q_sampled[i] = wxyz_from_scipy(r * Rotation.from_rotvec(0.5 * w[i] / RATE_HZ))
        r = r * Rotation.from_rotvec(w[i] / RATE_HZ)
        q_true[i] = wxyz_from_scipy(r)
    acc = scipy_from_wxyz(q_sampled).inv().apply([0.0, 0.0, G_M_S2])
    q = estimate_orientation(w, acc, RATE_HZ)
    err_deg = inclination_error_deg(q[-1000:], q_true[-1000:])
    assert np.max(err_deg) < 0.05, np.max(err_deg)


def test_one_sample_latency_predicts_half_a_sample_ahead():
    gyr, acc, _ = moving_recording(800, seed=4, rest_s=0.5)
    q_plain = estimate_orientation(gyr, acc, RATE_HZ)
    q_pred = estimate_orientation(gyr, acc, RATE_HZ, ONE_SAMPLE_LATENCY)
    # q_pred = q_plain * exp((w - b) ts / 2); the bias estimate is still ~0 here
    expected = scipy_from_wxyz(q_plain) * Rotation.from_rotvec(gyr * 0.5 / RATE_HZ)
    assert np.max((expected.inv() * scipy_from_wxyz(q_pred)).magnitude()) < 1e-7


def test_taps_and_vibration_barely_disturb_a_resting_sensor():
    q_true = wxyz_from_scipy(Rotation.from_euler("xy", [20, -35], degrees=True))
    gyr, acc = static_recording(q_true, n=1500, noise=0.02)
    rng = np.random.default_rng(5)
    acc[300:1500] += rng.normal(0, 1.0, (1200, 3))  # 1 m/s^2 rms broadband vibration
    for start in range(400, 1500, 200):  # 40 m/s^2 taps; the sensor jolts and swings back
        acc[start] += [30.0, -20.0, 15.0]
        acc[start + 1] -= [30.0, -20.0, 15.0]
        gyr[start] += np.radians([40.0, 0.0, -25.0])
        gyr[start + 1] -= np.radians([40.0, 0.0, -25.0])
    q = estimate_orientation(gyr, acc, RATE_HZ)
    err_deg = inclination_error_deg(q, q_true)
    err_deg[400::200] = err_deg[401::200] = 0.0  # during a jolt the sensor really turns
    # the low-pass runs in the almost-inertial frame, where accelerations of a sensor that
    # stays in place integrate to zero
    assert np.max(err_deg) < 1.0


# ---------------------------------------------------------------------------------------
# symmetries and consistency


@settings(max_examples=10, deadline=None)
@given(mount=unit_quats)
def test_rotating_the_input_frame_rotates_the_output(mount):
    """Sensor axes turned by a fixed rotation m: the output turns by m as well."""
    gyr, acc, _ = moving_recording(600, seed=2, rest_s=1.0)
    m = scipy_from_wxyz(mount)
    q = estimate_orientation(gyr, acc, RATE_HZ)
    q_m = estimate_orientation(m.apply(gyr), m.apply(acc), RATE_HZ)
    # sensor' = m * sensor, so q_sensor'->earth * m should equal q_sensor->earth up to heading
    q_back = wxyz_from_scipy(scipy_from_wxyz(q_m) * m)
    assert np.max(inclination_error_deg(q_back, q)) < 1e-5


@settings(max_examples=20, deadline=None)
@given(cuts=st.lists(st.integers(0, 700), max_size=8))
def test_streaming_in_any_chunks_equals_batch(cuts):
    gyr, acc, _ = moving_recording(700, seed=6, rest_s=2.0, bias_rad_s=np.radians([0.3, 0, -0.2]))
    batch = estimate_orientation(gyr, acc, RATE_HZ)
    f = OrientationFilter(RATE_HZ)
    edges = [0, *sorted(cuts), len(gyr)]
    streamed = np.concatenate([f.update(gyr[a:b], acc[a:b]) for a, b in itertools.pairwise(edges)])
    assert np.max(np.abs(streamed - batch)) <= 1e-9
    whole = OrientationFilter(RATE_HZ)
    whole.update(gyr, acc)
    np.testing.assert_allclose(f.state, whole.state, rtol=0, atol=1e-12)


def test_state_save_and_restore_resumes_identically():
    gyr, acc, _ = moving_recording(900, seed=7, rest_s=2.5)
    uninterrupted = estimate_orientation(gyr, acc, RATE_HZ)
    first = OrientationFilter(RATE_HZ)
    first.update(gyr[:500], acc[:500])
    saved = first.state
    assert saved.dtype == np.float64 and saved.shape == (STATE_LEN,) and saved.nbytes <= 1024
    first.update(gyr[500:600], acc[500:600])  # the copy is not affected by later updates
    restarted = OrientationFilter(RATE_HZ)
    restarted.state = saved
    assert np.max(np.abs(restarted.update(gyr[500:], acc[500:]) - uninterrupted[500:])) <= 1e-9


def test_state_of_wrong_length_or_not_finite_is_rejected():
    with pytest.raises(ValueError, match=rf"state must have shape \({STATE_LEN},\), got \(3,\)"):
        OrientationFilter(RATE_HZ).state = np.zeros(3)
    broken = OrientationFilter(RATE_HZ).state
    broken[0] = np.nan
    with pytest.raises(ValueError, match="state must be finite"):
        OrientationFilter(RATE_HZ).state = broken
    with pytest.raises(ValueError, match="state must be finite"):
        OrientationFilterBank(2, RATE_HZ).set_state(1, broken)


def test_bank_gives_the_numbers_of_single_stream_filters():
    n_streams, n = 5, 300
    data = [moving_recording(n, seed=10 + s, rest_s=0.5 * s) for s in range(n_streams)]
    gyr = np.stack([d[0] for d in data])
    acc = np.stack([d[1] for d in data])
    gyr[2, 50:60] = np.nan
    bank = OrientationFilterBank(n_streams, RATE_HZ)
    chunks = [bank.update(gyr[:, a : a + 10], acc[:, a : a + 10]) for a in range(0, n, 10)]
    out = np.concatenate(chunks, axis=1)
    for s in range(n_streams):
        single = OrientationFilter(RATE_HZ)
        assert np.max(np.abs(out[s] - single.update(gyr[s], acc[s]))) <= 1e-9
        np.testing.assert_allclose(bank.get_state(s), single.state, rtol=0, atol=1e-12)


def test_bank_state_moves_to_and_from_a_single_filter():
    gyr, acc, _ = moving_recording(400, seed=12)
    single = OrientationFilter(RATE_HZ)
    single.update(gyr[:200], acc[:200])
    bank = OrientationFilterBank(3, RATE_HZ)
    bank.set_state(1, single.state)
    out = bank.update(np.stack([gyr[200:]] * 3), np.stack([acc[200:]] * 3))
    assert np.max(np.abs(out[1] - single.update(gyr[200:], acc[200:]))) <= 1e-9
    assert bank.states.shape == (3, STATE_LEN)


def test_bank_reset_motion_of_one_stream_matches_a_single_filter():
    gyr, acc, _ = moving_recording(300, seed=14, rest_s=1.0)
    single = OrientationFilter(RATE_HZ)
    bank = OrientationFilterBank(2, RATE_HZ)
    single.update(gyr[:150], acc[:150])
    bank.update(np.stack([gyr[:150]] * 2), np.stack([acc[:150]] * 2))
    before = bank.states
    single.reset_motion()
    bank.reset_motion(1)
    np.testing.assert_array_equal(bank.get_state(0), before[0])  # only stream 1 was reset
    np.testing.assert_allclose(bank.get_state(1), single.state, rtol=0, atol=1e-12)
    out = bank.update(np.stack([gyr[150:]] * 2), np.stack([acc[150:]] * 2))
    assert np.max(np.abs(out[1] - single.update(gyr[150:], acc[150:]))) <= 1e-9


@pytest.mark.parametrize("n_streams", [0, -1, 2.5])
def test_bank_needs_a_positive_whole_number_of_streams(n_streams):
    with pytest.raises(ValueError, match="n_streams"):
        OrientationFilterBank(n_streams, RATE_HZ)


def test_kernel_matches_the_reference_numpy_implementation():
    # 10 s: the start-up average (3 s), the wait of motion bias estimation (3 s more) and
    # 4 s of motion bias updates, one of them with a residual beyond the clip
    bias_rad_s = np.radians([0.5, -0.3, 0.2])
    gyr, acc, _ = moving_recording(1000, seed=13, rest_s=2.0, bias_rad_s=bias_rad_s)
    acc[400:420] += 4.0  # some acceleration for the bias estimator to see
    acc[750:800] += [30.0, -20.0, 0.0]  # a burst: the correction rate exceeds the bias clip
    gyr[100] = np.nan
    acc[300] = np.inf
    q = estimate_orientation(gyr, acc, RATE_HZ)
    ref = ReferenceOrientationFilter(RATE_HZ)
    q_ref = ref.update(gyr, acc)
    assert np.max(np.abs(q - q_ref)) < 1e-9
    assert (ref.n_bad_gyr, ref.n_bad_acc) == (1, 1)


@pytest.mark.skipif(not BROAD_DIR.is_dir(), reason=f"BROAD data not found at {BROAD_DIR}")
def test_kernel_matches_the_reference_on_recorded_data():
    with np.load(BROAD_DIR / "24_disturbed_tapping_A.npz") as d:
        rate_hz = float(d["rate_hz"])
        sl = slice(8000, 8800)  # taps and motion
        gyr, acc = d["gyr_rad_s"][sl], d["acc_m_s2"][sl]
    q = estimate_orientation(gyr, acc, rate_hz)
    q_ref = ReferenceOrientationFilter(rate_hz).update(gyr, acc)
    assert np.max(np.abs(q - q_ref)) < 1e-9


# ---------------------------------------------------------------------------------------
# bad samples, gaps and bad calls


def test_nan_and_inf_samples_are_skipped_counted_and_recovered_from():
    q_true = wxyz_from_scipy(Rotation.from_euler("xz", [30, 50], degrees=True))
    gyr, acc = static_recording(q_true, n=600, noise=0.01)
    gyr[100:110] = np.nan
    gyr[200, 1] = np.inf
    gyr[250] = 1e300  # finite but absurd: treated like NaN
    acc[300:320, 0] = np.nan
    acc[330] = -np.inf
    acc[340] = 0.0  # no direction
    f = OrientationFilter(RATE_HZ)
    q = f.update(gyr, acc)
    assert np.all(np.isfinite(q))
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-12)
    assert f.n_skipped_gyr == 12
    assert f.n_skipped_acc == 22
    assert np.max(inclination_error_deg(q, q_true)) < 0.5
    assert np.all(np.isfinite(f.state))


def test_a_stream_of_only_bad_samples_recovers_at_the_first_good_one():
    q_true = wxyz_from_scipy(Rotation.from_euler("y", 70, degrees=True))
    gyr, acc = static_recording(q_true, n=300)
    gyr[:100] = np.nan
    acc[:100] = np.nan
    q = estimate_orientation(gyr, acc, RATE_HZ)
    np.testing.assert_array_equal(q[:100], np.tile([1.0, 0, 0, 0], (100, 1)))
    assert inclination_error_deg(q[100], q_true) < 1e-6


def test_reset_motion_realigns_at_once_and_keeps_the_bias():
    bias_rad_s = np.radians([0.5, 0.5, -0.5])
    gyr, acc = static_recording(np.array([1.0, 0, 0, 0]), n=1000, bias_rad_s=bias_rad_s)
    f = OrientationFilter(RATE_HZ)
    f.update(gyr, acc)
    bias_before = f.gyr_bias_rad_s
    assert f.rest_detected
    # the stream resumes after a gap in which the sensor was turned over by 60 deg
    q_new = wxyz_from_scipy(Rotation.from_euler("x", 60, degrees=True))
    gyr2, acc2 = static_recording(q_new, n=50, bias_rad_s=bias_rad_s)
    f.reset_motion()
    assert not f.rest_detected
    np.testing.assert_array_equal(f.gyr_bias_rad_s, bias_before)
    q = f.update(gyr2, acc2)
    assert inclination_error_deg(q[0], q_new) < 1e-3


def test_start_up_average_counts_down_and_restarts_after_a_reset():
    gyr, acc, _ = moving_recording(500, seed=15, rest_s=0.0)
    f = OrientationFilter(RATE_HZ)  # tau_acc_s = 3 s: a 300-sample start-up average
    assert f.start_up_samples_left == 300
    f.update(gyr[:120], acc[:120])
    assert f.start_up_samples_left == 180
    acc_bad = acc[120:130].copy()
    acc_bad[:4] = np.nan  # skipped samples are not part of the average
    f.update(gyr[120:130], acc_bad)
    assert f.start_up_samples_left == 174
    f.update(gyr[130:], acc[130:])
    assert f.start_up_samples_left == 0
    f.reset_motion()
    assert f.start_up_samples_left == 300


# ---------------------------------------------------------------------------------------
# a start (or a reset) in motion: simulated walking with gyroscope bias and noise

WALK_SCRIPT = PostureScript((
    Segment("calibrate", 0.0, 12.0),  # upright and still: rest bias estimation
    Segment("walk", 12.0, 75.0, flexion_deg=15.0, ramp_s=2.0),
))
WALK_STARTS_S = (20.0, 33.3, 47.7)  # cold starts, at different phases of the gait


def walking(rate_hz: float, bias_dps: tuple[float, float, float]):
    return simulate(
        WALK_SCRIPT, rate_hz=rate_hz, seed=1, errors=ImuErrors(gyr_bias_dps=bias_dps),
        with_orientation=True,
    )


def cold_start_errors_deg(rec, start_s: float, params: OrientationParams | None = None):
    """Inclination error (deg) of a fresh filter started at start_s for 12 s."""
    a = int(start_s * rec.rate_hz)
    b = a + int(12.0 * rec.rate_hz)
    q = estimate_orientation(rec.gyr_rad_s[a:b], rec.acc_m_s2[a:b], rec.rate_hz, params)
    return inclination_error_deg(q, rec.q_sensor_to_earth[a:b])


@needs_jit
@pytest.mark.parametrize("rate_hz", [25.0, 50.0, 100.0])
def test_a_cold_start_while_walking_converges_within_a_second(rate_hz):
    # The first sample carries the walking acceleration (up to 2 m/s^2, several deg of
    # tilt). The start-up average of gravity in the almost-inertial frame removes it as
    # the velocity change over the average shrinks against its length; before, the first
    # sample was the low-pass's steady state and its error decayed only with tau_acc_s.
    rec = walking(rate_hz, bias_dps=(0.2, -0.15, 0.1))
    one_s, three_s = int(rate_hz), int(3 * rate_hz)
    for start_s in WALK_STARTS_S:
        err = cold_start_errors_deg(rec, start_s)
        rmse = np.sqrt(np.mean(err[one_s:] ** 2))
        assert rmse < 1.0, (start_s, rmse)  # measured 0.56-0.77 deg (before: 1.7-3.3)
        assert np.max(err[three_s:]) < 1.5, (start_s, np.max(err[three_s:]))  # 0.7-1.0


@needs_jit
@pytest.mark.parametrize("bias_dps", [(0.2, -0.15, 0.1), (0.8, -0.6, 0.7)])
def test_motion_bias_estimation_after_a_cold_start_is_never_worse_than_none(bias_dps):
    # It learnt a wrong bias from the start-up transient (before: 3.3 deg with it, 1.7
    # without it, for the small bias). Now updates whose residual no bias explains are skipped.
    rec = walking(50.0, bias_dps)
    off = OrientationParams(motion_bias_est=False)
    for start_s in WALK_STARTS_S:
        with_est = cold_start_errors_deg(rec, start_s)[50:]
        without = cold_start_errors_deg(rec, start_s, off)[50:]
        assert np.sqrt(np.mean(with_est**2)) <= np.sqrt(np.mean(without**2)) + 1e-9, start_s


def horizontal_bias_error_dps(f: OrientationFilter, q_truth_wxyz, bias_dps) -> float:
    """Earth-frame horizontal part of the filter's bias error (deg/s) at the attitude q_truth."""
    w, x, y, z = q_truth_wxyz
    e = np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
    ]) @ (f.gyr_bias_rad_s - np.radians(bias_dps))
    return float(np.degrees(np.hypot(e[0], e[1])))


@needs_jit
@pytest.mark.parametrize("rate_hz", [25.0, 50.0, 100.0])
def test_motion_bias_is_learnt_during_the_start_up_average_of_a_walk(rate_hz):
    # During the start-up average the correction rate is measured with the average's own
    # model (half the rate error, noise from the accelerometer's spread), so learning starts
    # 1.5 s after a cold start instead of at the end of the average (3 s). After 12 s of
    # walking the horizontal bias error (about 1 deg/s at the start) is, mean over the
    # starts, 0.467-0.475 deg/s; it was 0.516-0.521 when nothing was learnt in the average.
    bias_dps = (0.8, -0.6, 0.7)
    rec = walking(rate_hz, bias_dps)
    errs = []
    for start_s in WALK_STARTS_S:
        a = int(start_s * rate_hz)
        b = a + int(12.0 * rate_hz)
        f = OrientationFilter(rate_hz)
        f.update(rec.gyr_rad_s[a:b], rec.acc_m_s2[a:b])
        errs.append(horizontal_bias_error_dps(f, rec.q_sensor_to_earth[b - 1], bias_dps))
    assert np.mean(errs) < 0.49, errs


@needs_jit
def test_a_restored_state_carries_the_learnt_bias_across_a_restart_in_motion():
    bias_dps = (0.8, -0.6, 0.7)
    rec = walking(50.0, bias_dps)
    rate = rec.rate_hz
    before = OrientationFilter(rate)
    stop, resume = int(40.0 * rate), int(45.0 * rate)  # the bridge restarts, 5 s lost
    before.update(rec.gyr_rad_s[:stop], rec.acc_m_s2[:stop])
    saved = before.state
    learnt = before.gyr_bias_rad_s
    # learnt at rest during the first 12 s and kept while walking
    assert np.max(np.abs(learnt - np.radians(bias_dps))) < np.radians(0.05)

    restarted = OrientationFilter(rate)
    restarted.state = saved
    restarted.reset_motion()  # the stream resumes after a gap, the patient still walking
    np.testing.assert_array_equal(restarted.gyr_bias_rad_s, learnt)
    q = restarted.update(rec.gyr_rad_s[resume:], rec.acc_m_s2[resume:])
    err = inclination_error_deg(q, rec.q_sensor_to_earth[resume:])
    fresh = estimate_orientation(rec.gyr_rad_s[resume:], rec.acc_m_s2[resume:], rate)
    err_fresh = inclination_error_deg(fresh, rec.q_sensor_to_earth[resume:])
    one_s = int(rate)
    rmse, rmse_fresh = (np.sqrt(np.mean(e[one_s:] ** 2)) for e in (err, err_fresh))
    # the known bias keeps the gravity low-pass from lagging by bias x tau_acc_s
    assert rmse < 0.6, rmse
    assert rmse < 0.5 * rmse_fresh, (rmse, rmse_fresh)
    # and the bias is not forgotten or dragged off by the start-up
    assert np.max(np.abs(restarted.gyr_bias_rad_s - np.radians(bias_dps))) < np.radians(0.1)


@pytest.mark.parametrize(
    ("gyr_shape", "acc_shape", "message"),
    [
        ((10, 2), (10, 3), r"gyr_rad_s must have shape \(N, 3\), got \(10, 2\)"),
        ((10,), (10, 3), r"gyr_rad_s must have shape \(N, 3\), got \(10,\)"),
        ((10, 3), (10, 4), r"acc_m_s2 must have shape \(N, 3\), got \(10, 4\)"),
        ((10, 3), (9, 3), r"acc_m_s2 must have the shape of gyr_rad_s \(10, 3\), got \(9, 3\)"),
    ],
)
def test_wrong_shapes_raise_value_error_naming_argument_and_shape(gyr_shape, acc_shape, message):
    with pytest.raises(ValueError, match=message):
        estimate_orientation(np.zeros(gyr_shape), np.ones(acc_shape), RATE_HZ)
    with pytest.raises(ValueError, match=message):
        OrientationFilter(RATE_HZ).update(np.zeros(gyr_shape), np.ones(acc_shape))


def test_bank_wrong_shapes_raise_value_error():
    bank = OrientationFilterBank(4, RATE_HZ)
    with pytest.raises(ValueError, match=r"gyr_rad_s must have shape \(S, N, 3\), got \(4, 3\)"):
        bank.update(np.zeros((4, 3)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"gyr_rad_s must have shape \(4, N, 3\), got \(3, 5, 3\)"):
        bank.update(np.zeros((3, 5, 3)), np.zeros((3, 5, 3)))


@pytest.mark.parametrize("rate_hz", [0.0, -100.0, float("nan"), float("inf")])
def test_invalid_rate_is_rejected(rate_hz):
    with pytest.raises(ValueError, match="rate_hz"):
        OrientationFilter(rate_hz)


@pytest.mark.parametrize(
    "bad", [{"tau_acc_s": 0.0}, {"rest_th_acc_m_s2": -1.0}, {"gyr_latency_samples": float("nan")}]
)
def test_invalid_params_are_rejected_naming_the_field(bad):
    (name,) = bad
    with pytest.raises(ValueError, match=name):
        OrientationParams(**bad)


def test_empty_chunk_returns_empty_output_and_keeps_state():
    f = OrientationFilter(RATE_HZ)
    before = f.state
    assert f.update(np.zeros((0, 3)), np.zeros((0, 3))).shape == (0, 4)
    np.testing.assert_array_equal(f.state, before)


# ---------------------------------------------------------------------------------------
# accuracy on recorded data with optical ground truth (BROAD, CC BY 4.0)


def broad_inclination_rmse_deg(path: Path, params: OrientationParams | None = None) -> float:
    """BROAD's protocol: whole trial from sample 0, RMSE of inclination over movement."""
    with np.load(path) as d:
        q = estimate_orientation(d["gyr_rad_s"], d["acc_m_s2"], float(d["rate_hz"]), params)
        q_true, movement = d["quat_truth_wxyz"], d["movement"]
    w1, x1, y1, z1 = q.T
    w2, x2, y2, z2 = q_true.T
    # q_err = q_est * conj(q_true); its heading-free part gives the inclination error
    w = w1 * w2 + x1 * x2 + y1 * y2 + z1 * z2
    z = -w1 * z2 - x1 * y2 + y1 * x2 + z1 * w2
    err = 2.0 * np.arccos(np.clip(np.sqrt(w * w + z * z), -1.0, 1.0))
    ok = movement & np.isfinite(err)
    return float(np.degrees(np.sqrt(np.mean(err[ok] ** 2))))


@needs_jit
@pytest.mark.skipif(
    not BROAD_DIR.is_dir(),
    reason=f"BROAD data not found at {BROAD_DIR.resolve()}; see shared/data/README.md",
)
def test_broad_mean_inclination_rmse_meets_the_goal_and_beats_vqf():
    trials = sorted(BROAD_DIR.glob("*.npz"))
    assert len(trials) == 20
    rmse = [broad_inclination_rmse_deg(p) for p in trials]
    # default (sensor-neutral): the goal is 0.70 deg (measured 0.672); vqf 2.1.2
    # online gets 0.712 deg on the same 20 trials
    assert np.mean(rmse) <= 0.70, dict(zip([p.stem for p in trials], np.round(rmse, 3), strict=True))
    assert max(rmse) < 2.0
    # with the recording sensor's measured gyroscope latency, as its profile would set it
    rmse_latency = [broad_inclination_rmse_deg(p, ONE_SAMPLE_LATENCY) for p in trials]
    assert np.mean(rmse_latency) <= 0.56  # measured 0.550


def broad_cold_start_rmse_deg(factor: int, params: OrientationParams | None = None) -> float:
    """Issue 17's protocol: the 20 trials cut into consecutive 12-s windows, those with
    >= 80 % movement each filtered from a fresh start (averaged down by factor), inclination
    RMSE over the movement samples after the first second; mean over the windows."""
    rmse = []
    for path in sorted(BROAD_DIR.glob("*.npz")):
        with np.load(path) as d:
            rate_hz = float(d["rate_hz"])
            gyr, acc, q_true, movement = d["gyr_rad_s"], d["acc_m_s2"], d["quat_truth_wxyz"], d["movement"]
        n = int(round(12.0 * rate_hz))
        k = n // factor
        for a in range(0, len(gyr) - n + 1, n):
            if np.mean(movement[a : a + n]) < 0.8:
                continue
            g = gyr[a : a + k * factor].reshape(k, factor, 3).mean(axis=1)
            f = acc[a : a + k * factor].reshape(k, factor, 3).mean(axis=1)
            q = estimate_orientation(g, f, rate_hz / factor, params)
            qt = q_true[a + factor - 1 : a + k * factor : factor]
            mv = movement[a + factor - 1 : a + k * factor : factor]
            w1, x1, y1, z1 = q.T
            w2, x2, y2, z2 = qt.T
            w = w1 * w2 + x1 * x2 + y1 * y2 + z1 * z2
            z = -w1 * z2 - x1 * y2 + y1 * x2 + z1 * w2
            err = 2.0 * np.arccos(np.clip(np.sqrt(w * w + z * z), -1.0, 1.0))
            skip = int(round(rate_hz / factor))
            ok = mv[skip:] & np.isfinite(err[skip:])
            rmse.append(np.degrees(np.sqrt(np.mean(err[skip:][ok] ** 2))))
    assert len(rmse) == 155
    return float(np.mean(rmse))


@needs_jit
@pytest.mark.skipif(
    not BROAD_DIR.is_dir(),
    reason=f"BROAD data not found at {BROAD_DIR.resolve()}; see shared/data/README.md",
)
@pytest.mark.parametrize("factor", [1, 6])
def test_broad_cold_starts_in_motion_beat_vqf_and_bias_estimation_does_not_hurt(factor):
    # vqf 2.1.2 online (updateBatch) on the same windows: 1.546 deg at 285.7 Hz and 1.840
    # deg averaged down to 47.6 Hz (benchmarks/bench_orientation.py); before the start-up
    # average this filter gave 5.98 / 6.37 deg, 1.486 / 1.507 before bias learning in the
    # start-up average (issue 17). Measured now: 1.476 / 1.493.
    rmse = broad_cold_start_rmse_deg(factor)
    assert rmse <= 1.53, rmse
    # motion bias estimation never makes a start in motion worse (1.524 / 1.546 without)
    assert rmse <= broad_cold_start_rmse_deg(factor, OrientationParams(motion_bias_est=False))
