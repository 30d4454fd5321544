"""Haptic alert outcomes: the pure tracker, and buzz -> outcome -> MQTT -> ingest -> InfluxDB against a script."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid

import numpy as np
import pytest

from spinewatch.firmware_bridge.sim import (
    PostureScript,
    Segment,
    SimulatedPatient,
)
from spinewatch.service.bridge.loop import run_bridge
from spinewatch.service.bridge.publisher import Publisher
from spinewatch.service.config import Config
from spinewatch.service.ingest.worker import IngestWorker
from spinewatch.service.storage import Influx1Store
from spinewatch.service.transport.patient_config import HapticConfig, PatientConfig
from spinewatch.signal import PostureParams, PostureTracker
from spinewatch.signal.alert_outcome import AlertOutcome, AlertOutcomes

DT_NS = 10_000_000  # 100 Hz

# ------------------------------------------------------------------ the pure tracker

# samples 1-5 and 9-21 inside a confirmed slouch (10 ms apart)
STATE = [0, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]


def _run(buzzes, window_s, chunk, state=STATE):
    """Feed STATE in chunks; buzz at the given sample indices; outcomes as (index, corrected, response_s)."""
    tr = AlertOutcomes()
    s = np.asarray(state, np.int8)
    got: list[AlertOutcome] = []
    for i in range(0, len(s), chunk):
        for k in buzzes:
            if i <= k < i + chunk:
                tr.add(k * DT_NS, 30.0 + k, window_s)
        got += tr.update(s[i:i + chunk], i * DT_NS, DT_NS)
    return [(o.t_sensor_ns // DT_NS, o.corrected, o.response_s) for o in got], tr


@pytest.mark.parametrize("chunk", [1, 3, 7, 100])
@pytest.mark.parametrize(
    ("buzzes", "window_s", "decided", "open_after"),
    [
        ([2], 1.0, [(2, True, 0.04)], 0),  # state 0 at sample 6: 4 samples after the buzz
        ([2], 0.04, [(2, True, 0.04)], 0),  # exactly at the end of the window: corrected
        ([2], 0.03, [(2, False, None)], 0),  # one sample too late
        ([10], 0.05, [(10, False, None)], 0),  # window 5 samples, the slouch goes on
        ([10], 1.0, [], 1),  # undecided when the stream pauses
        ([2, 10], 0.05, [(2, True, 0.04), (10, False, None)], 0),
    ],
)
def test_outcome_table(buzzes, window_s, decided, open_after, chunk):
    got, tr = _run(buzzes, window_s, chunk)
    assert [(k, c) for k, c, _ in got] == [(k, c) for k, c, _ in decided]
    for (_, _, r), (_, _, want) in zip(got, decided, strict=True):
        assert r == pytest.approx(want) if want is not None else r is None
    assert tr.pending == open_after


def test_flush_closes_open_alerts_as_not_corrected():
    tr = AlertOutcomes()
    tr.add(0, 31.5, 60.0)
    tr.add(DT_NS, 32.0, 60.0)
    assert tr.update(np.ones(10, np.int8), 0, DT_NS) == []
    assert tr.flush() == [AlertOutcome(0, 31.5, False, None, 60.0), AlertOutcome(DT_NS, 32.0, False, None, 60.0)]
    assert tr.pending == 0 and tr.flush() == []


def test_window_must_be_positive():
    with pytest.raises(ValueError, match="window_s"):
        AlertOutcomes().add(0, 30.0, 0.0)


# ------------------------------------------------------------------ end to end with real servers

THRESHOLD_DEG = 20.0
HYSTERESIS_DEG = 5.0
MIN_DURATION_S = 2.0
DELAY_S = 1.0
WINDOW_S = 10.0
PATIENT = "p-alert"
SCRIPT = PostureScript((
    Segment("calibrate", 0.0, 4.0),
    Segment("sit", 4.0, 10.0),
    Segment("slouch", 10.0, 20.0, flexion_deg=30.0),  # back ~7 s after the buzz: corrected
    Segment("sit", 20.0, 30.0),
    Segment("slouch", 30.0, 50.0, flexion_deg=35.0),  # ~17 s: not corrected
    Segment("sit", 50.0, 60.0),
    Segment("slouch", 60.0, 72.0, flexion_deg=28.0),  # ~9 s: corrected
    Segment("sit", 72.0, 85.0),
    Segment("slouch", 85.0, 92.0, flexion_deg=30.0),  # the stream ends while slouching: not corrected
))


def _expected():
    """(buzz time s, flexion deg, corrected, response s) per scripted episode, from the script alone.

    A slouch starts when flexion exceeds the threshold, is confirmed min_duration_s later, the buzz
    comes delay_s after that; it ends when flexion falls below threshold - hysteresis.
    """
    starts = SCRIPT.slouch_episodes(THRESHOLD_DEG)
    ends = SCRIPT.slouch_episodes(THRESHOLD_DEG - HYSTERESIS_DEG)
    out = []
    for (t0, _, _), (_, t1, _) in zip(starts, ends, strict=True):
        buzz = t0 + MIN_DURATION_S + DELAY_S
        flex = float(SCRIPT.flexion_deg_at(buzz)[0])
        ended = t1 < SCRIPT.duration_s - 0.5
        response = t1 - buzz if ended else None
        corrected = response is not None and response <= WINDOW_S
        assert response is None or abs(response - WINDOW_S) > 1.0, "keep the script away from the window's edge"
        out.append((buzz, flex, corrected, response if corrected else None))
    return out


class MotorlessPatient(SimulatedPatient):
    """A simulated sensor without a vibration motor: every haptic write fails."""

    async def buzz(self, pattern: str, intensity_pct: int, duration_ms: int) -> bool:
        await super().buzz(pattern, intensity_pct, duration_ms)
        return False


def _through_servers(mosquitto, influxdb1, source_cls=SimulatedPatient):
    """SCRIPT through the bridge (buzzing), real Mosquitto, real ingest, real InfluxDB."""
    db = f"alerts_{uuid.uuid4().hex[:8]}"
    cfg = Config.load({"SPINEWATCH_MQTT_URL": mosquitto.url, "SPINEWATCH_WORKER_ID": f"w-{uuid.uuid4().hex[:8]}"})
    store = Influx1Store(influxdb1.url, db)
    store.ensure_database()
    worker = IngestWorker(dataclasses.replace(cfg.mqtt, share_group=f"g{uuid.uuid4().hex[:8]}"), cfg.ingest, store, "5")
    worker.start()
    try:
        assert worker.subscribed.wait(10), "ingest did not subscribe"
        source = source_cls(SCRIPT, rate_hz=100.0, batch_samples=25, start_utc_ns=1_700_000_000 * 10**9)
        pcfg = PatientConfig(threshold_deg=THRESHOLD_DEG, hysteresis_deg=HYSTERESIS_DEG, min_duration_s=MIN_DURATION_S,
                             haptic=HapticConfig(delay_s=DELAY_S, min_interval_s=0.0, response_window_s=WINDOW_S))
        tracker = PostureTracker(100.0, PostureParams(calibration_s=2.0))
        with Publisher(cfg.mqtt, PATIENT, "d-alert", "5") as pub:
            totals = asyncio.run(run_bridge(source, tracker, pub, source.start_utc_ns, patient_config=pcfg))
            assert pub.wait_all_acked(30)
        assert worker.wait_written(totals.posture_messages + totals.events + totals.alerts, 60)
    finally:
        worker.stop()
    return source, totals, store


@pytest.mark.network
def test_alerts_in_influxdb_match_the_script(mosquitto, influxdb1):
    expected = _expected()
    assert [c for _, _, c, _ in expected] == [True, False, True, False]
    patient = PATIENT
    source, totals, store = _through_servers(mosquitto, influxdb1)
    assert totals.alerts == totals.haptics == len(source.buzzes) == len(expected)
    rows = store.query(f"SELECT flexion_deg, corrected, response_s FROM alert WHERE patient = '{patient}'")
    got = [dict(zip(s["columns"], v, strict=True)) for s in rows for v in s["values"]]
    assert len(got) == len(expected)
    for row, (buzz_s, flex, corrected, response) in zip(got, expected, strict=True):
        t_s = (row["time"] - source.start_utc_ns) / 1e9
        assert abs(t_s - buzz_s) < 0.3, (t_s, buzz_s)  # the filter's angle lags the script by a few samples
        assert abs(row["flexion_deg"] - flex) < 2.0
        assert row["corrected"] == int(corrected)
        if response is None:
            assert row["response_s"] is None
        else:
            assert abs(row["response_s"] - response) < 0.3, (row["response_s"], response)
    # a corrected alert's response ends exactly where the stored slouch episode ends (same sensor time)
    ends = store.query(f"SELECT end_ns FROM slouch WHERE patient = '{patient}'")[0]["values"]
    for row in got:
        if row["corrected"]:
            end = row["time"] + round(row["response_s"] * 1e9)
            assert any(abs(end - e) < 2_000_000 for _, e in ends), (end, ends)


@pytest.mark.network
def test_a_buzz_that_failed_is_no_alert(mosquitto, influxdb1):
    source, totals, store = _through_servers(mosquitto, influxdb1, MotorlessPatient)
    assert len(source.buzzes) == totals.haptics == totals.haptic_failures == len(_expected())
    assert totals.alerts == 0 and totals.events >= 3  # the slouches are still reported
    assert store.query(f"SELECT count(corrected) FROM alert WHERE patient = '{PATIENT}'") == []
