"""Wear time from the samples' own periods: the same minutes worn at 10, 25, 50, 100 and 200 Hz
give the same wear time, worn minutes, days with data and RTM flags (issue 12, section 3).

Everything a user runs is a subprocess of the real CLI against real servers: `spinewatch influx
init`, two `spinewatch ingest` workers (one into InfluxDB 1.x, one into SQLite) reading a real
Mosquitto, `spinewatch report --format json` and `spinewatch export`. The posture messages are
what a bridge publishes: one message per second of samples, ``dt_ns = 1e9 / rate``. The
dashboards' queries are evaluated against the same InfluxDB.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest
from _mqtt_helpers import TestClient
from _waiting import wait_until

from spinewatch.service.storage import Influx1Store, SqliteStore
from spinewatch.service.transport import wire
from spinewatch.service.transport.wire import PostureBatch

pytestmark = pytest.mark.network

NS = 10**9
RATES_HZ = (10, 25, 50, 100, 200)
DAYS = 17
WORN_DAYS = 16  # each worn 90 s (1.5 wear minutes, 2 worn minutes): a day with data (>= 1 min)
LAST_DAY_S = 30  # the 17th day: 30 s, half a minute, not a day with data
# The first day: 20 days ago (inside the raw retention), worn from 10:00 UTC each day.
D0 = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=20)
WEAR_MIN = (WORN_DAYS * 90 + LAST_DAY_S) / 60  # 24.5


def patient(rate: int) -> str:
    return f"p-{rate}hz"


def day_start_ns(k: int) -> int:
    return int(dt.datetime.combine(D0 + dt.timedelta(days=k), dt.time(10), dt.UTC).timestamp()) * NS


def worn_seconds(k: int) -> int:
    return 90 if k < WORN_DAYS else LAST_DAY_S


def batches(rate: int) -> list[PostureBatch]:
    """One-second posture messages of the whole schedule at ``rate`` Hz (as a bridge publishes)."""
    dt_ns = NS // rate
    rng = np.random.default_rng(rate)
    out = []
    for k in range(DAYS):
        for s in range(worn_seconds(k)):
            flex = np.round(rng.uniform(0, 15, rate), 2)
            lat = np.round(rng.uniform(-5, 5, rate), 2)
            act = np.full(rate, 2, np.int8)  # upright still
            out.append(PostureBatch(patient(rate), "d1", day_start_ns(k) + s * NS, dt_ns, flex, lat,
                                    np.zeros(rate, np.int8), act))
    return out


def env_for(tmp: Path, mosquitto, influx_url: str | None, db: str | None, group: str) -> tuple[dict[str, str], Path]:
    cfg = tmp / f"{group}.toml"
    cfg.write_text(f'[mqtt]\nshare_group = "{group}"\n[ingest]\nbatch_interval_s = 0.2\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPINEWATCH_")}
    env.update({"SPINEWATCH_MQTT_URL": mosquitto.url, "SPINEWATCH_MQTT_PROTOCOL": "5",
                "SPINEWATCH_WORKER_ID": f"{group}-{uuid.uuid4().hex[:6]}", "SPINEWATCH_CONFIG": str(cfg)})
    if influx_url:
        env.update({"SPINEWATCH_INFLUX_URL": influx_url, "SPINEWATCH_INFLUX_DB": db or ""})
    return env, cfg


def cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([sys.executable, "-m", "spinewatch", *args], env=env, capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, f"spinewatch {' '.join(args)}: exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


@pytest.fixture(scope="module")
def stored(mosquitto, influxdb1, tmp_path_factory):
    """Every rate's schedule published once, stored by an ingest subprocess into InfluxDB and one into SQLite."""
    tmp = tmp_path_factory.mktemp("wear")
    db = f"wear_{uuid.uuid4().hex[:6]}"
    influx_env, _ = env_for(tmp, mosquitto, influxdb1.url, db, f"wi{uuid.uuid4().hex[:6]}")
    sqlite_env, _ = env_for(tmp, mosquitto, None, None, f"ws{uuid.uuid4().hex[:6]}")
    sqlite_path = tmp / "store.sqlite"
    cli(influx_env, "influx", "init")  # raw, trend (continuous queries), settings
    workers = []
    for env, extra in ((influx_env, []), (sqlite_env, ["--sqlite", str(sqlite_path)])):
        log = tmp / f"{env['SPINEWATCH_WORKER_ID']}.log"
        with log.open("w") as f:
            p = subprocess.Popen([sys.executable, "-m", "spinewatch", "ingest", "--stats-interval", "1", *extra],
                                 env=env, stderr=f, stdout=subprocess.DEVNULL)
        workers.append((p, log))
    influx = Influx1Store(influxdb1.url, db)
    try:
        for _, log in workers:
            wait_until(lambda log=log: "ingest stats" in log.read_text(), 60, f"the ingest worker to run ({log})")
        pub = TestClient(mosquitto.host, mosquitto.port, mqtt5=True)
        pub.connect()
        try:
            for rate in RATES_HZ:
                for i, b in enumerate(batches(rate)):
                    pub.publish(wire.topic(b.patient, b.device, "posture"), wire.encode_posture(b, seq=i + 1))
        finally:
            pub.close()
        lite = SqliteStore(sqlite_path)
        for rate in RATES_HZ:
            n = round(WEAR_MIN * 60 * rate)
            wait_until(lambda rate=rate, n=n: influx.count_posture(patient(rate)) == n, 120,
                       f"{n} points of {patient(rate)} in InfluxDB")
            wait_until(lambda rate=rate, n=n: lite.count_posture(patient(rate)) == n, 120,
                       f"{n} samples of {patient(rate)} in SQLite")
        lite.close()
        # the late data is downsampled into trend by the ingest itself, right after each raw write
        span = (day_start_ns(0), day_start_ns(DAYS))
        for rate in RATES_HZ:
            wait_until(lambda rate=rate: influx.minutes_trend(patient(rate), *span).samples.sum()
                       == round(WEAR_MIN * 60 * rate), 180, f"every sample of {patient(rate)} in trend")
    finally:
        for proc, _ in workers:
            proc.terminate()
            proc.wait(20)
    return {"influx": influx_env, "sqlite": {**sqlite_env, "_sqlite": str(sqlite_path)}, "store": influx, "tmp": tmp}


def report_json(stored, kind: str, rate: int, *source: str) -> dict:
    env = stored[kind]
    extra = ["--sqlite", env["_sqlite"]] if kind == "sqlite" else list(source)
    r = cli(env, "report", "--patient", patient(rate), "--from", D0.isoformat(),
            "--to", (D0 + dt.timedelta(days=DAYS - 1)).isoformat(), "--tz", "UTC", "--format", "json", *extra)
    return json.loads(r.stdout)


def check_report(j: dict, rate: int) -> None:
    assert j["wear_time_min"] == pytest.approx(WEAR_MIN, abs=0.01), (rate, j["wear_time_min"])
    assert j["days_with_data"] == WORN_DAYS
    assert [d["worn_min"] for d in j["days"]] == [2] * WORN_DAYS + [1]
    assert [d["wear_time_min"] for d in j["days"]] == pytest.approx([1.5] * WORN_DAYS + [0.5], abs=0.01)
    assert [d["has_data"] for d in j["days"]] == [True] * WORN_DAYS + [False]
    (period,) = j["rtm"]
    assert period["days_with_data"] == WORN_DAYS
    assert period["meets_16_plus_days"] is True and period["meets_2_to_15_days"] is False
    assert j["rate_hz"] == pytest.approx(rate, rel=1e-3)  # what the data says, not a setting
    # 2 still minutes of 90 s a day, never 30 in a row: no prolonged sitting at any rate
    assert j["sitting_bouts_over_30min"] == 0


@pytest.mark.parametrize("rate", RATES_HZ)
def test_report_wear_days_and_rtm_are_the_same_at_every_rate_influxdb(stored, rate):
    for source in ("auto", "raw"):  # auto reads trend.posture_1m (filled by the ingest's downsampling)
        j = report_json(stored, "influx", rate, "--source", source)
        assert j["source"].startswith("InfluxDB trend" if source == "auto" else "InfluxDB posture")
        check_report(j, rate)


@pytest.mark.parametrize("rate", RATES_HZ)
def test_report_wear_days_and_rtm_are_the_same_at_every_rate_sqlite(stored, rate):
    check_report(report_json(stored, "sqlite", rate), rate)


def _dash(name: str) -> dict:
    from spinewatch.service.dashboards import DASHBOARDS

    return DASHBOARDS[name + ".json"]()


def _eval(store, dash: dict, title: str, pat: str, interval: str = "1m") -> dict:
    from spinewatch.service.dashboards import evaluate, expand, resolve_query_variables, variable_defaults

    start_ms = day_start_ns(0) // 10**6 - 3600_000 * 10  # 00:00 UTC of the first day
    end_ms = day_start_ns(DAYS) // 10**6
    vals = resolve_query_variables(dash, {"patient": pat, "device": "d1", **variable_defaults(dash)},
                                   store.query, start_ms, end_ms)
    panel = next(p for p in dash["panels"] if p["title"] == title)
    return evaluate(panel, lambda q: store.query(expand(q, vals, start_ms, end_ms, interval)))


def _number(results: dict, ref: str = "A") -> float:
    (frame,) = results[ref]
    assert frame.v.size == 1, frame
    return float(frame.v.ravel()[0])


@pytest.mark.parametrize("rate", RATES_HZ)
def test_dashboards_show_the_same_wear_and_days_at_every_rate(stored, rate):
    store, pat = stored["store"], patient(rate)
    for name in ("patient-live", "patient-day"):
        assert _number(_eval(store, _dash(name), "Wear time", pat)) == pytest.approx(WEAR_MIN, abs=0.01), name
    rtm = _dash("rtm-compliance")
    for title in ("Days with data", "16+ day threshold", "2-15 day threshold"):
        assert _number(_eval(store, rtm, title, pat)) == WORN_DAYS, title
    per_day = _eval(store, rtm, "Wear minutes per day", pat, interval="1d")["A"][0].v
    assert per_day[per_day > 0].tolist() == pytest.approx([1.5] * WORN_DAYS + [0.5], abs=0.01)
    hours = _eval(store, _dash("patient-trends"), "Daily wear time", pat, interval="1d")["A"][0].v
    assert float(np.sum(hours)) == pytest.approx(WEAR_MIN / 60, abs=1e-3)
    from spinewatch.service.dashboards import expand, resolve_query_variables, variable_defaults
    from spinewatch.service.dashboards.clinic import COLUMNS

    clinic = _dash("clinic-overview")
    start_ms, end_ms = day_start_ns(0) // 10**6, day_start_ns(DAYS) // 10**6
    vals = resolve_query_variables(clinic, {"patient": ".*", "device": ".*", **variable_defaults(clinic)},
                                   store.query, start_ms, end_ms)
    rows = {s["tags"]["patient"]: s["values"][0][1]
            for s in store.query(expand(COLUMNS["A"], vals, start_ms, end_ms, "1m"))}
    assert rows[pat] == pytest.approx(WEAR_MIN, abs=0.01)  # "Wear (min)" of the clinic table


@pytest.mark.parametrize("kind", ["influx", "sqlite"])
def test_export_gives_each_sample_its_own_period(stored, kind):
    env = stored[kind]
    out = stored["tmp"] / f"export-{kind}"
    for rate in (10, 200):
        extra = ["--sqlite", env["_sqlite"]] if kind == "sqlite" else []
        cli(env, "export", "--patient", patient(rate), "--from", D0.isoformat(),
            "--to", (D0 + dt.timedelta(days=DAYS)).isoformat(), "--tz", "UTC", "--format", "csv",
            "--out", str(out / patient(rate)), *extra)
        with (out / f"{patient(rate)}.posture.csv").open() as f:
            periods = [float(r["wear_s"]) for r in csv.DictReader(f)]
        assert len(periods) == round(WEAR_MIN * 60 * rate)
        assert set(periods) == {1 / rate}
        assert sum(periods) == pytest.approx(WEAR_MIN * 60)


def _write_lines(url: str, db: str, lines: list[str]) -> None:
    req = urllib.request.Request(f"{url}/write?db={db}&precision=ns", data="\n".join(lines).encode())
    with urllib.request.urlopen(req, timeout=30):
        pass


def test_influx_init_backfill_recomputes_trend_from_the_periods_and_keeps_old_points_at_100hz(
        influxdb1, mosquitto, tmp_path):
    """Old raw points (no wear_s: stored before the field existed) count 0.01 s each, as they did;
    new points their own period; a minute holding both, the sum."""
    db = f"legacy_{uuid.uuid4().hex[:6]}"
    env, _ = env_for(tmp_path, mosquitto, influxdb1.url, db, "legacy")
    cli(env, "influx", "init")
    t0 = day_start_ns(0)
    # 10:00:00-10:02:30 at 100 Hz as the old ingest wrote it (no wear_s) ...
    old = [f"posture,device=d1,patient=p-old flexion_deg=5.0,lateral_deg=1.0,state=0i,activity=3i {t0 + i * NS // 100}"
           for i in range(150 * 100)]
    _write_lines(influxdb1.url, db, old)
    # ... then 10:02:30-10:05:30 at 10 Hz through today's encoding (wear_s = 0.1 on every point)
    store = Influx1Store(influxdb1.url, db)
    new = [wire.decode_posture("p-old", "d1", wire.encode_posture(
        PostureBatch("p-old", "d1", t0 + (150 + s) * NS, NS // 10, np.full(10, 5.0), np.full(10, 1.0),
                     np.zeros(10, np.int8), np.full(10, 3, np.int8)), seq=s + 1)) for s in range(180)]
    store.write(new)
    assert store.count_posture("p-old") == 15_000 + 1_800

    def trend_report() -> dict:
        r = cli(env, "report", "--patient", "p-old", "--from", D0.isoformat(), "--to", D0.isoformat(),
                "--tz", "UTC", "--format", "json", "--source", "trend")
        return json.loads(r.stdout)

    cli(env, "influx", "init", "--backfill")
    j = trend_report()
    assert j["wear_time_min"] == pytest.approx(5.5, abs=0.01)  # 2.5 min at 100 Hz + 3 min at 10 Hz
    assert j["days"][0]["worn_min"] == 6 and j["days_with_data"] == 1
    m = store.minutes_trend("p-old", t0, t0 + 6 * 60 * NS)
    assert m.wear_s.tolist() == pytest.approx([60.0] * 5 + [30.0])  # 10:02 is the mixed minute
    assert m.samples.tolist() == [6000, 6000, 3000 + 300, 600, 600, 300]
    raw = cli(env, "report", "--patient", "p-old", "--from", D0.isoformat(), "--to", D0.isoformat(),
              "--tz", "UTC", "--format", "json", "--source", "raw")
    assert json.loads(raw.stdout)["wear_time_min"] == pytest.approx(5.5, abs=0.01)


def test_a_config_still_setting_report_rate_hz_loads_with_a_warning_and_changes_nothing(stored, tmp_path):
    env = {**stored["sqlite"]}
    cfg = tmp_path / "old.toml"
    cfg.write_text(Path(env["SPINEWATCH_CONFIG"]).read_text() + "[report]\nrate_hz = 100.0\n")
    env["SPINEWATCH_CONFIG"] = str(cfg)
    r = cli(env, "report", "--patient", patient(10), "--from", D0.isoformat(),
            "--to", (D0 + dt.timedelta(days=DAYS - 1)).isoformat(), "--tz", "UTC", "--format", "json",
            "--sqlite", env["_sqlite"])
    warning = [ln for ln in r.stderr.splitlines() if "report.rate_hz" in ln]
    assert len(warning) == 1 and "no longer used" in warning[0] and str(cfg) in warning[0], r.stderr
    check_report(json.loads(r.stdout), 10)
