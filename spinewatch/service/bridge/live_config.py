"""The patient's config, live: the bridge's subscription to its retained ``config`` topic, and
what applying a config does to the running tracker."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Final, Protocol, Self

import paho.mqtt.client as paho

from spinewatch.service.config import MqttConfig
from spinewatch.service.transport import wire
from spinewatch.service.transport.mqtt import Protocol as MqttProtocol
from spinewatch.service.transport.mqtt import connect, make_client
from spinewatch.service.transport.patient_config import PatientConfig
from spinewatch.signal import PostureTracker

# Config messages waiting to be applied; only the newest matters, so when full the
# oldest is discarded (counted in ConfigSubscriber.discarded).
CONFIG_QUEUE_SIZE: Final = 8


class ConfigUpdates(Protocol):
    """Where the bridge gets config payloads from (a ConfigSubscriber, or a test queue)."""

    async def get(self) -> bytes: ...


class ConfigSubscriber:
    """Subscribes to ``spinewatch/v1/{patient}/{device}/config`` (retained, QoS 1).

    paho's callback thread only hands each payload to the event loop
    (``loop.call_soon_threadsafe``), where it waits in a bounded queue for
    :meth:`get`. Use as ``async with``.
    """

    def __init__(self, cfg: MqttConfig, patient: str, device: str, protocol: MqttProtocol) -> None:
        self.cfg = cfg
        self.topic = wire.topic(wire.check_id("patient", patient), wire.check_id("device", device), "config")
        self.protocol = protocol
        self._client, self._props = make_client(cfg, f"bridge-config-{patient}-{device}", protocol)
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(CONFIG_QUEUE_SIZE)
        self._loop: asyncio.AbstractEventLoop | None = None
        self.received = 0
        self.discarded = 0
        self.subscribed = asyncio.Event()

    def _on_connect(self, c: paho.Client, u: object, flags: object, rc: object, p: object) -> None:
        if not getattr(rc, "is_failure", False):
            c.subscribe(self.topic, qos=1)

    def _on_subscribe(self, c: paho.Client, u: object, mid: int, rcs: object, p: object) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.subscribed.set)

    def _on_message(self, c: paho.Client, u: object, msg: paho.MQTTMessage) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._put, bytes(msg.payload))

    def _put(self, payload: bytes) -> None:
        self.received += 1
        if self._queue.full():
            self._queue.get_nowait()
            self.discarded += 1
        self._queue.put_nowait(payload)

    async def __aenter__(self) -> Self:
        self._loop = asyncio.get_running_loop()
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        connect(self._client, self.cfg, self._props, self.protocol)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._client.disconnect()
        await asyncio.get_running_loop().run_in_executor(None, self._client.loop_stop)

    async def get(self) -> bytes:
        return await self._queue.get()


def apply_posture_config(tracker: PostureTracker, cfg: PatientConfig) -> None:
    """Put the patient's thresholds into a running tracker (its state is kept), and their
    stored calibration, if any (it replaces the auto-captured neutral from the next
    sample on; a config without one leaves the tracker's neutral as it is)."""
    if cfg.neutral_up_sensor is not None:
        tracker.set_neutral(cfg.neutral_up_sensor, cfg.mount_yaw_deg)
    tracker.set_params(dataclasses.replace(
        tracker.params, threshold_deg=cfg.threshold_deg, hysteresis_deg=cfg.hysteresis_deg,
        min_duration_s=cfg.min_duration_s))
