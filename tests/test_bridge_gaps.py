"""A slouch after lost samples is stamped at its sensor time, not at its sample count."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import pytest

from spinewatch.firmware_bridge.sim import (
    PostureScript,
    Segment,
    SimulatedPatient,
)
from spinewatch.model import ImuBatch, SlouchEvent
from spinewatch.service.bridge.loop import _SampleClock, run_bridge
from spinewatch.service.bridge.publisher import Publisher
from spinewatch.service.config import Config
from spinewatch.signal import PostureParams, PostureTracker

RATE_HZ = 100.0
START_UTC_NS = 1_700_000_000 * 10**9
LOST_S = (60.0, 90.0)  # the link is down for these 30 s of sensor time (sitting upright)
SLOUCH_S = (150.0, 210.0)  # then the patient slouches for a minute


def test_the_sample_clock_maps_indices_across_gaps():
    clock = _SampleClock()
    clock.add(0, 10, 5)  # samples 0-4 at 0..40 ns
    clock.add(50, 10, 5)  # contiguous: 5-9 at 50..90
    clock.add(500, 10, 5)  # after a gap: 10-14 at 500..540
    clock.add(550, 20, 2)  # the period changed: 15-16 at 550, 570
    assert [clock.time_ns(i) for i in (0, 4, 5, 9, 10, 14, 15, 16, 17)] == [0, 40, 50, 90, 500, 540, 550, 570, 590]


class LossySource(SimulatedPatient):
    """The simulated sensor with LOST_S missing, as the BLE timeline delivers it: the next
    batch flagged ``gap_before`` and its ``t0_ns`` on the sensor's clock."""

    async def batches(self) -> AsyncIterator[ImuBatch]:
        lost = False
        async for b in super().batches():
            if LOST_S[0] * 1e9 <= b.t0_ns < LOST_S[1] * 1e9:
                lost = True
                continue
            yield dataclasses.replace(b, gap_before=True) if lost else b
            lost = False


class RecordingPublisher(Publisher):
    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.events: list[SlouchEvent] = []

    def publish_event(self, e: SlouchEvent) -> None:
        super().publish_event(e)
        self.events.append(e)


@pytest.mark.network
def test_a_slouch_after_lost_samples_keeps_its_sensor_time(mosquitto, tmp_path):
    script = PostureScript([
        Segment("calibrate", 0.0, 20.0), Segment("sit", 20.0, SLOUCH_S[0], flexion_deg=2.0),
        Segment("slouch", SLOUCH_S[0], SLOUCH_S[1], flexion_deg=35.0, ramp_s=2.0),
        Segment("sit", SLOUCH_S[1], 260.0, flexion_deg=2.0, ramp_s=2.0),
    ])
    source = LossySource(script, rate_hz=RATE_HZ, batch_samples=10, start_utc_ns=START_UTC_NS)
    cfg = Config.load({"SPINEWATCH_MQTT_URL": mosquitto.url})
    cfg = dataclasses.replace(cfg, bridge=dataclasses.replace(cfg.bridge, outbox_dir=str(tmp_path)))
    tracker = PostureTracker(RATE_HZ, PostureParams(threshold_deg=20.0, hysteresis_deg=5.0, min_duration_s=10.0,
                                                    calibration_s=5.0))
    with RecordingPublisher(cfg.mqtt, "p-gap", "d-gap", "5") as pub:
        asyncio.run(run_bridge(source, tracker, pub, START_UTC_NS))
    (ev,) = pub.events
    (start,) = script.slouch_episodes(threshold_deg=20.0, min_duration_s=10.0)  # starts above 20 deg
    (end,) = script.slouch_episodes(threshold_deg=15.0, min_duration_s=10.0)  # ends below 20 - 5 deg
    # the 30 s lost before it must not pull the episode 30 s early
    assert abs((ev.start_ns - START_UTC_NS) / 1e9 - start[0]) < 1.0
    assert abs((ev.end_ns - START_UTC_NS) / 1e9 - end[1]) < 1.0
