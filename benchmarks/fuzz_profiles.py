"""Fuzz every sensor-profile decoder with random and mutated packets (default 1,000,000 each).

Run: PYTHONPATH=. python benchmarks/fuzz_profiles.py [--packets N] [--seed S] [--engine numpy|hypothesis]

Each decoder must either return a packet with finite values or raise DecodeError with a
documented reason; any other exception is printed with the packet (hex) and the script
exits 1. Half of the packets are uniformly random bytes (length 0..260), half are valid
packets of the profile with 1-3 random byte flips, truncations or extensions, so that the
deeper checks (count, ranges, flags) are reached.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from spinewatch.errors import DecodeError
from spinewatch.firmware_bridge.profiles import (
    DECODE_REASONS,
    get_profile,
    profile_names,
)


def _valid(name: str, rng: np.random.Generator) -> bytes:
    p = get_profile(name)
    n = int(rng.integers(1, p.max_samples_per_packet + 1))
    return p.build(rng.normal(0, 30, (n, 3)), rng.normal(0, 5, (n, 3)),
                   seq=int(rng.integers(0, 65536)), t0_us=int(rng.integers(0, 2**32)))


def _mutate(pkt: bytes, rng: np.random.Generator) -> bytes:
    b = bytearray(pkt)
    op = int(rng.integers(0, 4))
    if op == 0 and b:
        for _ in range(int(rng.integers(1, 4))):
            b[int(rng.integers(0, len(b)))] = int(rng.integers(0, 256))
    elif op == 1:
        del b[int(rng.integers(0, len(b) + 1)):]
    elif op == 2:
        b += rng.bytes(int(rng.integers(1, 16)))
    return bytes(b)


def fuzz(name: str, packets: int, seed: int) -> tuple[int, dict[str, int]]:
    p = get_profile(name)
    rng = np.random.default_rng(seed)
    counts: dict[str, int] = {"ok": 0}
    lengths = rng.integers(0, 261, packets)
    for i in range(packets):
        data = rng.bytes(int(lengths[i])) if i % 2 else _mutate(_valid(name, rng), rng)
        try:
            d = p.decode(data, p.default_mount)
        except DecodeError as exc:
            if exc.reason not in DECODE_REASONS:
                print(f"{name}: undocumented reason {exc.reason!r} for {data.hex()}")
                return 1, counts
            counts[exc.reason] = counts.get(exc.reason, 0) + 1
        except Exception as exc:  # noqa: BLE001 - this is what we are hunting
            print(f"{name}: {type(exc).__name__}: {exc} for packet {data.hex()}")
            return 1, counts
        else:
            if not (np.all(np.isfinite(d.acc_m_s2)) and np.all(np.isfinite(d.gyr_rad_s))):
                print(f"{name}: non-finite output for {data.hex()}")
                return 1, counts
            counts["ok"] += 1
    return 0, counts


def fuzz_hypothesis(name: str, packets: int) -> int:
    """The same property with hypothesis driving the bytes (slower: ~1-2 k packets/s)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    p = get_profile(name)

    @settings(max_examples=packets, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.one_of(st.binary(max_size=260),
                     st.binary(min_size=8, max_size=8).map(lambda h: h + bytes(12 * h[6]))))
    def prop(data: bytes) -> None:
        try:
            d = p.decode(data, p.default_mount)
        except DecodeError as exc:
            assert exc.reason in DECODE_REASONS, exc.reason
        else:
            assert np.all(np.isfinite(d.acc_m_s2)) and np.all(np.isfinite(d.gyr_rad_s))

    try:
        prop()
    except Exception as exc:  # noqa: BLE001
        print(f"{name}: {type(exc).__name__}: {exc}")
        return 1
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--engine", choices=("numpy", "hypothesis"), default="numpy")
    ap.add_argument("--profile", choices=profile_names(), default=None, help="only this profile")
    args = ap.parse_args()
    rc = 0
    for name in [args.profile] if args.profile else profile_names():
        if args.engine == "hypothesis":
            t = time.perf_counter()
            bad = fuzz_hypothesis(name, args.packets)
            rc |= bad
            print(f"{name}: hypothesis, {args.packets} examples in {time.perf_counter() - t:.1f} s, "
                  f"{'FAIL' if bad else 'only DecodeError'}")
            continue
        t = time.perf_counter()
        bad, counts = fuzz(name, args.packets, args.seed)
        rc |= bad
        print(f"{name}: {args.packets} packets in {time.perf_counter() - t:.1f} s, "
              f"{'FAIL' if bad else 'only DecodeError'}; {counts}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
