"""spinewatch.service.bridge.memory: SciPy kept out, LLVM's code pages released, start-up
objects frozen, and the bridge computes exactly the same afterwards (and can still compile
a new kernel).

Each check runs in a fresh interpreter: the steps change process-wide state.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import re, sys
    from spinewatch.service.bridge.memory import keep_scipy_out, prepare_bridge_process

    assert keep_scipy_out()
    import numpy as np
    import numba
    from spinewatch.signal import PostureParams, PostureTracker

    def llvm_text_kb():
        kb, on = 0, False
        for line in open("/proc/self/smaps"):
            head = line.split()
            if "-" in head[0] and len(head) >= 5 and ":" in head[3]:
                on = len(head) >= 6 and head[1] == "r-xp" and head[5].endswith("libllvmlite.so")
            elif on and head[0] == "Rss:":
                kb += int(head[1])
        return kb

    rng = np.random.default_rng(1)
    gyr = rng.normal(0, 0.2, (3000, 3))
    acc = np.array([0.0, 0.0, 9.81]) + rng.normal(0, 0.3, (3000, 3))

    def run():
        t = PostureTracker(100.0, PostureParams(calibration_s=2.0, min_duration_s=0.5, threshold_deg=5.0,
                                                hysteresis_deg=2.0))
        outs = [t.update(gyr[i:i + 5], acc[i:i + 5]) for i in range(0, 3000, 5)]
        return np.concatenate([o.flexion_deg for o in outs]), np.concatenate([o.state for o in outs])

    before_kb = llvm_text_kb()
    prepare_bridge_process(100.0)
    after_kb = llvm_text_kb()
    flex, state = run()
    print("llvm_kb", before_kb, after_kb, llvm_text_kb())
    print("scipy", sys.modules.get("scipy") is not None)
    import gc
    print("frozen", gc.get_freeze_count())
    np.save(sys.argv[1], np.c_[flex, state])
    assert numba.njit(lambda x: x * 3 + 1)(2) == 7  # LLVM still compiles after the release
    print("ok")
    """
)


def _run(tmp_path, prepare: bool) -> tuple[str, object]:
    import numpy as np

    script = SCRIPT if prepare else SCRIPT.replace("prepare_bridge_process(100.0)", "pass").replace(
        "assert keep_scipy_out()", "pass")
    out = tmp_path / ("a.npy" if prepare else "b.npy")
    res = subprocess.run([sys.executable, "-c", script, str(out)], check=False, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout, np.load(out)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and madvise are Linux's")
def test_prepared_bridge_process_is_smaller_and_computes_the_same(tmp_path):
    prepared, a = _run(tmp_path, prepare=True)
    plain, b = _run(tmp_path, prepare=False)
    assert prepared.strip().endswith("ok") and plain.strip().endswith("ok")
    kb = dict(line.split(" ", 1) for line in prepared.splitlines() if " " in line)
    before, after, end = (int(x) for x in kb["llvm_kb"].split())
    assert after < before / 4 and end < before / 2, kb["llvm_kb"]  # released, and not all faulted back
    assert kb["scipy"] == "False"
    assert int(kb["frozen"]) > 10_000  # Numba's objects are out of the collector's reach
    assert (a == b).all()  # bit-identical angles and slouch states
