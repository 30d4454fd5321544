"""``spinewatch bridge run`` resumes the gyroscope bias it learnt, across ``kill -9`` (issue 17).

The real command as a subprocess, replaying recordings of a simulated sensor with a known
gyroscope bias: a first run sits still (the filter learns the bias at rest) and is killed
with SIGKILL once the bias was kept; the restarted bridge replays a walk at another sample
rate, where the vertical component of the bias cannot be learnt, and must resume the kept
bias before its first sample. A replay of the recording the state was learnt from, and a
state kept by another version, are not resumed (a log line says why).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
from _waiting import wait_until

from spinewatch.firmware_bridge.replay import write_recording
from spinewatch.firmware_bridge.sim import ImuErrors, PostureScript, Segment, SimulatedPatient
from spinewatch.service.bridge.filter_state import KEY

pytestmark = pytest.mark.network

BIAS_DPS = (1.2, -0.9, 1.5)
ERRORS = ImuErrors(gyr_bias_dps=BIAS_DPS, gyr_bias_walk_dps_per_sqrt_s=0.0)
_BIAS_RE = r"gyroscope bias ([+-]\d+\.\d+) ([+-]\d+\.\d+) ([+-]\d+\.\d+) deg/s"


def make_recording(path: Path, script: PostureScript, rate_hz: float, seed: int) -> None:
    sim = SimulatedPatient(script, rate_hz=rate_hz, seed=seed, batch_samples=50, errors=ERRORS)

    async def collect():
        async with sim:
            return [b async for b in sim.batches()]

    write_recording(path, rate_hz, asyncio.run(collect()))


class Bridge:
    def __init__(self, tmp: Path, broker_url: str, device: str) -> None:
        self.tmp = tmp
        self.outbox = tmp / "outbox" / f"p-b+{device}.outbox.sqlite"
        self.cfg = tmp / "bridge.toml"
        self.cfg.write_text(f'[bridge]\noutbox_dir = "{tmp / "outbox"}"\n')
        self.device = device
        env = {k: v for k, v in os.environ.items() if k != "SPINEWATCH_OUTBOX_DIR"}
        self.env = {**env, "SPINEWATCH_MQTT_URL": broker_url, "SPINEWATCH_LOG_LEVEL": "INFO"}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, recording: Path, speed: float) -> Bridge:
        self.log = self.tmp / f"bridge-{uuid.uuid4().hex[:6]}.log"
        cmd = [sys.executable, "-m", "spinewatch", "--config", str(self.cfg), "bridge", "run",
               "--replay", str(recording), "--speed", str(speed), "--patient", "p-b",
               "--device-id", self.device, "--status-interval", "0.5"]
        with self.log.open("wb") as err:
            self.proc = subprocess.Popen(cmd, env=self.env, stdout=subprocess.DEVNULL, stderr=err)
        return self

    def run(self, recording: Path) -> str:
        self.start(recording, 0.0)
        assert self.proc is not None
        assert self.proc.wait(120) == 0, self.stderr()
        return self.stderr()

    def stderr(self) -> str:
        return self.log.read_text()

    def kept(self) -> dict | None:
        """The filter state the bridge keeps in its outbox file (read beside the running bridge)."""
        if not self.outbox.exists():
            return None
        db = sqlite3.connect(f"file:{self.outbox}?mode=ro", uri=True, timeout=5)
        try:
            row = db.execute("SELECT value FROM kept WHERE key = ?", (KEY,)).fetchone()
        except sqlite3.OperationalError:  # not created yet
            return None
        finally:
            db.close()
        return json.loads(row[0]) if row else None

    def kept_bias_dps(self) -> np.ndarray | None:
        k = self.kept()
        return None if k is None else np.degrees(k["state"][8:11])

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def logged_bias(text: str, what: str) -> np.ndarray:
    m = re.search(what + r".*?" + _BIAS_RE, text)
    assert m, text
    return np.array([float(x) for x in m.groups()])


def test_a_bridge_killed_and_restarted_resumes_the_learnt_bias(mosquitto, tmp_path):
    sit, walk = tmp_path / "sit.npz", tmp_path / "walk.csv"
    make_recording(sit, PostureScript((Segment("sit", 0.0, 60.0, flexion_deg=5.0),)), 50.0, seed=1)
    make_recording(walk, PostureScript((Segment("walk", 0.0, 30.0, flexion_deg=5.0),)), 100.0, seed=2)
    bridge = Bridge(tmp_path, mosquitto.url, "d-b")
    try:
        # 1. sitting still, 4x real time: the bias is learnt and kept every status interval
        bridge.start(sit, 4.0)

        def learnt() -> bool:
            b = bridge.kept_bias_dps()
            return b is not None and bool(np.allclose(b, BIAS_DPS, atol=0.05))

        wait_until(learnt, 60, "the learnt bias kept in the outbox file")
        assert bridge.proc is not None and bridge.proc.poll() is None, "the bridge must still run"
        bridge.proc.send_signal(signal.SIGKILL)
        bridge.proc.wait(10)
        assert "for the next start" not in bridge.stderr()  # no clean stop: the periodic save is what survives
        # 2. restarted on a walk (another recording, another rate, same device)
        log = bridge.run(walk)
    finally:
        bridge.kill()
    resumed = logged_bias(log, "orientation filter resumed")
    np.testing.assert_allclose(resumed, BIAS_DPS, atol=0.05)
    assert "sensor replay" in log and "at 50 Hz" in log
    kept = logged_bias(log, "for the next start")
    np.testing.assert_allclose(kept, BIAS_DPS, atol=0.1)  # the vertical 1.5 deg/s is kept through the walk
    assert bridge.kept()["rate_hz"] == 100.0  # type: ignore[index]

    # the same walk on a device with nothing kept: the vertical bias is not learnt while walking
    fresh = Bridge(tmp_path, mosquitto.url, "d-fresh")
    log = fresh.run(walk)
    assert "resumed" not in log
    assert abs(logged_bias(log, "for the next start")[2]) < 0.5

    # 3. the same walk replayed again restarts from its beginning: it computes what its first
    # run did (the same points, the same events), not with the bias learnt from it
    log = bridge.run(walk)
    assert "resumed" not in log
    assert "it was learnt from this recording, whose replay restarts from its beginning" in log, log

    # 4. a state kept by a version with another layout is refused with one line, not resumed
    k = bridge.kept()
    assert k is not None
    db = sqlite3.connect(bridge.outbox)
    db.execute("UPDATE kept SET value = ? WHERE key = ?",
               (json.dumps({**k, "state_len": 70, "state": k["state"][:70]}).encode(), KEY))
    db.commit()
    db.close()
    log = bridge.run(walk)
    assert "resumed" not in log
    assert re.search(r"WARNING .*ignoring the orientation filter state kept in .*: kept by a version whose "
                     r"filter state has 70 numbers", log), log
    assert abs(logged_bias(log, "for the next start")[2]) < 0.5
