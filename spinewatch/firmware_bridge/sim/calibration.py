"""A simulated patient who follows (or fails) ``spinewatch calibrate``'s guidance.

The calibrate command paces its steps by samples received, so its timeline is known in
advance: attempt k's countdown and neutral capture occupy script time
``[k * (countdown_s + capture_s), (k + 1) * (countdown_s + capture_s))``, and after the
accepted attempt come bend captures of ``bend_s`` each. :func:`calibration_script` writes a
:class:`~spinewatch.firmware_bridge.sim.script.PostureScript` on that timeline, so tests and
demos know the truth (the simulator's :class:`~spinewatch.firmware_bridge.sim.imu.Mounting`).
"""

from __future__ import annotations

from typing import Final

from spinewatch.firmware_bridge.sim.script import PostureScript, Segment

__all__ = ["BEHAVIOURS", "BEND_DEG", "calibration_script"]

BEHAVIOURS: Final = {
    "still": "sits upright and still when asked, then bends forward 35 deg",
    "fidget-once": "fidgets during the first capture, then does as asked",
    "fidgeting": "never holds still (sways and leans every second)",
    "walking": "walks about instead of sitting",
    "lying": "lies on the back",
    "shallow-bend": "holds still, but bends only 8 deg when asked to bend forward",
}
BEND_DEG: Final = 35.0  # a comfortable forward bend
SHALLOW_BEND_DEG: Final = 8.0  # too small to tell a direction (< 15 deg)
_FIDGET_S: Final = 1.0  # one sway or lean, s
_TAIL_S: Final = 60.0  # upright sitting after the script's last step, s


def _fidget(t0: float, t1: float) -> list[Segment]:
    """Sway and lean (+-10 deg flexion, +-8 deg lateral) every second in [t0, t1)."""
    segs = []
    k = 0
    t = t0
    while t < t1 - 1e-9:
        end = min(t1, t + _FIDGET_S)
        flex, lat = (10.0, 8.0) if k % 2 == 0 else (-6.0, -8.0)
        segs.append(Segment("sit", t, end, flex, lat, ramp_s=end - t))
        t = end
        k += 1
    return segs


def calibration_script(
    behaviour: str,
    countdown_s: float,
    capture_s: float,
    bend_s: float,
    attempts: int,
) -> PostureScript:
    """The posture timeline of a simulated patient during ``spinewatch calibrate``.

    Args:
        behaviour: one of :data:`BEHAVIOURS`.
        countdown_s: the command's countdown before each neutral capture, s.
        capture_s: the neutral capture, s.
        bend_s: one forward-bend capture, s (at least 6 s for a full bend).
        attempts: the command's attempts (the script lasts long enough for all of them).

    Returns:
        A script whose sensor time 0 is the first sample the command receives.
    """
    if behaviour not in BEHAVIOURS:
        raise ValueError(f"behaviour must be one of {', '.join(BEHAVIOURS)}, got {behaviour!r}")
    if not (countdown_s >= 0 and capture_s > 0 and bend_s > 0 and attempts >= 1):
        raise ValueError("countdown_s >= 0, capture_s > 0, bend_s > 0 and attempts >= 1 are needed")
    cycle = countdown_s + capture_s
    end = attempts * cycle + attempts * bend_s + _TAIL_S
    if behaviour == "lying":
        return PostureScript((Segment("lie", 0.0, end, -90.0, 0.0),))
    if behaviour == "walking":
        return PostureScript((Segment("walk", 0.0, end, 3.0, 0.0),))
    if behaviour == "fidgeting":
        return PostureScript(tuple(_fidget(0.0, end)))
    segs: list[Segment] = []
    if behaviour == "fidget-once":
        segs.append(Segment("calibrate", 0.0, countdown_s + 1e-3, 0.0, 0.0, ramp_s=1e-3))
        segs += _fidget(countdown_s + 1e-3, cycle)
        accepted = 1
    else:
        accepted = 0
    t_bend = (accepted + 1) * cycle
    segs.append(Segment("calibrate", segs[-1].end_s if segs else 0.0, t_bend, 0.0, 0.0,
                        ramp_s=min(1.5, t_bend - (segs[-1].end_s if segs else 0.0))))
    deg = SHALLOW_BEND_DEG if behaviour == "shallow-bend" else BEND_DEG
    t = t_bend
    for _ in range(attempts):  # bend as often as asked
        down = min(2.0, bend_s / 3)  # ramp down, hold, ramp up within one bend capture
        segs.append(Segment("slouch", t, t + bend_s / 2, deg, 0.0, ramp_s=down))
        segs.append(Segment("sit", t + bend_s / 2, t + bend_s, 0.0, 0.0, ramp_s=down))
        t += bend_s
    segs.append(Segment("sit", t, t + _TAIL_S, 0.0, 0.0))
    return PostureScript(tuple(segs))
