"""The bridge loop: IMU source -> posture tracker -> publisher, with live status for a UI."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from spinewatch.firmware_bridge.source import ImuSource
from spinewatch.model import NS_PER_S, PostureBatch, SlouchEvent
from spinewatch.service.publisher import Publisher
from spinewatch.signal import Activity, PostureTracker

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LiveStatus:
    """What a live view shows after each published batch.

    Attributes:
        t_ns: UTC ns of the latest sample.
        elapsed_s: sensor time since the stream started, seconds.
        flexion_deg, lateral_deg: latest angles, degrees.
        slouching: inside a confirmed slouch.
        activity: latest :class:`Activity`.
        slouch_count: episodes closed so far.
        upright_neutral_pct: share of samples so far that were upright and not slouching, %.
        samples: samples processed so far.
    """

    t_ns: int
    elapsed_s: float
    flexion_deg: float
    lateral_deg: float
    slouching: bool
    activity: Activity
    slouch_count: int
    upright_neutral_pct: float
    samples: int


@dataclass
class BridgeTotals:
    samples: int = 0
    posture_messages: int = 0
    events: int = 0
    neutral_samples: int = 0


async def run_bridge(
    source: ImuSource,
    tracker: PostureTracker,
    publisher: Publisher,
    start_utc_ns: int,
    publish_interval_s: float = 1.0,
    on_status: Callable[[LiveStatus], None] | None = None,
    on_event: Callable[[SlouchEvent], None] | None = None,
) -> BridgeTotals:
    """Stream ``source`` through ``tracker`` and publish until the source ends.

    Sensor time is mapped to UTC as ``start_utc_ns + t_sensor_ns`` (the clock anchor).
    Angles are published in batches of ``publish_interval_s`` of sensor time; slouch
    events as soon as they end.

    Returns:
        Totals of what was processed and published.
    """
    totals = BridgeTotals()
    pending: list[tuple[int, int, object]] = []  # (t0_sensor_ns, dt_ns, TrackerOutput)
    pending_n = 0
    rate_hz = 0.0
    dt_ns = 0
    first_t0: int | None = None

    def flush() -> None:
        nonlocal pending, pending_n
        if not pending:
            return
        t0, dt, _ = pending[0]
        outs = [o for _, _, o in pending]
        batch = PostureBatch(
            publisher.patient, publisher.device, start_utc_ns + t0, dt,
            np.concatenate([o.flexion_deg for o in outs]),  # type: ignore[attr-defined]
            np.concatenate([o.lateral_deg for o in outs]),  # type: ignore[attr-defined]
            np.concatenate([o.state for o in outs]),  # type: ignore[attr-defined]
            np.concatenate([o.activity for o in outs]),  # type: ignore[attr-defined]
        )
        publisher.publish_posture(batch)
        totals.posture_messages += 1
        pending, pending_n = [], 0
        if on_status is not None:
            last_ns = batch.t0_ns + len(batch) * dt
            on_status(
                LiveStatus(
                    t_ns=last_ns - dt,
                    elapsed_s=(last_ns - start_utc_ns - (first_t0 or 0)) / NS_PER_S,
                    flexion_deg=float(batch.flexion_deg[-1]),
                    lateral_deg=float(batch.lateral_deg[-1]),
                    slouching=bool(batch.state[-1]),
                    activity=Activity(int(batch.activity[-1])),
                    slouch_count=totals.events,
                    upright_neutral_pct=100.0 * totals.neutral_samples / max(1, totals.samples),
                    samples=totals.samples,
                )
            )

    async with source:
        async for b in source.batches():
            if first_t0 is None:
                first_t0 = b.t0_ns
                rate_hz, dt_ns = b.rate_hz, b.dt_ns
            elif pending and (b.gap_before or b.dt_ns != dt_ns):
                flush()  # a posture message covers evenly spaced samples only
            if b.gap_before:
                tracker.reset_motion()
            out = tracker.update(b.gyr_rad_s, b.acc_m_s2)
            totals.samples += len(b)
            totals.neutral_samples += int(
                np.count_nonzero((out.state == 0) & (out.activity >= Activity.UPRIGHT_STILL))
            )
            if not pending:
                pending_n = 0
            pending.append((b.t0_ns, b.dt_ns, out))
            pending_n += len(b)
            for ep in out.episodes:
                _emit(ep, publisher, start_utc_ns, first_t0, dt_ns, totals, on_event)
            if pending_n * dt_ns >= publish_interval_s * NS_PER_S:
                flush()
    for ep in tracker.flush():
        _emit(ep, publisher, start_utc_ns, first_t0 or 0, dt_ns, totals, on_event)
    flush()
    _LOGGER.info("bridge done: %d samples at %.0f Hz, %d posture messages, %d slouch events",
                 totals.samples, rate_hz, totals.posture_messages, totals.events)
    return totals


def _emit(
    ep: np.ndarray, publisher: Publisher, start_utc_ns: int, first_t0: int, dt_ns: int,
    totals: BridgeTotals, on_event: Callable[[SlouchEvent], None] | None,
) -> None:
    base = start_utc_ns + first_t0
    ev = SlouchEvent(
        publisher.patient, publisher.device,
        base + int(ep[0]) * dt_ns, base + int(ep[1]) * dt_ns, float(ep[2]), float(ep[3]),
    )
    publisher.publish_event(ev)
    totals.events += 1
    if on_event is not None:
        on_event(ev)
