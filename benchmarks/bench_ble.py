"""BLE bridge benchmarks: decoder speed, 20 simulated sensors through one bridge process, latency.

Run (from the repository root; starts a private Mosquitto on a free loopback port):

    PYTHONPATH=.:tests python benchmarks/bench_ble.py [--sensors 20] [--seconds 30]

1. decode: samples/s of each profile's decoder on one core: ``decode`` one notification
   at a time, and ``decode_batch`` on 64 notifications (what BleSource does with
   everything queued when it wakes up: one packet on a calm link, many after a burst).
2. fleet: ``--sensors`` fake SpineWatch sensors at 100 Hz (5 samples per notification)
   behind the in-process fake bleak backend (tests/fakes/fake_bleak.py), each streamed by
   its own BleSource -> PostureTracker -> Publisher (run_bridge) to the broker, for
   ``--seconds`` of real time. Reports CPU (process time / wall time, % of one core)
   and RSS. The fake sensors run in the same process; their own cost is measured in a
   second run with the bridges replaced by a consumer that only drains the sources
   (sensors + BLE stack only), so the bridge's share is the difference.
3. latency: for every posture message published in the measurement window, the time from the notification that carried its
   newest sample (fake sensor delivery, monotonic clock) to ``Publisher.publish_posture``
   handing it to paho (not the broker's PUBACK); p50 / p99 / max.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fakes.fake_bleak import FakeRadio, FakeSensor
from servers import MosquittoServer

from spinewatch.firmware_bridge.ble import BleSource
from spinewatch.firmware_bridge.ble_config import BleConfig
from spinewatch.firmware_bridge.profiles import get_profile, profile_names
from spinewatch.model import PostureBatch
from spinewatch.service.bridge import run_bridge
from spinewatch.service.config import Config
from spinewatch.service.publisher import Publisher
from spinewatch.signal import PostureParams, PostureTracker

DT_NS = 10_000_000


def bench_decode(seconds: float = 1.0) -> dict[str, float]:
    rng = np.random.default_rng(0)
    out = {}
    for name in profile_names():
        p = get_profile(name)
        n = 5 if p.max_samples_per_packet >= 5 else 1
        pkts = [p.build(rng.normal(0, 5, (n, 3)), rng.normal(0, 1, (n, 3)), seq=i, t0_us=i * 50_000)
                for i in range(1000)]
        dec, mount = p.decode, p.default_mount
        count = 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            for b in pkts:
                dec(b, mount)
            count += len(pkts) * n
        out[f"{name} ({n}/packet)"] = count / (time.perf_counter() - t0)
        chunks = [pkts[i:i + 64] for i in range(0, len(pkts), 64)]
        count = 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            for c in chunks:
                p.decode_batch(c, mount)
            count += len(pkts) * n
        out[f"{name} batch of 64"] = count / (time.perf_counter() - t0)
    return out


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _TimedPublisher(Publisher):
    """Publisher that records when each posture message is handed to paho."""

    def __init__(self, *a: object, **kw: object) -> None:
        super().__init__(*a, **kw)  # type: ignore[arg-type]
        self.published_at: list[tuple[int, int]] = []  # (monotonic ns, sensor index of newest sample)
        self.measuring = False

    def publish_posture(self, batch: PostureBatch) -> None:
        super().publish_posture(batch)
        if self.measuring:
            self.published_at.append((time.monotonic_ns(), (batch.t0_ns + (len(batch) - 1) * batch.dt_ns) // DT_NS))


async def _fleet(n: int, seconds: float, mqtt_url: str | None) -> dict[str, float]:
    radio = FakeRadio()
    prof = get_profile("spinewatch")
    sensors = [radio.add(FakeSensor(f"C0:FF:EE:00:{i // 256:02X}:{i % 256:02X}", prof, speed=1.0, seed=i))
               for i in range(n)]
    sources = [BleSource(prof, s.address, config=BleConfig(scan_timeout_s=5.0, status_interval_s=10.0),
                         client_backend=radio.client_backend, scanner_backend=radio.scanner_backend)
               for s in sensors]
    pubs: list[_TimedPublisher] = []
    loop = asyncio.get_running_loop()

    async def drain(src: BleSource) -> None:
        async with src:
            async for _ in src.batches():
                pass

    tasks = []
    if mqtt_url:
        cfg = Config.load({"SPINEWATCH_MQTT_URL": mqtt_url}).mqtt
        for i, src in enumerate(sources):
            pub = _TimedPublisher(cfg, "p-bench", f"d-{i}", "5")
            pub.__enter__()
            pubs.append(pub)
            tracker = PostureTracker(100.0, PostureParams(calibration_s=2.0))
            tasks.append(asyncio.create_task(run_bridge(src, tracker, pub, 0, status_interval_s=10.0)))
    else:
        tasks = [asyncio.create_task(drain(s)) for s in sources]
    # warm-up: everything connected and the JIT compiled
    async with asyncio.timeout(60):
        for src in sources:
            await src.wait_connected(60)
    await asyncio.sleep(3.0)  # sync-ok: benchmark warm-up period, not synchronisation
    rss0 = _rss_mb()
    for pub in pubs:
        pub.measuring = True
    cpu0, wall0 = time.process_time(), time.perf_counter()
    samples0 = sum(s.counters.samples_emitted for s in sources)
    await asyncio.sleep(seconds)  # sync-ok: the measurement window
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    samples = sum(s.counters.samples_emitted for s in sources) - samples0
    rss = _rss_mb()
    for pub in pubs:
        pub.measuring = False
    for s in sources:
        s.stop()
    async with asyncio.timeout(30):
        await asyncio.gather(*tasks)
    lat_ms: list[float] = []
    for pub, sensor in zip(pubs, sensors):
        for t_pub_ns, k in pub.published_at:
            i0 = k - k % sensor.spp
            if i0 in sensor.delivered_at:
                lat_ms.append((t_pub_ns / 1e9 - sensor.delivered_at[i0]) * 1e3)
        await loop.run_in_executor(None, pub.close)
    res = {"cpu_pct_of_one_core": 100 * cpu / wall, "rss_mb": rss, "rss_at_start_mb": rss0,
           "samples_per_s": samples / wall,
           "lost": sum(s.counters.samples_lost for s in sources),
           "dropped": sum(sum(s.counters.dropped_samples.values()) for s in sources)}
    if lat_ms:
        a = np.array(lat_ms)
        res |= {"latency_p50_ms": float(np.percentile(a, 50)), "latency_p99_ms": float(np.percentile(a, 99)),
                "latency_max_ms": float(a.max()), "messages": len(a)}
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sensors", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--skip-fleet", action="store_true")
    args = ap.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores")
    for name, rate in bench_decode().items():
        print(f"decode {name:<22} {rate / 1e6:6.2f} M samples/s")
    if args.skip_fleet:
        return 0
    base = asyncio.run(_fleet(args.sensors, args.seconds, None))
    print(f"sensors + BLE stack only ({args.sensors} x 100 Hz): CPU {base['cpu_pct_of_one_core']:.1f} % of one core, "
          f"RSS {base['rss_mb']:.0f} MB, {base['samples_per_s']:.0f} samples/s")
    with MosquittoServer() as broker:
        full = asyncio.run(_fleet(args.sensors, args.seconds, broker.url))
    print(f"full bridge ({args.sensors} x 100 Hz -> MQTT): CPU {full['cpu_pct_of_one_core']:.1f} % of one core "
          f"(bridge share {full['cpu_pct_of_one_core'] - base['cpu_pct_of_one_core']:.1f} %), "
          f"RSS {full['rss_mb']:.0f} MB, {full['samples_per_s']:.0f} samples/s, "
          f"lost {full['lost']}, dropped {full['dropped']}")
    if "latency_p99_ms" in full:
        print(f"notification -> publish latency over {full['messages']} messages: p50 {full['latency_p50_ms']:.1f} ms, "
              f"p99 {full['latency_p99_ms']:.1f} ms, max {full['latency_max_ms']:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
