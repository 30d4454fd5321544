"""Benchmark: cost of following haptic alerts in the bridge, per batch, next to the posture tracker.

Feeds a simulated 8-hour day at 100 Hz in 10-sample batches (one BLE notification's worth, the
bridge's smallest unit) to ``AlertOutcomes.update`` with a buzz in every slouch, and the same
batches' IMU samples to ``PostureTracker.update``; prints microseconds per batch for both.

    python benchmarks/bench_alert_outcome.py [--batch 10] [--minutes 480]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from spinewatch.firmware_bridge.sim import PostureScript, simulate
from spinewatch.signal import PostureTracker
from spinewatch.signal.alert_outcome import AlertOutcomes

RATE_HZ = 100.0
DT_NS = 10_000_000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=10, help="samples per batch (default 10)")
    ap.add_argument("--minutes", type=float, default=480.0, help="simulated minutes (default 480)")
    args = ap.parse_args()
    rec = simulate(PostureScript.day(args.minutes * 60, seed=0), RATE_HZ, seed=0)
    tracker = PostureTracker(RATE_HZ)
    tracker.update(rec.gyr_rad_s[:2], rec.acc_m_s2[:2])  # load the Numba kernels
    tracker = PostureTracker(RATE_HZ)
    n, b = len(rec.gyr_rad_s), args.batch
    states = []
    t0 = time.perf_counter()
    for i in range(0, n, b):
        states.append(tracker.update(rec.gyr_rad_s[i:i + b], rec.acc_m_s2[i:i + b]).state)
    t_tracker = time.perf_counter() - t0
    state = np.concatenate(states)
    buzz_at = set((np.flatnonzero(np.diff(np.r_[0, state]) == 1)).tolist())  # a buzz at each confirmed slouch
    outcomes = AlertOutcomes()
    alerts = decided = open_batches = 0
    t0 = time.perf_counter()
    for k, st in enumerate(states):
        t_ns = k * b * DT_NS
        for j in range(k * b, k * b + len(st)):
            if j in buzz_at:
                outcomes.add(j * DT_NS, 30.0, 60.0)
                alerts += 1
        open_batches += outcomes.pending > 0
        decided += len(outcomes.update(st, t_ns, DT_NS))
    t_outcomes = time.perf_counter() - t0
    batches = len(states)
    print(f"{args.minutes:g} min at {RATE_HZ:g} Hz in {batches:,} batches of {b} samples; {alerts} alerts, "
          f"{decided} decided; {open_batches:,} batches with an open alert")
    print(f"PostureTracker.update: {1e6 * t_tracker / batches:.1f} us per batch")
    print(f"AlertOutcomes.add + update: {1e6 * t_outcomes / batches:.1f} us per batch "
          f"({100 * t_outcomes / t_tracker:.1f} % of the tracker)")
    print(f"reproduce: python benchmarks/bench_alert_outcome.py --batch {b} --minutes {args.minutes:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
