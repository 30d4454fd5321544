"""``spinewatch bridge ...`` commands: help texts, errors, and ``run --replay`` against a real broker."""

from __future__ import annotations

import argparse
import asyncio
import json

import pytest
from _mqtt_helpers import TestClient

from spinewatch.errors import ConfigError
from spinewatch.firmware_bridge.replay import write_recording
from spinewatch.firmware_bridge.sim import PostureScript, SimulatedPatient
from spinewatch.service.cli.bridge import add_bridge_commands


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="spinewatch")
    p.add_argument("--config", default=None)
    add_bridge_commands(p.add_subparsers(dest="command", required=True))
    return p


@pytest.mark.parametrize("cmd", [["bridge"], ["bridge", "scan"], ["bridge", "run"], ["bridge", "record"]])
def test_every_bridge_command_has_help_with_an_example(cmd, capsys):
    with pytest.raises(SystemExit) as ei:
        parser().parse_args([*cmd, "--help"])
    assert ei.value.code == 0
    out = capsys.readouterr().out
    assert "usage: spinewatch bridge" in out
    if cmd != ["bridge"]:
        assert "example: " in out


def test_bad_profile_and_mount_are_config_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("SPINEWATCH_MQTT_URL", "mqtt://127.0.0.1:1")
    a = parser().parse_args(["bridge", "record", str(tmp_path / "x.csv"), "--profile", "polar"])
    with pytest.raises(ConfigError, match="--profile"):
        a.func(a)
    a = parser().parse_args(["bridge", "record", str(tmp_path / "x.csv"), "--mount", "+X+X+X"])
    with pytest.raises(ConfigError, match="--mount"):
        a.func(a)
    a = parser().parse_args(["bridge", "record", str(tmp_path / "x.txt")])
    with pytest.raises(ConfigError, match="FILE"):
        a.func(a)


@pytest.mark.network
def test_bridge_run_replays_a_recording_to_mqtt(fresh_mosquitto, tmp_path, monkeypatch):
    sim = SimulatedPatient(PostureScript.day(120.0, seed=4), batch_samples=50)

    async def collect():
        async with sim:
            return [b async for b in sim.batches()]

    rec = tmp_path / "rec.npz"
    n = write_recording(rec, 100.0, asyncio.run(collect()))
    monkeypatch.setenv("SPINEWATCH_MQTT_URL", fresh_mosquitto.url)
    watcher = TestClient("127.0.0.1", fresh_mosquitto.port, mqtt5=True)
    watcher.connect()
    watcher.subscribe("spinewatch/v1/p-cli/d-cli/posture")
    a = parser().parse_args(["bridge", "run", "--replay", str(rec), "--speed", "0", "--patient", "p-cli",
                             "--device-id", "d-cli"])
    assert a.func(a) == 0
    samples = 0
    while samples < n:
        samples += len(json.loads(watcher.get().payload)["flexion_deg"])
    watcher.close()
    assert samples == n
