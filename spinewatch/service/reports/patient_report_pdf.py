"""The patient report as a PDF (matplotlib PdfPages) and one PNG per page: what a therapist files."""

from __future__ import annotations

import datetime as dt
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from spinewatch.service.reports.patient_report import PatientReport, settings_rows

PAGE_SIZE_IN = (11.69, 8.27)  # A4 landscape
PNG_DPI = 110
COLOR_NEUTRAL = "#5cb85c"
COLOR_MILD = "#EAB839"
COLOR_SEVERE = "#d9534f"
COLOR_LINE = "#1f4e79"
BAND_GREY = "#bbbbbb"
PAGES = 3  # the fixed pages; a range of more than RTM_ROWS_SUMMARY periods adds RTM pages
RTM_ROWS_SUMMARY = 6  # RTM periods that fit on the summary page (the first six: 180 days)
RTM_ROWS_PER_PAGE = 24  # RTM periods on each added page (two years of 30-day periods)
RTM_COLUMNS = ["from", "to", "days", "w/ data", "2-15 d", "16+ d"]
DATE_LABEL_IN = 0.75  # room a "07 Feb" tick label needs at 10 pt, inches
MONTH_LABEL_IN = 0.95  # room a "Feb 2026" tick label needs, inches


def png_paths(out: Path, pages: int = PAGES) -> list[Path]:
    """``report.pdf`` -> ``report-1.png``, ``report-2.png``, ..."""
    stem = out.with_suffix("") if out.suffix.lower() == ".pdf" else out
    return [stem.parent / f"{stem.name}-{k}.png" for k in range(1, pages + 1)]


def rtm_rows(r: PatientReport) -> list[list[str]]:
    """Every RTM period of the report as a table row (columns :data:`RTM_COLUMNS`)."""
    return [[f"{p.start:%Y-%m-%d}", f"{p.end:%Y-%m-%d}", f"{p.days}", f"{p.days_with_data}",
             "met" if p.meets_2_to_15_days else ("16+" if p.meets_16_plus_days else "not met"),
             "met" if p.meets_16_plus_days else "not met"]
            for p in r.rtm]


def rtm_page_rows(r: PatientReport) -> list[list[list[str]]]:
    """The rows of each added RTM page: none when every period fits on the summary page,
    else every period (the summary page's too, so one page lists the whole range), in chunks
    of :data:`RTM_ROWS_PER_PAGE`."""
    rows = rtm_rows(r)
    if len(rows) <= RTM_ROWS_SUMMARY:
        return []
    return [rows[i:i + RTM_ROWS_PER_PAGE] for i in range(0, len(rows), RTM_ROWS_PER_PAGE)]


def page_count(r: PatientReport) -> int:
    """Pages of the report: the three fixed ones plus the added RTM pages."""
    return PAGES + len(rtm_page_rows(r))


def _fmt(x: float, nd: int = 1, unit: str = "") -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:,.{nd}f}{unit}"


def _header(fig: Any, r: PatientReport, title: str, page: int) -> None:
    pages = page_count(r)
    fig.text(0.04, 0.965, f"SpineWatch posture report - patient {r.patient}", fontsize=15, weight="bold", va="top")
    fig.text(0.04, 0.925, f"{r.first:%d %b %Y} to {r.last:%d %b %Y} "
             f"({len(r.dates)} day{'s' if len(r.dates) != 1 else ''}; days and hours in "
             f"{r.tz}, from {r.tz_source})    {title}", fontsize=10, va="top")
    fig.text(0.04, 0.015, f"Page {page} of {pages}. Angles: trunk flexion relative to the calibrated neutral posture "
             f"(forward +), degrees. Data: {r.source}. Definitions: docs/reports.md.",
             fontsize=7, color="gray")


def _date_axis(ax: Any, dates: list[dt.date]) -> None:
    import matplotlib.dates as mdates

    # as many labels as the axes' width holds: one tick per day, or every k-th day (an auto
    # locator puts hourly ticks, all labelled with the same date, on a report of a day or two);
    # months on ranges of more than three months (day labels every few weeks collide)
    fig = ax.get_figure()
    width_in = ax.get_position().width * fig.get_figwidth()
    if len(dates) <= 92:
        fit = max(2, int(width_in / DATE_LABEL_IN))
        ax.xaxis.set_major_locator(mdates.DayLocator(interval=max(1, -(-len(dates) // fit))))
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%d %b"))
    else:
        fit = max(2, int(width_in / MONTH_LABEL_IN))
        months = (dates[-1].year - dates[0].year) * 12 + dates[-1].month - dates[0].month + 1
        ax.xaxis.set_major_locator(mdates.MonthLocator(interval=max(1, -(-months // fit))))
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%b %Y"))
    # datetimes, not dates: date - timedelta(days=0.6) drops the fraction and a one-day
    # report would get identical limits
    first, last = (dt.datetime.combine(d, dt.time()) for d in (dates[0], dates[-1]))
    ax.set_xlim(first - dt.timedelta(hours=14), last + dt.timedelta(hours=14))
    ax.set_xlabel(f"local date ({dates[0]:%Y})" if dates[0].year == dates[-1].year else "local date")


def _table(ax: Any, rows: list[list[str]], col_labels: list[str], title: str, widths: list[float],
           font: float = 9) -> None:
    ax.axis("off")
    ax.set_title(title, fontsize=11, loc="left")
    if not rows:
        return
    t = ax.table(cellText=rows, colLabels=col_labels, loc="upper left", cellLoc="left", colLoc="left",
                 colWidths=widths)
    t.auto_set_font_size(False)
    t.set_fontsize(font)
    # each column as wide as its longest text (header included), so that no cell is clipped
    # or overflows; the widths given are the minimum
    t.auto_set_column_width(list(range(len(col_labels))))
    t.scale(1, 1.3)
    for (row, _), cell in t.get_celld().items():
        cell.set_linewidth(0.3)
        if row == 0:
            cell.set_text_props(weight="bold")


def _page_summary(fig: Any, r: PatientReport) -> None:
    t = r.totals
    _header(fig, r, "Summary and remote-monitoring compliance", 1)
    gs = fig.add_gridspec(2, 2, height_ratios=[1.0, 1.1], width_ratios=[1.1, 1.0], hspace=0.3, wspace=0.08,
                          top=0.86, bottom=0.08, left=0.06, right=0.97)
    figures = [
        ["Days with data", f"{t.days_with_data} of {len(r.dates)}", f"day with >= {r.min_wear_min:g} min of wear"],
        ["Wear time", f"{t.wear_time_min / 60:,.1f} h",
         f"{_fmt(t.wear_time_min / max(1, t.days_with_data) / 60)} h per day with data"],
        ["Time neutral", _fmt(t.time_neutral_pct, 1, " %"), "of worn minutes, mean flexion < threshold"],
        ["Slouch episodes", f"{t.slouch_count}", f"{_fmt(t.slouches_per_hour, 2)} per wear hour"],
        ["Longest slouch", f"{t.longest_slouch_s / 60:.1f} min", ""],
        ["Sitting bouts > 30 min", f"{t.sitting_bouts_over_30min}", ">= 95 % upright still for 30 min"],
        ["Lost in transit", f"{r.transit_lost_min:.0f} min",
         f"{r.transit_lost_min:.0f} minutes lost in transit ({r.transit_lost_messages} messages)"],
    ]
    _table(fig.add_subplot(gs[0, 0]), figures, ["figure", "value", "meaning"], "Key figures", [0.3, 0.16, 0.54])
    settings = []
    zone = ZoneInfo(r.tz)
    for rec, s in zip(r.settings, settings_rows(r), strict=True):
        settings.append([
            dt.datetime.fromtimestamp(rec.t_ns / 1e9, zone).strftime("%Y-%m-%d %H:%M"), str(s.get("author", "")),
            _fmt(s.get("threshold_deg", float("nan")), 0, " deg"), _fmt(s.get("severe_deg", float("nan")), 0, " deg"),
            _fmt(s.get("min_duration_s", float("nan")), 0, " s"), str(s.get("timezone", "")),
        ])
    ax_s = fig.add_subplot(gs[0, 1])
    _table(ax_s, settings[-8:], ["set (local)", "by", "slouch", "severe", "min slouch", "time zone"],
           "Settings in force (the one at the start, then each change)", [0.25, 0.1, 0.12, 0.12, 0.14, 0.27], font=8)
    if not settings:
        ax_s.text(0, 0.85, f"No settings stored for this patient: the defaults apply\n(slouch from "
                  f"{r.default_threshold_deg:g} deg, severe from {r.default_severe_deg:g} deg).", fontsize=9, va="top")
    elif len(settings) > 8:
        ax_s.text(0, 0.0, f"{len(settings) - 8} earlier changes not shown (see --format json).", fontsize=8)
    gs2 = gs[1, :].subgridspec(1, 2, width_ratios=[1.3, 2.0], wspace=0.15)
    rtm = rtm_rows(r)
    ax_rtm = fig.add_subplot(gs2[0])
    title = "RTM 30-day periods (days with data)"
    if len(rtm) > RTM_ROWS_SUMMARY:  # never silently: say what is not here, and where it is
        with_data = sum(1 for p in r.rtm[RTM_ROWS_SUMMARY:] if p.days_with_data)
        extra = len(rtm_page_rows(r))
        title = (f"RTM 30-day periods 1-{RTM_ROWS_SUMMARY} of {len(rtm)} (days with data)\n"
                 f"Periods {RTM_ROWS_SUMMARY + 1}-{len(rtm)} ({with_data} with data) are on "
                 f"page{'s' if extra > 1 else ''} {_page_list(PAGES + 1, PAGES + extra)}, with all {len(rtm)}")
    _table(ax_rtm, rtm[:RTM_ROWS_SUMMARY], RTM_COLUMNS, title, _RTM_WIDTHS, font=8)
    ax = fig.add_subplot(gs2[1])
    wear = np.array([d.wear_time_min for d in r.days])
    colors = [COLOR_NEUTRAL if d.has_data else "#999999" for d in r.days]
    scale, unit = (60.0, "h") if wear.max(initial=0.0) >= 120 else (1.0, "min")
    ax.bar(r.dates, wear / scale, color=colors, width=0.8)
    ax.axhline(r.min_wear_min / scale, color=COLOR_SEVERE, lw=1, ls="--",
               label=f"day with data from {r.min_wear_min:g} min")
    ax.set_ylabel(f"wear time ({unit} per day)")
    ax.set_title("Compliance: wear time per local day (green: day with data)", fontsize=11, loc="left")
    ax.set_ylim(0, max(1.0, float(wear.max(initial=0.0)) / scale) * 1.25)
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3, axis="y")
    _date_axis(ax, r.dates)


_RTM_WIDTHS = [0.22, 0.22, 0.1, 0.16, 0.15, 0.15]


def _page_list(first: int, last: int) -> str:
    return f"{first}" if first == last else f"{first}-{last}"


def _rtm_page(chunk: list[list[str]], start: int, total: int) -> Callable[[Any, PatientReport, int], None]:
    """A page listing RTM periods ``start + 1`` .. ``start + len(chunk)`` of ``total``."""

    def draw(fig: Any, r: PatientReport, page: int) -> None:
        _header(fig, r, "RTM 30-day periods", page)
        ax = fig.add_axes((0.06, 0.08, 0.6, 0.78))
        _table(ax, chunk, RTM_COLUMNS, f"RTM 30-day periods {start + 1}-{start + len(chunk)} of {total} "
               f"(days with data; a period is 30 local days from --from)", _RTM_WIDTHS, font=9)

    return draw


def _band(ax: Any, r: PatientReport, centre: float, sdc: float, unit: str) -> None:
    if math.isfinite(centre) and math.isfinite(sdc):
        ax.axhspan(centre - sdc, centre + sdc, color=BAND_GREY, alpha=0.45, lw=0,
                   label=f"baseline (first {r.baseline_days} days) +/- smallest detectable change "
                         f"(SDC95 {sdc:.1f}{unit})")
        ax.axhline(centre, color="gray", lw=0.8)
    elif math.isfinite(centre):
        ax.axhline(centre, color="gray", lw=0.8, label=f"baseline (first {r.baseline_days} days; fewer than 3 "
                                                       "days with data: no band)")


def _page_zones_trend(fig: Any, r: PatientReport) -> None:
    _header(fig, r, "Daily time in zones and trend", 2)
    gs = fig.add_gridspec(3, 1, hspace=0.5, top=0.87, bottom=0.08, left=0.07, right=0.97)
    ax = fig.add_subplot(gs[0])
    worn = np.array([d.worn_min for d in r.days], dtype=float)
    scale, unit = (60.0, "h") if worn.max(initial=0.0) >= 120 else (1.0, "min")
    neu = np.array([d.neutral_min for d in r.days]) / scale
    mild = np.array([d.mild_min for d in r.days]) / scale
    sev = np.array([d.severe_min for d in r.days]) / scale
    ax.bar(r.dates, neu, color=COLOR_NEUTRAL, width=0.8, label="neutral")
    ax.bar(r.dates, mild, bottom=neu, color=COLOR_MILD, width=0.8, label="mild")
    ax.bar(r.dates, sev, bottom=neu + mild, color=COLOR_SEVERE, width=0.8, label="severe")
    ax.set_ylabel(f"worn time ({unit} per day)")
    ax.set_title("Time in zones per day, by each minute's mean flexion (neutral below the slouch threshold, "
                 "severe from the severe threshold in force)", fontsize=10, loc="left")
    ax.set_ylim(0, max(1.0, float((neu + mild + sev).max())) * 1.3)
    ax.legend(fontsize=8, loc="upper left", ncols=3)
    ax.grid(alpha=0.3, axis="y")
    _date_axis(ax, r.dates)

    for pos, (values, centre, sdc, ylabel, title, unit) in enumerate([
        ([d.time_neutral_pct for d in r.days], r.baseline_neutral_pct, r.sdc_neutral_pct,
         "time neutral (% of worn time)", "Trend: time neutral per day", " points"),
        ([d.slouches_per_hour for d in r.days], r.baseline_slouches_per_hour, r.sdc_slouches_per_hour,
         "slouches per wear hour", "Trend: slouch episodes per wear hour per day", "/h"),
    ], start=1):
        ax = fig.add_subplot(gs[pos])
        _band(ax, r, centre, sdc, unit)
        # only days with data; the line breaks across days without
        v = np.array([x if d.has_data else np.nan for x, d in zip(values, r.days, strict=True)], dtype=float)
        ax.plot(r.dates, v, marker="o", ms=3, lw=1.2, color=COLOR_LINE, label="day with data")
        ax.set_ylabel(ylabel)
        ax.set_title(title + " (a day outside the grey band changed more than day-to-day noise)",
                     fontsize=10, loc="left")
        band_top = centre + sdc if math.isfinite(centre + sdc) else 0.0
        top = 130.0 if pos == 1 else max(1.0, float(np.nanmax(v, initial=0.0)), band_top) * 1.4
        ax.set_ylim(0, top)
        ax.legend(fontsize=8, loc="upper left", ncols=2)
        ax.grid(alpha=0.3)
        _date_axis(ax, r.dates)


def _page_hours(fig: Any, r: PatientReport) -> None:
    _header(fig, r, "Slouch timeline by hour of day", 3)
    gs = fig.add_gridspec(1, 2, width_ratios=[2.0, 1.0], wspace=0.25, top=0.87, bottom=0.09, left=0.095, right=0.96)
    ax = fig.add_subplot(gs[0])
    import matplotlib as mpl

    no_data = np.array([not d.has_data for d in r.days])
    m = np.ma.masked_array(r.by_hour, mask=np.repeat(no_data[:, None], 24, axis=1))
    cmap = mpl.colormaps["Reds"].with_extremes(bad="#d0d0d0")
    im = ax.imshow(m, aspect="auto", cmap=cmap, interpolation="nearest",
                   extent=(0, 24, len(r.dates) - 0.5, -0.5), vmin=0, vmax=max(1, int(m.max())))
    step = max(1, len(r.dates) // 20)
    fmt = "%a %d %b" if r.dates[0].year == r.dates[-1].year else "%d %b %Y"  # no ambiguous dates, same width
    ax.set_yticks(range(0, len(r.dates), step), [d.strftime(fmt) for d in r.dates[::step]], fontsize=7)
    ax.set_xticks(range(0, 25, 2))
    ax.set_xlabel(f"hour of day ({r.tz})")
    ax.set_ylabel("local date")
    ax.set_title("Slouch episodes per hour (by start); grey rows: no day with data", fontsize=10, loc="left")
    cb = fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02)
    cb.ax.yaxis.get_major_locator().set_params(integer=True)
    cb.set_label("episodes")
    ax2 = fig.add_subplot(gs[1])
    ax2.barh(np.arange(24) + 0.5, r.by_hour.sum(axis=0), height=0.8, color=COLOR_SEVERE)
    ax2.xaxis.get_major_locator().set_params(integer=True)
    ax2.set_ylim(24, 0)
    ax2.set_yticks(range(0, 25, 2))
    ax2.set_ylabel(f"hour of day ({r.tz})")
    ax2.set_xlabel("episodes over the whole period")
    ax2.set_title("All days together", fontsize=10, loc="left")
    ax2.grid(alpha=0.3, axis="x")


def _page_drawers(r: PatientReport) -> list[Callable[[Any, PatientReport, int], None]]:
    """``draw(fig, report, page_number)`` for every page, in order."""
    fixed: list[Callable[[Any, PatientReport, int], None]] = [
        lambda fig, r, _page: _page_summary(fig, r), lambda fig, r, _page: _page_zones_trend(fig, r),
        lambda fig, r, _page: _page_hours(fig, r)]
    total = len(r.rtm)
    return fixed + [_rtm_page(chunk, i * RTM_ROWS_PER_PAGE, total) for i, chunk in enumerate(rtm_page_rows(r))]


def page_texts(r: PatientReport) -> list[list[str]]:
    """Every text drawn on each page (titles, labels, then table cells row by row), as written
    to the PDF: what a reader can check without a PDF parser (tests)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.text import Text

    out = []
    for k, draw in enumerate(_page_drawers(r)):
        fig = plt.figure(figsize=PAGE_SIZE_IN, dpi=PNG_DPI)
        try:
            draw(fig, r, k + 1)
            fig.canvas.draw()
            texts = [t.get_text() for t in fig.findobj(Text) if t.get_text()]
            for ax in fig.axes:  # table cells, row by row
                for tbl in ax.tables:
                    cells = tbl.get_celld()
                    texts += [cells[rc].get_text().get_text() for rc in sorted(cells)]
            out.append(texts)
        finally:
            plt.close(fig)
    return out


def write_pdf(r: PatientReport, out: Path, progress: Callable[[str, int, int], None] | None = None) -> list[Path]:
    """Write ``out`` (PDF) and its pages as PNGs next to it; return every path written.

    Files are written under temporary names and renamed at the end, so a failure leaves
    nothing half-written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    pages = page_count(r)
    pngs = png_paths(out, pages)
    tmp = [p.with_name(f".{p.name}.tmp") for p in [out, *pngs]]
    try:
        with PdfPages(tmp[0], metadata={"Title": f"SpineWatch posture report {r.patient} {r.first} {r.last}",
                                        "Creator": "SpineWatch"}) as pdf:
            for k, draw in enumerate(_page_drawers(r)):
                fig = plt.figure(figsize=PAGE_SIZE_IN, dpi=PNG_DPI)
                try:
                    draw(fig, r, k + 1)
                    pdf.savefig(fig)
                    fig.savefig(tmp[k + 1], format="png")
                finally:
                    plt.close(fig)
                if progress:
                    progress("drawing pages", k + 1, pages)
        for t, final in zip(tmp, [out, *pngs], strict=True):
            os.replace(t, final)
    finally:
        for t in tmp:
            t.unlink(missing_ok=True)
    return [out, *pngs]
