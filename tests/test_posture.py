"""Posture analytics: angle conventions, calibration, activity, slouch episodes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spinewatch.firmware_bridge.sim import (
    Mounting,
    PostureScript,
    Segment,
    simulate,
)
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


def record(*segments, mounting=None):
    """Simulated IMU (realistic: consistent gyroscope, noise, bias) of a scripted posture
    sequence. ``segments`` are (kind, seconds, flexion_deg[, lateral_deg]); 1.5 s ramps."""
    t = 0.0
    segs = []
    for kind, dur, flex, *lat in segments:
        segs.append(Segment(kind, t, t + dur, flex, lat[0] if lat else 0.0))
        t += dur
    script = PostureScript(tuple(segs))
    rec = simulate(script, RATE_HZ, seed=1, mounting=mounting)
    return rec.gyr_rad_s, rec.acc_m_s2, script


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
    gyr, acc, script = record(("calibrate", 20, 0), ("slouch", 20, 30), ("sit", 20, 0),
                              mounting=Mounting(pitch_deg=-6, roll_deg=8))
    out = PostureTracker(RATE_HZ).update(gyr, acc)
    assert abs(np.median(out.flexion_deg[500:1900])) < 1.0
    assert abs(np.median(out.flexion_deg[2500:3900]) - 30) < 1.5
    assert abs(np.median(out.lateral_deg[2500:3900])) < 1.5


def test_tracker_detects_slouch_episode_and_ignores_short_one():
    gyr, acc, script = record(("calibrate", 15, 0), ("slouch", 40, 30), ("sit", 30, 0),
                              ("slouch", 10, 30), ("sit", 30, 0))
    tr = PostureTracker(RATE_HZ, PostureParams(threshold_deg=20, hysteresis_deg=5, min_duration_s=30))
    out = tr.update(gyr, acc)
    (t_on, t_off, peak_true), _ = script.slouch_episodes(20.0)
    assert out.episodes.shape == (1, 4)
    start, end, peak, mean = out.episodes[0]
    assert abs(start / RATE_HZ - t_on) < 0.5 and abs(end / RATE_HZ - t_off) < 1.0
    assert abs(peak - peak_true) < 1.5 and 27 < mean < 31
    # state marks the confirmed part only: from start + 30 s to the end of the episode
    assert out.state[int(50 * RATE_HZ)] == 1 and out.state[int(30 * RATE_HZ)] == 0
    assert out.state[int(90 * RATE_HZ)] == 0


def test_no_slouch_is_detected_while_lying():
    gyr, acc, _ = record(("calibrate", 15, 0), ("lie", 60, -90), ("sit", 20, 0))
    tr = PostureTracker(RATE_HZ)
    out = tr.update(gyr, acc)
    assert len(out.episodes) == 0 and len(tr.flush()) == 0
    assert np.mean(out.activity[2000:7000] == Activity.LYING) > 0.95


def test_walking_is_upright_moving_and_sitting_is_upright_still():
    gyr, acc, _ = record(("calibrate", 20, 0), ("walk", 20, 3))
    out = PostureTracker(RATE_HZ).update(gyr, acc)
    assert np.mean(out.activity[500:1900] == Activity.UPRIGHT_STILL) > 0.95
    assert np.mean(out.activity[2300:3900] == Activity.UPRIGHT_MOVING) > 0.9


def test_detect_slouch_returns_start_end_indices_of_tilt_episodes():
    gyr, acc, script = record(("calibrate", 12, 0), ("slouch", 45, 28), ("sit", 20, 2),
                              ("slouch", 5, 40), ("sit", 20, 0))
    ep = detect_slouch(gyr, acc, RATE_HZ, threshold_deg=20, min_duration_s=30,
                       hysteresis_deg=5, calibration_s=10)
    (t_on, t_off, _), _ = script.slouch_episodes(20.0)
    assert ep.dtype == np.int64 and ep.shape == (1, 2)
    assert abs(ep[0, 0] - t_on * RATE_HZ) < 50 and abs(ep[0, 1] - t_off * RATE_HZ) < 100


def test_detect_slouch_closes_an_episode_still_open_at_the_end():
    gyr, acc, _ = record(("calibrate", 12, 0), ("slouch", 40, 30))
    ep = detect_slouch(gyr, acc, RATE_HZ, threshold_deg=20, min_duration_s=30,
                       hysteresis_deg=5, calibration_s=10)
    assert ep.shape == (1, 2) and ep[0, 1] == len(acc)


def test_detect_slouch_rejects_bad_calibration_and_shapes():
    gyr, acc, _ = record(("calibrate", 60, 0))
    gyr, acc = gyr[:50], acc[:50]
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


def test_activity_matches_the_scripted_day():
    """Lying / upright still / upright moving against the simulator's labels (2 h day)."""
    from spinewatch.firmware_bridge.sim import SEGMENT_KINDS

    script = PostureScript.day(2 * 3600, seed=3)
    rec = simulate(script, RATE_HZ, seed=3)
    tr = PostureTracker(RATE_HZ)
    act = np.concatenate([tr.update(rec.gyr_rad_s[i:i + 1000], rec.acc_m_s2[i:i + 1000]).activity
                          for i in range(0, len(rec.t_s), 1000)])
    kinds = np.array(SEGMENT_KINDS)[rec.labels]
    truth = np.where(kinds == "lie", Activity.LYING,
                     np.where(kinds == "walk", Activity.UPRIGHT_MOVING, Activity.UPRIGHT_STILL))
    assert np.mean(act == truth) > 0.97
    for a in (Activity.UPRIGHT_STILL, Activity.UPRIGHT_MOVING):
        assert np.mean(act[truth == a] == a) > 0.95


def _run_in_chunks(tracker, gyr, acc, chunk, switch_at=None, new_params=None):
    """Feed 1-chunk steps; apply new_params before the chunk starting at sample switch_at."""
    outs = []
    for i in range(0, len(gyr), chunk):
        if i == switch_at:
            tracker.set_params(new_params)
        outs.append(tracker.update(gyr[i : i + chunk], acc[i : i + chunk]))
    outs.append(tracker.flush())
    return outs


@pytest.mark.parametrize(
    ("switch_s", "before", "after"),
    [
        # after the calibration, sitting upright (no episode open in either tracker): the
        # slouch thresholds, the minimum duration, the lying threshold and the mount's yaw
        (20.0, PostureParams(), PostureParams(threshold_deg=15.0, hysteresis_deg=3.0, min_duration_s=10.0,
                                              lying_deg=50.0, mount_yaw_deg=25.0)),
        # during the auto-capture of neutral: its new length counts from the stream's start
        (4.0, PostureParams(calibration_s=10.0), PostureParams(calibration_s=6.0, threshold_deg=18.0)),
    ],
)
def test_set_params_mid_stream_behaves_as_a_tracker_built_with_them(switch_s, before, after):
    rate_hz = 50.0
    script = PostureScript.day(900.0, seed=4)
    rec = simulate(script, rate_hz, seed=4)
    chunk = 25
    switch_at = int(switch_s * rate_hz)
    changed = _run_in_chunks(PostureTracker(rate_hz, before), rec.gyr_rad_s, rec.acc_m_s2, chunk,
                             switch_at, after)
    built = _run_in_chunks(PostureTracker(rate_hz, after), rec.gyr_rad_s, rec.acc_m_s2, chunk)
    k = switch_at // chunk
    same_from = 0 if switch_s < before.calibration_s else k  # a running capture: from the start
    for a, b in zip(changed[same_from:-1], built[same_from:-1], strict=True):
        for name in ("flexion_deg", "lateral_deg", "state", "activity", "episodes"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    np.testing.assert_array_equal(changed[-1], built[-1])
    episodes = np.concatenate([o.episodes for o in built[:-1]] + [built[-1]])
    assert len(episodes) >= 1  # the day slouches, so the thresholds were exercised


def test_set_params_with_a_shorter_capture_already_full_ends_it_at_the_next_sample():
    gyr, acc, _ = record(("sit", 20, 0.0))
    tr = PostureTracker(RATE_HZ, PostureParams(calibration_s=10.0))
    tr.update(gyr[:800], acc[:800])
    neutral = tr.neutral_up_sensor
    tr.set_params(PostureParams(calibration_s=6.0))
    assert tr.calibrated
    tr.update(gyr[800:], acc[800:])
    np.testing.assert_array_equal(tr.neutral_up_sensor, neutral)  # the 8 s captured so far


def test_set_params_keeps_an_open_slouch_and_judges_it_by_the_new_minimum_duration():
    gyr, acc, _ = record(("sit", 15, 0.0), ("slouch", 25, 35.0), ("sit", 20, 0.0))
    tr = PostureTracker(RATE_HZ, PostureParams(min_duration_s=60.0))
    first = tr.update(gyr[:3000], acc[:3000])  # 10 s into the slouch
    assert not first.state.any() and len(first.episodes) == 0
    tr.set_params(PostureParams(min_duration_s=5.0))
    rest = tr.update(gyr[3000:], acc[3000:])
    assert rest.state[0] == 1  # the episode started before the change, now long enough
    assert len(rest.episodes) == 1 and rest.episodes[0, 0] < 3000


def test_the_bridge_applies_a_patients_settings_through_set_params(monkeypatch):
    from spinewatch.service.bridge.live_config import apply_posture_config
    from spinewatch.service.transport.patient_config import PatientConfig

    calls = []
    monkeypatch.setattr(PostureTracker, "set_params", lambda self, p: calls.append(p))
    tr = PostureTracker(RATE_HZ, PostureParams(lying_deg=55.0))
    apply_posture_config(tr, PatientConfig(threshold_deg=17.0, hysteresis_deg=4.0, min_duration_s=12.0))
    assert calls == [PostureParams(threshold_deg=17.0, hysteresis_deg=4.0, min_duration_s=12.0, lying_deg=55.0)]
    monkeypatch.undo()
    apply_posture_config(tr, PatientConfig(threshold_deg=17.0, hysteresis_deg=4.0, min_duration_s=12.0))
    built = PostureTracker(RATE_HZ, calls[0]).slouch
    assert (tr.slouch.on_deg, tr.slouch.off_deg, tr.slouch.min_samples) == (
        built.on_deg, built.off_deg, built.min_samples)


@pytest.mark.parametrize("yaw", [-35.0, 12.0, 90.0])
def test_a_sensor_turned_about_the_spine_is_corrected_by_a_guided_forward_bend(yaw):
    from spinewatch.signal.angles import mount_yaw_deg, up_in_sensor
    from spinewatch.signal.orientation import estimate_orientation

    mount = Mounting(pitch_deg=5, roll_deg=-4, yaw_deg=yaw)
    calib = ("calibrate", 15, 0), ("slouch", 15, 35)  # guided: upright, then bend forward
    gyr, acc, _ = record(*calib, mounting=mount)
    up = up_in_sensor(estimate_orientation(gyr, acc, RATE_HZ))
    measured = mount_yaw_deg(up[300:1400].mean(axis=0), up[1800:2900])
    assert abs(measured - yaw) < 2.0
    day = record(("calibrate", 15, 0), ("slouch", 40, 30, 0), mounting=mount)
    plain = PostureTracker(RATE_HZ).update(day[0], day[1])
    fixed = PostureTracker(RATE_HZ, PostureParams(mount_yaw_deg=measured)).update(day[0], day[1])
    bend = slice(2500, 5000)
    assert abs(np.median(fixed.flexion_deg[bend]) - 30) < 1.5
    assert abs(np.median(fixed.lateral_deg[bend])) < 1.5
    assert abs(np.median(plain.lateral_deg[bend])) > 5  # uncorrected, flexion leaks into lateral


def test_yaw_needs_a_real_bend():
    from spinewatch.signal.angles import mount_yaw_deg

    with pytest.raises(ValueError, match="15 degrees"):
        mount_yaw_deg([0, 0, 1], [[0.05, 0, 1]])


def test_the_signal_package_exports_every_name_and_loads_numba_only_when_needed():
    import subprocess
    import sys

    import spinewatch.signal as sig

    assert sorted(sig.__all__) == sorted(sig._MODULE_OF)
    assert all(getattr(sig, name) is not None for name in sig.__all__)
    code = ("import sys, spinewatch.signal.minute_summary, spinewatch.signal.rtm; "
            "print('numba' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"  # the report's pure-NumPy arithmetic does not import Numba
