"""Sample-time reconstruction and loss accounting for BLE packets (pure: no I/O, no clock).

Two timelines turn decoded packets into :class:`~spinewatch.model.ImuBatch` es on the
sensor's own time axis, ``t0_ns = sample_index * dt_ns`` where ``sample_index`` counts
every sample the sensor took since the stream started, including lost ones:

- :class:`SequencedTimeline`, for profiles with a packet counter and a device clock
  (SpineWatch). Sequence numbers are unwrapped (modulo 2^16); a small reorder buffer
  puts out-of-order packets back in order; duplicates and packets older than what was
  already handed on are dropped and counted; a gap in the sequence is declared once the
  missing packet has not arrived within ``reorder_packets`` packets or ``max_hold_ns``.
  How many *samples* a gap lost comes from the unwrapped device clock (modulo 2^32 us),
  so a sensor-side FIFO overflow without a sequence gap is found too.
- :class:`ArrivalTimeline`, for profiles without either (WitMotion, Thingy:52). Sample
  times are a regular grid at the nominal rate anchored to arrival times: the anchor
  follows the earliest arrivals at once (a packet can't arrive before it was sampled)
  and later ones slowly (clock drift), which smooths the 30-50 ms jitter of BLE
  connection events. An arrival later than ``gap_tolerance_ns`` beyond the grid is a
  gap; the lost samples are estimated from the delay.

Samples are never invented: a gap advances ``sample_index`` and sets ``gap_before`` on
the next batch, which makes the tracker reset its motion state.

Accounting (:class:`LossCounters`): every sample in a decoded packet is either emitted
or counted in ``dropped_samples`` under a reason; packets that never arrived are in
``packets_lost`` / ``samples_lost``; undecodable notifications in ``dropped_packets``
(``decode:<reason>``). ``samples_received == samples_emitted + sum(dropped_samples) +
pending`` holds at every step (tested).

Limits: a disconnect longer than the counter periods (65536 packets, about 55 min at
20 packets/s; 2^32 us, 71.6 min) is counted modulo those periods. After a sensor reboot
(sequence restarting) the timeline re-synchronises and counts a ``resync``, not a
number of lost samples.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Final

import numpy as np

from spinewatch.firmware_bridge.profiles import DecodedPacket
from spinewatch.model import NS_PER_S, ImuBatch

__all__ = ["ArrivalTimeline", "LossCounters", "SequencedTimeline", "Timeline", "merge_batches"]

# Reorder window: BLE delivers notifications in order on one link, so reordering only
# comes from a controller/host glitch; 8 packets = 40 samples = 0.4 s at 100 Hz.
DEFAULT_REORDER_PACKETS: Final = 8
# A missing packet is given up after this long, so one loss delays the stream at most
# this much (well inside the 50 ms latency budget when the link is healthy).
DEFAULT_MAX_HOLD_NS: Final = 40_000_000
# Arrival jitter tolerated before a sequence-less stream counts a gap: two 50 ms
# connection intervals.
DEFAULT_GAP_TOLERANCE_NS: Final = 100_000_000
# How quickly the arrival anchor follows later-than-expected arrivals (clock drift).
ANCHOR_FOLLOW: Final = 0.01
_RECENT_SEQS: Final = 256  # emitted sequence numbers remembered to tell duplicate from late
# After a reconnect, a forward jump of the counter up to this many packets is believed;
# anything else is a sensor reboot (re-synchronise).
_MAX_BELIEVED_JUMP: Final = 30_000


@dataclass
class LossCounters:
    """Per-sensor counters (all since the source was opened).

    Attributes:
        packets_received: notifications that reached the bridge (decodable or not).
        samples_received: samples in decoded packets.
        samples_emitted: samples handed on (to the tracker and the publisher).
        packets_lost: packets the sequence numbers say never reached the timeline (radio
            losses plus ``queue_full`` drops; ``as_status`` separates them).
        samples_lost: samples the device clock (or arrival times) says never arrived.
        dropped_packets: reason -> notifications dropped at the bridge
            (``decode:<reason>``, ``queue_full``).
        dropped_samples: reason -> samples that reached the bridge but were not
            emitted (``duplicate``, ``late``, ``queue_full``).
        gaps: gaps flagged to the filter.
        resyncs: times the timeline re-synchronised after a sensor reboot.
    """

    packets_received: int = 0
    samples_received: int = 0
    samples_emitted: int = 0
    packets_lost: int = 0
    samples_lost: int = 0
    dropped_packets: dict[str, int] = field(default_factory=dict)
    dropped_samples: dict[str, int] = field(default_factory=dict)
    gaps: int = 0
    resyncs: int = 0

    def drop_packet(self, reason: str) -> None:
        self.dropped_packets[reason] = self.dropped_packets.get(reason, 0) + 1

    def drop_samples(self, reason: str, n: int) -> None:
        self.dropped_samples[reason] = self.dropped_samples.get(reason, 0) + n

    @property
    def packets_lost_pct(self) -> float:
        """Lost packets as a share of packets the sensor sent, %."""
        sent = self.packets_received + self.packets_lost
        return 100.0 * self.packets_lost / sent if sent else 0.0

    def as_status(self) -> dict[str, object]:
        """The fields published in the device status message.

        Packets the bridge itself dropped (``queue_full``) also look like a sequence gap
        to the timeline; they are reported under ``samples_dropped`` only, so the
        ``*_lost`` fields count what the radio lost.
        """
        qf_p = self.dropped_packets.get("queue_full", 0)
        qf_s = self.dropped_samples.get("queue_full", 0)
        lost_p = max(0, self.packets_lost - qf_p)
        sent = self.packets_received + lost_p
        return {
            "packets_received": self.packets_received,
            "packets_lost": lost_p,
            "packets_lost_pct": round(100.0 * lost_p / sent, 3) if sent else 0.0,
            "samples_received": self.samples_received,
            "samples_published": self.samples_emitted,
            "samples_lost": max(0, self.samples_lost - qf_s),
            "samples_dropped": dict(self.dropped_samples),
            "packets_dropped": dict(self.dropped_packets),
            "gaps": self.gaps,
            "resyncs": self.resyncs,
        }


class _Emitter:
    """Turns emitted packets into batches on the sample-index grid (shared by both timelines)."""

    def __init__(self, rate_hz: float, counters: LossCounters | None) -> None:
        if not rate_hz > 0:
            raise ValueError(f"rate_hz must be > 0, got {rate_hz!r}")
        self.rate_hz = float(rate_hz)
        self.dt_ns = round(NS_PER_S / rate_hz)
        self.counters = counters if counters is not None else LossCounters()
        self.sample_index = 0
        self._gap = False

    def _emit(self, pkt: DecodedPacket, lost_samples: int, out: list[ImuBatch]) -> None:
        gap = self._gap or lost_samples > 0
        self._gap = False
        self.sample_index += max(0, lost_samples)
        if gap:
            self.counters.gaps += 1
            self.counters.samples_lost += max(0, lost_samples)
        n = len(pkt)
        out.append(ImuBatch(self.sample_index * self.dt_ns, self.dt_ns, pkt.gyr_rad_s, pkt.acc_m_s2, gap))
        self.sample_index += n
        self.counters.samples_emitted += n

    def mark_gap(self) -> None:
        """The next batch gets ``gap_before`` (e.g. after a reconnect)."""
        self._gap = True


class SequencedTimeline(_Emitter):
    """Timeline for packets with a sequence number and a device clock.

    Args:
        rate_hz: the sensor's sample rate, Hz (sample spacing on the device clock).
        seq_modulo: sequence numbers wrap at this value.
        clock_modulo_us: the device clock wraps at this value, us.
        reorder_packets: packets held at most while waiting for a missing one.
        max_hold_ns: longest a packet is held waiting for a missing one, ns (on the
            arrival clock passed to :meth:`push`).
        counters: where to count (a fresh :class:`LossCounters` by default).
    """

    def __init__(
        self,
        rate_hz: float,
        seq_modulo: int = 1 << 16,
        clock_modulo_us: int = 1 << 32,
        reorder_packets: int = DEFAULT_REORDER_PACKETS,
        max_hold_ns: int = DEFAULT_MAX_HOLD_NS,
        counters: LossCounters | None = None,
    ) -> None:
        super().__init__(rate_hz, counters)
        if seq_modulo < 2 or clock_modulo_us < 2:
            raise ValueError("seq_modulo and clock_modulo_us must be >= 2")
        if reorder_packets < 0:
            raise ValueError(f"reorder_packets must be >= 0, got {reorder_packets}")
        self.seq_modulo = seq_modulo
        self.clock_modulo_us = clock_modulo_us
        self.reorder_packets = reorder_packets
        self.max_hold_ns = max_hold_ns
        self.dt_us = 1e6 / self.rate_hz
        self._next: int | None = None  # unwrapped sequence number expected next
        self._base: int | None = None  # provisional unwrap base while the stream starts
        self._t_next_us: float | None = None  # unwrapped device time of the next sample
        self._pending: dict[int, tuple[DecodedPacket, int]] = {}
        self._recent: deque[int] = deque(maxlen=_RECENT_SEQS)
        self._recent_set: set[int] = set()
        self._reconnected = False

    @property
    def pending_samples(self) -> int:
        return sum(len(p) for p, _ in self._pending.values())

    def mark_reconnect(self) -> None:
        """The link was re-established: the next packet may follow a long gap or a reboot."""
        self._reconnected = True
        self.mark_gap()

    def push(self, pkt: DecodedPacket, arrival_ns: int) -> list[ImuBatch]:
        """Account for one decoded packet; returns the batches now ready, in order.

        Raises:
            ValueError: the packet has no sequence number or no device time.
        """
        if pkt.seq is None or pkt.t0_us is None:
            raise ValueError("SequencedTimeline needs packets with seq and t0_us")
        c = self.counters
        c.packets_received += 1
        c.samples_received += len(pkt)
        seq = pkt.seq % self.seq_modulo
        if self._next is None:
            # Stream start: hold the first packets for the reorder window too, so that a
            # packet overtaken at the very start is not mistaken for the first one.
            half = self.seq_modulo // 2
            if self._base is None:
                self._base = seq
            u = self._base + (seq - self._base + half) % self.seq_modulo - half
            if u in self._pending:
                c.drop_samples("duplicate", len(pkt))
                return []
            self._pending[u] = (pkt, arrival_ns)
            return self._drain(arrival_ns)
        else:
            half = self.seq_modulo // 2
            d = (seq - self._next + half) % self.seq_modulo - half
            if self._reconnected and not (-self.reorder_packets <= d <= _MAX_BELIEVED_JUMP):
                # sensor rebooted: start again from this packet
                out = self.flush()
                c.resyncs += 1
                self._next, self._base, self._t_next_us = None, seq, None
                self.mark_gap()
                self._reconnected = False
                self._pending[seq] = (pkt, arrival_ns)
                out.extend(self._drain(arrival_ns))
                return out
            u = self._next + d
            if u < self._next:
                c.drop_samples("duplicate" if u in self._recent_set else "late", len(pkt))
                return []
            if u in self._pending:
                c.drop_samples("duplicate", len(pkt))
                return []
        out = []
        if self._reconnected:
            # packets missed while disconnected will never come: no point waiting for them
            out = self.flush()
            self._skip_to(u)
            self._reconnected = False
        self._pending[u] = (pkt, arrival_ns)
        out.extend(self._drain(arrival_ns))
        return out

    def flush(self) -> list[ImuBatch]:
        """Emit every held packet now (end of stream, disconnect), gaps flagged."""
        out: list[ImuBatch] = []
        if self._next is None and self._pending:
            self._next = min(self._pending)
            self._base = None
        while self._pending:
            self._skip_to(min(self._pending))
            self._emit_next(out)
        return out

    def poll(self, now_ns: int) -> list[ImuBatch]:
        """Give up on missing packets held longer than ``max_hold_ns`` (call periodically)."""
        return self._drain(now_ns)

    def _drain(self, now_ns: int) -> list[ImuBatch]:
        out: list[ImuBatch] = []
        if self._next is None and self._pending:
            oldest = min(arr for _, arr in self._pending.values())
            if len(self._pending) <= self.reorder_packets and now_ns - oldest < self.max_hold_ns:
                return out
            self._next = min(self._pending)
            self._base = None
        while self._pending:
            if self._next in self._pending:
                self._emit_next(out)
                continue
            oldest = min(arr for _, arr in self._pending.values())
            if len(self._pending) > self.reorder_packets or now_ns - oldest >= self.max_hold_ns:
                self._skip_to(min(self._pending))
                continue
            break
        return out

    def _skip_to(self, u: int) -> None:
        assert self._next is not None
        if u > self._next:
            self.counters.packets_lost += u - self._next
            self.mark_gap()
            self._next = u

    def _emit_next(self, out: list[ImuBatch]) -> None:
        assert self._next is not None
        u = self._next
        pkt, _ = self._pending.pop(u)
        self._next = u + 1
        if len(self._recent) == _RECENT_SEQS:
            self._recent_set.discard(self._recent[0])
        self._recent.append(u)
        self._recent_set.add(u)
        t0 = float(pkt.t0_us)  # type: ignore[arg-type]
        lost = 0
        if self._t_next_us is None:
            t0_unwrapped = t0
        else:
            half = self.clock_modulo_us / 2
            dt = (t0 - self._t_next_us + half) % self.clock_modulo_us - half
            t0_unwrapped = self._t_next_us + dt
            if dt > 0.5 * self.dt_us:
                lost = round(dt / self.dt_us)
        self._t_next_us = t0_unwrapped + len(pkt) * self.dt_us
        self._emit(pkt, lost, out)


class ArrivalTimeline(_Emitter):
    """Timeline for packets without sequence number or device clock: times from arrivals.

    Args:
        rate_hz: nominal sample rate, Hz.
        gap_tolerance_ns: arrivals up to this much later than the smoothed grid are
            jitter, later ones a gap.
        counters: where to count.
    """

    def __init__(
        self,
        rate_hz: float,
        gap_tolerance_ns: int = DEFAULT_GAP_TOLERANCE_NS,
        counters: LossCounters | None = None,
    ) -> None:
        super().__init__(rate_hz, counters)
        if gap_tolerance_ns <= 0:
            raise ValueError(f"gap_tolerance_ns must be > 0, got {gap_tolerance_ns}")
        self.gap_tolerance_ns = gap_tolerance_ns
        self._anchor_ns: float | None = None  # arrival time of sample index 0 at minimum latency

    pending_samples = 0

    def mark_reconnect(self) -> None:
        """The link was re-established: re-anchor on the next arrival, counting the gap."""
        self.mark_gap()

    def push(self, pkt: DecodedPacket, arrival_ns: int) -> list[ImuBatch]:
        """Account for one decoded packet; returns its batch (never held back)."""
        c = self.counters
        n = len(pkt)
        c.packets_received += 1
        c.samples_received += n
        last = self.sample_index + n - 1  # index the packet's last sample would get
        lost = 0
        if self._anchor_ns is None:
            self._anchor_ns = arrival_ns - last * self.dt_ns
        else:
            lead = arrival_ns - (self._anchor_ns + last * self.dt_ns)
            if lead > self.gap_tolerance_ns:
                lost = round(lead / self.dt_ns)
                c.packets_lost += max(1, round(lost / n))
                self._anchor_ns = arrival_ns - (last + lost) * self.dt_ns
            elif lead < 0:
                self._anchor_ns += lead
            else:
                self._anchor_ns += ANCHOR_FOLLOW * lead
        out: list[ImuBatch] = []
        self._emit(pkt, lost, out)
        return out

    def flush(self) -> list[ImuBatch]:
        return []

    def poll(self, now_ns: int) -> list[ImuBatch]:
        return []


Timeline = SequencedTimeline | ArrivalTimeline


def merge_batches(batches: list[ImuBatch]) -> list[ImuBatch]:
    """Join consecutive batches that continue each other (same dt, no gap) into one."""
    out: list[ImuBatch] = []
    run: list[ImuBatch] = []

    def close() -> None:
        if len(run) == 1:
            out.append(run[0])
        elif run:
            out.append(ImuBatch(run[0].t0_ns, run[0].dt_ns,
                                np.concatenate([b.gyr_rad_s for b in run]),
                                np.concatenate([b.acc_m_s2 for b in run]), run[0].gap_before))
        run.clear()

    for b in batches:
        if run and (b.gap_before or b.dt_ns != run[-1].dt_ns
                    or b.t0_ns != run[-1].t0_ns + len(run[-1]) * run[-1].dt_ns):
            close()
        run.append(b)
    close()
    return out
