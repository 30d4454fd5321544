"""The orientation filter's learnt gyroscope bias survives a bridge restart (issue 17).

Filter level (:meth:`OrientationFilter.resume`), keeper level (the state kept in the device's
outbox file, and every reason not to use it), and bridge level (two :func:`run_bridge` runs
on one outbox). The command itself is tested in tests/test_bridge_filter_state_cli.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math

import numba
import numpy as np
import pytest

from spinewatch.firmware_bridge.sim import ImuErrors, PostureScript, Segment, SimulatedPatient, simulate
from spinewatch.service.bridge.filter_state import KEY, REPLAY_SENSOR, FilterStateKeeper, SavedState
from spinewatch.service.bridge.loop import run_bridge
from spinewatch.service.bridge.outbox import open_outbox
from spinewatch.service.bridge.publisher import Publisher
from spinewatch.service.config import Config
from spinewatch.signal import PostureParams, PostureTracker
from spinewatch.signal.angles import up_in_sensor
from spinewatch.signal.orientation import STATE_LEN, OrientationFilter

needs_jit = pytest.mark.skipif(bool(numba.config.DISABLE_JIT), reason="long input; too slow with NUMBA_DISABLE_JIT=1")

# A sensor with a large bias on every axis (within bias_clip_dps = 2); the vertical one
# (body z, upright) cannot be learnt while walking, the horizontal ones only over tens of s.
BIAS_DPS = (1.2, -0.9, 1.5)
ERRORS = ImuErrors(gyr_bias_dps=BIAS_DPS, gyr_bias_walk_dps_per_sqrt_s=0.0)
SIT = PostureScript((Segment("sit", 0.0, 40.0, flexion_deg=5.0),))
WALK = PostureScript((Segment("walk", 0.0, 30.0, flexion_deg=5.0),))
T0_NS = 1_700_000_000 * 10**9


def inclination_error_deg(q, q_true):
    up, up_true = up_in_sensor(q), up_in_sensor(q_true)
    return np.degrees(np.arccos(np.clip(np.sum(up * up_true, axis=1), -1.0, 1.0)))


def learnt_state(rate_hz: float) -> np.ndarray:
    """The state of a filter that sat still for 40 s on the biased sensor."""
    still = simulate(SIT, rate_hz=rate_hz, seed=1, errors=ERRORS)
    f = OrientationFilter(rate_hz)
    f.update(still.gyr_rad_s, still.acc_m_s2)
    np.testing.assert_allclose(np.degrees(f.gyr_bias_rad_s), BIAS_DPS, atol=0.05)
    return f.state


@needs_jit
@pytest.mark.parametrize(("saved_hz", "rate_hz"), [(50.0, 25.0), (50.0, 50.0), (25.0, 100.0)])
def test_a_resumed_filter_walks_right_from_the_first_second(saved_hz, rate_hz):
    walk = simulate(WALK, rate_hz=rate_hz, seed=2, errors=ERRORS, with_orientation=True)
    n = int(rate_hz)
    fresh = OrientationFilter(rate_hz)
    err_fresh = inclination_error_deg(fresh.update(walk.gyr_rad_s, walk.acc_m_s2), walk.q_sensor_to_earth)
    resumed = OrientationFilter(rate_hz)
    resumed.resume(learnt_state(saved_hz), elapsed_s=60.0)
    assert resumed.start_up_samples_left == round(resumed.params.tau_acc_s * rate_hz)  # motion state restarted
    err = inclination_error_deg(resumed.update(walk.gyr_rad_s, walk.acc_m_s2), walk.q_sensor_to_earth)
    assert np.max(err[n:]) < 1.0, np.max(err[n:])  # measured 0.65-0.67 deg
    assert np.max(err_fresh[n : 15 * n]) > 3.0  # learning from zero while walking: 4.6-4.9 deg
    # the vertical component, unobservable while walking, is still the learnt one
    assert np.degrees(resumed.gyr_bias_rad_s[2]) == pytest.approx(BIAS_DPS[2], abs=0.05)
    assert abs(np.degrees(fresh.gyr_bias_rad_s[2])) < 0.5


def test_resume_grows_the_bias_uncertainty_for_the_pause_up_to_the_initial():
    f = OrientationFilter(50.0)
    p0 = math.radians(f.params.bias_sigma_init_dps) ** 2
    state = f.state
    state[8:11] = np.radians([0.5, -3.0, 0.2])  # -3 deg/s: beyond this filter's clip
    state[11:20] = np.diag([1e-8, 2e-8, p0]).ravel()  # _S_P, row-major
    per_s = math.radians(0.1) ** 2 / f.params.bias_forgetting_time_s
    f.resume(state, elapsed_s=100.0)
    s = f.state
    np.testing.assert_allclose(s[[11, 15, 19]], [1e-8 + 100 * per_s, 2e-8 + 100 * per_s, p0], rtol=1e-12)
    np.testing.assert_allclose(np.degrees(f.gyr_bias_rad_s), [0.5, -f.params.bias_clip_dps, 0.2])
    f.resume(state, elapsed_s=1e6)
    np.testing.assert_allclose(f.state[[11, 15, 19]], [p0, p0, p0])
    with pytest.raises(ValueError, match="shape"):
        f.resume(state[:-1])
    with pytest.raises(ValueError, match="elapsed_s"):
        f.resume(state, elapsed_s=-1.0)


# ---------------------------------------------------------------------------------------
# the keeper: the state in the device's outbox file, and when it is not used


class Clock:
    def __init__(self) -> None:
        self.ns = T0_NS

    def __call__(self) -> int:
        return self.ns


@pytest.fixture
def bridge_cfg(tmp_path):
    cfg = Config.load({})
    return dataclasses.replace(cfg.bridge, outbox_dir=str(tmp_path))


def learnt_filter() -> OrientationFilter:
    f = OrientationFilter(50.0)
    state = f.state
    state[8:11] = np.radians(BIAS_DPS)
    f.state = state
    return f


def test_the_kept_state_is_resumed_by_the_next_bridge_of_the_same_sensor(bridge_cfg, caplog):
    clock = Clock()
    with_box = open_outbox(bridge_cfg, "p-k", "d-k")
    FilterStateKeeper(with_box, lambda: "AA:BB", clock).save(learnt_filter())
    with_box.close()  # the bridge stops; the file stays
    clock.ns += 3600 * 10**9
    box = open_outbox(bridge_cfg, "p-k", "d-k")
    f = OrientationFilter(100.0)
    with caplog.at_level(logging.INFO, logger="spinewatch.service.bridge.filter_state"):
        assert FilterStateKeeper(box, lambda: "AA:BB", clock).restore(f)
    box.close()
    np.testing.assert_allclose(np.degrees(f.gyr_bias_rad_s), BIAS_DPS)
    assert "resumed" in caplog.text and "saved 3600 s ago at 50 Hz" in caplog.text
    assert "+1.200 -0.900 +1.500 deg/s" in caplog.text


@pytest.mark.parametrize(("case", "level", "reason"), [
    ("other sensor", logging.WARNING, "learnt from sensor AA:BB, this is CC:DD"),
    ("too old", logging.INFO, "saved 24.1 h ago"),
    ("clock went back", logging.WARNING, "in the future"),
    ("older version", logging.WARNING, f"state has 70 numbers, this one has {STATE_LEN}"),
    ("other format", logging.WARNING, "record format 2"),
    ("garbage", logging.WARNING, "unreadable"),
    ("same recording replayed", logging.INFO, "learnt from this recording, whose replay restarts"),
    ("not finite", logging.WARNING, "finite"),
])
def test_a_kept_state_that_cannot_be_this_sensors_is_not_used(bridge_cfg, caplog, case, level, reason):
    clock = Clock()
    box = open_outbox(bridge_cfg, "p-k", "d-k")
    try:
        FilterStateKeeper(box, lambda: "AA:BB", clock, stream="replay:ab12").save(learnt_filter())
        sensor, stream = "AA:BB", "replay:cd34"
        kept = json.loads(box.get_kept(KEY) or b"")
        if case == "other sensor":
            sensor = "CC:DD"
        elif case == "too old":
            clock.ns += int(24.1 * 3600) * 10**9
        elif case == "clock went back":
            clock.ns -= 120 * 10**9
        elif case == "older version":
            box.set_kept(KEY, json.dumps({**kept, "state_len": 70, "state": kept["state"][:70]}).encode())
        elif case == "other format":
            box.set_kept(KEY, json.dumps({**kept, "format": 2}).encode())
        elif case == "garbage":
            box.set_kept(KEY, b"\x00not json")
        elif case == "same recording replayed":
            stream = "replay:ab12"
        elif case == "not finite":
            box.set_kept(KEY, json.dumps({**kept, "state": [math.nan] * STATE_LEN}).encode())
        f = OrientationFilter(50.0)
        before = f.state
        with caplog.at_level(logging.INFO, logger="spinewatch.service.bridge.filter_state"):
            assert not FilterStateKeeper(box, lambda: sensor, clock, stream=stream).restore(f)
    finally:
        box.close()
    np.testing.assert_array_equal(f.state, before)  # starts from zero, as without a kept state
    rec = [r for r in caplog.records if "not resuming" in r.message or "ignoring" in r.message]
    assert len(rec) == 1 and rec[0].levelno == level and reason in rec[0].message, caplog.text


def test_a_saved_state_round_trips_exactly():
    f = learnt_filter()
    f.update(np.full((10, 3), 0.01), np.tile([0.3, 0.1, 9.8], (10, 1)))
    s = SavedState.decode(SavedState(REPLAY_SENSOR, "replay:ab12", 50.0, T0_NS, f.state.tolist()).encode())
    np.testing.assert_array_equal(s.state, f.state)
    assert (s.sensor, s.stream, s.rate_hz, s.saved_utc_ns) == (REPLAY_SENSOR, "replay:ab12", 50.0, T0_NS)


# ---------------------------------------------------------------------------------------
# the bridge: one run learns, the next resumes


@needs_jit
@pytest.mark.network
def test_a_restarted_bridge_resumes_the_bias_its_last_run_learnt(mosquitto, tmp_path):
    cfg = Config.load({"SPINEWATCH_MQTT_URL": mosquitto.url})
    cfg = dataclasses.replace(cfg, bridge=dataclasses.replace(cfg.bridge, outbox_dir=str(tmp_path)))
    params = PostureParams(calibration_s=1.0)

    def run(script: PostureScript, keep: bool, device: str = "d-r") -> tuple[PostureTracker, FilterStateKeeper]:
        source = SimulatedPatient(script, rate_hz=50.0, seed=2, batch_samples=10, start_utc_ns=T0_NS,
                                  errors=ERRORS)
        tracker = PostureTracker(50.0, params)
        box = open_outbox(cfg.bridge, "p-r", device)
        keeper = FilterStateKeeper(box, lambda: REPLAY_SENSOR)
        try:
            with Publisher(cfg.mqtt, "p-r", device, "5", box) as pub:
                asyncio.run(run_bridge(source, tracker, pub, T0_NS, status_interval_s=0.05,
                                       state_keeper=keeper if keep else None))
        finally:
            box.close()
        return tracker, keeper

    _, first = run(SIT, keep=True)
    assert first.restored is None and first.saves >= 1
    resumed, second = run(WALK, keep=True)
    assert second.restored is not None
    np.testing.assert_allclose(np.degrees(second.restored.state[8:11]), BIAS_DPS, atol=0.05)
    np.testing.assert_allclose(np.degrees(resumed.orientation.gyr_bias_rad_s), BIAS_DPS, atol=0.05)
    # without the kept state (another device's outbox), 30 s of walking learn no vertical bias
    fresh, _ = run(WALK, keep=True, device="d-other")
    assert abs(np.degrees(fresh.orientation.gyr_bias_rad_s[2])) < 0.5
