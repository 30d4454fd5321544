"""Remount detection on the simulated patient: a sensor stuck back on tilted is reported;
a well-mounted sensor is not, however long the patient sits slouched."""

from __future__ import annotations

import numpy as np
import pytest

from spinewatch.firmware_bridge.sim import ImuSynthesizer, Mounting, PostureScript
from spinewatch.signal import estimate_orientation, up_in_sensor
from spinewatch.signal.remount import RemountDetector, RemountParams

RATE_HZ = 100.0
HOURS = 2.5


def day(mounting: Mounting, seed: int) -> tuple[np.ndarray, np.ndarray]:
    syn = ImuSynthesizer(PostureScript.day(HOURS * 3600, seed=seed), RATE_HZ, seed, mounting=mounting)
    rec = syn.chunk(0, syn.n_samples)
    return rec.gyr_rad_s, rec.acc_m_s2


def run(gyr: np.ndarray, acc: np.ndarray, chunk: int = 7) -> tuple[RemountDetector, int | None]:
    up = up_in_sensor(estimate_orientation(gyr, acc, RATE_HZ))
    neutral = up[200:1000].mean(axis=0)  # the script starts with a calibration, sitting upright
    det = RemountDetector(RATE_HZ)
    for i in range(0, len(up), chunk):
        det.update(up[i:i + chunk], acc[i:i + chunk], neutral)
    return det, (det.reported_at_sample if det.reported_at_sample >= 0 else None)


@pytest.mark.parametrize("seed", [1, 2])
def test_a_well_mounted_sensor_is_never_reported_even_through_long_slouches(seed):
    gyr, acc = day(Mounting(pitch_deg=6.0, roll_deg=-4.0), seed)
    det, first = run(gyr, acc)
    assert first is None and not det.suspected
    assert det.walking_tilt_deg < 15.0  # walking keeps the trunk near neutral


def test_a_sensor_stuck_back_on_40_degrees_off_is_reported_after_some_walking():
    g1, a1 = day(Mounting(pitch_deg=6.0, roll_deg=-4.0), 1)
    g2, a2 = day(Mounting(pitch_deg=-30.0, roll_deg=25.0), 2)  # re-attached ~40 deg off
    half = len(g1) // 2
    gyr, acc = np.concatenate([g1[:half], g2[:half]]), np.concatenate([a1[:half], a2[:half]])
    det, first = run(gyr, acc)
    assert det.suspected and first is not None
    assert first > half, "nothing is reported before the remount"
    assert det.walking_tilt_deg > 30.0
    # reported within the walking of the second part (3 windows of 20 s), well before its end
    assert first < half + 0.9 * half


def test_reset_forgets_the_evidence_and_bad_shapes_are_refused():
    det = RemountDetector(RATE_HZ, RemountParams(window_s=1.0, confirm_windows=1))
    rng = np.random.default_rng(0)
    n = 500
    walking_acc = np.column_stack([rng.normal(0, 2, n), rng.normal(0, 2, n), 9.8 + rng.normal(0, 2, n)])
    tilted_up = np.tile([np.sin(np.radians(50)), 0.0, np.cos(np.radians(50))], (n, 1))
    assert det.update(tilted_up, walking_acc, [0, 0, 1]) is True and det.suspected
    assert 99 <= det.reported_at_sample < 150  # at the 100th walking sample (the motion average warms up first)
    det.reset()
    assert not det.suspected and np.isnan(det.walking_tilt_deg)
    with pytest.raises(ValueError, match="shape"):
        det.update(tilted_up[:, :2], walking_acc, [0, 0, 1])
    with pytest.raises(ValueError, match="remount_deg"):
        RemountParams(remount_deg=0)


def test_the_tracker_reports_a_remount_and_a_new_calibration_clears_it():
    from spinewatch.signal import PostureTracker

    g1, a1 = day(Mounting(pitch_deg=6.0, roll_deg=-4.0), 1)
    g2, a2 = day(Mounting(pitch_deg=-30.0, roll_deg=25.0), 2)
    half = len(g1) // 2
    tr = PostureTracker(RATE_HZ)

    def feed(g: np.ndarray, a: np.ndarray) -> None:
        for i in range(0, len(g), 500):
            tr.update(g[i:i + 500], a[i:i + 500])

    feed(g1[:half], a1[:half])
    assert not tr.remount.suspected
    feed(g2[:half], a2[:half])
    assert tr.remount.suspected and tr.remount.walking_tilt_deg > 30.0
    tr.set_neutral([0.0, 0.0, 1.0])
    assert not tr.remount.suspected
