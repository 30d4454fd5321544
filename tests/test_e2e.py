"""End to end: the demo's pipeline against real Mosquitto and InfluxDB, checked against the script."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from spinewatch.firmware_bridge.simulator import PostureScript, SimulatedPatient
from spinewatch.service.config import Config
from spinewatch.service.pipeline import run_demo

pytestmark = pytest.mark.network

DURATION_S = 25 * 60.0
SEED = 1
RATE_HZ = 100.0
THRESHOLD_DEG = 20.0
MIN_DURATION_S = 30.0


@pytest.fixture(scope="module")
def demo_run(mosquitto, influxdb1, tmp_path_factory):
    cfg = Config.load({
        "SPINEWATCH_MQTT_URL": mosquitto.url,
        "SPINEWATCH_INFLUX_URL": influxdb1.url,
        "SPINEWATCH_INFLUX_DB": "e2e",
    })
    out = tmp_path_factory.mktemp("e2e")
    result = asyncio.run(run_demo(cfg, DURATION_S, None, out, patient="p-e2e", device="d-e2e", seed=SEED))
    script = PostureScript.day(DURATION_S, seed=SEED)
    start_ns = SimulatedPatient(script).start_utc_ns
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


def test_every_dashboard_query_runs_on_the_ingested_data(demo_run):
    from spinewatch.service.dashboards import DASHBOARDS

    result, _, start_ns, influx = demo_run
    end_ns = start_ns + int(DURATION_S * 1e9)
    subst = {
        "$timeFilter": f"time >= {start_ns} AND time < {end_ns}",
        "$__interval": "1m",
        "$patient": "p-e2e",
        "$device": "d-e2e",
    }
    for build in DASHBOARDS.values():
        for panel in build()["panels"]:
            for t in panel["targets"]:
                q = t["query"]
                for k, v in subst.items():
                    q = q.replace(k, v)
                rows = influx.points(q, "e2e")  # raises on an InfluxQL error
                assert rows, f"panel {panel['title']!r} returned nothing: {q}"
                if panel["title"] == "Slouches":
                    assert rows[0]["count"] == result.events
