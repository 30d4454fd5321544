"""Posture analytics: angle conventions, calibration, activity, slouch episodes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spinewatch.signal import (
    Activity,
    PostureParams,
    PostureTracker,
    SlouchDetector,
    detect_slouch,
    neutral_alignment,
    trunk_angles_deg,
)

RATE_HZ = 100.0
G = 9.80665


def rot_y(deg: float) -> np.ndarray:
    a = np.radians(deg)
    return np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])


def rot_x(deg: float) -> np.ndarray:
    a = np.radians(deg)
    return np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])


def still_imu(flexion_deg, lateral_deg=None, mount=np.eye(3), seconds=None):
    """Accelerometer of a still trunk at the given per-sample flexion/lateral (body frame
    x forward, y left, z up; flexion about +y, right bend about +x), seen through ``mount``
    (R_body_to_sensor). Gyroscope: zero plus a constant bias."""
    flex = np.asarray(flexion_deg, dtype=float)
    lat = np.zeros_like(flex) if lateral_deg is None else np.asarray(lateral_deg, dtype=float)
    acc = np.empty((len(flex), 3))
    for i, (f, la) in enumerate(zip(flex, lat)):
        r_body_to_earth = rot_y(f) @ rot_x(la)
        acc[i] = mount @ (r_body_to_earth.T @ np.array([0, 0, G]))
    gyr = np.tile([0.004, -0.003, 0.002], (len(flex), 1))
    return gyr, acc


def test_forward_flexion_and_right_bend_are_positive():
    up_fwd = rot_y(30).T @ [0, 0, 1]
    up_right = rot_x(15).T @ [0, 0, 1]
    f, la = trunk_angles_deg(np.array([up_fwd, up_right]))
    np.testing.assert_allclose(f, [30, 0], atol=1e-9)
    np.testing.assert_allclose(la, [0, 15], atol=1e-9)


def test_neutral_alignment_maps_neutral_up_to_body_z():
    u = np.array([0.2, -0.1, 0.97])
    r = neutral_alignment(u)
    np.testing.assert_allclose(r @ (u / np.linalg.norm(u)), [0, 0, 1], atol=1e-12)
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
    with pytest.raises(ValueError, match="neutral_up_sensor"):
        neutral_alignment([0, 0, 0])


def _profile(*segments):
    """Piecewise-constant angle profile from (seconds, degrees) pairs."""
    return np.concatenate([np.full(int(s * RATE_HZ), d, dtype=float) for s, d in segments])


def test_tracker_reports_flexion_relative_to_neutral_despite_a_tilted_mount():
    mount = rot_x(8) @ rot_y(-6)  # sensor stuck on a few degrees off
    flex = _profile((20, 0), (20, 30), (20, 0))
    gyr, acc = still_imu(flex, mount=mount)
    out = PostureTracker(RATE_HZ).update(gyr, acc)
    assert abs(np.median(out.flexion_deg[500:2000])) < 1.0
    assert abs(np.median(out.flexion_deg[2500:4000]) - 30) < 1.5
    assert abs(np.median(out.lateral_deg[2500:4000])) < 1.5


def test_tracker_detects_slouch_episode_and_ignores_short_one():
    flex = _profile((15, 0), (40, 30), (30, 0), (10, 30), (30, 0))  # 40 s and 10 s slouches
    gyr, acc = still_imu(flex)
    tr = PostureTracker(RATE_HZ, PostureParams(threshold_deg=20, hysteresis_deg=5, min_duration_s=30))
    out = tr.update(gyr, acc)
    assert out.episodes.shape == (1, 4)
    start, end, peak, mean = out.episodes[0]
    assert abs(start / RATE_HZ - 15) < 1.5 and abs(end / RATE_HZ - 55) < 1.5
    assert 29 < peak < 31.5 and 28 < mean < 31
    # state marks the confirmed part only: from start + 30 s to the end of the episode
    assert out.state[int(50 * RATE_HZ)] == 1 and out.state[int(30 * RATE_HZ)] == 0
    assert out.state[int(90 * RATE_HZ)] == 0


def test_no_slouch_is_detected_while_lying():
    flex = _profile((15, 0), (60, 85), (20, 0))
    gyr, acc = still_imu(flex)
    tr = PostureTracker(RATE_HZ)
    out = tr.update(gyr, acc)
    assert len(out.episodes) == 0 and len(tr.flush()) == 0
    assert np.mean(out.activity[2000:7000] == Activity.LYING) > 0.95


def test_walking_is_upright_moving_and_sitting_is_upright_still():
    n = int(40 * RATE_HZ)
    gyr, acc = still_imu(np.zeros(n))
    t = np.arange(n) / RATE_HZ
    walk = t >= 20
    acc[walk, 2] += 2.0 * np.sin(2 * np.pi * 2.0 * t[walk])  # 2 Hz steps, 2 m/s^2
    out = PostureTracker(RATE_HZ).update(gyr, acc)
    assert np.mean(out.activity[500:1900] == Activity.UPRIGHT_STILL) > 0.95
    assert np.mean(out.activity[2300:] == Activity.UPRIGHT_MOVING) > 0.95


def test_detect_slouch_returns_start_end_indices_of_tilt_episodes():
    flex = _profile((12, 0), (45, 28), (20, 2), (5, 40), (20, 0))
    gyr, acc = still_imu(flex)
    ep = detect_slouch(gyr, acc, RATE_HZ, threshold_deg=20, min_duration_s=30,
                       hysteresis_deg=5, calibration_s=10)
    assert ep.dtype == np.int64 and ep.shape == (1, 2)
    assert abs(ep[0, 0] - 1200) < 150 and abs(ep[0, 1] - 5700) < 150


def test_detect_slouch_closes_an_episode_still_open_at_the_end():
    gyr, acc = still_imu(_profile((12, 0), (40, 30)))
    ep = detect_slouch(gyr, acc, RATE_HZ, threshold_deg=20, min_duration_s=30,
                       hysteresis_deg=5, calibration_s=10)
    assert ep.shape == (1, 2) and ep[0, 1] == len(acc)


def test_detect_slouch_rejects_bad_calibration_and_shapes():
    gyr, acc = still_imu(np.zeros(50))
    with pytest.raises(ValueError, match="calibration"):
        detect_slouch(gyr, acc, RATE_HZ, threshold_deg=20, min_duration_s=1, hysteresis_deg=5,
                      calibration_s=10)
    with pytest.raises(ValueError, match="acc_m_s2"):
        detect_slouch(gyr, acc[:, :2], RATE_HZ, threshold_deg=20, min_duration_s=1,
                      hysteresis_deg=5, calibration_s=0.1)


def test_detector_hysteresis_keeps_an_episode_through_dips_above_the_release_level():
    a = _profile((1, 0), (10, 25), (1, 17), (10, 25), (1, 10))  # dip to 17 > 20 - 5
    det = SlouchDetector(RATE_HZ, 20, 5, 5)
    ep, _ = det.update(a)
    assert ep.shape == (1, 4) and ep[0, 0] == 100 and ep[0, 1] == 2200


@settings(max_examples=40, deadline=None)
@given(cuts=st.lists(st.integers(0, 3000), max_size=12), seed=st.integers(0, 1000))
def test_streaming_detector_equals_batch_for_any_chunking(cuts, seed):
    rng = np.random.default_rng(seed)
    a = np.repeat(rng.uniform(0, 35, 60), 50) + rng.normal(0, 2, 3000)
    a[rng.integers(0, 3000, 20)] = np.nan
    whole = SlouchDetector(RATE_HZ, 20, 4, 1.0)
    ep_b, st_b = whole.update(a)
    ep_b = np.vstack([ep_b, whole.flush()])
    chunked = SlouchDetector(RATE_HZ, 20, 4, 1.0)
    eps, sts = [], []
    for part in np.split(a, sorted(cuts)):
        e, s = chunked.update(part)
        eps.append(e)
        sts.append(s)
    eps.append(chunked.flush())
    np.testing.assert_array_equal(np.vstack(eps), ep_b)
    np.testing.assert_array_equal(np.concatenate(sts), st_b)


def test_detector_state_round_trips():
    a = _profile((1, 0), (3, 30), (1, 0))
    d1 = SlouchDetector(RATE_HZ, 20, 5, 1)
    d1.update(a[:200])
    d2 = SlouchDetector(RATE_HZ, 20, 5, 1)
    d2.state = d1.state
    np.testing.assert_array_equal(d1.update(a[200:])[0], d2.update(a[200:])[0])
