"""``spinewatch bridge ...``: scan for sensors, run the BLE bridge, record a sensor to a file.

Hooked into the main parser with :func:`add_bridge_commands` (one line in ``cli/main.py``).
Like every module of ``cli/`` this one prints; everything else logs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import signal as _signal
import sys
import time
from pathlib import Path
from typing import Any

from spinewatch.errors import ConfigError
from spinewatch.service.cli.args import make_source, parse_duration_s, source_args

__all__ = ["add_bridge_commands"]


def _stop_on_signals(source: Any) -> None:
    loop = asyncio.get_running_loop()
    for sig in (_signal.SIGINT, _signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, getattr(source, "stop", lambda: None))


def _pseudonym(device: str) -> str:
    """A stable, pseudonymous MQTT device id for a BLE address or name."""
    return "d-" + hashlib.sha256(device.encode()).hexdigest()[:10]


# --------------------------------------------------------------------------- scan


async def _scan(args: argparse.Namespace) -> int:
    from spinewatch.firmware_bridge.ble import scan
    from spinewatch.firmware_bridge.profiles import get_profile, profile_names

    profiles = [get_profile(n) for n in profile_names()]
    found = await scan(args.timeout)
    print(f"{'address':<20} {'rssi':>5}  {'profile':<11} name")
    shown = 0
    for dev, adv in found:
        uuids = {u.lower() for u in adv.service_uuids}
        name = adv.local_name or dev.name or ""
        prof = next((p.name for p in profiles
                     if p.service_uuid in uuids or any(name.startswith(x) for x in p.name_prefixes)), "")
        if args.all or prof:
            print(f"{dev.address:<20} {adv.rssi:>5}  {prof or '-':<11} {name}")
            shown += 1
    if not shown:
        print("no sensors found (is Bluetooth on, the sensor charged and not connected elsewhere?)",
              file=sys.stderr)
    return 0 if shown else 1


# --------------------------------------------------------------------------- run


def recording_digest(path: str) -> str:
    """What makes two replays "the same recording": the first 32 hex digits of the file's SHA-256."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:32]


def clock_anchor_ns(outbox: Any, replay: str | None, first_t_ns: int, now_ns: int) -> int:
    """UTC ns that sensor time 0 maps to (``start_utc_ns`` of :func:`run_bridge`).

    Live: now, but never so early that the first sample (sensor time ``first_t_ns``) would be
    stamped before the end of the last one this (patient, device)'s outbox ever queued: a
    restarted bridge never stamps new samples over the ones sent before it.
    Replay: the anchor the first run of the same recording (same bytes) chose, kept in the
    outbox, so a restarted replay re-sends every sample under the same timestamp (the same
    points in the database, not new ones).
    """
    from spinewatch.service.bridge.publisher import LAST_END_KEY

    key = ""
    if replay:
        key = "replay_anchor:" + recording_digest(replay)
        kept = outbox.get_meta(key)
        if kept is not None:
            return int(kept)
    anchor = max(now_ns, (outbox.get_meta(LAST_END_KEY) or 0) - first_t_ns)
    if key:
        outbox.set_meta(key, anchor)
    return anchor


async def _run(args: argparse.Namespace) -> int:
    from spinewatch.service.bridge.memory import keep_scipy_out

    keep_scipy_out()  # before anything imports Numba
    from spinewatch.service.bridge.outbox import open_outbox
    from spinewatch.service.config import Config
    from spinewatch.service.transport import wire

    first_t_ns = 0  # a BLE stream's first sample is sensor time 0 (firmware_bridge.timing)
    if args.replay:  # the file first: a usage error, whatever the configuration
        from spinewatch.firmware_bridge.replay import read_recording

        try:
            rec = read_recording(args.replay)
        except ValueError as exc:
            raise ConfigError("--replay", args.replay, f"a .csv/.npz recording (docs/recordings.md); {exc}") from None
        first_t_ns = int(rec.t_ns[0])
        del rec
    cfg = Config.load(path=args.config)
    if not cfg.mqtt.url:
        raise ConfigError("SPINEWATCH_MQTT_URL", "", "the broker to publish to, e.g. mqtt://127.0.0.1:1883")
    device_id = args.device_id or _pseudonym(args.address or args.replay or args.profile)
    try:
        wire.check_id("patient", args.patient)
        wire.check_id("device", device_id)
    except ValueError as exc:
        raise ConfigError("--patient/--device-id", f"{args.patient}/{device_id}", str(exc)) from None
    source = make_source(args, cfg.ble)
    outbox = open_outbox(cfg.bridge, args.patient, device_id)  # refuses a second bridge of this device
    try:
        return await _run_with_outbox(args, cfg, source, outbox, device_id, first_t_ns)
    finally:
        outbox.close()


async def _run_with_outbox(args: argparse.Namespace, cfg: Any, source: Any, outbox: Any, device_id: str,
                           first_t_ns: int) -> int:
    from spinewatch.service.bridge.filter_state import REPLAY_SENSOR, FilterStateKeeper
    from spinewatch.service.bridge.live_config import ConfigSubscriber
    from spinewatch.service.bridge.loop import run_bridge
    from spinewatch.service.bridge.memory import prepare_bridge_process
    from spinewatch.service.bridge.publisher import Publisher
    from spinewatch.service.transport.mqtt import resolve_protocol
    from spinewatch.signal import PostureParams, PostureTracker

    loop = asyncio.get_running_loop()
    protocol = await loop.run_in_executor(None, resolve_protocol, cfg.mqtt)
    p = cfg.posture
    rate_hz = source.rate_hz  # BLE: --rate-hz or the profile's default; the sensor's config is checked on connect
    tracker = PostureTracker(rate_hz, PostureParams(p.threshold_deg, p.hysteresis_deg, p.min_duration_s,
                                                    p.calibration_s))
    prepare_bridge_process(rate_hz)  # load the kernels, then release LLVM's code pages (bridge/memory.py)
    backlog = len(outbox)
    print(f"bridge: {args.replay or args.address or args.profile} -> {cfg.mqtt.address} "
          f"as {args.patient}/{device_id}, outbox {outbox.path}"
          + (f" ({backlog:,} messages from before, sent first)" if backlog else "") + " (Ctrl-C to stop)",
          file=sys.stderr)

    def on_event(ev: Any) -> None:
        print(f"slouch: {ev.duration_s:.0f} s, peak {ev.peak_deg:.1f} deg", file=sys.stderr)

    def on_haptic(ev: Any) -> None:
        print(f"haptic: {ev.pattern}", file=sys.stderr)

    start_utc_ns = clock_anchor_ns(outbox, args.replay, first_t_ns, time.time_ns())
    # the filter's learnt bias, kept in the outbox file for the next start of this sensor
    keeper = FilterStateKeeper(outbox, lambda: REPLAY_SENSOR if args.replay else
                               (getattr(source, "address", None) or args.address or args.profile),
                               stream="replay:" + recording_digest(args.replay) if args.replay else "")
    with Publisher(cfg.mqtt, args.patient, device_id, protocol, outbox) as pub:
        async with ConfigSubscriber(cfg.mqtt, args.patient, device_id, protocol) as sub:
            _stop_on_signals(source)
            totals = await run_bridge(source, tracker, pub, start_utc_ns, publish_interval_s=args.publish_interval,
                                      on_event=on_event, config_updates=sub, on_haptic=on_haptic,
                                      status_interval_s=(cfg.ble.status_interval_s if args.status_interval is None
                                                         else args.status_interval), state_keeper=keeper)
        # a short grace for the acknowledgements in flight (none while the broker is away);
        # whatever is left stays in the outbox for the next start
        if pub.connected:
            await loop.run_in_executor(None, pub.wait_all_acked, 10.0)
        left, dropped = pub.unacked, pub.dropped
    status = source.status() if hasattr(source, "status") else {}
    print(f"bridge stopped: {totals.samples:,} samples, {totals.posture_messages:,} posture messages, "
          f"{totals.events} slouches, {totals.haptics} haptic alerts; "
          f"lost {status.get('samples_lost', 0)} samples ({status.get('packets_lost_pct', 0.0)} % packets)",
          file=sys.stderr)
    if left:
        print(f"bridge: {left:,} messages not yet acknowledged by the broker are kept in {outbox.path} "
              "and sent first by the next 'bridge run' of this device", file=sys.stderr)
    if dropped:
        print(f"bridge: the outbox was full: {dropped:,} posture messages dropped since it was created "
              "(raise bridge.outbox_max_mb)", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------- record


async def _record(args: argparse.Namespace) -> int:
    from spinewatch.firmware_bridge.replay import record

    path = Path(args.file)
    if path.suffix not in (".csv", ".npz"):
        raise ConfigError("FILE", args.file, "a path ending in .csv or .npz")
    if not path.parent.is_dir():
        raise ConfigError("FILE", args.file, f"a path in an existing folder ({path.parent} is not one)")
    source = make_source(args)
    t0 = time.monotonic()

    def started() -> None:
        _stop_on_signals(source)  # from now on Ctrl-C ends the recording and keeps it
        print(f"recording {args.address or 'the first ' + args.profile + ' sensor'} to {path} "
              f"({f'for {args.duration:g} s or ' if args.duration else ''}until Ctrl-C)",
              file=sys.stderr, flush=True)

    n = await record(source, path, duration_s=args.duration, on_start=started)
    status = source.status() if hasattr(source, "status") else {}
    if not n:
        # RecordingWriter wrote nothing under FILE: an empty file would look like a recording
        print(f"spinewatch: no sample was recorded in {time.monotonic() - t0:.0f} s (no sensor connected: is it "
              f"on, in range and not connected elsewhere? `spinewatch bridge scan` lists sensors); {path} was not "
              "written", file=sys.stderr)
        return 1
    print(f"recorded {n:,} samples to {path} in {time.monotonic() - t0:.0f} s; "
          f"lost {status.get('samples_lost', 0)}, dropped {status.get('samples_dropped', {})}", file=sys.stderr)
    return 0


def add_bridge_commands(subparsers: Any) -> None:
    """Register ``bridge scan``, ``bridge run`` and ``bridge record`` on the main parser's subparsers."""
    b = subparsers.add_parser(
        "bridge", help="BLE sensor bridge: scan, run (sensor -> MQTT), record to a file",
        description="Talk to a back-worn IMU over Bluetooth LE (bleak). Sensor profiles and their "
                    "packet layouts: docs/gatt-profile.md.",
        epilog="example: spinewatch bridge scan --timeout 10   (then `spinewatch bridge run --help`)",
    )
    sub = b.add_subparsers(dest="bridge_command", required=True, metavar="SUBCOMMAND")

    s = sub.add_parser(
        "scan", help="list advertising sensors",
        description="Scan for BLE devices and list those matching a known sensor profile.",
        epilog="example: spinewatch bridge scan --timeout 10",
    )
    s.add_argument("--timeout", type=float, default=5.0, metavar="S", help="scan duration (default 5 s)")
    s.add_argument("--all", action="store_true", help="also list devices of no known profile")
    s.set_defaults(func=lambda a: asyncio.run(_scan(a)))

    r = sub.add_parser(
        "run", help="stream a sensor through the posture filter to MQTT",
        description="Connect to a sensor (reconnecting forever), compute trunk flexion and slouch "
                    "episodes, publish posture, events and device status to MQTT "
                    "(SPINEWATCH_MQTT_URL), apply the patient's retained config live and buzz the "
                    "sensor on confirmed slouches. Every message waits in the device's disk outbox "
                    "(bridge.outbox_dir/<patient>+<device>.outbox.sqlite, at most bridge.outbox_max_mb; "
                    "when full the oldest posture messages are dropped and counted in the status as "
                    "outbox_dropped) until the broker acknowledged it, across broker outages, restarts "
                    "and kill -9; a stop (Ctrl-C, SIGTERM) keeps the unacknowledged ones for the next "
                    "start. One bridge per device: a second one for the same patient and device id is "
                    "refused. A restarted bridge never stamps new samples before the last ones it sent, and "
                    "resumes the orientation filter's learnt gyroscope bias of the same sensor (kept in "
                    "the outbox file every status interval and at a stop; docs/orientation.md).",
        epilog="example: SPINEWATCH_MQTT_URL=mqtt://127.0.0.1:1883 spinewatch bridge run "
               "--device SpineWatch-3F2A --profile spinewatch --patient p-0042",
    )
    source_args(r, replay=True)
    r.add_argument("--patient", required=True, metavar="ID", help="pseudonymous patient id (topic level)")
    r.add_argument("--device-id", default="", metavar="ID",
                   help="pseudonymous device id for topics (default: derived from --device)")
    r.add_argument("--publish-interval", type=float, default=1.0, metavar="S",
                   help="seconds of samples per posture message (default 1)")
    r.add_argument("--status-interval", type=float, default=None, metavar="S",
                   help="publish device status (link, battery, loss counters, outbox_dropped and "
                        "outbox_queued) every S seconds (default: config ble.status_interval_s, 10)")
    r.set_defaults(func=lambda a: asyncio.run(_run(a)))

    c = sub.add_parser(
        "record", help="record a sensor's body-frame samples to CSV or .npz",
        description="Record decoded, remapped and timed samples (what the filter sees) to FILE; "
                    "columns and units: docs/recordings.md. Samples go to FILE.part, renamed to FILE "
                    "when the recording ends (--duration or Ctrl-C keeps what was recorded); with no "
                    "sample (no sensor connected) nothing is written and the exit status is 1. "
                    "Replay with 'spinewatch bridge run --replay FILE'.",
        epilog="example: spinewatch bridge record session.npz --device AA:BB:CC:DD:EE:FF --duration 10m",
    )
    c.add_argument("file", metavar="FILE", help="output file, .csv or .npz")
    source_args(c, replay=False)
    c.add_argument("--duration", type=parse_duration_s, default=None, metavar="DUR",
                   help="stop after this much sensor time (e.g. 90s, 10m, 2h); default: until Ctrl-C")
    c.set_defaults(func=lambda a: asyncio.run(_record(a)))
