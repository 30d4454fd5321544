"""Benchmark: a 90-day `spinewatch report` for one patient from a real InfluxDB 1.x.

Starts a private InfluxDB 1.x (tests/servers.py, free loopback port), runs the schema of
`spinewatch influx init`, and writes what 90 days of a patient worn ``--hours`` hours a day
at 100 Hz leave in retention policy ``trend``: one ``posture_1m`` point per worn minute
(6,000 samples, 60 wear seconds, the upright-still count and seconds) and the slouch episodes (``--slouches-per-day``).
The 100 Hz raw samples themselves (~780 M points for 24 h x 90 days) are not written: the
report does not read them when ``trend`` exists, which is the design this measures. Then it
times, each in a fresh process (imports and matplotlib included), as a user would run them:

- ``spinewatch report --format json`` (figures only);
- ``spinewatch report --out FILE.pdf`` (figures, PDF and 3 PNG pages).

    python benchmarks/bench_report.py [--days 90] [--hours 24] [--slouches-per-day 30] [--repeat 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

PATIENT = "p-bench"
FIRST = dt.date(2026, 1, 1)
GOAL_S = 10.0  # issue #8: a 90-day report in under 10 s


def _fill(url: str, db: str, days: int, hours: float, slouches_per_day: int) -> int:
    import urllib.request

    import numpy as np

    from spinewatch.service.storage import Influx1Store
    from spinewatch.service.storage.influx1_schema import Influx1Schema

    store = Influx1Store(url, db)
    store.ensure_database()
    for q in Influx1Schema(db, "INF").statements():
        if not q.startswith("DROP"):
            store.execute(q)
    rng = np.random.default_rng(0)
    t0 = int(dt.datetime.combine(FIRST, dt.time(), dt.UTC).timestamp())
    worn = int(hours * 60)
    points = 0
    for d in range(days):
        day0 = t0 + d * 86400 + (0 if worn >= 1440 else 7 * 3600)  # worn from 07:00 UTC
        minutes = day0 + 60 * np.arange(worn)
        flex = rng.normal(12, 10, worn)
        still = rng.integers(3000, 6001, worn)
        lines = [f"posture_1m,device=d-1,patient={PATIENT} flexion_deg={f:.3f},lateral_deg=0.5,"
                 f"samples=6000i,slouch_fraction=0.1,wear_s=60.0,still_samples={s}i,still_s={s / 100} {m * 10**9}"
                 for m, f, s in zip(minutes.tolist(), flex.tolist(), still.tolist(), strict=True)]
        starts = np.sort(rng.choice(worn * 60, slouches_per_day, replace=False)) + day0
        lines += [f"slouch,device=d-1,patient={PATIENT} duration_s={rng.uniform(30, 300):.2f},"
                  f"peak_deg=35.0,mean_deg=28.0,end_ns={s * 10**9 + 60 * 10**9}i {s * 10**9}"
                  for s in starts.tolist()]
        req = urllib.request.Request(f"{url}/write?db={db}&rp=trend&precision=ns",
                                     data="\n".join(lines).encode(), method="POST")
        urllib.request.urlopen(req, timeout=60).read()
        points += len(lines)
    return points


def _time(cmd: list[str], env: dict[str, str], repeat: int) -> tuple[float, float]:
    walls = []
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        walls.append(time.perf_counter() - t)
    return statistics.median(walls), max(walls)


def main() -> int:
    from servers import InfluxDB1Server

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--hours", type=float, default=24.0, help="worn hours per day (default 24: worst case)")
    ap.add_argument("--slouches-per-day", type=int, default=30)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    last = FIRST + dt.timedelta(days=args.days - 1)
    with InfluxDB1Server() as influx, tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        points = _fill(influx.url, "bench", args.days, args.hours, args.slouches_per_day)
        print(f"wrote {points:,} trend points ({args.days} days x {args.hours:g} h worn, "
              f"{args.slouches_per_day} slouches/day) in {time.perf_counter() - t:.1f} s")
        env = {**os.environ, "SPINEWATCH_INFLUX_URL": influx.url, "SPINEWATCH_INFLUX_DB": "bench",
               "PYTHONPATH": str(ROOT)}
        base = [sys.executable, "-m", "spinewatch", "report", "--patient", PATIENT, "--from", FIRST.isoformat(),
                "--to", last.isoformat()]
        rows = [("json", base + ["--format", "json"]), ("pdf + 3 png", base + ["--out", f"{tmp}/r.pdf"])]
        print(f"\n| output | wall time, median of {args.repeat} (max) | goal |\n|---|---|---|")
        for name, cmd in rows:
            med, worst = _time(cmd, env, args.repeat)
            print(f"| {name} | {med:.2f} s ({worst:.2f} s) | < {GOAL_S:g} s |")
    print(f"\nreproduce: python benchmarks/bench_report.py --days {args.days} --hours {args.hours:g} "
          f"--slouches-per-day {args.slouches_per_day} --repeat {args.repeat}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
