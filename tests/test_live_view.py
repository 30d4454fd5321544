"""The patient's live view (`spinewatch demo --speed 1`): fits any width, shows what the patient needs."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import math
import re

import pytest

from spinewatch.model import Activity, HapticAlert
from spinewatch.service.bridge.loop import HapticEvent, LiveStatus
from spinewatch.service.config import Config
from spinewatch.service.ops.demo import run_demo
from spinewatch.service.ops.live_view import SLOUCH_STYLE, DemoConsole, Field, LiveState, fit_fields, live_line

T0_NS = 1_796_371_200 * 10**9  # 2026-12-04 08:00 UTC


def _status(slouching: bool, t_s: float = 3723.0, **kw: object) -> LiveStatus:
    args: dict[str, object] = dict(
        t_ns=T0_NS + int(t_s * 1e9), elapsed_s=t_s, flexion_deg=34.6 if slouching else 3.2, lateral_deg=-4.1,
        slouching=slouching, activity=Activity.UPRIGHT_STILL, slouch_count=7, upright_neutral_pct=81.0,
        samples=int(t_s * 100), time_neutral_pct=76.4, threshold_deg=20.0)
    args.update(kw)
    return LiveStatus(**args)  # type: ignore[arg-type]


def _draws(text: str) -> list[str]:
    """Every line and every in-place redraw of a terminal stream, without the clear-to-end codes."""
    plain = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)
    return [part for line in plain.split("\n") for part in line.split("\r") if part]


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("width", [80, 120])
def test_the_live_view_fits_the_terminal_and_keeps_the_patients_fields(width, monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    buf = _Tty()
    console = DemoConsole(8 * 3600.0, live=True, stream=buf, width=width, state=LiveState(tz=dt.UTC))
    console.status(_status(False, t_s=3600.0))
    console._last = 0.0
    console.status(_status(True, t_s=3700.0))
    console.haptic(HapticEvent(t_sensor_ns=3_700 * 10**9, decided_mono_ns=0, pattern="double"))
    console.status(_status(True, t_s=3745.0))  # a redraw after the alert line
    console.alert(HapticAlert("p", "d", T0_NS + 3_700 * 10**9, 34.6, True, 23.0))
    console.status(_status(False, t_s=3760.0, slouch_count=8))
    assert SLOUCH_STYLE + "SLOUCHING" in buf.getvalue()  # a terminal shows the slouch state in colour
    draws = _draws(buf.getvalue())
    assert draws and max(len(d) for d in draws) <= width - 1, [d for d in draws if len(d) >= width]
    slouching = [d for d in draws if "SLOUCHING" in d]
    assert slouching, draws
    # 45 s into the slouch: its duration so far, the angle, today's figures
    assert "SLOUCHING 0:45" in slouching[-1] and "34.6 deg" in slouching[-1]
    assert "76 % neutral" in slouching[-1] and "7 slouches" in slouching[-1]
    assert any("BUZZ: haptic alert #1" in d for d in draws)
    assert any("alert of 09:01:40 answered: upright after 23 s" in d for d in draws)
    last = draws[-1]
    assert "upright" in last and "8 slouches" in last and "1 alerts" in last
    if width >= 120:  # room for more: the time of day, the activity, wear time
        assert "09:02:40" in last and "upright  still" in last and "worn 1:02:40" in last
    else:
        assert "worn" not in last and "still" not in last


def test_a_lean_past_the_threshold_shows_before_the_slouch_is_confirmed():
    state = LiveState()
    assert "upright" in live_line(_status(False, t_s=100.0), state, 119)
    assert "leaning 0:00" in live_line(_status(False, t_s=200.0, flexion_deg=31.0), state, 119)
    assert "leaning 0:20" in live_line(_status(False, t_s=220.0, flexion_deg=31.0), state, 119)
    # confirmed after its minimum duration: the slouch counts from the start of the lean
    assert "SLOUCHING 0:35" in live_line(_status(True, t_s=235.0), state, 119)
    assert "lying" in live_line(_status(False, t_s=300.0, flexion_deg=-88.0, activity=Activity.LYING), state, 119)


@pytest.mark.parametrize("width", [20, 40, 60, 80, 100, 160])
def test_fields_give_way_by_priority_and_never_exceed_the_width(width):
    line = live_line(_status(True), LiveState(), width)
    assert len(line) <= width
    assert "SLOUCH" in line  # the state is the last thing to go
    if width >= 40:
        assert re.search(r"34\.6 ?deg|35deg", line) and "76" in line
    if width >= 160:
        assert "side -4.1 deg" in line


def test_fit_fields_drops_the_least_important_first():
    fields = [Field(("aaaa", "a"), 0), Field(("bbbb", ""), 9), Field(("cccc", "c"), 5)]
    assert fit_fields(fields, 14, sep=" ") == "aaaa bbbb cccc"
    assert fit_fields(fields, 11, sep=" ") == "aaaa cccc"
    assert fit_fields(fields, 8, sep=" ") == "aaaa c"
    assert fit_fields(fields, 3, sep=" ") == "a c"


def test_the_live_neutral_share_is_the_summarys(tmp_path):
    """The last live status of a demo day says what the summary of the stored day says."""
    seen: list[LiveStatus] = []
    result = asyncio.run(run_demo(Config(), 900.0, None, tmp_path, seed=3, on_status=seen.append))
    live = seen[-1].time_neutral_pct
    assert math.isfinite(live) and 0.0 < result.summary.time_neutral_pct < 100.0
    assert live == pytest.approx(result.summary.time_neutral_pct, abs=0.01)


@pytest.mark.parametrize("width", [40, 79, 119])
def test_the_progress_line_keeps_the_share_and_the_eta_at_any_width(width):
    from spinewatch.service.ops.live_view import progress_line

    fields = [Field(("3/5 patients done", ""), 2), Field(("109 k samples/s", ""), 3), Field(("214 slouches", ""), 4)]
    line = progress_line(0.4237, width, fields, eta_s=125.0)
    assert len(line) <= width and "42.4 %" in line and "ETA 2:05" in line
    if width >= 79:
        assert line.startswith("[") and "3/5 patients done" in line
