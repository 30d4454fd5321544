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

from spinewatch.service.broker import find_mosquitto
from spinewatch.service.clinic_demo import dropout_days, roster, training_day
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
