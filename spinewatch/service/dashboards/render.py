"""PNG previews of the Grafana dashboards: the same queries, run on an InfluxDB, drawn with matplotlib.

For review and reports where no Grafana runs. Each panel is drawn at its grid position with the
panel's title, unit, zone colours, value mappings and the trend band, from the results of the
same InfluxQL and expressions Grafana runs (:func:`spinewatch.service.dashboards.evaluate`).
It is a preview, not a pixel copy of Grafana.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from spinewatch.service.dashboards import (
    DASHBOARDS,
    Frame,
    evaluate,
    expand,
    resolve_query_variables,
    variable_defaults,
    visible,
)

if TYPE_CHECKING:
    from spinewatch.service.storage import InfluxHttp

_LOGGER = logging.getLogger(__name__)

ROW_IN: Final = 0.42  # inches per Grafana grid row (30 px)
HEADER_IN: Final = 0.7  # dashboard title
TITLE_IN: Final = 0.3  # panel title above each panel
TICKS_IN: Final = 0.35  # tick labels below each panel
WIDTH_IN: Final = 16.0
NICE_INTERVALS_S: Final = (1, 5, 10, 30, 60, 300, 600, 1800, 3600, 86400)
TARGET_POINTS: Final = 300  # like Grafana's maxDataPoints for a panel about 1000 px wide
COLORS: Final = {"green": "#56A64B", "red": "#E02F44", "yellow": "#EAB839", "blue": "#3274D9",
                 "purple": "#A352CC", "#EAB839": "#EAB839"}
UNITS: Final = {"m": " min", "percent": " %", "degree": "°", "h": " h", "s": " s", "none": "", "dBm": " dBm"}


def _color(c: str | None, default: str = "#1F60C4") -> str:
    if not c:
        return default
    if c.startswith("rgba"):
        r, g, b = (int(float(x)) for x in c[5:-1].split(",")[:3])
        return f"#{r:02x}{g:02x}{b:02x}"
    return COLORS.get(c, c)


def grafana_interval(range_s: float, panel_min: str = "") -> str:
    """``$__interval`` as Grafana picks it: range / max data points, rounded, at least the panel's."""
    want = max(range_s / TARGET_POINTS, _seconds(panel_min) if panel_min else 1)
    s = next((n for n in NICE_INTERVALS_S if n >= want), NICE_INTERVALS_S[-1])
    return f"{s // 86400}d" if s >= 86400 else f"{s // 3600}h" if s >= 3600 else f"{s // 60}m" if s >= 60 else f"{s}s"


def _seconds(interval: str) -> int:
    return int(interval[:-1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[interval[-1]]


def _fmt(v: float, unit: str, decimals: int | None) -> str:
    if v is None or not np.isfinite(v):
        return "No data"
    if unit == "percentunit":
        v, unit = 100 * v, "percent"
    d = 1 if decimals is None else decimals
    return f"{v:.{d}f}{UNITS.get(unit, ' ' + unit)}"


def _times(t_ns: Iterable[int | np.integer[Any]]) -> list[dt.datetime]:
    return [dt.datetime.fromtimestamp(int(t) / 1e9, tz=dt.UTC) for t in t_ns]


def _override_props(panel: dict[str, Any], frame_name: str, ref: str) -> dict[str, Any]:
    props: dict[str, Any] = {}
    for o in panel["fieldConfig"].get("overrides", []):
        m = o["matcher"]
        if (m["id"] == "byName" and m["options"] == frame_name) or (m["id"] == "byFrameRefID" and m["options"] == ref):
            for p in o["properties"]:
                props[p["id"]] = p["value"]
    return props


def _mapping(panel: dict[str, Any], v: float) -> dict[str, Any] | None:
    for m in panel["fieldConfig"]["defaults"].get("mappings", []):
        if m["type"] == "value" and f"{v:g}" in m["options"]:
            return m["options"][f"{v:g}"]
        if m["type"] == "range" and m["options"]["from"] <= v <= m["options"]["to"]:
            return m["options"]["result"]
    return None


def _draw_timeseries(ax: Any, panel: dict[str, Any], res: dict[str, list[Frame]], interval_s: int,
                     span: tuple[int, int], marks: list[tuple[str, str, list[int]]] = ()) -> None:  # type: ignore[assignment]
    """One time series panel; ``marks``: (name, colour, UTC ns) of annotations, drawn as vertical lines."""
    d = panel["fieldConfig"]["defaults"]
    custom = d.get("custom", {})
    steps = d.get("thresholds", {}).get("steps", [])
    lo, hi = d.get("min"), d.get("max")
    if custom.get("thresholdsStyle", {}).get("mode") == "area" and steps:
        edges = [lo if lo is not None else -1e9] + [s["value"] for s in steps[1:]] + [hi if hi is not None else 1e9]
        for s, a, b in zip(steps, edges[:-1], edges[1:], strict=True):
            ax.axhspan(a, b, color=_color(s["color"]), alpha=0.12, lw=0)
    if custom.get("thresholdsStyle", {}).get("mode") == "line":
        for s in steps[1:]:
            ax.axhline(s["value"], color=_color(s["color"]), ls="--", lw=1)
    is_bars = custom.get("drawStyle") == "bars"
    stacked = custom.get("stacking", {}).get("mode") == "normal"
    bottom: dict[int, float] = {}
    band: dict[str, Frame] = {}
    drawn = 0
    for ref, frames in res.items():
        for f in frames:
            if f.t_ns is None or not f.v.size:
                continue
            props = _override_props(panel, f.name, ref)
            name = props.get("displayName", f.name)
            if props.get("custom.fillBelowTo") or ref in ("UPPER", "LOWER"):
                band[ref] = f
                continue
            color = _color((props.get("color") or {}).get("fixedColor"))
            t = _times(f.t_ns)
            if is_bars:
                base = np.array([bottom.get(int(x), 0.0) for x in f.t_ns])
                width = interval_s / 86400 * 0.9
                ax.bar(t, np.nan_to_num(f.v), width=width, bottom=base, align="edge", color=color, label=name)
                if stacked:
                    for x, b, v in zip(f.t_ns, base, np.nan_to_num(f.v), strict=True):
                        bottom[int(x)] = b + v
            else:
                points = props.get("custom.showPoints", custom.get("showPoints"))
                ax.plot(t, f.v, color=color, lw=props.get("custom.lineWidth", 1.2) or 1.2, label=name,
                        marker="o" if points == "always" or len(f.v) == 1 else None, ms=5,
                        ls="--" if "custom.lineStyle" in props else "-")
            drawn += 1
    if "UPPER" in band and not np.isfinite(band["UPPER"].v).any():
        ax.text(0.99, 0.95, "no band: fewer than 3 baseline days with data", transform=ax.transAxes, ha="right",
                va="top", color="grey", fontsize=8)
    elif "UPPER" in band and "LOWER" in band:
        u, lw = band["UPPER"], band["LOWER"]
        assert u.t_ns is not None  # only frames with times get into band (see the loop above)
        ax.fill_between(_times(u.t_ns), lw.v, u.v, color="grey", alpha=0.25, lw=0,
                        label="baseline ± SDC95", step=None)
        if len(u.v) == 1:  # one day: show the band as a bar
            ax.errorbar(_times(u.t_ns), (u.v + lw.v) / 2, yerr=(u.v - lw.v) / 2, color="grey", capsize=12, lw=6,
                        alpha=0.4)
    for name, color, times in marks:
        for i, mark_ns in enumerate(times):
            ax.axvline(_times([mark_ns])[0], color=_color(color), lw=1.2, ls=":", alpha=0.9,
                       label=name if i == 0 else None)
            drawn += 1
    if lo is not None or hi is not None:
        ax.set_ylim(lo, hi)
    if d.get("decimals") == 0 and custom.get("drawStyle") == "bars":  # counts: whole-number ticks
        from matplotlib.ticker import MaxNLocator

        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    unit = d.get("unit", "")
    ax.set_ylabel(UNITS.get(unit, unit).strip() or "")
    _time_axis(ax, span, interval_s)
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend(fontsize=7, loc="upper left", ncols=4)
    else:
        ax.text(0.5, 0.5, "No data", transform=ax.transAxes, ha="center", va="center", color="grey", fontsize=14)


def _time_axis(ax: Any, span: tuple[int, int], interval_s: int) -> None:
    import matplotlib.dates as mdates

    a, b = span
    if interval_s >= 86400:  # whole UTC days around the range
        a, b = a - a % (86400 * 10**9) - 43200 * 10**9, b + 86400 * 10**9
        ax.xaxis.set_major_locator(mdates.DayLocator())
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%d %b"))
    else:
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))
    t = _times(np.array([a, b]))
    ax.set_xlim(t[0], t[1])


def _draw_stat(ax: Any, panel: dict[str, Any], res: dict[str, list[Frame]]) -> None:
    d = panel["fieldConfig"]["defaults"]
    frames = [f for fs in res.values() for f in fs if f.v.size]
    v = float(np.ravel(frames[0].v)[-1]) if frames else float("nan")
    if not frames and "noValue" in d:
        v = float(d["noValue"])
    text, color = _fmt(v, d.get("unit", "none"), d.get("decimals")), "#333333"
    m = _mapping(panel, v) if np.isfinite(v) else None
    if m:
        text, color = m.get("text", text), _color(m.get("color"), color)
    elif np.isfinite(v) and d.get("thresholds"):
        for s in d["thresholds"]["steps"]:
            if s["value"] is None or v >= s["value"]:
                color = _color(s["color"])
    ax.axis("off")
    ax.text(0.5, 0.42, text, transform=ax.transAxes, ha="center", va="center", fontsize=22, weight="bold",
            color=color if np.isfinite(v) else "grey")


def _draw_state_timeline(ax: Any, panel: dict[str, Any], res: dict[str, list[Frame]], interval_s: int,
                         span: tuple[int, int]) -> None:

    frames = [f for fs in res.values() for f in fs if f.t_ns is not None and f.v.size]
    for k, f in enumerate(frames):
        assert f.t_ns is not None  # frames without times were left out above
        t = _times(f.t_ns)
        for x, v in zip(t, f.v, strict=True):
            if np.isfinite(v):
                m = _mapping(panel, v) or {}
                ax.barh(k, interval_s / 86400, left=x, color=_color(m.get("color"), "grey"), height=0.8, lw=0)
        ax.set_yticks(range(len(frames)), [f.name for f in frames])
    handles = []
    import matplotlib.patches as mpatches

    for m in panel["fieldConfig"]["defaults"].get("mappings", []):
        for o in m["options"].values():
            handles.append(mpatches.Patch(color=_color(o["color"]), label=o["text"]))
    ax.legend(handles=handles, fontsize=7, loc="upper right", ncols=len(handles))
    _time_axis(ax, span, interval_s)
    if not frames:
        ax.text(0.5, 0.5, "No data", transform=ax.transAxes, ha="center", va="center", color="grey")


def _draw_pie(ax: Any, panel: dict[str, Any], res: dict[str, list[Frame]]) -> None:
    vals, labels, colors = [], [], []
    for ref, frames in res.items():
        for f in frames:
            vals.append(float(np.nansum(f.v)))
            labels.append(f"{f.name} {vals[-1]:.0f} min")
            colors.append(_color((_override_props(panel, f.name, ref).get("color") or {}).get("fixedColor")))
    if sum(vals) > 0:
        ax.pie(vals, labels=labels, colors=colors, autopct="%.0f%%", wedgeprops={"width": 0.45},
               textprops={"fontsize": 8})
    else:
        ax.axis("off")
        ax.text(0.5, 0.5, "No data", ha="center", va="center", color="grey")


def clinic_rows(panel: dict[str, Any], res: dict[str, list[Frame]]) -> list[dict[str, Any]]:
    """The clinic table as Grafana builds it: join by patient, then neutral_min / worn_min."""
    rows: dict[str, dict[str, Any]] = {}
    for ref, frames in res.items():
        for f in frames:
            row = rows.setdefault(f.labels.get("patient", "?"), {})
            row[f.name] = float(f.v[-1])
            if ref == "E":
                row["last_seen"] = int(f.t_ns[-1]) if f.t_ns is not None else None
    for row in rows.values():
        if "neutral_min" in row or "worn_min" in row:
            row["neutral_pct"] = row.get("neutral_min", 0.0) / row["worn_min"] if row.get("worn_min") else None
    return [{"patient": p, **r} for p, r in sorted(rows.items())]


def _draw_table(ax: Any, panel: dict[str, Any], res: dict[str, list[Frame]], now_ns: int) -> None:
    ax.axis("off")
    if any(t["id"] == "joinByField" for t in panel.get("transformations", [])):
        organize = next(t for t in panel["transformations"] if t["id"] == "organize")["options"]
        names = organize["renameByName"]
        order = sorted(organize["indexByName"], key=organize["indexByName"].get)
        header = [names.get(c, c) for c in order]
        body = []
        for r in clinic_rows(panel, res):
            cells = []
            for c in order:
                v = r.get("last_seen" if c == "Time 5" else c)
                if v is None or (isinstance(v, float) and not math.isfinite(v)):
                    cells.append("")  # no value (e.g. a sensor that reports no battery): empty, as Grafana shows it
                elif c == "patient":
                    cells.append(str(v))
                elif c == "Time 5":
                    cells.append(f"{(now_ns - v) / 60e9:.0f} min ago")
                elif c == "neutral_pct":
                    cells.append(f"{100 * v:.1f}")
                else:
                    cells.append(f"{v:.0f}" if c != "packets_lost_pct" else f"{v:.1f}")
            body.append(cells)
    else:
        frames = [f for fs in res.values() for f in fs]
        show_time = not _override_props(panel, "Time", "").get("custom.hidden")
        tags = sorted({k for f in frames for k in f.labels})
        header = (["Time (UTC)"] if show_time else []) + tags + [f.name for f in frames]
        body = []
        dec = panel["fieldConfig"]["defaults"].get("decimals", 1)
        for f in frames[:1]:
            for i, t in enumerate(f.t_ns if f.t_ns is not None else []):
                body.append(([f"{_times([t])[0]:%H:%M:%S}"] if show_time else []) + [f.labels.get(k, "") for k in tags]
                            + [f"{g.v[i]:.{dec}f}" if np.isfinite(g.v[i]) else "" for g in frames
                               if g.labels == f.labels])
        for f in frames[1:]:  # one series per tag value (GROUP BY tag)
            if tags and f.name == frames[0].name:
                assert f.t_ns is not None  # a table's targets are InfluxQL queries: series (frames_of), not numbers
                body.append(([f"{_times([f.t_ns[0]])[0]:%H:%M:%S}"] if show_time else [])
                            + [f.labels.get(k, "") for k in tags] + [f"{f.v[0]:.{dec}f}"])
    if not body:
        body = [["No data"] + [""] * (len(header) - 1)]
    # a header with its unit on a second line ("Outbox dropped\n(msgs)"): twelve columns fit the
    # page's width without clipping the longer names
    labels = [h.replace(" (", "\n(", 1) for h in header]
    tab = ax.table(cellText=body[:14], colLabels=labels, loc="upper center", cellLoc="center")
    tab.auto_set_font_size(False)
    tab.set_fontsize(8)
    tab.scale(1, 1.3)
    if any("\n" in h for h in labels):
        for (row, _), cell in tab.get_celld().items():
            if row == 0:
                cell.set_height(cell.get_height() * 2)


def render_dashboard(dash: dict[str, Any], store: InfluxHttp, start_ns: int, end_ns: int,
                     values: dict[str, str], path: Path) -> Path:
    """Draw one dashboard's panels, from the same queries Grafana runs, into a PNG.

    Args:
        dash: a dashboard model from :data:`spinewatch.service.dashboards.DASHBOARDS`.
        store: an InfluxDB reader (its ``query`` runs InfluxQL, returning series with ns times).
        start_ns, end_ns: the time range, UTC ns.
        values: template variable values (patient, device); the custom and constant variables'
            defaults and the query variables (the patient's zone thresholds) fill the rest.
        path: PNG file to write.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    vals = resolve_query_variables(dash, {**variable_defaults(dash), **values}, store.query,
                                   start_ns // 10**6, end_ns // 10**6)
    marks = []  # annotations: Grafana draws them on every time series panel
    for a in dash["annotations"]["list"]:
        if a.get("datasource", {}).get("type") == "influxdb":
            series = store.query(expand(a["query"], vals, start_ns // 10**6, end_ns // 10**6, "1m"))
            marks.append((a["name"], a.get("iconColor", "red"), [int(row[0]) for s in series for row in s["values"]]))
    range_s = (end_ns - start_ns) / 1e9
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in dash["panels"])
    height_in = rows * ROW_IN + HEADER_IN
    fig = plt.figure(figsize=(WIDTH_IN, height_in), dpi=90)
    who = ", ".join(f"{k} {v}" for k, v in values.items() if k in ("patient", "device"))
    if any(v["name"] == "cfg_threshold_deg" for v in dash["templating"]["list"]):
        stored = "stored" if vals.get("cfg_threshold_deg") else "defaults"
        who += f" - zones from {vals['threshold_deg']} / {vals['severe_deg']} deg ({stored})"
    t0, t1 = (dt.datetime.fromtimestamp(t / 1e9, tz=dt.UTC) for t in (start_ns, end_ns))
    end = f"{t1:%H:%M}" if t1.date() == t0.date() else f"{t1:%Y-%m-%d %H:%M}"
    fig.suptitle(f"{dash['title']} - {who} - {t0:%Y-%m-%d %H:%M} to {end} UTC", fontsize=13, weight="bold")
    for panel in dash["panels"]:
        g = panel["gridPos"]
        left = 0.05 + 0.94 * g["x"] / 24
        top_in = HEADER_IN + g["y"] * ROW_IN + TITLE_IN
        bottom_in = HEADER_IN + (g["y"] + g["h"]) * ROW_IN - TICKS_IN
        ax = fig.add_axes((left, 1 - bottom_in / height_in, 0.94 * g["w"] / 24 - 0.02,
                           (bottom_in - top_in) / height_in))
        interval = grafana_interval(range_s, panel.get("interval", ""))
        title = expand(panel["title"].replace("$timeFilter", ""), vals, start_ns // 10**6, end_ns // 10**6, interval)
        ax.set_title(title, fontsize=10, loc="left")

        def run(q: str, interval: str = interval) -> list[dict[str, Any]]:
            return store.query(expand(q, vals, start_ns // 10**6, end_ns // 10**6, interval))

        res = visible(panel, evaluate(panel, run))
        kind = panel["type"]
        if kind == "timeseries":
            _draw_timeseries(ax, panel, res, _seconds(interval), (start_ns, end_ns), marks)
        elif kind == "stat":
            _draw_stat(ax, panel, res)
        elif kind == "state-timeline":
            _draw_state_timeline(ax, panel, res, _seconds(interval), (start_ns, end_ns))
        elif kind == "piechart":
            _draw_pie(ax, panel, res)
        elif kind == "table":
            _draw_table(ax, panel, res, end_ns)
        ax.tick_params(labelsize=7)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    _LOGGER.info("rendered %s", path)
    return path


def render_all(store: InfluxHttp, out_dir: Path, start_ns: int, end_ns: int, patient: str,
               device: str = ".*") -> list[Path]:
    """One PNG per dashboard into ``out_dir`` (the clinic overview shows every patient)."""
    paths = []
    for name, build in DASHBOARDS.items():
        dash = build()
        values = {"patient": ".*" if name.startswith("clinic") else patient, "device": device}
        paths.append(render_dashboard(dash, store, start_ns, end_ns, values, out_dir / name.replace(".json", ".png")))
    return paths


def main(argv: list[str] | None = None) -> int:
    """``python -m spinewatch.service.dashboards.render``: PNG previews from an InfluxDB 1.x database."""
    import argparse

    from spinewatch.service.storage import Influx1Store

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--influx-url", required=True, help="e.g. http://127.0.0.1:8086")
    p.add_argument("--db", default="spinewatch")
    p.add_argument("--patient", required=True)
    p.add_argument("--device", default=".*", help="device id or regex (default: all)")
    p.add_argument("--start", required=True, help="UTC ISO time, e.g. 2026-11-25T08:00")
    p.add_argument("--end", required=True, help="UTC ISO time")
    p.add_argument("--out", default="previews", help="output folder")
    a = p.parse_args(argv)

    def ns(s: str) -> int:
        return int(dt.datetime.fromisoformat(s).replace(tzinfo=dt.UTC).timestamp() * 1e9)

    for path in render_all(Influx1Store(a.influx_url, a.db), Path(a.out), ns(a.start), ns(a.end), a.patient, a.device):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
