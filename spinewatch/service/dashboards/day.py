"""Patient day: zones per hour, longest slouch, prolonged sitting, haptic alerts."""

from __future__ import annotations

from typing import Any

from spinewatch.service.dashboards._common import (
    COLOR_MILD,
    COLOR_NEUTRAL,
    COLOR_SEVERE,
    NEUTRAL_DESCRIPTION,
    SERIES_FILTER,
    SIT_BOUT_MIN,
    THRESHOLDS_NOTE,
    WEAR_NOTE,
    WEAR_S,
    ZONES,
    Layout,
    bars,
    constant,
    dashboard,
    nav_links,
    neutral_pct_targets,
    override_color,
    panel,
    target,
    variables,
    zone_minutes,
)

F = SERIES_FILTER

# Share of each minute spent upright still (activity 2), 0..1.
SIT_FRACTION = (f'SELECT {WEAR_S} / 60 AS "sit" FROM "posture" WHERE {F} '
                'AND "activity" = 2 GROUP BY time(1m) fill(0)')
# For each minute, the share of the preceding $sit_bout_min minutes spent upright still.
SIT_WINDOW = f'SELECT moving_average("sit", $sit_bout_min) AS "w" FROM ({SIT_FRACTION})'


def build() -> dict[str, Any]:
    """The "Patient day" dashboard model."""
    lay = Layout()
    lay.add(panel(
        "timeseries", "Worn minutes per hour by zone",
        "Each worn minute is put in a zone by its mean flexion: neutral below threshold_deg, mild from "
        "threshold_deg to severe_deg, severe from severe_deg; then counted per hour. Minutes lying down "
        "count as neutral (see the Activity timeline on Patient live)." + THRESHOLDS_NOTE,
        [target(r, zone_minutes(z, z, "GROUP BY time(1h) fill(none)")) for r, z in zip("ABC", ZONES, strict=True)],
        unit="m", decimals=0, min_=0, custom=bars(stacked=True), interval="1h",
        overrides=[override_color("neutral", COLOR_NEUTRAL), override_color("mild", COLOR_MILD),
                   override_color("severe", COLOR_SEVERE)],
        options={"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}},
    ), 16, 9)
    lay.add(panel(
        "piechart", "Worn time by zone",
        "Worn minutes in each zone over the selected range, as in the bar chart to the left." + THRESHOLDS_NOTE,
        [target(r, zone_minutes(z, z)) for r, z in zip("ABC", ZONES, strict=True)],
        unit="m", decimals=0,
        overrides=[override_color("neutral", COLOR_NEUTRAL), override_color("mild", COLOR_MILD),
                   override_color("severe", COLOR_SEVERE)],
        options={"pieType": "donut", "displayLabels": ["percent"], "legend": {"displayMode": "table",
                 "placement": "right", "values": ["value", "percent"]},
                 "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}},
    ), 8, 9)
    lay.add(panel("stat", "Time neutral", NEUTRAL_DESCRIPTION, neutral_pct_targets(), unit="percent", decimals=1,
                  min_=0, max_=100), 6, 4)
    for title, desc, q, unit, dec in (
        ("Wear time", "Minutes with posture data in the selected range." + WEAR_NOTE,
         f'SELECT {WEAR_S} / 60 AS "wear_min" FROM "posture" WHERE {F} fill(0)', "m", 0),
        ("Slouches", "Slouch episodes that started in the selected range.",
         f'SELECT count("duration_s") AS "slouches" FROM "slouch" WHERE {F}', "none", 0),
        ("Longest slouch", "Duration of the longest slouch episode in the selected range, minutes.",
         f'SELECT max("duration_s") / 60 AS "longest_min" FROM "slouch" WHERE {F}', "m", 1),
    ):
        lay.add(panel("stat", title, desc, [target("A", q)], unit=unit, decimals=dec,
                      no_value=None if title == "Wear time" else "0"), 6, 4)
    lay.add(panel(
        "timeseries", "Sitting in the last $sit_bout_min minutes",
        "For each minute, the share of the preceding sit_bout_min minutes (default 30) spent upright "
        "still, %. The IMU cannot tell sitting from standing still, so both count. 100 % (red line) means "
        "the patient has sat for the whole window: a sitting bout over 30 minutes.",
        [target("A", f'SELECT 100 * "w" AS "sitting" FROM ({SIT_WINDOW}) WHERE $timeFilter')],
        unit="percent", decimals=0, min_=0, max_=100,
        thresholds=[(COLOR_NEUTRAL, None), (COLOR_SEVERE, 95)],
        custom={"thresholdsStyle": {"mode": "line"}, "fillOpacity": 20, "spanNulls": False},
    ), 16, 7)
    lay.add(panel(
        "stat", "Minutes in prolonged sitting",
        "Minutes that ended a window of sit_bout_min minutes (default 30) spent at least 95 % upright "
        "still: 0 means no sitting bout was longer than 30 minutes; each further minute of the same bout "
        "adds one.",
        [target("A", f'SELECT count("w") AS "prolonged_min" FROM ({SIT_WINDOW}) WHERE "w" >= 0.95 AND $timeFilter')],
        unit="m", decimals=0, thresholds=[(COLOR_NEUTRAL, None), (COLOR_MILD, 1)], no_value="0",
    ), 8, 7)
    outcome = (" An alert is corrected when the slouch ends (flexion below threshold_deg - hysteresis_deg, or "
               "lying down) within the patient's response window (haptic.response_window_s, default 60 s) "
               "after the buzz; alerts are counted by the time of the buzz.")
    lay.add(panel(
        "timeseries", "Haptic alerts per hour",
        "Vibration alerts sent to the patient per hour, split into corrected and not corrected." + outcome,
        [target("A", f'SELECT sum("corrected") AS "corrected", count("corrected") - sum("corrected") '
                     f'AS "not corrected" FROM "alert" WHERE {F} GROUP BY time(1h) fill(0)')],
        unit="none", decimals=0, min_=0, custom=bars(stacked=True), interval="1h",
        overrides=[override_color("corrected", COLOR_NEUTRAL), override_color("not corrected", COLOR_SEVERE)],
    ), 12, 7)
    lay.add(panel(
        "stat", "Time to correct (median)",
        "Median time from a haptic alert to the end of the slouch, seconds, over the corrected alerts (so at "
        "most the response window)." + outcome,
        [target("A", f'SELECT median("response_s") AS "median_response_s" FROM "alert" WHERE {F}')],
        unit="s", decimals=0,
    ), 6, 7)
    lay.add(panel(
        "stat", "Alerts corrected",
        "Share of haptic alerts after which the patient corrected their posture, %." + outcome,
        [target("A", f'SELECT 100 * mean("corrected") AS "corrected_pct" FROM "alert" WHERE {F}')],
        unit="percent", decimals=0, min_=0, max_=100,
    ), 6, 7)
    lay.add(panel(
        "table", "Slouch episodes",
        "One row per episode: start time, duration (s), peak and mean flexion (deg).",
        [target("A", f'SELECT "duration_s" AS "duration (s)", "peak_deg" AS "peak (deg)", '
                     f'"mean_deg" AS "mean (deg)" FROM "slouch" WHERE {F}', "table")],
        decimals=1,
    ), 14, 8)
    lay.add(panel(
        "table", "Haptic alerts",
        "One row per alert: time of the buzz, flexion then (deg), corrected (1 yes, 0 no) and the time to "
        "correct (s, empty if not corrected)." + outcome,
        [target("A", f'SELECT "flexion_deg" AS "flexion (deg)", "corrected" AS "corrected (1 yes, 0 no)", '
                     f'"response_s" AS "time to correct (s)" FROM "alert" WHERE {F}', "table")],
        decimals=0,
    ), 10, 8)
    extra = [constant("sit_bout_min", SIT_BOUT_MIN, "Sitting bout length that counts as prolonged, minutes.")]
    return dashboard(
        "spinewatch-patient-day", "SpineWatch - Patient day",
        "One patient's day: time in each posture zone per hour, slouches, prolonged sitting, haptic alerts.",
        lay.panels, variables(extra=extra), "now/d", links=nav_links(),
    )
