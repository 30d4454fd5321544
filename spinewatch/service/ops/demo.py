"""The demo: a simulated patient through the real code path, from sensor to report."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from spinewatch.errors import SpineWatchError
from spinewatch.firmware_bridge.sim import PostureScript, SimulatedPatient
from spinewatch.model import NS_PER_S, HapticAlert, SlouchEvent
from spinewatch.service.bridge.loop import HapticEvent, LiveStatus, run_bridge
from spinewatch.service.bridge.outbox import open_outbox
from spinewatch.service.bridge.publisher import Publisher
from spinewatch.service.config import Config, MqttConfig
from spinewatch.service.ingest.worker import IngestWorker
from spinewatch.service.ops.embedded_broker import BrokerPreference, EmbeddedBroker
from spinewatch.service.reports.session_report import SessionSummary, build_report
from spinewatch.service.storage import Store, open_store
from spinewatch.service.transport.mqtt import Protocol, resolve_protocol
from spinewatch.service.transport.patient_config import PatientConfig, encode_patient_config
from spinewatch.signal import PostureParams, PostureTracker

_LOGGER = logging.getLogger(__name__)

DEMO_RATE_HZ = 100.0
# How long to wait for the broker to acknowledge and the ingest to write the tail of the
# stream after the simulated day ends; generous, since a remote broker may be slow.
DRAIN_TIMEOUT_S = 300.0
# Once the broker acknowledged everything and the ingest worker has written all it received,
# a message still missing after this long without any arrival is not coming: the broker dropped it.
DRAIN_QUIET_S = 5.0
DEMO_AUTHOR = "demo"  # audit author of the demo patient's settings
# After a stop request (Ctrl-C) the broker and the ingest get this long, s, for what is in
# flight; then the demo shuts down in order whatever is left (a loopback broker acknowledges
# and SQLite writes a few seconds of stream in well under a second).
STOP_DRAIN_TIMEOUT_S = 5.0
_WAIT_SLICE_S = 0.25  # a blocking wait runs in slices of this, s, so a stop request is seen


class DemoStop:
    """Ctrl-C for :func:`run_demo`, from a signal handler on the demo's event loop.

    :meth:`request` (the first Ctrl-C) ends the simulated stream; the demo then waits at most
    :data:`STOP_DRAIN_TIMEOUT_S` for what is in flight and shuts down in order (publisher,
    outbox, ingest, store, broker last) and raises :class:`DemoInterrupted`. :meth:`abort`
    (the second Ctrl-C, before the caller exits the process at once) kills the private
    broker and removes its folder, so nothing outlives the demo.
    """

    def __init__(self) -> None:
        self.requested_at: float | None = None  # time.monotonic() of the request
        self._source: SimulatedPatient | None = None
        self._broker: EmbeddedBroker | None = None

    @property
    def requested(self) -> bool:
        return self.requested_at is not None

    def request(self) -> None:
        if self.requested_at is None:
            self.requested_at = time.monotonic()
        if self._source is not None:
            self._source.stop()

    def abort(self) -> None:
        if self._broker is not None:
            self._broker.kill_now()

    def _attach(self, source: SimulatedPatient) -> None:
        self._source = source
        if self.requested:
            source.stop()


class DemoInterrupted(SpineWatchError):
    """The demo was stopped (Ctrl-C) before the simulated time ran out; it shut down in order
    and wrote no report.

    Attributes:
        samples: samples streamed before the stop.
        published: messages published.
        written: messages the ingest wrote to the store (device status included).
    """

    def __init__(self, samples: int, simulated_s: float, published: int, written: int, store: str) -> None:
        self.samples, self.published, self.written = samples, published, written
        super().__init__(f"demo stopped after {simulated_s:.0f} s simulated ({samples:,} samples, "
                         f"{published:,} messages published); {written:,} messages stored in {store}; "
                         "no report written")


async def _wait_bounded(fn: Callable[[float], bool], timeout_s: float, stop: DemoStop | None) -> bool:
    """``fn(timeout_s)`` (a blocking wait) in a worker thread, in short slices, so that a stop
    request shortens it to :data:`STOP_DRAIN_TIMEOUT_S` after the request and no thread is
    left waiting when the demo exits."""
    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + timeout_s
    while True:
        end = deadline
        if stop is not None and stop.requested_at is not None:
            end = min(end, stop.requested_at + STOP_DRAIN_TIMEOUT_S)
        left = end - time.monotonic()
        if left <= 0:
            return False
        if await loop.run_in_executor(None, fn, min(left, _WAIT_SLICE_S)):
            return True


@dataclass(frozen=True, slots=True)
class DemoResult:
    samples: int
    posture_messages: int
    events: int
    alerts: int
    points_written: int
    wall_s: float
    broker: str
    store: str
    summary: SessionSummary
    report_png: Path
    events_csv: Path
    patient: str = "p-demo"
    start_utc_ns: int = 0
    messages_sent: int = 0  # posture, events, alerts and the config, as the broker acknowledged them
    messages_missing: int = 0  # of those, never written to the store
    missing_min: float = 0.0  # posture time those missing messages covered, minutes (estimate)
    broker_dropped: int | None = None  # the broker's $SYS dropped count at the end (None: not published)

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.wall_s if self.wall_s > 0 else float("inf")


def warm_up_kernels(rate_hz: float) -> None:
    """Load (or compile, on the first run) every Numba kernel of the pipeline on a throwaway
    tracker, so that the stream's timing excludes it."""
    import numpy as np  # noqa: PLC0415

    from spinewatch.service.storage.lineprotocol import warm_up  # noqa: PLC0415

    still = np.tile([0.0, 0.0, 9.81], (2, 1))
    PostureTracker(rate_hz).update(np.zeros((2, 3)), still)
    warm_up()


def remove_sqlite(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(f"{path}{suffix}")


def demo_patient_config(cfg: Config, set_ns: int) -> PatientConfig:
    """The demo patient's settings: the posture config's thresholds, default haptics
    (buzz as soon as a slouch is confirmed, 60 s response window)."""
    p = cfg.posture
    severe = max(PatientConfig().severe_deg, p.threshold_deg + 10.0)  # the severe zone starts above the threshold
    return PatientConfig(threshold_deg=p.threshold_deg, severe_deg=min(severe, 89.9), hysteresis_deg=p.hysteresis_deg,
                         min_duration_s=p.min_duration_s, author=DEMO_AUTHOR, set_ns=set_ns)


async def open_demo_backend(
    stack: contextlib.AsyncExitStack, cfg: Config, embedded_broker: BrokerPreference, out_dir: Path,
    stage: Callable[[str], None], stop: DemoStop | None = None,
) -> tuple[MqttConfig, Protocol, str, Store]:
    """The broker and the store of a demo (one patient or a caseload), entered on ``stack``.

    The configured broker (``SPINEWATCH_MQTT_URL``), else a private embedded one, entered first
    so that it stops last (its clients go first); the configured InfluxDB, else a fresh SQLite
    file in ``out_dir``. The demo's own ingest reads with a plain subscription, so the returned
    MQTT config has no shared-subscription group: it never steals messages from production
    workers sharing one on the same broker.

    Returns:
        ``(mqtt_cfg, protocol, broker_desc, store)``.
    """
    loop = asyncio.get_running_loop()
    if cfg.mqtt.url:
        mqtt_cfg = cfg.mqtt
        protocol: Protocol = await loop.run_in_executor(None, resolve_protocol, mqtt_cfg)
        broker_desc = mqtt_cfg.address
    else:
        broker = EmbeddedBroker(embedded_broker)
        if stop is not None:
            stop._broker = broker
        await stack.enter_async_context(broker)
        mqtt_cfg = dataclasses.replace(cfg.mqtt, url=broker.url)
        protocol = "5" if broker.mqtt5 else "3.1.1"
        broker_desc = f"embedded {broker.kind} at {broker.url}"
    mqtt_cfg = dataclasses.replace(mqtt_cfg, share_group="")
    stage(f"broker: {broker_desc} (MQTT {protocol})")
    local = out_dir / "spinewatch.sqlite"
    if cfg.influx.kind == "none":
        remove_sqlite(local)
    store = await loop.run_in_executor(None, open_store, cfg.influx, local)
    stack.callback(store.close)
    stage(f"store: {store.address}")
    return mqtt_cfg, protocol, broker_desc, store


async def run_demo(
    cfg: Config,
    duration_s: float,
    speed: float | None,
    out_dir: Path,
    *,
    patient: str = "p-demo",
    device: str = "sim-1",
    seed: int = 0,
    on_status: Callable[[LiveStatus], None] | None = None,
    on_event: Callable[[SlouchEvent], None] | None = None,
    on_alert: Callable[[HapticAlert], None] | None = None,
    on_haptic: Callable[[HapticEvent], None] | None = None,
    patient_config: PatientConfig | None = None,
    on_stage: Callable[[str], None] | None = None,
    embedded_broker: BrokerPreference = "auto",
    stop: DemoStop | None = None,
) -> DemoResult:
    """Run the simulated patient through bridge, MQTT, ingest and storage; write the report.

    Args:
        cfg: configuration; an empty MQTT URL starts a private broker, an empty InfluxDB URL
            uses SQLite at ``out_dir/spinewatch.sqlite``.
        duration_s: simulated time, seconds.
        speed: 1.0 = real time, 10 = ten times faster, None = as fast as possible.
        out_dir: where the report, the CSV of events and the local store go.
        embedded_broker: which private broker to start when no URL is configured:
            "auto" (mosquitto if installed, else amqtt), "mosquitto" or "amqtt".
        patient_config: the simulated patient's settings (thresholds, haptics); default
            :func:`demo_patient_config`. Published once on the config topic at the start of
            the day (stored in ``patient_config``) and applied by the bridge, which buzzes the
            simulated sensor (nothing physical) and publishes each alert's outcome.
        stop: Ctrl-C handling (see :class:`DemoStop`); None = none.

    Raises:
        DemoInterrupted: ``stop`` was requested; everything was shut down in order.
    """
    stage = on_stage or (lambda s: None)
    # one mkdir before anything else runs on the loop (this is the demo's main coroutine)
    out_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240
    stage("loading the Numba kernels (the first run after installing compiles them: ~20 s)")
    t_jit = time.perf_counter()
    warm_up_kernels(DEMO_RATE_HZ)
    _LOGGER.info("kernels ready in %.1f s", time.perf_counter() - t_jit)
    t_start = time.perf_counter()
    loop = asyncio.get_running_loop()
    async with contextlib.AsyncExitStack() as stack:
        mqtt_cfg, protocol, broker_desc, store = await open_demo_backend(
            stack, cfg, embedded_broker, out_dir, stage, stop)
        ingest_cfg = dataclasses.replace(cfg.ingest, worker_id=f"demo-ingest-{os.getpid()}")
        ingest = IngestWorker(mqtt_cfg, ingest_cfg, store, protocol)
        ingest.start()
        stack.callback(ingest.stop)
        if not await _wait_bounded(ingest.subscribed.wait, 30.0, stop) and not (stop and stop.requested):
            _LOGGER.warning("ingest not subscribed yet after 30 s; messages wait in the broker")
        # The device's one outbox (bridge.outbox_dir, or the --out folder when unset), locked like
        # a bridge's; a demo starts afresh, where a real bridge keeps its backlog.
        demo_bridge = dataclasses.replace(cfg.bridge, outbox_dir=cfg.bridge.outbox_dir or str(out_dir))
        outbox = open_outbox(demo_bridge, patient, device, fresh=True)
        stack.callback(outbox.close)
        publisher = Publisher(mqtt_cfg, patient, device, protocol, outbox)
        stack.enter_context(publisher)

        script = PostureScript.day(duration_s, seed=seed)
        source = SimulatedPatient(
            script, rate_hz=DEMO_RATE_HZ, seed=seed,
            batch_samples=10 if speed is not None else 1000, speed=speed,
        )
        if stop is not None:
            stop._attach(source)
        pcfg = patient_config or demo_patient_config(cfg, source.start_utc_ns)
        # the demo's stand-in for the therapist's `config set` (not retained: nothing is left on a
        # shared broker), through the same outbox, ahead of the stream
        publisher.publish_message("config", encode_patient_config(pcfg))
        configs_sent = 1
        p = cfg.posture
        tracker = PostureTracker(
            DEMO_RATE_HZ,
            PostureParams(pcfg.threshold_deg, pcfg.hysteresis_deg, pcfg.min_duration_s, p.calibration_s),
        )
        stage("streaming the simulated patient")
        totals = await run_bridge(
            source, tracker, publisher, source.start_utc_ns, on_status=on_status, on_event=on_event,
            patient_config=pcfg, on_alert=on_alert, on_haptic=on_haptic,
        )
        stopped = stop is not None and stop.requested
        stage(f"stopping: up to {STOP_DRAIN_TIMEOUT_S:g} s for the broker and the ingest worker (Ctrl-C again to "
              "quit at once)" if stopped else "waiting for the broker and the ingest worker to finish")
        sent = totals.posture_messages + totals.events + totals.alerts + configs_sent
        if not await _wait_bounded(publisher.wait_all_acked, DRAIN_TIMEOUT_S, stop) and not stopped:
            _LOGGER.warning("broker did not acknowledge %d messages in time", publisher.unacked)
        # written, or quiet: all received is acknowledged and nothing came for DRAIN_QUIET_S (what is
        # missing then is not coming: a broker that dropped it), checked in slices so Ctrl-C is heard
        def written_or_quiet(t: float) -> bool:
            return ingest.wait_written(sent, t, DRAIN_QUIET_S) or ingest.is_quiet(DRAIN_QUIET_S)

        await _wait_bounded(written_or_quiet, DRAIN_TIMEOUT_S, stop)
        if stop is not None and stop.requested:  # also a Ctrl-C while waiting: no report of a cut day
            stage("stopping: publisher, ingest worker, store, then the broker")
            raise DemoInterrupted(totals.samples, totals.samples / DEMO_RATE_HZ, sent,
                                  ingest.stats.written_messages, store.address)
        with ingest.stats.lock:
            missing = max(0, sent - ingest.stats.written_messages)
            broker_dropped = ingest.stats.broker_dropped
        if missing:
            _LOGGER.warning("ingest wrote fewer messages than published: %s", ingest.stats.snapshot())
        wall = time.perf_counter() - t_start
        stage("writing the report")
        start_ns = source.start_utc_ns
        end_ns = start_ns + int(duration_s * NS_PER_S) + NS_PER_S
        missing_min = await loop.run_in_executor(None, _missing_minutes, store, patient, start_ns, end_ns,
                                                 missing, totals.samples / max(1, totals.posture_messages))
        summary, png, csv_path = await loop.run_in_executor(
            None, build_report, store, patient, start_ns, end_ns, pcfg.threshold_deg, out_dir,
        )
        return DemoResult(
            samples=totals.samples, posture_messages=totals.posture_messages, events=totals.events,
            alerts=totals.alerts,
            points_written=ingest.stats.written_points, wall_s=wall, broker=broker_desc,
            store=store.address, summary=summary, report_png=png, events_csv=csv_path,
            patient=patient, start_utc_ns=start_ns, messages_sent=sent, messages_missing=missing,
            missing_min=missing_min, broker_dropped=broker_dropped,
        )


def _missing_minutes(store: Store, patient: str, start_ns: int, end_ns: int, missing: int,
                     samples_per_message: float) -> float:
    """Posture time the missing messages covered, minutes: from the gaps in ``seq`` when the
    publisher sent a ``seq_epoch`` (spinewatch/service/storage/transit.py), else ``missing`` times a
    mean posture message (the upper bound: every missing message taken for a posture one)."""
    found = store.transit_loss(start_ns, end_ns, patient=patient)
    if found:
        return sum(x.lost_s for x in found) / 60.0
    return missing * samples_per_message / DEMO_RATE_HZ / 60.0

