"""Blocking paho-mqtt test client with deadlines, shared by the broker and ACL tests."""

from __future__ import annotations

import queue
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

# Every wait in these tests is a poll with this deadline; loopback brokers answer in milliseconds.
DEADLINE_S = 5.0


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    qos: int


class TestClient:
    """A paho client running its network loop in a thread; every call waits with a deadline."""

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        host: str,
        port: int,
        *,
        mqtt5: bool,
        username: str | None = None,
        password: str | None = None,
        client_id: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"test-{uuid.uuid4().hex[:10]}",
            protocol=mqtt.MQTTv5 if mqtt5 else mqtt.MQTTv311,
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        self.messages: queue.Queue[Received] = queue.Queue(maxsize=100_000)
        self._lock = threading.Lock()
        self._connack: object | None = None
        self._connected = threading.Event()
        self._suback: dict[int, list[object]] = {}
        self._puback: dict[int, object] = {}
        self._cond = threading.Condition(self._lock)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message

    # paho callbacks (network thread) ---------------------------------------------------------
    def _on_connect(self, _c, _u, _flags, reason_code, _props) -> None:  # type: ignore[no-untyped-def]
        self._connack = reason_code
        self._connected.set()

    def _on_subscribe(self, _c, _u, mid, reason_codes, _props) -> None:  # type: ignore[no-untyped-def]
        with self._cond:
            self._suback[mid] = list(reason_codes)
            self._cond.notify_all()

    def _on_publish(self, _c, _u, mid, reason_code, _props) -> None:  # type: ignore[no-untyped-def]
        with self._cond:
            self._puback[mid] = reason_code
            self._cond.notify_all()

    def _on_message(self, _c, _u, msg: mqtt.MQTTMessage) -> None:
        self.messages.put_nowait(Received(msg.topic, bytes(msg.payload), msg.qos))

    # blocking API -----------------------------------------------------------------------------
    def connect(self, timeout_s: float = DEADLINE_S) -> object:
        """Connect and return the CONNACK reason code (a paho ReasonCode)."""
        self.client.connect_timeout = timeout_s
        self.client.connect(self.host, self.port, keepalive=30)
        self.client.loop_start()
        if not self._connected.wait(timeout_s):
            raise TimeoutError(f"no CONNACK from {self.host}:{self.port} within {timeout_s} s")
        return self._connack

    def _wait_for(self, table: dict[int, object], mid: int, timeout_s: float) -> object:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while mid not in table:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no acknowledgement for mid {mid} within {timeout_s} s")
                self._cond.wait(remaining)
            return table.pop(mid)

    def subscribe(self, topic: str, qos: int = 1, timeout_s: float = DEADLINE_S) -> list[object]:
        rc, mid = self.client.subscribe(topic, qos)
        assert rc == mqtt.MQTT_ERR_SUCCESS, mqtt.error_string(rc)
        return self._wait_for(self._suback, mid, timeout_s)  # type: ignore[return-value]

    def publish(self, topic: str, payload: bytes, qos: int = 1, timeout_s: float = DEADLINE_S) -> object:
        """Publish and, for QoS 1, return the PUBACK reason code."""
        info = self.client.publish(topic, payload, qos=qos)
        return self._wait_for(self._puback, info.mid, timeout_s)

    def get(self, timeout_s: float = DEADLINE_S) -> Received:
        return self.messages.get(timeout=timeout_s)

    def close(self) -> None:
        if self._connected.is_set():
            self.client.disconnect()
        self.client.loop_stop()
        sock = self.client.socket()
        if sock is not None:
            sock.close()


def port_refuses(host: str, port: int) -> bool:
    """True if a TCP connect to host:port is refused (nothing listens)."""
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return False
    except ConnectionRefusedError:
        return True


def started_ingest(mqtt_url: str, influx_url: str, db_prefix: str) -> tuple[Any, Any]:
    """A real ingest worker (own worker id, 0.2-s batches) into a fresh InfluxDB 1.x database
    ``<db_prefix>_<random>``, started and subscribed: (store, worker). Stop the worker when done."""
    import dataclasses

    from spinewatch.service.config import Config
    from spinewatch.service.ingest.worker import IngestWorker
    from spinewatch.service.storage import Influx1Store

    store = Influx1Store(influx_url, f"{db_prefix}_{uuid.uuid4().hex[:6]}")
    store.ensure_database()
    cfg = Config.load({"SPINEWATCH_MQTT_URL": mqtt_url, "SPINEWATCH_WORKER_ID": f"{db_prefix}-{uuid.uuid4().hex[:6]}"})
    w = IngestWorker(cfg.mqtt, dataclasses.replace(cfg.ingest, batch_interval_s=0.2), store, "5")
    w.start()
    assert w.subscribed.wait(10), "ingest did not subscribe"
    return store, w


class HeldRepliesRelay:
    """A loopback TCP relay to a broker that holds the broker's bytes until :meth:`release`.

    While held, a client has sent its CONNECT but got no CONNACK: the relay shows what the
    client sends in that state (:meth:`client_packet_types`, MQTT control packet types).
    """

    def __init__(self, broker_host: str, broker_port: int) -> None:
        self._upstream = (broker_host, broker_port)
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._released = threading.Event()
        self._cond = threading.Condition()
        self._from_client = bytearray()
        self._socks: list[socket.socket] = [self._server]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        try:
            client, _ = self._server.accept()
        except OSError:
            return
        broker = socket.create_connection(self._upstream)
        self._socks += [client, broker]
        threading.Thread(target=self._pipe, args=(client, broker, True), daemon=True).start()
        threading.Thread(target=self._pipe, args=(broker, client, False), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, from_client: bool) -> None:
        try:
            while data := src.recv(65536):
                if from_client:
                    with self._cond:
                        self._from_client += data
                        self._cond.notify_all()
                else:
                    self._released.wait()
                dst.sendall(data)
        except OSError:
            pass

    def client_packet_types(self) -> list[int]:
        """Types (1 = CONNECT, 3 = PUBLISH, ...) of the whole packets the client sent so far."""
        with self._cond:
            return _packet_types(bytes(self._from_client))

    def wait_for_client_packets(self, n: int, timeout_s: float = DEADLINE_S) -> list[int]:
        """Wait until the client has sent at least ``n`` whole packets; their types."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(_packet_types(bytes(self._from_client))) >= n, timeout_s):
                raise AssertionError(f"the client sent fewer than {n} packets in {timeout_s} s")
            return _packet_types(bytes(self._from_client))

    def release(self) -> None:
        self._released.set()

    def close(self) -> None:
        self._released.set()
        for s in self._socks:
            s.close()


def _packet_types(buf: bytes) -> list[int]:
    """MQTT control packet types of the whole packets at the start of ``buf``."""
    types, i = [], 0
    while i < len(buf):
        length, shift, j = 0, 0, i + 1
        while j < len(buf):  # "remaining length": 7 bits per byte, high bit = more bytes
            length |= (buf[j] & 0x7F) << shift
            shift += 7
            j += 1
            if not buf[j - 1] & 0x80:
                break
        else:
            break
        if j + length > len(buf):
            break
        types.append(buf[i] >> 4)
        i = j + length
    return types
