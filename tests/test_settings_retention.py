"""A patient's settings outlive the raw retention: ingest keeps them in RP "settings" too, and the
dashboards and reports read them there (real InfluxDB 1.x; expiry simulated the way InfluxDB
enforces retention, by dropping the raw policy's shards)."""

from __future__ import annotations

import time

import pytest

from spinewatch.service.dashboards import (
    DASHBOARDS,
    resolve_query_variables,
    variable_defaults,
)
from spinewatch.service.storage import Influx1Store
from spinewatch.service.storage.influx1_schema import Influx1Schema
from spinewatch.service.transport import wire

pytestmark = pytest.mark.network
NOW_NS = time.time_ns()
SET_NS = NOW_NS - 20 * 60 * 10**9  # within the 1-h raw retention when written


def _settings(patient: str) -> list[wire.ConfigMsg | wire.RecordMsg]:
    return [
        wire.ConfigMsg(patient, "d1", SET_NS, {"threshold_deg": 24.0, "severe_deg": 33.0}, "pt-anna",
                       "Europe/Paris"),
        wire.RecordMsg("calibration", patient, "d1", SET_NS + 10**9, {"forward_bend_deg": 31.5}),
    ]


def _initialised(influxdb1, db: str) -> Influx1Store:
    store = Influx1Store(influxdb1.url, db)
    store.ensure_database()  # what ingest does at start: the database and RP settings
    for q in Influx1Schema(db, raw_retention="1h").statements(store.retention_policies()):
        if not q.startswith("DROP"):
            store.execute(q)
    return store


def _expire_raw(influxdb1, db: str) -> None:
    """What InfluxDB's retention service does when raw's duration has passed: drop raw's shards."""
    shards = influxdb1.query("SHOW SHARDS")["results"][0]["series"]
    ids = [row[0] for s in shards if s["name"] == db for row in s["values"] if row[2] == "raw"]
    assert ids, "the settings went to raw too"
    for shard_id in ids:
        influxdb1.query(f"DROP SHARD {shard_id}")


def _zone_variables(store: Influx1Store, patient: str) -> dict[str, str]:
    dash = DASHBOARDS["patient-live.json"]()
    vals = {"patient": patient, "device": "d1", **variable_defaults(dash)}
    return resolve_query_variables(dash, vals, store.query, (NOW_NS - 3600 * 10**9) // 10**6, NOW_NS // 10**6)


def test_settings_stored_by_ingest_still_apply_after_the_raw_retention(influxdb1):
    store = _initialised(influxdb1, "keep1")
    store.write(_settings("p-old"))
    _expire_raw(influxdb1, "keep1")
    assert influxdb1.points('SELECT * FROM "raw"."patient_config"', "keep1") == []

    zones = _zone_variables(store, "p-old")
    assert (zones["threshold_deg"], zones["severe_deg"]) == ("24", "33")
    config = store.records("patient_config", "p-old", 0, NOW_NS)
    assert [(r.t_ns, r.fields["threshold_deg"], r.fields["timezone"]) for r in config] == [
        (SET_NS, 24.0, "Europe/Paris")]
    assert [r.fields["forward_bend_deg"] for r in store.records("calibration", "p-old", 0, NOW_NS)] == [31.5]


def test_a_setting_kept_in_both_policies_is_read_once(influxdb1):
    store = _initialised(influxdb1, "keep2")
    store.write(_settings("p-new"))
    assert len(store.records("patient_config", "p-new", 0, NOW_NS)) == 1
    assert len(store.records("calibration", "p-new", 0, NOW_NS)) == 1


def test_without_the_settings_policy_the_defaults_and_raw_still_work(influxdb1):
    """A database nobody set up (no ensure_database, no init): settings go to the default RP only."""
    influxdb1.create_database("keep3")
    store = Influx1Store(influxdb1.url, "keep3")
    store.write(_settings("p-plain"))
    assert [r.fields["threshold_deg"] for r in store.records("patient_config", "p-plain", 0, NOW_NS)] == [24.0]
    rps = {r["name"] for r in influxdb1.points("SHOW RETENTION POLICIES", "keep3")}
    assert "settings" not in rps


def test_backfill_copies_settings_stored_before_the_policy_existed(influxdb1):
    db = "keep4"
    influxdb1.create_database(db)
    influxdb1.query(f'CREATE RETENTION POLICY "raw" ON "{db}" DURATION 1h REPLICATION 1 DEFAULT')
    Influx1Store(influxdb1.url, db).write(_settings("p-before"))  # an older ingest: raw only
    store = _initialised(influxdb1, db)
    for q in Influx1Schema(db).backfill_statements():
        store.execute(q)
    _expire_raw(influxdb1, db)
    assert _zone_variables(store, "p-before")["threshold_deg"] == "24"
    assert [r.fields["author"] for r in store.records("patient_config", "p-before", 0, NOW_NS)] == ["pt-anna"]
