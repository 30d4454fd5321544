"""`spinewatch report`: a scripted two-month record through the real ingest into real InfluxDB and SQLite.

The patient lives in America/New_York (stored with their settings). Posture is published at
one sample per second (``dt_ns`` = 1 s; the report's ``rate_hz`` is set to 1 to match) for a
few minutes a day instead of 100 Hz all day: the report reads per-minute series, so the
number of samples per minute does not change what it computes, and a test month stays a few
thousand points. Every expected number is derived from the script below by plain Python
(local dates with zoneinfo, minute by minute), never copied from the code under test.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from _mqtt_helpers import TestClient

from spinewatch.model import PostureBatch, SlouchEvent
from spinewatch.service.cli import main
from spinewatch.service.cli.report import _ProgressBar
from spinewatch.service.config import Config
from spinewatch.service.ingest.worker import IngestWorker
from spinewatch.service.storage import Influx1Store, SqliteStore
from spinewatch.service.storage.influx1_schema import Influx1Schema
from spinewatch.service.transport import wire
from spinewatch.service.transport.patient_config import PatientConfig, encode_patient_config

pytestmark = pytest.mark.network

NY = ZoneInfo("America/New_York")
PATIENT, DEVICE = "p-month", "d-1"
FIRST, LAST = dt.date(2026, 1, 1), dt.date(2026, 3, 1)  # 60 days: periods Jan 1-30 and Jan 31-Mar 1
MIN_WEAR_MIN = 5.0
RATE_HZ = 1.0
STILL, MOVING = 2, 3
CHANGE_AT = dt.datetime(2026, 2, 10, 12, 0, tzinfo=NY)  # thresholds 20/30 -> 30/40 deg


@dataclass(frozen=True)
class Session:
    start: dt.datetime  # local (New York)
    minutes: int
    activity: int = STILL
    slouches: tuple[tuple[int, float], ...] = ((7, 45.0),)  # (minute into the session, duration s)

    def flexion_deg(self, i: int) -> float:
        """Minute i: 35 deg every 10th minute, 25 deg at the 8th and 9th, else 5 deg."""
        return 35.0 if i % 10 == 9 else 25.0 if i % 10 in (7, 8) else 5.0


def at(d: dt.date, h: int, m: int = 0) -> dt.datetime:
    return dt.datetime(d.year, d.month, d.day, h, m, tzinfo=NY)


def script() -> list[Session]:
    jan = [dt.date(2026, 1, d) for d in range(1, 28, 2)]  # 14 days: 1, 3, ..., 27
    feb = [dt.date(2026, 2, d) for d in range(1, 16)]  # 15 days: Feb 1-15
    s = [Session(at(d, 10), 20, slouches=((7, 40.0 + k),)) for k, d in enumerate(jan)]
    s.append(Session(at(dt.date(2026, 1, 2), 10), 3, slouches=()))  # 3 min < min_wear_min: not a day with data
    # 23:52-00:08 local: 8 minutes on Jan 30 and 8 on Jan 31 (04:52-05:08 UTC, one UTC day)
    s.append(Session(at(dt.date(2026, 1, 30), 23, 52), 16, slouches=((3, 50.0),)))
    for k, d in enumerate(feb):
        if d.day == 2:
            s.append(Session(at(d, 10), 45, STILL))  # one sitting bout over 30 minutes
        elif d.day == 3:
            s.append(Session(at(d, 10), 45, MOVING))  # as long, but walking: no bout
        elif d.day == 5:
            s.append(Session(at(d, 15), 20, slouches=((1, 31.0), (7, 120.5), (15, 33.0))))
        else:
            s.append(Session(at(d, 10), 20, slouches=((7, 60.0 + k),)))
    return s
    # Period 1 (Jan 1-30): 14 odd days + Jan 30 = 15 days with data; period 2 (Jan 31-Mar 1): Jan 31 + 15 = 16.


def expected(sessions: list[Session], tz: ZoneInfo = NY) -> dict:
    """The report's figures, minute by minute from the script."""
    wear: dict[dt.date, float] = {}
    zones = {"neutral": 0, "mild": 0, "severe": 0}
    for s in sessions:
        for i in range(s.minutes):
            t = s.start + dt.timedelta(minutes=i)
            day = t.astimezone(tz).date()
            wear[day] = wear.get(day, 0.0) + 1.0
            thr, sev = (20.0, 30.0) if t < CHANGE_AT else (30.0, 40.0)
            f = s.flexion_deg(i)
            zones["neutral" if f < thr else "severe" if f >= sev else "mild"] += 1
    days_with_data = sorted(d for d, w in wear.items() if w >= MIN_WEAR_MIN and FIRST <= d <= LAST)
    durations = [d for s in sessions for _, d in s.slouches]
    total_wear = sum(wear.values())
    return {
        "wear": wear, "days_with_data": days_with_data, "zones": zones, "wear_time_min": total_wear,
        "slouch_count": len(durations), "longest_slouch_s": max(durations),
        "slouches_per_hour": len(durations) / (total_wear / 60),
        "time_neutral_pct": 100 * zones["neutral"] / total_wear,
        "sitting_bouts": sum(1 for s in sessions if s.activity == STILL and s.minutes >= 30),
    }


def messages(sessions: list[Session]) -> list[tuple[str, bytes]]:
    out = []
    for s in sessions:
        t0 = int(s.start.timestamp()) * 10**9
        flex = np.repeat([s.flexion_deg(i) for i in range(s.minutes)], 60)
        n = flex.size
        out.append((wire.topic(PATIENT, DEVICE, "posture"), wire.encode_posture(PostureBatch(
            PATIENT, DEVICE, t0, 10**9, flex, np.zeros(n), np.zeros(n, np.int8), np.full(n, s.activity, np.int8)))))
        for minute, dur_s in s.slouches:
            a = t0 + minute * 60 * 10**9
            out.append((wire.topic(PATIENT, DEVICE, "event"), wire.encode_event(
                SlouchEvent(PATIENT, DEVICE, a, a + int(dur_s * 10**9), 40.0, 36.0))))
    for when, thr, sev in ((dt.datetime(2025, 12, 31, 9, tzinfo=NY), 20.0, 30.0), (CHANGE_AT, 30.0, 40.0)):
        cfg = PatientConfig(threshold_deg=thr, severe_deg=sev, timezone="America/New_York", author="t-01",
                            set_ns=int(when.timestamp()) * 10**9)
        out.append((wire.topic(PATIENT, DEVICE, "config"), encode_patient_config(cfg)))
    # another patient, so that "unknown" is about the id and not an empty database
    out.append((wire.topic("p-other", DEVICE, "posture"), wire.encode_posture(PostureBatch(
        "p-other", DEVICE, int(at(FIRST, 9).timestamp()) * 10**9, 10**9, np.zeros(60), np.zeros(60)))))
    return out


@dataclass
class Stored:
    influx_url: str
    db: str
    sqlite: Path
    config: Path
    sessions: list[Session]


@pytest.fixture(scope="module")
def stored(mosquitto, influxdb1, tmp_path_factory) -> Stored:
    """The script published once, written by two real ingest workers: InfluxDB (then
    downsampled as `spinewatch influx init --backfill` does) and SQLite."""
    tmp = tmp_path_factory.mktemp("report")
    db = f"report_{uuid.uuid4().hex[:6]}"
    influx = Influx1Store(influxdb1.url, db)
    influx.ensure_database()
    schema = Influx1Schema(db, "INF")  # the script lies in the past: keep raw data forever
    for q in schema.statements():
        if not q.startswith("DROP"):
            influx.execute(q)
    sqlite = SqliteStore(tmp / "spinewatch.sqlite")
    workers = []
    for store in (influx, sqlite):
        cfg = Config.load({"SPINEWATCH_MQTT_URL": mosquitto.url, "SPINEWATCH_WORKER_ID": f"r-{uuid.uuid4().hex[:6]}"})
        mqtt = dataclasses.replace(cfg.mqtt, share_group=f"g{uuid.uuid4().hex[:8]}")
        w = IngestWorker(mqtt, dataclasses.replace(cfg.ingest, batch_interval_s=0.2), store, "5")
        w.start()
        assert w.subscribed.wait(10)
        workers.append(w)
    sessions = script()
    msgs = messages(sessions)
    pub = TestClient(mosquitto.host, mosquitto.port, mqtt5=True)
    pub.connect()
    try:
        for topic, payload in msgs:
            pub.publish(topic, payload)
        for w in workers:
            assert w.wait_written(len(msgs), 30.0), w.stats.snapshot()
    finally:
        pub.close()
        for w in workers:
            w.stop()
    sqlite.close()
    for q in schema.backfill_statements():
        influx.execute(q)
    config = tmp / "spinewatch.toml"
    config.write_text(f"[report]\nrate_hz = {RATE_HZ}\nmin_wear_min = {MIN_WEAR_MIN}\n")
    return Stored(influxdb1.url, db, tmp / "spinewatch.sqlite", config, sessions)


def run_json(stored: Stored, monkeypatch, capsys, *extra: str, influx: bool = True) -> dict:
    if influx:
        monkeypatch.setenv("SPINEWATCH_INFLUX_URL", stored.influx_url)
        monkeypatch.setenv("SPINEWATCH_INFLUX_DB", stored.db)
    else:
        monkeypatch.delenv("SPINEWATCH_INFLUX_URL", raising=False)
    args = ["--config", str(stored.config), "report", "--patient", PATIENT, "--from", FIRST.isoformat(),
            "--to", LAST.isoformat(), "--format", "json", *extra]
    if not influx:
        args += ["--sqlite", str(stored.sqlite)]
    assert main(args) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("source", ["auto", "raw"])
def test_influx_figures_match_the_script(stored, monkeypatch, capsys, source):
    got = run_json(stored, monkeypatch, capsys, "--source", source)
    exp = expected(stored.sessions)
    assert got["source"] == ("InfluxDB trend.posture_1m" if source == "auto" else
                             "InfluxDB posture (1-minute means of raw samples)")
    assert got["timezone"] == "America/New_York" and got["timezone_source"] == "patient_config"
    assert got["days_with_data"] == len(exp["days_with_data"]) == 31
    assert [d["date"] for d in got["days"] if d["has_data"]] == [d.isoformat() for d in exp["days_with_data"]]
    assert got["wear_time_min"] == exp["wear_time_min"]
    assert got["slouch_count"] == exp["slouch_count"]
    assert got["longest_slouch_s"] == exp["longest_slouch_s"] == 120.5
    assert got["slouches_per_hour"] == pytest.approx(exp["slouches_per_hour"], abs=0.01)
    assert got["time_neutral_pct"] == pytest.approx(exp["time_neutral_pct"], abs=0.01)
    assert got["sitting_bouts_over_30min"] == exp["sitting_bouts"] == 1
    by_zone = {z: sum(d[f"{z}_min"] for d in got["days"]) for z in ("neutral", "mild", "severe")}
    assert by_zone == exp["zones"]  # the threshold change on Feb 10 is applied from its minute on


def test_rtm_periods_with_exactly_15_and_16_days(stored, monkeypatch, capsys):
    got = run_json(stored, monkeypatch, capsys)
    assert got["rtm"] == [
        {"start": "2026-01-01", "end": "2026-01-30", "days": 30, "days_with_data": 15,
         "meets_2_to_15_days": True, "meets_16_plus_days": False, "band": "2-15"},
        {"start": "2026-01-31", "end": "2026-03-01", "days": 30, "days_with_data": 16,
         "meets_2_to_15_days": False, "meets_16_plus_days": True, "band": "16+"},
    ]


def test_a_session_across_local_midnight_counts_on_both_local_days(stored, monkeypatch, capsys):
    days = {d["date"]: d for d in run_json(stored, monkeypatch, capsys)["days"]}
    assert days["2026-01-30"]["wear_time_min"] == 8 and days["2026-01-30"]["has_data"]
    assert days["2026-01-31"]["wear_time_min"] == 8 and days["2026-01-31"]["has_data"]
    assert days["2026-01-30"]["slouch_count"] == 1  # it starts at 23:55 local
    # the same minutes in UTC days: all on Jan 31
    utc = {d["date"]: d for d in run_json(stored, monkeypatch, capsys, "--tz", "UTC")["days"]}
    assert utc["2026-01-31"]["wear_time_min"] == 16 and utc["2026-01-30"]["wear_time_min"] == 0


def test_a_day_below_min_wear_is_not_a_day_with_data_but_its_minutes_count(stored, monkeypatch, capsys):
    got = run_json(stored, monkeypatch, capsys)
    jan2 = next(d for d in got["days"] if d["date"] == "2026-01-02")
    assert jan2["wear_time_min"] == 3 and not jan2["has_data"]
    lower = run_json(stored, monkeypatch, capsys, "--min-wear-min", "3")
    assert lower["days_with_data"] == got["days_with_data"] + 1
    assert lower["rtm"][0]["days_with_data"] == 16


def test_slouches_by_local_hour_and_settings_in_force(stored, monkeypatch, capsys):
    got = run_json(stored, monkeypatch, capsys)
    hours = got["slouches_by_hour_of_day"]
    assert hours[23] == 1 and hours[15] == 3 and hours[10] == got["slouch_count"] - 4
    assert sum(hours) == got["slouch_count"]
    assert [(s["threshold_deg"], s["severe_deg"], s["author"]) for s in got["settings"]] == [
        (20.0, 30.0, "t-01"), (30.0, 40.0, "t-01")]


def test_sqlite_store_gives_the_same_figures(stored, monkeypatch, capsys):
    influx = run_json(stored, monkeypatch, capsys)
    local = run_json(stored, monkeypatch, capsys, influx=False)
    assert local["source"] == "SQLite posture"
    for key in ("days_with_data", "wear_time_min", "time_neutral_pct", "slouch_count", "slouches_per_hour",
                "longest_slouch_s", "sitting_bouts_over_30min", "rtm", "days", "settings", "timezone"):
        assert local[key] == influx[key], key


def test_pdf_and_png_pages_are_written(stored, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("SPINEWATCH_INFLUX_URL", stored.influx_url)
    monkeypatch.setenv("SPINEWATCH_INFLUX_DB", stored.db)
    out = tmp_path / "p-month.pdf"
    assert main(["--config", str(stored.config), "report", "--patient", PATIENT, "--from", FIRST.isoformat(),
                 "--to", LAST.isoformat(), "--out", str(out)]) == 0
    assert "31 days with data" in capsys.readouterr().out
    assert out.read_bytes().startswith(b"%PDF") and out.read_bytes().count(b"/Type /Page\n") + \
        out.read_bytes().count(b"/Type /Page ") >= 3
    pngs = sorted(tmp_path.glob("p-month-*.png"))
    assert [p.name for p in pngs] == ["p-month-1.png", "p-month-2.png", "p-month-3.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    if os.environ.get("SPINEWATCH_REPORT_PREVIEW_DIR"):  # to look at the pages: docs/reports.md
        shutil.copytree(tmp_path, os.environ["SPINEWATCH_REPORT_PREVIEW_DIR"], dirs_exist_ok=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p-month-1.png", "p-month-2.png", "p-month-3.png",
                                                          "p-month.pdf"]  # no temporary files left


@pytest.mark.parametrize(("args", "code", "names"), [
    (["--patient", "p-nobody"], 1, "unknown patient 'p-nobody'"),
    (["--from", "2025-06-01", "--to", "2025-06-30"], 1, "no posture data"),
    (["--from", "2026-03-02", "--to", "2026-03-01"], 2, "--from='2026-03-02'"),
    (["--from", "2026-13-01"], 2, "--from='2026-13-01'"),
    (["--to", "1 March"], 2, "--to='1 March'"),
    (["--tz", "Mars/Olympus_Mons"], 2, "--tz='Mars/Olympus_Mons'"),
    (["--min-wear-min", "-1"], 2, "--min-wear-min='-1'"),
    (["--patient", "p/1"], 2, "--patient='p/1'"),
])
def test_bad_input_is_one_line_a_nonzero_exit_and_nothing_written(stored, monkeypatch, capsys, tmp_path,
                                                                   args, code, names):
    monkeypatch.setenv("SPINEWATCH_INFLUX_URL", stored.influx_url)
    monkeypatch.setenv("SPINEWATCH_INFLUX_DB", stored.db)
    opts = {"--patient": PATIENT, "--from": FIRST.isoformat(), "--to": LAST.isoformat()}
    opts.update(dict(zip(args[::2], args[1::2], strict=True)))
    out = tmp_path / "out" / "r.pdf"
    argv = ["--config", str(stored.config), "report", *[x for kv in opts.items() for x in kv], "--out", str(out)]
    assert main(argv) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and names in err[0], err
    assert not (tmp_path / "out").exists()


def test_a_missing_sqlite_store_is_one_line_and_is_not_created(monkeypatch, capsys, tmp_path):
    monkeypatch.delenv("SPINEWATCH_INFLUX_URL", raising=False)
    missing = tmp_path / "nope.sqlite"
    assert main(["report", "--patient", PATIENT, "--from", "2026-01-01", "--to", "2026-01-02", "--format", "json",
                 "--sqlite", str(missing)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--sqlite" in err[0] and not missing.exists()


def test_progress_bar_appears_only_after_a_second(monkeypatch, capsys):
    clock = [100.0]
    monkeypatch.setattr("spinewatch.service.cli.report.time.monotonic", lambda: clock[0])
    bar = _ProgressBar()
    bar("reading minutes", 1, 4)
    assert not bar.shown and capsys.readouterr().err == ""
    clock[0] += 1.5  # simulated clock
    bar("reading minutes", 4, 4)
    assert bar.shown and "reading minutes" in capsys.readouterr().err


LONG_FROM, LONG_TO = dt.date(2025, 3, 1), dt.date(2026, 4, 4)  # 400 days: 13 periods of 30 days and one of 10


def _periods(first: dt.date, last: dt.date) -> list[tuple[dt.date, dt.date]]:
    out, start = [], first
    while start <= last:
        end = min(last, start + dt.timedelta(days=29))
        out.append((start, end))
        start = end + dt.timedelta(days=1)
    return out


def test_a_400_day_pdf_lists_every_rtm_period_and_says_where(stored, monkeypatch, capsys, tmp_path):
    """The summary page has room for six periods; the others (here the two with data) are on
    an added page, and the summary page says so (it used to drop them silently)."""
    from spinewatch.service.reports.patient_report import build

    assert (LONG_TO - LONG_FROM).days + 1 == 400
    monkeypatch.setenv("SPINEWATCH_INFLUX_URL", stored.influx_url)
    monkeypatch.setenv("SPINEWATCH_INFLUX_DB", stored.db)
    out = tmp_path / "long.pdf"
    assert main(["--config", str(stored.config), "report", "--patient", PATIENT, "--from", LONG_FROM.isoformat(),
                 "--to", LONG_TO.isoformat(), "--out", str(out)]) == 0, capsys.readouterr().err
    pdf = out.read_bytes()
    assert pdf.count(b"/Type /Page\n") + pdf.count(b"/Type /Page ") == 4
    assert sorted(p.name for p in tmp_path.glob("long-*.png")) == [f"long-{k}.png" for k in range(1, 5)]
    if os.environ.get("SPINEWATCH_REPORT_PREVIEW_DIR"):  # to look at the pages: docs/reports.md
        shutil.copytree(tmp_path, os.environ["SPINEWATCH_REPORT_PREVIEW_DIR"], dirs_exist_ok=True)

    days = set(expected(stored.sessions)["days_with_data"])
    periods = _periods(LONG_FROM, LONG_TO)
    assert len(periods) == 14
    with_data = [sum(1 for d in days if a <= d <= b) for a, b in periods]
    assert sum(1 for n in with_data[6:] if n) == 2 and not any(with_data[:6])  # the data is past the 6th period
    # the texts the renderer drew on each page (the same figures the PDF holds), from the same store
    store = SqliteStore(stored.sqlite)
    try:
        report = build(store, PATIENT, LONG_FROM, LONG_TO, min_wear_min=MIN_WEAR_MIN, default_threshold_deg=20.0,
                       default_severe_deg=30.0)
    finally:
        store.close()
    from spinewatch.service.reports.patient_report_pdf import page_texts

    pages = page_texts(report)
    assert len(pages) == 4
    assert all(f"Page {k} of 4." in " ".join(t) for k, t in enumerate(pages, start=1))
    summary, rtm_page = pages[0], pages[3]
    assert ("RTM 30-day periods 1-6 of 14 (days with data)\n"
            "Periods 7-14 (2 with data) are on page 4, with all 14") in summary
    cells = rtm_page  # titles, then the table's cells row by row (6 columns)
    starts = {f"{a:%Y-%m-%d}" for a, _ in periods}
    row_of = {cells[i]: cells[i:i + 6] for i in range(len(cells) - 5) if cells[i] in starts}
    assert len(row_of) == 14  # every period, including the two with data
    for (a, b), n in zip(periods, with_data, strict=True):
        assert row_of[f"{a:%Y-%m-%d}"][:4] == [f"{a:%Y-%m-%d}", f"{b:%Y-%m-%d}", f"{(b - a).days + 1}", f"{n}"]
