"""Patient trends over weeks to months, from the per-minute trend data, with a smallest-real-change band."""

from __future__ import annotations

from typing import Any

from spinewatch.service.dashboards._common import (
    BASELINE_DAYS, COLOR_NEUTRAL, COLOR_SEVERE, SDC_NEUTRAL_PCT, SDC_SLOUCH_PER_H, SERIES_FILTER, Layout, bars,
    constant, dashboard, nav_links, panel, target, variables,
)

F = SERIES_FILTER
BAND_GREY = "rgba(128, 128, 128, 0.25)"

# Daily values (UTC days) from RP "trend" (spinewatch influx init): one point per day with data.
NEUTRAL_DAILY = (f'SELECT 100 * (1 - mean("slouch_fraction")) AS "v" FROM "trend"."posture_1m" WHERE {F} '
                 "GROUP BY time(1d) fill(none)")
SLOUCHES_DAILY = f'SELECT count("duration_s") AS "n" FROM "trend"."slouch" WHERE {F} GROUP BY time(1d)'
WEAR_H_DAILY = (f'SELECT sum("samples") / (3600 * $rate_hz) AS "h" FROM "trend"."posture_1m" WHERE {F} '
                "GROUP BY time(1d)")
# Two subqueries in one FROM: each day's episode count over the same day's wear hours.
SLOUCH_RATE_DAILY = (f'SELECT sum("n") / sum("h") AS "v" FROM ({SLOUCHES_DAILY}), ({WEAR_H_DAILY}) '
                     "WHERE $timeFilter GROUP BY time(1d) fill(none)")


def band_targets(daily: str, sdc_var: str) -> list[dict[str, Any]]:
    """Upper and lower edge: running mean over $baseline_days days with data, +/- the smallest real change."""
    ma = f'moving_average("v", $baseline_days)'
    return [
        target("B", f'SELECT {ma} + ${sdc_var} AS "upper" FROM ({daily}) WHERE $timeFilter'),
        target("C", f'SELECT {ma} - ${sdc_var} AS "lower" FROM ({daily}) WHERE $timeFilter'),
    ]


def band_overrides(value_name: str, color: str) -> list[dict[str, Any]]:
    band = [{"id": "color", "value": {"mode": "fixed", "fixedColor": BAND_GREY}},
            {"id": "custom.lineWidth", "value": 0}, {"id": "custom.showPoints", "value": "never"},
            {"id": "custom.hideFrom", "value": {"legend": True, "tooltip": False, "viz": False}}]
    return [
        {"matcher": {"id": "byName", "options": "upper"},
         "properties": [*band, {"id": "custom.fillBelowTo", "value": "lower"},
                        {"id": "custom.fillOpacity", "value": 30}]},
        {"matcher": {"id": "byName", "options": "lower"}, "properties": band},
        {"matcher": {"id": "byName", "options": value_name},
         "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": color}},
                        {"id": "custom.lineWidth", "value": 2}, {"id": "custom.showPoints", "value": "always"}]},
    ]


def build() -> dict[str, Any]:
    """The "Patient trends" dashboard model."""
    lay = Layout()
    band_note = (" Grey band: the running mean of the last baseline_days days with data (default 7) plus "
                 "and minus the smallest real change; a day outside the band differs from the recent "
                 "baseline by more than day-to-day noise. The smallest real change is a dashboard constant "
                 "(placeholder until measured in a test-retest study). Days are UTC days.")
    lay.add(panel(
        "timeseries", "Daily time neutral",
        "Per day, the share of worn time not in a confirmed slouch, % (mean of the per-minute slouch "
        "fraction; the same definition as the Patient day dashboard)." + band_note
        + f" Smallest real change: sdc_neutral_pct = {SDC_NEUTRAL_PCT} points.",
        [target("A", NEUTRAL_DAILY.replace('AS "v"', 'AS "time neutral"')),
         *band_targets(NEUTRAL_DAILY, "sdc_neutral_pct")],
        unit="percent", decimals=0, min_=0, max_=100, interval="1d",
        custom={"spanNulls": True, "fillOpacity": 0}, overrides=band_overrides("time neutral", COLOR_NEUTRAL),
    ), 24, 9)
    lay.add(panel(
        "timeseries", "Daily slouches per hour",
        "Per day, slouch episodes divided by wear hours." + band_note
        + f" Smallest real change: sdc_slouch_per_h = {SDC_SLOUCH_PER_H:g} per hour.",
        [target("A", SLOUCH_RATE_DAILY.replace('AS "v"', 'AS "slouches per hour"')),
         *band_targets(SLOUCH_RATE_DAILY, "sdc_slouch_per_h")],
        unit="none", decimals=1, min_=0, interval="1d",
        custom={"spanNulls": True, "fillOpacity": 0}, overrides=band_overrides("slouches per hour", COLOR_SEVERE),
    ), 24, 9)
    lay.add(panel(
        "timeseries", "Daily wear time",
        "Hours with posture data per UTC day: days with little wear make the daily figures above less certain.",
        [target("A", WEAR_H_DAILY.replace('AS "h"', 'AS "wear hours"') + " fill(0)")],
        unit="h", decimals=1, min_=0, custom=bars(), interval="1d",
    ), 12, 7)
    lay.add(panel(
        "timeseries", "Daily mean flexion",
        "Mean trunk flexion over worn time per UTC day, degrees (includes lying, so read it with the wear time).",
        [target("A", f'SELECT mean("flexion_deg") AS "mean flexion" FROM "trend"."posture_1m" WHERE {F} '
                     "GROUP BY time(1d) fill(none)")],
        unit="degree", decimals=1, interval="1d", custom={"spanNulls": True, "showPoints": "always"},
    ), 12, 7)
    extra = [
        constant("baseline_days", BASELINE_DAYS, "Days with data in the running-mean baseline of the band."),
        constant("sdc_neutral_pct", SDC_NEUTRAL_PCT, "Smallest real change of daily % neutral, points."),
        constant("sdc_slouch_per_h", SDC_SLOUCH_PER_H, "Smallest real change of daily slouches per hour."),
    ]
    return dashboard(
        "spinewatch-patient-trends", "SpineWatch - Patient trends",
        "One patient over weeks to months: daily % neutral and slouches per hour against a band of the "
        "smallest real change. Reads retention policy trend (spinewatch influx init --backfill).",
        lay.panels, variables(extra=extra), "now-90d", links=nav_links(),
    )
