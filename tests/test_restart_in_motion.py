"""A reset of the orientation filter in motion (a gap in the data, a reconnect, a bridge
restart) must not produce a slouch episode, nor a false lying/upright label, out of the
filter's start-up transient.

The orientation filter realigns from the first accelerometer sample after a reset; while the
patient walks, that sample carries the walking acceleration (several degrees of apparent
tilt). The filter's start-up average removes it within about a second
(docs/orientation.md, "Start-up"), and PostureTracker takes no slouch decision during that
average. Checked on the simulator (walking with the trunk bent between the slouch
detector's release and start levels, where one transient sample above the threshold would
open an episode that the hysteresis then keeps) and on BROAD's recorded motion. The activity
is unknown (0) during the same start-up: checked walking bent either side of the lying limit.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import numba
import numpy as np
import pytest

from spinewatch.firmware_bridge.sim import (
    ImuErrors,
    PostureScript,
    Segment,
    SimulatedPatient,
    simulate,
)
from spinewatch.model import ImuBatch
from spinewatch.service.bridge.loop import run_bridge
from spinewatch.service.config import Config
from spinewatch.signal import Activity, PostureParams, PostureTracker
from spinewatch.signal.angles import neutral_alignment, trunk_angles_deg, up_in_sensor
from tests.test_bridge_gaps import RecordingPublisher

BROAD_DIR = Path(__file__).parents[1] / ".." / "shared" / "data" / "broad"
needs_jit = pytest.mark.skipif(
    bool(numba.config.DISABLE_JIT), reason="long input; too slow with NUMBA_DISABLE_JIT=1"
)

# Walking with the trunk bent 17 deg (+-1.5 deg of gait sway): above the release level
# (20 - 5 deg) and below the start level (20 deg), so the truth has no slouch, and a
# transient that lifts flexion by 1.5 deg opens an episode that lasts until the walk ends.
SLOUCH = PostureParams(threshold_deg=20.0, hysteresis_deg=5.0, min_duration_s=10.0, calibration_s=10.0)
WALK_BENT = PostureScript((
    Segment("calibrate", 0.0, 12.0),
    Segment("walk", 12.0, 200.0, flexion_deg=17.0, ramp_s=2.0),
))
RESETS_S = tuple(np.arange(30.0, 190.0, 13.7))  # 12 resets, at different phases of the gait
BIAS_DPS = (0.3, -0.2, 0.25)


@needs_jit
@pytest.mark.parametrize("rate_hz", [25.0, 50.0, 100.0])
def test_a_reset_while_walking_bent_starts_no_false_slouch(rate_hz):
    rec = simulate(WALK_BENT, rate_hz=rate_hz, seed=2, errors=ImuErrors(gyr_bias_dps=BIAS_DPS))
    tracker = PostureTracker(rate_hz, SLOUCH)
    resets = [int(round(t * rate_hz)) for t in RESETS_S]
    edges = sorted({0, len(rec.t_s), *resets, *range(0, len(rec.t_s), int(rate_hz))})  # 1-s chunks
    episodes, flexion = [], []
    for a, b in zip(edges, edges[1:], strict=False):
        if a in resets:
            tracker.reset_motion()
        out = tracker.update(rec.gyr_rad_s[a:b], rec.acc_m_s2[a:b])
        episodes.extend(out.episodes.tolist())
        flexion.append(out.flexion_deg)
    episodes.extend(tracker.flush().tolist())
    assert episodes == []  # before: an episode from 167-181 s to the end at 50 and 100 Hz
    # and the filter itself has converged a second after each reset (before: 1.2-2.5 deg)
    err = np.concatenate(flexion) - rec.flexion_deg
    for r in resets:
        after = err[r + int(rate_hz) : r + int(12 * rate_hz)]
        assert np.max(np.abs(after)) < 1.0, (r / rate_hz, np.max(np.abs(after)))


def broad_motion_windows(path: Path):
    """BROAD's cold-start windows: 12 s, consecutive from sample 0, >= 80 % movement."""
    with np.load(path) as d:
        rate_hz = float(d["rate_hz"])
        gyr, acc, q_true, movement = d["gyr_rad_s"], d["acc_m_s2"], d["quat_truth_wxyz"], d["movement"]
    n = int(round(12.0 * rate_hz))
    for a in range(0, len(gyr) - n + 1, n):
        if np.mean(movement[a : a + n]) >= 0.8:
            yield rate_hz, a, n, gyr, acc, q_true


@needs_jit
@pytest.mark.skipif(
    not BROAD_DIR.is_dir(),
    reason=f"BROAD data not found at {BROAD_DIR.resolve()}; see shared/data/README.md",
)
def test_a_reset_in_recorded_motion_starts_no_false_slouch():
    # Each BROAD window (hand-held motion, 286 Hz) after 12 s of the same trial: the tracker
    # gets the truth's up direction at the reset as its neutral and a slouch threshold 3 deg
    # above the largest true flexion of the window. Windows whose true flexion leaves
    # +-60 deg (the sensor turned over, flexion is no posture there) are not used.
    n_windows = 0
    for path in sorted(BROAD_DIR.glob("*.npz")):
        for rate_hz, a, n, gyr, acc, q_true in broad_motion_windows(path):
            if a < n or not np.all(np.isfinite(q_true[a : a + n])):
                continue
            up_true = up_in_sensor(q_true[a : a + n])
            flex_true, _ = trunk_angles_deg(up_true @ neutral_alignment(up_true[0]).T)
            if np.max(np.abs(flex_true)) > 60.0:
                continue
            threshold = max(1.0, float(np.max(flex_true)) + 3.0)
            params = PostureParams(threshold_deg=threshold, hysteresis_deg=0.5, min_duration_s=0.0,
                                   calibration_s=1.0)
            tracker = PostureTracker(rate_hz, params)
            tracker.update(gyr[a - n : a], acc[a - n : a])  # the stream before the gap
            tracker.set_neutral(up_true[0])
            tracker.reset_motion()
            out = tracker.update(gyr[a : a + n], acc[a : a + n])
            episodes = np.vstack([out.episodes, tracker.flush()])
            assert len(episodes) == 0, (path.stem, a / rate_hz, episodes)
            n_windows += 1
    assert n_windows >= 30  # 38 windows of the 20 trials


# ---------------------------------------------------------------------------------------
# through the bridge: a link that drops out while the patient walks bent


class DroppingSource(SimulatedPatient):
    """The simulated sensor losing 2 s of samples every 13.7 s while walking, delivered as
    the BLE timeline does: the batch after a loss is flagged ``gap_before``."""

    async def batches(self) -> AsyncIterator[ImuBatch]:
        lost = False
        async for b in super().batches():
            t_s = b.t0_ns / 1e9
            if any(r - 2.0 <= t_s < r for r in RESETS_S):
                lost = True
                continue
            yield dataclasses.replace(b, gap_before=True) if lost else b
            lost = False




@needs_jit
@pytest.mark.network
def test_the_bridge_publishes_no_slouch_after_gaps_while_walking_bent(mosquitto, tmp_path):
    start_utc_ns = 1_700_000_000 * 10**9
    source = DroppingSource(WALK_BENT, rate_hz=50.0, seed=2, batch_samples=10,
                            start_utc_ns=start_utc_ns, errors=ImuErrors(gyr_bias_dps=BIAS_DPS))
    cfg = Config.load({"SPINEWATCH_MQTT_URL": mosquitto.url})
    cfg = dataclasses.replace(cfg, bridge=dataclasses.replace(cfg.bridge, outbox_dir=str(tmp_path)))
    tracker = PostureTracker(50.0, SLOUCH)
    with RecordingPublisher(cfg.mqtt, "p-walk", "d-walk", "5") as pub:
        totals = asyncio.run(run_bridge(source, tracker, pub, start_utc_ns))
    assert totals.samples > 0.9 * 200.0 * 50.0 - 12 * 2.0 * 50.0
    assert pub.events == []


# ---------------------------------------------------------------------------------------
# the activity classifier: lying and upright are told by the inclination


@needs_jit
@pytest.mark.parametrize("rate_hz", [25.0, 50.0, 100.0])
@pytest.mark.parametrize(("flexion_deg", "settled"), [(58.0, 3), (62.0, 1)])
def test_a_reset_while_walking_reports_no_false_lying_or_upright(rate_hz, flexion_deg, settled):
    # Walking bent 2 deg either side of the lying limit (60 deg from vertical, +-1.5 deg of
    # gait sway), so the truth is one label throughout and a start-up transient of a few
    # degrees flips it. During each start-up the activity is unknown (0), as the slouch
    # detector gets no decision; outside them it is the true label only.
    script = PostureScript((
        Segment("calibrate", 0.0, 12.0),
        Segment("walk", 12.0, 120.0, flexion_deg=flexion_deg, ramp_s=2.0),
    ))
    rec = simulate(script, rate_hz=rate_hz, seed=2, errors=ImuErrors(gyr_bias_dps=BIAS_DPS))
    tracker = PostureTracker(rate_hz, SLOUCH)
    resets = [int(round(t * rate_hz)) for t in np.arange(30.0, 110.0, 7.3)]  # 11 resets
    edges = sorted({0, len(rec.t_s), *resets, *range(0, len(rec.t_s), int(rate_hz))})  # 1-s chunks
    acts = []
    for a, b in zip(edges, edges[1:], strict=False):
        if a in resets:
            tracker.reset_motion()
        acts.append(tracker.update(rec.gyr_rad_s[a:b], rec.acc_m_s2[a:b]).activity)
    act = np.concatenate(acts)
    start_up = round(tracker.orientation.params.tau_acc_s * rate_hz)
    in_start_up = np.zeros(len(act), bool)
    for r in [0, *resets]:
        in_start_up[r : r + start_up] = True
    assert np.all(act[in_start_up] == Activity.UNKNOWN)
    walking = np.arange(len(act)) >= int(16.0 * rate_hz)  # after the ramp and the first steps
    false = (Activity.LYING,) if settled == Activity.UPRIGHT_MOVING else (Activity.UPRIGHT_STILL,
                                                                          Activity.UPRIGHT_MOVING)
    assert not np.any(np.isin(act[walking], false)), np.flatnonzero(np.isin(act[walking], false))
    labels = act[walking & ~in_start_up]
    assert np.all(labels == settled), np.bincount(labels, minlength=4)
    # before: 21-117 false labels in the start-ups (lying while walking at 58 deg, upright at 62)
