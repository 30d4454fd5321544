"""The BLE connection manager: a sensor over bleak as an :class:`ImuSource` that never gives up.

:class:`BleSource` scans for the sensor (by address, advertised name or service UUID),
connects with bleak-retry-connector's ``establish_connection`` to the ``BLEDevice`` the
scan returned, reads the sensor config and battery, subscribes to the IMU
characteristic and streams. When the link drops, or stays silent for
``silence_timeout_s`` (then it is recycled), it reconnects forever, waiting
:func:`reconnect_delay_s` between attempts. A machine that cannot do BLE at all (no D-Bus system bus,
BlueZ not running, no powered adapter: :class:`BluetoothUnavailable`, with the same fix as
``spinewatch doctor``) ends the source before its first link instead; after a first link it is
retried with one log line per attempt (bluetoothd restarted, adapter re-plugged). Gaps are
flagged on the next batch and every packet/sample is accounted for in
:class:`~spinewatch.firmware_bridge.timing.LossCounters`.

bleak's notification callback only stamps the arrival time (monotonic ns) and puts the
bytes on a bounded queue; decoding and timing run in :meth:`BleSource.batches`.

bleak's backends are pluggable: ``client_backend`` / ``scanner_backend`` are passed to
``BleakClient(backend=...)`` / ``BleakScanner(backend=...)`` (tests use an in-process fake
backend; ``None`` is the platform's, BlueZ on Linux).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any, Final, Self

from bleak import BleakClient, BleakScanner
from bleak.backends.client import BaseBleakClient
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak.exc import BleakBluetoothNotAvailableError, BleakBluetoothNotAvailableReason, BleakDBusError, BleakError
from bleak_retry_connector import establish_connection

from spinewatch.backoff import backoff_delay_s
from spinewatch.errors import DecodeError, SpineWatchError
from spinewatch.firmware_bridge import bluez
from spinewatch.firmware_bridge.ble_config import RECONNECT_CAP_S, BleConfig
from spinewatch.firmware_bridge.profiles import BATTERY_LEVEL_CHAR_UUID, SensorProfile
from spinewatch.firmware_bridge.remap import MountAlignment
from spinewatch.firmware_bridge.timing import (
    ArrivalTimeline,
    LossCounters,
    SequencedTimeline,
    merge_batches,
)
from spinewatch.model import ImuBatch

__all__ = ["BleSource", "BluetoothUnavailable", "DeviceNotFound", "SilentLink", "bluetooth_unavailable",
           "reconnect_base_s", "reconnect_delay_s", "scan"]

_LOGGER = logging.getLogger(__name__)

# Base waits before a reconnect attempt, s, by what went wrong (bleak-retry-connector's
# calculate_backoff_time has the same idea): reconnect_base_s. Transient BlueZ/D-Bus errors
# clear quickly; a sensor that is not advertising is out of range or off, so look less often.
# Growth, cap and jitter are the one policy's, spinewatch/backoff.py.
BACKOFF_TRANSIENT_S: Final = 0.25
BACKOFF_LINK_LOST_S: Final = 0.5
BACKOFF_NOT_FOUND_S: Final = 2.0
BACKOFF_OTHER_S: Final = 1.0
BACKOFF_GROWTH: Final = 1.5  # per attempt, like aiomqtt v3's 1.5 ** attempt
BACKOFF_MAX_EXPONENT: Final = 10  # 1.5**10 = 58x the base at most
_MAX_DRAIN_PACKETS: Final = 512  # notifications decoded per wake-up before yielding


class DeviceNotFound(SpineWatchError):
    """No advertisement matched within the scan timeout.

    Attributes:
        device: what was looked for (address, name or service UUID).
    """

    def __init__(self, device: str, timeout_s: float) -> None:
        self.device = device
        super().__init__(
            f"no BLE device matching {device!r} advertised within {timeout_s:g} s; "
            "is it switched on, in range and not connected to another central?"
        )


class SilentLink(SpineWatchError):
    """A connected sensor sent no notification for ``silence_s``; the link is recycled."""

    def __init__(self, address: str, silence_s: float) -> None:
        self.address = address
        self.silence_s = silence_s
        super().__init__(f"{address}: no notification for {silence_s:.1f} s; reconnecting")


class BluetoothUnavailable(SpineWatchError):
    """This machine cannot do Bluetooth LE: no D-Bus system bus, BlueZ not running, no adapter,
    adapter off or access denied. Not transient: it lasts until someone fixes the machine.

    The message is one line: what is wrong, then ``->`` and the fix (the same hint as
    ``spinewatch doctor``, from :mod:`spinewatch.firmware_bridge.bluez`).

    Attributes:
        problem: what is wrong.
        fix: what to do about it.
    """

    def __init__(self, problem: str, fix: str) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(f"Bluetooth is not available: {problem} -> {fix} (`spinewatch doctor` checks it)")


_DBUS_SERVICE_UNKNOWN: Final = "org.freedesktop.DBus.Error.ServiceUnknown"
_FIX_BY_REASON: Final = {
    BleakBluetoothNotAvailableReason.NO_BLUETOOTH: bluez.FIX_NO_ADAPTER,
    BleakBluetoothNotAvailableReason.NO_BLE_CENTRAL_ROLE: bluez.FIX_NO_ADAPTER,
    BleakBluetoothNotAvailableReason.POWERED_OFF: bluez.FIX_POWERED_OFF,
    BleakBluetoothNotAvailableReason.DENIED_BY_SYSTEM: bluez.FIX_DENIED,
    BleakBluetoothNotAvailableReason.DENIED_BY_USER: bluez.FIX_DENIED,
    BleakBluetoothNotAvailableReason.DENIED_BY_UNKNOWN: bluez.FIX_DENIED,
}


def bluetooth_unavailable(exc: BaseException) -> BluetoothUnavailable | None:
    """``exc`` (raised by bleak with the platform backend) as a :class:`BluetoothUnavailable`,
    or None when it is about the sensor or the link rather than this machine."""
    if isinstance(exc, BluetoothUnavailable):
        return exc
    if isinstance(exc, BleakBluetoothNotAvailableError):
        return BluetoothUnavailable(str(exc.args[0]).rstrip("."), _FIX_BY_REASON.get(exc.reason, bluez.FIX_NO_BLUEZ))
    if isinstance(exc, BleakDBusError) and exc.dbus_error == _DBUS_SERVICE_UNKNOWN:
        return BluetoothUnavailable("BlueZ (org.bluez) is not running on the system bus", bluez.FIX_NO_BLUEZ)
    # dbus-fast's connect to the system bus socket: missing, refused, or not ours to open
    if isinstance(exc, (FileNotFoundError, ConnectionRefusedError, PermissionError)):
        cause = (exc.strerror or str(exc) or type(exc).__name__).lower()
        return BluetoothUnavailable(f"D-Bus system bus not reachable at {bluez.system_bus_address()} ({cause})",
                                    bluez.FIX_NO_SYSTEM_BUS)
    if type(exc).__name__ == "InvalidAddressError":  # dbus_fast: a malformed DBUS_SYSTEM_BUS_ADDRESS
        return BluetoothUnavailable(f"DBUS_SYSTEM_BUS_ADDRESS={bluez.system_bus_address()!r} is not a D-Bus "
                                    f"address ({exc})", bluez.FIX_NO_SYSTEM_BUS)
    return None


def reconnect_base_s(exc: BaseException | None) -> float:
    """The wait before the first reconnect after ``exc``, s, before growth and jitter.

    A D-Bus/BlueZ error or timeout is transient (:data:`BACKOFF_TRANSIENT_S`), a lost or
    silent link :data:`BACKOFF_LINK_LOST_S`, a device that is not advertising
    :data:`BACKOFF_NOT_FOUND_S`, anything else (None too) :data:`BACKOFF_OTHER_S`.
    """
    if isinstance(exc, (BleakDBusError, TimeoutError, EOFError, BrokenPipeError)):
        return BACKOFF_TRANSIENT_S
    if isinstance(exc, (SilentLink, _LinkLost)):
        return BACKOFF_LINK_LOST_S
    if isinstance(exc, DeviceNotFound):
        return BACKOFF_NOT_FOUND_S
    return BACKOFF_OTHER_S


def reconnect_delay_s(attempt: int, exc: BaseException | None, draw: float | None = None,
                      cap_s: float = RECONNECT_CAP_S) -> float:
    """Seconds to wait before BLE reconnect ``attempt`` (1-based) after ``exc``.

    The one retry-delay policy (:func:`spinewatch.backoff.backoff_delay_s`) with
    ``reconnect_base_s(exc) * 1.5 ** min(attempt - 1, 10)``, capped at ``cap_s``, and equal
    jitter, ``0.5 + 0.5 * draw``: never less than half, so bridges restarting together
    spread out without ever retrying in a tight loop.

    Args:
        attempt: 1 for the first retry after a failure.
        exc: what failed (:func:`reconnect_base_s`).
        draw: the jitter's random number in [0, 1]; None draws one. Pass it to make the
            function pure (tests).
        cap_s: upper bound before jitter, s (``BleConfig.backoff_cap_s``).

    Raises:
        ValueError: attempt < 1 or draw outside [0, 1].
    """
    return backoff_delay_s(attempt, base_s=reconnect_base_s(exc), growth=BACKOFF_GROWTH,
                           max_exponent=BACKOFF_MAX_EXPONENT, cap_s=cap_s, jitter="equal", draw=draw)


class _LinkLost(SpineWatchError):
    """The peripheral disconnected (internal: feeds reconnect_base_s)."""


def _matcher(device: str, profile: SensorProfile | None) -> Callable[[BLEDevice, AdvertisementData], bool]:
    """Match by address (``AA:BB:..``), by service UUID, or by advertised name prefix."""
    want = device.strip()
    low = want.lower()

    def match(d: BLEDevice, adv: AdvertisementData) -> bool:
        if d.address.lower() == low:
            return True
        if low in (u.lower() for u in adv.service_uuids):
            return True
        name = adv.local_name or d.name or ""
        if want and name.startswith(want):
            return True
        if not want and profile is not None:  # any sensor of the profile
            return profile.service_uuid in (u.lower() for u in adv.service_uuids) or any(
                name.startswith(p) for p in profile.name_prefixes)
        return False

    return match


async def scan(
    timeout_s: float = 5.0,
    service_uuids: list[str] | None = None,
    scanner_backend: type[BaseBleakScanner] | None = None,
) -> list[tuple[BLEDevice, AdvertisementData]]:
    """Every device advertising within ``timeout_s``, strongest signal first.

    Raises:
        BluetoothUnavailable: this machine cannot scan (no D-Bus, BlueZ or adapter), with the fix.
    """
    # bleak's ExtraArgs types service_uuids and backend without None, but BleakScanner takes
    # None for both (= every device / the platform's backend), which is what they default to
    try:
        found = await BleakScanner.discover(  # type: ignore[call-overload]
            timeout=timeout_s, return_adv=True, service_uuids=service_uuids, backend=scanner_backend)
    except Exception as exc:
        unavailable = bluetooth_unavailable(exc)
        if unavailable is None:
            raise
        raise unavailable from exc
    return sorted(found.values(), key=lambda da: -da[1].rssi)


class BleSource:
    """One BLE sensor as an :class:`~spinewatch.firmware_bridge.source.ImuSource`.

    Usage::

        async with BleSource(get_profile("spinewatch"), "SpineWatch-3F2A") as src:
            async for batch in src.batches():
                ...

    ``__aenter__`` starts the connection task and returns at once; ``batches()`` yields
    body-frame batches (the decoder remaps with ``mount``) as they arrive, across
    reconnects, until :meth:`stop` is called or the ``async with`` block exits.

    Args:
        profile: the sensor's :class:`SensorProfile`.
        device: address, advertised name (prefix) or service UUID; "" = the first
            device advertising the profile.
        mount: sensor-to-body alignment; default the profile's.
        rate_hz: sample rate; default the sensor's config characteristic if it has
            one, else the profile's default.
        config: :class:`BleConfig`.
        client_backend, scanner_backend: bleak backend classes (None = platform).
        backoff: ``backoff(attempt, exc) -> s``; tests pass ``lambda a, e: 0.0``.
        clock_ns: monotonic clock for arrival times (``time.monotonic_ns``).
        adapter: BlueZ adapter to use, e.g. ``"hci1"`` (None = the default one).

    Attributes:
        counters: :class:`LossCounters` of this sensor.
        connects: successful connections so far; ``reconnects = connects - 1``.
        silent_recycles: links recycled because the sensor went silent.
    """

    def __init__(
        self,
        profile: SensorProfile,
        device: str = "",
        *,
        mount: MountAlignment | None = None,
        rate_hz: float | None = None,
        config: BleConfig | None = None,
        client_backend: type[BaseBleakClient] | None = None,
        scanner_backend: type[BaseBleakScanner] | None = None,
        backoff: Callable[[int, BaseException | None], float] | None = None,
        clock_ns: Callable[[], int] = time.monotonic_ns,
        adapter: str | None = None,
    ) -> None:
        self.profile = profile
        self.adapter = adapter
        self._last_device: BLEDevice | None = None
        self.device = device
        self.mount = mount or profile.default_mount
        self.config = config or BleConfig()
        self._rate_hz = float(rate_hz or profile.default_rate_hz)
        self._rate_fixed = rate_hz is not None
        self._client_backend = client_backend
        self._scanner_backend = scanner_backend
        self._backoff = backoff or (lambda a, e: reconnect_delay_s(a, e, cap_s=self.config.backoff_cap_s))
        self._clock_ns = clock_ns
        self.counters = LossCounters()
        self.connects = 0
        self.silent_recycles = 0
        self.rssi_dbm: int | None = None
        self.battery_pct: int | None = None
        self.address: str | None = None
        self._client: BleakClient | None = None
        self._queue: asyncio.Queue[tuple[int, int, bytes] | None] = asyncio.Queue(self.config.queue_packets)
        self._epoch = 0  # link number; queued packets carry it so a reconnect is seen in order
        self._last_rx_ns = 0
        self._disconnected = asyncio.Event()
        self._connected = asyncio.Event()
        self._stopping = asyncio.Event()
        self._failed = asyncio.Event()
        self._fatal: BluetoothUnavailable | None = None
        self._task: asyncio.Task[None] | None = None
        self._timeline: SequencedTimeline | ArrivalTimeline | None = None
        self._last_decode_log = -1e18
        self._open = False

    # ------------------------------------------------------------------ ImuSource

    @property
    def rate_hz(self) -> float:
        return self._rate_hz

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.is_connected

    async def __aenter__(self) -> Self:
        self._open = True
        self._stopping.clear()
        self._failed.clear()
        self._fatal = None
        self._task = asyncio.create_task(self._link_loop(), name=f"ble[{self.device or self.profile.name}].link")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._open = False
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._drop_client()

    def stop(self) -> None:
        """Make :meth:`batches` end after what has already arrived (the link stays up
        until ``__aexit__``)."""
        self._stopping.set()
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(None)  # wake batches()

    async def wait_connected(self, timeout_s: float) -> bool:
        """Wait until a link is up (tests, CLI feedback).

        Raises:
            BluetoothUnavailable: this machine cannot do BLE (no D-Bus, BlueZ or adapter).
        """
        connected = asyncio.ensure_future(self._connected.wait())
        failed = asyncio.ensure_future(self._failed.wait())
        try:
            await asyncio.wait((connected, failed), timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            connected.cancel()
            failed.cancel()
        if self._fatal is not None:
            raise self._fatal
        return self._connected.is_set()

    async def batches(self) -> AsyncIterator[ImuBatch]:
        """Body-frame batches on the sensor's time axis, across reconnects, until stop().

        Raises:
            RuntimeError: called outside ``async with``.
            BluetoothUnavailable: this machine cannot do BLE (no D-Bus system bus, BlueZ not
                running, no powered adapter) and never could since the source was entered;
                the message says how to fix it.
        """
        if not self._open:
            raise RuntimeError("use BleSource inside 'async with' before batches()")
        tl = self._new_timeline()
        epoch = None
        poll_s = self.config.poll_interval_s
        while True:
            items: list[tuple[int, int, bytes] | None] = []
            if tl.pending_samples or self._stopping.is_set():
                # packets are held waiting for a missing one: wake up to give up on it in time
                try:
                    async with asyncio.timeout(poll_s):
                        items.append(await self._queue.get())
                except TimeoutError:
                    pass
            else:
                items.append(await self._queue.get())  # stop() puts None to wake us
            while len(items) < _MAX_DRAIN_PACKETS:
                try:
                    items.append(self._queue.get_nowait())
                except asyncio.QueueEmpty:
                    break
            out: list[ImuBatch] = []
            real = [it for it in items if it is not None]
            decoded = self.profile.decode_batch([d for _, _, d in real], self.mount)
            for (arrival_ns, ep, data), pkt in zip(real, decoded, strict=True):
                if epoch is not None and ep != epoch:
                    out += tl.flush()
                    tl.mark_reconnect()
                epoch = ep
                if isinstance(pkt, DecodeError):
                    self._count_decode_error(pkt, data)
                    continue
                out += tl.push(pkt, arrival_ns)
            out += tl.poll(self._clock_ns())
            for b in merge_batches(out):
                yield b
            if self._fatal is not None and self._queue.empty():
                raise self._fatal
            if self._stopping.is_set() and self._queue.empty():
                for b in merge_batches(tl.flush()):
                    yield b
                return

    # ------------------------------------------------------------------ status and haptics

    def status(self) -> dict[str, Any]:
        """Device status for the retained ``status`` topic."""
        return {
            "connected": self.connected,
            "address": self.address,
            "profile": self.profile.name,
            "rssi_dbm": self.rssi_dbm,
            "battery_pct": self.battery_pct,
            "reconnects": max(0, self.connects - 1),
            "silent_recycles": self.silent_recycles,
            "rate_hz": self._rate_hz,
            **self.counters.as_status(),
        }

    @property
    def has_haptics(self) -> bool:
        return self.profile.haptic_char_uuid is not None

    async def write_haptic(self, payload: bytes) -> bool:
        """Write a haptic command; False (logged) if not connected or no motor."""
        client = self._client
        if self.profile.haptic_char_uuid is None or client is None or not client.is_connected:
            return False
        try:
            await client.write_gatt_char(self.profile.haptic_char_uuid, payload, response=True)
        except (BleakError, TimeoutError, EOFError) as exc:
            _LOGGER.warning("%s: haptic write failed: %s", self.address, exc)
            return False
        return True

    async def buzz(self, pattern: str, intensity_pct: int, duration_ms: int) -> bool:
        """Play a haptic pattern with the profile's ``build_haptic``; False if the profile has
        none (no motor) or the write failed.

        Raises:
            ValueError: the profile's ``build_haptic`` refused the arguments.
        """
        build = self.profile.build_haptic
        if build is None:
            return False
        return await self.write_haptic(build(pattern, intensity_pct, duration_ms))

    # ------------------------------------------------------------------ internals

    def _new_timeline(self) -> SequencedTimeline | ArrivalTimeline:
        c = self.config
        if self.profile.has_sequence:
            tl: SequencedTimeline | ArrivalTimeline = SequencedTimeline(
                self._rate_hz, self.profile.seq_modulo, self.profile.clock_modulo_us,
                int(c.reorder_packets), int(c.max_hold_ms * 1e6), self.counters)
        else:
            tl = ArrivalTimeline(self._rate_hz, int(c.gap_tolerance_ms * 1e6), self.counters)
        self._timeline = tl
        return tl

    def _bluez_kwargs(self) -> dict[str, Any]:
        return {"bluez": {"adapter": self.adapter}} if self.adapter else {}

    def _count_decode_error(self, exc: DecodeError, data: bytes) -> None:
        self.counters.packets_received += 1
        self.counters.drop_packet(f"decode:{exc.reason}")
        now = time.monotonic()
        if now - self._last_decode_log >= self.config.decode_log_interval_s:
            self._last_decode_log = now
            _LOGGER.warning("%s: undecodable notification (%s), %d bytes: %s; counts: %s",
                            self.address, exc, len(data), data[:32].hex(), self.counters.dropped_packets)

    def _on_notify(self, _char: object, data: bytearray) -> None:
        """bleak callback: stamp and enqueue only."""
        now = self._clock_ns()
        self._last_rx_ns = now
        try:
            self._queue.put_nowait((now, self._epoch, bytes(data)))
        except asyncio.QueueFull:
            self.counters.packets_received += 1
            self.counters.drop_packet("queue_full")
            self.counters.drop_samples("queue_full", self.profile.samples_in(data))

    def _on_disconnect(self, _client: object) -> None:
        self._disconnected.set()

    async def _find(self) -> BLEDevice:
        match = _matcher(self.device, self.profile)
        hit: list[AdvertisementData] = []

        def filt(d: BLEDevice, adv: AdvertisementData) -> bool:
            if match(d, adv):
                hit.append(adv)
                return True
            return False

        # backend None = the platform's backend (bleak's ExtraArgs types it without None)
        dev = await BleakScanner.find_device_by_filter(filt, timeout=self.config.scan_timeout_s,
                                                       backend=self._scanner_backend,  # type: ignore[arg-type]
                                                       **self._bluez_kwargs())
        if dev is None:
            raise DeviceNotFound(self.device or self.profile.service_uuid, self.config.scan_timeout_s)
        if hit:
            self.rssi_dbm = hit[-1].rssi
        return dev

    async def _connect(self) -> None:
        # After a link loss, first try the device we had (BlueZ keeps its object; this is
        # faster than scanning, and a device that keeps advertising unchanged may not be
        # reported again by a new scan). Rescan if that fails.
        cached, self._last_device = self._last_device, None
        dev = cached or await self._find()
        self._disconnected.clear()
        client = await establish_connection(
            BleakClient, dev, dev.name or dev.address, disconnected_callback=self._on_disconnect,
            max_attempts=self.config.connect_attempts, backend=self._client_backend,
            **self._bluez_kwargs(),
        )
        self._last_device = dev
        self._client = client
        self.address = dev.address
        try:
            await self._read_sensor_info(client)
            self._epoch += 1
            self._last_rx_ns = self._clock_ns()
            await client.start_notify(self.profile.imu_char_uuid, self._on_notify)
        except BaseException:
            await self._drop_client()
            raise
        self.connects += 1
        self._connected.set()
        _LOGGER.info("%s: connected (%s, connection %d)", dev.address, self.profile.name, self.connects)

    async def _read_battery(self, client: BleakClient) -> None:
        """Battery level from the standard Battery Service, %; a failed read keeps the last value."""
        with contextlib.suppress(BleakError, TimeoutError, ValueError, IndexError, EOFError):
            self.battery_pct = int((await client.read_gatt_char(BATTERY_LEVEL_CHAR_UUID))[0])

    async def _read_sensor_info(self, client: BleakClient) -> None:
        if self.profile.has_battery_service:
            await self._read_battery(client)
        rate_from_config = self.profile.rate_from_config
        if rate_from_config is not None and self.profile.config_char_uuid is not None and self.connects == 0:
            try:
                rate_hz = rate_from_config(await client.read_gatt_char(self.profile.config_char_uuid))
            except (BleakError, DecodeError) as exc:
                _LOGGER.warning("cannot read sensor config (%s); assuming %g Hz", exc, self._rate_hz)
            else:
                if not self._rate_fixed:
                    self._rate_hz = float(rate_hz)
                elif rate_hz != self._rate_hz:
                    _LOGGER.error("sensor %s samples at %d Hz but the bridge was told %g Hz; sample times "
                                  "and the filter will be wrong: pass --rate-hz %d", client.address,
                                  rate_hz, self._rate_hz, rate_hz)

    async def _drop_client(self) -> None:
        client, self._client = self._client, None
        self._connected.clear()
        if client is not None:
            with contextlib.suppress(BleakError, TimeoutError, EOFError):
                await client.disconnect()

    async def _watch(self) -> BaseException:
        """Wait while the link is healthy (re-reading the battery now and then); return why it ended."""
        silence_ns = int(self.config.silence_timeout_s * 1e9)
        battery_s = self.config.battery_interval_s if self.profile.has_battery_service else 0.0
        periods = [p for p in (max(0.05, self.config.silence_timeout_s / 4) if silence_ns else 0.0, battery_s) if p]
        check_s = min(periods) if periods else None
        next_battery = time.monotonic() + battery_s
        while True:
            try:
                async with asyncio.timeout(check_s):
                    await self._disconnected.wait()
                return _LinkLost(f"{self.address} disconnected")
            except TimeoutError:
                quiet = self._clock_ns() - self._last_rx_ns
                if silence_ns and quiet >= silence_ns:
                    self.silent_recycles += 1
                    return SilentLink(self.address or "?", quiet / 1e9)
                client = self._client
                if battery_s and time.monotonic() >= next_battery and client is not None:
                    next_battery = time.monotonic() + battery_s
                    await self._read_battery(client)

    def _fail(self, exc: BluetoothUnavailable) -> None:
        """End the source: :meth:`batches` and :meth:`wait_connected` raise ``exc``."""
        self._fatal = exc
        self._failed.set()
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(None)  # wake batches()

    async def _link_loop(self) -> None:
        attempt = 0
        while True:
            try:
                await self._connect()
                attempt = 0
                why: BaseException = await self._watch()
                _LOGGER.warning("%s", why)
                await self._drop_client()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                await self._drop_client()
                unavailable = bluetooth_unavailable(exc)
                if unavailable is not None:
                    # The machine, not the sensor: before the first link it is how this machine is
                    # set up (fail with the fix); once streaming, bluetoothd restarting or an adapter
                    # re-plugged is worth waiting for (one line per retry below, no traceback).
                    if self.connects == 0:
                        self._fail(unavailable)
                        return
                    why = unavailable
                elif isinstance(exc, (BleakError, TimeoutError, EOFError, BrokenPipeError, SpineWatchError)):
                    why = exc
                else:
                    _LOGGER.exception("unexpected error on the BLE link; reconnecting")
                    why = exc
            attempt += 1
            delay = self._backoff(attempt, why)
            if attempt > 1 or not isinstance(why, (_LinkLost, SilentLink)):
                _LOGGER.warning("BLE %s: %s; retry %d in %.1f s", self.device or self.profile.name,
                                why, attempt, delay)
            if delay > 0:
                await asyncio.sleep(delay)  # sync-ok: reconnect backoff, not test synchronisation
            else:
                await asyncio.sleep(0)
