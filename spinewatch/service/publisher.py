"""MQTT publisher of the bridge: posture batches, slouch events and retained status, QoS 1."""

from __future__ import annotations

import json
import logging
import threading
import time

import paho.mqtt.client as paho

from spinewatch.model import PostureBatch, SlouchEvent
from spinewatch.service import wire
from spinewatch.service.config import MqttConfig
from spinewatch.service.mqtt import Protocol, connect, make_client

_LOGGER = logging.getLogger(__name__)


class Publisher:
    """Publishes one device's messages with at-least-once delivery.

    paho keeps every message it has not yet delivered in memory (its queue limit is
    disabled) and re-sends in-flight ones after a reconnect, since the session is
    persistent. A disk-backed store-and-forward queue comes with issue #6.

    Args:
        cfg: MQTT settings.
        patient, device: pseudonymous ids (validated).
        protocol: "5" or "3.1.1" (see :func:`spinewatch.service.mqtt.resolve_protocol`).
    """

    def __init__(self, cfg: MqttConfig, patient: str, device: str, protocol: Protocol) -> None:
        self.cfg = cfg
        self.patient = wire.check_id("patient", patient)
        self.device = wire.check_id("device", device)
        self.protocol = protocol
        self._client, self._props = make_client(cfg, f"bridge-{patient}-{device}", protocol)
        status = wire.topic(patient, device, "status")
        self._client.will_set(status, json.dumps({"v": 1, "online": False}), qos=1, retain=True)
        self._lock = threading.Condition()
        self._pending: set[int] = set()
        self._acked_early: set[int] = set()
        self.published = 0
        self.acked = 0
        self._seq = 0
        self._client.on_publish = self._on_publish
        self._client.on_connect = self._on_connect

    def _on_connect(self, c: paho.Client, u: object, flags: object, rc: object, p: object) -> None:
        if not getattr(rc, "is_failure", False):
            _LOGGER.info("publisher connected to %s", self.cfg.address)
            self.publish_status(online=True)

    def _on_publish(self, c: paho.Client, u: object, mid: int, rc: object, p: object) -> None:
        with self._lock:
            if mid in self._pending:
                self._pending.discard(mid)
            else:  # the PUBACK raced ahead of publish() returning its mid
                self._acked_early.add(mid)
            self.acked += 1
            self._lock.notify_all()

    def __enter__(self) -> Publisher:
        connect(self._client, self.cfg, self._props, self.protocol)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _publish(self, topic: str, payload: bytes | str, retain: bool = False) -> None:
        info = self._client.publish(topic, payload, qos=self.cfg.qos, retain=retain)
        with self._lock:
            self.published += 1
            if self.cfg.qos == 0:
                return
            if info.mid in self._acked_early:
                self._acked_early.discard(info.mid)
            else:
                self._pending.add(info.mid)

    def publish_posture(self, batch: PostureBatch) -> None:
        self._seq += 1
        self._publish(
            wire.topic(self.patient, self.device, "posture"), wire.encode_posture(batch, self._seq)
        )

    def publish_event(self, event: SlouchEvent) -> None:
        self._publish(wire.topic(self.patient, self.device, "event"), wire.encode_event(event))

    def publish_status(self, online: bool, **fields: object) -> None:
        payload = json.dumps({"v": 1, "online": online, **fields})
        self._client.publish(
            wire.topic(self.patient, self.device, "status"), payload, qos=1, retain=True
        )

    @property
    def unacked(self) -> int:
        with self._lock:
            return len(self._pending)

    def wait_all_acked(self, timeout_s: float) -> bool:
        """Block until the broker acknowledged every message published so far."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(left)
        return True

    def close(self) -> None:
        """Publish offline status, disconnect, and stop paho's thread."""
        try:
            info = self._client.publish(
                wire.topic(self.patient, self.device, "status"),
                json.dumps({"v": 1, "online": False}), qos=1, retain=True,
            )
            if self._client.is_connected():
                info.wait_for_publish(timeout=2.0)
        finally:
            self._client.disconnect()
            self._client.loop_stop()
