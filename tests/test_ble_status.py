"""Device status on the retained ``status`` topic: published while the sensor is away too."""

from __future__ import annotations

import asyncio
import json
import queue

import pytest
from _mqtt_helpers import TestClient
from fakes.fake_bleak import FakeRadio, FakeSensor

from spinewatch.firmware_bridge.ble import BleSource
from spinewatch.firmware_bridge.ble_config import BleConfig
from spinewatch.firmware_bridge.profiles import get_profile
from spinewatch.service.bridge.loop import run_bridge
from spinewatch.service.bridge.memory import warm_up_kernels
from spinewatch.service.bridge.publisher import Publisher
from spinewatch.service.config import Config
from spinewatch.service.transport import wire
from spinewatch.signal import PostureTracker


@pytest.mark.network
def test_status_reports_a_lost_sensor_then_its_return(fresh_mosquitto):
    cfg = Config.load({"SPINEWATCH_MQTT_URL": fresh_mosquitto.url}).mqtt
    watcher = TestClient("127.0.0.1", fresh_mosquitto.port, mqtt5=True)
    watcher.connect()
    watcher.subscribe(wire.topic("p-st", "d-st", "status"))
    radio = FakeRadio()
    sensor = radio.add(FakeSensor("C0:FF:EE:00:00:77", get_profile("spinewatch"), speed=2.0))
    sensor.advertising = False  # switched off / out of range at first
    src = BleSource(get_profile("spinewatch"), sensor.address, config=BleConfig(scan_timeout_s=0.2),
                    client_backend=radio.client_backend, scanner_backend=radio.scanner_backend,
                    backoff=lambda a, e: 0.05)
    seen: list[dict] = []

    def next_status(pred) -> dict:
        while True:
            st = json.loads(watcher.get().payload)  # raises queue.Empty after the deadline
            seen.append(st)
            if pred(st):
                return st

    async def main():
        loop = asyncio.get_running_loop()
        with Publisher(cfg, "p-st", "d-st", "5") as pub:
            task = asyncio.create_task(run_bridge(src, PostureTracker(100.0), pub, 0, status_interval_s=0.1))
            away = await loop.run_in_executor(None, next_status, lambda s: "connected" in s)
            sensor.advertising = True
            back = await loop.run_in_executor(
                None, next_status, lambda s: s.get("connected") and s.get("samples_published", 0) > 0)
            src.stop()
            async with asyncio.timeout(10):
                await task
            return away, back

    # as `bridge run` does before it connects: a cold Numba cache (a fresh clone) compiles the
    # tracker's kernels on the first samples, which holds the event loop, and its statuses, for
    # longer than the watcher's deadline
    warm_up_kernels(100.0)
    try:
        away, back = asyncio.run(main())
    except queue.Empty:
        pytest.fail(f"status not seen in time; got {seen}")
    finally:
        watcher.close()
    assert away["online"] is True and away["connected"] is False and away["samples_received"] == 0
    assert back["battery_pct"] == 87 and back["rssi_dbm"] == -60 and back["packets_lost_pct"] == 0.0
    assert back["remount_suspected"] is False  # the tracker's remount watch rides along
