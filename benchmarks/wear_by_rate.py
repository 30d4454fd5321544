"""Figures: wear time, days with data and RTM flags of the same minutes worn at 10-200 Hz.

Stores tests/test_wear_rates.py's schedule (17 days: 16 worn 90 s, one worn 30 s; 24.5 wear
minutes; one-second posture messages with ``dt_ns = 1e9 / rate``) for one patient per rate in a
SQLite store, then runs ``spinewatch report --format json`` for each as a subprocess. With
``--src DIR`` the report runs from another checkout's code (e.g. old main, to compare), from a
neutral working directory so that ``python -m`` imports that code:

    python benchmarks/wear_by_rate.py
    git archive 0477483 spinewatch | tar -x -C /tmp/old && python benchmarks/wear_by_rate.py --src /tmp/old
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", default=str(ROOT), help="folder holding the spinewatch package to report with")
    args = ap.parse_args()
    from test_wear_rates import D0, DAYS, RATES_HZ, batches

    from spinewatch.service.storage import SqliteStore
    from spinewatch.service.transport.wire import PostureMsg

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "store.sqlite"
        store = SqliteStore(db)
        for rate in RATES_HZ:
            store.write([PostureMsg(b.patient, b.device, b.t0_ns, b.dt_ns, b.flexion_deg, b.lateral_deg, b.state,
                                    b.activity, None, None) for b in batches(rate)])
        store.close()
        env = {**os.environ, "PYTHONPATH": str(Path(args.src).resolve())}
        env.pop("SPINEWATCH_INFLUX_URL", None)
        last = D0 + dt.timedelta(days=DAYS - 1)
        print(f"code: {args.src}; {D0} to {last} (UTC), 24.5 wear minutes at every rate")
        print("| rate | wear_time_min | worn minutes | days_with_data | RTM 16+ | RTM 2-15 |")
        print("|---|---|---|---|---|---|")
        for rate in RATES_HZ:
            r = subprocess.run([sys.executable, "-m", "spinewatch", "report", "--patient", f"p-{rate}hz",
                                "--from", D0.isoformat(), "--to", last.isoformat(), "--tz", "UTC",
                                "--format", "json", "--sqlite", str(db)],
                               env=env, cwd=tmp, capture_output=True, text=True, check=True)
            j = json.loads(r.stdout)
            p = j["rtm"][0]
            print(f"| {rate} Hz | {j['wear_time_min']} | {sum(d['worn_min'] for d in j['days'])} | "
                  f"{j['days_with_data']} | {p['meets_16_plus_days']} | {p['meets_2_to_15_days']} |")
    print(f"reproduce: python benchmarks/wear_by_rate.py --src {args.src}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
