"""Simulated sensors in a separate process behind the fake bleak backend (tests and benchmarks).

In production the radio and BlueZ live outside the bridge process: notifications reach it
as D-Bus messages. :class:`RemoteRadio` models that: its :class:`FakeSensor` s run in a
child process (``python tests/fakes/remote_radio.py``), which writes each notification's
raw bytes to a pipe; in the bridge's process a thin proxy per sensor
(:class:`RemoteSensor`) hands them to the same fake bleak backend classes as
:class:`~fakes.fake_bleak.FakeRadio` (``radio.client_backend`` / ``radio.scanner_backend``),
so bleak's ``BleakClient``, bleak-retry-connector and ``BleSource`` all run above it. The
bridge process then holds only what a production bridge holds (plus this thin proxy): its
CPU time and RSS need no correction for the simulated sensors.

Usage::

    async with RemoteRadio(20) as radio:         # 20 SpineWatch sensors at 100 Hz
        src = BleSource(get_profile("spinewatch"), radio.addresses[0],
                        client_backend=radio.client_backend, scanner_backend=radio.scanner_backend)

Wire protocol (private to this module). Child -> parent frames: ``<cHHHd`` (kind, sensor
index, subscription number, payload length, delivery time in ``time.monotonic()`` seconds,
the same clock in both processes on Linux) then the payload; kinds ``H`` (hello: a JSON list
of the sensors) and ``N`` (a notification). Parent -> child: text lines ``sub I K``,
``unsub I``, ``drop I AWAY``, ``silent I 0|1``, ``lose I K``. The child exits when its
stdin closes. Reads (battery, config) are answered in the parent from the hello; haptic
writes are recorded in the parent (``RemoteSensor.haptic_writes``).
"""

from __future__ import annotations

import asyncio
import json
import os
import struct
import subprocess
import sys
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from bleak.backends.client import NotifyCallback
from bleak.exc import BleakError

from fakes.fake_bleak import FakeBleakClient, FakeRadio, SensorGatt, check_connectable
from spinewatch.firmware_bridge.profiles import (
    SensorProfile,
    get_profile,
)

_THIS_FILE = Path(__file__).resolve()  # the child process runs this module as a script
_FRAME = struct.Struct("<cHHHd")
_SW_T0 = struct.Struct("<I")  # SpineWatch header: u16 seq, u32 device time of the first sample (us)


def sensor_address(i: int) -> str:
    return f"C0:FF:EE:00:{i // 256:02X}:{i % 256:02X}"


class RemoteSensor(SensorGatt):
    """The bridge-side proxy of one simulated sensor of the child process.

    Has the attributes and methods of :class:`~fakes.fake_bleak.FakeSensor` that the fake
    bleak backend uses, plus the fault controls ``drop_link``, ``silent``, ``lose_in_air``.
    ``delivered_at`` maps the first sample index of each delivered SpineWatch notification to
    its delivery time (``time.monotonic()`` s, stamped in the child when the sensor sent it);
    ``first_index`` is the index of the first one, which BleSource's stream time 0 stands for
    (it is not 0 when a first connection attempt was dropped after subscribing).
    """

    def __init__(self, radio: RemoteRadio, index: int, info: dict[str, Any]) -> None:
        self._radio = radio
        self.index = index
        self.address: str = info["address"]
        self.name: str = info["name"]
        self.profile: SensorProfile = get_profile(info["profile"])
        self.rssi_dbm: int = info["rssi_dbm"]
        self.battery_pct: int = info["battery_pct"]
        self.rate_hz: float = info["rate_hz"]
        self.spp: int = info["spp"]
        self.advertising = True
        self.connect_failures = 0
        self.client: FakeBleakClient | None = None
        self._notify: NotifyCallback | None = None
        self._sub = 0  # subscription number: frames of an older subscription are discarded
        self._silent = False
        self.delivered = 0
        self.delivered_at: dict[int, float] = {}
        self.first_index: int | None = None  # sample index of the first notification delivered (stream time 0)
        self.record_delivery = True
        self.haptic_writes: list[tuple[float, bytes]] = []
        self.haptic_event = asyncio.Event()

    # ------------------------------------------------------------------ controls

    def drop_link(self, away_samples: int = 0) -> None:
        """Link loss (see FakeSensor.drop_link)."""
        client = self.client
        self.client = None
        self._notify = None
        self._radio._send(f"drop {self.index} {int(away_samples)}")
        if client is not None:
            client._link_lost()

    @property
    def silent(self) -> bool:
        return self._silent

    @silent.setter
    def silent(self, value: bool) -> None:
        self._silent = bool(value)
        self._radio._send(f"silent {self.index} {int(self._silent)}")

    def lose_in_air(self, k: int) -> None:
        self._radio._send(f"lose {self.index} {int(k)}")

    # ------------------------------------------------------------------ GATT side (as FakeSensor)

    def _attach(self, client: FakeBleakClient) -> None:
        check_connectable(self)
        self.client = client
        self._silent = False

    def _detach(self) -> None:
        self.client = None
        if self._notify is not None:
            self._notify = None
            self._radio._send(f"unsub {self.index}")

    def subscribe(self, uuid: str, callback: NotifyCallback) -> None:
        if uuid != self.profile.imu_char_uuid:
            raise BleakError(f"characteristic {uuid} does not notify")
        self._sub = (self._sub + 1) % 65536
        self._notify = callback
        self._radio._send(f"sub {self.index} {self._sub}")

    def _deliver(self, sub: int, t_s: float, data: bytes) -> None:
        notify = self._notify
        if notify is None or sub != self._sub:
            return  # sent before the central unsubscribed: lost with the old link
        if self.record_delivery and self.profile.name == "spinewatch":
            (t0_us,) = _SW_T0.unpack_from(data, 2)
            i0 = round(t0_us * self.rate_hz / 1e6)
            self.delivered_at[i0] = t_s
            if self.first_index is None:
                self.first_index = i0
        self.delivered += 1
        notify(bytearray(data))


class _FeedProtocol(asyncio.Protocol):
    def __init__(self, radio: RemoteRadio) -> None:
        self._radio = radio
        self._buf = bytearray()

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        pos, n = 0, len(buf)
        hdr = _FRAME.size
        sensors = self._radio.sensors_by_index
        while n - pos >= hdr:
            kind, idx, sub, size, t_s = _FRAME.unpack_from(buf, pos)
            end = pos + hdr + size
            if end > n:
                break
            payload = bytes(buf[pos + hdr:end])
            pos = end
            if kind == b"N":
                sensors[idx]._deliver(sub, t_s, payload)
            elif kind == b"H":
                self._radio._hello(json.loads(payload))
        del buf[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        self._radio._closed.set()


class RemoteRadio(FakeRadio):
    """``n`` fake sensors of ``profile`` at ``rate_hz`` in a child process (see module docstring).

    Sensor ``i`` has address :func:`sensor_address(i) <sensor_address>` and simulator seed
    ``seed + i``; ``speed`` as in FakeSensor. ``script``: ``"day"`` (``PostureScript.day``) or
    ``"desk"`` (:func:`desk_script`: a slouch every 11 s, for haptics under load). Use as
    ``async with``.
    """

    def __init__(self, n: int, profile: str = "spinewatch", *, rate_hz: float = 100.0, speed: float = 1.0,
                 seed: int = 0, script: str = "day") -> None:
        super().__init__()
        if script not in ("day", "desk"):
            raise ValueError(f"script must be 'day' or 'desk', got {script!r}")
        self.args = [str(n), profile, str(rate_hz), str(speed), str(seed), script]
        self.sensors_by_index: list[RemoteSensor] = []
        self._proc: subprocess.Popen[bytes] | None = None
        self._ready = asyncio.Event()
        self._closed = asyncio.Event()
        self._transport: asyncio.ReadTransport | None = None

    @property
    def addresses(self) -> list[str]:
        return [s.address for s in self.sensors_by_index]

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    async def __aenter__(self) -> Self:
        env = dict(os.environ)
        root = _THIS_FILE.parents[2]
        env["PYTHONPATH"] = os.pathsep.join([str(root), str(root / "tests"), env.get("PYTHONPATH", "")])
        # Popen returns once the child is forked; its stdout is then read by the event loop
        self._proc = subprocess.Popen([sys.executable, str(_THIS_FILE), *self.args],  # noqa: ASYNC220
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        assert self._proc.stdout is not None
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.connect_read_pipe(lambda: _FeedProtocol(self), self._proc.stdout)
        try:
            async with asyncio.timeout(60):
                await self._ready.wait()
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        assert proc.stdin is not None
        proc.stdin.close()  # the child exits on EOF
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.run_in_executor(None, proc.wait), 10)
        except TimeoutError:
            proc.kill()
            await loop.run_in_executor(None, proc.wait)
        if self._transport is not None:
            self._transport.close()

    def _hello(self, infos: list[dict[str, Any]]) -> None:
        for i, info in enumerate(infos):
            s = RemoteSensor(self, i, info)
            self.sensors_by_index.append(s)
            self.sensors[s.address.upper()] = s  # type: ignore[assignment]
        self._ready.set()

    def _send(self, line: str) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None:
            return
        try:
            proc.stdin.write(line.encode() + b"\n")
            proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass


# ---------------------------------------------------------------------- the child process


def desk_script(seed: int) -> Any:
    """4 s upright calibration, then 30 deg slouches of 6 s between upright sitting of 5 s
    (the first sitting lasts 3-7 s by ``seed``, so a fleet's slouches are spread out)."""
    from spinewatch.firmware_bridge.sim import PostureScript, Segment

    segs = [Segment("calibrate", 0.0, 4.0)]
    t, sit_s = 4.0, 3.0 + seed % 5
    while t < 180.0:
        segs.append(Segment("sit", t, t + sit_s))
        segs.append(Segment("slouch", t + sit_s, t + sit_s + 6.0, flexion_deg=30.0))
        t, sit_s = t + sit_s + 6.0, 5.0
    return PostureScript(tuple(segs))


async def _child(n: int, profile_name: str, rate_hz: float, speed: float, seed: int, script: str) -> None:
    import time

    from fakes.fake_bleak import FakeSensor

    out = sys.stdout.buffer.fileno()
    prof = get_profile(profile_name)
    sensors = [FakeSensor(sensor_address(i), prof, rate_hz=rate_hz, speed=speed, seed=seed + i,
                          script=desk_script(seed + i) if script == "desk" else None)
               for i in range(n)]

    def send(kind: bytes, idx: int, sub: int, payload: bytes) -> None:
        os.write(out, _FRAME.pack(kind, idx, sub, len(payload), time.monotonic()) + payload)

    class _Central:  # what FakeSensor holds as its client while the parent is subscribed
        def _link_lost(self) -> None:
            pass

    def subscribe(i: int, sub: int) -> None:
        s = sensors[i]
        if s.client is not None:
            s._detach()
        s._attach(_Central())  # type: ignore[arg-type]
        s.subscribe(prof.imu_char_uuid, lambda data: send(b"N", i, sub, bytes(data)))

    send(b"H", 0, 0, json.dumps([
        {"address": s.address, "name": s.name, "profile": prof.name, "rssi_dbm": s.rssi_dbm,
         "battery_pct": s.battery_pct, "rate_hz": s.rate_hz, "spp": s.spp} for s in sensors]).encode())
    reader = asyncio.StreamReader()
    await asyncio.get_running_loop().connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        cmd, *a = line.decode().split()
        i = int(a[0])
        if cmd == "sub":
            subscribe(i, int(a[1]))
        elif cmd == "unsub":
            sensors[i]._detach()
        elif cmd == "drop":
            sensors[i].drop_link(int(a[1]))
        elif cmd == "silent":
            sensors[i].silent = bool(int(a[1]))
        elif cmd == "lose":
            sensors[i].lose_in_air(int(a[1]))


if __name__ == "__main__":
    _n, _prof, _rate, _speed, _seed, _script = sys.argv[1:7]
    try:
        asyncio.run(_child(int(_n), _prof, float(_rate), float(_speed), int(_seed), _script))
    except (BrokenPipeError, KeyboardInterrupt):
        pass
