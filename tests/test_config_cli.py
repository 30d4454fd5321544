"""`spinewatch config set/get`: validated, retained on MQTT, audited in InfluxDB by ingest."""

from __future__ import annotations

import json

import pytest
from _mqtt_helpers import started_ingest
from _waiting import wait_until

from spinewatch.service.cli import main

pytestmark = pytest.mark.network


@pytest.fixture
def broker_env(fresh_mosquitto, monkeypatch):
    monkeypatch.setenv("SPINEWATCH_MQTT_URL", fresh_mosquitto.url)
    monkeypatch.setenv("SPINEWATCH_MQTT_PROTOCOL", "5")
    return fresh_mosquitto


def test_set_then_get_returns_the_new_settings_and_keeps_the_others(broker_env, capsys):
    assert main(["config", "set", "--patient", "p1", "--device", "d1", "--author", "t-01",
                 "threshold_deg=25", "delay_s=60", "haptic=on", "quiet_hours=22:00-07:00"]) == 0
    assert main(["config", "set", "--patient", "p1", "--device", "d1", "--author", "t-02",
                 "alerts_off=lying"]) == 0
    capsys.readouterr()
    assert main(["config", "get", "--patient", "p1", "--device", "d1"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["threshold_deg"] == 25.0 and cfg["haptic"]["delay_s"] == 60.0
    assert cfg["quiet_hours"] == [["22:00", "07:00"]] and cfg["alerts_off_activities"] == ["lying"]
    assert cfg["author"] == "t-02" and cfg["set_ns"] > 0


def test_get_without_a_config_prints_the_defaults(broker_env, capsys):
    assert main(["config", "get", "--patient", "p9", "--device", "d9"]) == 0
    out = capsys.readouterr()
    assert "no config set" in out.err and json.loads(out.out)["threshold_deg"] == 20.0


@pytest.mark.parametrize(("change", "key"), [("threshold_deg=95", "threshold_deg"),
                                             ("threshold_deg=abc", "threshold_deg"),
                                             ("colour=red", "colour"), ("haptic=maybe", "haptic"),
                                             ("hysteresis_deg=30", "hysteresis_deg"),
                                             ("severe_deg=15", "severe_deg")])
def test_a_bad_value_is_one_line_and_nothing_is_published(broker_env, capsys, change, key):
    assert main(["config", "set", "--patient", "p1", "--device", "d1", change]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and key in err[0]
    assert main(["config", "get", "--patient", "p1", "--device", "d1"]) == 0
    assert "no config set" in capsys.readouterr().err


def test_ingest_keeps_an_audit_of_every_change(broker_env, influxdb1, capsys):
    store, w = started_ingest(broker_env.url, influxdb1.url, "audit")
    db = store.db
    try:
        main(["config", "set", "--patient", "p1", "--device", "d1", "--author", "t-01", "threshold_deg=25"])
        main(["config", "set", "--patient", "p1", "--device", "d1", "--author", "t-02", "threshold_deg=22",
              "severe_deg=35", "timezone=Europe/Berlin"])

        def rows():
            return influxdb1.points('SELECT threshold_deg, severe_deg, timezone, author FROM patient_config', db)

        wait_until(lambda: len(rows()) == 2, what="two audit points")
        assert [(r["threshold_deg"], r["severe_deg"], r["timezone"], r["author"]) for r in rows()] == [
            (25.0, 30.0, "UTC", "t-01"), (22.0, 35.0, "Europe/Berlin", "t-02")]
    finally:
        w.stop()
