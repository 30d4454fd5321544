"""End to end: the demo's pipeline against real Mosquitto and InfluxDB, checked against the script."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

import numpy as np
import pytest

from spinewatch.firmware_bridge.sim import PostureScript, SimulatedPatient
from spinewatch.service.config import Config
from spinewatch.service.ops.demo import run_demo
from spinewatch.service.transport.patient_config import HapticConfig, PatientConfig

pytestmark = pytest.mark.network

DURATION_S = 25 * 60.0
SEED = 1
RATE_HZ = 100.0
# The patient's stored settings differ from the defaults (20, 30 deg, 60 s), so the dashboards must follow
# them: slouches and zones from 22 deg, severe from 35 deg, an alert counts as corrected within 120 s.
THRESHOLD_DEG = 22.0
HYSTERESIS_DEG = 5.0
SEVERE_DEG = 35.0
RESPONSE_WINDOW_S = 120.0
DEFAULT_THRESHOLD_DEG = 20.0  # what the multi-patient clinic overview applies to everyone
MIN_DURATION_S = 30.0


@pytest.fixture(scope="module")
def demo_run(mosquitto, influxdb1, tmp_path_factory):
    cfg = Config.load({
        "SPINEWATCH_MQTT_URL": mosquitto.url,
        "SPINEWATCH_INFLUX_URL": influxdb1.url,
        "SPINEWATCH_INFLUX_DB": "e2e",
    })
    out = tmp_path_factory.mktemp("e2e")
    script = PostureScript.day(DURATION_S, seed=SEED)
    start_ns = SimulatedPatient(script).start_utc_ns
    pcfg = PatientConfig(threshold_deg=THRESHOLD_DEG, severe_deg=SEVERE_DEG, hysteresis_deg=HYSTERESIS_DEG,
                         min_duration_s=MIN_DURATION_S, haptic=HapticConfig(response_window_s=RESPONSE_WINDOW_S),
                         author="e2e", set_ns=start_ns)
    result = asyncio.run(run_demo(cfg, DURATION_S, None, out, patient="p-e2e", device="d-e2e", seed=SEED,
                                  patient_config=pcfg))
    assert SimulatedPatient(script).start_utc_ns == start_ns, "the test ran across midnight UTC: run it again"
    return result, script, start_ns, influxdb1


def test_every_sample_arrives_in_influxdb_exactly_once(demo_run):
    result, _, _, influx = demo_run
    n = int(DURATION_S * RATE_HZ)
    assert result.samples == n
    rows = influx.points("SELECT count(flexion_deg), count(lateral_deg) FROM posture WHERE patient = 'p-e2e'", "e2e")
    assert rows[0]["count"] == n and rows[0]["count_1"] == n
    tags = influx.points('SHOW TAG VALUES FROM posture WITH KEY = "device"', "e2e")
    assert [t["value"] for t in tags] == ["d-e2e"]


def test_stored_angles_match_the_scripted_posture_when_still(demo_run):
    _, script, start_ns, influx = demo_run
    rows = influx.points("SELECT flexion_deg, lateral_deg FROM posture WHERE patient = 'p-e2e'", "e2e")
    t_s = (np.array([r["time"] for r in rows], dtype=np.int64) - start_ns) / 1e9
    flex = np.array([r["flexion_deg"] for r in rows])
    lat = np.array([r["lateral_deg"] for r in rows])
    assert np.all(np.diff(t_s) > 0)
    np.testing.assert_allclose(np.diff(t_s), 1 / RATE_HZ, atol=1e-6)
    still = script.still_at(t_s) & (t_s > 15)
    assert still.mean() > 0.5
    err_flex = flex[still] - script.flexion_deg_at(t_s[still])
    err_lat = lat[still] - script.lateral_deg_at(t_s[still])
    assert np.sqrt(np.mean(err_flex**2)) < 2.0, "flexion RMSE over still periods, degrees"
    assert np.sqrt(np.mean(err_lat**2)) < 2.0, "lateral RMSE over still periods, degrees"


def test_slouch_episodes_in_influxdb_match_the_script(demo_run):
    result, script, start_ns, influx = demo_run
    truth = script.slouch_episodes(THRESHOLD_DEG, 0.0)
    rows = influx.points("SELECT duration_s, peak_deg FROM slouch WHERE patient = 'p-e2e'", "e2e")
    found = [((r["time"] - start_ns) / 1e9, r["duration_s"], r["peak_deg"]) for r in rows]
    assert len(found) == result.events
    expected = [e for e in truth if e[1] - e[0] >= MIN_DURATION_S + 2.0]  # clearly long enough
    borderline = [e for e in truth if abs(e[1] - e[0] - MIN_DURATION_S) < 2.0]
    assert expected, "the scripted day must contain slouches to check"
    for t0, t1, peak in expected:
        match = [f for f in found if abs(f[0] - t0) < 1.5]
        assert len(match) == 1, f"scripted slouch at {t0:.1f} s not found once in {found}"
        _, dur, peak_found = match[0]
        assert abs(dur - (t1 - t0)) < 3.0  # ends on threshold - hysteresis, not threshold
        assert abs(peak_found - peak) < 2.5
    for f in found:
        assert any(abs(f[0] - e[0]) < 1.5 for e in expected + borderline), f"spurious slouch {f}"


def test_report_summarises_the_same_period(demo_run):
    result, script, _, _ = demo_run
    s = result.summary
    assert abs(s.wear_time_min - DURATION_S / 60) < 0.1
    assert s.slouch_count == result.events
    assert result.report_png.stat().st_size > 20_000
    assert result.events_csv.read_text().count("\n") == result.events + 1


# -- dashboards: every query, as Grafana sends it, against the ingested day --------------------------

WAITING_FOR_DATA = {"device"}  # measurements the demo does not write (its simulated sensor has no status)


@pytest.fixture(scope="module")
def dash_data(demo_run):
    """The demo day plus RP "trend" filled the way `spinewatch influx init --backfill` fills it.

    The demo writes to the default RP ("autogen": no `influx init` ran), so the backfill reads there.
    """
    from spinewatch.service.storage import Influx1Store
    from spinewatch.service.storage.influx1_schema import POSTURE_1M_SELECT, SLOUCH_COPY_SELECT

    result, script, start_ns, influx = demo_run
    store = Influx1Store(influx.url, "e2e")
    store.execute('CREATE RETENTION POLICY "trend" ON "e2e" DURATION INF REPLICATION 1')
    for stmt in (POSTURE_1M_SELECT, SLOUCH_COPY_SELECT):
        # An explicit upper bound: the simulated day starts at 08:00 UTC today, which may be after now(),
        # and InfluxDB 1.x bounds a GROUP BY time() query without one at now().
        where = f"WHERE time > 0 AND time < {start_ns + int(DURATION_S * 1e9)} "
        store.execute(stmt.format(db="e2e", where=where).replace('"raw"', '"autogen"'))
    return result, script, start_ns, store


def _variables(store, dash, start_ns, end_ns=None, **values):
    """Every variable as Grafana sets it: the given ones, the defaults, then the query variables."""
    from spinewatch.service.dashboards import resolve_query_variables, variable_defaults

    end_ns = start_ns + int(DURATION_S * 1e9) if end_ns is None else end_ns
    vals = {"patient": "p-e2e", "device": "d-e2e", **variable_defaults(dash), **{k: str(v) for k, v in values.items()}}
    return resolve_query_variables(dash, vals, store.query, start_ns // 10**6, end_ns // 10**6)


def _run(store, dash, query, start_ns, interval="1m", **values):
    from spinewatch.service.dashboards import expand

    vals = _variables(store, dash, start_ns, **values)
    q = expand(query, vals, start_ns // 10**6, (start_ns + int(DURATION_S * 1e9)) // 10**6, interval)
    return store.query(q)  # raises StoreRejected on any InfluxQL error


def _dash(name):
    from spinewatch.service.dashboards import DASHBOARDS

    return DASHBOARDS[name + ".json"]()


def _panel(dash, title):
    return next(p for p in dash["panels"] if p["title"] == title)


def _eval(store, dash, title, start_ns, interval="1m", **values):
    """A panel's targets as Grafana evaluates them (InfluxQL, then expressions), by refId."""
    from spinewatch.service.dashboards import evaluate

    return evaluate(_panel(dash, title), lambda q: _run(store, dash, q, start_ns, interval, **values))


def _number(results, ref="A"):
    frames = results[ref]
    assert len(frames) == 1 and frames[0].v.size == 1, frames
    return float(frames[0].v.ravel()[0])


def _script_minutes(script):
    """Per UTC minute of the scripted day (it starts on a minute): mean true flexion, upright-still share."""
    t = np.arange(int(DURATION_S * RATE_HZ)) / RATE_HZ
    kinds = script.labels_at(t)
    flex = script.flexion_deg_at(t)
    minute = (t // 60).astype(int)
    lie, walk = 5, 4  # SEGMENT_KINDS indices
    return np.array([(flex[minute == m].mean(), np.mean((kinds[minute == m] != lie) & (kinds[minute == m] != walk)))
                     for m in range(minute.max() + 1)])


def test_every_dashboard_query_runs_on_the_ingested_data(dash_data):
    from spinewatch.service.dashboards import DASHBOARDS, evaluate, iter_queries

    _, _, start_ns, store = dash_data
    checked = 0
    for name, build in DASHBOARDS.items():
        dash = build()
        for panel, t in iter_queries(dash):
            series = _run(store, dash, t["query"], start_ns)
            reads = set(re.findall(r'FROM "(?:trend"\.")?(\w+)"', t["query"]))
            what = f"{name} {panel.get('title') or panel['name']} {t.get('refId', 'annotation')}"
            if reads & WAITING_FOR_DATA:
                assert series == [], f"{what}: data where none is stored"
            elif "moving_average" not in t["query"]:  # needs more minutes than the 25-min day has
                assert series, f"{what} returned nothing"
            checked += 1
        for panel in dash["panels"]:  # expressions over the results evaluate too
            evaluate(panel, lambda q, dash=dash: _run(store, dash, q, start_ns))
    assert checked >= 40


def test_slouch_count_longest_and_neutral_share_match_the_script(dash_data):
    result, script, start_ns, store = dash_data
    truth = script.slouch_episodes(THRESHOLD_DEG, MIN_DURATION_S)
    borderline = [e for e in script.slouch_episodes(THRESHOLD_DEG, 0.0) if abs(e[1] - e[0] - MIN_DURATION_S) < 2.0]
    minute_flex = _script_minutes(script)[:, 0]
    truth_neutral_pct = 100 * np.mean(minute_flex < THRESHOLD_DEG)
    for name in ("patient-live", "patient-day"):
        d = _dash(name)
        n = _number(_eval(store, d, "Slouches", start_ns))
        assert n == result.events
        assert len(truth) - len(borderline) <= n <= len(truth) + len(borderline)
        neutral = _number(_eval(store, d, "Time neutral", start_ns))
        assert abs(neutral - truth_neutral_pct) < 1.0, (neutral, truth_neutral_pct)
        wear = _number(_eval(store, d, "Wear time", start_ns))
        assert wear == pytest.approx(DURATION_S / 60, abs=0.01)
    d = _dash("patient-day")
    longest_min = _number(_eval(store, d, "Longest slouch", start_ns))
    assert abs(longest_min * 60 - max(b - a for a, b, _ in truth)) < 3.0
    live = _dash("patient-live")
    slouch_min = _number(_eval(store, live, "Time slouching", start_ns))
    assert abs(slouch_min - sum(b - a for a, b, _ in truth) / 60) < 0.05 * len(truth)


def test_zone_minutes_per_hour_match_the_script(dash_data):
    _, script, start_ns, store = dash_data
    d = _dash("patient-day")
    flex = _script_minutes(script)[:, 0]
    t, sev = THRESHOLD_DEG, SEVERE_DEG  # the patient's stored settings, not the defaults
    truth = {"neutral": np.sum(flex < t), "mild": np.sum((flex >= t) & (flex < sev)), "severe": np.sum(flex >= sev)}
    at_defaults = {"neutral": np.sum(flex < 20), "mild": np.sum((flex >= 20) & (flex < 30)),
                   "severe": np.sum(flex >= 30)}
    assert truth != at_defaults, "the script must tell the patient's zones from the default ones"
    assert truth["neutral"] > 0 and truth["mild"] > 0 and truth["severe"] > 0
    per_hour = _eval(store, d, "Worn minutes per hour by zone", start_ns, interval="1h")
    total = _eval(store, d, "Worn time by zone", start_ns)
    for ref, zone in zip("ABC", truth, strict=True):
        got = per_hour[ref][0].v.sum()
        assert got == _number(total, ref)
        assert abs(got - truth[zone]) <= 1, (zone, got, truth)
    assert sum(_number(total, r) for r in "ABC") == len(flex)


def test_prolonged_sitting_matches_the_script(dash_data):
    _, script, start_ns, store = dash_data
    d = _dash("patient-day")
    still = _script_minutes(script)[:, 1]
    title = "Minutes in prolonged sitting"
    # The day is 25 minutes: no 30-minute bout can exist ...
    assert _eval(store, d, title, start_ns)["A"] == []
    # ... so check the same query with a 5-minute window against the script's upright-still minutes.
    window = 5
    w = np.convolve(still, np.ones(window) / window, mode="valid")
    assert 0 < np.sum(w >= 0.95) < len(w)
    got = _number(_eval(store, d, title, start_ns, sit_bout_min=window))
    assert abs(got - np.sum(w >= 0.95)) <= 2, (got, np.sum(w >= 0.95))
    series = _eval(store, d, "Sitting in the last $sit_bout_min minutes", start_ns, sit_bout_min=window)["A"][0]
    assert np.all((series.v >= 0) & (series.v <= 100.5)) and abs(len(series.v) - len(w)) <= 1


def test_trend_and_compliance_queries_match_the_script(dash_data):
    result, script, start_ns, store = dash_data
    truth_neutral_pct = 100 * np.mean(_script_minutes(script)[:, 0] < THRESHOLD_DEG)
    tr = _dash("patient-trends")
    for title, truth in (("Daily time neutral", truth_neutral_pct),
                         ("Daily slouches per hour", result.events / (DURATION_S / 3600))):
        r = _eval(store, tr, title, start_ns, interval="1d")
        assert len(r["A"]) == 1 and r["A"][0].v.size == 1  # one UTC day
        value = r["A"][0].v[0]
        assert abs(value - truth) < 1.0 if "neutral" in title else value == pytest.approx(truth, rel=0.01)
        # The baseline is the first 7 days of the range: here the same single day, too few for a band.
        assert _number(r, "B") == pytest.approx(value) and _number(r, "N0") == 1
        assert np.isnan(r["UPPER"][0].v).all() and np.isnan(r["LOWER"][0].v).all()
    rtm = _dash("rtm-compliance")
    for title in ("Days with data", "2-15 day threshold", "16+ day threshold"):
        assert _number(_eval(store, rtm, title, start_ns)) == 1
    wear = _eval(store, rtm, "Wear minutes per day", start_ns, interval="1d")["A"][0]
    assert wear.v.tolist() == [pytest.approx(DURATION_S / 60, abs=0.01)]
    by_patient = _run(store, rtm, _panel(rtm, "Days with data by patient")["targets"][0]["query"], start_ns,
                      patient=".*")
    assert [(s["tags"]["patient"], s["values"][0][1]) for s in by_patient] == [("p-e2e", 1)]


def test_clinic_overview_row_matches_the_script(dash_data):
    from spinewatch.service.dashboards.clinic import COLUMNS

    result, script, start_ns, store = dash_data
    d = _dash("clinic-overview")
    row = {}
    for ref, q in COLUMNS.items():
        for s in _run(store, d, q, start_ns, patient=".*", device=".*"):
            assert s["tags"]["patient"] == "p-e2e"
            row.update(zip(s["columns"][1:], s["values"][0][1:], strict=True))
            if ref == "E":
                row["last_seen_ns"] = s["values"][0][0]
    assert row["wear_min"] == pytest.approx(DURATION_S / 60, abs=0.01)
    assert row["slouches"] == result.events
    # one table for all patients: the default threshold for everyone (documented), the patient's own shown beside
    truth_neutral = np.mean(_script_minutes(script)[:, 0] < DEFAULT_THRESHOLD_DEG)
    assert abs(row["neutral_min"] / row["worn_min"] - truth_neutral) < 0.01  # the calculateField transformation
    assert row["threshold_deg"] == THRESHOLD_DEG
    assert start_ns + DURATION_S * 1e9 - 20e6 < row["last_seen_ns"] < start_ns + DURATION_S * 1e9
    assert row["alerts"] == result.alerts == 2
    assert "battery_pct" not in row  # the simulated sensor reports no device status
    assert row["transit_lost_min"] == 0  # every posture message of the demo arrived (gaps in seq: none)


def test_dashboard_previews_render_from_the_same_queries(dash_data, tmp_path):
    import os
    import shutil

    from spinewatch.service.dashboards import DASHBOARDS
    from spinewatch.service.dashboards.render import clinic_rows, render_all

    result, _, start_ns, store = dash_data
    end_ns = start_ns + int(DURATION_S * 1e9)
    paths = render_all(store, tmp_path, start_ns, end_ns, "p-e2e", "d-e2e")
    assert [p.name for p in paths] == [n.replace(".json", ".png") for n in DASHBOARDS]
    if os.environ.get("SPINEWATCH_PREVIEW_DIR"):  # keep them for review
        for p in paths:
            shutil.copy(p, os.environ["SPINEWATCH_PREVIEW_DIR"])
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 15_000, p
    d = _dash("clinic-overview")
    rows = clinic_rows(d["panels"][0],
                       _eval(store, d, "Patients in the time range", start_ns, patient=".*", device=".*"))
    assert [r["patient"] for r in rows] == ["p-e2e"] and rows[0]["slouches"] == result.events


def test_report_and_dashboards_agree_on_time_neutral(demo_run):
    """One definition of % neutral everywhere: minutes whose mean flexion is below 20 deg."""
    result, script, start_ns, _ = demo_run
    t_s = np.arange(0, DURATION_S, 0.01)
    per_minute = script.flexion_deg_at(t_s).reshape(-1, 6000).mean(axis=1)
    truth_pct = 100 * np.mean(per_minute < THRESHOLD_DEG)
    assert abs(result.summary.time_neutral_pct - truth_pct) <= 1.0


# -- per-patient zones, alert panels and the trend band -------------------------------------------------


def test_zone_variables_follow_the_stored_settings_and_fall_back_to_the_defaults(dash_data):
    _, _, start_ns, store = dash_data
    for name in ("patient-live", "patient-day", "patient-trends"):
        d = _dash(name)
        now = _variables(store, d, start_ns)
        assert (now["threshold_deg"], now["severe_deg"]) == ("22", "35")
        # a range that ends before the settings were stored (set_ns = the day's start): the defaults applied
        before = _variables(store, d, start_ns - 3600 * 10**9, end_ns=start_ns - 1)
        assert (before["cfg_threshold_deg"], before["threshold_deg"], before["severe_deg"]) == ("", "20", "30")
    angles = _eval(store, _dash("patient-live"), "Trunk angles", start_ns, interval="10s")
    assert np.unique(angles["C"][0].v[~np.isnan(angles["C"][0].v)]).tolist() == [THRESHOLD_DEG]
    assert np.unique(angles["D"][0].v[~np.isnan(angles["D"][0].v)]).tolist() == [SEVERE_DEG]


def _script_alerts(script):
    """(buzz s, corrected, response s) per scripted slouch: the buzz comes when the slouch is confirmed
    (min_duration_s after flexion passed the threshold; haptic delay 0), the correction when flexion falls
    below threshold - hysteresis."""
    starts = script.slouch_episodes(THRESHOLD_DEG, MIN_DURATION_S)
    ends = script.slouch_episodes(THRESHOLD_DEG - HYSTERESIS_DEG, MIN_DURATION_S)
    out = []
    for (t0, _, _), (_, t1, _) in zip(starts, ends, strict=True):
        buzz = t0 + MIN_DURATION_S
        assert abs(t1 - buzz - RESPONSE_WINDOW_S) > 5, "keep the script away from the window's edge"
        out.append((buzz, t1 - buzz <= RESPONSE_WINDOW_S, t1 - buzz))
    return out


def test_alert_panels_match_the_script(dash_data):
    result, script, start_ns, store = dash_data
    truth = _script_alerts(script)
    assert [c for _, c, _ in truth] == [True, False]  # one slouch corrected within 120 s, one not
    assert result.alerts == len(truth)
    d = _dash("patient-day")
    per_hour = _eval(store, d, "Haptic alerts per hour", start_ns, interval="1h")["A"]
    got = {f.name: f.v.sum() for f in per_hour}
    assert got == {"corrected": 1, "not corrected": 1}
    assert _number(_eval(store, d, "Alerts corrected", start_ns)) == pytest.approx(50.0)
    median = _number(_eval(store, d, "Time to correct (median)", start_ns))
    assert abs(median - truth[0][2]) < 0.5, (median, truth[0][2])
    stored = store.query("SELECT corrected, response_s FROM alert WHERE patient = 'p-e2e'")[0]["values"]
    for (t_ns, corrected, response), (buzz_s, want_corrected, _) in zip(stored, truth, strict=True):
        assert abs((t_ns - start_ns) / 1e9 - buzz_s) < 0.5 and corrected == int(want_corrected)
        assert (response is None) != want_corrected


def test_trend_band_is_the_smallest_detectable_change_of_the_baseline_days(influxdb1):
    """Ten days of per-minute trend data whose daily % neutral is known: band = baseline mean +/- SDC95."""
    import datetime as dt
    import urllib.request

    from spinewatch.service.dashboards import evaluate, expand, variable_defaults
    from spinewatch.service.dashboards._common import SDC95_PER_MAD
    from spinewatch.service.storage import Influx1Store

    store = Influx1Store(influxdb1.url, "sdc")
    store.ensure_database()
    store.execute('CREATE RETENTION POLICY "trend" ON "sdc" DURATION INF REPLICATION 1')
    day0_ns = int(dt.datetime(2026, 1, 5, tzinfo=dt.UTC).timestamp()) * 10**9
    neutral_pct = [60, 70, 65, 75, 70, 60, 90, 40, 95, 68]  # per day, 100 worn minutes each
    slouches = [12, 10, 11, 9, 10, 12, 8, 15, 6, 10]  # per day
    lines = []
    for day, (pct, n) in enumerate(zip(neutral_pct, slouches, strict=True)):
        for m in range(100):
            flex = 5.0 if m < pct else 40.0
            t = day0_ns + day * 86_400 * 10**9 + (8 * 60 + m) * 60 * 10**9
            lines.append(f"posture_1m,patient=p-sdc,device=d flexion_deg={flex},samples=6000i,wear_s=60 {t}")
        for k in range(n):
            t = day0_ns + day * 86_400 * 10**9 + (8 * 60 + 5 * k) * 60 * 10**9
            lines.append(f"slouch,patient=p-sdc,device=d duration_s=60,peak_deg=40,mean_deg=35 {t}")
    req = urllib.request.Request(f"{influxdb1.url}/write?db=sdc&rp=trend", data="\n".join(lines).encode(),
                                 method="POST")
    urllib.request.urlopen(req).read()
    dash = _dash("patient-trends")
    vals = {**variable_defaults(dash), "patient": "p-sdc", "device": "d", "threshold_deg": "20"}
    start_ms, end_ms = day0_ns // 10**6, (day0_ns + 10 * 86_400 * 10**9) // 10**6
    r = evaluate(_panel(dash, "Daily time neutral"),
                 lambda q: store.query(expand(q, vals, start_ms, end_ms, "1d")))
    assert r["A"][0].v.tolist() == pytest.approx(neutral_pct)
    base = np.array(neutral_pct[:7], float)  # baseline_days = 7
    sdc = SDC95_PER_MAD * np.mean(np.abs(base - base.mean()))
    assert _number(r, "B") == pytest.approx(base.mean()) and _number(r, "N0") == 7
    assert r["UPPER"][0].v.tolist() == pytest.approx([base.mean() + sdc] * 10)
    assert r["LOWER"][0].v.tolist() == pytest.approx([base.mean() - sdc] * 10)
    # which days changed by more than the patient's own day-to-day variation
    outside = [p for p in neutral_pct[7:] if abs(p - base.mean()) > sdc]
    assert outside == [40, 95]
    # SDC95 estimated from the mean absolute deviation is close to 1.96 * sqrt(2) * SD for these days
    assert sdc == pytest.approx(1.96 * np.sqrt(2) * base.std(ddof=1), rel=0.15)
    per_hour = evaluate(_panel(dash, "Daily slouches per hour"),
                        lambda q: store.query(expand(q, vals, start_ms, end_ms, "1d")))
    assert per_hour["A"][0].v.tolist() == pytest.approx([n / (100 / 60) for n in slouches])
    if os.environ.get("SPINEWATCH_PREVIEW_DIR"):  # the band as a therapist sees it, for docs/dashboards.md
        from spinewatch.service.dashboards.render import render_dashboard

        render_dashboard(dash, store, day0_ns, day0_ns + 10 * 86_400 * 10**9,
                         {**vals, "severe_deg": "30"},
                         Path(os.environ["SPINEWATCH_PREVIEW_DIR"]) / "patient-trends-10-days.png")
