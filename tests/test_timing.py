"""Timing and loss accounting: sequence unwrap, reorder, duplicates, gaps, arrival-time smoothing."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from spinewatch.firmware_bridge.profiles import DecodedPacket
from spinewatch.firmware_bridge.timing import (
    ArrivalTimeline,
    LossCounters,
    SequencedTimeline,
    merge_batches,
)

RATE_HZ = 100.0
DT_NS = 10_000_000
N = 5  # samples per packet


def pkt(k: int, *, seq: int | None = None, t_index: int | None = None, n: int = N,
        seq_base: int = 0, clock_base_us: int = 0) -> DecodedPacket:
    """Packet k of a stream: sample ids k*n .. k*n+n-1 stored in acc x (to check order)."""
    ids = np.arange(k * n, k * n + n, dtype=np.float64)
    acc = np.zeros((n, 3))
    acc[:, 0] = ids
    ti = k * n if t_index is None else t_index
    return DecodedPacket(
        (seq_base + k) % 65536 if seq is None else seq,
        (clock_base_us + ti * 10_000) % (1 << 32),
        acc, np.zeros((n, 3)),
    )


def ids_of(batches):
    return [int(v) for b in batches for v in b.acc_m_s2[:, 0]]


def check_invariant(tl) -> None:
    c = tl.counters
    assert c.samples_received == c.samples_emitted + sum(c.dropped_samples.values()) + tl.pending_samples


def run(tl, packets, arrivals=None):
    out = []
    for i, p in enumerate(packets):
        out += tl.push(p, (arrivals[i] if arrivals else i * 50_000_000))
        check_invariant(tl)
    return out


def check_time_axis(batches):
    """t0 of each batch continues the previous one unless gap_before; t0 = sample id * dt."""
    for a, b in itertools.pairwise(batches):
        if not b.gap_before:
            assert b.t0_ns == a.t0_ns + len(a) * a.dt_ns
    for b in batches:
        assert b.t0_ns == int(b.acc_m_s2[0, 0]) * DT_NS  # sensor time = the sample's true index


# (name, packets, reorder_packets, emitted ids, gaps, packets_lost, samples_lost, dropped)
CASES = [
    ("in order", [pkt(k) for k in range(4)], 8, list(range(20)), 0, 0, 0, {}),
    ("out of order", [pkt(0), pkt(2), pkt(1), pkt(3)], 8, list(range(20)), 0, 0, 0, {}),
    ("overtaken at stream start", [pkt(1), pkt(0), pkt(2), pkt(3)], 8, list(range(20)), 0, 0, 0, {}),
    ("duplicate", [pkt(0), pkt(1), pkt(1), pkt(2)], 8, list(range(15)), 0, 0, 0, {"duplicate": 5}),
    ("duplicate while held", [pkt(0), pkt(2), pkt(2), pkt(1)], 8, list(range(15)), 0, 0, 0, {"duplicate": 5}),
    ("loss given up after reorder window",
     [pkt(0), pkt(1), pkt(3), pkt(4), pkt(5)], 2,
     list(range(10)) + list(range(15, 30)), 1, 1, 5, {}),
    ("late after the gap was declared",
     [pkt(0), pkt(2), pkt(3), pkt(4), pkt(1)], 2,
     list(range(5)) + list(range(10, 25)), 1, 1, 5, {"late": 5}),
    ("sequence wrap", [pkt(k, seq_base=65534) for k in range(4)], 8, list(range(20)), 0, 0, 0, {}),
    ("clock wrap", [pkt(k, clock_base_us=(1 << 32) - 60_000) for k in range(4)], 8, list(range(20)), 0, 0, 0, {}),
    ("loss across sequence wrap",
     [pkt(0, seq_base=65535), pkt(2, seq_base=65535), pkt(3, seq_base=65535), pkt(4, seq_base=65535)], 1,
     list(range(5)) + list(range(10, 25)), 1, 1, 5, {}),
]


@pytest.mark.parametrize(("name", "packets", "reorder", "ids", "gaps", "plost", "slost", "dropped"),
                         CASES, ids=[c[0] for c in CASES])
def test_sequenced_timeline_table(name, packets, reorder, ids, gaps, plost, slost, dropped):
    tl = SequencedTimeline(RATE_HZ, reorder_packets=reorder)
    out = run(tl, packets) + tl.flush()
    check_invariant(tl)
    assert ids_of(out) == ids
    assert sum(b.gap_before for b in out) == gaps == tl.counters.gaps
    assert (tl.counters.packets_lost, tl.counters.samples_lost) == (plost, slost)
    assert tl.counters.dropped_samples == dropped
    check_time_axis(out)


def test_clock_gap_without_sequence_gap_is_a_sensor_side_loss():
    # consecutive seqs, but the device clock says 3 samples were skipped (FIFO overflow)
    packets = [pkt(0), DecodedPacket(1, 8 * 10_000, pkt(1).acc_m_s2 + 3, np.zeros((N, 3)))]
    tl = SequencedTimeline(RATE_HZ)
    out = run(tl, packets)
    assert [b.t0_ns for b in out] == [0, 8 * DT_NS]
    assert out[1].gap_before and tl.counters.samples_lost == 3 and tl.counters.packets_lost == 0


def test_missing_packet_is_given_up_after_max_hold_on_poll():
    tl = SequencedTimeline(RATE_HZ, reorder_packets=8, max_hold_ns=40_000_000)
    assert tl.push(pkt(0), 0) == []  # the stream's first packet waits for the reorder window
    assert ids_of(tl.poll(40_000_000)) == list(range(5))
    assert tl.push(pkt(2), 100_000_000) == []  # held, waiting for 1
    assert tl.poll(130_000_000) == []  # 30 ms: keep waiting
    out = tl.poll(140_000_000)
    assert ids_of(out) == list(range(10, 15)) and out[0].gap_before
    assert tl.counters.packets_lost == 1


def test_reconnect_believes_a_forward_jump_and_counts_it():
    tl = SequencedTimeline(RATE_HZ)
    out = run(tl, [pkt(0), pkt(1)])
    tl.mark_reconnect()
    out += tl.push(pkt(101), 10**10)  # 99 packets missed while disconnected
    assert tl.counters.packets_lost == 99 and tl.counters.samples_lost == 99 * N
    assert out[-1].gap_before and out[-1].t0_ns == 101 * N * DT_NS
    assert tl.counters.resyncs == 0


def test_reconnect_after_sensor_reboot_resyncs():
    tl = SequencedTimeline(RATE_HZ)
    run(tl, [pkt(k, seq_base=500) for k in range(3)])
    tl.mark_reconnect()
    assert tl.push(DecodedPacket(0, 0, np.ones((N, 3)), np.zeros((N, 3))), 10**10) == []
    out = tl.poll(10**10 + tl.max_hold_ns)
    assert tl.counters.resyncs == 1 and out[0].gap_before
    assert out[0].t0_ns == 3 * N * DT_NS  # the sensor time axis never goes backwards
    out = tl.push(DecodedPacket(1, 50_000, np.ones((N, 3)), np.zeros((N, 3))), 10**10 + tl.max_hold_ns + 1)
    assert not out[0].gap_before and out[0].t0_ns == 4 * N * DT_NS


def test_sequenced_timeline_refuses_packets_without_seq():
    with pytest.raises(ValueError, match="seq"):
        SequencedTimeline(RATE_HZ).push(DecodedPacket(None, None, np.zeros((1, 3)), np.zeros((1, 3))), 0)


# ------------------------------------------------------------------ arrival times


def one(k: int) -> DecodedPacket:
    return pkt(k, n=1, seq=None)


def test_arrival_timeline_smooths_connection_event_jitter():
    """1-sample packets delivered in bursts per 45 ms connection event, random latency."""
    rng = np.random.default_rng(1)
    n = 2000
    sample_t = np.arange(n) * DT_NS
    event_ns = 45_000_000
    arrivals = ((sample_t // event_ns + 1) * event_ns + rng.integers(0, 8_000_000, n)).tolist()
    arrivals = np.maximum.accumulate(arrivals).tolist()  # one link delivers in order
    tl = ArrivalTimeline(RATE_HZ)
    out = run(tl, [one(k) for k in range(n)], arrivals)
    assert sum(b.gap_before for b in out) == 0 and tl.counters.samples_lost == 0
    assert [b.t0_ns for b in out] == [k * DT_NS for k in range(n)]


def test_arrival_timeline_counts_a_silence_as_lost_samples():
    arrivals = [k * DT_NS for k in range(50)] + [k * DT_NS for k in range(150, 160)]
    packets = [one(k) for k in range(50)] + [one(k) for k in range(150, 160)]
    tl = ArrivalTimeline(RATE_HZ)
    out = run(tl, packets, arrivals)
    assert tl.counters.samples_lost == 100 and tl.counters.gaps == 1
    assert out[50].gap_before and out[50].t0_ns == 150 * DT_NS
    check_time_axis(out)


def test_arrival_timeline_follows_a_slow_sensor_clock_without_false_gaps():
    # the sensor really runs at 99 Hz: arrivals drift 1 % later than the nominal grid
    tl = ArrivalTimeline(RATE_HZ)
    out = run(tl, [one(k) for k in range(3000)], [int(k * DT_NS * 100 / 99) for k in range(3000)])
    assert tl.counters.gaps == 0 and len(ids_of(out)) == 3000


def test_merge_batches_joins_continuations_only():
    tl = SequencedTimeline(RATE_HZ, reorder_packets=0)
    out = run(tl, [pkt(0), pkt(1), pkt(3), pkt(4)])
    merged = merge_batches(out)
    assert [len(b) for b in merged] == [10, 10] and merged[1].gap_before
    assert ids_of(merged) == ids_of(out)


def test_loss_counters_status_fields():
    c = LossCounters(packets_received=95, packets_lost=5)
    c.drop_samples("late", 3)
    c.drop_packet("decode:too_short")
    s = c.as_status()
    assert s["packets_lost_pct"] == 5.0 and s["samples_dropped"] == {"late": 3}
    assert s["packets_dropped"] == {"decode:too_short": 1}
