"""The demo's console: the patient's live view (real-time speeds) or a progress bar (``max``).

Every line fits the terminal's width, whatever it is: a line is built from fields in priority
order, and when it is too wide the least important field is shortened, then dropped, until it
fits (:func:`fit_fields`). The live view shows what a patient needs, most important first:

1. the clear slouch state (``SLOUCHING 0:45`` / ``leaning 0:12`` before a slouch is confirmed /
   ``upright`` / ``lying``), and the angle;
2. today's figures: time neutral (the summary's definition: :mod:`spinewatch.signal.neutral`),
   slouches, haptic alerts;
3. the time of day, the activity and the lateral bend.

Haptic alerts, the outcome of each alert and each finished slouch are printed as lines of their
own above the status line, as they happen. On a terminal the status line is redrawn in place
(the slouch state in white on red, unless ``NO_COLOR`` is set); elsewhere (a log, a pipe) it is
printed every few seconds.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

from spinewatch.model import Activity

if TYPE_CHECKING:
    from spinewatch.model import HapticAlert, SlouchEvent
    from spinewatch.service.bridge.loop import HapticEvent, LiveStatus

SEP = "  "  # between two fields
REDRAW_TTY_S = 0.2  # a terminal redraws the status line at most this often
REDRAW_LOG_S = 5.0  # a log gets a status line this often
SLOUCH_STYLE = "\x1b[1;97;41m"  # bold white on red (not on a log, nor with NO_COLOR set)


def fmt_hms(seconds: float) -> str:
    """``H:MM:SS`` of a duration in seconds."""
    s = int(max(0.0, seconds))
    return f"{s // 3600:d}:{s // 60 % 60:02d}:{s % 60:02d}"


def fmt_ms(seconds: float) -> str:
    """``M:SS`` (under an hour) or ``H:MM:SS`` of a duration in seconds."""
    s = int(max(0.0, seconds))
    return f"{s // 60:d}:{s % 60:02d}" if s < 3600 else fmt_hms(s)


@dataclass(frozen=True, slots=True)
class Field:
    """One field of a line: its variants from the longest to the shortest, and its priority.

    Attributes:
        variants: texts, longest first; the last may be "" (the field can be dropped).
        priority: lower is more important; the highest number is shortened first.
    """

    variants: tuple[str, ...]
    priority: int


def fit_fields(fields: Sequence[Field], width: int, sep: str = SEP) -> str:
    """The fields joined by ``sep``, shortened by priority until the line is <= ``width``.

    The least important field that can still be shortened is shortened one step at a time
    (dropped once empty); then, most important first, fields get back the longer variants that
    still fit. If even the shortest variants do not fit, the line is cut at ``width``.
    """
    level = [0] * len(fields)

    def line() -> str:
        return sep.join(t for f, k in zip(fields, level, strict=True) if (t := f.variants[k]))

    order = sorted(range(len(fields)), key=lambda i: -fields[i].priority)
    text = line()
    while len(text) > width:
        for i in order:
            if level[i] < len(fields[i].variants) - 1:
                level[i] += 1
                break
        else:
            return text[: max(0, width)]
        text = line()
    for i in reversed(order):  # give back, most important first, what still fits
        while level[i] > 0:
            level[i] -= 1
            if len(longer := line()) > width:
                level[i] += 1
                break
            text = longer
    return text


def _leaning(st: LiveStatus) -> bool:
    """Forward past the threshold, not lying (a slouch once it has lasted long enough)."""
    return st.activity != Activity.LYING and math.isfinite(st.threshold_deg) and st.flexion_deg >= st.threshold_deg


def _state_texts(st: LiveStatus, slouch_s: float) -> tuple[str, ...]:
    if st.slouching:
        return (f"SLOUCHING {fmt_ms(slouch_s)} - sit up", f"SLOUCHING {fmt_ms(slouch_s)}", "SLOUCHING", "SLOUCH")
    if st.activity == Activity.LYING:
        return ("lying", "lying")
    if _leaning(st):
        return (f"leaning {fmt_ms(slouch_s)}", "leaning", "lean")
    return ("upright", "ok")


_ACTIVITY = {Activity.UPRIGHT_STILL: "still", Activity.UPRIGHT_MOVING: "moving"}  # lying: in the state


def _pct(x: float) -> str:
    return "--" if not math.isfinite(x) else f"{x:.0f}"


@dataclass
class LiveState:
    """What the live view remembers between redraws (when the current slouch started, the
    alerts so far, the last status)."""

    slouch_start_ns: int | None = None
    buzzes: int = 0
    corrected: int = 0
    last: Any = None
    tz: dt.tzinfo | None = None  # the clock's time zone; None: the machine's

    def update(self, st: LiveStatus) -> float:
        """Remember ``st``; how long the current lean or slouch has lasted, s (from the first status
        past the threshold: a slouch is confirmed only after its minimum duration; 0 when upright)."""
        self.last = st
        if not (st.slouching or _leaning(st)):
            self.slouch_start_ns = None
            return 0.0
        if self.slouch_start_ns is None:
            self.slouch_start_ns = st.t_ns
        return (st.t_ns - self.slouch_start_ns) / 1e9


def live_fields(st: LiveStatus, state: LiveState) -> list[Field]:
    """The live view's fields for one status, in display order (see the module docstring)."""
    slouch_s = state.update(st)
    clock = dt.datetime.fromtimestamp(st.t_ns / 1e9, tz=state.tz or dt.UTC)
    if state.tz is None:
        clock = clock.astimezone()
    neutral = _pct(st.time_neutral_pct)
    return [
        Field((f"{clock:%H:%M:%S}", f"{clock:%H:%M}", ""), 5),
        Field((f"bend {st.flexion_deg:5.1f} deg", f"{st.flexion_deg:5.1f} deg", f"{st.flexion_deg:.0f}deg"), 0),
        Field(_state_texts(st, slouch_s), 0),
        Field((f"side {st.lateral_deg:.1f} deg", ""), 7),
        Field((_ACTIVITY.get(st.activity, ""), ""), 6),
        Field((f"today: {neutral} % neutral", f"{neutral} % neutral", f"{neutral}%ok"), 1),
        Field((f"{st.slouch_count} slouches", f"{st.slouch_count} sl"), 2),
        Field((f"{state.buzzes} alerts ({state.corrected} answered)", f"{state.buzzes} alerts", f"{state.buzzes}al",
               ""), 3),
        Field((f"worn {fmt_hms(st.elapsed_s)}", ""), 4),
    ]


def live_line(st: LiveStatus, state: LiveState, width: int) -> str:
    """The live status line for ``st`` at most ``width`` characters wide."""
    return fit_fields(live_fields(st, state), width)


def progress_line(frac: float, width: int, fields: Sequence[Field], eta_s: float | None = None) -> str:
    """``[####----] 42 %  ETA 1:05  <fields>`` fitting ``width``: the bar gives way first."""
    frac = min(1.0, max(0.0, frac))
    eta = [Field((f"ETA {fmt_ms(eta_s)}", fmt_ms(eta_s)), 1)] if eta_s is not None and math.isfinite(eta_s) else []
    head = [Field((f"{100 * frac:5.1f} %", f"{100 * frac:.0f}%"), 0), *eta, *fields]
    rest = fit_fields(head, width)
    room = width - len(rest) - len(SEP) - 2
    if room >= 8:
        n = min(30, room)
        filled = int(n * frac)
        return f"[{'#' * filled}{'-' * (n - filled)}]{SEP}{rest}"
    return rest


def terminal_width(stream: TextIO) -> int:
    """Columns of the terminal behind ``stream`` (80 when unknown)."""
    try:
        return shutil.get_terminal_size((80, 24)).columns if stream.isatty() else 80
    except (OSError, ValueError):
        return 80


@dataclass
class DemoConsole:
    """Live view (``live``: real-time speeds) or progress bar with ETA (``max``), on ``stream``.

    Args:
        duration_s: the simulated time, seconds (for the progress bar).
        live: draw the patient's live view instead of the progress bar.
        stream: where to draw (stderr by default).
        width: fixed width in columns; None follows the terminal (re-read at each redraw).
    """

    duration_s: float
    live: bool
    stream: TextIO = field(default_factory=lambda: sys.stderr)
    width: int | None = None
    state: LiveState = field(default_factory=LiveState)

    def __post_init__(self) -> None:
        self.tty = self.stream.isatty()
        self._last = 0.0
        self._drawn = False
        self._t0 = time.perf_counter()

    def _width(self) -> int:
        # one column short of the edge: some terminals wrap a line that fills the last column
        return max(10, (self.width or terminal_width(self.stream)) - 1)

    def _draw(self, line: str) -> None:
        if self.tty:
            self.stream.write("\r" + line + "\x1b[K")
            self._drawn = True
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def _say(self, text: str) -> None:
        """A line of its own above the status line."""
        self.end_line()
        self.stream.write(text[: self._width()] + "\n")
        self.stream.flush()
        self._last = 0.0  # redraw the status line at the next status

    def status(self, st: LiveStatus) -> None:
        now = time.perf_counter()
        if self.live:
            self.state.update(st)
        if now - self._last < (REDRAW_TTY_S if self.tty else REDRAW_LOG_S):
            return
        self._last = now
        w = self._width()
        if self.live:
            line = live_line(st, self.state, w)
            if self.tty and not os.environ.get("NO_COLOR"):  # the slouch state in white on red
                line = re.sub(r"SLOUCH(ING)?", lambda m: f"{SLOUCH_STYLE}{m.group(0)}\x1b[0m", line, count=1)
            self._draw(line)
            return
        frac = min(1.0, st.elapsed_s / self.duration_s) if self.duration_s > 0 else 1.0
        wall = now - self._t0
        eta = wall * (1 - frac) / frac if frac > 0.01 else None
        rate = st.samples / max(1e-9, wall)
        self._draw(progress_line(frac, w, [
            Field((f"{fmt_hms(st.elapsed_s)} simulated", ""), 3),
            Field((f"{rate / 1e3:,.0f} k samples/s", ""), 4),
            Field((f"{st.slouch_count} slouches", ""), 2),
        ], eta))

    def event(self, ev: SlouchEvent) -> None:
        if self.live:
            self._say(f"{self._clock(ev.start_ns)}  slouch over: {fmt_ms(ev.duration_s)}, "
                      f"peak {ev.peak_deg:.0f} deg")

    def haptic(self, ev: HapticEvent) -> None:
        """A buzz, as it happens."""
        self.state.buzzes += 1
        if self.live:
            st = self.state.last
            angle = f" (bend {st.flexion_deg:.0f} deg)" if st is not None else ""
            when = self._clock(st.t_ns) if st is not None else ""
            self._say(f"{when}  BUZZ: haptic alert #{self.state.buzzes} - sit up{angle}")

    def alert(self, a: HapticAlert) -> None:
        """An alert's outcome, once known."""
        if a.corrected:
            self.state.corrected += 1
        if self.live:
            outcome = (f"answered: upright after {a.response_s:.0f} s" if a.corrected and a.response_s is not None
                       else "not answered within the response window")
            st = self.state.last
            now = self._clock(st.t_ns) if st is not None else self._clock(a.t_ns)
            self._say(f"{now}  alert of {self._clock(a.t_ns)} {outcome}")

    def _clock(self, t_ns: int) -> str:
        t = dt.datetime.fromtimestamp(t_ns / 1e9, tz=self.state.tz or dt.UTC)
        return f"{(t if self.state.tz else t.astimezone()):%H:%M:%S}"

    def end_line(self) -> None:
        if self.tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
        self._drawn = False

    def stage(self, text: str) -> None:
        self.end_line()
        self._last = 0.0
        self.stream.write(f"- {text}\n")
        self.stream.flush()
