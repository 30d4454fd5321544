"""Accuracy of the activity context (lying / upright still / upright moving) on a simulated day.

Runs the simulator's scripted posture day through ``PostureTracker`` in 1-s chunks (as the
bridge does) and compares each sample's activity with the script's segment label: lying for
"lie", upright moving for "walk", upright still for everything else (sitting, slouching,
standing, taps). Prints the share of samples that agree, overall and per true class, and a
confusion table.

    PYTHONPATH=. python benchmarks/bench_activity.py [--hours 8] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hours", type=float, default=8.0, help="simulated hours (default 8)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the scripted day (default 0)")
    args = ap.parse_args()
    from spinewatch.firmware_bridge.sim import (
        SEGMENT_KINDS,
        PostureScript,
        simulate,
    )
    from spinewatch.model import Activity
    from spinewatch.signal import PostureTracker

    rate_hz = 100.0
    script = PostureScript.day(int(args.hours * 3600), seed=args.seed)
    rec = simulate(script, rate_hz, seed=args.seed)
    tracker = PostureTracker(rate_hz)
    t0 = time.perf_counter()
    step = int(rate_hz)
    act = np.concatenate([tracker.update(rec.gyr_rad_s[i:i + step], rec.acc_m_s2[i:i + step]).activity
                          for i in range(0, len(rec.t_s), step)])
    dt = time.perf_counter() - t0
    kinds = np.array(SEGMENT_KINDS)[rec.labels]
    truth = np.where(kinds == "lie", Activity.LYING,
                     np.where(kinds == "walk", Activity.UPRIGHT_MOVING, Activity.UPRIGHT_STILL))
    classes = (Activity.LYING, Activity.UPRIGHT_STILL, Activity.UPRIGHT_MOVING)
    print(f"simulated day: {args.hours:g} h, seed {args.seed}, {len(act):,} samples at {rate_hz:g} Hz "
          f"(tracker {len(act) / dt:,.0f} samples/s)")
    print(f"agreement with the script: {np.mean(act == truth):.2%} of samples")
    print(f"{'true class':<16} {'samples':>10} {'agree':>8}   detected as: "
          + "  ".join(f"{c.name.lower():>14}" for c in classes))
    for c in classes:
        sel = truth == c
        row = "  ".join(f"{np.mean(act[sel] == d):>14.2%}" for d in classes) if sel.any() else ""
        agree = np.mean(act[sel] == c) if sel.any() else np.nan
        print(f"{c.name.lower():<16} {int(sel.sum()):>10,} {agree:>8.2%}   {row}")
    print(f"reproduce: PYTHONPATH=. python benchmarks/bench_activity.py --hours {args.hours:g} --seed {args.seed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
