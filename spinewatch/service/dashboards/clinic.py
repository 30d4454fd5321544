"""Clinic overview: every patient in one sortable table, linked to the patient dashboards."""

from __future__ import annotations

from typing import Any

from spinewatch.service.dashboards._common import (
    COLOR_MILD,
    COLOR_NEUTRAL,
    COLOR_SEVERE,
    DEFAULTS_NOTE,
    PATIENT_DEVICE,
    SERIES_FILTER,
    SETTINGS_FROM,
    WEAR_S,
    Layout,
    dashboard,
    nav_links,
    panel,
    target,
    variables,
    zone_minutes,
)
from spinewatch.service.storage import transit

F = SERIES_FILTER
BY = ' GROUP BY "patient"'

# refId -> (query, columns it adds); each is one row per patient, joined on the patient column.
COLUMNS: dict[str, str] = {
    "A": f'SELECT {WEAR_S} / 60 AS "wear_min" FROM "posture" WHERE {F}{BY} fill(0)',
    "B": zone_minutes("neutral", "neutral_min", BY.strip()),
    "C": f'SELECT count("duration_s") AS "slouches" FROM "slouch" WHERE {F}{BY}',
    "D": f'SELECT count("corrected") AS "alerts" FROM "alert" WHERE {F}{BY}',
    "E": f'SELECT last("flexion_deg") AS "last_flexion_deg" FROM "posture" WHERE {F}{BY}',
    "F": f'SELECT last("battery_pct") AS "battery_pct", last("rssi_dbm") AS "rssi_dbm", '
         f'last("packets_lost_pct") AS "packets_lost_pct", last("outbox_dropped") AS "outbox_dropped" '
         f'FROM "device" WHERE {F}{BY}',
    "G": zone_minutes(None, "worn_min", BY.strip()),
    # each patient's stored threshold (the settings in force at the end of the range), to show who differs
    "H": f'SELECT last("threshold_deg") AS "threshold_deg" FROM {SETTINGS_FROM} WHERE {PATIENT_DEVICE} '
         f"AND time <= ${{__to}}ms{BY}",
    # posture lost between bridge and database: per counter, the seqs between the first and the last
    # stored that never were, times the counter's mean message duration (spinewatch/service/storage/transit.py)
    "I": f'SELECT sum("lost_min") AS "transit_lost_min" FROM (SELECT (max("seq") - min("seq") + 1 - count("seq")) '
         f'* mean("duration_ns") / {60 * 10**9} AS "lost_min" FROM "{transit.MEASUREMENT}" WHERE {F} '
         f'GROUP BY "patient", "device", "seq_epoch"){BY}',
}
HEADERS = {
    "patient": "Patient", "wear_min": "Wear (min)", "neutral_pct": "Neutral (%)",
    "slouches": "Slouches", "alerts": "Alerts sent", "last_seen": "Last seen",
    "battery_pct": "Battery (%)", "rssi_dbm": "Signal (dBm)", "packets_lost_pct": "Packets lost (%)",
    "outbox_dropped": "Outbox dropped (msgs)", "threshold_deg": "Own threshold (deg)",
    "transit_lost_min": "Lost in transit (min)",
}


def _override(field: str, **props: Any) -> dict[str, Any]:
    return {"matcher": {"id": "byName", "options": field},
            "properties": [{"id": k.replace("__", "."), "value": v} for k, v in props.items()]}


def _thresholds(*steps: tuple[str, float | None]) -> dict[str, Any]:
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for c, v in steps]}


def build() -> dict[str, Any]:
    """The "Clinic overview" dashboard model."""
    lay = Layout()
    link = "/d/{uid}?var-patient=${{__data.fields.patient}}&${{__url_time_range}}"
    lay.add(panel(
        "table", "Patients in the time range",
        "One row per patient over the selected range (default: today). Wear = minutes with posture data; "
        "Neutral = share of worn minutes with mean flexion below threshold_deg (as on the patient dashboards);"
        + DEFAULTS_NOTE + " Own threshold = the patient's stored threshold_deg (empty: the default applies), so "
        "a patient whose Neutral uses another threshold than their own stands out. Slouches = episodes "
        "started; Alerts sent = haptic alerts (by time of the buzz); Last seen = time of the newest posture "
        "sample; Battery, Signal and Packets lost = the device's last status (empty until device status is "
        "stored); Outbox dropped = posture messages (1 s of samples each) the bridge dropped because its disk "
        "outbox was full during a long broker outage, since that outbox was created (last status; above 0: "
        "raise bridge.outbox_max_mb); Lost in transit = minutes of posture messages sent by the bridge that never "
        "reached the database in the range (gaps in their seq; 0 = complete, empty = a bridge without seq_epoch). "
        "Click a column header to sort; click a patient for the patient dashboards.",
        [target(ref, q, "table") for ref, q in COLUMNS.items()],
        transformations=[
            {"id": "joinByField", "options": {"byField": "patient", "mode": "outer"}},
            {"id": "calculateField", "options": {
                "mode": "binary", "alias": "neutral_pct", "replaceFields": False,
                "binary": {"left": "neutral_min", "operator": "/", "right": "worn_min"}}},
            {"id": "organize", "options": {
                "excludeByName": {"Time 1": True, "Time 2": True, "Time 3": True, "Time 4": True,
                                  "Time 6": True, "Time 7": True, "Time 8": True, "Time 9": True,
                                  "last_flexion_deg": True, "neutral_min": True, "worn_min": True},
                "renameByName": {"Time 5": HEADERS["last_seen"],
                                 **{k: v for k, v in HEADERS.items() if k != "last_seen"}},
                "indexByName": {"patient": 0, "wear_min": 1, "neutral_pct": 2, "slouches": 3, "alerts": 4,
                                "Time 5": 5, "battery_pct": 6, "rssi_dbm": 7, "packets_lost_pct": 8,
                                "outbox_dropped": 9, "threshold_deg": 10, "transit_lost_min": 11},
            }},
        ],
        overrides=[
            _override(HEADERS["patient"], links=[
                {"title": "Patient day", "url": link.format(uid="spinewatch-patient-day")},
                {"title": "Patient live", "url": link.format(uid="spinewatch-patient-live")},
                {"title": "Patient trends", "url": link.format(uid="spinewatch-patient-trends")},
            ]),
            _override(HEADERS["wear_min"], unit="m", decimals=0),
            _override(HEADERS["neutral_pct"], unit="percentunit", decimals=1,
                      custom__cellOptions={"type": "color-text"},
                      thresholds=_thresholds((COLOR_SEVERE, None), (COLOR_MILD, 0.7), (COLOR_NEUTRAL, 0.85))),
            _override(HEADERS["slouches"], decimals=0),
            _override(HEADERS["alerts"], decimals=0),
            _override(HEADERS["last_seen"], unit="dateTimeFromNow"),
            _override(HEADERS["battery_pct"], unit="percent", decimals=0, custom__cellOptions={"type": "color-text"},
                      thresholds=_thresholds((COLOR_SEVERE, None), (COLOR_MILD, 20), (COLOR_NEUTRAL, 40))),
            _override(HEADERS["rssi_dbm"], unit="dBm", decimals=0),
            _override(HEADERS["packets_lost_pct"], unit="percent", decimals=1),
            _override(HEADERS["outbox_dropped"], decimals=0, custom__cellOptions={"type": "color-text"},
                      thresholds=_thresholds((COLOR_NEUTRAL, None), (COLOR_SEVERE, 1))),
            _override(HEADERS["threshold_deg"], unit="degree", decimals=0),
            _override(HEADERS["transit_lost_min"], unit="m", decimals=1, custom__cellOptions={"type": "color-text"},
                      thresholds=_thresholds((COLOR_NEUTRAL, None), (COLOR_SEVERE, 0.05))),
        ],
        options={"showHeader": True, "sortBy": [{"displayName": HEADERS["patient"], "desc": False}]},
    ), 24, 14)
    return dashboard(
        "spinewatch-clinic", "SpineWatch - Clinic overview",
        "Every patient in one table: wear time, % neutral, slouches, alerts, last seen, device status, "
        "data lost in transit.",
        lay.panels, variables(multi_patient=True), "now/d", refresh="1m", links=nav_links(),
    )
