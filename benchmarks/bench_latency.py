"""Benchmark: latency from MQTT publish to stored in InfluxDB, at default ingest batching.

A private Mosquitto and InfluxDB 1.6.7 (tests/servers.py); N simulated bridges publish one
1-second posture message (100 samples) per second each, in real time, plus a slouch event
every 10 s each, through the real Publisher; one ingest worker with default settings writes
them. Latency = time the InfluxDB write returned (HTTP 204: the points are queryable) minus
the time the bridge handed the message to its publisher. A final query checks every point
arrived.

    python benchmarks/bench_latency.py [--patients 50] [--seconds 30]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

# after the sys.path set-up above, so that the script runs from a checkout without installing
from spinewatch.model import PostureBatch, SlouchEvent  # noqa: E402
from spinewatch.service.bridge.publisher import Publisher  # noqa: E402
from spinewatch.service.config import Config  # noqa: E402
from spinewatch.service.ingest.worker import IngestWorker  # noqa: E402
from spinewatch.service.storage import Influx1Store  # noqa: E402
from spinewatch.service.transport.wire import PostureMsg  # noqa: E402


class TimedStore(Influx1Store):
    """Records when each message's points were accepted by InfluxDB."""

    def __init__(self, *a: object, **k: object) -> None:
        super().__init__(*a, **k)  # type: ignore[arg-type]
        self.done: dict[tuple[str, str, int], float] = {}
        self.lock = threading.Lock()

    def write(self, msgs):  # type: ignore[no-untyped-def]
        n = super().write(msgs)
        now = time.perf_counter()
        with self.lock:
            for m in msgs:  # the bridges' status messages are stored too, not timed
                if isinstance(m, PostureMsg):
                    self.done.setdefault(("p", m.patient, m.t0_ns), now)
                elif isinstance(m, SlouchEvent):
                    self.done.setdefault(("e", m.patient, m.start_ns), now)
        return n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patients", type=int, default=50)
    ap.add_argument("--seconds", type=int, default=30, help="simulated seconds, >= 10 (default 30)")
    args = ap.parse_args()
    if args.seconds < 10:  # each bridge sends its first slouch event at the end of second 10
        ap.error(f"--seconds must be at least 10 (got {args.seconds}): slouch events go out every 10 s")
    from servers import InfluxDB1Server, MosquittoServer

    with MosquittoServer() as mosquitto, InfluxDB1Server() as influx:
        cfg = Config.load({"SPINEWATCH_MQTT_URL": mosquitto.url, "SPINEWATCH_WORKER_ID": "lat"})
        store = TimedStore(influx.url, "lat")
        store.ensure_database()
        worker = IngestWorker(cfg.mqtt, cfg.ingest, store, "5")
        worker.start()
        worker.subscribed.wait(10)
        pubs = [Publisher(cfg.mqtt, f"p{i}", "d1", "5") for i in range(args.patients)]
        for p in pubs:
            p.__enter__()
        sent: dict[tuple[str, str, int], float] = {}
        t0_ns = time.time_ns() // 10**9 * 10**9
        rng = np.random.default_rng(0)
        start = time.perf_counter()
        for sec in range(args.seconds):
            target = start + sec + 1.0  # the message of second `sec` is complete at its end
            while time.perf_counter() < target:
                time.sleep(0.001)
            for p in pubs:
                b = PostureBatch(p.patient, "d1", t0_ns + sec * 10**9, 10**7, rng.uniform(-10, 40, 100),
                                 rng.uniform(-5, 5, 100), np.zeros(100, np.int8), np.full(100, 2, np.int8))
                sent[("p", p.patient, b.t0_ns)] = time.perf_counter()
                p.publish_posture(b)
                if sec % 10 == 9:
                    e = SlouchEvent(p.patient, "d1", t0_ns + (sec - 8) * 10**9, t0_ns + sec * 10**9, 31.0, 27.0)
                    sent[("e", p.patient, e.start_ns)] = time.perf_counter()
                    p.publish_event(e)
        deadline = time.perf_counter() + 60
        while len(store.done) < len(sent) and time.perf_counter() < deadline:
            time.sleep(0.05)
        for p in pubs:
            p.close()
        worker.stop()
        rows = influx.points('SELECT count("flexion_deg") FROM "posture"', "lat")
        stored = int(rows[0]["count"]) if rows else 0
    post = np.array([store.done[k] - t for k, t in sent.items() if k[0] == "p" and k in store.done]) * 1e3
    ev = np.array([store.done[k] - t for k, t in sent.items() if k[0] == "e" and k in store.done]) * 1e3
    n_post = sum(1 for k in sent if k[0] == "p")
    print(f"{args.patients} bridges x {args.seconds} s at 100 Hz: {n_post} posture messages, "
          f"{len(ev)} slouch events; {stored:,} of {n_post * 100:,} points stored")
    print(f"posture publish -> stored: p50 {np.percentile(post, 50):6.1f} ms   p99 {np.percentile(post, 99):6.1f} ms   "
          f"max {post.max():6.1f} ms  (goal p99 < 1000 ms)")
    print(f"slouch event -> stored:    p50 {np.percentile(ev, 50):6.1f} ms   p99 {np.percentile(ev, 99):6.1f} ms   "
          f"max {ev.max():6.1f} ms  (goal p99 < 500 ms)")
    print(f"reproduce: python benchmarks/bench_latency.py --patients {args.patients} --seconds {args.seconds}")
    return 0 if stored == n_post * 100 else 1


if __name__ == "__main__":
    sys.exit(main())
