"""A SpineWatch sensor as a BlueZ GATT *server* application on a BlueZoo-emulated adapter.

It registers, over D-Bus (dbus-fast), a GATT application (SpineWatch service with the
IMU notify, haptic write and config read characteristics, plus the Battery Service) and
an LE advertisement on the peripheral adapter, exactly as firmware-side BlueZ apps do
(bluez's test/example-gatt-server). BlueZoo mirrors them to the central adapter where
bleak's real BlueZ backend finds, connects and subscribes. Notifications are
PropertiesChanged signals of the IMU characteristic's Value.

Also: a private dbus-daemon and a BlueZoo process for tests (see ``BluezooWorld``).
"""

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from dbus_fast import BusType, Message, MessageType, Variant
from dbus_fast.aio import MessageBus
from dbus_fast.service import PropertyAccess, ServiceInterface, dbus_property, method

from spinewatch.firmware_bridge.profiles import (
    BATTERY_LEVEL_CHAR_UUID,
    BATTERY_SERVICE_UUID,
)
from spinewatch.firmware_bridge.profiles import spinewatch as sw

CENTRAL = "00:AA:00:00:00:01"  # hci0, used by bleak
PERIPHERAL = "00:AA:00:00:00:02"  # hci1, our sensor
APP_PATH = "/org/spinewatch/app"
ADV_PATH = "/org/spinewatch/adv0"

_BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>custom</type>
  <listen>unix:path={path}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/><allow own="*"/><allow send_destination="*" eavesdrop="true"/>
    <allow receive_sender="*"/><allow eavesdrop="true"/>
  </policy>
</busconfig>
"""


class BluezooUnavailable(RuntimeError):
    pass


class BluezooWorld:
    """A private dbus-daemon plus a (patched) BlueZoo with two adapters; context manager."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="bluezoo-"))
        self.address = f"unix:path={self.dir / 'bus'}"
        self._procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> "BluezooWorld":
        daemon = shutil.which("dbus-daemon")
        if daemon is None:
            raise BluezooUnavailable("dbus-daemon not installed (Debian package 'dbus')")
        try:
            import bluezoo  # noqa: F401
        except ImportError as exc:
            raise BluezooUnavailable(f"bluezoo not installed (pip install bluezoo): {exc}") from None
        (self.dir / "bus.conf").write_text(_BUS_CONFIG.format(path=self.dir / "bus"))
        self._procs.append(subprocess.Popen(
            [daemon, f"--config-file={self.dir / 'bus.conf'}", "--nofork", "--nopidfile"],
            stdout=subprocess.DEVNULL, stderr=open(self.dir / "dbus.log", "wb")))
        deadline = time.monotonic() + 5
        while not (self.dir / "bus").exists():
            if time.monotonic() > deadline or self._procs[0].poll() is not None:
                self.__exit__()
                raise BluezooUnavailable(f"dbus-daemon did not start: {(self.dir / 'dbus.log').read_text()}")
            time.sleep(0.01)  # sync-ok: polling for the socket file with a deadline
        env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": self.address}
        launcher = Path(__file__).with_name("bluezoo_patched.py")
        self._procs.append(subprocess.Popen(
            [sys.executable, str(launcher), "--auto-enable", "--scan-interval", "1", "-v",
             "-a", CENTRAL, "-a", PERIPHERAL],
            env=env, stdout=subprocess.DEVNULL, stderr=open(self.dir / "bluezoo.log", "wb")))
        return self

    def log(self) -> str:
        p = self.dir / "bluezoo.log"
        return p.read_text()[-4000:] if p.exists() else ""

    def __exit__(self, *exc: object) -> None:
        for p in reversed(self._procs):
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
        self._procs.clear()
        shutil.rmtree(self.dir, ignore_errors=True)


async def wait_for_bluez(bus: MessageBus, timeout_s: float = 10.0) -> None:
    """Poll (with a deadline) until org.bluez owns its name and hci1 exists."""
    deadline = time.monotonic() + timeout_s
    while True:
        reply = await bus.call(Message(destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
                                       interface="org.freedesktop.DBus", member="NameHasOwner",
                                       signature="s", body=["org.bluez"]))
        if reply.body and reply.body[0]:
            reply = await bus.call(Message(destination="org.bluez", path="/", member="GetManagedObjects",
                                           interface="org.freedesktop.DBus.ObjectManager"))
            if reply.message_type == MessageType.METHOD_RETURN and "/org/bluez/hci1" in reply.body[0]:
                return
        if time.monotonic() > deadline:
            raise BluezooUnavailable("BlueZoo did not come up on the private bus")
        await asyncio.sleep(0.05)  # sync-ok: polling D-Bus with a deadline


class _Service(ServiceInterface):
    def __init__(self, uuid: str) -> None:
        super().__init__("org.bluez.GattService1")
        self._uuid = uuid

    @dbus_property(access=PropertyAccess.READ)
    def UUID(self) -> "s":  # noqa: F821
        return self._uuid

    @dbus_property(access=PropertyAccess.READ)
    def Primary(self) -> "b":  # noqa: F821
        return True


class _Char(ServiceInterface):
    def __init__(self, uuid: str, service_path: str, flags: list, value: bytes = b"") -> None:
        super().__init__("org.bluez.GattCharacteristic1")
        self._uuid, self._service, self._flags = uuid, service_path, flags
        self._value = value
        self.notifying = False
        self.writes: list = []
        self.notify_changed = asyncio.Event()

    @dbus_property(access=PropertyAccess.READ)
    def UUID(self) -> "s":  # noqa: F821
        return self._uuid

    @dbus_property(access=PropertyAccess.READ)
    def Service(self) -> "o":  # noqa: F821
        return self._service

    @dbus_property(access=PropertyAccess.READ)
    def Flags(self) -> "as":
        return self._flags

    @dbus_property(access=PropertyAccess.READ)
    def Value(self) -> "ay":  # noqa: F821
        return self._value

    @dbus_property(access=PropertyAccess.READ)
    def Notifying(self) -> "b":  # noqa: F821
        return self.notifying

    @method()
    def ReadValue(self, options: "a{sv}") -> "ay":  # noqa: F821
        return self._value

    @method()
    def WriteValue(self, value: "ay", options: "a{sv}"):  # noqa: F821
        self.writes.append((time.monotonic(), bytes(value)))
        self.notify_changed.set()

    @method()
    def StartNotify(self):
        self.notifying = True
        self.notify_changed.set()

    @method()
    def StopNotify(self):
        self.notifying = False
        self.notify_changed.set()

    @method()
    def Confirm(self):
        pass

    def notify(self, value: bytes) -> None:
        self._value = value
        self.emit_properties_changed({"Value": value})


class _Advertisement(ServiceInterface):
    """LE advertisement; its service data carries a counter that changes every 0.5 s,
    like sensors that advertise a status byte. (BlueZoo reports a device to a running
    scan only when a property changes, unlike real BlueZ whose RSSI updates do that;
    manufacturer data can't be used: BlueZoo 1.0.2 declares it ``a{sv}`` instead of
    BlueZ's ``a{qv}`` and then fails to serialise it, breaking GetManagedObjects.)"""

    def __init__(self) -> None:
        super().__init__("org.bluez.LEAdvertisement1")
        self.counter = 0

    @dbus_property(access=PropertyAccess.READ)
    def ServiceData(self) -> "a{sv}":
        return {sw.SERVICE_UUID: Variant("ay", bytes([self.counter % 256]))}

    def bump(self) -> None:
        self.counter += 1
        self.emit_properties_changed({"ServiceData": {sw.SERVICE_UUID: Variant("ay", bytes([self.counter % 256]))}})

    @dbus_property(access=PropertyAccess.READ)
    def Type(self) -> "s":  # noqa: F821
        return "peripheral"

    @dbus_property(access=PropertyAccess.READ)
    def LocalName(self) -> "s":  # noqa: F821
        return "SpineWatch-BZ01"

    @dbus_property(access=PropertyAccess.READ)
    def ServiceUUIDs(self) -> "as":
        return [sw.SERVICE_UUID]

    @dbus_property(access=PropertyAccess.READ)
    def Discoverable(self) -> "b":  # noqa: F821
        return True

    @method()
    def Release(self):
        pass


class BluezSensor:
    """The SpineWatch sensor app on hci1: register, then stream while subscribed."""

    def __init__(self, bus_address: str, rate_hz: float = 100.0, spp: int = 5) -> None:
        self.bus_address = bus_address
        self.rate_hz, self.spp = rate_hz, spp
        self.bus: MessageBus | None = None
        self.imu: _Char | None = None
        self.haptic: _Char | None = None
        self.seq = 0
        self.next_sample = 0
        self.sent = 0
        self.first_sent: int | None = None  # sensor index of the first sample sent
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self.bus = bus = await MessageBus(bus_address=self.bus_address, bus_type=BusType.SYSTEM).connect()
        await wait_for_bluez(bus)
        s0, s1 = f"{APP_PATH}/service0", f"{APP_PATH}/service1"
        self.imu = _Char(sw.IMU_CHAR_UUID, s0, ["notify"])
        self.haptic = _Char(sw.HAPTIC_CHAR_UUID, s0, ["write"])
        config = _Char(sw.CONFIG_CHAR_UUID, s0, ["read"], sw.encode_config(sw.SensorConfig(int(self.rate_hz),
                                                                                           samples_per_packet=self.spp)))
        battery = _Char(BATTERY_LEVEL_CHAR_UUID, s1, ["read"], bytes([77]))
        bus.export(APP_PATH, _Noop())
        bus.export(s0, _Service(sw.SERVICE_UUID))
        bus.export(f"{s0}/char0", self.imu)
        bus.export(f"{s0}/char1", self.haptic)
        bus.export(f"{s0}/char2", config)
        bus.export(s1, _Service(BATTERY_SERVICE_UUID))
        bus.export(f"{s1}/char0", battery)
        self.adv = _Advertisement()
        bus.export(ADV_PATH, self.adv)
        for iface, member, path in (("org.bluez.GattManager1", "RegisterApplication", APP_PATH),
                                    ("org.bluez.LEAdvertisingManager1", "RegisterAdvertisement", ADV_PATH)):
            reply = await bus.call(Message(destination="org.bluez", path="/org/bluez/hci1", interface=iface,
                                           member=member, signature="oa{sv}", body=[path, {}]))
            if reply.message_type == MessageType.ERROR:
                raise BluezooUnavailable(f"{member} failed: {reply.error_name} {reply.body}")
        self._task = asyncio.create_task(self._firmware())

    def sample(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Sample i (body frame): upright, with a slow sway in acc x that identifies i."""
        acc = np.array([[0.5 * np.sin(i / 50.0), 0.0, 9.80665]])
        return acc, np.zeros((1, 3))

    async def _firmware(self) -> None:
        t0 = time.monotonic()
        period = self.spp / self.rate_hz
        next_adv = t0
        while True:
            if time.monotonic() >= next_adv:
                next_adv += 0.5
                self.adv.bump()
            due = int((time.monotonic() - t0) * self.rate_hz)
            while self.next_sample + self.spp <= due:
                i0 = self.next_sample
                self.next_sample += self.spp
                if not self.imu.notifying:
                    continue  # the sensor samples on, but only sends while subscribed
                acc = np.concatenate([self.sample(i)[0] for i in range(i0, i0 + self.spp)])
                pkt = sw.build_packet(acc, np.zeros_like(acc), seq=self.seq,
                                      t0_us=round(i0 * 1e6 / self.rate_hz))
                self.seq = (self.seq + 1) % 65536
                if self.first_sent is None:
                    self.first_sent = i0
                self.imu.notify(pkt)
                self.sent += 1
            await asyncio.sleep(period)  # sync-ok: the simulated sensor's sample clock

    async def drop_link(self, side: str = "central") -> None:
        """Link loss, as BlueZoo can simulate it: Device1.Disconnect called on the
        emulated device object behind bleak's back (``central``: hci0's object for the
        sensor; ``peripheral``: hci1's object for the central)."""
        if side == "central":
            path = "/org/bluez/hci0/dev_" + PERIPHERAL.replace(":", "_")
        else:
            path = "/org/bluez/hci1/dev_" + CENTRAL.replace(":", "_")
        reply = await self.bus.call(Message(destination="org.bluez", path=path, interface="org.bluez.Device1",
                                            member="Disconnect"))
        if reply.message_type == MessageType.ERROR:
            raise RuntimeError(f"Disconnect failed: {reply.error_name} {reply.body}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self.bus is not None:
            self.bus.disconnect()


class _Noop(ServiceInterface):
    """Something exported at the application root so ObjectManager answers there."""

    def __init__(self) -> None:
        super().__init__("org.spinewatch.TestApp")


def _variant(sig: str, v: object) -> Variant:
    return Variant(sig, v)
