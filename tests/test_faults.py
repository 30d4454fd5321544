"""Fault tests: every point arrives exactly once through broker, database and process failures.

"Exactly once" is checked where it matters, in InfluxDB: the number of stored points equals
the number of samples sent. (Redelivered messages overwrite the same points.)
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import numpy as np
import pytest
from _mqtt_helpers import HeldRepliesRelay, TestClient
from _waiting import wait_until

from spinewatch.model import PostureBatch
from spinewatch.service.bridge.outbox import Outbox
from spinewatch.service.bridge.publisher import Publisher
from spinewatch.service.config import Config
from spinewatch.service.ingest.worker import IngestWorker
from spinewatch.service.storage import Influx1Store

pytestmark = pytest.mark.network

T0 = 1_764_057_600 * 10**9
DT = 10_000_000
N_PER_MSG = 100


def batch(i: int, patient: str = "p1") -> PostureBatch:
    rng = np.random.default_rng(i)
    return PostureBatch(patient, "d1", T0 + i * N_PER_MSG * DT, DT, rng.uniform(-10, 40, N_PER_MSG),
                        rng.uniform(-5, 5, N_PER_MSG), np.zeros(N_PER_MSG, np.int8),
                        np.full(N_PER_MSG, 2, np.int8))


def stored(influx, db: str, patient: str) -> int:
    rows = influx.points(f"SELECT count(flexion_deg) FROM posture WHERE patient = '{patient}'", db)
    return int(rows[0]["count"]) if rows else 0


def mqtt_cfg(broker, group: str):
    cfg = Config.load({"SPINEWATCH_MQTT_URL": broker.url, "SPINEWATCH_MQTT_PROTOCOL": "5"})
    return dataclasses.replace(cfg.mqtt, share_group=group)


def make_db(influx) -> tuple[str, Influx1Store]:
    db = f"f_{uuid.uuid4().hex[:8]}"
    store = Influx1Store(influx.url, db)
    store.ensure_database()
    return db, store


def start_worker(mqtt, store, worker_id: str) -> IngestWorker:
    cfg = Config()
    w = IngestWorker(mqtt, dataclasses.replace(cfg.ingest, worker_id=worker_id, batch_interval_s=0.2),
                     store, "5")
    w.start()
    assert w.subscribed.wait(15), "ingest did not subscribe"
    return w


def test_broker_restart_mid_stream_loses_nothing(fresh_mosquitto, influxdb1, tmp_path):
    db, store = make_db(influxdb1)
    mqtt = mqtt_cfg(fresh_mosquitto, "")  # plain subscription: see MqttConfig.share_group
    w = start_worker(mqtt, store, f"w-{uuid.uuid4().hex[:6]}")
    pub = Publisher(mqtt, "p1", "d1", "5", Outbox(tmp_path / "outbox.sqlite"))
    try:
        with pub:
            for i in range(100):
                pub.publish_posture(batch(i))
            wait_until(lambda: stored(influxdb1, db, "p1") > 0, 20, "the first points")
            fresh_mosquitto.restart()  # persistence on: sessions and queued messages survive
            for i in range(100, 200):
                pub.publish_posture(batch(i))
            assert pub.wait_all_acked(60), f"{pub.unacked} messages never acknowledged"
        wait_until(lambda: stored(influxdb1, db, "p1") == 200 * N_PER_MSG, 60,
                   "every sample in InfluxDB")
    finally:
        w.stop()


def test_bridge_restarted_with_a_full_outbox_delivers_the_backlog(fresh_mosquitto, influxdb1, tmp_path):
    db, store = make_db(influxdb1)
    mqtt = mqtt_cfg(fresh_mosquitto, "")  # plain subscription: see MqttConfig.share_group
    w = start_worker(mqtt, store, f"w-{uuid.uuid4().hex[:6]}")
    path = tmp_path / "outbox.sqlite"
    fresh_mosquitto.stop()
    try:
        with Publisher(mqtt, "p1", "d1", "5", Outbox(path)) as first:
            for i in range(300):  # the broker is away: everything waits in the outbox
                first.publish_posture(batch(i))
        backlog = Outbox(path)
        assert len(backlog) == 300, "the outbox must keep what the broker never acknowledged"
        fresh_mosquitto.start()
        watcher = TestClient(fresh_mosquitto.host, fresh_mosquitto.port, mqtt5=True)
        watcher.connect()
        watcher.subscribe("spinewatch/v1/p1/d1/posture")
        with Publisher(mqtt, "p1", "d1", "5", backlog) as second:  # the bridge restarts
            assert second.wait_all_acked(60)
        wait_until(lambda: stored(influxdb1, db, "p1") == 300 * N_PER_MSG, 60, "the whole backlog")
        seqs = [json.loads(watcher.get().payload)["seq"] for _ in range(300)]
        assert seqs == list(range(1, 301)), "the outbox drains in the order it was filled"
        watcher.close()
    finally:
        w.stop()


def test_publisher_hands_nothing_to_the_broker_before_the_connection_is_accepted(mosquitto, tmp_path):
    # paho sends a publish made while it waits for the CONNACK at once, but resends what it
    # queued while disconnected only on the CONNACK: such a mix reaches the broker out of order.
    relay = HeldRepliesRelay(mosquitto.host, mosquitto.port)
    mqtt = dataclasses.replace(mqtt_cfg(mosquitto, ""), url=f"mqtt://127.0.0.1:{relay.port}")
    device = f"d{uuid.uuid4().hex[:6]}"
    watcher = TestClient(mosquitto.host, mosquitto.port, mqtt5=True)
    watcher.connect()
    watcher.subscribe(f"spinewatch/v1/p1/{device}/posture")
    try:
        with Publisher(mqtt, "p1", device, "5", Outbox(tmp_path / "o.sqlite")) as pub:
            assert relay.wait_for_client_packets(1) == [1], "the first packet is the CONNECT"
            for i in range(300):
                pub.publish_posture(batch(i))
            # A window in which a publish would show; nothing may come before the CONNACK.
            time.sleep(0.5)  # sync-ok: observes an absence, synchronises nothing
            assert relay.client_packet_types() == [1], "only the CONNECT before the CONNACK"
            relay.release()
            assert pub.wait_all_acked(30)
        seqs = [json.loads(watcher.get().payload)["seq"] for _ in range(300)]
        assert seqs == list(range(1, 301)), "the broker gets the messages in the order they were queued"
    finally:
        watcher.close()
        relay.close()


def test_status_messages_are_not_taken_for_outbox_acknowledgements(mosquitto, tmp_path):
    # A status acknowledgement taken for an outbox one would, once paho's message ids wrap,
    # delete from the outbox a message the broker has not acknowledged.
    mqtt = mqtt_cfg(mosquitto, "")
    with Publisher(mqtt, "p1", f"d{uuid.uuid4().hex[:6]}", "5", Outbox(tmp_path / "o.sqlite")) as pub:
        for i in range(5):
            pub.publish_status(online=True, battery_pct=90 - i)
            pub.publish_posture(batch(i))
        assert pub.wait_all_acked(30)
    assert pub.acked == 5, "five outbox messages were acknowledged; the seven status messages are not among them"


def test_influxdb_down_for_30_s_while_data_flows(mosquitto, fresh_influxdb1, tmp_path):
    influx = fresh_influxdb1
    db, store = make_db(influx)
    mqtt = mqtt_cfg(mosquitto, f"g{uuid.uuid4().hex[:6]}")
    w = start_worker(mqtt, store, f"w-{uuid.uuid4().hex[:6]}")
    try:
        with Publisher(mqtt, "p1", "d1", "5", Outbox(tmp_path / "o.sqlite")) as pub:
            influx.stop()
            t_end = time.monotonic() + 30.0
            i = 0
            while time.monotonic() < t_end:  # a live stream: 10 messages per second for 30 s
                pub.publish_posture(batch(i))
                i += 1
                time.sleep(0.1)  # sync-ok: paces the simulated stream, not a synchronisation
            assert w.stats.snapshot()["write_retries"] >= 1
            influx.start()
            assert pub.wait_all_acked(30)
        wait_until(lambda: stored(influx, db, "p1") == i * N_PER_MSG, 90, "every sample after the outage")
    finally:
        w.stop()


def test_ingest_worker_killed_and_restarted_while_another_keeps_running(mosquitto, influxdb1, tmp_path):
    db, store = make_db(influxdb1)
    group = f"g{uuid.uuid4().hex[:6]}"
    mqtt = mqtt_cfg(mosquitto, group)
    env = {**os.environ, "SPINEWATCH_MQTT_URL": mosquitto.url, "SPINEWATCH_MQTT_PROTOCOL": "5",
           "SPINEWATCH_INFLUX_URL": influxdb1.url, "SPINEWATCH_INFLUX_DB": db,
           "SPINEWATCH_WORKER_ID": f"killme-{uuid.uuid4().hex[:6]}"}
    cfg_file = tmp_path / "ingest.toml"
    cfg_file.write_text(f'[mqtt]\nshare_group = "{group}"\n[ingest]\nbatch_interval_s = 0.2\n')
    cmd = [sys.executable, "-m", "spinewatch", "--config", str(cfg_file), "ingest", "--stats-interval", "1"]
    victim = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    survivor = start_worker(mqtt, store, f"keeper-{uuid.uuid4().hex[:6]}")
    try:
        wait_until(lambda: "ingest stats" in (victim.stderr.readline() or ""), 30, "the subprocess worker to run")
        with Publisher(mqtt, "p1", "d1", "5", Outbox(tmp_path / "o.sqlite")) as pub:
            for i in range(150):
                pub.publish_posture(batch(i))
            wait_until(lambda: stored(influxdb1, db, "p1") >= 20 * N_PER_MSG, 30, "some points")
            victim.send_signal(signal.SIGKILL)  # no goodbye: unacked messages stay with its session
            victim.wait(10)
            for i in range(150, 300):
                pub.publish_posture(batch(i))
            assert pub.wait_all_acked(60)
        victim = subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL)  # same worker id
        wait_until(lambda: stored(influxdb1, db, "p1") == 300 * N_PER_MSG, 60,
                   "every sample, including those held by the killed worker's session")
    finally:
        survivor.stop()
        victim.terminate()
        victim.wait(10)
