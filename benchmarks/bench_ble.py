"""BLE bridge benchmarks: decoder speed, 20 simulated sensors through one bridge process, latency.

Run (from the repository root; starts a private Mosquitto on a free loopback port):

    PYTHONPATH=.:tests python benchmarks/bench_ble.py [--sensors 20] [--seconds 20]

1. decode: samples/s of each profile's decoder on one core: ``decode`` one notification
   at a time, and ``decode_batch`` on 64 notifications (what BleSource does with
   everything queued when it wakes up: one packet on a calm link, many after a burst).
2. fleet: ``--sensors`` fake SpineWatch sensors at 100 Hz (5 samples per notification),
   slouching for 6 s every 11 s, each streamed by its own BleSource -> PostureTracker -> Publisher (``run_bridge``, with
   a patient config that enables haptics) to the broker, for ``--seconds`` of real time,
   in a fresh *bridge process*. The sensors run in a third process
   (tests/fakes/remote_radio.py) and send each notification's raw bytes over a pipe to the
   fake bleak backend inside the bridge process, so bleak's ``BleakClient``,
   bleak-retry-connector and BleSource run as in production, and the bridge process holds
   only what a production bridge holds (plus that thin proxy, which replaces BlueZ's
   D-Bus messages). Reports the bridge process's CPU (process time / wall time, % of one
   core, all threads), RSS, and the CPU of its threads grouped by name.
3. latency: for every posture message handed over in the measurement window, the time
   from the notification that carried its newest sample (stamped by the sensor process
   when sent, ``time.monotonic()``, one clock for all processes) to ``run_bridge`` handing
   it to the publisher (not the broker's PUBACK); p50 / p99 / max. And for every haptic
   write: from the notification carrying the sample that completed the patient's delay to
   the write reaching the fake backend (goal: < 100 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

DT_NS = 10_000_000


def bench_decode(seconds: float = 1.0) -> dict[str, float]:
    from spinewatch.firmware_bridge.profiles import get_profile, profile_names

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


def _rss_mb(field: str = "VmRSS") -> float:
    """RSS of this process, MB; ``field`` ``RssAnon`` / ``RssFile`` for its parts."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _thread_ticks() -> dict[str, int]:
    """CPU clock ticks (user + system) of this process: the main thread (the event loop)
    and all other threads together (paho network loops, publisher pumps, executors)."""
    out = {"event loop thread": 0, "other threads": 0}
    pid = os.getpid()
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                stat = f.read()
        except FileNotFoundError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        out["event loop thread" if int(tid) == pid else "other threads"] += int(fields[11]) + int(fields[12])
    return out


def _quiet_hours_not_now() -> tuple[tuple[str, str], ...]:
    """A quiet-hours window 12 h away, so in_quiet_hours runs but alerts are not muted."""
    h = (_dt.datetime.now(_dt.UTC).hour + 12) % 24
    return ((f"{h:02d}:00", f"{(h + 1) % 24:02d}:00"),)


async def _fleet(n: int, seconds: float, mqtt_url: str, prepare: bool = True) -> dict[str, Any]:
    """The bridge process: ``n`` run_bridge loops fed by a RemoteRadio; measures itself.
    Prepared like ``spinewatch bridge run`` (spinewatch.service.bridge.memory) unless
    ``prepare`` is false."""
    from spinewatch.service.bridge.memory import keep_scipy_out, prepare_bridge_process

    if prepare:
        keep_scipy_out()  # as bridge run does, before anything imports Numba
    from fakes.remote_radio import RemoteRadio

    from spinewatch.firmware_bridge.ble import BleSource
    from spinewatch.firmware_bridge.ble_config import BleConfig
    from spinewatch.firmware_bridge.profiles import get_profile
    from spinewatch.model import PostureBatch
    from spinewatch.service.bridge.loop import HapticEvent, run_bridge
    from spinewatch.service.bridge.publisher import Publisher
    from spinewatch.service.config import Config
    from spinewatch.service.transport.patient_config import HapticConfig, PatientConfig
    from spinewatch.signal import PostureParams, PostureTracker

    class TimedPublisher(Publisher):
        """Records when each posture message is handed over (monotonic ns, newest sample index)."""

        measuring = False

        def publish_postures(self, batches: list[PostureBatch]) -> None:
            super().publish_postures(batches)
            if self.measuring:
                now = time.monotonic_ns()
                self.handed_at.extend((now, (b.t0_ns + (len(b) - 1) * b.dt_ns) // DT_NS) for b in batches)

    prof = get_profile("spinewatch")
    patient = PatientConfig(threshold_deg=15.0, hysteresis_deg=5.0, min_duration_s=1.0,
                            haptic=HapticConfig(delay_s=0.5, min_interval_s=0.0),
                            quiet_hours=_quiet_hours_not_now(), timezone="Europe/Berlin")
    cfg = Config.load({"SPINEWATCH_MQTT_URL": mqtt_url}).mqtt
    loop = asyncio.get_running_loop()
    if prepare:
        prepare_bridge_process(100.0)
    async with RemoteRadio(n, speed=1.0, script="desk") as radio:
        sources = [BleSource(prof, a, config=BleConfig(scan_timeout_s=5.0, status_interval_s=10.0),
                             client_backend=radio.client_backend, scanner_backend=radio.scanner_backend)
                   for a in radio.addresses]
        pubs: list[Any] = []
        haptics: list[list[HapticEvent]] = [[] for _ in sources]
        tasks = []
        for i, src in enumerate(sources):
            pub = TimedPublisher(cfg, "p-bench", f"d-{i}", "5")
            pub.handed_at = []
            pub.__enter__()
            pubs.append(pub)
            tracker = PostureTracker(100.0, PostureParams(calibration_s=2.0))
            tasks.append(asyncio.create_task(run_bridge(
                src, tracker, pub, 0, status_interval_s=10.0, patient_config=patient,
                on_haptic=haptics[i].append)))
        # warm-up: everything connected and the JIT compiled
        async with asyncio.timeout(60):
            for src in sources:
                await src.wait_connected(60)
        await asyncio.sleep(3.0)  # sync-ok: benchmark warm-up period, not synchronisation
        rss0 = _rss_mb()
        for pub in pubs:
            pub.measuring = True
        n_haptic0 = [len(h) for h in haptics]
        ticks0 = _thread_ticks()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        samples0 = sum(s.counters.samples_emitted for s in sources)
        await asyncio.sleep(seconds)  # sync-ok: the measurement window
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        ticks = _thread_ticks()
        n_threads = len(os.listdir("/proc/self/task"))
        samples = sum(s.counters.samples_emitted for s in sources) - samples0
        rss, rss_anon, rss_file = _rss_mb(), _rss_mb("RssAnon"), _rss_mb("RssFile")
        for pub in pubs:
            pub.measuring = False
        for s in sources:
            s.stop()
        async with asyncio.timeout(30):
            await asyncio.gather(*tasks)
        lat_ms: list[float] = []
        hap_ms: list[float] = []
        for i, (pub, sensor) in enumerate(zip(pubs, radio.sensors_by_index, strict=True)):
            first = sensor.first_index or 0  # sample index of stream time 0
            for t_pub_ns, k in pub.handed_at:
                i0 = first + k - k % sensor.spp
                if i0 in sensor.delivered_at:
                    lat_ms.append((t_pub_ns / 1e9 - sensor.delivered_at[i0]) * 1e3)
            for ev, (write_t, _) in list(zip(haptics[i], sensor.haptic_writes, strict=False))[n_haptic0[i]:]:
                k = ev.t_sensor_ns // DT_NS
                i0 = first + k - k % sensor.spp
                if i0 in sensor.delivered_at:
                    hap_ms.append((write_t - sensor.delivered_at[i0]) * 1e3)
            await loop.run_in_executor(None, pub.close)
    tick_s = os.sysconf("SC_CLK_TCK")
    threads = {k: 100 * (v - ticks0.get(k, 0)) / tick_s / wall for k, v in ticks.items()}
    res: dict[str, Any] = {
        "cpu_pct_of_one_core": 100 * cpu / wall, "rss_mb": rss, "rss_anon_mb": rss_anon, "rss_file_mb": rss_file,
        "rss_at_start_mb": rss0, "scipy_imported": sys.modules.get("scipy") is not None,
        "threads": n_threads,
        "thread_cpu_pct": {k: round(v, 2) for k, v in threads.items()},
        "samples_per_s": samples / wall,
        "lost": sum(s.counters.samples_lost for s in sources),
        "dropped": sum(sum(s.counters.dropped_samples.values()) for s in sources)}
    if lat_ms:
        a = np.array(lat_ms)
        res |= {"latency_p50_ms": float(np.percentile(a, 50)), "latency_p99_ms": float(np.percentile(a, 99)),
                "latency_max_ms": float(a.max()), "messages": len(a)}
    if hap_ms:
        res |= {"haptic_writes": len(hap_ms), "haptic_max_ms": max(hap_ms),
                "haptic_p50_ms": float(np.percentile(hap_ms, 50))}
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sensors", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--skip-fleet", action="store_true")
    ap.add_argument("--skip-decode", action="store_true")
    ap.add_argument("--no-prepare", action="store_true",
                    help="skip what bridge run does to stay small (spinewatch.service.bridge.memory): "
                         "SciPy kept out, LLVM's code pages released; for before/after figures")
    ap.add_argument("--bridge-process", metavar="MQTT_URL", help=argparse.SUPPRESS)  # internal: the measured process
    args = ap.parse_args()
    if args.bridge_process:
        print(json.dumps(asyncio.run(_fleet(args.sensors, args.seconds, args.bridge_process, not args.no_prepare))))
        return 0
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores")
    if not args.skip_decode:
        for name, rate in bench_decode().items():
            print(f"decode {name:<22} {rate / 1e6:6.2f} M samples/s")
    if args.skip_fleet:
        return 0
    from servers import MosquittoServer

    with MosquittoServer() as broker:
        cmd = [sys.executable, __file__, "--sensors", str(args.sensors), "--seconds", str(args.seconds),
               "--bridge-process", broker.url, *(["--no-prepare"] if args.no_prepare else [])]
        full = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    print(f"bridge process ({args.sensors} sensors x 100 Hz -> MQTT; sensors in their own process): "
          f"CPU {full['cpu_pct_of_one_core']:.1f} % of one core, RSS {full['rss_mb']:.0f} MB "
          f"(anonymous {full['rss_anon_mb']:.0f}, files {full['rss_file_mb']:.0f}; SciPy "
          f"{'imported' if full['scipy_imported'] else 'not imported'}), "
          f"{full['threads']} threads, {full['samples_per_s']:.0f} samples/s, "
          f"lost {full['lost']}, dropped {full['dropped']}")
    print("  CPU by thread, % of one core: "
          + ", ".join(f"{k} {v:.1f}" for k, v in full["thread_cpu_pct"].items()))
    if "latency_p99_ms" in full:
        print(f"notification -> publish latency over {full['messages']} messages: p50 {full['latency_p50_ms']:.1f} ms, "
              f"p99 {full['latency_p99_ms']:.1f} ms, max {full['latency_max_ms']:.1f} ms")
    if "haptic_writes" in full:
        print(f"notification -> haptic write over {full['haptic_writes']} buzzes: p50 {full['haptic_p50_ms']:.1f} ms, "
              f"max {full['haptic_max_ms']:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
