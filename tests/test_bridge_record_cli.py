"""``spinewatch bridge record`` stopped with Ctrl-C, through the real CLI and bleak's BlueZ backend.

The machine's Bluetooth is BlueZoo (emulated BlueZ adapters on a private D-Bus, see
tests/test_ble_bluez.py); the CLI runs as a subprocess with DBUS_SYSTEM_BUS_ADDRESS pointing
at it. With no sensor nothing may be left under FILE (an empty file looks like a recording);
with a sensor, Ctrl-C keeps what was recorded as a valid recording.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

if not sys.platform.startswith("linux"):
    pytest.skip("BlueZ is Linux-only", allow_module_level=True)

from fakes.bluez_peripheral import PERIPHERAL, BluezooUnavailable, BluezooWorld, BluezSensor

from spinewatch.firmware_bridge.replay import COLUMNS, FORMAT_LINE, read_recording

ABSENT_SENSOR = "AA:BB:CC:DD:EE:FF"
EXIT_BOUND_S = 30.0  # after Ctrl-C: the scan in progress ends and the file is finished
HEADER_BYTES = len(f"{FORMAT_LINE} rate_hz=100\n{','.join(COLUMNS)}\n")


@pytest.fixture
def bluezoo():
    try:
        world = BluezooWorld().__enter__()
    except BluezooUnavailable as exc:
        pytest.skip(f"BlueZoo test needs dbus-daemon and bluezoo: {exc}")
    try:
        yield world
    finally:
        world.__exit__()


async def _start_record(bus: str, out: Path, device: str) -> asyncio.subprocess.Process:
    env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": bus}
    return await asyncio.create_subprocess_exec(
        # the central's adapter: with two, BlueZ's "default" one is whichever bleak meets first, and
        # the peripheral's own adapter never sees its own advertisement
        sys.executable, "-m", "spinewatch", "bridge", "record", str(out), "--device", device, "--adapter", "hci0",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=out.parent)


async def _wait_line(proc: asyncio.subprocess.Process, text: str, timeout_s: float = 60.0) -> list[str]:
    seen: list[str] = []
    async with asyncio.timeout(timeout_s):
        while True:
            line = (await proc.stderr.readline()).decode()
            if not line:
                raise AssertionError(f"exited before {text!r}: {''.join(seen)}")
            seen.append(line)
            if text in line:
                return seen


async def _read_all(stream: asyncio.StreamReader, into: list[str]) -> None:
    while line := (await stream.readline()).decode():
        into.append(line)


async def _interrupt(proc: asyncio.subprocess.Process) -> tuple[int, str]:
    proc.send_signal(signal.SIGINT)  # what Ctrl-C does
    async with asyncio.timeout(EXIT_BOUND_S):
        _, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, err.decode()


def test_record_with_no_sensor_then_ctrl_c_leaves_no_file_and_fails(bluezoo, tmp_path):
    out = tmp_path / "session.csv"

    async def main() -> tuple[int, str]:
        proc = await _start_record(bluezoo.address, out, ABSENT_SENSOR)
        await _wait_line(proc, "until Ctrl-C")
        return await _interrupt(proc)

    rc, err = asyncio.run(main())
    assert "Traceback" not in err, err
    assert rc == 1, err
    [line] = [ln for ln in err.splitlines() if "no sample was recorded" in ln]
    assert line.startswith("spinewatch: no sample was recorded") and f"{out} was not written" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # neither session.csv nor session.csv.part


def test_record_then_ctrl_c_keeps_the_samples_as_a_valid_recording(bluezoo, tmp_path):
    out = tmp_path / "session.csv"
    part = tmp_path / "session.csv.part"
    sensor = BluezSensor(bluezoo.address)

    async def main() -> tuple[int, str]:
        try:
            await sensor.start()
        except BluezooUnavailable as exc:
            pytest.skip(f"BlueZoo could not host the sensor: {exc}")
        try:
            proc = await _start_record(bluezoo.address, out, PERIPHERAL)
            seen = await _wait_line(proc, "until Ctrl-C")
            # keep reading its stderr meanwhile: a full pipe would block the recorder's writes
            drain = asyncio.create_task(_read_all(proc.stderr, seen))
            try:
                async with asyncio.timeout(60):  # samples on disk (the CSV streams through a buffer)
                    while not (part.exists() and part.stat().st_size > HEADER_BYTES):  # noqa: ASYNC110
                        await asyncio.sleep(0.05)  # sync-ok: polling a file with a deadline
            except TimeoutError:
                raise AssertionError(f"no sample on disk within 60 s; recorder said: {''.join(seen)}") from None
            assert not out.exists()  # not under its name while recording
            proc.send_signal(signal.SIGINT)  # what Ctrl-C does
            async with asyncio.timeout(EXIT_BOUND_S):
                await proc.wait()
                await drain
            return proc.returncode, "".join(seen)
        finally:
            await sensor.stop()

    rc, err = asyncio.run(main())
    assert "Traceback" not in err, err
    assert rc == 0, err
    rec = read_recording(out)
    assert len(rec) > 0 and rec.rate_hz == 100.0
    assert f"recorded {len(rec):,} samples to {out}" in err
    assert not part.exists()
