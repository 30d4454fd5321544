"""``spinewatch config get|set``: a patient's settings on the retained MQTT ``config`` topic."""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import json
import sys
import time
from typing import Any

from spinewatch.errors import ConfigError
from spinewatch.service.transport import wire
from spinewatch.service.transport.patient_config import (
    HAPTIC_SETTING_KEYS,
    SETTING_KEYS,
    PatientConfig,
    SettingsConflict,
    decode_patient_config,
    encode_patient_config,
)

# key=value names accepted by `config set`: PatientConfig's settings (HAPTIC_SETTING_KEYS go into
# its haptic part under the same names), plus the switches and lists spelled for the command line
KEYS = (*SETTING_KEYS, "haptic", *HAPTIC_SETTING_KEYS, "quiet_hours", "alerts_off")


def _mqtt(args: argparse.Namespace):
    from spinewatch.service.config import Config  # noqa: PLC0415
    from spinewatch.service.transport.mqtt import resolve_protocol  # noqa: PLC0415

    cfg = Config.load(path=args.config)
    if not cfg.mqtt.url:
        raise ConfigError("SPINEWATCH_MQTT_URL", "", "the broker the bridges use, e.g. mqtt://127.0.0.1:1883")
    return cfg.mqtt, resolve_protocol(cfg.mqtt)


def read_config(mqtt_cfg: Any, protocol: str, patient: str, device: str, timeout_s: float) -> PatientConfig | None:
    """The retained config of a patient's device, or None if none is set."""
    from spinewatch.service.transport.mqtt import read_retained  # noqa: PLC0415

    payload = read_retained(mqtt_cfg, protocol, wire.topic(patient, device, "config"), "config-cli",  # type: ignore[arg-type]
                            timeout_s)
    return None if payload is None else decode_patient_config(payload)


def apply_changes(cfg: PatientConfig, pairs: list[str], *, explain_conflicts: bool = True) -> PatientConfig:
    """``key=value`` changes on top of ``cfg``, validated (ConfigError names the key).

    A change that breaks a rule with a setting it did not change (``threshold_deg=35`` while
    ``severe_deg`` is 30) names the changed key, the setting in force and what to set together;
    with ``explain_conflicts=False`` it raises the bare :class:`SettingsConflict` instead.
    """
    top: dict[str, Any] = {}
    haptic: dict[str, Any] = {}
    changed: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in KEYS:
            raise ConfigError(key or pair, value, f"key=value with key one of {', '.join(KEYS)}")
        changed[key] = value
        try:
            if key in ("threshold_deg", "severe_deg", "hysteresis_deg", "min_duration_s"):
                top[key] = float(value)
            elif key == "timezone":
                top[key] = value
            elif key == "haptic":
                if value not in ("on", "off"):
                    raise ConfigError(key, value, "on or off")
                haptic["enabled"] = value == "on"
            elif key in ("intensity_pct", "duration_ms"):
                haptic[key] = int(value)
            elif key == "pattern":
                haptic["pattern"] = value
            elif key in HAPTIC_SETTING_KEYS:
                haptic[key] = float(value)
            elif key == "quiet_hours":
                wins = [w.split("-") for w in value.split(",") if w]
                if any(len(w) != 2 for w in wins):
                    raise ConfigError(key, value, "windows HH:MM-HH:MM[,HH:MM-HH:MM...], e.g. quiet_hours=22:00-07:00 "
                                      "(quiet_hours= for none)")
                top["quiet_hours"] = tuple((a, b) for a, b in wins)
            elif key == "alerts_off":
                top["alerts_off_activities"] = tuple(a for a in value.split(",") if a)
        except ConfigError:
            raise
        except ValueError as exc:
            kind = "an integer" if key in ("intensity_pct", "duration_ms") else "a number"
            raise ConfigError(key, value, kind) from exc
    try:
        return dataclasses.replace(cfg, haptic=dataclasses.replace(cfg.haptic, **haptic), **top)
    except SettingsConflict as exc:
        if not explain_conflicts or (exc.key in changed and exc.other in changed):
            raise
        if exc.key in changed:  # e.g. severe_deg=15 while threshold_deg is 20
            moved, kept, kept_value = exc.key, exc.other, exc.other_value
        else:  # e.g. threshold_deg=35 while severe_deg is 30
            moved, kept, kept_value = exc.other, exc.key, exc.key_value
        raise ConfigError(moved, changed.get(moved, ""), f"{exc.key} must stay {exc.relation} {exc.other}, and "
                          f"{kept} is {kept_value:g} (in force, not changed here): set them together, "
                          f"e.g. {_together_example(cfg, pairs, exc)}") from None


def _together_example(cfg: PatientConfig, pairs: list[str], exc: SettingsConflict) -> str:
    """``threshold_deg=35 severe_deg=45``: the user's changes plus changes to the settings in force
    that satisfy every rule between them (checked), e.g. for ``threshold_deg=35`` with ``severe_deg`` 30."""
    user_keys = {p.partition("=")[0] for p in pairs}
    extra: dict[str, float] = {}
    for _ in range(3):  # three related settings: at most two more to move
        if exc.key not in user_keys and exc.key not in extra:  # move the setting in force ...
            key = exc.key
            value = min(89.0, exc.other_value + 10) if exc.relation == "more than" else exc.other_value / 4
        else:  # ... or the one it is compared with
            key = exc.other
            value = max(0.5, exc.key_value - 10) if exc.relation == "more than" else min(89.0, exc.key_value + 10)
        extra[key] = round(value, 2)
        trial = [*pairs, *(f"{k}={v:g}" for k, v in extra.items())]
        try:
            apply_changes(cfg, trial, explain_conflicts=False)
        except SettingsConflict as again:
            exc = again
            continue
        except ConfigError:
            break
        return " ".join(trial)
    return f"{exc.key}=... {exc.other}=..."


def _cmd_get(args: argparse.Namespace) -> int:
    mqtt_cfg, protocol = _mqtt(args)
    cfg = read_config(mqtt_cfg, protocol, args.patient, args.device, args.timeout)
    if cfg is None:
        print(f"no config set for {args.patient}/{args.device}; the defaults apply:", file=sys.stderr)
        cfg = PatientConfig()
    print(json.dumps(json.loads(encode_patient_config(cfg)), indent=2))
    return 0


def _cmd_set(args: argparse.Namespace) -> int:
    from spinewatch.service.bridge.publisher import send_from_therapist  # noqa: PLC0415
    from spinewatch.service.config import Config  # noqa: PLC0415

    wire.check_id("patient", args.patient)
    wire.check_id("device", args.device)
    try:  # each value on its own, before the broker is asked for the settings in force
        apply_changes(PatientConfig(), args.changes, explain_conflicts=False)
    except SettingsConflict:
        pass  # a rule between two settings: checked below, against the settings in force
    mqtt_cfg, protocol = _mqtt(args)
    current = read_config(mqtt_cfg, protocol, args.patient, args.device, args.timeout) or PatientConfig()
    new = apply_changes(current, args.changes)
    new = dataclasses.replace(new, author=args.author, set_ns=time.time_ns())
    payload = encode_patient_config(new)
    decode_patient_config(payload)  # what the bridge will parse: refuse here, not there
    bridge = Config.load(path=args.config).bridge
    send_from_therapist(mqtt_cfg, bridge, protocol, args.patient, args.device, [("config", payload, True)],
                        args.timeout)
    print(f"config of {args.patient}/{args.device} set by {args.author}: " + " ".join(args.changes))
    return 0


def add_config_commands(subparsers: Any) -> None:
    """Add ``config get`` and ``config set`` to the ``spinewatch`` command line."""
    c = subparsers.add_parser(
        "config", help="a patient's settings (retained on MQTT, applied live)",
        description="Read or change a patient's settings: retained on the MQTT config topic of their device, "
                    "applied live by the bridge. Keys and defaults: docs/therapist-guide.md.",
        epilog="example: SPINEWATCH_MQTT_URL=mqtt://127.0.0.1:1883 spinewatch config get --patient p-042 --device d-7",
    )
    c_sub = c.add_subparsers(dest="config_command", required=True, metavar="SUBCOMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--patient", required=True, metavar="ID", help="pseudonymous patient id")
    common.add_argument("--device", required=True, metavar="ID", help="pseudonymous device id")
    common.add_argument("--timeout", type=float, default=5.0, metavar="S", help="broker timeout (default 5)")
    g = c_sub.add_parser(
        "get", parents=[common], help="print the settings in force",
        description="Print a patient's settings as the bridge applies them (the retained config "
                    "topic), or the defaults if none were set. Reads SPINEWATCH_MQTT_URL.",
        epilog="example: spinewatch config get --patient p-042 --device d-7",
    )
    g.set_defaults(func=_cmd_get)
    s = c_sub.add_parser(
        "set", parents=[common], help="change settings; the bridge applies them live",
        description="Change a patient's settings: validated, published retained (QoS 1) on "
                    "spinewatch/v1/{patient}/{device}/config, applied by the bridge without a restart, "
                    "and stored with time and author in InfluxDB by the ingest worker (measurement "
                    f"patient_config). Keys: {', '.join(KEYS)} (haptic=on|off, quiet_hours=22:00-07:00, "
                    "alerts_off=lying,upright_moving).",
        epilog="example: spinewatch config set --patient p-042 --device d-7 threshold_deg=25 delay_s=60 haptic=on",
    )
    s.add_argument("--author", default=getpass.getuser(), metavar="ID",
                   help="pseudonymous id of who sets it, kept for the audit (default: the login name)")
    s.add_argument("changes", nargs="+", metavar="KEY=VALUE")
    s.set_defaults(func=_cmd_set)
