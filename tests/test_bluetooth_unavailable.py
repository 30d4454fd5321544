"""The bridge commands on a machine without Bluetooth (no D-Bus system bus): one line with the fix.

"No D-Bus" is made at the lowest level: DBUS_SYSTEM_BUS_ADDRESS points at a socket path that
does not exist, so bleak's and dbus-fast's real code runs and fails as it would on such a machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from spinewatch.firmware_bridge.bluez import FIX_NO_SYSTEM_BUS

# bleak fails on the socket at once; the bound covers the interpreter start under load and a
# bridge that would otherwise retry forever
EXIT_BOUND_S = 60.0
SENSOR = "AA:BB:CC:DD:EE:FF"


def _spinewatch(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    e = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={tmp_path / 'no-such-bus' / 'socket'}", **env}
    return subprocess.run([sys.executable, "-m", "spinewatch", *args], capture_output=True, text=True,
                          env=e, timeout=EXIT_BOUND_S, cwd=tmp_path)


def _assert_one_clear_line(proc: subprocess.CompletedProcess[str], tmp_path: Path) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 1, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if "Bluetooth is not available" in ln]
    assert len(lines) == 1, proc.stderr  # once, not once per retry
    line = lines[0]
    assert line.startswith("spinewatch: Bluetooth is not available: D-Bus system bus not reachable at unix:path="), line
    assert str(tmp_path / "no-such-bus" / "socket") in line
    assert FIX_NO_SYSTEM_BUS in line  # the same fix as `spinewatch doctor`


def test_bridge_scan_without_dbus_says_what_to_install_like_doctor(tmp_path):
    proc = _spinewatch(["bridge", "scan", "--timeout", "1"], tmp_path)
    _assert_one_clear_line(proc, tmp_path)
    doctor = _spinewatch(["doctor", "--skip", "config", "--skip", "broker", "--skip", "influxdb",
                          "--skip", "grafana"], tmp_path)
    assert "Traceback" not in doctor.stderr
    [bt] = [ln for ln in doctor.stdout.splitlines() if "bluetooth" in ln]
    assert bt.startswith("FAIL") and bt.endswith(f"-> {FIX_NO_SYSTEM_BUS}"), bt  # one hint, two commands


def test_bridge_record_without_dbus_fails_at_once(tmp_path):
    proc = _spinewatch(["bridge", "record", "session.csv", "--device", SENSOR], tmp_path)
    _assert_one_clear_line(proc, tmp_path)
    assert not list(tmp_path.glob("session.csv*"))  # no empty file that looks like a recording


@pytest.mark.network
def test_bridge_run_without_dbus_exits_instead_of_retrying(mosquitto, tmp_path):
    proc = _spinewatch(["bridge", "run", "--device", SENSOR, "--patient", "p-nobus"], tmp_path,
                       SPINEWATCH_MQTT_URL=mosquitto.url)
    _assert_one_clear_line(proc, tmp_path)


@pytest.mark.network
def test_calibrate_without_dbus_says_so_instead_of_no_sensor(mosquitto, tmp_path):
    proc = _spinewatch(["calibrate", "--sensor", SENSOR, "--patient", "p-nobus", "--device", "d-nobus",
                        "--connect-timeout", "30"], tmp_path, SPINEWATCH_MQTT_URL=mosquitto.url)
    _assert_one_clear_line(proc, tmp_path)
