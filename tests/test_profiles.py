"""Sensor profiles: packet layouts, scales, mounting remap, DecodeError reasons, fuzzing."""

from __future__ import annotations

import dataclasses
import math
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spinewatch.errors import DecodeError
from spinewatch.firmware_bridge.profiles import (
    DECODE_REASONS,
    SensorProfile,
    get_profile,
    profile_names,
    thingy52,
    witmotion,
)
from spinewatch.firmware_bridge.profiles import spinewatch as sw
from spinewatch.firmware_bridge.remap import (
    DEFAULT_BACK_MOUNT,
    MountAlignment,
    remap_matrix,
    remap_to_body,
    remap_to_sensor,
)

G = 9.80665


def test_registry_lists_the_three_profiles_and_refuses_unknown_names():
    assert profile_names() == ["spinewatch", "thingy52", "witmotion"]
    with pytest.raises(ValueError, match="known"):
        get_profile("polar")


# ------------------------------------------------------------------ remap


@pytest.mark.parametrize("m", list(MountAlignment))
def test_every_alignment_is_a_proper_rotation_and_round_trips(m):
    r = remap_matrix(m)
    np.testing.assert_allclose(r @ r.T, np.eye(3))
    assert round(np.linalg.det(r)) == 1
    v = np.array([[1.0, 2.0, 3.0], [-4.0, 5.0, -6.0]])
    np.testing.assert_allclose(remap_to_body(v, m), v @ r.T)
    np.testing.assert_allclose(remap_to_body(remap_to_sensor(v, m), m), v)


def test_alignment_names_follow_fusion():
    # "+Y-X+Z": body x = sensor +Y, body y = sensor -X, body z = sensor +Z
    out = remap_to_body(np.array([[1.0, 2.0, 3.0]]), MountAlignment.parse("+Y-X+Z"))
    np.testing.assert_allclose(out, [[2.0, -1.0, 3.0]])
    assert MountAlignment.parse("pynxpz") is MountAlignment.PYNXPZ
    with pytest.raises(ValueError, match="right-handed"):
        MountAlignment.parse("+X+X+Z")


def test_default_back_mount_turns_gravity_on_sensor_y_into_body_up():
    # sensor flat on an upright back: gravity reaction along sensor +Y
    body = remap_to_body(np.array([[0.0, G, 0.0]]), DEFAULT_BACK_MOUNT)
    np.testing.assert_allclose(body, [[0.0, 0.0, G]])
    # leaning forward tilts sensor +Z (out of the back) ... body x forward = -sensor Z
    np.testing.assert_allclose(remap_to_body(np.array([[0.0, 0.0, -1.0]]), DEFAULT_BACK_MOUNT), [[1.0, 0, 0]])


# ------------------------------------------------------------------ SpineWatch profile


def test_spinewatch_documented_example_decodes():
    pkt = bytes.fromhex("0700e80300000132" "000000000010" "000000000000")
    d = sw.decode_packet(pkt)
    assert (d.seq, d.t0_us, len(d)) == (7, 1000, 1)
    np.testing.assert_allclose(d.acc_m_s2, [[0, 0, G]])
    np.testing.assert_allclose(d.gyr_rad_s, 0)


@pytest.mark.parametrize(
    ("acc_g", "gyr_dps", "code", "raw", "acc_m_s2", "gyr_rad_s"),
    [
        (2.0, 125.0, 0x00, 16384, 1.0 * G, math.radians(62.5)),
        (4.0, 250.0, 0x11, -16384, -2.0 * G, math.radians(-125.0)),
        (8.0, 500.0, 0x22, 32767, 8.0 * G * 32767 / 32768, math.radians(500.0 * 32767 / 32768)),
        (16.0, 2000.0, 0x43, -32768, -16.0 * G, math.radians(-2000.0)),
    ],
)
def test_spinewatch_scales_per_range_code(acc_g, gyr_dps, code, raw, acc_m_s2, gyr_rad_s):
    pkt = struct.pack("<HIBB6h", 1, 0, 1, code, raw, 0, 0, raw, 0, 0)
    d = sw.decode_packet(pkt)
    assert d.acc_m_s2[0, 0] == pytest.approx(acc_m_s2)
    assert d.gyr_rad_s[0, 0] == pytest.approx(gyr_rad_s)
    # and the builder produces the same bytes from the physical values
    assert sw.build_packet([[acc_m_s2, 0, 0]], [[gyr_rad_s, 0, 0]], seq=1, acc_range_g=acc_g,
                           gyr_range_dps=gyr_dps) == pkt


def test_spinewatch_round_trip_of_simulated_samples_within_quantisation():
    rng = np.random.default_rng(3)
    acc = rng.normal(0, 20, (19, 3))
    gyr = rng.normal(0, 3, (19, 3))
    m = MountAlignment.PYNXPZ
    d = sw.decode_packet(sw.build_packet(acc, gyr, seq=65535, t0_us=2**32 - 1, mount=m), m)
    assert (d.seq, d.t0_us) == (65535, 2**32 - 1)
    np.testing.assert_allclose(d.acc_m_s2, acc, atol=8 * G / 32768)
    np.testing.assert_allclose(d.gyr_rad_s, gyr, atol=math.radians(1000) / 32768)


def test_spinewatch_saturates_instead_of_wrapping():
    d = sw.decode_packet(sw.build_packet([[1000.0, -1000.0, 0]], [[100.0, -100.0, 0]]))
    assert d.acc_m_s2[0, 0] > 70 and d.acc_m_s2[0, 1] < -70
    assert d.gyr_rad_s[0, 0] > 17 and d.gyr_rad_s[0, 1] < -17


@pytest.mark.parametrize(
    ("pkt", "reason"),
    [
        (b"", "too_short"),
        (b"\x01\x00\x00\x00\x00\x00\x01", "too_short"),  # 7 bytes: header incomplete
        (struct.pack("<HIBB", 1, 0, 0, 0x32), "bad_count"),
        (struct.pack("<HIBB", 1, 0, 20, 0x32) + bytes(240), "bad_count"),
        (struct.pack("<HIBB", 1, 0, 2, 0x32) + bytes(12), "too_short"),
        (struct.pack("<HIBB", 1, 0, 1, 0x32) + bytes(13), "too_long"),
        (struct.pack("<HIBB", 1, 0, 1, 0x34) + bytes(12), "bad_range"),  # acc code 4
        (struct.pack("<HIBB", 1, 0, 1, 0x52) + bytes(12), "bad_range"),  # gyro code 5
        (struct.pack("<HIBB", 1, 0, 1, 0x3A) + bytes(12), "bad_range"),  # reserved bit 3
    ],
)
def test_spinewatch_bad_packets_raise_one_documented_reason(pkt, reason):
    with pytest.raises(DecodeError) as ei:
        sw.decode_packet(pkt)
    assert ei.value.reason == reason


def test_haptic_and_config_codecs():
    assert sw.build_haptic("double", 80, 400) == bytes([2, 80]) + (400).to_bytes(2, "little")
    assert sw.decode_haptic(sw.build_haptic("ramp", 0, 0)) == ("ramp", 0, 0)
    with pytest.raises(ValueError, match="pattern"):
        sw.build_haptic("buzz", 50, 100)
    with pytest.raises(DecodeError) as ei:
        sw.decode_haptic(bytes([9, 0, 0, 0]))
    assert ei.value.reason == "bad_header"
    cfg = sw.SensorConfig(rate_hz=50, acc_range_g=4.0, gyr_range_dps=500.0, samples_per_packet=3)
    assert sw.decode_config(sw.encode_config(cfg)) == cfg
    with pytest.raises(DecodeError) as ei:
        sw.decode_config(bytes([100, 0, 9, 0, 5, 0]))
    assert ei.value.reason == "bad_range"


# ------------------------------------------------------------------ per-sensor hooks


def test_the_spinewatch_profile_hooks_are_its_codecs():
    p = get_profile("spinewatch")
    assert p.rate_from_config is not None and p.build_haptic is not None
    assert p.rate_from_config(sw.encode_config(sw.SensorConfig(rate_hz=50))) == 50.0
    assert p.build_haptic("long", 90, 400) == sw.build_haptic("long", 90, 400)
    pkt = sw.build_packet(np.zeros((7, 3)), np.zeros((7, 3)), seq=3)
    assert p.samples_in(pkt) == 7
    assert p.samples_in(pkt[:6]) == 0, "a notification too short for the count claims none"
    with pytest.raises(DecodeError):
        p.rate_from_config(b"\x00")


@pytest.mark.parametrize("name", ["witmotion", "thingy52"])
def test_sensors_without_motor_or_readable_rate_have_no_hooks(name):
    p = get_profile(name)
    assert p.rate_from_config is None and p.build_haptic is None
    assert p.samples_in(b"\x00" * 3) == 1, "one sample per packet, whatever the bytes"


def _new_profile(**hooks) -> SensorProfile:
    """A sensor the bridge has never heard of: SpineWatch's wire layout under another name."""
    fields = {"rate_from_config": None, "build_haptic": None, "samples_claimed": None, **hooks}
    return dataclasses.replace(get_profile("spinewatch"), name="acme", name_prefixes=("Acme",), **fields)


def test_a_new_profile_gets_the_behaviour_of_its_own_hooks_only():
    bare = _new_profile()
    assert bare.samples_in(bytes([0, 0, 0, 0, 0, 0, 5, 0])) == 0, "no count hook: samples unknown"
    hooked = _new_profile(samples_claimed=lambda data: 42, build_haptic=lambda p, i, d: b"zz",
                          rate_from_config=lambda data: 12.5)
    assert hooked.samples_in(b"") == 42
    assert hooked.build_haptic is not None and hooked.build_haptic("short", 1, 2) == b"zz"
    assert hooked.rate_from_config is not None and hooked.rate_from_config(b"") == 12.5


def test_a_hook_needs_its_characteristic():
    with pytest.raises(ValueError, match="build_haptic needs a haptic_char_uuid"):
        _new_profile(haptic_char_uuid=None, build_haptic=sw.build_haptic)
    with pytest.raises(ValueError, match="rate_from_config needs a config_char_uuid"):
        _new_profile(config_char_uuid=None, rate_from_config=sw.rate_from_config)


# ------------------------------------------------------------------ WitMotion


def test_witmotion_frame_layout_and_scales():
    # datasheet order: acc xyz, gyro xyz, angle xyz; low byte first
    raw = struct.pack("<BB9h", 0x55, 0x61, 2048, -2048, 0, 16384, 0, -16384, 8192, 0, 0)
    d = witmotion.decode_packet(raw, MountAlignment.PXPYPZ)
    assert (d.seq, d.t0_us, len(d)) == (None, None, 1)
    np.testing.assert_allclose(d.acc_m_s2, [[G, -G, 0.0]])  # 2048/32768*16 g = 1 g
    np.testing.assert_allclose(d.gyr_rad_s, [[math.radians(1000), 0, math.radians(-1000)]])
    assert witmotion.decode_angles_deg(raw) == pytest.approx((45.0, 0.0, 0.0))


def test_witmotion_builder_round_trips_with_default_mount():
    acc, gyr = np.array([[0.3, -0.2, 9.7]]), np.array([[0.01, 0.5, -1.0]])
    d = witmotion.decode_packet(witmotion.build_packet(acc, gyr))
    np.testing.assert_allclose(d.acc_m_s2, acc, atol=16 * G / 32768)
    np.testing.assert_allclose(d.gyr_rad_s, gyr, atol=math.radians(2000) / 32768)


@pytest.mark.parametrize(
    ("pkt", "reason"),
    [
        (b"", "too_short"),
        (b"\x55\x61" + bytes(17), "too_short"),
        (b"\x55\x61" + bytes(19), "too_long"),
        (b"\x54\x61" + bytes(18), "bad_header"),
        (b"\x55\x71" + bytes(18), "unsupported_packet"),
    ],
)
def test_witmotion_bad_packets(pkt, reason):
    with pytest.raises(DecodeError) as ei:
        witmotion.decode_packet(pkt)
    assert ei.value.reason == reason


# ------------------------------------------------------------------ Thingy:52


def test_thingy52_q_formats():
    raw = struct.pack("<9h", 1024, -512, 0, 32, -64, 0, 16, 0, 0)
    d = thingy52.decode_packet(raw, MountAlignment.PXPYPZ)
    np.testing.assert_allclose(d.acc_m_s2, [[G, -G / 2, 0]])  # Q6.10 g
    np.testing.assert_allclose(d.gyr_rad_s, [[math.radians(1), math.radians(-2), 0]])  # Q11.5 dps


@pytest.mark.parametrize(("n", "reason"), [(0, "too_short"), (17, "too_short"), (19, "too_long")])
def test_thingy52_bad_lengths(n, reason):
    with pytest.raises(DecodeError) as ei:
        thingy52.decode_packet(bytes(n))
    assert ei.value.reason == reason


# ------------------------------------------------------------------ fuzz (small; 1 M in benchmarks/)


@pytest.mark.parametrize("name", ["spinewatch", "witmotion", "thingy52"])
@settings(max_examples=1500, deadline=None)
@given(data=st.one_of(st.binary(max_size=260), st.binary(min_size=8, max_size=8).map(lambda h: h + bytes(12 * h[6]))))
def test_fuzz_decoders_raise_only_decode_error(name, data):
    p = get_profile(name)
    try:
        d = p.decode(data, p.default_mount)
    except DecodeError as exc:
        assert exc.reason in DECODE_REASONS
    else:
        assert 1 <= len(d) <= p.max_samples_per_packet
        assert np.all(np.isfinite(d.acc_m_s2)) and np.all(np.isfinite(d.gyr_rad_s))


@pytest.mark.parametrize("name", ["spinewatch", "witmotion", "thingy52"])
@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_packets=st.integers(0, 40), n_bad=st.integers(0, 10))
def test_decode_batch_equals_decoding_each_packet(name, seed, n_packets, n_bad):
    p = get_profile(name)
    rng = np.random.default_rng(seed)
    n = 5 if name == "spinewatch" else 1
    packets = [p.build(rng.normal(0, 20, (n, 3)), rng.normal(0, 3, (n, 3)), seq=i, t0_us=i * 7,
                       acc_range_g=float(rng.choice([4.0, 16.0])), gyr_range_dps=float(rng.choice([500.0, 2000.0])))
               if name == "spinewatch" else p.build(rng.normal(0, 20, (1, 3)), rng.normal(0, 3, (1, 3)))
               for i in range(n_packets)]
    for _ in range(n_bad):
        k = int(rng.integers(0, len(packets) + 1))
        packets.insert(k, rng.bytes(int(rng.integers(0, 80))) if rng.random() < 0.5
                       else bytes(len(packets[0]) if packets else 20))
    got = p.decode_batch(packets, p.default_mount)
    assert len(got) == len(packets)
    for pk, g in zip(packets, got, strict=True):
        try:
            want = p.decode(pk, p.default_mount)
        except DecodeError as exc:
            assert isinstance(g, DecodeError) and g.reason == exc.reason
        else:
            assert not isinstance(g, DecodeError)
            assert (g.seq, g.t0_us) == (want.seq, want.t0_us)
            np.testing.assert_array_equal(g.acc_m_s2, want.acc_m_s2)
            np.testing.assert_array_equal(g.gyr_rad_s, want.gyr_rad_s)
