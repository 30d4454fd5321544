"""Wire format v1: topics and payloads round-trip, and every malformed payload is named."""

from __future__ import annotations

import json

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spinewatch.errors import DecodeError
from spinewatch.model import PostureBatch, SlouchEvent
from spinewatch.service.storage.lineprotocol import (
    posture_bytes,
    posture_lines,
    slouch_line,
    to_bytes,
)
from spinewatch.service.transport import wire

T0 = 1_764_057_600 * 10**9  # 2025-11-25 08:00 UTC


def test_topic_layout_is_the_documented_contract():
    assert wire.topic("p1", "d1", "posture") == "spinewatch/v1/p1/d1/posture"
    assert wire.parse_topic("spinewatch/v1/p1/d1/event") == ("p1", "d1", "event")
    assert wire.subscription() == "spinewatch/v1/+/+/+"
    assert wire.subscription("ingest") == "$share/ingest/spinewatch/v1/+/+/+"


@pytest.mark.parametrize("bad", ["", "a/b", "+", "#", "x" * 65, "é"])
def test_ids_with_wildcards_slashes_or_odd_characters_are_refused(bad):
    with pytest.raises(ValueError, match="patient"):
        wire.topic(bad, "d1", "posture")


def test_posture_round_trip_keeps_contract_fields_and_values():
    flex = np.array([1.234, -5.0, 30.456])
    b = PostureBatch("p1", "d1", T0, 10_000_000, flex, np.array([0.1, 0.2, 0.3]),
                     np.array([0, 0, 1], np.int8), np.array([2, 2, 3], np.int8))
    payload = wire.encode_posture(b, seq=7)
    obj = json.loads(payload)
    assert obj["v"] == 1 and obj["t0_ns"] == T0 and obj["dt_ns"] == 10_000_000
    assert obj["flexion_deg"] == [1.23, -5.0, 30.46]
    m = wire.decode_posture("p1", "d1", payload)
    np.testing.assert_allclose(m.flexion_deg, [1.23, -5.0, 30.46])
    assert m.state.tolist() == [0, 0, 1] and m.activity.tolist() == [2, 2, 3]


def test_nan_angles_travel_as_null_and_are_not_written_as_points():
    b = PostureBatch("p1", "d1", T0, 10_000_000, np.array([np.nan, 1.0]), np.array([np.nan, 2.0]))
    payload = wire.encode_posture(b)
    assert json.loads(payload)["flexion_deg"] == [None, 1.0]
    m = wire.decode_posture("p1", "d1", payload)
    lines = posture_lines(m)
    assert len(lines) == 1 and lines[0].endswith(f" {T0 + 10_000_000}")


def test_event_round_trip():
    e = SlouchEvent("p1", "d1", T0, T0 + 45 * 10**9, 31.5, 27.25)
    m = wire.decode_event("p1", "d1", wire.encode_event(e))
    assert (m.start_ns, m.end_ns, m.peak_deg, m.mean_deg) == (T0, T0 + 45 * 10**9, 31.5, 27.25)
    assert slouch_line(m) == (
        f"slouch,device=d1,patient=p1 duration_s=45.0,peak_deg=31.5,mean_deg=27.25,"
        f"end_ns={T0 + 45 * 10**9}i {T0}"
    )


def test_decoded_event_is_the_bridge_event_and_mean_is_optional():
    e = SlouchEvent("p1", "d1", T0, T0 + 45_123_456_789, 31.5, 27.25)
    assert wire.decode_event("p1", "d1", wire.encode_event(e)) == e  # one type both ways
    no_mean = SlouchEvent("p1", "d1", T0, T0 + 10**9, 30.0, None)
    payload = wire.encode_event(no_mean)
    assert "mean_deg" not in json.loads(payload)
    m = wire.decode_event("p1", "d1", payload)
    assert m == no_mean and m.duration_s == 1.0
    assert slouch_line(m) == f"slouch,device=d1,patient=p1 duration_s=1.0,peak_deg=30.0,end_ns={T0 + 10**9}i {T0}"
    # stored to 0.01 s, whatever the sample period made of the end
    assert slouch_line(e).startswith("slouch,device=d1,patient=p1 duration_s=45.12,")


def _posture(**over):
    obj = {"v": 1, "t0_ns": T0, "dt_ns": 10_000_000, "flexion_deg": [1.0, 2.0], "lateral_deg": [0.0, 0.0]}
    obj.update(over)
    return json.dumps(obj).encode()


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "bad_json"),
        (b"\xff\xfe", "bad_json"),
        (b"[1,2]", "not_object"),
        (_posture(v=2), "bad_version"),
        (_posture(v=True), "bad_version"),
        (_posture(t0_ns=None), "missing_field"),
        (_posture(t0_ns="1"), "bad_type"),
        (_posture(t0_ns=12), "absurd_timestamp"),
        (_posture(dt_ns=0), "out_of_range"),
        (_posture(flexion_deg=[1.0]), "length_mismatch"),
        (_posture(flexion_deg=["a", 1]), "bad_type"),
        (_posture(flexion_deg=[True, 1]), "bad_type"),
        (_posture(flexion_deg=[1e9, 1]), "out_of_range"),
        (_posture(state=[0]), "length_mismatch"),
        (b" " * (wire.MAX_PAYLOAD_BYTES + 1), "oversized"),
    ],
)
def test_malformed_posture_payloads_raise_decode_error_with_reason(payload, reason):
    with pytest.raises(DecodeError) as info:
        wire.decode_posture("p1", "d1", payload)
    assert info.value.reason == reason


def test_unknown_event_kind_and_reversed_times_are_refused():
    with pytest.raises(DecodeError, match="unknown_event"):
        wire.decode_event("p", "d", json.dumps({"v": 1, "kind": "nap"}).encode())
    bad = {"v": 1, "kind": "slouch", "start_ns": T0 + 1, "end_ns": T0, "peak_deg": 30}
    with pytest.raises(DecodeError, match="out_of_range"):
        wire.decode_event("p", "d", json.dumps(bad).encode())


@pytest.mark.parametrize("t", ["spinewatch/v2/p/d/posture", "spinewatch/v1/p/d", "spinewatch/v1/p/d/nope", "x"])
def test_foreign_topics_are_bad_topic(t):
    with pytest.raises(DecodeError, match="bad_topic"):
        wire.parse_topic(t)


angles = st.one_of(st.floats(-360, 360, allow_nan=False), st.just(float("nan")))


@settings(max_examples=200, deadline=None)
@given(flex=st.lists(angles, min_size=0, max_size=40), seed=st.integers(0, 2**16),
       with_codes=st.booleans())
def test_fast_line_protocol_writes_the_same_points_as_the_readable_one(flex, seed, with_codes):
    rng = np.random.default_rng(seed)
    n = len(flex)
    lat = np.where(rng.random(n) < 0.2, np.nan, rng.uniform(-90, 90, n))
    b = PostureBatch("p1", "d1", T0 + seed, 7_000_000, np.array(flex, dtype=float), lat,
                     rng.integers(0, 2, n).astype(np.int8) if with_codes else np.zeros(0, np.int8),
                     rng.integers(0, 4, n).astype(np.int8) if with_codes else np.zeros(0, np.int8))
    m = wire.decode_posture("p1", "d1", wire.encode_posture(b))

    def parse(line: str):
        head, fields, ts = line.split(" ")
        kv = dict(f.split("=") for f in fields.split(","))
        return head, {k: (v if v.endswith("i") else round(float(v), 2)) for k, v in kv.items()}, int(ts)

    fast, count = posture_bytes(m)
    assert count == len(posture_lines(m))
    assert [parse(x) for x in fast.decode().splitlines()] == [parse(x) for x in posture_lines(m)]


def test_to_bytes_counts_points_of_posture_and_events():
    p = wire.decode_posture("p", "d", wire.encode_posture(
        PostureBatch("p", "d", T0, 10_000_000, np.array([1.0, -2.5]), np.array([0.0, 0.5]))))
    e = wire.decode_event("p", "d", wire.encode_event(SlouchEvent("p", "d", T0, T0 + 10**9, 30, 25)))
    body, points = to_bytes([p, e])
    assert points == 3 and body.count(b"\n") == 3 and body.endswith(b"\n")


def test_status_keeps_numbers_and_flags_and_drops_strings():
    payload = json.dumps({"v": 1, "online": True, "connected": False, "battery_pct": 87, "rssi_dbm": -61.5,
                          "address": "AA:BB", "profile": "spinewatch", "Bad-Key": 3, "nested": {"x": 1}}).encode()
    m = wire.decode_status("p1", "d1", payload, now_ns=T0)
    assert m.t_ns == T0
    assert m.fields == {"online": 1.0, "connected": 0.0, "battery_pct": 87.0, "rssi_dbm": -61.5}
    with pytest.raises(DecodeError, match="online"):
        wire.decode_status("p1", "d1", json.dumps({"v": 1}).encode(), now_ns=T0)
    timed = wire.decode_status("p1", "d1", json.dumps({"v": 1, "online": False, "t_ns": T0 + 5}).encode(), 0)
    assert timed.t_ns == T0 + 5


# ------------------------------------------------------------------ alert and calibration events

def test_alert_event_round_trips_and_its_outcome_is_checked():
    from spinewatch.model import HapticAlert

    t = 1_764_057_600 * 10**9
    m = wire.decode_event("p", "d", wire.encode_alert(HapticAlert("p", "d", t, 25.123, True, 3.5)))
    assert m.measurement == "alert" and m.t_ns == t
    assert m.fields == {"flexion_deg": 25.12, "corrected": 1, "response_s": 3.5}
    m = wire.decode_event("p", "d", wire.encode_alert(HapticAlert("p", "d", t, 25.0, False, None)))
    assert m.fields == {"flexion_deg": 25.0, "corrected": 0}
    for bad, reason in ((b'{"v":1,"kind":"alert","t_ns":%d,"flexion_deg":20,"corrected":1}' % t, "bad_type"),
                        (b'{"v":1,"kind":"alert","t_ns":%d,"flexion_deg":20,"corrected":true,"response_s":-1}' % t,
                         "out_of_range"),
                        (b'{"v":1,"kind":"alert","flexion_deg":20,"corrected":true}', "missing_field")):
        with pytest.raises(DecodeError) as e:
            wire.decode_event("p", "d", bad)
        assert e.value.reason == reason


def test_calibration_event_round_trips_and_needs_a_unit_up_vector():
    from spinewatch.model import Calibration

    t = 1_764_057_600 * 10**9
    c = Calibration("p", "d", t, (0.0, 0.6, 0.8), None, 0.5, 0.02, 10.0, "pt-7")
    m = wire.decode_event("p", "d", wire.encode_calibration(c))
    assert m.measurement == "calibration"
    assert m.fields == {"up_x": 0.0, "up_y": 0.6, "up_z": 0.8, "gyr_rms_deg_s": 0.5, "acc_std_m_s2": 0.02,
                        "duration_s": 10.0, "author": "pt-7"}
    with pytest.raises(DecodeError) as e:
        wire.decode_event("p", "d", wire.encode_calibration(
            Calibration("p", "d", t, (0.0, 0.0, 2.0), None, 0.5, 0.02, 10.0)))
    assert e.value.reason == "out_of_range"


def test_record_lines_keep_one_type_per_field():
    from spinewatch.service.storage.lineprotocol import record_line

    m = wire.RecordMsg("alert", "p", "d", 5, {"corrected": 1, "flexion_deg": 20.0, "who": 'a"b'})
    assert record_line(m) == 'alert,device=d,patient=p corrected=1i,flexion_deg=20.0,who="a\\"b" 5'


def test_posture_seq_and_epoch_round_trip_and_are_optional() -> None:
    """``seq`` and ``seq_epoch`` travel as sent; messages without them decode with None."""
    b = PostureBatch("p1", "d1", 10**18, 10_000_000, np.array([1.0, 2.0]), np.array([0.0, 0.5]))
    m = wire.decode_posture("p1", "d1", wire.encode_posture(b, seq=7, seq_epoch=2**52 + 1))
    assert (m.seq, m.seq_epoch) == (7, 2**52 + 1)
    bare = wire.decode_posture("p1", "d1", wire.encode_posture(b))
    assert (bare.seq, bare.seq_epoch) == (None, None)


@pytest.mark.parametrize("bad", [0, -1, 2**53, 1.5, "7", True])
def test_posture_seq_out_of_range_is_refused(bad: object) -> None:
    payload = orjson.dumps({"v": 1, "t0_ns": 10**18, "dt_ns": 10**7, "flexion_deg": [1.0],
                            "lateral_deg": [0.0], "seq": bad})
    with pytest.raises(DecodeError) as e:
        wire.decode_posture("p1", "d1", payload)
    assert e.value.reason == "bad_type"
