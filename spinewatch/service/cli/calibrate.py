"""``spinewatch calibrate``: guided neutral-posture capture, stored in the patient's config.

Hooked into the main parser with :func:`add_calibrate_command` (one line in ``cli/main.py``).
Like every module of ``cli/`` this one prints; the session itself is
:mod:`spinewatch.service.bridge.calibration_session`.

What it publishes, only after a capture passed its quality check:

- the retained ``config`` of the patient's device, read-modify-write (every other setting
  kept) with ``neutral_up_sensor``, ``mount_yaw_deg`` and ``calibrated_ns``: a running
  bridge applies it at once, a bridge started later finds it retained;
- a ``calibration`` event (QoS 1), which the ingest worker stores as measurement
  ``calibration`` (who calibrated when, and how still the patient was).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import getpass
import json
import sys
import time
import uuid
from typing import Any, Final

from spinewatch.errors import ConfigError, SpineWatchError
from spinewatch.service.cli.args import make_source, parse_speed, source_args
from spinewatch.service.transport import wire

__all__ = ["add_calibrate_command"]

CONNECT_TIMEOUT_S: Final = 30.0  # a BLE sensor in range connects in 1-10 s


class SensorBusy(SpineWatchError):
    """The sensor is held by a running bridge (a BLE peripheral serves one central)."""

    def __init__(self, patient: str, device: str, why: str) -> None:
        super().__init__(f"{why}: stop the bridge for {patient}/{device} first (a Bluetooth sensor talks to one "
                         "computer at a time), then run calibrate again; the bridge applies the new calibration "
                         "when it is started again")


def _mqtt(args: argparse.Namespace) -> tuple[Any, str]:
    from spinewatch.service.config import Config
    from spinewatch.service.transport.mqtt import resolve_protocol

    cfg = Config.load(path=args.config)
    if not cfg.mqtt.url:
        raise ConfigError("SPINEWATCH_MQTT_URL", "", "the broker the bridges use, e.g. mqtt://127.0.0.1:1883")
    return cfg.mqtt, resolve_protocol(cfg.mqtt)


def _client(mqtt_cfg: Any, protocol: str) -> tuple[Any, Any]:
    from spinewatch.service.transport.mqtt import make_client

    client, props = make_client(mqtt_cfg, f"calibrate-{uuid.uuid4().hex[:8]}", protocol)  # type: ignore[arg-type]
    if props is not None:
        props.SessionExpiryInterval = 0  # a one-shot CLI leaves no session behind
    return client, props


def bridge_status(mqtt_cfg: Any, protocol: str, patient: str, device: str, timeout_s: float) -> dict[str, Any]:
    """The retained ``status`` of a patient's device ({} if none): is a bridge running?

    Also proves the broker is reachable before the patient sits through a capture.

    Raises:
        ConnectionFailed: no SUBACK within ``timeout_s``.
    """
    from spinewatch.service.transport.mqtt import read_retained

    payload = read_retained(mqtt_cfg, protocol, wire.topic(patient, device, "status"), "calibrate",  # type: ignore[arg-type]
                            timeout_s)
    try:
        st = json.loads(payload) if payload else {}
    except ValueError:
        return {}
    return st if isinstance(st, dict) else {}


def publish_calibration(mqtt_cfg: Any, protocol: str, cal: Any, timeout_s: float, bridge: Any = None) -> Any:
    """Store ``cal`` in the patient's retained config (keeping every other setting) and
    publish it as a ``calibration`` event; both QoS 1, through the device's therapist-side
    outbox (:func:`~spinewatch.service.bridge.publisher.send_from_therapist`), acknowledged before
    returning.

    Args:
        bridge: the ``[bridge]`` settings (where outboxes live); default: the loaded config's.

    Returns:
        The new :class:`~spinewatch.service.transport.patient_config.PatientConfig`.
    """
    from spinewatch.service.bridge.publisher import send_from_therapist
    from spinewatch.service.cli.config import read_config
    from spinewatch.service.config import Config
    from spinewatch.service.transport.patient_config import (
        PatientConfig,
        decode_patient_config,
        encode_patient_config,
    )

    current = read_config(mqtt_cfg, protocol, cal.patient, cal.device, timeout_s) or PatientConfig()
    yaw = None if cal.mount_yaw_deg is None else round(cal.mount_yaw_deg, wire.ANGLE_DECIMALS)
    new = dataclasses.replace(current, neutral_up_sensor=cal.up_sensor, mount_yaw_deg=yaw,
                              calibrated_ns=cal.t_ns, author=cal.author, set_ns=time.time_ns())
    payload = encode_patient_config(new)
    decode_patient_config(payload)  # what the bridge will parse: refuse here, not there
    send_from_therapist(mqtt_cfg, bridge or Config.load().bridge, protocol, cal.patient, cal.device,  # type: ignore[arg-type]
                        [("config", payload, True), ("event", wire.encode_calibration(cal), False)], timeout_s)
    return new


class _Screen:
    """Prints the session's prompts to stderr (a bar in place on a terminal)."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self._in_line = False
        self._last_pct = -1

    def _end_line(self) -> None:
        if self._in_line:
            print(file=sys.stderr, flush=True)
            self._in_line = False

    def __call__(self, p: Any) -> None:
        if p.kind == "countdown":
            print(f"  {int(p.value)}...", end="", file=sys.stderr, flush=True)
            self._in_line = True
            return
        if p.kind == "progress":
            pct = int(100 * p.value)
            if self.tty and pct != self._last_pct:
                bar = "#" * (pct // 5) + "-" * (20 - pct // 5)
                print(f"\r  [{bar}] {pct:3d} %", end="", file=sys.stderr, flush=True)
                self._in_line = True
            self._last_pct = pct
            return
        self._end_line()
        self._last_pct = -1
        if p.kind == "instruction":
            print(f"> {p.text}", file=sys.stderr, flush=True)
        elif p.kind == "rejected":
            print(f"  not accepted: {p.text}", file=sys.stderr, flush=True)
        else:
            print(f"  {p.text}", file=sys.stderr, flush=True)


def _make_calibration_source(args: argparse.Namespace, plan: Any) -> Any:
    if args.simulate:
        from spinewatch.firmware_bridge.sim import Mounting, SimulatedPatient
        from spinewatch.firmware_bridge.sim.calibration import calibration_script

        script = calibration_script(args.simulate, plan.countdown_s, plan.capture_s, plan.bend_s, plan.attempts)
        mount = Mounting(pitch_deg=args.sim_pitch_deg, roll_deg=args.sim_roll_deg, yaw_deg=args.sim_yaw_deg)
        return SimulatedPatient(script, seed=args.sim_seed, batch_samples=5, speed=args.speed, mounting=mount)

    return make_source(args)


async def _session(args: argparse.Namespace, source: Any, plan: Any) -> Any:
    from spinewatch.service.bridge.calibration_session import run_calibration

    async with source:  # Ctrl-C cancels the session: nothing is published, the link is closed
        wait = getattr(source, "wait_connected", None)
        if wait is not None:
            print(f"connecting to the sensor ({args.address or 'the first ' + args.profile + ' sensor'}) ...",
                  file=sys.stderr, flush=True)
            if not await wait(args.connect_timeout):
                raise SensorBusy(args.patient, args.device, f"no sensor connected within {args.connect_timeout:g} s "
                                 "(switched on, in range? is a bridge running for it?)")
        return await run_calibration(source, args.patient, args.device, plan, _Screen(), author=args.author)


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from spinewatch.service.bridge.calibration_session import CalibrationPlan

    for key, value in (("--patient", args.patient), ("--device", args.device)):
        try:
            wire.check_id(key[2:], value)
        except ValueError as exc:
            raise ConfigError(key, value, str(exc).split(", got")[0]) from None
    if len(args.author) > 64:
        raise ConfigError("--author", args.author, "a pseudonymous id of at most 64 characters")
    try:
        plan = CalibrationPlan(countdown_s=args.countdown, capture_s=args.capture, bend=not args.no_bend,
                               bend_s=args.bend_time, attempts=args.attempts)
    except ValueError as exc:
        opt = {"countdown_s": "--countdown", "capture_s": "--capture", "bend_s": "--bend-time",
               "attempts": "--attempts"}.get(str(exc).split(" ")[0], "--capture")
        raise ConfigError(opt, getattr(args, opt[2:].replace("-", "_")), str(exc)) from None
    source = _make_calibration_source(args, plan)  # bad --profile / --mount fail here
    mqtt_cfg, protocol = _mqtt(args)
    status = bridge_status(mqtt_cfg, protocol, args.patient, args.device, args.timeout)
    if status.get("online") is True and not args.simulate:
        raise SensorBusy(args.patient, args.device, f"a bridge is running for {args.patient}/{args.device}")
    result = asyncio.run(_session(args, source, plan))
    cal = result.calibration
    from spinewatch.service.config import Config

    publish_calibration(mqtt_cfg, protocol, cal, args.timeout, Config.load(path=args.config).bridge)
    up = ", ".join(f"{x:.4f}" for x in cal.up_sensor)
    yaw = "not measured (--no-bend)" if cal.mount_yaw_deg is None else f"{cal.mount_yaw_deg:+.1f} deg"
    print(f"calibrated {args.patient}/{args.device}: neutral up [{up}] (sensor frame), turn about the spine {yaw}; "
          "stored in the patient's config (applied by the bridge) and published as an event")
    return 0


def add_calibrate_command(subparsers: Any) -> None:
    """Add ``calibrate`` to the ``spinewatch`` command line."""
    from spinewatch.firmware_bridge.sim.calibration import BEHAVIOURS

    c = subparsers.add_parser(
        "calibrate", help="guided neutral-posture capture, stored for the bridge",
        description=(
            "Record the patient's upright (neutral) posture: a countdown while they sit upright "
            "and still, a capture checked for motion and for lying (refused captures are "
            "repeated, up to --attempts), then a slow forward bend that finds how the sensor is "
            "turned about the spine. The result goes into the patient's retained config "
            "(spinewatch/v1/{patient}/{device}/config, other settings kept), which a running "
            "bridge applies at once and a starting bridge uses instead of its automatic "
            "first-10-seconds capture, and is published as a calibration event (stored by ingest). "
            "Talks to the sensor directly, so stop the patient's bridge first. Reads "
            "SPINEWATCH_MQTT_URL. Details: docs/calibration.md."
        ),
        epilog="example: SPINEWATCH_MQTT_URL=mqtt://127.0.0.1:1883 spinewatch calibrate --patient p-0042 "
               "--device d-7 --sensor SpineWatch-3F2A (without a sensor: ... --simulate still --sim-yaw-deg 20)",
    )
    c.add_argument("--patient", required=True, metavar="ID", help="pseudonymous patient id")
    c.add_argument("--device", required=True, metavar="ID",
                   help="pseudonymous device id (as for 'config set' and 'bridge run --device-id')")
    source_args(c, replay=False, address_flag="--sensor")
    c.add_argument("--connect-timeout", type=float, default=CONNECT_TIMEOUT_S, metavar="S",
                   help=f"give up if the sensor has not connected after S seconds (default {CONNECT_TIMEOUT_S:g})")
    c.add_argument("--countdown", type=float, default=3.0, metavar="S",
                   help="countdown before each capture, seconds (default 3)")
    c.add_argument("--capture", type=float, default=8.0, metavar="S",
                   help="neutral capture, seconds of sensor samples (default 8)")
    c.add_argument("--bend-time", type=float, default=8.0, metavar="S",
                   help="time for the forward bend and back, seconds (default 8)")
    c.add_argument("--no-bend", action="store_true",
                   help="skip the forward bend (the sensor's turn about the spine is then taken as 0)")
    c.add_argument("--attempts", type=int, default=3, metavar="N",
                   help="tries for the capture, and for the bend, before giving up (default 3)")
    c.add_argument("--author", default=getpass.getuser(), metavar="ID",
                   help="pseudonymous id of who calibrates, kept with the result (default: the login name)")
    c.add_argument("--timeout", type=float, default=5.0, metavar="S", help="broker timeout (default 5)")
    sim = c.add_argument_group("simulated patient (demos and tests; no sensor needed)")
    sim.add_argument("--simulate", choices=list(BEHAVIOURS), default=None, metavar="BEHAVIOUR",
                     help="instead of a sensor, a simulated patient who " + "; ".join(
                         f"{k}: {v}" for k, v in BEHAVIOURS.items()))
    sim.add_argument("--sim-pitch-deg", type=float, default=4.0, metavar="DEG",
                     help="simulated sensor tilt about the body's left axis, degrees (default 4)")
    sim.add_argument("--sim-roll-deg", type=float, default=-3.0, metavar="DEG",
                     help="simulated sensor tilt about the body's forward axis, degrees (default -3)")
    sim.add_argument("--sim-yaw-deg", type=float, default=0.0, metavar="DEG",
                     help="simulated sensor turn about the spine, degrees (default 0)")
    sim.add_argument("--sim-seed", type=int, default=0, metavar="N", help="seed of the sensor noise (default 0)")
    sim.add_argument("--speed", type=parse_speed, default=1.0, metavar="X",
                     help="simulated time: 1 = real time (default), N times faster, or max")
    c.set_defaults(func=_cmd_calibrate)
