"""Issue 13, "No tracebacks, clear errors, examples that run": each mistake a user makes gets one
clear line saying what is wrong and how to fix it, through the real command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CLI_TIMEOUT_S = 60.0


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPINEWATCH_", "GRAFANA_"))}
    return {**env, **extra}


def spinewatch(*args: str, env: dict[str, str] | None = None,
               cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "spinewatch", *args], env=env or _env(), cwd=cwd,
                          capture_output=True, text=True, timeout=CLI_TIMEOUT_S, check=False)


def one_error_line(res: subprocess.CompletedProcess[str]) -> str:
    """The command failed with exactly one line on stderr and no traceback; that line."""
    assert res.returncode != 0, res
    assert "Traceback" not in res.stderr + res.stdout, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    return lines[0]


# --------------------------------------------------------------------------- --config


def _config_file(kind: str, tmp_path: Path) -> Path:
    if kind == "directory":
        (tmp_path / "conf.d").mkdir()
        return tmp_path / "conf.d"
    if kind == "not UTF-8":
        p = tmp_path / "latin1.toml"
        p.write_bytes("# Physiothérapie\n[mqtt]\n".encode("latin-1"))
        return p
    return tmp_path / "missing.toml"


CONFIG_FIXES = {
    "directory": "is not valid: a TOML file, not a directory",
    "not UTF-8": "is not valid: a UTF-8 text file (TOML); byte 10 is not UTF-8 (save it as UTF-8)",
    "missing": "is not valid: an existing TOML file",
}


@pytest.mark.parametrize("kind", list(CONFIG_FIXES))
def test_a_bad_config_file_is_one_line_naming_the_option(kind: str, tmp_path: Path) -> None:
    path = _config_file(kind, tmp_path)
    line = one_error_line(spinewatch("--config", str(path), "ingest"))
    assert line == f"spinewatch: configuration error: --config={str(path)!r} {CONFIG_FIXES[kind]}" \
        + (" (every key: config.example.toml)" if kind == "missing" else "")


@pytest.mark.parametrize("kind", list(CONFIG_FIXES))
def test_a_bad_config_file_from_the_environment_names_spinewatch_config(kind: str, tmp_path: Path) -> None:
    path = _config_file(kind, tmp_path)
    res = spinewatch("report", "--patient", "p1", "--from", "2026-01-01", "--to", "2026-01-02",
                     env=_env(SPINEWATCH_CONFIG=str(path)))
    line = one_error_line(res)
    assert line.startswith(f"spinewatch: configuration error: SPINEWATCH_CONFIG={str(path)!r} {CONFIG_FIXES[kind]}")


@pytest.mark.parametrize("kind", list(CONFIG_FIXES))
def test_doctor_reports_a_bad_config_file_as_its_config_check(kind: str, tmp_path: Path) -> None:
    path = _config_file(kind, tmp_path)
    res = spinewatch("--config", str(path), "doctor", "--skip", "bluetooth", "--skip", "grafana")
    assert res.returncode == 1 and "Traceback" not in res.stderr + res.stdout, res.stderr
    config_line = res.stdout.splitlines()[0]
    assert config_line.startswith(f"FAIL  config     {path}: --config={str(path)!r} {CONFIG_FIXES[kind]}")
    assert "not checked: the configuration does not load" in res.stdout


# --------------------------------------------------------------------------- grafana push

GRAFANA_ENV = {"SPINEWATCH_INFLUX_URL": "http://127.0.0.1:8086", "SPINEWATCH_INFLUX_DB": "spinewatch",
               "GRAFANA_TOKEN": "glsa_test"}


@pytest.mark.parametrize(("args", "env", "line"), [
    (["--url", "grafana.local"], {}, "spinewatch: configuration error: --url='grafana.local' is not valid: "
     "Grafana's base URL with its scheme, e.g. https://grafana.example.org or http://127.0.0.1:3000"),
    ([], {"GRAFANA_URL": "grafana:3000"}, "spinewatch: configuration error: GRAFANA_URL='grafana:3000' is not "
     "valid: Grafana's base URL with its scheme, e.g. https://grafana.example.org or http://127.0.0.1:3000"),
    (["--url", "https://admin:hunter2@grafana"], {}, None),  # valid, but down: see the next test
], ids=["no scheme", "no scheme in GRAFANA_URL", "password in URL"])
def test_grafana_push_without_a_scheme_is_one_line(args: list[str], env: dict[str, str], line: str | None) -> None:
    res = spinewatch("grafana", "push", *args, env=_env(**GRAFANA_ENV, **env))
    got = one_error_line(res)
    if line is not None:
        assert got == line
    assert "hunter2" not in res.stderr + res.stdout


def test_grafana_push_to_a_grafana_that_is_down_is_one_line() -> None:
    from servers import free_port

    port = free_port()  # nothing listens there
    line = one_error_line(spinewatch("grafana", "push", "--url", f"http://127.0.0.1:{port}", env=_env(**GRAFANA_ENV)))
    assert line == ("spinewatch: grafana push: get folder: cannot reach Grafana: connection refused "
                    "(is it running? check --url / GRAFANA_URL)")


def test_doctor_with_a_grafana_url_without_scheme_fails_that_check() -> None:
    res = spinewatch("doctor", "--skip", "bluetooth", "--skip", "broker", "--skip", "influxdb",
                     "--grafana-url", "grafana.local")
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    assert ("FAIL  grafana    GRAFANA_URL: GRAFANA_URL='grafana.local' is not valid: Grafana's base URL with its "
            "scheme") in res.stdout


# --------------------------------------------------------------------------- config set


def _closed_broker_env() -> dict[str, str]:
    from servers import free_port

    return _env(SPINEWATCH_MQTT_URL=f"mqtt://127.0.0.1:{free_port()}")  # nothing listens there


@pytest.mark.parametrize(("change", "line"), [
    ("quiet_hours=22:00", "quiet_hours='22:00' is not valid: windows HH:MM-HH:MM[,HH:MM-HH:MM...], "
                          "e.g. quiet_hours=22:00-07:00 (quiet_hours= for none)"),
    ("threshold_deg=abc", "threshold_deg='abc' is not valid: a number"),
    ("intensity_pct=60.5", "intensity_pct='60.5' is not valid: an integer"),
    ("pattern=buzz", "haptic.pattern='buzz' is not valid: one of off, short, double, long, ramp"),
    ("threshold_deg=95", "threshold_deg=95.0 is not valid: a number in (0, 90)"),
])
def test_config_set_validates_each_value_before_asking_the_broker(change: str, line: str) -> None:
    """With the broker down, a bad value is still named at once (not "cannot reach" after the timeout)."""
    res = spinewatch("config", "set", "--patient", "p1", "--device", "d1", change, env=_closed_broker_env())
    assert one_error_line(res) == f"spinewatch: configuration error: {line}"
    assert res.returncode == 2


def test_config_set_names_the_setting_in_force_to_change_together(mosquitto) -> None:
    env = _env(SPINEWATCH_MQTT_URL=mosquitto.url)
    who = ["--patient", "p-together", "--device", "d1"]
    res = spinewatch("config", "set", *who, "threshold_deg=35", env=env)
    assert one_error_line(res) == (
        "spinewatch: configuration error: threshold_deg='35' is not valid: severe_deg must stay more than "
        "threshold_deg, and severe_deg is 30 (in force, not changed here): set them together, "
        "e.g. threshold_deg=35 severe_deg=45")
    ok = spinewatch("config", "set", *who, "threshold_deg=35", "severe_deg=45", env=env)  # the example runs
    assert ok.returncode == 0, ok.stderr
    res = spinewatch("config", "set", *who, "hysteresis_deg=40", env=env)
    assert one_error_line(res) == (
        "spinewatch: configuration error: hysteresis_deg='40' is not valid: hysteresis_deg must stay less than "
        "threshold_deg, and threshold_deg is 35 (in force, not changed here): set them together, "
        "e.g. hysteresis_deg=40 threshold_deg=50 severe_deg=60")
    ok = spinewatch("config", "set", *who, "hysteresis_deg=40", "threshold_deg=50", "severe_deg=60", env=env)
    assert ok.returncode == 0, ok.stderr
