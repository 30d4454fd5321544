"""Accuracy and speed of the orientation filter against VQF, Fusion, Madgwick and Mahony.

Runs every filter causally over each of the 20 BROAD trials from sample 0 on the raw data
(BROAD's protocol, see shared/data/README.md), prints inclination RMSE per trial group and
overall, single-stream throughput relative to vqf's ``VQF.updateBatch`` measured in the
same process, and the throughput of the multi-stream bank. Single-threaded.

Then the cold starts in motion (issue 17): the 20 trials cut into consecutive 12-s windows
from sample 0, those with >= 80 % movement samples kept, each filtered from a fresh start;
inclination RMSE over the movement samples after the first second, mean over the windows;
at the native 285.7 Hz and averaged down by 6 (gyroscope and accelerometer means of 6
samples, truth at the last of them: 47.6 Hz). Convergence: per window, the time after the
start at which the inclination error falls below 2 deg for good (12 s if it does not);
median over the windows and the share of windows below 2 deg for good within 3 s. The same
for simulated walking (spinewatch.firmware_bridge.sim, gyroscope bias 0.2-0.8 deg/s
and noise) at 25, 50 and 100 Hz.

Trial groups (from the file names): "undisturbed rotation" = 01-08 (``undisturbed_*_rotation``),
"undisturbed translation" = 10-18 (``undisturbed_*_translation``), "disturbed" = 24-36
(tapping, phone vibration, stationary and attached magnets; magnets do not affect a 6-axis
filter, but those trials contain fast motion).

Data: "BROAD - A Benchmark for Robust Inertial Orientation Estimation", D. Laidig, M. Caruso,
A. Cereatti, T. Seel, Data 6(7):72, 2021, CC BY 4.0.

With ``--baseline-kernel FILE`` (an orientation.py of another revision, e.g. from
``git show main:spinewatch/signal/orientation.py > /tmp/orientation_main.py``), that kernel is
timed in turns with ours and VQF as one more filter, its bank too, and the largest difference
between its outputs and ours on the 20 trials is printed: a kernel change measured against
its predecessor in the same run.

Usage (from the repository root):
    PYTHONPATH=. NUMBA_NUM_THREADS=1 python benchmarks/bench_orientation.py [--quick] [--data DIR]
        [--cold-start-only] [--baseline-kernel FILE]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("NUMBA_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from spinewatch.signal import (  # noqa: E402
    OrientationFilterBank,
    OrientationParams,
    estimate_orientation,
)
from spinewatch.signal.orientation import STATE_LEN  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "broad"
GROUPS = ("undisturbed rotation", "undisturbed translation", "disturbed")
G_M_S2 = 9.81  # Fusion takes g; the exact value only scales its acceleration rejection


@dataclass
class Trial:
    name: str
    group: str
    gyr_rad_s: np.ndarray
    acc_m_s2: np.ndarray
    quat_truth_wxyz: np.ndarray
    movement: np.ndarray
    rate_hz: float


def load_trials(data_dir: Path) -> list[Trial]:
    trials = []
    for path in sorted(data_dir.glob("*.npz")):
        stem = path.stem
        if "undisturbed" in stem:
            group = "undisturbed rotation" if "rotation" in stem else "undisturbed translation"
        else:
            group = "disturbed"
        with np.load(path) as d:
            trials.append(
                Trial(
                    stem,
                    group,
                    np.ascontiguousarray(d["gyr_rad_s"], dtype=np.float64),
                    np.ascontiguousarray(d["acc_m_s2"], dtype=np.float64),
                    d["quat_truth_wxyz"],
                    d["movement"].astype(bool),
                    float(d["rate_hz"]),
                )
            )
    return trials


def inclination_rmse_deg(
    q_est_wxyz: np.ndarray, q_truth_wxyz: np.ndarray, movement: np.ndarray
) -> float:
    """BROAD: q_err = q_est * q_truth^-1; inclination 2 acos(sqrt(w^2 + z^2)); RMSE on movement."""
    w1, x1, y1, z1 = np.asarray(q_est_wxyz, dtype=np.float64).T
    w2, x2, y2, z2 = q_truth_wxyz.T
    w = w1 * w2 + x1 * x2 + y1 * y2 + z1 * z2
    z = -w1 * z2 - x1 * y2 + y1 * x2 + z1 * w2
    err = 2.0 * np.arccos(np.clip(np.sqrt(w * w + z * z), -1.0, 1.0))
    ok = movement & np.isfinite(err)
    return float(np.degrees(np.sqrt(np.mean(err[ok] ** 2))))


def predict_half_sample(
    q_wxyz: np.ndarray, gyr_rad_s: np.ndarray, bias_rad_s: np.ndarray, rate_hz: float
) -> np.ndarray:
    """q * exp((w - b) ts / 2): the output latency step of our filter, applied to VQF's output."""
    u = (gyr_rad_s - bias_rad_s) * (0.5 / rate_hz)
    angle = np.linalg.norm(u, axis=1, keepdims=True)
    sinc = np.where(angle > 0, np.sin(angle / 2) / np.where(angle > 0, angle, 1.0), 0.5)
    p = np.hstack([np.cos(angle / 2), sinc * u])
    w1, x1, y1, z1 = q_wxyz.T
    w2, x2, y2, z2 = p.T
    return np.stack(
        [
            w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
            w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
            w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
            w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
        ],
        axis=1,
    )


# ---------------------------------------------------------------------------------------
# filters: each maps a trial to (N, 4) [w, x, y, z] sensor-to-earth quaternions


def run_spinewatch(t: Trial, params: OrientationParams | None = None) -> np.ndarray:
    return estimate_orientation(t.gyr_rad_s, t.acc_m_s2, t.rate_hz, params)


def run_vqf(t: Trial) -> np.ndarray:
    from vqf import VQF

    return VQF(1.0 / t.rate_hz).updateBatch(t.gyr_rad_s, t.acc_m_s2)["quat6D"]


def run_vqf_predicted(t: Trial) -> np.ndarray:
    from vqf import VQF

    out = VQF(1.0 / t.rate_hz).updateBatch(t.gyr_rad_s, t.acc_m_s2)
    return predict_half_sample(out["quat6D"], t.gyr_rad_s, out["bias"], t.rate_hz)


def run_offline_vqf(t: Trial) -> np.ndarray:
    from vqf import offlineVQF

    return offlineVQF(t.gyr_rad_s, t.acc_m_s2, None, 1.0 / t.rate_hz)["quat6D"]


def run_fusion(t: Trial) -> np.ndarray:
    import imufusion

    ahrs = imufusion.Ahrs()
    settings = imufusion.AhrsSettings()
    settings.convention = imufusion.CONVENTION_NWU
    settings.gain = 0.5
    settings.sample_rate = t.rate_hz
    ahrs.set_settings(settings)
    ahrs.set_sample_period(1.0 / t.rate_hz)
    gyr_dps = np.degrees(t.gyr_rad_s)
    acc_g = t.acc_m_s2 / G_M_S2
    out = np.empty((len(gyr_dps), 4))
    for i in range(len(gyr_dps)):
        ahrs.update_no_magnetometer(gyr_dps[i], acc_g[i])
        out[i] = ahrs.get_quaternion()
    return out


def run_madgwick(t: Trial) -> np.ndarray:
    from ahrs.filters import Madgwick

    return Madgwick(gyr=t.gyr_rad_s, acc=t.acc_m_s2, frequency=t.rate_hz, gain=0.033).Q


def run_mahony(t: Trial) -> np.ndarray:
    from ahrs.filters import Mahony

    return Mahony(gyr=t.gyr_rad_s, acc=t.acc_m_s2, frequency=t.rate_hz).Q


BROAD_SENSOR_LATENCY = OrientationParams(gyr_latency_samples=1.0)  # measured for BROAD's myon aktos-t

FILTERS: list[tuple[str, Callable[[Trial], np.ndarray], bool]] = [
    # (label, runner, fast: timed interleaved with VQF, best of FAST_REPEATS per trial)
    ("spinewatch (default)", run_spinewatch, True),
    ("spinewatch (gyr_latency_samples=1.0)", lambda t: run_spinewatch(t, BROAD_SENSOR_LATENCY), True),
    ("VQF online (updateBatch)", run_vqf, True),
    ("VQF online + half-sample prediction", run_vqf_predicted, False),
    ("offlineVQF (non-causal)", run_offline_vqf, False),
    ("Fusion/imufusion (gain 0.5)", run_fusion, False),
    ("Madgwick (ahrs, gain 0.033)", run_madgwick, False),
    ("Mahony (ahrs, defaults)", run_mahony, False),
]
# The machine is shared: the fast filters are timed in turns on each trial, and each keeps
# its best time per trial, so a busy spell slows all of them rather than one.
FAST_REPEATS = 5


def load_baseline_kernel(path: Path):  # noqa: ANN201 - a module
    """Import an orientation.py of another revision as module ``orientation_baseline``."""
    spec = importlib.util.spec_from_file_location("orientation_baseline", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def bench_bank(
    trial: Trial, n_streams: int, chunk: int, n_chunks: int, bank_class: type = OrientationFilterBank
) -> float:
    """Samples/s of OrientationFilterBank.update with (n_streams, chunk, 3) inputs."""
    n = chunk * n_chunks
    offsets = np.linspace(0, len(trial.gyr_rad_s) - n - 1, n_streams).astype(int)
    gyr = np.stack([trial.gyr_rad_s[o : o + n] for o in offsets])
    acc = np.stack([trial.acc_m_s2[o : o + n] for o in offsets])
    cuts = [slice(k * chunk, (k + 1) * chunk) for k in range(n_chunks)]
    gyr_chunks = [np.ascontiguousarray(gyr[:, cut]) for cut in cuts]
    acc_chunks = [np.ascontiguousarray(acc[:, cut]) for cut in cuts]
    bank_class(2, trial.rate_hz).update(gyr[:2, :chunk], acc[:2, :chunk])  # compile
    best_s = float("inf")
    for _ in range(3):  # best of 3 (shared machine)
        bank = bank_class(n_streams, trial.rate_hz)
        start = time.perf_counter()
        for g, a in zip(gyr_chunks, acc_chunks, strict=True):
            bank.update(g, a)
        best_s = min(best_s, time.perf_counter() - start)
    return n_streams * n / best_s


# ---------------------------------------------------------------------------------------
# cold starts in motion (issue 17)

WINDOW_S = 12.0
MIN_MOVEMENT = 0.8
SKIP_S = 1.0
CONVERGED_DEG = 2.0
DOWNSAMPLE = 6  # 285.7 Hz -> 47.6 Hz


@dataclass
class Window:
    gyr_rad_s: np.ndarray
    acc_m_s2: np.ndarray
    quat_truth_wxyz: np.ndarray
    movement: np.ndarray
    rate_hz: float


def cold_start_windows(trials: list[Trial], factor: int = 1) -> list[Window]:
    """12-s windows with >= 80 % movement, consecutive from sample 0; averaged by factor."""
    out = []
    for t in trials:
        n = int(round(WINDOW_S * t.rate_hz))
        for a in range(0, len(t.gyr_rad_s) - n + 1, n):
            movement = t.movement[a : a + n]
            if np.mean(movement) < MIN_MOVEMENT:
                continue
            gyr, acc, q = t.gyr_rad_s[a : a + n], t.acc_m_s2[a : a + n], t.quat_truth_wxyz[a : a + n]
            if factor > 1:
                k = n // factor
                gyr = gyr[: k * factor].reshape(k, factor, 3).mean(axis=1)
                acc = acc[: k * factor].reshape(k, factor, 3).mean(axis=1)
                q = q[factor - 1 :: factor][:k]
                movement = movement[factor - 1 :: factor][:k]
            out.append(
                Window(np.ascontiguousarray(gyr), np.ascontiguousarray(acc), q, movement, t.rate_hz / factor)
            )
    return out


def inclination_error_deg(q_est_wxyz: np.ndarray, q_truth_wxyz: np.ndarray) -> np.ndarray:
    w1, x1, y1, z1 = np.asarray(q_est_wxyz, dtype=np.float64).T
    w2, x2, y2, z2 = q_truth_wxyz.T
    w = w1 * w2 + x1 * x2 + y1 * y2 + z1 * z2
    z = -w1 * z2 - x1 * y2 + y1 * x2 + z1 * w2
    return np.degrees(2.0 * np.arccos(np.clip(np.sqrt(w * w + z * z), -1.0, 1.0)))


def score_window(q: np.ndarray, w: Window) -> tuple[float, float]:
    """(RMSE after the first second over movement samples, deg; convergence time, s)."""
    err = inclination_error_deg(q, w.quat_truth_wxyz)
    skip = int(round(SKIP_S * w.rate_hz))
    ok = w.movement[skip:] & np.isfinite(err[skip:])
    rmse = float(np.sqrt(np.mean(err[skip:][ok] ** 2)))
    above = np.flatnonzero(np.isfinite(err) & (err >= CONVERGED_DEG))
    return rmse, 0.0 if len(above) == 0 else (above[-1] + 1) / w.rate_hz


COLD_FILTERS: list[tuple[str, Callable[[np.ndarray, np.ndarray, float], np.ndarray]]] = [
    ("spinewatch (default)", lambda g, a, r: estimate_orientation(g, a, r)),
    (
        "spinewatch (motion_bias_est=False)",
        lambda g, a, r: estimate_orientation(g, a, r, OrientationParams(motion_bias_est=False)),
    ),
    ("VQF online (updateBatch)", lambda g, a, r: run_vqf_arrays(g, a, r)),
]


def run_vqf_arrays(gyr_rad_s: np.ndarray, acc_m_s2: np.ndarray, rate_hz: float) -> np.ndarray:
    from vqf import VQF

    return VQF(1.0 / rate_hz).updateBatch(gyr_rad_s, acc_m_s2)["quat6D"]


def simulated_walking_windows(rate_hz: float) -> list[Window]:
    """Fresh starts every 12.3 s into 3 simulated walks (seeds 1-3) with gyroscope bias."""
    from spinewatch.firmware_bridge.sim import ImuErrors, PostureScript, Segment, simulate

    script = PostureScript((
        Segment("stand", 0.0, 2.0, flexion_deg=10.0),
        Segment("walk", 2.0, 130.0, flexion_deg=15.0),
    ))
    out = []
    for seed, bias_dps in ((1, (0.2, -0.15, 0.1)), (2, (0.5, 0.3, -0.4)), (3, (-0.8, 0.6, 0.7))):
        rec = simulate(script, rate_hz, seed, errors=ImuErrors(gyr_bias_dps=bias_dps), with_orientation=True)
        assert rec.q_sensor_to_earth is not None
        n = int(round(WINDOW_S * rate_hz))
        for start_s in np.arange(5.0, 115.0, 12.3):
            a = int(round(start_s * rate_hz))
            out.append(
                Window(
                    np.ascontiguousarray(rec.gyr_rad_s[a : a + n]),
                    np.ascontiguousarray(rec.acc_m_s2[a : a + n]),
                    rec.q_sensor_to_earth[a : a + n],
                    np.ones(n, dtype=bool),
                    rec.rate_hz,
                )
            )
    return out


def cold_start_table(trials: list[Trial]) -> None:
    cases = [
        (f"BROAD windows, {trials[0].rate_hz:.1f} Hz", cold_start_windows(trials)),
        (f"BROAD windows averaged to {trials[0].rate_hz / DOWNSAMPLE:.1f} Hz", cold_start_windows(trials, DOWNSAMPLE)),
    ]
    cases += [(f"simulated walking, {r:.0f} Hz", simulated_walking_windows(r)) for r in (25.0, 50.0, 100.0)]
    print()
    print(
        f"Cold start in motion: inclination RMSE after the first {SKIP_S:g} s (deg, mean over "
        f"windows) / median time until the error stays < {CONVERGED_DEG:g} deg / share of "
        "windows converged within 3 s"
    )
    header = "| case | windows | " + " | ".join(label for label, _ in COLD_FILTERS) + " |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for case, windows in cases:
        cells = []
        for _, run in COLD_FILTERS:
            scores = np.array([score_window(run(w.gyr_rad_s, w.acc_m_s2, w.rate_hz), w) for w in windows])
            rmse, conv = scores[:, 0], scores[:, 1]
            cells.append(
                f"**{np.mean(rmse):.3f}** / {np.median(conv):.2f} s / {np.mean(conv <= 3.0) * 100:.0f} %"
            )
        print(f"| {case} | {len(windows)} | " + " | ".join(cells) + " |")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="folder with the BROAD .npz trials"
    )
    parser.add_argument(
        "--quick", action="store_true", help="skip the slow pure-Python ahrs filters"
    )
    parser.add_argument(
        "--cold-start-only", action="store_true", help="only the cold starts in motion (issue 17)"
    )
    parser.add_argument(
        "--baseline-kernel",
        type=Path,
        help="orientation.py of another revision, timed side by side with this one",
    )
    args = parser.parse_args()
    if not args.data.is_dir():
        print(f"BROAD data not found at {args.data}", file=sys.stderr)
        return 1
    trials = load_trials(args.data)
    n_samples = sum(len(t.gyr_rad_s) for t in trials)
    print(f"{len(trials)} BROAD trials, {n_samples} samples at {trials[0].rate_hz:.3f} Hz")
    first = trials[0]
    estimate_orientation(first.gyr_rad_s[:10], first.acc_m_s2[:10], first.rate_hz)  # compile
    if args.cold_start_only:
        cold_start_table(trials)
        print()
        print(
            "Reproduce: PYTHONPATH=. NUMBA_NUM_THREADS=1 python benchmarks/bench_orientation.py "
            "--cold-start-only"
        )
        return 0

    slow = ("Madgwick", "Mahony")
    filters = [f for f in FILTERS if not (args.quick and f[0].startswith(slow))]
    baseline = None
    if args.baseline_kernel is not None:
        baseline = load_baseline_kernel(args.baseline_kernel)
        base_estimate = baseline.estimate_orientation
        filters.insert(
            1,
            (
                f"spinewatch baseline ({args.baseline_kernel.name}, default)",
                lambda t: base_estimate(t.gyr_rad_s, t.acc_m_s2, t.rate_hz),
                True,
            ),
        )
        diffs = [
            float(np.max(np.abs(run_spinewatch(t) - base_estimate(t.gyr_rad_s, t.acc_m_s2, t.rate_hz))))
            for t in trials
        ]
        identical = all(
            np.array_equal(run_spinewatch(t), base_estimate(t.gyr_rad_s, t.acc_m_s2, t.rate_hz)) for t in trials
        )
        print(
            f"baseline kernel {args.baseline_kernel}: outputs on the 20 trials "
            f"{'bit-identical' if identical else 'differ'}, max |difference| {max(diffs):.3g}"
        )
    rows = []
    for label, run, _ in filters:
        rmse: dict[str, list[float]] = {g: [] for g in GROUPS}
        elapsed_s = 0.0
        for t in trials:
            start = time.perf_counter()
            q = run(t)
            elapsed_s += time.perf_counter() - start
            rmse[t.group].append(inclination_rmse_deg(q, t.quat_truth_wxyz, t.movement))
        all_rmse = [r for g in GROUPS for r in rmse[g]]
        group_means = [float(np.mean(rmse[g])) for g in GROUPS]
        rows.append([label, group_means, float(np.mean(all_rmse)), n_samples / elapsed_s])
        print(f"  done: {label}", file=sys.stderr)

    fast_runs = [(i, run) for i, (_, run, fast) in enumerate(filters) if fast]
    best_s = {(i, k): float("inf") for i, _ in fast_runs for k in range(len(trials))}
    for _ in range(FAST_REPEATS):
        for k, t in enumerate(trials):
            for i, run in fast_runs:
                start = time.perf_counter()
                run(t)
                best_s[i, k] = min(best_s[i, k], time.perf_counter() - start)
    for i, _ in fast_runs:
        rows[i][3] = n_samples / sum(best_s[i, k] for k in range(len(trials)))

    vqf_rate = next(r[3] for r in rows if r[0].startswith("VQF online (updateBatch)"))
    header = f"| filter | {' | '.join(GROUPS)} | mean RMSE (deg) | samples/s | vs VQF |"
    print()
    print("Inclination RMSE in degrees (mean over the trials of each group); one core.")
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for label, groups, mean, rate in rows:
        cells = " | ".join(f"{v:.3f}" for v in groups)
        speed = f"{rate / 1e6:.2f} M" if rate >= 1e6 else f"{rate / 1e3:.0f} k"
        ratio = rate / vqf_rate
        ratio_text = f"{ratio:.2f}x" if ratio >= 0.1 else f"{ratio:.3f}x"
        print(f"| {label} | {cells} | **{mean:.3f}** | {speed} | {ratio_text} |")

    print()
    n_streams, chunk, n_chunks = 1000, 10, 200
    rate = bench_bank(trials[3], n_streams, chunk, n_chunks)
    print(
        f"OrientationFilterBank: {n_streams} streams x chunks of {chunk} samples "
        f"({n_chunks} calls): {rate / 1e6:.2f} M samples/s on one core; "
        f"state {STATE_LEN * 8} bytes per stream"
    )
    if baseline is not None:
        for k in range(2):  # in turns: baseline, this one
            base_rate = bench_bank(trials[3], n_streams, chunk, n_chunks, baseline.OrientationFilterBank)
            rate = bench_bank(trials[3], n_streams, chunk, n_chunks)
            print(
                f"  in turns ({k + 1}/2): baseline {base_rate / 1e6:.2f} M samples/s, "
                f"this one {rate / 1e6:.2f} M samples/s"
            )
    cold_start_table(trials)
    print()
    print("Reproduce: PYTHONPATH=. NUMBA_NUM_THREADS=1 python benchmarks/bench_orientation.py")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
