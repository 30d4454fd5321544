"""Patient trends over weeks to months, from the per-minute trend data, with a smallest-real-change band."""

from __future__ import annotations

from typing import Any

from spinewatch.service.dashboards._common import (
    BASELINE_DAYS,
    COLOR_NEUTRAL,
    COLOR_SEVERE,
    MIN_BASELINE_DAYS,
    SDC95_PER_MAD,
    SERIES_FILTER,
    THRESHOLDS_NOTE,
    Layout,
    bars,
    constant,
    dashboard,
    math,
    nav_links,
    panel,
    reduce,
    target,
    variables,
)

F = SERIES_FILTER
BAND_GREY = "rgba(128, 128, 128, 0.35)"
P1M = '"trend"."posture_1m"'
BASELINE = " AND time < ${__from}ms + ${baseline_days}d"  # the first baseline_days days of the range

# Per UTC day, from RP "trend" (spinewatch influx init): numerators and denominators of the two figures.
NEUTRAL_MIN = f'SELECT count("flexion_deg") AS "neutral_min" FROM {P1M} WHERE {F} AND "flexion_deg" < $threshold_deg'
WORN_MIN = f'SELECT count("flexion_deg") AS "worn_min" FROM {P1M} WHERE {F}'
SLOUCHES = f'SELECT count("duration_s") AS "slouches" FROM "trend"."slouch" WHERE {F}'
WEAR_H = f'SELECT sum("wear_s") / 3600 AS "wear_h" FROM {P1M} WHERE {F}'


def ratio_with_band(num: str, den: str, scale: str) -> list[dict[str, Any]]:
    """Daily ``scale * num / den`` (target A) and the band of the smallest detectable change (UPPER, LOWER).

    Baseline: the daily values of the days with data among the first baseline_days days of the range.
    Band: their mean (B) +/- SDC95, SDC95 = SDC95_PER_MAD x their mean absolute deviation about B (see
    ``_common.SDC95_PER_MAD``); no band (NaN) with fewer than MIN_BASELINE_DAYS baseline days.
    """
    return [
        target("NUM", f"{num} GROUP BY time(1d) fill(0)", hide=True),
        target("DEN", f"{den} GROUP BY time(1d) fill(none)", hide=True),
        math("A", f"{scale}$NUM / $DEN"),
        target("NUM0", f"{num}{BASELINE} GROUP BY time(1d) fill(0)", hide=True),
        target("DEN0", f"{den}{BASELINE} GROUP BY time(1d) fill(none)", hide=True),
        math("DAY0", f"{scale}$NUM0 / $DEN0", hide=True),
        reduce("B", "DAY0", "mean"),
        reduce("N0", "DAY0", "count"),
        math("DEV0", "abs($DAY0 - $B)", hide=True),
        reduce("MAD", "DEV0", "mean"),
        # 0 * log(1) = 0; 0 * log(0) = NaN: no band without enough baseline days
        math("SDC", f"{SDC95_PER_MAD:g} * $MAD + 0 * log($N0 >= {MIN_BASELINE_DAYS})", hide=True),
        math("UPPER", "$A * 0 + $B + $SDC"),
        math("LOWER", "$A * 0 + $B - $SDC"),
    ]


def band_overrides(name: str, color: str) -> list[dict[str, Any]]:
    band = [{"id": "color", "value": {"mode": "fixed", "fixedColor": BAND_GREY}},
            {"id": "custom.lineWidth", "value": 0}, {"id": "custom.showPoints", "value": "never"},
            {"id": "custom.hideFrom", "value": {"legend": True, "tooltip": False, "viz": False}}]
    return [
        {"matcher": {"id": "byFrameRefID", "options": "UPPER"},
         "properties": [*band, {"id": "displayName", "value": "baseline + SDC95"},
                        {"id": "custom.fillBelowTo", "value": "baseline - SDC95"},
                        {"id": "custom.fillOpacity", "value": 30}]},
        {"matcher": {"id": "byFrameRefID", "options": "LOWER"},
         "properties": [*band, {"id": "displayName", "value": "baseline - SDC95"}]},
        {"matcher": {"id": "byFrameRefID", "options": "A"},
         "properties": [{"id": "displayName", "value": name},
                        {"id": "color", "value": {"mode": "fixed", "fixedColor": color}},
                        {"id": "custom.lineWidth", "value": 2}, {"id": "custom.showPoints", "value": "always"}]},
    ]


def build() -> dict[str, Any]:
    """The "Patient trends" dashboard model."""
    lay = Layout()
    band_note = (f" Grey band: the smallest detectable change (SDC95) around the baseline, the mean of the daily "
                 f"values of the first baseline_days days (default {BASELINE_DAYS}) of the selected range: start "
                 f"the range when therapy starts. SDC95 = 1.96 x sqrt(2) x the standard deviation of the baseline "
                 f"days (estimated as sqrt(pi/2) x their mean absolute deviation): a day outside the band differs "
                 f"from the baseline by more than this patient's own day-to-day variation (95 %). No band with "
                 f"fewer than {MIN_BASELINE_DAYS} baseline days with data. Days are UTC days.")
    neutral = ratio_with_band(NEUTRAL_MIN, WORN_MIN, "100 * ")
    lay.add(panel(
        "timeseries", "Daily time neutral",
        "Per day, the share of worn minutes whose mean flexion is below threshold_deg, % (the definition of "
        "the Patient day dashboard)." + band_note + THRESHOLDS_NOTE,
        neutral, unit="percent", decimals=0, min_=0, max_=100, interval="1d",
        custom={"spanNulls": True, "fillOpacity": 0}, overrides=band_overrides("time neutral", COLOR_NEUTRAL),
        options={"legend": {"displayMode": "list", "placement": "bottom"}},
    ), 24, 9)
    lay.add(panel(
        "timeseries", "Daily slouches per hour",
        "Per day, slouch episodes (by start time) divided by wear hours." + band_note,
        ratio_with_band(SLOUCHES, WEAR_H, ""),
        unit="none", decimals=1, min_=0, interval="1d",
        custom={"spanNulls": True, "fillOpacity": 0}, overrides=band_overrides("slouches per hour", COLOR_SEVERE),
        options={"legend": {"displayMode": "list", "placement": "bottom"}},
    ), 24, 9)
    lay.add(panel(
        "timeseries", "Daily wear time",
        "Hours with posture data per UTC day: days with little wear make the daily figures above less certain.",
        [target("A", WEAR_H.replace('AS "wear_h"', 'AS "wear hours"') + " GROUP BY time(1d) fill(0)")],
        unit="h", decimals=1, min_=0, custom=bars(), interval="1d",
    ), 12, 7)
    lay.add(panel(
        "timeseries", "Daily mean flexion",
        "Mean trunk flexion over worn minutes per UTC day, degrees (includes lying at about -90 deg, so read "
        "it with the wear time).",
        [target("A", f'SELECT mean("flexion_deg") AS "mean flexion" FROM {P1M} WHERE {F} '
                     "GROUP BY time(1d) fill(none)")],
        unit="degree", decimals=1, interval="1d", custom={"spanNulls": True, "showPoints": "always"},
    ), 12, 7)
    extra = [constant("baseline_days", BASELINE_DAYS, "Days at the start of the range that form the baseline.")]
    return dashboard(
        "spinewatch-patient-trends", "SpineWatch - Patient trends",
        "One patient over weeks to months: daily % neutral and slouches per hour against a band of the "
        "smallest detectable change. Reads retention policy trend (spinewatch influx init --backfill).",
        lay.panels, variables(extra=extra), "now-90d", links=nav_links(),
    )
