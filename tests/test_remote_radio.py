"""BleSource fed by simulated sensors in another process (tests/fakes/remote_radio.py).

The benchmark's bridge process uses this feed; these tests check that what crosses the
pipe is what the sensor sent (samples equal a same-seed twin sensor's, in body frame and
on the sensor's time axis), that link loss and haptic writes work through it, and that
frames of an old subscription are not delivered after a reconnect.
"""

from __future__ import annotations

import asyncio

from fakes.fake_bleak import FakeSensor
from fakes.remote_radio import RemoteRadio, desk_script, sensor_address
from test_ble_source import (
    DT_NS,
    assert_accounting,
    assert_samples_are_the_sensors,
    collect,
    n_samples,
    source,
)

from spinewatch.firmware_bridge.profiles import get_profile
from spinewatch.firmware_bridge.profiles.spinewatch import build_haptic, decode_haptic

SW = get_profile("spinewatch")


def test_two_remote_sensors_stream_their_samples_through_bleak():
    twins = [FakeSensor(sensor_address(i), SW, seed=i) for i in range(2)]

    async def main():
        async with RemoteRadio(2, speed=5.0) as radio:
            assert radio.addresses == [t.address for t in twins]
            srcs = [source(radio, device=a) for a in radio.addresses]  # type: ignore[arg-type]
            async with srcs[0], srcs[1]:
                outs = await asyncio.gather(*(collect(s, lambda o: n_samples(o) >= 300) for s in srcs))
            return srcs, outs, [s.delivered for s in radio.sensors_by_index]

    srcs, outs, delivered = asyncio.run(main())
    for src, out, twin, n in zip(srcs, outs, twins, delivered, strict=True):
        assert out[0].t0_ns == 0 and not any(b.gap_before for b in out)
        assert_samples_are_the_sensors(out, twin)
        st = src.status()
        assert st["battery_pct"] == 87 and st["rssi_dbm"] == -60 and st["samples_lost"] == 0
        assert src.counters.packets_received <= n
        assert_accounting(src)


def test_remote_link_loss_is_a_flagged_gap_and_haptic_writes_reach_the_sensor():
    twin = FakeSensor(sensor_address(0), SW, seed=0, script=desk_script(0))

    async def main():
        async with RemoteRadio(1, speed=5.0, script="desk") as radio:
            sensor = radio.sensors_by_index[0]
            dropped: list[int] = []

            def drop_once(out):
                if n_samples(out) >= 100 and not dropped:
                    dropped.append(sensor.delivered)
                    sensor.drop_link(away_samples=50)

            async with source(radio, device=sensor.address) as src:  # type: ignore[arg-type]
                out = await collect(src, lambda o: src.connects >= 2 and n_samples(o) >= 400, drop_once)
                assert await src.buzz("double", 70, 300)
            return src, out, sensor

    src, out, sensor = asyncio.run(main())
    gaps = [b for b in out if b.gap_before]
    assert len(gaps) == 1 and src.status()["reconnects"] == 1
    # the sensor kept sampling while away; notifications still in the pipe when the link
    # dropped belong to the old link and are lost with it, never delivered to the new one
    assert src.counters.samples_lost >= 50
    assert gaps[0].t0_ns // DT_NS == sum(len(b) for b in out[: out.index(gaps[0])]) + src.counters.samples_lost
    assert_samples_are_the_sensors(out, twin)
    assert_accounting(src)
    assert [decode_haptic(p) for _, p in sensor.haptic_writes] == [("double", 70, 300)]
    assert sensor.haptic_writes[0][1] == build_haptic("double", 70, 300)
