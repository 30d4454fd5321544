"""Why VQF is 0.04-0.05 deg ahead on the simulated-walking cold starts (issue 17): error analysis.

Uses the simulated-walking windows of bench_orientation.py (fresh starts every 12.3 s in three
walks with a gyroscope bias of 0.2-0.8 deg/s) and prints, per rate:

- inclination RMSE (after the first second, mean over windows) of SpineWatch and VQF from a
  cold start, without motion bias estimation, and with the true bias known at the start
  (as a bridge restart that resumes its kept state has it; VQF via ``setBiasEstimate``);
- the RMS error second by second after the start;
- the mean horizontal bias error (deg/s) over time, and when each filter's estimate first moves.

    PYTHONPATH=. python benchmarks/analyse_walking_start.py      (needs vqf: pip install -e '.[bench]')
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import bench_orientation as bench  # noqa: E402

from spinewatch.signal.orientation import OrientationFilter, OrientationParams  # noqa: E402

BIASES_DPS = ((0.2, -0.15, 0.1), (0.5, 0.3, -0.4), (-0.8, 0.6, 0.7))  # bench_orientation's walks, in order
STEP_S = 0.25


def main() -> int:
    from vqf import VQF

    for rate in (25.0, 50.0, 100.0):
        wins = bench.simulated_walking_windows(rate)
        per_walk = len(wins) // len(BIASES_DPS)
        errs: dict[str, list[np.ndarray]] = {k: [] for k in ("sw", "sw no motion bias", "sw bias known",
                                                             "vqf", "vqf bias known")}
        bias_err: dict[str, list[np.ndarray]] = {"sw": [], "vqf": []}
        step = int(round(STEP_S * rate))
        for i, w in enumerate(wins):
            b = np.radians(BIASES_DPS[i // per_walk])
            f = OrientationFilter(rate)
            q, traj = [], []
            for k in range(0, len(w.gyr_rad_s), step):
                q.append(f.update(w.gyr_rad_s[k : k + step], w.acc_m_s2[k : k + step]))
                traj.append(np.degrees(f.gyr_bias_rad_s[:2] - b[:2]))
            errs["sw"].append(bench.inclination_error_deg(np.vstack(q), w.quat_truth_wxyz))
            bias_err["sw"].append(np.linalg.norm(traj, axis=1))
            f = OrientationFilter(rate, OrientationParams(motion_bias_est=False))
            errs["sw no motion bias"].append(bench.inclination_error_deg(f.update(w.gyr_rad_s, w.acc_m_s2),
                                                                         w.quat_truth_wxyz))
            f = OrientationFilter(rate)
            s = f.state
            s[8:11] = b
            s[11:20] = np.diag([math.radians(0.1) ** 2] * 3).ravel()  # learnt: the motion steady state
            f.resume(s, 0.0)
            errs["sw bias known"].append(bench.inclination_error_deg(f.update(w.gyr_rad_s, w.acc_m_s2),
                                                                     w.quat_truth_wxyz))
            out = VQF(1.0 / rate).updateBatch(w.gyr_rad_s, w.acc_m_s2)
            errs["vqf"].append(bench.inclination_error_deg(out["quat6D"], w.quat_truth_wxyz))
            bias_err["vqf"].append(np.linalg.norm(np.degrees(out["bias"][step - 1 :: step, :2]) - np.degrees(b[:2]),
                                                  axis=1))
            v = VQF(1.0 / rate)
            v.setBiasEstimate(b, 0.01)
            errs["vqf bias known"].append(bench.inclination_error_deg(v.updateBatch(w.gyr_rad_s, w.acc_m_s2)["quat6D"],
                                                                      w.quat_truth_wxyz))
        n, skip = int(rate), int(round(bench.SKIP_S * rate))
        print(f"\n{rate:.0f} Hz, {len(wins)} windows: RMSE after {bench.SKIP_S:g} s, "
              "then RMS error per second 0-1 .. 11-12")
        for name, e in errs.items():
            rmse = np.mean([np.sqrt(np.mean(x[skip:] ** 2)) for x in e])
            sec = [np.sqrt(np.mean(np.array(e)[:, k * n : (k + 1) * n] ** 2)) for k in range(12)]
            print(f"  {name:18s} {rmse:.3f} |", " ".join(f"{x:.2f}" for x in sec))
        for name, tr in bias_err.items():
            m = np.mean(tr, axis=0)
            moved = (np.argmax(np.abs(m - m[0]) > 0.01) + 1) * STEP_S
            at = {t: m[int(t / STEP_S) - 1] for t in (0.25, 2, 3, 4, 6, 12)}
            print(f"  {name} horizontal bias error, deg/s at " + " / ".join(f"{t:g}" for t in at) + " s: "
                  + " / ".join(f"{x:.2f}" for x in at.values()) + f"; first moves by 0.01 after {moved:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
