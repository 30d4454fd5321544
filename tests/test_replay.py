"""Recording and replay: both containers round-trip, gaps survive, bad files are named."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from fakes.fake_bleak import FakeRadio, FakeSensor

from spinewatch.firmware_bridge.ble import BleSource
from spinewatch.firmware_bridge.ble_config import BleConfig
from spinewatch.firmware_bridge.profiles import get_profile
from spinewatch.firmware_bridge.replay import (
    ReplaySource,
    read_recording,
    record,
    write_recording,
)
from spinewatch.firmware_bridge.sim import (
    PostureScript,
    Segment,
    SimulatedPatient,
)
from spinewatch.firmware_bridge.source import ImuSource
from spinewatch.model import ImuBatch


async def _collect(src) -> list[ImuBatch]:
    async with src:
        return [b async for b in src.batches()]


def _sim_batches(seconds: float = 20.0) -> tuple[SimulatedPatient, list[ImuBatch]]:
    script = PostureScript((Segment("sit", 0.0, seconds / 2), Segment("slouch", seconds / 2, seconds, 25.0)))
    sim = SimulatedPatient(script, batch_samples=7)
    return sim, asyncio.run(_collect(sim))


def _with_gap(batches: list[ImuBatch]) -> list[ImuBatch]:
    """Drop batch 3 and flag the next one, as a live source would."""
    b4 = batches[4]
    return [*batches[:3], ImuBatch(b4.t0_ns, b4.dt_ns, b4.gyr_rad_s, b4.acc_m_s2, True), *batches[5:]]


@pytest.mark.parametrize("suffix", [".csv", ".npz"])
def test_recording_round_trips_through_replay_with_gaps(tmp_path, suffix):
    sim, batches = _sim_batches()
    batches = _with_gap(batches)
    path = tmp_path / f"rec{suffix}"
    n = write_recording(path, sim.rate_hz, batches)
    assert n == sum(len(b) for b in batches)
    replay = ReplaySource(path, batch_samples=50)
    assert isinstance(replay, ImuSource)
    out = asyncio.run(_collect(replay))
    acc = np.concatenate([b.acc_m_s2 for b in out])
    want = np.concatenate([b.acc_m_s2 for b in batches])
    np.testing.assert_allclose(acc, want, rtol=1e-8 if suffix == ".csv" else 0, atol=1e-7 if suffix == ".csv" else 0)
    assert [b.t0_ns for b in out if b.gap_before] == [batches[3].t0_ns]
    assert out[0].t0_ns == 0 and all(len(b) <= 50 for b in out)
    t = np.concatenate([b.t0_ns + np.arange(len(b)) * b.dt_ns for b in out])
    np.testing.assert_array_equal(t, np.concatenate([b.t0_ns + np.arange(len(b)) * b.dt_ns for b in batches]))


def test_csv_has_the_documented_header(tmp_path):
    sim, batches = _sim_batches(4.0)
    write_recording(tmp_path / "r.csv", 100.0, batches)
    lines = (tmp_path / "r.csv").read_text().splitlines()
    assert lines[0] == "# spinewatch-imu v1 rate_hz=100"
    assert lines[1] == "t_ns,acc_x_m_s2,acc_y_m_s2,acc_z_m_s2,gyr_x_rad_s,gyr_y_rad_s,gyr_z_rad_s,gap_before"
    assert lines[2].startswith("0,") and lines[3].startswith("10000000,")


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("t_ns,acc\n", "line 1"),
        ("# spinewatch-imu v1\n", "rate_hz"),
        ("# spinewatch-imu v1 rate_hz=100\nt_ns,x\n", "header"),
        ("# spinewatch-imu v1 rate_hz=100\n"
         "t_ns,acc_x_m_s2,acc_y_m_s2,acc_z_m_s2,gyr_x_rad_s,gyr_y_rad_s,gyr_z_rad_s,gap_before\n"
         "0,1,2,3,4,5,6,0\n10,1,2\n", "line 4"),
        ("# spinewatch-imu v1 rate_hz=100\n"
         "t_ns,acc_x_m_s2,acc_y_m_s2,acc_z_m_s2,gyr_x_rad_s,gyr_y_rad_s,gyr_z_rad_s,gap_before\n"
         "10,1,2,3,4,5,6,0\n5,1,2,3,4,5,6,0\n", "must increase"),
    ],
)
def test_bad_csv_files_are_refused_with_the_place(tmp_path, content, match):
    p = tmp_path / "bad.csv"
    p.write_text(content)
    with pytest.raises(ValueError, match=match):
        read_recording(p)


def test_record_from_a_ble_sensor_then_replay(tmp_path):
    radio = FakeRadio()
    radio.add(FakeSensor("C0:FF:EE:00:00:05", get_profile("spinewatch"), speed=5.0))
    src = BleSource(get_profile("spinewatch"), "C0:FF:EE:00:00:05", config=BleConfig(scan_timeout_s=2.0),
                    client_backend=radio.client_backend, scanner_backend=radio.scanner_backend,
                    backoff=lambda a, e: 0.0)

    async def main():
        async with asyncio.timeout(15):
            return await record(src, tmp_path / "s.npz", max_samples=200)

    n = asyncio.run(main())
    rec = read_recording(tmp_path / "s.npz")
    assert len(rec) == n >= 200 and rec.rate_hz == 100.0
    assert np.mean(rec.acc_m_s2[:, 2]) > 9.0
