"""Messages lost between the bridge and the database: counted from seq, watched at the broker, reported.

Everything runs through the commands a user runs (`spinewatch ingest`, `doctor`, `demo`,
`report`) as subprocesses, against real Mosquitto (with the queue limits varied) and a real
InfluxDB 1.x or SQLite. Posture messages are crafted with `wire.encode_posture(seq=...,
seq_epoch=...)` so that the gaps, duplicates and reorderings are exactly known.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from _mqtt_helpers import TestClient
from _waiting import wait_until
from servers import MosquittoServer, free_port, start_or_skip

from spinewatch.model import PostureBatch
from spinewatch.service.storage import Influx1Store, SqliteStore, Store
from spinewatch.service.transport import wire

pytestmark = pytest.mark.network

T0 = 1_764_057_600 * 10**9  # 2025-11-25 08:00 UTC
DT = 10_000_000  # 100 Hz
N = 100  # samples per message: 1 s each
EPOCH_A = 4_242_424_242
EPOCH_B = 17  # the bridge's outbox was re-created: seq starts again at 1


def payload(i: int, seq: int | None, epoch: int | None, patient: str = "p1", device: str = "d1") -> bytes:
    """Posture message number ``i`` of the stream (sensor time T0 + i s)."""
    rng = np.random.default_rng(i)
    b = PostureBatch(patient, device, T0 + i * N * DT, DT, rng.uniform(-10, 40, N), rng.uniform(-5, 5, N),
                     np.zeros(N, np.int8), np.full(N, 2, np.int8))
    return wire.encode_posture(b, seq=seq, seq_epoch=epoch)


def publish(broker, msgs: list[tuple[str, bytes]]) -> None:
    c = TestClient(broker.host, broker.port, mqtt5=True)
    c.connect()
    try:
        for topic, body in msgs:
            c.publish(topic, body, qos=1)  # waits for the PUBACK
    finally:
        c.close()


def metrics(port: int) -> dict[str, float]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def ingest_cli(tmp_path: Path, broker, store_env: dict[str, str], *, group: str = "", extra: str = "",
               args: tuple[str, ...] = ()) -> tuple[subprocess.Popen[bytes], int, Path]:
    """`spinewatch ingest` as a subprocess with its health endpoint; (process, health port, stderr file)."""
    port = free_port()
    name = uuid.uuid4().hex[:6]
    cfg = tmp_path / f"ingest-{name}.toml"
    cfg.write_text(f'[mqtt]\nshare_group = "{group}"\n[ingest]\nbatch_interval_s = 0.2\nloss_check_s = 0.3\n'
                   f'health_listen = "127.0.0.1:{port}"\n{extra}')
    env = {**os.environ, "SPINEWATCH_MQTT_URL": broker.url, "SPINEWATCH_MQTT_PROTOCOL": "5",
           "SPINEWATCH_WORKER_ID": f"loss-{name}", **store_env}
    log = tmp_path / f"ingest-{name}.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "spinewatch", "--config", str(cfg), "ingest", *args],
                                env=env, stderr=fh, stdout=subprocess.DEVNULL)
    wait_until(lambda: metrics(port).get("spinewatch_ingest_subscribed") == 1, 60, "the ingest to subscribe")
    return proc, port, log


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(30)


@pytest.fixture(params=["influxdb", "sqlite"])
def store_for_cli(request, tmp_path):
    """(environment for `spinewatch ingest`, extra CLI arguments, a Store reading the same data)."""
    if request.param == "influxdb":
        influx = request.getfixturevalue("influxdb1")
        db = f"loss_{uuid.uuid4().hex[:8]}"
        store: Store = Influx1Store(influx.url, db)
        store.ensure_database()  # type: ignore[attr-defined]
        return {"SPINEWATCH_INFLUX_URL": influx.url, "SPINEWATCH_INFLUX_DB": db}, (), store
    path = tmp_path / "loss.sqlite"
    return {"SPINEWATCH_INFLUX_URL": ""}, ("--sqlite", str(path)), SqliteStore(path)


def test_gaps_counted_once_through_duplicates_reordering_and_a_new_epoch(mosquitto, store_for_cli, tmp_path):
    """Counter A loses seq 4, 11 and 12; 2 and 6 are delivered twice; 13 arrives before 12's
    neighbours; counter B (a re-created outbox) starts again at 1: that is no loss; a message
    of an old bridge (no seq_epoch) is stored but not accounted."""
    env, args, store = store_for_cli
    patient = f"p{uuid.uuid4().hex[:6]}"
    topic = wire.topic(patient, "d1", "posture")
    order_a = [1, 2, 3, 5, 2, 6, 7, 6, 8, 9, 10, 14, 13, 15, 16, 17, 18, 19, 20]
    msgs = [(topic, payload(s, s, EPOCH_A, patient)) for s in order_a]
    msgs.append((topic, payload(25, 1, None, patient)))  # an old bridge: seq without epoch
    msgs += [(topic, payload(30 + s, s, EPOCH_B, patient)) for s in (1, 2, 3, 4, 5)]
    proc, port, log = ingest_cli(tmp_path, mosquitto, env, args=args)
    try:
        publish(mosquitto, msgs)
        key = f'spinewatch_ingest_transit_lost_messages_by_device{{patient="{patient}",device="d1"}}'
        wait_until(lambda: metrics(port).get(key) == 3, 60, "/metrics to count 3 lost messages")
        wait_until(lambda: metrics(port).get("spinewatch_ingest_written_messages") == len(msgs), 30,
                   "every message, duplicates included, to be written (harmlessly: the same points)")
        assert metrics(port)["spinewatch_ingest_transit_lost_messages"] == 3
    finally:
        stop(proc)
    logged = log.read_text()  # the first count logged may be partial (rate-limited): 1 to 3 messages
    assert re.search(rf"ingest: [123] posture messages \(0\.\d min\) of patient {patient} device d1 never arrived",
                     logged), logged
    found = {x.seq_epoch: x for x in store.transit_loss(T0, T0 + 3600 * 10**9, patient=patient)}
    assert set(found) == {EPOCH_A, EPOCH_B}
    assert (found[EPOCH_A].received, found[EPOCH_A].lost, found[EPOCH_A].lost_s) == (17, 3, pytest.approx(3.0))
    assert (found[EPOCH_B].received, found[EPOCH_B].lost) == (5, 0)
    # a period starting after the gap at 4 still counts the gap at 11-12, and the one before its
    # first message (seq 10 was the last one before it)
    later = store.transit_loss(T0 + 11 * 10**9, T0 + 21 * 10**9, patient=patient)
    assert [(x.received, x.lost) for x in later] == [(8, 2)]


def test_two_workers_on_a_shared_subscription_count_the_right_total(mosquitto, influxdb1, tmp_path):
    """Each worker sees about half of a device's messages; neither may take the other's for loss."""
    db = f"loss_{uuid.uuid4().hex[:8]}"
    store = Influx1Store(influxdb1.url, db)
    store.ensure_database()
    env = {"SPINEWATCH_INFLUX_URL": influxdb1.url, "SPINEWATCH_INFLUX_DB": db}
    group = f"g{uuid.uuid4().hex[:6]}"
    patient = f"p{uuid.uuid4().hex[:6]}"
    lost = {7, 8, 9, 50, 101, 102, 150, 151, 152, 199}
    topic = wire.topic(patient, "d1", "posture")
    workers = [ingest_cli(tmp_path, mosquitto, env, group=group) for _ in range(2)]
    try:
        publish(mosquitto, [(topic, payload(s, s, EPOCH_A, patient)) for s in range(1, 201) if s not in lost])
        key = f'spinewatch_ingest_transit_lost_messages_by_device{{patient="{patient}",device="d1"}}'
        for _, port, _ in workers:
            wait_until(lambda port=port: metrics(port).get(key) == len(lost), 60, "each worker to count 10 lost")
        received = [metrics(port)["spinewatch_ingest_received"] for _, port, _ in workers]
    finally:
        for proc, _, _ in workers:
            stop(proc)
    assert sum(received) >= 200 - len(lost) and min(received) > 0, received  # the load was shared
    assert [(x.received, x.lost) for x in store.transit_loss(T0, T0 + 3600 * 10**9, patient=patient)] == [
        (190, 10)]
    # the clinic overview's column: 10 lost messages of 1 s each
    from spinewatch.service.dashboards import expand
    from spinewatch.service.dashboards.clinic import COLUMNS

    q = expand(COLUMNS["I"], {"patient": ".*", "device": ".*"}, T0 // 10**6, (T0 + 3600 * 10**9) // 10**6, "1m")
    rows = store.query(q)
    assert [(s["tags"]["patient"], s["values"][0][1]) for s in rows] == [(patient, pytest.approx(10 / 60))]


@pytest.fixture
def dropping_broker(tmp_path):
    """A Mosquitto that queues at most 5 messages per client and updates $SYS every second."""
    broker = start_or_skip(MosquittoServer, tmp_path / "mosq",
                           settings={"max_queued_messages": "5", "sys_interval": "1"})
    try:
        yield broker
    finally:
        broker.stop()


def make_it_drop(broker) -> None:
    """A subscriber with a persistent session goes offline; 30 messages arrive for it: 25 dropped."""
    slow = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"slow-{uuid.uuid4().hex[:6]}",
                       clean_session=False, protocol=mqtt.MQTTv311)
    subscribed = threading.Event()
    slow.on_connect = lambda c, *_: c.subscribe("slow/#", qos=1)
    slow.on_subscribe = lambda *_: subscribed.set()
    slow.connect(broker.host, broker.port)
    slow.loop_start()
    try:
        assert subscribed.wait(10), "the slow subscriber did not subscribe"
    finally:
        slow.disconnect()
        slow.loop_stop()
    publish(broker, [("slow/x", b"x")] * 30)


def doctor(broker) -> tuple[int, list[dict[str, str]]]:
    env = {**os.environ, "SPINEWATCH_MQTT_URL": broker.url, "SPINEWATCH_INFLUX_URL": ""}
    p = subprocess.run([sys.executable, "-m", "spinewatch", "doctor", "--json", "--skip", "bluetooth",
                        "--skip", "grafana", "--skip", "influxdb"], env=env, capture_output=True, text=True, timeout=60)
    return p.returncode, json.loads(p.stdout)


def test_a_dropping_broker_is_watched_by_ingest_and_fails_doctor(dropping_broker, tmp_path):
    rc, checks = doctor(dropping_broker)
    assert rc == 0 and [c["status"] for c in checks if c["name"] == "broker"] == ["OK", "OK"], checks
    proc, port, log = ingest_cli(tmp_path, dropping_broker, {"SPINEWATCH_INFLUX_URL": ""},
                                 args=("--sqlite", str(tmp_path / "s.sqlite")))
    try:
        make_it_drop(dropping_broker)
        wait_until(lambda: metrics(port).get("spinewatch_ingest_broker_dropped_messages", 0) >= 25, 30,
                   "/metrics to show the broker's dropped count")
    finally:
        stop(proc)
    logged = log.read_text()
    assert "has dropped 25 messages since it started" in logged and "max_queued_messages" in logged, logged
    rc, checks = doctor(dropping_broker)
    drops = [c for c in checks if c["name"] == "broker"][-1]
    assert rc == 1 and drops["status"] == "FAIL", checks
    assert "dropped 25 acknowledged messages" in drops["message"]
    assert "max_queued_messages" in drops["fix"] and "max_queued_bytes" in drops["fix"]
    assert "persistence" in drops["fix"]


def run_demo_cli(broker, out: Path, extra_cfg: str = "") -> subprocess.CompletedProcess[str]:
    cfg = out.parent / f"{out.name}.toml"
    cfg.write_text(extra_cfg)
    env = {**os.environ, "SPINEWATCH_MQTT_URL": broker.url, "SPINEWATCH_INFLUX_URL": ""}
    return subprocess.run([sys.executable, "-m", "spinewatch", "--config", str(cfg), "demo", "--duration", "1h",
                           "--speed", "max", "--out", str(out)], env=env, capture_output=True, text=True,
                          timeout=600)


# The demo's ingest worker takes 5 unacknowledged messages at a time and writes once a second, so
# the broker must queue what the fast publisher sends.
SLOW_INGEST = "[ingest]\nmax_unacked = 5\nbatch_interval_s = 0.2\nbatch_linger_s = 0.2\n"


def test_the_demo_fails_when_the_broker_drops_what_it_published(dropping_broker, mosquitto, tmp_path):
    p = run_demo_cli(dropping_broker, tmp_path / "dropped", SLOW_INGEST)
    assert p.returncode == 1, p.stderr[-3000:]
    line = next((ln for ln in p.stderr.splitlines() if "never reached the store" in ln), "")
    n, sent = (int(x.replace(",", "")) for x in line.split()[1:4:2])
    assert 0 < n < sent, line
    assert "min of posture data lost in transit" in line and "max_queued_messages" in line
    dropped = int(re.search(r"the broker reports ([\d,]+) messages dropped", line)[1].replace(",", ""))
    assert dropped >= n, line  # what Mosquitto counted covers what the demo missed
    # the same slow ingest with a broker that queues enough: everything arrives, exit 0
    ok = run_demo_cli(mosquitto, tmp_path / "complete", SLOW_INGEST)
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert "never reached" not in ok.stderr


def test_report_says_how_many_minutes_were_lost_in_transit(mosquitto, store_for_cli, tmp_path):
    """One message of 1 s in every 10 lost over 20 minutes: 2 minutes lost in transit, in JSON and PDF."""
    env, args, store = store_for_cli
    patient = f"p{uuid.uuid4().hex[:6]}"
    topic = wire.topic(patient, "d1", "posture")
    msgs = [(topic, payload(s, s, EPOCH_A, patient)) for s in range(1, 1201) if s % 10 != 5]
    proc, port, _ = ingest_cli(tmp_path, mosquitto, env, args=args)
    try:
        publish(mosquitto, msgs)
        wait_until(lambda: metrics(port).get("spinewatch_ingest_written_messages") == len(msgs), 60, "all written")
    finally:
        stop(proc)
    cmd = [sys.executable, "-m", "spinewatch", "report", "--patient", patient, "--from", "2025-11-25",
           "--to", "2025-11-25", *(("--sqlite", args[1]) if args else ())]
    run_env = {**os.environ, **env}
    js = subprocess.run([*cmd, "--format", "json"], env=run_env, capture_output=True, text=True, timeout=120)
    assert js.returncode == 0, js.stderr
    figures = json.loads(js.stdout)
    assert figures["transit_lost_messages"] == 120
    assert figures["transit_lost_min"] == pytest.approx(2.0)
    pdf = tmp_path / "r.pdf"
    rp = subprocess.run([*cmd, "--out", str(pdf)], env=run_env, capture_output=True, text=True, timeout=120)
    assert rp.returncode == 0, rp.stderr
    text = pdf_text(pdf)
    assert "2 minutes lost in transit (120 messages)" in text, text[:2000]


def pdf_text(path: Path) -> str:
    import pypdf  # a test extra (pyproject.toml)

    return "\n".join(page.extract_text() for page in pypdf.PdfReader(str(path)).pages)
