"""Benchmark: the month-long clinic demo, 5 simulated patients x 30 days, as fast as possible.

Runs `spinewatch demo --patients 5 --days 30 --speed max` in a fresh process (imports, Numba cache
loading, broker start-up, the worker processes and the five PDF reports all count) and prints the
wall time, the samples streamed and the rate. Each worn day is one session of --duration (30 min by
default) at 100 Hz; see the demo's own "simulated:" line for the scale.

    python benchmarks/bench_clinic_demo.py [--patients 5] [--days 30] [--duration 30m]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

GOAL_S = 300.0  # issue 13: a month of 5 patients "in a few minutes" on a 2-core machine


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patients", default="5")
    ap.add_argument("--days", default="30")
    ap.add_argument("--duration", default="30m", help="wear of each simulated day")
    args = ap.parse_args()
    cmd = [sys.executable, "-m", "spinewatch", "demo", "--patients", args.patients, "--days", args.days,
           "--duration", args.duration, "--speed", "max"]
    with tempfile.TemporaryDirectory() as out:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SPINEWATCH_")}
        t0 = time.perf_counter()
        proc = subprocess.run([*cmd, "--out", out], capture_output=True, text=True, env=env, check=False)
        wall = time.perf_counter() - t0
    if proc.returncode != 0:
        print(proc.stdout, proc.stderr, sep="\n")
        return proc.returncode
    m = re.search(r"streamed ([\d,]+) samples in ([\d.]+) s \(([\d,]+) samples/s\); ([\d.]+) s in all", proc.stdout)
    print(proc.stdout.split("\nwhat a therapist opens")[0].strip())
    print()
    if m:
        samples = int(m.group(1).replace(",", ""))
        print(f"clinic demo {args.patients} patients x {args.days} days x {args.duration}: {samples:,} samples; "
              f"{wall:.1f} s wall (process start to exit); streaming {m.group(2)} s ({m.group(3)} samples/s); "
              f"goal < {GOAL_S:.0f} s; {os.cpu_count()} CPUs, load average before/after in the README row")
    print("reproduce: python benchmarks/bench_clinic_demo.py --patients", args.patients, "--days", args.days,
          "--duration", args.duration)
    return 0


if __name__ == "__main__":
    sys.exit(main())
