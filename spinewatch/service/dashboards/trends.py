"""Patient trends over weeks to months, from the per-minute trend data, with a smallest-real-change band."""

from __future__ import annotations

from typing import Any

from spinewatch.service.dashboards._common import (
    BASELINE_DAYS,
    COLOR_NEUTRAL,
    COLOR_SEVERE,
    SDC_NEUTRAL_PCT,
    SDC_SLOUCH_PER_H,
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
WEAR_H = f'SELECT sum("samples") / (3600 * $rate_hz) AS "wear_h" FROM {P1M} WHERE {F}'


def ratio_with_band(name: str, num: str, den: str, scale: str, sdc: float) -> list[dict[str, Any]]:
    """Daily ``scale * num / den`` (target A) and the baseline band (targets UPPER, LOWER).

    The band is the same ratio over the first baseline_days days of the range, +/- ``sdc``.
    """
    return [
        target("NUM", f"{num} GROUP BY time(1d) fill(0)", hide=True),
        target("DEN", f"{den} GROUP BY time(1d) fill(none)", hide=True),
        math("A", f"{scale}$NUM / $DEN"),
        target("NUM0", num + BASELINE, hide=True),
        target("DEN0", den + BASELINE, hide=True),
        math("BASE", f"{scale}$NUM0 / $DEN0", hide=True),
        reduce("B", "BASE", "last"),
        math("UPPER", f"$A * 0 + $B + {sdc:g}"),
        math("LOWER", f"$A * 0 + $B - {sdc:g}"),
    ]


def band_overrides(name: str, color: str) -> list[dict[str, Any]]:
    band = [{"id": "color", "value": {"mode": "fixed", "fixedColor": BAND_GREY}},
            {"id": "custom.lineWidth", "value": 0}, {"id": "custom.showPoints", "value": "never"},
            {"id": "custom.hideFrom", "value": {"legend": True, "tooltip": False, "viz": False}}]
    return [
        {"matcher": {"id": "byFrameRefID", "options": "UPPER"},
         "properties": [*band, {"id": "displayName", "value": "baseline + smallest real change"},
                        {"id": "custom.fillBelowTo", "value": "baseline - smallest real change"},
                        {"id": "custom.fillOpacity", "value": 30}]},
        {"matcher": {"id": "byFrameRefID", "options": "LOWER"},
         "properties": [*band, {"id": "displayName", "value": "baseline - smallest real change"}]},
        {"matcher": {"id": "byFrameRefID", "options": "A"},
         "properties": [{"id": "displayName", "value": name},
                        {"id": "color", "value": {"mode": "fixed", "fixedColor": color}},
                        {"id": "custom.lineWidth", "value": 2}, {"id": "custom.showPoints", "value": "always"}]},
    ]


def build() -> dict[str, Any]:
    """The "Patient trends" dashboard model."""
    lay = Layout()
    band_note = (" Grey band: the same figure over the first baseline_days days (default 7) of the selected range "
                 "(start the range when therapy starts), plus and minus the smallest real change; a day outside "
                 "the band differs from the baseline by more than day-to-day noise. The smallest real change is "
                 "a placeholder constant until measured in a test-retest study. Days are UTC days.")
    neutral = ratio_with_band("time neutral", NEUTRAL_MIN, WORN_MIN, "100 * ", SDC_NEUTRAL_PCT)
    lay.add(panel(
        "timeseries", "Daily time neutral",
        "Per day, the share of worn minutes whose mean flexion is below threshold_deg, % (the definition of "
        "the Patient day dashboard)." + band_note + f" Smallest real change: {SDC_NEUTRAL_PCT} points."
        + THRESHOLDS_NOTE,
        neutral, unit="percent", decimals=0, min_=0, max_=100, interval="1d",
        custom={"spanNulls": True, "fillOpacity": 0}, overrides=band_overrides("time neutral", COLOR_NEUTRAL),
        options={"legend": {"displayMode": "list", "placement": "bottom"}},
    ), 24, 9)
    lay.add(panel(
        "timeseries", "Daily slouches per hour",
        "Per day, slouch episodes (by start time) divided by wear hours." + band_note
        + f" Smallest real change: {SDC_SLOUCH_PER_H:g} per hour.",
        ratio_with_band("slouches per hour", SLOUCHES, WEAR_H, "", SDC_SLOUCH_PER_H),
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
        "smallest real change. Reads retention policy trend (spinewatch influx init --backfill).",
        lay.panels, variables(extra=extra), "now-90d", links=nav_links(),
    )
