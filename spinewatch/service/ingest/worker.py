"""Ingest worker: MQTT (QoS 1, manual ack) -> decode -> batched idempotent writes -> ack."""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Final, Self, cast

import paho.mqtt.client as paho
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from spinewatch.errors import ConfigError, ConnectionFailed, DecodeError
from spinewatch.service.config import IngestConfig, MqttConfig
from spinewatch.service.storage import Message, Store, StoreRejected, transit
from spinewatch.service.storage.lineprotocol import warm_up
from spinewatch.service.transport import wire
from spinewatch.service.transport.mqtt import Protocol, connect, make_client
from spinewatch.service.transport.patient_config import decode_patient_config
from spinewatch.service.transport.retry import server_retry_delay_s

_LOGGER = logging.getLogger(__name__)

# A rejected-message log line at most this often per reason: a flood of garbage must not
# flood the log, but the first of each kind is always shown.
REJECT_LOG_INTERVAL_S: Final = 10.0
# Batches being written to the database at once. With two, the database parses one batch
# while the worker decodes the next and while the other waits for InfluxDB's WAL fsync
# (benchmarks/README.md, "Ingest throughput"); acknowledgements still go out in message order.
WRITES_IN_FLIGHT: Final = 2
# A "messages lost in transit" or "broker dropped messages" log line at most this often (per
# device for the former): the count is in /metrics all along.
LOSS_LOG_INTERVAL_S: Final = 300.0


@dataclass
class IngestStats:
    """Counters of one worker (read them under ``lock``)."""

    received: int = 0
    written_messages: int = 0
    written_points: int = 0
    acked: int = 0
    ignored: int = 0
    rejected: collections.Counter[str] = field(default_factory=collections.Counter)
    write_retries: int = 0
    # Posture messages lost between the bridges and the database (gaps in seq), per
    # (patient, device), as the last loss check counted them from the database
    # (transit.WATCH_WINDOW_NS of sensor time); the same figure on every worker of a group.
    transit_lost: dict[tuple[str, str], int] = field(default_factory=dict)
    # The broker's $SYS/broker/publish/messages/dropped (None: the broker does not publish it).
    broker_dropped: int | None = None
    lock: threading.Condition = field(default_factory=threading.Condition, repr=False)

    def snapshot(self) -> dict[str, object]:
        with self.lock:
            return {
                "received": self.received, "written_messages": self.written_messages,
                "written_points": self.written_points, "acked": self.acked,
                "ignored": self.ignored, "rejected": dict(self.rejected),
                "write_retries": self.write_retries,
                "transit_lost_messages": sum(self.transit_lost.values()),
                "transit_lost": {f"{p}/{d}": n for (p, d), n in sorted(self.transit_lost.items())},
                "broker_dropped_messages": self.broker_dropped,
            }


@dataclass(frozen=True, slots=True)
class _Incoming:
    mid: int
    qos: int
    topic: str
    payload: bytes
    arrived_s: float  # monotonic clock, for batching and lag
    arrived_utc_ns: int  # wall clock: the time of a status that carries none
    retained: bool


@dataclass(eq=False)
class _Batch:
    """Messages handed to a writer thread, acknowledged together once their points are stored."""

    items: list[_Incoming]
    decoded: list[tuple[_Incoming, wire.Inbound]]
    oldest_s: float  # monotonic arrival of its first message
    done: bool = False
    stored: bool = False  # False when the worker stopped before the database accepted it


def _config_msg(patient: str, device: str, payload: bytes, now_ns: int) -> wire.ConfigMsg:
    """Audit point of a patient's settings, from a live ``config`` message."""
    try:
        cfg = decode_patient_config(payload)
    except ConfigError as exc:
        raise DecodeError("bad_config", str(exc)) from exc
    fields = {
        "threshold_deg": float(cfg.threshold_deg), "hysteresis_deg": float(cfg.hysteresis_deg),
        "min_duration_s": float(cfg.min_duration_s), "haptic_enabled": float(cfg.haptic.enabled),
        "haptic_delay_s": float(cfg.haptic.delay_s), "severe_deg": float(cfg.severe_deg),
        "haptic_response_window_s": float(cfg.haptic.response_window_s),
    }
    return wire.ConfigMsg(patient, device, cfg.set_ns or now_ns, fields, cfg.author, cfg.timezone)


class IngestWorker:
    """Subscribes to every patient's posture and event topics and writes them to a store.

    A message is acknowledged only after the store accepted its points, so a crash or a
    database outage loses nothing: unacknowledged messages are redelivered (persistent
    session, stable client id). Messages that cannot be decoded are counted per reason and
    acknowledged, so they are never redelivered forever. While the database is down the
    worker retries the same batch with backoff and jitter and receives nothing new beyond
    the MQTT receive maximum (``max_unacked``).

    Threads: paho's network thread queues incoming messages; the worker thread batches and
    decodes them; ``WRITES_IN_FLIGHT`` writer threads write batches to the store, so the
    database parses one batch while the next is decoded or written. Batches are acknowledged
    in the order their messages arrived, whichever write finishes first.

    Args:
        mqtt: broker settings.
        ingest: worker settings (id, batching, max unacknowledged).
        store: where points go.
        protocol: "5" (shared subscription when ``mqtt.share_group``) or "3.1.1".
    """

    def __init__(self, mqtt: MqttConfig, ingest: IngestConfig, store: Store, protocol: Protocol) -> None:
        self.mqtt_cfg = mqtt
        self.cfg = ingest
        self.store = store
        self.protocol = protocol
        self.stats = IngestStats()
        self.client_id = ingest.effective_worker_id
        warm_up()  # load the JIT-compiled line-protocol kernel now, not on the first message
        self._client, self._props = make_client(
            mqtt, self.client_id, protocol, manual_ack=True, receive_maximum=ingest.max_unacked
        )
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        # make_client's own (logging) callback; its clients use callback API version 2
        self._base_on_disconnect = cast(paho.CallbackOnDisconnect_v2, self._client.on_disconnect)
        self._client.on_disconnect = self._on_disconnect
        self.connected = False
        self._db_ok = True
        self._last_write_s: float | None = None
        # Batches handed to the writers and not yet acknowledged, oldest first; the arrival
        # of the first message of the batch being filled. Both under _order_lock.
        self._order_lock = threading.Lock()
        self._in_flight: collections.deque[_Batch] = collections.deque()
        self._open_oldest_s: float | None = None
        self._acks_stopped = False
        # An unexpected error in the worker or a writer: the worker can no longer acknowledge
        # anything, so it says so (health "failed") and `spinewatch ingest` exits for its
        # supervisor to restart it; the broker redelivers what was not acknowledged.
        self.failure: str | None = None
        self.failed = threading.Event()
        self._slots = threading.Semaphore(WRITES_IN_FLIGHT)
        self._to_write: queue.SimpleQueue[_Batch | None] = queue.SimpleQueue()
        self._writers = [
            threading.Thread(target=self._write_loop, name=f"ingest-write{k}[{self.client_id}]", daemon=True)
            for k in range(WRITES_IN_FLIGHT)
        ]
        # Unbounded by design: the broker sends at most max_unacked unacknowledged messages
        # (MQTT 5 receive maximum; mosquitto's max_inflight for 3.1.1), which bounds it.
        self._queue: queue.SimpleQueue[_Incoming | None] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"ingest[{self.client_id}]", daemon=True)
        self._last_reject_log: dict[str, float] = {}
        # loss accounting: the devices this worker wrote posture with a seq_epoch for (under
        # _seq_lock), and the t0_ns of each one's newest message in the database at the previous
        # check: the end of the period the next check counts, so every message before it had a
        # whole check interval to arrive, through any worker of the group.
        self._seq_lock = threading.Lock()
        self._devices: set[tuple[str, str]] = set()
        self._settled_t0: dict[tuple[str, str], int] = {}
        self._last_loss_log: dict[tuple[str, str], float] = {}
        self._last_drop_log = -1e18
        self._sys_mid = -1
        self._last_arrival_s = time.monotonic()  # of the last message from the broker
        self._loss_thread = threading.Thread(target=self._loss_loop, name=f"ingest-loss[{self.client_id}]",
                                             daemon=True)
        self.subscribed = threading.Event()  # set on the broker's SUBACK

    # ---------------------------------------------------------------- paho thread
    def _on_connect(self, c: paho.Client, u: object, flags: object, rc: object, p: object) -> None:
        if getattr(rc, "is_failure", False):
            _LOGGER.warning("ingest: broker %s refused connection: %s", self.mqtt_cfg.address, rc)
            return
        self.connected = True
        group = self.mqtt_cfg.share_group if self.protocol == "5" else ""
        c.subscribe(wire.subscription(group or None), qos=1)
        # QoS 0, no acknowledgement; a broker without $SYS (or that refuses it) just sends nothing
        self._sys_mid = c.subscribe(transit.BROKER_DROPPED_TOPIC, qos=0)[1] or -1
        _LOGGER.info("ingest %s connected to %s", self.client_id, self.mqtt_cfg.address)

    def _on_subscribe(self, c: paho.Client, u: object, mid: int, codes: object, p: object) -> None:
        failed = [rc for rc in codes if getattr(rc, "is_failure", False)]  # type: ignore[attr-defined]
        if mid == self._sys_mid:
            if failed:
                _LOGGER.info("ingest: broker %s refused %s; not watched", self.mqtt_cfg.address,
                             transit.BROKER_DROPPED_TOPIC)
            return
        if failed:
            _LOGGER.error("ingest: broker %s refused the subscription: %s", self.mqtt_cfg.address, failed)
            return
        self.subscribed.set()  # only now will the broker route messages to this session

    def _on_disconnect(self, c: paho.Client, u: object, flags: paho.DisconnectFlags, rc: ReasonCode,
                       p: Properties | None) -> None:
        self.connected = False
        self._base_on_disconnect(c, u, flags, rc, p)

    def _on_message(self, c: paho.Client, u: object, msg: paho.MQTTMessage) -> None:
        if msg.topic == transit.BROKER_DROPPED_TOPIC:
            self._on_broker_dropped(bytes(msg.payload))
            return
        self._last_arrival_s = time.monotonic()
        # received payloads are bytes (paho's decoder slices bytes); bytearray is for outgoing ones
        self._queue.put(_Incoming(msg.mid, msg.qos, msg.topic, cast(bytes, msg.payload), time.monotonic(),
                                  time.time_ns(), bool(msg.retain)))

    def _on_broker_dropped(self, payload: bytes) -> None:
        """The broker's count of messages it acknowledged and then dropped (since it started)."""
        try:
            n = int(payload.decode().strip())
        except (UnicodeDecodeError, ValueError):
            return
        with self.stats.lock:
            before, self.stats.broker_dropped = self.stats.broker_dropped, n
        now = time.monotonic()
        if n > 0 and n != before and now - self._last_drop_log >= LOSS_LOG_INTERVAL_S:
            self._last_drop_log = now
            _LOGGER.warning("ingest: broker %s has dropped %d messages since it started (%s); fix: %s",
                            self.mqtt_cfg.address, n, transit.BROKER_DROPPED_TOPIC, transit.BROKER_DROP_FIX)

    # ---------------------------------------------------------------- loss accounting
    def _note_written(self, msgs: list[wire.Inbound]) -> None:
        with self._seq_lock:
            self._devices.update((m.patient, m.device) for m in msgs
                                 if isinstance(m, wire.PostureMsg) and m.seq_epoch is not None)

    def check_loss(self) -> dict[tuple[str, str], int]:
        """Count lost posture messages per device from the database; update stats and log.

        For each device this worker wrote, the period is the ``transit.WATCH_WINDOW_NS`` of
        sensor time up to the device's newest message in the database at the previous check.
        The database holds the messages of every worker, so every worker of a group counts
        the same figure, and a message another worker still holds (a few seconds) is not
        taken for lost.
        """
        with self._seq_lock:
            devices = sorted(self._devices)
        settled = self._settled_t0
        self._settled_t0 = {}
        for key in devices:
            newest = self.store.transit_newest_ns(*key)
            if newest is not None:
                self._settled_t0[key] = newest
        counts: dict[tuple[str, str], int] = {}
        for (patient, device), end in settled.items():
            found = transit.by_device(self.store.transit_loss(
                end - transit.WATCH_WINDOW_NS, end + 1, patient=patient, device=device))
            counts[(patient, device)] = sum(x.lost for x in found)
            lost_s = sum(x.lost_s for x in found)
            with self.stats.lock:
                before = self.stats.transit_lost.get((patient, device), 0)
                self.stats.transit_lost[(patient, device)] = counts[(patient, device)]
            now = time.monotonic()
            if (counts[(patient, device)] > before
                    and now - self._last_loss_log.get((patient, device), -1e18) >= LOSS_LOG_INTERVAL_S):
                self._last_loss_log[(patient, device)] = now
                _LOGGER.warning(
                    "ingest: %d posture messages (%.1f min) of patient %s device %s never arrived in the last "
                    "%d h of its data (gaps in seq); broker dropped so far: %s", counts[(patient, device)],
                    lost_s / 60, patient, device, transit.WATCH_WINDOW_NS // (3600 * 10**9),
                    "unknown" if self.stats.broker_dropped is None else self.stats.broker_dropped,
                )
        return counts

    def _loss_loop(self) -> None:
        while not self._stop.wait(self.cfg.loss_check_s):
            try:
                self.check_loss()
            except (ConnectionFailed, StoreRejected) as exc:
                _LOGGER.warning("ingest: could not count lost messages in %s: %s", self.store.address, exc)

    # ---------------------------------------------------------------- worker thread
    def _reject(self, m: _Incoming, reason: str, detail: str) -> None:
        """Count, log (rate-limited) and dead-letter a refused message; the caller acks it."""
        with self.stats.lock:
            self.stats.rejected[reason] += 1
        self._client.publish(
            wire.deadletter_topic(reason),
            wire.encode_deadletter(m.topic, m.payload, reason, detail, self.client_id), qos=1,
        )
        now = time.monotonic()
        if now - self._last_reject_log.get(reason, -1e18) >= REJECT_LOG_INTERVAL_S:
            self._last_reject_log[reason] = now
            _LOGGER.warning("ingest: rejected message on %s: %s (%s)", m.topic[:120], reason, detail[:200])

    def _decode(self, m: _Incoming) -> wire.Inbound | None:
        try:
            patient, device, kind = wire.parse_topic(m.topic)
            if kind == "posture":
                return wire.decode_posture(patient, device, m.payload)
            if kind == "event":
                return wire.decode_event(patient, device, m.payload)
            # A retained status replayed on subscribe is old news: storing it again at
            # arrival time would fake a "last seen".
            if kind == "status" and not m.retained:
                return wire.decode_status(patient, device, m.payload, m.arrived_utc_ns)
            if kind == "config" and not m.retained:
                return _config_msg(patient, device, m.payload, m.arrived_utc_ns)
        except DecodeError as exc:
            self._reject(m, exc.reason, exc.detail)
            return None
        with self.stats.lock:
            self.stats.ignored += 1  # config/imu and replayed retained status: not stored
        return None

    def _ack(self, items: list[_Incoming]) -> None:
        for m in items:
            if m.qos > 0:
                self._client.ack(m.mid, m.qos)
        with self.stats.lock:
            self.stats.acked += len(items)
            self.stats.lock.notify_all()

    def _write_with_retry(self, msgs: list[Message]) -> int:
        attempt = 0
        while True:
            try:
                n = self.store.write(msgs)
                self._db_ok = True
                self._last_write_s = time.monotonic()
                return n
            except ConnectionFailed as exc:
                self._db_ok = False
                attempt += 1
                with self.stats.lock:
                    self.stats.write_retries += 1
                delay = server_retry_delay_s(attempt)
                _LOGGER.warning(
                    "ingest: cannot write to %s (%s); retry %d in %.1f s",
                    self.store.address, exc.detail, attempt, delay,
                )
                if self._stop.wait(delay) and attempt > 3:
                    raise

    def _store(self, decoded: list[tuple[_Incoming, wire.Inbound]]) -> None:
        """Write the decoded messages of one batch (writer thread); isolate what the database refuses."""
        msgs = [d for _, d in decoded]
        try:
            # each posture message's seq goes with its points (loss accounting, transit.py); the
            # written_points figure counts the data's points only
            seqs = transit.seq_records(msgs)
            points = self._write_with_retry([*msgs, *seqs]) - len(seqs) if msgs else 0
        except StoreRejected:
            # isolate the poison message(s): write one by one, count the refused ones
            points = 0
            for m, d in decoded:
                try:
                    seqs = transit.seq_records([d])
                    points += self._write_with_retry([d, *seqs]) - len(seqs)
                except StoreRejected as exc:
                    self._reject(m, "rejected_by_database", str(exc))
                    msgs.remove(d)
        self._note_written(msgs)
        with self.stats.lock:
            self.stats.written_messages += len(msgs)
            self.stats.written_points += points

    def _submit(self, items: list[_Incoming], oldest_s: float) -> None:
        """Decode a batch and hand it to a writer (worker thread); waits while all writers are busy."""
        decoded: list[tuple[_Incoming, wire.Inbound]] = []
        for m in items:
            d = self._decode(m)
            if d is not None:
                decoded.append((m, d))
        self._slots.acquire()  # released by the writer when the batch is done
        b = _Batch(items, decoded, oldest_s)
        with self._order_lock:
            self._in_flight.append(b)
            self._open_oldest_s = None
        self._to_write.put(b)

    def _write_loop(self) -> None:
        while (b := self._to_write.get()) is not None:
            try:
                self._store(b.decoded)
                b.stored = True
            except ConnectionFailed:
                _LOGGER.warning("ingest: stopped while %s is unreachable; unwritten messages stay unacknowledged",
                                self.store.address)
            except Exception as exc:  # never die silently: the broker would stop sending (receive maximum)
                _LOGGER.exception("ingest writer crashed; its messages stay unacknowledged")
                self._fail(f"writer: {type(exc).__name__}: {exc}")
            finally:
                self._complete(b)
                self._slots.release()

    def _fail(self, what: str) -> None:
        if self.failure is None:
            self.failure = what[:300]
        self.failed.set()

    def _complete(self, b: _Batch) -> None:
        """Acknowledge finished batches in the order their messages arrived.

        MQTT wants PUBACKs in the order of the PUBLISHes, and a batch the database never
        accepted must stay unacknowledged: from the first such batch on, nothing more is
        acknowledged (the worker is stopping; later batches come back and overwrite).
        """
        with self._order_lock:
            b.done = True
            while self._in_flight and self._in_flight[0].done:
                head = self._in_flight.popleft()
                self._acks_stopped = self._acks_stopped or not head.stored
                if not self._acks_stopped:
                    self._ack(head.items)

    def _run(self) -> None:
        try:
            self._loop()
        except Exception as exc:  # never die silently: the broker would stop sending (receive maximum)
            _LOGGER.exception("ingest worker crashed")
            self._fail(f"worker: {type(exc).__name__}: {exc}")
            raise
        finally:
            for _ in self._writers:
                self._to_write.put(None)

    def _loop(self) -> None:
        batch: list[_Incoming] = []
        points = 0
        oldest = 0.0
        while True:
            # Write when the batch is full, when its oldest message waited batch_interval_s, or
            # when nothing arrived for batch_linger_s (the stream paused: no reason to wait).
            timeout = None if not batch else max(
                0.0, min(oldest + self.cfg.batch_interval_s - time.monotonic(), self.cfg.batch_linger_s)
            )
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                item = None
                if not self._stop.is_set() and batch:
                    self._submit(batch, oldest)
                    batch, points = [], 0
                continue
            if item is None:  # stop sentinel: write what we hold, then leave
                if batch:
                    self._submit(batch, oldest)
                return
            with self.stats.lock:
                self.stats.received += 1
            if not batch:
                oldest = item.arrived_s
                with self._order_lock:
                    self._open_oldest_s = oldest
            batch.append(item)
            points += max(1, len(item.payload) // 12)  # rough: ~12 bytes per sample on the wire
            if points >= self.cfg.batch_max_points:
                self._submit(batch, oldest)
                batch, points = [], 0

    # ---------------------------------------------------------------- lifecycle
    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        for t in self._writers:
            t.start()
        self._thread.start()
        if self.cfg.loss_check_s > 0:
            self._loss_thread.start()
        connect(self._client, self.mqtt_cfg, self._props, self.protocol)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Write or leave unacknowledged what the worker holds, then disconnect."""
        self._stop.set()
        self._queue.put(None)
        deadline = time.monotonic() + timeout_s
        for t in (self._thread, *self._writers, self._loss_thread):
            if t.is_alive():
                t.join(max(0.0, deadline - time.monotonic()))
        self._client.disconnect()
        self._client.loop_stop()

    def health(self) -> dict[str, object]:
        """Status and counters for the health endpoint.

        ``status`` is ``ok``; ``degraded`` while the broker is disconnected or the database
        refuses connections; ``failed`` after an unexpected error stopped the worker from
        acknowledging (``failure`` says which; restart it). ``lag_s`` is the age of the oldest
        message received but not yet written (0 when none is pending).
        """
        with self._order_lock:
            oldest = self._in_flight[0].oldest_s if self._in_flight else self._open_oldest_s
        status = "failed" if self.failed.is_set() else "ok" if self.connected and self._db_ok else "degraded"
        return {
            "status": status,
            "failure": self.failure,
            "worker_id": self.client_id,
            "mqtt_connected": self.connected,
            "subscribed": self.subscribed.is_set(),
            "database_reachable": self._db_ok,
            "database": self.store.address,
            "lag_s": round(time.monotonic() - oldest, 3) if oldest is not None else 0.0,
            "seconds_since_last_write": (
                None if self._last_write_s is None else round(time.monotonic() - self._last_write_s, 3)
            ),
            **self.stats.snapshot(),
        }

    def wait_written(self, messages: int, timeout_s: float, quiet_s: float | None = None) -> bool:
        """Block until at least ``messages`` posture/event messages were written or rejected.

        With ``quiet_s``, give up early (False) once everything received is acknowledged and
        nothing arrived for ``quiet_s`` seconds: what is missing then is not coming (a broker
        that dropped it).
        """
        deadline = time.monotonic() + timeout_s
        with self.stats.lock:
            while self.stats.written_messages + sum(self.stats.rejected.values()) < messages:
                left = deadline - time.monotonic()
                if left <= 0 or (quiet_s is not None and self._quiet_locked(quiet_s)):
                    return False
                self.stats.lock.wait(left if quiet_s is None else min(left, 0.1))
        return True

    def is_quiet(self, quiet_s: float) -> bool:
        """Everything received is acknowledged and nothing arrived for ``quiet_s`` seconds."""
        with self.stats.lock:
            return self._quiet_locked(quiet_s)

    def _quiet_locked(self, quiet_s: float) -> bool:
        return self.stats.acked >= self.stats.received and time.monotonic() - self._last_arrival_s >= quiet_s
