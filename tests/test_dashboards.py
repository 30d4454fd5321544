"""Dashboards as code: committed JSON equals the code's output; structure Grafana accepts; query rules."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from spinewatch.service.dashboards import (
    DASHBOARDS,
    expand,
    iter_queries,
    variable_defaults,
    write_all,
)

ROOT = Path(__file__).resolve().parents[1]
BOARDS = {name: build() for name, build in DASHBOARDS.items()}


def test_committed_dashboard_json_equals_generated(tmp_path):
    written = write_all(tmp_path)
    assert {p.name for p in written} == {p.name for p in (ROOT / "dashboards" / "json").glob("*.json")}
    for path in written:
        committed = ROOT / "dashboards" / "json" / path.name
        assert committed.exists(), f"{committed} missing: run python -m spinewatch.service.dashboards"
        assert json.loads(committed.read_text()) == json.loads(path.read_text()), (
            f"{committed.name} is stale: run python -m spinewatch.service.dashboards"
        )


@pytest.mark.parametrize("name", BOARDS)
def test_every_target_is_raw_influxql_with_grafana_macros_or_an_expression(name):
    d = BOARDS[name]
    assert len({p["id"] for p in d["panels"]}) == len(d["panels"])
    assert {"patient", "device", "threshold_deg", "severe_deg"} <= {v["name"] for v in d["templating"]["list"]}
    for panel in d["panels"]:
        assert len(panel["description"]) > 40, f"panel {panel['title']!r} needs a description"
        assert 0 <= panel["gridPos"]["x"] and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        if panel["type"] != "table":
            assert panel["fieldConfig"]["defaults"]["unit"], panel["title"]
        refs: list[str] = []
        for t in panel["targets"]:
            if t["datasource"]["type"] == "influxdb":
                assert t["rawQuery"] is True and t["datasource"]["uid"] == "spinewatch-influxdb"
                # settings in force at the end of the range were set at any time before it
                bound = "time <= ${__to}ms" if 'FROM "patient_config"' in t["query"] else "$timeFilter"
                assert bound in t["query"] and "/^$patient$/" in t["query"] and "/^$device$/" in t["query"]
            else:  # a server-side expression may only use targets defined before it
                assert t["datasource"]["type"] == "__expr__" and t["type"] in ("math", "reduce")
                used = re.findall(r"\$(\w+)", t["expression"]) if t["type"] == "math" else [t["expression"]]
                assert used and set(used) <= set(refs), (panel["title"], t)
            refs.append(t["refId"])
        assert len(set(refs)) == len(refs)
        assert any(not t.get("hide") for t in panel["targets"]), panel["title"]


def test_every_variable_and_macro_in_a_query_has_a_value():
    for d in BOARDS.values():
        values = {"patient": "p", "device": "d", **variable_defaults(d)}
        values |= {v["name"]: "25" for v in d["templating"]["list"] if v["name"] not in values}
        for _, t in iter_queries(d):
            q = expand(t["query"], values, 1_700_000_000_000, 1_700_003_600_000, "1m")
            assert "$" not in q.replace("$/", "/"), q
            assert ("time >= 1700000000000ms and time <= 1700003600000ms" in q
                    or ('FROM "patient_config"' in q and "time <= 1700003600000ms" in q)), q
        for v in d["templating"]["list"]:  # variable queries too, in dashboard order
            if v["type"] == "query":
                q = expand(v["query"], values, 1_700_000_000_000, 1_700_003_600_000, "1m")
                assert "$" not in q.replace("$/", "/"), q


@pytest.mark.parametrize("name", ["patient-live.json", "patient-day.json", "patient-trends.json"])
def test_patient_dashboards_take_the_zones_from_the_patients_settings(name):
    """threshold_deg and severe_deg are query variables: the stored setting, else the default."""
    by_name = {v["name"]: v for v in BOARDS[name]["templating"]["list"]}
    for field, default in (("threshold_deg", "20"), ("severe_deg", "30")):
        helper, var = by_name[f"cfg_{field}"], by_name[field]
        assert helper["type"] == var["type"] == "query" and helper["hide"] == 2
        assert f'last("{field}") FROM "patient_config"' in helper["query"]
        assert f"'$cfg_{field}'" in var["query"] and f"+ {default} AS" in var["query"]
        names = list(by_name)
        assert names.index(f"cfg_{field}") < names.index(field)  # Grafana resolves the helper first


@pytest.mark.parametrize("name", ["clinic-overview.json", "rtm-compliance.json"])
def test_multi_patient_dashboards_use_the_default_zones(name):
    by_name = {v["name"]: v for v in BOARDS[name]["templating"]["list"]}
    assert by_name["threshold_deg"]["type"] == "custom" and by_name["threshold_deg"]["current"]["value"] == "20"


def test_expand_substitutes_like_grafana():
    q = ('SELECT x FROM "posture" WHERE "patient" =~ /^$patient$/ AND $timeFilter '
         "AND time < ${__from}ms + ${baseline_days}d GROUP BY time($__interval)")
    assert expand(q, {"patient": "p1", "baseline_days": "7"}, 1000, 2000, "10s") == (
        'SELECT x FROM "posture" WHERE "patient" =~ /^p1$/ AND time >= 1000ms and time <= 2000ms '
        "AND time < 1000ms + 7d GROUP BY time(10s)"
    )
    with pytest.raises(KeyError):
        expand("$nope", {}, 0, 1, "1m")


def test_dashboards_parse_with_grafana_foundation_sdk_models():
    sdk = pytest.importorskip("grafana_foundation_sdk")
    from grafana_foundation_sdk.cog import plugins
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.dashboard import Dashboard

    plugins.register_default_plugins()
    known = {"timeseries", "stat", "table", "state-timeline", "piechart", "text"}
    for name, d in BOARDS.items():
        model = Dashboard.from_json(json.loads(json.dumps(d)))
        back = json.loads(json.dumps(model, cls=JSONEncoder))
        assert back["uid"] == d["uid"] and back["title"] == d["title"], name
        assert [p["type"] for p in back["panels"]] == [p["type"] for p in d["panels"]]
        assert {p["type"] for p in d["panels"]} <= known
        assert [p["gridPos"] for p in back["panels"]] == [p["gridPos"] for p in d["panels"]]
        for p_in, p_out in zip(d["panels"], back["panels"], strict=True):
            assert [t.get("query") or t.get("expression") for t in p_out["targets"]] == [
                t.get("query") or t.get("expression") for t in p_in["targets"]]
            assert p_out["description"] == p_in["description"]
        assert [v["name"] for v in back["templating"]["list"]] == [v["name"] for v in d["templating"]["list"]]
    assert sdk


def test_provisioning_points_at_the_generated_json():
    import yaml

    prov = yaml.safe_load((ROOT / "dashboards/provisioning/dashboards/spinewatch.yaml").read_text())
    path = prov["providers"][0]["options"]["path"]
    compose = yaml.safe_load((ROOT / "deploy/docker-compose.yml").read_text())
    mounts = dict(v.split(":")[:2][::-1] for v in compose["services"]["grafana"]["volumes"] if v.startswith(".."))
    host = next(h for c, h in mounts.items() if path.startswith(c))
    local = (ROOT / "deploy" / host / Path(path).relative_to(next(c for c in mounts if path.startswith(c)))).resolve()
    assert sorted(p.name for p in local.glob("*.json")) == sorted(DASHBOARDS)
    ds = yaml.safe_load((ROOT / "dashboards/provisioning/datasources/influxdb.yaml").read_text())["datasources"][0]
    assert ds["uid"] == "spinewatch-influxdb" and ds["type"] == "influxdb"
