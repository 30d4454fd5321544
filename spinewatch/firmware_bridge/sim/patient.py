"""The simulated patient: a sensor on a patient following a posture script, as an ImuSource."""

from __future__ import annotations

import asyncio
import datetime as _dt
import math
import time
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Final, Self

from spinewatch.firmware_bridge.sim.imu import ImuErrors, ImuSynthesizer, Mounting
from spinewatch.firmware_bridge.sim.script import PostureScript
from spinewatch.model import NS_PER_S, ImuBatch

__all__ = ["SimulatedPatient"]

_CHUNK_S: Final = 10.0  # generation chunk of the live source: ~1 ms of numpy work at 100 Hz
_YIELD_EVERY_BATCHES: Final = 200  # unpaced: let other tasks run at least this often


def _today_0800_utc_ns() -> int:
    now = _dt.datetime.now(_dt.UTC)
    anchor = now.replace(hour=8, minute=0, second=0, microsecond=0)
    return int(anchor.timestamp()) * NS_PER_S


class SimulatedPatient:
    """A simulated sensor on a patient following a :class:`PostureScript`; an ImuSource.

    Usage::

        async with SimulatedPatient(PostureScript.day(8 * 3600), speed=10.0) as src:
            async for batch in src.batches():
                ...

    Args:
        script: the posture timeline.
        rate_hz: sample rate, Hz; batches have ``dt_ns = round(1e9 / rate_hz)``.
        seed: seed of the sensor's randomness (bias, drift, noise).
        batch_samples: samples per :class:`ImuBatch` (the last batch may be shorter).
        speed: None streams as fast as possible (yielding to the event loop every
            200 batches); otherwise the script plays ``speed`` times faster than real time
            against ``time.monotonic()`` (1.0 = real time), each batch released once its
            last sample's time has passed.
        start_utc_ns: UTC time, ns since the epoch, that sensor time 0 maps to; default
            today's 08:00 UTC.
        mounting: sensor misalignment; default :class:`Mounting` ().
        errors: sensor error model; default :class:`ImuErrors` ().

    Attributes:
        rate_hz: sample rate, Hz.
        dt_ns: sample period, ns.
        start_utc_ns: UTC ns of sensor time 0 (the publisher's clock anchor).
        synthesizer: the :class:`ImuSynthesizer` producing the samples (truth access).
    """

    def __init__(
        self,
        script: PostureScript,
        rate_hz: float = 100.0,
        seed: int = 0,
        batch_samples: int = 10,
        speed: float | None = None,
        start_utc_ns: int | None = None,
        mounting: Mounting | None = None,
        errors: ImuErrors | None = None,
    ) -> None:
        if isinstance(batch_samples, bool) or not isinstance(batch_samples, int):
            raise TypeError(f"batch_samples must be an int, got {batch_samples!r}")
        if batch_samples < 1:
            raise ValueError(f"batch_samples must be >= 1, got {batch_samples!r}")
        if speed is not None and not (math.isfinite(speed) and speed > 0.0):
            raise ValueError(f"speed must be None or > 0, got {speed!r}")
        self.synthesizer = ImuSynthesizer(script, rate_hz, seed, mounting, errors)
        self._rate_hz = float(rate_hz)
        self.dt_ns = self.synthesizer.dt_ns
        self.batch_samples = batch_samples
        self.speed = speed
        self.start_utc_ns = _today_0800_utc_ns() if start_utc_ns is None else int(start_utc_ns)
        self._open = False
        self._stopping = False
        self.buzzes: list[tuple[str, int, int]] = []  # (pattern, intensity_pct, duration_ms) of each buzz

    @property
    def rate_hz(self) -> float:
        """Nominal sample rate, Hz."""
        return self._rate_hz

    @property
    def script(self) -> PostureScript:
        return self.synthesizer.script

    async def __aenter__(self) -> Self:
        self._open = True
        self._stopping = False
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._open = False

    def stop(self) -> None:
        """Make :meth:`batches` end before its next batch (Ctrl-C in the demo), like a sensor
        switched off: what was yielded stays yielded."""
        self._stopping = True

    async def buzz(self, pattern: str, intensity_pct: int, duration_ms: int) -> bool:
        """A simulated haptic write: recorded in ``buzzes``, nothing physical happens.

        The scripted patient does not react to it: the script alone decides when each
        slouch ends, so an alert's outcome is what the script implies.
        """
        self.buzzes.append((pattern, int(intensity_pct), int(duration_ms)))
        return True

    async def batches(self) -> AsyncIterator[ImuBatch]:
        """The script's samples as :class:`ImuBatch` es, from sensor time 0 to the end.

        Each call starts again at sample 0 (same samples).

        Raises:
            RuntimeError: called outside ``async with``.
        """
        if not self._open:
            raise RuntimeError("use SimulatedPatient inside 'async with' before batches()")
        syn = self.synthesizer
        bs = self.batch_samples
        chunk_n = max(bs, round(_CHUNK_S * self._rate_hz) // bs * bs)  # whole batches
        t_start = time.monotonic()
        emitted = 0
        for c in syn.chunks(chunk_n):
            for a in range(0, len(c), bs):
                i0 = c.i0 + a
                gyr = c.gyr_rad_s[a : a + bs]
                if self.speed is not None:
                    due = t_start + (i0 + len(gyr)) * self.dt_ns / NS_PER_S / self.speed
                    delay = due - time.monotonic()
                    if delay > 0.0:
                        await asyncio.sleep(delay)
                elif emitted % _YIELD_EVERY_BATCHES == 0:
                    await asyncio.sleep(0)
                if not self._open or self._stopping:
                    return
                yield ImuBatch(i0 * self.dt_ns, self.dt_ns, gyr, c.acc_m_s2[a : a + bs])
                emitted += 1
