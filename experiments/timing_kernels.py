"""Benchmark: signal-timing estimation for a whole city per call.

    python -m experiments.timing_kernels --json OUT.json

Builds synthetic city-like inputs (2-4 green phases per intersection, 2-4 lanes per
phase, saturation flows 1,800-1,900 veh/h, 15-minute counts of 40-500 veh/h per lane with
a few lanes without data) for 893 and for 100,000 intersections, and times
:func:`signal_control.timing.estimate_timings` (the public wrapper, warm) against the
plain-Python reference in ``signal_control/_reference/timing.py``. Reported: medians
(``time.perf_counter``).

JSON keys: ``kernel_us_893``, ``reference_us_893``, ``speedup_893``, ``kernel_ms_100k``,
``cold_start_s`` (a fresh interpreter with a warm Numba cache, numpy imported and the input
loaded: from before ``import signal_control.timing`` (Numba's import included) to the
first result for the 893 input, building the :class:`TimingNetwork` included; median of 3
after one warm-up run), ``cold_start_incl_numpy_s`` (the same, but from before ``import
numpy``), the fastest repeats (``*_min``: the medians move with the machine's load), the
sizes, the repeat counts and the load average when it ended.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from experiments._output import emit_json
from signal_control._reference.timing import estimate_timings_reference
from signal_control.timing import TimingNetwork, TimingParams, estimate_timings

WINDOW_S = 900.0

_COLD_START = """
import time
t0 = time.perf_counter()
import numpy as np
data = dict(np.load({path!r}))
t1 = time.perf_counter()
import signal_control.timing as st
net = st.TimingNetwork.create(
    phase_ptr=data["phase_ptr"], phase_lane_ptr=data["phase_lane_ptr"],
    phase_lanes=data["phase_lanes"], sat_flow_vph=data["sat_flow_vph"],
    lost_s=data["lost_s"], intergreen_s=data["intergreen_s"],
    min_green_s=data["min_green_s"], max_green_s=data["max_green_s"],
)
out = st.estimate_timings(net, data["count_veh"], st.TimingParams(window_s={window_s!r}))
t2 = time.perf_counter()
assert out.cycle_s.shape == (net.n_intersections,)
print(t2 - t1, t2 - t0)
"""


def synthetic_city(n: int, *, seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Arrays of a city-like signal network with ``n`` intersections, and lane counts.

    Returns
    -------
    arrays, count_veh
        Keyword arguments of :meth:`TimingNetwork.create` and ``[L]`` counts over
        ``WINDOW_S`` (about 2 % NaN: lanes without a detector).
    """
    rng = np.random.default_rng(seed)
    n_phases = rng.integers(2, 5, size=n)
    phase_ptr = np.concatenate([[0], np.cumsum(n_phases)]).astype(np.int64)
    n_p = int(phase_ptr[-1])
    lanes_per_phase = rng.integers(2, 5, size=n_p)
    phase_lane_ptr = np.concatenate([[0], np.cumsum(lanes_per_phase)]).astype(np.int64)
    n_l = int(phase_lane_ptr[-1])
    phase_lanes = np.arange(n_l, dtype=np.int64)
    sat_flow_vph = rng.uniform(1800.0, 1900.0, size=n_l)
    flow_vph = rng.uniform(40.0, 500.0, size=n_l)
    count_veh = np.round(flow_vph * WINDOW_S / 3600.0)
    count_veh[rng.random(n_l) < 0.02] = np.nan
    arrays = {
        "phase_ptr": phase_ptr,
        "phase_lane_ptr": phase_lane_ptr,
        "phase_lanes": phase_lanes,
        "sat_flow_vph": sat_flow_vph,
        "lost_s": np.full(n_p, 4.0),
        "intergreen_s": rng.choice([4.0, 5.0], size=n_p),
        "min_green_s": rng.uniform(7.0, 15.0, size=n_p).round(),
        "max_green_s": rng.uniform(60.0, 90.0, size=n_p).round(),
    }
    return arrays, count_veh


def _times_s(fn: Any, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def _cold_start(arrays: dict[str, np.ndarray], count_veh: np.ndarray) -> tuple[float, float]:
    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "city893.npz"
        np.savez(path, allow_pickle=False, count_veh=count_veh, **arrays)
        code = _COLD_START.format(path=str(path), window_s=WINDOW_S)
        runs = []
        for _ in range(4):  # the first run warms the Numba cache
            out = subprocess.run(
                [sys.executable, "-c", code], check=True, cwd=root, capture_output=True, text=True
            ).stdout
            after_numpy_s, total_s = (float(v) for v in out.split())
            runs.append((after_numpy_s, total_s))
    runs = runs[1:]
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def measure(*, repeats_893: int, repeats_100k: int, repeats_reference: int) -> dict[str, Any]:
    """Time the kernel (warm), the reference and a cold start; see the module docstring."""
    params = TimingParams(window_s=WINDOW_S)
    arrays, counts = synthetic_city(893, seed=1)
    net = TimingNetwork.create(**arrays)
    arrays_big, counts_big = synthetic_city(100_000, seed=2)
    net_big = TimingNetwork.create(**arrays_big)
    out = estimate_timings(net, counts, params)  # warm (compile or load the cache)
    ref = estimate_timings_reference(net, counts, params)
    np.testing.assert_allclose(out.green_s, ref.green_s, rtol=1e-9)
    estimate_timings(net_big, counts_big, params)

    kernel = _times_s(lambda: estimate_timings(net, counts, params), repeats_893)
    reference = _times_s(lambda: estimate_timings_reference(net, counts, params), repeats_reference)
    big = _times_s(lambda: estimate_timings(net_big, counts_big, params), repeats_100k)
    kernel_s, reference_s, big_s = (statistics.median(t) for t in (kernel, reference, big))
    cold_s, cold_numpy_s = _cold_start(arrays, counts)
    flags = out.flags
    return {
        "intersections_893": net.n_intersections,
        "phases_893": net.n_phases,
        "lanes_893": net.n_lanes,
        "oversaturated_share_893": round(float(np.mean(flags & 1 > 0)), 3),
        "kernel_us_893": round(kernel_s * 1e6, 2),
        "kernel_us_893_min": round(min(kernel) * 1e6, 2),
        "reference_us_893": round(reference_s * 1e6, 1),
        "speedup_893": round(reference_s / kernel_s, 1),
        "intersections_100k": net_big.n_intersections,
        "lanes_100k": net_big.n_lanes,
        "kernel_ms_100k": round(big_s * 1e3, 3),
        "kernel_ms_100k_min": round(min(big) * 1e3, 3),
        "cold_start_s": round(cold_s, 3),
        "cold_start_incl_numpy_s": round(cold_numpy_s, 3),
        "repeats_893": repeats_893,
        "repeats_reference": repeats_reference,
        "repeats_100k": repeats_100k,
        "load_average_1min": round(os.getloadavg()[0], 2),
        "cpu_count": os.cpu_count(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats-893", type=int, default=2000)
    parser.add_argument("--repeats-100k", type=int, default=50)
    parser.add_argument("--repeats-reference", type=int, default=7)
    parser.add_argument("--json", type=Path, default=None, help="Write the result here.")
    args = parser.parse_args(argv)
    if args.repeats_893 < 200 or args.repeats_100k < 20 or args.repeats_reference < 5:
        parser.error("need --repeats-893 >= 200, --repeats-100k >= 20, --repeats-reference >= 5")
    result = measure(
        repeats_893=args.repeats_893,
        repeats_100k=args.repeats_100k,
        repeats_reference=args.repeats_reference,
    )
    emit_json(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
