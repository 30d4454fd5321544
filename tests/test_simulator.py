"""Specification of the simulated patient: the scripted day, the IMU samples, the source."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import math
import time
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from spinewatch.firmware_bridge.sim import (
    SEGMENT_KINDS,
    ImuErrors,
    ImuSynthesizer,
    Mounting,
    PostureScript,
    Segment,
    SimulatedPatient,
    Tap,
    q_from_angles,
    simulate,
)
from spinewatch.firmware_bridge.sim.script import STEP_HZ
from spinewatch.firmware_bridge.source import ImuSource
from spinewatch.model import GRAVITY_M_S2, ImuBatch

DAY_S = 8 * 3600.0
THRESHOLD_DEG = 20.0
KIND = {k: i for i, k in enumerate(SEGMENT_KINDS)}


@pytest.fixture(scope="module")
def day() -> PostureScript:
    return PostureScript.day(DAY_S, seed=1)


@pytest.fixture(scope="module")
def half_hour() -> PostureScript:
    return PostureScript.day(1800.0, seed=4)


@pytest.fixture(scope="module")
def half_hour_rec(half_hour: PostureScript):  # noqa: ANN201
    return simulate(half_hour, seed=7, with_orientation=True)


def _in_ramp(script: PostureScript, t_s: np.ndarray) -> np.ndarray:
    starts = np.array([s.start_s for s in script.segments])
    ramps = np.array([s.ramp_s for s in script.segments])
    i = np.searchsorted(starts, t_s, side="right") - 1
    return t_s - starts[i] < ramps[i]


def _angle_deg(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    u = u / np.linalg.norm(u, axis=-1, keepdims=True)
    v = v / np.linalg.norm(v, axis=-1, keepdims=True)
    return np.degrees(np.arccos(np.clip(np.sum(u * v, axis=-1), -1.0, 1.0)))


def _scipy(q_wxyz: np.ndarray) -> Rotation:
    return Rotation.from_quat(np.asarray(q_wxyz)[..., [1, 2, 3, 0]])  # SciPy is [x, y, z, w]


# --------------------------------------------------------------------------- the script


def test_day_starts_with_at_least_10_s_of_still_upright_calibration(day: PostureScript) -> None:
    first = day.segments[0]
    assert first.kind == "calibrate"
    assert first.start_s == 0.0 and first.duration_s >= 10.0
    assert (first.flexion_deg, first.lateral_deg, first.heading_deg) == (0.0, 0.0, 0.0)
    assert not any(first.start_s <= tap.t_s <= first.end_s for tap in day.taps)


def test_an_8_h_day_covers_every_posture_kind_and_taps(day: PostureScript) -> None:
    assert day.kinds() == set(SEGMENT_KINDS) | {"tap"}
    assert day.duration_s == DAY_S
    sitting_s = sum(s.duration_s for s in day.segments if s.kind == "sit")
    assert sitting_s > 0.5 * DAY_S  # mostly upright sitting
    headings = {s.heading_deg for s in day.segments if s.kind == "walk"}
    assert len(headings) > 5  # turns while walking


@pytest.mark.parametrize("duration_s", [60.0, 61.5, 600.0, 1800.0, 86_400.0])
def test_day_is_contiguous_for_any_length_from_60_s_to_24_h(duration_s: float) -> None:
    script = PostureScript.day(duration_s, seed=3)
    assert script.duration_s == duration_s
    assert script.segments[0].kind == "calibrate"
    for a, b in itertools.pairwise(script.segments):
        assert a.end_s == b.start_s
        assert b.duration_s >= b.ramp_s
    assert script.segments[-1].kind != "slouch"  # every episode ends inside the script


def test_day_is_reproducible_and_depends_on_the_seed() -> None:
    assert PostureScript.day(3600.0, seed=5) == PostureScript.day(3600.0, seed=5)
    assert PostureScript.day(3600.0, seed=5) != PostureScript.day(3600.0, seed=6)


@pytest.mark.parametrize("duration_s", [59.0, 86_401.0, math.nan])
def test_day_rejects_lengths_outside_60_s_to_24_h(duration_s: float) -> None:
    with pytest.raises(ValueError, match="duration_s"):
        PostureScript.day(duration_s)


def test_postures_stay_far_from_the_threshold_band(day: PostureScript) -> None:
    t = np.arange(0.0, DAY_S, 0.1)
    flex = day.flexion_deg_at(t)
    labels = day.labels_at(t)
    held = ~_in_ramp(day, t)
    for kind in ("calibrate", "sit", "stand", "walk"):
        sel = held & (labels == KIND[kind])
        assert np.all(np.abs(flex[sel]) <= 8.0), kind
    assert np.all(flex[held & (labels == KIND["slouch"])] >= 25.0)
    lying = labels == KIND["lie"]
    assert np.all(flex[held & lying] <= 0.0)  # supine or on a side, never forward
    assert np.all(flex[lying] <= 8.0)  # also while lying down


def test_transitions_are_smooth_ramps_not_steps(day: PostureScript) -> None:
    t = np.arange(0.0, 3600.0, 0.01)
    for angles in (day.flexion_deg_at(t), day.lateral_deg_at(t), day.heading_deg_at(t)):
        assert np.max(np.abs(np.diff(angles))) < 2.0  # < 200 deg/s (a quick 180 deg turn)
        rate = np.diff(angles) / 0.01
        assert np.max(np.abs(np.diff(rate))) < 5.0  # rate continuous: < 500 deg/s^2


def test_truth_episodes_match_the_slouch_segments_and_gap_design(day: PostureScript) -> None:
    episodes = day.slouch_episodes(THRESHOLD_DEG)
    segs = day.segments
    slouches = [i for i, s in enumerate(segs) if s.kind == "slouch"]
    assert len(episodes) == len(slouches) > 20
    for (start_s, end_s, peak_deg), i in zip(episodes, slouches, strict=True):
        seg, after = segs[i], segs[i + 1]
        assert seg.start_s < start_s < seg.start_s + seg.ramp_s
        assert after.kind == "sit" and after.start_s < end_s < after.start_s + after.ramp_s
        assert peak_deg == pytest.approx(seg.flexion_deg, abs=1e-9)
        assert day.flexion_deg_at([start_s - 1e-5])[0] <= THRESHOLD_DEG
        assert day.flexion_deg_at([start_s + 1e-5])[0] > THRESHOLD_DEG
    starts = np.array([e[0] for e in episodes])
    ends = np.array([e[1] for e in episodes])
    assert np.min(starts[1:] - ends[:-1]) >= 20.0  # episodes are distinguishable
    durations_s = ends - starts
    assert durations_s.min() >= 9.0 and durations_s.max() > 120.0
    assert np.sum(durations_s < 30.0) >= 3  # a detector with a 30 s minimum must ignore these
    long_ones = day.slouch_episodes(THRESHOLD_DEG, min_duration_s=30.0)
    assert long_ones == [e for e in episodes if e[1] - e[0] >= 30.0]


def test_truth_episodes_follow_the_threshold_exactly() -> None:
    script = PostureScript(
        (
            Segment("calibrate", 0.0, 20.0),
            Segment("slouch", 20.0, 50.0, flexion_deg=30.0, ramp_s=2.0),
            Segment("sit", 50.0, 80.0, ramp_s=2.0),
        )
    )
    # raised cosine 0 -> 30 deg over 2 s crosses 20 deg at u = acos(1 - 2 * 2/3) / pi
    u = math.acos(1.0 - 2.0 * (20.0 / 30.0)) / math.pi
    ((start_s, end_s, peak_deg),) = script.slouch_episodes(20.0)
    assert start_s == pytest.approx(20.0 + 2.0 * u, abs=1e-5)
    assert end_s == pytest.approx(50.0 + 2.0 * (1.0 - u), abs=1e-5)
    assert peak_deg == pytest.approx(30.0)
    assert script.slouch_episodes(35.0) == []


def test_truth_episodes_see_even_a_brief_spike_in_a_custom_script() -> None:
    script = PostureScript(
        (
            Segment("sit", 0, 10),
            Segment("slouch", 10, 10.03, flexion_deg=30, ramp_s=0.01),
            Segment("sit", 10.03, 20, ramp_s=0.01),
        )
    )
    ((start_s, end_s, peak_deg),) = script.slouch_episodes(20.0)
    assert 10.0 < start_s < 10.01 and 10.03 < end_s < 10.04
    assert peak_deg == pytest.approx(30.0)


# --------------------------------------------------------------------------- conventions


def test_angles_follow_the_zyx_convention_forward_and_right_positive() -> None:
    rng = np.random.default_rng(0)
    h, f, lat = rng.uniform(-1.5, 1.5, (3, 50))
    expected = Rotation.from_euler("ZYX", np.column_stack((h, f, lat)))
    q = q_from_angles(h, f, lat)
    assert np.allclose((_scipy(q) * expected.inv()).magnitude(), 0.0, atol=1e-12)
    up_in_earth = _scipy(q_from_angles(np.zeros(2), np.radians([30.0, 0.0]), np.radians([0.0, 30.0])))
    trunk_axis = up_in_earth.apply([0.0, 0.0, 1.0])
    assert trunk_axis[0, 0] > 0.4  # flexion tilts the trunk forward (+x)
    assert trunk_axis[1, 1] < -0.4  # lateral bend tilts it to the right (-y)


# --------------------------------------------------------------------------- IMU samples


def test_same_seed_gives_the_same_samples_whatever_the_chunking() -> None:
    script = PostureScript.day(300.0, seed=2)
    a = simulate(script, seed=5, chunk_s=60.0)
    b = simulate(script, seed=5, chunk_s=0.73)
    syn = ImuSynthesizer(script, seed=5)
    c = syn.chunk(12_345, 678)  # random access
    for name in ("gyr_rad_s", "acc_m_s2", "flexion_deg", "labels"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
        np.testing.assert_array_equal(getattr(a, name)[12_345 : 12_345 + 678], getattr(c, name))
    other = simulate(script, seed=6)
    assert not np.allclose(a.gyr_rad_s, other.gyr_rad_s)
    np.testing.assert_array_equal(a.flexion_deg, other.flexion_deg)  # same script, same truth


_SHORT = PostureScript.day(120.0, seed=8)
_SHORT_REC = simulate(_SHORT, seed=9, with_orientation=True)


@settings(max_examples=25, deadline=None)
@given(i0=st.integers(0, 11_999), n=st.integers(0, 3000))
def test_any_sample_range_equals_the_same_slice_of_the_whole(i0: int, n: int) -> None:
    chunk = ImuSynthesizer(_SHORT, seed=9).chunk(i0, n)
    stop = min(i0 + n, 12_000)
    assert len(chunk) == stop - i0
    for name in ("gyr_rad_s", "acc_m_s2", "q_sensor_to_earth", "gyr_bias_rad_s", "t_s"):
        np.testing.assert_array_equal(getattr(chunk, name), getattr(_SHORT_REC, name)[i0:stop])


def test_source_batches_equal_simulate() -> None:
    script = PostureScript.day(120.0, seed=2)
    rec = simulate(script, seed=5)

    async def collect() -> list[ImuBatch]:
        async with SimulatedPatient(script, seed=5, batch_samples=7) as src:
            return [b async for b in src.batches()]

    batches = asyncio.run(collect())
    np.testing.assert_array_equal(np.concatenate([b.gyr_rad_s for b in batches]), rec.gyr_rad_s)
    np.testing.assert_array_equal(np.concatenate([b.acc_m_s2 for b in batches]), rec.acc_m_s2)


def test_at_rest_the_accelerometer_reads_gravity_along_the_misaligned_up_axis(
    half_hour: PostureScript, half_hour_rec
) -> None:  # noqa: ANN001
    rec = half_hour_rec
    rest = half_hour.still_at(rec.t_s) & (rec.labels == KIND["calibrate"])
    assert rest.sum() > 900
    acc = rec.acc_m_s2[rest]
    norm = np.linalg.norm(acc, axis=1)
    assert norm.mean() == pytest.approx(GRAVITY_M_S2, abs=0.005)
    assert 0.01 < norm.std() < 0.04  # ~0.02 m/s^2 white noise
    up_in_sensor = Mounting().r_sensor_to_body.T @ [0.0, 0.0, 1.0]
    assert _angle_deg(acc.mean(axis=0), up_in_sensor) < 0.05
    assert _angle_deg(up_in_sensor, np.array([0.0, 0.0, 1.0])) > 3.0  # really misaligned


def test_integrating_the_bias_free_gyro_reproduces_the_orientation(half_hour: PostureScript) -> None:
    walk = next(s for s in half_hour.segments if s.kind == "walk")
    rec = simulate(half_hour, seed=1, errors=ImuErrors.ideal(), with_orientation=True)
    k0 = int((walk.start_s - 20.0) * 100)  # a minute: standing, walking and turning
    window = slice(k0, k0 + 6000)
    q_true = rec.q_sensor_to_earth[window]
    rot = _scipy(q_true[0])
    rotvecs = rec.gyr_rad_s[window][1:] * 0.01
    estimated = [rot]
    for rv in rotvecs:  # q[k] = q[k-1] * exp(gyr[k] * dt)
        rot = rot * Rotation.from_rotvec(rv)
        estimated.append(rot)
    estimated_rot = Rotation.concatenate(estimated)
    up_true = _scipy(q_true).inv().apply([0.0, 0.0, 1.0])
    up_est = estimated_rot.inv().apply([0.0, 0.0, 1.0])
    assert _angle_deg(up_est, up_true).max() < 1e-6
    assert (estimated_rot * _scipy(q_true).inv()).magnitude().max() < 1e-8  # heading too
    assert np.degrees(np.abs(rec.gyr_rad_s[window]).max()) > 30.0  # it did move


def test_gyro_bias_is_a_constant_half_to_one_deg_s_plus_slow_drift(half_hour_rec) -> None:  # noqa: ANN001
    bias_dps = np.degrees(half_hour_rec.gyr_bias_rad_s)
    assert np.all((np.abs(bias_dps[0]) >= 0.5) & (np.abs(bias_dps[0]) <= 1.0))
    drift_dps = np.abs(bias_dps - bias_dps[0]).max(axis=0)
    assert np.all(drift_dps < 0.3) and np.any(drift_dps > 0.0)
    custom = ImuSynthesizer(
        PostureScript.day(60.0), errors=ImuErrors(gyr_bias_dps=(1.0, -2.0, 3.0), gyr_bias_walk_dps_per_sqrt_s=0.0)
    ).chunk(0, 1000)
    assert np.allclose(np.degrees(custom.gyr_bias_rad_s), [1.0, -2.0, 3.0])
    still = custom.labels == KIND["calibrate"]
    assert np.allclose(np.degrees(custom.gyr_rad_s[still].mean(axis=0)), [1.0, -2.0, 3.0], atol=0.02)


def test_still_accelerometer_gives_the_scripts_angles_after_removing_the_mounting(
    half_hour: PostureScript, half_hour_rec
) -> None:  # noqa: ANN001
    rec = half_hour_rec
    still = half_hour.still_at(rec.t_s)
    acc_body = rec.acc_m_s2[still] @ Mounting().r_sensor_to_body.T
    ax, ay, az = acc_body.T
    flex_deg = np.degrees(np.arctan2(-ax, np.hypot(ay, az)))
    lat_deg = np.degrees(np.arctan2(ay, az))
    labels = rec.labels[still]
    assert {KIND["slouch"], KIND["sit"], KIND["lie"]} <= set(labels.tolist())
    err = flex_deg - rec.flexion_deg[still]
    assert np.abs(err).max() < 1.0 and np.abs(err).mean() < 0.15  # noise only
    upright = labels != KIND["lie"]  # lateral is undefined lying supine
    err = lat_deg[upright] - rec.lateral_deg[still][upright]
    assert np.abs(err).max() < 1.0 and np.abs(err).mean() < 0.15


def test_walking_adds_2_hz_steps_of_1_to_3_m_s2(half_hour: PostureScript, half_hour_rec) -> None:  # noqa: ANN001
    rec = half_hour_rec
    walking = np.flatnonzero((rec.labels == KIND["walk"]) & ~_in_ramp(half_hour, rec.t_s))
    seg = rec.acc_m_s2[walking[:1024]]
    vertical = np.linalg.norm(seg, axis=1) - GRAVITY_M_S2
    spectrum = np.abs(np.fft.rfft(vertical - vertical.mean()))
    freq_hz = np.fft.rfftfreq(len(vertical), 0.01)
    assert freq_hz[np.argmax(spectrum)] == pytest.approx(STEP_HZ, abs=0.15)
    assert 1.0 < np.abs(vertical).max() < 3.5


def test_taps_are_short_spikes_of_several_g(half_hour: PostureScript, half_hour_rec) -> None:  # noqa: ANN001
    rec = half_hour_rec
    assert half_hour.taps
    for tap in half_hour.taps:
        k = int(tap.t_s * 100)
        window = rec.acc_m_s2[k - 50 : k + 50]
        excess = np.linalg.norm(window - rec.acc_m_s2[k - 60], axis=1)
        assert excess.max() > 2.0 * GRAVITY_M_S2
        assert np.sum(excess > 2.0 * GRAVITY_M_S2) <= 5 * 2  # 20-50 ms at 100 Hz (double taps)
    assert not half_hour.still_at([half_hour.taps[0].t_s + 0.01])[0]


# --------------------------------------------------------------------------- the source


def test_simulated_patient_is_an_imu_source_with_a_utc_anchor() -> None:
    src = SimulatedPatient(PostureScript.day(60.0), rate_hz=50.0, batch_samples=25)
    assert isinstance(src, ImuSource)
    assert src.rate_hz == 50.0 and src.dt_ns == 20_000_000
    anchor = dt.datetime.fromtimestamp(src.start_utc_ns / 1e9, dt.UTC)
    assert (anchor.hour, anchor.minute, anchor.date()) == (8, 0, dt.datetime.now(dt.UTC).date())
    assert SimulatedPatient(PostureScript.day(60.0), start_utc_ns=123).start_utc_ns == 123

    async def run() -> list[ImuBatch]:
        with pytest.raises(RuntimeError, match="async with"):
            await src.batches().__anext__()
        async with src:
            return [b async for b in src.batches()]

    batches = asyncio.run(run())
    assert sum(len(b) for b in batches) == 3000  # 60 s at 50 Hz
    assert all(len(b) == 25 and b.dt_ns == 20_000_000 for b in batches)
    assert [b.t0_ns for b in batches] == [i * 25 * 20_000_000 for i in range(len(batches))]


def test_pacing_at_speed_50_takes_the_script_time_over_50() -> None:
    script = PostureScript((Segment("calibrate", 0.0, 15.0), Segment("sit", 15.0, 40.0)))

    async def run() -> tuple[float, int]:
        async with SimulatedPatient(script, speed=50.0) as src:
            t0 = time.monotonic()
            n = sum([len(b) async for b in src.batches()])
            return time.monotonic() - t0, n

    elapsed_s, n = asyncio.run(run())
    assert n == 4000
    assert 0.78 <= elapsed_s <= 1.6  # 40 s / 50 = 0.8 s


def test_unpaced_source_lets_other_tasks_run() -> None:
    async def run() -> int:
        ticks = 0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0)  # sync-ok: yield to the event loop, no waiting

        task = asyncio.create_task(ticker())
        async with SimulatedPatient(PostureScript.day(300.0)) as src:
            async for _ in src.batches():
                pass
        done.set()
        await task
        return ticks

    assert asyncio.run(run()) >= 10


def test_generating_8_h_is_chunked_and_memory_bounded(day: PostureScript) -> None:
    syn = ImuSynthesizer(day, rate_hz=100.0)
    tracemalloc.start()
    try:
        t0 = time.perf_counter()
        n = sum(len(c) for c in syn.chunks(1000))  # 10 s chunks, as SimulatedPatient does
        elapsed_s = time.perf_counter() - t0
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n == 2_880_000
    assert peak_bytes < 8e6  # the whole day's gyr + acc alone would be 138 MB
    # ~1.5 s on an idle machine (see the benchmark); only a pathological slowdown fails
    assert elapsed_s < 30.0


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "make",
    [
        lambda: Segment("dance", 0.0, 10.0),
        lambda: Segment("sit", 10.0, 10.0),
        lambda: Segment("sit", 0.0, 1.0, ramp_s=2.0),
        lambda: Segment("sit", 0.0, 10.0, flexion_deg=math.inf),
        lambda: Tap(1.0, duration_s=0.5),
        lambda: Tap(1.0, direction_body=(0.0, 0.0, 0.0)),
        lambda: PostureScript(()),
        lambda: PostureScript((Segment("sit", 0.0, 10.0), Segment("sit", 11.0, 20.0))),
        lambda: PostureScript((Segment("sit", 0.0, 10.0),), (Tap(11.0),)),
        lambda: SimulatedPatient(PostureScript.day(60.0), batch_samples=0),
        lambda: SimulatedPatient(PostureScript.day(60.0), speed=0.0),
        lambda: SimulatedPatient(PostureScript.day(60.0), rate_hz=0.0),
        lambda: ImuErrors(acc_noise_m_s2=-1.0),
        lambda: Mounting(pitch_deg=math.nan),
        lambda: PostureScript.day(60.0).flexion_deg_at([[1.0]]),
    ],
)
def test_bad_input_raises_value_error(make) -> None:  # noqa: ANN001
    with pytest.raises(ValueError):
        make()
