"""The guided calibration session: countdown, neutral capture, quality check, forward bend.

:func:`run_calibration` reads an :class:`~spinewatch.firmware_bridge.source.ImuSource` and
returns a :class:`~spinewatch.model.Calibration`, or raises :class:`CalibrationRejected`.
Every step is paced by the samples received (the sensor's clock), never by sleeping, so a
simulated sensor at full speed runs the whole session in a fraction of a second. What to
tell the patient goes to an ``on_prompt`` callback (the CLI prints it); the numbers come
from the pure functions of :mod:`spinewatch.signal.calibration`.

Timeline (attempt k = 0, 1, ...): a countdown of ``countdown_s``, then a neutral capture of
``capture_s``; a refused capture starts the next attempt at once. After the accepted one,
bend captures of ``bend_s`` until one is usable (at most ``attempts``).
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Final, Literal

import numpy as np

from spinewatch.errors import SpineWatchError
from spinewatch.firmware_bridge.source import ImuSource
from spinewatch.model import NS_PER_S, Calibration, Float2D, ImuBatch
from spinewatch.signal.calibration import (
    BendCheck,
    NeutralCheck,
    NeutralLimits,
    assess_neutral,
    bend_yaw_deg,
)

__all__ = ["CalibrationPlan", "CalibrationRejected", "CalibrationResult", "Prompt", "run_calibration"]

MAX_PHASE_S: Final = 120.0  # longest countdown or capture accepted, s: a patient cannot hold still longer


class CalibrationRejected(SpineWatchError):
    """No usable calibration after the allowed attempts (nothing was stored or published).

    Attributes:
        reason: the last attempt's problem.
        attempts: attempts made.
    """

    def __init__(self, reason: str, attempts: int, step: str = "neutral capture") -> None:
        self.reason = reason
        self.attempts = attempts
        super().__init__(f"calibration failed, {step} refused {attempts} time{'s' if attempts != 1 else ''}; "
                         f"last: {reason}")


@dataclass(frozen=True, slots=True)
class CalibrationPlan:
    """How the session runs.

    Attributes:
        countdown_s: countdown before each neutral capture, s (time to settle).
        capture_s: neutral capture, s.
        bend: also do the guided forward bend (the sensor's turn about the spine).
        bend_s: one forward-bend capture, s (bend down slowly and come back up within it).
        attempts: tries for the neutral capture, and again for the bend.
        limits: the quality-check thresholds.
    """

    countdown_s: float = 3.0
    capture_s: float = 8.0
    bend: bool = True
    bend_s: float = 8.0
    attempts: int = 3
    limits: NeutralLimits = field(default_factory=NeutralLimits)

    def __post_init__(self) -> None:
        for name, lo in (("countdown_s", 0.0), ("capture_s", 1.0), ("bend_s", 3.0)):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and lo <= v <= MAX_PHASE_S):
                raise ValueError(f"{name} must be a number of seconds in [{lo:g}, {MAX_PHASE_S:g}], got {v!r}")
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int) or not 1 <= self.attempts <= 10:
            raise ValueError(f"attempts must be an integer in [1, 10], got {self.attempts!r}")


PromptKind = Literal["instruction", "countdown", "progress", "rejected", "accepted"]


@dataclass(frozen=True, slots=True)
class Prompt:
    """Something to show the patient.

    Attributes:
        kind: ``instruction`` (a new step), ``countdown`` (``value`` = whole seconds left),
            ``progress`` (``value`` = fraction of the capture done, 0..1), ``rejected``
            (``text`` = why), ``accepted`` (``text`` = the figures).
        text: what to say.
        value: see ``kind``.
    """

    kind: PromptKind
    text: str = ""
    value: float = 0.0


@dataclass(frozen=True, slots=True)
class CalibrationResult:
    """A successful session: the calibration and the checks behind it."""

    calibration: Calibration
    neutral: NeutralCheck
    bend: BendCheck | None
    attempts: int


class _Feed:
    """Cuts a source's batches into phases of exactly n samples (splitting batches)."""

    def __init__(self, batches: AsyncIterator[ImuBatch]) -> None:
        self._it = batches
        self._rest: ImuBatch | None = None
        self.dt_ns = 0

    async def _next(self) -> ImuBatch:
        if self._rest is not None:
            b, self._rest = self._rest, None
            return b
        try:
            b = await anext(self._it)
        except StopAsyncIteration:
            raise SpineWatchError("the sensor stream ended before the calibration was done") from None
        if not self.dt_ns:
            self.dt_ns = b.dt_ns
        return b

    async def rate_hz(self) -> float:
        if not self.dt_ns:
            self._rest = await self._next()
        return NS_PER_S / self.dt_ns

    async def take(self, n: int, on_samples: Callable[[int], None]) -> tuple[Float2D, Float2D, bool]:
        """The next ``n`` samples: (gyr_rad_s, acc_m_s2, samples were lost inside)."""
        gyr: list[Float2D] = []
        acc: list[Float2D] = []
        got = 0
        gap = False
        while got < n:
            b = await self._next()
            if got and b.gap_before:
                gap = True
            k = min(n - got, len(b))
            gyr.append(b.gyr_rad_s[:k])
            acc.append(b.acc_m_s2[:k])
            if k < len(b):
                self._rest = ImuBatch(b.t0_ns + k * b.dt_ns, b.dt_ns, b.gyr_rad_s[k:], b.acc_m_s2[k:])
            got += k
            on_samples(got)
        return np.concatenate(gyr), np.concatenate(acc), gap


async def run_calibration(
    source: ImuSource,
    patient: str,
    device: str,
    plan: CalibrationPlan | None = None,
    on_prompt: Callable[[Prompt], None] | None = None,
    author: str = "",
    clock_utc_ns: Callable[[], int] = time.time_ns,
) -> CalibrationResult:
    """Run the guided session on an open source (inside its ``async with``).

    Args:
        source: the sensor (or a simulated or replayed one), already entered.
        patient, device: pseudonymous ids for the result.
        plan: durations, attempts, thresholds.
        on_prompt: receives each :class:`Prompt`.
        author: pseudonymous id of who runs it.
        clock_utc_ns: UTC clock for the calibration's time (end of the neutral capture).

    Returns:
        The :class:`CalibrationResult`.

    Raises:
        CalibrationRejected: every attempt was refused (the reason of the last one).
        SpineWatchError: the source ended first.
    """
    plan = plan or CalibrationPlan()
    say = on_prompt or (lambda p: None)
    batches = source.batches()
    try:
        feed = _Feed(batches)
        rate = await feed.rate_hz()
        neutral, t_ns, attempts = await _neutral(feed, rate, plan, say, clock_utc_ns)
        bend = await _bend(feed, rate, plan, neutral, say) if plan.bend else None
    finally:
        aclose = getattr(batches, "aclose", None)  # async generators: release the source's iterator now
        if aclose is not None:
            await aclose()
    cal = Calibration(
        patient=patient, device=device, t_ns=t_ns, up_sensor=neutral.up_sensor,
        mount_yaw_deg=None if bend is None else bend.mount_yaw_deg,
        gyr_rms_deg_s=neutral.gyr_rms_deg_s, acc_std_m_s2=neutral.acc_std_m_s2,
        duration_s=plan.capture_s, author=author,
    )
    say(Prompt("accepted", "calibration done: " + _figures(neutral, bend)))
    return CalibrationResult(cal, neutral, bend, attempts)


def _figures(n: NeutralCheck, bend: BendCheck | None) -> str:
    s = (f"neutral {n.upright_tilt_deg:.1f} deg from the sensor's upright, "
         f"{n.gyr_rms_deg_s:.2f} deg/s RMS, |acc| spread {n.acc_std_m_s2:.3f} m/s^2")
    if bend is not None:
        s += f"; sensor turned {bend.mount_yaw_deg:+.1f} deg about the spine (bend {bend.max_tilt_deg:.0f} deg)"
    return s


async def _neutral(feed: _Feed, rate: float, plan: CalibrationPlan, say: Callable[[Prompt], None],
                   clock_utc_ns: Callable[[], int]) -> tuple[NeutralCheck, int, int]:
    n_count = round(plan.countdown_s * rate)
    n_cap = max(1, round(plan.capture_s * rate))
    problem = ""
    for attempt in range(1, plan.attempts + 1):
        tries = f" (attempt {attempt} of {plan.attempts})" if attempt > 1 else ""
        say(Prompt("instruction", f"Sit upright, look ahead and hold still{tries}"))
        if n_count:
            shown = [math.ceil(plan.countdown_s)]
            say(Prompt("countdown", value=shown[0]))

            def tick(got: int, shown: list[int] = shown) -> None:
                left = math.ceil((n_count - got) / rate - 1e-9)
                if 0 < left < shown[0]:
                    shown[0] = left
                    say(Prompt("countdown", value=left))

            await feed.take(n_count, tick)
        say(Prompt("instruction", f"Hold still: measuring for {plan.capture_s:g} s"))
        gyr, acc, gap = await feed.take(n_cap, lambda got: say(Prompt("progress", value=got / n_cap)))
        t_ns = clock_utc_ns()
        if gap:
            problem = "samples were lost during the capture (weak Bluetooth link); move the sensor closer"
        else:
            check = assess_neutral(gyr, acc, rate, plan.limits)
            if check.ok:
                return check, t_ns, attempt
            problem = check.problem or ""
        say(Prompt("rejected", problem))
    raise CalibrationRejected(problem, plan.attempts)


async def _bend(feed: _Feed, rate: float, plan: CalibrationPlan, neutral: NeutralCheck,
                say: Callable[[Prompt], None]) -> BendCheck:
    n_bend = round(plan.bend_s * rate)
    problem = ""
    for attempt in range(1, plan.attempts + 1):
        tries = f" (attempt {attempt} of {plan.attempts})" if attempt > 1 else ""
        say(Prompt("instruction", f"Now bend straight forward, slowly, as far as is comfortable, and come back "
                                  f"up within {plan.bend_s:g} s{tries}"))
        _, acc, gap = await feed.take(n_bend, lambda got: say(Prompt("progress", value=got / n_bend)))
        if gap:
            problem = "samples were lost during the bend (weak Bluetooth link); move the sensor closer"
        else:
            check = bend_yaw_deg(neutral.up_sensor, acc, rate)
            if check.ok:
                return check
            problem = check.problem or ""
        say(Prompt("rejected", problem))
    raise CalibrationRejected(problem, plan.attempts, step="forward bend")
