"""`spinewatch demo` on embedded defaults: no servers configured, everything still runs."""

from __future__ import annotations

import asyncio
import csv
import json

import pytest

from spinewatch.firmware_bridge.sim import PostureScript
from spinewatch.service.cli import main
from spinewatch.service.cli.args import parse_duration_s, parse_speed
from spinewatch.service.config import Config
from spinewatch.service.ops.demo import run_demo
from spinewatch.service.ops.embedded_broker import find_mosquitto
from spinewatch.service.storage import SqliteStore


@pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto not installed (Debian package 'mosquitto')")
def test_demo_command_writes_report_csv_and_summary(tmp_path, capsys, monkeypatch):
    for var in ("SPINEWATCH_MQTT_URL", "SPINEWATCH_INFLUX_URL", "SPINEWATCH_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    assert main(["demo", "--duration", "12m", "--speed", "max", "--out", str(tmp_path), "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "72,000 samples" in out and "samples/s" in out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert abs(summary["wear_time_min"] - 12.0) < 0.05
    with (tmp_path / "slouch_events.csv").open() as f:
        rows = list(csv.DictReader(f))
    truth = PostureScript.day(720, seed=3).slouch_episodes(20.0, 32.0)
    assert truth, "seed 3 must script at least one clear slouch"
    assert set(rows[0]) == {"start_utc", "end_utc", "duration_s", "peak_deg", "mean_deg"}
    assert summary["slouch_count"] == len(rows) >= len(truth)
    assert (tmp_path / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the simulated sensor is buzzed once per confirmed slouch (default settings: no delay, 60 s between
    # buzzes, which the >= 25 s of sitting between scripted slouches never hits); corrected when the
    # slouch ends within 60 s of the buzz, i.e. it lasted at most 30 + 60 s
    assert f"{summary['alerts']} haptic alerts" in out and summary["alerts"] == len(rows)
    durations = [float(r["duration_s"]) for r in rows]
    assert all(abs(d - 90.0) > 0.5 for d in durations), "keep the script away from the window's edge"
    assert summary["alerts_corrected"] == sum(d <= 90.0 for d in durations)


def test_demo_runs_on_the_pure_python_broker_too(tmp_path):
    """amqtt speaks MQTT 3.1.1 only: the publisher and ingest fall back to it."""
    result = asyncio.run(run_demo(Config(), 180.0, None, tmp_path, embedded_broker="amqtt"))
    assert result.broker.startswith("embedded amqtt")
    store = SqliteStore(tmp_path / "spinewatch.sqlite")
    assert result.samples == 18_000 and store.count_posture("p-demo") == 18_000
    # the rest are the slouch and alert events, the patient's config (audit) and the bridge's "online" status
    assert result.points_written - 18_000 - result.events - result.alerts - 1 in (1, 2)


@pytest.mark.parametrize(("text", "seconds"),
                         [("8h", 28800), ("90m", 5400), ("1h30m", 5400), ("45s", 45), ("45", 45), ("1d", 86400)])
def test_duration_syntax(text, seconds):
    assert parse_duration_s(text) == seconds


@pytest.mark.parametrize("bad", ["", "h", "-5", "0", "8 hours", "1x"])
def test_bad_durations_are_refused(bad):
    with pytest.raises(Exception, match="--duration"):
        parse_duration_s(bad)


def test_speed_syntax():
    assert parse_speed("max") is None and parse_speed("1") == 1.0 and parse_speed("20") == 20.0
    for bad in ("0", "-1", "fast"):
        with pytest.raises(Exception, match="--speed"):
            parse_speed(bad)


def test_bad_duration_on_the_command_line_exits_2_with_one_message(capsys):
    with pytest.raises(SystemExit) as info:
        main(["demo", "--duration", "soon"])
    assert info.value.code == 2
    assert "--duration 'soon'" in capsys.readouterr().err
