"""``spinewatch bridge run`` keeps its delivery promise as a process (README "Delivery guarantees").

Each test runs the real command as a subprocess (a replayed recording of a simulated patient)
against real Mosquitto and InfluxDB servers, and checks the result where it matters: the
points in InfluxDB.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from _mqtt_helpers import TestClient
from _waiting import wait_until

from spinewatch.firmware_bridge.replay import read_recording, write_recording
from spinewatch.firmware_bridge.sim import PostureScript, Segment, SimulatedPatient
from spinewatch.service.config import Config
from spinewatch.service.ingest.worker import IngestWorker
from spinewatch.service.storage import Influx1Store
from spinewatch.signal import PostureParams, PostureTracker

pytestmark = pytest.mark.network

RATE_HZ = 50.0
POSTURE = PostureParams(threshold_deg=20.0, hysteresis_deg=5.0, min_duration_s=5.0, calibration_s=5.0)
REPLAY_BATCH = 50  # ReplaySource's default batch: the reference below cuts the same batches


def make_recording(path: Path, duration_s: float, slouches: list[tuple[float, float]], seed: int = 3) -> int:
    """A recording of a simulated patient sitting, with slouches at ``slouches`` (s); its samples."""
    segs = [Segment("calibrate", 0.0, 10.0)]
    t = 10.0
    for a, b in slouches:
        segs += [Segment("sit", t, a, flexion_deg=2.0), Segment("slouch", a, b, flexion_deg=35.0, ramp_s=2.0)]
        t = b
    segs.append(Segment("sit", t, duration_s, flexion_deg=2.0, ramp_s=2.0))
    sim = SimulatedPatient(PostureScript(segs), rate_hz=RATE_HZ, seed=seed, batch_samples=REPLAY_BATCH)

    async def collect():
        async with sim:
            return [b async for b in sim.batches()]

    return write_recording(path, RATE_HZ, asyncio.run(collect()))


def reference_slouch_starts_ns(path: Path) -> list[int]:
    """Sensor times of the slouch episodes the bridge's filter finds in the recording."""
    rec = read_recording(path)
    tracker = PostureTracker(RATE_HZ, POSTURE)
    eps = [ep for b in rec.batches(REPLAY_BATCH) for ep in tracker.update(b.gyr_rad_s, b.acc_m_s2).episodes]
    eps += list(tracker.flush())
    return [int(rec.t_ns[int(ep[0])]) for ep in eps]


class Bridge:
    """``spinewatch bridge run --replay`` as a subprocess, its stderr in a file."""

    def __init__(self, tmp: Path, broker_url: str, patient: str, device: str, recording: Path, speed: float,
                 outbox_max_mb: float = 200.0) -> None:
        self.tmp = tmp
        self.outbox = tmp / "outbox" / f"{patient}+{device}.outbox.sqlite"
        cfg = tmp / f"bridge-{device}.toml"
        p = POSTURE
        cfg.write_text(f"[posture]\nthreshold_deg = {p.threshold_deg}\nhysteresis_deg = {p.hysteresis_deg}\n"
                       f"min_duration_s = {p.min_duration_s}\ncalibration_s = {p.calibration_s}\n"
                       f'[bridge]\noutbox_dir = "{tmp / "outbox"}"\noutbox_max_mb = {outbox_max_mb}\n')
        self.cmd = [sys.executable, "-m", "spinewatch", "--config", str(cfg), "bridge", "run",
                    "--replay", str(recording), "--speed", str(speed), "--patient", patient,
                    "--device-id", device, "--status-interval", "1"]
        # the folder comes from the config file's [bridge] outbox_dir (the variable would override it)
        env = {k: v for k, v in os.environ.items() if k != "SPINEWATCH_OUTBOX_DIR"}
        self.env = {**env, "SPINEWATCH_MQTT_URL": broker_url, "SPINEWATCH_MQTT_PROTOCOL": "5",
                    "SPINEWATCH_LOG_LEVEL": "INFO"}
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0

    def start(self) -> Bridge:
        self.runs += 1
        self.log = self.tmp / f"bridge-{self.outbox.stem}-{uuid.uuid4().hex[:6]}.log"
        with self.log.open("wb") as err:
            self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=subprocess.DEVNULL, stderr=err)
        return self

    def stderr(self) -> str:
        return self.log.read_text()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait(self, timeout_s: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout_s)

    def stop(self) -> None:
        if self.running():
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(10)

    def _query(self, sql: str) -> list[tuple]:
        if not self.outbox.exists():
            return []
        db = sqlite3.connect(f"file:{self.outbox}?mode=ro", uri=True, timeout=5)
        try:
            return db.execute(sql).fetchall()
        except sqlite3.OperationalError:  # not created yet
            return []
        finally:
            db.close()

    def meta(self, key: str) -> int | None:
        rows = self._query(f"SELECT value FROM meta WHERE key = '{key}'")
        return int(rows[0][0]) if rows else None

    def meta_like(self, prefix: str) -> int | None:
        rows = self._query(f"SELECT value FROM meta WHERE key LIKE '{prefix}%'")
        return int(rows[0][0]) if rows else None

    def queued(self) -> int:
        rows = self._query("SELECT count(*) FROM outbox")
        return int(rows[0][0]) if rows else 0


def make_db(influx) -> tuple[str, Influx1Store]:
    db = f"o_{uuid.uuid4().hex[:8]}"
    store = Influx1Store(influx.url, db)
    store.ensure_database()
    return db, store


def start_ingest(broker, store) -> IngestWorker:
    cfg = Config.load({"SPINEWATCH_MQTT_URL": broker.url, "SPINEWATCH_MQTT_PROTOCOL": "5"})
    mqtt = dataclasses.replace(cfg.mqtt, share_group="")  # a plain subscription on a private broker
    w = IngestWorker(mqtt, dataclasses.replace(cfg.ingest, worker_id=f"w-{uuid.uuid4().hex[:6]}",
                                               batch_interval_s=0.2), store, "5")
    w.start()
    assert w.subscribed.wait(15), "ingest did not subscribe"
    return w


def query(influx, db: str, sql: str) -> list[dict]:
    return influx.points(sql, db)


def stored_samples(influx, db: str, patient: str) -> int:
    rows = query(influx, db, f"SELECT count(flexion_deg) FROM posture WHERE patient = '{patient}'")
    return int(rows[0]["count"]) if rows else 0


def settled(worker: IngestWorker, influx, db: str, patient: str, samples: int, events: int) -> None:
    """Wait until InfluxDB holds at least the expected points and the worker has acknowledged
    everything it received, unchanged over one more poll round (a late duplicate would show)."""
    wait_until(lambda: stored_samples(influx, db, patient) >= samples, 120, f"{samples} samples in InfluxDB")
    last: list[object] = []

    def quiet() -> bool:
        snap = worker.stats.snapshot()
        now = (snap["received"], snap["acked"], stored_samples(influx, db, patient))
        same = bool(last) and last[-1] == now and snap["received"] == snap["acked"]
        last.append(now)
        return same

    wait_until(quiet, 60, "the ingest worker to go quiet")


def clinic_overview_value(store: Influx1Store, patient: str, field: str) -> list[float]:
    """``field`` of the clinic overview's patient table over the last hour, as Grafana evaluates it."""
    from spinewatch.service.dashboards import DASHBOARDS, evaluate, expand, resolve_query_variables, variable_defaults

    dash = DASHBOARDS["clinic-overview.json"]()
    panel = next(p for p in dash["panels"] if p["title"] == "Patients in the time range")
    t1 = time.time_ns() // 10**6 + 60_000
    t0 = t1 - 3_600_000
    vals = resolve_query_variables(dash, {**variable_defaults(dash), "patient": patient}, store.query, t0, t1)
    res = evaluate(panel, lambda q: store.query(expand(q, vals, t0, t1, "1m")))
    return [float(v) for frames in res.values() for f in frames if f.name == field for v in f.v.ravel()]


def test_every_sample_stored_once_through_broker_outage_kill_9_restarts_and_influxdb_outage(
        fresh_mosquitto, fresh_influxdb1, tmp_path):
    broker, influx = fresh_mosquitto, fresh_influxdb1
    rec = tmp_path / "session.npz"
    n = make_recording(rec, 200.0, [(30.0, 45.0), (65.0, 80.0), (100.0, 115.0)])
    ref_starts = reference_slouch_starts_ns(rec)
    assert len(ref_starts) == 3
    db, store = make_db(influx)
    worker = start_ingest(broker, store)
    bridge = Bridge(tmp_path, broker.url, "p-f", "d-f", rec, speed=5.0)
    try:
        # 1. streaming: the first points arrive; then the broker goes away while it streams
        bridge.start()
        wait_until(lambda: stored_samples(influx, db, "p-f") > 0, 60, "the first points")
        epoch = bridge.meta("seq_epoch")
        broker.stop()
        seq_at_outage = bridge.meta("seq") or 0
        wait_until(lambda: (bridge.meta("seq") or 0) >= seq_at_outage + 5, 30, "messages queued during the outage")
        assert bridge.queued() >= 5
        # 2. power cut: kill -9 with unacknowledged messages in the outbox
        assert bridge.running()
        bridge.proc.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
        bridge.wait(10)
        backlog = bridge.queued()
        assert backlog >= 5, "what the broker never acknowledged survives kill -9"
        # 3. restarted while the broker is still down: same outbox, same counter, no stale lock
        seq_before = bridge.meta("seq") or 0
        bridge.start()
        wait_until(lambda: (bridge.meta("seq") or 0) >= seq_before + 5, 60, "the restarted bridge to stream")
        assert bridge.meta("seq_epoch") == epoch, "a restart continues the outbox's seq counter"
        # 4. the broker comes back (the bridge's backlog drains); then it restarts while the bridge streams
        broker.start()
        wait_until(lambda: bridge.queued() <= 3, 60, "the bridge to deliver its backlog")
        assert bridge.running(), "the faults must hit a streaming bridge"
        broker.restart()
        seq = bridge.meta("seq") or 0
        wait_until(lambda: (bridge.meta("seq") or 0) >= seq + 3 and bridge.queued() <= 3, 60,
                   "the bridge to deliver after the broker restart")
        # 5. InfluxDB stops while the bridge streams, and comes back
        assert bridge.running(), "the faults must hit a streaming bridge"
        influx.stop()
        seq = bridge.meta("seq") or 0
        wait_until(lambda: (bridge.meta("seq") or 0) >= seq + 5, 30, "messages sent while InfluxDB is down")
        influx.start()
        assert bridge.wait(120) == 0, bridge.stderr()
        assert bridge.queued() == 0, "everything acknowledged by the end of the stream"
        settled(worker, influx, db, "p-f", n, len(ref_starts))
    finally:
        bridge.stop()
        worker.stop()
    anchor = bridge.meta_like("replay_anchor:")
    assert anchor is not None
    t = read_recording(rec).t_ns
    rows = query(influx, db, "SELECT count(flexion_deg), min(flexion_deg) FROM posture WHERE patient = 'p-f'")
    assert rows[0]["count"] == n, f"every sample of the recording stored exactly once: {rows[0]['count']} of {n}"
    first = query(influx, db, "SELECT first(flexion_deg) FROM posture WHERE patient = 'p-f'")[0]["time"]
    last = query(influx, db, "SELECT last(flexion_deg) FROM posture WHERE patient = 'p-f'")[0]["time"]
    # both runs stamped the recording's samples at the same times (the first run's clock anchor)
    assert (_ns(first), _ns(last)) == (anchor + int(t[0]), anchor + int(t[-1]))
    events = query(influx, db, "SELECT peak_deg FROM slouch WHERE patient = 'p-f'")
    assert sorted(_ns(e["time"]) for e in events) == [anchor + s for s in ref_starts], \
        "every slouch event arrives, once, at its sensor time"


def _ns(t: object) -> int:
    """InfluxDB 1.x time (RFC 3339 with ns, or an epoch int) -> ns."""
    if isinstance(t, int):
        return t
    s = str(t).rstrip("Z")
    whole, _, frac = s.partition(".")
    secs = np.datetime64(whole, "s").astype(np.int64)
    return int(secs) * 10**9 + int((frac + "000000000")[:9])


def test_a_second_bridge_of_the_same_device_is_refused_while_others_and_the_therapist_work(
        mosquitto, tmp_path):
    rec = tmp_path / "long.npz"
    make_recording(rec, 60.0, [])
    a = Bridge(tmp_path, mosquitto.url, "p-l", "d-l", rec, speed=1.0).start()
    other = Bridge(tmp_path, mosquitto.url, "p-l", "d-other", rec, speed=1.0)
    try:
        wait_until(lambda: "Ctrl-C to stop" in a.stderr(), 60, "the first bridge to run")
        b = Bridge(tmp_path, mosquitto.url, "p-l", "d-l", rec, speed=1.0).start()
        assert b.wait(60) == 1
        lines = [ln for ln in b.stderr().splitlines() if ln.strip()]
        assert len(lines) == 1 and "in use by another process" in lines[0] and "p-l/d-l" in lines[0], lines
        other.start()
        wait_until(lambda: "Ctrl-C to stop" in other.stderr(), 60, "a bridge of another device to run")
        assert other.outbox != a.outbox and other.outbox.exists()
        # the therapist changes a setting while the bridge holds its outbox: it goes through
        # the device's therapist-side outbox and the running bridge applies it
        env = {**a.env, "SPINEWATCH_OUTBOX_DIR": str(tmp_path / "outbox")}
        done = subprocess.run([sys.executable, "-m", "spinewatch", "config", "set", "--patient", "p-l",
                               "--device", "d-l", "threshold_deg=27"], env=env, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert (tmp_path / "outbox" / "p-l+d-l.therapist.sqlite").exists()
        wait_until(lambda: "patient config applied" in a.stderr() and "threshold_deg=27" in a.stderr(), 30,
                   "the running bridge to apply the therapist's setting")
        for br in (a, other):  # a clean stop
            br.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
            assert br.wait(30) == 0, br.stderr()
    finally:
        a.stop()
        other.stop()


def test_a_full_outbox_drops_the_oldest_posture_counted_in_the_status_and_in_influxdb(
        fresh_mosquitto, influxdb1, tmp_path):
    broker = fresh_mosquitto
    rec = tmp_path / "flood.npz"
    make_recording(rec, 90.0, [(30.0, 50.0)])
    db, store = make_db(influxdb1)
    worker = start_ingest(broker, store)
    broker.stop()
    # ~0.9 KB per 1-s posture message at 50 Hz: 16 KB hold about 18 of the 90
    full = Bridge(tmp_path, broker.url, "p-o", "d-o", rec, speed=0, outbox_max_mb=16 / 1024)
    watcher = None
    try:
        assert full.start().wait(120) == 0, full.stderr()  # the broker never came: all waits in the outbox
        dropped = full.meta("dropped") or 0
        assert dropped > 50, f"the outbox must have overflowed, dropped {dropped}"
        assert f"{dropped:,} posture messages dropped" in full.stderr()
        assert "outbox" in full.stderr() and "full" in full.stderr(), "the drops are logged"
        with sqlite3.connect(f"file:{full.outbox}?mode=ro", uri=True) as ob:
            kinds = [r[0].rsplit("/", 1)[-1] for r in ob.execute("SELECT topic FROM outbox ORDER BY id")]
        assert kinds.count("event") == 1, "the slouch event is kept"
        broker.start()
        watcher = TestClient(broker.host, broker.port, mqtt5=True)
        watcher.connect()
        watcher.subscribe("spinewatch/v1/p-o/d-o/posture")
        # the next start (a short recording) sends the backlog first, then its own messages
        short = tmp_path / "short.npz"
        make_recording(short, 12.0, [], seed=5)
        again = Bridge(tmp_path, broker.url, "p-o", "d-o", short, speed=4.0, outbox_max_mb=16 / 1024)
        assert again.start().wait(120) == 0, again.stderr()
        seqs = []
        wait_until(lambda: seqs.append(json.loads(watcher.get().payload)["seq"]) or seqs[-1] == again.meta("seq"),
                   60, "the last posture message")
        # seq has a gap exactly where messages were dropped, and none elsewhere
        assert seqs == list(range(dropped + 1, again.meta("seq") + 1))
        wait_until(lambda: query(influxdb1, db, "SELECT last(outbox_dropped) FROM device WHERE device = 'd-o'"),
                   60, "a device status in InfluxDB")
        rows = query(influxdb1, db, "SELECT last(outbox_dropped) FROM device WHERE device = 'd-o'")
        assert rows[0]["last"] == dropped, "the drop count is published in the status and stored"
        assert clinic_overview_value(store, "p-o", "outbox_dropped") == [dropped], "and shown to the clinic"
    finally:
        if watcher is not None:
            watcher.close()
        full.stop()
        worker.stop()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_clean_stop_during_an_outage_keeps_everything_for_the_next_start(fresh_mosquitto, influxdb1, tmp_path, sig):
    broker = fresh_mosquitto
    rec = tmp_path / "stop.npz"
    n = make_recording(rec, 40.0, [(12.0, 25.0)])
    db, store = make_db(influxdb1)
    worker = start_ingest(broker, store)
    broker.stop()
    bridge = Bridge(tmp_path, broker.url, "p-s", "d-s", rec, speed=8.0)
    try:
        bridge.start()
        wait_until(lambda: (bridge.meta("seq") or 0) >= 30, 60, "the bridge to queue most of the stream")
        bridge.proc.send_signal(sig)  # type: ignore[union-attr]
        assert bridge.wait(15) == 0, bridge.stderr()
        queued = bridge.queued()
        assert queued >= 30 and queued == (bridge.meta("seq") or 0) + bridge.stderr().count("slouch:"), \
            "every posture message and event is still in the outbox"
        assert f"{queued:,} messages not yet acknowledged by the broker are kept in" in bridge.stderr()
        broker.start()
        bridge.start()  # the next start sends the backlog first, then the recording again (same times)
        assert bridge.wait(60) == 0, bridge.stderr()
        settled(worker, influxdb1, db, "p-s", n, 1)
        assert stored_samples(influxdb1, db, "p-s") == n
    finally:
        bridge.stop()
        worker.stop()
