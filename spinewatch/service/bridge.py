"""The bridge loop: IMU source -> posture tracker -> publisher, with live status for a UI."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from spinewatch.firmware_bridge.source import ImuSource
from spinewatch.model import NS_PER_S, PostureBatch, SlouchEvent
from spinewatch.service.publisher import Publisher
from spinewatch.signal import Activity, PostureTracker, TrackerOutput

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LiveStatus:
    """What a live view shows after each published message.

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


_COLUMNS = ("flexion_deg", "lateral_deg", "state", "activity")


@dataclass
class _Pending:
    """Tracker output not yet published: evenly spaced samples from ``t0_sensor_ns``."""

    t0_sensor_ns: int = 0
    dt_ns: int = 0
    cols: list[npt.NDArray[np.generic]] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.cols[0]) if self.cols else 0

    def add(self, out: TrackerOutput) -> None:
        new = [getattr(out, c) for c in _COLUMNS]
        self.cols = [np.concatenate([a, b]) for a, b in zip(self.cols, new)] if self.cols else new

    def take(self, k: int) -> tuple[int, list[npt.NDArray[np.generic]]]:
        """Remove and return the first ``k`` samples: (t0_sensor_ns, [flex, lat, state, act])."""
        t0 = self.t0_sensor_ns
        head = [c[:k] for c in self.cols]
        self.cols = [c[k:] for c in self.cols] if k < self.n else []
        self.t0_sensor_ns += k * self.dt_ns
        return t0, head


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

    Sensor time maps to UTC as ``start_utc_ns + t_sensor_ns`` (the clock anchor). Angles
    are published in messages of ``publish_interval_s`` of sensor time, whatever the size
    of the source's batches (a gap in the stream ends a message early); slouch events as
    soon as they end.

    Returns:
        Totals of what was processed and published.
    """
    totals = BridgeTotals()
    pend = _Pending()
    outgoing: list[PostureBatch] = []
    per_msg = 0
    first_t0: int | None = None
    dt_ns = 0

    def publish(k: int) -> None:
        t0, (flex, lat, state, act) = pend.take(k)
        batch = PostureBatch(publisher.patient, publisher.device, start_utc_ns + t0, pend.dt_ns,
                             flex, lat, state, act)  # type: ignore[arg-type]
        outgoing.append(batch)
        totals.posture_messages += 1
        if on_status is not None:
            end_ns = t0 + k * pend.dt_ns
            on_status(LiveStatus(
                t_ns=start_utc_ns + end_ns - pend.dt_ns,
                elapsed_s=(end_ns - (first_t0 or 0)) / NS_PER_S,
                flexion_deg=float(flex[-1]), lateral_deg=float(lat[-1]),
                slouching=bool(state[-1]), activity=Activity(int(act[-1])),
                slouch_count=totals.events,
                upright_neutral_pct=100.0 * totals.neutral_samples / max(1, totals.samples),
                samples=totals.samples,
            ))

    def emit(ep: npt.NDArray[np.float64]) -> None:
        base = start_utc_ns + (first_t0 or 0)
        ev = SlouchEvent(publisher.patient, publisher.device,
                         base + int(ep[0]) * dt_ns, base + int(ep[1]) * dt_ns, float(ep[2]), float(ep[3]))
        publisher.publish_event(ev)
        totals.events += 1
        if on_event is not None:
            on_event(ev)

    async with source:
        async for b in source.batches():
            if first_t0 is None:
                first_t0, dt_ns = b.t0_ns, b.dt_ns
                per_msg = max(1, round(publish_interval_s * NS_PER_S / b.dt_ns))
            if pend.n and (b.gap_before or b.dt_ns != pend.dt_ns):
                publish(pend.n)  # a posture message covers evenly spaced samples only
            if b.gap_before:
                tracker.reset_motion()
            out = tracker.update(b.gyr_rad_s, b.acc_m_s2)
            totals.samples += len(b)
            totals.neutral_samples += int(
                np.count_nonzero((out.state == 0) & (out.activity >= Activity.UPRIGHT_STILL))
            )
            if not pend.n:
                pend.t0_sensor_ns, pend.dt_ns = b.t0_ns, b.dt_ns
            pend.add(out)
            for ep in out.episodes:
                emit(ep)
            while pend.n >= per_msg:
                publish(per_msg)
            if outgoing:  # one outbox transaction for what this batch completed
                publisher.publish_postures(outgoing)
                outgoing.clear()
    for ep in tracker.flush():
        emit(ep)
    if pend.n:
        publish(pend.n)
    if outgoing:
        publisher.publish_postures(outgoing)
    _LOGGER.info("bridge done: %d samples, %d posture messages, %d slouch events",
                 totals.samples, totals.posture_messages, totals.events)
    return totals
