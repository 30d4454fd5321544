"""Shared pieces of the dashboards: data source, template variables, targets, panels, layout."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any, Final

from spinewatch.service.config import DEFAULT_SEVERE_DEG, DEFAULT_THRESHOLD_DEG
from spinewatch.service.storage.influx1_schema import WEAR_S_EXACT
from spinewatch.signal import minute_summary
from spinewatch.signal.minute_summary import BASELINE_DAYS, MIN_BASELINE_DAYS  # noqa: F401

DATASOURCE: Final = {"type": "influxdb", "uid": "spinewatch-influxdb"}

# Zone defaults for a patient without stored settings, and on the multi-patient dashboards: the
# service's default posture settings (spinewatch.service.config).
THRESHOLD_DEG: Final = DEFAULT_THRESHOLD_DEG  # neutral below, mild from here
SEVERE_DEG: Final = DEFAULT_SEVERE_DEG  # severe from here
# Seconds of wear of the raw posture points of a group: each point's own sample period (field wear_s,
# docs/storage.md "Wear time"), whatever the sensor's rate; points stored before the field existed count
# 0.01 s each. Null when no point of the group has wear_s: queries add fill(0), which zeroes each
# aggregate before the arithmetic.
WEAR_S: Final = f"({WEAR_S_EXACT})"
WEAR_NOTE: Final = (" Each sample counts for its own sample period (the dt_ns of its message), so a sensor at "
                    "10 Hz and one at 200 Hz worn for the same time show the same wear.")
SIT_BOUT_MIN: Final = 30  # a sitting bout longer than this is flagged (prolonged sitting)
# The trend band's baseline and SDC95 estimator are the report's (spinewatch/signal/minute_summary.py):
# SDC95 = 1.96 * sqrt(2) * SD of the baseline days, SD ~= sqrt(pi / 2) * mean absolute deviation, because
# Grafana's expressions have no square root.
SDC95_PER_MAD: Final = round(minute_summary.SDC95_PER_MAD, 3)  # 3.474, as written into the Grafana expression

# Every posture/slouch query selects one patient's device(s) and the dashboard's time range.
SERIES_FILTER: Final = '"patient" =~ /^$patient$/ AND "device" =~ /^$device$/ AND $timeFilter'

THRESHOLDS_NOTE: Final = (
    " Zones use the patient's own threshold_deg and severe_deg: the latest settings stored (spinewatch config "
    "set, measurement patient_config, kept forever) up to the end of the range, or the defaults 20 and 30 deg "
    "if none are."
)
DEFAULTS_NOTE: Final = (
    " This overview applies the default threshold_deg (20 deg) to every patient: one InfluxQL table cannot "
    "use each patient's own threshold; the patient dashboards do."
)

NEUTRAL_DESCRIPTION: Final = (
    "Share of worn minutes whose mean flexion is below threshold_deg (the neutral zone), %. Minutes lying "
    "down count as neutral. Computed from 1-minute means of the raw flexion, like the zone chart and the "
    "trends." + THRESHOLDS_NOTE
)

COLOR_NEUTRAL: Final = "green"
COLOR_MILD: Final = "#EAB839"  # Grafana's yellow
COLOR_SEVERE: Final = "red"


# Outer time filters of queries over subqueries: the inner query applies $timeFilter; the outer one
# must keep the first bucket, which starts before the range when the range is not bucket-aligned.
OUTER_TF_HOUR: Final = "time >= ${__from}ms - 1h and time <= ${__to}ms"
OUTER_TF_DAY: Final = "time >= ${__from}ms - 1d and time <= ${__to}ms"

EXPR_DATASOURCE: Final = {"type": "__expr__", "uid": "__expr__", "name": "Expression"}


def target(ref: str, query: str, fmt: str = "time_series", hide: bool = False) -> dict[str, Any]:
    """An InfluxDB target with raw InfluxQL text."""
    t = {"refId": ref, "datasource": DATASOURCE, "rawQuery": True, "query": query, "resultFormat": fmt}
    if hide:
        t["hide"] = True
    return t


def math(ref: str, expression: str, hide: bool = False) -> dict[str, Any]:
    """A Grafana server-side expression (math) over other targets: ``100 * $N / $W``."""
    t: dict[str, Any] = {"refId": ref, "datasource": EXPR_DATASOURCE, "type": "math", "expression": expression}
    if hide:
        t["hide"] = True
    return t


def reduce(ref: str, source: str, reducer: str = "last") -> dict[str, Any]:
    """A Grafana server-side expression reducing target ``source`` to one number."""
    return {"refId": ref, "datasource": EXPR_DATASOURCE, "type": "reduce", "expression": source,
            "reducer": reducer, "hide": True}


def minute_means(by_patient: bool = False) -> str:
    """Subquery: 1-minute means of flexion, the basis of the zones and of % neutral."""
    return (f'SELECT mean("flexion_deg") AS "m" FROM "posture" WHERE {SERIES_FILTER} '
            'GROUP BY time(1m)' + (', "patient"' if by_patient else ""))


ZONES: Final = {
    "neutral": '"m" < $threshold_deg',
    "mild": '"m" >= $threshold_deg AND "m" < $severe_deg',
    "severe": '"m" >= $severe_deg',
}


def zone_minutes(zone: str | None, alias: str, group: str = "") -> str:
    """Worn minutes whose mean flexion is in ``zone`` (None: all worn minutes)."""
    cond = f"{ZONES[zone]} AND " if zone else ""
    inner = minute_means(by_patient='"patient"' in group)
    return f'SELECT count("m") AS "{alias}" FROM ({inner}) WHERE {cond}{OUTER_TF_HOUR} {group}'.strip()


def neutral_pct_targets(n: str = "N", w: str = "W", out: str = "A") -> list[dict[str, Any]]:
    """% neutral = 100 x neutral minutes / worn minutes (two hidden InfluxQL targets and a math expression)."""
    return [target(n, zone_minutes("neutral", "neutral_min"), hide=True),
            target(w, zone_minutes(None, "worn_min"), hide=True),
            math(out, f"100 * ${n} / ${w}")]


def _query_var(name: str, label: str, query: str, multi: bool) -> dict[str, Any]:
    v: dict[str, Any] = {
        "name": name, "label": label, "type": "query", "datasource": DATASOURCE, "query": query,
        "definition": query, "refresh": 2, "includeAll": multi, "multi": multi, "sort": 1,
        "current": {}, "options": [],
    }
    if multi:
        v["allValue"] = ".*"
    return v


def _custom(name: str, label: str, values: list[float], current: float, description: str) -> dict[str, Any]:
    text = [f"{v:g}" for v in values]
    cur = f"{current:g}"
    return {
        "name": name, "label": label, "type": "custom", "query": ",".join(text), "description": description,
        "current": {"text": cur, "value": cur, "selected": True},
        "options": [{"text": t, "value": t, "selected": t == cur} for t in text],
        "includeAll": False, "multi": False, "hide": 0,
    }


def _constant(name: str, value: float, description: str) -> dict[str, Any]:
    text = f"{value:g}"
    return {"name": name, "type": "constant", "query": text, "description": description, "hide": 2,
            "current": {"text": text, "value": text}, "options": [{"text": text, "value": text, "selected": True}]}


PATIENT_DEVICE: Final = '"patient" =~ /^$patient$/ AND "device" =~ /^$device$/'
# Settings from the default RP and from RP "settings", where ingest keeps them after the raw retention
# (storage.SETTINGS_RP): the same measurement in two RPs is one series to InfluxQL, so last() is the latest.
SETTINGS_FROM: Final = '"patient_config", "settings"."patient_config"'


def stored_setting(field: str) -> str:
    """The patient's latest stored ``field`` (patient_config) up to the end of the range; no row if none."""
    return (f'SELECT last("{field}") FROM {SETTINGS_FROM} WHERE {PATIENT_DEVICE} AND time <= ${{__to}}ms')


def setting_or_default(field: str, default: float) -> str:
    """One value: the stored setting (``$cfg_<field>``) if there is one, else ``default``.

    Grafana turns a variable whose query returns nothing into "None" (empty), and keeps a selected value
    as long as the options still hold it, so the fallback is done in InfluxQL and the options always hold
    exactly one value: the second subquery yields ``default`` only when ``$cfg_<field>`` is empty,
    through a tag that never exists (InfluxQL compares a missing tag as the empty string).
    """
    return (f'SELECT "v" FROM (SELECT last("{field}") AS "v" FROM {SETTINGS_FROM} WHERE {PATIENT_DEVICE} '
            f'AND time <= ${{__to}}ms), (SELECT "flexion_deg" * 0 + {default:g} AS "v" FROM "posture" '
            f"WHERE {PATIENT_DEVICE} AND \"no_stored_setting\" = '$cfg_{field}' LIMIT 1)")


def _setting_vars(field: str, label: str, default: float, what: str) -> list[dict[str, Any]]:
    cfg = _query_var(f"cfg_{field}", f"Stored {field}", stored_setting(field), False)
    cfg.update(hide=2, description=f"The patient's stored {field} (empty if none): helper of {field}.")
    val = _query_var(field, label, setting_or_default(field, default), False)
    val.update(description=f"{what}, degrees: the patient's latest stored setting up to the end of the range, "
                           f"or {default:g} if none is stored.")
    return [cfg, val]


def variables(multi_patient: bool = False, extra: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Template variables: patient and device (from the data), zone thresholds, sample rate.

    One patient (``multi_patient`` False): the patient's stored threshold_deg and severe_deg, or the
    defaults. Several patients: the defaults, selectable.
    """
    if multi_patient:
        zones = [
            _custom("threshold_deg", "Slouch threshold (deg)", [15, 20, 25, 30], THRESHOLD_DEG,
                    "Flexion at which mild slouching starts, degrees, for every patient of this overview."),
            _custom("severe_deg", "Severe from (deg)", [25, 30, 35, 40, 45], SEVERE_DEG,
                    "Flexion at which severe slouching starts, degrees, for every patient of this overview."),
        ]
    else:
        zones = [*_setting_vars("threshold_deg", "Slouch threshold (deg)", THRESHOLD_DEG,
                                "Flexion at which mild slouching starts"),
                 *_setting_vars("severe_deg", "Severe from (deg)", SEVERE_DEG,
                                "Flexion at which severe slouching starts")]
    return [
        _query_var("patient", "Patient", 'SHOW TAG VALUES FROM "posture" WITH KEY = "patient"', multi_patient),
        _query_var("device", "Device",
                   'SHOW TAG VALUES FROM "posture" WITH KEY = "device" WHERE "patient" =~ /^$patient$/', True),
        *zones,
        *(extra or []),
    ]


def constant(name: str, value: float, description: str) -> dict[str, Any]:
    """A hidden constant template variable."""
    return _constant(name, value, description)


class Layout:
    """Places panels left to right in rows of Grafana's 24 columns; ids in order."""

    def __init__(self) -> None:
        self.x = self.y = self.row_h = 0
        self.next_id = 1
        self.panels: list[dict[str, Any]] = []

    def add(self, panel: dict[str, Any], w: int, h: int) -> dict[str, Any]:
        if self.x + w > 24:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        panel = {"id": self.next_id, **panel, "gridPos": {"h": h, "w": w, "x": self.x, "y": self.y}}
        self.next_id += 1
        self.x += w
        self.row_h = max(self.row_h, h)
        self.panels.append(panel)
        return panel


def panel(kind: str, title: str, description: str, targets: list[dict[str, Any]], *,
          unit: str = "none", decimals: int | None = None, min_: float | None = None,
          max_: float | None = None, thresholds: list[tuple[str, float | None]] | None = None,
          mappings: list[dict[str, Any]] | None = None, custom: dict[str, Any] | None = None,
          overrides: list[dict[str, Any]] | None = None, options: dict[str, Any] | None = None,
          transformations: list[dict[str, Any]] | None = None, interval: str = "",
          links: list[dict[str, Any]] | None = None, no_value: str | None = None) -> dict[str, Any]:
    """A panel with field defaults; every argument becomes the Grafana key of the same meaning.

    ``no_value`` is shown when a query returns no rows (e.g. "0" for a count of episodes: InfluxQL
    returns no row, not 0, when nothing matched).
    """
    defaults: dict[str, Any] = {"unit": unit}
    if no_value is not None:
        defaults["noValue"] = no_value
    if decimals is not None:
        defaults["decimals"] = decimals
    if min_ is not None:
        defaults["min"] = min_
    if max_ is not None:
        defaults["max"] = max_
    if thresholds is not None:
        defaults["thresholds"] = {"mode": "absolute",
                                  "steps": [{"color": c, "value": v} for c, v in thresholds]}
    if mappings:
        defaults["mappings"] = mappings
    if custom:
        defaults["custom"] = custom
    if links:
        defaults["links"] = links
    p: dict[str, Any] = {
        "type": kind, "title": title, "description": description, "datasource": DATASOURCE,
        "targets": targets, "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
        "options": options or {},
    }
    if transformations:
        p["transformations"] = transformations
    if interval:
        p["interval"] = interval
    return p


def bars(stacked: bool = False) -> dict[str, Any]:
    """Timeseries field config drawing bars (per hour / per day)."""
    return {"drawStyle": "bars", "fillOpacity": 80, "lineWidth": 1, "barAlignment": -1,
            "stacking": {"mode": "normal" if stacked else "none", "group": "A"}}


def override_color(name: str, color: str, **extra: Any) -> dict[str, Any]:
    """Fixed colour (and other custom properties) for the series named ``name``."""
    props = [{"id": "color", "value": {"mode": "fixed", "fixedColor": color}}]
    props += [{"id": f"custom.{k}", "value": v} for k, v in extra.items()]
    return {"matcher": {"id": "byName", "options": name}, "properties": props}


def dashboard(uid: str, title: str, description: str, panels: list[dict[str, Any]],
              templating: list[dict[str, Any]], time_from: str, refresh: str = "",
              annotations: list[dict[str, Any]] | None = None,
              links: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A complete dashboard model (schemaVersion 39, Grafana 10.4+)."""
    builtin = {"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True,
               "hide": True, "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts",
               "type": "dashboard"}
    return {
        "uid": uid, "title": title, "description": description, "tags": ["spinewatch"],
        "timezone": "browser", "schemaVersion": 39, "version": 1, "editable": True,
        "refresh": refresh, "time": {"from": time_from, "to": "now"}, "graphTooltip": 1,
        "templating": {"list": templating}, "annotations": {"list": [builtin, *(annotations or [])]},
        "links": links or [], "panels": panels,
    }


def nav_links() -> list[dict[str, Any]]:
    """Links between the SpineWatch dashboards, keeping the time range and variables."""
    return [{"title": "SpineWatch", "type": "dashboards", "tags": ["spinewatch"], "asDropdown": True,
             "includeVars": True, "keepTime": True, "icon": "external link"}]


# -- queries as Grafana would send them -----------------------------------------------------------


def iter_queries(dash: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(panel or annotation, target) for every InfluxQL query in a dashboard."""
    for p in dash["panels"]:
        for t in p.get("targets", []):
            if t["datasource"]["type"] == "influxdb":
                yield p, t
    for a in dash["annotations"]["list"]:
        if a.get("datasource", {}).get("type") == "influxdb":
            yield a, a


def variable_defaults(dash: dict[str, Any]) -> dict[str, str]:
    """Current values of the dashboard's custom and constant variables."""
    return {v["name"]: v["current"]["value"] for v in dash["templating"]["list"]
            if v["type"] in ("custom", "constant")}


def _grafana_text(v: object) -> str:
    """A query result value as Grafana's variable text (JavaScript's number to string)."""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def resolve_query_variables(dash: dict[str, Any], values: dict[str, str],
                            run: Callable[[str], list[dict[str, Any]]], start_ms: int, end_ms: int) -> dict[str, str]:
    """Values of the query variables not given in ``values``, in dashboard order, as Grafana sets them.

    Grafana's InfluxDB data source takes the values of the first statement's series (column 1 of each
    row); a single-value variable takes the first, or "None" (empty) when there is none.

    Args:
        values: known values (patient, device, custom and constant variables).
        run: executes one expanded InfluxQL statement, returning its series.
        start_ms, end_ms: the time range, ms since the epoch (UTC).
    """
    out = dict(values)
    for v in dash["templating"]["list"]:
        if v["type"] != "query" or v["name"] in out:
            continue
        series = run(expand(v["query"], out, start_ms, end_ms, "1m"))
        found = [row[1] for s in series for row in s["values"]]
        out[v["name"]] = _grafana_text(found[0]) if found else ""
    return out


def expand(query: str, values: dict[str, str], start_ms: int, end_ms: int, interval: str) -> str:
    """Substitute Grafana's macros and variables the way its InfluxDB data source does.

    Args:
        query: raw InfluxQL with ``$timeFilter``, ``$__interval``, ``${__from}``, ``$name``.
        values: variable name -> value (regex-safe: ids are ``[A-Za-z0-9_-]``).
        start_ms, end_ms: the time range, ms since the epoch (UTC).
        interval: what Grafana would pick for ``$__interval``, e.g. ``1m``.
    """
    macros = {
        "timeFilter": f"time >= {start_ms}ms and time <= {end_ms}ms",
        "__interval": interval, "__from": str(start_ms), "__to": str(end_ms), **values,
    }

    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name not in macros:
            raise KeyError(f"no value for ${name} in {query}")
        return macros[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", sub, query)
