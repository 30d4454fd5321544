"""MQTT publisher of the bridge: posture batches, slouch and alert events and retained status, QoS 1.

Messages go through a disk-backed :class:`~spinewatch.service.bridge.outbox.Outbox` first; a pump
thread hands at most ``max_inflight`` of them to paho at a time, in order, and deletes each
from the outbox once the broker acknowledged it. The pump hands nothing over while the link
is down: paho sends a message handed to it during a connection attempt at once, ahead of
older ones it resends only on the CONNACK, so the broker would get them out of order.

A broker outage or a bridge restart loses nothing (within the outbox's size bound); a message
may be delivered twice after a restart, which is harmless since points are keyed by sensor time.
Posture messages are numbered (``seq``/``seq_epoch``) by the outbox as they enter it.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
import uuid
from typing import Final

import paho.mqtt.client as paho

from spinewatch.errors import ConnectionFailed
from spinewatch.model import HapticAlert, PostureBatch, SlouchEvent
from spinewatch.service.bridge.outbox import Outbox, Payload, open_outbox
from spinewatch.service.config import BridgeConfig, MqttConfig
from spinewatch.service.transport import wire
from spinewatch.service.transport.mqtt import Protocol, connect, make_client

_LOGGER = logging.getLogger(__name__)

# Outbox meta key: UTC ns just after the newest sample queued (a restarted bridge never stamps
# a sample before it, see spinewatch.service.cli.bridge).
LAST_END_KEY: Final = "last_end_utc_ns"


def _encode(b: PostureBatch, seq: int, seq_epoch: int) -> bytes:
    return wire.encode_posture(b, seq, seq_epoch)


class Publisher:
    """Publishes one device's messages with at-least-once delivery.

    Args:
        cfg: MQTT settings (``max_inflight`` bounds the messages handed to paho at once).
        patient, device: pseudonymous ids (validated).
        protocol: "5" or "3.1.1" (see :func:`spinewatch.service.transport.mqtt.resolve_protocol`).
        outbox: the store-and-forward queue; default an in-memory one (lost on restart). The
            commands open the device's disk outbox with
            :func:`spinewatch.service.bridge.outbox.open_outbox`.
        device_status: this is the device's bridge: it owns the retained ``status`` topic
            (online on connect, offline on close and as last will). False for the therapist
            side (``calibrate``, ``config set``), which only sends config and events.
        client_id: MQTT client id; default ``bridge-{patient}-{device}``.
    """

    def __init__(
        self, cfg: MqttConfig, patient: str, device: str, protocol: Protocol,
        outbox: Outbox | None = None, *, device_status: bool = True, client_id: str | None = None,
    ) -> None:
        self.cfg = cfg
        self.patient = wire.check_id("patient", patient)
        self.device = wire.check_id("device", device)
        self.protocol = protocol
        self.outbox = outbox if outbox is not None else Outbox(":memory:")  # an empty Outbox is falsy
        self.device_status = device_status
        self._client, self._props = make_client(cfg, client_id or f"bridge-{patient}-{device}", protocol)
        self._status_topic = wire.topic(patient, device, "status")
        if device_status:
            self._client.will_set(self._status_topic, json.dumps({"v": 1, "online": False}), qos=1, retain=True)
        self._cv = threading.Condition()
        self._inflight: dict[int, int] = {}  # paho mid -> outbox id
        self._early: set[int] = set()  # mids acknowledged before publish() returned
        self._direct: set[int] = set()  # mids of status messages (sent outside the outbox)
        self._link_up = False  # connected, and paho has resent what it held (see _on_connect)
        self._resume_on_ack = False
        self._acked_ids: list[int] = []
        self._last_handed = 0  # outbox id of the newest message handed to paho
        self._dirty = True  # the outbox may hold messages not yet handed to paho
        self._stop = False
        self.published = 0
        self.acked = 0
        self._pump = threading.Thread(target=self._run_pump, name=f"publisher[{patient}/{device}]", daemon=True)
        self._client.on_publish = self._on_publish
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect

    # ------------------------------------------------------------ paho network thread
    def _on_connect(self, c: paho.Client, u: object, flags: object, rc: object, p: object) -> None:
        if not getattr(rc, "is_failure", False):
            _LOGGER.info("publisher connected to %s", self.cfg.address)
            if self.device_status:
                self.publish_status(online=True)
            with self._cv:
                if self._inflight:
                    # paho resends the messages it holds right after this callback returns;
                    # new ones wait for the first acknowledgement, which comes after them (the
                    # online status just published is acknowledged too, so one always comes).
                    self._resume_on_ack = True
                else:
                    self._link_up = True
                    self._cv.notify_all()

    def _on_disconnect(self, c: paho.Client, u: object, flags: object, rc: object, p: object) -> None:
        with self._cv:
            self._link_up = self._resume_on_ack = False

    def _on_publish(self, c: paho.Client, u: object, mid: int, rc: object, p: object) -> None:
        # Runs inside paho's message lock: never call into paho or wait here.
        with self._cv:
            if self._resume_on_ack:
                self._link_up, self._resume_on_ack = True, False
                self._cv.notify_all()
            if mid in self._direct:
                self._direct.discard(mid)
                return
            rid = self._inflight.pop(mid, None)
            if rid is None:
                self._early.add(mid)
            else:
                self._acked_ids.append(rid)
            self.acked += 1
            self._cv.notify_all()

    # ------------------------------------------------------------ pump thread
    def _run_pump(self) -> None:
        """Hand queued messages to paho in order, at most ``max_inflight`` unacknowledged."""
        while True:
            with self._cv:
                while not self._stop and not self._acked_ids and not (
                    self._dirty and self._link_up and len(self._inflight) < self.cfg.max_inflight
                ):
                    self._cv.wait(1.0)
                if self._stop:
                    return
                done, self._acked_ids = self._acked_ids, []
                room = self.cfg.max_inflight - len(self._inflight) if self._link_up else 0
                if room > 0:
                    self._dirty = False
            self.outbox.remove(done)
            batch = self.outbox.after(self._last_handed, room) if room > 0 else []
            for m in batch:
                info = self._client.publish(m.topic, m.payload, qos=m.qos, retain=m.retain)
                with self._cv:
                    self._last_handed = m.id
                    if m.qos == 0:
                        self._acked_ids.append(m.id)
                    elif info.mid in self._early:
                        self._early.discard(info.mid)
                        self._acked_ids.append(m.id)
                    else:
                        self._inflight[info.mid] = m.id
            with self._cv:
                if len(batch) == room and room > 0:
                    self._dirty = True  # there may be more behind them
                self._cv.notify_all()

    def _enqueue(self, items: list[tuple[str, Payload, bool]], retain: bool = False,
                 meta: dict[str, int] | None = None) -> None:
        """Queue (topic, payload, droppable) messages in one outbox transaction."""
        self.outbox.extend([(t, p, self.cfg.qos, retain, d) for t, p, d in items], meta)
        with self._cv:
            self.published += len(items)
            self._dirty = True
            self._cv.notify_all()

    # ------------------------------------------------------------ public API
    def __enter__(self) -> Publisher:
        backlog = len(self.outbox)
        if backlog:
            _LOGGER.info("publisher: %d messages left in the outbox from before; sending them first", backlog)
        self._pump.start()
        connect(self._client, self.cfg, self._props, self.protocol)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def publish_posture(self, batch: PostureBatch) -> None:
        self.publish_postures([batch])

    def publish_postures(self, batches: list[PostureBatch]) -> None:
        """Queue several posture messages at once (one outbox transaction); the outbox gives
        each its ``seq`` and ``seq_epoch`` as it enters (see :mod:`spinewatch.service.bridge.outbox`)."""
        if not batches:
            return
        topic = wire.topic(self.patient, self.device, "posture")
        items: list[tuple[str, Payload, bool]] = [(topic, functools.partial(_encode, b), True) for b in batches]
        last = batches[-1]
        self._enqueue(items, meta={LAST_END_KEY: int(last.t0_ns + len(last.flexion_deg) * last.dt_ns)})

    @property
    def last_end_utc_ns(self) -> int | None:
        """UTC ns just after the last sample ever queued in this outbox (kept across restarts)."""
        return self.outbox.get_meta(LAST_END_KEY)

    def publish_message(self, kind: wire.Kind, payload: bytes, retain: bool = False) -> None:
        """Queue any other message (e.g. the therapist's ``config``, retained, or a ``calibration``
        event); kept when the outbox is full."""
        self._enqueue([(wire.topic(self.patient, self.device, kind), payload, False)], retain=retain)

    def publish_event(self, event: SlouchEvent) -> None:
        self._enqueue([(wire.topic(self.patient, self.device, "event"), wire.encode_event(event), False)])

    def publish_alert(self, alert: HapticAlert) -> None:
        """A haptic alert and its outcome, on the ``event`` topic like slouch events (kept when
        the outbox is full; keyed by ``t_ns``, so a redelivery overwrites its own point)."""
        self._enqueue([(wire.topic(self.patient, self.device, "event"), wire.encode_alert(alert), False)])

    def publish_status(self, online: bool, **fields: object) -> None:
        """Retained device status (QoS 1); sent directly, not through the outbox (it is a
        current-state message: an old one is worthless once a newer one exists).

        Adds ``outbox_dropped`` (posture messages dropped because the outbox was full, since
        the outbox file was created) and ``outbox_queued`` (messages waiting in it)."""
        self._publish_direct(json.dumps({"v": 1, "online": online, "outbox_dropped": self.outbox.dropped,
                                         "outbox_queued": len(self.outbox), **fields}))

    def _publish_direct(self, payload: str) -> paho.MQTTMessageInfo:
        """Publish a status message outside the outbox; its acknowledgement is not an outbox one."""
        info = self._client.publish(self._status_topic, payload, qos=1, retain=True)
        with self._cv:
            if info.mid in self._early:  # acknowledged before publish() returned
                self._early.discard(info.mid)
            else:
                self._direct.add(info.mid)
        return info

    @property
    def connected(self) -> bool:
        """The broker link is up (a wait for acknowledgements can succeed)."""
        return self._client.is_connected()

    @property
    def unacked(self) -> int:
        """Messages not yet acknowledged by the broker (in the outbox)."""
        return len(self.outbox)

    @property
    def dropped(self) -> int:
        """Posture messages dropped because the outbox was full."""
        return self.outbox.dropped

    def wait_all_acked(self, timeout_s: float) -> bool:
        """Block until the broker acknowledged every message published so far."""
        deadline = time.monotonic() + timeout_s
        with self._cv:
            while self._dirty or self._inflight or self._acked_ids or len(self.outbox):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(min(left, 0.5))
        return True

    def close(self) -> None:
        """Publish offline status, stop the pump, disconnect. Unacknowledged messages stay in
        the outbox for the next start."""
        try:
            if self.device_status and self._client.is_connected():
                self._publish_direct(json.dumps({"v": 1, "online": False})).wait_for_publish(timeout=2.0)
        except (RuntimeError, ValueError):
            pass
        finally:
            with self._cv:
                self._stop = True
                self._cv.notify_all()
            if self._pump.is_alive():
                self._pump.join(5.0)
            self._client.disconnect()
            self._client.loop_stop()


def send_from_therapist(
    cfg: MqttConfig, bridge: BridgeConfig, protocol: Protocol, patient: str, device: str,
    messages: list[tuple[wire.Kind, bytes, bool]], timeout_s: float,
) -> None:
    """Publish what ``calibrate`` / ``config set`` send for a device: (kind, payload, retain)
    messages, QoS 1, through the device's therapist-side outbox.

    The messages enter the outbox (``...+<device>.therapist.sqlite`` beside the bridge's, see
    :func:`~spinewatch.service.bridge.outbox.outbox_path`) before anything is sent, so a command
    killed or timed out loses nothing: what the broker did not acknowledge is sent first by
    the next ``calibrate`` or ``config set`` of that device, in order (a newer config
    follows, and wins). It has its own file and lock, so it works while the device's bridge
    runs; two such commands for one device at once: the second is refused.

    Raises:
        OutboxBusy: another calibrate/config set of this device is running.
        ConnectionFailed: not all acknowledged within ``timeout_s`` (they stay queued).
    """
    box = open_outbox(bridge, patient, device, "therapist")
    try:
        # its own client id per run (two therapists' machines never take over each other's
        # session) and no session left behind: the outbox, not the broker, keeps what is unsent
        pub = Publisher(cfg, patient, device, protocol, box, device_status=False,
                        client_id=f"therapist-{patient}-{device}-{uuid.uuid4().hex[:8]}")
        if pub._props is not None:
            pub._props.SessionExpiryInterval = 0
        earlier = len(box)
        for kind, payload, retain in messages:
            pub.publish_message(kind, payload, retain=retain)
        if earlier:
            _LOGGER.info("sending %d messages an earlier command left in %s first", earlier, box.path)
        with pub:
            if not pub.wait_all_acked(timeout_s):
                raise ConnectionFailed(
                    cfg.address, f"the broker did not acknowledge within {timeout_s:g} s; {pub.unacked} messages "
                    f"are kept in {box.path} and sent first by the next calibrate or config set of {patient}/{device}")
    finally:
        box.close()
