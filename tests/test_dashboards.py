"""Dashboards as code: the committed JSON is what the code generates."""

from __future__ import annotations

import json
from pathlib import Path

from spinewatch.service.dashboards import DASHBOARDS, write_all

ROOT = Path(__file__).resolve().parents[1]


def test_committed_dashboard_json_equals_generated(tmp_path):
    for path in write_all(tmp_path):
        committed = ROOT / "dashboards" / "json" / path.name
        assert committed.exists(), f"{committed} missing: run python -m spinewatch.service.dashboards"
        assert json.loads(committed.read_text()) == json.loads(path.read_text()), (
            f"{committed.name} is stale: run python -m spinewatch.service.dashboards"
        )


def test_every_target_is_raw_influxql_with_grafana_macros():
    for build in DASHBOARDS.values():
        d = build()
        assert len({p["id"] for p in d["panels"]}) == len(d["panels"])
        for panel in d["panels"]:
            assert panel["description"], f"panel {panel['title']!r} needs a description"
            for t in panel["targets"]:
                assert t["rawQuery"] is True
                assert "$timeFilter" in t["query"] and "$patient" in t["query"]
