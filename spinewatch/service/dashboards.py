"""Grafana dashboards as code: JSON generated here, committed under dashboards/json/.

Every InfluxDB target is raw InfluxQL (``rawQuery: true``) using Grafana's ``$timeFilter``,
``$__interval`` and the ``$patient`` / ``$device`` template variables, so the queries run
unchanged on InfluxDB 1.x, 2.x (DBRP mapping) and 3.x.

Regenerate with ``python -m spinewatch.service.dashboards``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Final

DATASOURCE: Final = {"type": "influxdb", "uid": "spinewatch-influxdb"}
DEFAULT_THRESHOLD_DEG: Final = 20.0  # matches PostureConfig.threshold_deg

SERIES_FILTER: Final = "\"patient\" =~ /^$patient$/ AND \"device\" =~ /^$device$/ AND $timeFilter"


def _target(ref: str, query: str, fmt: str = "time_series") -> dict[str, Any]:
    return {"refId": ref, "datasource": DATASOURCE, "rawQuery": True, "query": query,
            "resultFormat": fmt}


def _variables() -> list[dict[str, Any]]:
    def tag(name: str, query: str) -> dict[str, Any]:
        return {"name": name, "label": name.capitalize(), "type": "query", "datasource": DATASOURCE,
                "query": query, "refresh": 2, "includeAll": False, "multi": False, "sort": 1,
                "current": {}, "options": []}

    return [
        tag("patient", 'SHOW TAG VALUES FROM "posture" WITH KEY = "patient"'),
        tag("device", 'SHOW TAG VALUES FROM "posture" WITH KEY = "device" WHERE "patient" =~ /^$patient$/'),
    ]


def patient_live() -> dict[str, Any]:
    """Live view of one patient: trunk angles with the slouch band, episodes, activity."""
    panels: list[dict[str, Any]] = [
        {
            "id": 1, "type": "timeseries", "title": "Trunk angles",
            "description": "Flexion (forward bend, positive) and lateral bend (to the right, positive) "
                           "relative to the patient's calibrated neutral posture, in degrees. The red "
                           "band starts at the slouch threshold.",
            "gridPos": {"h": 10, "w": 24, "x": 0, "y": 0},
            "datasource": DATASOURCE,
            "targets": [
                _target("A", f'SELECT mean("flexion_deg") AS "flexion" FROM "posture" WHERE {SERIES_FILTER} '
                             "GROUP BY time($__interval) fill(null)"),
                _target("B", f'SELECT mean("lateral_deg") AS "lateral" FROM "posture" WHERE {SERIES_FILTER} '
                             "GROUP BY time($__interval) fill(null)"),
            ],
            "fieldConfig": {
                "defaults": {
                    "unit": "degree", "min": -90, "max": 90,
                    "custom": {"thresholdsStyle": {"mode": "area"}, "spanNulls": False},
                    "thresholds": {"mode": "absolute", "steps": [
                        {"color": "green", "value": None},
                        {"color": "red", "value": DEFAULT_THRESHOLD_DEG},
                    ]},
                },
                "overrides": [],
            },
        },
        {
            "id": 2, "type": "stat", "title": "Slouches",
            "description": "Slouch episodes (longer than the minimum duration) in the selected time range.",
            "gridPos": {"h": 5, "w": 6, "x": 0, "y": 10},
            "datasource": DATASOURCE,
            "targets": [_target("A", f'SELECT count("duration_s") FROM "slouch" WHERE {SERIES_FILTER}')],
            "fieldConfig": {"defaults": {"unit": "none", "decimals": 0}, "overrides": []},
        },
        {
            "id": 3, "type": "stat", "title": "Time slouching",
            "description": "Total duration of slouch episodes in the selected time range, minutes.",
            "gridPos": {"h": 5, "w": 6, "x": 6, "y": 10},
            "datasource": DATASOURCE,
            "targets": [_target("A", f'SELECT sum("duration_s") / 60 FROM "slouch" WHERE {SERIES_FILTER}')],
            "fieldConfig": {"defaults": {"unit": "m", "decimals": 1}, "overrides": []},
        },
        {
            "id": 4, "type": "table", "title": "Slouch episodes",
            "description": "One row per episode: start time, duration in seconds, peak and mean flexion in degrees.",
            "gridPos": {"h": 10, "w": 12, "x": 12, "y": 10},
            "datasource": DATASOURCE,
            "targets": [_target("A", f'SELECT "duration_s", "peak_deg", "mean_deg" FROM "slouch" WHERE {SERIES_FILTER}',
                                "table")],
            "fieldConfig": {"defaults": {}, "overrides": []},
        },
        {
            "id": 5, "type": "state-timeline", "title": "Activity",
            "description": "Activity from the IMU: 1 lying, 2 upright still, 3 upright moving (walking).",
            "gridPos": {"h": 5, "w": 12, "x": 0, "y": 15},
            "datasource": DATASOURCE,
            "targets": [_target("A", f'SELECT mode("activity") AS "activity" FROM "posture" WHERE {SERIES_FILTER} '
                                     "GROUP BY time($__interval) fill(null)")],
            "fieldConfig": {"defaults": {"mappings": [{"type": "value", "options": {
                "1": {"text": "lying", "color": "blue"},
                "2": {"text": "upright still", "color": "green"},
                "3": {"text": "moving", "color": "yellow"},
            }}]}, "overrides": []},
        },
    ]
    return {
        "uid": "spinewatch-patient-live", "title": "SpineWatch - Patient live",
        "description": "One patient's posture, live: angles, slouch episodes, activity.",
        "tags": ["spinewatch"], "timezone": "browser", "schemaVersion": 39, "version": 1,
        "editable": True, "refresh": "10s", "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": _variables()}, "annotations": {"list": []}, "panels": panels,
    }


DASHBOARDS: Final = {"patient-live.json": patient_live}


def write_all(out_dir: Path) -> list[Path]:
    """Write every dashboard's JSON into ``out_dir``; return the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, build in DASHBOARDS.items():
        p = out_dir / name
        p.write_text(json.dumps(build(), indent=2, sort_keys=True) + "\n")
        paths.append(p)
    return paths


if __name__ == "__main__":
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "dashboards" / "json"
    for path in write_all(root):
        print(path)
