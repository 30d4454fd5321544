"""Therapist report of a session: summary figures, a PNG page and a CSV of slouch episodes."""

from __future__ import annotations

import csv
import datetime as dt
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from spinewatch.model import NS_PER_S, SlouchEvent
from spinewatch.service.config import DEFAULT_THRESHOLD_DEG
from spinewatch.service.storage import MinuteSeries, Record, Store, stored_duration_s
from spinewatch.signal.neutral import time_neutral_pct


@dataclass(frozen=True, slots=True)
class SessionSummary:
    """Figures of one patient over one period.

    Attributes:
        wear_time_min: minutes with posture data: the samples' own periods summed (wear seconds / 60).
        time_neutral_pct: share of worn minutes whose mean flexion is below the slouch
            threshold, % (the dashboards' definition, docs/dashboards.md; lying counts as
            neutral).
        slouch_count: episodes.
        slouches_per_hour: episodes per worn hour.
        longest_slouch_s: longest episode, seconds (0 if none).
        mean_flexion_deg: mean flexion over worn time, degrees.
        alerts: haptic alerts (buzzes) in the period.
        alerts_corrected: of those, followed by the end of the slouch within the patient's
            response window.
        median_response_s: median buzz-to-correction time of the corrected alerts, s; None if none.
    """

    wear_time_min: float
    time_neutral_pct: float
    slouch_count: int
    slouches_per_hour: float
    longest_slouch_s: float
    mean_flexion_deg: float
    alerts: int = 0
    alerts_corrected: int = 0
    median_response_s: float | None = None


def summarize(
    minutes: MinuteSeries, slouches: list[SlouchEvent], threshold_deg: float = DEFAULT_THRESHOLD_DEG,
    alerts: list[Record] | None = None,
) -> SessionSummary:
    """Summary figures from per-minute posture, the episode list and the ``alert`` points.

    Durations here (and in the CSV and the page) are :func:`stored_duration_s`, the stored 0.01 s.

    Wear time is the minutes' wear seconds (each sample counts its own message's period), so a
    sensor at 10 Hz is credited the same wear as one at 100 Hz; shares are weighted by it too.
    """
    wear_s = float(minutes.wear_s.sum())
    wear_min = wear_s / 60.0
    if wear_s > 0:
        neutral_frac = time_neutral_pct(minutes.flexion_mean_deg, minutes.wear_s, threshold_deg) / 100.0
        mean_flex = float(np.nansum(minutes.flexion_mean_deg * minutes.wear_s) / wear_s)
    else:
        neutral_frac, mean_flex = 1.0, float("nan")
    alerts = alerts or []
    responses = [float(a.fields["response_s"]) for a in alerts
                 if int(a.fields.get("corrected", 0)) and a.fields.get("response_s") is not None]
    return SessionSummary(
        wear_time_min=round(wear_min, 2),
        time_neutral_pct=round(100.0 * neutral_frac, 2),
        slouch_count=len(slouches),
        slouches_per_hour=round(len(slouches) / (wear_min / 60.0), 2) if wear_min > 0 else 0.0,
        longest_slouch_s=round(max((stored_duration_s(s) for s in slouches), default=0.0), 2),
        mean_flexion_deg=round(mean_flex, 2),
        alerts=len(alerts),
        alerts_corrected=sum(int(a.fields.get("corrected", 0)) for a in alerts),
        median_response_s=round(float(np.median(responses)), 2) if responses else None,
    )


def slouch_minutes_per_hour(slouches: list[SlouchEvent], hours: np.ndarray) -> np.ndarray:
    """Minutes of each UTC hour (``hours`` = ns // 3.6e12) covered by slouch episodes."""
    out = np.zeros(len(hours))
    h_ns = 3600 * NS_PER_S
    for s in slouches:
        a, b = s.start_ns, s.start_ns + int(stored_duration_s(s) * NS_PER_S)
        for k, h in enumerate(hours):
            lo, hi = int(h) * h_ns, (int(h) + 1) * h_ns
            out[k] += max(0, min(b, hi) - max(a, lo)) / (60 * NS_PER_S)
    return out


def _utc(ns: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ns / NS_PER_S, tz=dt.UTC)


def write_events_csv(slouches: list[SlouchEvent], path: Path) -> None:
    """CSV with units in the column names, one row per episode; ``end_utc`` is the start plus
    ``duration_s`` (the stored 0.01 s), so the two columns agree, as they always have."""
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["start_utc", "end_utc", "duration_s", "peak_deg", "mean_deg"])
        for s in slouches:
            end_ns = s.start_ns + int(round(stored_duration_s(s) * NS_PER_S))
            w.writerow([
                _utc(s.start_ns).isoformat(), _utc(end_ns).isoformat(), f"{stored_duration_s(s):.2f}",
                f"{s.peak_deg:.2f}", "" if s.mean_deg is None else f"{s.mean_deg:.2f}",
            ])


def write_report_png(
    patient: str, minutes: MinuteSeries, slouches: list[SlouchEvent], summary: SessionSummary,
    threshold_deg: float, path: Path, alerts: list[Record] | None = None,
) -> None:
    """One A4-landscape page: flexion per minute with slouches shaded and haptic alerts marked,
    slouch time per hour."""
    import matplotlib  # noqa: PLC0415 - heavy, only when a report is drawn

    matplotlib.use("Agg")
    import matplotlib.dates as mdates  # noqa: PLC0415
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig = plt.figure(figsize=(11.69, 8.27), dpi=110)
    gs = fig.add_gridspec(3, 1, height_ratios=[0.45, 2.2, 1.3], hspace=0.45, top=0.95, bottom=0.08)
    ax_t = fig.add_subplot(gs[0])
    ax_t.axis("off")
    first = _utc(int(minutes.t_ns[0])) if len(minutes.t_ns) else None
    period = (
        f"{first:%Y-%m-%d %H:%M} - {_utc(int(minutes.t_ns[-1]) + 60 * NS_PER_S):%H:%M} UTC"
        if first else "no data"
    )
    ax_t.text(0, 0.9, f"SpineWatch posture report - patient {patient}", fontsize=16, weight="bold",
              va="top")
    ax_t.text(0, 0.35, period, fontsize=11, va="top")
    facts = (
        f"Wear time {summary.wear_time_min / 60:.1f} h    Time neutral {summary.time_neutral_pct:.1f} %    "
        f"Slouches {summary.slouch_count} ({summary.slouches_per_hour:.1f}/h)    "
        f"Longest {summary.longest_slouch_s / 60:.1f} min    Mean flexion {summary.mean_flexion_deg:.1f} deg"
    )
    ax_t.text(0, -0.1, facts, fontsize=11, va="top")
    if summary.alerts:
        median = ("" if summary.median_response_s is None
                  else f", median time to correct {summary.median_response_s:.0f} s")
        ax_t.text(0, -0.55, f"Haptic alerts {summary.alerts}: {summary.alerts_corrected} corrected within the "
                  f"response window{median}", fontsize=11, va="top")

    ax = fig.add_subplot(gs[1])
    if len(minutes.t_ns):
        t = [_utc(int(x)) for x in minutes.t_ns]
        # matplotlib plots datetimes (its date converter); its stubs accept only numbers there
        ax.plot(t, minutes.flexion_mean_deg, lw=0.8, color="#1f4e79", label="flexion (1-min mean)")  # type: ignore[arg-type]
        for s in slouches:
            ax.axvspan(_utc(s.start_ns), _utc(s.start_ns + int(stored_duration_s(s) * NS_PER_S)),  # type: ignore[arg-type]
                       color="#d9534f", alpha=0.25, lw=0)
        ax.axhline(threshold_deg, color="#d9534f", ls="--", lw=1, label=f"slouch threshold {threshold_deg:g} deg")
        for i, ok in enumerate((1, 0)):
            marks = [a for a in alerts or [] if int(a.fields.get("corrected", 0)) == ok]
            if marks:
                ax.plot([_utc(a.t_ns) for a in marks],  # type: ignore[arg-type]
                        [float(a.fields.get("flexion_deg", 0.0)) + 8 for a in marks],
                        "v", color="#5cb85c" if ok else "#d9534f", ms=7, mec="black", mew=0.5,
                        label="haptic alert, corrected" if ok else "haptic alert, not corrected", zorder=3 + i)
        ax.axhspan(-threshold_deg, threshold_deg, color="#5cb85c", alpha=0.08, label="neutral zone")
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))
    ax.set_ylabel("flexion (deg, forward +)")
    title = "Trunk flexion relative to calibrated neutral; red = slouch episodes"
    ax.set_title(title + ("; triangles = haptic alerts" if alerts else ""), fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)  # below neutral: the flexion trace and the alerts are above

    ax2 = fig.add_subplot(gs[2])
    if len(minutes.t_ns):
        uniq = np.unique((minutes.t_ns // (3600 * NS_PER_S)).astype(np.int64))
        slouch_min = slouch_minutes_per_hour(slouches, uniq)
        labels = [_utc(int(h) * 3600 * NS_PER_S).strftime("%H:00") for h in uniq]
        ax2.bar(range(len(uniq)), slouch_min, color="#d9534f")
        ax2.set_xticks(range(len(uniq)), labels, fontsize=8, rotation=0 if len(uniq) <= 12 else 45)
    ax2.set_ylabel("slouching (min per hour)")
    ax2.set_title("Time in slouch per hour of day (UTC)", fontsize=11)
    ax2.grid(alpha=0.3, axis="y")
    fig.text(0.01, 0.01, "Angles from a back-worn IMU, relative to the neutral posture captured at the "
             "start. Generated by SpineWatch.", fontsize=7, color="gray")
    fig.savefig(path)
    plt.close(fig)


def build_report(
    store: Store, patient: str, start_ns: int, end_ns: int, threshold_deg: float, out_dir: Path,
) -> tuple[SessionSummary, Path, Path]:
    """Read the period from ``store`` and write ``report.png`` and ``slouch_events.csv``.

    Returns:
        ``(summary, png_path, csv_path)``.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    minutes = store.minutes(patient, start_ns, end_ns)
    slouches = store.episodes(patient, start_ns, end_ns)
    alerts = store.records("alert", patient, start_ns, end_ns)
    summary = summarize(minutes, slouches, threshold_deg, alerts)
    png = out_dir / "report.png"
    csv_path = out_dir / "slouch_events.csv"
    write_report_png(patient, minutes, slouches, summary, threshold_deg, png, alerts)
    write_events_csv(slouches, csv_path)
    (out_dir / "summary.json").write_text(json.dumps(asdict(summary), indent=2))
    return summary, png, csv_path
