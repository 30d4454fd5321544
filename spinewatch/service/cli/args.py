"""Argument helpers shared by the command groups: durations, speeds, the sensor (or replay) options."""

from __future__ import annotations

import argparse
import dataclasses
import re
from typing import Any

from spinewatch.errors import ConfigError

_DURATION_RE = re.compile(r"^(?:(\d+(?:\.\d+)?)d)?(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?$")


def parse_duration_s(text: str) -> float:
    """``8h``, ``90m``, ``1h30m``, ``45s`` or plain seconds -> seconds (> 0)."""
    m = _DURATION_RE.match(text.strip())
    if not text.strip() or not m or not any(m.groups()):
        raise argparse.ArgumentTypeError(f"--duration {text!r}: use e.g. 8h, 90m, 1h30m, 45s")
    d, h, mi, s = (float(g) if g else 0.0 for g in m.groups())
    total = d * 86400 + h * 3600 + mi * 60 + s
    if total <= 0:
        raise argparse.ArgumentTypeError(f"--duration {text!r}: must be > 0")
    return total


def parse_speed(text: str) -> float | None:
    """``max`` -> None (as fast as possible), else a factor > 0 (1 = real time)."""
    if text.strip().lower() == "max":
        return None
    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not v > 0:
        raise argparse.ArgumentTypeError(f"--speed {text!r}: use 'max' or a number > 0 (1 = real time)")
    return v


def source_args(p: argparse.ArgumentParser, *, replay: bool, address_flag: str = "--device") -> None:
    """Sensor options (read by :func:`make_source`); the sensor's address goes to
    ``args.address`` whatever ``address_flag`` is (``calibrate`` calls it ``--sensor``)."""
    p.add_argument(address_flag, dest="address", default="", metavar="ADDR|NAME|UUID",
                   help="sensor address (AA:BB:CC:DD:EE:FF), advertised name prefix or service UUID; "
                        "default: the first sensor advertising the profile")
    p.add_argument("--profile", default="spinewatch", metavar="NAME",
                   help="sensor profile: spinewatch, witmotion, thingy52 (default spinewatch)")
    p.add_argument("--mount", default=None, metavar="ALIGN",
                   help="sensor axes -> body axes, one of the 24 right-handed alignments such as "
                        "+X+Y+Z or -Z-X+Y (default: the profile's, see docs/gatt-profile.md)")
    p.add_argument("--rate-hz", type=float, default=None, metavar="HZ",
                   help="sample rate the filter runs at (default: the profile's, 100); a SpineWatch "
                        "sensor whose config says otherwise is reported at connect")
    p.add_argument("--adapter", default=None, metavar="HCI",
                   help="Bluetooth adapter to use, e.g. hci1, on a machine with several "
                        "(default: BlueZ's default adapter)")
    p.add_argument("--silence-timeout", type=float, default=None, metavar="S",
                   help="recycle the link after S seconds without notifications (default: config "
                        "ble.silence_timeout_s, 3; 0 = never)")
    if replay:
        p.add_argument("--replay", metavar="FILE", default=None,
                       help="use a recording (.csv/.npz, see spinewatch.firmware_bridge.replay) instead of BLE; "
                            "a replay restarted with the same file re-sends it from the start under the same "
                            "timestamps (its clock anchor is kept in the device's outbox), so every sample is "
                            "stored once")
        p.add_argument("--speed", type=float, default=1.0, metavar="X",
                       help="replay speed, 1 = real time (default 1); 0 = as fast as possible")


def make_source(args: argparse.Namespace, ble: Any = None) -> Any:
    """The sensor (or replay) source the options name; ``ble`` is the loaded config's ``[ble]``
    section (loaded from ``--config`` here when the caller has none)."""
    from spinewatch.firmware_bridge.ble import BleSource
    from spinewatch.firmware_bridge.profiles import get_profile
    from spinewatch.firmware_bridge.remap import MountAlignment
    from spinewatch.firmware_bridge.replay import ReplaySource
    from spinewatch.service.config import Config

    if getattr(args, "replay", None):
        return ReplaySource(args.replay, speed=args.speed or None)
    try:
        profile = get_profile(args.profile)
    except ValueError as exc:
        raise ConfigError("--profile", args.profile, str(exc)) from None
    try:
        mount = MountAlignment.parse(args.mount) if args.mount else None
    except ValueError as exc:
        raise ConfigError("--mount", args.mount, str(exc)) from None
    if ble is None:
        ble = Config.load(path=getattr(args, "config", None)).ble
    if args.silence_timeout is not None:
        ble = dataclasses.replace(ble, silence_timeout_s=args.silence_timeout)  # validates
    return BleSource(profile, args.address, mount=mount, rate_hz=args.rate_hz or profile.default_rate_hz,
                     config=ble, adapter=getattr(args, "adapter", None))
