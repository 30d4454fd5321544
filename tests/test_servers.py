"""Tests of the test-server harness itself (tests/servers.py + fixtures)."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from servers import (
    InfluxDB1Server,
    MosquittoServer,
    ServerBinaryMissing,
    ServerStartError,
    VictoriaMetricsServer,
    free_port,
    http_request,
    start_or_skip,
    wait_for,
)

DEFAULT_PORTS = {1883, 8086, 8088, 8428}


# --------------------------------------------------------------------------- MQTT helpers


class Collector:
    """A paho 2.x client (own network thread) that records received messages."""

    def __init__(self, url_host: str, port: int, client_id: str | None = None, clean_session: bool = True):
        self.messages: list[mqtt.MQTTMessage] = []
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id or f"sw-test-{uuid.uuid4().hex[:8]}",
            clean_session=clean_session,
        )
        self.client.on_connect = lambda c, u, f, rc, p: self.connected.set()
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.subscribed.set()
        self.client.on_message = lambda c, u, msg: self.messages.append(msg)
        self.client.connect(url_host, port, keepalive=10)
        self.client.loop_start()
        assert self.connected.wait(5), "subscriber did not get CONNACK"

    def subscribe(self, topic: str, qos: int = 1) -> None:
        self.subscribed.clear()
        self.client.subscribe(topic, qos=qos)
        assert self.subscribed.wait(5), "no SUBACK"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def publish_and_confirm(host: str, port: int, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"sw-pub-{uuid.uuid4().hex[:8]}")
    pub.connect(host, port, keepalive=10)
    pub.loop_start()
    try:
        info = pub.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(timeout=5)
        assert info.is_published(), "no PUBACK from broker"
    finally:
        pub.disconnect()
        pub.loop_stop()


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


# --------------------------------------------------------------------------- Mosquitto


@pytest.mark.network
def test_mosquitto_qos1_roundtrip(mosquitto: MosquittoServer) -> None:
    assert mosquitto.url == f"mqtt://127.0.0.1:{mosquitto.port}"
    assert mosquitto.port not in DEFAULT_PORTS
    assert mosquitto.running and mosquitto.startup_seconds is not None

    topic = f"spinewatch/test/{uuid.uuid4().hex}"
    sub = Collector(mosquitto.host, mosquitto.port)
    try:
        sub.subscribe(topic, qos=1)
        payloads = [f"sample-{i}".encode() for i in range(20)]
        for p in payloads:
            publish_and_confirm(mosquitto.host, mosquitto.port, topic, p, qos=1)
        wait_for(lambda: len(sub.messages) >= len(payloads), 5, what="20 QoS 1 messages")
        assert [m.payload for m in sub.messages] == payloads
        assert all(m.qos == 1 and m.topic == topic for m in sub.messages)
    finally:
        sub.close()

    # the broker really logs to its own file in its own directory
    assert mosquitto.log_file.is_relative_to(mosquitto.base_dir)
    wait_for(lambda: "New client connected" in mosquitto.log_file.read_text(), 5, what="broker log")


@pytest.mark.network
def test_mosquitto_retained_message_survives_restart(fresh_mosquitto: MosquittoServer) -> None:
    broker = fresh_mosquitto
    port, pid_before = broker.port, broker.pid
    topic = "spinewatch/test/retained"
    publish_and_confirm(broker.host, broker.port, topic, b"kept", qos=1, retain=True)

    broker.restart()

    assert broker.port == port and broker.pid != pid_before
    assert (broker.data_dir / "mosquitto.db").is_file(), "broker did not persist to its own location"
    sub = Collector(broker.host, broker.port)
    try:
        sub.subscribe(topic, qos=1)
        wait_for(lambda: sub.messages, 5, what="retained message after restart")
        assert sub.messages[0].payload == b"kept"
        assert sub.messages[0].retain
    finally:
        sub.close()


@pytest.mark.network
def test_mosquitto_persistent_session_queues_qos1_across_restart(fresh_mosquitto: MosquittoServer) -> None:
    """A clean_session=False subscriber gets QoS 1 messages published while it was away,
    even across a broker restart (what the ingest service relies on)."""
    broker = fresh_mosquitto
    topic = "spinewatch/test/queued"
    sub = Collector(broker.host, broker.port, client_id="sw-ingest-test", clean_session=False)
    sub.subscribe(topic, qos=1)
    sub.close()

    publish_and_confirm(broker.host, broker.port, topic, b"while-away", qos=1)
    broker.restart()

    sub = Collector(broker.host, broker.port, client_id="sw-ingest-test", clean_session=False)
    try:
        wait_for(lambda: sub.messages, 5, what="queued message")
        assert sub.messages[0].payload == b"while-away"
    finally:
        sub.close()


@pytest.mark.network
def test_mosquitto_stop_really_stops(tmp_path: Path) -> None:
    try:
        broker = MosquittoServer(tmp_path)
    except ServerBinaryMissing as exc:
        pytest.skip(str(exc))
    with broker:
        port, pid = broker.port, broker.pid
        assert _listening(port)
    assert not broker.running
    assert not _listening(port)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # reaped, not a zombie or orphan


@pytest.mark.network
def test_start_retries_on_port_race(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """If the picked port is taken before the server binds it, start() picks another one."""
    import servers

    try:
        broker = MosquittoServer(tmp_path)
    except ServerBinaryMissing as exc:
        pytest.skip(str(exc))
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    taken = blocker.getsockname()[1]
    picks = iter([taken])
    real_free_port = servers.free_port
    monkeypatch.setattr(servers, "free_port", lambda host="127.0.0.1": next(picks, None) or real_free_port(host))
    try:
        broker.start()
        assert broker.port != taken
        assert broker.mqtt_handshake()
        assert "address already in use" in broker.log_tail(200).lower()
    finally:
        broker.stop()
        blocker.close()


@pytest.mark.network
def test_readiness_timeout_reports_log_tail(tmp_path: Path) -> None:
    try:
        broker = MosquittoServer(tmp_path, startup_timeout=5)
    except ServerBinaryMissing as exc:
        pytest.skip(str(exc))
    broker._prepare = lambda: [broker.binary, "-c", str(tmp_path / "does-not-exist.conf")]  # type: ignore[method-assign]
    with pytest.raises(ServerStartError) as err:
        broker.start()
    assert "does-not-exist.conf" in str(err.value)  # the log tail is in the message
    assert not broker.running


# --------------------------------------------------------------------------- InfluxDB 1.x


@pytest.mark.network
def test_influxdb1_write_and_query(influxdb1: InfluxDB1Server) -> None:
    assert influxdb1.url == f"http://127.0.0.1:{influxdb1.port}"
    assert influxdb1.port not in DEFAULT_PORTS and influxdb1.rpc_port not in DEFAULT_PORTS
    assert influxdb1.rpc_port != influxdb1.port

    db = "sw_harness"
    influxdb1.create_database(db)
    names = [v[0] for v in influxdb1.query("SHOW DATABASES")["results"][0]["series"][0]["values"]]
    assert db in names
    assert "_internal" not in names  # monitor store is disabled

    t0 = time.time_ns()
    lines = "\n".join(
        f"posture,device=dev1,side=thoracic angle={10.0 + i},ok={str(i % 2 == 0).lower()} {t0 + i * 1_000_000}"
        for i in range(5)
    )
    influxdb1.write(lines, db=db, precision="ns")

    rows = influxdb1.points('SELECT "angle", "ok", "device" FROM "posture" ORDER BY time ASC', db=db)
    assert [r["time"] for r in rows] == [t0 + i * 1_000_000 for i in range(5)]
    assert [r["angle"] for r in rows] == [10.0, 11.0, 12.0, 13.0, 14.0]
    assert [r["ok"] for r in rows] == [True, False, True, False, True]
    assert {r["device"] for r in rows} == {"dev1"}

    agg = influxdb1.query('SELECT mean("angle") FROM "posture"', db=db)
    assert agg["results"][0]["series"][0]["values"][0][1] == pytest.approx(12.0)


@pytest.mark.network
def test_influxdb1_data_survives_stop_start(fresh_influxdb1: InfluxDB1Server) -> None:
    srv = fresh_influxdb1
    srv.create_database("d")
    srv.write("m v=1i 1000000000", db="d", precision="ns")
    port = srv.port
    srv.stop()
    assert not srv.running and not _listening(port)
    srv.start()
    assert srv.port == port
    assert srv.points("SELECT v FROM m", db="d") == [{"time": 1_000_000_000, "v": 1}]


# --------------------------------------------------------------------------- VictoriaMetrics


@pytest.mark.network
def test_victoriametrics_influxdb_client_write_and_export(victoriametrics: VictoriaMetricsServer) -> None:
    from influxdb_client import InfluxDBClient, Point, WritePrecision
    from influxdb_client.client.write_api import SYNCHRONOUS

    assert victoriametrics.url == f"http://127.0.0.1:{victoriametrics.port}"
    assert victoriametrics.port not in DEFAULT_PORTS

    t0_ms = (time.time_ns() // 1_000_000) - 60_000
    device = f"dev-{uuid.uuid4().hex[:6]}"
    with InfluxDBClient(url=victoriametrics.url, token="x", org="x") as client:
        write_api = client.write_api(write_options=SYNCHRONOUS)
        write_api.write(
            bucket="db",
            record=[f"posture,device={device} angle={20 + i}.5 {(t0_ms + i * 1000) * 1_000_000}" for i in range(3)],
            write_precision=WritePrecision.NS,
        )
        write_api.write(
            bucket="db",
            record=(Point("posture").tag("device", device).field("slouch", 1.0)
                    .time(t0_ms * 1_000_000, WritePrecision.NS)),
        )

    victoriametrics.flush()
    series = wait_for(
        lambda: victoriametrics.export(f'{{__name__="posture_angle",device="{device}"}}'),
        10,
        what="exported series",
    )
    assert len(series) == 1
    # VictoriaMetrics 1.79 ignores the v2 "bucket" (no db label); /write?db= adds one (below)
    assert series[0]["metric"] == {"__name__": "posture_angle", "device": device}
    assert series[0]["values"] == [20.5, 21.5, 22.5]
    assert series[0]["timestamps"] == [t0_ms, t0_ms + 1000, t0_ms + 2000]

    q = victoriametrics.query(f'posture_slouch{{device="{device}"}}', time_s=t0_ms / 1000 + 1)
    assert q["status"] == "success"
    assert [float(r["value"][1]) for r in q["data"]["result"]] == [1.0]


@pytest.mark.network
def test_victoriametrics_v1_write_endpoint(victoriametrics: VictoriaMetricsServer) -> None:
    device = f"dev-{uuid.uuid4().hex[:6]}"
    t_ms = time.time_ns() // 1_000_000 - 5_000
    status, body = http_request(
        "POST", f"{victoriametrics.url}/write?db=spine&precision=ns",
        data=f"posture,device={device} angle=3.25 {t_ms * 1_000_000}".encode(),
    )
    assert status == 204, body
    victoriametrics.flush()
    series = wait_for(lambda: victoriametrics.export(f'posture_angle{{device="{device}"}}'), 10, what="series")
    assert series[0]["metric"] == {"__name__": "posture_angle", "device": device, "db": "spine"}
    assert series[0]["values"] == [3.25] and series[0]["timestamps"] == [t_ms]


# --------------------------------------------------------------------------- missing binaries


def test_missing_binary_raises_with_debian_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPINEWATCH_INFLUXD", str(tmp_path / "no-such-influxd"))
    with pytest.raises(ServerBinaryMissing) as err:
        InfluxDB1Server(tmp_path)
    assert err.value.package == "influxdb"
    assert "apt-get install -y influxdb" in str(err.value)


@pytest.mark.parametrize(
    "cls, env_var, package",
    [
        (MosquittoServer, "SPINEWATCH_MOSQUITTO", "mosquitto"),
        (InfluxDB1Server, "SPINEWATCH_INFLUXD", "influxdb"),
        (VictoriaMetricsServer, "SPINEWATCH_VICTORIA_METRICS", "victoria-metrics"),
    ],
)
def test_missing_binary_skips_fixture(cls, env_var, package, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(env_var, str(tmp_path / "missing-binary"))
    with pytest.raises(pytest.skip.Exception) as skip:
        start_or_skip(cls, tmp_path)
    assert f"install the Debian package {package!r}" in str(skip.value)


def test_free_port_is_loopback_and_bindable() -> None:
    port = free_port()
    assert 1024 < port < 65536
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
