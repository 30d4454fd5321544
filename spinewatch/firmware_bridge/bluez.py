"""Why this machine cannot do Bluetooth LE, and what to do about it (BlueZ over D-Bus, Linux).

One owner for the hints: ``spinewatch doctor``'s Bluetooth check and the bridge commands
(``bridge scan/run/record``, ``calibrate``) print the same fix for the same cause. No I/O here.
"""

from __future__ import annotations

import os
from typing import Final

__all__ = [
    "BLUEZ_SERVICE",
    "DEFAULT_SYSTEM_BUS",
    "FIX_DENIED",
    "FIX_NO_ADAPTER",
    "FIX_NO_BLUEZ",
    "FIX_NO_SYSTEM_BUS",
    "FIX_POWERED_OFF",
    "system_bus_address",
]

BLUEZ_SERVICE: Final = "org.bluez"
# dbus-fast's (and so bleak's) system bus when DBUS_SYSTEM_BUS_ADDRESS is unset
DEFAULT_SYSTEM_BUS: Final = "unix:path=/var/run/dbus/system_bus_socket"

FIX_NO_SYSTEM_BUS: Final = ("BlueZ is reached over D-Bus: apt install dbus bluez && systemctl start dbus bluetooth "
                            "(in a container: mount the host's /run/dbus)")
FIX_NO_BLUEZ: Final = "apt install bluez && systemctl start bluetooth"
FIX_DENIED: Final = "allow this user to talk to org.bluez (add it to the 'bluetooth' group)"
FIX_NO_ADAPTER: Final = "plug in a Bluetooth 4.0+ (LE) adapter; check `rfkill list` and `bluetoothctl list`"
FIX_POWERED_OFF: Final = "bluetoothctl power on (and rfkill unblock bluetooth)"


def system_bus_address() -> str:
    """The D-Bus system bus bleak talks to: ``DBUS_SYSTEM_BUS_ADDRESS``, else the default socket."""
    return os.environ.get("DBUS_SYSTEM_BUS_ADDRESS", "") or DEFAULT_SYSTEM_BUS
