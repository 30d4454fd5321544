"""Soak: ingest worker memory over a long run at many patients (RSS must stay flat).

A private Mosquitto and InfluxDB 1.6.7; `spinewatch ingest` runs as its own process; N
simulated bridges publish one 1-second posture message (100 samples) per second each for
the given time. The worker's resident memory (/proc/<pid>/status VmRSS) is sampled every
10 s; the script prints the series and compares the first and last minute.

    python benchmarks/soak_ingest.py [--patients 100] [--minutes 10]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import numpy as np  # noqa: E402

from spinewatch.model import PostureBatch  # noqa: E402
from spinewatch.service.bridge.publisher import Publisher  # noqa: E402
from spinewatch.service.config import Config  # noqa: E402


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patients", type=int, default=100)
    ap.add_argument("--minutes", type=float, default=10.0)
    args = ap.parse_args()
    from servers import InfluxDB1Server, MosquittoServer

    with MosquittoServer() as mosquitto, InfluxDB1Server() as influx:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            health_port = s.getsockname()[1]
        env = {**os.environ, "SPINEWATCH_MQTT_URL": mosquitto.url, "SPINEWATCH_INFLUX_URL": influx.url,
               "SPINEWATCH_INFLUX_DB": "soak", "SPINEWATCH_WORKER_ID": "soak",
               "SPINEWATCH_HEALTH_LISTEN": f"127.0.0.1:{health_port}", "PYTHONPATH": str(ROOT)}
        worker = subprocess.Popen([sys.executable, "-m", "spinewatch", "ingest", "--stats-interval", "3600"],
                                  env=env, stderr=subprocess.DEVNULL)
        deadline = time.perf_counter() + 60
        while time.perf_counter() < deadline:  # publish only once the worker's subscription exists
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{health_port}/healthz", timeout=2) as r:
                    if json.loads(r.read()).get("subscribed"):
                        break
            except OSError:
                pass
            time.sleep(0.2)
        cfg = Config.load({"SPINEWATCH_MQTT_URL": mosquitto.url})
        pubs = [Publisher(cfg.mqtt, f"p{i}", "d1", "5") for i in range(args.patients)]
        for p in pubs:
            p.__enter__()
        rng = np.random.default_rng(0)
        t0_ns = time.time_ns() // 10**9 * 10**9
        seconds = int(args.minutes * 60)
        samples: list[tuple[int, float]] = []
        start = time.perf_counter()
        for sec in range(seconds):
            while time.perf_counter() < start + sec + 1:
                time.sleep(0.002)
            for p in pubs:
                p.publish_posture(PostureBatch(p.patient, "d1", t0_ns + sec * 10**9, 10**7,
                                               rng.uniform(-10, 40, 100), rng.uniform(-5, 5, 100)))
            if sec % 10 == 0:
                behind = time.perf_counter() - (start + sec + 1)
                samples.append((sec, rss_mb(worker.pid)))
                if behind > 1.0:
                    print(f"(the publishers run {behind:.1f} s behind real time)", flush=True)
                print(f"t={sec:4d} s  ingest RSS {samples[-1][1]:6.1f} MB", flush=True)
        for p in pubs:
            p.wait_all_acked(60)
            p.close()
        expected = seconds * args.patients * 100
        deadline = time.perf_counter() + 120
        stored = 0
        while time.perf_counter() < deadline:
            rows = influx.points('SELECT count("flexion_deg") FROM "posture"', "soak")
            stored = int(rows[0]["count"]) if rows else 0
            if stored >= expected:
                break
            time.sleep(1)
        worker.terminate()
        worker.wait(30)
    first = np.mean([r for s, r in samples if s < 60])
    last = np.mean([r for s, r in samples if s >= seconds - 60])
    print(f"\n{args.patients} patients x {args.minutes:g} min: {stored:,} of {expected:,} points stored")
    print(f"ingest RSS first minute {first:.1f} MB, last minute {last:.1f} MB ({last - first:+.1f} MB)")
    print(f"reproduce: python benchmarks/soak_ingest.py --patients {args.patients} --minutes {args.minutes:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
