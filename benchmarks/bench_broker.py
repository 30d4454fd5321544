"""QoS-1 throughput of the embedded brokers: one paho publisher to one paho subscriber, ~2 KB JSON.

Run:  PYTHONPATH=. python benchmarks/bench_broker.py [--messages 5000] [--inflight 20]

The demo pushes ~30k posture messages for a simulated 8 h day; this tells whether amqtt keeps up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import shlex
import sys
import threading
import time
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from spinewatch.service.ops.embedded_broker import EmbeddedBroker, find_mosquitto

TOPIC = "spinewatch/v1/bench/d1/posture"
# Per-broker wall-clock cap so the whole run stays under ~30 s even on a slow machine.
PER_BROKER_DEADLINE_S = 12.0
DEMO_MESSAGES = 30_000  # posture messages in the demo's simulated 8 h day


def posture_payload(seq: int) -> bytes:
    """A ~2 KB JSON posture batch shaped like the v1 wire format (75 samples = 3 s at 25 Hz)."""
    n = 75
    body = {
        "schema": 1,
        "seq": seq,
        "t0_ns": 1_700_000_000_000_000_000 + seq * 3_000_000_000,
        "period_s": 0.04,
        "flexion_deg": [round(20 + 10 * math.sin((seq * n + i) / 40), 3) for i in range(n)],
        "lateral_deg": [round(3 * math.cos((seq * n + i) / 55), 3) for i in range(n)],
        "state": [1 if i % 7 else 0 for i in range(n)],
        "activity": ["sitting"] * n,
    }
    return json.dumps(body, separators=(",", ":")).encode()


def _client(broker: EmbeddedBroker, role: str) -> mqtt.Client:
    return mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"bench-{role}-{uuid.uuid4().hex[:8]}",
        protocol=mqtt.MQTTv5 if broker.mqtt5 else mqtt.MQTTv311,
    )


def run_blocking(broker: EmbeddedBroker, messages: int, inflight: int, payloads: list[bytes]) -> tuple[int, float]:
    """Publish `messages` QoS-1 messages; return (received, elapsed_s) at the subscriber."""
    received = 0
    all_in = threading.Event()
    subscribed = threading.Event()
    connected = {"sub": threading.Event(), "pub": threading.Event()}

    def on_message(_c, _u, _m) -> None:  # type: ignore[no-untyped-def]
        nonlocal received
        received += 1
        if received >= messages:
            all_in.set()

    sub = _client(broker, "sub")
    sub.on_connect = lambda *_a: connected["sub"].set()
    sub.on_subscribe = lambda *_a: subscribed.set()
    sub.on_message = on_message
    sub.connect(broker.host, broker.port)
    sub.loop_start()
    pub = _client(broker, "pub")
    pub.max_inflight_messages_set(inflight)
    pub.max_queued_messages_set(0)  # unbounded: we enqueue the whole run up front
    pub.on_connect = lambda *_a: connected["pub"].set()
    pub.connect(broker.host, broker.port)
    pub.loop_start()
    try:
        for name, event in connected.items():
            if not event.wait(5.0):
                raise TimeoutError(f"{name} did not connect")
        sub.subscribe(TOPIC, qos=1)
        if not subscribed.wait(5.0):
            raise TimeoutError("no SUBACK")
        t0 = time.perf_counter()
        for i in range(messages):
            pub.publish(TOPIC, payloads[i % len(payloads)], qos=1)
        all_in.wait(PER_BROKER_DEADLINE_S)
        return received, time.perf_counter() - t0
    finally:
        pub.disconnect()
        sub.disconnect()
        pub.loop_stop()
        sub.loop_stop()


async def bench(kind: str, messages: int, inflight: int, payloads: list[bytes]) -> None:
    async with EmbeddedBroker(kind) as broker:  # type: ignore[arg-type]
        received, elapsed_s = await asyncio.to_thread(run_blocking, broker, messages, inflight, payloads)
    rate = received / elapsed_s
    proto = "MQTT 5" if kind == "mosquitto" else "MQTT 3.1.1"
    note = "" if received == messages else f"  (deadline hit: {received}/{messages} delivered)"
    print(
        f"{kind:9s} {proto:10s} {received:6d} msgs in {elapsed_s:6.2f} s = {rate:8.0f} msgs/s"
        f"  -> {DEMO_MESSAGES} demo msgs in ~{DEMO_MESSAGES / rate:5.1f} s{note}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=8000)
    parser.add_argument("--inflight", type=int, default=20, help="paho max in-flight QoS 1 messages (paho default 20)")
    parser.add_argument("--kinds", default="mosquitto,amqtt")
    args = parser.parse_args()
    # amqtt warns "Received PUBACK for unknown pending message Id" when the subscriber disconnects
    # while acks are in flight; harmless here and it would garble the figures.
    logging.getLogger("amqtt").setLevel(logging.ERROR)
    payloads = [posture_payload(i) for i in range(100)]
    size_b = sum(map(len, payloads)) / len(payloads)
    print("command:", shlex.join([sys.executable, *sys.argv]))
    print(f"payload ~{size_b:.0f} B JSON, QoS 1, 1 publisher -> 1 subscriber, in-flight window {args.inflight}")
    for kind in args.kinds.split(","):
        if kind == "mosquitto" and find_mosquitto() is None:
            print("mosquitto: not installed, skipped")
            continue
        asyncio.run(bench(kind, args.messages, args.inflight, payloads))


if __name__ == "__main__":
    main()
