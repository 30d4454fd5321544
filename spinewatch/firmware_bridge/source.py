"""The async interface shared by every IMU source: BLE sensor, replay file, simulator."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from spinewatch.model import ImuBatch

__all__ = ["ImuSource"]


@runtime_checkable
class ImuSource(Protocol):
    """A stream of IMU samples from one sensor, used as an async context manager.

    Usage::

        async with source:
            async for batch in source.batches():
                ...

    Contract every implementation keeps:

    - ``__aenter__`` acquires what the source needs (BLE connection, open file, clock
      anchor) and returns the source itself; ``__aexit__`` releases it, also when the
      consumer stops early or raises. Neither suppresses exceptions.
    - ``batches()`` may only be called inside the ``async with`` block. It returns an
      async iterator of :class:`~spinewatch.model.ImuBatch` in sensor-time order. Each
      batch carries ``gyr_rad_s`` (N, 3) rad/s and ``acc_m_s2`` (N, 3) m/s^2, raw (no
      bias removed), and ``t0_ns`` on the sensor's monotonic clock (not UTC). Frame:
      BLE sources remap the sensor's axes to the **body** frame once, in the decoder
      (:class:`~spinewatch.firmware_bridge.remap.MountAlignment`), and recordings store
      that body-frame data; the simulator emits its sensor frame, the body frame turned
      by a few degrees of mounting misalignment. Residual misalignment is removed by the
      tracker's neutral calibration. ``t0_ns`` of the next batch is
      ``t0_ns + len(batch) * dt_ns`` unless samples were lost, in which case that batch
      has ``gap_before=True``.
    - The iterator ends (``StopAsyncIteration``) when the source ends: the end of a
      replay file or simulated script, or a disconnect the source does not recover from.
      Live sources that reconnect keep the iterator open and flag the gap instead.
    - Sources never block the event loop: slow work runs in an executor or in small
      steps between ``await`` points.
    """

    @property
    def rate_hz(self) -> float:
        """Nominal sample rate, Hz (the batches' ``dt_ns`` is ``round(1e9 / rate_hz)``)."""
        ...

    async def __aenter__(self) -> Self:
        """Open the source; returns the source itself."""
        ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        """Close the source; does not suppress exceptions."""
        ...

    def batches(self) -> AsyncIterator[ImuBatch]:
        """Async iterator of the source's batches, in sensor-time order, until it ends."""
        ...
