"""Configuration: defaults, TOML, environment, and one clear error per bad value."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from spinewatch.errors import ConfigError
from spinewatch.service.cli import main
from spinewatch.service.config import Config

ROOT = Path(__file__).resolve().parents[1]


def test_example_config_lists_every_default():
    assert Config.load({}, ROOT / "config.example.toml") == Config()


def test_the_service_defaults_are_the_filters_defaults():
    """service/config.py owns the default posture settings on the service side; the signal
    kernels' own parameter defaults must be the same numbers, and every service default reads them."""
    from spinewatch.service import config
    from spinewatch.service.dashboards import _common
    from spinewatch.service.transport.patient_config import PatientConfig
    from spinewatch.signal import PostureParams
    from spinewatch.signal.summary import ZoneLimits

    params, zones, patient, posture = PostureParams(), ZoneLimits(), PatientConfig(), Config().posture
    for threshold in (params.threshold_deg, zones.threshold_deg, patient.threshold_deg, posture.threshold_deg,
                      _common.THRESHOLD_DEG):
        assert threshold == config.DEFAULT_THRESHOLD_DEG
    for severe in (zones.severe_deg, patient.severe_deg, _common.SEVERE_DEG):
        assert severe == config.DEFAULT_SEVERE_DEG
    for hysteresis in (params.hysteresis_deg, patient.hysteresis_deg, posture.hysteresis_deg):
        assert hysteresis == config.DEFAULT_HYSTERESIS_DEG
    for duration in (params.min_duration_s, patient.min_duration_s, posture.min_duration_s):
        assert duration == config.DEFAULT_MIN_DURATION_S


def test_environment_overrides_toml(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[mqtt]\nurl = "mqtt://a:1"\n[posture]\nthreshold_deg = 25\n')
    cfg = Config.load({"SPINEWATCH_MQTT_URL": "mqtts://user:pw@b:8883", "SPINEWATCH_CONFIG": str(f)})
    assert (cfg.mqtt.host, cfg.mqtt.port, cfg.mqtt.tls, cfg.mqtt.username) == ("b", 8883, True, "user")
    assert cfg.mqtt.address == "mqtts://b:8883"  # no credentials in messages
    assert cfg.posture.threshold_deg == 25.0


def test_influx_kind_follows_the_variables_given():
    v1 = Config.load({"SPINEWATCH_INFLUX_URL": "http://h:8086", "SPINEWATCH_INFLUX_DB": "sw"})
    assert v1.influx.kind == "v1"
    v2 = Config.load({"SPINEWATCH_INFLUX_URL": "http://h:8086", "SPINEWATCH_INFLUX_ORG": "o",
                      "SPINEWATCH_INFLUX_BUCKET": "b", "SPINEWATCH_INFLUX_TOKEN": "t"})
    assert v2.influx.kind == "v2"
    assert Config.load({}).influx.kind == "none"


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"SPINEWATCH_MQTT_URL": "http://broker"}, "SPINEWATCH_MQTT_URL"),
        ({"SPINEWATCH_MQTT_URL": "mqtt://h:99999"}, "SPINEWATCH_MQTT_URL"),
        ({"SPINEWATCH_MQTT_PROTOCOL": "4"}, "SPINEWATCH_MQTT_PROTOCOL"),
        ({"SPINEWATCH_INFLUX_URL": "ftp://h"}, "SPINEWATCH_INFLUX_URL"),
        ({"SPINEWATCH_INFLUX_URL": "http://h:8086"}, "SPINEWATCH_INFLUX_DB"),
        ({"SPINEWATCH_WORKER_ID": "a b"}, "SPINEWATCH_WORKER_ID"),
    ],
)
def test_bad_environment_values_name_key_value_and_allowed(env, key):
    with pytest.raises(ConfigError) as info:
        Config.load(env)
    assert info.value.key == key
    assert f"{key}={env.get(key, '')!r} is not valid: " in str(info.value)


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("[mqtt]\nqos = 3\n", "mqtt.qos"),
        ("[mqtt]\nbogus = 1\n", "mqtt.bogus"),
        ("[nope]\nx = 1\n", "nope"),
        ("[ingest]\nbatch_interval_s = 'soon'\n", "ingest.batch_interval_s"),
        ("[ingest]\nmax_unacked = 0\n", "ingest.max_unacked"),
        ("[posture]\nthreshold_deg = 95\n", "posture.threshold_deg"),
        ("[posture]\nhysteresis_deg = 30\n", "posture.hysteresis_deg"),
        ("[ble]\nscan_timeout_s = 0\n", "ble.scan_timeout_s"),
        ("[ble]\nconnect_attempts = 0\n", "ble.connect_attempts"),
        ("[ble]\nsilence_timeout_s = -1\n", "ble.silence_timeout_s"),
    ],
)
def test_bad_toml_values_name_the_key(tmp_path, toml, key):
    f = tmp_path / "c.toml"
    f.write_text(toml)
    with pytest.raises(ConfigError) as info:
        Config.load({}, f)
    assert info.value.key == key


def test_cli_stops_at_start_with_one_line_naming_the_key(capsys, monkeypatch):
    monkeypatch.setenv("SPINEWATCH_MQTT_URL", "tcp://nowhere")
    assert main(["ingest"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "SPINEWATCH_MQTT_URL='tcp://nowhere'" in err[0] and "mqtt://host" in err[0]


def test_the_ble_section_reaches_the_bridge_source(tmp_path):
    import argparse

    from spinewatch.service.cli.args import make_source

    f = tmp_path / "c.toml"
    f.write_text("[ble]\nsilence_timeout_s = 7.5\nbattery_interval_s = 60\n")
    cfg = Config.load({}, f)
    assert (cfg.ble.silence_timeout_s, cfg.ble.battery_interval_s) == (7.5, 60.0)
    args = argparse.Namespace(config=str(f), replay=None, profile="spinewatch", mount=None, rate_hz=None,
                              silence_timeout=None, address="C0:FF:EE:00:00:01")
    assert make_source(args).config.silence_timeout_s == 7.5
    args.silence_timeout = 1.0  # the command-line option wins
    assert make_source(args).config == dataclasses.replace(cfg.ble, silence_timeout_s=1.0)
