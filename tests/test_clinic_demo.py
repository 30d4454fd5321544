"""`spinewatch demo --patients N --days D`: a simulated caseload through the real pipeline, as a user runs it."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import zoneinfo
from pathlib import Path

import pytest

from spinewatch.service.ops.clinic_demo import dropout_days, roster, training_day
from spinewatch.service.ops.embedded_broker import find_mosquitto
from spinewatch.service.storage import SqliteStore

WEAR_MIN = 30


@pytest.fixture(scope="module")
def clinic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    out = tmp_path_factory.mktemp("clinic")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPINEWATCH_")}
    proc = subprocess.run(
        [sys.executable, "-m", "spinewatch", "demo", "--patients", "3", "--days", "4", "--duration", f"{WEAR_MIN}m",
         "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


def _days(out: Path, patient: str) -> list[dict]:
    return json.loads((out / "patients" / f"{patient}.json").read_text())["days"]


@pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto not installed (Debian package 'mosquitto')")
def test_every_patients_worn_days_reach_the_store(clinic):
    out, proc = clinic
    improver, dropout, remount = roster(3)
    store = SqliteStore(out / "spinewatch.sqlite")
    try:
        for sim in (improver, dropout, remount):
            dates = [dt.date.fromisoformat(day["date"]) for day in _days(out, sim.patient)]
            today = dt.datetime.now(zoneinfo.ZoneInfo(sim.tz)).date()
            # the last day is today, or yesterday while today's session would still be running
            assert len(dates) == 4 and dates[-1] in (today, today - dt.timedelta(days=1))
            assert dates == [dates[0] + dt.timedelta(days=d) for d in range(4)]
            for d, date in enumerate(dates):
                start = dt.datetime.combine(date, dt.time(), zoneinfo.ZoneInfo(sim.tz))
                lo = int(start.timestamp()) * 10**9
                minutes = store.minutes(sim.patient, lo, lo + 86_400 * 10**9)
                worn_s = float(minutes.wear_s.sum())
                if sim.course == "dropout" and d in dropout_days(4):
                    assert worn_s == 0.0, (sim.patient, date)
                else:  # the whole session, in the patient's own local day
                    assert worn_s == pytest.approx(WEAR_MIN * 60, abs=1.0), (sim.patient, date)
    finally:
        store.close()
    # the scale is said plainly
    assert f"each worn day one session of {WEAR_MIN} min at 100 Hz" in proc.stdout
    assert "a real patient wears the sensor about 8 h a day" in proc.stdout


@pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto not installed (Debian package 'mosquitto')")
def test_the_therapists_artefacts_tell_each_patients_course(clinic):
    out, proc = clinic
    improver, dropout, remount = roster(3)
    for sim in (improver, dropout, remount):
        pdf = out / "patients" / f"{sim.patient}.pdf"
        assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 10_000
        figures = json.loads((out / "patients" / f"{sim.patient}.json").read_text())
        assert figures["timezone"] == sim.tz  # the report is in the patient's own time zone
    # the improver: no alerts in the baseline, fewer slouches and more time neutral once trained
    days = _days(out, improver.patient)
    t0 = training_day(4)
    assert [d["has_data"] for d in days] == [True] * 4
    assert days[-1]["slouch_count"] < days[0]["slouch_count"]
    assert days[-1]["time_neutral_pct"] > days[0]["time_neutral_pct"]
    settings = json.loads((out / "patients" / f"{improver.patient}.json").read_text())["settings"]
    assert len(settings) >= 2, settings  # haptics switched on at the training day: a second config
    # the dropout: days without any data in the middle
    days = _days(out, dropout.patient)
    assert [d["has_data"] for d in days] == [d not in dropout_days(4) for d in range(4)]
    # the remount: the detector flagged the day the sensor came back tilted, and that day reads slouched
    days = _days(out, remount.patient)
    row = next(line for line in proc.stdout.splitlines() if line.startswith(remount.patient))
    flagged = days[2]["date"]
    assert flagged in row, row
    assert days[2]["time_neutral_pct"] < min(d["time_neutral_pct"] for i, d in enumerate(days) if i != 2) - 15
    assert t0 == 1
    # where to see it in Grafana
    assert "docker compose up" in proc.stdout and "/d/spinewatch-clinic?from=" in proc.stdout


@pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto not installed (Debian package 'mosquitto')")
def test_on_influxdb_the_dashboards_are_drawn_from_the_simulated_days(influxdb1, tmp_path):
    """With InfluxDB 1.x (what Grafana reads) the demo lays out the database as `influx init` does,
    downsamples the simulated days into trend, and draws every dashboard from Grafana's own queries."""
    from spinewatch.service.storage import Influx1Store

    db = "clinic_cli_test"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPINEWATCH_")}
    env.update(SPINEWATCH_INFLUX_URL=influxdb1.url, SPINEWATCH_INFLUX_DB=db)
    proc = subprocess.run(
        [sys.executable, "-m", "spinewatch", "demo", "--patients", "2", "--days", "2", "--duration", "5m",
         "--out", str(tmp_path)], capture_output=True, text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    names = {"clinic-overview.png"} | {f"{p}/{d}.png" for p in ("p-clinic-01", "p-clinic-02")
                                        for d in ("patient-live", "patient-day", "patient-trends", "rtm-compliance")}
    for name in names:
        assert (tmp_path / "dashboards" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    store = Influx1Store(influxdb1.url, db)
    rows = store.query('SELECT sum("wear_s") FROM "trend"."posture_1m" GROUP BY "patient"')
    wear = {s["tags"]["patient"]: s["values"][0][1] for s in rows}
    # 2 days x 5 min for the improver, 1 worn day of 2 for the dropout (its day off is the second)
    assert wear == {"p-clinic-01": pytest.approx(600.0, abs=1.0), "p-clinic-02": pytest.approx(300.0, abs=1.0)}
    assert "dashboards (PNG, the same queries as Grafana): 9 files" in proc.stdout
