"""Messages lost in transit, from the posture messages' ``seq`` (docs/wire-format.md, docs/storage.md).

The bridge numbers its posture messages 1, 2, 3, ... within a counter named ``seq_epoch``.
The ingest worker stores one small point per received message (measurement
:data:`MEASUREMENT`, keyed by the message's ``t0_ns``, tag ``seq_epoch``), and loss is
computed by query: in each (patient, device, seq_epoch), the numbers between the first and
the last seq of a period that were never stored. Because it is a query over what the
database holds, it is

- idempotent under QoS 1 redelivery (a duplicate overwrites its own point),
- indifferent to arrival order (out-of-order delivery after a reconnect), and
- right with several ingest workers on a shared subscription (each writes the points of the
  messages it received; the database sees them all), which per-worker gap tracking is not.

This module owns the measurement's name and fields, the arithmetic of a gap, and the
record the ingest adds for each posture message; the stores own the queries.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from spinewatch.service.transport.wire import PostureMsg

MEASUREMENT: Final = "posture_seq"
# How far before a period the last stored seq of a counter is looked for, so that a gap
# spanning the period's start is counted in the period (UTC ns). A bridge's messages are at
# most a few seconds apart while it streams; a day covers any pause of the sensor.
BASELINE_LOOKBACK_NS: Final = 86_400 * 10**9
# How far back (sensor time, before the newest message of a device the worker has seen) the
# ingest worker counts lost messages for its /metrics and log, UTC ns.
WATCH_WINDOW_NS: Final = 86_400 * 10**9

# Mosquitto (and brokers copying its $SYS tree) publishes, retained, the number of messages it
# acknowledged to a publisher and then dropped since it started (a subscriber's queue was full).
BROKER_DROPPED_TOPIC: Final = "$SYS/broker/publish/messages/dropped"
BROKER_DROP_FIX: Final = (
    "the broker drops messages when a subscriber's queue is full: raise max_queued_messages and "
    "max_queued_bytes in mosquitto.conf (patients x messages/s x the longest database outage to survive, "
    "docs/operator-guide.md), keep persistence true, and restart the broker"
)


@dataclass(frozen=True, slots=True)
class SeqMsg:
    """The stored trace of one received posture message (measurement :data:`MEASUREMENT`).

    Attributes:
        patient, device: the message's ids (tags).
        seq_epoch: the id of the bridge's counter (a tag: gaps are counted per counter).
        t0_ns: the message's first sample time, UTC ns (the point's time: a redelivered
            message overwrites its own point).
        seq: the message's number in its counter (field, integer).
        samples: samples in the message (field, integer).
        dt_ns: sample period, ns (field, integer).
    """

    patient: str
    device: str
    seq_epoch: int
    t0_ns: int
    seq: int
    samples: int
    dt_ns: int

    @property
    def duration_ns(self) -> int:
        """Time the message covers, ns (``samples * dt_ns``)."""
        return self.samples * self.dt_ns


def seq_records(msgs: Iterable[object]) -> list[SeqMsg]:
    """One :class:`SeqMsg` per posture message that carries both ``seq`` and ``seq_epoch``.

    Messages of old bridges (no ``seq_epoch``) are not accounted: without the counter's id a
    restarted bridge could not be told from loss.
    """
    return [SeqMsg(m.patient, m.device, m.seq_epoch, m.t0_ns, m.seq, len(m), m.dt_ns)
            for m in msgs
            if isinstance(m, PostureMsg) and m.seq is not None and m.seq_epoch is not None]


def seq_line(m: SeqMsg) -> str:
    """InfluxDB line protocol of one :class:`SeqMsg`: integer fields at ``t0_ns``."""
    return (f"{MEASUREMENT},device={m.device},patient={m.patient},seq_epoch={m.seq_epoch} "
            f"seq={m.seq}i,samples={m.samples}i,dt_ns={m.dt_ns}i,duration_ns={m.duration_ns}i {m.t0_ns}")


@dataclass(frozen=True, slots=True)
class SeqGroup:
    """What a store reads of one counter in a period: the raw figures of :func:`losses`.

    Attributes:
        received: distinct messages stored in the period.
        first_seq, last_seq: lowest and highest seq stored in the period.
        duration_ns: total time the stored messages cover, ns.
        before_seq: the seq of the counter's last message stored in the
            :data:`BASELINE_LOOKBACK_NS` before the period, None when none is.
    """

    patient: str
    device: str
    seq_epoch: int
    received: int
    first_seq: int
    last_seq: int
    duration_ns: int
    before_seq: int | None = None


@dataclass(frozen=True, slots=True)
class TransitLoss:
    """Posture messages of one counter lost between the bridge and the database, in a period.

    Attributes:
        lost: messages whose seq lies between the last one stored before the period (or
            the first one in it) and the last one in it, and that were never stored.
        lost_s: the time they covered, seconds, estimated as ``lost`` times the mean
            duration of the counter's stored messages in the period.
    """

    patient: str
    device: str
    seq_epoch: int
    received: int
    lost: int
    lost_s: float


def losses(groups: Sequence[SeqGroup]) -> list[TransitLoss]:
    """Gaps in ``seq`` per counter: ``last_seq - low - received``, where ``low`` is the last
    seq stored before the period (``before_seq``), else ``first_seq - 1``.

    A gap after the last stored message is not visible until a later message arrives; a
    counter's seq only grows with time, so a ``before_seq`` above ``first_seq`` (a re-sent
    recording) is ignored.
    """
    out = []
    for g in groups:
        low = g.first_seq - 1
        if g.before_seq is not None and g.before_seq < g.first_seq:
            low = g.before_seq
        lost = max(0, g.last_seq - low - g.received)
        mean_ns = g.duration_ns / g.received if g.received else 0.0
        out.append(TransitLoss(g.patient, g.device, g.seq_epoch, g.received, lost, lost * mean_ns / 1e9))
    return sorted(out, key=lambda x: (x.patient, x.device, x.seq_epoch))


@dataclass(frozen=True, slots=True)
class DeviceLoss:
    """Lost messages of one device summed over its counters."""

    patient: str
    device: str
    received: int
    lost: int
    lost_s: float


def by_device(items: Iterable[TransitLoss]) -> list[DeviceLoss]:
    """Sum :class:`TransitLoss` over counters, per (patient, device)."""
    acc: dict[tuple[str, str], list[float]] = {}
    for x in items:
        a = acc.setdefault((x.patient, x.device), [0, 0, 0.0])
        a[0] += x.received
        a[1] += x.lost
        a[2] += x.lost_s
    return [DeviceLoss(p, d, int(a[0]), int(a[1]), float(a[2])) for (p, d), a in sorted(acc.items())]
