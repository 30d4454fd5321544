"""An in-process fake bleak backend with simulated sensors (tests and benchmarks only).

bleak's own ``BleakClient`` / ``BleakScanner`` code runs on top: we subclass bleak's
backend base classes (``BaseBleakClient``, ``BaseBleakScanner``) and pass them with
``backend=``. Only the radio is fake. A :class:`FakeRadio` holds :class:`FakeSensor` s;
``radio.client_backend`` / ``radio.scanner_backend`` are backend classes bound to it.

A FakeSensor behaves like firmware: it samples continuously from power-on (its device
clock runs whether or not anyone is connected), and while a central is subscribed it
sends a notification every ``samples_per_packet`` samples, built with the profile's
packet builder from a simulated patient (``spinewatch.firmware_bridge.sim``).
Time runs ``speed`` times faster than the event loop's clock. Fault injection:

- ``drop_link()``: link loss (the central's disconnected callback fires);
- ``silent = True``: stays connected but stops notifying;
- ``lose_in_air(k)``: the next k notifications are sent (seq advances) but never arrive;
- ``burst = k``: notifications are held and delivered k at a time;
- ``mangle``: a function ``list[bytes] -> list[bytes]`` applied to each delivery
  (reorder, duplicate, corrupt);
- ``connect_failures = k``: the next k connects raise a transient BlueZ-like error;
- ``advertising = False``: out of range (scans do not see it, connects fail).
"""

from __future__ import annotations

import asyncio
import itertools
import struct
from collections.abc import Callable
from typing import Any

import numpy as np
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakDeviceNotFoundError, BleakError

from spinewatch.firmware_bridge.profiles import (
    BATTERY_LEVEL_CHAR_UUID,
    BATTERY_SERVICE_UUID,
    SensorProfile,
)
from spinewatch.firmware_bridge.profiles import spinewatch as sw
from spinewatch.firmware_bridge.sim import ImuSynthesizer, PostureScript

_CYCLE_S = 120.0  # simulated samples are generated once for this long, then repeated
_SW_HEADER = struct.Struct("<HIBB")


def check_connectable(sensor: Any) -> None:
    """Raise what BlueZ raises when connecting to ``sensor`` fails: out of range, a scripted
    transient failure (``connect_failures``), or already connected."""
    if not sensor.advertising:
        raise BleakDeviceNotFoundError(sensor.address, f"Device with address {sensor.address} was not found.")
    if sensor.connect_failures > 0:
        sensor.connect_failures -= 1
        raise BleakError("[org.bluez.Error.Failed] le-connection-abort-by-local")
    if sensor.client is not None:
        raise BleakError("[org.bluez.Error.InProgress] Operation already in progress")


class SensorGatt:
    """The readable and writable characteristics of a fake sensor (battery, config, haptic);
    the sensor classes provide ``profile``, ``battery_pct``, ``rate_hz``, ``spp``,
    ``haptic_writes`` and ``haptic_event``."""

    profile: Any
    battery_pct: int
    rate_hz: float
    spp: int
    haptic_writes: list[tuple[float, bytes]]
    haptic_event: asyncio.Event

    def read(self, uuid: str) -> bytes:
        if uuid == BATTERY_LEVEL_CHAR_UUID:
            return bytes([self.battery_pct])
        if uuid == self.profile.config_char_uuid and self.profile.service_uuid == sw.SERVICE_UUID:
            return sw.encode_config(sw.SensorConfig(int(self.rate_hz), samples_per_packet=self.spp))
        raise BleakError(f"characteristic {uuid} is not readable")

    def write(self, uuid: str, data: bytes) -> None:
        if uuid == self.profile.haptic_char_uuid:
            self.haptic_writes.append((asyncio.get_running_loop().time(), bytes(data)))
            self.haptic_event.set()
            return
        raise BleakError(f"characteristic {uuid} is not writable")


class FakeSensor(SensorGatt):
    """One simulated peripheral (see module docstring)."""

    def __init__(
        self,
        address: str,
        profile: SensorProfile,
        *,
        name: str | None = None,
        rate_hz: float = 100.0,
        samples_per_packet: int | None = None,
        speed: float = 1.0,
        seed: int = 0,
        rssi_dbm: int = -60,
        battery_pct: int = 87,
        seq_start: int = 0,
        clock_start_us: int = 0,
        script: PostureScript | None = None,
    ) -> None:
        self.address = address
        self.profile = profile
        self.name = name or f"{(profile.name_prefixes or (profile.name,))[0]}-{address[-5:].replace(':', '')}"
        self.rate_hz = rate_hz
        self.spp = samples_per_packet or (5 if profile.max_samples_per_packet >= 5 else 1)
        self.speed = speed
        self.rssi_dbm = rssi_dbm
        self.battery_pct = battery_pct
        self.seq = seq_start
        self.clock_start_us = clock_start_us
        script = script or PostureScript.day(_CYCLE_S + 60.0, seed=seed)
        syn = ImuSynthesizer(script, rate_hz, seed)
        c = syn.chunk(0, int(min(_CYCLE_S, script.duration_s) * rate_hz))
        self._acc, self._gyr = c.acc_m_s2, c.gyr_rad_s
        self._encode_cycle()
        self.advertising = True
        self.silent = False
        self.burst = 1
        self.mangle: Callable[[list[bytes]], list[bytes]] | None = None
        self.connect_failures = 0
        self._lose = 0
        self.client: FakeBleakClient | None = None
        self._notify: NotifyCallback | None = None
        self._task: asyncio.Task[None] | None = None
        self._t0: float | None = None  # loop time at power-on
        self.next_sample = 0  # index of the next sample the sensor will take
        self.sent = 0  # notifications sent (incl. lost in the air)
        self.delivered = 0
        self.haptic_writes: list[tuple[float, bytes]] = []  # (loop time, payload)
        self.haptic_event = asyncio.Event()
        self.connect_count = 0
        self.progress = asyncio.Condition()
        self._held: list[tuple[int, bytes]] = []
        self.delivered_at: dict[int, float] = {}  # first sample index -> loop time delivered

    # ------------------------------------------------------------------ controls

    def lose_in_air(self, k: int) -> None:
        self._lose += k

    def drop_link(self, away_samples: int = 0) -> None:
        """Link loss: the central sees an unsolicited disconnect.

        ``away_samples``: the sensor's clock jumps ahead by this many samples at once, as if
        the link had stayed down that long, so the samples lost on reconnect do not depend on
        how fast the central happens to reconnect.
        """
        client = self.client
        self._detach()
        if away_samples and self._t0 is not None:
            self._t0 -= away_samples / (self.speed * self.rate_hz)
            self.next_sample += away_samples
        if client is not None:
            client._link_lost()

    def sample(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        j = i % len(self._acc)
        return self._acc[j], self._gyr[j]

    # ------------------------------------------------------------------ GATT side

    def _power_on(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._t0 is None:
            self._t0 = loop.time()

    def _due_samples(self, loop: asyncio.AbstractEventLoop) -> int:
        assert self._t0 is not None
        return int((loop.time() - self._t0) * self.speed * self.rate_hz)

    def _attach(self, client: FakeBleakClient) -> None:
        check_connectable(self)
        self.client = client
        self.connect_count += 1
        self.silent = False

    def _detach(self) -> None:
        self.client = None
        self._notify = None
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def subscribe(self, uuid: str, callback: NotifyCallback) -> None:
        if uuid != self.profile.imu_char_uuid:
            raise BleakError(f"characteristic {uuid} does not notify")
        loop = asyncio.get_running_loop()
        self._power_on(loop)
        self.next_sample = max(self.next_sample, self._due_samples(loop))  # missed while away
        self._notify = callback
        self._task = loop.create_task(self._firmware(), name=f"fake-sensor[{self.address}]")

    def _encode_cycle(self) -> None:
        """Pre-encode every simulated sample once with the profile's builder (cheap packets later)."""
        m = self.profile.default_mount
        n = len(self._acc)
        if self.profile.service_uuid == sw.SERVICE_UUID:  # SpineWatch firmware, whatever the profile's name
            k = sw.MAX_SAMPLES_PER_PACKET
            body = b"".join(
                self.profile.build(self._acc[i:i + k], self._gyr[i:i + k], mount=m)[sw.HEADER_BYTES:]
                for i in range(0, n, k))
            self._sample_bytes = [body[12 * i:12 * i + 12] for i in range(n)]
        else:
            self._sample_bytes = [self.profile.build(self._acc[i:i + 1], self._gyr[i:i + 1], mount=m)
                                  for i in range(n)]

    def _packet(self, i0: int, n: int) -> bytes:
        cyc = len(self._sample_bytes)
        if self.profile.service_uuid != sw.SERVICE_UUID:
            return self._sample_bytes[i0 % cyc]
        t0_us = self.clock_start_us + round(i0 * 1e6 / self.rate_hz)
        head = _SW_HEADER.pack(self.seq % 65536, t0_us % (1 << 32), n, 0x32)  # 8 g, 1000 deg/s
        return head + b"".join(self._sample_bytes[(i0 + j) % cyc] for j in range(n))

    async def _firmware(self) -> None:
        loop = asyncio.get_running_loop()
        period_s = self.spp / self.rate_hz / self.speed
        while True:
            due = self._due_samples(loop)
            ready: list[tuple[int, bytes]] = []
            while self.next_sample + self.spp <= due:
                i0 = self.next_sample
                pkt = self._packet(self.next_sample, self.spp)
                self.next_sample += self.spp
                if self.silent:
                    continue
                self.seq = (self.seq + 1) % 65536
                self.sent += 1
                if self._lose > 0:
                    self._lose -= 1
                    continue
                ready.append((i0, pkt))
            self._held.extend(ready)
            if len(self._held) >= self.burst:
                held, self._held = self._held, []
                batch = [p for _, p in held]
                if self.mangle is not None:
                    batch = self.mangle(batch)
                else:
                    now = loop.time()
                    for i0, _ in held:
                        self.delivered_at[i0] = now
                for pkt in batch:
                    if self._notify is None:
                        return
                    self._notify(bytearray(pkt))
                    self.delivered += 1
                async with self.progress:
                    self.progress.notify_all()
            await asyncio.sleep(period_s)  # sync-ok: the simulated sensor's sample clock

    async def wait_delivered(self, n: int, timeout_s: float = 10.0) -> None:
        """Wait until ``n`` notifications in total have been delivered."""
        async with asyncio.timeout(timeout_s), self.progress:
            await self.progress.wait_for(lambda: self.delivered >= n)


class FakeRadio:
    """The simulated radio environment: sensors plus the backend classes bound to it."""

    def __init__(self) -> None:
        self.sensors: dict[str, FakeSensor] = {}
        radio = self
        self.client_backend: type[FakeBleakClient] = type("FakeBleakClient", (FakeBleakClient,), {"radio": radio})
        self.scanner_backend: type[FakeBleakScanner] = type("FakeBleakScanner", (FakeBleakScanner,), {"radio": radio})

    def add(self, sensor: FakeSensor) -> FakeSensor:
        self.sensors[sensor.address.upper()] = sensor
        return sensor

    def get(self, address: str) -> FakeSensor | None:
        return self.sensors.get(address.upper())


_handles = itertools.count(1)


class FakeBleakClient(BaseBleakClient):
    """bleak client backend talking to a FakeSensor of ``radio``."""

    radio: FakeRadio

    def __init__(self, address_or_ble_device: BLEDevice | str, **kwargs: Any) -> None:
        super().__init__(address_or_ble_device, disconnected_callback=kwargs.get("disconnected_callback"),
                         timeout=kwargs.get("timeout", 10.0))
        self._sensor: FakeSensor | None = None

    @property
    def mtu_size(self) -> int:
        return 247

    @property
    def name(self) -> str:
        s = self.radio.get(self.address)
        return s.name if s else self.address

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        await asyncio.sleep(0)  # sync-ok: yield to the event loop, no waiting
        sensor = self.radio.get(self.address)
        if sensor is None:
            raise BleakDeviceNotFoundError(self.address, f"Device with address {self.address} was not found.")
        services = self._services(sensor.profile)
        sensor._attach(self)
        self._sensor = sensor
        self.services = services

    def _services(self, profile: SensorProfile) -> BleakGATTServiceCollection:
        coll = BleakGATTServiceCollection()
        groups: dict[str, list[tuple[str, list[str]]]] = {
            profile.service_uuid: [(profile.imu_char_uuid, ["notify"])]}
        if profile.haptic_char_uuid:
            groups[profile.service_uuid].append((profile.haptic_char_uuid, ["write"]))
        if profile.config_char_uuid:
            groups[profile.service_uuid].append((profile.config_char_uuid, ["read", "write"]))
        if profile.has_battery_service:
            groups[BATTERY_SERVICE_UUID] = [(BATTERY_LEVEL_CHAR_UUID, ["read", "notify"])]
        for suuid, chars in groups.items():
            svc = BleakGATTService(None, next(_handles), suuid)
            coll.add_service(svc)
            for cuuid, props in chars:
                ch = BleakGATTCharacteristic(None, next(_handles), cuuid, props, lambda: 244, svc)  # type: ignore[arg-type]
                coll.add_characteristic(ch)  # also adds it to svc
        return coll

    def _link_lost(self) -> None:
        self._sensor = None
        if self._disconnected_callback is not None:
            asyncio.get_running_loop().call_soon(self._disconnected_callback)

    async def disconnect(self) -> None:
        if self._sensor is not None:
            self._sensor._detach()
            self._sensor = None

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        return None

    async def unpair(self) -> None:
        return None

    @property
    def is_connected(self) -> bool:
        return self._sensor is not None and self._sensor.client is self

    def _require(self) -> FakeSensor:
        if not self.is_connected or self._sensor is None:
            raise BleakError("Not connected")
        return self._sensor

    async def read_gatt_char(self, characteristic: BleakGATTCharacteristic, **kwargs: Any) -> bytearray:
        await asyncio.sleep(0)  # sync-ok: yield to the event loop, no waiting
        return bytearray(self._require().read(characteristic.uuid))

    async def read_gatt_descriptor(self, descriptor: BleakGATTDescriptor, **kwargs: Any) -> bytearray:
        raise BleakError("descriptors are not simulated")

    async def write_gatt_char(self, characteristic: BleakGATTCharacteristic, data: Any, response: bool) -> None:
        await asyncio.sleep(0)  # sync-ok: yield to the event loop, no waiting
        self._require().write(characteristic.uuid, bytes(data))

    async def write_gatt_descriptor(self, descriptor: BleakGATTDescriptor, data: Any) -> None:
        raise BleakError("descriptors are not simulated")

    async def start_notify(
        self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback, **kwargs: Any
    ) -> None:
        self._require().subscribe(characteristic.uuid, callback)

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        s = self._require()
        s._notify = None


class FakeBleakScanner(BaseBleakScanner):
    """bleak scanner backend: advertisements of the radio's sensors every 50 ms while scanning."""

    radio: FakeRadio

    def __init__(
        self, detection_callback: Any, service_uuids: Any, scanning_mode: Any = "active", **kwargs: Any
    ) -> None:
        super().__init__(detection_callback, service_uuids)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.seen_devices = {}
        self._task = asyncio.get_running_loop().create_task(self._advertise())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _advertise(self) -> None:
        while True:
            for s in list(self.radio.sensors.values()):
                if not s.advertising or s.client is not None:
                    continue
                uuids = [s.profile.service_uuid]
                if not self.is_allowed_uuid(uuids):
                    continue
                adv = AdvertisementData(s.name, {}, {}, uuids, None, s.rssi_dbm, ())
                dev = self.create_or_update_device(s.address, s.address, s.name, {"fake": True}, adv)
                self.call_detection_callbacks(dev, adv)
            await asyncio.sleep(0.05)  # sync-ok: simulated advertising interval
