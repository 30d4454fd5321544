"""The bridge loop: IMU source -> posture tracker -> publisher, with live status for a UI.

Optionally (keyword arguments of :func:`run_bridge`) the loop also

- applies the patient's config live (:class:`~spinewatch.service.bridge.live_config.ConfigSubscriber` reads the retained
  ``config`` topic with its own paho client; thresholds and a stored calibration go into
  the running tracker, haptic settings into the trigger) without restarting the stream;
- buzzes the sensor when a confirmed slouch has lasted the patient's haptic delay
  (:class:`~spinewatch.signal.haptic_trigger.HapticTrigger`; the write is started
  as soon as the batch that completes the delay has been processed), follows each buzz
  until the slouch ends or the patient's ``haptic.response_window_s`` runs out
  (:class:`~spinewatch.signal.alert_outcome.AlertOutcomes`) and then publishes
  it as an ``alert`` event (corrected or not, response time) through the outbox once the
  write has succeeded (a failed buzz is counted, not reported); alerts still open when the
  stream ends are published as not corrected;
- publishes the source's device status (connected, RSSI, battery, loss counters) to
  the retained ``status`` topic every ``status_interval_s``;
- keeps the orientation filter's state (the learnt gyroscope bias) for the next start
  (:class:`~spinewatch.service.bridge.filter_state.FilterStateKeeper`): resumed before the first
  sample, saved every ``status_interval_s`` and when the stream ends.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import functools
import logging
import math
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt

from spinewatch.errors import ConfigError
from spinewatch.firmware_bridge.source import ImuSource
from spinewatch.model import NS_PER_S, HapticAlert, PostureBatch, SlouchEvent
from spinewatch.service.bridge.live_config import ConfigUpdates, apply_posture_config
from spinewatch.service.bridge.publisher import Publisher
from spinewatch.service.transport.patient_config import (
    PatientConfig,
    QuietHours,
    decode_patient_config,
)
from spinewatch.signal import Activity, PostureTracker, TrackerOutput
from spinewatch.signal.alert_outcome import AlertOutcome, AlertOutcomes
from spinewatch.signal.haptic_trigger import HapticSettings, HapticTrigger
from spinewatch.signal.neutral import NeutralMinutes

if TYPE_CHECKING:
    from spinewatch.service.bridge.filter_state import FilterStateKeeper

_LOGGER = logging.getLogger(__name__)

@dataclass(frozen=True, slots=True)
class HapticEvent:
    """A buzz the bridge decided on.

    Attributes:
        t_sensor_ns: sensor time of the sample that completed the delay, ns.
        decided_mono_ns: ``time.monotonic_ns()`` when the write was started.
        pattern: the pattern written.
    """

    t_sensor_ns: int
    decided_mono_ns: int
    pattern: str


@dataclass(frozen=True, slots=True)
class LiveStatus:
    """What a live view shows after each published message.

    Attributes:
        t_ns: UTC ns of the latest sample.
        elapsed_s: sensor time since the stream started, seconds.
        flexion_deg, lateral_deg: latest angles, degrees.
        slouching: inside a confirmed slouch.
        activity: latest :class:`Activity`.
        slouch_count: episodes closed so far.
        upright_neutral_pct: share of the samples published so far that were upright and not
            slouching, %.
        samples: samples processed so far.
        time_neutral_pct: time neutral of the samples published so far, % (NaN before any),
            the summary's and reports' definition (:mod:`spinewatch.signal.neutral`) at the
            current threshold.
        threshold_deg: the slouch threshold in force, degrees.
    """

    t_ns: int
    elapsed_s: float
    flexion_deg: float
    lateral_deg: float
    slouching: bool
    activity: Activity
    slouch_count: int
    upright_neutral_pct: float
    samples: int
    time_neutral_pct: float = float("nan")
    threshold_deg: float = float("nan")


@dataclass
class BridgeTotals:
    samples: int = 0
    posture_messages: int = 0
    events: int = 0
    neutral_samples: int = 0
    haptics: int = 0  # buzzes started
    alerts: int = 0  # alert events published (buzzes with a known outcome)
    haptic_failures: int = 0  # buzzes whose write failed (no alert event: the patient felt nothing)
    configs_applied: int = 0
    configs_rejected: int = 0


_COLUMNS = ("flexion_deg", "lateral_deg", "state", "activity")
_UPRIGHT_STILL: Final = int(Activity.UPRIGHT_STILL)


class _SampleClock:
    """Sensor time of the n-th sample fed to the tracker, across gaps.

    The tracker numbers samples 0, 1, 2, ... whatever was lost in between; its slouch episodes
    are such indices. A run is recorded wherever the sensor time is not the previous run's
    continuation (a gap, or a change of sample period), so only gaps cost memory.
    """

    def __init__(self) -> None:
        self._starts: list[int] = []  # first sample index of each run
        self._runs: list[tuple[int, int]] = []  # (t0_sensor_ns, dt_ns) of each run
        self._next_index = 0
        self._next_t_ns: int | None = None
        self._dt_ns = 0

    def add(self, t0_ns: int, dt_ns: int, n: int) -> None:
        """A batch of ``n`` samples from sensor time ``t0_ns`` every ``dt_ns``."""
        if t0_ns != self._next_t_ns or dt_ns != self._dt_ns:
            self._starts.append(self._next_index)
            self._runs.append((t0_ns, dt_ns))
        self._next_index += n
        self._next_t_ns, self._dt_ns = t0_ns + n * dt_ns, dt_ns

    def time_ns(self, index: int) -> int:
        """Sensor time of sample ``index`` (extrapolated past the last sample)."""
        k = max(0, bisect.bisect_right(self._starts, index) - 1)
        t0, dt = self._runs[k]
        return t0 + (index - self._starts[k]) * dt


@dataclass
class _Pending:
    """Tracker output not yet published: evenly spaced samples from ``t0_sensor_ns``.

    Chunks are kept as the tracker returned them and joined once per message (not once
    per batch): a message spans ~20 batches.
    """

    t0_sensor_ns: int = 0
    dt_ns: int = 0
    chunks: list[TrackerOutput] = field(default_factory=list)
    n: int = 0  # samples held
    first_t0: int | None = None  # sensor time of the stream's first sample
    outgoing: list[PostureBatch] = field(default_factory=list)  # cut, not yet handed over
    clock: _SampleClock = field(default_factory=_SampleClock)  # tracker sample index -> sensor time

    def add(self, out: TrackerOutput) -> None:
        self.chunks.append(out)
        self.n += len(out.state)

    def take(self, k: int) -> tuple[int, list[npt.NDArray[Any]]]:
        """Remove and return the first ``k`` samples: (t0_sensor_ns, [flex, lat, state, act])."""
        t0 = self.t0_sensor_ns
        chunks = self.chunks
        cols = [np.concatenate([getattr(c, name) for c in chunks]) if len(chunks) > 1 else getattr(chunks[0], name)
                for name in _COLUMNS]
        head = [c[:k] for c in cols]
        if k < self.n:
            rest = [c[k:] for c in cols]
            self.chunks = [TrackerOutput(rest[0], rest[1], rest[2], rest[3], _NO_EPISODES)]
        else:
            self.chunks = []
        self.n -= k
        self.t0_sensor_ns += k * self.dt_ns
        return t0, head


_NO_EPISODES: Final = np.empty((0, 4))


async def run_bridge(
    source: ImuSource,
    tracker: PostureTracker,
    publisher: Publisher,
    start_utc_ns: int,
    publish_interval_s: float = 1.0,
    on_status: Callable[[LiveStatus], None] | None = None,
    on_event: Callable[[SlouchEvent], None] | None = None,
    *,
    patient_config: PatientConfig | None = None,
    config_updates: ConfigUpdates | None = None,
    on_config: Callable[[PatientConfig], None] | None = None,
    haptics: bool = True,
    on_haptic: Callable[[HapticEvent], None] | None = None,
    on_alert: Callable[[HapticAlert], None] | None = None,
    status_interval_s: float | None = None,
    state_keeper: FilterStateKeeper | None = None,
) -> BridgeTotals:
    """Stream ``source`` through ``tracker`` and publish until the source ends.

    Sensor time maps to UTC as ``start_utc_ns + t_sensor_ns`` (the clock anchor). Angles
    are published in messages of ``publish_interval_s`` of sensor time, whatever the size
    of the source's batches (a gap in the stream ends a message early); slouch events as
    soon as they end.

    Args:
        patient_config: initial patient settings (applied to ``tracker`` at start).
        config_updates: source of ``config`` payloads applied live (e.g. a
            :class:`ConfigSubscriber`); invalid ones are logged and ignored.
        on_config: called with each applied config.
        haptics: buzz the sensor on confirmed slouches when the source can
            (``source.buzz``) and the patient config enables it.
        on_haptic: called for each buzz started.
        on_alert: called for each alert event published (once its outcome is known).
        status_interval_s: publish the device status this often, and once more at the end:
            ``source.status()`` if the source has one, and the publisher's outbox counters
            (``outbox_dropped``, ``outbox_queued``, see :meth:`Publisher.publish_status`).
        state_keeper: resumes ``tracker``'s orientation filter from the state it kept (before
            the first sample, once the source is connected) and keeps it every
            ``status_interval_s`` and at the end (only once a sample was processed, so a
            bridge that never got data leaves the kept state as it was).

    Returns:
        Totals of what was processed and published.
    """
    totals = BridgeTotals()
    current: dict[str, Any] = {}  # "cfg": the patient config; "haptic": what maybe_buzz needs of it
    trigger = HapticTrigger()
    outcomes = AlertOutcomes()
    buzz_tasks: dict[int, asyncio.Task[bool]] = {}  # sensor time of the buzz -> its write
    # a coroutine function (create_task below needs a coroutine, not any awaitable)
    buzz: Callable[[str, int, int], Coroutine[Any, Any, bool]] | None = (
        getattr(source, "buzz", None) if haptics else None)
    # a source without a status of its own (a replay) still reports the outbox's counters
    status_fn: Callable[[], dict[str, Any]] | None = getattr(source, "status", None) or (
        dict if status_interval_s else None)
    background: set[asyncio.Task[Any]] = set()

    def set_config(cfg: PatientConfig) -> None:
        current["cfg"] = cfg
        # built once per config, not per batch
        current["haptic"] = (cfg.haptic_settings(), QuietHours(cfg), cfg.haptic.response_window_s)
        apply_posture_config(tracker, cfg)
        totals.configs_applied += 1
        if on_config is not None:
            on_config(cfg)

    if patient_config is not None:
        set_config(patient_config)

    async def follow_config() -> None:
        assert config_updates is not None
        while True:
            payload = await config_updates.get()
            try:
                cfg = decode_patient_config(payload)
            except ConfigError as exc:
                totals.configs_rejected += 1
                _LOGGER.warning("ignoring invalid patient config: %s", exc)
                continue
            set_config(cfg)
            _LOGGER.info("patient config applied: %s", cfg)

    def maybe_buzz(b: Any, out: TrackerOutput) -> None:
        haptic: tuple[HapticSettings, QuietHours, float] | None = current.get("haptic")
        if buzz is not None and haptic is not None:
            settings, quiet_at, window_s = haptic
            quiet = quiet_at(start_utc_ns + b.t0_ns)
            for k in trigger.update(out.state, out.activity, b.t0_ns, b.dt_ns, settings, quiet):
                t_k = b.t0_ns + k * b.dt_ns
                start_buzz(t_k, settings)
                outcomes.add(t_k, float(out.flexion_deg[k]), window_s)
        if outcomes.pending:
            for o in outcomes.update(out.state, b.t0_ns, b.dt_ns):
                report_alert(o)

    def report_alert(o: AlertOutcome) -> None:
        """Publish a decided alert once its write has succeeded (a failed buzz is no alert)."""
        task = buzz_tasks.pop(o.t_sensor_ns, None)
        if task is None or task.done():
            publish_if_delivered(o, task)
        else:  # decided before the write finished (a stream replayed faster than real time)
            task.add_done_callback(functools.partial(publish_if_delivered, o))

    def publish_if_delivered(o: AlertOutcome, task: asyncio.Task[bool] | None) -> None:
        if task is not None and (task.cancelled() or task.exception() is not None or task.result() is False):
            totals.haptic_failures += 1
            return
        publish_alert(o)

    def publish_alert(o: AlertOutcome) -> None:
        alert = HapticAlert(publisher.patient, publisher.device, start_utc_ns + o.t_sensor_ns, o.flexion_deg,
                            o.corrected, o.response_s)
        publisher.publish_alert(alert)
        totals.alerts += 1
        if on_alert is not None:
            on_alert(alert)

    def start_buzz(t_sensor_ns: int, settings: Any) -> None:
        assert buzz is not None
        ev = HapticEvent(t_sensor_ns, time.monotonic_ns(), settings.pattern)
        task = asyncio.create_task(buzz(settings.pattern, settings.intensity_pct, settings.duration_ms),
                                   name="bridge.haptic")
        background.add(task)
        task.add_done_callback(background.discard)
        buzz_tasks[t_sensor_ns] = task
        totals.haptics += 1
        if on_haptic is not None:
            on_haptic(ev)
    pend = _Pending()
    published = [0]  # samples in posture messages so far
    neutral_minutes = NeutralMinutes()  # the live view's time neutral (only with on_status)

    def publish(k: int) -> None:
        t0, (flex, lat, state, act) = pend.take(k)
        totals.neutral_samples += int(np.count_nonzero((state == 0) & (act >= _UPRIGHT_STILL)))
        published[0] += k
        batch = PostureBatch(publisher.patient, publisher.device, start_utc_ns + t0, pend.dt_ns,
                             flex, lat, state, act)
        pend.outgoing.append(batch)
        totals.posture_messages += 1
        if on_status is not None:
            neutral_minutes.add(start_utc_ns + t0, pend.dt_ns, flex)
            thr = tracker.params.threshold_deg
            end_ns = t0 + k * pend.dt_ns
            on_status(LiveStatus(
                t_ns=start_utc_ns + end_ns - pend.dt_ns,
                elapsed_s=(end_ns - (pend.first_t0 or 0)) / NS_PER_S,
                flexion_deg=float(flex[-1]), lateral_deg=float(lat[-1]),
                slouching=bool(state[-1]), activity=Activity(int(act[-1])),
                slouch_count=totals.events,
                upright_neutral_pct=100.0 * totals.neutral_samples / max(1, published[0]),
                samples=totals.samples, time_neutral_pct=neutral_minutes.time_neutral_pct(thr),
                threshold_deg=thr,
            ))

    def hand_over() -> None:
        """One outbox transaction for every message cut since the last call."""
        if pend.outgoing:
            publisher.publish_postures(pend.outgoing)
            pend.outgoing = []

    def emit(ep: npt.NDArray[np.float64]) -> None:
        # episode indices count the samples fed to the tracker; lost samples are not counted
        ev = SlouchEvent(publisher.patient, publisher.device,
                         start_utc_ns + pend.clock.time_ns(int(ep[0])), start_utc_ns + pend.clock.time_ns(int(ep[1])),
                         float(ep[2]), float(ep[3]))
        publisher.publish_event(ev)
        totals.events += 1
        if on_event is not None:
            on_event(ev)

    def remount_status() -> dict[str, Any]:
        """``remount_suspected`` and the last walking tilt from neutral (degrees), for the status."""
        r = tracker.remount
        out: dict[str, Any] = {"remount_suspected": r.suspected}
        if math.isfinite(r.walking_tilt_deg):
            out["walking_tilt_deg"] = round(r.walking_tilt_deg, 1)
        if r.suspected and not warned_remount:
            warned_remount.append(True)
            _LOGGER.warning("%s/%s: the sensor looks re-attached at another tilt (walking %.0f deg from "
                            "neutral): run spinewatch calibrate", publisher.patient, publisher.device,
                            r.walking_tilt_deg)
        return out

    warned_remount: list[bool] = []

    async def report_status() -> None:
        # its own task, so a disconnected sensor (no batches) is still reported
        assert status_fn is not None and status_interval_s
        while True:
            await asyncio.sleep(status_interval_s)  # sync-ok: the status period
            publisher.publish_status(online=True, **status_fn(), **remount_status())

    streaming: list[bool] = []  # set once the first batch is about to be processed

    def first_batch() -> None:
        streaming.append(True)
        if state_keeper is not None:
            state_keeper.restore(tracker.orientation)

    async def keep_state() -> None:
        assert state_keeper is not None and status_interval_s
        while True:
            await asyncio.sleep(status_interval_s)  # sync-ok: the save period
            if streaming:
                state_keeper.save(tracker.orientation)

    helpers = []
    if state_keeper is not None and status_interval_s:
        helpers.append(asyncio.create_task(keep_state(), name="bridge.keep_state"))
    if config_updates is not None:
        helpers.append(asyncio.create_task(follow_config(), name="bridge.config"))
    if status_fn is not None and status_interval_s:
        helpers.append(asyncio.create_task(report_status(), name="bridge.status"))
    try:
        await _stream(source, tracker, totals, pend, publish, hand_over, emit, maybe_buzz,
                      publish_interval_s, first_batch)
    finally:
        for task in helpers:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if state_keeper is not None and streaming:
            state_keeper.save(tracker.orientation, final=True)
        if background:
            await asyncio.gather(*background, return_exceptions=True)
    for ep in tracker.flush():
        emit(ep)
    for o in outcomes.flush():  # the stream ended before these were decided
        report_alert(o)
    if pend.n:
        publish(pend.n)
    hand_over()
    if status_fn is not None and status_interval_s:  # after the last messages entered the outbox
        publisher.publish_status(online=True, **status_fn(), **remount_status())
    _LOGGER.info("bridge done: %d samples, %d posture messages, %d slouch events, %d alerts",
                 totals.samples, totals.posture_messages, totals.events, totals.alerts)
    return totals


async def _stream(source, tracker, totals, pend, publish, hand_over, emit, maybe_buzz, publish_interval_s,
                  first_batch):
    """The source loop of :func:`run_bridge` (split out so the config and status tasks wrap it)."""
    first = True
    per_msg = 0
    async with source:
        async for b in source.batches():
            if first:
                first = False
                first_batch()
                pend.first_t0 = b.t0_ns
                per_msg = max(1, round(publish_interval_s * NS_PER_S / b.dt_ns))
            if pend.n and (b.gap_before or b.dt_ns != pend.dt_ns):
                publish(pend.n)  # a posture message covers evenly spaced samples only
            if b.gap_before:
                tracker.reset_motion()
            pend.clock.add(b.t0_ns, b.dt_ns, len(b))
            out = tracker.update(b.gyr_rad_s, b.acc_m_s2)
            totals.samples += len(b)
            if not pend.n:
                pend.t0_sensor_ns, pend.dt_ns = b.t0_ns, b.dt_ns
            pend.add(out)
            maybe_buzz(b, out)
            if len(out.episodes):
                for ep in out.episodes:
                    emit(ep)
            while pend.n >= per_msg:
                publish(per_msg)
            hand_over()
