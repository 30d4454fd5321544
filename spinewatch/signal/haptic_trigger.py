"""When to buzz: a pure, rate-limited haptic trigger fed with the tracker's output.

A slouch is *confirmed* when the tracker's ``state`` turns 1 (the patient has been
above the threshold for ``min_duration_s``). The trigger fires once per episode when
the episode has stayed confirmed for a further ``delay_s``, unless alerts are muted
(quiet hours, decided by the caller, or an activity in ``muted_activities``) or the
previous buzz was less than ``min_interval_s`` ago. Times are sensor times (ns), so
the decision does not depend on how fast data is processed; the caller performs the
write as soon as :meth:`HapticTrigger.update` returns a sample index.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

__all__ = ["HapticSettings", "HapticTrigger"]


@dataclass(frozen=True, slots=True)
class HapticSettings:
    """Haptic behaviour (built from the patient config).

    Attributes:
        enabled: False = never buzz.
        delay_s: time a slouch must stay confirmed before the buzz, s.
        min_interval_s: least time between two buzzes, s (sensor time).
        pattern, intensity_pct, duration_ms: what to play (profile's haptic command).
        muted_activities: activity codes (``spinewatch.signal.Activity``) during which
            no alert is given.
    """

    enabled: bool = True
    delay_s: float = 0.0
    min_interval_s: float = 60.0
    pattern: str = "double"
    intensity_pct: int = 60
    duration_ms: int = 400
    muted_activities: frozenset[int] = field(default_factory=frozenset)


class HapticTrigger:
    """Stateful trigger; feed it every tracker output in order."""

    def __init__(self) -> None:
        self._confirmed_since_ns: int | None = None
        self._fired_this_episode = False
        self._last_fire_ns: int | None = None
        self.fired = 0
        self.suppressed = 0

    def update(
        self,
        state: npt.NDArray[np.int8],
        activity: npt.NDArray[np.int8],
        t0_ns: int,
        dt_ns: int,
        settings: HapticSettings,
        quiet: bool = False,
    ) -> list[int]:
        """Indices (into this chunk) of the samples that trigger a buzz (usually none or one).

        Args:
            state: (N,) tracker state, 1 inside a confirmed slouch.
            activity: (N,) activity codes.
            t0_ns, dt_ns: sensor time of sample 0 and the sample period, ns.
            settings: current :class:`HapticSettings` (may change between calls).
            quiet: alerts muted for this chunk (quiet hours).
        """
        n = len(state)
        if n == 0:
            return []
        state = np.asarray(state)
        # fast paths (most chunks): nothing to decide, and the loop below would change nothing
        if self._confirmed_since_ns is None:
            if not state.any():
                return []
        elif self._fired_this_episode and state.all():
            return []
        delay_ns = round(settings.delay_s * 1e9)
        hits: list[int] = []
        # walk episode boundaries only (vectorised scan of transitions)
        s = np.asarray(state) != 0
        edges = np.flatnonzero(np.diff(np.r_[int(self._confirmed_since_ns is not None), s.astype(np.int8)]))
        i = 0
        bounds = [*edges.tolist(), n]
        for e in bounds:
            # segment [i, e) has constant state
            if i < e and s[i]:
                if self._confirmed_since_ns is None:
                    self._confirmed_since_ns = t0_ns + i * dt_ns
                    self._fired_this_episode = False
                if not self._fired_this_episode:
                    due = self._confirmed_since_ns + delay_ns
                    k = max(i, -(-(due - t0_ns) // dt_ns))
                    if k < e:
                        t_k = t0_ns + k * dt_ns
                        self._fired_this_episode = True  # decided, buzz or not
                        muted = (not settings.enabled or quiet
                                 or int(activity[k]) in settings.muted_activities
                                 or (self._last_fire_ns is not None
                                     and t_k - self._last_fire_ns < settings.min_interval_s * 1e9))
                        if muted:
                            self.suppressed += 1
                        else:
                            self._last_fire_ns = t_k
                            self.fired += 1
                            hits.append(k)
            elif i < e:
                self._confirmed_since_ns = None
            i = e
        return hits
