"""``spinewatch demo --patients N --days D``: a simulated caseload over weeks, as a therapist sees it.

Each simulated patient has their own sensor mounting, time zone, hour they put the sensor on,
and course over the days:

- ``improver``: a baseline week without haptic alerts, then haptic training: the therapist's
  settings switch the alerts on and the patient slouches less and less (from every scripted
  slouch down to 30 % of them by the last day).
- ``dropout``: stops wearing the sensor for a stretch of days in the middle (no data at all).
- ``remount``: one day the sensor comes off at mid-session and is stuck back on tilted
  (35 deg pitch) without a new calibration: the rest of that day reads as slouching, and the
  bridge's remount detector (:mod:`spinewatch.signal.remount`) flags it.
- ``steady``: the same habits every day.
- ``weekdays``: wears the sensor on weekdays only.

More than five patients repeat the courses with other seeds.

Scale, said plainly (also in the output and README): each simulated day is one session of
``wear_s`` (default 30 min) of 100 Hz samples starting at the patient's usual hour, where a real
patient wears the sensor about 8 h; the posture within it is :meth:`PostureScript.day` of that
length. Everything else is real: every sample goes through the Numba filter and slouch detector,
the haptic trigger, the publisher with its disk outbox, the broker, the ingest worker and the
store; patients stream concurrently (one asyncio task each) through one broker and one ingest
worker, their days one after the other, as fast as the machine allows (``--speed max``); each
patient's bridge runs in a worker process (one per core), the ingest worker in the demo's process.

The run ends with what a therapist opens: each patient's PDF report (``spinewatch report``'s
code path, in the patient's time zone) and its figures as JSON, the dashboards rendered to PNG
from the same queries as Grafana (:mod:`spinewatch.service.dashboards.render`; needs InfluxDB 1.x,
as Grafana does) and the commands to open them in Grafana.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import dataclasses
import datetime as dt
import json
import logging
import math
import multiprocessing
import os
import time
import zoneinfo
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np

from spinewatch.errors import ConfigError
from spinewatch.firmware_bridge.sim import (
    ImuSynthesizer,
    Mounting,
    PostureScript,
    SimulatedPatient,
)
from spinewatch.model import NS_PER_S, ImuBatch
from spinewatch.service.config import Config

_LOGGER = logging.getLogger(__name__)

DEFAULT_WEAR_S: Final = 1800.0  # wear of each simulated day (a real day is about 8 h): a month of 5 in minutes
MAX_PATIENTS: Final = 50
MAX_DAYS: Final = 366
REMOUNT_TILT_DEG: Final = 35.0  # pitch of the sensor stuck back on (the detector reports >= 30)
COURSES: Final = ("improver", "dropout", "remount", "steady", "weekdays")
_DESCRIPTIONS: Final = {
    "improver": "improves after haptic training",
    "dropout": "stops wearing the sensor for days",
    "remount": "sensor re-attached tilted one day",
    "steady": "same habits every day",
    "weekdays": "wears the sensor on weekdays only",
}
_ZONES: Final = ("Europe/Berlin", "America/New_York", "Europe/London", "Asia/Tokyo", "Australia/Sydney")
_MOUNTINGS: Final = ((4.0, -3.0, 0.0), (-6.0, 2.0, 5.0), (2.0, 4.0, -8.0), (8.0, -1.0, 3.0), (-3.0, -5.0, 0.0))
_WEAR_START_MIN: Final = (9 * 60, 8 * 60 + 30, 10 * 60, 9 * 60 + 15, 13 * 60)  # local, minutes after midnight


@dataclass(frozen=True, slots=True)
class SimPatient:
    """One simulated patient of the clinic demo.

    Attributes:
        patient: pseudonymous id.
        device: sensor id.
        course: one of :data:`COURSES`.
        tz: IANA time zone.
        mounting: how the sensor sits on their back (degrees).
        wear_start_min: local minutes after midnight they usually put the sensor on.
        seed: seed of their days.
    """

    patient: str
    device: str
    course: str
    tz: str
    mounting: Mounting
    wear_start_min: int
    seed: int

    @property
    def description(self) -> str:
        return _DESCRIPTIONS[self.course]


@dataclass(frozen=True, slots=True)
class DayPlan:
    """One simulated day of one patient.

    Attributes:
        day: index, 0 = the first day.
        date: the patient's local date.
        start_utc_ns: UTC ns the sensor goes on.
        worn: False: no session that day (no data).
        keep_slouch: share of the script's slouches the patient still does (0..1).
        haptics: haptic alerts on.
        remount_at_s: session time the sensor is stuck back on tilted, s; None: not that day.
    """

    day: int
    date: dt.date
    start_utc_ns: int
    worn: bool
    keep_slouch: float
    haptics: bool
    remount_at_s: float | None


def roster(n: int) -> list[SimPatient]:
    """The clinic demo's ``n`` patients (the courses in order, repeated with other seeds)."""
    out = []
    for k in range(n):
        i = k % len(COURSES)
        m = _MOUNTINGS[i]
        out.append(SimPatient(
            patient=f"p-clinic-{k + 1:02d}", device=f"sim-{k + 1:02d}", course=COURSES[i], tz=_ZONES[i],
            mounting=Mounting(pitch_deg=m[0], roll_deg=m[1], yaw_deg=m[2]),
            wear_start_min=_WEAR_START_MIN[i], seed=1000 + 7 * k,
        ))
    return out


def training_day(days: int) -> int:
    """The improver's first day with haptic alerts (after a baseline of about a quarter)."""
    return min(days - 1, max(1, days // 4))


def dropout_days(days: int) -> range:
    """The days the dropout patient does not wear the sensor (about 40-65 % into the range)."""
    first = round(days * 0.4)
    return range(first, max(first + 1, round(days * 0.65)))


def remount_day(days: int) -> int:
    return days // 2


def plan_days(p: SimPatient, days: int, last_date: dt.date, wear_s: float) -> list[DayPlan]:
    """Every day of ``p``'s course, ending on ``last_date`` (their local date; the demo takes
    yesterday when today's session would not be over yet: no data from the future)."""
    tz = zoneinfo.ZoneInfo(p.tz)
    rng = np.random.default_rng([p.seed, 0x636C])
    plans = []
    for d in range(days):
        date = last_date - dt.timedelta(days=days - 1 - d)
        jitter_min = int(rng.integers(-20, 21))  # habits: not at the same minute every day
        minute = p.wear_start_min + jitter_min
        local = dt.datetime.combine(date, dt.time(minute // 60, minute % 60), tzinfo=tz)
        worn, keep, haptics, remount = True, 0.9, True, None
        if p.course == "improver":
            t0 = training_day(days)
            haptics = d >= t0
            keep = 1.0 if d < t0 else 1.0 - 0.7 * (d - t0 + 1) / (days - t0)
        elif p.course == "dropout":
            worn = d not in dropout_days(days)
            keep = 0.8
        elif p.course == "remount":
            remount = 0.5 * wear_s if d == remount_day(days) else None
            keep = 0.6
        elif p.course == "weekdays":
            worn = date.weekday() < 5 or days < 7
            keep = 0.7
        plans.append(DayPlan(d, date, int(local.timestamp()) * NS_PER_S, worn, keep, haptics, remount))
    return plans


def thin_slouches(script: PostureScript, keep: float, seed: int) -> PostureScript:
    """``script`` with only about ``keep`` of its slouches; the others sat upright instead."""
    if keep >= 1.0:
        return script
    rng = np.random.default_rng([seed, 0x7468])
    segs = []
    for s in script.segments:
        if s.kind == "slouch" and rng.random() >= keep:
            s = dataclasses.replace(s, kind="sit", flexion_deg=round(float(rng.uniform(-2.0, 5.0)), 2),
                                    lateral_deg=round(float(rng.uniform(-2.0, 2.0)), 2))
        segs.append(s)
    return PostureScript(tuple(segs), script.taps)


class RemountedPatient(SimulatedPatient):
    """A :class:`SimulatedPatient` whose sensor is stuck back on at ``mounting_after`` at
    ``remount_at_s``: samples from then on come from the same sensor (same seed: same bias and
    noise) at the new mounting; the posture script carries on."""

    def __init__(self, *args: Any, remount_at_s: float, mounting_after: Mounting, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        syn = self.synthesizer
        self._after = ImuSynthesizer(syn.script, self.rate_hz, kwargs.get("seed", 0), mounting_after,
                                     kwargs.get("errors"))
        self.remount_index = int(remount_at_s * self.rate_hz)

    async def batches(self) -> AsyncIterator[ImuBatch]:
        async for b in super().batches():
            i0 = b.t0_ns // self.dt_ns
            if i0 + len(b) <= self.remount_index:
                yield b
                continue
            c = self._after.chunk(i0, len(b))
            k = max(0, self.remount_index - i0)  # samples before the remount keep the old mounting
            gyr = np.concatenate((b.gyr_rad_s[:k], c.gyr_rad_s[k:]))
            acc = np.concatenate((b.acc_m_s2[:k], c.acc_m_s2[k:]))
            yield ImuBatch(b.t0_ns, b.dt_ns, gyr, acc)


def remount_mounting(m: Mounting) -> Mounting:
    return dataclasses.replace(m, pitch_deg=m.pitch_deg + REMOUNT_TILT_DEG)


@dataclass
class PatientRun:
    """What one patient's sessions produced (filled while streaming)."""

    sim: SimPatient
    plans: list[DayPlan]
    samples: int = 0
    posture_messages: int = 0
    events: int = 0
    alerts: int = 0
    configs: int = 0
    remount_flagged: list[dt.date] = field(default_factory=list)

    @property
    def sent(self) -> int:
        return self.posture_messages + self.events + self.alerts + self.configs


@dataclass(frozen=True, slots=True)
class ClinicResult:
    runs: list[PatientRun]
    wall_s: float
    stream_s: float
    broker: str
    store: str
    points_written: int
    artefacts: dict[str, list[Path]]
    grafana: list[str]
    first_date: dt.date
    last_date: dt.date

    @property
    def samples(self) -> int:
        return sum(r.samples for r in self.runs)


def _wear_text(wear_s: float) -> str:
    return f"{wear_s / 60:g} min" if wear_s < 3600 else f"{wear_s / 3600:g} h"


def scale_note(patients: int, days: int, wear_s: float, rate_hz: float) -> str:
    """What is simulated at which scale, in one sentence (printed and in README)."""
    return (f"simulated: {patients} patient{'s' if patients > 1 else ''} x {days} day{'s' if days > 1 else ''}, "
            f"each worn day one session of {_wear_text(wear_s)} at {rate_hz:g} Hz (a real patient wears the sensor "
            "about 8 h a day), every sample through the real filter, haptics, publisher + disk outbox, broker, "
            "ingest and store, as fast as the machine allows")


# The patients' bridges pause while the ingest worker is this many samples behind them (20,000 one-second
# posture messages): the broker's queue for the ingest (broker.MAX_QUEUED_MESSAGES, 100,000 messages) must
# never overflow, or the broker would drop messages it has acknowledged (a slow InfluxDB, a loaded machine).
BACKLOG_SAMPLES: Final = 2_000_000
_SHARED: Any = None  # in a worker process: 2 counters per patient (samples, slouches), then samples written


def _init_worker(shared: Any) -> None:
    global _SHARED  # noqa: PLW0603 - one per worker process, set once at its start
    _SHARED = shared


def _patient_process(run: PatientRun, slot: int, cfg: Config, mqtt_cfg: Any, protocol: Any, out_dir: Path,
                     wear_s: float, speed: float | None) -> PatientRun:
    """One patient's days in a worker process (its own bridge and publisher, the shared broker)."""
    from spinewatch.service.ops.demo import DEMO_RATE_HZ, warm_up_kernels  # noqa: PLC0415

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    warm_up_kernels(DEMO_RATE_HZ)

    def progress(samples: int) -> None:
        if _SHARED is None:
            return
        _SHARED[2 * slot] = samples
        _SHARED[2 * slot + 1] = run.events
        # back-pressure: blocks this patient's bridge (its publisher has threads of its own)
        while sum(_SHARED[0:-1:2]) - _SHARED[-1] > BACKLOG_SAMPLES:
            time.sleep(0.05)  # sync-ok: waiting for the ingest worker in another process

    async def main() -> None:
        async with contextlib.AsyncExitStack() as stack:
            await _run_patient(run, cfg, mqtt_cfg, protocol, out_dir, wear_s, speed, stack, progress)

    asyncio.run(main())
    return run


async def _run_patient(run: PatientRun, cfg: Config, mqtt_cfg: Any, protocol: Any, out_dir: Path,
                       wear_s: float, speed: float | None, stack: contextlib.AsyncExitStack,
                       on_samples: Callable[[int], None]) -> None:
    from spinewatch.service.bridge.loop import run_bridge  # noqa: PLC0415
    from spinewatch.service.bridge.outbox import open_outbox  # noqa: PLC0415
    from spinewatch.service.bridge.publisher import Publisher  # noqa: PLC0415
    from spinewatch.service.ops.demo import DEMO_RATE_HZ, demo_patient_config  # noqa: PLC0415
    from spinewatch.service.transport.patient_config import encode_patient_config  # noqa: PLC0415
    from spinewatch.signal import PostureParams, PostureTracker  # noqa: PLC0415

    sim = run.sim
    demo_bridge = dataclasses.replace(cfg.bridge, outbox_dir=cfg.bridge.outbox_dir or str(out_dir))
    outbox = open_outbox(demo_bridge, sim.patient, sim.device, fresh=True)
    stack.callback(outbox.close)
    publisher = Publisher(mqtt_cfg, sim.patient, sim.device, protocol, outbox)
    stack.enter_context(publisher)
    sent_cfg = None
    for plan in run.plans:
        if not plan.worn:
            continue
        base = demo_patient_config(cfg, plan.start_utc_ns)
        pcfg = dataclasses.replace(base, timezone=sim.tz, haptic=dataclasses.replace(base.haptic,
                                                                                   enabled=plan.haptics))
        if sent_cfg is None or (sent_cfg.haptic.enabled, sent_cfg.timezone) != (plan.haptics, sim.tz):
            publisher.publish_message("config", encode_patient_config(pcfg))  # the therapist's `config set`
            run.configs += 1
            sent_cfg = pcfg
        day_seed = sim.seed * 1000 + plan.day
        script = thin_slouches(PostureScript.day(wear_s, seed=day_seed), plan.keep_slouch, day_seed)
        kwargs: dict[str, Any] = dict(rate_hz=DEMO_RATE_HZ, seed=day_seed, batch_samples=1000 if speed is None else 10,
                                      speed=speed, start_utc_ns=plan.start_utc_ns, mounting=sim.mounting)
        source: SimulatedPatient
        if plan.remount_at_s is not None:
            source = RemountedPatient(script, remount_at_s=plan.remount_at_s,
                                      mounting_after=remount_mounting(sim.mounting), **kwargs)
        else:
            source = SimulatedPatient(script, **kwargs)
        p = cfg.posture
        tracker = PostureTracker(DEMO_RATE_HZ, PostureParams(pcfg.threshold_deg, pcfg.hysteresis_deg,
                                                             pcfg.min_duration_s, p.calibration_s))

        def progress(st: Any, done: int = run.samples) -> None:
            on_samples(done + st.samples)

        totals = await run_bridge(source, tracker, publisher, source.start_utc_ns, patient_config=pcfg,
                                  on_status=progress)
        on_samples(run.samples)
        run.samples += totals.samples
        run.posture_messages += totals.posture_messages
        run.events += totals.events
        run.alerts += totals.alerts
        if tracker.remount.suspected:
            run.remount_flagged.append(plan.date)
    loop = asyncio.get_running_loop()
    from spinewatch.service.ops.demo import DRAIN_TIMEOUT_S  # noqa: PLC0415

    if not await loop.run_in_executor(None, publisher.wait_all_acked, DRAIN_TIMEOUT_S):
        _LOGGER.warning("%s: the broker did not acknowledge %d messages in time", sim.patient, publisher.unacked)


def _grafana_commands(first: dt.date, last: dt.date, patients: int, days: int, wear_s: float,
                      patient: str) -> list[str]:
    """How to see this demo's days in Grafana: the compose stack of deploy/, the same demo into its
    InfluxDB (the admin user of deploy/.env: the demo creates the retention policies), the links."""
    utc = zoneinfo.ZoneInfo("UTC")
    frm = int(dt.datetime.combine(first, dt.time(), utc).timestamp()) * 1000
    to = int(dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), utc).timestamp()) * 1000
    rng = f"from={frm}&to={to}"
    return [
        "cd deploy && docker compose up -d --build && . ./.env && cd ..   # steps 1-5 of deploy/README.md",
        'SPINEWATCH_INFLUX_URL=http://127.0.0.1:8086 SPINEWATCH_INFLUX_DB=spinewatch '
        'SPINEWATCH_INFLUX_USERNAME="$INFLUX_ADMIN_USER" SPINEWATCH_INFLUX_PASSWORD="$INFLUX_ADMIN_PASSWORD" '
        f"spinewatch demo --patients {patients} --days {days} --duration {int(wear_s)}s",
        f"http://127.0.0.1:3000/d/spinewatch-clinic?{rng}",
        f"http://127.0.0.1:3000/d/spinewatch-patient-trends?var-patient={patient}&{rng}",
        f"http://127.0.0.1:3000/d/spinewatch-rtm-compliance?var-patient={patient}&{rng}",
    ]


# Dashboards drawn over the whole range; the others (live, day: 100 Hz detail) over the patient's last session.
RANGE_DASHBOARDS: Final = ("clinic-overview.json", "patient-trends.json", "rtm-compliance.json")


def _render_dashboards(store: Any, runs: list[PatientRun], out_dir: Path, first: dt.date,
                       stage: Callable[[str], None]) -> list[Path]:
    """Each dashboard to PNG from Grafana's own queries (:mod:`spinewatch.service.dashboards.render`):
    the clinic overview once, the trend and compliance pages of each patient over the whole range
    (up to now, as Grafana opens them), the live and day pages over their last session."""
    from spinewatch.service.dashboards import DASHBOARDS  # noqa: PLC0415
    from spinewatch.service.dashboards.render import render_dashboard  # noqa: PLC0415

    folder = out_dir / "dashboards"
    start_ns = int(dt.datetime.combine(first - dt.timedelta(days=1), dt.time(), dt.UTC).timestamp()) * NS_PER_S
    end_ns = time.time_ns()
    stage("dashboard: clinic overview (PNG, the same queries as Grafana)")
    paths = [render_dashboard(DASHBOARDS["clinic-overview.json"](), store, start_ns, end_ns,
                              {"patient": ".*", "device": ".*"}, folder / "clinic-overview.png")]
    for run in runs:
        stage(f"dashboards of {run.sim.patient} (PNG, the same queries as Grafana)")
        worn = [p for p in run.plans if p.worn]
        last_start = worn[-1].start_utc_ns if worn else start_ns
        day = (last_start - 10 * 60 * NS_PER_S, last_start + 24 * 3600 * NS_PER_S)
        for name, build in DASHBOARDS.items():
            if name == "clinic-overview.json":
                continue
            lo, hi = (start_ns, end_ns) if name in RANGE_DASHBOARDS else (day[0], min(day[1], end_ns))
            values = {"patient": run.sim.patient, "device": ".*"}
            paths.append(render_dashboard(build(), store, lo, hi, values,
                                          folder / run.sim.patient / name.replace(".json", ".png")))
    return paths


def _render_artefacts(store: Any, cfg: Config, runs: list[PatientRun], out_dir: Path, first: dt.date,
                      last: dt.date, stage: Callable[[str], None]) -> dict[str, list[Path]]:
    from spinewatch.service.config import DEFAULT_SEVERE_DEG  # noqa: PLC0415
    from spinewatch.service.reports.patient_report import ReportError, build, to_json  # noqa: PLC0415
    from spinewatch.service.reports.patient_report_pdf import write_pdf  # noqa: PLC0415

    out: dict[str, list[Path]] = {}
    for run in runs:
        sim = run.sim
        p_first, p_last = run.plans[0].date, run.plans[-1].date  # the patient's own local days
        stage(f"report of {sim.patient} ({sim.tz}): {p_first} to {p_last}")
        try:
            report = build(store, sim.patient, p_first, p_last, min_wear_min=cfg.report.min_wear_min,
                           default_threshold_deg=cfg.posture.threshold_deg, default_severe_deg=DEFAULT_SEVERE_DEG)
        except ReportError as exc:
            _LOGGER.warning("%s: no report: %s", sim.patient, exc)
            continue
        folder = out_dir / "patients"
        folder.mkdir(parents=True, exist_ok=True)
        figures = folder / f"{sim.patient}.json"
        figures.write_text(json.dumps(to_json(report), indent=2) + "\n")
        out[sim.patient] = [*write_pdf(report, folder / f"{sim.patient}.pdf"), figures]
    if cfg.influx.kind == "v1":
        out["dashboards"] = _render_dashboards(store, runs, out_dir, first, stage)
    return out


async def run_clinic_demo(cfg: Config, patients: int, days: int, wear_s: float, speed: float | None, out_dir: Path,
                          *, on_stage: Callable[[str], None] | None = None,
                          on_progress: Callable[[float, float, str], None] | None = None,
                          embedded_broker: Any = "auto") -> ClinicResult:
    """Stream ``patients`` simulated patients over ``days`` days through the real pipeline, then
    write each patient's report (and the dashboards' PNGs on InfluxDB 1.x).

    Args:
        wear_s: wear of each simulated day, s (60..86400).
        speed: None as fast as possible, else the simulator's speed factor.
        on_progress: called with (fraction done 0..1, ETA s or NaN, a short text) while streaming.
    """
    from spinewatch.service.ingest.worker import IngestWorker  # noqa: PLC0415
    from spinewatch.service.ops.demo import DEMO_RATE_HZ, open_demo_backend, warm_up_kernels  # noqa: PLC0415

    stage = on_stage or (lambda s: None)
    t_start = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240
    stage("loading the Numba kernels (the first run after installing compiles them: ~20 s)")
    warm_up_kernels(DEMO_RATE_HZ)
    last_utc = dt.datetime.now(dt.UTC).date()
    runs = []
    now_ns = time.time_ns()
    for sim in roster(patients):
        local_today = dt.datetime.now(zoneinfo.ZoneInfo(sim.tz)).date()
        plans = plan_days(sim, days, local_today, wear_s)
        if plans[-1].start_utc_ns + int(wear_s * NS_PER_S) > now_ns:  # today's session is not over yet
            plans = plan_days(sim, days, local_today - dt.timedelta(days=1), wear_s)
        runs.append(PatientRun(sim, plans))
    first = min(r.plans[0].date for r in runs)
    last = max(max(r.plans[-1].date for r in runs), last_utc)
    total = sum(p.worn for r in runs for p in r.plans) * int(wear_s * DEMO_RATE_HZ)
    loop = asyncio.get_running_loop()
    async with contextlib.AsyncExitStack() as stack:
        mqtt_cfg, protocol, broker_desc, store = await open_demo_backend(stack, cfg, embedded_broker, out_dir, stage)
        schema = None
        if cfg.influx.kind == "v1":
            schema = await loop.run_in_executor(None, _influx_schema, store, cfg, stage)
        ingest = IngestWorker(mqtt_cfg, dataclasses.replace(cfg.ingest, worker_id=f"demo-ingest-{os.getpid()}"),
                              store, protocol)
        ingest.start()
        stack.callback(ingest.stop)
        if not await loop.run_in_executor(None, ingest.subscribed.wait, 30.0):
            _LOGGER.warning("ingest not subscribed yet after 30 s; messages wait in the broker")
        stage(scale_note(patients, days, wear_s, DEMO_RATE_HZ))
        t_stream = time.perf_counter()
        # the patients' bridges in worker processes (one per core: the filter, simulator and publisher
        # are CPU-bound Python/Numba holding the GIL); this process keeps the ingest worker
        ctx = multiprocessing.get_context("spawn")  # never fork a process running threads
        shared = ctx.Array("q", 2 * len(runs) + 1, lock=False)
        workers = max(1, min(len(runs), os.cpu_count() or 1))
        pool = stack.enter_context(concurrent.futures.ProcessPoolExecutor(
            workers, mp_context=ctx, initializer=_init_worker, initargs=(shared,)))
        futures = [asyncio.wrap_future(pool.submit(_patient_process, r, k, cfg, mqtt_cfg, protocol, out_dir,
                                                   wear_s, speed)) for k, r in enumerate(runs)]
        all_done = asyncio.gather(*futures)
        while not all_done.done():
            await asyncio.wait([all_done], timeout=0.1)
            shared[-1] = ingest.stats.written_points  # the patients' bridges wait when it lags (BACKLOG_SAMPLES)
            if on_progress is not None:
                done = sum(shared[2 * k] for k in range(len(runs)))
                frac = done / total if total else 1.0
                wall = time.perf_counter() - t_stream
                eta = wall * (1 - frac) / frac if frac > 0.005 else float("nan")
                finished = sum(f.done() for f in futures)
                on_progress(frac, eta, f"{finished}/{patients} patients done, {done / max(wall, 1e-9) / 1e3:,.0f} "
                                       f"k samples/s, {sum(shared[2 * k + 1] for k in range(len(runs)))} slouches")
        runs = list(await all_done)
        stage("waiting for the broker and the ingest worker to finish")
        from spinewatch.service.ops.demo import DRAIN_TIMEOUT_S  # noqa: PLC0415

        sent = sum(r.sent for r in runs)
        if not await loop.run_in_executor(None, ingest.wait_written, sent, DRAIN_TIMEOUT_S):
            _LOGGER.warning("ingest wrote fewer messages than published: %s", ingest.stats.snapshot())
        stream_s = time.perf_counter() - t_stream
        if schema is not None:
            await loop.run_in_executor(None, _backfill_trend, store, schema, runs, wear_s, stage)
        artefacts = await loop.run_in_executor(None, _render_artefacts, store, cfg, runs, out_dir, first, last, stage)
        return ClinicResult(
            runs=runs, wall_s=time.perf_counter() - t_start, stream_s=stream_s, broker=broker_desc,
            store=store.address, points_written=ingest.stats.written_points, artefacts=artefacts,
            grafana=_grafana_commands(first, last, patients, days, wear_s, runs[0].sim.patient),
            first_date=first, last_date=last,
        )


def _influx_schema(store: Any, cfg: Config, stage: Callable[[str], None]) -> Any:
    """On InfluxDB 1.x, before any point: the retention policies and continuous queries of
    ``spinewatch influx init`` (points written before them would sit in ``autogen``, which the
    dashboards do not read), raw points kept 90 days; a database that has them already (``influx
    init`` ran) is left as it is. Returns the schema, for :func:`_backfill_trend`."""
    from spinewatch.service.storage import StoreRejected  # noqa: PLC0415
    from spinewatch.service.storage.influx1_schema import Influx1Schema  # noqa: PLC0415

    schema = Influx1Schema(cfg.influx.db, "90d")
    existing = store.retention_policies()
    if "raw" in existing and "trend" in existing:
        return schema
    stage("InfluxDB layout of `spinewatch influx init` (retention policies, continuous queries)")
    for q in schema.statements(existing):
        try:
            store.execute(q)
        except StoreRejected as exc:
            if not (q.startswith("DROP CONTINUOUS QUERY") and "not found" in str(exc)):
                raise
    return schema


BACKFILL_WINDOW_S: Final = 2 * 86_400  # one downsampling query per 2 days: each well inside the HTTP timeout


def _backfill_trend(store: Any, schema: Any, runs: list[PatientRun], wear_s: float,
                    stage: Callable[[str], None]) -> None:
    """Downsample the simulated weeks into the trend retention policy, as ``influx init --backfill``
    does (continuous queries only handle the minutes just past; the demo's days are in the past),
    over the demo's time range in windows of :data:`BACKFILL_WINDOW_S` (one query over a month of
    100 Hz points outlasts the HTTP timeout). Every demo point carries ``wear_s``: the exact
    statements only; the settings are written to their policy by the ingest worker itself."""
    from spinewatch.service.storage.influx1_schema import (  # noqa: PLC0415
        POSTURE_1M_SELECT,
        POSTURE_1M_STILL_SELECT,
        SLOUCH_COPY_SELECT,
    )

    starts = [p.start_utc_ns for r in runs for p in r.plans if p.worn]
    if not starts:
        return
    step = BACKFILL_WINDOW_S * NS_PER_S
    lo = min(starts) // step * step
    hi = max(starts) + int(wear_s * NS_PER_S) + NS_PER_S
    windows = range(lo, hi, step)
    for k, t in enumerate(windows):
        stage(f"downsampling into the trend retention policy (influx init --backfill): {k + 1}/{len(windows)}")
        where = f"time >= {t} AND time < {t + step} "
        for q in (POSTURE_1M_SELECT.format(db=schema.db, where="WHERE " + where),
                  POSTURE_1M_STILL_SELECT.format(db=schema.db, where="AND " + where),
                  SLOUCH_COPY_SELECT.format(db=schema.db, where="WHERE " + where)):
            store.execute(q)


def add_clinic_options(d: argparse.ArgumentParser) -> None:
    """``--patients`` and ``--days`` of ``spinewatch demo``."""
    d.add_argument("--patients", type=_count("--patients", MAX_PATIENTS), default=1, metavar="N",
                   help="simulated patients, each with their own mounting, time zone, habits and course "
                        f"(default 1; at most {MAX_PATIENTS}); README, 'A month of a clinic's caseload'")
    d.add_argument("--days", type=_count("--days", MAX_DAYS), default=1, metavar="D",
                   help="simulated days ending today, one session of --duration (default 30m with --patients/--days) "
                        "each worn day (default 1); with N or D > 1 the demo ends with each patient's PDF report")


def _count(option: str, most: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            v = 0
        if not 1 <= v <= most:
            raise argparse.ArgumentTypeError(f"{option} {text!r}: a whole number from 1 to {most}")
        return v
    return parse


class _Progress:
    """One line of progress with an ETA, fitting the terminal."""

    def __init__(self) -> None:
        from spinewatch.service.ops.live_view import DemoConsole  # noqa: PLC0415

        self.console = DemoConsole(1.0, live=False)
        self._last = 0.0

    def __call__(self, frac: float, eta_s: float, text: str) -> None:
        from spinewatch.service.ops.live_view import Field, progress_line  # noqa: PLC0415

        now = time.perf_counter()
        c = self.console
        if now - self._last < (0.2 if c.tty else 5.0):
            return
        self._last = now
        fields = [Field((f"{p.strip()}", ""), 2 + k) for k, p in enumerate(text.split(","))]
        c._draw(progress_line(frac, c._width(), fields, None if math.isnan(eta_s) else eta_s))


def cmd_clinic_demo(args: argparse.Namespace, cfg: Config) -> int:
    """``spinewatch demo --patients N --days D`` (see the module docstring)."""
    from spinewatch.service.ops.demo import DEMO_RATE_HZ  # noqa: PLC0415
    from spinewatch.service.ops.live_view import fmt_hms  # noqa: PLC0415

    wear_s = DEFAULT_WEAR_S if args.duration is None else float(args.duration)
    if not 60.0 <= wear_s <= 86_400.0:
        raise ConfigError("--duration", str(args.duration), "the wear of each simulated day, from 1m to 24h")
    progress = _Progress()

    def stage(text: str) -> None:
        progress.console.stage(text)

    result = asyncio.run(run_clinic_demo(cfg, args.patients, args.days, wear_s, args.speed, Path(args.out),
                                         on_stage=stage, on_progress=progress))
    progress.console.end_line()
    print(f"\n{scale_note(args.patients, args.days, wear_s, DEMO_RATE_HZ)}.")
    print(f"streamed {result.samples:,} samples in {result.stream_s:.1f} s "
          f"({result.samples / max(result.stream_s, 1e-9):,.0f} samples/s); {result.wall_s:.1f} s in all with the "
          f"reports; {result.points_written:,} points written to {result.store} via {result.broker}")
    print(f"{'patient':<13} {'course':<36} {'tz':<17} {'days worn':>9} {'slouches':>8} {'alerts':>6}  remount flagged")
    for r in result.runs:
        worn = sum(p.worn for p in r.plans)
        flagged = ", ".join(str(d) for d in r.remount_flagged) or "-"
        print(f"{r.sim.patient:<13} {r.sim.description:<36} {r.sim.tz:<17} {worn:>4}/{len(r.plans):<4} "
              f"{r.events:>8} {r.alerts:>6}  {flagged}")
    print(f"\nwhat a therapist opens ({result.first_date} to {result.last_date}, "
          f"simulated wear {fmt_hms(wear_s)} a day):")
    for who, paths in result.artefacts.items():
        if who != "dashboards":
            print(f"  {who}: " + ", ".join(str(p) for p in paths if p.suffix in (".pdf", ".json")))
    dash = result.artefacts.get("dashboards", [])
    if dash:
        print(f"  dashboards (PNG, the same queries as Grafana): {len(dash)} files in {Path(args.out) / 'dashboards'}")
    else:
        print("  dashboards: rendered from InfluxDB 1.x only (Grafana's queries are InfluxQL): run the demo with "
              "SPINEWATCH_INFLUX_URL / SPINEWATCH_INFLUX_DB set (see below)")
    print("in Grafana:")
    for c in result.grafana:
        print(f"  {c}")
    return 0

