"""`spinewatch calibrate`: guided neutral capture, quality check, forward-bend yaw, stored and applied.

The simulated patient (spinewatch.firmware_bridge.sim.calibration) follows the command's
sample-paced timeline with a known sensor mounting, so the truth is known. Network tests
use real Mosquitto, the real ingest worker and real InfluxDB; the running bridge reads a
fake BLE sensor (tests/fakes/fake_bleak.py), the only fake.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json

import numpy as np
import pytest
from _mqtt_helpers import TestClient
from _waiting import wait_until
from fakes.fake_bleak import FakeRadio, FakeSensor

from spinewatch.errors import ConfigError
from spinewatch.firmware_bridge.sim import (
    Mounting,
    PostureScript,
    Segment,
    SimulatedPatient,
)
from spinewatch.firmware_bridge.sim.calibration import calibration_script
from spinewatch.service.bridge.calibration_session import (
    CalibrationPlan,
    CalibrationRejected,
    Prompt,
    run_calibration,
)
from spinewatch.service.transport.patient_config import (
    PatientConfig,
    decode_patient_config,
    encode_patient_config,
)
from spinewatch.signal import PostureTracker
from spinewatch.signal.angles import neutral_alignment, trunk_angles_deg, yaw_rotation
from spinewatch.signal.calibration import assess_neutral, bend_yaw_deg

RATE_HZ = 100.0
G = 9.80665
PLAN = CalibrationPlan()
UP_TOL_DEG = 0.5  # neutral up vs the simulated mounting's truth
YAW_TOL_DEG = 1.5  # the guided-bend yaw vs the simulated mounting's yaw


def true_up_sensor(m: Mounting) -> np.ndarray:
    """Earth up in the sensor frame of a patient sitting exactly upright."""
    return m.r_sensor_to_body.T @ np.array([0.0, 0.0, 1.0])


def calibrate_sim(behaviour: str, mounting: Mounting | None = None, plan: CalibrationPlan = PLAN,
                  prompts: list[Prompt] | None = None):
    script = calibration_script(behaviour, plan.countdown_s, plan.capture_s, plan.bend_s, plan.attempts)
    src = SimulatedPatient(script, RATE_HZ, batch_samples=7, mounting=mounting or Mounting())

    async def go():
        async with src:
            return await run_calibration(src, "p-1", "d-1", plan, prompts.append if prompts is not None else None,
                                         author="pt-1", clock_utc_ns=lambda: 1_764_000_000 * 10**9)

    return asyncio.run(go())


def angle_deg(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.degrees(np.arccos(np.clip(a @ b / np.linalg.norm(a) / np.linalg.norm(b), -1, 1))))


# ----------------------------------------------------------------------------- the session


@pytest.mark.parametrize(("pitch", "roll", "yaw"), [(4.0, -3.0, 0.0), (10.0, 6.0, -30.0), (-6.0, 3.0, 60.0)])
def test_neutral_and_yaw_match_the_simulated_mounting(pitch, roll, yaw):
    m = Mounting(pitch_deg=pitch, roll_deg=roll, yaw_deg=yaw)
    res = calibrate_sim("still", m)
    cal = res.calibration
    assert angle_deg(cal.up_sensor, true_up_sensor(m)) < UP_TOL_DEG
    assert abs(cal.mount_yaw_deg - yaw) < YAW_TOL_DEG
    assert res.attempts == 1 and cal.author == "pt-1" and cal.duration_s == PLAN.capture_s
    assert cal.gyr_rms_deg_s < 2.0 and cal.acc_std_m_s2 < 0.05  # the simulated sensor's bias and noise
    # angles computed with this calibration follow the truth: a 30 deg slouch reads 30 deg, no lateral leak
    slouch = SimulatedPatient(PostureScript((Segment("sit", 0, 5), Segment("slouch", 5, 30, 30.0, 0.0))),
                              RATE_HZ, mounting=m).synthesizer.chunk(0, 3000)
    tracker = PostureTracker(RATE_HZ)
    tracker.set_neutral(cal.up_sensor, cal.mount_yaw_deg)
    out = tracker.update(slouch.gyr_rad_s, slouch.acc_m_s2)
    held = slice(1000, 3000)
    assert abs(np.median(out.flexion_deg[held]) - 30.0) < 1.5
    assert abs(np.median(out.lateral_deg[held])) < 1.5
    assert abs(np.median(out.flexion_deg[:400])) < 1.0  # upright reads 0 from the first samples


def test_the_countdown_and_the_capture_are_paced_by_samples_and_reported():
    prompts: list[Prompt] = []
    calibrate_sim("still", prompts=prompts)
    assert [p.value for p in prompts if p.kind == "countdown"] == [3, 2, 1]
    progress = [p.value for p in prompts if p.kind == "progress"]
    assert progress.count(1.0) == 2  # neutral capture and bend, each to its last sample
    cut = progress.index(1.0) + 1
    for bar in (progress[:cut], progress[cut:]):  # each bar rises, one step per batch received
        assert bar == sorted(bar) and len(bar) == len(set(bar)) > 100
    texts = [p.text for p in prompts if p.kind == "instruction"]
    assert texts[0].startswith("Sit upright") and "bend straight forward" in texts[-1]
    assert prompts[-1].kind == "accepted"


def test_a_capture_with_motion_is_refused_then_the_next_attempt_is_taken():
    prompts: list[Prompt] = []
    res = calibrate_sim("fidget-once", prompts=prompts)
    rejected = [p.text for p in prompts if p.kind == "rejected"]
    assert len(rejected) == 1 and "moved" in rejected[0] and "deg/s" in rejected[0]
    assert res.attempts == 2
    assert angle_deg(res.calibration.up_sensor, true_up_sensor(Mounting())) < UP_TOL_DEG


@pytest.mark.parametrize(("behaviour", "says"), [("fidgeting", "moved"), ("walking", "moved"),
                                                 ("lying", "lying"), ("shallow-bend", "bend further")])
def test_a_patient_who_never_complies_is_refused_after_every_attempt(behaviour, says):
    prompts: list[Prompt] = []
    with pytest.raises(CalibrationRejected) as ei:
        calibrate_sim(behaviour, prompts=prompts)
    assert says in str(ei.value) and ei.value.attempts == PLAN.attempts
    assert len([p for p in prompts if p.kind == "rejected"]) == PLAN.attempts
    assert not [p for p in prompts if p.kind == "accepted"]


def test_samples_lost_over_bluetooth_during_the_capture_refuse_it():
    """A real BleSource on the fake radio; the sensor loses notifications mid-capture."""
    from spinewatch.firmware_bridge.ble import BleSource
    from spinewatch.firmware_bridge.ble_config import BleConfig
    from spinewatch.firmware_bridge.profiles import get_profile

    plan = dataclasses.replace(PLAN, bend=False)
    radio = FakeRadio()
    addr = "C0:FF:EE:00:00:C2"
    sensor = radio.add(FakeSensor(addr, get_profile("spinewatch"), speed=20.0,
                                  script=PostureScript((Segment("sit", 0, 120),))))
    src = BleSource(get_profile("spinewatch"), addr, config=BleConfig(scan_timeout_s=2.0),
                    client_backend=radio.client_backend, scanner_backend=radio.scanner_backend,
                    backoff=lambda a, e: 0.0)
    prompts: list[Prompt] = []
    lost: list[bool] = []

    def on_prompt(p: Prompt) -> None:
        prompts.append(p)
        if p.kind == "progress" and p.value > 0.3 and not lost:  # a third into the first capture
            sensor.lose_in_air(4)  # 4 notifications of 5 samples never arrive
            lost.append(True)

    async def go():
        async with src, asyncio.timeout(30):
            return await run_calibration(src, "p-1", "d-1", plan, on_prompt)

    res = asyncio.run(go())
    rejected = [p.text for p in prompts if p.kind == "rejected"]
    assert len(rejected) == 1 and "samples were lost" in rejected[0]
    assert res.attempts == 2 and src.counters.samples_lost >= 20


def test_no_bend_gives_no_yaw():
    res = calibrate_sim("still", plan=dataclasses.replace(PLAN, bend=False))
    assert res.calibration.mount_yaw_deg is None and res.bend is None


# ----------------------------------------------------------------------------- the pure checks


def still_block(n=800, up=(0.0, 0.0, 1.0), seed=0):
    rng = np.random.default_rng(seed)
    u = np.asarray(up, float) / np.linalg.norm(up)
    acc = G * u + rng.normal(0, 0.02, (n, 3))
    gyr = np.radians(0.8) + rng.normal(0, np.radians(0.1), (n, 3))  # bias + noise, rad/s
    return gyr, acc


def test_a_still_upright_block_passes_with_its_figures():
    gyr, acc = still_block(up=(0.1, 0.0, 1.0))
    c = assess_neutral(gyr, acc, RATE_HZ)
    assert c.ok and angle_deg(c.up_sensor, (0.1, 0.0, 1.0)) < 0.1
    assert abs(c.upright_tilt_deg - np.degrees(np.arctan(0.1))) < 0.1
    assert 1.3 < c.gyr_rms_deg_s < 1.5  # sqrt(3) * 0.8 deg/s of bias


def test_each_quality_limit_refuses_on_its_own():
    gyr, acc = still_block()
    # |acc| shaking by 0.5 m/s^2 along the up axis (a bumpy ride), no rotation
    shaken = acc.copy()
    shaken[:, 2] += 0.5 * np.sin(np.arange(len(acc)) * 0.7)
    c = assess_neutral(gyr, shaken, RATE_HZ)
    assert not c.ok and "acceleration varied" in c.problem and "m/s^2" in c.problem
    # a slow lean of 8 deg over the capture: too gentle for the gyroscope test, caught as drift
    a = np.radians(np.linspace(0, 8, len(acc)))
    leaning = np.column_stack([G * np.sin(a), np.zeros_like(a), G * np.cos(a)])
    c = assess_neutral(gyr, leaning, RATE_HZ)
    assert not c.ok and "drifted" in c.problem and c.gyr_rms_deg_s < 5
    # lying on the back: up along the body's -x
    c = assess_neutral(*still_block(up=(-1.0, 0.0, 0.05)), RATE_HZ)
    assert not c.ok and "lying" in c.problem
    # spinning at 10 deg/s
    c = assess_neutral(gyr + np.radians(10.0), acc, RATE_HZ)
    assert not c.ok and "angular rate" in c.problem


def test_bad_blocks_are_value_errors():
    gyr, acc = still_block(10)
    with pytest.raises(ValueError, match="acc_m_s2"):
        assess_neutral(gyr, acc[:, :2], RATE_HZ)
    acc[3, 1] = np.nan
    with pytest.raises(ValueError, match="finite"):
        assess_neutral(gyr, acc, RATE_HZ)


def test_a_bend_that_is_too_small_says_so():
    _, acc = still_block(800)
    c = bend_yaw_deg([0, 0, 1], acc, RATE_HZ)
    assert not c.ok and c.mount_yaw_deg is None and "--no-bend" in c.problem


# ----------------------------------------------------------------------------- config and tracker


def test_a_stored_calibration_survives_the_config_codec_and_is_validated():
    cfg = PatientConfig(threshold_deg=25.0, neutral_up_sensor=(0.0, 0.6, 0.8), mount_yaw_deg=-12.5,
                        calibrated_ns=1_764_000_000 * 10**9)
    back = decode_patient_config(encode_patient_config(cfg))
    assert back.neutral_up_sensor == pytest.approx((0.0, 0.6, 0.8)) and back.mount_yaw_deg == -12.5
    assert back.calibrated_ns == cfg.calibrated_ns and back.threshold_deg == 25.0
    assert decode_patient_config(b'{"v":1}').neutral_up_sensor is None  # no calibration: the bridge's auto-capture
    for bad, key in (({"neutral_up_sensor": (0.0, 0.0, 2.0)}, "neutral_up_sensor"),
                     ({"neutral_up_sensor": (0.0, 1.0)}, "neutral_up_sensor"),
                     ({"mount_yaw_deg": 10.0}, "mount_yaw_deg"),
                     ({"neutral_up_sensor": (0.0, 0.0, 1.0), "mount_yaw_deg": -180.0}, "mount_yaw_deg")):
        with pytest.raises(ConfigError, match=key):
            PatientConfig(**bad)


def test_set_neutral_replaces_the_auto_capture_in_the_middle_of_a_stream():
    sim = SimulatedPatient(PostureScript((Segment("sit", 0, 60),)), RATE_HZ, mounting=Mounting(0, 0, 0))
    c = sim.synthesizer.chunk(0, 3000)
    tracker = PostureTracker(RATE_HZ)
    before = tracker.update(c.gyr_rad_s[:1500], c.acc_m_s2[:1500])
    assert not tracker.neutral_fixed and abs(np.median(before.flexion_deg[1100:])) < 0.5
    tilted = (np.sin(np.radians(10.0)), 0.0, np.cos(np.radians(10.0)))  # neutral leaning 10 deg back
    tracker.set_neutral(tilted, None)
    after = tracker.update(c.gyr_rad_s[1500:], c.acc_m_s2[1500:])
    assert tracker.neutral_fixed and tracker.params.mount_yaw_deg == 0.0
    assert abs(np.median(after.flexion_deg) - 10.0) < 0.5  # upright is now 10 deg forward of neutral


# ----------------------------------------------------------------------------- the command, real servers


@pytest.fixture
def broker_env(fresh_mosquitto, monkeypatch):
    monkeypatch.setenv("SPINEWATCH_MQTT_URL", fresh_mosquitto.url)
    monkeypatch.setenv("SPINEWATCH_MQTT_PROTOCOL", "5")
    return fresh_mosquitto


def run_cli(*argv: str) -> int:
    from spinewatch.service.cli import main

    return main(["calibrate", *argv])


def nothing_published_before(broker, patient: str, device: str) -> bool:
    """True if nothing (retained or live) reached ``spinewatch/v1/{patient}/{device}/...``:
    a marker published now must be the first message a fresh subscriber gets."""
    w = TestClient("127.0.0.1", broker.port, mqtt5=True)
    w.connect()
    w.subscribe(f"spinewatch/v1/{patient}/{device}/#")
    marker = f"spinewatch/v1/{patient}/{device}/marker"
    w.publish(marker, b"x")
    first = w.get().topic
    w.close()
    return first == marker


@pytest.mark.network
def test_calibrate_stores_the_result_in_the_config_and_ingest_stores_the_event(broker_env, influxdb1, capsys):
    from _mqtt_helpers import started_ingest

    from spinewatch.service.cli import main

    store, w = started_ingest(broker_env.url, influxdb1.url, "cal")
    db = store.db
    try:
        assert main(["config", "set", "--patient", "p-c", "--device", "d-c", "threshold_deg=25", "delay_s=60"]) == 0
        assert run_cli("--patient", "p-c", "--device", "d-c", "--simulate", "still", "--sim-yaw-deg", "25",
                       "--speed", "max", "--author", "pt-7") == 0
        out = capsys.readouterr()
        assert "calibrated p-c/d-c" in out.out and "+25." in out.out
        assert "Sit upright" in out.err and "3...  2...  1..." in out.err

        def rows():
            return influxdb1.points(
                "SELECT up_x, up_y, up_z, mount_yaw_deg, gyr_rms_deg_s, author FROM calibration", db)

        wait_until(lambda: len(rows()) == 1, what="the calibration point in InfluxDB")
        (r,) = rows()
        truth = true_up_sensor(Mounting(yaw_deg=25.0))
        assert angle_deg((r["up_x"], r["up_y"], r["up_z"]), truth) < UP_TOL_DEG
        assert abs(r["mount_yaw_deg"] - 25.0) < YAW_TOL_DEG and r["author"] == "pt-7" and r["gyr_rms_deg_s"] < 2
    finally:
        w.stop()
    # the retained config holds the calibration and kept the earlier settings; config set keeps it in turn
    assert main(["config", "set", "--patient", "p-c", "--device", "d-c", "threshold_deg=22"]) == 0
    capsys.readouterr()
    assert main(["config", "get", "--patient", "p-c", "--device", "d-c"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["threshold_deg"] == 22.0 and got["haptic"]["delay_s"] == 60.0
    assert angle_deg(got["neutral_up_sensor"], (r["up_x"], r["up_y"], r["up_z"])) < 1e-3
    assert got["mount_yaw_deg"] == pytest.approx(r["mount_yaw_deg"], abs=0.01) and got["calibrated_ns"] > 0


def test_calibrate_has_help_with_an_example(capsys):
    from spinewatch.service.cli import main

    with pytest.raises(SystemExit) as ei:
        main(["calibrate", "--help"])
    out = capsys.readouterr().out
    assert ei.value.code == 0 and "example: " in out and "--simulate" in out and "--no-bend" in out


@pytest.mark.network
@pytest.mark.parametrize(("behaviour", "says"), [("fidgeting", "moved"), ("lying", "lying")])
def test_a_refused_calibration_exits_non_zero_and_publishes_nothing(broker_env, capsys, behaviour, says):
    rc = run_cli("--patient", "p-r", "--device", "d-r", "--simulate", behaviour, "--speed", "max", "--attempts", "2")
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and err[-1].startswith("spinewatch: calibration failed") and says in err[-1]
    assert sum("not accepted" in line for line in err) == 2
    assert nothing_published_before(broker_env, "p-r", "d-r")


@pytest.mark.network
@pytest.mark.parametrize(("args", "key"), [
    (["--patient", "p/1", "--device", "d-1"], "--patient"),
    (["--patient", "p-1", "--device", "d 1"], "--device"),
    (["--patient", "p-1", "--device", "d-1", "--profile", "polar"], "--profile"),
    (["--patient", "p-1", "--device", "d-1", "--mount", "+X+X+X"], "--mount"),
    (["--patient", "p-1", "--device", "d-1", "--capture", "0.2"], "--capture"),
    (["--patient", "p-1", "--device", "d-1", "--attempts", "0"], "--attempts"),
])
def test_bad_input_is_one_line_and_nothing_is_published(broker_env, capsys, args, key):
    assert run_cli(*args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and key in err[0]
    patient, device = args[1].replace("/", "_"), args[3].replace(" ", "_")
    assert nothing_published_before(broker_env, patient, device)


@pytest.mark.network
def test_a_running_bridge_applies_a_new_calibration_live_and_a_restarted_one_from_the_start(broker_env, monkeypatch,
                                                                                            capsys):
    """The bridge auto-captures neutral, then `calibrate` publishes one tilted by 10 deg (the
    simulated session's sensor sat at pitch 14 instead of 4): flexion moves to what that
    neutral implies, live; a bridge started afterwards uses it from its first samples. While
    the bridge holds the sensor, `calibrate` on the real sensor refuses in one line."""
    from spinewatch.firmware_bridge import ble
    from spinewatch.firmware_bridge.ble_config import BleConfig
    from spinewatch.firmware_bridge.profiles import get_profile
    from spinewatch.service.bridge.live_config import ConfigSubscriber
    from spinewatch.service.bridge.loop import run_bridge
    from spinewatch.service.bridge.publisher import Publisher
    from spinewatch.service.config import Config
    from spinewatch.signal import PostureParams

    patient, device, addr = "p-live", "d-live", "C0:FF:EE:00:00:C1"
    mqtt_cfg = Config.load({"SPINEWATCH_MQTT_URL": broker_env.url}).mqtt
    radio = FakeRadio()
    mount = Mounting()  # the fake sensor's: the simulator's default (pitch 4, roll -3)
    sensor = radio.add(FakeSensor(addr, get_profile("spinewatch"), speed=4.0,
                                  script=PostureScript((Segment("sit", 0, 200),))))
    fake_ble = functools.partial(ble.BleSource, client_backend=radio.client_backend,
                                 scanner_backend=radio.scanner_backend, backoff=lambda a, e: 0.05)
    monkeypatch.setattr(ble, "BleSource", fake_ble)  # the CLI's sensor is on the fake radio too
    up_now = true_up_sensor(mount)

    def bridge_source():
        return fake_ble(get_profile("spinewatch"), addr, config=BleConfig(scan_timeout_s=2.0))

    applied: list[int] = []  # how many status updates had been seen when a config was applied

    async def bridge(tracker, until) -> list:
        flex: list[float] = []
        src = bridge_source()
        with Publisher(mqtt_cfg, patient, device, "5") as pub:
            async with ConfigSubscriber(mqtt_cfg, patient, device, "5") as sub:
                task = asyncio.create_task(run_bridge(src, tracker, pub, 0, publish_interval_s=0.1,
                                                      on_status=lambda st: flex.append(st.flexion_deg),
                                                      config_updates=sub,
                                                      on_config=lambda c: applied.append(len(flex))))
                async with asyncio.timeout(30):
                    await until(flex)
                src.stop()
                async with asyncio.timeout(10):
                    await task
        return flex

    async def first(flex, pred):
        # polls like _waiting.wait_until; the deadline is the caller's asyncio.timeout
        while not pred(flex):  # noqa: ASYNC110
            await asyncio.sleep(0.05)  # sync-ok: bounded by the caller's asyncio.timeout

    results: dict[str, object] = {}

    async def live_then_calibrate(flex):
        await first(flex, lambda f: len(f) > 40)  # 4 s of sensor time: auto-captured (2 s) and settled
        results["before"] = float(np.median(flex[-10:]))
        cli = functools.partial(run_cli, "--patient", patient, "--device", device)
        loop = asyncio.get_running_loop()
        # the real sensor is held by this bridge: refused in one line, by status and by connection
        results["busy_rc"] = await loop.run_in_executor(None, cli, "--sensor", addr)
        results["busy_err"] = capsys.readouterr().err.strip().splitlines()
        results["held_rc"] = await loop.run_in_executor(
            None, functools.partial(run_cli, "--patient", patient, "--device", "d-other", "--sensor", addr,
                                    "--connect-timeout", "1"))
        results["held_err"] = capsys.readouterr().err.strip().splitlines()
        assert await loop.run_in_executor(None, cli, "--simulate", "still", "--sim-pitch-deg", "14",
                                          "--speed", "max") == 0
        await first(applied, lambda a: len(a) > 0)
        await first(flex, lambda f: len(f) > applied[0] + 20)
        results["after"] = float(np.median(flex[applied[0] + 10:]))

    tracker = PostureTracker(100.0, PostureParams(calibration_s=2.0))
    asyncio.run(bridge(tracker, live_then_calibrate))
    assert results["busy_rc"] == 1 and len(results["busy_err"]) == 1
    assert f"stop the bridge for {patient}/{device} first" in results["busy_err"][0]
    assert results["held_rc"] == 1 and "no sensor connected within 1 s" in results["held_err"][-1]
    assert sensor.connect_count == 1  # calibrate never took the sensor from the bridge
    stored = tracker.neutral_up_sensor
    assert tracker.neutral_fixed
    r = yaw_rotation(tracker.params.mount_yaw_deg) @ neutral_alignment(stored)
    expected = float(trunk_angles_deg((r @ up_now)[None, :])[0][0])
    assert abs(expected) > 7  # a real change: the stored neutral is ~10 deg off this sensor's upright
    assert abs(results["before"]) < 1.0
    assert abs(results["after"] - expected) < 1.5
    # a bridge started now finds the stored calibration retained and uses it, not its auto-capture
    restarted = PostureTracker(100.0, PostureParams(calibration_s=2.0))
    applied.clear()
    flex2 = asyncio.run(bridge(restarted, lambda f: first(f, lambda x: len(x) > 30)))
    assert restarted.neutral_fixed and applied[0] < 5  # the retained config came with the first samples
    assert abs(np.median(flex2[-10:]) - expected) < 1.5
