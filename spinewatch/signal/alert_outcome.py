"""How the patient responded to each buzz: a pure tracker fed with the tracker's slouch state.

A buzz is only ever given inside a confirmed slouch (``state`` = 1). The patient has
*corrected* when ``state`` returns to 0, i.e. flexion fell below threshold - hysteresis (or
the patient lay down, which also ends a slouch), within the response window after the buzz;
the response time is from the buzz sample to the first sample with ``state`` 0. An alert
whose window runs out with ``state`` still 1 is *not corrected*. Times are sensor times
(ns), so outcomes do not depend on how the stream is chunked or how fast it is processed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from spinewatch.model import NS_PER_S

__all__ = ["AlertOutcome", "AlertOutcomes"]


@dataclass(frozen=True, slots=True)
class AlertOutcome:
    """A buzz and the patient's response.

    Attributes:
        t_sensor_ns: sensor time of the sample at which the buzz was decided, ns.
        flexion_deg: flexion relative to neutral at that sample, degrees.
        corrected: ``state`` returned to 0 within ``window_s`` after the buzz.
        response_s: buzz to the first sample with ``state`` 0, s; None if not corrected.
        window_s: the response window that applied, s.
    """

    t_sensor_ns: int
    flexion_deg: float
    corrected: bool
    response_s: float | None
    window_s: float


@dataclass(slots=True)
class _Open:
    t_sensor_ns: int
    flexion_deg: float
    window_ns: int
    window_s: float


class AlertOutcomes:
    """Open alerts waiting for their outcome; feed every tracker output in order."""

    def __init__(self) -> None:
        self._open: list[_Open] = []

    @property
    def pending(self) -> int:
        """Alerts whose outcome is not known yet."""
        return len(self._open)

    def add(self, t_sensor_ns: int, flexion_deg: float, window_s: float) -> None:
        """Start following a buzz decided at sensor time ``t_sensor_ns`` (ns).

        Raises:
            ValueError: ``window_s`` not > 0.
        """
        if not window_s > 0:
            raise ValueError(f"window_s must be > 0, got {window_s!r}")
        self._open.append(_Open(int(t_sensor_ns), float(flexion_deg), round(window_s * NS_PER_S), float(window_s)))

    def update(self, state: npt.NDArray[np.int8], t0_ns: int, dt_ns: int) -> list[AlertOutcome]:
        """Outcomes decided by this chunk of tracker output (in buzz order).

        Args:
            state: (N,) tracker state, 1 inside a confirmed slouch.
            t0_ns, dt_ns: sensor time of sample 0 and the sample period, ns.
        """
        n = len(state)
        if n == 0 or not self._open:
            return []
        s = np.asarray(state)
        last_ns = t0_ns + (n - 1) * dt_ns
        done: list[AlertOutcome] = []
        still: list[_Open] = []
        for a in self._open:
            first = max(0, (a.t_sensor_ns - t0_ns) // dt_ns + 1)  # first sample after the buzz
            zeros = np.flatnonzero(s[first:] == 0) if first < n else np.empty(0, np.int64)
            if zeros.size:
                response_ns = t0_ns + (first + int(zeros[0])) * dt_ns - a.t_sensor_ns
                ok = response_ns <= a.window_ns
                done.append(AlertOutcome(a.t_sensor_ns, a.flexion_deg, ok, response_ns / NS_PER_S if ok else None,
                                         a.window_s))
            elif last_ns - a.t_sensor_ns >= a.window_ns:  # the whole window seen, still slouching
                done.append(AlertOutcome(a.t_sensor_ns, a.flexion_deg, False, None, a.window_s))
            else:
                still.append(a)
        self._open = still
        return done

    def flush(self) -> list[AlertOutcome]:
        """The stream ended: every open alert is not corrected (no correction was seen)."""
        done = [AlertOutcome(a.t_sensor_ns, a.flexion_deg, False, None, a.window_s) for a in self._open]
        self._open = []
        return done
