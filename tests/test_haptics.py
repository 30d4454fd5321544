"""Haptic feedback: the pure trigger, the patient config codec, and live config + buzz end to end."""

from __future__ import annotations

import asyncio
import json
import time

import numpy as np
import paho.mqtt.client as paho
import pytest
from _mqtt_helpers import TestClient
from fakes.fake_bleak import FakeRadio, FakeSensor

from spinewatch.errors import ConfigError
from spinewatch.firmware_bridge.ble import BleSource
from spinewatch.firmware_bridge.ble_config import BleConfig
from spinewatch.firmware_bridge.profiles import get_profile
from spinewatch.firmware_bridge.profiles.spinewatch import decode_haptic
from spinewatch.firmware_bridge.sim import PostureScript, Segment
from spinewatch.service.bridge.live_config import ConfigSubscriber
from spinewatch.service.bridge.loop import HapticEvent, run_bridge
from spinewatch.service.bridge.publisher import Publisher
from spinewatch.service.config import Config
from spinewatch.service.transport import wire
from spinewatch.service.transport.patient_config import (
    HapticConfig,
    PatientConfig,
    QuietHours,
    decode_patient_config,
    encode_patient_config,
    in_quiet_hours,
)
from spinewatch.signal import PostureParams, PostureTracker
from spinewatch.signal.haptic_trigger import HapticSettings, HapticTrigger

DT_NS = 10_000_000

# ------------------------------------------------------------------ trigger


def _run(trigger, state, settings, chunk=1, activity=None, quiet=False):
    state = np.asarray(state, np.int8)
    act = np.zeros_like(state) if activity is None else np.asarray(activity, np.int8)
    hits = []
    for i in range(0, len(state), chunk):
        ks = trigger.update(state[i:i + chunk], act[i:i + chunk], i * DT_NS, DT_NS, settings, quiet)
        hits += [i + k for k in ks]
    return hits


EP = [0, 0] + [1] * 8 + [0] * 3 + [1] * 8  # episodes confirmed at 2 and 13


@pytest.mark.parametrize(
    ("settings", "activity", "quiet", "hits"),
    [
        (HapticSettings(delay_s=0.0, min_interval_s=0), None, False, [2, 13]),
        (HapticSettings(delay_s=0.05, min_interval_s=0), None, False, [7, 18]),
        (HapticSettings(delay_s=0.07, min_interval_s=0), None, False, [9, 20]),  # last sample
        (HapticSettings(delay_s=0.08, min_interval_s=0), None, False, []),  # episode over first
        (HapticSettings(delay_s=0.09, min_interval_s=0), None, False, []),  # episode over first
        (HapticSettings(delay_s=0.0, min_interval_s=0.2), None, False, [2]),  # rate-limited
        (HapticSettings(delay_s=0.0, min_interval_s=0.11), None, False, [2, 13]),
        (HapticSettings(enabled=False), None, False, []),
        (HapticSettings(delay_s=0.0, min_interval_s=0), None, True, []),  # quiet hours
        (HapticSettings(delay_s=0.0, min_interval_s=0, muted_activities=frozenset({3})),
         [3] * 10 + [2] * 11, False, [13]),
    ],
)
@pytest.mark.parametrize("chunk", [1, 4, 100])
def test_haptic_trigger_table(settings, activity, quiet, hits, chunk):
    assert _run(HapticTrigger(), EP, settings, chunk, activity, quiet) == hits


# ------------------------------------------------------------------ patient config


def test_patient_config_round_trips_and_defaults():
    cfg = PatientConfig(threshold_deg=15.0, haptic=HapticConfig(delay_s=5.0, pattern="long", response_window_s=90.0),
                        quiet_hours=(("22:00", "07:00"),), timezone="Europe/Berlin",
                        alerts_off_activities=("lying",))
    assert decode_patient_config(encode_patient_config(cfg)) == cfg
    assert decode_patient_config(b"{}") == PatientConfig()
    hs = cfg.haptic_settings()
    assert hs.pattern == "long" and hs.muted_activities == frozenset({1})


@pytest.mark.parametrize(
    ("payload", "key"),
    [
        (b"not json", "config"),
        (b"[1]", "config"),
        (b'{"v": 2}', "v"),
        (b'{"treshold_deg": 20}', "treshold_deg"),
        (b'{"threshold_deg": "high"}', "threshold_deg"),
        (b'{"threshold_deg": 95}', "threshold_deg"),
        (b'{"threshold_deg": 10, "hysteresis_deg": 10}', "hysteresis_deg"),
        (b'{"haptic": {"pattern": "buzz"}}', "haptic.pattern"),
        (b'{"haptic": {"intensity_pct": 101}}', "haptic.intensity_pct"),
        (b'{"haptic": {"enabled": 1}}', "haptic.enabled"),
        (b'{"haptic": {"volume": 1}}', "haptic.volume"),
        (b'{"haptic": {"response_window_s": 0}}', "haptic.response_window_s"),
        (b'{"haptic": {"response_window_s": 3601}}', "haptic.response_window_s"),
        (b'{"quiet_hours": [["25:00", "07:00"]]}', "quiet_hours[0]"),
        (b'{"timezone": "Mars/Olympus"}', "timezone"),
        (b'{"alerts_off_activities": ["sleeping"]}', "alerts_off_activities"),
    ],
)
def test_invalid_patient_configs_name_the_key(payload, key):
    with pytest.raises(ConfigError) as ei:
        decode_patient_config(payload)
    assert ei.value.key == key


@pytest.mark.parametrize(
    ("windows", "tz", "utc", "quiet"),
    [
        ((("22:00", "07:00"),), "UTC", "2026-01-01T23:30:00", True),
        ((("22:00", "07:00"),), "UTC", "2026-01-01T06:59:00", True),
        ((("22:00", "07:00"),), "UTC", "2026-01-01T07:00:00", False),
        ((("12:00", "13:00"),), "UTC", "2026-01-01T12:30:00", True),
        ((("12:00", "13:00"),), "Europe/Berlin", "2026-01-01T12:30:00", False),  # 13:30 local
        ((("12:00", "13:00"),), "Europe/Berlin", "2026-01-01T11:30:00", True),
        ((), "UTC", "2026-01-01T12:30:00", False),
    ],
)
def test_quiet_hours(windows, tz, utc, quiet):
    import datetime as dt

    ns = int(dt.datetime.fromisoformat(utc).replace(tzinfo=dt.UTC).timestamp()) * 10**9
    assert in_quiet_hours(PatientConfig(quiet_hours=windows, timezone=tz), ns) is quiet


@pytest.mark.parametrize(
    ("windows", "tz", "start"),
    [
        ((("01:30", "03:00"), ("22:00", "07:00")), "Europe/Berlin", "2026-03-28T23:00:00"),  # DST starts
        ((("01:30", "03:00"),), "Europe/Berlin", "2026-10-24T22:00:00"),  # DST ends
        ((("05:45", "06:15"),), "Asia/Kathmandu", "2026-01-01T23:00:00"),  # +05:45
        ((), "UTC", "2026-01-01T00:00:00"),
    ],
)
def test_quiet_hours_cache_answers_as_in_quiet_hours(windows, tz, start):
    """QuietHours asks in_quiet_hours once per UTC minute; every answer must still be exact."""
    import datetime as dt

    cfg = PatientConfig(quiet_hours=windows, timezone=tz)
    quiet = QuietHours(cfg)
    t0 = int(dt.datetime.fromisoformat(start).replace(tzinfo=dt.UTC).timestamp()) * 10**9
    seen = set()
    for k in range(0, 10 * 3600, 7):  # 10 h in 7-s steps: every minute boundary hit at several phases
        t = t0 + k * 10**9 + 123_456
        seen.add(quiet(t))
        assert quiet(t) is in_quiet_hours(cfg, t), t
    assert seen == ({True, False} if windows else {False})


# ------------------------------------------------------------------ end to end with a real broker

SCRIPT = PostureScript((
    Segment("calibrate", 0.0, 4.0),
    Segment("sit", 4.0, 6.0),
    Segment("slouch", 6.0, 13.0, flexion_deg=30.0),
    Segment("sit", 13.0, 18.0),
    Segment("slouch", 18.0, 26.0, flexion_deg=30.0),
    Segment("sit", 26.0, 40.0),
))


def _publish_retained(url_host: str, port: int, topic: str, payload: bytes) -> None:
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    c.connect(url_host, port)
    c.loop_start()
    try:
        c.publish(topic, payload, qos=1, retain=True).wait_for_publish(timeout=5.0)
    finally:
        c.disconnect()
        c.loop_stop()


@pytest.mark.network
def test_live_config_change_and_haptic_within_100_ms(fresh_mosquitto):
    host, port = "127.0.0.1", fresh_mosquitto.port
    cfg = Config.load({"SPINEWATCH_MQTT_URL": fresh_mosquitto.url}).mqtt
    patient, device = "p-hap", "d-hap"
    config_topic = wire.topic(patient, device, "config")
    first = PatientConfig(threshold_deg=15.0, hysteresis_deg=5.0, min_duration_s=1.0,
                          haptic=HapticConfig(delay_s=0.5, pattern="double", intensity_pct=50, min_interval_s=0.0))
    second = PatientConfig(threshold_deg=15.0, hysteresis_deg=5.0, min_duration_s=1.0,
                           haptic=HapticConfig(delay_s=0.5, pattern="long", intensity_pct=90, min_interval_s=0.0))
    _publish_retained(host, port, config_topic, encode_patient_config(first))
    watcher = TestClient(host, port, mqtt5=True)
    watcher.connect()
    watcher.subscribe(wire.topic(patient, device, "status"))

    radio = FakeRadio()
    sensor = radio.add(FakeSensor("C0:FF:EE:00:00:42", get_profile("spinewatch"), speed=4.0, script=SCRIPT))
    src = BleSource(get_profile("spinewatch"), "C0:FF:EE:00:00:42", config=BleConfig(scan_timeout_s=2.0),
                    client_backend=radio.client_backend, scanner_backend=radio.scanner_backend,
                    backoff=lambda a, e: 0.0)
    tracker = PostureTracker(100.0, PostureParams(calibration_s=2.0))
    haptics: list[HapticEvent] = []
    applied: list[PatientConfig] = []

    async def main():
        applied_ev = asyncio.Event()

        def on_config(c):
            applied.append(c)
            applied_ev.set()

        def on_haptic(ev):
            haptics.append(ev)

        with Publisher(cfg, patient, device, "5") as pub:
            async with ConfigSubscriber(cfg, patient, device, "5") as sub:
                task = asyncio.create_task(run_bridge(
                    src, tracker, pub, 0, config_updates=sub, on_config=on_config, on_haptic=on_haptic,
                    status_interval_s=0.2))
                async with asyncio.timeout(20):
                    await applied_ev.wait()  # the retained config arrived and was applied
                    assert tracker.slouch.on_deg == 15.0 and tracker.slouch.min_samples == 100
                    while not sensor.haptic_writes:
                        sensor.haptic_event.clear()
                        await sensor.haptic_event.wait()
                    applied_ev.clear()
                    _publish_retained(host, port, config_topic, encode_patient_config(second))
                    await applied_ev.wait()
                    while len(sensor.haptic_writes) < 2:
                        sensor.haptic_event.clear()
                        await sensor.haptic_event.wait()
                src.stop()
                async with asyncio.timeout(10):
                    return await task

    totals = asyncio.run(main())
    assert applied == [first, second] and totals.configs_applied == 2
    assert [decode_haptic(p) for _, p in sensor.haptic_writes[:2]] == [("double", 50, 400), ("long", 90, 400)]
    assert [h.pattern for h in haptics[:2]] == ["double", "long"]
    # when: 0.5 s after the slouch was confirmed (flexion > 15 deg for 1 s), in sensor time
    for h, (write_t, _) in zip(haptics[:2], sensor.haptic_writes[:2], strict=True):
        k = h.t_sensor_ns // DT_NS
        t_s = k / 100.0
        assert 6.0 < t_s < 13.0 or 18.0 < t_s < 26.0
        # latency: the notification carrying sample k arrived -> the haptic write reached the sensor
        i0 = k - k % sensor.spp
        latency_s = write_t - sensor.delivered_at[i0]
        assert 0 <= latency_s < 0.1, latency_s
    # device status was published, retained, with the loss counters
    deadline = time.monotonic() + 5
    status = None
    while time.monotonic() < deadline:
        msg = watcher.get()
        st = json.loads(msg.payload)
        if st.get("online") and "battery_pct" in st:
            status = st
            break
    watcher.close()
    assert status is not None and status["connected"] is True and status["battery_pct"] == 87
    assert status["packets_lost_pct"] == 0.0 and "samples_dropped" in status


@pytest.mark.network
def test_haptic_settings_cached_per_config_follow_a_live_config_change(fresh_mosquitto):
    """The bridge builds haptic settings and the quiet-hours check once per config: a new
    config (quiet all day -> no quiet hours, double -> long) takes effect at once."""
    cfg = Config.load({"SPINEWATCH_MQTT_URL": fresh_mosquitto.url}).mqtt
    all_day = (("00:00", "12:00"), ("12:00", "00:00"))
    quiet = PatientConfig(threshold_deg=15.0, hysteresis_deg=5.0, min_duration_s=1.0, quiet_hours=all_day,
                          haptic=HapticConfig(delay_s=0.5, pattern="double", min_interval_s=0.0))
    loud = PatientConfig(threshold_deg=15.0, hysteresis_deg=5.0, min_duration_s=1.0,
                         haptic=HapticConfig(delay_s=0.5, pattern="long", min_interval_s=0.0))
    radio = FakeRadio()
    sensor = radio.add(FakeSensor("C0:FF:EE:00:00:43", get_profile("spinewatch"), speed=4.0, script=SCRIPT))
    src = BleSource(get_profile("spinewatch"), sensor.address, config=BleConfig(scan_timeout_s=2.0),
                    client_backend=radio.client_backend, scanner_backend=radio.scanner_backend,
                    backoff=lambda a, e: 0.0)
    tracker = PostureTracker(100.0, PostureParams(calibration_s=2.0))
    haptics: list[HapticEvent] = []

    async def main():
        updates: asyncio.Queue[bytes] = asyncio.Queue()
        applied: list[PatientConfig] = []

        def on_status(st):
            # between the two slouches (6-13 s and 18-26 s of sensor time)
            if st.elapsed_s >= 15.0 and not updates.qsize() and len(applied) == 1:
                updates.put_nowait(encode_patient_config(loud))

        with Publisher(cfg, "p-hq", "d-hq", "5") as pub:
            task = asyncio.create_task(run_bridge(
                src, tracker, pub, 0, patient_config=quiet, config_updates=updates, on_config=applied.append,
                on_haptic=haptics.append, on_status=on_status))
            async with asyncio.timeout(20):
                while not sensor.haptic_writes:
                    sensor.haptic_event.clear()
                    await sensor.haptic_event.wait()
            src.stop()
            async with asyncio.timeout(10):
                await task
        return applied

    applied = asyncio.run(main())
    assert applied == [quiet, loud]
    # the first slouch was confirmed inside quiet hours: no buzz; the second buzzed with the new pattern
    assert [h.pattern for h in haptics] == ["long"]
    assert 18.0 < haptics[0].t_sensor_ns / 1e9 < 26.0
    assert [decode_haptic(p)[0] for _, p in sensor.haptic_writes] == ["long"]
