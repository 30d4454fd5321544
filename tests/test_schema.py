"""`spinewatch influx init` against a real InfluxDB 1.x: retention, continuous queries, backfill."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from spinewatch.model import PostureBatch, SlouchEvent
from spinewatch.service.cli import main
from spinewatch.service.storage import Influx1Store
from spinewatch.service.storage.influx1_schema import Influx1Schema
from spinewatch.service.transport import wire

pytestmark = pytest.mark.network
T0 = (time.time_ns() // (60 * 10**9) - 10) * 60 * 10**9  # a whole minute, within retention


def test_init_creates_retention_and_continuous_queries_idempotently(influxdb1, monkeypatch, capsys):
    monkeypatch.setenv("SPINEWATCH_INFLUX_URL", influxdb1.url)
    monkeypatch.setenv("SPINEWATCH_INFLUX_DB", "schema1")
    assert main(["influx", "init", "--raw-retention", "30d"]) == 0
    assert main(["influx", "init", "--raw-retention", "12w"]) == 0  # again: changes retention
    rps = {r["name"]: r for r in influxdb1.points("SHOW RETENTION POLICIES", "schema1")}
    assert rps["raw"]["default"] is True and rps["raw"]["duration"] == "2016h0m0s"
    assert rps["trend"]["duration"] == "0s"  # forever
    cqs = influxdb1.query("SHOW CONTINUOUS QUERIES")["results"][0]["series"]
    names = {row[0] for s in cqs if s["name"] == "schema1" for row in s.get("values", [])}
    assert names == {"posture_1m", "posture_1m_still", "slouch_copy"}
    assert "raw samples kept 12w" in capsys.readouterr().out


def test_backfill_downsamples_existing_points_per_minute(influxdb1, monkeypatch):
    db = "schema2"
    store = Influx1Store(influxdb1.url, db)
    store.ensure_database()
    for q in Influx1Schema(db).statements():
        if not q.startswith("DROP"):  # nothing to replace on a fresh database
            store.execute(q)
    rng = np.random.default_rng(0)
    flex = rng.uniform(-10, 40, 12_000)  # two minutes at 100 Hz
    msgs = [wire.decode_posture("p1", "d1", wire.encode_posture(
        PostureBatch("p1", "d1", T0 + k * 10**9, 10**7, flex[k * 100:(k + 1) * 100], np.zeros(100),
                     np.zeros(100, np.int8), np.full(100, 2, np.int8)))) for k in range(120)]
    ev = wire.decode_event("p1", "d1", wire.encode_event(
        SlouchEvent("p1", "d1", T0 + 5 * 10**9, T0 + 65 * 10**9, 33.0, 28.0)))
    store.write([*msgs, ev])
    for q in Influx1Schema(db).backfill_statements():
        store.execute(q)
    rows = influxdb1.points('SELECT * FROM "trend"."posture_1m"', db)
    assert [r["samples"] for r in rows] == [6000, 6000]
    assert [r["still_samples"] for r in rows] == [6000, 6000]  # merged into the same points
    expected = np.round(flex, 2).reshape(2, 6000).mean(axis=1)
    np.testing.assert_allclose([r["flexion_deg"] for r in rows], expected, atol=1e-9)
    slouch = influxdb1.points('SELECT * FROM "trend"."slouch"', db)
    assert len(slouch) == 1 and slouch[0]["duration_s"] == 60.0 and slouch[0]["time"] == T0 + 5 * 10**9


def test_episodes_read_back_from_raw_and_trend_as_one_type(influxdb1):
    """Raw ``slouch`` gives back the events written (end_ns exact; a point without end_ns gets
    start + duration_s); a ``trend.slouch`` copy starts at its 1-s bucket and keeps the stored
    duration_s (its end is derived from it, not lengthened by the floor)."""
    db = "schema_episodes"
    store = Influx1Store(influxdb1.url, db)
    store.ensure_database()
    for q in Influx1Schema(db).statements():
        if not q.startswith("DROP"):
            store.execute(q)
    a = SlouchEvent("p3", "d1", T0 + 7_345_600_000, T0 + 47_900_000_001, 33.0, 28.0)
    b = SlouchEvent("p3", "d2", T0 + 7_345_600_000, T0 + 20 * 10**9, 31.0, None)
    store.write([wire.decode_event(e.patient, e.device, wire.encode_event(e)) for e in (a, b)])
    store._request("/write", {"db": db, "precision": "ns"},  # a point without end_ns
                   f"slouch,device=d3,patient=p3 duration_s=12.5,peak_deg=30.0 {T0 + 90 * 10**9}".encode())
    old = SlouchEvent("p3", "d3", T0 + 90 * 10**9, T0 + 102_500_000_000, 30.0, None)
    assert store.episodes("p3", T0, T0 + 3600 * 10**9) == [a, b, old]
    for q in Influx1Schema(db).backfill_statements():
        store.execute(q)
    trend = store.slouches_trend("p3", T0, T0 + 3600 * 10**9)
    assert [(e.device, e.start_ns, e.duration_s, e.peak_deg, e.mean_deg) for e in trend] == [
        ("d1", T0 + 7 * 10**9, 40.55, 33.0, 28.0), ("d2", T0 + 7 * 10**9, 12.65, 31.0, None),
        ("d3", T0 + 90 * 10**9, 12.5, 30.0, None)]


def test_bad_retention_and_missing_database_are_one_line_errors(influxdb1, monkeypatch, capsys):
    monkeypatch.setenv("SPINEWATCH_INFLUX_URL", influxdb1.url)
    monkeypatch.setenv("SPINEWATCH_INFLUX_DB", "schema3")
    assert main(["influx", "init", "--raw-retention", "soon"]) == 2
    assert "--raw-retention='soon'" in capsys.readouterr().err
    monkeypatch.delenv("SPINEWATCH_INFLUX_DB")
    monkeypatch.setenv("SPINEWATCH_INFLUX_ORG", "o")
    monkeypatch.setenv("SPINEWATCH_INFLUX_BUCKET", "b")
    monkeypatch.setenv("SPINEWATCH_INFLUX_TOKEN", "t")
    assert main(["influx", "init"]) != 0  # 2.x settings pointed at a 1.x server
    assert "no InfluxDB 2.x API at" in capsys.readouterr().err


def test_late_posture_and_slouches_reach_trend_without_a_backfill(influxdb1):
    """A bridge flushing its outbox hours later: the continuous queries have long run for
    those minutes, so the store downsamples what it writes late itself."""
    db = "schema_late"
    store = Influx1Store(influxdb1.url, db)
    store.ensure_database()
    for q in Influx1Schema(db).statements():
        if not q.startswith("DROP"):
            store.execute(q)
    t_late = (time.time_ns() // (60 * 10**9) - 180) * 60 * 10**9  # three hours ago, a whole minute
    rng = np.random.default_rng(1)
    flex = rng.uniform(-10, 40, 12_000)
    act = np.where(np.arange(12_000) < 9_000, 2, 3).astype(np.int8)
    msgs = [wire.decode_posture("p2", "d1", wire.encode_posture(
        PostureBatch("p2", "d1", t_late + k * 10**9, 10**7, flex[k * 100:(k + 1) * 100], np.zeros(100),
                     np.zeros(100, np.int8), act[k * 100:(k + 1) * 100]))) for k in range(120)]
    ev = wire.decode_event("p2", "d1", wire.encode_event(
        SlouchEvent("p2", "d1", t_late + 5 * 10**9, t_late + 65 * 10**9, 33.0, 28.0)))
    store.write([*msgs, ev])  # no backfill statements run
    rows = influxdb1.points('SELECT * FROM "trend"."posture_1m" WHERE "patient" = \'p2\'', db)
    assert [(r["time"], r["samples"], r["still_samples"]) for r in rows] == [
        (t_late, 6000, 6000), (t_late + 60 * 10**9, 6000, 3000)]
    np.testing.assert_allclose([r["flexion_deg"] for r in rows],
                               np.round(flex, 2).reshape(2, 6000).mean(axis=1), atol=1e-9)
    slouch = influxdb1.points('SELECT * FROM "trend"."slouch" WHERE "patient" = \'p2\'', db)
    assert [(s["time"], s["duration_s"]) for s in slouch] == [(t_late + 5 * 10**9, 60.0)]


def test_late_batches_sharing_a_minute_are_downsampled_one_at_a_time(influxdb1):
    """The ingest's two writer threads may each hold half of one late minute. A SELECT INTO
    that read before the other half was written must not land after the complete one (seen
    in CI: a patient's trend short of samples for good), so the late downsampling of one
    store runs one statement group at a time, whatever the threads do."""
    db = "schema_late_race"
    store = Influx1Store(influxdb1.url, db)
    store.ensure_database()
    for q in Influx1Schema(db).statements():
        if not q.startswith("DROP"):
            store.execute(q)
    t_late = (time.time_ns() // (60 * 10**9) - 120) * 60 * 10**9
    halves = [[wire.decode_posture("p3", "d1", wire.encode_posture(
        PostureBatch("p3", "d1", t_late + k * 10**9, 10**7, np.full(100, 10.0), np.zeros(100),
                     np.zeros(100, np.int8), np.full(100, 2, np.int8)))) for k in ks]
        for ks in (range(0, 30), range(30, 60))]
    inside = 0
    overlapped = threading.Event()
    second_in = threading.Event()
    lock = threading.Lock()
    execute = store.execute

    def watched_execute(q: str) -> None:
        nonlocal inside
        with lock:
            inside += 1
            if inside > 1:
                overlapped.set()
                second_in.set()
        try:
            # the first statement holds on until another thread is inside too, or 0.5 s passed
            # (it never comes when the store serialises them)
            if "INTO" in q:
                second_in.wait(0.5)
            execute(q)
        finally:
            with lock:
                inside -= 1

    store.execute = watched_execute  # type: ignore[method-assign]
    threads = [threading.Thread(target=store.write, args=(h,)) for h in halves]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not overlapped.is_set(), "two late downsampling statements ran at once"
    rows = influxdb1.points('SELECT * FROM "trend"."posture_1m" WHERE "patient" = \'p3\'', db)
    assert [(r["time"], r["samples"]) for r in rows] == [(t_late, 6000)]
    assert rows[0]["wear_s"] == pytest.approx(60.0)


def test_posture_queries_look_back_two_minutes_for_stragglers(influxdb1, monkeypatch):
    monkeypatch.setenv("SPINEWATCH_INFLUX_URL", influxdb1.url)
    monkeypatch.setenv("SPINEWATCH_INFLUX_DB", "schema_resample")
    assert main(["influx", "init"]) == 0
    cqs = influxdb1.query("SHOW CONTINUOUS QUERIES")["results"][0]["series"]
    text = {row[0]: row[1] for s in cqs if s["name"] == "schema_resample" for row in s.get("values", [])}
    assert "RESAMPLE FOR 2m" in text["posture_1m"] and "RESAMPLE FOR 2m" in text["posture_1m_still"]
    # wear seconds from the points' own periods (docs/storage.md "Wear time")
    # (as InfluxDB prints them back: quotes dropped, 0.01 as 0.010)
    assert "sum(wear_s) + (count(flexion_deg) - count(wear_s)) * 0.010 AS wear_s" in text["posture_1m"]
    assert "sum(wear_s) + (count(flexion_deg) - count(wear_s)) * 0.010 AS still_s" in text["posture_1m_still"]
