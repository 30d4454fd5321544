"""Benchmark: ingest throughput into a real InfluxDB, side by side with a Point-per-sample worker.

Starts a private Mosquitto and InfluxDB 1.x (tests/servers.py, free loopback ports), queues
posture messages (1-second batches at 100 Hz, several patients) for each worker's persistent
MQTT session while the worker is away, then starts the worker(s) and times how fast the
backlog lands in InfluxDB (until the workers' writes have been accepted for every sample
sent; ``count(flexion_deg)`` then checks, off the clock, that each is stored once). Workers
run in their own processes, as deployed. Scenarios, in one run:

- baseline: paho subscriber + influxdb-client ``Point`` per sample (``to_line_protocol``),
  batched 5,000 points per HTTP write to the same /write endpoint;
- spinewatch: one ``IngestWorker`` (vectorised line protocol, manual acks);
- spinewatch x2: two workers on a shared subscription.

Then the same into a null ``/write`` sink (counts lines, stores nothing): the workers' own
ceiling. On this 2-core machine one unconstrained worker and InfluxDB already keep both cores
busy, so a second worker has no core to run on; the scale-out of the worker tier is therefore
also measured with every worker held to the same CPU budget (``--worker-cpu``, a cgroup CPU
quota per worker process; needs root and the cgroup ``cpu`` controller), as when each worker
has a core of its own and the workers, not the database, are the limit. Each scenario also
prints the CPU seconds of every process during the timed phase (/proc/PID/stat), to show
which one limits the figure on a shared machine.

    python benchmarks/bench_ingest.py [--messages 6000] [--patients 20] [--worker-cpu 0.25]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

T0_NS = 1_764_057_600 * 10**9
SAMPLES = 100
DT_NS = 10_000_000


def _payloads(messages: int, patients: int, seq_epoch: int | None = 1) -> list[tuple[str, bytes]]:
    """1-s posture messages of ``patients`` devices; with ``seq_epoch`` (as bridges send it) the
    ingest also writes each message's ``posture_seq`` point (loss accounting)."""
    import numpy as np

    from spinewatch.model import PostureBatch
    from spinewatch.service.transport import wire

    rng = np.random.default_rng(0)
    out = []
    for i in range(messages):
        p = f"p{i % patients}"
        k = i // patients
        b = PostureBatch(p, "d1", T0_NS + k * SAMPLES * DT_NS, DT_NS, rng.uniform(-10, 40, SAMPLES),
                         rng.uniform(-5, 5, SAMPLES), np.zeros(SAMPLES, np.int8), np.full(SAMPLES, 2, np.int8))
        out.append((wire.topic(p, "d1", "posture"), wire.encode_posture(b, k + 1, seq_epoch)))
    return out


def publish_all(host: str, port: int, items: list[tuple[str, bytes]]) -> None:
    import paho.mqtt.client as paho

    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="bench-pub", protocol=paho.MQTTv5)
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    c.connect(host, port)
    c.loop_start()
    infos = [c.publish(t, p, qos=1) for t, p in items]
    for info in infos:
        info.wait_for_publish(60)
    c.disconnect()
    c.loop_stop()


def ours(mqtt_url: str, influx_url: str, db: str, worker_id: str, group: str, go: mp.Event, stop: mp.Event,
         written) -> None:  # type: ignore[no-untyped-def]
    import dataclasses

    from spinewatch.service.config import Config
    from spinewatch.service.ingest.worker import IngestWorker
    from spinewatch.service.storage import Influx1Store
    from spinewatch.service.storage.transit import SeqMsg

    class CountingStore(Influx1Store):
        def write(self, msgs):  # type: ignore[no-untyped-def]
            n = super().write(msgs)
            n -= sum(isinstance(m, SeqMsg) for m in msgs)  # count posture samples; posture_seq is overhead
            with written.get_lock():
                written.value += n  # only after InfluxDB answered 2xx: the points are queryable
            return n

    cfg = Config.load({"SPINEWATCH_MQTT_URL": mqtt_url, "SPINEWATCH_WORKER_ID": worker_id})
    w = IngestWorker(dataclasses.replace(cfg.mqtt, share_group=group), cfg.ingest, CountingStore(influx_url, db), "5")
    go.wait()
    w.start()
    stop.wait()
    w.stop()


def baseline(mqtt_url: str, influx_url: str, db: str, worker_id: str, group: str, go: mp.Event, stop: mp.Event,
             written) -> None:  # type: ignore[no-untyped-def]
    """What a straightforward worker looks like: Point objects, auto-ack."""
    import threading

    import paho.mqtt.client as paho
    from influxdb_client import Point
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    u = urllib.parse.urlsplit(mqtt_url)
    buf: list[str] = []
    lock = threading.Lock()

    def flush() -> None:
        with lock:
            lines, buf[:] = list(buf), []
        if lines:
            req = urllib.request.Request(f"{influx_url}/write?db={db}&precision=ns", data="\n".join(lines).encode())
            urllib.request.urlopen(req, timeout=30).read()
            with written.get_lock():
                written.value += len(lines)

    def on_message(c, userdata, msg) -> None:  # type: ignore[no-untyped-def]
        parts = msg.topic.split("/")
        d = json.loads(msg.payload)
        pts = []
        for i, (f, la) in enumerate(zip(d["flexion_deg"], d["lateral_deg"], strict=True)):
            pts.append(Point("posture").tag("patient", parts[2]).tag("device", parts[3])
                       .field("flexion_deg", float(f)).field("lateral_deg", float(la))
                       .field("state", d["state"][i]).field("activity", d["activity"][i])
                       .time(d["t0_ns"] + i * d["dt_ns"]).to_line_protocol())
        with lock:
            buf.extend(pts)
            full = len(buf) >= 5000
        if full:
            flush()

    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=worker_id, protocol=paho.MQTTv5)
    c.on_message = on_message
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    go.wait()
    c.on_connect = lambda cl, *a: cl.subscribe(
        "spinewatch/v1/+/+/+" if not group else f"$share/{group}/spinewatch/v1/+/+/+", qos=1)
    c.connect(u.hostname, u.port, clean_start=False, properties=props)
    c.loop_start()
    # Pending points are written at least every 0.1 s. (A 1-s timer also splits the 5,000-point
    # batches, so the last points waited for the next tick: up to 1 s of idle time on the clock.)
    while not stop.wait(0.1):
        flush()
    c.loop_stop()


def null_sink(port_q: mp.Queue, stop: mp.Event) -> None:
    """An HTTP /write endpoint that only counts posture lines: the worker's own ceiling, no database."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    lines: dict[str, int] = {}
    lock = threading.Lock()

    def db_of(path: str) -> str:
        return urllib.parse.parse_qs(urllib.parse.urlsplit(path).query).get("db", [""])[0]

    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.path.startswith("/write"):
                with lock:
                    db = db_of(self.path)
                    # points of measurement posture, like count(flexion_deg) (not posture_seq's)
                    lines[db] = lines.get(db, 0) + body.count(b"\nposture,") + body.startswith(b"posture,")
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            with lock:
                n = lines.get(db_of(self.path), 0)
            body = json.dumps({"results": [{"series": [{"values": [[0, n]]}]}]}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a: object) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    port_q.put(srv.server_address[1])
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    stop.wait()
    srv.shutdown()


class _NullSinkClient:
    """Looks like InfluxDB1Server to scenario(): url, create_database, points(count)."""

    def __init__(self, port: int, pid: int | None) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.pid = pid  # CPU accounting labels it "influxd": the sink stands in for the database

    def create_database(self, name: str) -> None:
        pass

    def points(self, q: str, db: str) -> list[dict[str, int]]:
        with urllib.request.urlopen(f"{self.url}/query?db={db}", timeout=5) as r:
            n = json.loads(r.read())["results"][0]["series"][0]["values"][0][1]
        return [{"count": n}]


def _cpu_s(pid: int | None) -> float:
    """CPU seconds (user + system, all threads) a process has used so far; 0 if unknown."""
    if pid is None:
        return 0.0
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")  # fields 14, 15: utime, stime


CGROUP_CPU_V1 = Path("/sys/fs/cgroup/cpu")


def _limit_cpu(pid: int, cores: float, name: str) -> Path:
    """Hold process ``pid`` (all its threads, and those it starts later) to ``cores`` of CPU
    time with a cgroup v1 CPU quota. Returns the cgroup folder (remove it once the process ended).

    Raises:
        OSError: no writable cgroup ``cpu`` controller (not root, or cgroup v2 only).
    """
    group = CGROUP_CPU_V1 / name
    group.mkdir(exist_ok=True)
    period_us = int((group / "cpu.cfs_period_us").read_text())
    (group / "cpu.cfs_quota_us").write_text(str(int(cores * period_us)))
    (group / "cgroup.procs").write_text(str(pid))
    return group


def _count(influx, db: str) -> int:
    rows = influx.points('SELECT count("flexion_deg") FROM "posture"', db)
    return int(rows[0]["count"]) if rows else 0


def scenario(name: str, target, n_workers: int, mosquitto, influx, items, timeout_s: float = 300.0,
             worker_cpu: float = 0.0) -> float:
    """Time one scenario; print points/s and CPU seconds per process during the timed phase.
    ``worker_cpu`` > 0 holds each worker process to that many cores (:func:`_limit_cpu`)."""
    db = f"bench_{name.replace(' ', '_')}"
    influx.create_database(db)
    group = f"g{abs(hash(name)) % 10**6}" if n_workers > 1 else ""
    ctx = mp.get_context("spawn")
    go, stop = ctx.Event(), ctx.Event()
    ids = [f"{db}-w{k}" for k in range(n_workers)]
    # 1) create each worker's persistent session (subscribe once), then leave
    import threading

    import paho.mqtt.client as paho
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    for wid in ids:
        c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=wid, protocol=paho.MQTTv5)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        subscribed = threading.Event()
        c.on_subscribe = lambda *a, ev=subscribed: ev.set()
        c.connect(mosquitto.host, mosquitto.port, clean_start=True, properties=props)
        c.loop_start()
        c.subscribe(f"$share/{group}/spinewatch/v1/+/+/+" if group else "spinewatch/v1/+/+/+", qos=1)
        if not subscribed.wait(10):
            raise RuntimeError(f"no SUBACK for {wid}")
        c.disconnect()
        c.loop_stop()
    # 2) queue the backlog for those sessions
    publish_all(mosquitto.host, mosquitto.port, items)
    expected = len(items) * SAMPLES
    written = ctx.Value("q", 0)  # points the workers' /write requests had accepted (2xx)
    procs = [ctx.Process(target=target, args=(mosquitto.url, influx.url, db, wid, group, go, stop, written))
             for wid in ids]
    groups = []
    for k, p in enumerate(procs):
        p.start()
        if worker_cpu > 0:
            groups.append(_limit_cpu(p.pid, worker_cpu, f"spinewatch-bench-w{k}"))
    time.sleep(3.0 if worker_cpu <= 0 else 3.0 / worker_cpu)  # imports done in the workers before the clock starts
    watched = {"influxd": getattr(influx, "pid", None), "mosquitto": mosquitto.pid, "driver": os.getpid(),
               **{f"w{k}": p.pid for k, p in enumerate(procs)}}
    cpu0 = {k: _cpu_s(pid) for k, pid in watched.items()}
    t0 = time.perf_counter()
    go.set()
    # The clock stops when the workers' /write requests have returned 2xx for every point
    # (InfluxDB 1.x answers once the points are queryable). Polling count() instead would
    # load InfluxDB itself: ~85 ms of its CPU per count over 600,000 points.
    while written.value < expected and time.perf_counter() - t0 < timeout_s:
        time.sleep(0.002)  # sync-ok: a benchmark poll of a shared counter, 2 ms resolution
    dt = time.perf_counter() - t0
    cpu = {k: _cpu_s(pid) - cpu0[k] for k, pid in watched.items()}
    stop.set()
    for p in procs:
        p.join(30)
    for g in groups:
        g.rmdir()  # empty once its process has ended
    n = _count(influx, db)  # after the clock: every point must be stored exactly once
    rate = n / dt
    status = "" if n == expected else f"  (STORED {n:,} OF {expected:,})"
    print(f"{name:<16} {n:>9,} points in {dt:6.2f} s  {rate:>10,.0f} points/s" + status)
    per_point = ", ".join(f"{k} {v * 1e6 / max(n, 1):.2f}" for k, v in cpu.items() if watched[k] is not None)
    print(f"{'':<16} CPU s: " + ", ".join(f"{k} {v:.2f}" for k, v in cpu.items() if watched[k] is not None)
          + f"  (sum {sum(cpu.values()):.2f} of {2 * dt:.2f} available on 2 cores)")
    workers = sum(v for k, v in cpu.items() if k.startswith("w"))
    print(f"{'':<16} CPU us/point: {per_point}; all workers {workers * 1e6 / max(n, 1):.2f}")
    return rate


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=6000, help="1-s posture messages (100 samples each)")
    ap.add_argument("--patients", type=int, default=20)
    ap.add_argument("--worker-cpu", type=float, default=0.25, metavar="CORES",
                    help="CPU budget per worker for the scale-out scenarios (cgroup quota; 0 skips them)")
    ap.add_argument("--no-seq-epoch", action="store_true",
                    help="messages without seq_epoch, as from old bridges: no posture_seq points (loss accounting)")
    args = ap.parse_args()
    from servers import InfluxDB1Server, MosquittoServer

    items = _payloads(args.messages, args.patients, None if args.no_seq_epoch else 1)
    ctx = mp.get_context("spawn")
    with MosquittoServer() as mosquitto, InfluxDB1Server() as influx:
        print("into InfluxDB 1.6.7:")
        base = scenario("baseline Point", baseline, 1, mosquitto, influx, items)
        one = scenario("spinewatch", ours, 1, mosquitto, influx, items)
        two = scenario("spinewatch x2", ours, 2, mosquitto, influx, items)
        capped = None
        if args.worker_cpu > 0:
            c = args.worker_cpu
            print(f"into InfluxDB 1.6.7, each worker held to {c:g} core (a worker per core, scaled down):")
            try:
                capped = (scenario(f"spinewatch {c:g}c", ours, 1, mosquitto, influx, items, worker_cpu=c),
                          scenario(f"spinewatch x2 {c:g}c", ours, 2, mosquitto, influx, items, worker_cpu=c))
            except OSError as exc:
                print(f"  skipped: no writable cgroup cpu controller at {CGROUP_CPU_V1} ({exc}); run as root")
        print("into a null /write sink (the worker's own ceiling, no database):")
        port_q, stop = ctx.Queue(), ctx.Event()
        sink = ctx.Process(target=null_sink, args=(port_q, stop))
        sink.start()
        nul = _NullSinkClient(port_q.get(timeout=30), sink.pid)
        base_n = scenario("baseline Point null", baseline, 1, mosquitto, nul, items)
        one_n = scenario("spinewatch null", ours, 1, mosquitto, nul, items)
        two_n = scenario("spinewatch x2 null", ours, 2, mosquitto, nul, items)
        stop.set()
        sink.join(10)
    print(f"\ninto InfluxDB: spinewatch / baseline {one / base:.2f}x, two workers / one {two / one:.2f}x")
    print(f"null sink:     spinewatch / baseline {one_n / base_n:.2f}x, two workers / one {two_n / one_n:.2f}x")
    if capped:
        print(f"workers held to {args.worker_cpu:g} core each: two workers / one {capped[1] / capped[0]:.2f}x")
    print("reproduce: python benchmarks/bench_ingest.py "
          f"--messages {args.messages} --patients {args.patients} --worker-cpu {args.worker_cpu:g}"
          + (" --no-seq-epoch" if args.no_seq_epoch else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
