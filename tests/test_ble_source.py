"""BleSource against the in-process fake bleak backend: bleak's client code, our connection manager.

The fake sensors sample a simulated patient; a batch's samples are compared with the
sensor's own sample at the index its sensor time implies, which checks timing
reconstruction, gap accounting and the body-frame remap at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import math
from collections.abc import Callable

import numpy as np
import pytest
from bleak.exc import BleakDBusError, BleakError
from fakes.fake_bleak import FakeRadio, FakeSensor

from spinewatch.backoff import backoff_delay_s
from spinewatch.firmware_bridge.ble import (
    BleSource,
    DeviceNotFound,
    SilentLink,
    _LinkLost,
    reconnect_base_s,
    reconnect_delay_s,
)
from spinewatch.firmware_bridge.ble_config import BleConfig
from spinewatch.firmware_bridge.profiles import get_profile
from spinewatch.firmware_bridge.profiles import spinewatch as sw
from spinewatch.firmware_bridge.source import ImuSource
from spinewatch.model import ImuBatch

SW = get_profile("spinewatch")
DT_NS = 10_000_000
DEADLINE_S = 15.0
ACC_TOL = 8 * 9.80665 / 32768 * 0.51  # half an LSB at +-8 g
ADDR = "C0:FF:EE:00:00:01"


def make(profile=SW, speed: float = 5.0, **kw) -> tuple[FakeRadio, FakeSensor]:
    radio = FakeRadio()
    sensor = radio.add(FakeSensor(ADDR, profile, speed=speed, **kw))
    return radio, sensor


def source(radio: FakeRadio, profile=SW, device: str = ADDR, **cfg) -> BleSource:
    config = BleConfig(scan_timeout_s=cfg.pop("scan_timeout_s", 2.0), **cfg)
    return BleSource(profile, device, config=config, client_backend=radio.client_backend,
                     scanner_backend=radio.scanner_backend, backoff=lambda a, e: 0.0)


async def collect(src: BleSource, until: Callable[[list[ImuBatch]], bool],
                  on_batch: Callable[[list[ImuBatch]], None] | None = None) -> list[ImuBatch]:
    out: list[ImuBatch] = []
    async with asyncio.timeout(DEADLINE_S):
        async for b in src.batches():
            out.append(b)
            if on_batch is not None:
                on_batch(out)
            if until(out):
                break
    return out


def n_samples(batches: list[ImuBatch]) -> int:
    return sum(len(b) for b in batches)


def assert_samples_are_the_sensors(batches: list[ImuBatch], sensor: FakeSensor) -> None:
    """Every sample equals the sensor's sample at the index its sensor time gives."""
    for b in batches:
        k0 = b.t0_ns // DT_NS
        for i in range(len(b)):
            acc, gyr = sensor.sample(k0 + i)
            np.testing.assert_allclose(b.acc_m_s2[i], acc, atol=ACC_TOL)
            np.testing.assert_allclose(b.gyr_rad_s[i], gyr, atol=math.radians(1000) / 32768)


def assert_accounting(src: BleSource) -> None:
    c = src.counters
    pending = src._timeline.pending_samples if src._timeline else 0
    assert c.samples_received == c.samples_emitted + sum(c.dropped_samples.values()) + pending


def test_ble_source_is_an_imu_source_and_streams_the_sensor_in_body_frame():
    radio, sensor = make()

    async def main():
        async with source(radio) as src:
            assert isinstance(src, ImuSource)
            out = await collect(src, lambda o: n_samples(o) >= 300)
            return src, out

    src, out = asyncio.run(main())
    assert not any(b.gap_before for b in out)
    assert out[0].t0_ns == 0 and all(b.dt_ns == DT_NS for b in out)
    assert_samples_are_the_sensors(out, sensor)
    st = src.status()
    assert st["battery_pct"] == 87 and st["rssi_dbm"] == -60 and st["address"] == ADDR
    assert st["packets_lost"] == 0 and st["samples_lost"] == 0 and st["reconnects"] == 0
    # the upright simulated patient: gravity on body +z
    assert np.mean(out[0].acc_m_s2[:, 2]) > 9.0


def test_link_loss_mid_stream_reconnects_and_accounts_the_gap():
    radio, sensor = make()

    def drop_once(out):
        if n_samples(out) >= 100 and sensor.connect_count == 1 and sensor.client is not None:
            sensor.drop_link(away_samples=50)

    async def main():
        async with source(radio) as src:
            out = await collect(src, lambda o: src.connects >= 2 and n_samples(o) >= 400, drop_once)
            return src, out

    src, out = asyncio.run(main())
    gaps = [b for b in out if b.gap_before]
    assert len(gaps) == 1, "exactly the reconnect is flagged to the filter"
    assert src.status()["reconnects"] == 1
    assert src.counters.samples_lost >= 50  # the sensor kept sampling while disconnected
    assert gaps[0].t0_ns // DT_NS == sum(len(b) for b in out[: out.index(gaps[0])]) + src.counters.samples_lost
    assert_samples_are_the_sensors(out, sensor)
    assert_accounting(src)


def test_a_silent_sensor_is_recycled_and_streams_again():
    radio, sensor = make()

    def silence(out):
        if n_samples(out) >= 50 and sensor.connect_count == 1:
            sensor.silent = True

    async def main():
        async with source(radio, silence_timeout_s=0.3) as src:
            out = await collect(src, lambda o: src.connects >= 2 and n_samples(o) >= 200, silence)
            return src, out

    src, out = asyncio.run(main())
    assert src.silent_recycles >= 1 and src.connects >= 2
    assert sum(b.gap_before for b in out) >= 1
    assert_samples_are_the_sensors(out, sensor)


def test_the_battery_level_is_read_again_while_connected():
    radio, sensor = make()

    def drain(out):
        if n_samples(out) >= 50:
            sensor.battery_pct = 41  # the cell drained during the session

    async def main():
        async with source(radio, battery_interval_s=0.2) as src:
            await collect(src, lambda o: src.battery_pct == 41, drain)
            return src

    src = asyncio.run(main())
    assert src.status()["battery_pct"] == 41 and src.connects == 1  # no reconnect needed


def test_notification_bursts_lose_nothing():
    radio, sensor = make()
    sensor.burst = 12

    async def main():
        async with source(radio) as src:
            return src, await collect(src, lambda o: n_samples(o) >= 600)

    src, out = asyncio.run(main())
    assert not any(b.gap_before for b in out)
    assert src.counters.packets_lost == 0 and not src.counters.dropped_samples
    assert_samples_are_the_sensors(out, sensor)


def test_out_of_order_and_duplicated_packets_are_reordered_and_deduplicated():
    radio, sensor = make()
    sensor.burst = 4

    def mangle(pkts: list[bytes]) -> list[bytes]:  # swap neighbours, duplicate the first
        out = []
        for i in range(0, len(pkts) - 1, 2):
            out += [pkts[i + 1], pkts[i]]
        if len(pkts) % 2:
            out.append(pkts[-1])
        return [out[0], *out]

    sensor.mangle = mangle

    async def main():
        async with source(radio) as src:
            return src, await collect(src, lambda o: n_samples(o) >= 400)

    src, out = asyncio.run(main())
    assert not any(b.gap_before for b in out)
    assert src.counters.dropped_samples.get("duplicate", 0) >= 5
    assert src.counters.packets_lost == 0
    assert_samples_are_the_sensors(out, sensor)
    assert_accounting(src)


def test_sequence_and_clock_wrap_are_seamless():
    radio, sensor = make(seq_start=65530, clock_start_us=(1 << 32) - 300_000)

    async def main():
        async with source(radio) as src:
            return src, await collect(src, lambda o: n_samples(o) >= 300)

    src, out = asyncio.run(main())
    assert sensor.seq < 65530, "the counter wrapped during the test"
    assert not any(b.gap_before for b in out) and src.counters.packets_lost == 0
    assert_samples_are_the_sensors(out, sensor)


def test_packets_lost_in_the_air_are_counted_from_the_sequence():
    radio, sensor = make()

    def lose(out):
        if n_samples(out) >= 50 and sensor.sent < 1000:
            sensor.lose_in_air(3)
            sensor.sent = 1000  # once

    async def main():
        async with source(radio) as src:
            return src, await collect(src, lambda o: n_samples(o) >= 300, lose)

    src, out = asyncio.run(main())
    assert src.counters.packets_lost == 3 and src.counters.samples_lost == 15
    assert sum(b.gap_before for b in out) == 1
    assert_samples_are_the_sensors(out, sensor)


def test_garbage_notifications_are_counted_per_reason_and_streaming_continues():
    radio, sensor = make()
    sensor.burst = 2
    sensor.mangle = lambda pkts: [b"\x00" * 3, pkts[0] + b"\x00", *pkts]

    async def main():
        async with source(radio) as src:
            return src, await collect(src, lambda o: n_samples(o) >= 300)

    src, out = asyncio.run(main())
    dropped = src.counters.dropped_packets
    assert dropped.get("decode:too_short", 0) >= 10 and dropped.get("decode:too_long", 0) >= 10
    assert not any(b.gap_before for b in out)
    assert_samples_are_the_sensors(out, sensor)


def test_transient_connect_errors_are_retried():
    radio, sensor = make()
    sensor.connect_failures = 2

    async def main():
        async with source(radio) as src:
            return src, await collect(src, lambda o: n_samples(o) >= 50)

    src, _ = asyncio.run(main())
    assert sensor.connect_count == 1 and src.connects == 1


def test_scan_by_name_prefix_and_service_uuid():
    thingy = get_profile("thingy52")

    async def main(device: str, profile=SW):
        radio, sensor = make()
        radio.add(FakeSensor("C0:FF:EE:00:00:99", thingy, name="Thingy-1"))
        async with source(radio, profile, device=device) as src:
            await collect(src, lambda o: n_samples(o) >= 10)
            return src.address

    assert asyncio.run(main("SpineWatch")) == ADDR
    assert asyncio.run(main(SW.service_uuid)) == ADDR
    assert asyncio.run(main("Thingy", thingy)) == "C0:FF:EE:00:00:99"
    assert asyncio.run(main("", thingy)) == "C0:FF:EE:00:00:99"  # any sensor of the profile"


@pytest.mark.parametrize("name", ["witmotion", "thingy52"])
def test_sequence_less_profiles_stream_with_arrival_times(name):
    prof = get_profile(name)
    radio, sensor = make(prof, speed=2.0)

    async def main():
        async with source(radio, prof) as src:
            return src, await collect(src, lambda o: n_samples(o) >= 200)

    src, out = asyncio.run(main())
    assert all(b.dt_ns == DT_NS for b in out)
    for a, b in itertools.pairwise(out):
        assert b.gap_before or b.t0_ns == a.t0_ns + len(a) * DT_NS
    assert src.counters.samples_emitted == n_samples(out)
    assert np.mean(np.concatenate([b.acc_m_s2 for b in out])[:, 2]) > 9.0  # remapped to body z


def test_device_not_found_keeps_retrying_without_crashing():
    radio = FakeRadio()
    attempts: list[BaseException | None] = []

    async def main():
        src = BleSource(SW, ADDR, config=BleConfig(scan_timeout_s=0.1), client_backend=radio.client_backend,
                        scanner_backend=radio.scanner_backend,
                        backoff=lambda a, e: attempts.append(e) or 0.0)
        async with src:
            assert not await src.wait_connected(0.5)
        return src

    src = asyncio.run(main())
    assert len(attempts) >= 2 and all(isinstance(e, DeviceNotFound) for e in attempts)
    assert src.status()["connected"] is False


# ------------------------------------------------------------------ backoff


@pytest.mark.parametrize(
    ("exc", "base_s"),
    [
        (BleakDBusError("org.bluez.Error.Failed", ["le-connection-abort-by-local"]), 0.25),
        (TimeoutError(), 0.25),
        (EOFError(), 0.25),
        (BrokenPipeError(), 0.25),
        (_LinkLost("x"), 0.5),
        (SilentLink("x", 3.0), 0.5),
        (DeviceNotFound("x", 10), 2.0),
        (BleakError("boom"), 1.0),
        (RuntimeError("unexpected"), 1.0),
        (None, 1.0),
    ],
)
def test_reconnect_base_by_what_failed(exc, base_s):
    assert reconnect_base_s(exc) == base_s


@pytest.mark.parametrize(
    ("attempt", "exc", "draw", "expected_s"),
    [
        (1, BleakDBusError("org.bluez.Error.Failed", ["le-connection-abort-by-local"]), 1.0, 0.25),
        (1, TimeoutError(), 0.0, 0.125),
        (1, _LinkLost("x"), 1.0, 0.5),
        (1, SilentLink("x", 3.0), 1.0, 0.5),
        (1, DeviceNotFound("x", 10), 1.0, 2.0),
        (1, BleakError("boom"), 1.0, 1.0),
        (2, BleakError("boom"), 1.0, 1.5),
        (3, DeviceNotFound("x", 10), 1.0, 4.5),
        (11, BleakError("boom"), 1.0, 1.5**10),
        (50, BleakError("boom"), 1.0, 1.5**10),  # exponent capped
        (20, DeviceNotFound("x", 10), 1.0, 60.0),  # capped at 60 s
        (20, DeviceNotFound("x", 10), 0.0, 30.0),  # equal jitter: never below half
        (1, None, 0.5, 0.75),
    ],
)
def test_reconnect_delay_table(attempt, exc, draw, expected_s):
    assert reconnect_delay_s(attempt, exc, draw) == pytest.approx(expected_s)


def test_reconnect_delay_is_the_shared_policy_with_the_configured_cap():
    """Growth 1.5 from the error's base, the cap of [ble] backoff_cap_s, equal jitter."""
    for attempt in (1, 4, 9, 30):
        for draw in (0.0, 0.3, 1.0):
            exc = DeviceNotFound("x", 10)
            assert reconnect_delay_s(attempt, exc, draw, cap_s=20.0) == backoff_delay_s(
                attempt, base_s=2.0, growth=1.5, max_exponent=10, cap_s=20.0, jitter="equal", draw=draw)
    assert reconnect_delay_s(30, DeviceNotFound("x", 10), 1.0) == BleConfig().backoff_cap_s == 60.0  # default: [ble]'s


def test_reconnect_delay_rejects_bad_arguments_and_jitters_by_default():
    with pytest.raises(ValueError, match="attempt"):
        reconnect_delay_s(0, None, 0.5)
    with pytest.raises(ValueError, match="draw"):
        reconnect_delay_s(1, None, 1.5)
    draws = {reconnect_delay_s(3, None) for _ in range(20)}
    assert len(draws) > 1 and all(1.125 <= d <= 2.25 for d in draws)


def test_a_full_queue_drops_and_counts_packets_and_samples():
    radio, sensor = make()

    async def main():
        async with source(radio, queue_packets=4) as src:
            assert await src.wait_connected(DEADLINE_S)
            await sensor.wait_delivered(20)  # nobody consumes: the queue overflows
            out = await collect(src, lambda o: n_samples(o) >= 100)
            return src, out

    src, out = asyncio.run(main())
    c = src.counters
    full = c.dropped_packets.get("queue_full", 0)
    assert full >= 10 and c.dropped_samples["queue_full"] == 5 * full
    assert out[0].t0_ns == 0 and any(b.gap_before for b in out), "the dropped packets are a gap"
    assert_samples_are_the_sensors(out, sensor)
    st = src.status()
    assert st["packets_lost"] == 0 and st["samples_lost"] == 0, "queue drops are not radio losses"


# ------------------------------------------------------------------ per-sensor hooks


def _acme(**hooks):
    """A new sensor speaking SpineWatch's GATT protocol under its own name, with only the hooks given."""
    fields = {"rate_from_config": None, "build_haptic": None, "samples_claimed": None, **hooks}
    return dataclasses.replace(SW, name="acme", name_prefixes=("Acme",), **fields)


def _run_hooks(profile):
    """Connect to a 50 Hz sensor (the profile's default says 100 Hz), buzz it, overflow the queue."""
    radio, sensor = make(profile, rate_hz=50.0)

    async def main():
        async with source(radio, profile, queue_packets=4) as src:
            assert await src.wait_connected(DEADLINE_S)
            rate_hz = src.rate_hz
            buzzed = await src.buzz("long", 90, 400)
            await sensor.wait_delivered(20)  # nobody consumes: the queue overflows
            return src, rate_hz, buzzed

    return sensor, *asyncio.run(main())


def test_a_new_profile_gets_connect_haptic_and_loss_behaviour_from_its_own_hooks():
    sensor, src, rate_hz, buzzed = _run_hooks(_acme(rate_from_config=sw.rate_from_config,
                                                    build_haptic=sw.build_haptic,
                                                    samples_claimed=sw.count_samples))
    assert rate_hz == 50.0, "the rate read at connect through rate_from_config"
    assert buzzed and [sw.decode_haptic(p) for _, p in sensor.haptic_writes] == [("long", 90, 400)]
    full = src.counters.dropped_packets["queue_full"]
    assert full >= 10 and src.counters.dropped_samples["queue_full"] == 5 * full


def test_a_new_profile_without_hooks_reads_no_rate_buzzes_nothing_and_counts_no_dropped_samples():
    sensor, src, rate_hz, buzzed = _run_hooks(_acme())
    assert rate_hz == 100.0, "no rate_from_config: the profile's default rate"
    assert not buzzed and sensor.haptic_writes == []
    assert src.counters.dropped_packets["queue_full"] >= 10
    assert src.counters.dropped_samples.get("queue_full", 0) == 0
