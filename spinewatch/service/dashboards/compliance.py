"""Remote-monitoring compliance: days with data in the 30-day period, wear minutes, billing thresholds."""

from __future__ import annotations

from typing import Any

from spinewatch.service.dashboards._common import (
    COLOR_MILD,
    COLOR_NEUTRAL,
    COLOR_SEVERE,
    OUTER_TF_DAY,
    SERIES_FILTER,
    Layout,
    bars,
    dashboard,
    nav_links,
    panel,
    target,
    variables,
)
from spinewatch.signal.rtm import RTM_MIN_DAYS_HIGH, RTM_MIN_DAYS_LOW

F = SERIES_FILTER
# Minutes with posture data per UTC day, from RP "trend" (the wear seconds of each stored minute: its
# samples' own periods, docs/storage.md "Wear time").
WEAR_MIN_DAILY = (f'SELECT sum("wear_s") / 60 AS "wear_min" FROM "trend"."posture_1m" '
                  f"WHERE {F} GROUP BY time(1d)")
DAYS_WITH_DATA = f'SELECT count("wear_min") AS "days" FROM ({WEAR_MIN_DAILY}) WHERE "wear_min" >= 1 AND {OUTER_TF_DAY}'
# The report's definitions (spinewatch/signal/rtm.py): 2-15 and 16+ are exclusive code families.
MIN_DAYS_LOW = RTM_MIN_DAYS_LOW  # 2: device-supply code for 2-15 days in a 30-day period
MIN_DAYS_HIGH = RTM_MIN_DAYS_HIGH  # 16: device-supply code for 16 or more days


def _met(threshold: int, below_next: int | None = None) -> list[dict[str, Any]]:
    """Value mappings: "not met" below ``threshold``, "met" from it (up to ``below_next`` - 1,
    above which the next code family applies instead)."""
    top = 1e9 if below_next is None else below_next - 0.5
    out = [{"type": "range", "options": {"from": 0, "to": threshold - 0.5,
                                          "result": {"text": "not met", "color": COLOR_SEVERE}}},
           {"type": "range", "options": {"from": threshold - 0.5, "to": top,
                                          "result": {"text": "met", "color": COLOR_NEUTRAL}}}]
    if below_next is not None:
        out.append({"type": "range", "options": {"from": top, "to": 1e9,
                                                 "result": {"text": f"{below_next}+ instead", "color": COLOR_NEUTRAL}}})
    return out


def build() -> dict[str, Any]:
    """The "Remote-monitoring compliance" dashboard model."""
    lay = Layout()
    definition = (" A day with data is a UTC calendar day with at least 1 minute of posture data (docs/dashboards.md); "
                  "the period is the dashboard's time range, default the last 30 days.")
    lay.add(panel(
        "stat", "Days with data",
        "Days with data in the period." + definition,
        [target("A", DAYS_WITH_DATA)], decimals=0, unit="none",
        thresholds=[(COLOR_SEVERE, None), (COLOR_MILD, MIN_DAYS_LOW), (COLOR_NEUTRAL, MIN_DAYS_HIGH)],
    ), 8, 5)
    lay.add(panel(
        "stat", "2-15 day threshold",
        f"Met when the period has {MIN_DAYS_LOW} to {MIN_DAYS_HIGH - 1} days with data (the RTM device-supply "
        f"code for 2-15 days); from {MIN_DAYS_HIGH} days the 16+ code applies instead (the two are exclusive, "
        "as in `spinewatch report`)." + definition,
        [target("A", DAYS_WITH_DATA)], decimals=0, mappings=_met(MIN_DAYS_LOW, MIN_DAYS_HIGH),
    ), 8, 5)
    lay.add(panel(
        "stat", "16+ day threshold",
        f"Met when the period has at least {MIN_DAYS_HIGH} days with data (the RTM device-supply code for "
        "16-30 days)." + definition,
        [target("A", DAYS_WITH_DATA)], decimals=0, mappings=_met(MIN_DAYS_HIGH),
    ), 8, 5)
    lay.add(panel(
        "timeseries", "Wear minutes per day",
        "Minutes with posture data per UTC day. Days below 1 minute (red line) do not count as days with data.",
        [target("A", WEAR_MIN_DAILY.replace('AS "wear_min"', 'AS "wear minutes"') + " fill(0)")],
        unit="m", decimals=0, min_=0, custom={**bars(), "thresholdsStyle": {"mode": "line"}}, interval="1d",
        thresholds=[(COLOR_SEVERE, None), (COLOR_NEUTRAL, 1)],
    ), 24, 8)
    lay.add(panel(
        "table", "Days with data by patient",
        "Every selected patient's days with data in the period, for billing review (choose All patients)."
        + definition,
        [target("A", f'SELECT count("wear_min") AS "days with data" FROM ('
                     f'{WEAR_MIN_DAILY}, "patient") WHERE "wear_min" >= 1 AND {OUTER_TF_DAY} GROUP BY "patient"',
                "table")],
        decimals=0,
        overrides=[{"matcher": {"id": "byName", "options": "Time"},
                    "properties": [{"id": "custom.hidden", "value": True}]}],
    ), 24, 8)
    return dashboard(
        "spinewatch-rtm-compliance", "SpineWatch - Remote-monitoring compliance",
        "Days with data in the current 30-day period, wear minutes per day, and which RTM day thresholds "
        "are met. Reads retention policy trend (spinewatch influx init --backfill).",
        lay.panels, variables(multi_patient=True), "now-30d", links=nav_links(),
    )
