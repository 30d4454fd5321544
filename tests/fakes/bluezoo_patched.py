"""Start BlueZoo (the BlueZ D-Bus mock, GPL-2.0, test-only) with our workaround applied.

BlueZoo 1.0.2 exports a device's GATT service/characteristic link objects on connect but
never removes them on disconnect, so connecting again after a link loss fails with
EEXIST ("File exists") when it exports the same object paths again. The patch below
removes those links (and clears ServicesResolved) when a device disconnects, on both
sides of the link. Run as a separate process: ``python bluezoo_patched.py [bluezoo args]``.
"""

import contextlib
import os

from bluezoo import bluezoo as _bz
from bluezoo import device as _dev

_orig_disconnect = _dev.Device.disconnect


async def _disconnect_and_unexport(self, uuid=None):  # type: ignore[no-untyped-def]
    await _orig_disconnect(self, uuid)
    for dev in (self, self.peer):
        if dev is None:
            continue
        for link in list(dev.services.values()):
            with contextlib.suppress(KeyError):
                dev.peer_adapter.mock.remove_object(link)
        dev.services.clear()
        with contextlib.suppress(Exception):
            await dev.ServicesResolved.set_async(False)


if not os.environ.get("SPINEWATCH_BLUEZOO_UNPATCHED"):  # set it to see the EEXIST failure
    _dev.Device.disconnect = _disconnect_and_unexport

if __name__ == "__main__":
    _bz.main()
