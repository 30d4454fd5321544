"""Benchmark: the whole demo pipeline, 8 simulated hours at 100 Hz, as fast as possible.

Runs `spinewatch demo --duration 8h --speed max` in a fresh process (so JIT cache loading,
imports and broker start-up count) and prints the wall time and samples per second.

    python benchmarks/bench_demo.py [--duration 8h]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

GOAL_S = 60.0  # issue #3: 8 h (2.88 M samples) in under 60 s on a 2-core machine


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", default="8h")
    args = ap.parse_args()
    cmd = [sys.executable, "-m", "spinewatch", "demo", "--duration", args.duration, "--speed", "max"]
    with tempfile.TemporaryDirectory() as out:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SPINEWATCH_")}
        t0 = time.perf_counter()
        proc = subprocess.run([*cmd, "--out", out], capture_output=True, text=True, env=env, check=False)
        wall = time.perf_counter() - t0
    if proc.returncode != 0:
        print(proc.stdout, proc.stderr, sep="\n")
        return proc.returncode
    m = re.search(r"\(([\d,]+) samples\) in ([\d.]+) s: ([\d,]+) samples/s", proc.stdout)
    samples = int(m.group(1).replace(",", "")) if m else 0
    broker = re.search(r"via (embedded \w+)", proc.stdout)
    print(f"demo {args.duration}: {samples:,} samples, {wall:.1f} s wall (process start to exit), "
          f"{samples / wall:,.0f} samples/s end to end; pipeline alone {m.group(2) if m else '?'} s")
    print(f"broker: {broker.group(1) if broker else '?'}; goal for 8h: < {GOAL_S:.0f} s")
    print("reproduce: python benchmarks/bench_demo.py --duration", args.duration)
    return 0


if __name__ == "__main__":
    sys.exit(main())
