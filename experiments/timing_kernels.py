"""Benchmark: signal-timing estimation for a whole city per call.

    python -m experiments.timing_kernels --json OUT.json

Builds synthetic city-like inputs (2-4 green phases per intersection, 2-4 lanes per
phase, saturation flows 1,800-1,900 veh/h, 15-minute counts of 40-500 veh/h per lane with
a few lanes without data) for 893 and for 100,000 intersections, and times
:func:`signal_control.timing.estimate_timings` (the public wrapper, warm: every call
estimates the timings of every intersection) against the plain-Python reference in
``signal_control/_reference/timing.py``. Each call is timed alone (``time.perf_counter``).

The wrapper is timed as a controller calls it, with a :class:`TimingWorkspace` made once
for the network (``out=``: nothing allocated per call), and also without one (new result
arrays every call). Others share the machine's cores, so the calls run in ``--rounds``
rounds, the two ways alternating; a round's figure is the median of its calls, and the
figure reported is the median of the rounds' (``*_rounds``: each round's, for the spread);
a shorter round before them is not kept.

JSON keys: ``kernel_us_893`` (with a workspace), ``kernel_us_893_no_workspace``,
``reference_us_893``, ``speedup_893``, ``kernel_ms_100k`` (with a workspace),
``kernel_ms_100k_no_workspace``, ``cold_start_s`` (a fresh interpreter with a warm Numba
cache, numpy imported and the input loaded: from before ``import signal_control.timing``
(Numba's import included) to the first result for the 893 input, building the
:class:`TimingNetwork` included; median of 3 after one warm-up run),
``cold_start_incl_numpy_s`` (the same, but from before ``import numpy``), the fastest call
(``*_min``), each round's median (``*_rounds``), the sizes, the repeat counts (calls per
round), ``method`` (how it was measured, in words) and the load average when it ended.
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
from signal_control.timing import TimingNetwork, TimingParams, TimingWorkspace, estimate_timings

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


def _rounds_s(fns: dict[str, Any], repeats: int, rounds: int) -> dict[str, list[list[float]]]:
    """``rounds`` rounds of ``repeats`` timed calls of each function, alternating, after a
    round of a tenth as many calls that is not kept (caches, branch predictors)."""
    times: dict[str, list[list[float]]] = {name: [] for name in fns}
    for fn in fns.values():
        _times_s(fn, max(1, repeats // 10))
    for _ in range(rounds):
        for name, fn in fns.items():
            times[name].append(_times_s(fn, repeats))
    return times


def _summary(
    rounds: list[list[float]], scale: float, digits: int
) -> tuple[float, float, list[float]]:
    """Median of the rounds' medians, fastest call, each round's median; in ``scale`` units."""
    medians = [statistics.median(r) * scale for r in rounds]
    fastest = min(min(r) for r in rounds) * scale
    return (
        round(statistics.median(medians), digits),
        round(fastest, digits),
        [round(m, digits) for m in medians],
    )


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


def measure(
    *, repeats_893: int, repeats_100k: int, repeats_reference: int, rounds: int
) -> dict[str, Any]:
    """Time the kernel (warm), the reference and a cold start; see the module docstring."""
    params = TimingParams(window_s=WINDOW_S)
    arrays, counts = synthetic_city(893, seed=1)
    net = TimingNetwork.create(**arrays)
    work = TimingWorkspace(net)
    arrays_big, counts_big = synthetic_city(100_000, seed=2)
    net_big = TimingNetwork.create(**arrays_big)
    work_big = TimingWorkspace(net_big)
    out = estimate_timings(net, counts, params)  # warm (compile or load the cache)
    ref = estimate_timings_reference(net, counts, params)
    np.testing.assert_allclose(out.green_s, ref.green_s, rtol=1e-9)
    reused = estimate_timings(net, counts, params, out=work)
    for got, want in zip(reused, out, strict=True):  # the same bits either way
        np.testing.assert_array_equal(got, want)
    estimate_timings(net_big, counts_big, params, out=work_big)
    estimate_timings(net_big, counts_big, params)

    small = _rounds_s(
        {
            "workspace": lambda: estimate_timings(net, counts, params, out=work),
            "no_workspace": lambda: estimate_timings(net, counts, params),
        },
        repeats_893,
        rounds,
    )
    reference = _times_s(lambda: estimate_timings_reference(net, counts, params), repeats_reference)
    big = _rounds_s(
        {
            "workspace": lambda: estimate_timings(net_big, counts_big, params, out=work_big),
            "no_workspace": lambda: estimate_timings(net_big, counts_big, params),
        },
        repeats_100k,
        rounds,
    )
    kernel_us, kernel_us_min, kernel_us_rounds = _summary(small["workspace"], 1e6, 2)
    plain_us, plain_us_min, plain_us_rounds = _summary(small["no_workspace"], 1e6, 2)
    big_ms, big_ms_min, big_ms_rounds = _summary(big["workspace"], 1e3, 3)
    big_plain_ms, _, big_plain_ms_rounds = _summary(big["no_workspace"], 1e3, 3)
    reference_s = statistics.median(reference)
    cold_s, cold_numpy_s = _cold_start(arrays, counts)
    flags = out.flags
    return {
        "intersections_893": net.n_intersections,
        "phases_893": net.n_phases,
        "lanes_893": net.n_lanes,
        "oversaturated_share_893": round(float(np.mean(flags & 1 > 0)), 3),
        "kernel_us_893": kernel_us,
        "kernel_us_893_min": kernel_us_min,
        "kernel_us_893_rounds": kernel_us_rounds,
        "kernel_us_893_no_workspace": plain_us,
        "kernel_us_893_no_workspace_min": plain_us_min,
        "kernel_us_893_no_workspace_rounds": plain_us_rounds,
        "reference_us_893": round(reference_s * 1e6, 1),
        "speedup_893": round(reference_s * 1e6 / kernel_us, 1),
        "intersections_100k": net_big.n_intersections,
        "lanes_100k": net_big.n_lanes,
        "kernel_ms_100k": big_ms,
        "kernel_ms_100k_min": big_ms_min,
        "kernel_ms_100k_rounds": big_ms_rounds,
        "kernel_ms_100k_no_workspace": big_plain_ms,
        "kernel_ms_100k_no_workspace_rounds": big_plain_ms_rounds,
        "cold_start_s": round(cold_s, 3),
        "cold_start_incl_numpy_s": round(cold_numpy_s, 3),
        "repeats_893": repeats_893,
        "repeats_reference": repeats_reference,
        "repeats_100k": repeats_100k,
        "rounds": rounds,
        "method": (
            "public wrapper estimate_timings, warm, every intersection per call; each call "
            "timed alone with time.perf_counter; kernel_* with a TimingWorkspace made once "
            "(out=), *_no_workspace with new result arrays per call; "
            f"{rounds} rounds of repeats_* calls (after one of a tenth as many, not kept), "
            "the two ways alternating; figure = median of the rounds' medians, *_rounds = "
            "each round's median, *_min = fastest call; reference: median of "
            "repeats_reference calls; 2 cores shared with other work: see load_average_1min"
        ),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "cpu_count": os.cpu_count(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats-893", type=int, default=2000, help="Calls per round.")
    parser.add_argument("--repeats-100k", type=int, default=20, help="Calls per round.")
    parser.add_argument("--repeats-reference", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=5, help="Rounds of repeats, alternating.")
    parser.add_argument("--json", type=Path, default=None, help="Write the result here.")
    args = parser.parse_args(argv)
    if (
        args.repeats_893 < 200
        or args.repeats_100k < 10
        or args.repeats_reference < 5
        or args.rounds < 3
    ):
        parser.error(
            "need --repeats-893 >= 200, --repeats-100k >= 10, --repeats-reference >= 5, "
            "--rounds >= 3"
        )
    result = measure(
        repeats_893=args.repeats_893,
        repeats_100k=args.repeats_100k,
        repeats_reference=args.repeats_reference,
        rounds=args.rounds,
    )
    emit_json(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
