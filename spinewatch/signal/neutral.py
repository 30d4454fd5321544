"""Time neutral: the one definition the live view, the session summary and the reports share.

A worn minute is neutral when its mean flexion is below the slouch threshold (lying counts as
neutral: its flexion is far below any threshold); time neutral is the neutral minutes' wear
seconds over all wear seconds, %. Minutes are UTC minutes (``t_ns // 60e9``), as in the store's
per-minute series, and each sample counts its own period as wear (its message's ``dt_ns``).

:class:`NeutralMinutes` builds the same per-minute series from the samples as they stream, so a
live "% neutral" reads what the summary of the same samples will say. Pure: no I/O.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from spinewatch.signal.minute_summary import NS_PER_MIN


def time_neutral_pct(flexion_mean_deg: npt.ArrayLike, wear_s: npt.ArrayLike, threshold_deg: float) -> float:
    """Share of wear time in minutes whose mean flexion is below ``threshold_deg``, %.

    Args:
        flexion_mean_deg: each minute's mean flexion relative to neutral, degrees.
        wear_s: each minute's wear time, seconds.
        threshold_deg: the slouch threshold, degrees.

    Returns:
        0..100; NaN when nothing was worn.
    """
    flex = np.asarray(flexion_mean_deg, dtype=np.float64)
    wear = np.asarray(wear_s, dtype=np.float64)
    total = float(wear.sum())
    if not total > 0:
        return float("nan")
    return 100.0 * float(wear[flex < threshold_deg].sum()) / total


class NeutralMinutes:
    """Per-UTC-minute flexion sums and wear seconds of a stream of samples."""

    def __init__(self) -> None:
        self._flex_sum_deg: dict[int, float] = {}
        self._count: dict[int, int] = {}
        self._wear_s: dict[int, float] = {}
        # minutes before the latest one no longer change (the stream runs forward): their
        # neutral and total wear at ``_cache_thr`` are summed once
        self._keys: list[int] = []  # minutes in the order they appeared
        self._latest = -(2**62)
        self._cache_thr = float("nan")
        self._cache_i = 0  # self._keys[:_cache_i] are in the cache
        self._cache_neutral_s = 0.0
        self._cache_wear_s = 0.0

    def add(self, t0_ns: int, dt_ns: int, flexion_deg: npt.NDArray[np.floating]) -> None:
        """Samples at ``t0_ns + k * dt_ns`` (UTC ns) with their flexion, degrees; samples
        without a flexion estimate (NaN, e.g. before the neutral posture is known) are not
        worn time, as in the store."""
        flex = np.asarray(flexion_deg, dtype=np.float64)
        n = len(flex)
        if n == 0:
            return
        ok = ~np.isnan(flex)
        first, last = t0_ns // NS_PER_MIN, (t0_ns + (n - 1) * dt_ns) // NS_PER_MIN
        if first == last:  # the usual case: a message within one minute
            k = int(np.count_nonzero(ok))
            if k:
                self._acc(int(first), float(np.sum(flex[ok])), k, k * dt_ns / 1e9)
            return
        minute = (t0_ns + np.arange(n, dtype=np.int64) * dt_ns) // NS_PER_MIN
        for m in np.unique(minute[ok]):
            sel = (minute == m) & ok
            k = int(np.count_nonzero(sel))
            self._acc(int(m), float(np.sum(flex[sel])), k, k * dt_ns / 1e9)

    def _acc(self, minute: int, flex_sum: float, n: int, wear_s: float) -> None:
        if minute not in self._count:
            if minute < self._latest:  # out of order: keep the keys sorted, recount the cache
                self._keys.append(minute)
                self._keys.sort()
                self._cache_thr = float("nan")
            else:
                self._keys.append(minute)
        elif minute < self._latest:  # a closed minute changed: recount
            self._cache_thr = float("nan")
        self._latest = max(self._latest, minute)
        self._flex_sum_deg[minute] = self._flex_sum_deg.get(minute, 0.0) + flex_sum
        self._count[minute] = self._count.get(minute, 0) + n
        self._wear_s[minute] = self._wear_s.get(minute, 0.0) + wear_s

    @property
    def wear_s(self) -> float:
        """Wear time so far, seconds."""
        return float(sum(self._wear_s.values()))

    def time_neutral_pct(self, threshold_deg: float) -> float:
        """:func:`time_neutral_pct` of the minutes so far (the current one included), %.

        The same figure as ``time_neutral_pct(means, wear, threshold_deg)`` over every minute,
        at the cost of the minutes added since the last call.
        """
        if threshold_deg != self._cache_thr:
            self._cache_thr, self._cache_i = threshold_deg, 0
            self._cache_neutral_s = self._cache_wear_s = 0.0
        keys = self._keys
        while self._cache_i < len(keys) - 1:  # every minute but the latest is closed
            k = keys[self._cache_i]
            self._cache_wear_s += self._wear_s[k]
            if self._flex_sum_deg[k] / self._count[k] < threshold_deg:
                self._cache_neutral_s += self._wear_s[k]
            self._cache_i += 1
        k = self._latest
        wear, neutral = self._cache_wear_s, self._cache_neutral_s
        if k in self._count:
            wear += self._wear_s[k]
            if self._flex_sum_deg[k] / self._count[k] < threshold_deg:
                neutral += self._wear_s[k]
        return 100.0 * neutral / wear if wear > 0 else float("nan")
