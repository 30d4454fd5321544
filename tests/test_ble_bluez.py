"""bleak's real BlueZ backend against BlueZoo (emulated BlueZ adapters on a private D-Bus).

The sensor is a BlueZ GATT server app on the emulated peripheral adapter
(tests/fakes/bluez_peripheral.py); BleSource uses bleak's default (BlueZ) backend on
the central adapter, so bleak talks real D-Bus: discovery, Connect, GATT resolution,
ReadValue, StartNotify, PropertiesChanged notifications, WriteValue, disconnect signals.

Skipped, with the reason, when dbus-daemon or bluezoo (PyPI, GPL-2.0, test-only) is
missing. BlueZoo workaround: tests/fakes/bluezoo_patched.py (EEXIST on reconnect).
"""

from __future__ import annotations

import asyncio
import os
import sys

import numpy as np
import pytest

if not sys.platform.startswith("linux"):
    pytest.skip("BlueZ is Linux-only", allow_module_level=True)

from fakes.bluez_peripheral import (
    PERIPHERAL,
    BluezooUnavailable,
    BluezooWorld,
    BluezSensor,
)

from spinewatch.firmware_bridge.ble import BleSource
from spinewatch.firmware_bridge.ble_config import BleConfig
from spinewatch.firmware_bridge.profiles import get_profile
from spinewatch.firmware_bridge.profiles.spinewatch import decode_haptic

DT_NS = 10_000_000


@pytest.fixture
def bluezoo(monkeypatch):
    try:
        world = BluezooWorld().__enter__()
    except BluezooUnavailable as exc:
        pytest.skip(f"BlueZoo test needs dbus-daemon and bluezoo: {exc}")
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", world.address)
    try:
        yield world
    finally:
        if os.environ.get("SPINEWATCH_BLUEZOO_LOG"):
            print(world.log())
        world.__exit__()


def _n(batches):
    return sum(len(b) for b in batches)


def test_bleak_bluez_backend_streams_reconnects_and_writes_haptics(bluezoo, request):
    sensor = BluezSensor(bluezoo.address)

    async def main():
        try:
            await sensor.start()
        except BluezooUnavailable as exc:
            pytest.skip(f"BlueZoo could not host the sensor: {exc}")
        src = BleSource(get_profile("spinewatch"), PERIPHERAL, config=BleConfig(scan_timeout_s=5.0),
                        backoff=lambda a, e: 0.1, adapter="hci0")
        out = []
        dropped = False
        try:
            async with src:
                async with asyncio.timeout(45):
                    async for b in src.batches():
                        out.append(b)
                        if not dropped and _n(out) >= 200:
                            dropped = True
                            await sensor.drop_link("central")
                        if src.connects >= 2 and _n(out) >= 400:
                            break
                    assert await src.buzz("double", 70, 300)
            return src, out
        finally:
            await sensor.stop()

    src, out = asyncio.run(main())
    assert src.battery_pct == 77
    assert src.connects >= 2, "reconnected after the link loss"
    assert sum(b.gap_before for b in out) >= 1
    assert src.counters.samples_lost > 0  # the sensor sampled on while disconnected
    # every sample is the sensor's sample at the index its sensor time gives
    # the bridge's sample 0 is the first sample the sensor sent after the subscription
    for i, b in enumerate(out):
        k = sensor.first_sent + b.t0_ns // DT_NS + np.arange(len(b))
        np.testing.assert_allclose(b.acc_m_s2[:, 0], 0.5 * np.sin(k / 50.0), atol=0.003, err_msg=(
            f"batch {i}/{len(out)} t0 index {k[0]} gap {b.gap_before}; prev gaps "
            f"{[(j, o.t0_ns // DT_NS, len(o)) for j, o in enumerate(out) if o.gap_before]}; {src.status()}"))
        np.testing.assert_allclose(b.acc_m_s2[:, 2], 9.80665, atol=0.003)
    assert decode_haptic(sensor.haptic.writes[-1][1]) == ("double", 70, 300)
