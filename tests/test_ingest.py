"""Ingest worker against real servers: what arrives, what is refused, what survives an outage."""

from __future__ import annotations

import base64
import collections
import dataclasses
import json
import uuid

import numpy as np
import pytest
from _mqtt_helpers import TestClient
from _waiting import wait_until

from spinewatch.model import PostureBatch, SlouchEvent
from spinewatch.service.config import Config
from spinewatch.service.ingest.worker import IngestWorker
from spinewatch.service.storage import Influx1Store, Influx2Store
from spinewatch.service.transport import wire
from spinewatch.service.transport.retry import BACKOFF_CAP_S, server_retry_delay_s

pytestmark = pytest.mark.network

T0 = 1_764_057_600 * 10**9
DT = 10_000_000


def posture_payload(i: int, n: int = 100) -> bytes:
    rng = np.random.default_rng(i)
    b = PostureBatch("p1", "d1", T0 + i * n * DT, DT, rng.uniform(-10, 40, n), rng.uniform(-5, 5, n),
                     np.zeros(n, np.int8), np.full(n, 2, np.int8))
    return wire.encode_posture(b, seq=i + 1)  # seq counts from 1 (docs/wire-format.md)


def broker_client(mosquitto) -> TestClient:
    c = TestClient(mosquitto.host, mosquitto.port, mqtt5=True)
    c.connect()
    return c


def worker(mosquitto, store, **ingest) -> IngestWorker:
    """A worker in a share group of its own: a stopped worker's persistent session stays in
    its group and keeps receiving its share, so tests must not share groups."""
    cfg = Config.load({"SPINEWATCH_MQTT_URL": mosquitto.url,
                       "SPINEWATCH_WORKER_ID": f"w-{uuid.uuid4().hex[:8]}"})
    mqtt = dataclasses.replace(cfg.mqtt, share_group=f"g{uuid.uuid4().hex[:8]}")
    w = IngestWorker(mqtt, dataclasses.replace(cfg.ingest, **ingest), store, "5")
    w.start()
    assert w.subscribed.wait(10), "ingest did not subscribe"
    return w


def count(influx, db: str, measurement: str = "posture", field: str = "flexion_deg") -> int:
    rows = influx.points(f'SELECT count("{field}") FROM "{measurement}"', db)
    return int(rows[0]["count"]) if rows else 0


def test_good_messages_arrive_and_malformed_ones_are_counted_acked_and_skipped(mosquitto, influxdb1):
    db = f"mix_{uuid.uuid4().hex[:6]}"
    store = Influx1Store(influxdb1.url, db)
    store.ensure_database()
    w = worker(mosquitto, store)
    pub = broker_client(mosquitto)
    dead = broker_client(mosquitto)
    dead.subscribe("spinewatch/deadletter/#")
    bad = {
        "bad_json": b"{nope",
        "bad_version": json.dumps({"v": 9}).encode(),
        "length_mismatch": json.dumps({"v": 1, "t0_ns": T0, "dt_ns": DT,
                                       "flexion_deg": [1], "lateral_deg": []}).encode(),
        "absurd_timestamp": json.dumps({"v": 1, "t0_ns": 5, "dt_ns": DT,
                                        "flexion_deg": [1], "lateral_deg": [1]}).encode(),
    }
    topic = wire.topic("p1", "d1", "posture")
    for i in range(20):
        pub.publish(topic, posture_payload(i))
        reason = list(bad)[i % len(bad)]
        pub.publish(topic, bad[reason])
    ev = SlouchEvent("p1", "d1", T0, T0 + 40 * 10**9, 33.3, 30.1)
    pub.publish(wire.topic("p1", "d1", "event"), wire.encode_event(ev))
    pub.publish("spinewatch/v1/p1/d1/unknown", b"{}")  # matches the + filter, but is no v1 kind
    try:
        w.wait_written(21, 20.0)
        wait_until(lambda: w.stats.snapshot()["acked"] >= 42, what="every message acked")
        snap = w.stats.snapshot()
        assert snap["rejected"] == {"bad_json": 5, "bad_version": 5, "length_mismatch": 5,
                                    "absurd_timestamp": 5, "bad_topic": 1}
        assert snap["written_messages"] == 21
        assert count(influxdb1, db) == 20 * 100
        rows = influxdb1.points('SELECT duration_s, peak_deg, mean_deg FROM slouch', db)
        assert rows == [{"time": T0, "duration_s": 40.0, "peak_deg": 33.3, "mean_deg": 30.1}]
        letters = [dead.get() for _ in range(21)]
        by_reason = collections.Counter(m.topic.rsplit("/", 1)[1] for m in letters)
        assert by_reason == snap["rejected"]
        first = json.loads(next(m for m in letters if m.topic.endswith("/bad_json")).payload)
        assert base64.b64decode(first["payload_b64"]) == b"{nope"
        assert first["topic"] == topic and first["worker"] == w.client_id
    finally:
        w.stop()
        pub.close()
        dead.close()


def test_redelivered_messages_overwrite_instead_of_duplicating(mosquitto, influxdb1):
    db = f"dup_{uuid.uuid4().hex[:6]}"
    store = Influx1Store(influxdb1.url, db)
    store.ensure_database()
    w = worker(mosquitto, store)
    pub = broker_client(mosquitto)
    try:
        for _ in range(3):
            for i in range(5):
                pub.publish(wire.topic("p1", "d1", "posture"), posture_payload(i))
        assert w.wait_written(15, 20.0)
        assert count(influxdb1, db) == 5 * 100
    finally:
        w.stop()
        pub.close()


def test_a_batch_stored_before_an_earlier_one_waits_for_it_to_be_acknowledged(mosquitto, influxdb1):
    """Batches are written two at a time (pipelining), but acks keep the order of arrival."""
    import threading

    db = f"order_{uuid.uuid4().hex[:6]}"
    first_may_finish, third_writing = threading.Event(), threading.Event()
    unacked_when_third_written: list[int] = []  # messages received, not acknowledged

    class GatedStore(Influx1Store):
        def write(self, msgs):  # type: ignore[no-untyped-def]
            patients = {m.patient for m in msgs}
            if "p1" in patients:
                assert first_may_finish.wait(20), "the test never released the first batch"
            if "p3" in patients:
                # p2's writer took p3 only after it had finished p2 (two writers, p1 holds the other);
                # what arrived before p1 (retained messages of earlier tests) may be acked, not p2
                snap = w.stats.snapshot()
                unacked_when_third_written.append(int(snap["received"]) - int(snap["acked"]))
                third_writing.set()
            return super().write(msgs)

    store = GatedStore(influxdb1.url, db)
    store.ensure_database()
    w = worker(mosquitto, store, batch_max_points=1)  # every message is a batch of its own
    pub = broker_client(mosquitto)
    try:
        for i, patient in enumerate(("p1", "p2", "p3")):
            pub.publish(wire.topic(patient, "d1", "posture"), posture_payload(i))
        assert third_writing.wait(20), "p2 and p3 were not written while p1 was in flight"
        assert unacked_when_third_written == [3], "p2 was acknowledged ahead of the unwritten p1"
        first_may_finish.set()
        assert w.wait_written(3, 20.0)
        wait_until(lambda: w.stats.snapshot()["acked"] == w.stats.snapshot()["received"],
                   what="every message to be acknowledged")
        assert count(influxdb1, db) == 300
    finally:
        first_may_finish.set()
        w.stop()
        pub.close()


def test_influxdb_outage_is_retried_and_nothing_is_lost(fresh_mosquitto, fresh_influxdb1):
    # a broker of its own: the session broker's retained status/config messages of earlier tests
    # are acknowledged without a write, which the 'acked == 0' check below would count
    mosquitto = fresh_mosquitto
    influx = fresh_influxdb1
    db = "outage"
    store = Influx1Store(influx.url, db)
    store.ensure_database()
    influx.stop()
    w = worker(mosquitto, store, batch_interval_s=0.2)
    pub = broker_client(mosquitto)
    try:
        for i in range(10):
            pub.publish(wire.topic("p1", "d1", "posture"), posture_payload(i))
        wait_until(lambda: w.stats.snapshot()["write_retries"] >= 1, what="a failed write to be retried")
        assert w.stats.snapshot()["acked"] == 0, "nothing may be acknowledged before it is stored"
        influx.start()
        assert w.wait_written(10, 60.0), w.stats.snapshot()
        assert count(influx, db) == 10 * 100
    finally:
        w.stop()
        pub.close()


def test_influxdb2_api_path_writes_through_influxdb_client(mosquitto, victoriametrics):
    store = Influx2Store(victoriametrics.url, org="o", bucket="b", token="t")
    w = worker(mosquitto, store)
    pub = broker_client(mosquitto)
    try:
        for i in range(3):
            pub.publish(wire.topic("p2", "d2", "posture"), posture_payload(i))
        assert w.wait_written(3, 20.0), w.stats.snapshot()
        victoriametrics.flush()
        series = victoriametrics.export('{__name__="posture_flexion_deg",patient="p2"}')
        assert sum(len(s["values"]) for s in series) == 300
        assert series[0]["metric"]["device"] == "d2"
        assert min(s["timestamps"][0] for s in series) == T0 // 10**6  # ms
    finally:
        w.stop()
        store.close()
        pub.close()


@pytest.mark.parametrize(
    ("attempt", "draw", "expected_s"),
    [
        (1, 1.0, 1.0),  # 0.5 * 2 ** attempt: 1, 2, 4, 8, 16, then the 30 s cap
        (2, 1.0, 2.0),
        (3, 0.5, 2.0),  # full jitter: the draw scales the whole delay
        (5, 1.0, 16.0),
        (6, 1.0, 30.0),
        (50, 1.0, 30.0),
        (10**6, 0.5, 15.0),
        (1, 0.0, 0.0),  # a single retry may come at once
        (50, 0.0, 0.0),
    ],
)
def test_server_retry_delay_table(attempt, draw, expected_s):
    assert server_retry_delay_s(attempt, draw=draw) == pytest.approx(expected_s)


def test_server_retry_delay_is_the_old_curve_and_paho_reconnects_under_the_same_cap():
    """Moving the arithmetic to spinewatch/backoff.py kept the curve, uniform(0, min(cap, 0.5 * 2 ** min(a, 16))),
    draw for draw; its cap is paho's reconnect ceiling."""
    import random

    from spinewatch.service.transport.mqtt import RECONNECT_MAX_S

    for attempt in (*range(1, 20), 100):
        for cap_s in (BACKOFF_CAP_S, 5.0, 1e9):
            state = random.getstate()
            old = random.uniform(0.0, min(cap_s, 0.5 * 2.0 ** min(attempt, 16)))
            random.setstate(state)
            assert server_retry_delay_s(attempt, cap_s) == old
    assert RECONNECT_MAX_S == BACKOFF_CAP_S == 30.0


@pytest.mark.parametrize("attempt", [1, 2, 5, 10, 50])
def test_server_retry_delay_is_jittered_and_capped(attempt):
    samples = [server_retry_delay_s(attempt) for _ in range(200)]
    assert all(0 <= s <= min(30.0, 0.5 * 2**attempt) for s in samples)
    assert max(samples) > 0.5 * min(30.0, 0.5 * 2**attempt)  # jitter spreads over the range


def test_server_retry_delay_rejects_bad_arguments():
    with pytest.raises(ValueError, match="attempt"):
        server_retry_delay_s(0)
    with pytest.raises(ValueError, match="draw"):
        server_retry_delay_s(1, draw=2.0)


def test_health_endpoint_reports_counters_and_degrades_when_the_database_is_down(mosquitto, fresh_influxdb1):
    import urllib.error
    import urllib.request

    from spinewatch.service.ingest.health import HealthServer

    store = Influx1Store(fresh_influxdb1.url, "health")
    store.ensure_database()
    w = worker(mosquitto, store, batch_interval_s=0.1)
    pub = broker_client(mosquitto)

    def get(path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{hs.port}{path}", timeout=5) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    try:
        with HealthServer("127.0.0.1", 0, w.health) as hs:
            pub.publish(wire.topic("p1", "d1", "posture"), posture_payload(0))
            assert w.wait_written(1, 20)
            code, body = get("/healthz")
            doc = json.loads(body)
            assert code == 200 and doc["status"] == "ok" and doc["written_points"] == 100
            code, body = get("/metrics")
            assert code == 200 and b"spinewatch_ingest_written_points 100" in body
            fresh_influxdb1.stop()
            pub.publish(wire.topic("p1", "d1", "posture"), posture_payload(1))
            wait_until(lambda: get("/healthz")[0] == 503, what="the endpoint to report degraded")
            doc = json.loads(get("/healthz")[1])
            assert doc["database_reachable"] is False and doc["lag_s"] > 0
            assert get("/nope")[0] == 404
    finally:
        fresh_influxdb1.start()
        w.stop()
        pub.close()


def test_an_unexpected_store_error_is_reported_as_failed_and_nothing_is_acknowledged(mosquitto, influxdb1):
    """A bug or a broken disk in a write: the worker says "failed" (the CLI then exits for its
    supervisor to restart it) instead of stalling silently at the receive maximum."""

    class BrokenStore(Influx1Store):
        def write(self, msgs):  # type: ignore[no-untyped-def]
            raise RuntimeError("disk I/O error")

    w = worker(mosquitto, BrokenStore(influxdb1.url, "broken"), batch_interval_s=0.1)
    pub = broker_client(mosquitto)
    try:
        assert w.health()["status"] != "failed" and w.health()["failure"] is None
        pub.publish(wire.topic("p1", "d1", "posture"), posture_payload(0))
        assert w.failed.wait(20), "the failure was not reported"
        doc = w.health()
        assert doc["status"] == "failed" and "RuntimeError: disk I/O error" in doc["failure"]
        assert doc["acked"] == 0 and doc["received"] >= 1  # comes back to the restarted worker
    finally:
        w.stop()
        pub.close()


def test_device_status_is_stored_but_a_replayed_retained_one_is_not(mosquitto, influxdb1):
    db = f"st_{uuid.uuid4().hex[:6]}"
    store = Influx1Store(influxdb1.url, db)
    store.ensure_database()
    pub = broker_client(mosquitto)
    old = json.dumps({"v": 1, "online": True, "battery_pct": 10}).encode()
    pub.client.publish(wire.topic("p7", "d7", "status"), old, qos=1, retain=True).wait_for_publish(5)
    w = worker(mosquitto, store)  # subscribes after: the retained status arrives flagged retained
    try:
        fresh = json.dumps({"v": 1, "online": True, "battery_pct": 80, "rssi_dbm": -60, "profile": "x"}).encode()
        pub.publish(wire.topic("p7", "d7", "status"), fresh)
        assert w.wait_written(1, 20), w.stats.snapshot()
        rows = influxdb1.points('SELECT battery_pct, rssi_dbm, "online" FROM device', db)
        assert [(r["battery_pct"], r["rssi_dbm"], r["online"]) for r in rows] == [(80.0, -60.0, 1.0)]
        assert w.stats.snapshot()["ignored"] >= 1
    finally:
        pub.client.publish(wire.topic("p7", "d7", "status"), b"", qos=1, retain=True).wait_for_publish(5)
        w.stop()
        pub.close()


def test_alert_and_calibration_events_are_stored_and_read_back_by_both_stores(mosquitto, influxdb1, tmp_path):
    """Alerts and calibrations go through the real worker into InfluxDB and SQLite alike."""
    from spinewatch.model import Calibration, HapticAlert
    from spinewatch.service.storage import SqliteStore

    db = f"ev_{uuid.uuid4().hex[:6]}"
    influx = Influx1Store(influxdb1.url, db)
    influx.ensure_database()
    sqlite = SqliteStore(tmp_path / "s.db")
    alert = HapticAlert("p8", "d8", T0, 27.5, True, 4.25)
    ignored = HapticAlert("p8", "d8", T0 + 60 * 10**9, 31.0, False, None)
    cal = Calibration("p8", "d8", T0 + 120 * 10**9, (0.0, 0.6, 0.8), -12.5, 0.8, 0.05, 10.0, "pt-1")
    for store in (influx, sqlite):
        w = worker(mosquitto, store)
        pub = broker_client(mosquitto)
        try:
            for payload in (wire.encode_alert(alert), wire.encode_alert(ignored), wire.encode_calibration(cal)):
                pub.publish(wire.topic("p8", "d8", "event"), payload)
            assert w.wait_written(3, 20), w.stats.snapshot()
        finally:
            w.stop()
            pub.close()
        alerts = store.records("alert", "p8", T0, T0 + 3600 * 10**9)
        assert [(a.t_ns, a.device, a.fields["flexion_deg"], a.fields["corrected"], a.fields.get("response_s"))
                for a in alerts] == [(T0, "d8", 27.5, 1, 4.25), (T0 + 60 * 10**9, "d8", 31.0, 0, None)]
        (c,) = store.records("calibration", "p8", T0, T0 + 3600 * 10**9)
        assert (c.fields["up_y"], c.fields["up_z"], c.fields["mount_yaw_deg"], c.fields["author"]) == (
            0.6, 0.8, -12.5, "pt-1")
        assert store.records("alert", "p8", T0 + 1, T0 + 60 * 10**9) == []  # [start, end)
