"""Benchmark: `spinewatch export` of raw 100 Hz data -- peak memory (RSS) and rows/s.

Fills a store with DAYS x 24 h of one patient's posture at 100 Hz (8.64 M samples a day,
1-second messages of 100 samples, as the bridge sends them), then runs the real command
line, ``python -m spinewatch export --format FMT``, in a child process and reports its
wall time, rows/s and peak resident memory (``getrusage(RUSAGE_CHILDREN).ru_maxrss``,
the child being the only one).

- ``--store sqlite`` (default): the embedded store, written directly with SqliteStore.write.
- ``--store influx``: a private InfluxDB 1.x (tests/servers.py, free loopback port), written
  with Influx1Store.write (line protocol, 50,000 points per request). Slow to fill: InfluxDB
  1.6 takes ~100-200 k points/s here, so keep ``--days`` small (the export reads one hour
  per query either way, so its memory does not depend on the period).

The exported files are written to a temporary folder and deleted afterwards (30 days of CSV
is ~20 GB).

    python benchmarks/bench_export.py --days 30 --format csv
    python benchmarks/bench_export.py --days 30 --format parquet
    python benchmarks/bench_export.py --days 1 --store influx --format csv
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

T0_NS = 1_772_323_200 * 10**9  # 2026-03-01T00:00:00Z
RATE_HZ = 100
DT_NS = 10**9 // RATE_HZ
MSG_SAMPLES = 100  # one message per second, as the bridge publishes
PATIENT, DEVICE = "p-bench", "d-1"


def _hour_of_messages(hour: int):  # type: ignore[no-untyped-def]
    """3,600 posture messages (one hour at 100 Hz) with plausible values (a slow sway + noise)."""
    import numpy as np

    from spinewatch.service.transport.wire import PostureMsg

    rng = np.random.default_rng(hour)
    n = 3600 * MSG_SAMPLES
    t = np.arange(n) / RATE_HZ
    flex = np.round(12 + 10 * np.sin(2 * np.pi * t / 900) + rng.normal(0, 1.5, n), 2)
    lat = np.round(rng.normal(0, 3, n), 2)
    state = (flex > 20).astype(np.int8)
    act = np.where(rng.random(n) < 0.8, 2, 3).astype(np.int8)
    base = T0_NS + hour * 3600 * 10**9
    return [
        PostureMsg(PATIENT, DEVICE, base + k * MSG_SAMPLES * DT_NS, DT_NS, flex[k * MSG_SAMPLES:(k + 1) * MSG_SAMPLES],
                   lat[k * MSG_SAMPLES:(k + 1) * MSG_SAMPLES], state[k * MSG_SAMPLES:(k + 1) * MSG_SAMPLES],
                   act[k * MSG_SAMPLES:(k + 1) * MSG_SAMPLES])
        for k in range(3600)
    ]


def fill(store, days: int, chunk_msgs: int) -> int:  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    samples = 0
    for h in range(days * 24):
        msgs = _hour_of_messages(h)
        for i in range(0, len(msgs), chunk_msgs):
            store.write(msgs[i:i + chunk_msgs])
        samples += len(msgs) * MSG_SAMPLES
        if h % 24 == 23:
            print(f"  filled day {h // 24 + 1}/{days}: {samples:,} samples, {time.perf_counter() - t:.0f} s",
                  file=sys.stderr, flush=True)
    return samples


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--format", choices=("csv", "parquet"), default="csv")
    ap.add_argument("--store", choices=("sqlite", "influx"), default="sqlite")
    ap.add_argument("--workdir", default="", help="where the store and the export go (default: a temp folder)")
    ap.add_argument("--keep-store", action="store_true", help="reuse/keep workdir/bench.sqlite between runs")
    args = ap.parse_args()

    from spinewatch.service.storage import Influx1Store, SqliteStore

    work = Path(args.workdir or tempfile.mkdtemp(prefix="sw-bench-export-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPINEWATCH_")}
    env["PYTHONPATH"] = str(ROOT)
    server = None
    fill_s = 0.0
    try:
        expected = args.days * 86_400 * RATE_HZ
        if args.store == "sqlite":
            db_path = work / "bench.sqlite"
            store = SqliteStore(db_path)
            have = store.has_patient(PATIENT)
            if not (args.keep_store and have):
                t = time.perf_counter()
                expected = fill(store, args.days, 3600)
                fill_s = time.perf_counter() - t
            store.close()
            source = ["--sqlite", str(db_path)]
            size_note = f"store {db_path.stat().st_size / 1e9:.2f} GB"
        else:
            from servers import InfluxDB1Server

            server = InfluxDB1Server(work / "influxdb")
            server.start()
            store = Influx1Store(server.url, "bench")
            store.ensure_database()
            t = time.perf_counter()
            expected = fill(store, args.days, 500)  # 50,000 points per write
            fill_s = time.perf_counter() - t
            env.update(SPINEWATCH_INFLUX_URL=server.url, SPINEWATCH_INFLUX_DB="bench")
            source = []
            size_note = f"InfluxDB {server.url}"
        days_end = time.strftime("%Y-%m-%d", time.gmtime(T0_NS // 10**9 + args.days * 86_400))
        out = work / "export" / "bench"
        cmd = [sys.executable, "-m", "spinewatch", "export", "--patient", PATIENT, "--from", "2026-03-01",
               "--to", days_end, "--tz", "UTC", "--format", args.format, "--out", str(out), *source]
        print(f"filled {expected:,} samples in {fill_s:.0f} s ({size_note}); running: {' '.join(cmd)}",
              file=sys.stderr, flush=True)
        t = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - t
        if proc.returncode != 0:
            print(proc.stdout, proc.stderr, file=sys.stderr)
            return 1
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # Linux: KiB
        posture = out.with_name(f"bench.posture.{args.format}")
        rows = int(proc.stdout.split()[0].replace(",", ""))
        assert rows == expected, (rows, expected)
        size_gb = posture.stat().st_size / 1e9
        print(f"\nexport of {args.days} days at {RATE_HZ} Hz from {args.store} to {args.format}: {rows:,} rows "
              f"in {wall:.1f} s = {rows / wall:,.0f} rows/s; peak RSS {peak_mb:.0f} MB; output {size_gb:.2f} GB")
        print(f"reproduce: python benchmarks/bench_export.py --days {args.days} --store {args.store} "
              f"--format {args.format}")
    finally:
        if server is not None:
            server.stop()
        if args.workdir and args.keep_store:
            shutil.rmtree(work / "export", ignore_errors=True)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
