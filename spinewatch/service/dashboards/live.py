"""Patient live: trunk angles with the zone bands, slouch episodes, activity."""

from __future__ import annotations

from typing import Any

from spinewatch.service.dashboards._common import (
    COLOR_MILD,
    COLOR_NEUTRAL,
    COLOR_SEVERE,
    DATASOURCE,
    NEUTRAL_DESCRIPTION,
    SERIES_FILTER,
    THRESHOLDS_NOTE,
    WEAR_NOTE,
    WEAR_S,
    Layout,
    dashboard,
    nav_links,
    neutral_pct_targets,
    override_color,
    panel,
    target,
    variables,
)

F = SERIES_FILTER

ACTIVITY_MAPPINGS = [{"type": "value", "options": {
    "1": {"text": "lying", "color": "blue", "index": 0},
    "2": {"text": "upright still", "color": "green", "index": 1},
    "3": {"text": "walking / moving", "color": "purple", "index": 2},
    # the orientation filter's start-up after a (re)start: lying/upright not yet known (docs/signal.md)
    "0": {"text": "unknown", "color": "#8e8e8e", "index": 3},
}}]
STATE_MAPPINGS = [{"type": "value", "options": {
    "0": {"text": "neutral", "color": COLOR_NEUTRAL, "index": 0},
    "1": {"text": "slouch", "color": COLOR_SEVERE, "index": 1},
}}]


def build() -> dict[str, Any]:
    """The "Patient live" dashboard model."""
    lay = Layout()
    lay.add(panel(
        "timeseries", "Trunk angles",
        "Flexion (forward bend, positive) and lateral bend (to the right, positive) relative to the "
        "patient's calibrated neutral posture, degrees, averaged per display interval. Dashed lines: the "
        "patient's slouch threshold (yellow: mild zone above it) and severe zone (red), drawn where there is "
        "data. Blue marks: haptic alerts (annotation)." + THRESHOLDS_NOTE,
        [
            target("A", f'SELECT mean("flexion_deg") AS "flexion" FROM "posture" WHERE {F} '
                        "GROUP BY time($__interval) fill(null)"),
            target("B", f'SELECT mean("lateral_deg") AS "lateral" FROM "posture" WHERE {F} '
                        "GROUP BY time($__interval) fill(null)"),
            # Grafana thresholds cannot take variables: the patient's zone limits are drawn as series
            target("C", f'SELECT mean("flexion_deg") * 0 + $threshold_deg AS "slouch threshold" FROM "posture" '
                        f"WHERE {F} GROUP BY time($__interval) fill(null)"),
            target("D", f'SELECT mean("flexion_deg") * 0 + $severe_deg AS "severe from" FROM "posture" '
                        f"WHERE {F} GROUP BY time($__interval) fill(null)"),
        ],
        unit="degree", decimals=0, min_=-90, max_=90,
        custom={"spanNulls": False, "lineWidth": 1, "fillOpacity": 0},
        overrides=[override_color("flexion", "#1F60C4", lineWidth=2), override_color("lateral", "#8F8F8F"),
                   override_color("slouch threshold", COLOR_MILD, lineStyle={"fill": "dash", "dash": [10, 10]}),
                   override_color("severe from", COLOR_SEVERE, lineStyle={"fill": "dash", "dash": [10, 10]})],
        options={"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}},
    ), 24, 10)
    lay.add(panel(
        "state-timeline", "Slouch state",
        "Red while the filter has confirmed a slouch (field state = 1: flexion above the threshold for "
        "longer than the minimum duration), green otherwise; the largest state per display interval.",
        [target("A", f'SELECT max("state") AS "slouch" FROM "posture" WHERE {F} '
                     "GROUP BY time($__interval) fill(null)")],
        mappings=STATE_MAPPINGS, thresholds=[(COLOR_NEUTRAL, None), (COLOR_SEVERE, 1)],
        options={"showValue": "never", "mergeValues": True},
    ), 24, 3)
    lay.add(panel(
        "state-timeline", "Activity",
        "Activity from the IMU per display interval (most frequent value): lying, upright still "
        "(sitting or standing), walking / moving.",
        [target("A", f'SELECT mode("activity") AS "activity" FROM "posture" WHERE {F} '
                     "GROUP BY time($__interval) fill(null)")],
        mappings=ACTIVITY_MAPPINGS, options={"showValue": "never", "mergeValues": True},
    ), 24, 3)
    lay.add(panel(
        "stat", "Slouches",
        "Slouch episodes (longer than the minimum duration, 30 s by default) that started in the "
        "selected time range.",
        [target("A", f'SELECT count("duration_s") AS "slouches" FROM "slouch" WHERE {F}')],
        decimals=0, no_value="0",
    ), 6, 5)
    lay.add(panel(
        "stat", "Time slouching",
        "Total duration of the slouch episodes that started in the selected time range, minutes.",
        [target("A", f'SELECT sum("duration_s") / 60 AS "slouch_min" FROM "slouch" WHERE {F}')],
        unit="m", decimals=1, no_value="0",
    ), 6, 5)
    lay.add(panel(
        "stat", "Time neutral",
        NEUTRAL_DESCRIPTION,
        neutral_pct_targets(),
        unit="percent", decimals=1, min_=0, max_=100,
        thresholds=[(COLOR_SEVERE, None), (COLOR_MILD, 70), (COLOR_NEUTRAL, 85)],
    ), 6, 5)
    lay.add(panel(
        "stat", "Wear time",
        "Minutes with posture data in the selected time range." + WEAR_NOTE,
        [target("A", f'SELECT {WEAR_S} / 60 AS "wear_min" FROM "posture" WHERE {F} fill(0)')],
        unit="m", decimals=0,
    ), 6, 5)
    lay.add(panel(
        "table", "Slouch episodes",
        "One row per episode: start time, duration (s), peak and mean flexion (deg).",
        [target("A", f'SELECT "duration_s" AS "duration (s)", "peak_deg" AS "peak (deg)", '
                     f'"mean_deg" AS "mean (deg)" FROM "slouch" WHERE {F}', "table")],
        decimals=1, options={"sortBy": [{"displayName": "Time", "desc": True}]},
    ), 24, 8)
    annotation = {
        "name": "Slouch episodes", "datasource": DATASOURCE, "enable": True, "iconColor": "red",
        "query": f'SELECT "duration_s", "peak_deg" FROM "slouch" WHERE {F}',
        "textColumn": "duration_s", "tagsColumn": "", "titleColumn": "",
    }
    alerts = {
        "name": "Haptic alerts", "datasource": DATASOURCE, "enable": True, "iconColor": "blue",
        "query": f'SELECT "corrected", "response_s" FROM "alert" WHERE {F}',
        "textColumn": "response_s", "tagsColumn": "", "titleColumn": "",
    }
    return dashboard(
        "spinewatch-patient-live", "SpineWatch - Patient live",
        "One patient's posture, live: angles with zone bands, slouch episodes, activity.",
        lay.panels, variables(), "now-1h", refresh="10s", annotations=[annotation, alerts], links=nav_links(),
    )
