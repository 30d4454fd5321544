"""Accuracy and speed of ``spinewatch calibrate``'s session on simulated patients.

For N random sensor mountings (pitch and roll uniform in +-15 deg, yaw in +-90 deg) and
sensor seeds (gyroscope bias 0.5-1 deg/s, noise), a compliant simulated patient runs the
whole guided session (countdown, neutral capture, forward bend) at full speed. Printed:
the error of the neutral up direction and of the yaw against the simulator's truth, what a
straight 30 deg slouch then reads (flexion error, lateral leak), false
refusals of the compliant patient, refusals of the non-compliant ones (all must be refused),
and the session's wall time.

    python benchmarks/bench_calibration.py --sessions 50
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import numpy as np

from spinewatch.firmware_bridge.sim import Mounting, SimulatedPatient
from spinewatch.firmware_bridge.sim.calibration import calibration_script
from spinewatch.service.bridge.calibration_session import (
    CalibrationPlan,
    CalibrationRejected,
    run_calibration,
)
from spinewatch.signal.angles import neutral_alignment, trunk_angles_deg, yaw_rotation

SLOUCH_DEG = 30.0  # the check posture: a straight 30 deg forward slouch


def session(behaviour: str, mount: Mounting, seed: int, plan: CalibrationPlan):  # type: ignore[no-untyped-def]
    script = calibration_script(behaviour, plan.countdown_s, plan.capture_s, plan.bend_s, plan.attempts)
    src = SimulatedPatient(script, 100.0, seed=seed, batch_samples=5, mounting=mount)

    async def go():  # type: ignore[no-untyped-def]
        async with src:
            return await run_calibration(src, "p", "d", plan)

    return asyncio.run(go())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    plan = CalibrationPlan()
    rng = np.random.default_rng(args.seed)
    up_err, yaw_err, flex_err, lat_err, wall = [], [], [], [], []
    false_refusals = 0
    session("still", Mounting(), 0, plan)  # warm-up: imports, Numba cache
    for k in range(args.sessions):
        pitch, roll = rng.uniform(-15, 15, 2)
        yaw = rng.uniform(-90, 90)
        m = Mounting(pitch_deg=pitch, roll_deg=roll, yaw_deg=yaw)
        t0 = time.perf_counter()
        try:
            res = session("still", m, k, plan)
        except CalibrationRejected:
            false_refusals += 1
            continue
        wall.append(time.perf_counter() - t0)
        truth = m.r_sensor_to_body.T @ np.array([0.0, 0.0, 1.0])
        up_err.append(np.degrees(np.arccos(np.clip(np.dot(truth, res.calibration.up_sensor), -1, 1))))
        yaw_err.append(abs((res.calibration.mount_yaw_deg - yaw + 180) % 360 - 180))
        # what the tracker reads, with this calibration, for a straight 30 deg slouch
        f = np.radians(SLOUCH_DEG)
        up_slouch = m.r_sensor_to_body.T @ np.array([-np.sin(f), 0.0, np.cos(f)])
        r = yaw_rotation(res.calibration.mount_yaw_deg) @ neutral_alignment(res.calibration.up_sensor)
        fl, la = trunk_angles_deg((r @ up_slouch)[None, :])
        flex_err.append(abs(fl[0] - SLOUCH_DEG))
        lat_err.append(abs(la[0]))
    refused = {}
    for behaviour in ("fidgeting", "walking", "lying", "shallow-bend"):
        n = 0
        for k in range(10):
            try:
                session(behaviour, Mounting(), k, plan)
            except CalibrationRejected:
                n += 1
        refused[behaviour] = n
    samples = plan.countdown_s + plan.capture_s + plan.bend_s
    print(f"{args.sessions} compliant sessions, random mountings (pitch/roll +-15 deg, yaw +-90 deg):")
    print(f"  neutral up error: median {np.median(up_err):.3f} deg, 95th pct {np.percentile(up_err, 95):.3f} deg, "
          f"max {np.max(up_err):.3f} deg")
    print(f"  yaw error:        median {np.median(yaw_err):.2f} deg, 95th pct {np.percentile(yaw_err, 95):.2f} deg, "
          f"max {np.max(yaw_err):.2f} deg")
    print(f"  a straight {SLOUCH_DEG:g} deg slouch then reads: flexion error max {np.max(flex_err):.3f} deg, "
          f"lateral leak median {np.median(lat_err):.2f} deg, max {np.max(lat_err):.2f} deg")
    print(f"  false refusals:   {false_refusals} of {args.sessions}")
    print(f"  session wall time: median {1000 * np.median(wall):.0f} ms for {samples:g} s of 100 Hz samples "
          f"({samples * 100 / np.median(wall):,.0f} samples/s)")
    print("non-compliant patients refused (of 10 seeds each): " + ", ".join(f"{b} {n}" for b, n in refused.items()))
    print(f"reproduce: python benchmarks/bench_calibration.py --sessions {args.sessions} --seed {args.seed}")
    return 0 if false_refusals == 0 and all(n == 10 for n in refused.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
